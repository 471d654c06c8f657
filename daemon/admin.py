"""What the admin commands read from a live bus: server facts for ``doctor``, consumer
groups, counts for ``stats``. Reads only; every read is bounded (a fixed number of calls
per partition, per primary or per subscription), never a scan of the keyspace."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import anyio
import msgspec
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ResponseError

from oibus.bus.doctor import BusFacts, GroupFacts, NodeFacts
from oibus.bus.registry import default_registry
from oibus.bus.statuses import IntentStatus
from oibus.daemon.config import GROUP as DAEMON_GROUP
from oibus.daemon.liveness import live_daemons
from oibus.sdk._async.client import AsyncClient
from oibus.sdk.fanin import is_cluster

Mode = Literal["standalone", "cluster", "sentinel"]

SUBSCRIPTION_QUEUES = 1000
"""Most webhook queues ``groups`` looks at (the namespace holds at most about this many
subscriptions per scope)."""


def mode_of(client: AsyncClient) -> Mode:
    if is_cluster(client.redis):
        return "cluster"
    pool = cast(Redis, client.redis).connection_pool
    return "sentinel" if isinstance(pool, SentinelConnectionPool) else "standalone"


@asynccontextmanager
async def primaries(client: AsyncClient) -> AsyncIterator[list[tuple[str, Redis]]]:
    """A connection to each primary: the client's own on one server; on a cluster, one
    per primary node (node-level commands like INFO must not be routed by key)."""
    if not is_cluster(client.redis):
        pool: Any = cast(Redis, client.redis).connection_pool
        if mode_of(client) == "sentinel":
            host, port = await pool.get_master_address()
        else:
            host, port = pool.connection_kwargs.get("host"), pool.connection_kwargs.get("port")
        where = f"{host}:{port}"
        yield [(where, cast(Redis, client.redis))]
        return
    cluster: Any = client.redis
    await cluster.initialize()
    nodes = [(f"{n.host}:{n.port}", n) for n in cluster.get_primaries()]
    opened: list[tuple[str, Redis]] = []
    try:
        for where, node in nodes:
            kw = node.connection_kwargs
            opened.append(
                (
                    where,
                    Redis(
                        host=node.host,
                        port=node.port,
                        password=kw.get("password"),
                        username=kw.get("username"),
                        decode_responses=True,
                        socket_timeout=10,
                    ),
                )
            )
        yield opened
    finally:
        for _, conn in opened:
            await conn.aclose()


async def _config(r: Redis, name: str) -> str | None:
    try:
        found = await r.config_get(name)
    except ResponseError:  # CONFIG disabled or renamed (managed services)
        return None
    value = found.get(name)
    return None if value is None else str(value)


async def node_facts(where: str, r: Redis) -> NodeFacts:
    info = await r.info()
    policy = await _config(r, "maxmemory-policy")
    appendonly = await _config(r, "appendonly")
    fsync = await _config(r, "appendfsync")
    save = await _config(r, "save")
    registry = default_registry()
    names = list(registry)
    exists = await r.script_exists(*[registry[n].sha for n in names])
    return NodeFacts(
        address=where,
        engine=str(info.get("server_name") or "redis"),
        version=str(info.get("valkey_version") or info.get("redis_version", "?")),
        role=str(info.get("role", "?")),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=policy or str(info.get("maxmemory_policy") or "") or None,
        appendonly=None if appendonly is None else appendonly == "yes",
        appendfsync=fsync,
        save=save,
        aof_last_write_ok=info.get("aof_last_write_status", "ok") == "ok",
        rdb_last_bgsave_ok=info.get("rdb_last_bgsave_status", "ok") == "ok",
        rdb_changes_since_save=int(info.get("rdb_changes_since_last_save", 0)),
        scripts_missing=[n for n, ok in zip(names, exists, strict=True) if not ok],
    )


class _Stream(msgspec.Struct):
    pending: int = 0
    lag: int | None = 0
    consumers: dict[str, int] = msgspec.field(default_factory=dict)
    """consumer → idle ms"""


async def group_rows(redis: Any, key: str) -> list[dict[str, Any]]:
    try:
        return cast("list[dict[str, Any]]", await redis.xinfo_groups(key))
    except ResponseError:  # no such stream yet
        return []


async def consumer_rows(redis: Any, key: str, group: str) -> list[dict[str, Any]]:
    """XINFO CONSUMERS of one group (name, pending, idle ms), none if the group is gone."""
    try:
        return cast("list[dict[str, Any]]", await redis.xinfo_consumers(key, group))
    except ResponseError:
        return []


async def _consumers(redis: Any, key: str, group: str) -> dict[str, int]:
    rows = await consumer_rows(redis, key, group)
    return {str(row["name"]): int(row.get("idle", 0)) for row in rows}


async def group_facts(client: AsyncClient, daemons: list[str] | None = None) -> list[GroupFacts]:
    """Every consumer group on the partition buses, summed over the partitions, and the
    webhook delivery group summed over the subscriptions' queues. ``daemons``: the live
    daemons, when the caller has read them already."""
    ks = client.keyspace
    redis: Any = client.redis
    found: dict[tuple[str, str], _Stream] = {}
    streams: dict[tuple[str, str], int] = {}
    sids = sorted(await client._runner.command("HKEYS", ks.subscriptions))[:SUBSCRIPTION_QUEUES]
    keys = [("bus", ks.bus(p)) for p in range(ks.partitions)]
    keys += [("webhooks", ks.webhook_queue(s)) for s in sids]

    async def read(kind: str, key: str) -> None:
        for row in await group_rows(redis, key):
            name = str(row["name"])
            consumers = await _consumers(redis, key, name)
            acc = found.setdefault((kind, name), _Stream())
            streams[(kind, name)] = streams.get((kind, name), 0) + 1
            acc.pending += int(row.get("pending", 0))
            lag = row.get("lag")
            acc.lag = None if lag is None or acc.lag is None else acc.lag + int(lag)
            for c, idle in consumers.items():
                acc.consumers[c] = min(idle, acc.consumers.get(c, idle))

    async with anyio.create_task_group() as tg:
        for kind, key in keys:
            tg.start_soon(read, kind, key)
    out: list[GroupFacts] = []
    if daemons is None and found:
        daemons = await live_daemons(client._runner, ks)
    for (kind, name), acc in sorted(found.items()):
        names = sorted(acc.consumers)
        live = await _live_consumers(client, kind, name, names, set(daemons or ()))
        out.append(
            GroupFacts(
                name=name,
                kind=cast(Literal["bus", "webhooks"], kind),
                streams=streams[(kind, name)],
                consumers=names,
                live_consumers=live,
                pending=acc.pending,
                lag=acc.lag,
                idle_ms=min(acc.consumers.values()) if acc.consumers else None,
            )
        )
    return out


async def _live_consumers(
    client: AsyncClient, kind: str, group: str, names: list[str], daemons: set[str]
) -> list[str]:
    """A consumer is live while its heartbeat key exists: daemons beat under their id,
    SDK consumers and agents under the group and consumer name. Webhook workers hold
    no pending entries between deliveries, so they count as live while the daemons are."""
    ks = client.keyspace
    if not names:
        return []
    if kind == "webhooks":
        return names if daemons else []
    if group == DAEMON_GROUP:
        return [n for n in names if n in daemons]
    beats = await client._runner.commands(
        [("EXISTS", ks.consumer_heartbeat(group, n)) for n in names]
    )
    return [n for n, alive in zip(names, beats, strict=True) if alive]


async def dead_letter_sizes(client: AsyncClient) -> dict[str, int]:
    ks = client.keyspace
    sizes = await client._runner.commands(
        [("XLEN", ks.dead_letters), ("XLEN", ks.bus_dead_letters), ("XLEN", ks.event_dead_letters)]
    )
    return dict(zip(("webhooks", "bus", "events"), (int(s) for s in sizes), strict=True))


async def bus_facts(client: AsyncClient) -> BusFacts:
    ks = client.keyspace
    started = time.perf_counter()
    await client.redis.ping()
    rtt = (time.perf_counter() - started) * 1000
    async with primaries(client) as nodes:
        facts = [await node_facts(where, r) for where, r in nodes]
    cluster_state = None
    if is_cluster(client.redis):
        info = await cast(Any, client.redis).cluster_info()
        cluster_state = str(info.get("cluster_state", "?"))
    recorded = await client._runner.command("HGET", ks.meta, "partitions")
    daemons = await live_daemons(client._runner, ks)
    return BusFacts(
        mode=mode_of(client),
        namespace=ks.namespace,
        partitions=ks.partitions,
        recorded_partitions=int(recorded) if recorded else None,
        nodes=facts,
        cluster_state=cluster_state,
        scripts=len(default_registry()),
        groups=await group_facts(client, daemons),
        live_daemons=daemons,
        dead_letters=await dead_letter_sizes(client),
        round_trip_ms=rtt,
    )


class BusStats(msgspec.Struct, frozen=True, kw_only=True):
    intents: int
    by_status: dict[str, int]
    portfolios: int
    events_last_minute: int
    events_per_second: float
    events_counted_exactly: bool
    leases_live: int
    retries_due: int
    subscriptions: int
    live_daemons: list[str]
    dead_letters: dict[str, int]


RATE_WINDOW_MS = 60_000
RATE_SAMPLE = 1000
"""Newest bus entries per partition the events/s figure reads. When all of them are
within the last minute, the partition's count is extrapolated from their span
(``events_counted_exactly`` false): the figure stays cheap at any rate."""


async def bus_stats(client: AsyncClient) -> BusStats:
    """Counts from the per-partition indexes (ZCARD), so the cost is P small reads per
    figure whatever the size of the bus; events/s from the bus entries' ids (their
    server-clock times) over the last minute."""
    ks = client.keyspace
    runner = client._runner
    parts = range(ks.partitions)
    statuses = [s.value for s in IntentStatus]
    now = await runner.command("TIME")
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    cutoff = now_ms - RATE_WINDOW_MS
    batch: list[tuple[str | int, ...]] = []
    for p in parts:
        batch += [("ZCARD", ks.index_status(p, s)) for s in statuses]
        batch += [
            ("ZCARD", ks.index_portfolios(p)),
            ("ZCARD", ks.due_leases(p)),
            ("ZCARD", ks.due_retries(p)),
            ("XREVRANGE", ks.bus(p), "+", "-", "COUNT", RATE_SAMPLE),
        ]
    replies = await runner.commands(batch)
    width = len(statuses) + 4
    by_status = dict.fromkeys(statuses, 0)
    portfolios = leases = retries = 0
    events = 0.0
    exact = True
    for p in parts:
        row = replies[p * width : (p + 1) * width]
        for s, n in zip(statuses, row, strict=False):
            by_status[s] += int(n)
        portfolios += int(row[len(statuses)])
        leases += int(row[len(statuses) + 1])
        retries += int(row[len(statuses) + 2])
        times = [int(entry_id.split("-")[0]) for entry_id, _ in row[len(statuses) + 3]]
        recent = [t for t in times if t >= cutoff]
        if len(recent) < RATE_SAMPLE:
            events += len(recent)
        else:  # busier than the sample shows: extrapolate from its span
            exact = False
            span = max(1, now_ms - recent[-1])
            events += len(recent) * RATE_WINDOW_MS / span
    subs = int(await runner.command("HLEN", ks.subscriptions))
    return BusStats(
        intents=sum(by_status.values()),
        by_status=by_status,
        portfolios=portfolios,
        events_last_minute=round(events),
        events_per_second=events / (RATE_WINDOW_MS / 1000),
        events_counted_exactly=exact,
        leases_live=leases,
        retries_due=retries,
        subscriptions=subs,
        live_daemons=await live_daemons(runner, ks),
        dead_letters=await dead_letter_sizes(client),
    )
