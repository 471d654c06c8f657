"""Memory sizing: what an intent, an event, a bus pointer and a lease cost in Redis.

Run ``python -m bench.sizing [--redis-url URL] [--intents N] [--events E] [--smoke]``
(see bench/SIZING.md). Without ``--redis-url`` an embedded engine is started in a temporary
directory (no AOF) and stopped at the end. With a URL (a single node: ``MEMORY USAGE`` and
``INFO`` are read from it) the run works under a fresh namespace and deletes every key of
that namespace when it is done, also after an error; it never flushes anything.

Three phases, each measured by two methods:

1. ``create``: N intents through ``oibus.Client.create_intent`` with a small state;
2. ``events``: E ``log_event`` calls on each of them (a small payload);
3. ``leases``: one ``acquire_lease`` on each of them;
4. ``long``: L more ``log_event`` calls on K of them (default N/20 intents x 190), so
   those logs hold about 200 events: a stream preallocates its first node (up to
   ``stream-node-max-bytes``), so the events of a short log look free and only a long
   log shows what an event costs once nodes fill;
5. on an engine the run started itself, ``DEBUG RELOAD`` (save and load the dataset, as
   a restart or a replica's full sync would): streams come back packed to their size.

Before the first phase and after each one, every key of the namespace gets a
``MEMORY USAGE key SAMPLES 0`` (exact for this namespace, whatever else the server holds),
summed by kind of key; and ``INFO memory`` gives ``used_memory`` (everything the server
allocated, so it includes the main dictionary's growth, and on a shared server other
people's writes). The per-phase differences, divided by N (or by N x E for events), are
the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

import oibus
from oibus.embedded import EmbeddedServer

STATE = {"progress": 0, "owner": "sizing-agent", "sources": []}
"""The small state every intent starts with (three top-level keys)."""

CREATOR = "sizing-agent"
EVENT_TYPE = "progress"
LEASE_SCOPE = "analysis"
LEASE_SECONDS = 3600.0
CHUNK = 1000
"""Commands per pipeline when reading or deleting keys."""

KINDS = {
    "i": "intent hash (T:i:<id>)",
    "s": "state hash (T:s:<id>)",
    "e": "event log stream (T:e:<id>)",
    "l": "lease hash (T:l:<id>)",
    "lh": "lease history stream (T:lh:<id>)",
    "x": "list indexes (T:x:*, zsets)",
    "g": "graph mirrors (T:g:*, hashes)",
    "due": "due sets (T:due:*, zsets)",
    "bus": "partition buses (T:bus, streams)",
}
"""Kinds of key, by the segment after the hash tag (docs/keyspace.md); anything else of the
namespace (``{ns}:meta``, …) is ``other``."""

PHASES = ("create", "events", "leases", "long")


def payload(intent_no: int, event_no: int) -> dict[str, Any]:
    """A small event payload: ~45 bytes of JSON."""
    return {"step": event_no, "of": intent_no, "note": "checkpoint"}


# -- reading the server ------------------------------------------------------------------
@dataclass
class Snapshot:
    """What the namespace holds at one moment."""

    used_memory: int
    bytes_by_kind: dict[str, int]
    keys_by_kind: dict[str, int]
    bus_entries: int

    @property
    def total(self) -> int:
        return sum(self.bytes_by_kind.values())


def namespace_keys(r: redis.Redis, namespace: str) -> list[str]:
    """Every key of the namespace: partition tags ``{ns:p}`` and the namespace tag ``{ns}``."""
    keys: list[str] = []
    for pattern in (f"{{{namespace}:*", f"{{{namespace}}}*"):
        keys.extend(str(k) for k in r.scan_iter(match=pattern, count=1000))
    return keys


def kind_of(key: str, namespace: str) -> str:
    match = re.match(r"\{" + re.escape(namespace) + r"(?::\d+)?\}:([a-z]+)", key)
    kind = match.group(1) if match else "other"
    return kind if kind in KINDS else "other"


def _info(r: redis.Redis, section: str) -> dict[str, Any]:
    return cast("dict[str, Any]", r.info(section))


def snapshot(r: redis.Redis, namespace: str) -> Snapshot:
    keys = namespace_keys(r, namespace)
    by_kind: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        pipe = r.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, pipe.execute(), strict=True):
            kind = kind_of(key, namespace)
            by_kind[kind] += int(size or 0)
            count[kind] += 1
    buses = [k for k in keys if kind_of(k, namespace) == "bus"]
    pipe = r.pipeline(transaction=False)
    for key in buses:
        pipe.xlen(key)
    entries = sum(int(n) for n in pipe.execute()) if buses else 0
    used = int(_info(r, "memory")["used_memory"])
    return Snapshot(used, dict(by_kind), dict(count), entries)


def encodings(r: redis.Redis, namespace: str) -> dict[str, str]:
    """``OBJECT ENCODING`` of one key of each kind (the first SCAN finds)."""
    seen: dict[str, str] = {}
    for key in namespace_keys(r, namespace):
        kind = kind_of(key, namespace)
        if kind not in seen:
            seen[kind] = str(r.object("encoding", key))
    return dict(sorted(seen.items()))


def server_facts(r: redis.Redis) -> dict[str, str]:
    server = _info(r, "server")
    memory = _info(r, "memory")
    engine = "valkey" if "valkey_version" in server else "redis"
    version = str(server.get("valkey_version") or server.get("redis_version"))
    config: dict[str, Any] = {}
    try:
        for pattern in ("*-max-listpack-*", "stream-node-max-*"):
            config.update(cast("dict[str, Any]", r.config_get(pattern)))
    except redis.ResponseError:
        pass  # CONFIG disabled (managed services)
    facts = {
        "engine": f"{engine} {version}",
        "allocator": str(memory.get("mem_allocator", "?")),
    }
    facts.update({k: str(v) for k, v in sorted(config.items())})
    return facts


def delete_namespace(r: redis.Redis, namespace: str) -> tuple[int, int]:
    """UNLINK every key of the namespace; returns (deleted, left afterwards)."""
    keys = namespace_keys(r, namespace)
    for start in range(0, len(keys), CHUNK):
        r.unlink(*keys[start : start + CHUNK])
    return len(keys), len(namespace_keys(r, namespace))


# -- the run -----------------------------------------------------------------------------
@dataclass
class Result:
    command: str
    server: dict[str, str]
    intents: int
    events: int
    long_intents: int
    long_events: int
    partitions: int
    seconds: dict[str, float] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    cleanup: tuple[int, int] = (0, 0)
    description_bytes: int = 0

    def delta(self, phase: str) -> tuple[Snapshot, Snapshot]:
        order = ("before", *PHASES)
        after = self.snapshots[phase]
        before = self.snapshots[order[order.index(phase) - 1]]
        return before, after


def run(
    url: str,
    intents: int,
    events: int,
    long_intents: int,
    long_events: int,
    partitions: int,
    command: str,
    *,
    description: str = "a bare intent",
    reload: bool = False,
) -> Result:
    if url.startswith("redis+cluster://"):
        raise SystemExit("sizing reads MEMORY USAGE and INFO from one node: give a redis:// URL")
    namespace = "size" + secrets.token_hex(6)
    raw = redis.Redis.from_url(url, decode_responses=True)
    client = oibus.Client(url, agent_id=CREATOR, namespace=namespace, partitions=partitions)
    result = Result(
        command, server_facts(raw), intents, events, long_intents, long_events, partitions
    )
    result.description_bytes = len(description.encode())
    try:
        # warm-up: scripts cached, {ns}:meta written, every partition's indexes and bus
        # created, so the phases measure growth and not first-key costs
        for n in range(4 * partitions):
            client.create_intent(f"warm-up {n}", state=STATE, created_by=CREATOR)
        if reload:  # so the baseline is packed as the final reload will pack it
            cast("Any", raw).execute_command("DEBUG", "RELOAD")
        result.snapshots["before"] = snapshot(raw, namespace)

        started = time.perf_counter()
        ids = [
            client.create_intent(
                f"sizing intent {n}", description, state=STATE, created_by=CREATOR
            ).id
            for n in range(intents)
        ]
        result.seconds["create"] = time.perf_counter() - started
        result.snapshots["create"] = snapshot(raw, namespace)

        started = time.perf_counter()
        for e in range(events):
            for n, intent_id in enumerate(ids):
                client.log_event(intent_id, EVENT_TYPE, payload(n, e))
        result.seconds["events"] = time.perf_counter() - started
        result.snapshots["events"] = snapshot(raw, namespace)

        started = time.perf_counter()
        for intent_id in ids:
            client.acquire_lease(intent_id, LEASE_SCOPE, LEASE_SECONDS)
        result.seconds["leases"] = time.perf_counter() - started
        result.snapshots["leases"] = snapshot(raw, namespace)

        started = time.perf_counter()
        for e in range(long_events):
            for n, intent_id in enumerate(ids[:long_intents]):
                client.log_event(intent_id, EVENT_TYPE, payload(n, events + e))
        result.seconds["long"] = time.perf_counter() - started
        result.snapshots["long"] = snapshot(raw, namespace)
        result.encodings = encodings(raw, namespace)
        if reload:
            cast("Any", raw).execute_command("DEBUG", "RELOAD")
            result.snapshots["reloaded"] = snapshot(raw, namespace)
    finally:
        client.close()
        result.cleanup = delete_namespace(raw, namespace)
        raw.close()
    return result


# -- the report --------------------------------------------------------------------------
def _per(value: float) -> str:
    return f"{value:,.0f}"


def report(result: Result) -> str:
    n, e = result.intents, result.events
    k, m = result.long_intents, result.long_events
    divisors = {"create": n, "events": n * e, "leases": n, "long": k * m}
    lines = [
        f"### {result.server['engine']} ({result.server['allocator']}), "
        f"{n:,} intents x {e} events, {result.partitions} partitions, "
        f"{result.description_bytes}-byte descriptions",
        "",
        f"`{result.command}`",
        "",
        "Bytes per unit: `MEMORY USAGE` summed over the namespace's keys by kind, the "
        "phase's growth divided by its units:",
        "",
        "| key kind | per intent (create) | per event (first "
        f"{e}) | per lease (acquire) | per event (long logs: {k:,} x {m} more) |",
        "|---|--:|--:|--:|--:|",
    ]
    snaps = result.snapshots
    kinds = [
        kind for kind in (*KINDS, "other") if any(snaps[s].bytes_by_kind.get(kind) for s in snaps)
    ]
    for kind in kinds:
        cells = []
        for phase in PHASES:
            before, after = result.delta(phase)
            grown = after.bytes_by_kind.get(kind, 0) - before.bytes_by_kind.get(kind, 0)
            cells.append(_per(grown / divisors[phase]))
        lines.append(f"| {KINDS.get(kind, 'other')} | " + " | ".join(cells) + " |")
    totals, used = [], []
    for phase in PHASES:
        before, after = result.delta(phase)
        totals.append(_per((after.total - before.total) / divisors[phase]))
        used.append(_per((after.used_memory - before.used_memory) / divisors[phase]))
    lines.append("| **sum of MEMORY USAGE** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    lines.append("| `used_memory` growth | " + " | ".join(used) + " |")

    def bus_per_entry(a: Snapshot, b: Snapshot) -> float:
        grown = b.bytes_by_kind.get("bus", 0) - a.bytes_by_kind.get("bus", 0)
        return grown / max(1, b.bus_entries - a.bus_entries)

    before, created, logged = snaps["before"], snaps["create"], snaps["events"]
    summary = [
        ("bare intent (its `intent_created` event included)", before, created, n),
        (f"intent with {e} events", before, logged, n),
        (f"per event, the first {e} of a log (log + bus pointer)", created, logged, n * e),
        ("per lease (hash, due entry, `lease_acquired` event)", logged, snaps["leases"], n),
        (f"per event, long logs (events {e + 3} to {e + 2 + m})", snaps["leases"],
         snaps["long"], k * m),
    ]  # fmt: skip
    lines += [
        "",
        "| figure | MEMORY USAGE sum | used_memory growth |",
        "|---|--:|--:|",
    ]
    for label, a, b, units in summary:
        lines.append(
            f"| {label} | {_per((b.total - a.total) / units)} | "
            f"{_per((b.used_memory - a.used_memory) / units)} |"
        )
    lines.append(
        f"| per bus pointer (bus streams only, all {snaps['long'].bus_entries:,} entries) | "
        f"{_per(bus_per_entry(before, snaps['long']))} | |"
    )
    if "reloaded" in snaps:
        lines += _reload_table(result)
    settings = {k: v for k, v in result.server.items() if k not in ("engine", "allocator")}
    lines += [
        "",
        "Keys at the end: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(snaps["long"].keys_by_kind.items()))
        + f"; bus entries {snaps['long'].bus_entries:,}.",
        "Encodings: " + ", ".join(f"{k} {v}" for k, v in result.encodings.items()) + ".",
        "Server settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".",
        "Seconds per phase: "
        + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
        + f". Cleanup: deleted {result.cleanup[0]:,} keys, {result.cleanup[1]} left.",
    ]
    return "\n".join(lines)


def _reload_table(result: Result) -> list[str]:
    """Everything the run wrote, per intent: live, then after DEBUG RELOAD."""
    snaps, n = result.snapshots, result.intents
    before, live, loaded = snaps["before"], snaps["long"], snaps["reloaded"]

    def per(snap: Snapshot, kind: str | None) -> str:
        if kind is None:
            return _per((snap.total - before.total) / n)
        return _per((snap.bytes_by_kind.get(kind, 0) - before.bytes_by_kind.get(kind, 0)) / n)

    lines = [
        "",
        "Everything the phases wrote, per intent, live and after `DEBUG RELOAD`:",
        "",
        "| key kind | live | after DEBUG RELOAD |",
        "|---|--:|--:|",
    ]
    for kind, label in KINDS.items():
        if live.bytes_by_kind.get(kind):
            lines.append(f"| {label} | {per(live, kind)} | {per(loaded, kind)} |")
    lines.append(f"| **sum of MEMORY USAGE** | **{per(live, None)}** | **{per(loaded, None)}** |")
    lines.append(
        f"| `used_memory` growth | {_per((live.used_memory - before.used_memory) / n)} | "
        f"{_per((loaded.used_memory - before.used_memory) / n)} |"
    )
    return lines


@contextmanager
def server(url: str | None, config: list[str]) -> Iterator[str]:
    if url is not None:
        yield url
        return
    extra = ["--enable-debug-command", "local"]
    for item in config:
        name, _, value = item.partition(" ")
        extra += [f"--{name}", value]
    with tempfile.TemporaryDirectory(prefix="oibus-sizing-") as tmp:
        engine = EmbeddedServer(Path(tmp), appendonly=False, extra_args=extra)
        try:
            yield engine.start()
        finally:
            engine.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    parser.add_argument("--redis-url", help="a single node; default: start an embedded engine")
    parser.add_argument("--intents", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10, help="log_event calls per intent")
    parser.add_argument(
        "--long-intents", type=int, help="intents whose logs grow long (default: N/20)"
    )
    parser.add_argument("--long-events", type=int, default=190, help="more events on each")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument(
        "--description-bytes",
        type=int,
        help="give each intent a description this long (default: 13 bytes)",
    )
    parser.add_argument(
        "--engine-config",
        action="append",
        default=[],
        metavar="'NAME VALUE'",
        help="a setting for the embedded engine, e.g. 'stream-node-max-bytes 1024' "
        "(repeatable; not with --redis-url)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="200 intents x 2 events, 10 long logs of 50 more"
    )
    parser.add_argument("--json", type=Path, help="also write the raw snapshots here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.intents, args.events, args.long_intents, args.long_events = 200, 2, 10, 50
    if args.long_intents is None:
        args.long_intents = max(1, args.intents // 20)
    if min(args.intents, args.events, args.long_intents, args.long_events) < 1:
        parser.error("--intents, --events, --long-intents and --long-events must be >= 1")
    args.long_intents = min(args.long_intents, args.intents)
    if args.engine_config and args.redis_url:
        parser.error("--engine-config sets up the embedded engine: not with --redis-url")
    description = "a bare intent"
    if args.description_bytes is not None:
        words = "the intent's description, as a person would write it; "
        description = (words * (args.description_bytes // len(words) + 1))[: args.description_bytes]
    command = "python -m bench.sizing " + shlex.join(sys.argv[1:] if argv is None else argv)
    with server(args.redis_url, args.engine_config) as url:
        result = run(
            url,
            args.intents,
            args.events,
            args.long_intents,
            args.long_events,
            args.partitions,
            command.strip(),
            description=description,
            reload=args.redis_url is None,
        )
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")


if __name__ == "__main__":
    main()
