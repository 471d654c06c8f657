"""The commands that run things: ``oibus up`` (server and daemon), ``oibus demo``,
``oibus daemon``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx

from oibus._version import __version__
from oibus.bus.errors import OpenIntentError
from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS
from oibus.bus.webhooks import WebhookConfig
from oibus.cli._common import Command, failed
from oibus.daemon import run as daemon_run
from oibus.daemon.config import DaemonConfig
from oibus.daemon.service import Daemon
from oibus.demo import run_demo
from oibus.embedded import EmbeddedServer, free_port
from oibus.examples import incident_agents, llm_agents
from oibus.gateway.keys import add_key, lookup
from oibus.sdk import AsyncClient, Client
from oibus.sdk.locate import DataDirLock, resolve_url, running_url

PREFERRED_PORTS = range(6379, 6400)
HTTP_API_PORTS = range(8000, 8100)
"""Where `oibus up` puts the HTTP API: 8000 (the reference server's and the seed README's
port) when free, else the next free one, so a second `oibus up` does not fail."""
HTTP_API_START_SECONDS = 30.0
API_KEY_FILE = "api-key"


def preferred_port(ports: range = PREFERRED_PORTS) -> int:
    """The first free port of ``ports`` (from 6379 up by default): where a Quickstart
    looks when this is the only server, and the same from one start to the next; a free
    one past the range."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as the server binds: a port whose last connections linger in TIME_WAIT
            # after a restart is free to it, so the port stays the same
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def dev_key(redis_url: str, namespace: str, data_dir: str | Path) -> str:
    """The admin key `oibus up` prints, kept in ``<data dir>/api-key`` (mode 0600) so it
    stays the same from one start to the next: reused while the store still knows it
    (it may have been revoked, or the data wiped), else a new ``admin`` key for principal
    ``dev`` made through the same store as `oibus keys add`."""
    path = Path(data_dir) / API_KEY_FILE
    kept = path.read_text().strip() if path.is_file() else ""

    async def resolve() -> str:
        async with AsyncClient(redis_url, agent_id="oibus-up", namespace=namespace) as client:
            if kept and await lookup(client, kept) is not None:
                return kept
            key, _ = await add_key(client, "dev", "admin", "oibus up")
            return key

    key = asyncio.run(resolve())
    if key != kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        # created 0600 (never readable by others, even for an instant), then written
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
    os.chmod(path, 0o600)  # a file that was there before keeps no wider mode
    return key


class HttpApi:
    """`oibus serve` as a child process of `oibus up`: its own process (and its own event
    loop), exactly what a user runs by hand, stopped with `up`."""

    def __init__(self, redis_url: str, namespace: str, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "oibus", "serve"),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--redis-url", redis_url, "--namespace", namespace),
            ],
            stdout=subprocess.DEVNULL,  # it says where it listens; `up` prints that itself
        )

    def wait_ready(self, timeout: float = HTTP_API_START_SECONDS) -> None:
        """Until /health answers 200 (the bus is reachable through it); a child that
        exits or never answers is an error that names what happened."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise click.ClickException(f"the HTTP API exited with status {code}")
                try:
                    if http.get(self.url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise click.ClickException(f"the HTTP API did not answer in {timeout:.0f} s")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    stop.wait()


@click.command(cls=Command)
@click.option(
    "--redis-url",
    envvar="OIBUS_REDIS_URL",
    help="Use this Redis instead of starting the embedded one.",
)
@click.option(
    "--data-dir",
    default=".oibus",
    show_default=True,
    type=click.Path(),
    help="Where the embedded server keeps its data and append-only file.",
)
@click.option(
    "--port",
    type=int,
    default=None,
    help=f"Port for the embedded server (default: the first free of {PREFERRED_PORTS[0]}-"
    f"{PREFERRED_PORTS[-1]}, so it stays the same from one start to the next).",
)
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True)
@click.option("--demo", "with_demo", is_flag=True, help="Run the demo once it is up.")
@click.option(
    "--http-port",
    type=int,
    default=None,
    help="Serve the daemon's /metrics and /healthz on this port (0: a free one).",
)
@click.option("--no-daemon", is_flag=True, help="Do not run the daemon beside the server.")
@click.option(
    "--http-api-port",
    type=int,
    default=None,
    help=f"Port of the OpenIntent HTTP API (default: {HTTP_API_PORTS[0]} when free, else the "
    f"next free one up to {HTTP_API_PORTS[-1]}).",
)
@click.option("--no-http-api", is_flag=True, help="Do not serve the HTTP API (`oibus serve`).")
def up(
    redis_url: str | None,
    data_dir: str,
    port: int | None,
    namespace: str,
    with_demo: bool,
    http_port: int | None,
    no_daemon: bool,
    http_api_port: int | None,
    no_http_api: bool,
) -> None:
    """Run oibus, its daemon and its HTTP API: on the embedded engine unless a Redis URL is
    given; prints the API's URL and an admin key (kept in DATA_DIR/api-key); stays up
    until Ctrl-C.

    \b
    Example:
      oibus up --demo
      OIBUS_REDIS_URL=redis://prod:6379/0 oibus up
    """
    server = None
    api: HttpApi | None = None
    claim = DataDirLock(data_dir)
    try:
        if redis_url is None:
            claim.acquire()  # refuses while another `oibus up` runs on this directory
            server = EmbeddedServer(data_dir, port if port is not None else preferred_port())
            redis_url = server.start()
            claim.publish(redis_url)
            assert server.engine is not None
            click.echo(
                f"embedded {server.engine.name} {server.engine.version} "
                f"(pid {server.pid}), data in {server.data_dir}"
            )
        with Client(redis_url, agent_id="oibus-up", namespace=namespace) as client:
            loaded = client.load_scripts()
            info = client.discover()
            click.echo(
                f"oibus {__version__} is up on {info.server['engine']} "
                f"{info.server['version']}: {loaded} scripts loaded"
            )
            click.echo(f"clients connect with: export OIBUS_REDIS_URL={redis_url}")
            if with_demo:
                run_demo(client, click.echo)
        if not no_http_api:
            key = dev_key(redis_url, namespace, data_dir)
            api_port = (
                http_api_port if http_api_port is not None else preferred_port(HTTP_API_PORTS)
            )
            api = HttpApi(redis_url, namespace, api_port)
            api.wait_ready()
            click.echo(f"HTTP API: {api.url} (docs at /docs)")
            click.echo(f"dashboard: {api.url}/ui (sign in with the API key)")
            click.echo(f"API key: {key}")
        if no_daemon:
            click.echo("press Ctrl-C to stop")
            _wait_for_signal()
        else:
            daemon_run.configure_logging(False)

            def started(d: Daemon) -> None:
                where = f", metrics on :{d.http_port}/metrics" if d.http_port else ""
                click.echo(f"daemon {d.config.daemon_id} running{where}")
                click.echo("press Ctrl-C to stop")

            daemon_run.run(
                DaemonConfig(redis_url=redis_url, namespace=namespace, http_port=http_port),
                started,
            )
    except OpenIntentError as exc:
        raise failed(exc) from exc
    finally:
        if api is not None:
            api.stop()
        if server is not None:
            click.echo("stopping the embedded server")
            server.stop()
        claim.release()  # only this process's own URL file, and only if it holds the lock


@click.command(cls=Command)
@click.option(
    "--redis-url",
    envvar="OIBUS_REDIS_URL",
    help="Default: the running `oibus up` in --data-dir, else a temporary embedded server.",
)
@click.option("--data-dir", default=".oibus", show_default=True, type=click.Path())
@click.option("--namespace", default="demo", show_default=True)
def demo(redis_url: str | None, data_dir: str, namespace: str) -> None:
    """Create intents, patch state, append events, and print the event log; then run
    the incident-response graph with four agents (examples/incident_agents.py), printing
    its events as they happen; then LLM agents on scripted models, no key and no network
    (examples/llm_agents.py): a coordinator's plan run as a graph, tool calls, memory,
    and a question to a human that the demo answers.

    \b
    Example:
      oibus demo
      oibus demo --redis-url redis://localhost:6379/0
    """
    redis_url = redis_url or running_url(data_dir)
    server = None
    try:
        if redis_url is None:
            server = EmbeddedServer(Path(data_dir) / "demo", appendonly=False)
            redis_url = server.start()
            click.echo(f"started a temporary embedded server at {redis_url}")
        with Client(redis_url, agent_id="demo", namespace=namespace) as client:
            run_demo(client, click.echo)
        click.echo("the incident-response graph, run by four agents (events as they happen):")
        asyncio.run(incident_agents.run(redis_url, namespace, click.echo))
        click.echo("LLM agents (scripted models: no key, no network):")
        asyncio.run(llm_agents.run(redis_url, namespace, click.echo))
    except OpenIntentError as exc:
        raise failed(exc) from exc
    finally:
        if server is not None:
            server.stop()


@click.command(cls=Command)
@click.option("--redis-url", envvar="OIBUS_REDIS_URL", help="The Redis to work on.")
@click.option("--namespace", envvar="OIBUS_NAMESPACE", default=DEFAULT_NAMESPACE, show_default=True)
@click.option(
    "--partitions",
    envvar="OIBUS_PARTITIONS",
    type=int,
    default=DEFAULT_PARTITIONS,
    show_default=True,
)
@click.option("--id", "daemon_id", envvar="OIBUS_DAEMON_ID", help="Default: host-pid-random.")
@click.option("--http-host", envvar="OIBUS_HTTP_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--http-port",
    envvar="OIBUS_HTTP_PORT",
    type=int,
    default=None,
    help="Serve /metrics and /healthz on this port (0: a free one). Default: none.",
)
@click.option(
    "--heartbeat-ttl", envvar="OIBUS_HEARTBEAT_TTL", type=float, default=10.0, show_default=True
)
@click.option(
    "--retention-seconds",
    envvar="OIBUS_RETENTION_SECONDS",
    type=float,
    default=3600.0,
    show_default=True,
    help="How long bus entries every group acknowledged are kept.",
)
@click.option(
    "--max-deliveries", envvar="OIBUS_MAX_DELIVERIES", type=int, default=10, show_default=True
)
@click.option(
    "--refuse-eviction",
    envvar="OIBUS_REFUSE_EVICTION",
    is_flag=True,
    help="Do not start when the server's maxmemory-policy may evict keys.",
)
@click.option(
    "--log-json", envvar="OIBUS_LOG_JSON", is_flag=True, help="One JSON object per log line."
)
@click.option(
    "--webhooks/--no-webhooks",
    envvar="OIBUS_WEBHOOKS",
    default=True,
    show_default=True,
    help="Deliver webhooks to subscriptions (RFC-0006).",
)
@click.option(
    "--allow-private-webhooks",
    envvar="OIBUS_ALLOW_PRIVATE_WEBHOOKS",
    is_flag=True,
    help="Let webhooks reach private, loopback and link-local addresses (the namespace's "
    "policy: recorded by the first daemon; see `oibus subscriptions policy`).",
)
@click.option(
    "--webhook-timeout",
    envvar="OIBUS_WEBHOOK_TIMEOUT",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds one webhook attempt may take (a dead daemon's deliveries wait 2x+5 s).",
)
@click.option("--check", is_flag=True, help="Exit 0 when a live daemon exists, 1 otherwise.")
def daemon(
    daemon_id: str | None,
    webhooks: bool,
    allow_private_webhooks: bool,
    webhook_timeout: float,
    check: bool,
    **settings: Any,
) -> None:
    """Run the daemon: portfolio catch-up, retries, lease expiry, bus retention, metrics.

    \b
    Example:
      oibus daemon --redis-url redis://localhost:6379/0 --http-port 9464
      oibus daemon --check && echo a daemon is alive
    """
    # the other options are named as DaemonConfig's fields
    settings["redis_url"] = resolve_url(settings.get("redis_url"))  # as every command finds it
    if daemon_id is not None:
        settings["daemon_id"] = daemon_id
    try:
        hooks = WebhookConfig(allow_private=allow_private_webhooks, timeout=webhook_timeout)
        config = DaemonConfig(webhooks=hooks if webhooks else None, **settings)
    except OpenIntentError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        if check:
            live = daemon_run.check(config)
            click.echo(f"live daemons: {', '.join(live)}" if live else "no live daemon")
            raise SystemExit(0 if live else 1)
        daemon_run.configure_logging(config.log_json)
        daemon_run.run(config)
    except OpenIntentError as exc:
        raise failed(exc) from exc
