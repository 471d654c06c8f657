"""The daemon (issue 5): its loops against every tier, several daemons at once, and its
process (signals, --check, kill -9 and take-over) on a real engine."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest
from receiver import Receiver
from redis.exceptions import ResponseError
from test_webhooks import FAST

from oibus import AsyncClient, Lease
from oibus.bus.moves import Move
from oibus.daemon.busreader import BusReader
from oibus.daemon.config import GROUP, DaemonConfig
from oibus.daemon.liveness import live_daemons
from oibus.daemon.metrics import Metrics
from oibus.daemon.retention import trim_once
from oibus.daemon.service import Daemon

pytestmark = pytest.mark.anyio


def _config(client: AsyncClient, name: str, **options: Any) -> DaemonConfig:
    settings: dict[str, Any] = {
        "namespace": client.keyspace.namespace,
        "partitions": client.keyspace.partitions,
        "daemon_id": name,
        "heartbeat_ttl": 1.0,
        "block_ms": 100,
        "sweep_max_wait": 0.3,
        "retention_interval": 0.2,
    }
    settings.update(options)
    return DaemonConfig(**settings)


def _daemon(client: AsyncClient, name: str, **options: Any) -> Daemon:
    own = AsyncClient(
        redis=client.redis,
        agent_id=f"oibus-daemon:{name}",
        namespace=client.keyspace.namespace,
        partitions=client.keyspace.partitions,
    )
    return Daemon(_config(client, name, **options), client=own)


@contextlib.asynccontextmanager
async def running(*daemons: Daemon) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for d in daemons:
            await tg.start(d.run)
        try:
            yield
        finally:
            for d in daemons:
                d.stop()


async def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Poll ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await anyio.sleep(0.05)


def _total(metric: Any) -> float:
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


async def test_lease_expiry_is_recorded_once_with_two_daemons(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("leased")
    lease: Lease = await aclient.acquire_lease(intent.id, "analysis", 0.3)
    one, two = _daemon(aclient, "d1"), _daemon(aclient, "d2")
    async with running(one, two):

        async def expired() -> bool:
            events = await aclient.get_events(intent.id, event_type="lease_expired")
            return len(events) == 1

        assert await eventually(expired, 5)
        await anyio.sleep(0.5)  # both daemons had time to sweep again
    events = await aclient.get_events(intent.id, event_type="lease_expired")
    assert [e.payload["lease_id"] for e in events] == [lease.id]
    assert (events[0].created_at - lease.expires_at).total_seconds() < 1.0  # soon after
    assert _total(one.metrics.lease_expiries) + _total(two.metrics.lease_expiries) == 1


async def test_retries_are_dispatched_when_due_then_the_fallback_takes_over(
    aclient: AsyncClient,
) -> None:
    intent = await aclient.create_intent("flaky")
    await aclient.assign_agent(intent.id, "agent:worker")
    await aclient.set_retry_policy(
        intent.id,
        strategy="exponential",
        max_retries=2,
        base_delay_ms=200,
        fallback_agent_id="agent:backup",
    )
    daemon = _daemon(aclient, "d1")
    async with running(daemon):
        for attempt in (1, 2):
            failure = await aclient.record_failure(intent.id, "TIMEOUT", "timed out")
            assert failure.retry_scheduled_at is not None

            async def dispatched(n: int = attempt) -> list[Any]:
                events = await aclient.get_events(intent.id, event_type="retry_dispatched")
                return [e for e in events if e.payload["attempt_number"] == n + 1]

            found = await eventually(dispatched, 5)
            assert len(found) == 1, found
            event = found[0]
            assert event.created_at >= failure.retry_scheduled_at
            assert (event.created_at - failure.retry_scheduled_at).total_seconds() < 1.0
            assert event.payload["last_error"] == {
                "error_code": "TIMEOUT",
                "error_message": "timed out",
            }
            assert event.payload["agents"] == ["agent:worker"]
        await aclient.record_failure(intent.id, "TIMEOUT", "timed out again")

        async def handed_over() -> bool:
            return (await aclient.get_intent(intent.id)).assigned_agents == ["agent:backup"]

        assert await eventually(handed_over, 5)
        await anyio.sleep(0.3)
    fallback = await aclient.get_events(intent.id, event_type="fallback_triggered")
    assert len(fallback) == 1
    assert fallback[0].payload["previous_agents"] == ["agent:worker"]
    assert len(await aclient.get_events(intent.id, event_type="retry_dispatched")) == 2


async def test_a_portfolio_sync_a_client_missed_is_replayed(
    aclient: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    portfolio = await aclient.create_portfolio("p")
    member = await aclient.create_intent("m")
    await aclient.add_intent_to_portfolio(portfolio.id, member.id)

    async def died(moves: Any) -> None:  # the client died before syncing
        return None

    monkeypatch.setattr(aclient, "_after_moves", died)
    await aclient.set_status(member.id, None, "completed")
    monkeypatch.undo()
    stale = await aclient.get_portfolio(portfolio.id)
    assert stale.aggregate_status.by_status.get("completed", 0) == 0
    async with running(_daemon(aclient, "d1")):

        async def caught_up() -> bool:
            found = await aclient.get_portfolio(portfolio.id)
            return found.aggregate_status.status == "completed"

        assert await eventually(caught_up, 5)


async def test_pending_entries_of_a_dead_daemon_are_taken_over(aclient: AsyncClient) -> None:
    ks = aclient.keyspace
    portfolio = await aclient.create_portfolio("p")
    members = [await aclient.create_intent(f"m{n}") for n in range(6)]
    for m in members:
        await aclient.add_intent_to_portfolio(portfolio.id, m.id)
    # a daemon "ghost" read every entry and died before acknowledging any (no heartbeat)
    probe = _daemon(aclient, "probe")
    await probe.reader.ensure_groups()
    for m in members:
        await aclient._run(aclient._ops.set_status(m.id, None, "completed", None))
    held = 0
    for p in range(ks.partitions):
        got = await aclient._runner.command(
            "XREADGROUP", "GROUP", GROUP, "ghost", "COUNT", 1000, "STREAMS", ks.bus(p), ">"
        )
        held += sum(len(stream[1]) for stream in got or [])
    assert held >= len(members)
    reader = BusReader(probe.client, probe.config, Metrics(), probe.handlers)
    claimed = await reader.reclaim_once()
    assert claimed == held
    for p in range(ks.partitions):
        summary = await aclient._runner.command("XPENDING", ks.bus(p), GROUP)
        assert summary["pending"] == 0
    found = await aclient.get_portfolio(portfolio.id)
    assert found.aggregate_status.status == "completed"


async def test_an_entry_that_keeps_failing_goes_to_the_dead_letter_store(
    aclient: AsyncClient,
) -> None:
    intent = await aclient.create_intent("poison")
    failures = 0

    async def broken(p: int, entry_id: str, fields: dict[str, str]) -> None:
        nonlocal failures
        if fields.get("i") == intent.id:
            failures += 1
            raise RuntimeError("handler bug")

    daemon = _daemon(aclient, "d1", max_deliveries=3)
    reader = BusReader(daemon.client, daemon.config, daemon.metrics, broken)
    await reader.ensure_groups()
    p = aclient.keyspace.partition(intent.id)
    got = await aclient._runner.command(
        "XREADGROUP", "GROUP", GROUP, "d1", "COUNT", 100, "STREAMS", aclient.keyspace.bus(p), ">"
    )
    for entry_id, fields in got[0][1]:
        await reader._handle(p, entry_id, fields)  # delivery 1 fails
    for _ in range(2):  # failed entries are tried again once idle for half a heartbeat
        await anyio.sleep(0.55)
        await reader.reclaim_once()
    dead = await aclient._runner.command("XRANGE", aclient.keyspace.bus_dead_letters, "-", "+")
    assert [f["intent"] for _, f in dead] == [intent.id]
    assert dead[0][1]["error"] == "handler bug"
    assert int(dead[0][1]["deliveries"]) == 3
    summary = await aclient._runner.command("XPENDING", aclient.keyspace.bus(p), GROUP)
    assert summary["pending"] == 0
    assert failures == 3


async def test_retention_trims_only_what_every_group_acknowledged(aclient: AsyncClient) -> None:
    ks = aclient.keyspace
    intent = await aclient.create_intent("t")
    p = ks.partition(intent.id)
    daemon = _daemon(aclient, "d1", retention_seconds=0)
    await daemon.reader.ensure_groups()
    await aclient._runner.command("XGROUP", "CREATE", ks.bus(p), "laggard", "0")
    for n in range(5):
        await aclient.log_event(intent.id, "comment", {"n": n})
    await aclient._runner.command(
        "XREADGROUP", "GROUP", GROUP, "d1", "COUNT", 100, "STREAMS", ks.bus(p), ">"
    )
    entries = await aclient._runner.command("XRANGE", ks.bus(p), "-", "+")
    for entry_id, _ in entries:
        await aclient._runner.command("XACK", ks.bus(p), GROUP, entry_id)
    # the laggard read nothing: nothing may go
    assert await trim_once(daemon.client, daemon.config, daemon.metrics) == 0
    # the laggard reads and acknowledges the first three
    got = await aclient._runner.command(
        "XREADGROUP", "GROUP", "laggard", "x", "COUNT", 3, "STREAMS", ks.bus(p), ">"
    )
    for entry_id, _ in got[0][1]:
        await aclient._runner.command("XACK", ks.bus(p), "laggard", entry_id)
    assert await trim_once(daemon.client, daemon.config, daemon.metrics) == 3
    left = await aclient._runner.command("XRANGE", ks.bus(p), "-", "+")
    assert [e[0] for e in left] == [e[0] for e in entries[3:]]
    # with a retention period, acknowledged entries stay until they are that old
    keep = _daemon(aclient, "d2", retention_seconds=3600)
    assert await trim_once(keep.client, keep.config, keep.metrics) == 0


async def test_retention_survives_entries_acknowledged_between_xinfo_and_xpending(
    aclient: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15.4: XINFO GROUPS counted pending entries that were acknowledged before
    XPENDING ran, which then answered ``min: None``; ``int('None')`` failed every pass,
    so the bus was never trimmed and the lag gauges were never set."""
    ks = aclient.keyspace
    intent = await aclient.create_intent("t")
    p = ks.partition(intent.id)
    daemon = _daemon(aclient, "d1", retention_seconds=0)
    await daemon.reader.ensure_groups()
    for n in range(3):
        await aclient.log_event(intent.id, "comment", {"n": n})
    got = await aclient._runner.command(
        "XREADGROUP", "GROUP", GROUP, "d1", "COUNT", 100, "STREAMS", ks.bus(p), ">"
    )
    delivered = [entry_id for entry_id, _ in got[0][1]]
    redis = daemon.client.redis
    xinfo_groups = redis.xinfo_groups

    async def then_acknowledged(key: str) -> Any:
        groups = await xinfo_groups(key)
        if key == ks.bus(p):
            await aclient._runner.command("XACK", key, GROUP, *delivered)
        return groups

    monkeypatch.setattr(redis, "xinfo_groups", then_acknowledged)
    await anyio.sleep(0.01)  # retention_seconds=0 keeps entries of the current millisecond
    assert await trim_once(daemon.client, daemon.config, daemon.metrics) == len(delivered)
    sample = daemon.metrics.registry.get_sample_value
    assert sample("oibus_consumer_group_pending", {"group": GROUP}) is not None
    assert sample("oibus_consumer_group_lag", {"group": GROUP}) == 0


async def test_group_gauges_are_published_when_a_trim_fails(
    aclient: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lag and dead-letter alerts must not depend on a trim succeeding."""
    intent = await aclient.create_intent("t")
    await aclient.log_event(intent.id, "comment", {})
    daemon = _daemon(aclient, "d1", retention_seconds=0)
    await daemon.reader.ensure_groups()

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise ResponseError("NOPERM this user has no permissions to run the 'xtrim' command")

    monkeypatch.setattr(daemon.client.redis, "xtrim", refused)
    with pytest.raises(ResponseError):
        await trim_once(daemon.client, daemon.config, daemon.metrics)
    sample = daemon.metrics.registry.get_sample_value
    assert sample("oibus_consumer_group_lag", {"group": GROUP}) is not None
    assert sample("oibus_dead_letters") == 0


async def test_metrics_health_and_check(aclient: AsyncClient) -> None:
    daemon = _daemon(aclient, "d1", http_port=0)
    assert await live_daemons(aclient._runner, aclient.keyspace) == []
    async with running(daemon):
        assert await live_daemons(aclient._runner, aclient.keyspace) == ["d1"]
        assert daemon.http_port
        stream = await anyio.connect_tcp("127.0.0.1", daemon.http_port)
        async with stream:
            await stream.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            body = b""
            with anyio.move_on_after(5):
                while True:
                    try:
                        body += await stream.receive()
                    except anyio.EndOfStream:
                        break
        text = body.decode()
        assert text.startswith("HTTP/1.1 200")
        for name in (
            "oibus_lease_expiries_total",
            "oibus_retries_total",
            "oibus_unblock_latency_seconds",
            "oibus_consumer_group_pending",
            "oibus_daemon_loop_iterations_total",
            "oibus_webhook_attempts_total",
        ):
            assert name in text, name
        stream = await anyio.connect_tcp("127.0.0.1", daemon.http_port)
        async with stream:
            await stream.send(b"GET /healthz HTTP/1.1\r\n\r\n")
            reply = await stream.receive()
        assert reply.startswith(b"HTTP/1.1 200")
    # a stopped daemon deletes its heartbeat: it is no longer alive at once
    assert await live_daemons(aclient._runner, aclient.keyspace) == []


async def test_unblocks_are_timed_and_counted(aclient: AsyncClient) -> None:
    a = await aclient.create_intent("a")
    b = await aclient.create_intent("b", depends_on=[a.id])
    daemon = _daemon(aclient, "d1")
    async with running(daemon):
        await aclient.set_status(a.id, a.version, "completed")

        async def seen() -> bool:
            samples = next(iter(daemon.metrics.unblock_latency.collect())).samples
            return any(s.name.endswith("_count") and s.value == 1 for s in samples)

        assert await eventually(seen, 5)
    assert (await aclient.get_intent(b.id)).status == "active"


def test_config_bounds() -> None:
    from oibus import ConfigurationError

    with pytest.raises(ConfigurationError):
        DaemonConfig(heartbeat_ttl=0.1)
    with pytest.raises(ConfigurationError):
        DaemonConfig(block_ms=0)
    assert DaemonConfig().daemon_id != DaemonConfig().daemon_id
    assert timedelta(seconds=DaemonConfig().retention_seconds) == timedelta(hours=1)


async def test_moves_replay_is_idempotent(aclient: AsyncClient) -> None:
    """What the daemon does for a status_changed entry, twice: the second changes nothing."""
    portfolio = await aclient.create_portfolio("p")
    member = await aclient.create_intent("m")
    await aclient.add_intent_to_portfolio(portfolio.id, member.id)
    moved = await aclient.set_status(member.id, None, "completed")
    before = await aclient.get_portfolio_events(portfolio.id)
    for _ in range(2):
        await aclient._after_moves([Move(member.id, "completed", moved.version, [portfolio.id])])
    assert await aclient.get_portfolio_events(portfolio.id) == before


@pytest.mark.slow
async def test_two_daemons_share_ten_thousand_entries_without_doubling(
    aclient: AsyncClient, backend: str
) -> None:
    if backend == "fake":
        pytest.skip("a load test: real engines only")
    intent = await aclient.create_intent("busy")
    one, two = _daemon(aclient, "d1"), _daemon(aclient, "d2")
    await one.reader.ensure_groups()
    calls = [aclient._ops.log_event(intent.id, "tick", {"n": n}) for n in range(10_000)]
    for start in range(0, len(calls), 1000):
        replies = await aclient._runner.call_many(calls[start : start + 1000])
        assert not any(isinstance(r, Exception) for r in replies)
    key = aclient.keyspace.bus(aclient.keyspace.partition(intent.id))
    written = await aclient._runner.command("XLEN", key)
    async with running(one, two):

        async def drained() -> bool:
            info = await aclient.redis.xinfo_groups(key)  # type: ignore[misc]
            group = next(g for g in info if g["name"] == GROUP)
            return group["pending"] == 0 and group["lag"] == 0

        assert await eventually(drained, 60)
    handled = [_total(d.metrics.entries) for d in (one, two)]
    assert sum(handled) == written  # each entry handled by one daemon, once
    assert all(h > 0 for h in handled), handled  # and both did some of the work


@pytest.mark.usefixtures("private_webhooks")  # the receiver is on 127.0.0.1
async def test_the_daemon_delivers_webhooks(aclient: AsyncClient, receiver: Receiver) -> None:
    """End to end: a subscription, an event, the daemon's bus reader and fan-out, a POST."""
    intent = await aclient.create_intent("watched")
    sub = await aclient.subscribe(intent.id, webhook_url=receiver.url("/hook"))
    daemon = _daemon(aclient, "d1", webhooks=FAST)
    async with running(daemon):
        await aclient.log_event(intent.id, "comment", {"message": "hello"})

        def comments() -> list[Any]:
            return [h for h in receiver.ok("/hook") if b'"comment"' in h.body]

        async def delivered() -> bool:  # received, and the daemon saw the 200
            return bool(comments()) and _total(daemon.metrics.webhook_attempts) >= 1

        assert await eventually(delivered, 10)
    hit = comments()[0]
    body = json.loads(hit.body)
    assert body["subscription_id"] == sub.id
    assert body["event"]["payload"] == {"message": "hello"}
    assert hit.headers["X-OIBus-Signature"].startswith("sha256=")


def test_startup_checks_refuse_an_evicting_server(tmp_path: Any) -> None:
    """An engine of its own (the policy is server-wide): allkeys-lru is refused with
    --refuse-eviction and a warning without it; noeviction passes quietly."""
    from oibus import ConfigurationError
    from oibus.daemon.checks import check_server, parse_version
    from oibus.embedded import EmbeddedServer

    assert parse_version("7.0.15") == (7, 0, 15)
    assert parse_version("6.2") < (7,) and parse_version("8.1.8") >= (6, 2)
    server = EmbeddedServer(tmp_path, appendonly=False)
    url = server.start()

    async def go() -> None:
        async with AsyncClient(url, namespace="chk") as client:
            assert await check_server(client, refuse_eviction=True) == []
            await client.redis.config_set("maxmemory-policy", "allkeys-lru")  # type: ignore[misc]
            with pytest.raises(ConfigurationError):
                await check_server(client, refuse_eviction=True)
            warnings = await check_server(client, refuse_eviction=False)
            assert len(warnings) == 1 and "allkeys-lru" in warnings[0]
            await client.redis.config_set("maxmemory-policy", "volatile-lru")  # type: ignore[misc]
            with pytest.raises(ConfigurationError):
                await check_server(client, refuse_eviction=True)

    try:
        anyio.run(go)
    finally:
        server.stop()
