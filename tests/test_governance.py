"""Governance (RFC-0003): arbitration requests (resolved once), immutable decision records,
and namespace-wide delegation contracts whose expiry the server's clock decides. Every
refused call leaves the store as it was."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import event_types

from oibus import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    ConflictError,
    IntentClosedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import governance as gov
from oibus.bus import limits
from oibus.bus.governance import ArbitrationRequest, DecisionRecord, Delegation
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.sdk._async.runner import check_one_slot

LUA = Path(__file__).resolve().parent.parent / "lua"


def _footprint(client: Client, raw: redis.Redis, intent_id: str) -> tuple[Any, ...]:
    ks = client.keyspace
    return (
        raw.xlen(ks.events(intent_id)),
        raw.hgetall(ks.arbitrations(intent_id)),
        raw.xlen(ks.decisions(intent_id)),
        raw.hget(ks.intent(intent_id), "version"),
        raw.hgetall(ks.delegations),
        raw.xlen(ks.delegation_events),
    )


def _later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# -- the scripts' contract ---------------------------------------------------------------
def test_calls_send_what_the_headers_declare_in_one_slot() -> None:
    ks, reg = Keyspace("k", 8), default_registry()
    calls = [
        gov.request_arbitration(ks, "a", "g.i", "r1", "why", [1], {"k": 1}),
        gov.resolve_arbitration(ks, "a", "g.i", "r1", "done", None),
        gov.record_decision(
            ks,
            "a",
            "i",
            "d1",
            decision="x",
            rationale="y",
            decided_by=None,
            evidence=None,
            decision_type="t",
            context=None,
            alternatives=None,
        ),
        gov.create_delegation(
            ks,
            "a",
            "dg1",
            delegate="b",
            scope={"actions": ["x"]},
            constraints=None,
            expires_at=_later(60),
            delegator=None,
        ),
        gov.revoke_delegation(ks, "a", "dg1", "why"),
    ]
    assert {c.script for c in calls} == {
        "request_arbitration",
        "resolve_arbitration",
        "record_decision",
        "create_delegation",
        "revoke_delegation",
    }
    for call in calls:
        header = reg[call.script].header
        assert not header.variadic_keys
        assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script
        check_one_slot(call)


def test_lua_and_python_share_the_governance_limits() -> None:
    text = (LUA / "includes" / "gov_records.lua").read_text() + (
        LUA / "includes" / "gov_delegation.lua"
    ).read_text()
    found = {m[0]: int(m[1]) for m in re.findall(r"local (GOV_\w+) = (\d+)", text)}
    assert found == {
        "GOV_ARBITRATIONS": gov.ARBITRATIONS_PER_INTENT,
        "GOV_SCOPE_ITEMS": gov.SCOPE_ITEMS,
        "GOV_TIME_MAX": gov.TIME_MAX_US,
    }


# -- arbitration -------------------------------------------------------------------------
def test_request_and_resolve_arbitration(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    request = client.request_arbitration(
        intent.id, reason="Conflicting interpretations of requirements"
    )
    assert isinstance(request, ArbitrationRequest)
    assert (request.intent_id, request.requestor, request.status) == (
        intent.id,
        "tester",
        "pending",
    )
    assert (request.options, request.context, request.resolution) == ([], {}, None)
    assert request.resolved_at is None
    resolved = other.resolve_arbitration(
        intent.id, request.id, "proceed_with_option_a", rationale="aligns with the goal"
    )
    assert resolved.status == "resolved"
    assert (resolved.resolution, resolved.rationale, resolved.resolved_by) == (
        "proceed_with_option_a",
        "aligns with the goal",
        "rival",
    )
    assert resolved.resolved_at is not None and resolved.resolved_at >= resolved.created_at
    assert (resolved.id, resolved.created_at, resolved.requestor) == (
        request.id,
        request.created_at,
        "tester",
    )
    assert client.get_arbitrations(intent.id) == [resolved]
    events = client.get_events(intent.id)
    assert [e.event_type for e in events] == [
        "intent_created",
        "arbitration_requested",
        "arbitration_resolved",
    ]
    assert events[1].payload == {
        "arbitration_id": request.id,
        "reason": "Conflicting interpretations of requirements",
    }
    assert events[2].actor == "rival"
    assert events[2].payload["resolution"] == "proceed_with_option_a"
    assert client.get_intent(intent.id).version == 1  # governance is not state


def test_resolving_twice_is_a_conflict_and_changes_nothing(
    client: Client, other: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    request = client.request_arbitration(intent.id, "r")
    first = client.resolve_arbitration(intent.id, request.id, "a")
    assert first.rationale is None
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(ConflictError) as info:
        other.resolve_arbitration(intent.id, request.id, "b", "second opinion")
    assert info.value.details["status"] == "resolved"
    assert _footprint(client, raw_redis, intent.id) == before
    assert client.get_arbitrations(intent.id) == [first]
    assert event_types(client, intent.id).count("arbitration_resolved") == 1


def test_options_and_context_are_kept_verbatim(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    options = [
        {"label": "A", "rationale": "cheaper", "cost": 123456789012345678},
        {"label": "B", "weights": [], "p": 0.1},
        "just text",
    ]
    context = {"empty": [], "obj": {}, "n": 1.5e300, "deep": [[[1]]]}
    request = client.request_arbitration(intent.id, "pick", options=options, context=context)
    assert (request.options, request.context) == (options, context)
    client.resolve_arbitration(intent.id, request.id, "A")
    stored = raw_redis.hget(client.keyspace.arbitrations(intent.id), request.id)
    assert stored is not None
    assert '"empty":[]' in stored and "123456789012345678" in stored
    (again,) = client.get_arbitrations(intent.id)
    assert (again.options, again.context) == (options, context)


def test_get_arbitrations_orders_and_filters(client: Client) -> None:
    intent = client.create_intent("t")
    assert client.get_arbitrations(intent.id) == []
    made = [client.request_arbitration(intent.id, f"r{n}") for n in range(4)]
    client.resolve_arbitration(intent.id, made[1].id, "x")
    client.resolve_arbitration(intent.id, made[3].id, "y")
    assert [a.id for a in client.get_arbitrations(intent.id)] == [a.id for a in made]
    assert [a.reason for a in client.get_arbitrations(intent.id, status="pending")] == ["r0", "r2"]
    assert [a.resolution for a in client.get_arbitrations(intent.id, status="resolved")] == [
        "x",
        "y",
    ]
    with pytest.raises(ValidationError):
        client.get_arbitrations(intent.id, status="open")
    with pytest.raises(NotFoundError):
        client.get_arbitrations("ghost")
    with pytest.raises(ValidationError):
        client.get_arbitrations("bad id")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c, i, a: c.request_arbitration("ghost", "r"), NotFoundError),
        (lambda c, i, a: c.request_arbitration("bad id!", "r"), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, ""), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, 5), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "x" * (limits.TEXT_BYTES + 1)), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "r", options="a,b"), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "r", options={"a": 1}), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "r", context=[1]), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "r", context={1: 2}), ValidationError),
        (lambda c, i, a: c.request_arbitration(i, "r", options=[object()]), ValidationError),
        (
            lambda c, i, a: c.request_arbitration(i, "r", options=["x" * limits.PAYLOAD_BYTES]),
            PayloadTooLargeError,
        ),
        (lambda c, i, a: c.resolve_arbitration(i, "no-such", "x"), NotFoundError),
        (lambda c, i, a: c.resolve_arbitration("ghost", a, "x"), NotFoundError),
        (lambda c, i, a: c.resolve_arbitration(i, "bad id!", "x"), ValidationError),
        (lambda c, i, a: c.resolve_arbitration(i, a, ""), ValidationError),
        (lambda c, i, a: c.resolve_arbitration(i, a, "x", rationale=""), ValidationError),
        (lambda c, i, a: c.resolve_arbitration(i, a, "x", rationale=7), ValidationError),
    ],
)
def test_arbitration_input_errors_change_nothing(
    client: Client, raw_redis: redis.Redis, call: Any, error: type[Exception]
) -> None:
    intent = client.create_intent("t")
    pending = client.request_arbitration(intent.id, "r")
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(error):
        call(client, intent.id, pending.id)
    assert _footprint(client, raw_redis, intent.id) == before
    assert client.get_arbitrations(intent.id) == [pending]


def test_another_intents_arbitration_is_not_found(client: Client) -> None:
    first, second = client.create_intent("a"), client.create_intent("b")
    request = client.request_arbitration(first.id, "r")
    with pytest.raises(NotFoundError):
        client.resolve_arbitration(second.id, request.id, "x")
    assert client.get_arbitrations(first.id)[0].status == "pending"


def test_closed_intents_take_no_requests_but_resolve_pending_ones(client: Client) -> None:
    intent = client.create_intent("t")
    pending = client.request_arbitration(intent.id, "r")
    client.set_status(intent.id, 1, "completed")
    with pytest.raises(IntentClosedError):
        client.request_arbitration(intent.id, "late")
    assert client.resolve_arbitration(intent.id, pending.id, "closed out").status == "resolved"


def test_the_scripts_check_what_the_sdk_checks(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    ks = client.keyspace
    good = gov.request_arbitration(ks, "tester", intent.id, "fixed", "r", None, None)
    client._runner.call(good)
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(AlreadyExistsError):  # an id is never overwritten
        client._runner.call(good)
    bad_args = [
        [intent.id, "a2", "r", "{}", "{}", "tester"],  # options must be a list
        [intent.id, "a2", "r", "[]", "[]", "tester"],  # context must be an object
        [intent.id, "a2", "r", "[NaN]", "{}", "tester"],
        [intent.id, "a2", "", "[]", "{}", "tester"],
        [intent.id, "bad id", "r", "[]", "{}", "tester"],
        [intent.id, "a2", "r", "[]", "{}", ""],
    ]
    for args in bad_args:
        with pytest.raises(ValidationError):
            client._runner.call(Call("request_arbitration", good.keys, args))
    with pytest.raises(PayloadTooLargeError):
        client._runner.call(
            Call(
                "request_arbitration",
                good.keys,
                [intent.id, "a2", "r", '["' + "x" * limits.PAYLOAD_BYTES + '"]', "{}", "tester"],
            )
        )
    other = client.create_intent("other", colocate_with=intent.id)
    wrong_key = [good.keys[0], ks.arbitrations(other.id), *good.keys[2:]]
    with pytest.raises(ValidationError):  # a key that is not this intent's
        client._runner.call(
            Call("request_arbitration", wrong_key, [intent.id, "a3", "r", "[]", "{}", "t"])
        )
    assert _footprint(client, raw_redis, intent.id) == before


def test_an_intent_keeps_a_bounded_number_of_requests(
    client: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    key = client.keyspace.arbitrations(intent.id)
    raw_redis.hset(key, mapping={f"filler-{n}": "{}" for n in range(gov.ARBITRATIONS_PER_INTENT)})
    with pytest.raises(PayloadTooLargeError):
        client.request_arbitration(intent.id, "one too many")
    assert raw_redis.hlen(key) == gov.ARBITRATIONS_PER_INTENT


# -- decisions ---------------------------------------------------------------------------
def test_record_decision_as_the_seed_does(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    decision = client.record_decision(
        intent.id,
        decision="proceed_with_option_a",
        rationale="Option A better aligns with business objectives",
    )
    assert isinstance(decision, DecisionRecord)
    assert (decision.intent_id, decision.decided_by, decision.recorded_by) == (
        intent.id,
        "tester",
        "tester",
    )
    assert (decision.evidence, decision.decision_type, decision.context) == ([], None, {})
    assert decision.alternatives == []
    assert list(client.get_decisions(intent.id)) == [decision]
    event = client.get_events(intent.id, event_type="decision_recorded")[0]
    assert event.payload == {
        "decision_id": decision.id,
        "decision": "proceed_with_option_a",
        "decided_by": "tester",
        "decision_type": None,
    }
    assert client.get_intent(intent.id).version == 1


def test_decision_extras_are_stored(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    evidence = [{"source": "survey", "summary": "users prefer A"}, {"n": 0.1, "l": []}]
    decision = other.record_decision(
        intent.id,
        "escalate",
        "too risky",
        evidence,
        "human:alice",
        decision_type="escalation",
        context={"budget": 10**17, "tags": []},
        alternatives=["wait", {"label": "B"}],
    )
    assert (decision.decided_by, decision.recorded_by) == ("human:alice", "rival")
    assert decision.evidence == evidence
    assert decision.decision_type == "escalation"
    assert decision.context == {"budget": 10**17, "tags": []}
    assert decision.alternatives == ["wait", {"label": "B"}]
    assert client.get_decisions(intent.id)[0] == decision
    assert client.get_events(intent.id)[-1].actor == "rival"


def test_decisions_page_oldest_first(client: Client) -> None:
    intent = client.create_intent("t")
    made = [client.record_decision(intent.id, f"d{n}", "r") for n in range(5)]
    first = client.get_decisions(intent.id, limit=2)
    second = client.get_decisions(intent.id, limit=2, cursor=first.next_cursor)
    third = client.get_decisions(intent.id, limit=2, cursor=second.next_cursor)
    assert [d.id for d in [*first, *second, *third]] == [d.id for d in made]
    assert third.next_cursor is None
    assert client.get_decisions(intent.id, limit=5).next_cursor is not None  # a full page
    empty = client.create_intent("empty")
    assert client.get_decisions(empty.id) == []
    with pytest.raises(NotFoundError):
        client.get_decisions("ghost")
    with pytest.raises(ValidationError):
        client.get_decisions(intent.id, cursor="nope")
    with pytest.raises(ValidationError):
        client.get_decisions(intent.id, limit=0)


def test_decisions_are_recorded_on_closed_intents(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_status(intent.id, 1, "abandoned")
    record = client.record_decision(intent.id, "write off", "no budget")
    assert client.get_decisions(intent.id) == [record]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"intent_id": "ghost"}, NotFoundError),
        ({"intent_id": "bad id!"}, ValidationError),
        ({"decision": ""}, ValidationError),
        ({"rationale": ""}, ValidationError),
        ({"rationale": None}, ValidationError),
        ({"decided_by": ""}, ValidationError),
        ({"decided_by": "x" * 257}, PayloadTooLargeError),
        ({"evidence": "a source"}, ValidationError),
        ({"evidence": {"source": "x"}}, ValidationError),
        ({"context": ["x"]}, ValidationError),
        ({"alternatives": "a or b"}, ValidationError),
        ({"decision_type": ""}, ValidationError),
        ({"evidence": ["x" * limits.PAYLOAD_BYTES]}, PayloadTooLargeError),
    ],
)
def test_decision_input_errors_change_nothing(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    intent = client.create_intent("t")
    args: dict[str, Any] = {"intent_id": intent.id, "decision": "d", "rationale": "r"}
    args.update(kwargs)
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(error):
        client.record_decision(**args)
    assert _footprint(client, raw_redis, intent.id) == before


def test_the_decision_script_checks_its_input(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    call = gov.record_decision(
        client.keyspace,
        "tester",
        intent.id,
        "d1",
        decision="d",
        rationale="r",
        decided_by=None,
        evidence=None,
        decision_type=None,
        context=None,
        alternatives=None,
    )
    before = _footprint(client, raw_redis, intent.id)
    for n, bad in [(6, "{}"), (7, "[]"), (8, "{}"), (4, ""), (2, "")]:
        args = list(call.args)
        args[n] = bad
        with pytest.raises(ValidationError):
            client._runner.call(Call("record_decision", call.keys, args))
    assert _footprint(client, raw_redis, intent.id) == before


# -- delegations -------------------------------------------------------------------------
def test_create_and_list_delegations(client: Client, other: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    events_before = raw_redis.xlen(client.keyspace.events(intent.id))
    mine = client.create_delegation(
        "agent-b",
        {"intents": [intent.id], "actions": ["approve", "spend"]},
        constraints={"max_cost": 1000, "requires_approval": False, "tags": []},
        expires_at=_later(3600),
    )
    assert isinstance(mine, Delegation)
    assert (mine.delegator, mine.delegate, mine.status, mine.created_by) == (
        "tester",
        "agent-b",
        "active",
        "tester",
    )
    assert mine.in_force
    assert mine.scope == {"intents": [intent.id], "actions": ["approve", "spend"]}
    assert mine.constraints == {"max_cost": 1000, "requires_approval": False, "tags": []}
    assert mine.expires_at is not None
    assert 3590 < (mine.expires_at - mine.created_at).total_seconds() <= 3600
    theirs = other.create_delegation("agent-c", {"actions": ["review"]}, delegator="human:bob")
    assert (theirs.delegator, theirs.created_by, theirs.expires_at) == ("human:bob", "rival", None)
    assert theirs.scope == {"intents": [], "actions": ["review"]}
    assert client.get_delegations() == [mine, theirs]
    assert client.get_delegations(delegator="tester") == [mine]
    assert client.get_delegations(delegate="agent-c") == [theirs]
    assert client.get_delegations(delegator="tester", delegate="agent-c") == []
    # namespace-wide: their events are in the delegation log, not the intent's
    assert raw_redis.xlen(client.keyspace.events(intent.id)) == events_before
    log = raw_redis.xrange(client.keyspace.delegation_events)
    assert [(f["t"], f["a"], f["d"]) for _, f in log] == [
        ("delegation_created", "tester", mine.id),
        ("delegation_created", "rival", theirs.id),
    ]


def test_expiry_is_decided_by_the_server_clock(client: Client, raw_redis: redis.Redis) -> None:
    short = client.create_delegation("b", {"actions": ["x"]}, expires_at=_later(0.3))
    assert short.status == "active"
    assert client.get_delegations() == [short]
    time.sleep(0.4)
    assert client.get_delegations() == []
    (expired,) = client.get_delegations(include_expired=True)
    assert expired.status == "expired" and not expired.in_force
    log_before = raw_redis.xlen(client.keyspace.delegation_events)
    assert client.revoke_delegation(short.id, "too late").status == "expired"
    assert raw_redis.xlen(client.keyspace.delegation_events) == log_before
    with pytest.raises(ValidationError):  # the past, by the server's clock
        client.create_delegation("b", {"actions": ["x"]}, expires_at=_later(-1))


def test_revoke_delegation(client: Client, other: Client, raw_redis: redis.Redis) -> None:
    delegation = client.create_delegation("b", {"actions": ["x"]}, expires_at=_later(600))
    revoked = other.revoke_delegation(delegation.id, "no longer trusted")
    assert revoked.status == "revoked" and not revoked.in_force
    assert (revoked.revoked_by, revoked.revoke_reason) == ("rival", "no longer trusted")
    assert revoked.revoked_at is not None
    assert (revoked.scope, revoked.created_at) == (delegation.scope, delegation.created_at)
    assert client.get_delegations() == []
    assert client.get_delegations(include_expired=True) == [revoked]
    assert client.revoke_delegation(delegation.id, "again") == revoked  # a retry is harmless
    log = raw_redis.xrange(client.keyspace.delegation_events)
    assert [f["t"] for _, f in log] == ["delegation_created", "delegation_revoked"]
    assert '"reason":"no longer trusted"' in log[1][1]["p"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"delegate": "tester"}, ValidationError),  # to itself
        ({"delegate": ""}, ValidationError),
        ({"delegator": "x" * 257}, PayloadTooLargeError),
        ({"scope": ["x"]}, ValidationError),
        ({"scope": {}}, ValidationError),
        ({"scope": {"intents": [], "actions": []}}, ValidationError),
        ({"scope": {"intents": ["bad id!"]}}, ValidationError),
        ({"scope": {"intents": "abc"}}, ValidationError),
        ({"scope": {"actions": [1]}}, ValidationError),
        ({"scope": {"actions": ["x"], "everything": True}}, ValidationError),
        ({"scope": {"actions": ["a"] * (gov.SCOPE_ITEMS + 1)}}, ValidationError),
        ({"constraints": ["max_cost"]}, ValidationError),
        ({"expires_at": datetime(2030, 1, 1)}, ValidationError),  # naive
        ({"expires_at": datetime(2300, 1, 1, tzinfo=UTC)}, ValidationError),
        ({"expires_at": "tomorrow"}, ValidationError),
        ({"constraints": {"blob": "x" * limits.PAYLOAD_BYTES}}, PayloadTooLargeError),
    ],
)
def test_delegation_input_errors_change_nothing(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"delegate": "b", "scope": {"actions": ["x"]}}
    args.update(kwargs)
    with pytest.raises(error):
        client.create_delegation(**args)
    assert raw_redis.hlen(client.keyspace.delegations) == 0
    assert raw_redis.xlen(client.keyspace.delegation_events) == 0


def test_revoke_errors(client: Client, raw_redis: redis.Redis) -> None:
    delegation = client.create_delegation("b", {"actions": ["x"]})
    before = raw_redis.hgetall(client.keyspace.delegations)
    with pytest.raises(NotFoundError):
        client.revoke_delegation("no-such", "r")
    with pytest.raises(ValidationError):
        client.revoke_delegation(delegation.id, "")
    with pytest.raises(ValidationError):
        client.revoke_delegation("bad id!", "r")
    assert raw_redis.hgetall(client.keyspace.delegations) == before
    assert raw_redis.xlen(client.keyspace.delegation_events) == 1
    with pytest.raises(ValidationError):
        client.get_delegations(delegator=5)  # type: ignore[arg-type]


def test_the_delegation_scripts_check_their_input(client: Client, raw_redis: redis.Redis) -> None:
    call = gov.create_delegation(
        client.keyspace,
        "tester",
        "dg1",
        delegate="b",
        scope={"actions": ["x"]},
        constraints=None,
        expires_at=None,
        delegator=None,
    )
    client._runner.call(call)
    with pytest.raises(AlreadyExistsError):
        client._runner.call(call)
    for n, bad in [
        (3, '{"intents":["bad id"]}'),
        (3, '{"actions":{"a":"x"}}'),
        (3, '{"actions":[],"intents":[]}'),
        (3, '{"other":["x"]}'),
        (4, "[]"),
        (5, "12"),  # long past
        (5, "soon"),
        (2, "tester"),  # to itself
    ]:
        args = list(call.args)
        args[0], args[n] = "dg2", bad
        with pytest.raises(ValidationError):
            client._runner.call(Call("create_delegation", call.keys, args))
    ns = client.keyspace.namespace
    wrong = [f"{{{ns}}}:x", f"{{{ns}}}:y"]
    with pytest.raises(ValidationError):  # keys that are not delegation keys
        client._runner.call(Call("create_delegation", wrong, ["dg3", *call.args[1:]]))
    assert raw_redis.hlen(client.keyspace.delegations) == 1
    assert raw_redis.xlen(client.keyspace.delegation_events) == 1


# -- async -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_async_governance(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    request = await aclient.request_arbitration(intent.id, "r", options=[{"label": "a"}])
    resolved = await aclient.resolve_arbitration(intent.id, request.id, "a")
    with pytest.raises(ConflictError):
        await aclient.resolve_arbitration(intent.id, request.id, "b")
    assert await aclient.get_arbitrations(intent.id, status="resolved") == [resolved]
    decision = await aclient.record_decision(intent.id, decision="a", rationale="r")
    assert list(await aclient.get_decisions(intent.id)) == [decision]
    delegation = await aclient.create_delegation("b", {"intents": [intent.id]})
    assert await aclient.get_delegations(delegate="b") == [delegation]
    assert (await aclient.revoke_delegation(delegation.id, "r")).status == "revoked"
    assert await aclient.get_delegations() == []
