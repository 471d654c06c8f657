"""Webhook fan-out (RFC-0006): from bus entries to signed HTTP POSTs, at least once.

Two halves, so that a slow endpoint never holds up the bus nor another endpoint:

**Matching** (``WebhookFanout.on_bus_entry``, called by the daemon's bus reader for each
entry before it acknowledges it). The entry's subscriptions are read from at most three
small index sets (global, the intent's or portfolio's, and the portfolios of an intent)
and each match becomes one job in the subscription's own queue, a stream with consumer
group ``GROUP``. Queuing is one script per job that also sets a marker (with a TTL) for
the (subscription, event) pair, so handling the same entry again after a crash queues
nothing twice. Subscriptions created after the event, expired or filtered out by
``event_types`` get nothing; expired ones are removed on the way. Profiled, matching
cost six round trips per entry; it now takes one in the usual case (on one server): the
index sets, the intent's portfolios and the server's time are read in the round trip
that queues the jobs of the subscriptions sure to match (``_sure``: records never
change, so those read before are kept); a new or unsure subscription costs a second.

**Delivery** (``WebhookFanout.run``). ``{ns}:wh:due`` says when each subscription's queue
needs a worker. Up to ``concurrency`` workers run at once, one per subscription, so
different subscriptions are delivered in parallel over pooled keep-alive connections;
within a subscription a worker takes the queue's lock and delivers its jobs one after
the other, in event order, claiming and acknowledging them in batches
(``oibus.daemon.webhook_delivery``: one script call per batch, ``webhook_batch.lua``).
A failed attempt that may succeed later (network error, timeout, 408, 429, 5xx)
records its retry state and sets the queue's due time (backoff with full jitter, or the
endpoint's ``Retry-After``), and the worker gives up its slot: the subscription's later
jobs wait behind the retry (order is kept), other subscriptions do not wait at all. Other
4xx, an address the policy refuses, or too many attempts or too old a job: the job goes
to the dead-letter store ``{ns}:dlq`` (``list_dead_letters``, ``replay_dead_letters``).

**Crash safety.** A job is acknowledged only after its outcome (delivered or
dead-lettered) is recorded, so a job in flight when a daemon dies stays pending in the
group. Whoever takes the queue's lock next claims it with ``XAUTOCLAIM`` (min-idle 0: the
lock, whose TTL lapses when its holder stops renewing it, is what proves the holder
gone), so no ``reclaim`` hook is needed: the lock's TTL is the idle time that suffices.
A delivery may thus be repeated (a daemon that died after a POST, before the batch's
acknowledgement: at most one batch); receivers deduplicate on ``X-OIBus-Event-Id``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, cast

import anyio
import msgspec
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from oibus.bus.checks import check_text
from oibus.bus.codec import to_datetime
from oibus.bus.errors import BusError, ConfigurationError
from oibus.bus.keyspace import Keyspace
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.bus.subscriptions import (
    SUBSCRIPTIONS,
    StoredSubscription,
    decode_record,
    remove_subscription_call,
)
from oibus.bus.webhooks import (
    GROUP,
    POLICY_FIELD,
    WebhookConfig,
    allows_private,
    event_key,
    policy_name,
)
from oibus.daemon.metrics import Metrics
from oibus.daemon.webhook_delivery import Command, Deliverer, write_dead_letter
from oibus.sdk._async.runner import AsyncScriptRunner

__all__ = [
    "DeadLetter",
    "WebhookConfig",
    "WebhookFanout",
    "list_dead_letters",
    "replay_dead_letters",
]

log = logging.getLogger(__name__)

MEMBERS_CACHED: Final = 4096
"""Most index sets whose last members are remembered (to read their records in the same
round trip as the sets next time)."""
SURE_MARGIN_US: Final = 5_000_000
"""A subscription expiring sooner than this is never queued ahead of its check."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery given up on. ``event_id`` is the ``X-OIBus-Event-Id`` it carried;
    ``body`` the JSON it POSTed ("" when the event could not be read)."""

    id: str
    subscription_id: str
    event_id: str
    webhook_url: str
    error: str
    attempts: int
    failed_at: datetime
    body: str


def _now_us(reply: Sequence[Any]) -> int:
    return int(reply[0]) * 1_000_000 + int(reply[1])


def _queued_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _scored(reply: Any) -> list[tuple[str, float]]:
    """``ZRANGE ... WITHSCORES`` as (member, score) pairs, whichever way the client
    parsed it."""
    if reply and not isinstance(reply[0], list | tuple):
        return [(str(reply[n]), float(reply[n + 1])) for n in range(0, len(reply) - 1, 2)]
    return [(str(m), float(score)) for m, score in reply or []]


def _portfolios(raw: Any) -> list[str]:
    """An intent's ``pf`` field: the portfolios it is in."""
    if not raw:
        return []
    try:
        found = msgspec.json.decode(cast("str", raw))
    except msgspec.DecodeError:
        return []
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


class WebhookFanout:
    """Matches bus entries to subscriptions and delivers the webhooks (module docstring).
    ``consumer`` names this daemon in the delivery queues' consumer group; it must be
    unique among live daemons (the daemon's own id)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keyspace: Keyspace,
        *,
        consumer: str,
        metrics: Metrics | None = None,
        config: WebhookConfig | None = None,
    ) -> None:
        self.redis = redis
        self.keyspace = keyspace
        self.consumer = check_text(consumer, "consumer", 256)
        self.metrics = metrics
        self.config = config if config is not None else WebhookConfig()
        self._runner = AsyncScriptRunner(redis, default_registry())
        self._rng = random.SystemRandom()
        self._active: set[str] = set()
        self._busy_until: dict[str, float] = {}  # locked by another daemon: skip a while
        self._wake: anyio.Event | None = None
        self._members: dict[str, list[str]] = {}  # index key -> ids it held last time
        self._records: dict[str, StoredSubscription] = {}  # see _records_of
        self._clock: tuple[int, float] | None = None  # the last TIME, and when on this clock
        self._ordered = not isinstance(redis, RedisCluster)
        self._deliverer = Deliverer(
            redis,
            self._runner,
            keyspace,
            consumer=self.consumer,
            config=self.config,
            metrics=metrics,
            rng=self._rng,
            spare=lambda: len(self._active) < self.config.concurrency,
        )

    # -- matching -----------------------------------------------------------------------
    async def _event_micros(self, log_key: str, event_id: str, fallback_ms: int) -> int:
        """The microsecond an event was appended (its ``at``); its millisecond's last
        microsecond if the entry is gone (trimmed), so a same-millisecond subscription
        still gets it rather than miss it."""
        rows = await self._runner.command("XRANGE", log_key, event_id, event_id)
        for _, entry in rows or []:
            at = dict(entry).get("at") if not isinstance(entry, dict) else entry.get("at")
            if at:
                return int(at)
        return fallback_ms * 1000 + 999

    async def _match(
        self,
        records: list[StoredSubscription],
        now: int,
        event_type: str,
        entry_id: str,
        event: tuple[str, str, str | None],
    ) -> tuple[list[str], list[Call]]:
        """The subscriptions the event (its log, id, and ``at`` when the bus entry
        carries it) goes to, and the expired ones to remove."""
        log_key, event_id, event_at = event
        ks = self.keyspace
        # events from before the subscription are not its business. The bus entry's id
        # gives the event's millisecond; within the subscription's own millisecond the
        # event's microsecond decides (its `at`, from the entry or read from its log only
        # then): both come from TIME in scripts the server ran one after the other, so
        # the order is exact
        event_ms = _queued_ms(entry_id)
        event_us: int | None = None
        matched: list[str] = []
        expired: list[Call] = []
        for record in records:
            if record.expired(now):
                expired.append(remove_subscription_call(ks, record, only_expired=True))
            elif record.matches(event_type):
                created_ms = record.created_at // 1000
                if created_ms == event_ms and event_us is None:
                    at = event_at or ""
                    event_us = (
                        int(at)
                        if at.isdigit()
                        else await self._event_micros(log_key, event_id, event_ms)
                    )
                if created_ms < event_ms or (
                    created_ms == event_ms and record.created_at <= cast(int, event_us)
                ):
                    matched.append(record.id)
        return matched, expired

    async def on_bus_entry(self, partition: int, entry_id: str, fields: dict[str, str]) -> None:
        """Called once per bus entry by the daemon's bus reader (possibly again after a
        crash: must be idempotent in effect). When it returns, every delivery the entry
        causes is durably queued; the daemon then acknowledges the bus entry."""
        source, event_id, event_type = fields.get("i"), fields.get("e"), fields.get("t")
        if not source or not event_id or not event_type:
            return  # not an event pointer: nothing to deliver
        kind = fields.get("k") or "intent"
        if kind not in ("intent", "portfolio"):
            return  # a kind of entry this engine does not know: not an intent's event
        ks = self.keyspace
        portfolio = kind == "portfolio"
        log_key = ks.portfolio_events(source) if portfolio else ks.events(source)
        scope = ks.subscription_index(None, source) if portfolio else None
        indexes = [ks.subscription_index(None, None), scope or ks.subscription_index(source, None)]
        member = fields.get("m") or ""
        key = event_key(source, event_id)

        def enqueue(sid: str) -> Call:
            return self._enqueue_call(sid, key, source, event_id, log_key, member)

        def keep_event() -> None:
            if "p" in fields and "at" in fields:  # the whole event came with the entry
                self._deliverer.events.put(log_key, event_id, member, source, fields)

        # one round trip in the usual case: the server's time, the index sets, the
        # intent's portfolios, and the jobs of the subscriptions sure to match (``_sure``)
        # with their due marks
        ahead = self._sure(indexes, event_type, _queued_ms(entry_id))
        ahead_calls = [enqueue(sid) for sid in ahead]
        tail: list[Call | Command] = []
        if ahead:
            keep_event()
            tail = [*ahead_calls, self._due_marks(ahead, self._server_now())]
        extra: list[Command] = [] if portfolio else [("HGET", ks.intent(source), "pf")]
        first, members, queued = await self._indexes(indexes, [("TIME",), *extra], tail)
        now = _now_us(first[0])
        self._clock = (now, time.monotonic())
        await self._check_queued(ahead, ahead_calls, queued[:-1], now)
        if not portfolio:
            pf = [ks.subscription_index(None, p) for p in _portfolios(first[1])]
            if pf:
                members += (await self._indexes(pf, [], []))[1]
        matched, expired = await self._match(
            await self._records_of(sorted(set().union(*members))),
            now,
            event_type,
            entry_id,
            (log_key, event_id, fields.get("at")),
        )
        for reply in await self._runner.call_many(expired):
            if isinstance(reply, Exception):
                log.warning("could not remove an expired subscription: %s", reply)
        # a job queued ahead for a subscription that no longer matches (removed or
        # expired meanwhile) is dropped by its worker, which reads the record first
        rest = [sid for sid in matched if sid not in ahead]
        if rest:
            if not ahead:
                keep_event()
            await self._queue(rest, [enqueue(sid) for sid in rest], now)
        self._deliverer.kicks.kick(matched)
        if self._wake is not None and not self._active.issuperset(matched):
            self._wake.set()  # an active worker claims the new jobs on its next round

    async def _records_of(self, ids: list[str]) -> list[StoredSubscription]:
        """The records of subscriptions the indexes hold. A record never changes (its id
        is a fresh UUID; it is only created and removed, with its index entry), so one
        read before is used again: only new ids are read."""
        missing = [sid for sid in ids if sid not in self._records]
        if missing:
            texts = await self._runner.command("HMGET", self.keyspace.subscriptions, *missing)
            if len(self._records) + len(missing) > SUBSCRIPTIONS:
                self._records.clear()  # bounded: the namespace holds at most this many
            for sid, text in zip(missing, cast("list[str | None]", texts), strict=True):
                if text is None:
                    continue  # removed since the index was read
                try:
                    self._records[sid] = decode_record(text, sid)
                except BusError as exc:
                    # one unreadable record must not hold up the bus: it gets nothing
                    log.error("subscription %s skipped: %s", sid, exc)
                    self._count_error()
        return [self._records[sid] for sid in ids if sid in self._records]

    def _sure(self, indexes: list[str], event_type: str, event_ms: int) -> list[str]:
        """The subscriptions that match the event by what the daemon read before, so
        their jobs can be queued in the round trip that reads the indexes.

        Sound because a subscription's record never changes (``_records_of``): one that
        was in these indexes, matches the type, was created in an earlier millisecond
        than the event and does not expire within ``SURE_MARGIN_US`` of the server's
        time matches the event unless it was removed or expired since; then its worker,
        which reads the record before it claims, drops the job. Only where one server
        runs a pipeline in order (the due marks must follow the jobs)."""
        estimate = self._server_now()
        if not self._ordered or estimate is None:
            return []
        sure = []
        for sid in sorted({sid for k in indexes for sid in self._members.get(k, ())}):
            record = self._records.get(sid)
            if (
                record is not None
                and record.matches(event_type)
                and record.created_at // 1000 < event_ms
                and (record.expires_at is None or record.expires_at > estimate + SURE_MARGIN_US)
            ):
                sure.append(sid)
        return sure

    def _server_now(self) -> int | None:
        """The server's time (µs) from its last ``TIME`` and this clock since, if any."""
        if self._clock is None:
            return None
        at, seen = self._clock
        return at + int((time.monotonic() - seen) * 1_000_000)

    def _due_marks(self, sids: list[str], now: int | None) -> Command:
        pairs: list[str | int] = []
        for sid in sids:
            pairs += [now or 0, sid]
        return ("ZADD", self.keyspace.webhook_due, "NX", *pairs)

    async def _check_queued(
        self, sids: list[str], calls: list[Call], replies: list[Any], now: int
    ) -> None:
        for sid, call, reply in zip(sids, calls, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply  # the bus entry stays unacknowledged; the daemon retries it
            if reply == -1:
                await self._dead_letter_full(sid, call, now)

    async def _queue(self, matched: list[str], calls: list[Call], now: int) -> None:
        """Queue the jobs, then mark their subscriptions due."""
        # the due marks after the jobs: a crash in between is repaired by the entry's
        # retry (the script then says "already queued", and this runs again); NX keeps a
        # due time that a pending retry set. One server runs a pipeline in order, so
        # both go in one round trip there; a cluster's pipeline may reach its nodes in
        # any order, so there the marks wait for the jobs.
        mark = self._due_marks(matched, now)
        if self._ordered:
            replies = (await self._deliverer._send([*calls, mark]))[:-1]
        else:
            replies = await self._runner.call_many(calls)
        await self._check_queued(matched, calls, replies, now)
        if not self._ordered:
            await self._runner.command(*mark)

    async def _indexes(
        self, indexes: list[str], before: list[Command], after: list[Call | Command]
    ) -> tuple[list[Any], list[set[str]], list[Any]]:
        """The members of ``indexes``, with the replies of ``before`` and ``after``
        (sent around them in the same round trip)."""
        replies = await self._deliverer._send(
            [*before, *(("SMEMBERS", k) for k in indexes), *after]
        )
        n = len(before)
        members = [cast("set[str]", m) for m in replies[n : n + len(indexes)]]
        if len(self._members) > MEMBERS_CACHED:
            self._members.clear()  # bounded: the next entries fill it again
        for k, m in zip(indexes, members, strict=True):
            if m:
                self._members[k] = list(m)
            else:
                self._members.pop(k, None)
        return replies[:n], members, replies[n + len(indexes) :]

    def _enqueue_call(
        self,
        sid: str,
        key: str,
        source: str,
        event_id: str,
        log_key: str,
        member: str,
        *,
        marker_suffix: str = "",
    ) -> Call:
        ks, cfg = self.keyspace, self.config
        return Call(
            "enqueue_webhook",
            [ks.webhook_queue(sid), ks.webhook_marker(sid, key) + marker_suffix],
            [
                GROUP,
                str(math.ceil(cfg.marker_ttl * 1000)),
                str(cfg.queue_max),
                key,
                source,
                event_id,
                log_key,
                member,
            ],
        )

    async def _dead_letter_full(self, sid: str, call: Call, now: int) -> None:
        _, _, _, key, source, event_id, log_key, member = call.args
        record = await self._record(sid)
        url = record.webhook_url if record is not None else ""
        job = {"k": key, "i": source, "e": event_id, "l": log_key, "m": member}
        letter = (sid, url, job, b"", "the subscription's queue is full", 0)
        await write_dead_letter(self._runner, self.keyspace, self.metrics, letter, now)

    # -- delivery -----------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver queued webhooks until cancelled (anyio); on cancellation hand back
        in-flight work (leave it pending) and return promptly."""
        self._wake = anyio.Event()
        deliverer = self._deliverer
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    try:
                        await self._schedule(tg)
                    except BusError as exc:
                        log.warning("webhook scheduling failed: %s", exc)
                        self._count_error()
                    if self.metrics is not None:
                        self.metrics.loop_heartbeats.labels("webhooks").inc()
                    with anyio.move_on_after(self.config.poll_interval):
                        await self._wake.wait()
                    self._wake = anyio.Event()
        finally:
            with anyio.CancelScope(shield=True):
                await deliverer.aclose()

    async def _schedule(self, tg: TaskGroup) -> None:
        free = self.config.concurrency - len(self._active)
        if free <= 0:
            return
        clock = time.monotonic()
        self._busy_until = {s: t for s, t in self._busy_until.items() if t > clock}
        # the earliest due times and the server's time in one round trip: those due by
        # now are a prefix of the earliest
        wanted = free + len(self._active) + len(self._busy_until)
        now, due = await self._runner.commands(
            [("TIME",), ("ZRANGE", self.keyspace.webhook_due, 0, wanted - 1, "WITHSCORES")]
        )
        cutoff = _now_us(now)
        for sid, score in _scored(due):
            if free <= 0 or score > cutoff:
                break
            if sid in self._active or sid in self._busy_until:
                continue
            self._active.add(sid)
            free -= 1
            tg.start_soon(self._work, sid)

    async def _work(self, sid: str) -> None:
        again = False
        try:
            if await self._deliverer.turn(sid):
                again = True  # a slot is free, and the queue may be due again at once
            else:
                self._busy_until[sid] = time.monotonic() + self.config.lock_ms / 2000
        except Exception:
            # whatever went wrong, one subscription must not stop the others: the queue
            # stays due and a later pass retries it
            log.exception("webhook worker for subscription %s failed", sid)
            self._count_error()
        finally:
            self._active.discard(sid)
            if again and self._wake is not None:
                self._wake.set()

    async def settle_policy(self) -> None:
        """Record this daemon's address policy as the namespace's if none is, else
        refuse to run with another one: daemons sharing the queues must deliver by one
        rule, or one dead-letters what another would deliver."""
        meta = self.keyspace.meta
        mine = policy_name(self.config.allow_private)
        _, recorded = await self._runner.commands(
            [("HSETNX", meta, POLICY_FIELD, mine), ("HGET", meta, POLICY_FIELD)]
        )
        if recorded != mine:
            flag = "with" if allows_private(recorded) else "without"
            raise ConfigurationError(
                f"namespace {self.keyspace.namespace!r} delivers webhooks by the {recorded!r} "
                f"address policy; start this daemon {flag} --allow-private-webhooks, or "
                "change the namespace's policy with `oibus subscriptions policy`"
            )

    # -- helpers ------------------------------------------------------------------------
    async def _record(self, sid: str) -> StoredSubscription | None:
        text = await self._runner.command("HGET", self.keyspace.subscriptions, sid)
        return None if text is None else decode_record(cast("str", text), sid)

    async def _now(self) -> int:
        """Server time in µs: due times and expiry are judged by one clock."""
        return _now_us(await self._runner.command("TIME"))

    def _count_error(self) -> None:
        if self.metrics is not None:
            self.metrics.loop_errors.labels("webhooks").inc()


# -- the dead-letter store ----------------------------------------------------------------
def _dead_letter(entry_id: str, fields: Mapping[str, str]) -> DeadLetter:
    attempts, at = fields.get("n", "0"), fields.get("at", "0")
    return DeadLetter(
        id=entry_id,
        subscription_id=fields.get("s", ""),
        event_id=fields.get("k", ""),
        webhook_url=fields.get("u", ""),
        error=fields.get("err", ""),
        attempts=int(attempts) if attempts.isdigit() else 0,
        failed_at=to_datetime(at if at.isdigit() else 0),
        body=fields.get("b", ""),
    )


async def list_dead_letters(
    redis: Redis | RedisCluster,
    keyspace: Keyspace,
    *,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[DeadLetter]:
    """Dead letters, oldest first; pass ``next_cursor`` back as ``cursor``."""
    check_limit(limit)
    low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
    runner = AsyncScriptRunner(redis, default_registry())
    raw = await runner.command("XRANGE", keyspace.dead_letters, low, "+", "COUNT", limit + 1)
    entries = cast("list[tuple[str, dict[str, str]]]", raw)
    letters = [_dead_letter(i, f) for i, f in entries[:limit]]
    return Page(letters, entries[limit - 1][0] if len(entries) > limit else None)


async def replay_dead_letters(
    redis: Redis | RedisCluster,
    keyspace: Keyspace,
    ids: Sequence[str] | None = None,
    *,
    config: WebhookConfig | None = None,
) -> int:
    """Queue dead letters for delivery again (all of them, or those ``ids``) and remove
    them from the store; returns how many were queued. Each goes to the end of its
    subscription's queue with a fresh attempt count. Letters of subscriptions that no
    longer exist, or whose queue is full, stay in the store. Safe to repeat after a
    crash: a letter is queued once (its marker names the letter)."""
    fanout = WebhookFanout(redis, keyspace, consumer="replay", config=config)
    runner = fanout._runner
    dlq = keyspace.dead_letters
    replayed = 0
    low = "-"
    wanted = None if ids is None else list(dict.fromkeys(ids))
    while True:
        if wanted is None:
            raw = await runner.command("XRANGE", dlq, low, "+", "COUNT", 100)
            page = cast("list[tuple[str, dict[str, str]]]", raw)
            if not page:
                break
            low = "(" + page[-1][0]
        else:
            batch, wanted = wanted[:100], wanted[100:]
            if not batch:
                break
            found = await runner.commands(
                [("XRANGE", dlq, check_event_cursor(i, "ids"), i) for i in batch]
            )
            page = [entry for reply in found for entry in reply]
        for entry_id, fields in page:
            record = await fanout._record(fields.get("s") or "-")
            if record is None or record.expired(await fanout._now()):
                continue  # nobody to deliver it to: it stays in the store
            sid = record.id
            call = fanout._enqueue_call(
                sid,
                fields.get("k", ""),
                fields.get("i", ""),
                fields.get("e", ""),
                fields.get("l", ""),
                fields.get("m", ""),
                marker_suffix="#" + entry_id,
            )
            if await runner.call(call) == -1:
                continue
            await runner.command("ZADD", keyspace.webhook_due, "NX", await fanout._now(), sid)
            await runner.command("XDEL", dlq, entry_id)
            replayed += 1
    return replayed
