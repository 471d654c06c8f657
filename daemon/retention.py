"""Bus retention: trim each partition's bus below what every consumer group has
acknowledged, keeping acknowledged entries ``retention_seconds`` more (for replays and
late readers), and never an entry some group has not read or not acknowledged. Reports
each group's lag and pending entries as gauges on the way. Intent event logs are the
audit trail and are not touched."""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import anyio
from redis.exceptions import ResponseError

from oibus.daemon.config import DaemonConfig
from oibus.daemon.metrics import Metrics
from oibus.sdk._async.client import AsyncClient

_log = logging.getLogger("oibus.daemon")


def _id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _after(text: str) -> str:
    """The smallest stream id above ``text``."""
    ms, seq = _id(text)
    return f"{ms}-{seq + 1}"


async def trim_floor(
    client: AsyncClient, key: str
) -> tuple[str | None, dict[str, tuple[int, int]]]:
    """The lowest id some group still needs (everything below it is acknowledged by every
    group), or None when the stream has no group; and each group's (lag, pending)."""
    r: Any = client.redis
    try:
        groups = cast("list[dict[str, Any]]", await r.xinfo_groups(key))
    except ResponseError as exc:  # no such stream yet
        if "no such key" in str(exc).lower():
            return None, {}
        raise
    if not groups:
        return None, {}
    floor: str | None = None
    stats: dict[str, tuple[int, int]] = {}
    for group in groups:
        name = str(group["name"])
        pending = int(group.get("pending") or 0)
        lag = group.get("lag")
        stats[name] = (int(lag) if lag is not None else 0, pending)
        # XPENDING answers min None when the entries XINFO counted were acknowledged in
        # between: then nothing is pending and the group needs only what follows its last
        # delivered entry
        oldest = (await r.xpending(key, name))["min"] if pending else None
        if oldest is not None:
            low = str(oldest)
        else:
            low = _after(str(group.get("last-delivered-id") or "0-0"))
        if floor is None or _id(low) < _id(floor):
            floor = low
    return floor, stats


async def trim_once(client: AsyncClient, config: DaemonConfig, metrics: Metrics) -> int:
    """One pass over the partitions; returns how many entries were removed."""
    ks, r = client.keyspace, cast("Any", client.redis)
    keep_from = f"{int((time.time() - config.retention_seconds) * 1000)}-0"
    removed = 0
    totals: dict[str, tuple[int, int]] = {}
    try:
        for p in range(ks.partitions):
            key = ks.bus(p)
            floor, stats = await trim_floor(client, key)
            for name, (lag, pending) in stats.items():
                old_lag, old_pending = totals.get(name, (0, 0))
                totals[name] = (old_lag + lag, old_pending + pending)
            if floor is None:
                continue
            minid = min(floor, keep_from, key=_id)
            removed += int(await r.xtrim(key, minid=minid, approximate=False))
    finally:
        # the gauges the alerts watch are published even when a trim fails part way
        # (what was read so far), so a broken trim cannot silence them
        for name, (lag, pending) in totals.items():
            metrics.lag.labels(name).set(lag)
            metrics.pending.labels(name).set(pending)
        metrics.trimmed.inc(removed)
        dead = [ks.bus_dead_letters, ks.dead_letters]
        metrics.dead_letters.set(sum([int(await r.xlen(key)) for key in dead]))
    return removed


async def retention_loop(client: AsyncClient, config: DaemonConfig, metrics: Metrics) -> None:
    while True:
        metrics.loop_heartbeats.labels("retention").inc()
        try:
            removed = await trim_once(client, config, metrics)
            if removed:
                _log.info("retention trimmed %d acknowledged bus entries", removed)
        except Exception as exc:  # survive and try again later
            metrics.loop_errors.labels("retention").inc()
            _log.warning("bus retention failed: %s", exc)
        await anyio.sleep(config.retention_interval)
