"""Portfolios (RFC-0007) and webhook subscriptions (RFC-0006) over the HTTP server with
the real reference SDK (``openintent`` 0.17.0), sync and async, over real sockets, on the
embedded engine and the cluster tier. Several of these calls fail against the reference
server itself (``add_intent_to_portfolio`` crashes on its answer, ``create_portfolio``
without a description is a 422 there, the subscription routes are 404): here each
result is asserted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gateway_server import LiveGateway
from openintent import AsyncOpenIntentClient, OpenIntentClient
from openintent.exceptions import NotFoundError, OpenIntentError, ValidationError
from openintent.models import IntentStatus, MembershipRole, PortfolioStatus

pytestmark = pytest.mark.real

HOOK = "https://93.184.216.34/hook"
"""A public address literal: the address policy passes it without a DNS lookup."""


def counted(by_status: dict[str, int]) -> dict[str, int]:
    """The statuses with members (the aggregate lists every status, zeros too)."""
    return {status: n for status, n in by_status.items() if n}


def test_create_portfolio_with_and_without_a_description(
    sdk: Callable[..., OpenIntentClient],
) -> None:
    c = sdk("planner")
    plain = c.create_portfolio("Q4")  # the SDK sends description: null (a 422 there)
    assert (plain.name, plain.description, plain.status) == ("Q4", None, PortfolioStatus.ACTIVE)
    assert plain.created_by == "planner"  # the acting agent, from X-Agent-ID
    assert plain.created_at is not None  # the SDK reads only createdAt
    full = c.create_portfolio(
        "Launch",
        description="all of it",
        governance_policy={"require_all_completed": True},
        metadata={"team": "core"},
    )
    got = c.get_portfolio(full.id)
    assert (got.name, got.description) == ("Launch", "all of it")
    assert got.metadata == {"team": "core"}  # the reference server drops it
    assert got.governance_policy["require_all_completed"] is True
    assert got.intents == [] and got.aggregate_status is not None
    assert got.aggregate_status.total == 0
    mine = [p.id for p in c.list_portfolios(created_by="planner")]
    assert full.id in mine and plain.id in mine
    assert c.list_portfolios(created_by="nobody-made-these") == []


def test_members_aggregate_and_status(sdk: Callable[..., OpenIntentClient]) -> None:
    c = sdk("planner")
    portfolio = c.create_portfolio("P", description="d")
    first = c.create_intent(title="first")
    second = c.create_intent(title="second")
    membership = c.add_intent_to_portfolio(portfolio.id, first.id, MembershipRole.PRIMARY, 5)
    assert membership.id  # the reference server's answer has none: KeyError there
    assert (membership.portfolio_id, membership.intent_id) == (portfolio.id, first.id)
    assert (membership.role, membership.priority) == (MembershipRole.PRIMARY, 5)
    c.add_intent_to_portfolio(portfolio.id, second.id)
    c.set_status(first.id, first.version, IntentStatus.COMPLETED)

    got = c.get_portfolio(portfolio.id)
    assert [i.id for i in got.intents] == [first.id, second.id]  # highest priority first
    assert got.intents[0].status == IntentStatus.COMPLETED
    assert got.aggregate_status is not None
    assert got.aggregate_status.total == 2
    assert counted(got.aggregate_status.by_status) == {"completed": 1, "active": 1}
    assert got.aggregate_status.completion_percentage == 50

    intents, aggregate = c.get_portfolio_intents(portfolio.id)
    assert sorted(i.title for i in intents) == ["first", "second"]
    assert (aggregate.total, counted(aggregate.by_status)) == (2, {"completed": 1, "active": 1})
    assert [p.id for p in c.get_intent_portfolios(second.id)] == [portfolio.id]

    c.remove_intent_from_portfolio(portfolio.id, second.id)
    intents, aggregate = c.get_portfolio_intents(portfolio.id)
    assert [i.id for i in intents] == [first.id]
    assert (aggregate.total, aggregate.completion_percentage) == (1, 100)
    assert c.get_intent_portfolios(second.id) == []
    with pytest.raises(NotFoundError):
        c.remove_intent_from_portfolio(portfolio.id, second.id)

    done = c.update_portfolio_status(portfolio.id, PortfolioStatus.COMPLETED)
    assert done.status == PortfolioStatus.COMPLETED
    with pytest.raises(OpenIntentError):  # a closed portfolio takes no members (409)
        c.add_intent_to_portfolio(portfolio.id, second.id)
    with pytest.raises(NotFoundError):
        c.get_portfolio("no-such-portfolio")


def test_listing_pages_by_cursor_and_status(gateway: LiveGateway) -> None:
    headers = {"X-API-Key": gateway.keys["agent"]}
    url = f"{gateway.url}/api/v1/portfolios"
    made = [
        httpx.post(url, json={"name": f"page-{n}"}, headers=headers).json()["id"] for n in range(3)
    ]
    httpx.patch(f"{url}/{made[0]}/status", json={"status": "abandoned"}, headers=headers)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", "created_by": "ada", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(url, params=params, headers=headers).json()
        assert len(page["portfolios"]) <= 2
        seen += [p["id"] for p in page["portfolios"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in made] == made[::-1]  # newest first, each once
    abandoned = httpx.get(url, params={"status": "abandoned"}, headers=headers).json()
    assert made[0] in [p["id"] for p in abandoned["portfolios"]]
    assert made[1] not in [p["id"] for p in abandoned["portfolios"]]
    reader = {"X-API-Key": gateway.keys["reader"]}
    assert httpx.post(url, json={"name": "x"}, headers=reader).status_code == 403
    assert httpx.post(url, json={"name": ""}, headers=headers).status_code == 400


@pytest.mark.anyio
async def test_the_async_sdk_portfolios(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        portfolio = await c.create_portfolio("async")
        intent = await c.create_intent("member", "d")
        membership = await c.add_intent_to_portfolio(portfolio.id, intent.id, priority=2)
        assert (membership.intent_id, membership.priority) == (intent.id, 2)
        intents, aggregate = await c.get_portfolio_intents(portfolio.id)
        assert [i.id for i in intents] == [intent.id]
        assert (aggregate.total, counted(aggregate.by_status)) == (1, {"active": 1})
        got = await c.get_portfolio(portfolio.id)
        assert got.created_by == "ada" and [i.id for i in got.intents] == [intent.id]


def test_subscribe_list_unsubscribe(sdk: Callable[..., OpenIntentClient]) -> None:
    c = sdk("planner")
    intent = c.create_intent(title="watched")
    until = datetime.now(UTC) + timedelta(hours=2)
    sub = c.subscribe(
        intent_id=intent.id, event_types=["status_changed"], webhook_url=HOOK, expires_at=until
    )
    assert sub.id and sub.intent_id == intent.id and sub.active
    assert (sub.subscriber_id, sub.webhook_url, sub.event_types) == (
        "planner",
        HOOK,
        ["status_changed"],
    )
    assert sub.expires_at is not None and abs((sub.expires_at - until).total_seconds()) < 1
    every = c.subscribe(intent_id=intent.id, webhook_url=HOOK)  # event_types [] means all
    assert every.event_types == [] and every.expires_at is None
    listed = c.get_subscriptions(intent_id=intent.id)
    assert sorted(s.id for s in listed) == sorted([sub.id, every.id])
    c.unsubscribe(sub.id)
    assert [s.id for s in c.get_subscriptions(intent_id=intent.id)] == [every.id]
    with pytest.raises(NotFoundError):
        c.unsubscribe(sub.id)
    with pytest.raises(NotFoundError):
        c.subscribe(intent_id="no-such-intent", webhook_url=HOOK)


def test_subscription_refusals(gateway: LiveGateway, sdk: Callable[..., OpenIntentClient]) -> None:
    """A private address under the namespace's public-only policy is a 400 (not a dead
    letter at every delivery); a reader may list but not subscribe; an agent key
    subscribes only as itself; nothing was stored by a refused request."""
    c = sdk("planner")
    intent = c.create_intent(title="guarded")
    with pytest.raises(ValidationError):
        c.subscribe(intent_id=intent.id, webhook_url="http://127.0.0.1:9/hook")
    url = f"{gateway.url}/api/v1/subscriptions"
    body = {"intent_id": intent.id, "webhook_url": HOOK}
    reader = {"X-API-Key": gateway.keys["reader"]}
    assert httpx.post(url, json=body, headers=reader).status_code == 403
    agent = {"X-API-Key": gateway.keys["agent"]}
    spoof = httpx.post(url, json={**body, "subscriber_id": "boss"}, headers=agent)
    assert spoof.status_code == 403
    assert httpx.post(url, json={**body, "expires_at": "soon"}, headers=agent).status_code == 400
    listed = httpx.get(url, params={"intent_id": intent.id}, headers=reader)
    assert listed.status_code == 200 and listed.json() == {"subscriptions": []}


@pytest.mark.anyio
async def test_the_async_sdk_subscribes_with_a_naive_expiry(gateway: LiveGateway) -> None:
    """The async SDK sends ``datetime.now() + 24h`` without an offset: taken as UTC."""
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        portfolio = await c.create_portfolio("watched", "d")
        sub = await c.subscribe(HOOK, ["intent_created"], portfolio_id=portfolio.id)
        assert (sub.portfolio_id, sub.subscriber_id) == (portfolio.id, "ada")
        expected = datetime.now().replace(tzinfo=UTC) + timedelta(hours=24)
        assert sub.expires_at is not None
        assert abs((sub.expires_at - expected).total_seconds()) < 60
        assert [s.id for s in await c.get_subscriptions(portfolio_id=portfolio.id)] == [sub.id]
        await c.unsubscribe(sub.id)
        assert await c.get_subscriptions(portfolio_id=portfolio.id) == []
