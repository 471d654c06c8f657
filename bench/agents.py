"""Agents: events drained per second through a consumer group, and assignment to
handler-start latency at a fixed rate, each beside raw redis-py doing the same Redis work
in the same run (and BullMQ's Python worker, when it is installed: ``pip install
-e '.[bench]'``).

Drain: N events are on the bus (``log_event`` of type ``tick`` on intents assigned to the
agent). Figures, each from a fresh group at the start of the streams, rounds alternating
the order: raw XREADGROUP + XACK over the partition buses; ``client.events`` without and
with payloads; an ``@agent`` whose only handler is an empty ``@on_event("tick")``.

Latency: an agent replica runs in its own process; this one assigns pre-created intents
to it at a fixed rate (open loop: each call is sent at its scheduled time whatever the
previous did) and the replica notes when each handler starts. Beside it: raw XADD to a
stream read by a raw blocking XREADGROUP consumer in its own process, same rate.
Both processes run on CPU 0, the server on CPU 1 (``bench.core.place``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

import oibus
from oibus import AgentBase, AsyncClient, agent, on_assignment, on_event

from . import peers
from .core import (
    CLIENT_CPU,
    SERVER_CPU,
    git_commit,
    pin,
    place,
    report_on_server,
    server_version,
)

PARTITIONS = 16


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- drain --------------------------------------------------------------------------------
async def prefill(client: AsyncClient, events: int, intents: int, agent_id: str) -> None:
    ids = []
    for n in range(intents):
        intent = await client.create_intent(f"source {n}")
        await client.assign_agent(intent.id, agent_id)
        ids.append(intent.id)
    ops = client._ops
    for start in range(0, events, 1000):
        batch = [
            ops.log_event(ids[n % intents], "tick", {})
            for n in range(start, min(events, start + 1000))
        ]
        for reply in await client._runner.call_many(batch):
            if isinstance(reply, Exception):
                raise reply


async def reset_group(r: aredis.Redis, keys: Sequence[str], group: str) -> None:
    for key in keys:
        await r.xgroup_destroy(key, group)


async def drain_raw(r: aredis.Redis, keys: Sequence[str], total: int) -> float:
    """The limit of the client stack: read the pointers and acknowledge them, nothing else."""
    group = "raw"
    for key in keys:
        await r.xgroup_create(key, group, "0", mkstream=True)
    seen = 0
    t = time.perf_counter()
    while seen < total:
        reply = await r.xreadgroup(group, "c", dict.fromkeys(keys, ">"), count=500, block=1000)
        pipe = r.pipeline(transaction=False)
        for stream, entries in reply:
            pipe.xack(stream, group, *[e[0] for e in entries])
            seen += len(entries)
        await pipe.execute()
    elapsed = time.perf_counter() - t
    await reset_group(r, keys, group)
    return seen / elapsed


async def drain_events(client: AsyncClient, total: int, payloads: bool) -> float:
    group = f"ev-{payloads}"
    stream = client.events(group, "c", start="start", event_types="tick", payloads=payloads)
    seen = 0
    t = time.perf_counter()
    async for _ in stream:
        seen += 1
        if seen == total:
            break
    await stream.aclose()
    elapsed = time.perf_counter() - t
    await reset_group(client.redis, _buses(client), group)  # type: ignore[arg-type]
    return seen / elapsed


async def drain_agent(client: AsyncClient, total: int, agent_id: str) -> float:
    done = asyncio.Event()
    count = 0

    @agent(agent_id, max_concurrency=500, start="start")
    class Drainer(AgentBase):
        @on_event("tick")
        async def tick(self, event: Any) -> None:
            nonlocal count
            count += 1
            if count == total:
                done.set()

    drainer = Drainer()
    t = time.perf_counter()
    await drainer.start(client=client)
    await done.wait()
    elapsed = time.perf_counter() - t
    await drainer.stop()
    await reset_group(client.redis, _buses(client), f"agent:{agent_id}")  # type: ignore[arg-type]
    return count / elapsed


async def drain_bullmq(url: str, total: int, concurrency: int) -> float | None:
    """BullMQ's worker in the peers' own environment (``bench/peers.py``); None, with the
    reason printed, when it cannot be installed."""
    try:
        found = await asyncio.to_thread(peers.bullmq, url, total, 0.2, None, [concurrency])
    except peers.PeerUnavailableError as exc:
        print(f"BullMQ skipped: {exc}", flush=True)
        return None
    return float(found[f"drain_c{concurrency}"])


def _buses(client: AsyncClient) -> list[str]:
    return [client.keyspace.bus(p) for p in range(client.keyspace.partitions)]


# -- latency ------------------------------------------------------------------------------
def child(mode: str, url: str, namespace: str, out: str) -> None:
    """The consumer process: an oibus agent replica, or a raw XREADGROUP consumer. Writes
    ``{id: start time}`` to ``out`` when it gets SIGTERM."""
    if (os.cpu_count() or 1) > 1:  # the parent may be on the server's CPU just now
        with contextlib.suppress(OSError):
            pin(os.getpid(), CLIENT_CPU)
    started: dict[str, float] = {}

    async def oibus_agent(stop: asyncio.Event) -> None:
        @agent("latency", max_concurrency=200, start="new", block_seconds=1.0)
        class Latency(AgentBase):
            @on_assignment
            async def work(self, intent: Any) -> None:
                started[intent.id] = time.time()

        replica = Latency()
        await replica.start(url, namespace=namespace, partitions=PARTITIONS)
        gc.freeze()  # as AgentBase.run does after start
        Path(out + ".ready").write_text("1")
        await stop.wait()
        await replica.stop()

    async def raw(stop: asyncio.Event) -> None:
        r = aredis.Redis.from_url(url, decode_responses=True)
        key = f"{{{namespace}:raw}}:s"
        with contextlib.suppress(Exception):  # BUSYGROUP: made by an earlier run
            await r.xgroup_create(key, "g", "$", mkstream=True)
        Path(out + ".ready").write_text("1")
        while not stop.is_set():
            reply = await r.xreadgroup("g", "c", {key: ">"}, count=100, block=200)
            now = time.time()
            for _, entries in reply or []:
                for _, fields in entries:
                    started[fields["i"]] = now
                await r.xack(key, "g", *[e[0] for e in entries])
        await r.aclose()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await (oibus_agent(stop) if mode == "agent" else raw(stop))
        Path(out).write_text(json.dumps(started))

    asyncio.run(main())


async def open_loop(
    n: int, rate: float, send: Callable[[int], Awaitable[None]], sent: list[float]
) -> float:
    """Send call i at t0 + i/rate (never waiting for the previous one to finish)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.2
    tasks = []
    for i in range(n):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i] = time.time()
        tasks.append(asyncio.ensure_future(send(i)))
    await asyncio.gather(*tasks)
    return n / (loop.time() - t0)


async def latency(url: str, namespace: str, mode: str, n: int, rate: float) -> dict[str, Any]:
    """The consumer (the system measured) gets CPU 0 to itself; this process, the load
    generator, moves next to the server on CPU 1 while it sends (2 cores: something has
    to share, and it is the same for both systems). The first tenth more than ``n`` is
    sent first at the same rate and not counted, for both systems alike: it warms what a
    process does once (new pool connections, the sender's first script loads, first
    code paths), which is start-up, not the steady latency measured here."""
    warm = n // 10
    pinned = len(os.sched_getaffinity(0)) == 1
    if pinned:
        pin(os.getpid(), SERVER_CPU)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "started.json")
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.agents", "--child", mode, url, namespace, out],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            for _ in range(300):
                if Path(out + ".ready").exists():
                    break
                await asyncio.sleep(0.05)
            total = n + warm
            sent = [0.0] * total
            if mode == "agent":
                client = AsyncClient(url, agent_id="producer", namespace=namespace)
                ids = [(await client.create_intent(f"job {i}")).id for i in range(total)]

                async def send(i: int) -> None:
                    await client.assign_agent(ids[i], "latency")

            else:
                client = AsyncClient(url, agent_id="producer", namespace=namespace)
                r = client.redis
                key = f"{{{namespace}:raw}}:s"
                ids = [f"job-{i}" for i in range(total)]

                async def send(i: int) -> None:
                    await r.xadd(key, {"i": ids[i]})

            achieved = await open_loop(total, rate, send, sent)
            await asyncio.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        started = json.loads(Path(out).read_text())
        await client.aclose()
    if pinned:
        pin(os.getpid(), CLIENT_CPU)
    lat = [(started[i] - sent[k]) * 1e6 for k, i in enumerate(ids) if k >= warm and i in started]
    return {"rate": achieved, "n": n, "got": len(lat), "p50": pct(lat, 0.5), "p99": pct(lat, 0.99)}


# -- the report ---------------------------------------------------------------------------
async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    client = AsyncClient(url, agent_id="bench", namespace=namespace, partitions=PARTITIONS)
    results: dict[str, list[float]] = {
        k: [] for k in ("raw", "events_nopayload", "events", "agent", "bullmq")
    }
    try:
        t = time.perf_counter()
        await prefill(client, args.events, args.intents, "drainer")
        filled = time.perf_counter() - t
        print(f"prefilled {args.events} events in {filled:.1f} s", flush=True)
        keys = _buses(client)
        total = args.events + args.intents * 2  # ticks + intent_created + agent_assigned
        steps: list[tuple[str, Callable[[], Awaitable[float | None]]]] = [
            ("raw", lambda: drain_raw(client.redis, keys, total)),  # type: ignore[arg-type]
            ("events_nopayload", lambda: drain_events(client, args.events, False)),
            ("events", lambda: drain_events(client, args.events, True)),
            ("agent", lambda: drain_agent(client, args.events, "drainer")),
            ("bullmq", lambda: drain_bullmq(url, args.events, args.bullmq_concurrency)),
        ]
        for round_ in range(args.rounds):
            for name, step in steps if round_ % 2 == 0 else steps[::-1]:
                value = await step()
                if value is not None:
                    results[name].append(value)
                print(f"round {round_ + 1}: {name} {value}", flush=True)
        lat_agent = await latency(url, namespace, "agent", args.assignments, args.rate)
        lat_raw = await latency(url, namespace, "raw", args.assignments, args.rate)
    finally:
        deleted = 0
        async for key in client.redis.scan_iter(match=f"{{{namespace}*", count=1000):
            deleted += await client.redis.delete(key)
        await client.aclose()
    return {"drain": results, "lat_agent": lat_agent, "lat_raw": lat_raw, "deleted": deleted}


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, into: dict[str, Any] | None = None
) -> str:
    """The report as Markdown; ``into`` (the suite's) receives the figures."""
    placement = place(server_pid)
    with redis.Redis.from_url(url) as conn:
        server = server_version(conn)
    m = asyncio.run(measure(args, url))
    d = m["drain"]

    def med(xs: list[float]) -> float:
        return pct(xs, 0.5) if xs else float("nan")

    raw = med(d["raw"])

    def row(label: str, key: str) -> str:
        xs = d[key]
        if not xs:
            return f"| {label} | not installed | | |"
        spread = f"{min(xs):,.0f} to {max(xs):,.0f}"
        return f"| {label} | {med(xs):,.0f} | {spread} | {med(xs) / raw:.2f} |"

    la, lr = m["lat_agent"], m["lat_raw"]
    bull = med(d["bullmq"]) if d["bullmq"] else None
    if into is not None:
        into["drain"] = {k: med(v) for k, v in d.items() if v}
        into["latency"] = {"agent": la, "raw": lr, "rate": args.rate}
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
    lines = [
        "# Agents benchmark",
        "",
        f"- date: {stamp}; oibus {oibus.__version__} at {git_commit()}",
        f"- server: {server} ({'embedded' if server_pid else url}); {placement}",
        f"- drain: {args.events} events on {PARTITIONS} partition buses, median of "
        f"{args.rounds} rounds (order alternating)",
        "",
        "## Events drained per second through a consumer group",
        "",
        "| consumer | events/s (median) | range | x raw |",
        "|---|---|---|---|",
        row("raw redis-py XREADGROUP + XACK (pointers only)", "raw"),
        row("client.events(payloads=False)", "events_nopayload"),
        row("client.events() (small payloads carried by the bus entry)", "events"),
        row("@agent with an empty @on_event handler", "agent"),
        row(f"BullMQ Python worker (concurrency {args.bullmq_concurrency})", "bullmq"),
        "",
        (
            f"Agent drain / BullMQ drain: {med(d['agent']) / bull:.1f}x"
            if bull
            else "BullMQ could not be installed in bench/.peers (see the output above)."
        ),
        "",
        "## Assignment to handler start",
        "",
        f"{args.assignments} assignments sent open-loop at {args.rate:.0f}/s after "
        f"{args.assignments // 10} uncounted warm-up sends at the same rate (each system "
        "alike); the agent replica (own process, CPU 0) takes a lease and reads the intent "
        "(one round trip) before its handler starts; the sender shares CPU 1 with the "
        "server.",
        "",
        "| path | sent/s | handled | p50 µs | p99 µs |",
        "|---|---|---|---|---|",
        f"| oibus assign_agent → @on_assignment start | {la['rate']:.0f} | {la['got']} | "
        f"{la['p50']:.0f} | {la['p99']:.0f} |",
        f"| raw XADD → raw XREADGROUP consumer | {lr['rate']:.0f} | {lr['got']} | "
        f"{lr['p50']:.0f} | {lr['p99']:.0f} |",
        "",
        f"sanity: {'ok' if la['got'] == la['n'] and lr['got'] == lr['n'] else 'MISSING'}",
        f"cleanup: deleted {m['deleted']} keys",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.agents", description=__doc__)
    parser.add_argument("--redis-url")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--intents", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--assignments", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--bullmq-concurrency", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.intents, args.rounds, args.assignments = 500, 10, 1, 200
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(*argv[1:5])
        return 0
    report = report_on_server(parse_args(argv), run)
    return 0 if "sanity: ok" in report else 1


if __name__ == "__main__":
    sys.exit(main())
