"""Cost as the bus grows: the same single calls, and memory per intent, at 1,000, 100,000
and (``--full``) 1,000,000 intents in one namespace.

    python -m bench.growth [--redis-url URL] [--full] [--out bench/GROWTH.md] [--smoke]

The namespace is grown tier by tier with pipelined calls of the real scripts (each
intent: ``create_intent`` with a small state, then 9 ``log_event``: 10 events, as the
brief's memory target asks). At every tier each call is timed one at a time, interleaved
with the raw baseline in several rounds (as ``bench.core`` does), and memory is read two
ways: ``MEMORY USAGE`` summed over the keys of a sample of intents (hash, state, event
log), and the ``INFO memory`` growth since the empty namespace divided by the intents (so
indexes and bus pointers are included). A call whose cost depended on the size of the
bus would show it as a falling ratio against the 1,000 tier."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import redis

import oibus

from .core import (
    AGENT,
    BASELINE_LUA,
    CLIENT_CPU,
    EVENT_TYPE,
    FIELD,
    Sample,
    Workload,
    git_commit,
    pin,
    place,
    report_on_server,
    server_version,
    time_sync,
)

OPS = ("baseline", "get_intent", "update_state", "log_event", "create_intent",
       "list_intents", "get_events")  # fmt: skip
EVENTS = 10
BATCH = 500
SETTLE = 3.0
"""Seconds the server is left alone after a tier is loaded, before the calls are timed."""
ID_SAMPLE = 20_000
"""Ids the timing process picks its random intents from."""
SAMPLE = 200
"""Intents whose keys ``MEMORY USAGE`` reads at each tier."""


def grow(client: oibus.Client, ids: list[str], target: int) -> float:
    """Add intents (each with ``EVENTS`` events) until ``target``; returns seconds."""
    ops, runner = client._ops, client._runner
    started = time.perf_counter()
    while len(ids) < target:
        n = min(BATCH, target - len(ids))
        new = [str(uuid.uuid4()) for _ in range(n)]
        calls = [
            ops.create_intent(
                i, title="grown intent", description="a small intent", constraints=None,
                state={FIELD: 0}, created_by=AGENT, status="active", confidence=None,
                parent_intent_id=None, depends_on=None,
            )
            for i in new
        ]  # fmt: skip
        for reply in runner.call_many(calls):
            if isinstance(reply, Exception):
                raise reply
        events = [ops.log_event(i, EVENT_TYPE, {"n": k}) for i in new for k in range(EVENTS - 1)]
        for start in range(0, len(events), BATCH * 2):
            for reply in runner.call_many(events[start : start + BATCH * 2]):
                if isinstance(reply, Exception):
                    raise reply
        ids += new
    return time.perf_counter() - started


def memory_per_intent(client: oibus.Client, r: redis.Redis, ids: list[str]) -> float:
    ks = client.keyspace
    picked = random.Random(len(ids)).sample(ids, min(SAMPLE, len(ids)))
    pipe = r.pipeline(transaction=False)
    for i in picked:
        for key in (ks.intent(i), ks.state(i), ks.events(i)):
            pipe.memory_usage(key, samples=0)
    sizes = [s or 0 for s in pipe.execute()]
    return sum(sizes) / len(picked)


def measure_in_child(
    work: Workload, ids: list[str], rounds: int, seconds: float, settle: float
) -> dict[str, Any]:
    """Time the calls in a fresh process pinned to the client CPU, given a sample of the
    ids: the loading process holds every id and the garbage of the load, which slowed
    its own calls by up to a third at 1,000,000 intents (a cost of the benchmark, not of
    oibus: a fresh client on the same server measured flat)."""
    sample = random.Random(len(ids)).sample(ids, min(ID_SAMPLE, len(ids)))
    with tempfile.TemporaryDirectory(prefix="oibus-growth-") as tmp:
        ids_file, out_file = Path(tmp) / "ids.json", Path(tmp) / "out.json"
        ids_file.write_text(json.dumps(sample))
        spec = {
            "url": work.url, "namespace": work.namespace, "base_tag": work.base_tag,
            "events_intent": work.intents[0], "ids": str(ids_file), "rounds": rounds,
            "seconds": seconds, "settle": settle, "out": str(out_file),
        }  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "bench.growth", "--child", json.dumps(spec)],
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        found: dict[str, Any] = json.loads(out_file.read_text())
    return found


def child(spec: dict[str, Any]) -> None:
    pin(os.getpid(), CLIENT_CPU)
    r = redis.Redis.from_url(spec["url"], decode_responses=True)
    sha = r.script_load(BASELINE_LUA.read_text())
    tag = spec["base_tag"]
    keys = (f"{tag}:i:base-0", f"{tag}:s:base-0", f"{tag}:e:base-0", f"{tag}:bus")

    def baseline(k: int, i: int) -> object:
        return r.evalsha(sha, 4, *keys, "base-0", FIELD, str(i), AGENT)

    with oibus.Client(spec["url"], agent_id=AGENT, namespace=spec["namespace"]) as c:
        ids = json.loads(Path(spec["ids"]).read_text())
        found = measure_tier(
            c, baseline, spec["events_intent"], ids, spec["rounds"], spec["seconds"],
            spec["settle"],
        )  # fmt: skip
    Path(spec["out"]).write_text(json.dumps(found))
    r.close()


def measure_tier(
    c: oibus.Client,
    baseline: Any,
    events_intent: str,
    ids: list[str],
    rounds: int,
    seconds: float,
    settle: float = SETTLE,
) -> dict[str, Any]:
    probe = ids[0]
    rng = random.Random(7)
    version = {"v": c.get_intent(probe).version}

    def get_intent(k: int, i: int) -> object:
        return c.get_intent(rng.choice(ids))

    def update_state(k: int, i: int) -> object:
        it = c.update_state(probe, version["v"], {FIELD: i})
        version["v"] = it.version
        return it

    def log_event(k: int, i: int) -> object:
        return c.log_event(rng.choice(ids), EVENT_TYPE, {"n": i})

    def create_intent(k: int, i: int) -> object:
        made = c.create_intent("grown intent", "a small intent", state={FIELD: 0})
        ids.append(made.id)
        return made

    def list_intents(k: int, i: int) -> object:
        return c.list_intents(limit=50)

    def get_events(k: int, i: int) -> object:
        return c.get_events(events_intent, limit=100)

    fns = {
        "baseline": baseline,
        "get_intent": get_intent,
        "update_state": update_state,
        "log_event": log_event,
        "create_intent": create_intent,
        "list_intents": list_intents,
        "get_events": get_events,
    }
    samples: dict[str, list[Sample]] = {op: [] for op in OPS}
    time.sleep(settle)  # the server's background work after the bulk load (rehashing)
    for op in OPS:  # warm-up
        time_sync(fns[op], min(0.1, seconds))
    for n in range(rounds):
        for op in OPS if n % 2 == 0 else tuple(reversed(OPS)):
            cpu = time.process_time_ns()
            sample = time_sync(fns[op], seconds)
            sample.client_cpu_us = (time.process_time_ns() - cpu) / 1000 / max(1, sample.ops)
            samples[op].append(sample)
    out: dict[str, Any] = {}
    for op in OPS:
        rows = samples[op]
        out[op] = {
            "ops_per_s": median(s.ops_per_s for s in rows),
            "p50_us": median(s.p50_us for s in rows),
            "p99_us": median(s.p99_us for s in rows),
            "client_cpu_us": median(s.client_cpu_us for s in rows),
            "ratio": median(
                s.ops_per_s / b.ops_per_s for s, b in zip(rows, samples["baseline"], strict=True)
            ),
        }
    return out


def run(args: argparse.Namespace, url: str, server_pid: int | None) -> str:
    tiers = [100, 1_000] if args.smoke else [1_000, 100_000] + ([1_000_000] if args.full else [])
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    placement = place(server_pid)
    work = Workload(url)
    r = work.sync_redis
    results: list[dict[str, Any]] = []
    try:
        work.setup()
        before = int(r.info("memory")["used_memory"])
        ids: list[str] = []
        for tier in tiers:
            took = grow(work.sync_client, ids, tier)
            used = int(r.info("memory")["used_memory"])
            row = {
                "intents": tier,
                "grow_s": took,
                "memory_sampled": memory_per_intent(work.sync_client, r, ids),
                "memory_info": (used - before) / len(ids),
                "used_memory": used,
                "calls": measure_in_child(
                    work,
                    ids,
                    args.rounds,
                    args.seconds / args.rounds,
                    0.0 if args.smoke else SETTLE,
                ),
            }
            results.append(row)
            print(
                f"{tier:>9,} intents: grown in {took:.1f} s, {row['memory_sampled']:,.0f} B/intent "
                f"sampled, {row['memory_info']:,.0f} B/intent by INFO",
                flush=True,
            )
        problems = work.sanity()
    finally:
        deleted = work.cleanup()
        work.close()
    print(f"cleanup:   deleted {deleted} keys")
    facts = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "server": server_version(redis.Redis.from_url(url)),
        "commit": git_commit(),
        "placement": placement,
        "load": (load_before, tuple(round(x, 2) for x in os.getloadavg())),
    }
    return report(args, facts, results, problems)


def report(
    args: argparse.Namespace,
    facts: dict[str, Any],
    results: list[dict[str, Any]],
    problems: list[str],
) -> str:
    first = results[0]["calls"]
    lines = [
        "# oibus growth benchmark",
        "",
        f"- date: {facts['date']}; server {facts['server']}; oibus {oibus.__version__} "
        f"({facts['commit']}); {facts['placement']}",
        f"- command: `{args.command or shlex.join(sys.orig_argv)}`",
        f"- load average before/after: {facts['load'][0]} / {facts['load'][1]}",
        f"- each intent: a small state and {EVENTS} events; rounds: {args.rounds} x "
        f"{args.seconds / args.rounds:.2f} s per figure and tier, one call at a time "
        f"(sync client), interleaved with the baseline",
        "",
        "## Memory per intent",
        "",
        "| intents | MEMORY USAGE (intent, state, log), B "
        "| INFO used_memory growth / intents, B | grown in s |",
        "|---:|---:|---:|---:|",
    ]
    for row in results:
        lines.append(
            f"| {row['intents']:,} | {row['memory_sampled']:,.0f} | {row['memory_info']:,.0f} "
            f"| {row['grow_s']:.1f} |"
        )
    lines += [
        "",
        "## Calls per second at each size (x baseline in the same round; flat = same cost)",
        "",
        "| call | " + " | ".join(f"{row['intents']:,}" for row in results) + " | last ÷ first |",
        "|---|" + "---:|" * (len(results) + 1),
    ]
    for op in OPS:
        cells = [
            f"{row['calls'][op]['ops_per_s']:,.0f}/s (x{row['calls'][op]['ratio']:.2f}), "
            f"p50 {row['calls'][op]['p50_us']:.0f} µs, client CPU "
            f"{row['calls'][op].get('client_cpu_us', 0):.0f} µs"
            for row in results
        ]
        drift = results[-1]["calls"][op]["ratio"] / first[op]["ratio"] if first[op]["ratio"] else 0
        if op == "baseline":
            drift = results[-1]["calls"][op]["ops_per_s"] / first[op]["ops_per_s"]
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {drift:.2f} |")
    lines += [
        "",
        "**last ÷ first** compares the x-baseline ratios of the largest and smallest tier (for "
        "the baseline itself: its ops/s), so background noise that slows a whole round "
        "cancels; the target is within 15 % (0.85 to 1.15). `get_intent` and `log_event` pick a "
        "random intent among all of them each call; `list_intents` reads the newest page of "
        "50; `get_events` reads a page of 100 of one intent. **client CPU** is this "
        "process's CPU time per call: when it stays flat while a call slows, the extra "
        "time is the server's (memory) or the round trip's, not oibus's Python.",
    ]
    if problems:
        lines += ["", "**Sanity problems:** " + "; ".join(problems)]
    text = "\n".join(lines) + "\n"
    print(text)
    print(f"sanity: {'ok' if not problems else '; '.join(problems)}")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url")
    p.add_argument("--full", action="store_true", help="also the 1,000,000-intent tier")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="per figure and tier")
    p.add_argument("--smoke", action="store_true", help="100 and 1,000 intents, short")
    p.add_argument("--out")
    p.add_argument("--command", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds = 1, 0.3
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(json.loads(argv[1]))
        return 0
    report_on_server(parse_args(argv), run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
