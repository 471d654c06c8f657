"""Retry policies and failures (RFC-0010): the delay formula, the policy's arguments (seed
and RFC names), the script's decisions (no policy, budget, retryable codes, declines,
exhaustion once), the due set, paging, attempt numbering under concurrency, and the Lua
side computing the same delays as the Python one."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from helpers import event_types

from oibus import (
    AsyncClient,
    Client,
    ConflictError,
    IntentClosedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import retries
from oibus.bus.codec import to_micros
from oibus.bus.keyspace import Keyspace, key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.bus.retries import (
    FailureRecord,
    RetryPolicy,
    check_failure,
    check_policy,
    record_failure_call,
    recorded_failure,
    retry_delay_ms,
    set_policy_call,
)

LUA = Path(__file__).resolve().parent.parent / "lua"


def _policy(strategy: str, base: int = 1000, cap: int = 60_000, **kw: Any) -> RetryPolicy:
    return RetryPolicy(
        intent_id="x",
        strategy=strategy,  # type: ignore[arg-type]
        base_delay_ms=base,
        max_delay_ms=cap,
        **kw,
    )


def _record(client: Client, intent_id: str, draw: float, **kw: Any) -> FailureRecord:
    """record_failure with a chosen jitter draw (the client draws at random)."""
    failure = check_failure(
        intent_id,
        error_type=kw.pop("error_type", None),
        error_code=kw.pop("error_code", None),
        error_message=kw.pop("error_message", ""),
        metadata=kw.pop("metadata", None),
    )
    call = record_failure_call(
        client.keyspace,
        client.agent_id,
        failure,
        attempt=kw.pop("attempt", None),
        will_retry=kw.pop("will_retry", None),
        jitter_fraction=draw,
    )
    return recorded_failure(failure, client.agent_id, client._runner.call(call))


# -- the delay formula (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (_policy("fixed"), [1000, 1000, 1000, 1000]),
        (_policy("fixed", base=0, cap=0), [0, 0, 0, 0]),
        (_policy("linear"), [1000, 2000, 3000, 4000]),
        (_policy("linear", base=25_000), [25_000, 50_000, 60_000, 60_000]),
        (_policy("exponential"), [1000, 2000, 4000, 8000]),
        (_policy("exponential", backoff_multiplier=3.0, cap=20_000), [1000, 3000, 9000, 20_000]),
        (_policy("exponential", base=1000, backoff_multiplier=1.5), [1000, 1500, 2250, 3375]),
        (_policy("exponential", base=1001, backoff_multiplier=1.5), [1001, 1501, 2252, 3378]),
        (_policy("exponential", backoff_multiplier=1.0), [1000, 1000, 1000, 1000]),
        (_policy("none"), [0, 0, 0, 0]),
    ],
)
def test_delay_per_strategy(policy: RetryPolicy, expected: list[int]) -> None:
    assert [retry_delay_ms(policy, n, 0.0) for n in range(1, 5)] == expected


def test_exponential_stops_at_the_cap_for_huge_attempts() -> None:
    policy = _policy("exponential", backoff_multiplier=100.0, cap=604_800_000)
    assert retry_delay_ms(policy, 1000, 0.0) == 604_800_000
    linear = _policy("linear", base=604_800, cap=604_800_000)
    assert retry_delay_ms(linear, 999, 0.0) == 604_195_200
    assert retry_delay_ms(linear, 1001, 0.0) == 604_800_000


def test_jitter_adds_a_fraction_of_the_delay() -> None:
    policy = _policy("exponential", jitter=0.5)
    assert retry_delay_ms(policy, 3, 0.0) == 4000
    assert retry_delay_ms(policy, 3, 0.5) == 5000
    assert retry_delay_ms(policy, 3, 0.999999) == 4000 + 1999
    capped = _policy("fixed", base=70_000, cap=60_000, jitter=1.0)
    assert retry_delay_ms(capped, 1, 0.25) == 75_000  # jitter goes on top of the cap


@pytest.mark.parametrize(("attempt", "draw"), [(0, 0.0), (-1, 0.0), (1, 1.0), (1, -0.1)])
def test_delay_arguments_are_checked(attempt: int, draw: float) -> None:
    with pytest.raises(ValidationError):
        retry_delay_ms(_policy("fixed"), attempt, draw)
    with pytest.raises(ValidationError):
        retry_delay_ms(_policy("fixed"), True, 0.0)  # type: ignore[arg-type]


# -- argument names (pure) --------------------------------------------------------------


def test_seed_and_rfc_names_resolve_to_one_policy() -> None:
    seed = check_policy(
        "i",
        max_attempts=5,
        base_delay_seconds=1.0,
        max_delay_seconds=60.0,
        backoff_multiplier=2.0,
        retryable_errors=["timeout", "rate_limit", "temporary_failure"],
    )
    assert (seed.max_retries, seed.max_attempts) == (4, 5)
    assert (seed.base_delay_ms, seed.max_delay_ms) == (1000, 60_000)
    assert (seed.base_delay_seconds, seed.max_delay_seconds) == (1.0, 60.0)
    rfc = check_policy(
        "i",
        strategy="exponential",
        max_retries=5,
        base_delay_ms=1000,
        max_delay_ms=60_000,
        fallback_agent_id="agent-backup",
        failure_threshold=3,
    )
    assert (rfc.max_retries, rfc.base_delay_ms, rfc.max_delay_ms) == (5, 1000, 60_000)
    assert (rfc.fallback_agent_id, rfc.failure_threshold) == ("agent-backup", 3)
    # agreeing duplicates are fine
    assert check_policy("i", max_retries=4, max_attempts=5).max_retries == 4
    assert check_policy("i", base_delay_seconds=0.25, base_delay_ms=250).base_delay_ms == 250
    assert check_policy("i", base_delay_seconds=0.5).base_delay_ms == 500


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"strategy": "random"}, "strategy"),
        ({"strategy": 3}, "strategy"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1001}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_retries": 2, "max_attempts": 5}, "max_attempts"),
        ({"base_delay_seconds": -1.0}, "base_delay_seconds"),
        ({"base_delay_ms": -1}, "base_delay_ms"),
        ({"max_delay_ms": -5}, "max_delay_ms"),
        ({"max_delay_seconds": float("nan")}, "max_delay_seconds"),
        ({"base_delay_seconds": 2.0, "base_delay_ms": 1000}, "base_delay_ms"),
        ({"base_delay_ms": 5000, "max_delay_ms": 4000}, "max_delay_ms"),
        ({"base_delay_seconds": 10.0, "max_delay_seconds": 5.0}, "max_delay_ms"),
        ({"max_delay_seconds": 10**9}, "max_delay_seconds"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"backoff_multiplier": float("inf")}, "backoff_multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": "0.1"}, "jitter"),
        ({"retryable_errors": "timeout"}, "retryable_errors"),
        ({"retryable_errors": ["ok", ""]}, "retryable_errors"),
        ({"retryable_errors": [1]}, "retryable_errors"),
        ({"retryable_errors": ["x"] * 65}, "retryable_errors"),
        ({"fallback_agent_id": ""}, "fallback_agent_id"),
        ({"failure_threshold": 0}, "failure_threshold"),
    ],
)
def test_policy_argument_errors(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_policy("i", **kwargs)
    assert info.value.field == field


# -- scripts: headers, key counts, slots, mirrored limits -------------------------------


def test_scripts_declare_what_the_calls_send() -> None:
    ks = Keyspace("k", 4)
    reg = default_registry()
    failure = check_failure(
        "g.i", error_type="e", error_code=None, error_message="m", metadata={"a": 1}
    )
    calls = [
        set_policy_call(ks, "actor", check_policy("g.i", retryable_errors=["a"])),
        record_failure_call(ks, "actor", failure, attempt=1, will_retry=False, jitter_fraction=0.5),
    ]
    for call in calls:
        header = reg[call.script].header
        assert not header.variadic_keys
        assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script
        assert len({key_slot(k) for k in call.keys}) == 1, call.script
    assert set(reg["set_retry_policy"].header.events) == {"retry_policy_set"}
    assert set(reg["record_failure"].header.events) == {
        "failure_recorded",
        "retry_scheduled",
        "retries_exhausted",
    }
    assert calls[1].keys[-1] == ks.due_retries(ks.partition("g.i"))


def test_lua_limits_mirror_python() -> None:
    text = (LUA / "includes" / "retry_policy.lua").read_text()
    lua = {m[0]: int(m[1]) for m in re.findall(r"local RETRY_(\w+) = (\d+)", text)}
    assert lua == {k: getattr(retries, k) for k in lua}
    assert len(lua) == 6
    strategies = re.search(r"local RETRY_STRATEGIES = \{(.*?)\}", text)
    assert strategies is not None
    assert set(re.findall(r"(\w+) = true", strategies.group(1))) == set(retries.STRATEGIES)


# -- set / get --------------------------------------------------------------------------


def test_set_get_and_replace(client: Client) -> None:
    intent = client.create_intent("t")
    assert client.get_retry_policy(intent.id) is None
    policy = client.set_retry_policy(
        intent.id,
        max_attempts=5,
        base_delay_seconds=1.0,
        max_delay_seconds=60.0,
        backoff_multiplier=2.0,
        retryable_errors=["timeout", "rate_limit", "temporary_failure"],
    )
    assert policy.intent_id == intent.id
    assert (policy.strategy, policy.max_retries, policy.max_attempts) == ("exponential", 4, 5)
    assert policy.retryable_errors == ["timeout", "rate_limit", "temporary_failure"]
    assert policy.set_by == "tester" and policy.set_at is not None
    assert client.get_retry_policy(intent.id) == policy
    replaced = client.set_retry_policy(
        intent.id,
        strategy="linear",
        max_retries=7,
        base_delay_ms=250,
        max_delay_ms=2000,
        jitter=0.25,
        fallback_agent_id="agent-backup",
        failure_threshold=3,
    )
    got = client.get_retry_policy(intent.id)
    assert got == replaced
    assert got is not None
    assert (got.strategy, got.max_retries, got.base_delay_ms, got.max_delay_ms) == (
        "linear",
        7,
        250,
        2000,
    )
    assert (got.jitter, got.fallback_agent_id, got.failure_threshold) == (0.25, "agent-backup", 3)
    assert got.retryable_errors is None  # replaced as a whole
    events = client.get_events(intent.id, event_type="retry_policy_set")
    assert len(events) == 2
    assert events[0].payload["retryable_errors"] == ["timeout", "rate_limit", "temporary_failure"]
    assert events[1].payload == {
        "strategy": "linear",
        "max_retries": 7,
        "base_delay_ms": 250,
        "max_delay_ms": 2000,
        "backoff_multiplier": 2.0,
        "jitter": 0.25,
        "retryable_errors": None,
        "fallback_agent_id": "agent-backup",
        "failure_threshold": 3,
    }
    assert client.get_intent(intent.id).version == 1  # a policy is not state


def test_an_empty_list_retries_nothing(client: Client) -> None:
    intent = client.create_intent("t")
    policy = client.set_retry_policy(intent.id, retryable_errors=[])
    assert policy.retryable_errors == []
    assert (
        client.get_events(intent.id, event_type="retry_policy_set")[0].payload["retryable_errors"]
        == []
    )
    assert not client.record_failure(intent.id, "TIMEOUT").will_retry


def test_unknown_intents(client: Client, raw_redis: redis.Redis) -> None:
    with pytest.raises(NotFoundError):
        client.set_retry_policy("ghost")
    with pytest.raises(NotFoundError):
        client.get_retry_policy("ghost")
    with pytest.raises(NotFoundError):
        client.record_failure("ghost", "TIMEOUT")
    with pytest.raises(NotFoundError):
        client.get_failures("ghost")
    ks = client.keyspace
    assert not raw_redis.exists(ks.retry_policy("ghost"), ks.failures("ghost"))
    assert not raw_redis.exists(ks.due_retries(ks.partition("ghost")))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "random"},
        {"base_delay_seconds": -1.0},
        {"base_delay_ms": -1},
        {"max_delay_ms": 10, "base_delay_ms": 100},
        {"jitter": 2.0},
        {"max_retries": 2, "max_attempts": 9},
    ],
)
def test_bad_policies_change_nothing(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any]
) -> None:
    intent = client.create_intent("t")
    before = client.set_retry_policy(intent.id, max_retries=2)
    length = raw_redis.xlen(client.keyspace.events(intent.id))
    with pytest.raises(ValidationError):
        client.set_retry_policy(intent.id, **kwargs)
    assert client.get_retry_policy(intent.id) == before
    assert raw_redis.xlen(client.keyspace.events(intent.id)) == length


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, "random", "strategy"),
        (2, "-1", "max_retries"),
        (2, "03", "max_retries"),
        (2, "1001", "max_retries"),
        (3, "-1", "base_delay_ms"),
        (3, "1.5", "base_delay_ms"),
        (4, "999", "max_delay_ms"),
        (4, "604800001", "max_delay_ms"),
        (5, "0.5", "backoff_multiplier"),
        (5, "NaN", "backoff_multiplier"),
        (5, "0x10", "backoff_multiplier"),
        (6, "1.5", "jitter"),
        (6, "-0.1", "jitter"),
        (7, '{"a":"b"}', "retryable_errors"),
        (7, '["a",1]', "retryable_errors"),
        (7, '[""]', "retryable_errors"),
        (7, "nope", "retryable_errors"),
        (9, "0", "failure_threshold"),
        (10, "", "actor"),
    ],
)
def test_the_policy_script_checks_every_field(
    client: Client, raw_redis: redis.Redis, index: int, value: str, field: str
) -> None:
    """The script is the authority: the same checks, made with the SDK's bypassed."""
    intent = client.create_intent("t")
    call = set_policy_call(client.keyspace, "tester", check_policy(intent.id))
    args = list(call.args)
    args[index] = value
    with pytest.raises(ValidationError) as info:
        client._runner.call(Call(call.script, call.keys, args))
    assert info.value.field == field
    assert not raw_redis.exists(client.keyspace.retry_policy(intent.id))
    assert event_types(client, intent.id) == ["intent_created"]


def test_closed_intents_take_no_policy_and_no_failures(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(intent.id)
    client.set_status(intent.id, 1, "abandoned")
    with pytest.raises(IntentClosedError):
        client.set_retry_policy(intent.id)
    with pytest.raises(IntentClosedError):
        client.record_failure(intent.id, "TIMEOUT")
    assert client.get_failures(intent.id) == []


# -- record_failure ---------------------------------------------------------------------


def test_seed_example(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(
        intent.id,
        max_attempts=5,
        base_delay_seconds=1.0,
        max_delay_seconds=60.0,
        backoff_multiplier=2.0,
        retryable_errors=["timeout", "rate_limit", "temporary_failure"],
    )
    failure = client.record_failure(
        intent.id,
        error_type="rate_limit",
        error_message="API rate limit exceeded",
        attempt=1,
        will_retry=True,
    )
    assert (failure.attempt_number, failure.attempt, failure.error_type) == (1, 1, "rate_limit")
    assert failure.will_retry
    assert failure.retry_scheduled_at is not None
    assert failure.retry_scheduled_at - failure.recorded_at == timedelta(seconds=1)
    assert client.get_failures(intent.id) == [failure]


def test_without_a_policy_nothing_is_retried(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    records = [client.record_failure(intent.id, "TIMEOUT", f"try {n}") for n in range(3)]
    assert [r.attempt_number for r in records] == [1, 2, 3]
    assert not any(r.will_retry for r in records)
    assert event_types(client, intent.id) == ["intent_created"] + ["failure_recorded"] * 3
    payload = client.get_events(intent.id, event_type="failure_recorded")[0].payload
    assert (payload["will_retry"], payload["reason"], payload["error_code"]) == (
        False,
        "no_policy",
        "TIMEOUT",
    )
    ks = client.keyspace
    assert raw_redis.zscore(ks.due_retries(ks.partition(intent.id)), intent.id) is None


def test_the_budget_is_spent_once(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(
        intent.id, strategy="fixed", max_retries=2, fallback_agent_id="agent-backup"
    )
    records = [client.record_failure(intent.id, error_code="TIMEOUT") for _ in range(5)]
    assert [r.will_retry for r in records] == [True, True, False, False, False]
    assert event_types(client, intent.id)[2:] == [
        "failure_recorded",
        "retry_scheduled",
        "failure_recorded",
        "retry_scheduled",
        "failure_recorded",
        "retries_exhausted",
        "failure_recorded",
        "failure_recorded",
    ]
    exhausted = client.get_events(intent.id, event_type="retries_exhausted")
    assert len(exhausted) == 1
    assert exhausted[0].payload["fallback_agent_id"] == "agent-backup"
    assert exhausted[0].payload["attempt_number"] == 3
    assert exhausted[0].payload["failure_id"] == records[2].id
    ks = client.keyspace
    assert raw_redis.zscore(ks.due_retries(ks.partition(intent.id)), intent.id) is None
    # a new policy re-arms the budget check: more retries, then one more exhaustion
    client.set_retry_policy(intent.id, strategy="fixed", max_retries=6)
    assert client.record_failure(intent.id, "TIMEOUT").attempt_number == 6
    assert not client.record_failure(intent.id, "TIMEOUT").will_retry
    assert event_types(client, intent.id).count("retries_exhausted") == 2
    assert exhausted[0].payload["max_retries"] == 2


def test_strategy_none_exhausts_at_the_first_failure(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(intent.id, strategy="none", max_retries=5)
    assert not client.record_failure(intent.id, "TIMEOUT").will_retry
    assert not client.record_failure(intent.id, "TIMEOUT").will_retry
    assert event_types(client, intent.id).count("retries_exhausted") == 1


def test_only_retryable_codes_are_retried(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(intent.id, max_retries=10, retryable_errors=["RATE_LIMIT", "timeout"])
    assert not client.record_failure(intent.id, error_code="PERMISSION_DENIED").will_retry
    assert client.record_failure(intent.id, error_code="rate_limit").will_retry  # any case
    assert client.record_failure(intent.id, error_type="TIMEOUT").will_retry
    assert not client.record_failure(intent.id, error_message="no code").will_retry
    assert not client.record_failure(intent.id, "timeout", will_retry=False).will_retry
    reasons = [
        e.payload["reason"] for e in client.get_events(intent.id, event_type="failure_recorded")
    ]
    assert reasons == ["not_retryable", "scheduled", "scheduled", "not_retryable", "declined"]
    assert "retries_exhausted" not in event_types(client, intent.id)


def test_the_due_set(client: Client, raw_redis: redis.Redis) -> None:
    one = client.create_intent("one", intent_id="grp.one")
    two = client.create_intent("two", intent_id="grp.two")
    for intent in (one, two):
        client.set_retry_policy(intent.id, max_retries=3, retryable_errors=["TIMEOUT"])
    due = client.keyspace.due_retries(client.keyspace.partition("grp"))
    first = client.record_failure(one.id, "TIMEOUT")
    second = client.record_failure(two.id, "TIMEOUT")
    assert first.retry_scheduled_at is not None and second.retry_scheduled_at is not None
    members = dict(raw_redis.zrange(due, 0, -1, withscores=True))
    assert members == {
        one.id: to_micros(first.retry_scheduled_at),
        two.id: to_micros(second.retry_scheduled_at),
    }
    # the latest failure of an intent decides its entry: a later retry moves it ...
    later = client.record_failure(one.id, "TIMEOUT")
    assert later.retry_scheduled_at is not None
    assert raw_redis.zscore(due, one.id) == to_micros(later.retry_scheduled_at)
    # ... and a failure that is not retried removes it
    client.record_failure(one.id, "FATAL")
    assert raw_redis.zrange(due, 0, -1) == [two.id]
    event = client.get_events(two.id, event_type="retry_scheduled")[0]
    assert event.payload["next_attempt"] == 2
    assert event.payload["delay_ms"] == 1000
    assert event.payload["failure_id"] == second.id


def test_attempt_numbers_are_checked(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    client.record_failure(intent.id, "E", attempt=1)
    length = raw_redis.xlen(client.keyspace.events(intent.id))
    for wrong in (1, 3):
        with pytest.raises(ConflictError) as info:
            client.record_failure(intent.id, "E", attempt=wrong)
        assert info.value.details["expected_attempt"] == 2
    with pytest.raises(ValidationError):
        client.record_failure(intent.id, "E", attempt=0)
    assert raw_redis.xlen(client.keyspace.events(intent.id)) == length
    assert client.record_failure(intent.id, "E", attempt=2).attempt_number == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"error_type": "A", "error_code": "B"}, ValidationError),
        ({"error_code": ""}, ValidationError),
        ({"error_code": "x" * 129}, ValidationError),
        ({"error_message": 5}, ValidationError),
        ({"error_message": "x" * 65_537}, PayloadTooLargeError),
        ({"metadata": [1]}, ValidationError),
        ({"metadata": {"x": object()}}, ValidationError),
        ({"will_retry": "yes"}, ValidationError),
        ({"attempt": 1.5}, ValidationError),
    ],
)
def test_failure_argument_errors(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    intent = client.create_intent("t")
    with pytest.raises(error):
        client.record_failure(intent.id, **kwargs)
    assert not raw_redis.exists(client.keyspace.failures(intent.id))


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (1, "0", "attempt"),
        (1, "x", "attempt"),
        (2, "x" * 129, "error_code"),
        (4, "[1]", "metadata"),
        (4, "{", "metadata"),
        (5, "1", "will_retry"),
        (6, "1", "jitter_fraction"),
        (6, "-0.5", "jitter_fraction"),
        (6, "", "jitter_fraction"),
        (7, "", "actor"),
    ],
)
def test_the_failure_script_checks_every_field(
    client: Client, raw_redis: redis.Redis, index: int, value: str, field: str
) -> None:
    intent = client.create_intent("t")
    client.set_retry_policy(intent.id)
    failure = check_failure(
        intent.id, error_type="E", error_code=None, error_message="", metadata=None
    )
    call = record_failure_call(
        client.keyspace, "tester", failure, attempt=None, will_retry=None, jitter_fraction=0.0
    )
    args = list(call.args)
    args[index] = value
    with pytest.raises(ValidationError) as info:
        client._runner.call(Call(call.script, call.keys, args))
    assert info.value.field == field
    assert not raw_redis.exists(client.keyspace.failures(intent.id))


def test_failures_page_oldest_first(client: Client) -> None:
    intent = client.create_intent("t")
    made = [
        client.record_failure(
            intent.id, f"E{n}", f"message {n} ✓", metadata={"http_status": 429, "n": n}
        )
        for n in range(7)
    ]
    first = client.get_failures(intent.id, limit=3)
    second = client.get_failures(intent.id, limit=3, cursor=first.next_cursor)
    third = client.get_failures(intent.id, limit=3, cursor=second.next_cursor)
    assert [*first, *second, *third] == made
    assert first.next_cursor == made[2].id
    assert third.next_cursor is None
    assert [f.attempt_number for f in third] == [7]
    assert made[4].metadata == {"http_status": 429, "n": 4}
    assert made[4].agent_id == "tester"
    assert client.get_failures(intent.id, cursor=made[-1].id) == []
    with pytest.raises(ValidationError):
        client.get_failures(intent.id, cursor="nope")
    with pytest.raises(ValidationError):
        client.get_failures(intent.id, limit=0)
    assert client.get_failures(client.create_intent("u").id) == []


# -- the script computes what the Python formula says ------------------------------------

_CASES = [
    # strategy, base, cap, multiplier, jitter, attempts, draws
    ("fixed", 1500, 60_000, 2.0, 0.0, 3, [0.0, 0.5, 0.99]),
    ("fixed", 999, 999, 2.0, 0.37, 3, [0.123456789, 0.999999999, 0.5]),
    ("linear", 700, 3000, 2.0, 0.5, 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
    ("exponential", 1000, 60_000, 2.0, 0.0, 8, [0.0] * 8),
    ("exponential", 1001, 600_000, 1.5, 0.1, 12, [0.7315] * 12),
    ("exponential", 333, 604_800_000, 1.1, 0.9, 20, [0.0001 * n for n in range(20)]),
    ("exponential", 10, 45_000, 3.7, 1.0, 9, [0.999, 0.001, 0.5, 0.25, 0.75, 0.3, 0.6, 0.9, 0.1]),
    ("exponential", 0, 0, 2.0, 1.0, 2, [0.5, 0.5]),
    ("exponential", 7, 604_800_000, 100.0, 0.33, 6, [0.61803398875] * 6),
]


@pytest.mark.parametrize("case", _CASES, ids=[f"{c[0]}-{n}" for n, c in enumerate(_CASES)])
def test_the_script_and_the_formula_agree(client: Client, case: tuple[Any, ...]) -> None:
    strategy, base, cap, multiplier, jitter, attempts, draws = case
    intent = client.create_intent("t")
    policy = client.set_retry_policy(
        intent.id,
        strategy=strategy,
        max_retries=attempts,
        base_delay_ms=base,
        max_delay_ms=cap,
        backoff_multiplier=multiplier,
        jitter=jitter,
    )
    for attempt, draw in zip(range(1, attempts + 1), draws, strict=True):
        record = _record(client, intent.id, draw, error_code="TIMEOUT")
        assert record.attempt_number == attempt
        assert record.retry_scheduled_at is not None
        expected = retry_delay_ms(policy, attempt, draw)
        assert record.retry_scheduled_at - record.recorded_at == timedelta(milliseconds=expected)
    delays = [e.payload["delay_ms"] for e in client.get_events(intent.id, "retry_scheduled")]
    assert delays == [retry_delay_ms(policy, n + 1, d) for n, d in enumerate(draws)]
    stored = client.get_failures(intent.id, limit=1000)
    assert [f.retry_scheduled_at - f.recorded_at for f in stored] == [
        timedelta(milliseconds=d) for d in delays
    ]


# -- async ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_failures_get_consecutive_attempts(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("race")
    await aclient.set_retry_policy(intent.id, max_retries=10, base_delay_ms=10, max_delay_ms=100)
    agents = [
        AsyncClient(
            redis=aclient.redis, agent_id=f"agent-{n}", namespace=aclient.keyspace.namespace
        )
        for n in range(20)
    ]
    got: list[FailureRecord] = []

    async def fail(agent: AsyncClient) -> None:
        got.append(await agent.record_failure(intent.id, "TIMEOUT", agent.agent_id))

    async with anyio.create_task_group() as tg:
        for agent in agents:
            tg.start_soon(fail, agent)
    assert sorted(r.attempt_number for r in got) == list(range(1, 21))
    assert sum(r.will_retry for r in got) == 10
    stored = await aclient.get_failures(intent.id)
    assert [f.attempt_number for f in stored] == list(range(1, 21))
    assert {f.id for f in stored} == {r.id for r in got}
    events = await aclient.get_events(intent.id, event_type="retries_exhausted")
    assert len(events) == 1 and events[0].payload["attempt_number"] == 11


@pytest.mark.anyio
async def test_async_policy_round_trip(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    assert await aclient.get_retry_policy(intent.id) is None
    policy = await aclient.set_retry_policy(intent.id, "linear", 2, 0.5, 5.0)
    assert await aclient.get_retry_policy(intent.id) == policy
    failure = await aclient.record_failure(intent.id, "TIMEOUT", "slow", metadata={"s": 30})
    assert failure.retry_scheduled_at is not None
    assert failure.retry_scheduled_at - failure.recorded_at == timedelta(milliseconds=500)
    assert await aclient.get_failures(intent.id) == [failure]


@pytest.mark.parametrize("field", ["jitter", "backoff_multiplier", "base_delay_seconds"])
def test_huge_numbers_are_validation_errors(client: Client, field: str) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.set_retry_policy(intent.id, **{field: 10**400})  # type: ignore[arg-type]
