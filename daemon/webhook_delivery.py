"""One worker's turn at one subscription's delivery queue: claim a batch of jobs, POST
them one after the other (the subscription's order), and record what was finished with
the next claim, one round trip per batch.

Why batches: profiled (INFO commandstats around the benchmark), a delivery cost 27 Redis
commands with one subscription and 19 with ten, most of them a sequence per job (the
record, ``TIME``, the lock's renewal, ``XAUTOCLAIM``, ``XREADGROUP``, the retry state,
the event, three to finish it) with a round trip each: about a third of the worker's
time, the rest its POSTs (see ``webhook_http``). A turn now takes the lock and claims up to
``CHUNK`` jobs with the queue's retry state and the server's time in one script call
(``lua/webhook_batch.lua``, pipelined with the read of the subscription's record),
reads their events in one pipelined round trip (``EventCache``), and acknowledges the
finished ones in the same script call that claims the next chunk: a daemon killed
mid-turn delivers at most ``CHUNK`` jobs again (the at-least-once contract: receivers
deduplicate on ``X-OIBus-Event-Id``).

Within a turn the server's time is the claim's ``TIME`` plus the local monotonic time
since (timestamps, expiry, due times); a turn stops before the lock could lapse during
an attempt, and the jobs it did not attempt stay pending in the group, first for the
next holder.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from oibus import _version
from oibus.bus.codec import to_datetime
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Call
from oibus.bus.subscriptions import StoredSubscription, decode_record, remove_subscription_call
from oibus.bus.webhooks import (
    Batch,
    Outcome,
    Retry,
    WebhookConfig,
    backoff,
    batch_call,
    body_with,
    classify,
    parse_batch,
    retry_after,
    sign,
)
from oibus.daemon.metrics import Metrics
from oibus.daemon.webhook_events import EventCache
from oibus.daemon.webhook_http import PostFailed, WebhookHTTP
from oibus.sdk._async.runner import AsyncScriptRunner

__all__ = ["CHUNK", "DEAD_LETTERS_MAX", "Command", "Deliverer", "Kicks", "write_dead_letter"]

log = logging.getLogger("oibus.daemon.webhooks")

CHUNK: Final = 16
"""Most jobs claimed per round trip: what a daemon killed mid-turn may deliver again."""
LINGER_S: Final = 0.05
"""How long a worker whose queue ran empty waits for this daemon's matching to queue
more, while it has been doing so during the turn and a slot is spare (a hot queue keeps
its worker instead of going through the due set for every few jobs)."""
GATHER_S: Final = 0.05
"""How long a lingering worker lets jobs gather after the first new one (or until half a
chunk is queued), so that it claims several per round trip rather than one: profiled
with one subscription, a worker that claimed at every new job made a claim per delivery,
and its round trips slowed the matching that fed it."""
LOCK_MARGIN_S: Final = 2.0
"""Time kept in hand, beyond one attempt's timeout, before the lock's TTL runs out."""
DEAD_LETTERS_MAX: Final = 1_000_000
"""Retention of the dead-letter store (approximate ``MAXLEN``): far more than an operator
replays, small enough that a flood of failures cannot exhaust memory."""
ERROR_CHARS: Final = 1000

Command = Sequence[str | int]


def _queued_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


async def write_dead_letter(
    runner: AsyncScriptRunner,
    keyspace: Keyspace,
    metrics: Metrics | None,
    letter: tuple[str, str, Mapping[str, str], bytes, str, int],
    now: int,
) -> None:
    """Store a dead letter: ``letter`` is (subscription id, URL, job fields, body sent,
    error, attempts); ``now`` the server time (µs) it failed at."""
    sid, url, job, body, error, attempts = letter
    fields: list[str | int] = ["s", sid, "u", url, "err", error[:ERROR_CHARS]]
    fields += ["n", attempts, "at", now, "b", body.decode()]
    for name in ("k", "i", "e", "l", "m"):
        fields += [name, job.get(name, "")]
    await runner.command(
        "XADD", keyspace.dead_letters, "MAXLEN", "~", DEAD_LETTERS_MAX, "*", *fields
    )
    log.warning("webhook for subscription %s dead-lettered: %s", sid, error)
    if metrics is not None:
        # counted up here, at once; the daemon's retention pass sets the gauge to the
        # sizes of every dead-letter store (this one and the bus reader's)
        metrics.dead_letters.inc()


class Kicks:
    """This daemon's matching telling the worker of a subscription that it queued jobs
    (a count per working subscription, so a job queued just before the worker starts
    waiting is not missed)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._events: dict[str, anyio.Event] = {}

    def kick(self, sids: Sequence[str]) -> None:
        for sid in sids:
            if sid in self._counts:
                self._counts[sid] += 1
                event = self._events.get(sid)
                if event is not None:
                    event.set()

    def start(self, sid: str) -> None:
        self._counts[sid] = 0

    def stop(self, sid: str) -> None:
        self._counts.pop(sid, None)
        self._events.pop(sid, None)

    def count(self, sid: str) -> int:
        return self._counts.get(sid, 0)

    async def wait(self, sid: str, seen: int, patience: float, *, jobs: int = 1) -> bool:
        """Whether jobs were queued since the count was ``seen``, waiting up to
        ``patience`` seconds for ``jobs`` of them."""
        with anyio.move_on_after(patience):
            while self.count(sid) - seen < jobs:
                event = self._events[sid] = anyio.Event()
                try:
                    await event.wait()
                finally:
                    self._events.pop(sid, None)
        return self.count(sid) != seen


@dataclass
class _Turn:
    """A turn's state, kept where the cancellation handler finds it."""

    sid: str
    left: int
    done: list[str] = field(default_factory=list)  # finished, not yet acknowledged
    held: bool = False
    undue: bool = False  # the due mark is removed and must be set again
    seen: int = 0  # the kicks counted before the last claim
    pending: bool = True  # pending jobs may be left in the group: claim those first


@dataclass
class _Chunk:
    attempted: int = 0
    retry: Retry | None = None
    stopped: bool = False  # the lock's time or the subscription ran out


class Deliverer:
    """Delivers turns for the engine (``WebhookFanout``): the HTTP pool and the event
    cache are shared by every turn of the daemon."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        runner: AsyncScriptRunner,
        keyspace: Keyspace,
        *,
        consumer: str,
        config: WebhookConfig,
        metrics: Metrics | None,
        rng: random.Random,
        spare: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runner = runner
        self.keyspace = keyspace
        self.consumer = consumer
        self.config = config
        self.metrics = metrics
        self.rng = rng
        self.spare = spare
        self.kicks = Kicks()
        self._attempts = (
            None
            if metrics is None
            else {o: metrics.webhook_attempts.labels(str(o)) for o in Outcome}
        )
        # a pipeline reaches one server in order; a cluster's may reach several at once
        self.ordered = not isinstance(redis, RedisCluster)
        self.http = WebhookHTTP(
            allow_private=config.allow_private,
            user_agent=f"oibus/{_version.__version__}",
            max_idle=2 * config.concurrency,
        )
        self.events = EventCache(runner, keyspace)

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- a turn -------------------------------------------------------------------------
    async def turn(self, sid: str) -> bool:
        """Deliver up to ``config.batch`` of the queue's jobs, in order; False when
        another consumer holds the queue's lock (nothing was done)."""
        turn = _Turn(sid, self.config.batch)
        self.kicks.start(sid)
        try:
            return await self._turn(turn)
        except BaseException:
            # cancelled or failed: what was delivered is recorded, the lock handed back
            # (the next holder need not wait for its TTL), the rest stays pending
            if turn.held:
                with anyio.move_on_after(2, shield=True):
                    try:
                        await self._end(turn, due=None)
                    except Exception as exc:
                        log.warning("could not hand back the queue of %s: %s", sid, exc)
            raise
        finally:
            self.kicks.stop(sid)

    async def _turn(self, turn: _Turn) -> bool:
        record, batch, held_at = await self._claim(turn, min(CHUNK, turn.left))
        if batch is None:
            return False
        while True:
            if record is None or record.expired(batch.now):
                await self._discard(turn, record)
                return True
            # a hot queue (this daemon queued to it during the turn) waits a little for
            # more rather than hand its lock back
            if (
                not batch.jobs
                and turn.seen
                and self.spare()
                and await self.kicks.wait(turn.sid, turn.seen, LINGER_S)
            ):
                await self.kicks.wait(turn.sid, turn.seen, GATHER_S, jobs=CHUNK // 2)
                record, batch, held_at = await self._claim(turn, min(CHUNK, turn.left))
                if batch is None:
                    return True
                continue
            if not batch.jobs:
                found = await self._recheck(turn, held_at)
                if found is None:
                    return True
                batch, held_at = found
            head = batch.jobs[0][0]
            if batch.retry is not None and batch.retry.job == head and batch.retry.due > batch.now:
                await self._end(turn, due=batch.retry.due)  # later jobs wait behind it
                return True
            chunk = await self._deliver(turn, record, batch, held_at)
            turn.left -= chunk.attempted
            if chunk.retry is not None:
                await self._end(turn, due=chunk.retry.due, retry=chunk.retry)
                return True
            if chunk.stopped or turn.left <= 0:
                # due again now, behind the subscriptions that waited longer
                await self._end(turn, due=self._now(batch, held_at), again=True)
                return True
            record, batch, held_at = await self._claim(turn, min(CHUNK, turn.left))
            if batch is None:
                return True  # lost the lock (stalled past its TTL): the new holder goes on

    async def _claim(
        self, turn: _Turn, count: int
    ) -> tuple[StoredSubscription | None, Batch | None, float]:
        """Record the finished jobs and claim the next ones, with the record read in the
        same round trip."""
        held_at = time.monotonic()  # the lock's new TTL runs from no earlier than this
        turn.seen = self.kicks.count(turn.sid)
        call = self._batch(turn, count)
        text, reply = await self._send([("HGET", self.keyspace.subscriptions, turn.sid), call])
        turn.done = []
        batch = parse_batch(reply)
        turn.held = batch is not None
        turn.pending = batch is None or batch.more_pending
        record = None if text is None else decode_record(cast("str", text), turn.sid)
        return record, batch, held_at

    async def _recheck(self, turn: _Turn, held_at: float) -> tuple[Batch, float] | None:
        """The queue looked empty: clear its due mark, then look once more (a job queued
        in between is either seen now or sets its due mark after the removal); the lock
        is given back when it is still empty."""
        due = ("ZREM", self.keyspace.webhook_due, turn.sid)
        turn.undue = True
        call = self._batch(turn, min(CHUNK, turn.left), if_empty="release")
        held_at = time.monotonic()
        if self.ordered:
            _, reply = await self._send([due, call])
        else:
            await self._send([due])
            (reply,) = await self._send([call])
        turn.done = []
        batch = parse_batch(reply)
        turn.held = batch is not None and bool(batch.jobs)
        turn.pending = batch is None or batch.more_pending
        if batch is not None and not batch.jobs:
            turn.undue = False  # empty, and the lock given back: nothing is due
            return None
        # jobs came in between, or the lock was lost (another holder has the queue, and
        # its turn ends by moving a due mark that must exist): due again
        now = 0 if batch is None else batch.now
        await self._send([("ZADD", self.keyspace.webhook_due, "NX", now, turn.sid)])
        if batch is None:
            turn.undue = False
            return None
        turn.undue = False
        return batch, held_at

    async def _end(
        self, turn: _Turn, *, due: int | None, retry: Retry | None = None, again: bool = False
    ) -> None:
        """Record what is finished (and the retry), give the lock back, and set when the
        queue is due next."""
        items: list[Call | Command] = [self._batch(turn, 0, retry=retry, ttl_ms=0)]
        ks = self.keyspace
        if turn.undue:
            items.append(("ZADD", ks.webhook_due, "NX", due or 0, turn.sid))
        elif due is not None:
            items.append(("ZADD", ks.webhook_due, *(["XX"] if again else []), due, turn.sid))
        await self._send(items)
        turn.done, turn.held, turn.undue = [], False, False

    def _batch(
        self,
        turn: _Turn,
        count: int,
        *,
        retry: Retry | None = None,
        ttl_ms: int | None = None,
        if_empty: str = "keep",
    ) -> Call:
        return batch_call(
            self.keyspace,
            turn.sid,
            self.consumer,
            ttl_ms=self.config.lock_ms if ttl_ms is None else ttl_ms,
            count=count,
            done=turn.done,
            retry=retry,
            if_empty=if_empty,
            pending=turn.pending,
        )

    async def _discard(self, turn: _Turn, record: StoredSubscription | None) -> None:
        """A removed or expired subscription receives nothing more: drop its queue."""
        ks, sid = self.keyspace, turn.sid
        items: list[Call | Command] = []
        if record is not None:
            items.append(remove_subscription_call(ks, record, only_expired=True))
        items += [
            ("DEL", ks.webhook_queue(sid), ks.webhook_state(sid), ks.webhook_lock(sid)),
            ("ZREM", ks.webhook_due, sid),
        ]
        await self._send(items)
        turn.done, turn.held, turn.undue = [], False, False

    # -- the jobs -------------------------------------------------------------------------
    async def _deliver(
        self, turn: _Turn, record: StoredSubscription, batch: Batch, held_at: float
    ) -> _Chunk:
        cfg = self.config
        events = await self.events.bodies(batch.jobs)
        chunk = _Chunk()
        deadline = held_at + cfg.lock_ms / 1000 - cfg.timeout - LOCK_MARGIN_S
        for (entry_id, job), event in zip(batch.jobs, events, strict=True):
            now = self._now(batch, held_at)
            if time.monotonic() > deadline or record.expired(now):
                chunk.stopped = True
                break
            chunk.attempted += 1
            retry = batch.retry
            attempt = (retry.attempts if retry is not None and retry.job == entry_id else 0) + 1
            if event is None:
                await self._dead_letter(record, job, b"", "the event is not in its log", 0, now)
                turn.done.append(entry_id)
                continue
            body = body_with(record.id, event)
            outcome, error, wait = await self._post(record, job.get("k", ""), body, now, attempt)
            if outcome is Outcome.DELIVERED:
                turn.done.append(entry_id)
                self._count(Outcome.DELIVERED)
                continue
            if outcome is Outcome.RETRY:
                delay = (
                    wait
                    if wait is not None
                    else backoff(attempt, cfg.backoff_base, cfg.backoff_cap, self.rng)
                )
                due = now + math.ceil(delay * 1_000_000)
                too_old = due // 1000 - _queued_ms(entry_id) > cfg.max_age * 1000
                if attempt < cfg.max_attempts and not too_old:
                    chunk.retry = Retry(entry_id, attempt, due, error)
                    self._count(Outcome.RETRY)
                    break
                error += f" (gave up after {attempt} attempts)" if not too_old else " (too old)"
            await self._dead_letter(record, job, body, error, attempt, now)
            turn.done.append(entry_id)
        return chunk

    async def _post(
        self, record: StoredSubscription, key: str, body: bytes, now: int, attempt: int
    ) -> tuple[Outcome, str, float | None]:
        """POST the body; the outcome, an error text, and the delay Retry-After asks."""
        timestamp = str(now // 1_000_000)
        headers = [
            ("Content-Type", "application/json"),
            ("X-OIBus-Event-Id", key),
            ("X-OIBus-Subscription-Id", record.id),
            ("X-OIBus-Timestamp", timestamp),
            ("X-OIBus-Signature", sign(record.secret, timestamp, body)),
            ("X-OIBus-Attempt", str(attempt)),
        ]
        started = time.monotonic()
        outcome, error, wait = Outcome.RETRY, f"timed out after {self.config.timeout} s", None
        # one bound for the whole attempt (name resolution and connection included): a
        # server trickling bytes cannot hold a worker past it
        with anyio.move_on_after(self.config.timeout):
            try:
                answer = await self.http.post(record.webhook_url, headers, body)
                outcome = classify(answer.status)
                error = f"HTTP {answer.status}"
                if answer.retry_after is not None:
                    wait = retry_after(answer.retry_after, to_datetime(now))
            except PostFailed as exc:
                outcome = Outcome.DEAD_LETTER if exc.refused else Outcome.RETRY
                error = exc.text[:ERROR_CHARS]
            except OSError as exc:
                outcome, error = Outcome.RETRY, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
        if self.metrics is not None:
            self.metrics.webhook_latency.observe(time.monotonic() - started)
        if wait is not None:
            wait = min(wait, self.config.max_age)
        return outcome, error, wait if outcome is Outcome.RETRY else None

    async def _dead_letter(
        self,
        record: StoredSubscription,
        job: Mapping[str, str],
        body: bytes,
        error: str,
        attempts: int,
        now: int,
    ) -> None:
        # stored before the job is acknowledged (with the next round trip): a crash in
        # between leaves a duplicate dead letter, never none
        letter = (record.id, record.webhook_url, job, body, error, attempts)
        await write_dead_letter(self.runner, self.keyspace, self.metrics, letter, now)
        self._count(Outcome.DEAD_LETTER)

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _now(batch: Batch, held_at: float) -> int:
        """The server's time (µs): the claim's, plus the time since on this clock."""
        return batch.now + int((time.monotonic() - held_at) * 1_000_000)

    async def _send(self, items: Sequence[Call | Command]) -> list[Any]:
        """Script calls and plain commands in one round trip (in this order, on one
        server). Raises the first error."""
        replies = await self.runner.round_trip(items)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _count(self, outcome: Outcome) -> None:
        if self._attempts is not None:
            self._attempts[outcome].inc()
