"""Webhook delivery in batches (issue 18): many subscriptions delivered at once with each
one's order kept, a batch with a failing job, a worker stopped or killed mid-batch
(nothing lost, nothing queued twice), keep-alive connections, the address policy checked
where the connection is made, and the contract of ``webhook_batch.lua``. The engine is
driven as in test_webhooks.py (bus entries handed to ``on_bus_entry``, ``run()`` in a
task group)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
import redis
from receiver import Receiver
from test_webhooks import FAST, Bus, engine_for, events, run_for, run_until

from oibus import AsyncClient, ValidationError
from oibus.bus import webhooks as wh
from oibus.bus.keyspace import key_slot
from oibus.bus.registry import default_registry
from oibus.daemon import webhook_delivery, webhook_http
from oibus.daemon.metrics import Metrics
from oibus.daemon.webhook_http import Answer, PostFailed, WebhookHTTP
from oibus.daemon.webhooks import WebhookConfig, WebhookFanout, list_dead_letters

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("private_webhooks")]


# -- a receiver that sees concurrency and connections -------------------------------------
@dataclasses.dataclass
class Watch:
    """Counts requests in flight (in all and per path), the most seen at once, and the
    client connections (HTTP/1.1, keep-alive); each request waits ``delay`` seconds, is
    answered with the body ``replies`` has for its path (else none), and a path in
    ``drop`` has its connection closed after the answer, without saying so."""

    port: int = 0
    delay: float = 0.0
    plan: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    in_flight: Counter[str] = dataclasses.field(default_factory=Counter)
    most: int = 0
    most_per_path: Counter[str] = dataclasses.field(default_factory=Counter)
    bodies: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    connections: set[tuple[str, int]] = dataclasses.field(default_factory=set)
    replies: dict[str, bytes] = dataclasses.field(default_factory=dict)
    drop: set[str] = dataclasses.field(default_factory=set)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ok(self, path: str) -> list[int]:
        with self.lock:
            return [b["event"]["payload"]["n"] for b in self.bodies.get(path, [])]


@pytest.fixture
def watch() -> Iterator[Watch]:
    state = Watch()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.connections.add(self.client_address)
                state.in_flight[self.path] += 1
                state.most = max(state.most, sum(state.in_flight.values()))
                state.most_per_path[self.path] = max(
                    state.most_per_path[self.path], state.in_flight[self.path]
                )
                queued = state.plan.get(self.path) or []
                status = queued.pop(0) if queued else 200
            time.sleep(state.delay)
            with state.lock:
                state.in_flight[self.path] -= 1
                if status == 200:
                    state.bodies.setdefault(self.path, []).append(json.loads(body))
            reply = state.replies.get(self.path, b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            self.close_connection = self.path in state.drop

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


async def comments(client: AsyncClient, count: int) -> str:
    intent = await client.create_intent("t")
    for n in range(count):
        await client.log_event(intent.id, "comment", {"n": n})
    return intent.id


# -- concurrency and order ----------------------------------------------------------------
async def test_many_subscriptions_at_once_each_in_order(aclient: AsyncClient, watch: Watch) -> None:
    """Twelve subscriptions, four workers, small batches, a retry on some: requests to
    different subscriptions overlap, one subscription's never do, and each receives
    every event once, in order."""
    watch.delay = 0.01
    paths = [f"/s{k}" for k in range(12)]
    for path in paths:
        await aclient.subscribe(webhook_url=watch.url(path), event_types=["comment"])
    watch.plan["/s3"] = [503]
    watch.plan["/s7"] = [200, 200, 500]
    total = 15
    await comments(aclient, total)
    config = dataclasses.replace(FAST, concurrency=4, batch=5)
    engine = engine_for(aclient, config)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: all(len(watch.ok(p)) >= total for p in paths), limit=40)
    for path in paths:
        assert watch.ok(path) == list(range(total)), path
        assert watch.most_per_path[path] == 1, path  # one request at a time per subscription
    assert watch.most > 1  # but several subscriptions at once


async def test_connections_are_kept_alive(aclient: AsyncClient, watch: Watch) -> None:
    await aclient.subscribe(webhook_url=watch.url("/k"), event_types=["comment"])
    await comments(aclient, 20)
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(watch.ok("/k")) == 20)
    assert watch.ok("/k") == list(range(20))
    assert len(watch.connections) == 1  # twenty POSTs, one connection


# -- a batch with a failing job -----------------------------------------------------------
async def test_a_batch_with_one_failing_job(aclient: AsyncClient, receiver: Receiver) -> None:
    """The third job of a batch fails: the two before it are recorded as delivered (not
    sent again), the third is retried before anything after it, then the rest follow."""
    receiver.plan["/f"] = [200, 200, 503]
    await aclient.subscribe(webhook_url=receiver.url("/f"), event_types=["comment"])
    await comments(aclient, 6)
    metrics = Metrics()
    engine = engine_for(aclient, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/f")) == 6)
    await run_for(engine, 0.3)  # nothing more arrives
    hits = receiver.on("/f")
    assert [e["payload"]["n"] for e in events(hits)] == [0, 1, 2, 2, 3, 4, 5]
    assert [h.status for h in hits] == [200, 200, 503, 200, 200, 200, 200]
    assert [h.headers["X-OIBus-Attempt"] for h in hits[2:4]] == ["1", "2"]
    assert metrics.webhook_attempts.labels("delivered")._value.get() == 6
    assert metrics.webhook_attempts.labels("retry")._value.get() == 1


async def test_a_dead_letter_in_the_middle_of_a_batch(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    receiver.plan["/d"] = [200, 410]
    sub = await aclient.subscribe(webhook_url=receiver.url("/d"), event_types=["comment"])
    await comments(aclient, 4)
    metrics = Metrics()
    engine = engine_for(aclient, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/d")) == 3)
    await run_for(engine, 0.3)
    assert [e["payload"]["n"] for e in events(receiver.on("/d"))] == [0, 1, 2, 3]
    (letter,) = await list_dead_letters(aclient.redis, aclient.keyspace)
    assert json.loads(letter.body)["event"]["payload"] == {"n": 1}
    assert letter.error == "HTTP 410"
    queue = aclient.keyspace.webhook_queue(sub.id)
    assert raw_redis.xlen(queue) == 0
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 0


# -- stopped or killed mid-batch ----------------------------------------------------------
async def test_stopped_mid_batch_records_what_it_delivered(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    """Cancelled in the middle of a batch: what was delivered is acknowledged on the way
    out and the lock handed back, so the next daemon goes on at once and sends again at
    most the one request that was in flight."""
    receiver.delay["/m"] = 0.05
    sub = await aclient.subscribe(webhook_url=receiver.url("/m"), event_types=["comment"])
    total = 30
    await comments(aclient, total)
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: len(receiver.ok("/m")) >= 8, drain=False)
    first = len(receiver.on("/m"))
    assert first < total  # stopped with work left
    assert not raw_redis.exists(aclient.keyspace.webhook_lock(sub.id))
    receiver.delay["/m"] = 0
    other = WebhookFanout(aclient.redis, aclient.keyspace, consumer="d2", config=FAST)
    await run_until(other, lambda: len({h.body for h in receiver.ok("/m")}) == total)
    sent = [e["payload"]["n"] for e in events(receiver.ok("/m"))]
    assert sorted(set(sent)) == list(range(total))  # nothing lost
    assert len(sent) - total <= 1  # only the request in flight may come again
    # in order (the receiver records a request when it answers: the one in flight at the
    # stop may be recorded after the next daemon's first deliveries)
    assert list(dict.fromkeys(sent)) == list(range(total))
    queue = aclient.keyspace.webhook_queue(sub.id)
    assert raw_redis.xlen(queue) == 0
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # one loop: it waits a lock's TTL
async def test_killed_mid_batch_nothing_lost_nothing_queued_twice(
    aclient: AsyncClient,
    receiver: Receiver,
    raw_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon that dies mid-batch records nothing and keeps its lock until the TTL:
    the next one takes the batch over from the group's pending jobs. Every event arrives,
    in order after the takeover; what comes twice is only what the dead daemon
    delivered without recording (at most one batch); each job was queued once."""
    config = dataclasses.replace(FAST, timeout=0.5)  # a short lock TTL (6 s)
    receiver.delay["/x"] = 0.02
    sub = await aclient.subscribe(webhook_url=receiver.url("/x"), event_types=["comment"])
    total = 40
    await comments(aclient, total)
    dying = engine_for(aclient, config)
    bus = Bus(aclient, dying)
    await bus.feed()
    await bus.feed()  # an entry handled again queues nothing twice
    queue = aclient.keyspace.webhook_queue(sub.id)
    assert raw_redis.xlen(queue) == total

    async def dead(*args: Any, **kwargs: Any) -> None:
        await anyio.sleep_forever()  # a dead process records nothing and frees nothing

    monkeypatch.setattr(dying._deliverer, "_end", dead)
    with anyio.move_on_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dying.run)
            while len(receiver.ok("/x")) < 20:  # noqa: ASYNC110 - the receiver's thread
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    before = {e["payload"]["n"] for e in events(receiver.ok("/x"))}
    assert raw_redis.exists(aclient.keyspace.webhook_lock(sub.id))  # left to lapse
    receiver.delay["/x"] = 0
    other = WebhookFanout(aclient.redis, aclient.keyspace, consumer="d2", config=config)
    await run_until(other, lambda: len({h.body for h in receiver.ok("/x")}) == total, limit=30)
    sent = [e["payload"]["n"] for e in events(receiver.ok("/x"))]
    assert sorted(set(sent)) == list(range(total))  # nothing lost
    assert list(dict.fromkeys(sent)) == list(range(total))  # the takeover keeps the order
    repeated = [n for n, times in Counter(sent).items() if times > 1]
    assert len(sent) - total == len(repeated) <= webhook_delivery.CHUNK + 1
    assert set(repeated) <= before  # the repeats are what the dead daemon did not record
    assert raw_redis.xlen(queue) == 0
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 0
    assert await list_dead_letters(aclient.redis, aclient.keyspace) == []


# -- the address policy where the connection is made ---------------------------------------
async def test_a_name_resolving_to_loopback_is_refused(
    aclient: AsyncClient, receiver: Receiver
) -> None:
    await aclient.subscribe(webhook_url=f"http://localhost:{receiver.port}/name")
    await aclient.create_intent("t")
    metrics = Metrics()
    strict = WebhookConfig(timeout=3, poll_interval=0.05)
    engine = engine_for(aclient, strict, metrics=metrics)
    await Bus(aclient, engine).feed()
    await run_until(engine, lambda: metrics.dead_letters._value.get() == 1)
    assert receiver.on("/name") == []
    (letter,) = await list_dead_letters(aclient.redis, aclient.keyspace)
    assert letter.error.startswith("localhost resolves to") and "allow_private" in letter.error


async def test_the_policy_is_checked_on_the_addresses_connected_to(
    watch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is resolved once per connection, when it is made, and the socket connects
    to an address that answer gave: ``hook.invalid`` exists in no DNS, so a second lookup
    (by anyio or httpcore) would fail. A loopback answer is refused under a public-only
    policy, before any connection."""
    lookups: list[str] = []
    resolve = anyio.getaddrinfo

    async def resolver(host: str, port: int, **kwargs: Any) -> Any:
        if host != "hook.invalid":
            return await resolve(host, port, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(anyio, "getaddrinfo", resolver)
    url = f"http://hook.invalid:{watch.port}/n"
    strict = WebhookHTTP(allow_private=False, user_agent="t", max_idle=4)
    with pytest.raises(PostFailed) as refused:
        await strict.post(url, [], b"{}")
    await strict.aclose()
    assert refused.value.refused
    assert refused.value.text.startswith("hook.invalid resolves to 127.0.0.1")
    assert watch.connections == set() and lookups == ["hook.invalid"]

    http = WebhookHTTP(allow_private=True, user_agent="t", max_idle=4)
    try:
        for _ in range(3):
            assert await http.post(url, [], b'{"event": {"payload": {"n": 0}}}') == Answer(
                200, None
            )
    finally:
        await http.aclose()
    assert lookups == ["hook.invalid"] * 2  # one per connection: the kept one was reused
    assert len(watch.connections) == 1 and watch.ok("/n") == [0, 0, 0]


async def test_a_connection_is_reused_only_after_a_complete_exchange(watch: Watch) -> None:
    """Over httpcore's pool: kept alive across POSTs; a response body past BODY_MAX is
    not drained (its connection is closed), nor is a cancelled request's connection
    reused; a connection its peer closed while idle is not used again."""
    http = WebhookHTTP(allow_private=True, user_agent="t", max_idle=4)
    body = b'{"event": {"payload": {"n": 1}}}'
    try:

        async def post(path: str) -> Answer:
            return await http.post(watch.url(path), [("X-Test", "1")], body)

        watch.replies["/small"] = b"ok" * 100
        for _ in range(3):
            assert (await post("/small")).status == 200
        assert len(watch.connections) == 1

        watch.replies["/big"] = b"x" * (webhook_http.BODY_MAX + 1)
        assert (await post("/big")).status == 200  # the status counts, the rest is dropped
        assert (await post("/small")).status == 200
        assert len(watch.connections) == 2  # the big answer's connection was closed

        watch.delay = 0.5
        with anyio.move_on_after(0.1) as scope:
            await post("/slow")
        assert scope.cancelled_caught
        watch.delay = 0
        assert (await post("/small")).status == 200
        assert len(watch.connections) == 3  # not the cancelled one

        watch.drop.add("/drop")
        assert (await post("/drop")).status == 200
        await anyio.sleep(0.1)  # the peer's FIN arrives while the connection is idle
        assert (await post("/small")).status == 200  # not a "Server disconnected" error
        assert len(watch.connections) == 4
    finally:
        await http.aclose()


# -- webhook_batch.lua -------------------------------------------------------------------
async def test_the_batch_call_matches_its_header(aclient: AsyncClient) -> None:
    retry = wh.Retry("2-0", 1, 5, "HTTP 503")
    call = wh.batch_call(
        aclient.keyspace, "s", "d1", ttl_ms=1000, count=3, done=["1-0"], retry=retry
    )
    header = default_registry()[call.script].header
    assert len(call.keys) == len(header.keys)
    assert len(call.args) == len(header.argv)  # the last, done, takes one id or more
    assert len({key_slot(k) for k in call.keys}) == 1


async def test_the_batch_script_refuses_bad_input(aclient: AsyncClient) -> None:
    ks = aclient.keyspace
    good = wh.batch_call(ks, "s1", "d1", ttl_ms=1000, count=1)
    lock, _, state = good.keys
    for keys in ([lock, lock[:-3] + ":m:x", state], [lock, state, state]):  # not the queue
        with pytest.raises(ValidationError):
            await aclient._run(dataclasses.replace(good, keys=keys))
    bad_id = wh.batch_call(ks, "s1", "d1", ttl_ms=1000, count=1, done=["not-an-id"])
    with pytest.raises(ValidationError):
        await aclient._run(bad_id)
    with pytest.raises(ValidationError):
        await aclient._run(wh.batch_call(ks, "s1", "d1", ttl_ms=0, count=1))  # claim, no lock
    assert not await aclient.redis.exists(ks.webhook_lock("s1"))  # nothing changed


async def test_a_lapsed_holder_still_records_its_deliveries(
    aclient: AsyncClient, receiver: Receiver, raw_redis: redis.Redis
) -> None:
    """A worker whose lock another daemon took gets 0, claims nothing and moves no
    lock; the jobs it delivered are acknowledged all the same (never refused)."""
    sub = await aclient.subscribe(webhook_url=receiver.url("/l"), event_types=["comment"])
    await comments(aclient, 3)
    engine = engine_for(aclient)
    await Bus(aclient, engine).feed()
    ks = aclient.keyspace
    claimed = wh.parse_batch(
        await aclient._run(wh.batch_call(ks, sub.id, "d1", ttl_ms=10_000, count=2))
    )
    assert claimed is not None and len(claimed.jobs) == 2
    raw_redis.set(ks.webhook_lock(sub.id), "d2", px=10_000)  # d1 stalled; d2 took over
    done = [job_id for job_id, _ in claimed.jobs]
    reply = await aclient._run(wh.batch_call(ks, sub.id, "d1", ttl_ms=10_000, count=5, done=done))
    assert wh.parse_batch(reply) is None
    assert raw_redis.get(ks.webhook_lock(sub.id)) == "d2"
    queue = ks.webhook_queue(sub.id)
    assert raw_redis.xlen(queue) == 1  # the two delivered are gone, the third waits
    assert raw_redis.xpending(queue, wh.GROUP)["pending"] == 0
