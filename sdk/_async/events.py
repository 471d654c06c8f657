"""Consuming events: consumer groups over an intent's log, a portfolio's log or every
partition's bus (``events``), and a best-effort live tail for people and tools
(``tail``).

Delivery is at least once. An entry is acknowledged after its handler returned (with
``auto_ack``, when the next one is asked for); one a consumer still holds when it dies
stays pending and a live consumer of the same group takes it over as soon as the dead
one's heartbeat key has expired (liveness, not a fixed visibility timeout); one handed
out more than ``max_deliveries`` times goes to ``{ns}:dlq:events`` instead of looping
forever. Reads block on the server (``XREADGROUP BLOCK``): nothing polls.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from redis.exceptions import ResponseError

from oibus.bus.codec import decode_event
from oibus.bus.consuming import (
    START_NEW,
    Delivery,
    Pointer,
    Source,
    check_name,
    check_types,
    dead_letter_fields,
    inline_delivery,
    log_key,
    parse_pointer,
    plan_source,
    start_id,
    wanted,
)
from oibus.bus.errors import ValidationError
from oibus.sdk._async.base import AsyncClientBase
from oibus.sdk.fanin import RAW_READ, AsyncBeat, AsyncFanIn, entries_of, is_cluster


def default_consumer() -> str:
    """Unique per process and stream: a restarted process is a new consumer, and its old
    name's pending entries are taken over once that name's heartbeat is gone."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class AsyncEventStream:
    """A consumer of one group; iterate it for ``Delivery`` objects (see the module)."""

    def __init__(
        self,
        client: AsyncClientBase,
        source: Source,
        group: str,
        consumer: str,
        *,
        event_types: frozenset[str] | None,
        assigned_to: str | None,
        start: str,
        count: int,
        block_ms: int,
        auto_ack: bool,
        heartbeat_ttl: float,
        max_deliveries: int,
        payloads: bool | frozenset[str],
    ) -> None:
        self.client = client
        self.redis: Any = client.redis  # redis-py's stream helpers parse their replies
        self.source, self.group, self.consumer = source, group, consumer
        self.event_types, self.assigned_to, self.start = event_types, assigned_to, start
        self.count, self.block_ms, self.auto_ack = count, block_ms, auto_ack
        self.heartbeat_ttl, self.max_deliveries, self.payloads = (
            heartbeat_ttl,
            max_deliveries,
            payloads,
        )
        ks = client.keyspace
        self._beat = AsyncBeat(
            self.redis, ks.consumer_heartbeat(group, consumer), heartbeat_ttl, str(os.getpid())
        )
        self._fanin = AsyncFanIn(self.redis, group, consumer, source.keys)
        self._buffer: deque[Delivery] = deque()
        self._acks: dict[str, list[str]] = {}
        self._held: set[tuple[str, str]] = set()
        self._last: Delivery | None = None
        self._open = False
        self._backlog = True
        self._next_reclaim = 0.0

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.ensure_group()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def ensure_group(self) -> None:
        """Create the group on every stream (idempotent) and start the heartbeat."""
        if self._open:
            return
        first = start_id(self.start)
        for key in self.source.keys:
            try:
                await self.redis.xgroup_create(key, self.group, first, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        await self._beat.start()
        self._open = True
        self._next_reclaim = 0.0  # the first read looks for dead consumers' events

    async def aclose(self) -> None:
        """Acknowledge what was handled; what is still held goes back to the group (the
        heartbeat is deleted, so another consumer takes it over at once)."""
        if self.auto_ack and self._last is not None:
            self._queue_ack(self._last)
            self._last = None
        try:
            await self._flush_acks()
        finally:
            await self._fanin.aclose()
            await self._beat.stop()
            self._open = False

    # -- iteration ----------------------------------------------------------------------
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        if self._last is not None:
            if self.auto_ack:
                self._queue_ack(self._last)
            self._last = None
        while not self._buffer:
            await self._flush_acks()
            self._buffer.extend(await self.read())
        delivery = self._buffer.popleft()
        self._last = delivery
        return delivery

    async def read(self, count: int | None = None) -> list[Delivery]:
        """One batch of at most ``count`` new entries: this consumer's own pending entries
        first (left by an earlier run under the same name), those of dead consumers when
        it is time to look, then new entries, waiting up to the block time. The caller
        acknowledges them (``ack`` or ``ack_later``)."""
        await self.ensure_group()
        if time.monotonic() >= self._next_reclaim:
            await self._flush_acks()
            self._next_reclaim = time.monotonic() + self.heartbeat_ttl / 2
            taken = await self._reclaim()
            if taken:
                return await self._deliver(taken)
        if self._backlog:
            await self._flush_acks()
            own = await self._own_pending()
            if own:
                return await self._deliver(own)
            self._backlog = False
        fresh = await self._read_new(count or self.count)
        return await self._deliver([(k, i, f, 1) for k, i, f in fresh])

    async def _read_new(self, count: int) -> list[tuple[str, str, dict[str, str]]]:
        """New entries, with the acknowledgements queued so far sent ahead of the read in
        the same round trip (one server, the runner's own connections): a consumer that
        reads an entry or two at a time paid a round trip for the XACK and one for the
        XREADGROUP (profiled: most of an agent's CPU per assignment at 500-1,000/s)."""
        runner = self.client._runner
        if self._fanin.split or not runner.direct:
            await self._flush_acks()
            return await self._fanin.read(count, self.block_ms)
        keys = self.source.keys
        acks, self._acks = self._acks, {}
        batch: list[tuple[str | int, ...]] = [
            ("XACK", key, self.group, *ids) for key, ids in acks.items()
        ]
        read: tuple[str | int, ...] = ("XREADGROUP", "GROUP", self.group, self.consumer)
        read += ("COUNT", count, "BLOCK", self.block_ms, "STREAMS", *keys)
        batch.append(read + (">",) * len(keys))
        try:
            replies = await runner.round_trip(batch, raw=RAW_READ)
        except BaseException:  # keep them for the next read or flush
            for key, ids in acks.items():
                self._acks.setdefault(key, []).extend(ids)
            raise
        failed = [r for r in replies[:-1] if isinstance(r, Exception)]
        if failed:
            for key, ids in acks.items():
                self._acks.setdefault(key, []).extend(ids)
            raise failed[0]
        if self._held:
            for key, ids in acks.items():
                self._held.difference_update((key, i) for i in ids)
        if isinstance(replies[-1], Exception):
            raise replies[-1]
        return entries_of(replies[-1])

    async def ack(self, *deliveries: Delivery) -> None:
        """Acknowledge now (the explicit form; with ``auto_ack`` it happens by itself)."""
        for delivery in deliveries:
            self._queue_ack(delivery)
            if self._last is delivery:
                self._last = None
        await self._flush_acks()

    def ack_later(self, *deliveries: Delivery) -> None:
        """Acknowledge with the next read or ``flush_acks`` (one XACK for a batch)."""
        acks = self._acks
        for delivery in deliveries:
            acks.setdefault(delivery.stream, []).append(delivery.entry_id)

    async def flush_acks(self) -> None:
        """Send the acknowledgements queued by ``ack_later``."""
        await self._flush_acks()

    # -- internals ----------------------------------------------------------------------
    def _queue_ack(self, delivery: Delivery) -> None:
        self._acks.setdefault(delivery.stream, []).append(delivery.entry_id)

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        batch, self._acks = self._acks, {}
        try:
            await self.client._runner.commands(
                [("XACK", key, self.group, *ids) for key, ids in batch.items()]
            )
        except BaseException:  # keep them for the next flush
            for key, ids in batch.items():
                self._acks.setdefault(key, []).extend(ids)
            raise
        if self._held:
            for key, ids in batch.items():
                self._held.difference_update((key, i) for i in ids)

    async def _own_pending(self) -> list[tuple[str, str, dict[str, str], int]]:
        out: list[tuple[str, str, dict[str, str], int]] = []
        for key in self.source.keys:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, {key: "0"}, count=self.count
            )
            entries = [e for e in entries_of(reply) if (e[0], e[1]) not in self._held]
            if entries:
                counts = await self._counts(key, self.consumer, [e[1] for e in entries])
                out.extend((k, i, f, counts.get(i, 1)) for k, i, f in entries)
        return out

    async def _counts(self, key: str, consumer: str, ids: list[str]) -> dict[str, int]:
        rows = await self.redis.xpending_range(
            key, self.group, ids[0], ids[-1], len(ids) + 16, consumername=consumer
        )
        return {str(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def _reclaim(self) -> list[tuple[str, str, dict[str, str], int]]:
        """Take over what dead consumers of the group hold, and forget those consumers
        once they hold nothing."""
        taken: list[tuple[str, str, dict[str, str], int]] = []
        ks = self.client.keyspace
        keys = self.source.keys
        # every stream's summary in one round trip: this runs in the reading loop, and
        # sixteen sequential reads stalled it every few seconds (an agent's tail latency)
        summaries = await self.client._runner.commands(
            [("XPENDING", key, self.group) for key in keys]
        )
        for key, summary in zip(keys, summaries, strict=True):
            others = [
                str(c["name"])
                for c in summary.get("consumers") or []
                if str(c["name"]) != self.consumer
            ]
            if not others:
                continue
            beats = await self.client._runner.commands(
                [("EXISTS", ks.consumer_heartbeat(self.group, c)) for c in others]
            )
            for dead in (c for c, alive in zip(others, beats, strict=True) if not alive):
                rows = await self.redis.xpending_range(
                    key, self.group, "-", "+", self.count, consumername=dead
                )
                ids = [str(r["message_id"]) for r in rows]
                if ids:
                    before = {str(r["message_id"]): int(r["times_delivered"]) for r in rows}
                    got = await self.redis.xclaim(key, self.group, self.consumer, 0, ids)
                    for entry_id, fields in got or []:
                        eid = str(entry_id)
                        taken.append((key, eid, dict(fields or {}), before.get(eid, 0) + 1))
                if len(ids) < self.count:
                    await self.redis.xgroup_delconsumer(key, self.group, dead)
        return taken

    async def _deliver(
        self, entries: Iterable[tuple[str, str, dict[str, str], int]]
    ) -> list[Delivery]:
        """Entries to deliveries: empty ones (trimmed while pending) and unwanted types are
        acknowledged at once, over-delivered ones go to the dead-letter stream, pointers
        are joined with their events (one pipelined round trip)."""
        keep: list[tuple[str, str, dict[str, str], int]] = []
        held = self._held if self._backlog else None  # only the backlog's reads look at it
        types, assigned_to, group, acks = self.event_types, self.assigned_to, self.group, self._acks
        for item in entries:
            key, entry_id, fields, deliveries = item
            if held is not None:
                held.add((key, entry_id))
            if not wanted(fields, types, assigned_to, group):
                acks.setdefault(key, []).append(entry_id)
            elif deliveries > self.max_deliveries:
                await self.client._runner.command(
                    "XADD",
                    self.client.keyspace.event_dead_letters,
                    "MAXLEN",
                    "~",
                    1_000_000,
                    "*",
                    *dead_letter_fields(self.group, key, entry_id, fields, deliveries),
                )
                self._acks.setdefault(key, []).append(entry_id)
            else:
                keep.append(item)
        skipped, out = await join_events(self.client, self.source, keep, self.payloads)
        for key, entry_id in skipped:
            self._acks.setdefault(key, []).append(entry_id)
        return out


async def join_events(
    client: AsyncClientBase,
    source: Source,
    entries: list[tuple[str, str, dict[str, str], int]],
    payloads: bool | frozenset[str],
) -> tuple[list[tuple[str, str]], list[Delivery]]:
    """Entries of ``source`` as deliveries: log entries are events already; bus pointers
    are joined with their events in one pipelined round trip. Returns the entries that
    are not pointers (to acknowledge and skip) and the deliveries."""
    if source.owner is not None:
        owner = source.owner
        return [], [
            Delivery(
                event=decode_event(owner, i, f),
                stream=k,
                entry_id=i,
                deliveries=n,
                portfolio_id=owner if k.endswith(f":pe:{owner}") else None,
            )
            for k, i, f, n in entries
        ]
    bad: list[tuple[str, str]] = []
    out: list[Delivery | None] = []
    fetch: list[tuple[int, Pointer, str, str, int]] = []
    for key, entry_id, fields, deliveries in entries:
        if payloads is True or (isinstance(payloads, frozenset) and fields.get("t") in payloads):
            inline = inline_delivery(key, entry_id, fields, deliveries)
            if inline is not None:
                out.append(inline)
                continue
        pointer = parse_pointer(fields)
        if pointer is None:
            bad.append((key, entry_id))
            continue
        if payloads is not True and not (
            isinstance(payloads, frozenset) and pointer.event_type in payloads
        ):
            found: Mapping[str, str] = _bare(pointer)
        elif "p" in fields:  # the event travelled in its pointer (a small payload)
            found = fields
        else:  # read from the intent's log below
            fetch.append((len(out), pointer, key, entry_id, deliveries))
            out.append(None)
            continue
        out.append(_delivery(pointer, key, entry_id, deliveries, found))
    if fetch:
        ks = client.keyspace
        replies = await client._runner.commands(
            [("XRANGE", log_key(ks, p), p.event_id, p.event_id) for _, p, _, _, _ in fetch]
        )
        for (n, pointer, key, entry_id, deliveries), reply in zip(fetch, replies, strict=True):
            found = dict(reply[0][1]) if reply else _bare(pointer)  # bare: the entry is gone
            out[n] = _delivery(pointer, key, entry_id, deliveries, found)
    return bad, [d for d in out if d is not None]


def _bare(pointer: Pointer) -> dict[str, str]:
    """No payload (none asked for, or the log entry is gone): the event is its pointer's
    type, actor and ids."""
    return {"s": str(pointer.seq), "t": pointer.event_type, "a": pointer.actor}


def _delivery(
    pointer: Pointer, key: str, entry_id: str, deliveries: int, fields: Mapping[str, str]
) -> Delivery:
    return Delivery(
        event=decode_event(pointer.intent_id, pointer.event_id, fields),
        stream=key,
        entry_id=entry_id,
        deliveries=deliveries,
        agents=pointer.agents,
        portfolio_id=pointer.intent_id if pointer.portfolio else None,
        member_id=pointer.member_id,
        hint=pointer.hint,
    )


class AsyncEventTail:
    """A live tail with no group (XREAD from now): for people and tools. Best-effort by
    design: a tail that stops or falls behind the retention misses what it did not read,
    and nothing is kept for it; use ``events`` for anything that must not miss."""

    def __init__(
        self,
        client: AsyncClientBase,
        source: Source,
        event_types: frozenset[str] | None,
        block_ms: int,
    ) -> None:
        self.client, self.source, self.event_types, self.block_ms = (
            client,
            source,
            event_types,
            block_ms,
        )
        self.redis: Any = client.redis
        self._split = is_cluster(self.redis) and len(source.keys) > 1
        self._ids: dict[str, str] = {}
        self._started = False
        self._buffer: deque[Delivery] = deque()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        while not self._buffer:
            self._buffer.extend(await self.read())
        return self._buffer.popleft()

    async def pin(self) -> None:
        """Start following from now (the first read does it otherwise): pins the last
        entry of each stream, so nothing appended between reads is missed."""
        keys = self.source.keys
        tails = await self.client._runner.commands(
            [("XREVRANGE", k, "+", "-", "COUNT", 1) for k in keys]
        )
        self._ids = {k: (t[0][0] if t else "0-0") for k, t in zip(keys, tails, strict=True)}
        self._started = True

    async def read(self) -> list[Delivery]:
        """What arrived since the last read. One server: one XREAD over every stream,
        blocking. A cluster (a command may not span slots): each stream in turn, the
        block time shared out between them."""
        keys = self.source.keys
        if not self._started:
            await self.pin()
        groups = [keys] if not self._split else [(k,) for k in keys]
        block = self.block_ms if not self._split else max(1, self.block_ms // len(keys))
        found: list[tuple[str, str, dict[str, str], int]] = []
        for part in groups:
            reply = await self.redis.xread({k: self._ids[k] for k in part}, count=500, block=block)
            for key, entry_id, fields in entries_of(reply):
                self._ids[key] = entry_id
                if wanted(fields, self.event_types, None):
                    found.append((key, entry_id, fields, 1))
            if found:
                break
        _, deliveries = await join_events(self.client, self.source, found, True)
        return deliveries


class AsyncEventsMixin(AsyncClientBase):
    def events(
        self,
        group: str,
        consumer: str | None = None,
        *,
        intent_id: str | None = None,
        portfolio_id: str | None = None,
        event_types: Iterable[str] | str | None = None,
        assigned_to: str | None = None,
        start: str = START_NEW,
        count: int = 500,
        block_seconds: float = 5.0,
        auto_ack: bool = True,
        heartbeat_ttl: float = 10.0,
        max_deliveries: int = 5,
        payloads: bool | Iterable[str] = True,
    ) -> AsyncEventStream:
        """Consume events as a member of consumer group ``group``: consumers of one group
        share the events (each goes to one of them), separate groups each get all.

        Reads one intent's log (``intent_id``), one portfolio's (``portfolio_id``), or
        every event of the namespace (neither: the partition buses). ``start`` applies
        when the group is created: ``"new"`` (events from now), ``"start"`` (all the
        streams still hold) or an entry id; an existing group resumes where it left off.
        ``event_types`` and ``assigned_to`` (events of intents assigned to that agent, and
        portfolio events) filter on the bus entry, before any event is fetched;
        ``payloads=False`` skips fetching bus events' payloads (type, actor and ids only),
        a collection of event types fetches only those types' payloads.
        See the module for delivery, take-over and dead letters."""
        check_name(group, "group")
        if consumer is None:
            consumer = default_consumer()
        check_name(consumer, "consumer")
        if not isinstance(count, int) or not 1 <= count <= 10_000:
            raise ValidationError("count must be an integer from 1 to 10000", field="count")
        if not 0.001 <= block_seconds <= 3600:
            raise ValidationError("block_seconds must be from 0.001 to 3600", field="block_seconds")
        if not 0.1 <= heartbeat_ttl <= 3600:
            raise ValidationError("heartbeat_ttl must be from 0.1 to 3600", field="heartbeat_ttl")
        if not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValidationError(
                "max_deliveries must be a positive integer", field="max_deliveries"
            )
        start_id(start)
        return AsyncEventStream(
            self,
            plan_source(self.keyspace, intent_id, portfolio_id),
            group,
            consumer,
            event_types=check_types(event_types),
            assigned_to=None if assigned_to is None else check_name(assigned_to, "assigned_to"),
            start=start,
            count=count,
            block_ms=max(1, int(block_seconds * 1000)),
            auto_ack=auto_ack,
            heartbeat_ttl=heartbeat_ttl,
            max_deliveries=max_deliveries,
            payloads=payloads if isinstance(payloads, bool) else frozenset(payloads),
        )

    def tail(
        self,
        *,
        intent_id: str | None = None,
        portfolio_id: str | None = None,
        event_types: Iterable[str] | str | None = None,
        block_seconds: float = 5.0,
    ) -> AsyncEventTail:
        """Follow events live from now, with no consumer group: best-effort (see
        ``AsyncEventTail``), for dashboards, ``oibus`` commands and people watching."""
        if not 0.001 <= block_seconds <= 3600:
            raise ValidationError("block_seconds must be from 0.001 to 3600", field="block_seconds")
        return AsyncEventTail(
            self,
            plan_source(self.keyspace, intent_id, portfolio_id),
            check_types(event_types),
            max(1, int(block_seconds * 1000)),
        )

    subscribe_sse = tail
    """The reference SDK's name for a live tail (it used server-sent events)."""
