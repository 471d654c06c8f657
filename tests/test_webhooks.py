"""Webhook fan-out (RFC-0006): the engine driven directly (bus entries read with XRANGE and
handed to ``on_bus_entry``, ``run()`` in a task group) against a real HTTP receiver on
127.0.0.1. Retries until one success per event, signatures, Retry-After, dead letters
and their replay, isolation of a slow endpoint, expiry, scopes and filters, idempotent
matching, the address policy; and the pure parts (classification, backoff, parsing)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import redis
from receiver import Hit, Receiver

from oibus import AsyncClient, ValidationError
from oibus.bus import webhooks as wh
from oibus.bus.keyspace import key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.daemon.metrics import Metrics
from oibus.daemon.webhooks import (
    DeadLetter,
    WebhookConfig,
    WebhookFanout,
    list_dead_letters,
    replay_dead_letters,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("private_webhooks")]

FAST = WebhookConfig(
    timeout=3.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    allow_private=True,
    poll_interval=0.05,
    max_attempts=5,
)


# -- driving the engine -----------------------------------------------------------------
class Bus:
    """Hands every new bus entry of every partition to the engine, as the daemon would."""

    def __init__(self, client: AsyncClient, engine: WebhookFanout) -> None:
        self.client, self.engine = client, engine
        self.seen: dict[int, str] = {}

    async def entries(self) -> list[tuple[int, str, dict[str, str]]]:
        out = []
        ks = self.client.keyspace
        for p in range(ks.partitions):
            low = "(" + self.seen[p] if p in self.seen else "-"
            for entry_id, fields in await self.client.redis.xrange(ks.bus(p), low, "+"):
                out.append((p, entry_id, fields))
                self.seen[p] = entry_id
        return out

    async def feed(self) -> int:
        found = await self.entries()
        for p, entry_id, fields in found:
            await self.engine.on_bus_entry(p, entry_id, fields)
        return len(found)


def engine_for(client: AsyncClient, config: WebhookConfig = FAST, **kw: Any) -> WebhookFanout:
    return WebhookFanout(client.redis, client.keyspace, consumer="d1", config=config, **kw)


async def run_until(
    engine: WebhookFanout, done: Callable[[], bool], limit: float = 10.0, *, drain: bool = True
) -> None:
    """Run the engine until ``done()`` holds (checked every 20 ms) and, with ``drain``, no
    queue is due any more (every job acknowledged), then cancel it. Without ``drain``, a
    job in flight is cancelled and stays pending (delivered again by the next run)."""
    due = engine.keyspace.webhook_due
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run)
        with anyio.fail_after(limit):
            # the conditions live in the receiver's thread and in Redis: polled
            while not done() or (drain and await engine.redis.zcard(due)):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()


async def run_for(engine: WebhookFanout, seconds: float) -> None:
    with anyio.move_on_after(seconds):
        await engine.run()


async def dead_lettered(client: AsyncClient, attempts: int) -> tuple[WebhookFanout, DeadLetter]:
    """Create an intent and run an engine allowing ``attempts`` tries, with tiny
    backoffs, until its one delivery is dead-lettered."""
    await client.create_intent("t")
    config = WebhookConfig(
        timeout=1, backoff_base=0.01, backoff_cap=0.05, allow_private=True,
        poll_interval=0.05, max_attempts=attempts,
    )  # fmt: skip
    metrics = Metrics()
    engine = engine_for(client, config, metrics=metrics)
    await Bus(client, engine).feed()
    await run_until(engine, lambda: metrics.dead_letters._value.get() == 1)
    (letter,) = await list_dead_letters(client.redis, client.keyspace)
    return engine, letter


def events(hits: list[Hit]) -> list[dict[str, Any]]:
    return [json.loads(h.body)["event"] for h in hits]


# -- retries, signatures, dead letters ----------------------------------------------------
async def test_retries_until_one_success_per_event(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    receiver.plan["/a"] = [503, 502]
    sub = await aclient.subscribe(webhook_url=receiver.url("/a"), event_types=["comment"])
    intent = await aclient.create_intent("t")
    await aclient.log_event(intent.id, "comment", {"n": 1})
    await aclient.log_event(intent.id, "comment", {"n": 2})
    metrics = Metrics()
    engine = engine_for(aclient, metrics=metrics)
    assert await Bus(aclient, engine).feed() == 3
    await run_until(engine, lambda: len(receiver.ok("/a")) == 2)
    await run_for(engine, 0.3)  # nothing more arrives
    hits = receiver.on("/a")
    assert [h.status for h in hits] == [503, 502, 200, 200]
    ok = receiver.ok("/a")
    assert [e["payload"] for e in events(ok)] == [{"n": 1}, {"n": 2}]  # event order
    for hit in hits:
        ts = hit.headers["X-OIBus-Timestamp"]
        assert wh.verify(sub.secret or "", ts, hit.body, hit.headers["X-OIBus-Signature"])
        assert abs(int(ts) - time.time()) < 60
        assert json.loads(hit.body)["subscription_id"] == sub.id
    first = events(ok)[0]
    assert set(first) == {"id", "intent_id", "seq", "event_type", "actor", "payload", "created_at"}
    assert first["intent_id"] == intent.id and first["event_type"] == "comment"
    assert ok[0].headers["X-OIBus-Event-Id"] == f"{intent.id}/{first['id']}"
    assert [h.headers["X-OIBus-Attempt"] for h in hits[:3]] == ["1", "2", "3"]
    # retries are spaced by at most the backoff cap (plus scheduling slack)
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits[:3])]
    assert all(g < FAST.backoff_cap + 0.5 for g in gaps)
    assert metrics.webhook_attempts.labels("retry")._value.get() == 2
    assert metrics.webhook_attempts.labels("delivered")._value.get() == 2
    assert (await list_dead_letters(aclient.redis, aclient.keyspace)) == []


async def test_retry_after_is_honoured(aclient: AsyncClient, receiver: Receiver) -> None:
    receiver.plan["/r"] = [429]
    receiver.headers["/r"] = {"Retry-After": "1"}
    await aclient.subscribe(webhook_url=receiver.url("/r"))
    await aclient.create_intent("t")
    # a generous attempt timeout: on a loaded machine a 429 the receiver sent but the
    # engine read after FAST's 3 s counts as a timeout, retried at once (seen once)
    engine = engine_for(aclient, dataclasses.replace(FAST, timeout=20.0))
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/r")) == 1, limit=30.0)
    first, second = receiver.on("/r")
    assert second.at - first.at >= 0.9


async def test_client_error_is_dead_lettered_at_once(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    receiver.plan["/gone"] = [410]
    sub = await aclient.subscribe(webhook_url=receiver.url("/gone"))
    intent = await aclient.create_intent("t")
    metrics = Metrics()
    engine = engine_for(aclient, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: metrics.dead_letters._value.get() == 1)
    assert len(receiver.on("/gone")) == 1
    (letter,) = await list_dead_letters(aclient.redis, aclient.keyspace)
    assert (letter.subscription_id, letter.error, letter.attempts) == (sub.id, "HTTP 410", 1)
    assert letter.event_id.startswith(intent.id + "/")
    assert json.loads(letter.body)["event"]["event_type"] == "intent_created"
    # the job is gone from the queue, acknowledged
    queue = aclient.keyspace.webhook_queue(sub.id)
    assert await aclient.redis.xlen(queue) == 0


async def test_down_past_the_limit_then_replay(aclient: AsyncClient, receiver: Receiver) -> None:
    receiver.plan["/down"] = [503] * 3
    sub = await aclient.subscribe(webhook_url=receiver.url("/down"))
    engine, letter = await dead_lettered(aclient, attempts=3)
    assert letter.attempts == 3 and "HTTP 503" in letter.error
    assert receiver.ok("/down") == []
    # the receiver is back: replay delivers it once, and empties the store
    assert await replay_dead_letters(aclient.redis, aclient.keyspace) == 1
    assert await replay_dead_letters(aclient.redis, aclient.keyspace) == 0
    assert await list_dead_letters(aclient.redis, aclient.keyspace) == []
    await run_until(engine, lambda: len(receiver.ok("/down")) == 1)
    await run_for(engine, 0.3)
    (ok,) = receiver.ok("/down")
    assert ok.headers["X-OIBus-Event-Id"] == letter.event_id
    assert json.loads(ok.body)["subscription_id"] == sub.id


async def test_replay_of_chosen_ids(aclient: AsyncClient, receiver: Receiver) -> None:
    receiver.plan["/x"] = [400, 400]
    await aclient.subscribe(webhook_url=receiver.url("/x"), event_types=["comment"])
    intent = await aclient.create_intent("t")
    await aclient.log_event(intent.id, "comment", {"n": 1})
    await aclient.log_event(intent.id, "comment", {"n": 2})
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.on("/x")) == 2)
    await run_for(engine, 0.2)
    letters = await list_dead_letters(aclient.redis, aclient.keyspace)
    assert len(letters) == 2
    page = await list_dead_letters(aclient.redis, aclient.keyspace, limit=1)
    assert page.next_cursor == letters[0].id
    assert await replay_dead_letters(aclient.redis, aclient.keyspace, [letters[1].id]) == 1
    assert [d.id for d in await list_dead_letters(aclient.redis, aclient.keyspace)] == [
        letters[0].id
    ]
    await run_until(engine, lambda: len(receiver.ok("/x")) == 1)
    assert events(receiver.ok("/x"))[0]["payload"] == {"n": 2}


async def test_replay_keeps_letters_nobody_can_receive(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    receiver.plan["/bye"] = [404]
    sub = await aclient.subscribe(webhook_url=receiver.url("/bye"))
    _, letter = await dead_lettered(aclient, attempts=1)
    await aclient.unsubscribe(sub.id)
    assert await replay_dead_letters(aclient.redis, aclient.keyspace) == 0
    assert [d.id for d in await list_dead_letters(aclient.redis, aclient.keyspace)] == [letter.id]


# -- isolation and lifecycle -------------------------------------------------------------
async def test_slow_endpoint_does_not_delay_another(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    receiver.delay["/slow"] = 2.0
    await aclient.subscribe(webhook_url=receiver.url("/slow"))
    await aclient.subscribe(webhook_url=receiver.url("/fast"))
    for n in range(3):
        await aclient.create_intent(f"t{n}")
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    started = time.monotonic()
    await run_until(engine, lambda: len(receiver.ok("/fast")) == 3, drain=False)
    assert time.monotonic() - started < 1.9  # not behind even one slow request
    assert receiver.ok("/slow") == []


async def test_expired_subscription_gets_nothing(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    # a margin for a slow first call (a cluster client's set-up) before it is in the past
    soon = datetime.now(UTC) + timedelta(seconds=1.0)
    sub = await aclient.subscribe(webhook_url=receiver.url("/e"), expires_at=soon)
    await anyio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    assert await aclient.get_subscriptions() == []
    await aclient.create_intent("t")
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_for(engine, 0.3)
    assert receiver.on("/e") == []
    assert not raw_redis.hexists(aclient.keyspace.subscriptions, sub.id)  # cleaned up
    assert raw_redis.xlen(aclient.keyspace.webhook_queue(sub.id)) == 0


async def test_removed_subscription_stops_receiving(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    sub = await aclient.subscribe(webhook_url=receiver.url("/u"))
    await aclient.create_intent("t")
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    assert raw_redis.xlen(aclient.keyspace.webhook_queue(sub.id)) == 1
    await aclient.unsubscribe(sub.id)
    await run_for(engine, 0.3)
    assert receiver.on("/u") == []
    assert not raw_redis.exists(aclient.keyspace.webhook_queue(sub.id))
    assert raw_redis.zscore(aclient.keyspace.webhook_due, sub.id) is None


async def test_cancellation_leaves_in_flight_work_pending(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    receiver.delay["/hang"] = 1.0
    sub = await aclient.subscribe(webhook_url=receiver.url("/hang"))
    await aclient.create_intent("t")
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    queue = aclient.keyspace.webhook_queue(sub.id)
    started = time.monotonic()
    await run_for(engine, 0.4)  # cancelled mid-request
    assert time.monotonic() - started < 0.9  # returned promptly
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 1
    assert not raw_redis.exists(aclient.keyspace.webhook_lock(sub.id))  # handed back
    # another daemon takes it over at once and delivers it
    receiver.delay["/hang"] = 0
    other = WebhookFanout(aclient.redis, aclient.keyspace, consumer="d2", config=FAST)
    await run_until(other, lambda: len(receiver.ok("/hang")) >= 1)
    await run_for(other, 0.2)
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 0
    keys = {h.headers["X-OIBus-Event-Id"] for h in receiver.on("/hang")}
    assert len(keys) == 1  # a repeat, if any, carries the same event id


async def test_two_daemons_keep_each_subscriptions_order(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    receiver.plan["/order"] = [503, 200, 500]  # retries in the middle of the run
    await aclient.subscribe(webhook_url=receiver.url("/order"), event_types=["comment"])
    intent = await aclient.create_intent("t")
    for n in range(12):
        await aclient.log_event(intent.id, "comment", {"n": n})
    first = engine_for(aclient)
    second = WebhookFanout(aclient.redis, aclient.keyspace, consumer="d2", config=FAST)
    await Bus(aclient, first).feed()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_until, second, lambda: len(receiver.ok("/order")) == 12)
        await run_until(first, lambda: len(receiver.ok("/order")) == 12)
    delivered = [e["payload"]["n"] for e in events(receiver.ok("/order"))]
    assert delivered == list(range(12))  # one at a time, in order, across both daemons


async def test_calls_send_the_key_and_argument_counts_the_headers_declare(
    aclient: AsyncClient,
) -> None:
    engine = engine_for(aclient)
    call = engine._enqueue_call("s", "i/1-0", "i", "1-0", aclient.keyspace.events("i"), "")
    header = default_registry()[call.script].header
    assert (len(call.keys), len(call.args)) == (len(header.keys), len(header.argv))
    assert len({key_slot(k) for k in call.keys}) == 1


async def test_workers_take_turns(aclient: AsyncClient, receiver: Receiver) -> None:
    await aclient.subscribe(webhook_url=receiver.url("/one"), event_types=["comment"])
    await aclient.subscribe(webhook_url=receiver.url("/two"), event_types=["comment"])
    intent = await aclient.create_intent("t")
    for n in range(5):
        await aclient.log_event(intent.id, "comment", {"n": n})
    config = WebhookConfig(allow_private=True, poll_interval=0.05, batch=2, concurrency=1)
    engine = engine_for(aclient, config)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/one")) == len(receiver.ok("/two")) == 5)
    for path in ("/one", "/two"):
        assert [e["payload"]["n"] for e in events(receiver.ok(path))] == list(range(5))
    # one worker at a time, two jobs a turn: neither subscription got all five first
    order = [h.path for h in receiver.hits]
    assert order[:2] != order[2:4]


# -- matching ---------------------------------------------------------------------------
async def test_scopes_and_event_type_filters(aclient: AsyncClient, receiver: Receiver) -> None:
    portfolio = await aclient.create_portfolio("p")
    member = await aclient.create_intent("member")
    outsider = await aclient.create_intent("outsider")
    await aclient.add_intent_to_portfolio(portfolio.id, member.id)
    engine = engine_for(aclient)
    bus = Bus(aclient, engine)
    await bus.feed()  # before any subscription: nothing to queue
    await aclient.subscribe(member.id, webhook_url=receiver.url("/intent"))
    await aclient.subscribe(
        member.id, webhook_url=receiver.url("/intent-comments"), event_types=["comment"]
    )
    await aclient.subscribe(portfolio_id=portfolio.id, webhook_url=receiver.url("/portfolio"))
    await aclient.subscribe(webhook_url=receiver.url("/global"), event_types=["comment"])
    await aclient.log_event(member.id, "comment", {"who": "member"})
    await aclient.log_event(outsider.id, "comment", {"who": "outsider"})
    await aclient.log_event(member.id, "note", {"who": "member"})
    await bus.feed()
    await run_until(engine, lambda: len(receiver.ok("/global")) == 2)
    await run_for(engine, 0.3)
    seen = {
        path: [(e["event_type"], e["payload"].get("who")) for e in events(receiver.ok(path))]
        for path in ("/intent", "/intent-comments", "/portfolio", "/global")
    }
    assert seen["/intent"] == [("comment", "member"), ("note", "member")]
    assert seen["/intent-comments"] == [("comment", "member")]
    assert seen["/portfolio"] == [("comment", "member"), ("note", "member")]
    # two intents, two partitions: no order between them
    assert sorted(seen["/global"]) == [("comment", "member"), ("comment", "outsider")]


async def test_portfolio_events_reach_portfolio_subscribers(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    portfolio = await aclient.create_portfolio("p")
    await aclient.subscribe(portfolio_id=portfolio.id, webhook_url=receiver.url("/p"))
    intent = await aclient.create_intent("i")
    await aclient.add_intent_to_portfolio(portfolio.id, intent.id)
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/p")) >= 1)
    await run_for(engine, 0.3)
    # the portfolio's own log records the member added (the intent's log may too)
    added = [
        e
        for e in events(receiver.ok("/p"))
        if e["event_type"] == "added_to_portfolio" and "portfolio_id" in e
    ]
    assert added and added[0]["portfolio_id"] == portfolio.id
    assert all(
        h.headers["X-OIBus-Event-Id"].startswith(portfolio.id + "/")
        for h in receiver.ok("/p")
        if json.loads(h.body)["event"].get("portfolio_id")
    )


async def test_events_before_the_subscription_are_not_delivered(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    intent = await aclient.create_intent("t")
    await anyio.sleep(0.01)  # a later millisecond: the granularity of bus entry ids
    await aclient.subscribe(intent.id, webhook_url=receiver.url("/later"))
    await aclient.log_event(intent.id, "comment", {})
    engine = engine_for(aclient)
    assert await Bus(aclient, engine).feed() == 2
    await run_until(engine, lambda: len(receiver.ok("/later")) == 1)
    assert [e["event_type"] for e in events(receiver.on("/later"))] == ["comment"]


async def test_an_unreadable_record_holds_up_nothing(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    ks = aclient.keyspace
    raw_redis.hset(ks.subscriptions, "junk", '{"id": 1}')  # written around the scripts
    raw_redis.sadd(ks.subscription_index(None, None), "junk")
    await aclient.subscribe(webhook_url=receiver.url("/fine"))
    await aclient.create_intent("t")
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/fine")) == 1)


async def test_handling_an_entry_twice_queues_it_once(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    sub = await aclient.subscribe(webhook_url=receiver.url("/twice"))
    await aclient.create_intent("t")
    engine = engine_for(aclient)
    (entry,) = await Bus(aclient, engine).entries()
    await engine.on_bus_entry(*entry)
    await engine.on_bus_entry(*entry)  # the daemon crashed before acknowledging
    assert raw_redis.xlen(aclient.keyspace.webhook_queue(sub.id)) == 1
    await run_until(engine, lambda: len(receiver.ok("/twice")) == 1)
    await run_for(engine, 0.3)
    assert len(receiver.on("/twice")) == 1


async def test_private_address_refused_unless_allowed(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    await aclient.subscribe(webhook_url=receiver.url("/private"))
    await aclient.create_intent("t")
    strict = WebhookConfig(timeout=3, poll_interval=0.05)
    metrics = Metrics()
    engine = engine_for(aclient, strict, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: metrics.dead_letters._value.get() == 1)
    assert receiver.on("/private") == []
    (letter,) = await list_dead_letters(aclient.redis, aclient.keyspace)
    assert "127.0.0.1" in letter.error and "allow_private" in letter.error
    assert await replay_dead_letters(aclient.redis, aclient.keyspace) == 1
    await run_until(engine_for(aclient), lambda: len(receiver.ok("/private")) == 1)


async def test_unreachable_endpoint_is_retried(aclient: AsyncClient) -> None:
    # a port nobody listens on: connection refused is a network error, retried
    await aclient.subscribe(webhook_url="http://127.0.0.1:9/closed")
    _, letter = await dead_lettered(aclient, attempts=2)
    assert letter.attempts == 2 and "ConnectError" in letter.error


async def test_the_queue_script_refuses_foreign_keys(aclient: AsyncClient) -> None:
    ks = aclient.keyspace
    call = Call(
        "enqueue_webhook",
        [ks.webhook_queue("s1"), ks.webhook_marker("s1", "i/1-0").replace("i/1-0", "j/1-0")],
        [wh.GROUP, "1000", "10", "i/1-0", "i", "1-0", ks.events("i"), ""],
    )
    with pytest.raises(ValidationError):
        await aclient._run(call)
    assert not await aclient.redis.exists(ks.webhook_queue("s1"))


# -- the pure parts ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, "delivered"), (204, "delivered"), (301, "dead_letter"), (400, "dead_letter"),
     (404, "dead_letter"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry")],
)  # fmt: skip
def test_classify(status: int, outcome: str) -> None:
    assert wh.classify(status) == outcome


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
        samples = [wh.backoff(attempt, 0.5, 10.0, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # spread over the whole range
    assert wh.backoff(10_000, 1.0, 60.0, rng) <= 60.0


def test_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert wh.retry_after("120", now) == 120
    assert wh.retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30
    assert wh.retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0
    assert wh.retry_after("soon", now) is None
    assert wh.retry_after(None, now) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("93.184.216.34", True), ("2606:2800:220:1::1", True), ("127.0.0.1", False),
     ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
     ("169.254.169.254", False), ("::1", False), ("fe80::1%eth0", False), ("fc00::1", False),
     ("::ffff:127.0.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False)],
)  # fmt: skip
def test_address_policy(address: str, allowed: bool) -> None:
    assert wh.address_allowed(address) is allowed


def test_signature() -> None:
    body = b'{"a":1}'
    signature = wh.sign("k" * 16, "1700000000", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert wh.verify("k" * 16, "1700000000", body, signature)
    assert not wh.verify("k" * 16, "1700000001", body, signature)
    assert not wh.verify("x" * 16, "1700000000", body, signature)


@pytest.mark.parametrize(
    "bad",
    [{"timeout": 0}, {"max_attempts": 0}, {"concurrency": True}, {"backoff_cap": float("inf")},
     {"marker_ttl": 0.1}, {"queue_max": 0}],
)  # fmt: skip
def test_config_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        WebhookConfig(**bad)


async def test_the_cli_lists_and_replays_dead_letters(
    aclient: AsyncClient, receiver: Receiver, backend: str
) -> None:
    from click.testing import CliRunner

    from oibus.cli import main

    if backend in ("fake", "cluster"):
        pytest.skip("the CLI connects by URL to a single server")
    receiver.plan["/later"] = [410]
    await aclient.subscribe(webhook_url=receiver.url("/later"))
    await aclient.create_intent("t")
    metrics = Metrics()
    engine = engine_for(aclient, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: metrics.dead_letters._value.get() == 1)
    url = aclient.redis.get_connection_kwargs()  # type: ignore[union-attr]
    target = f"redis://{url['host']}:{url['port']}/{url.get('db', 0)}"
    args = ["--redis-url", target, "--namespace", aclient.keyspace.namespace]

    def cli(*words: str) -> str:
        result = CliRunner().invoke(main, [*words, *args])
        assert result.exit_code == 0, result.output
        return result.output

    listed = await anyio.to_thread.run_sync(cli, "dlq", "list")
    assert "HTTP 410" in listed and "attempts 1" in listed
    replayed = await anyio.to_thread.run_sync(cli, "dlq", "replay", "--all")
    assert "replayed 1, 0 left in the store" in replayed
    await run_until(engine, lambda: len(receiver.ok("/later")) == 1)
    assert await anyio.to_thread.run_sync(cli, "dlq", "list") == "0 webhooks dead letters\n"


async def test_a_subscription_starts_after_what_came_before_it(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    """Issue 15.6: subscriptions were started at a millisecond, so an event of the same
    millisecond made just before subscribing was delivered (35 of 50 create-then-
    subscribe pairs). Within its millisecond the event's microsecond decides now."""
    pairs = 50
    for _ in range(pairs):
        intent = await aclient.create_intent("t")  # intent_created: before the subscription
        await aclient.subscribe(intent.id, webhook_url=receiver.url("/s"))
        await aclient.log_event(intent.id, "comment", {})  # after it
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/s")) >= pairs)
    delivered = [events([hit])[0]["event_type"] for hit in receiver.ok("/s")]
    assert delivered == ["comment"] * pairs
