"""Reading the partition buses through the daemons' consumer group.

Every daemon is a consumer of the group ``oibus-daemon`` on every partition's bus, so the
daemons share the entries between them. An entry is acknowledged only after every handler
returned for it (their effects are durable in Redis by then, and idempotent, so handling
an entry again changes nothing). An entry whose handling failed stays pending and is tried
again; one that failed ``max_deliveries`` times goes to the dead-letter stream
``{ns}:dlq:bus`` (and is acknowledged) instead of looping forever. The pending entries of a
daemon whose heartbeat expired are claimed by a live one (liveness, not a fixed idle
time, decides: see ``liveness.py``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import msgspec
from redis.exceptions import ResponseError

from oibus.bus.consuming import REPLAY_FOR
from oibus.daemon.config import GROUP, DaemonConfig
from oibus.daemon.liveness import alive
from oibus.daemon.metrics import Metrics
from oibus.sdk._async.client import AsyncClient
from oibus.sdk.fanin import RAW_READ

Entry = tuple[str, dict[str, str]]
DEAD_LETTERS_MAX = 1_000_000
"""About how many bus dead letters are kept (as the other two stores keep)."""
Handler = Callable[[int, str, dict[str, str]], Awaitable[None]]

_log = logging.getLogger("oibus.daemon")


class BusReader:
    def __init__(
        self, client: AsyncClient, config: DaemonConfig, metrics: Metrics, handler: Handler
    ) -> None:
        self.client = client
        self.runner = client._runner
        self.redis: Any = client.redis  # redis-py's typed stream calls parse their replies
        self.ks = client.keyspace
        self.config = config
        self.metrics = metrics
        self.handler = handler
        self.consumer = config.daemon_id
        self._in_flight: set[tuple[int, str]] = set()
        self._held: set[tuple[int, str]] = set()
        """Entries a read loop has read and not yet finished (pending, but not failed)."""

    async def ensure_groups(self) -> None:
        """Create the group on every partition's bus, from the start of what is there:
        entries written before the first daemon ran are handled too."""
        for p in range(self.ks.partitions):
            try:
                await self.redis.xgroup_create(self.ks.bus(p), GROUP, "0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # -- handling -----------------------------------------------------------------------
    async def _handle(self, p: int, entry_id: str, fields: dict[str, str]) -> bool:
        """Run the handler; True when the entry is done and is to be acknowledged (the
        caller acknowledges a batch's entries in one XACK), False when it stays pending
        (being handled elsewhere, or failed under the delivery limit)."""
        if (p, entry_id) in self._in_flight:
            return False
        self._in_flight.add((p, entry_id))
        try:
            try:
                if fields.get(REPLAY_FOR, GROUP) == GROUP:  # else: a copy for an SDK group
                    await self.handler(p, entry_id, fields)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # a handler's failure must not stop the loop
                self.metrics.loop_errors.labels("bus").inc()
                _log.warning("bus entry %s/%s (%s) failed: %s", p, entry_id, fields.get("t"), exc)
                return await self._after_failure(p, entry_id, fields, exc)
            self.metrics.entries.labels(fields.get("t", "?")).inc()
            return True
        finally:
            self._in_flight.discard((p, entry_id))

    async def _handle_all(self, p: int, entries: list[Entry]) -> list[str]:
        """Handle entries in order; the ids to acknowledge. An entry trimmed while
        pending comes back without fields and is only acknowledged."""
        done: list[str] = []
        for entry_id, fields in entries:
            if not fields or await self._handle(p, entry_id, fields):
                done.append(entry_id)
        return done

    async def _ack(self, p: int, ids: list[str]) -> None:
        if ids:
            await self.runner.command("XACK", self.ks.bus(p), GROUP, *ids)

    async def _after_failure(
        self, p: int, entry_id: str, fields: dict[str, str], exc: Exception
    ) -> bool:
        """Past the delivery limit, the entry goes to the dead-letter stream (and is then
        to be acknowledged: True)."""
        rows = await self.redis.xpending_range(self.ks.bus(p), GROUP, entry_id, entry_id, 1)
        deliveries = int(rows[0]["times_delivered"]) if rows else 0
        if deliveries < self.config.max_deliveries:
            return False
        await self.runner.command(
            "XADD",
            self.ks.bus_dead_letters,
            "MAXLEN",
            "~",
            DEAD_LETTERS_MAX,
            "*",
            "partition",
            p,
            "entry",
            entry_id,
            "type",
            fields.get("t", ""),
            "intent",
            fields.get("i", ""),
            "deliveries",
            deliveries,
            "error",
            str(exc)[:2000],
            "fields",
            msgspec.json.encode(fields).decode(),
        )
        _log.error(
            "bus entry %s/%s (%s) moved to the dead-letter store after %d deliveries: %s",
            p,
            entry_id,
            fields.get("t"),
            deliveries,
            exc,
        )
        return True

    # -- the loops ----------------------------------------------------------------------
    async def run_partition(self, p: int) -> None:
        """Own pending entries first (left by this daemon id before a restart), then new
        ones, with a blocking read. A batch's entries are acknowledged in one XACK, sent
        in the same round trip as the next read (profiled: an XACK per entry was a third
        of the bus reader's round trips for a webhook delivery). Until then they stay
        held, so the reclaim pass does not take them up."""
        backlog = True
        acks: list[str] = []
        held: set[tuple[int, str]] = set()
        while True:
            self.metrics.loop_heartbeats.labels("bus").inc()
            try:
                entries = await self._read(p, backlog, acks)
            except Exception as exc:  # the server went away: wait and read again
                self.metrics.loop_errors.labels("bus").inc()
                _log.warning("reading bus %s failed: %s", p, exc)
                await anyio.sleep(1.0)
                continue
            # the acknowledgements went out with the read (or stay pending if they failed
            # with it: handled again, which changes nothing)
            self._held -= held
            acks = []
            if backlog and not entries:
                backlog = False
                continue
            held = {(p, entry_id) for entry_id, _ in entries}
            self._held |= held  # the reclaim pass must not take these up meanwhile
            try:
                acks = await self._handle_all(p, entries)
            except Exception as exc:
                # the server went away mid-batch (the delivery count of a failed entry):
                # what was not acknowledged stays pending, so read this daemon's own
                # pending entries again once it answers
                self.metrics.loop_errors.labels("bus").inc()
                _log.warning("handling entries of bus %s failed: %s", p, exc)
                backlog = True
                self._held -= held
                held = set()
                await anyio.sleep(1.0)
                continue
            if backlog and len(entries) < self.config.batch:
                backlog = False

    async def _read(self, p: int, backlog: bool, acks: list[str]) -> list[Entry]:
        """The acknowledgements of the last batch, then the next read, in one round trip
        where the client has a connection of its own for it (one server); else in two."""
        key = self.ks.bus(p)
        read: tuple[str | int, ...] = ("XREADGROUP", "GROUP", GROUP, self.consumer)
        read += ("COUNT", self.config.batch)
        if not backlog:
            read += ("BLOCK", self.config.block_ms)
        read += ("STREAMS", key, "0" if backlog else ">")
        if not self.runner.direct:
            await self._ack(p, acks)
            reply = await self.redis.xreadgroup(
                GROUP,
                self.consumer,
                {key: "0" if backlog else ">"},
                count=self.config.batch,
                block=None if backlog else self.config.block_ms,
            )
            return _entries(reply)
        batch: list[tuple[str | int, ...]] = [("XACK", key, GROUP, *acks)] if acks else []
        replies = await self.runner.round_trip([*batch, read], raw=RAW_READ)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return _entries(replies[-1])

    async def reclaim_once(self) -> int:
        """Take over the pending entries of dead daemons, retry this daemon's own failed
        ones, and drop consumers that are dead and hold nothing. Returns entries claimed."""
        claimed = 0
        for p in range(self.ks.partitions):
            key = self.ks.bus(p)
            summary = await self.redis.xpending(key, GROUP)
            holders = [str(c["name"]) for c in summary.get("consumers") or []]
            others = [c for c in holders if c != self.consumer]
            live = await alive(self.runner, self.ks, others)
            for dead in (c for c in others if c not in live):
                rows = await self.redis.xpending_range(
                    key, GROUP, "-", "+", self.config.batch, consumername=dead
                )
                ids = [str(r["message_id"]) for r in rows]
                if not ids:
                    continue
                got = await self.redis.xclaim(key, GROUP, self.consumer, 0, ids)
                entries = [e for e in _pairs(got) if e[1]]
                claimed += len(entries)
                self.metrics.reclaimed.inc(len(entries))
                _log.info("took over %d entries of dead daemon %s on bus %d", len(ids), dead, p)
                await self._ack(p, await self._handle_all(p, entries))
                if len(ids) < self.config.batch:
                    await self.redis.xgroup_delconsumer(key, GROUP, dead)
            if self.consumer in holders:  # own failed entries, idle for a while: again
                rows = await self.redis.xpending_range(
                    key,
                    GROUP,
                    "-",
                    "+",
                    self.config.batch,
                    consumername=self.consumer,
                    idle=int(self.config.heartbeat_ttl * 500),
                )
                ids = [
                    str(r["message_id"])
                    for r in rows
                    if (p, str(r["message_id"])) not in self._held
                ]
                if ids:
                    got = await self.redis.xclaim(key, GROUP, self.consumer, 0, ids)
                    mine = [e for e in _pairs(got) if e[1] and (p, e[0]) not in self._held]
                    await self._ack(p, await self._handle_all(p, mine))
        return claimed

    async def reclaim_loop(self) -> None:
        while True:
            self.metrics.loop_heartbeats.labels("reclaim").inc()
            try:
                await self.reclaim_once()
            except Exception as exc:  # survive and try again: a loop that dies loses work
                self.metrics.loop_errors.labels("reclaim").inc()
                _log.warning("reclaiming pending bus entries failed: %s", exc)
            await anyio.sleep(self.config.heartbeat_ttl / 2)


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP's reply for one stream, as (id, fields) pairs."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3 clients: {stream: entries}
        reply = list(reply.items())
    return _pairs(reply[0][1])


def _pairs(raw: Any) -> list[Entry]:
    out: list[Entry] = []
    for item in raw or []:
        entry_id, fields = item[0], item[1]
        if isinstance(fields, list):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        out.append((str(entry_id), dict(fields or {})))
    return out
