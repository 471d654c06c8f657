"""Portfolios (RFC-0004/0007): the seed's example, membership rules, aggregates kept
current by idempotent syncs of status moves (replays change nothing), suspension events,
auto-completion exactly once under concurrent completions, members in other slots, the
repair of a membership change cut between its two steps, and bad input that changes
nothing."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from oibus import (
    AlreadyExistsError,
    AsyncClient,
    BusConnectionError,
    Client,
    ConflictError,
    IntentClosedError,
    IntentStatus,
    InvalidTransitionError,
    NotFoundError,
    PayloadTooLargeError,
    PortfolioAggregate,
    ValidationError,
)
from oibus.bus import limits
from oibus.bus.keyspace import Keyspace
from oibus.bus.moves import Move
from oibus.bus.ops import Call
from oibus.bus.portfolios import (
    PORTFOLIO_TRANSITIONS,
    MemberRole,
    add_member_call,
    create_call,
    link_call,
    remove_member_call,
    status_call,
    sync_calls,
)
from oibus.bus.registry import default_registry

LUA = Path(__file__).resolve().parent.parent / "lua"


def _footprint(client: Client, raw: redis.Redis, pid: str) -> tuple[Any, ...]:
    """Everything a portfolio operation could touch in the portfolio's slot."""
    ks = client.keyspace
    return (
        raw.hgetall(ks.portfolio(pid)),
        raw.hgetall(ks.portfolio_roster(pid)),
        raw.zrange(ks.portfolio_members(pid), 0, -1, withscores=True),
        raw.xlen(ks.portfolio_events(pid)),
        raw.xlen(ks.bus(ks.partition(pid))),
    )


def _intent_footprint(client: Client, raw: redis.Redis, intent_id: str) -> tuple[Any, ...]:
    ks = client.keyspace
    return (raw.hgetall(ks.intent(intent_id)), raw.xlen(ks.events(intent_id)))


def _both(client: Client, raw: redis.Redis, pid: str, intent_id: str) -> tuple[Any, ...]:
    """The portfolio's footprint and the member's: what a membership change writes."""
    return _footprint(client, raw, pid), _intent_footprint(client, raw, intent_id)


def _counts(agg: PortfolioAggregate) -> dict[str, int]:
    """The statuses members are in (``by_status`` lists every status, zeros included)."""
    assert set(agg.by_status) == {str(s) for s in IntentStatus}
    return {k: v for k, v in agg.by_status.items() if v}


def _types(client: Client, pid: str) -> list[str]:
    return [e.event_type for e in client.get_portfolio_events(pid, limit=1000)]


def _ids_in_other_partitions(ks: Keyspace, avoid: int, count: int) -> list[str]:
    """Intent ids whose groups land in distinct partitions, none of them ``avoid``."""
    seen, out = {avoid}, []
    for n in range(10_000):
        group = f"g{n}"
        if ks.partition(group) not in seen:
            seen.add(ks.partition(group))
            out.append(f"{group}.member")
            if len(out) == count:
                return out
    raise AssertionError("not enough partitions")


# -- the seed's example -----------------------------------------------------------------
def test_seed_readme_example(client: Client) -> None:
    portfolio = client.create_portfolio(
        name="Paris Trip 2024",
        description="Complete vacation planning",
        governance_policy={"require_all_completed": True, "shared_constraints": {"budget": 5000}},
    )
    flight_intent = client.create_intent(title="Book flights to Paris")
    hotel_intent = client.create_intent(title="Book hotel in Paris")
    client.add_intent_to_portfolio(portfolio.id, flight_intent.id, role="primary", priority=100)
    client.add_intent_to_portfolio(portfolio.id, hotel_intent.id, role="member", priority=90)
    portfolio = client.get_portfolio(portfolio.id)
    assert [(m.intent_id, m.role, m.priority) for m in portfolio.intents] == [
        (flight_intent.id, "primary", 100),
        (hotel_intent.id, "member", 90),
    ]
    assert portfolio.primary_intent_id == flight_intent.id
    assert portfolio.aggregate_status.total == 2
    assert _counts(portfolio.aggregate_status) == {"active": 2}
    assert portfolio.aggregate_status.status == "in_progress"
    assert portfolio.aggregate_status.completion_percentage == 0
    assert portfolio.governance_policy["shared_constraints"] == {"budget": 5000}
    assert (
        portfolio.created_by == "tester" and portfolio.description == "Complete vacation planning"
    )
    done = client.update_portfolio_status(portfolio.id, "completed")
    assert done.status == "completed" and done.version == portfolio.version + 1
    assert _types(client, portfolio.id) == [
        "portfolio_created",
        "added_to_portfolio",
        "added_to_portfolio",
        "portfolio_status_changed",
    ]
    changed = client.get_portfolio_events(portfolio.id)[-1]
    assert changed.payload["from"] == "active" and changed.payload["to"] == "completed"
    assert changed.actor == "tester"


@pytest.mark.anyio
async def test_async_client_has_the_same_calls(aclient: AsyncClient) -> None:
    portfolio = await aclient.create_portfolio(
        "trip", governance_policy={"auto_complete_threshold": 50}
    )
    a = await aclient.create_intent("a")
    b = await aclient.create_intent("b")
    await aclient.add_intent_to_portfolio(portfolio.id, a.id)
    await aclient.add_intent_to_portfolio(portfolio.id, b.id, role="dependency", priority=5)
    await aclient.set_status(a.id, None, "completed")
    got = await aclient.get_portfolio(portfolio.id)
    assert got.status == "completed"  # 1 of 2 is 50%
    assert _counts(got.aggregate_status) == {"active": 1, "completed": 1}
    assert [i.id for i in await aclient.get_portfolio_intents(portfolio.id)] == [b.id, a.id]
    assert [p.id for p in await aclient.get_intent_portfolios(a.id)] == [portfolio.id]


# -- membership rules --------------------------------------------------------------------
def test_duplicate_membership_is_refused_and_changes_nothing(
    client: Client, raw_redis: redis.Redis
) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    client.add_intent_to_portfolio(portfolio.id, intent.id)
    before = _both(client, raw_redis, portfolio.id, intent.id)
    for role in ("member", "primary"):
        with pytest.raises(AlreadyExistsError):
            client.add_intent_to_portfolio(portfolio.id, intent.id, role=role)
    after = _both(client, raw_redis, portfolio.id, intent.id)
    assert after == before


def test_at_most_one_primary(client: Client, raw_redis: redis.Redis) -> None:
    portfolio = client.create_portfolio("p")
    first, second = client.create_intent("a"), client.create_intent("b")
    client.add_intent_to_portfolio(portfolio.id, first.id, role="primary")
    before = _footprint(client, raw_redis, portfolio.id)
    with pytest.raises(ConflictError) as info:
        client.add_intent_to_portfolio(portfolio.id, second.id, role="primary")
    assert info.value.details["primary"] == first.id
    assert _footprint(client, raw_redis, portfolio.id) == before
    # removing the primary frees the role
    client.remove_intent_from_portfolio(portfolio.id, first.id)
    client.add_intent_to_portfolio(portfolio.id, second.id, role="primary")
    assert client.get_portfolio(portfolio.id).primary_intent_id == second.id


def test_portfolio_statuses_are_validated(client: Client, raw_redis: redis.Redis) -> None:
    portfolio = client.create_portfolio("p")
    before = _footprint(client, raw_redis, portfolio.id)
    with pytest.raises(ValidationError) as info:
        client.update_portfolio_status(portfolio.id, "done")
    assert info.value.field == "status"
    with pytest.raises(InvalidTransitionError):
        client.update_portfolio_status(portfolio.id, "active")
    # the script refuses an unknown status too (a caller that skips the SDK's check)
    call = status_call(client.keyspace, "tester", portfolio.id, "active", None)
    with pytest.raises(ValidationError):
        client._run(Call(call.script, call.keys, [portfolio.id, "finished", "", "tester"]))
    assert _footprint(client, raw_redis, portfolio.id) == before
    client.update_portfolio_status(portfolio.id, "abandoned", reason="cancelled")
    for status in ("active", "completed", "abandoned"):
        with pytest.raises(InvalidTransitionError) as moved:
            client.update_portfolio_status(portfolio.id, status)
        assert moved.value.from_status == "abandoned"
    intent = client.create_intent("late")
    with pytest.raises(IntentClosedError):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    assert client.get_portfolio_events(portfolio.id)[-1].payload["reason"] == "cancelled"


def test_remove_member(client: Client, raw_redis: redis.Redis) -> None:
    portfolio = client.create_portfolio("p")
    a, b = client.create_intent("a"), client.create_intent("b")
    client.add_intent_to_portfolio(portfolio.id, a.id, role="primary")
    client.add_intent_to_portfolio(portfolio.id, b.id)
    client.set_status(a.id, None, "blocked")
    client.remove_intent_from_portfolio(portfolio.id, a.id)
    got = client.get_portfolio(portfolio.id)
    assert [m.intent_id for m in got.intents] == [b.id]
    assert _counts(got.aggregate_status) == {"active": 1} and got.primary_intent_id is None
    assert client.get_intent_portfolios(a.id) == []
    assert raw_redis.hget(client.keyspace.intent(a.id), "pf") is None
    assert [e.event_type for e in client.get_events(a.id)][-1] == "removed_from_portfolio"
    assert _types(client, portfolio.id)[-1] == "removed_from_portfolio"
    # a former member's moves no longer reach the portfolio
    before = _footprint(client, raw_redis, portfolio.id)[:4]  # the bus may be a's too
    client.set_status(a.id, None, "active")
    assert _footprint(client, raw_redis, portfolio.id)[:4] == before
    with pytest.raises(NotFoundError) as info:
        client.remove_intent_from_portfolio(portfolio.id, a.id)
    assert info.value.resource == "portfolio_member"
    # and it can join again
    client.add_intent_to_portfolio(portfolio.id, a.id)
    assert _counts(client.get_portfolio(portfolio.id).aggregate_status) == {"active": 2}


# -- aggregates --------------------------------------------------------------------------
def test_aggregate_follows_member_moves(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    ids = [client.create_intent(f"m{n}").id for n in range(5)]
    draft = client.create_intent("d", status="draft")
    for intent_id in [*ids, draft.id]:
        client.add_intent_to_portfolio(portfolio.id, intent_id)
    client.set_status(ids[0], None, "completed")
    client.set_status(ids[1], None, "completed")
    client.set_status(ids[2], None, "blocked")
    client.set_status(draft.id, 1, "active")
    agg = client.get_portfolio(portfolio.id).aggregate_status
    assert _counts(agg) == {"completed": 2, "blocked": 1, "active": 3}
    assert (agg.total, agg.status, agg.completion_percentage) == (6, "in_progress", 33)
    client.set_status(ids[3], None, "abandoned")
    agg = client.get_portfolio(portfolio.id).aggregate_status
    assert agg.status == "failed" and agg.by_status["abandoned"] == 1
    members = {m.intent_id: m for m in client.get_portfolio(portfolio.id).intents}
    assert (members[ids[0]].status, members[ids[0]].version) == ("completed", 2)
    assert all(p.status == "active" for p in client.get_intent_portfolios(ids[0]))


def test_member_that_moved_before_joining_counts_as_it_is_now(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    client.set_status(intent.id, None, "completed")
    member = client.add_intent_to_portfolio(portfolio.id, intent.id)
    assert (member.status, member.version) == ("completed", 2)
    assert client.get_portfolio(portfolio.id).aggregate_status.status == "completed"


def test_suspended_members_and_their_events(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    a, b = client.create_intent("a"), client.create_intent("b")
    for intent in (a, b):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    client.set_status(a.id, None, "suspended_awaiting_input")
    client.set_status(b.id, None, "suspended_awaiting_input")
    agg = client.get_portfolio(portfolio.id).aggregate_status
    assert (agg.has_suspended_members, agg.suspended_member_count, agg.status) == (
        True,
        2,
        "in_progress",
    )
    client.set_status(a.id, None, "active")
    client.set_status(b.id, None, "abandoned")  # leaving suspension, but not resuming
    agg = client.get_portfolio(portfolio.id).aggregate_status
    assert (agg.has_suspended_members, agg.suspended_member_count) == (False, 0)
    events = [
        e
        for e in client.get_portfolio_events(portfolio.id)
        if e.event_type.startswith("portfolio.")
    ]
    assert [(e.event_type, e.payload["intent_id"]) for e in events] == [
        ("portfolio.member_suspended", a.id),
        ("portfolio.member_suspended", b.id),
        ("portfolio.member_resumed", a.id),
    ]
    assert events[-1].payload["from"] == "suspended_awaiting_input"
    assert events[-1].payload["to"] == "active"


def test_replayed_and_stale_moves_change_nothing(client: Client, raw_redis: redis.Redis) -> None:
    portfolio = client.create_portfolio("p", governance_policy={"auto_complete_threshold": 100})
    a, b = client.create_intent("a"), client.create_intent("b")
    for intent in (a, b):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    client.set_status(a.id, None, "suspended_awaiting_input")
    client.set_status(a.id, None, "active")
    client.set_status(a.id, None, "completed")
    before = _footprint(client, raw_redis, portfolio.id)
    history = [
        Move(a.id, "suspended_awaiting_input", 2, [portfolio.id]),
        Move(a.id, "active", 3, [portfolio.id]),
        Move(a.id, "completed", 4, [portfolio.id]),
        Move(b.id, "active", 1, [portfolio.id]),
    ]
    for moves in (history, history, list(reversed(history)), history[:1]):
        client._after_moves(moves)
        assert _footprint(client, raw_redis, portfolio.id) == before
    # moves of a non-member, or for a portfolio that does not exist, apply nothing
    client._after_moves([Move("stranger", "completed", 9, [portfolio.id, "no-such-portfolio"])])
    assert _footprint(client, raw_redis, portfolio.id) == before
    # a newer move applies once, however often it is delivered
    client.set_status(b.id, None, "completed")
    after = _footprint(client, raw_redis, portfolio.id)
    client._after_moves([Move(b.id, "completed", 2, [portfolio.id])] * 3)
    assert _footprint(client, raw_redis, portfolio.id) == after
    assert _types(client, portfolio.id).count("portfolio_status_changed") == 1


# -- governance: auto-completion ---------------------------------------------------------
def test_auto_complete_threshold_fires_once(client: Client) -> None:
    portfolio = client.create_portfolio("p", governance_policy={"auto_complete_threshold": 50})
    ids = [client.create_intent(f"m{n}").id for n in range(4)]
    for intent_id in ids:
        client.add_intent_to_portfolio(portfolio.id, intent_id)
    client.set_status(ids[0], None, "completed")
    assert client.get_portfolio(portfolio.id).status == "active"
    client.set_status(ids[1], None, "completed")
    assert client.get_portfolio(portfolio.id).status == "completed"
    client.set_status(ids[2], None, "completed")
    client.set_status(ids[3], None, "completed")
    got = client.get_portfolio(portfolio.id)
    assert got.status == "completed" and _counts(got.aggregate_status) == {"completed": 4}
    changes = [
        e
        for e in client.get_portfolio_events(portfolio.id)
        if e.event_type == "portfolio_status_changed"
    ]
    assert len(changes) == 1
    assert changes[0].payload["reason"] == "auto_complete"
    assert (changes[0].payload["completed"], changes[0].payload["total"]) == (2, 4)


def test_without_a_threshold_the_portfolio_stays_active(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    client.add_intent_to_portfolio(portfolio.id, intent.id)
    client.set_status(intent.id, None, "completed")
    got = client.get_portfolio(portfolio.id)
    assert got.status == "active" and got.aggregate_status.status == "completed"


def test_partial_completion_leaves_abandoned_members_out(client: Client) -> None:
    strict = client.create_portfolio("s", governance_policy={"require_all_completed": True})
    partial = client.create_portfolio(
        "p", governance_policy={"require_all_completed": True, "allow_partial_completion": True}
    )
    a, b = client.create_intent("a"), client.create_intent("b")
    for pid in (strict.id, partial.id):
        client.add_intent_to_portfolio(pid, a.id)
        client.add_intent_to_portfolio(pid, b.id)
    client.set_status(a.id, None, "abandoned")
    client.set_status(b.id, None, "completed")
    assert client.get_portfolio(strict.id).status == "active"
    got = client.get_portfolio(partial.id)
    assert got.status == "completed" and got.aggregate_status.status == "failed"


def test_removal_that_reaches_the_threshold_completes(client: Client) -> None:
    portfolio = client.create_portfolio("p", governance_policy={"require_all_completed": True})
    a, b = client.create_intent("a"), client.create_intent("b")
    for intent in (a, b):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    client.set_status(a.id, None, "completed")
    client.remove_intent_from_portfolio(portfolio.id, b.id)
    assert client.get_portfolio(portfolio.id).status == "completed"


def test_concurrent_completions_complete_the_portfolio_once(client: Client) -> None:
    """Members completed at the same moment by several clients in several threads."""
    portfolio = client.create_portfolio("p", governance_policy={"require_all_completed": True})
    ids = [client.create_intent(f"m{n}").id for n in range(24)]
    for intent_id in ids:
        client.add_intent_to_portfolio(portfolio.id, intent_id)
    ns = client.keyspace.namespace
    workers = [Client(redis=client.redis, agent_id=f"w{n}", namespace=ns) for n in range(6)]
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for intent_id in ids[n :: len(workers)]:
                workers[n].set_status(intent_id, None, "completed")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    got = client.get_portfolio(portfolio.id)
    assert got.status == "completed" and _counts(got.aggregate_status) == {"completed": 24}
    assert _types(client, portfolio.id).count("portfolio_status_changed") == 1


@pytest.mark.anyio
async def test_concurrent_async_completions_complete_once(aclient: AsyncClient) -> None:
    portfolio = await aclient.create_portfolio(
        "p", governance_policy={"auto_complete_threshold": 75}
    )
    ids = [(await aclient.create_intent(f"m{n}")).id for n in range(20)]
    for intent_id in ids:
        await aclient.add_intent_to_portfolio(portfolio.id, intent_id)
    async with anyio.create_task_group() as tg:
        for intent_id in ids:
            tg.start_soon(aclient.set_status, intent_id, None, "completed")
    got = await aclient.get_portfolio(portfolio.id)
    assert got.status == "completed" and _counts(got.aggregate_status) == {"completed": 20}
    events = await aclient.get_portfolio_events(portfolio.id, limit=1000)
    assert [e.event_type for e in events].count("portfolio_status_changed") == 1


@pytest.mark.skipif(
    not hasattr(Client, "create_child_intent"), reason="needs the graph capability (RFC-0002)"
)
def test_graph_cascades_reach_the_portfolio(client: Client) -> None:
    """Moves made by a cascade (dependents unblocked, children abandoned with their
    parent) reach the portfolio through the same hook as a single status change."""
    portfolio = client.create_portfolio(
        "p", governance_policy={"require_all_completed": True, "allow_partial_completion": True}
    )
    parent = client.create_intent("parent", intent_id="job")
    kids = [client.create_child_intent(parent.id, f"k{n}").id for n in range(3)]
    dep = client.create_intent("dep", intent_id="job.dep")
    waiter = client.create_intent("waiter", intent_id="job.waiter", depends_on=[dep.id])
    for intent_id in [parent.id, *kids, dep.id, waiter.id]:
        client.add_intent_to_portfolio(portfolio.id, intent_id)
    assert _counts(client.get_portfolio(portfolio.id).aggregate_status) == {
        "active": 5,
        "blocked": 1,
    }
    client.set_status(dep.id, None, "completed")  # unblocks the waiter
    assert _counts(client.get_portfolio(portfolio.id).aggregate_status) == {
        "active": 5,
        "completed": 1,
    }
    client.set_status(parent.id, None, "abandoned")  # abandons the children too
    assert _counts(client.get_portfolio(portfolio.id).aggregate_status) == {
        "active": 1,
        "completed": 1,
        "abandoned": 4,
    }
    client.set_status(waiter.id, None, "completed")
    got = client.get_portfolio(portfolio.id)
    assert got.status == "completed" and got.aggregate_status.status == "failed"


# -- members in other slots, and the repair of a half-done change -------------------------
def test_members_in_other_partitions(client: Client, raw_redis: redis.Redis) -> None:
    ks = client.keyspace
    portfolio = client.create_portfolio("p", portfolio_id="trip-42")
    home = ks.partition(portfolio.id)
    far = _ids_in_other_partitions(ks, home, 3)
    near = client.create_intent("hotel", intent_id="trip-42.hotel")
    for intent_id in far:
        client.create_intent(intent_id, intent_id=intent_id)
        client.add_intent_to_portfolio(portfolio.id, intent_id)
    client.add_intent_to_portfolio(portfolio.id, near.id)
    assert ks.partition(near.id) == home
    assert len({ks.partition(i) for i in far} | {home}) == 4
    for intent_id in far:
        client.set_status(intent_id, None, "completed")
        assert raw_redis.hget(ks.intent(intent_id), "pf") == '["trip-42"]'
    agg = client.get_portfolio(portfolio.id).aggregate_status
    assert _counts(agg) == {"completed": 3, "active": 1}
    # the portfolio's events went to its own partition's bus, marked as a portfolio's
    entries = raw_redis.xrange(ks.bus(home))
    mine = [f for _, f in entries if f.get("k") == "portfolio"]
    assert {f["i"] for f in mine} == {"trip-42"}
    assert {f["m"] for f in mine if f["t"] == "added_to_portfolio"} == {*far, near.id}


def _bus_entry(client: Client, raw: redis.Redis, pid: str, event_type: str) -> dict[str, str]:
    ks = client.keyspace
    entries = raw.xrange(ks.bus(ks.partition(pid)))
    return [f for _, f in entries if f.get("k") == "portfolio" and f["t"] == event_type][-1]


def test_crash_between_the_two_steps_of_an_add_is_repaired(
    client: Client, raw_redis: redis.Redis
) -> None:
    ks = client.keyspace
    portfolio = client.create_portfolio("p", governance_policy={"require_all_completed": True})
    far = _ids_in_other_partitions(ks, ks.partition(portfolio.id), 1)[0]
    intent = client.create_intent("far", intent_id=far)
    # step 1 only: the client "dies" before recording the portfolio on the intent
    client._run(add_member_call(ks, "tester", portfolio.id, far, "member", 7, "active"))
    assert client.get_intent_portfolios(far) == []
    client.set_status(far, intent.version, "completed")  # this move cannot reach the portfolio
    assert _counts(client.get_portfolio(portfolio.id).aggregate_status) == {"active": 1}
    # the daemon finds the bus entry and finishes the change
    entry = _bus_entry(client, raw_redis, portfolio.id, "added_to_portfolio")
    assert entry["m"] == far
    assert client.repair_portfolio_link(entry) is True
    got = client.get_portfolio(portfolio.id)
    assert _counts(got.aggregate_status) == {"completed": 1} and got.status == "completed"
    assert [p.id for p in client.get_intent_portfolios(far)] == [portfolio.id]
    assert [e.event_type for e in client.get_events(far)].count("added_to_portfolio") == 1
    # repairing again (a redelivered entry) changes nothing
    before = _both(client, raw_redis, portfolio.id, far)
    assert client.repair_portfolio_link(entry) is True
    after = _both(client, raw_redis, portfolio.id, far)
    assert after == before
    # entries that are not membership changes are not repairs
    assert (
        client.repair_portfolio_link(
            _bus_entry(client, raw_redis, portfolio.id, "portfolio_created")
        )
        is False
    )


def test_crash_between_the_two_steps_of_a_removal_is_repaired(
    client: Client, raw_redis: redis.Redis
) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    client.add_intent_to_portfolio(portfolio.id, intent.id)
    client._run(remove_member_call(client.keyspace, "tester", portfolio.id, intent.id))
    added = _bus_entry(client, raw_redis, portfolio.id, "added_to_portfolio")
    removed = _bus_entry(client, raw_redis, portfolio.id, "removed_from_portfolio")
    # the intent still lists the portfolio, whose sync ignores it
    before = _footprint(client, raw_redis, portfolio.id)[:4]  # the bus may be the intent's
    client.set_status(intent.id, None, "blocked")
    assert _footprint(client, raw_redis, portfolio.id)[:4] == before
    assert client.repair_portfolio_link(removed) is True
    assert client.get_intent_portfolios(intent.id) == []
    # a late repair of the older add cannot undo the removal: its token is older
    snapshot = _intent_footprint(client, raw_redis, intent.id)
    assert client.repair_portfolio_link(added) is True
    assert _intent_footprint(client, raw_redis, intent.id) == snapshot
    assert client.get_intent_portfolios(intent.id) == []


def test_link_steps_apply_in_token_order(client: Client, raw_redis: redis.Redis) -> None:
    ks = client.keyspace
    intent = client.create_intent("i")
    assert client._run(link_call(ks, "tester", intent.id, "p1", 5, "member"))[0] == 1
    assert client._run(link_call(ks, "tester", intent.id, "p1", 3, None))[0] == 0  # stale
    assert raw_redis.hget(ks.intent(intent.id), "pf") == '["p1"]'
    assert client._run(link_call(ks, "tester", intent.id, "p1", 9, None))[0] == 1
    assert client._run(link_call(ks, "tester", intent.id, "p1", 7, "member"))[0] == 0
    assert raw_redis.hget(ks.intent(intent.id), "pf") is None
    assert client.get_intent(intent.id).version == 1  # membership is not state


# -- listing, reading, costs --------------------------------------------------------------
def test_list_portfolios_pages_across_partitions(client: Client) -> None:
    made = [client.create_portfolio(f"p{n}").id for n in range(7)]
    client.update_portfolio_status(made[2], "abandoned")
    seen, cursor = [], None
    while True:
        page = client.list_portfolios(limit=3, cursor=cursor)
        seen.extend(p.id for p in page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == len(made) and set(seen) == set(made)
    assert [p.id for p in client.list_portfolios(status="abandoned")] == [made[2]]
    # the status indexes follow auto-completion too
    auto = client.create_portfolio("auto", governance_policy={"require_all_completed": True})
    intent = client.create_intent("i")
    client.add_intent_to_portfolio(auto.id, intent.id)
    assert auto.id in {p.id for p in client.list_portfolios(status="active", limit=100)}
    client.set_status(intent.id, None, "completed")
    assert [p.id for p in client.list_portfolios(status="completed")] == [auto.id]
    assert auto.id not in {p.id for p in client.list_portfolios(status="active", limit=100)}
    assert len(client.list_portfolios(status="active", limit=100)) == 6
    with pytest.raises(ValidationError):
        client.list_portfolios(status="paused")
    with pytest.raises(ValidationError):
        client.list_portfolios(limit=0)


def test_shared_constraints_are_visible_to_members(client: Client) -> None:
    policy = {"shared_constraints": {"budget": 5000, "deadline": "2026-03-31"}, "custom": [1]}
    portfolio = client.create_portfolio("p", governance_policy=policy, metadata={"team": "x"})
    intent = client.create_intent("i")
    client.add_intent_to_portfolio(portfolio.id, intent.id)
    [seen] = client.get_intent_portfolios(intent.id)
    assert seen.governance_policy == policy and seen.metadata == {"team": "x"}
    assert seen.shared_constraints == {"budget": 5000, "deadline": "2026-03-31"}


def test_portfolio_costs_sum_the_members(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    a, b, outside = client.create_intent("a"), client.create_intent("b"), client.create_intent("c")
    for intent in (a, b):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    client.record_cost(a.id, "api_call", 0.1, "USD", provider="openai")
    client.record_cost(b.id, "api_call", 0.2, "USD", provider="openai")
    client.record_cost(b.id, "tokens", 1500, "tokens")
    client.record_cost(outside.id, "api_call", 99, "USD")
    costs = client.get_portfolio_costs(portfolio.id)
    assert costs.summary.total_micros == 1_500_300_000 and costs.summary.count == 3
    assert costs.summary.by_unit == {"USD": 0.3, "tokens": 1500}
    assert costs.summary.by_provider == {"openai": 0.3}
    assert costs.by_intent == {a.id: 0.1, b.id: 1500.2}
    with pytest.raises(NotFoundError):
        client.get_portfolio_costs("nope")


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 2000}, "name"),
        ({"description": 5}, "description"),
        ({"governance_policy": []}, "governance_policy"),
        ({"governance_policy": {"auto_complete_threshold": 0}}, "auto_complete_threshold"),
        ({"governance_policy": {"auto_complete_threshold": 101}}, "auto_complete_threshold"),
        ({"governance_policy": {"auto_complete_threshold": True}}, "auto_complete_threshold"),
        ({"governance_policy": {"require_all_completed": "yes"}}, "require_all_completed"),
        ({"governance_policy": {"shared_constraints": [1]}}, "shared_constraints"),
        ({"metadata": "x"}, "metadata"),
        ({"portfolio_id": "{bad}"}, "portfolio_id"),
    ],
)
def test_bad_create_arguments_are_refused(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], field: str
) -> None:
    args = {"name": "p", **kwargs}
    with pytest.raises(ValidationError) as info:
        client.create_portfolio(**args)
    assert info.value.field is not None and info.value.field.endswith(field)
    assert list(client.list_portfolios()) == []


def test_the_scripts_check_what_the_sdk_checks(client: Client, raw_redis: redis.Redis) -> None:
    """A caller that skips the SDK's checks meets the same refusals in Lua."""
    ks = client.keyspace
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    before = _both(client, raw_redis, portfolio.id, intent.id)
    good = add_member_call(ks, "tester", portfolio.id, intent.id, "member", 0, "active")
    for n, bad in [(1, "{x}"), (2, "boss"), (3, "007"), (3, "1e3"), (4, "done"), (5, "")]:
        args = list(good.args)
        args[n] = bad
        with pytest.raises(ValidationError):
            client._run(Call(good.script, good.keys, args))
    created = create_call(ks, "tester", "q", "q", None, None, None, "tester")
    for n, bad in [
        (4, '{"auto_complete_threshold": NaN}'),
        (4, '{"allow_partial_completion": 1}'),
        (4, "[]"),
        (5, "{"),
    ]:
        args = list(created.args)
        args[n] = bad
        with pytest.raises(ValidationError):
            client._run(Call(created.script, created.keys, args))
    [sync] = sync_calls(ks, "tester", [Move(intent.id, "completed", 2, [portfolio.id])])
    for moves in ["{", '[["i","finished",2]]', '[["i","completed",0]]', '[["i","completed",1.5]]']:
        with pytest.raises(ValidationError):
            client._run(Call(sync.script, sync.keys, [portfolio.id, moves, "tester"]))
    link = link_call(ks, "tester", intent.id, portfolio.id, 1, "member")
    for n, bad in [(1, "{x}"), (2, "0"), (2, "-1"), (3, "merge"), (4, "boss")]:
        args = list(link.args)
        args[n] = bad
        with pytest.raises(ValidationError):
            client._run(Call(link.script, link.keys, args))
    assert raw_redis.exists(ks.portfolio("q")) == 0
    after = _both(client, raw_redis, portfolio.id, intent.id)
    assert after == before


def test_bad_membership_arguments_change_nothing(client: Client, raw_redis: redis.Redis) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("i")
    before = _both(client, raw_redis, portfolio.id, intent.id)
    for kwargs, error in [
        ({"role": "boss"}, ValidationError),
        ({"priority": 1.5}, ValidationError),
        ({"priority": True}, ValidationError),
        ({"priority": 10**10}, ValidationError),
    ]:
        with pytest.raises(error):
            client.add_intent_to_portfolio(portfolio.id, intent.id, **kwargs)
    with pytest.raises(NotFoundError) as missing:
        client.add_intent_to_portfolio(portfolio.id, "no-such-intent")
    assert missing.value.resource == "intent"
    with pytest.raises(NotFoundError) as unknown:
        client.add_intent_to_portfolio("no-such-portfolio", intent.id)
    assert unknown.value.resource == "portfolio"
    with pytest.raises(NotFoundError):
        client.remove_intent_from_portfolio(portfolio.id, intent.id)
    with pytest.raises(NotFoundError):
        client.get_portfolio("no-such-portfolio")
    with pytest.raises(NotFoundError):
        client.get_portfolio_intents("no-such-portfolio")
    with pytest.raises(NotFoundError):
        client.get_portfolio_events("no-such-portfolio")
    with pytest.raises(NotFoundError):
        client.get_intent_portfolios("no-such-intent")
    with pytest.raises(ValidationError):
        client.get_portfolio("{bad}")
    with pytest.raises(ValidationError):
        client.repair_portfolio_link({"k": "portfolio", "t": "added_to_portfolio", "i": "x"})
    with pytest.raises(AlreadyExistsError):
        client.create_portfolio("again", portfolio_id=portfolio.id)
    after = _both(client, raw_redis, portfolio.id, intent.id)
    assert after == before


def test_an_intent_in_too_many_portfolios_is_refused(
    client: Client, raw_redis: redis.Redis
) -> None:
    """The SDK's early check (the script enforces the same limit when racing adds pass it)."""
    intent = client.create_intent("i")
    ks = client.keyspace
    full = [f"p{n}" for n in range(limits.PORTFOLIOS_PER_INTENT)]
    raw_redis.hset(ks.intent(intent.id), "pf", '["' + '","'.join(full) + '"]')
    portfolio = client.create_portfolio("p")
    with pytest.raises(PayloadTooLargeError):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    assert client.get_portfolio(portfolio.id).aggregate_status.total == 0


def test_an_add_that_loses_the_race_for_the_last_slot_is_undone(
    client: Client, raw_redis: redis.Redis
) -> None:
    """The SDK's early check passed (63 portfolios listed) but the intent joined a 64th
    before step 2: the script refuses, and the portfolio takes the member out again."""
    ks = client.keyspace
    intent = client.create_intent("i")
    full = {f"p{n}": 1 for n in range(limits.PORTFOLIOS_PER_INTENT)}
    listed = sorted(full)[:-1]
    raw_redis.hset(
        ks.intent(intent.id),
        mapping={"pfs": json.dumps(full), "pf": json.dumps(listed)},
    )
    portfolio = client.create_portfolio("p")
    with pytest.raises(PayloadTooLargeError):
        client.add_intent_to_portfolio(portfolio.id, intent.id)
    got = client.get_portfolio(portfolio.id)
    assert got.aggregate_status.total == 0 and got.intents == []
    assert _types(client, portfolio.id)[-2:] == ["added_to_portfolio", "removed_from_portfolio"]
    assert json.loads(raw_redis.hget(ks.intent(intent.id), "pfs") or "{}")[portfolio.id] < 0
    assert "removed_from_portfolio" not in [e.event_type for e in client.get_events(intent.id)]
    # the daemon's repairs of both entries change nothing now
    before = _both(client, raw_redis, portfolio.id, intent.id)
    for kind in ("added_to_portfolio", "removed_from_portfolio"):
        assert client.repair_portfolio_link(_bus_entry(client, raw_redis, portfolio.id, kind))
    assert _both(client, raw_redis, portfolio.id, intent.id) == before


# -- tables and headers ----------------------------------------------------------------------
def test_lua_and_python_portfolio_tables_match() -> None:
    text = (LUA / "includes" / "portfolio.lua").read_text()
    statuses = re.search(r"local PORTFOLIO_STATUSES = \{(.*?)\}", text)
    assert statuses is not None
    assert re.findall(r'"(\w+)"', statuses.group(1)) == [str(s) for s in PORTFOLIO_TRANSITIONS]
    block = re.search(r"local PORTFOLIO_TRANSITIONS = \{\n(.*?)\n\}", text, re.DOTALL)
    assert block is not None
    table = {
        name: set(re.findall(r"(\w+) = true", body))
        for name, body in re.findall(r"^  (\w+) = \{(.*?)\},$", block.group(1), re.MULTILINE)
    }
    assert table == {str(k): {str(s) for s in v} for k, v in PORTFOLIO_TRANSITIONS.items()}
    roles = re.search(r"local PORTFOLIO_ROLES = \{(.*?)\}", text)
    assert roles is not None
    assert set(re.findall(r"(\w+) = true", roles.group(1))) == {str(r) for r in MemberRole}


def test_calls_send_the_key_counts_the_headers_declare() -> None:
    ks, reg = Keyspace("k", 4), default_registry()
    calls = [
        create_call(ks, "a", "p", "n", None, None, None, "a"),
        add_member_call(ks, "a", "p", "i", "member", 0, "active"),
        remove_member_call(ks, "a", "p", "i"),
        link_call(ks, "a", "i", "p", 1, "member"),
        status_call(ks, "a", "p", "completed", None),
        *sync_calls(ks, "a", [Move("i", "active", 2, ["p", "q"])]),
    ]
    for call in calls:
        header = reg[call.script].header
        assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script


def test_the_seed_names_and_the_records_are_public() -> None:
    import oibus

    for name in [
        "create_portfolio",
        "get_portfolio",
        "list_portfolios",
        "update_portfolio_status",
        "add_intent_to_portfolio",
        "remove_intent_from_portfolio",
        "get_portfolio_intents",
        "get_intent_portfolios",
        "get_portfolio_costs",
        "get_portfolio_events",
        "repair_portfolio_link",
    ]:
        assert callable(getattr(Client, name)) and callable(getattr(AsyncClient, name)), name
    for name in ["Portfolio", "PortfolioMember", "PortfolioAggregate", "PortfolioCosts"]:
        assert name in oibus.__all__


def test_a_failed_sync_does_not_undo_the_reported_change(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The status change is stored before its portfolios are synced: a sync that fails is
    logged (the daemon replays the moves), and the caller still gets the moved intent."""
    portfolio = client.create_portfolio("p")
    member = client.create_intent("m")
    client.add_intent_to_portfolio(portfolio.id, member.id)

    def broken(calls: list[Call]) -> list[Any]:
        raise BusConnectionError("connection lost")

    monkeypatch.setattr(client._runner, "call_many", broken)
    with caplog.at_level("WARNING", logger="oibus.portfolios"):
        moved = client.set_status(member.id, None, "completed")
    assert moved.status == "completed"
    assert "portfolio sync after a status change failed" in caplog.text
    monkeypatch.undo()
    # the stale aggregate is what the daemon's replay of the same move corrects
    assert client.get_portfolio(portfolio.id).aggregate_status.by_status.get("completed", 0) == 0
    client._after_moves([Move(member.id, "completed", moved.version, [portfolio.id])])
    assert client.get_portfolio(portfolio.id).aggregate_status.status == "completed"
