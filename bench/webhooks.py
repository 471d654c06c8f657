"""Webhook benchmark: deliveries/s from the daemon to a local receiver, beside a raw httpx
client POSTing the same bodies to the same receiver in the same run.

Run ``python -m bench.webhooks [--events 2000] [--subscriptions 1,10] [--smoke]
[--out bench/WEBHOOKS.md]``. An embedded engine and the receiver (a separate process,
``--receiver``) run on CPU 1; this process (the daemon, or the raw client) on CPU 0.

For each number of subscriptions S: ``events`` events are written, S global subscriptions
match each, and one in-process daemon delivers the S x events webhooks; the figure is
deliveries/s from the daemon's start to the receiver's last request. Deliveries to one
subscription are sequential (its order is kept), so the raw baseline POSTs with S
concurrent workers, each sequential: the same shape of work with none of oibus's (no
bus, no queue, no signing, no acknowledgement)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

import oibus
from oibus.bus.webhooks import WebhookConfig
from oibus.daemon.config import DaemonConfig
from oibus.daemon.service import Daemon

from .core import SERVER_CPU, git_commit, pin, place, report_on_server, server_version


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


async def _received(http: httpx.AsyncClient, port: int) -> int:
    return int((await http.get(f"http://127.0.0.1:{port}/count")).text)


# -- one figure ---------------------------------------------------------------------------
async def _oibus(url: str, port: int, events: int, subs: int) -> tuple[float, int]:
    ns = f"benchw{secrets.token_hex(4)}"
    client = oibus.AsyncClient(url, agent_id="bench", namespace=ns, slot_guard=False)
    http = httpx.AsyncClient(timeout=5)  # one connection for the polls: cheap to ask often
    try:
        await client.set_webhook_policy(True)  # the receiver is on loopback
        for _ in range(subs):
            await client.subscribe(webhook_url=f"http://127.0.0.1:{port}/hook")
        intent = await client.create_intent("webhook source")
        before = await _received(http, port)
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
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            while await _received(http, port) < expected:  # noqa: ASYNC110 - another process
                await anyio.sleep(0.02)
            elapsed = time.perf_counter() - start
            daemon.stop()
        return (expected - before) / elapsed, expected - before
    finally:
        raw = client.redis
        keys = [k async for k in raw.scan_iter(f"{{{ns}*")]
        for n in range(0, len(keys), 500):
            await raw.delete(*keys[n : n + 500])
        await client.aclose()
        await http.aclose()


async def _raw(port: int, posts: int, workers: int) -> float:
    body = json.dumps({"subscription_id": "x" * 36, "event": {"payload": {"n": 1}}}).encode()
    per = posts // workers
    async with httpx.AsyncClient(timeout=10) as http:

        async def worker() -> None:
            for _ in range(per):
                r = await http.post(
                    f"http://127.0.0.1:{port}/raw",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                r.raise_for_status()

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        return per * workers / (time.perf_counter() - start)


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
            rows = []
            for subs in args.subscriptions:
                for attempt in range(2):  # run twice, interleaved with the baseline
                    rate, n = anyio.run(_oibus, url, port, args.events, subs)
                    raw = anyio.run(_raw, port, n, subs)
                    rows.append((subs, attempt + 1, n, rate, raw))
                    print(
                        f"  S={subs} run {attempt + 1}: {rate:.0f} vs raw {raw:.0f}/s", flush=True
                    )
        finally:
            receiver.terminate()
            receiver.wait(timeout=10)
    import redis

    if into is not None:
        into["webhooks"] = [
            {"subscriptions": s, "run": a, "deliveries": n, "per_s": rate, "raw_per_s": raw}
            for s, a, n, rate, raw in rows
        ]
    version = server_version(redis.Redis.from_url(url))
    lines = [
        "# Webhook benchmark",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; oibus {oibus.__version__} at "
        f"{git_commit()}",
        f"- server: {version}; {placement}; receiver on CPU {SERVER_CPU}",
        f"- {args.events} events per run, each matched by every subscription",
        "",
        "| subscriptions | run | deliveries | oibus deliveries/s | raw httpx POST/s | ratio |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s} | {a} | {n} | {rate:.0f} | {raw:.0f} | {rate / raw:.2f} |"
            for s, a, n, rate, raw in rows
        ),
        "",
        "oibus figures run from the daemon's start (group creation, script load, matching,",
        "queueing, signing, the POST, acknowledgement) to the receiver's last request.",
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
