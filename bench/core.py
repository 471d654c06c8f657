"""Core-operation benchmark: oibus next to the raw-Redis baseline, same run, same server.

Run ``python -m bench.core [--redis-url URL] [--seconds N] [--smoke] [--out bench/RESULTS.md]``
(see bench/README.md). Without ``--redis-url`` an embedded engine is started in a temporary
directory and stopped at the end. The client process is pinned to CPU 0 and a started server
to CPU 1. Every figure is measured in several short rounds, baseline and oibus interleaved,
and the median of the rounds is reported, so background noise hits both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any, TypeVar

import redis
import redis.asyncio as aredis

import oibus
from oibus.embedded import EmbeddedServer

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, but stay runnable
    uvloop = None

HERE = Path(__file__).resolve().parent
BASELINE_LUA = HERE / "baseline.lua"

CLIENT_CPU = 0
SERVER_CPU = 1
CONCURRENCY = 16
AGENT = "bench"
FIELD = "progress"
EVENT_TYPE = "bench_tick"

OPS = (
    "baseline",
    "create_intent",
    "update_state",
    "get_intent",
    "log_event",
    "lease_pair",
    "record_cost",
    "get_events",
    "list_intents",
)
CALLS = {"lease_pair": 2}
"""Round trips per operation: a lease pair is an acquire and a release, so its ratio is
taken against the baseline's rate for the same number of calls."""
MODES = ("sync", "async", f"async x{CONCURRENCY}")
PIPELINE = 100
PIPELINED = f"sync pipelined x{PIPELINE}"
"""The baseline alone, in batches of 100 EVALSHA per round trip: the server's limit for
this client stack (oibus has no batch call to set beside it)."""
EVENTS_PER_SLOT = 100
"""Events each slot intent gets at setup, so a ``get_events`` page is always full."""
EXTRA_INTENTS = 64
"""Intents made at setup beyond the slots, so a ``list_intents`` page is always full."""
TARGET = 0.8

SyncOp = Callable[[int, int], object]
AsyncOp = Callable[[int, int], Awaitable[object]]


# -- measuring --------------------------------------------------------------------------
@dataclass
class Sample:
    """One figure in one round."""

    ops: int
    elapsed_ns: int
    p50_us: float
    p99_us: float
    client_cpu_us: float = 0.0  # this process's CPU time per op (it is pinned to one CPU)
    server_us: float = 0.0  # EVALSHA time per call inside the server (INFO commandstats)

    @property
    def ops_per_s(self) -> float:
        return self.ops / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0

    @classmethod
    def of(cls, latencies: list[int], elapsed_ns: int) -> Sample:
        if not latencies:
            return cls(0, elapsed_ns, 0.0, 0.0)
        latencies.sort()
        n = len(latencies)

        def rank(q: float) -> float:  # nearest rank
            return latencies[min(n - 1, max(0, -(-int(q * n * 1000) // 1000) - 1))] / 1000

        return cls(n, elapsed_ns, rank(0.50), rank(0.99))


@dataclass
class Figure:
    """One figure over all rounds: the median of each number."""

    op: str
    mode: str
    ops_per_s: float
    p50_us: float
    p99_us: float
    rounds: list[float]
    total_ops: int
    client_cpu_us: float
    server_us: float
    ratio: float | None = None

    @classmethod
    def of(cls, op: str, mode: str, samples: list[Sample]) -> Figure:
        return cls(
            op=op,
            mode=mode,
            ops_per_s=median(s.ops_per_s for s in samples),
            p50_us=median(s.p50_us for s in samples),
            p99_us=median(s.p99_us for s in samples),
            rounds=[round(s.ops_per_s, 1) for s in samples],
            total_ops=sum(s.ops for s in samples),
            client_cpu_us=median(s.client_cpu_us for s in samples),
            server_us=median(s.server_us for s in samples),
        )


def time_sync(fn: SyncOp, seconds: float) -> Sample:
    clock = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    start = t = clock()
    deadline = start + int(seconds * 1e9)
    i = 0
    while t < deadline:
        fn(0, i)
        now = clock()
        record(now - t)
        t = now
        i += 1
    return Sample.of(latencies, t - start)


async def time_async(fn: AsyncOp, seconds: float, concurrency: int) -> Sample:
    clock = time.perf_counter_ns
    per_task: list[list[int]] = []
    ends: list[int] = []
    start = clock()
    deadline = start + int(seconds * 1e9)

    async def worker(k: int) -> None:
        latencies: list[int] = []
        record = latencies.append
        t = clock()
        i = 0
        while t < deadline:
            await fn(k, i)
            now = clock()
            record(now - t)
            t = now
            i += 1
        per_task.append(latencies)
        ends.append(t)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return Sample.of([x for lat in per_task for x in lat], max(ends) - start)


# -- the workload -----------------------------------------------------------------------
class Workload:
    """Both systems' clients and the keys they work on.

    Slot k (0..15) has one oibus intent and one baseline intent; async x16 task k uses
    slot k, the one-at-a-time modes use slot 0. An intent's version is kept from the
    previous reply, as a real caller would.
    """

    def __init__(self, url: str) -> None:
        token = secrets.token_hex(4)
        self.url = url
        self.namespace = f"bench{token}"
        self.base_tag = f"{{benchbase{token}:0}}"
        self.patterns = [f"{{{self.namespace}*", f"{self.base_tag}*"]
        self.source = BASELINE_LUA.read_text()
        self.sync_redis = redis.Redis.from_url(url, decode_responses=True)
        self.sha: str = self.sync_redis.script_load(self.source)
        self.sync_client = oibus.Client(
            url, agent_id=AGENT, namespace=self.namespace, slot_guard=False
        )
        self.intents: list[str] = []
        self.versions: list[int] = []
        self.base_keys: list[tuple[str, ...]] = []
        self.base_ids: list[str] = []
        self.async_redis: aredis.Redis | None = None
        self.async_client: oibus.AsyncClient | None = None

    def setup(self) -> None:
        """Make the slots: a small oibus intent each, and a baseline intent whose hash is
        a copy of it (so both reply with the same fields and sizes)."""
        r = self.sync_redis
        for k in range(CONCURRENCY):
            it = self.sync_client.create_intent(
                "benchmark intent", "a small intent", state={FIELD: 0}
            )
            self.intents.append(it.id)
            self.versions.append(it.version)
            fields = r.hgetall(self.sync_client.keyspace.intent(it.id))
            bid = f"base-{k}"
            fields["id"] = bid
            fields["seq"] = "0"  # its stream starts empty: seq counts what the baseline adds
            keys = (
                f"{self.base_tag}:i:{bid}",
                f"{self.base_tag}:s:{bid}",
                f"{self.base_tag}:e:{bid}",
                f"{self.base_tag}:bus",
            )
            r.hset(keys[0], mapping=fields)
            r.hset(keys[1], FIELD, "0")
            self.base_keys.append(keys)
            self.base_ids.append(bid)
            for n in range(EVENTS_PER_SLOT):
                self.sync_client.log_event(it.id, EVENT_TYPE, {"n": n})
        for _ in range(EXTRA_INTENTS):
            self.sync_client.create_intent("benchmark intent", "a small intent", state={FIELD: 0})

    async def setup_async(self) -> None:
        self.async_redis = aredis.Redis.from_url(self.url, decode_responses=True)
        self.async_client = oibus.AsyncClient(
            self.url, agent_id=AGENT, namespace=self.namespace, slot_guard=False
        )

    async def close_async(self) -> None:
        if self.async_client is not None:
            await self.async_client.aclose()
        if self.async_redis is not None:
            await self.async_redis.aclose()

    # sync ------------------------------------------------------------------------------
    def sync_ops(self) -> dict[str, SyncOp]:
        r, c, sha = self.sync_redis, self.sync_client, self.sha
        keys, bids, intents, versions = self.base_keys, self.base_ids, self.intents, self.versions

        def baseline(k: int, i: int) -> object:
            return r.evalsha(sha, 4, *keys[k], bids[k], FIELD, str(i), AGENT)

        def create_intent(k: int, i: int) -> object:
            return c.create_intent("benchmark intent", "a small intent", state={FIELD: 0})

        def update_state(k: int, i: int) -> object:
            it = c.update_state(intents[k], versions[k], {FIELD: i})
            versions[k] = it.version
            return it

        def get_intent(k: int, i: int) -> object:
            return c.get_intent(intents[k])

        def log_event(k: int, i: int) -> object:
            return c.log_event(intents[k], EVENT_TYPE, {"n": i})

        def lease_pair(k: int, i: int) -> object:
            lease = c.acquire_lease(intents[k], "bench", 30)
            return c.release_lease(intents[k], lease.id)

        def record_cost(k: int, i: int) -> object:
            return c.record_cost(intents[k], "tokens", 1500, "tokens", provider="openai")

        def get_events(k: int, i: int) -> object:
            return c.get_events(intents[k], limit=EVENTS_PER_SLOT)

        def list_intents(k: int, i: int) -> object:
            return c.list_intents(limit=50)

        def pipelined(k: int, i: int) -> object:
            pipe = r.pipeline(transaction=False)
            for j in range(PIPELINE):
                pipe.evalsha(sha, 4, *keys[k], bids[k], FIELD, str(i * PIPELINE + j), AGENT)
            return pipe.execute()

        return {
            "pipelined": pipelined,
            "get_events": get_events,
            "list_intents": list_intents,
            "baseline": baseline,
            "create_intent": create_intent,
            "update_state": update_state,
            "get_intent": get_intent,
            "log_event": log_event,
            "lease_pair": lease_pair,
            "record_cost": record_cost,
        }

    # async -----------------------------------------------------------------------------
    def async_ops(self) -> dict[str, AsyncOp]:
        r, c, sha = self.async_redis, self.async_client, self.sha
        assert r is not None and c is not None
        keys, bids, intents, versions = self.base_keys, self.base_ids, self.intents, self.versions

        async def baseline(k: int, i: int) -> object:
            return await r.evalsha(sha, 4, *keys[k], bids[k], FIELD, str(i), AGENT)

        async def create_intent(k: int, i: int) -> object:
            return await c.create_intent("benchmark intent", "a small intent", state={FIELD: 0})

        async def update_state(k: int, i: int) -> object:
            it = await c.update_state(intents[k], versions[k], {FIELD: i})
            versions[k] = it.version
            return it

        async def get_intent(k: int, i: int) -> object:
            return await c.get_intent(intents[k])

        async def log_event(k: int, i: int) -> object:
            return await c.log_event(intents[k], EVENT_TYPE, {"n": i})

        async def lease_pair(k: int, i: int) -> object:
            lease = await c.acquire_lease(intents[k], "bench", 30)
            return await c.release_lease(intents[k], lease.id)

        async def record_cost(k: int, i: int) -> object:
            return await c.record_cost(intents[k], "tokens", 1500, "tokens", provider="openai")

        async def get_events(k: int, i: int) -> object:
            return await c.get_events(intents[k], limit=EVENTS_PER_SLOT)

        async def list_intents(k: int, i: int) -> object:
            return await c.list_intents(limit=50)

        return {
            "get_events": get_events,
            "list_intents": list_intents,
            "baseline": baseline,
            "create_intent": create_intent,
            "update_state": update_state,
            "get_intent": get_intent,
            "log_event": log_event,
            "lease_pair": lease_pair,
            "record_cost": record_cost,
        }

    def evalsha_stats(self) -> tuple[int, int]:
        """Calls and microseconds of EVALSHA so far, server-wide (read between figures)."""
        stat = self.sync_redis.info("commandstats").get("cmdstat_evalsha", {})
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))

    # checks and cleanup ----------------------------------------------------------------
    def sanity(self) -> list[str]:
        """The work really happened: versions match what we kept, streams match seq."""
        problems = []
        r = self.sync_redis
        for k in range(CONCURRENCY):
            it = self.sync_client.get_intent(self.intents[k])
            if it.version != self.versions[k]:
                problems.append(f"slot {k}: oibus version {it.version} != kept {self.versions[k]}")
            ik, _, ek, _ = self.base_keys[k]
            seq = int(r.hget(ik, "seq") or 0)
            if seq != r.xlen(ek) or int(r.hget(ik, "version") or 0) != seq + 1:
                problems.append(f"slot {k}: baseline seq {seq} / stream {r.xlen(ek)} disagree")
        return problems

    def cleanup(self) -> int:
        deleted = 0
        for pattern in self.patterns:
            batch: list[str] = []
            for key in self.sync_redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += self.sync_redis.delete(*batch)
                    batch = []
            if batch:
                deleted += self.sync_redis.delete(*batch)
        return deleted

    def close(self) -> None:
        self.sync_client.close()
        self.sync_redis.close()


# -- machine and placement --------------------------------------------------------------
def pin(pid: int, cpu: int) -> int:
    """Pin every thread of ``pid`` (sched_setaffinity alone moves only one thread)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, {cpu})
    return len(tids)


def place(server_pid: int | None) -> str:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or CLIENT_CPU not in cpus or SERVER_CPU not in cpus:
        return f"not pinned: needs CPUs {CLIENT_CPU} and {SERVER_CPU}, this process has {cpus}"
    if server_pid is None:
        server = "server not pinned (external)"
    else:
        n = pin(server_pid, SERVER_CPU)
        server = f"server pid {server_pid} ({n} threads) on CPU {SERVER_CPU}"
    pin(os.getpid(), CLIENT_CPU)
    return f"client pid {os.getpid()} on CPU {CLIENT_CPU}; {server}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def server_version(r: redis.Redis) -> str:
    info = r.info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    name = info.get("server_name", "redis")
    return f"{name} {info.get('redis_version', '?')}"


def git_commit() -> str:
    """The commit measured, with "+dirty" when oibus's files differ from it."""
    root = str(HERE.parent)
    try:
        head = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--", ".", ":!bench"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# -- reporting --------------------------------------------------------------------------
HEAD = (
    "operation",
    "mode",
    "ops/s",
    "p50 µs",
    "p99 µs",
    "x baseline",
    "rounds ops/s",
    "client CPU µs/op",
    "server µs/op",
)


def rows(figures: list[Figure]) -> Iterator[tuple[str, ...]]:
    for f in figures:
        ratio = "1.00 (ref)" if f.op == "baseline" else f"{f.ratio:.2f}"
        if f.op != "baseline" and f.ratio is not None and f.ratio < TARGET:
            ratio += " *"
        spread = f"{min(f.rounds):,.0f}-{max(f.rounds):,.0f}"
        yield (
            f.op,
            f.mode,
            f"{f.ops_per_s:,.0f}",
            f"{f.p50_us:.1f}",
            f"{f.p99_us:.1f}",
            ratio,
            spread,
            f"{f.client_cpu_us:.1f}",
            f"{f.server_us:.1f}",
        )


def text_table(figures: list[Figure]) -> str:
    table = [HEAD, *rows(figures)]
    widths = [max(len(r[c]) for r in table) for c in range(len(HEAD))]
    right = set(range(2, len(HEAD)))
    out = []
    for n, r in enumerate(table):
        cells = [
            v.rjust(w) if c in right else v.ljust(w)
            for c, (v, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(figures: list[Figure]) -> str:
    align = ["---"] * 2 + ["---:"] * (len(HEAD) - 2)
    out = ["| " + " | ".join(HEAD) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows(figures)]
    return "\n".join(out)


def how_to_read() -> list[str]:
    """What the core table's columns mean (the suite's report shares it)."""
    return [
        "## How to read",
        "",
        "- **baseline** is redis-py (`redis[hiredis]`, `decode_responses=True`) calling "
        "`EVALSHA` of `bench/baseline.lua`: the Redis work of oibus's `patch_state` for a "
        "one-key `set` on a small intent (HMGET, HGET, TIME, HSET x2, HINCRBY, XADD x2, "
        "HGETALL x2) with none of oibus's validation and no reply decoding. It is the "
        "limit for this client stack on this server.",
        "- **sync** = `oibus.Client`, one call at a time; **async** = `oibus.AsyncClient`, "
        f"one call at a time; **async x{CONCURRENCY}** = {CONCURRENCY} asyncio tasks calling "
        "concurrently on one client (its connection pool). The baseline of each mode uses "
        "the same client flavour and concurrency.",
        "- `create_intent` makes a new small intent each call (title, description, one "
        "state key); `update_state` sets one top-level key with the version from the previous "
        "reply; `get_intent` reads one intent; `log_event` appends a custom event with a "
        "one-key payload; `lease_pair` acquires and releases a lease (two calls: its ratio "
        "is 2 x its ops/s over the baseline's, the same number of round trips); "
        "`record_cost` records a token cost (no budget set); `get_events` reads a page of "
        f"{EVENTS_PER_SLOT} events of an intent; `list_intents` reads a page of 50 intents "
        "(a merge over the 16 partitions' indexes).",
        f"- **{PIPELINED}** is the baseline alone, {PIPELINE} EVALSHA per pipelined round "
        "trip (its p50/p99 are per batch): the server's own limit for this work. oibus has "
        "no batch call, so nothing stands beside it.",
        "- **x baseline** = oibus ops/s ÷ baseline ops/s of the same mode, taken per round "
        "(the baseline ran in the same round, seconds apart) and then the median over the "
        "rounds, so it can differ a little from the ratio of the two ops/s columns. The "
        "target is "
        f"≥ {TARGET} for each single-call figure (a benchmark target, not a test); `*` marks "
        "a figure under it. `create_intent` does more Redis work than the baseline (three "
        "index ZADDs, a bigger event), `get_intent` much less, so those two ratios are not "
        "pure client overhead; `update_state` is the like-for-like one.",
        "- p50/p99 are per-call latencies seen by the caller (with x16 they include queueing "
        "in the event loop). **rounds ops/s** shows the spread over the rounds.",
        "- **client CPU µs/op** is this process's CPU time (user + system, pinned to one "
        "CPU) per call: the client stack's cost, oibus's Python included. **server µs/op** is "
        "the server's own time per EVALSHA (INFO commandstats, read between figures; on an "
        "external server other clients' EVALSHA calls would mix in). When client CPU + "
        "server time is well under the latency, the rest is the kernel and the round trip.",
    ]


def markdown(report: dict[str, Any], figures: list[Figure], previous: dict[str, Any] | None) -> str:
    facts = report["facts"]
    lines = [
        "# oibus core benchmark",
        "",
        f"- date: {report['date']}",
        f"- command: `{report['command']}`",
        f"- placement: {report['placement']}",
        f"- server: {facts['server']} ({report['server_kind']})",
        f"- machine: {facts['cpus']} CPUs ({facts['cpu_model']}), {facts['platform']}",
        f"- python {facts['python']}, redis-py {facts['redis_py']}, hiredis {facts['hiredis']}, "
        f"oibus {facts['oibus']} ({facts.get('commit', '?')}), event loop: {facts['loop']}",
        f"- load average before: {facts['load_before']}, after: {facts['load_after']}",
        f"- {report['rounds']} rounds x {report['round_seconds']:.2f} s per figure, "
        f"baseline and oibus interleaved; each number is the median over the rounds",
        "",
        markdown_table(figures),
        "",
        *how_to_read(),
    ]
    if report.get("sanity"):
        lines += ["", "**Sanity problems:** " + "; ".join(report["sanity"])]
    if previous is not None:
        lines += [
            "",
            "## Ratios across runs",
            "",
            f"Earlier run: {previous['date']}, `{previous['command']}`, "
            f"load {previous['facts']['load_before']} → {previous['facts']['load_after']}.",
            "",
            "| operation | mode | earlier run | this run |",
            "|---|---|---:|---:|",
        ]
        before = {(f["op"], f["mode"]): f for f in previous["figures"]}
        for f in figures:
            p = before.get((f.op, f.mode))
            if f.op == "baseline":
                old = f"{p['ops_per_s']:,.0f} ops/s" if p else "-"
                lines.append(f"| baseline | {f.mode} | {old} | {f.ops_per_s:,.0f} ops/s |")
            else:
                old = f"{p['ratio']:.2f}" if p and p.get("ratio") is not None else "-"
                lines.append(f"| {f.op} | {f.mode} | {old} | {f.ratio:.2f} |")
    return "\n".join(lines) + "\n"


# -- the run ----------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="benchmark this server (default: start an embedded one)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured seconds per figure, split over the rounds (default 5)",
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="every figure for ~0.2 s in one round: proves the harness works",
    )
    p.add_argument("--out", help="write the results as Markdown here (e.g. bench/RESULTS.md)")
    p.add_argument("--json", help="also write the raw results as JSON here")
    p.add_argument("--compare", help="a --json file of an earlier run to list ratios beside")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 10
    if args.seconds is None:
        args.seconds = 0.2 if args.smoke else 5.0
    if args.rounds < 1 or args.seconds <= 0:
        p.error("--rounds must be ≥ 1 and --seconds > 0")
    return args


def command_line(argv: list[str] | None) -> str:
    if argv is None:
        return shlex.join(sys.orig_argv)  # exactly as typed: interpreter, -m, arguments
    return shlex.join(["python", "-m", "bench.core", *argv])


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, kind: str, command: str
) -> dict[str, Any]:
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    placement = place(server_pid)
    round_s = args.seconds / args.rounds
    warm_s = min(0.2, round_s)
    loop_name = f"uvloop {uvloop.__version__}" if uvloop is not None else "asyncio (no uvloop)"

    work = Workload(url)
    facts = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "server": server_version(work.sync_redis),
        "python": platform.python_version(),
        "redis_py": version_of("redis"),
        "hiredis": version_of("hiredis"),
        "oibus": oibus.__version__,
        "commit": git_commit(),
        "loop": loop_name,
        "load_before": load_before,
    }
    print(f"command:   {command}")
    print(f"placement: {placement}")
    print(f"server:    {facts['server']} at {url} ({kind})")
    print(
        f"machine:   {facts['cpus']} CPUs ({facts['cpu_model']}); python {facts['python']}; "
        f"redis-py {facts['redis_py']}; hiredis {facts['hiredis']}; loop: {loop_name}"
    )
    print(f"oibus:     {facts['oibus']} at commit {facts['commit']}")
    print(f"load avg:  {load_before}")
    print(f"namespace: {work.namespace} (oibus), {work.base_tag} (baseline)")
    print(
        f"plan:      {len(OPS) * len(MODES) + 1} figures x {args.rounds} rounds x {round_s:.2f} s "
        f"(+{warm_s:.2f} s warm-up each)",
        flush=True,
    )

    samples: dict[tuple[str, str], list[Sample]] = {(o, m): [] for m in MODES for o in OPS}
    samples["baseline", PIPELINED] = []
    loop_factory = uvloop.new_event_loop if uvloop is not None else None
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            try:
                work.setup()
                runner.run(work.setup_async())
                sync_ops, async_ops = work.sync_ops(), work.async_ops()

                def measure(op: str, mode: str, seconds: float) -> Sample:
                    calls, usec = work.evalsha_stats()
                    cpu = time.process_time_ns()
                    if mode == PIPELINED:
                        sample = time_sync(sync_ops["pipelined"], seconds)
                        sample.ops *= PIPELINE  # latencies stay per batch
                    elif mode == "sync":
                        sample = time_sync(sync_ops[op], seconds)
                    else:
                        concurrency = 1 if mode == "async" else CONCURRENCY
                        sample = runner.run(time_async(async_ops[op], seconds, concurrency))
                    cpu = time.process_time_ns() - cpu
                    calls2, usec2 = work.evalsha_stats()
                    if sample.ops:
                        sample.client_cpu_us = cpu / 1000 / sample.ops
                    if calls2 > calls:
                        sample.server_us = (usec2 - usec) / (calls2 - calls)
                    return sample

                for mode in MODES:  # warm-up: connections, script cache, first-call checks
                    for op in OPS:
                        measure(op, mode, warm_s)
                measure("baseline", PIPELINED, warm_s)
                for n in range(args.rounds):
                    order = OPS if n % 2 == 0 else tuple(reversed(OPS))
                    for mode in MODES:
                        for op in order:
                            samples[op, mode].append(measure(op, mode, round_s))
                    samples["baseline", PIPELINED].append(measure("baseline", PIPELINED, round_s))
                    print(f"  round {n + 1}/{args.rounds} done", flush=True)
                problems = work.sanity()
            finally:
                runner.run(work.close_async())
    finally:
        deleted = work.cleanup()
        work.close()
    print(f"cleanup:   deleted {deleted} keys of the bench namespaces")

    figures = []
    for mode in MODES:
        base = Figure.of("baseline", mode, samples["baseline", mode])
        base.ratio = 1.0
        figures.append(base)
        for op in OPS[1:]:
            f = Figure.of(op, mode, samples[op, mode])
            # paired: each round's figure over the same round's baseline, then the median,
            # so a burst of background load that slows one round cancels out
            calls = CALLS.get(op, 1)
            f.ratio = median(
                calls * o.ops_per_s / b.ops_per_s if b.ops_per_s else 0.0
                for o, b in zip(samples[op, mode], samples["baseline", mode], strict=True)
            )
            figures.append(f)
    piped = Figure.of("baseline", PIPELINED, samples["baseline", PIPELINED])
    piped.ratio = 1.0
    figures.append(piped)
    facts["load_after"] = tuple(round(x, 2) for x in os.getloadavg())
    print()
    print(text_table(figures))
    print()
    print(f"load avg after: {facts['load_after']}")
    print(f"sanity: {'ok' if not problems else '; '.join(problems)}")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
        "placement": placement,
        "server_kind": kind,
        "url": url,
        "rounds": args.rounds,
        "round_seconds": round_s,
        "facts": facts,
        "sanity": problems,
        "figures": [asdict(f) for f in figures],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = command_line(argv)
    previous = json.loads(Path(args.compare).read_text()) if args.compare else None
    report = on_server(args.redis_url, lambda url, pid, kind: run(args, url, pid, kind, command))
    figures = [Figure(**f) for f in report["figures"]]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.out:
        Path(args.out).write_text(markdown(report, figures, previous))
        print(f"wrote {args.out}")
    return 1 if report["sanity"] else 0


T = TypeVar("T")


def on_server(redis_url: str | None, run_one: Callable[[str, int | None, str], T]) -> T:
    """``run_one(url, server_pid, kind)`` on ``redis_url``, or on an embedded engine started
    for it in a temporary directory (and stopped after). Every benchmark starts its server
    this way."""
    if redis_url:
        return run_one(redis_url, None, "external")
    with tempfile.TemporaryDirectory(prefix="oibus-bench-") as tmp:
        # no persistence at all: valkey's default RDB snapshots (after 60 s and 10,000
        # writes) fork the server mid-run on the 2 cores the figures share, and the
        # pause lands on whichever figure runs then
        server = EmbeddedServer(tmp, appendonly=False, extra_args=("--save", ""))
        url = server.start()
        try:
            return run_one(url, server.pid, "embedded, started by the benchmark")
        finally:
            server.stop()


def report_on_server(
    args: argparse.Namespace, run_one: Callable[[argparse.Namespace, str, int | None], str]
) -> str:
    """Run ``run_one(args, url, server_pid)`` on ``args.redis_url``, or on an embedded engine
    started for it; print the report and write it to ``args.out`` when given. The other
    benchmarks share this."""
    report = on_server(args.redis_url, lambda url, pid, kind: run_one(args, url, pid))
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
