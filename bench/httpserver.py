"""HTTP benchmark: oibus's gateway (``oibus serve``) beside the reference OpenIntent server,
driven by the same client in the same run, and the gateway's own ceiling beside a bare
Starlette route under the same uvicorn settings.

    python -m bench.httpserver [--redis-url URL] [--seconds N] [--rounds R] [--smoke] [--out FILE]

1. **Reference SDK** (``openintent.OpenIntentClient``, the reference's own client, one call
   at a time and 16 threads each with its own client and intent) against ``python -m oibus
   serve`` in front of an embedded valkey, and against ``openintent-server`` 0.17.0 (SQLite,
   run from ``bench/.peers`` by ``bench/peer_openintent.py``): the same code drives both
   (``peer_openintent.Slot`` and ``timed``). Rounds alternate which server goes first; the
   ratio is taken per round, then the median.
2. **Ceiling**: a load generator on uvloop (``httpx.AsyncClient``, and a raw HTTP/1.1
   client on asyncio streams, since httpx saturates first) keeps N requests in flight
   over N keep-alive connections against ``POST /api/v1/intents/{id}/state`` (no If-Match, one
   intent per connection) and against ``POST /hello`` of a one-route Starlette app run by
   uvicorn with the settings ``oibus serve`` uses (uvloop, httptools, log level warning);
   then both with ``--workers 2``. Interleaved rounds, medians.

Placement: this process (every client and the load generator) on CPU 0; the gateway's
processes, the valkey server and the reference server on CPU 1 (each system's whole server
side on one CPU). ``--workers 2`` is measured on CPU 1 (the same CPU budget) and on CPUs
0-1 (a second core, shared with the load generator: this machine has two).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import redis

from . import core, peers
from .peer_openintent import Slot, timed

OPS = ("create_intent", "update_state", "log_event", "lease_pair", "get_intent", "list_intents")
REFERENCE_MISSING = {"list_intents": "n/a (405)"}
"""The reference server has no ``GET /api/v1/intents`` route: its SDK's call gets 405."""
CONCURRENCY = 16
TARGET_REF = 10.0
TARGET_HELLO = 0.5
CONNECTIONS = 32
EXTRA_INTENTS = 64
PRINCIPAL = "svc"
UVICORN = {
    "loop": "uvloop",
    "http": "httptools",
    "log_level": "warning",
    "timeout_graceful_shutdown": 5,
}
"""What ``oibus serve`` passes to ``uvicorn.run`` (oibus/cli/gateway.py); the hello app
gets the same."""
TICK = os.sysconf("SC_CLK_TCK")


# -- the bare route ---------------------------------------------------------------------
def hello_app() -> Any:
    """One route, no middleware: the floor of Starlette under uvicorn."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return Response(b'{"hello":"world"}', media_type="application/json")

    return Starlette(
        routes=[Route("/hello", hello, methods=["GET", "POST"]), Route("/health", hello)]
    )


def serve_hello(port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        "bench.httpserver:hello_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        **UVICORN,  # type: ignore[arg-type]
    )


# -- server processes -------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += tree.get(p, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (clock ticks, 10 ms)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def pin_all(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


@dataclass
class Server:
    """A uvicorn server in processes of its own (``workers`` > 1: a parent and workers)."""

    name: str
    argv: list[str]
    port: int
    workers: int
    cpus: set[int] | None
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=self.log, cwd=core.HERE.parent
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer in 60 s: {self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/health", timeout=2),
            ):
                break
            time.sleep(0.1)
        if self.workers > 1:  # every worker has its app loaded (they bind one socket)
            while len(process_tree(self.proc.pid)) < self.workers + 1:
                time.sleep(0.1)
            time.sleep(2.0)
        self.place()

    def place(self) -> None:
        """Pin (again: workers and threads may have come since) and list the processes."""
        assert self.proc is not None
        self.pids = process_tree(self.proc.pid)
        if self.cpus is not None:
            pin_all(self.pids, self.cpus)

    def tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return " / ".join(self.log.read().decode(errors="replace").strip().splitlines()[-5:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def gateway(redis_url: str, namespace: str, workers: int, cpus: set[int] | None) -> Server:
    port = core_free_port()
    argv = [sys.executable, "-m", "oibus", "serve", "--host", "127.0.0.1", "--port",
            str(port), "--redis-url", redis_url, "--namespace", namespace, "--workers",
            str(workers)]  # fmt: skip
    return Server(f"oibus serve --workers {workers}", argv, port, workers, cpus)


def hello(workers: int, cpus: set[int] | None) -> Server:
    port = core_free_port()
    argv = [sys.executable, "-m", "bench.httpserver", "--hello-server", str(port), "--workers",
            str(workers)]  # fmt: skip
    return Server(f"hello --workers {workers}", argv, port, workers, cpus)


def core_free_port() -> int:
    from oibus.embedded import free_port

    return free_port()


def make_key(redis_url: str, namespace: str) -> str:
    import oibus
    from oibus.gateway.keys import add_key

    async def make() -> str:
        async with oibus.AsyncClient(redis_url, namespace=namespace) as client:
            key, _ = await add_key(client, PRINCIPAL, "service", "bench.httpserver")
            return key

    return asyncio.run(make())


# -- 1. the reference SDK against both servers -------------------------------------------
class HttpSlot(Slot):  # type: ignore[misc]
    def list_intents(self, i: int) -> None:
        self.client.list_intents(limit=50)


def oibus_sdk(url: str, key: str, seconds: float, cpu_of: Callable[[], float]) -> dict[str, Any]:
    """The reference server's figures (``peer_openintent``) for the gateway, plus
    ``list_intents``; each with this process's and the server side's CPU per call."""
    from openintent import OpenIntentClient
    from openintent.models import EventType

    slots = [
        HttpSlot(OpenIntentClient(url, api_key=key, agent_id=f"bench{k}"), EventType)
        for k in range(CONCURRENCY)
    ]
    for _ in range(EXTRA_INTENTS):  # a page of list_intents is always full
        slots[0].create_intent(0)
    results: dict[str, Any] = {}

    def measure(name: str, fns: list[Any] | None) -> dict[str, Any]:
        cpu, server = time.process_time(), cpu_of()
        found = timed(getattr(slots[0], name), seconds, fns)
        n = found["ops"] * (2 if name == "lease_pair" else 1)
        found["client_cpu_us"] = (time.process_time() - cpu) * 1e6 / max(n, 1)
        found["server_cpu_us"] = (cpu_of() - server) * 1e6 / max(n, 1)
        return found

    for name in OPS:
        timed(getattr(slots[0], name), min(0.3, seconds))  # warm-up
        results[name] = measure(name, None)
        results[f"{name} x{CONCURRENCY}"] = measure(name, [getattr(s, name) for s in slots])
    results["sanity"] = {
        "version_kept": sum(s.version for s in slots),
        "version_read": sum(s.client.get_intent(s.intent.id).version for s in slots),
    }
    for s in slots:
        s.client.close()
    return results


# -- 2. the ceiling -----------------------------------------------------------------------
@dataclass
class Load:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    client_busy: float
    server_busy: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a request written whole, the
    reply read by its Content-Length. Tens of µs per request where httpx takes about a
    millisecond on this machine (see bench/README.md), so it can load a server that is
    faster than httpx."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.head, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"content-length:") + 15
        await self.reader.readexactly(int(head[at : head.find(b"\r\n", at)]))
        return int(head[9:12])

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def load(
    generator: str,
    base: str,
    paths: list[str],
    headers: dict[str, str],
    seconds: float,
    server_cpu: Callable[[], float],
) -> Load:
    """``len(paths)`` workers, each on its own keep-alive connection and path, each
    keeping one request in flight; ``generator`` is ``httpx`` (one ``AsyncClient`` with a
    pool of that many connections) or ``raw`` (``RawConnection``)."""
    n = len(paths)
    posts: list[Callable[[str, bytes], Any]]
    if generator == "httpx":
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        client = httpx.AsyncClient(base_url=base, limits=limits, headers=headers)

        async def post(path: str, body: bytes) -> int:
            return (await client.post(path, content=body)).status_code

        posts = [post] * n
    else:
        host, port = base.removeprefix("http://").split(":")
        conns = [RawConnection(host, int(port), headers) for _ in paths]
        posts = [c.post for c in conns]
    clock = time.perf_counter_ns
    per: list[list[int]] = [[] for _ in paths]
    errors = [0]

    async def worker(k: int, deadline: int) -> None:
        lat, path, send = per[k], paths[k], posts[k]
        i = 0
        t = clock()
        while t < deadline:
            body = b'{"patches":[{"op":"set","path":"progress","value":%d}]}' % i
            if await send(path, body) != 200:
                errors[0] += 1
            now = clock()
            lat.append(now - t)
            t = now
            i += 1

    try:
        warm = clock() + int(min(0.3, seconds) * 1e9)  # connections open, caches warm
        await asyncio.gather(*(worker(k, warm) for k in range(n)))
        per[:] = [[] for _ in paths]
        errors[0] = 0
        cpu, server = time.process_time(), server_cpu()
        start = clock()
        await asyncio.gather(*(worker(k, start + int(seconds * 1e9)) for k in range(n)))
        elapsed = (clock() - start) / 1e9
        cpu, server = time.process_time() - cpu, server_cpu() - server
    finally:
        if generator == "httpx":
            await client.aclose()
        else:
            for c in conns:
                await c.aclose()
    lats = sorted(x for lat in per for x in lat)
    if not lats:
        return Load(0, errors[0], elapsed, 0.0, 0.0, 0.0, 0.0)

    def rank(q: float) -> float:
        return lats[min(len(lats) - 1, max(0, int(q * len(lats) + 0.999999) - 1))] / 1e6

    return Load(
        len(lats), errors[0], elapsed, rank(0.5), rank(0.99), cpu / elapsed, server / elapsed
    )


# -- the run ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.httpserver", description=__doc__.split("\n")[0]
    )
    p.add_argument("--redis-url", help="use this server (default: start an embedded one)")
    p.add_argument("--seconds", type=float, help="seconds per figure per round (default 3)")
    p.add_argument("--rounds", type=int, help="rounds of the SDK figures (default 2)")
    p.add_argument("--ceiling-rounds", type=int, help="rounds of the ceiling (default 3)")
    p.add_argument("--connections", type=int, default=CONNECTIONS, help="load generator's N")
    p.add_argument("--no-peers", action="store_true", help="skip the reference server")
    p.add_argument("--smoke", action="store_true", help="every figure for a moment")
    p.add_argument("--out", help="write the Markdown section here")
    p.add_argument("--hello-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.smoke else 3.0
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 2
    if args.ceiling_rounds is None:
        args.ceiling_rounds = 1 if args.smoke else 3
    return args


CEILING = (
    # (load generator, server, workers, CPUs of the server): "gw" = oibus serve, "hello" =
    # the bare route. The pairs to compare are next to each other.
    ("raw", "hello", 1, "1"),
    ("raw", "gw", 1, "1"),
    ("httpx", "hello", 1, "1"),
    ("httpx", "gw", 1, "1"),
    ("raw", "hello", 2, "1"),
    ("raw", "gw", 2, "1"),
    ("raw", "hello", 2, "0-1"),
    ("raw", "gw", 2, "0-1"),
)


def run(
    args: argparse.Namespace,
    url: str,
    server_pid: int | None,
    consumption: dict[str, Any] | None = None,
) -> str:
    """Both parts on ``url``; returns the Markdown section (and fills ``consumption``)."""
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    placement = core.place(server_pid)
    pinned = not placement.startswith("not pinned")
    server_cpus = {core.SERVER_CPU} if pinned else None
    namespace = f"benchhttp{secrets.token_hex(4)}"
    r = redis.Redis.from_url(url, decode_responses=True)
    facts = {
        "cpus": os.cpu_count(),
        "cpu_model": core.cpu_model(),
        "platform": platform.platform(),
        "server": core.server_version(r),
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{d} {core.version_of(d)}"
            for d in ("uvicorn", "starlette", "httptools", "uvloop", "httpx", "openintent")
        ),
        "commit": core.git_commit(),
    }
    print(f"placement: {placement}; gateway and hello processes on CPU {core.SERVER_CPU}")
    print(f"server:    {facts['server']} at {url}; namespace {namespace}")
    print(f"machine:   {facts['cpus']} CPUs ({facts['cpu_model']}); python {facts['python']}")
    print(f"versions:  {facts['versions']}; oibus at {facts['commit']}")
    print(f"load avg:  {load_before}", flush=True)
    servers: list[Server] = []
    valkey = [server_pid] if server_pid else []
    try:
        key = make_key(url, namespace)
        gw = gateway(url, namespace, 1, server_cpus)
        servers.append(gw)
        gw.start()

        def gw_cpu() -> float:
            return cpu_seconds(gw.pids + valkey)

        # -- part 1
        print("== Reference SDK against both servers", flush=True)
        skipped = "--no-peers"
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for n in range(args.rounds):
            order = ("oibus", "reference") if n % 2 == 0 else ("reference", "oibus")
            for who in order:
                if who == "oibus":
                    gw.place()
                    ours.append(oibus_sdk(gw.url, key, args.seconds, gw_cpu))
                    print(f"   round {n + 1}: oibus gateway done", flush=True)
                elif not args.no_peers:
                    try:
                        cpus = (core.CLIENT_CPU, core.SERVER_CPU) if pinned else (None, None)
                        theirs.append(peers.openintent(args.seconds, *cpus))
                        print(f"   round {n + 1}: reference server done", flush=True)
                    except peers.PeerUnavailableError as exc:
                        print(f"   Reference server skipped: {exc}", flush=True)
                        args.no_peers = True
                        skipped = str(exc)
            if pinned:
                core.pin(os.getpid(), core.CLIENT_CPU)  # the peer run does not move us
        reference_note = (
            f"Reference server skipped: {skipped}"
            if not theirs
            else f"Reference server: openintent {theirs[0].get('version', '?')}"
        )
        sdk_rows = sdk_table(ours, theirs)

        # -- part 2
        print("== Gateway ceiling: state route beside the bare hello route", flush=True)
        intents = prepare_intents(gw.url, key, args.connections)
        ceiling_servers: dict[tuple[str, int, str], Server] = {}
        for _, kind, workers, cpus in CEILING:
            if (kind, workers, cpus) in ceiling_servers:
                continue
            want = ({0, 1} if cpus == "0-1" else server_cpus) if pinned else None
            if kind == "gw" and workers == 1:
                s = gw
                s.cpus = want
            elif kind == "gw":
                s = gateway(url, namespace, workers, want)
            else:
                s = hello(workers, want)
            if s is not gw:
                servers.append(s)
                s.start()
            ceiling_servers[kind, workers, cpus] = s
        loads: dict[tuple[str, str, int, str], list[Load]] = {k: [] for k in CEILING}
        headers = {"X-API-Key": key, "X-Agent-ID": "bench", "Content-Type": "application/json"}
        loop_factory = core.uvloop.new_event_loop if core.uvloop is not None else None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            for n in range(args.ceiling_rounds):
                for k in CEILING if n % 2 == 0 else reversed(CEILING):
                    generator, kind, workers, cpus = k
                    s = ceiling_servers[kind, workers, cpus]
                    s.place()
                    paths = (
                        [f"/api/v1/intents/{i}/state" for i in intents]
                        if kind == "gw"
                        else ["/hello"] * args.connections
                    )
                    pids = s.pids + (valkey if kind == "gw" else [])
                    loads[k].append(
                        runner.run(
                            load(generator, s.url, paths, headers, args.seconds,
                                 lambda p=pids: cpu_seconds(p))
                        )
                    )  # fmt: skip
                print(f"   round {n + 1}/{args.ceiling_rounds} done", flush=True)
        ceiling_rows = ceiling_table(loads, args.connections)
        problems = []
        for result in ours:
            sanity = result["sanity"]
            if sanity["version_kept"] != sanity["version_read"]:
                problems.append(f"oibus versions {sanity}")
        for result in theirs:
            sanity = result["sanity"]
            if sanity["version_kept"] != sanity["version_read"]:
                problems.append(f"reference versions {sanity}")
        errors = sum(x.errors for v in loads.values() for x in v)
        if errors:
            problems.append(f"{errors} non-200 replies under load")
    finally:
        for s in servers:
            s.stop()
        deleted = cleanup(r, namespace)
        r.close()
    print(f"cleanup:   deleted {deleted} keys of namespace {namespace}")
    facts["load_before"] = load_before
    facts["load_after"] = tuple(round(x, 2) for x in os.getloadavg())
    sanity_line = "sanity: ok" if not problems else "sanity: " + "; ".join(problems)
    print()
    print("Reference SDK against both servers")
    print(text(sdk_rows))
    print(reference_note)
    print()
    print("Gateway ceiling: state route beside the bare hello route")
    print(text(ceiling_rows))
    print()
    print(f"load avg after: {facts['load_after']}")
    print(sanity_line)
    if consumption is not None:
        consumption["http"] = {"sdk": sdk_rows, "ceiling": ceiling_rows}
    return markdown(args, facts, placement, sdk_rows, ceiling_rows, reference_note, sanity_line)


def prepare_intents(url: str, key: str, n: int) -> list[str]:
    from openintent import OpenIntentClient

    with OpenIntentClient(url, api_key=key, agent_id="bench") as c:
        return [
            c.create_intent("ceiling", "one per connection", initial_state={"progress": 0}).id
            for _ in range(n)
        ]


def cleanup(r: redis.Redis, namespace: str) -> int:
    deleted = 0
    batch: list[str] = []
    for k in r.scan_iter(match=f"*{namespace}*", count=1000):
        batch.append(k)
        if len(batch) >= 500:
            deleted += r.delete(*batch)
            batch = []
    if batch:
        deleted += r.delete(*batch)
    return deleted


# -- reporting ------------------------------------------------------------------------------
SDK_HEAD = ("operation", "mode", "oibus ops/s", "oibus p50 ms", "reference ops/s",
            "reference p50 ms", "x reference", "target", "client CPU µs/call",
            "gateway+valkey CPU µs/call")  # fmt: skip
CEIL_HEAD = ("server", "load generator", "workers", "CPUs", "req/s", "p50 ms", "p99 ms",
             "rounds req/s", "server busy", "load-gen busy", "x hello", "target")  # fmt: skip


def sdk_table(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for mode, suffix in (("one caller", ""), (f"x{CONCURRENCY} threads", f" x{CONCURRENCY}")):
        for op in OPS:
            name = op + suffix
            o = [x[name] for x in ours]
            unit = "pairs/s" if op == "lease_pair" else ""
            ops = median(x["ops_per_s"] for x in o)
            if op in REFERENCE_MISSING:
                ref, ref_p50, ratio, target = REFERENCE_MISSING[op], "-", "-", ""
            elif theirs:
                t = [x[name] for x in theirs]
                ref = f"{median(x['ops_per_s'] for x in t):,.0f}"
                ref_p50 = f"{median(x['p50_us'] for x in t) / 1000:.2f}"
                x = median(a["ops_per_s"] / b["ops_per_s"] for a, b in zip(o, t, strict=False))
                ratio = f"{x:.1f}x"
                target = f"≥ {TARGET_REF:.0f}x " + ("met" if x >= TARGET_REF else "MISSED")
            else:
                ref, ref_p50, ratio, target = "-", "-", "-", ""
            rows.append((
                op + (f" ({unit})" if unit else ""), mode, f"{ops:,.0f}",
                f"{median(x['p50_us'] for x in o) / 1000:.2f}", ref, ref_p50, ratio, target,
                f"{median(x['client_cpu_us'] for x in o):.0f}",
                f"{median(x['server_cpu_us'] for x in o):.0f}",
            ))  # fmt: skip
    return rows


def ceiling_table(
    loads: dict[tuple[str, str, int, str], list[Load]], connections: int
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for (generator, kind, workers, cpus), got in loads.items():
        base = loads.get((generator, "hello", workers, cpus))
        if kind == "gw" and base:
            x = median(a.per_s / b.per_s for a, b in zip(got, base, strict=True) if b.per_s)
            ratio = f"{x:.2f}"
            target = (
                f"≥ {TARGET_HELLO}x hello " + ("met" if x >= TARGET_HELLO else "MISSED")
                if (generator, workers, cpus) == ("raw", 1, "1")
                else ""
            )
        else:
            ratio, target = ("1.00 (ref)" if kind == "hello" else "-"), ""
        name = "POST /hello (bare Starlette)" if kind == "hello" else "POST /intents/{id}/state"
        rows.append((
            name, generator, str(workers), cpus, f"{median(x.per_s for x in got):,.0f}",
            f"{median(x.p50_ms for x in got):.2f}", f"{median(x.p99_ms for x in got):.2f}",
            f"{min(x.per_s for x in got):,.0f}-{max(x.per_s for x in got):,.0f}",
            f"{median(x.server_busy for x in got):.0%}",
            f"{median(x.client_busy for x in got):.0%}", ratio, target,
        ))  # fmt: skip
    w1 = loads.get(("raw", "gw", 1, "1"))
    for workers, cpus in ((2, "1"), (2, "0-1")):
        w2 = loads.get(("raw", "gw", workers, cpus))
        if w1 and w2:
            x = median(b.per_s / a.per_s for a, b in zip(w1, w2, strict=True) if a.per_s)
            rows.append((f"scaling: state route, --workers 2 on CPUs {cpus} ÷ --workers 1",
                         "raw", "", "", "", "", "", "", "", "", f"{x:.2f}", ""))  # fmt: skip
    return rows


def text(rows: list[tuple[str, ...]]) -> str:
    head = SDK_HEAD if len(rows[0]) == len(SDK_HEAD) else CEIL_HEAD
    table = [head, *rows]
    widths = [max(len(r[c]) for r in table) for c in range(len(head))]
    out = []
    for n, r in enumerate(table):
        out.append("  ".join(v.ljust(w) if c < 2 else v.rjust(w) for c, (v, w) in
                             enumerate(zip(r, widths, strict=True))))  # fmt: skip
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * (len(head) - 2),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def markdown(
    args: argparse.Namespace,
    facts: dict[str, Any],
    placement: str,
    sdk_rows: list[tuple[str, ...]],
    ceiling_rows: list[tuple[str, ...]],
    reference_note: str,
    sanity_line: str,
) -> str:
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "\n".join(
        [
            "# HTTP server: the gateway beside the reference server, and its ceiling",
            "",
            f"- date: {date}; command: `{shlex.join(sys.orig_argv)}`",
            f"- placement: {placement}; `python -m oibus serve` (all its processes) on CPU "
            f"{core.SERVER_CPU} with valkey, the reference server on CPU {core.SERVER_CPU}, "
            f"every client and the load generator in this process on CPU {core.CLIENT_CPU}",
            f"- server: {facts['server']}; machine: {facts['cpus']} CPUs ({facts['cpu_model']}), "
            f"{facts['platform']}",
            f"- python {facts['python']}, {facts['versions']}, oibus {facts['commit']}",
            f"- load average before: {facts['load_before']}, after: {facts['load_after']}",
            f"- SDK figures: {args.rounds} rounds x {args.seconds:g} s per figure per server, "
            "the order of the servers alternating; ratios per round, then the median. Ceiling: "
            f"{args.ceiling_rounds} rounds x {args.seconds:g} s, {args.connections} connections.",
            "",
            "## Reference SDK (`OpenIntentClient`) against both servers",
            "",
            *md(SDK_HEAD, sdk_rows),
            "",
            reference_note + "; its list_intents gets 405 (no such route) and is not measured.",
            "",
            "## Gateway ceiling: `POST /api/v1/intents/{id}/state` beside a bare hello route",
            "",
            *md(CEIL_HEAD, ceiling_rows),
            "",
            f"- load generators, in this process on uvloop, {args.connections} workers each with "
            "one request in flight on its own keep-alive connection: **httpx** = one "
            "`httpx.AsyncClient` (a pool of that many connections), **raw** = HTTP/1.1 written "
            "and read on asyncio streams (tens of µs per request: httpx alone costs about a "
            "millisecond of CPU per request here, so it saturates first). The state route "
            "without If-Match (no conflicts), one intent per connection; the hello app is one "
            "Starlette route under uvicorn with `oibus serve`'s settings (uvloop, httptools), "
            "sent the same body and headers.",
            "- **server busy** = CPU time of the server's processes (and valkey's, for the state "
            "route) ÷ wall time; **load-gen busy** = this process's. A load generator near 100 % "
            "is the limit of that figure, not the server.",
            "",
            sanity_line,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.hello_server:
        serve_hello(args.hello_server, args.workers)
        return 0
    out: list[str] = []
    core.on_server(args.redis_url, lambda url, pid, kind: out.append(run(args, url, pid)))
    if args.out:
        Path(args.out).write_text(out[0])
        print(f"wrote {args.out}")
    return 0 if "sanity: ok" in out[0] else 1


if __name__ == "__main__":
    sys.exit(main())
