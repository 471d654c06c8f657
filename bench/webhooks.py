"""Webhook benchmark: deliveries/s from the daemon to a local receiver, beside raw HTTP
clients POSTing the same requests to the same receiver in the same run.

Run ``python -m bench.webhooks [--events 2000] [--subscriptions 1,10] [--smoke]
[--out bench/WEBHOOKS.md]``. An embedded engine and the receiver (a separate process,
``--receiver``) run on CPU 1; this process (the daemon, or the raw clients) on CPU 0.

For each number of subscriptions S: ``events`` events are written, S global subscriptions
match each, and one in-process daemon delivers the S x events webhooks; the figure is
deliveries/s from the daemon's start to the receiver's last request. Deliveries to one
subscription are sequential (its order is kept), so each raw baseline POSTs with S
concurrent workers, each sequential, over keep-alive connections, the same body and
headers oibus sends: the same shape of work with none of oibus's (no bus, no queue, no
signing, no acknowledgement). Two raw clients, each run just before and just after the
daemon (their mean is the figure, so drift on a shared machine hits both sides): an
``httpx.AsyncClient`` (what a user would write; the issue's baseline) and a loop of h11
over anyio streams (the HTTP stack the daemon itself uses, so the limit of the same
work). Beside the rates: this process's CPU time per delivery (steadier than wall time
when other work shares the machine) and Redis commands per delivery (``INFO
commandstats`` before and after the daemon's run, commands inside scripts included)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import h11
import httpx

import oibus
from oibus.bus.webhooks import WebhookConfig, delivery_body
from oibus.daemon.config import DaemonConfig
from oibus.daemon.service import Daemon

from .core import SERVER_CPU, git_commit, pin, place, report_on_server, server_version

UVLOOP: dict[str, Any] = {"backend_options": {"use_uvloop": True}}
"""The daemon runs on uvloop (the CLI's default); so does everything measured here."""


# -- the receiver (its own process) ------------------------------------------------------
async def _receive(port_file: str) -> None:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if lines[0].startswith("GET /count"):
                    body = str(count).encode()
                else:
                    count += 1
                    body = b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await anyio.to_thread.run_sync(Path(port_file).write_text, str(port))
    async with server:
        await server.serve_forever()


class _Counter:
    """Asks the receiver how many POSTs it has had, over one raw keep-alive connection:
    the poll runs in the measured process every 20 ms, and an httpx GET there cost as
    much CPU as a few deliveries."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stream: anyio.abc.SocketStream | None = None
        self._buffer = b""

    async def __call__(self) -> int:
        if self._stream is None:
            self._stream = await anyio.connect_tcp("127.0.0.1", self.port)
        await self._stream.send(b"GET /count HTTP/1.1\r\nHost: bench\r\n\r\n")
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(self._buffer) < length:
            self._buffer += await self._stream.receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return int(body)

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


async def _commands(raw: Any) -> int:
    """Commands the server has run so far (inside scripts included)."""
    stats = await raw.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


@dataclass
class Figure:
    """One side of one run: requests per second, CPU µs per request of this process."""

    per_s: float
    cpu_us: float


def _request(port: int) -> tuple[bytes, list[tuple[str, str]]]:
    """A body and headers of the size oibus sends for the benchmark's events."""
    body = delivery_body(
        "x" * 36,
        "i" * 26,
        "1764000000000-0",
        {"s": "1", "t": "tick", "a": "bench", "p": '{"n": 1234}', "at": "1764000000000000"},
        portfolio=False,
        member=None,
    )
    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("User-Agent", "oibus/bench"),
        ("Content-Length", str(len(body))),
        ("Content-Type", "application/json"),
        ("X-OIBus-Event-Id", "i" * 26 + "/1764000000000-0"),
        ("X-OIBus-Subscription-Id", "x" * 36),
        ("X-OIBus-Timestamp", "1764000000"),
        ("X-OIBus-Signature", "sha256=" + "0" * 64),
        ("X-OIBus-Attempt", "1"),
    ]
    return body, headers


# -- one figure ---------------------------------------------------------------------------
async def _oibus(url: str, port: int, events: int, subs: int) -> tuple[Figure, int, float]:
    """The daemon's figure, the deliveries, and Redis commands per delivery."""
    ns = f"benchw{secrets.token_hex(4)}"
    client = oibus.AsyncClient(url, agent_id="bench", namespace=ns, slot_guard=False)
    count = _Counter(port)
    try:
        await client.set_webhook_policy(True)  # the receiver is on loopback
        for _ in range(subs):
            await client.subscribe(webhook_url=f"http://127.0.0.1:{port}/hook")
        intent = await client.create_intent("webhook source")
        before = await count()
        calls = [client._ops.log_event(intent.id, "tick", {"n": n}) for n in range(events)]
        for start in range(0, len(calls), 500):
            await client._runner.call_many(calls[start : start + 500])
        expected = before + subs * (events + 1)  # + intent_created
        config = DaemonConfig(
            redis_url=url,
            namespace=ns,
            daemon_id="bench",
            webhooks=WebhookConfig(allow_private=True, concurrency=max(32, subs)),
        )
        daemon = Daemon(config)
        commands = await _commands(client.redis)
        cpu, start = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            while await count() < expected:  # noqa: ASYNC110 - another process
                await anyio.sleep(0.02)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            daemon.stop()
        n = expected - before
        commands = await _commands(client.redis) - commands
        return Figure(n / elapsed, cpu / n * 1e6), n, commands / n
    finally:
        raw = client.redis
        keys = [k async for k in raw.scan_iter(f"{{{ns}*")]
        for n in range(0, len(keys), 500):
            await raw.delete(*keys[n : n + 500])
        await client.aclose()
        await count.aclose()


async def _raw_httpx(port: int, posts: int, workers: int) -> Figure:
    body, headers = _request(port)
    sent = {k: v for k, v in headers if k not in ("Host", "Content-Length")}
    per = posts // workers
    # one pool, keep-alive, as many connections as workers: what the daemon has
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=10, limits=limits, trust_env=False) as http:

        async def worker() -> None:
            for _ in range(per):
                r = await http.post(f"http://127.0.0.1:{port}/raw", content=body, headers=sent)
                r.raise_for_status()

        cpu, start = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Figure(per * workers / elapsed, cpu / (per * workers) * 1e6)


async def _raw_h11(port: int, posts: int, workers: int) -> Figure:
    body, headers = _request(port)
    per = posts // workers

    async def worker() -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            conn = h11.Connection(h11.CLIENT)
            for _ in range(per):
                data = conn.send(h11.Request(method="POST", target="/raw", headers=headers))
                data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
                await stream.send(data + (conn.send(h11.EndOfMessage()) or b""))
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await stream.receive())
                    elif isinstance(event, h11.Response) and event.status_code != 200:
                        raise RuntimeError(f"HTTP {event.status_code}")
                    elif isinstance(event, h11.EndOfMessage):
                        break
                conn.start_next_cycle()

    cpu, start = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Figure(per * workers / elapsed, cpu / (per * workers) * 1e6)


def _mean(a: Figure, b: Figure) -> Figure:
    return Figure((a.per_s + b.per_s) / 2, (a.cpu_us + b.cpu_us) / 2)


@dataclass
class Row:
    subs: int
    run: int
    deliveries: int
    oibus: Figure
    commands: float
    httpx: Figure
    h11: Figure


def _one(url: str, port: int, events: int, subs: int, attempt: int) -> Row:
    posts = subs * (events + 1)
    httpx_before = anyio.run(_raw_httpx, port, posts, subs, **UVLOOP)
    h11_before = anyio.run(_raw_h11, port, posts, subs, **UVLOOP)
    mine, n, commands = anyio.run(_oibus, url, port, events, subs, **UVLOOP)
    h11_after = anyio.run(_raw_h11, port, posts, subs, **UVLOOP)
    httpx_after = anyio.run(_raw_httpx, port, posts, subs, **UVLOOP)
    row = Row(
        subs,
        attempt,
        n,
        mine,
        commands,
        _mean(httpx_before, httpx_after),
        _mean(h11_before, h11_after),
    )
    print(
        f"  S={subs} run {attempt}: {mine.per_s:.0f}/s ({mine.cpu_us:.0f} µs CPU, "
        f"{commands:.1f} commands) vs raw httpx {row.httpx.per_s:.0f}/s "
        f"({row.httpx.cpu_us:.0f} µs), raw h11 {row.h11.per_s:.0f}/s ({row.h11.cpu_us:.0f} µs)",
        flush=True,
    )
    return row


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, into: dict[str, Any] | None = None
) -> str:
    """The report as Markdown; ``into`` (the suite's) receives the figures."""
    placement = place(server_pid)
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        receiver = subprocess.Popen(
            [sys.executable, "-m", "bench.webhooks", "--receiver", str(port_file)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not start")
                time.sleep(0.05)
            port = int(port_file.read_text())
            pin(receiver.pid, SERVER_CPU)
            rows = [
                _one(url, port, args.events, subs, attempt + 1)
                for subs in args.subscriptions
                for attempt in range(2)  # run twice, each between its baselines
            ]
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    import redis

    if into is not None:
        into["webhooks"] = [
            {
                "subscriptions": r.subs,
                "run": r.run,
                "deliveries": r.deliveries,
                "per_s": r.oibus.per_s,
                "raw_per_s": r.httpx.per_s,
                "raw_h11_per_s": r.h11.per_s,
                "cpu_us": r.oibus.cpu_us,
                "raw_cpu_us": r.httpx.cpu_us,
                "raw_h11_cpu_us": r.h11.cpu_us,
                "commands_per_delivery": r.commands,
            }
            for r in rows
        ]
    version = server_version(redis.Redis.from_url(url))
    lines = [
        "# Webhook benchmark",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; oibus {oibus.__version__} at "
        f"{git_commit()}",
        f"- server: {version}; {placement}; receiver on CPU {SERVER_CPU}",
        f"- {args.events} events per run, each matched by every subscription; raw clients: "
        "as many sequential workers as subscriptions, keep-alive, the same body and headers",
        "",
        "| subscriptions | run | deliveries | oibus deliveries/s | raw httpx POST/s | ratio "
        "| raw h11 POST/s | ratio | CPU µs per delivery: oibus / httpx / h11 "
        "| Redis commands per delivery |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.subs} | {r.run} | {r.deliveries} | {r.oibus.per_s:.0f} | "
            f"{r.httpx.per_s:.0f} | {r.oibus.per_s / r.httpx.per_s:.2f} | "
            f"{r.h11.per_s:.0f} | {r.oibus.per_s / r.h11.per_s:.2f} | "
            f"{r.oibus.cpu_us:.0f} / {r.httpx.cpu_us:.0f} / {r.h11.cpu_us:.0f} | "
            f"{r.commands:.1f} |"
            for r in rows
        ),
        "",
        "oibus figures run from the daemon's start (group creation, script load, matching,",
        "queueing, signing, the POST, acknowledgement) to the receiver's last request; each",
        "raw figure is the mean of a run just before and one just after. Commands per",
        "delivery: every command the server ran meanwhile (the daemon's start, its bus",
        "reader, matching, queueing and delivery; commands run inside scripts included).",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks")
    parser.add_argument("--redis-url")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--subscriptions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10]
    )
    parser.add_argument("--smoke", action="store_true", help="100 events, 1 and 2 subscriptions")
    parser.add_argument("--out")
    parser.add_argument("--receiver", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.subscriptions = 100, [1, 2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receiver:
        asyncio.run(_receive(args.receiver))
        return 0
    report_on_server(args, run)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
