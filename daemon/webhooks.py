"""Webhook fan-out (RFC-0006): from bus entries to signed HTTP POSTs, at least once.

Two halves, so that a slow endpoint never holds up the bus nor another endpoint:

**Matching** (``WebhookFanout.on_bus_entry``, called by the daemon's bus reader for each
entry before it acknowledges it). The entry's subscriptions are read from at most three
small index sets (global, the intent's or portfolio's, and the portfolios of an intent)
and each match becomes one job in the subscription's own queue, a stream with consumer
group ``GROUP``. Queuing is one script per job that also sets a marker (with a TTL) for
the (subscription, event) pair, so handling the same entry again after a crash queues
nothing twice. Subscriptions created after the event, expired or filtered out by
``event_types`` get nothing; expired ones are removed on the way.

**Delivery** (``WebhookFanout.run``). ``{ns}:wh:due`` says when each subscription's queue
needs a worker. Up to ``concurrency`` workers run, one per subscription; a worker holds
the queue's lock (``webhook_lock.lua``, renewed before every attempt, lapsing by itself
if its daemon dies) and delivers the queue's head job, then the next, in event order. A
failed attempt that may succeed later (network error, timeout, 408, 429, 5xx) records
its retry state and sets the queue's due time (backoff with full jitter, or the
endpoint's ``Retry-After``), and the worker gives up its slot: the subscription's later
jobs wait behind the retry (order is kept), other subscriptions do not wait at all. Other
4xx, an address the policy refuses, or too many attempts or too old a job: the job goes
to the dead-letter store ``{ns}:dlq`` (``list_dead_letters``, ``replay_dead_letters``).

**Crash safety.** A job is acknowledged only after its outcome (delivered or
dead-lettered) is recorded, so a job in flight when a daemon dies stays pending in the
group. Whoever takes the queue's lock next claims it with ``XAUTOCLAIM`` (min-idle 0: the
lock, whose TTL lapses when its holder stops renewing it, is what proves the holder
gone), so no ``reclaim`` hook is needed: the lock's TTL is the idle time that suffices.
A delivery may thus be repeated (a daemon that died after the POST, before the
acknowledgement); receivers deduplicate on ``X-OIBus-Event-Id``.
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
import httpx
import msgspec
from anyio.abc import TaskGroup
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from oibus import _version
from oibus.bus.checks import check_text
from oibus.bus.codec import to_datetime
from oibus.bus.errors import BusError, ConfigurationError
from oibus.bus.keyspace import Keyspace
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.bus.subscriptions import StoredSubscription, decode_record, remove_subscription_call
from oibus.bus.webhooks import (
    GROUP,
    POLICY_FIELD,
    Outcome,
    WebhookConfig,
    allows_private,
    backoff,
    classify,
    delivery_body,
    event_key,
    policy_name,
    retry_after,
    sign,
)
from oibus.daemon.metrics import Metrics
from oibus.sdk._async.addresses import url_refusal
from oibus.sdk._async.runner import AsyncScriptRunner

__all__ = [
    "DeadLetter",
    "WebhookConfig",
    "WebhookFanout",
    "list_dead_letters",
    "replay_dead_letters",
]

log = logging.getLogger(__name__)

DEAD_LETTERS_MAX: Final = 1_000_000
"""Retention of the dead-letter store (approximate ``MAXLEN``): far more than an operator
replays, small enough that a flood of failures cannot exhaust memory."""

_ERROR_CHARS: Final = 1000


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


def _entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """The entries of an ``XREADGROUP`` reply for one stream (none: None or [])."""
    if not reply:
        return []
    first = reply[0]
    return list(first[1]) if first else []


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
        self._http: httpx.AsyncClient | None = None

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
        ids: list[str],
        texts: list[str | None],
        now: int,
        event_type: str,
        entry_id: str,
        event: tuple[str, str],
    ) -> tuple[list[str], list[Call]]:
        """The subscriptions the event (its log and id) goes to, and the expired ones to
        remove."""
        ks = self.keyspace
        # events from before the subscription are not its business. The bus entry's id
        # gives the event's millisecond; within the subscription's own millisecond the
        # event's microsecond decides (its `at`, read from its log only then): both come
        # from TIME in scripts the server ran one after the other, so the order is exact
        event_ms = _queued_ms(entry_id)
        event_us: int | None = None
        matched: list[str] = []
        expired: list[Call] = []
        for sid, text in zip(ids, texts, strict=True):
            if text is None:
                continue  # removed since the index was read
            try:
                record = decode_record(text, sid)
            except BusError as exc:
                # one unreadable record must not hold up the bus: it gets nothing
                log.error("subscription %s skipped: %s", sid, exc)
                self._count_error()
                continue
            if record.expired(now):
                expired.append(remove_subscription_call(ks, record, only_expired=True))
            elif record.matches(event_type):
                created_ms = record.created_at // 1000
                if created_ms == event_ms and event_us is None:
                    event_us = await self._event_micros(*event, event_ms)
                if created_ms < event_ms or (
                    created_ms == event_ms and record.created_at <= cast(int, event_us)
                ):
                    matched.append(sid)
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
        indexes = [ks.subscription_index(None, None)]
        if portfolio:
            indexes.append(ks.subscription_index(None, source))
            log_key = ks.portfolio_events(source)
        else:
            indexes.append(ks.subscription_index(source, None))
            log_key = ks.events(source)
            indexes += [ks.subscription_index(None, p) for p in await self._portfolios(source)]
        members = await self._runner.commands([("SMEMBERS", k) for k in indexes])
        ids = sorted(set().union(*(cast("set[str]", m) for m in members)))
        if not ids:
            return
        texts = await self._runner.command("HMGET", ks.subscriptions, *ids)
        key = event_key(source, event_id)
        now = await self._now()
        matched, expired = await self._match(
            ids, cast("list[str | None]", texts), now, event_type, entry_id, (log_key, event_id)
        )
        for reply in await self._runner.call_many(expired):
            if isinstance(reply, Exception):
                log.warning("could not remove an expired subscription: %s", reply)
        if not matched:
            return
        member = fields.get("m") or ""
        calls = [self._enqueue_call(sid, key, source, event_id, log_key, member) for sid in matched]
        for sid, call, reply in zip(
            matched, calls, await self._runner.call_many(calls), strict=True
        ):
            if isinstance(reply, Exception):
                raise reply  # the bus entry stays unacknowledged; the daemon retries it
            if reply == -1:
                await self._dead_letter_full(sid, call)
        # the due mark after the job: a crash in between is repaired by the entry's retry
        # (the script then says "already queued", and this runs again); NX keeps a due
        # time that a pending retry set
        pairs: list[str | int] = []
        for sid in matched:
            pairs += [now, sid]
        await self._runner.command("ZADD", ks.webhook_due, "NX", *pairs)
        if self._wake is not None:
            self._wake.set()

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

    async def _portfolios(self, intent_id: str) -> list[str]:
        raw = await self._runner.command("HGET", self.keyspace.intent(intent_id), "pf")
        if not raw:
            return []
        try:
            found = msgspec.json.decode(cast("str", raw))
        except msgspec.DecodeError:
            return []
        return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []

    async def _dead_letter_full(self, sid: str, call: Call) -> None:
        _, _, _, key, source, event_id, log_key, member = call.args
        record = await self._record(sid)
        url = record.webhook_url if record is not None else ""
        job = {"k": key, "i": source, "e": event_id, "l": log_key, "m": member}
        await self._write_dead_letter(sid, url, job, b"", "the subscription's queue is full", 0)

    # -- delivery -----------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver queued webhooks until cancelled (anyio); on cancellation hand back
        in-flight work (leave it pending) and return promptly."""
        self._wake = anyio.Event()
        limits = httpx.Limits(max_connections=self.config.concurrency)
        # no proxies from the environment: the address policy must see where we connect
        async with (
            httpx.AsyncClient(follow_redirects=False, trust_env=False, limits=limits) as http,
            anyio.create_task_group() as tg,
        ):
            self._http = http
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

    async def _schedule(self, tg: TaskGroup) -> None:
        free = self.config.concurrency - len(self._active)
        if free <= 0:
            return
        clock = time.monotonic()
        self._busy_until = {s: t for s, t in self._busy_until.items() if t > clock}
        due = await self._runner.command(
            "ZRANGEBYSCORE",
            self.keyspace.webhook_due,
            "-inf",
            await self._now(),
            "LIMIT",
            0,
            free + len(self._active) + len(self._busy_until),
        )
        for sid in cast("list[str]", due):
            if free <= 0:
                break
            if sid in self._active or sid in self._busy_until:
                continue
            self._active.add(sid)
            free -= 1
            tg.start_soon(self._work, sid)

    async def _work(self, sid: str) -> None:
        try:
            if not await self._lock("hold", sid):
                self._busy_until[sid] = time.monotonic() + self.config.lock_ms / 2000
                return
            try:
                await self._drain(sid)
            finally:
                # runs on cancellation too: the next holder need not wait for the TTL
                with anyio.move_on_after(2, shield=True):
                    await self._lock("release", sid)
        except Exception:
            # whatever went wrong, one subscription must not stop the others: the queue
            # stays due and a later pass retries it
            log.exception("webhook worker for subscription %s failed", sid)
            self._count_error()
        finally:
            self._active.discard(sid)

    async def _drain(self, sid: str) -> None:
        ks = self.keyspace
        for _ in range(self.config.batch):
            record = await self._record(sid)
            now = await self._now()
            if record is None or record.expired(now):
                await self._discard(sid, record)
                return
            if not await self._lock("hold", sid):
                return  # lost it (stalled past the TTL): the new holder carries on
            job = await self._head(sid)
            if job is None:
                # clear the due mark, then look again: a job queued in between either is
                # seen now or set its due mark after this removal
                await self._runner.command("ZREM", ks.webhook_due, sid)
                job = await self._head(sid)
                if job is None:
                    return
                await self._runner.command("ZADD", ks.webhook_due, now, sid)
            entry_id, fields = job
            state = cast(
                "dict[str, str]", await self._runner.command("HGETALL", ks.webhook_state(sid))
            )
            if state.get("job") == entry_id and int(state.get("next") or 0) > now:
                await self._runner.command("ZADD", ks.webhook_due, state["next"], sid)
                return  # a retry is pending: later jobs wait behind it
            attempts = int(state.get("n") or 0) if state.get("job") == entry_id else 0
            if not await self._deliver(record, entry_id, fields, attempts + 1, now):
                return
        # batch done: due again now, behind the subscriptions that waited longer
        await self._runner.command("ZADD", ks.webhook_due, "XX", await self._now(), sid)

    async def _head(self, sid: str) -> tuple[str, dict[str, str]] | None:
        """The queue's oldest job: one left pending (by us, or by a holder that is gone:
        we hold the lock, so nobody else is delivering it), else the next new one."""
        queue = self.keyspace.webhook_queue(sid)
        try:
            claimed = await self._runner.command(
                "XAUTOCLAIM", queue, GROUP, self.consumer, 0, "0-0", "COUNT", 1
            )
            found = [(i, f) for i, f in claimed[1] if f is not None]
            if not found:
                reply = await self._runner.command(
                    "XREADGROUP", "GROUP", GROUP, self.consumer, "COUNT", 1, "STREAMS", queue, ">"
                )
                found = [(i, f) for i, f in _entries(reply) if f is not None]
        except BusError as exc:
            if "NOGROUP" in str(exc):
                return None  # no queue (yet, or any more)
            raise
        return found[0] if found else None

    async def _deliver(
        self,
        record: StoredSubscription,
        entry_id: str,
        job: Mapping[str, str],
        attempt: int,
        now: int,
    ) -> bool:
        """One attempt at the job; True when it is finished (delivered or dead-lettered),
        False when a retry is scheduled."""
        sid, ks, cfg = record.id, self.keyspace, self.config
        source, event_id, log_key = job.get("i", ""), job.get("e", ""), job.get("l", "")
        found = await self._runner.command("XRANGE", log_key, event_id, event_id)
        if not found:
            await self._dead_letter(record, entry_id, job, b"", "the event is not in its log", 0)
            return True
        body = delivery_body(
            sid,
            source,
            event_id,
            found[0][1],
            portfolio=log_key == ks.portfolio_events(source),
            member=job.get("m") or None,
        )
        outcome, error, wait = await self._post(record, job.get("k", ""), body, now, attempt)
        if outcome is Outcome.DELIVERED:
            await self._finish(sid, entry_id)
            self._count(Outcome.DELIVERED)
            return True
        if outcome is Outcome.RETRY:
            delay = (
                wait
                if wait is not None
                else backoff(attempt, cfg.backoff_base, cfg.backoff_cap, self._rng)
            )
            due = now + math.ceil(delay * 1_000_000)
            too_old = due // 1000 - _queued_ms(entry_id) > cfg.max_age * 1000
            if attempt < cfg.max_attempts and not too_old:
                await self._runner.command(
                    "HSET", ks.webhook_state(sid), "job", entry_id, "n", attempt, "next", due,
                    "err", error,
                )  # fmt: skip
                await self._runner.command("ZADD", ks.webhook_due, due, sid)
                self._count(Outcome.RETRY)
                return False
            error += f" (gave up after {attempt} attempts)" if not too_old else " (too old)"
        await self._dead_letter(record, entry_id, job, body, error, attempt)
        return True

    async def _post(
        self, record: StoredSubscription, key: str, body: bytes, now: int, attempt: int
    ) -> tuple[Outcome, str, float | None]:
        """POST the body; the outcome, an error text, and the delay Retry-After asks."""
        assert self._http is not None, "run() sets up the HTTP client"
        timestamp = str(now // 1_000_000)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"oibus/{_version.__version__}",
            "X-OIBus-Event-Id": key,
            "X-OIBus-Subscription-Id": record.id,
            "X-OIBus-Timestamp": timestamp,
            "X-OIBus-Signature": sign(record.secret, timestamp, body),
            "X-OIBus-Attempt": str(attempt),
        }
        started = time.monotonic()
        outcome, error, wait = Outcome.RETRY, f"timed out after {self.config.timeout} s", None
        # one bound for the whole attempt (name resolution included): httpx's timeout
        # is per read, so a server trickling bytes could otherwise hold a worker forever
        with anyio.move_on_after(self.config.timeout):
            try:
                refused = await self._refused(record.webhook_url)
                if refused is not None:
                    return Outcome.DEAD_LETTER, refused, None
                async with self._http.stream(
                    "POST", record.webhook_url, content=body, headers=headers
                ) as response:  # the response body is never read: only its status
                    outcome = classify(response.status_code)
                    error = f"HTTP {response.status_code}"
                    wait = retry_after(response.headers.get("retry-after"), to_datetime(now))
            except (httpx.HTTPError, OSError) as exc:
                outcome, error = Outcome.RETRY, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]
            finally:
                if self.metrics is not None:
                    self.metrics.webhook_latency.observe(time.monotonic() - started)
        if wait is not None:
            wait = min(wait, self.config.max_age)
        return outcome, error, wait if outcome is Outcome.RETRY else None

    async def _refused(self, url: str) -> str | None:
        """Why the address policy refuses the URL's host, or None (resolution errors
        raise OSError: retried)."""
        return await url_refusal(url, self.config.allow_private)

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

    # -- outcomes -----------------------------------------------------------------------
    async def _finish(self, sid: str, entry_id: str) -> None:
        queue = self.keyspace.webhook_queue(sid)
        await self._runner.commands(
            [
                ("DEL", self.keyspace.webhook_state(sid)),
                ("XACK", queue, GROUP, entry_id),
                ("XDEL", queue, entry_id),
            ]
        )

    async def _dead_letter(
        self,
        record: StoredSubscription,
        entry_id: str,
        job: Mapping[str, str],
        body: bytes,
        error: str,
        attempts: int,
    ) -> None:
        # stored before the job is acknowledged: a crash in between leaves a duplicate
        # dead letter, never none
        await self._write_dead_letter(record.id, record.webhook_url, job, body, error, attempts)
        await self._finish(record.id, entry_id)
        self._count(Outcome.DEAD_LETTER)

    async def _write_dead_letter(
        self,
        sid: str,
        url: str,
        job: Mapping[str, str],
        body: bytes,
        error: str,
        attempts: int,
    ) -> None:
        dlq = self.keyspace.dead_letters
        fields: list[str | int] = ["s", sid, "u", url, "err", error[:_ERROR_CHARS]]
        fields += ["n", attempts, "at", await self._now(), "b", body.decode()]
        for name in ("k", "i", "e", "l", "m"):
            fields += [name, job.get(name, "")]
        await self._runner.command("XADD", dlq, "MAXLEN", "~", DEAD_LETTERS_MAX, "*", *fields)
        log.warning("webhook for subscription %s dead-lettered: %s", sid, error)
        if self.metrics is not None:
            # counted up here, at once; the daemon's retention pass sets the gauge to the
            # sizes of every dead-letter store (this one and the bus reader's)
            self.metrics.dead_letters.inc()

    async def _discard(self, sid: str, record: StoredSubscription | None) -> None:
        """A removed or expired subscription receives nothing more: drop its queue."""
        ks = self.keyspace
        if record is not None:
            await self._runner.call(remove_subscription_call(ks, record, only_expired=True))
        await self._runner.commands([("DEL", ks.webhook_queue(sid), ks.webhook_state(sid))])
        await self._runner.command("ZREM", ks.webhook_due, sid)

    # -- helpers ------------------------------------------------------------------------
    async def _record(self, sid: str) -> StoredSubscription | None:
        text = await self._runner.command("HGET", self.keyspace.subscriptions, sid)
        return None if text is None else decode_record(cast("str", text), sid)

    async def _lock(self, op: str, sid: str) -> bool:
        call = Call(
            "webhook_lock",
            [self.keyspace.webhook_lock(sid)],
            [op, self.consumer, str(self.config.lock_ms)],
        )
        return bool(await self._runner.call(call))

    async def _now(self) -> int:
        """Server time in µs: due times and expiry are judged by one clock."""
        return _now_us(await self._runner.command("TIME"))

    def _count(self, outcome: Outcome) -> None:
        if self.metrics is not None:
            self.metrics.webhook_attempts.labels(str(outcome)).inc()

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
