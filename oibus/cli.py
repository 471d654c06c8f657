"""The ``oibus`` command. Entry points only; the work lives in the modules they call."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from ._version import __version__
from .bus.errors import OpenIntentError
from .bus.keyspace import DEFAULT_NAMESPACE
from .demo import run_demo
from .embedded import EmbeddedServer
from .sdk import Client

URL_FILE = "url"


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="oibus")
def main() -> None:
    """oibus: the OpenIntent Coordination Protocol on Redis.

    \b
    Example:
      oibus up                # embedded server in ./.oibus, prints its URL
      oibus demo              # a short coordination story, printed as its event log
    """


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    stop.wait()


@main.command()
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
    "--port", type=int, default=None, help="Port for the embedded server (default: a free one)."
)
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True)
@click.option("--demo", "with_demo", is_flag=True, help="Run the demo once it is up.")
def up(
    redis_url: str | None, data_dir: str, port: int | None, namespace: str, with_demo: bool
) -> None:
    """Run oibus: on the embedded engine unless a Redis URL is given; stays up until Ctrl-C.

    \b
    Example:
      oibus up --demo
      OIBUS_REDIS_URL=redis://prod:6379/0 oibus up
    """
    server = None
    url_file = Path(data_dir) / URL_FILE
    try:
        if redis_url is None:
            server = EmbeddedServer(data_dir, port)
            redis_url = server.start()
            url_file.write_text(redis_url + "\n")
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
        click.echo("press Ctrl-C to stop")
        _wait_for_signal()
    except OpenIntentError as exc:
        _fail(str(exc))
    finally:
        if server is not None:
            click.echo("stopping the embedded server")
            server.stop()
            url_file.unlink(missing_ok=True)


@main.command()
@click.option(
    "--redis-url",
    envvar="OIBUS_REDIS_URL",
    help="Default: the running `oibus up` in --data-dir, else a temporary embedded server.",
)
@click.option("--data-dir", default=".oibus", show_default=True, type=click.Path())
@click.option("--namespace", default="demo", show_default=True)
def demo(redis_url: str | None, data_dir: str, namespace: str) -> None:
    """Create intents, patch state, append events, and print the event log.

    \b
    Example:
      oibus demo
      oibus demo --redis-url redis://localhost:6379/0
    """
    url_file = Path(data_dir) / URL_FILE
    if redis_url is None and url_file.exists():
        redis_url = url_file.read_text().strip()
    server = None
    try:
        if redis_url is None:
            server = EmbeddedServer(Path(data_dir) / "demo", appendonly=False)
            redis_url = server.start()
            click.echo(f"started a temporary embedded server at {redis_url}")
        with Client(redis_url, agent_id="demo", namespace=namespace) as client:
            run_demo(client, click.echo)
    except OpenIntentError as exc:
        _fail(str(exc))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.path.basename(__file__))
