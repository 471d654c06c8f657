"""Agents on consumer groups: every handler decorator fires, replicas share work without
doubling it, failures are retried then handed to the fallback, leases guard the work,
shutdown hands work back, and a Coordinator runs the incident graph in order."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import anyio
import pytest
from test_daemon import _daemon, eventually, running

from oibus import (
    AsyncClient,
    IntentSpec,
    PortfolioSpec,
    Work,
    Worker,
    agent,
    coordinator,
    on_all_complete,
    on_assignment,
    on_complete,
    on_event,
    on_lease_available,
    on_lease_expired,
    on_retry,
    on_state_change,
    on_status_change,
)
from oibus.sdk.agents import CHEAP_AFTER, AgentBase

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

FAST = {"heartbeat_ttl": 1.0, "lease_seconds": 2.0, "block_seconds": 0.2, "drain_timeout": 5.0}


async def started(client: AsyncClient, *agents: AgentBase, **options: Any) -> None:
    for a in agents:
        await a.start(
            redis=client.redis,
            namespace=client.keyspace.namespace,
            partitions=client.keyspace.partitions,
            **options,
        )


async def stopped(*agents: AgentBase) -> None:
    for a in agents:
        await a.stop()


async def completed(client: AsyncClient, intent_id: str, within: float = 15.0) -> bool:
    async def check() -> bool:
        return (await client.get_intent(intent_id)).status == "completed"

    return bool(await eventually(check, within))


def _real(backend: str) -> None:
    if backend == "fake":
        pytest.skip("the real-server tier")


async def test_every_handler_decorator_fires(aclient: AsyncClient) -> None:
    calls: list[tuple[str, Any]] = []

    @agent("observer", **FAST)
    class Observer:
        @on_assignment
        async def work(self, intent: Any, work: Work) -> dict[str, Any]:
            calls.append(("assignment", work.reason))
            if intent.title == "flaky" and work.attempt == 1:
                raise TimeoutError("first try fails")
            await self.client.log_event(intent.id, "custom.ping", {"from": "handler"})
            return {"done_by": "observer"}

        @on_retry
        def retry(self, intent: Any, work: Work) -> dict[str, Any]:  # a plain function
            calls.append(("retry", (work.attempt, work.last_error)))
            return {"retried": True}

        @on_complete
        async def complete(self, intent: Any) -> None:
            calls.append(("complete", intent.title))

        @on_state_change(keys=["done_by"])
        async def state(self, intent: Any, event: Any) -> None:
            calls.append(("state_change", intent.title))

        @on_state_change(keys=["unrelated"])
        async def never(self, intent: Any, event: Any) -> None:
            calls.append(("wrong_keys", intent.title))

        @on_status_change
        async def status(self, intent: Any, event: Any) -> None:
            calls.append(("status_change", event.payload["to"]))

        @on_event("custom.ping")
        async def ping(self, event: Any) -> None:
            calls.append(("event", event.payload))

        @on_lease_available("review")
        async def free(self, intent: Any, scope: str) -> None:
            calls.append(("lease_available", scope))

        @on_lease_expired
        async def expired(self, intent: Any, event: Any) -> None:
            calls.append(("lease_expired", event.payload["scope"]))

    @coordinator("lead", agents=["observer"], **FAST)
    class Lead:
        @on_all_complete
        async def all_done(self, portfolio: Any) -> None:
            calls.append(("all_complete", portfolio.status))

    observer, lead = Observer(), Lead()
    daemon = _daemon(aclient, "d1")
    async with running(daemon):
        await started(aclient, observer, lead)
        try:
            plain = await aclient.create_intent("plain")
            await aclient.assign_agent(plain.id, "observer")
            assert await completed(aclient, plain.id)

            flaky = await aclient.create_intent("flaky")
            await aclient.set_retry_policy(flaky.id, max_retries=2, base_delay_ms=100)
            await aclient.assign_agent(flaky.id, "observer")
            assert await completed(aclient, flaky.id)

            blocker = await aclient.create_intent("blocker")  # keeps "watched" from running
            watched = await aclient.create_intent("watched", depends_on=[blocker.id])
            await aclient.assign_agent(watched.id, "observer")
            lease = await aclient.acquire_lease(watched.id, "review", 5)
            await aclient.release_lease(watched.id, lease.id)
            await aclient.acquire_lease(watched.id, "audit", 0.3)  # the daemon expires it

            await lead.launch(
                PortfolioSpec(name="p", intents=(IntentSpec(title="part", assign="observer"),))
            )

            async def all_seen() -> bool:
                kinds = {k for k, _ in calls}
                return {"all_complete", "lease_expired", "lease_available", "retry"} <= kinds

            assert await eventually(all_seen, 20), calls
        finally:
            await stopped(observer, lead)
    kinds = Counter(k for k, _ in calls)
    for kind in (
        "assignment",
        "retry",
        "complete",
        "state_change",
        "status_change",
        "event",
        "lease_available",
        "lease_expired",
        "all_complete",
    ):
        assert kinds[kind] >= 1, (kind, calls)
    assert "wrong_keys" not in kinds
    assert ("retry", (2, {"error_code": "TimeoutError", "error_message": "first try fails"})) in (
        calls
    )
    assert ("lease_available", "review") in calls
    assert ("lease_expired", "audit") in calls
    assert ("all_complete", "completed") in calls
    assert kinds["complete"] == 3  # plain, flaky, the portfolio's part


async def test_replicas_share_a_thousand_assignments_without_doubling(
    aclient: AsyncClient, backend: str
) -> None:
    _real(backend)
    handled: list[tuple[str, str]] = []

    @agent("crunch", max_concurrency=20, **FAST)
    class Crunch:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            handled.append((intent.id, self.name))  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)
            return {"ok": True}

    one, two = Crunch(), Crunch()
    one.name, two.name = "one", "two"  # type: ignore[attr-defined]
    await started(aclient, one, two)
    try:
        ids = []
        for n in range(1000):
            intent = await aclient.create_intent(f"job {n}")
            ids.append(intent.id)
            await aclient.assign_agent(intent.id, "crunch")

        async def all_done() -> bool:
            return len(handled) >= 1000

        assert await eventually(all_done, 60)
        await anyio.sleep(0.5)  # time for any double to show up
    finally:
        await stopped(one, two)
    counts = Counter(i for i, _ in handled)
    assert sorted(counts) == sorted(ids)
    assert set(counts.values()) == {1}
    by_replica = Counter(r for _, r in handled)
    assert by_replica["one"] > 0 and by_replica["two"] > 0, by_replica
    for intent_id in ids[::97]:
        assert (await aclient.get_intent(intent_id)).status == "completed"


async def test_a_failing_handler_is_retried_then_handed_to_the_fallback(
    aclient: AsyncClient,
) -> None:
    attempts: list[int] = []

    @agent("flaky", **FAST)
    class Flaky:
        @on_assignment
        async def work(self, intent: Any, work: Work) -> None:
            attempts.append(work.attempt)
            raise ConnectionError(f"attempt {work.attempt} failed")

    backup = Worker("backup", lambda intent: {"rescued": intent.title}, **FAST)
    flaky = Flaky()
    intent = await aclient.create_intent("doomed")
    await aclient.set_retry_policy(
        intent.id, max_retries=2, base_delay_ms=100, fallback_agent_id="backup"
    )
    async with running(_daemon(aclient, "d1")):
        await started(aclient, flaky, backup)
        try:
            await aclient.assign_agent(intent.id, "flaky")
            assert await completed(aclient, intent.id, 20)
        finally:
            await stopped(flaky, backup)
    assert attempts == [1, 2, 3]
    done = await aclient.get_intent(intent.id)
    assert done.state == {"rescued": "doomed"}
    assert done.assigned_agents == ["backup"]
    failures = await aclient.get_failures(intent.id)
    assert [f.error_code for f in failures] == ["ConnectionError"] * 3
    assert len(await aclient.get_events(intent.id, event_type="fallback_triggered")) == 1


async def test_a_lost_lease_cancels_the_handler_and_writes_nothing(aclient: AsyncClient) -> None:
    entered, cancelled = asyncio.Event(), asyncio.Event()

    @agent("slow", **FAST)
    class Slow:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            entered.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return {"written": True}

    slow = Slow()
    await started(aclient, slow)
    try:
        intent = await aclient.create_intent("contested")
        await aclient.assign_agent(intent.id, "slow")
        await asyncio.wait_for(entered.wait(), 10)
        [lease] = [lease for lease in await aclient.get_leases(intent.id)]
        await aclient.revoke_lease(intent.id, lease.id, "an arbiter took it back")
        await asyncio.wait_for(cancelled.wait(), 10)

        async def failed() -> Any:
            return await aclient.get_failures(intent.id)

        failures = await eventually(failed, 5)
    finally:
        await stopped(slow)
    assert [f.error_code for f in failures] == ["lease_lost"]
    after = await aclient.get_intent(intent.id)
    assert after.state == {} and after.status == "active"


async def test_concurrency_is_bounded_and_shutdown_hands_work_back(aclient: AsyncClient) -> None:
    running_now, peak = 0, 0
    release = asyncio.Event()

    @agent("bounded", max_concurrency=3, **FAST)
    class Bounded:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            nonlocal running_now, peak
            running_now += 1
            peak = max(peak, running_now)
            try:
                await release.wait()
            finally:
                running_now -= 1
            return {"by": "second"}

    first, second = Bounded(), Bounded()
    try:
        await _bounded_run(aclient, first, second, release, lambda: (running_now, peak))
    finally:
        release.set()
        await stopped(first, second)


async def test_stop_ends_within_the_default_block_time(aclient: AsyncClient) -> None:
    """Issue 15.2: ``stop()`` lets the agent's blocked read end first, and the default
    block was 5 s, so the demo's four agents, stopped one after another, sat silent for
    about 20 s. The default is 1 s now (a blocked read still wakes at once on a new
    entry; only an idle agent's wake-ups are more frequent); work assigned after the stop
    is done by the next replica."""
    handled: list[str] = []
    options = {k: v for k, v in FAST.items() if k != "block_seconds"}

    @agent("sleepy", **options)
    class Sleepy(AgentBase):
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            handled.append(intent.id)
            return {"done": True}

    first = Sleepy()
    await started(aclient, first)
    await anyio.sleep(0.3)  # parked in its blocking read
    with anyio.fail_after(3):  # the old default block alone was 5 s
        await first.stop()
    intent = await aclient.create_intent("after the stop")
    await aclient.assign_agent(intent.id, "sleepy")
    second = Sleepy()
    await started(aclient, second)
    try:
        assert await completed(aclient, intent.id)
    finally:
        await stopped(second)
    assert handled == [intent.id]


async def _bounded_run(
    aclient: AsyncClient,
    first: AgentBase,
    second: AgentBase,
    release: asyncio.Event,
    gauge: Any,
) -> None:
    await started(aclient, first)
    ids = []
    for n in range(6):
        intent = await aclient.create_intent(f"held {n}")
        await aclient.assign_agent(intent.id, "bounded")
        ids.append(intent.id)

    async def three_running() -> bool:
        return bool(gauge()[0] == 3)

    assert await eventually(three_running, 10)
    await anyio.sleep(0.3)
    assert gauge()[1] == 3  # the peak
    t0 = time.monotonic()
    await first.stop(drain_timeout=0.2)  # in-flight handlers are cancelled, not finished
    assert time.monotonic() - t0 < 5
    assert gauge()[0] == 0
    for intent_id in ids:  # nothing was written by the stopped replica
        assert (await aclient.get_intent(intent_id)).status == "active"
    release.set()
    await started(aclient, second)
    for intent_id in ids:
        assert await completed(aclient, intent_id, 20)


async def test_work_waits_for_dependencies_and_the_coordinator_runs_the_incident_graph(
    aclient: AsyncClient,
) -> None:
    log: list[tuple[str, str, float]] = []
    finished: list[str] = []

    def step(name: str) -> Any:
        async def work(self: Any, intent: Any) -> dict[str, Any]:
            log.append(("start", intent.title, time.monotonic()))
            await asyncio.sleep(0.05)
            log.append(("end", intent.title, time.monotonic()))
            return {name: "done"}

        return on_assignment(work)

    agents = [
        agent(name, **FAST)(type(name, (), {"work": step(name)}))()
        for name in ("diagnose", "communicate", "hotfix", "deploy")
    ]

    @coordinator("incident-commander", agents=["diagnose", "hotfix", "deploy", "communicate"])
    class Commander:
        @on_all_complete
        async def resolved(self, portfolio: Any, event: Any) -> None:
            finished.append(portfolio.id)

    commander = Commander()
    await started(aclient, commander, *agents)
    try:
        spec = PortfolioSpec(
            name="INC-2024-001",
            intents=(
                IntentSpec(title="Deploy fix", assign="deploy", depends_on=("Diagnose", "Hotfix")),
                IntentSpec(title="Hotfix", assign="hotfix", depends_on=("Diagnose",)),
                IntentSpec(title="Diagnose", assign="diagnose"),
                IntentSpec(title="Notify stakeholders", assign="communicate"),
            ),
        )
        portfolio = await commander.launch(spec)

        async def resolved() -> bool:
            return bool(finished)

        assert await eventually(resolved, 30), log
    finally:
        await stopped(commander, *agents)
    assert finished == [portfolio.id]
    at = {(kind, title): moment for kind, title, moment in log}
    assert at[("start", "Hotfix")] >= at[("end", "Diagnose")]
    assert at[("start", "Deploy fix")] >= at[("end", "Hotfix")]
    assert Counter(title for kind, title, _ in log if kind == "start") == Counter(
        {"Diagnose": 1, "Hotfix": 1, "Deploy fix": 1, "Notify stakeholders": 1}
    )
    final = await aclient.get_portfolio(portfolio.id)
    assert final.status == "completed"
    assert final.aggregate_status.by_status["completed"] == 4


@pytest.mark.anyio
async def test_quick_observers_share_tasks_and_a_slow_one_runs_concurrently(
    aclient: AsyncClient,
) -> None:
    """An observer proven quick has its deliveries run one after another in a shared
    task; once it turns slow (it starts waiting on something), its deliveries get a task
    each again, so they wait concurrently rather than one after another. Every event is
    handled once either way."""
    seen: list[int] = []
    in_flight = peak = 0
    slow_from = 80

    @agent("watcher", max_concurrency=50, **FAST)
    class Watcher:
        @on_event("tick")
        async def tick(self, event: Any) -> None:
            nonlocal in_flight, peak
            n = event.payload["n"]
            seen.append(n)
            if n >= slow_from:
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1

    watcher = Watcher()
    await started(aclient, watcher)
    try:
        intent = await aclient.create_intent("ticks")
        await aclient.assign_agent(intent.id, "watcher")
        for n in range(slow_from):
            await aclient.log_event(intent.id, "tick", {"n": n})

        async def quick_ones_done() -> bool:
            return len(seen) == slow_from

        assert await eventually(quick_ones_done, 15)  # by now proven quick (shared tasks)
        await asyncio.gather(
            *(aclient.log_event(intent.id, "tick", {"n": n}) for n in range(slow_from, 120))
        )

        async def all_done() -> bool:
            return len(seen) == 120 and in_flight == 0

        assert await eventually(all_done, 15)
    finally:
        await stopped(watcher)
    assert sorted(seen) == list(range(120))  # each once
    assert peak > 1  # the slow ones waited together
    assert watcher._rt.fast[0] < CHEAP_AFTER


async def test_start_prepares_the_work_path(aclient: AsyncClient) -> None:
    """An agent with work handlers loads its work path's scripts when it starts, so its
    first assignment pays no SCRIPT LOAD round trips before the handler runs."""
    from oibus.bus.registry import default_registry
    from oibus.sdk.agents import _WORK_SCRIPTS

    @agent("preparer", **FAST)
    class Preparer(AgentBase):
        @on_assignment
        async def work(self, intent: Any) -> None:
            return None

    replica = Preparer()
    await started(aclient, replica)
    try:
        assert set(default_registry()) >= _WORK_SCRIPTS
        assert replica.client._runner._ready >= _WORK_SCRIPTS
    finally:
        await stopped(replica)


async def test_a_second_reason_read_while_the_completion_lands_does_not_run_again(
    aclient: AsyncClient,
) -> None:
    """Completing ``middle`` unblocks ``last``, so the completion needs a second round
    trip for ``last``'s keys, after the lease's release that went with the first. A
    second reason to work on ``middle`` read in between (here a replayed copy of its
    assignment, written while that round trip is held back) must wait for the first
    run to be over, and then find the intent completed: the handler runs once."""
    from oibus.bus.consuming import REPLAY_FOR
    from oibus.bus.ops import Call

    runs: list[str] = []

    @agent("once", **FAST)
    class Once(AgentBase):
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            runs.append(intent.title)
            return {"done": True}

    middle = await aclient.create_intent("middle")
    last = await aclient.create_intent("last", depends_on=[middle.id])
    replica = Once()
    await started(aclient, replica)
    runner = replica.client._runner
    send = runner.call
    bus = aclient.keyspace.bus(aclient.keyspace.partition(middle.id))

    async def held_back(call: Call) -> Any:
        if call.script == "set_status":  # the completion's second round (the first is piped)
            entries = await aclient.redis.xrange(bus)  # type: ignore[misc]
            fields = next(f for _, f in entries if f.get("t") == "agent_assigned")
            await aclient.redis.xadd(bus, {**fields, REPLAY_FOR: "agent:once"})  # type: ignore[misc]
            await asyncio.sleep(0.5)  # the replayed copy is read and handled meanwhile
        return await send(call)

    runner.call = held_back  # type: ignore[method-assign]
    try:
        await aclient.assign_agent(middle.id, "once")
        assert await completed(aclient, middle.id)
        await asyncio.sleep(0.5)
        assert runs == ["middle"]
        assert (await aclient.get_intent(last.id)).status == "active"
    finally:
        await stopped(replica)
