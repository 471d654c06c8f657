"""Costs and budgets (RFC-0009): records and their read-back, summaries by every dimension
kept exact in micro-units, paging, refusals that change nothing, hard limits, alert
thresholds that fire once, and concurrent writers that never overshoot a budget."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from helpers import event_types

from oibus import (
    AsyncClient,
    BudgetExceededError,
    Client,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import costs
from oibus.bus.codes import CODES
from oibus.bus.keyspace import Keyspace
from oibus.bus.registry import default_registry

LUA = Path(__file__).resolve().parent.parent / "lua"


def _footprint(client: Client, raw: redis.Redis, intent_id: str) -> tuple[Any, ...]:
    """Everything a cost could touch: records, totals, the intent's log and version."""
    ks = client.keyspace
    return (
        raw.xlen(ks.costs(intent_id)),
        raw.hgetall(ks.cost_summary(intent_id)),
        raw.xlen(ks.events(intent_id)),
        raw.xlen(ks.bus(ks.partition(intent_id))),
        raw.hget(ks.intent(intent_id), "version"),
    )


# -- recording and reading back ---------------------------------------------------------
def test_record_and_read_back(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    cost = client.record_cost(
        intent.id,
        cost_type="api_call",
        amount=0.05,
        unit="USD",
        provider="openai",
        metadata={"model": "gpt-4", "tokens": 1500},
    )
    assert (cost.intent_id, cost.agent_id, cost.cost_type, cost.unit, cost.provider) == (
        intent.id,
        "tester",
        "api_call",
        "USD",
        "openai",
    )
    assert (cost.amount, cost.amount_micros) == (0.05, 50_000)
    assert cost.metadata == {"model": "gpt-4", "tokens": 1500}
    assert cost.recorded_at.tzinfo is not None
    page = client.get_costs(intent.id)
    assert list(page) == [cost] and page.next_cursor is None
    event = client.get_events(intent.id, event_type="cost_recorded")[0]
    assert event.payload == {
        "cost_id": cost.id,
        "cost_type": "api_call",
        "amount": 0.05,
        "unit": "USD",
        "provider": "openai",
        "agent_id": "tester",
    }
    assert event.created_at == cost.recorded_at
    assert client.get_intent(intent.id).version == 1  # costs are not state
    # the seed's usage
    summary = client.get_cost_summary(intent.id)
    assert summary["total"] == 0.05 and summary["by_type"] == {"api_call": 0.05}
    assert sum(c.amount for c in client.get_costs(intent.id)) == 0.05
    # integer text only in the store
    stored = raw_redis.hgetall(client.keyspace.cost_summary(intent.id))
    assert all(re.fullmatch(r"\d+", v) for v in stored.values()), stored


def test_tokens_stay_integers_and_closed_intents_still_take_costs(client: Client) -> None:
    intent = client.create_intent("t")
    cost = client.record_cost(intent.id, "tokens", 1500, "tokens", metadata={"prompt": 1200})
    assert cost.amount == 1500 and isinstance(cost.amount, int)
    assert cost.provider is None
    client.set_status(intent.id, None, "completed")
    late = client.record_cost(intent.id, "compute", 2.5, "seconds")
    assert [c.id for c in client.get_costs(intent.id)] == [cost.id, late.id]


def test_summary_by_every_dimension(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    client.record_cost(intent.id, "tokens", 1000, "tokens", provider="openai")
    client.record_cost(intent.id, "api_call", 0.25, "USD", provider="openai")
    other.record_cost(intent.id, "api_call", 0.5, "USD", provider="anthropic")
    other.record_cost(intent.id, "compute", 3, "seconds")
    client.record_cost(intent.id, "custom", 0, "USD", provider="google")
    s = client.get_cost_summary(intent.id)
    assert s.count == 5
    assert (s.total, s.total_micros) == (1003.75, 1_003_750_000)
    assert s.by_type == {"tokens": 1000, "api_call": 0.75, "compute": 3, "custom": 0}
    assert s.by_agent == {"tester": 1000.25, "rival": 3.5}
    assert s.by_provider == {"openai": 1000.25, "anthropic": 0.5, "google": 0}
    assert s.by_unit == {"tokens": 1000, "USD": 0.75, "seconds": 3}
    assert s.alerts_fired == []
    assert dict(s)["by_unit"] == s.by_unit
    assert "by_agent" in s and "nope" not in s
    assert s.get("nope", 1) == 1
    with pytest.raises(KeyError):
        s["nope"]


def test_money_does_not_drift(client: Client) -> None:
    intent = client.create_intent("t")
    for _ in range(10):
        client.record_cost(intent.id, "api_call", 0.1, "USD")
    s = client.get_cost_summary(intent.id)
    assert (s.total, s.total_micros) == (1, 1_000_000)
    assert isinstance(s.total, int)
    third = client.record_cost(intent.id, "api_call", 0.1 + 0.2, "USD")  # 0.30000000000000004
    assert third.amount_micros == 300_000
    exact = client.record_cost(intent.id, "custom", Decimal("123456789.123456"), "USD")
    assert exact.amount_micros == 123_456_789_123_456
    assert client.record_cost(intent.id, "custom", Decimal("0.0000015"), "USD").amount_micros == 2
    s = client.get_cost_summary(intent.id)
    assert s.total_micros == 1_000_000 + 300_000 + 123_456_789_123_456 + 2
    assert s.total_micros == sum(c.amount_micros for c in client.get_costs(intent.id, limit=1000))
    event = client.get_events(intent.id, event_type="cost_recorded", reverse=True, limit=2)[1]
    assert event.payload["amount"] == 123456789.123456


def test_totals_stay_below_two_to_the_53(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    for _ in range(costs.TOTAL_MAX // costs.AMOUNT_MAX):
        client.record_cost(intent.id, "tokens", costs.AMOUNT_MAX, "tokens")
    s = client.get_cost_summary(intent.id)
    assert s.total_micros == costs.TOTAL_MAX_MICROS < 2**53
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(PayloadTooLargeError):
        client.record_cost(intent.id, "tokens", 0.000001, "tokens")
    assert _footprint(client, raw_redis, intent.id) == before
    client.record_cost(intent.id, "tokens", 0, "tokens")


# -- paging -----------------------------------------------------------------------------
def test_paging_oldest_first(client: Client) -> None:
    intent = client.create_intent("t")
    made = [client.record_cost(intent.id, "tokens", n, "tokens").id for n in range(7)]
    seen: list[str] = []
    cursor = None
    pages = []
    while True:
        page = client.get_costs(intent.id, limit=3, cursor=cursor)
        pages.append(len(page))
        seen.extend(c.id for c in page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made and pages == [3, 3, 1]
    exact = client.get_costs(intent.id, limit=7)
    assert len(exact) == 7 and exact.next_cursor is None
    assert [c.amount for c in exact] == list(range(7))


def test_empty_and_unknown(client: Client) -> None:
    intent = client.create_intent("t")
    assert list(client.get_costs(intent.id)) == []
    s = client.get_cost_summary(intent.id)
    assert (s.count, s.total, s.by_type, s.by_unit) == (0, 0, {}, {})
    with pytest.raises(NotFoundError):
        client.get_costs("ghost")
    with pytest.raises(NotFoundError):
        client.get_cost_summary("ghost")
    with pytest.raises(NotFoundError):
        client.record_cost("ghost", "tokens", 1, "tokens")


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"limit": True}, {"cursor": "x"}, {"cursor": "1-2-3"}],
)
def test_get_costs_rejects(client: Client, kwargs: dict[str, Any]) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.get_costs(intent.id, **kwargs)


# -- validation: refused and nothing changed ---------------------------------------------
def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"amount": -1}, ValidationError, "amount"),
        ({"amount": -0.000001}, ValidationError, "amount"),
        ({"amount": math.nan}, ValidationError, "amount"),
        ({"amount": math.inf}, ValidationError, "amount"),
        ({"amount": -math.inf}, ValidationError, "amount"),
        ({"amount": Decimal("NaN")}, ValidationError, "amount"),
        ({"amount": Decimal("-1")}, ValidationError, "amount"),
        ({"amount": True}, ValidationError, "amount"),
        ({"amount": "5"}, ValidationError, "amount"),
        ({"amount": None}, ValidationError, "amount"),
        ({"amount": 10**9 + 1}, ValidationError, "amount"),
        ({"amount": 1e300}, ValidationError, "amount"),
        ({"cost_type": "gpu"}, ValidationError, "cost_type"),
        ({"cost_type": ""}, ValidationError, "cost_type"),
        ({"cost_type": None}, ValidationError, "cost_type"),
        ({"unit": ""}, ValidationError, "unit"),
        ({"unit": "U S D"}, ValidationError, "unit"),
        ({"unit": "a:b"}, ValidationError, "unit"),
        ({"unit": "x" * 33}, ValidationError, "unit"),
        ({"unit": "€"}, ValidationError, "unit"),
        ({"unit": 5}, ValidationError, "unit"),
        ({"provider": ""}, ValidationError, "provider"),
        ({"provider": 5}, ValidationError, "provider"),
        ({"provider": "p" * 129}, ValidationError, "provider"),
        ({"provider": "\ud800"}, ValidationError, "provider"),
        ({"metadata": [1]}, ValidationError, "metadata"),
        ({"metadata": {"x": object()}}, ValidationError, "metadata"),
        ({"metadata": {"x": "y" * costs.METADATA_BYTES}}, PayloadTooLargeError, "metadata"),
        ({"intent_id": "bad id"}, ValidationError, "intent_id"),
    ],
)
def test_bad_arguments_change_nothing(
    client: Client,
    raw_redis: redis.Redis,
    kwargs: dict[str, Any],
    error: type[Exception],
    field: str,
) -> None:
    intent = client.create_intent("t")
    args: dict[str, Any] = {
        "intent_id": intent.id,
        "cost_type": "api_call",
        "amount": 1,
        "unit": "USD",
        **kwargs,
    }
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(error) as info:
        client.record_cost(**args)
    assert getattr(info.value, "field", None) == field
    assert _footprint(client, raw_redis, intent.id) == before
    assert not raw_redis.exists(client.keyspace.costs(intent.id))


@pytest.mark.parametrize(
    ("position", "value", "error"),
    [
        (1, "bad id", ValidationError),  # cost id
        (2, "gpu", ValidationError),
        (3, "-1", ValidationError),
        (3, "1.5", ValidationError),
        (3, "01", ValidationError),
        (3, "", ValidationError),
        (3, "1e6", ValidationError),
        (3, str(costs.AMOUNT_MAX_MICROS + 1), ValidationError),
        (3, "9" * 40, ValidationError),
        (4, "", ValidationError),
        (4, "a:b", ValidationError),
        (5, b"\xff", ValidationError),  # not UTF-8
        (6, "[1]", ValidationError),
        (6, '{"a": NaN}', ValidationError),
        (6, "{", ValidationError),
        (6, '{"a":"' + "x" * costs.METADATA_BYTES + '"}', PayloadTooLargeError),
        (7, "", ValidationError),  # actor
    ],
)
def test_the_script_checks_on_its_own(
    client: Client,
    raw_redis: redis.Redis,
    position: int,
    value: str | bytes,
    error: type[Exception],
) -> None:
    intent = client.create_intent("t")
    call = costs.record_cost_call(
        client.keyspace, "tester", "c1", intent.id, "tokens", 1, "tokens", None, None
    )
    call.args[position] = value
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(error):
        client._runner.call(call)
    assert _footprint(client, raw_redis, intent.id) == before


def test_the_script_checks_its_keys(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    other = client.create_intent("u", colocate_with=intent.id)
    call = costs.record_cost_call(
        client.keyspace, "tester", "c1", intent.id, "tokens", 1, "tokens", None, None
    )
    call.keys[3] = client.keyspace.costs(other.id)
    with pytest.raises(ValidationError):
        client._runner.call(call)
    assert not raw_redis.exists(client.keyspace.costs(other.id))
    assert not raw_redis.exists(client.keyspace.costs(intent.id))


# -- budgets ----------------------------------------------------------------------------
def test_total_budget(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t", constraints={"max_cost": 1.0})
    client.record_cost(intent.id, "api_call", 0.6, "USD")
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(BudgetExceededError) as info:
        client.record_cost(intent.id, "api_call", 0.400001, "USD")
    assert info.value.details == {
        "limit": "max_total",
        "unit": "USD",
        "max": "1",
        "spent": "0.6",
        "amount": "0.400001",
    }
    assert _footprint(client, raw_redis, intent.id) == before
    client.record_cost(intent.id, "api_call", 0.4, "USD")  # reaching it exactly is allowed
    with pytest.raises(BudgetExceededError):
        client.record_cost(intent.id, "api_call", 0.000001, "USD")
    client.record_cost(intent.id, "api_call", 0, "USD")
    client.record_cost(intent.id, "tokens", 10**6, "tokens")  # other units are not limited
    s = client.get_cost_summary(intent.id)
    assert s.by_unit == {"USD": 1, "tokens": 10**6}
    assert "budget_exceeded" not in event_types(client, intent.id)


def test_per_agent_budget(client: Client, other: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t", constraints={"budget": {"max_per_agent": 2, "unit": "EUR"}})
    client.record_cost(intent.id, "api_call", 1.5, "EUR")
    other.record_cost(intent.id, "api_call", 2, "EUR")
    client.record_cost(intent.id, "api_call", 5, "USD")  # not the budget's unit
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(BudgetExceededError) as info:
        client.record_cost(intent.id, "api_call", 0.6, "EUR")
    assert info.value.details["limit"] == "max_per_agent"
    assert info.value.details["agent_id"] == "tester"
    with pytest.raises(BudgetExceededError):
        other.record_cost(intent.id, "tokens", 0.01, "EUR")
    assert _footprint(client, raw_redis, intent.id) == before
    client.record_cost(intent.id, "api_call", 0.5, "EUR")
    assert client.get_cost_summary(intent.id).by_agent == {"tester": 7, "rival": 2}


def test_per_call_budget_in_cents(client: Client, raw_redis: redis.Redis) -> None:
    budget = {
        "max_total_cents": 10000,
        "max_per_agent_cents": 2000,
        "max_per_call_cents": 500,
        "alert_threshold_percent": 80,
    }
    intent = client.create_intent("t", constraints={"budget": budget})
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(BudgetExceededError) as info:
        client.record_cost(intent.id, "api_call", 501, "cents")
    assert info.value.details == {
        "limit": "max_per_call",
        "unit": "cents",
        "max": "500",
        "amount": "501",
    }
    assert _footprint(client, raw_redis, intent.id) == before
    client.record_cost(intent.id, "api_call", 500, "cents")
    client.record_cost(intent.id, "api_call", 501, "USD")  # the budget is in cents
    assert client.get_cost_summary(intent.id).by_unit == {"cents": 500, "USD": 501}


@pytest.mark.parametrize(
    ("constraints", "limit"),
    [
        ({"budget": 5}, 5),  # the portfolio seed's shorthand
        ({"max_cost": 5, "budget": {"max_total": 7}}, 5),  # the smaller applies
        ({"max_cost": 9, "budget": {"max_total": 5}}, 5),
        ({"max_cost": 5, "budget": None}, 5),
        ({"max_cost": 0}, 0),
    ],
)
def test_total_limit_forms(client: Client, constraints: dict[str, Any], limit: int) -> None:
    intent = client.create_intent("t", constraints=constraints)
    client.record_cost(intent.id, "custom", limit, "USD")
    with pytest.raises(BudgetExceededError):
        client.record_cost(intent.id, "custom", 0.000001, "USD")
    assert client.get_cost_summary(intent.id).total == limit


@pytest.mark.parametrize(
    ("constraints", "field"),
    [
        ({"max_cost": "cheap"}, "constraints.max_cost"),
        ({"max_cost": -1}, "constraints.max_cost"),
        ({"max_cost": 1e10}, "constraints.max_cost"),
        ({"max_cost": True}, "constraints.max_cost"),
        ({"budget": "low"}, "constraints.budget"),
        ({"budget": [1]}, "constraints.budget"),
        ({"budget": {"max_total": -5}}, "constraints.budget.max_total"),
        ({"budget": {"max_per_call_cents": "x"}}, "constraints.budget.max_per_call_cents"),
        ({"budget": {"max_total": 1, "max_total_cents": 100}}, "constraints.budget"),
        ({"budget": {"unit": "bad unit"}}, "constraints.budget.unit"),
        ({"budget": {"unit": "USD", "max_total_cents": 5}}, "constraints.budget.unit"),
        (
            {"budget": {"alert_threshold_percent": 150}},
            "constraints.budget.alert_threshold_percent",
        ),
        ({"budget": {"alert_threshold_percent": 0}}, "constraints.budget.alert_threshold_percent"),
        (
            {"budget": {"alert_threshold_percent": 87.5}},
            "constraints.budget.alert_threshold_percent",
        ),
        (
            {"budget": {"alert_threshold_percent": "80"}},
            "constraints.budget.alert_threshold_percent",
        ),
        (
            {"budget": {"alert_threshold_percent": {"a": 1}}},
            "constraints.budget.alert_threshold_percent",
        ),
        (
            {"budget": {"alert_threshold_percent": list(range(1, 18))}},
            "constraints.budget.alert_threshold_percent",
        ),
    ],
)
def test_an_unreadable_budget_fails_closed(
    client: Client, raw_redis: redis.Redis, constraints: dict[str, Any], field: str
) -> None:
    intent = client.create_intent("t", constraints=constraints)
    before = _footprint(client, raw_redis, intent.id)
    with pytest.raises(ValidationError) as info:
        client.record_cost(intent.id, "tokens", 1, "tokens")
    assert info.value.field == field
    assert _footprint(client, raw_redis, intent.id) == before


def test_alerts_fire_once_per_threshold(client: Client, other: Client) -> None:
    budget = {"max_total": 10, "alert_threshold_percent": [80, 50, 100, 50]}
    intent = client.create_intent("t", constraints={"budget": budget})

    def alerts() -> list[tuple[int, float]]:
        return [
            (e.payload["threshold_percent"], e.payload["total"])
            for e in client.get_events(intent.id, event_type="budget_alert")
        ]

    client.record_cost(intent.id, "api_call", 4.999999, "USD")
    client.record_cost(intent.id, "tokens", 10**6, "tokens")  # other units never alert
    assert alerts() == []
    other.record_cost(intent.id, "api_call", 0.000001, "USD")  # exactly 50 %
    assert alerts() == [(50, 5)]
    client.record_cost(intent.id, "api_call", 1, "USD")
    assert alerts() == [(50, 5)]
    client.record_cost(intent.id, "api_call", 4, "USD")  # 80 % and 100 % at once
    assert alerts() == [(50, 5), (80, 10), (100, 10)]
    event = client.get_events(intent.id, event_type="budget_alert")[0]
    assert event.actor == "rival"
    assert set(event.payload) == {"threshold_percent", "unit", "limit", "total", "cost_id"}
    assert (event.payload["unit"], event.payload["limit"]) == ("USD", 10)
    client.record_cost(intent.id, "api_call", 0, "USD")
    assert len(alerts()) == 3
    assert client.get_cost_summary(intent.id).alerts_fired == [50, 80, 100]
    types = event_types(client, intent.id)
    assert types.count("cost_recorded") == 6
    # the alert follows the cost that crossed it, in the same script
    at = types.index("budget_alert")
    assert types[at - 1] == "cost_recorded"


def test_alerts_without_a_total_limit_are_ignored(client: Client) -> None:
    intent = client.create_intent("t", constraints={"budget": {"alert_threshold_percent": 10}})
    client.record_cost(intent.id, "api_call", 100, "USD")
    assert "budget_alert" not in event_types(client, intent.id)


@pytest.mark.anyio
async def test_twenty_writers_never_overshoot(aclient: AsyncClient) -> None:
    """Each writer spends until the budget refuses it; the successes are exactly what
    was recorded and never add up to more than the limit."""
    limit = Decimal("10")
    intent = await aclient.create_intent(
        "race", constraints={"budget": {"max_total": 10, "alert_threshold_percent": [50, 90]}}
    )
    writers = [
        AsyncClient(
            redis=aclient.redis, agent_id=f"agent-{n}", namespace=aclient.keyspace.namespace
        )
        for n in range(20)
    ]
    succeeded: dict[str, Decimal] = {}
    refused = 0

    async def spend(n: int, writer: AsyncClient) -> None:
        nonlocal refused
        amount = Decimal("0.13") + Decimal(n) / 100
        while True:
            try:
                cost = await writer.record_cost(intent.id, "api_call", amount, "USD")
            except BudgetExceededError:
                refused += 1
                return
            succeeded[cost.id] = amount

    async with anyio.create_task_group() as tg:
        for n, writer in enumerate(writers):
            tg.start_soon(spend, n, writer)
    spent = sum(succeeded.values(), Decimal(0))
    assert spent <= limit
    assert refused == 20
    assert limit - spent < Decimal("0.13")  # the smallest amount no longer fits
    records = await aclient.get_costs(intent.id, limit=1000)
    assert {c.id: Decimal(c.amount_micros) / 1_000_000 for c in records} == succeeded
    summary = await aclient.get_cost_summary(intent.id)
    assert summary.count == len(succeeded)
    assert summary.total_micros == int(spent * 1_000_000)
    assert summary.alerts_fired == [50, 90]
    alerts = await aclient.get_events(intent.id, event_type="budget_alert")
    assert [e.payload["threshold_percent"] for e in alerts] == [50, 90]


# -- the script's contract --------------------------------------------------------------
def test_record_cost_keeps_its_header_contract() -> None:
    script = default_registry()["record_cost"]
    header = script.header
    call = costs.record_cost_call(Keyspace("k", 4), "a", "c1", "i", "tokens", 1, "t", "p", {})
    assert len(call.keys) == len(header.keys) == 5
    assert len(call.args) == len(header.argv) == 8
    assert not header.variadic_keys
    assert set(header.errors) == {"INVALID", "TOO_LARGE", "NOT_FOUND", "BUDGET_EXCEEDED"}
    assert set(header.errors) <= set(CODES)
    assert set(header.events) == {"cost_recorded", "budget_alert"}
    assert len({k.split("}")[0] for k in call.keys}) == 1  # one hash tag


def test_cost_limits_match() -> None:
    text = (LUA / "includes" / "cost_limits.lua").read_text()
    lua = {m[0]: int(m[1]) for m in re.findall(r"local COST_(\w+) = (\d+)", text)}
    assert lua == {
        "AMOUNT_MAX_MICROS": costs.AMOUNT_MAX_MICROS,
        "TOTAL_MAX_MICROS": costs.TOTAL_MAX_MICROS,
        "METADATA_BYTES": costs.METADATA_BYTES,
        "THRESHOLDS": costs.THRESHOLDS,
    }
    types = re.search(r"local COST_TYPES = \{(.*?)\}", text)
    assert types is not None
    assert set(re.findall(r"(\w+) = true", types.group(1))) == {str(t) for t in costs.CostType}
    assert costs.TOTAL_MAX_MICROS < 2**53


def test_large_limits_are_exact_to_the_micro_unit(client: Client) -> None:
    limit = Decimal("5126934103.096309")
    intent = client.create_intent("t", constraints={"budget": {"max_total": float(limit)}})
    client.record_cost(intent.id, "custom", Decimal("999999999.999999"), "USD")
    rest = limit - Decimal("999999999.999999")
    for _ in range(4):
        step = min(rest, Decimal("999999999"))
        client.record_cost(intent.id, "custom", step, "USD")
        rest -= step
    client.record_cost(intent.id, "custom", rest, "USD")  # exactly at the limit: allowed
    with pytest.raises(BudgetExceededError):
        client.record_cost(intent.id, "custom", Decimal("0.000001"), "USD")
    assert client.get_cost_summary(intent.id).total_micros == int(limit * 10**6)


def test_amounts_ignore_the_callers_decimal_context(client: Client) -> None:
    import decimal

    intent = client.create_intent("t")
    with decimal.localcontext() as ctx:
        ctx.prec = 6
        record = client.record_cost(intent.id, "custom", Decimal("1.234567"), "USD")
    assert record.amount_micros == 1_234_567
