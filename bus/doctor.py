"""What ``oibus doctor`` concludes from what it read: each finding has a level, and an
``unsafe`` one is a setting or state under which oibus can lose or corrupt coordination
(the exit code says so). Pure: the facts are read elsewhere (``daemon/admin.py``)."""

from __future__ import annotations

from typing import Literal

import msgspec

Level = Literal["ok", "warn", "unsafe"]

MEMORY_WARN = 0.80
MEMORY_UNSAFE = 0.95
LAG_WARN = 10_000
"""Entries a group may trail its stream by before doctor mentions it."""


class Finding(msgspec.Struct, frozen=True):
    level: Level
    topic: str
    message: str


class NodeFacts(msgspec.Struct, frozen=True, kw_only=True):
    """One primary, as INFO and CONFIG GET report it. ``None``: the server refused to say
    (managed services often disable CONFIG)."""

    address: str
    engine: str
    version: str
    role: str
    used_memory: int
    maxmemory: int
    maxmemory_policy: str | None
    appendonly: bool | None
    appendfsync: str | None
    save: str | None
    aof_last_write_ok: bool
    rdb_last_bgsave_ok: bool
    rdb_changes_since_save: int
    scripts_missing: list[str]


class GroupFacts(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer group over the streams it reads (every partition's bus, or every
    webhook queue): summed over them."""

    name: str
    kind: Literal["bus", "webhooks"]
    streams: int
    consumers: list[str]
    live_consumers: list[str]
    pending: int
    lag: int | None
    """None when the server cannot tell (before Redis 7, or after deletions)."""
    idle_ms: int | None
    """Since the group's most recently active consumer last read (None: no consumers)."""


class BusFacts(msgspec.Struct, frozen=True, kw_only=True):
    mode: Literal["standalone", "cluster", "sentinel"]
    namespace: str
    partitions: int
    recorded_partitions: int | None
    nodes: list[NodeFacts]
    cluster_state: str | None
    scripts: int
    groups: list[GroupFacts]
    live_daemons: list[str]
    dead_letters: dict[str, int]
    round_trip_ms: float


def diagnose(facts: BusFacts) -> list[Finding]:
    out: list[Finding] = []
    out += [f for node in facts.nodes for f in _node(node, len(facts.nodes) > 1)]
    if facts.cluster_state not in (None, "ok"):
        out.append(Finding("unsafe", "cluster", f"cluster_state is {facts.cluster_state}"))
    if facts.recorded_partitions is not None and facts.recorded_partitions != facts.partitions:
        out.append(
            Finding(
                "unsafe",
                "namespace",
                f"namespace {facts.namespace} was set up with {facts.recorded_partitions} "
                f"partitions, not {facts.partitions}: pass --partitions "
                f"{facts.recorded_partitions}",
            )
        )
    if facts.live_daemons:
        out.append(Finding("ok", "daemon", f"live daemons: {', '.join(facts.live_daemons)}"))
    else:
        out.append(
            Finding(
                "unsafe",
                "daemon",
                "no live daemon: nothing dispatches retries or fallbacks, records expired "
                "leases, catches portfolios up, trims the buses or delivers webhooks "
                "(start `oibus daemon`)",
            )
        )
    out += [f for group in facts.groups for f in _group(group)]
    for kind, size in sorted(facts.dead_letters.items()):
        if size:
            out.append(
                Finding(
                    "warn",
                    "dead letters",
                    f"{size} {kind} dead letters (oibus dlq list --kind {kind})",
                )
            )
    if not any(facts.dead_letters.values()):
        out.append(Finding("ok", "dead letters", "no dead letters"))
    return out


def _node(node: NodeFacts, several: bool) -> list[Finding]:
    at = f"{node.address}: " if several else ""
    out: list[Finding] = []
    if node.role != "master":
        out.append(
            Finding(
                "unsafe",
                "role",
                f"{at}connected to a {node.role}: writes fail (point the URL at the "
                "primary, or use redis+sentinel:// so failovers are followed)",
            )
        )
    policy = node.maxmemory_policy
    if policy is None:
        out.append(
            Finding("warn", "eviction", f"{at}maxmemory-policy unknown (CONFIG GET refused)")
        )
    elif policy != "noeviction":
        out.append(
            Finding(
                "unsafe",
                "eviction",
                f"{at}maxmemory-policy is {policy}: under memory pressure the server "
                "deletes keys (leases, heartbeats, intents) and coordination breaks; "
                "set noeviction so writes fail loudly instead",
            )
        )
    else:
        out.append(Finding("ok", "eviction", f"{at}maxmemory-policy noeviction"))
    if node.maxmemory:
        share = node.used_memory / node.maxmemory
        text = f"{at}memory {share:.0%} of maxmemory ({node.used_memory:,} bytes)"
        if share >= MEMORY_UNSAFE:
            out.append(Finding("unsafe", "memory", text + ": writes are about to be refused"))
        elif share >= MEMORY_WARN:
            out.append(Finding("warn", "memory", text))
        else:
            out.append(Finding("ok", "memory", text))
    out += _persistence(node, at)
    if node.scripts_missing:
        out.append(
            Finding(
                "warn",
                "scripts",
                f"{at}{len(node.scripts_missing)} scripts not in the script cache (loaded on "
                "first use; `oibus scripts load` loads them now)",
            )
        )
    else:
        out.append(Finding("ok", "scripts", f"{at}every script is loaded"))
    return out


def _persistence(node: NodeFacts, at: str) -> list[Finding]:
    if node.appendonly is None:
        return [Finding("warn", "persistence", f"{at}persistence unknown (CONFIG GET refused)")]
    out: list[Finding] = []
    if not node.aof_last_write_ok:
        out.append(Finding("unsafe", "persistence", f"{at}the last append-only file write failed"))
    if not node.rdb_last_bgsave_ok:
        out.append(Finding("unsafe", "persistence", f"{at}the last RDB snapshot failed"))
    if node.appendonly:
        fsync = node.appendfsync or "?"
        if fsync == "no":
            out.append(
                Finding(
                    "warn",
                    "persistence",
                    f"{at}appendonly yes but appendfsync no: a host crash loses what the "
                    "kernel had not written (everysec loses at most a second)",
                )
            )
        else:
            out.append(Finding("ok", "persistence", f"{at}appendonly yes, appendfsync {fsync}"))
    elif node.save:
        out.append(
            Finding(
                "warn",
                "persistence",
                f"{at}RDB snapshots only (save {node.save}): a crash loses every change "
                f"since the last snapshot ({node.rdb_changes_since_save} now); "
                "turn on appendonly",
            )
        )
    else:
        out.append(
            Finding(
                "unsafe",
                "persistence",
                f"{at}no persistence (appendonly no, no save points): a restart loses "
                "every intent, lease and event",
            )
        )
    return out


def _group(group: GroupFacts) -> list[Finding]:
    name = f"group {group.name} ({group.kind})"
    out: list[Finding] = []
    dead = [c for c in group.consumers if c not in group.live_consumers]
    if group.pending and not group.live_consumers:
        out.append(
            Finding(
                "warn",
                "groups",
                f"{name}: {group.pending} entries pending and no live consumer: they wait "
                "for a consumer of the group to start (or `oibus groups delete` for a "
                "retired one: a group keeps the buses from being trimmed)",
            )
        )
    if group.lag is not None and group.lag >= LAG_WARN:
        out.append(Finding("warn", "groups", f"{name}: {group.lag} entries not read yet"))
    if not out:
        idle = "" if group.idle_ms is None else f", idle {group.idle_ms / 1000:.1f} s"
        out.append(
            Finding(
                "ok",
                "groups",
                f"{name}: {len(group.live_consumers)} live of {len(group.consumers)} consumers, "
                f"{group.pending} pending, lag {'?' if group.lag is None else group.lag}{idle}"
                + (
                    f" ({len(dead)} dead consumers hold nothing)"
                    if dead and not group.pending
                    else ""
                ),
            )
        )
    return out


def worst(findings: list[Finding]) -> Level:
    levels: list[Level] = ["ok", "warn", "unsafe"]
    return max((f.level for f in findings), key=levels.index, default="ok")
