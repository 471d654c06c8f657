"""Batch benchmark: ``create_intents``, ``log_events`` and ``client.batch()`` beside redis-py
pipelining the same scripts' ``EVALSHA`` with arguments built beforehand, in the same run.

Run ``python -m bench.batch [--redis-url URL] [--items N] [--rounds R] [--smoke]
[--out bench/BATCH.md]``. Without ``--redis-url`` an embedded engine is started (client on
CPU 0, server on CPU 1, as bench.core does); a ``redis+cluster://`` URL measures a cluster
(both sides through redis-py's cluster pipeline).

Each round sends one batch of ``--items`` calls per figure, oibus and raw back to back
(their order alternating by round), sync and async; a figure is the median over the rounds,
its ratio the median of the per-round ratios (oibus items/s over raw items/s).

- **create_intents**: small intents (title, description, one state key), new ids each time.
- **log_events**: one-key payloads over 16 intents.
- **batch() mixed**: ``update_state``, ``patch_state``, ``log_event``, ``record_cost`` in
  turn over 16 intents (version ``None``: no conflicts).
- **raw**: the same calls built by ``oibus.bus.ops`` before the clock starts, sent as one
  redis-py pipeline of ``EVALSHA`` (no validation, no decoding, no chunks): the limit.
- **reference**: bench/baseline.lua pipelined 100 per round trip, bench.core's
  "sync pipelined x100" figure, for scale.
- **sanity**: every batch returned ``--items`` results without an error, and each
  ``log_events`` intent's stream grew by exactly what was logged.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from statistics import median
from typing import Any

import redis
import redis.asyncio as aredis
import redis.asyncio.cluster
import redis.cluster

import oibus
from oibus.bus.costs import record_cost_call
from oibus.bus.ops import Call, new_intent_id
from oibus.sdk._async.batch import CHUNK

from .core import AGENT, BASELINE_LUA, FIELD, git_commit, on_server, place, server_version

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    uvloop = None

SLOTS = 16
TARGET = 0.7
CLUSTER = "redis+cluster://"
FIGURES = ("create_intents", "log_events", "batch() mixed")
Command = tuple[str | int, ...]


class Bench:
    """Both sides' clients, the intents the calls work on, and the calls themselves."""

    def __init__(self, url: str) -> None:
        token = secrets.token_hex(4)
        self.namespace = f"benchb{token}"
        self.base_tag = f"{{benchbbase{token}:0}}"
        self.cluster = url.startswith(CLUSTER)
        raw_url = "redis://" + url[len(CLUSTER) :] if self.cluster else url
        self.url, self.raw_url = url, raw_url
        self.sync_redis: Any = (
            redis.cluster.RedisCluster.from_url(raw_url, decode_responses=True)
            if self.cluster
            else redis.Redis.from_url(raw_url, decode_responses=True)
        )
        self.client = oibus.Client(url, agent_id=AGENT, namespace=self.namespace, slot_guard=False)
        self.async_redis: Any = None
        self.aclient: oibus.AsyncClient | None = None
        self.intents: list[str] = []
        self.base_keys: tuple[str, ...] = ()
        self.sha = ""
        self.problems: list[str] = []
        self.logged: dict[str, int] = {}

    def setup(self) -> None:
        made = self.client.create_intents(
            [{"title": "bench target", "state": {FIELD: 0}} for _ in range(SLOTS)]
        )
        self.intents = [i.id for i in made]
        self.client.load_scripts()
        r = self.sync_redis
        self.sha = r.script_load(BASELINE_LUA.read_text())
        fields = r.hgetall(self.client.keyspace.intent(self.intents[0]))
        fields.update(id="base", seq="0")
        self.base_keys = (*(f"{self.base_tag}:{k}:base" for k in "ise"), f"{self.base_tag}:bus")
        r.hset(self.base_keys[0], mapping=fields)
        r.hset(self.base_keys[1], FIELD, "0")

    async def setup_async(self) -> None:
        self.async_redis = (
            redis.asyncio.cluster.RedisCluster.from_url(self.raw_url, decode_responses=True)
            if self.cluster
            else aredis.Redis.from_url(self.raw_url, decode_responses=True)
        )
        self.aclient = oibus.AsyncClient(
            self.url, agent_id=AGENT, namespace=self.namespace, slot_guard=False
        )

    async def close_async(self) -> None:
        if self.aclient is not None:
            await self.aclient.aclose()
        if self.async_redis is not None:
            await self.async_redis.aclose()

    # the calls ----------------------------------------------------------------------------
    def specs(self, n: int) -> list[dict[str, Any]]:
        return [
            {"title": "bench intent", "description": "a small intent", "state": {FIELD: k}}
            for k in range(n)
        ]

    def events(self, n: int) -> list[tuple[str, str, dict[str, int]]]:
        return [(self.intents[k % SLOTS], "bench_tick", {"n": k}) for k in range(n)]

    def queue_mixed(self, b: Any, n: int) -> None:
        for k in range(n):
            intent = self.intents[k % SLOTS]
            kind = k % 4
            if kind == 0:
                b.update_state(intent, None, {FIELD: k})
            elif kind == 1:
                b.patch_state(intent, None, [{"op": "set", "path": "/n", "value": k}])
            elif kind == 2:
                b.log_event(intent, "bench_tick", {"n": k})
            else:
                b.record_cost(intent, "tokens", 1500, "tokens", provider="openai")

    def raw_calls(self, figure: str, n: int) -> list[Command]:
        """The EVALSHA commands of the same calls, built (and checked) by oibus's own
        builders before the clock starts."""
        c = self.client
        ops, runner = c._ops, c._runner
        calls: list[Call] = []
        if figure == "create_intents":
            for spec in self.specs(n):
                new_id = new_intent_id(intent_id=None, idempotency_key=None, colocate_with=None)
                calls.append(
                    ops.create_intent(
                        new_id,
                        title=spec["title"],
                        description=spec["description"],
                        constraints=None,
                        state=spec["state"],
                        created_by=None,
                        status="active",
                        confidence=None,
                        parent_intent_id=None,
                        depends_on=None,
                    )
                )
        elif figure == "log_events":
            calls = [ops.log_event(i, t, p) for i, t, p in self.events(n)]
        else:
            for k in range(n):
                intent = self.intents[k % SLOTS]
                kind = k % 4
                if kind == 0:
                    plan = c._update_state_plan(intent, None, {FIELD: k})
                elif kind == 1:
                    plan = c._patch_state_plan(
                        intent, None, [{"op": "set", "path": "/n", "value": k}]
                    )
                elif kind == 2:
                    plan = c._log_event_plan(intent, "bench_tick", {"n": k})
                else:
                    calls.append(
                        record_cost_call(
                            c.keyspace, ops.actor, str(uuid.uuid4()), intent, "tokens",
                            1500, "tokens", "openai", None,
                        )
                    )  # fmt: skip
                    continue
                calls.append(plan.call)
        return [runner._evalsha(call) for call in calls]

    def reference(self) -> list[Command]:
        keys, sha = self.base_keys, self.sha
        return [("EVALSHA", sha, 4, *keys, "base", FIELD, str(j), AGENT) for j in range(100)]

    # one batch each ------------------------------------------------------------------------
    def raw_sync(self, commands: list[Command]) -> list[Any]:
        pipe = self.sync_redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(pipe.execute(raise_on_error=False))

    def raw_many(self, commands: list[Command], times: int) -> None:
        for _ in range(max(1, times)):
            self.raw_sync(commands)

    async def raw_async(self, commands: list[Command]) -> list[Any]:
        pipe = self.async_redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

    def oibus_sync(self, figure: str, n: int) -> list[Any]:
        c = self.client
        if figure == "create_intents":
            return c.create_intents(self.specs(n))
        if figure == "log_events":
            return c.log_events(self.events(n))
        with c.batch() as b:
            self.queue_mixed(b, n)
            return b.execute()

    async def oibus_async(self, figure: str, n: int) -> list[Any]:
        c = self.aclient
        assert c is not None
        if figure == "create_intents":
            return await c.create_intents(self.specs(n))
        if figure == "log_events":
            return await c.log_events(self.events(n))
        async with c.batch() as b:
            self.queue_mixed(b, n)
            return await b.execute()

    def check(self, side: str, figure: str, results: list[Any], n: int) -> None:
        bad = [r for r in results if isinstance(r, Exception)]
        if len(results) != n or bad:
            self.problems.append(f"{side} {figure}: {len(results)} results, {len(bad)} errors")
        if figure != "create_intents":
            for k in range(n):
                if figure == "log_events" or k % 4 == 2:
                    intent = self.intents[k % SLOTS]
                    self.logged[intent] = self.logged.get(intent, 0) + 1

    def sanity(self) -> list[str]:
        r = self.sync_redis
        for intent in self.intents:
            stream = r.xrange(self.client.keyspace.events(intent), "-", "+")
            ticks = sum(1 for _, fields in stream if fields.get("t") == "bench_tick")
            if ticks != self.logged.get(intent, 0):
                self.problems.append(
                    f"{intent}: {ticks} bench_tick events, {self.logged[intent]} sent"
                )
        return self.problems

    def evalsha_stats(self) -> tuple[int, int]:
        stats = self.sync_redis.info("commandstats")
        if "cmdstat_evalsha" in stats or not self.cluster:
            nodes = [stats.get("cmdstat_evalsha", {})]
        else:  # a cluster client answers one dict per node
            nodes = [s.get("cmdstat_evalsha", {}) for s in stats.values()]
        return sum(int(s.get("calls", 0)) for s in nodes), sum(int(s.get("usec", 0)) for s in nodes)

    def cleanup(self) -> int:
        deleted = 0
        r = self.sync_redis
        for pattern in (f"{{{self.namespace}*", f"{self.base_tag}*"):
            keys = list(r.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                for key in keys[start : start + 500]:
                    deleted += r.delete(key)
        return deleted


# -- measuring ----------------------------------------------------------------------------
class Timing:
    """One side of one figure over the rounds: seconds, CPU and server time per batch."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.server_us: list[float] = []


def timed(bench: Bench, into: Timing, run: Callable[..., Any], *args: Any) -> Any:
    calls, usec = bench.evalsha_stats()
    cpu, wall = time.process_time(), time.perf_counter()
    result = run(*args)
    into.wall.append(time.perf_counter() - wall)
    into.cpu.append(time.process_time() - cpu)
    calls2, usec2 = bench.evalsha_stats()
    into.server_us.append((usec2 - usec) / max(1, calls2 - calls))
    return result


async def timed_async(
    bench: Bench, into: Timing, run: Callable[..., Awaitable[Any]], *args: Any
) -> Any:
    calls, usec = bench.evalsha_stats()
    cpu, wall = time.process_time(), time.perf_counter()
    result = await run(*args)
    into.wall.append(time.perf_counter() - wall)
    into.cpu.append(time.process_time() - cpu)
    calls2, usec2 = bench.evalsha_stats()
    into.server_us.append((usec2 - usec) / max(1, calls2 - calls))
    return result


def measure(bench: Bench, rounds: int, n: int) -> dict[tuple[str, str, str], Timing]:
    out: dict[tuple[str, str, str], Timing] = {}
    for mode in ("sync", "async"):
        for figure in FIGURES:
            for side in ("raw", "oibus"):
                out[figure, mode, side] = Timing()
    out["reference", "sync", "raw"] = Timing()

    async def one_async(figure: str, side: str, commands: list[Command]) -> None:
        timing = out[figure, "async", side]
        if side == "raw":
            result = await timed_async(bench, timing, bench.raw_async, commands)
        else:
            result = await timed_async(bench, timing, bench.oibus_async, figure, n)
        bench.check(f"async {side}", figure, result, n)

    def all_rounds(runner: asyncio.Runner, count: int) -> None:
        for k in range(count):
            sides = ("raw", "oibus") if k % 2 == 0 else ("oibus", "raw")
            for figure in FIGURES:
                for side in sides:
                    commands = bench.raw_calls(figure, n) if side == "raw" else []
                    timing = out[figure, "sync", side]
                    if side == "raw":
                        result = timed(bench, timing, bench.raw_sync, commands)
                    else:
                        result = timed(bench, timing, bench.oibus_sync, figure, n)
                    bench.check(f"sync {side}", figure, result, n)
                for side in sides:
                    commands = bench.raw_calls(figure, n) if side == "raw" else []
                    runner.run(one_async(figure, side, commands))
            reference = bench.reference()
            timed(bench, out["reference", "sync", "raw"], bench.raw_many, reference, n // 100)

    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(bench.setup_async())
        try:
            all_rounds(runner, 1)  # warm-up: connections, script caches, first-call checks
            for timing in out.values():
                timing.wall.clear()
                timing.cpu.clear()
                timing.server_us.clear()
            all_rounds(runner, rounds)
        finally:
            runner.run(bench.close_async())
    return out


# -- the report ---------------------------------------------------------------------------
def table(out: dict[tuple[str, str, str], Timing], n: int) -> list[str]:
    lines = [
        "| figure | mode | oibus items/s | raw items/s | x raw | oibus CPU µs/item | "
        "raw CPU µs/item | server µs/call | rounds x raw |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode in ("sync", "async"):
        for figure in FIGURES:
            o, r = out[figure, mode, "oibus"], out[figure, mode, "raw"]
            ratios = [rw / ow for ow, rw in zip(o.wall, r.wall, strict=True)]
            ratio = median(ratios)
            mark = " *" if ratio < TARGET else ""
            lines.append(
                f"| {figure} x{n} | {mode} | {n / median(o.wall):,.0f} | "
                f"{n / median(r.wall):,.0f} | {ratio:.2f}{mark} | "
                f"{median(o.cpu) / n * 1e6:.1f} | {median(r.cpu) / n * 1e6:.1f} | "
                f"{median(o.server_us):.1f} | {min(ratios):.2f}-{max(ratios):.2f} |"
            )
    ref = out["reference", "sync", "raw"]
    calls = max(1, n // 100) * 100
    lines.append(
        f"| reference: baseline.lua pipelined x100 | sync | - | {calls / median(ref.wall):,.0f} "
        f"| - | - | {median(ref.cpu) / calls * 1e6:.1f} | {median(ref.server_us):.1f} | - |"
    )
    return lines


def one_run(args: argparse.Namespace, url: str) -> tuple[dict[Any, Timing], str, list[str]]:
    bench = Bench(url)
    try:
        bench.setup()
        with redis.Redis.from_url(bench.raw_url, decode_responses=True) as node:
            server_name = server_version(node)
        out = measure(bench, args.rounds, args.items)
        problems = bench.sanity()
    finally:
        deleted = bench.cleanup()
        bench.client.close()
        bench.sync_redis.close()
    print(f"cleanup: deleted {deleted} keys of the bench namespaces", flush=True)
    return out, server_name, problems


def ratio(out: dict[Any, Timing], figure: str, mode: str) -> float:
    o, r = out[figure, mode, "oibus"], out[figure, mode, "raw"]
    return median(rw / ow for ow, rw in zip(o.wall, r.wall, strict=True))


def run(args: argparse.Namespace, url: str, server_pid: int | None) -> str:
    placement = place(server_pid)
    print(f"placement: {placement}", flush=True)
    runs = []
    for n in range(args.runs):
        started = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
        load = tuple(round(x, 2) for x in os.getloadavg())
        out, server_name, problems = one_run(args, url)
        runs.append((started, load, out, problems))
        print(f"run {n + 1}/{args.runs} done", flush=True)
    problems = [p for *_, found in runs for p in found]
    where = "embedded, started by the benchmark" if server_pid else url
    lines = [
        f"# Batch benchmark ({'cluster' if url.startswith(CLUSTER) else 'single server'})",
        "",
        f"- oibus {oibus.__version__} at {git_commit()}",
        f"- command: `{' '.join(['python -m bench.batch', *sys.argv[1:]])}`",
        f"- server: {server_name} ({where}); {placement}",
        f"- {args.runs} runs; each {args.rounds} rounds of one {args.items}-call batch per "
        "figure and side, raw and oibus back to back (order alternating); oibus sends "
        f"{CHUNK} calls per round trip, raw one pipeline",
    ]
    for n, (started, load, out, _) in enumerate(runs):
        lines += ["", f"## Run {n + 1} ({started}, load average {load})", ""]
        lines += table(out, args.items)
    lines += [
        "",
        "## x raw across runs",
        "",
        "| figure | mode | " + " | ".join(f"run {n + 1}" for n in range(len(runs))) + " |",
        "|---|---|" + "---:|" * len(runs),
    ]
    for mode in ("sync", "async"):
        for figure in FIGURES:
            cells = " | ".join(f"{ratio(out, figure, mode):.2f}" for _, _, out, _ in runs)
            lines.append(f"| {figure} x{args.items} | {mode} | {cells} |")
    lines += [
        "",
        "**x raw** is the median over the rounds of (oibus items/s ÷ raw items/s of the same "
        f"round); target ≥ {TARGET} (`*` marks a figure under it). **raw** pipelines the "
        "same scripts' EVALSHA with arguments built by oibus beforehand (none of oibus's "
        "validation, building or decoding in the clock). **CPU µs/item** is this process's "
        "CPU time per item (pinned to one CPU). **server µs/call** is EVALSHA time inside "
        "the server per call (INFO commandstats), the same work on both sides; on a loaded "
        "machine it includes the server's waits for its CPU.",
        "",
        f"sanity: {'ok' if not problems else '; '.join(problems[:5])}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.batch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--redis-url", help="this server (default: start an embedded one)")
    parser.add_argument("--items", type=int, default=1000, help="calls per batch (1000)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per run (15)")
    parser.add_argument("--runs", type=int, default=2, help="runs, each reported (2)")
    parser.add_argument("--smoke", action="store_true", help="one run of 2 rounds of 200 calls")
    parser.add_argument("--out", help="write the report here (e.g. bench/BATCH.md)")
    parser.add_argument("--append", action="store_true", help="add the report to --out")
    args = parser.parse_args(argv)
    if args.smoke:
        args.items, args.rounds, args.runs = 200, 2, 1
    if args.items < 1 or args.rounds < 1 or args.runs < 1:
        parser.error("--items, --rounds and --runs must be ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = on_server(args.redis_url, lambda url, pid, kind: run(args, url, pid))
    print(report)
    if args.out:
        with Path(args.out).open("a" if args.append else "w") as f:
            f.write(("\n" if args.append else "") + report)
    return 0 if "sanity: ok" in report else 1


if __name__ == "__main__":
    sys.exit(main())
