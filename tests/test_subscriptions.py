"""Subscriptions (RFC-0006) through the SDK, sync and async, on every tier: the three
scopes, the secret shown once, listing and its filters, unsubscribe, expiry, and bad
input refused with a typed error that changes nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from oibus import AsyncClient, Client, NotFoundError, PayloadTooLargeError, ValidationError
from oibus.bus import subscriptions as subs
from oibus.bus.errors import AlreadyExistsError
from oibus.bus.keyspace import Keyspace, key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry

LUA = Path(__file__).resolve().parent.parent / "lua"
URL = "https://hooks.example.com/oibus"

# the receivers and URLs here are local: the namespace allows private addresses
pytestmark = pytest.mark.usefixtures("private_webhooks")


def _footprint(client: Client, raw: redis.Redis) -> tuple[Any, ...]:
    """Everything a subscription call could write."""
    ks = client.keyspace
    keys = sorted(raw.scan_iter(f"{{{ks.namespace}}}:subs*"))
    return tuple(
        (k, raw.type(k), raw.hgetall(k) if raw.type(k) == "hash" else raw.smembers(k)) for k in keys
    )


def test_intent_scope(client: Client) -> None:
    intent = client.create_intent("t")
    sub = client.subscribe(
        intent.id,
        subscriber_id="service:dashboard",
        callback_url=URL,
        event_types=["state_patched", "status_changed"],
    )
    assert (sub.intent_id, sub.portfolio_id, sub.subscriber_id) == (
        intent.id,
        None,
        "service:dashboard",
    )
    assert sub.webhook_url == sub.callback_url == URL
    assert sub.event_types == ["state_patched", "status_changed"]
    assert sub.active and sub.expires_at is None and sub.created_by == "tester"
    assert sub.secret is not None and len(sub.secret) >= 32
    (listed,) = client.get_subscriptions(intent.id)
    assert listed.id == sub.id and listed.secret is None  # shown once
    assert listed.created_at == sub.created_at
    assert client.get_subscriptions(client.create_intent("u").id) == []


def test_portfolio_and_global_scopes(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("t")
    by_portfolio = client.subscribe(portfolio_id=portfolio.id, webhook_url=URL)
    everything = client.subscribe(webhook_url=URL, secret="s" * 16)
    on_intent = client.subscribe(intent.id, webhook_url=URL, subscriber_id="other")
    assert by_portfolio.portfolio_id == portfolio.id and by_portfolio.intent_id is None
    assert everything.secret == "s" * 16
    assert everything.subscriber_id == "tester"  # the client's agent by default
    assert [s.id for s in client.get_subscriptions(portfolio_id=portfolio.id)] == [by_portfolio.id]
    assert [s.id for s in client.get_subscriptions()] == [
        by_portfolio.id,
        everything.id,
        on_intent.id,
    ]
    assert [s.id for s in client.get_subscriptions(subscriber_id="other")] == [on_intent.id]
    assert client.get_subscriptions(intent.id, subscriber_id="tester") == []


def test_unsubscribe(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    sub = client.subscribe(intent.id, webhook_url=URL)
    client.unsubscribe(sub.id)
    assert client.get_subscriptions(intent.id) == []
    assert client.get_subscriptions() == []
    assert not raw_redis.exists(client.keyspace.subscription_index(intent.id, None))
    with pytest.raises(NotFoundError) as info:
        client.unsubscribe(sub.id)
    assert info.value.resource == "subscription"


def test_expired_subscriptions_are_not_listed(client: Client, raw_redis: redis.Redis) -> None:
    sub = client.subscribe(webhook_url=URL, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert sub.expires_at is not None and sub.active
    # an expiry that has passed (written as the script would, since it refuses the past)
    ks = client.keyspace
    text = raw_redis.hget(ks.subscriptions, sub.id)
    assert text is not None
    past = re.sub(r'"expires_at":\d+', '"expires_at":1000000', text)
    raw_redis.hset(ks.subscriptions, sub.id, past)
    assert client.get_subscriptions() == []
    client.unsubscribe(sub.id)  # still removable


def test_unknown_scope_is_not_found(client: Client, raw_redis: redis.Redis) -> None:
    before = _footprint(client, raw_redis)
    with pytest.raises(NotFoundError) as info:
        client.subscribe("nope", webhook_url=URL)
    assert (info.value.resource, info.value.id) == ("intent", "nope")
    with pytest.raises(NotFoundError) as info:
        client.subscribe(portfolio_id="nope", webhook_url=URL)
    assert info.value.resource == "portfolio"
    assert _footprint(client, raw_redis) == before


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"webhook_url": "ftp://x.example/h"}, "webhook_url"),
        ({"webhook_url": "http:///nohost"}, "webhook_url"),
        ({"webhook_url": "https://x.example/a b"}, "webhook_url"),
        ({"webhook_url": "https://x.example:99999/"}, "webhook_url"),
        ({"webhook_url": "https://x.example/" + "a" * 2048}, "webhook_url"),
        ({"webhook_url": None}, "webhook_url"),
        ({"webhook_url": URL, "callback_url": URL + "/other"}, "callback_url"),
        ({"webhook_url": URL, "event_types": "status_changed"}, "event_types"),
        ({"webhook_url": URL, "event_types": []}, "event_types"),
        ({"webhook_url": URL, "event_types": ["a", "a"]}, "event_types"),
        ({"webhook_url": URL, "event_types": ["x" * 65]}, "event_types"),
        ({"webhook_url": URL, "event_types": [f"t{n}" for n in range(65)]}, "event_types"),
        ({"webhook_url": URL, "expires_at": datetime(2001, 1, 1, tzinfo=UTC)}, "expires_at"),
        ({"webhook_url": URL, "expires_at": datetime(2999, 1, 1)}, "expires_at"),  # naive
        ({"webhook_url": URL, "secret": "short"}, "secret"),
        ({"webhook_url": URL, "subscriber_id": ""}, "subscriber_id"),
        ({"webhook_url": URL, "intent_id": "a", "portfolio_id": "b"}, "portfolio_id"),
        ({"webhook_url": URL, "intent_id": "{bad}"}, "intent_id"),
    ],
)
def test_bad_input_changes_nothing(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], field: str
) -> None:
    before = _footprint(client, raw_redis)
    with pytest.raises(ValidationError) as info:
        client.subscribe(**kwargs)
    assert info.value.field == field
    assert _footprint(client, raw_redis) == before


def _with(call: Call, **fields: Any) -> str:
    """The call's record text with some fields replaced."""
    return json.dumps({**json.loads(call.args[5]), **fields}, separators=(",", ":"))


def test_the_script_checks_again(client: Client, raw_redis: redis.Redis) -> None:
    """Calls built around the SDK's checks are refused by the script itself."""
    ks = client.keyspace
    good = subs.create_subscription_call(
        ks, "tester", "s1", intent_id=None, portfolio_id=None, subscriber_id="a",
        webhook_url=URL, event_types=None, expires_at=None, secret=None,
    )  # fmt: skip
    before = _footprint(client, raw_redis)
    bad_calls = [
        Call(good.script, good.keys, [good.args[0], "g", "", "ftp://x/y", *good.args[4:]]),
        Call(good.script, good.keys, [*good.args[:4], "1000", good.args[5]]),  # past
        Call(good.script, [good.keys[0], ks.subscription_index("i", None)], good.args),
        Call(good.script, good.keys, [*good.args[:5], good.args[5].replace('"s1"', '"s2"')]),
        Call(good.script, good.keys, [*good.args[:5], "[]"]),
        Call(good.script, good.keys, [*good.args[:5], _with(good, event_types=[])]),
        Call(good.script, good.keys, [*good.args[:5], _with(good, event_types=["a", "a"])]),
        Call(good.script, good.keys, [*good.args[:5], _with(good, event_types={"a": 1})]),
        Call(good.script, good.keys, [*good.args[:5], _with(good, subscriber_id=7)]),
        Call(good.script, good.keys, [*good.args[:5], _with(good, secret="short")]),
    ]
    for call in bad_calls:
        with pytest.raises(ValidationError):
            client._run(call)
    assert _footprint(client, raw_redis) == before
    client._run(good)
    with pytest.raises(AlreadyExistsError):
        client._run(good)


def test_calls_match_the_script_headers() -> None:
    ks = Keyspace("k", 4)
    record = subs.decode_record(_call(ks).args[5].replace("{", '{"created_at":1,', 1), "s1")
    for call in (_call(ks), subs.remove_subscription_call(ks, record, only_expired=True)):
        header = default_registry()[call.script].header
        assert (len(call.keys), len(call.args)) == (len(header.keys), len(header.argv))
        assert len({key_slot(k) for k in call.keys}) == 1


def _call(ks: Keyspace) -> Call:
    return subs.create_subscription_call(
        ks, "tester", "s1", intent_id="i", portfolio_id=None, subscriber_id="a",
        webhook_url=URL, event_types=["comment"], expires_at=None, secret=None,
    )  # fmt: skip


def test_scope_limit(client: Client, raw_redis: redis.Redis, backend: str) -> None:
    if backend != "fake":
        pytest.skip("a thousand subscriptions: once is enough")
    intent = client.create_intent("t")
    pipe = raw_redis.pipeline()
    for n in range(subs.PER_SCOPE):
        pipe.sadd(client.keyspace.subscription_index(intent.id, None), f"x{n}")
    pipe.execute()
    before = _footprint(client, raw_redis)
    with pytest.raises(PayloadTooLargeError):
        client.subscribe(intent.id, webhook_url=URL)
    assert _footprint(client, raw_redis) == before


def test_limits_match_the_scripts() -> None:
    text = (LUA / "includes" / "subscriptions.lua").read_text()
    lua = {m[0]: int(m[1]) for m in re.findall(r"local SUBS_(\w+) = (\d+)", text)}
    assert lua == {
        "MAX": subs.SUBSCRIPTIONS,
        "PER_SCOPE": subs.PER_SCOPE,
        "URL_BYTES": subs.URL_BYTES,
    }


@pytest.mark.anyio
async def test_async_client(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    sub = await aclient.subscribe(intent.id, webhook_url=URL, event_types=["comment"])
    assert sub.secret
    assert [s.id for s in await aclient.get_subscriptions(intent.id)] == [sub.id]
    with pytest.raises(ValidationError):
        await aclient.subscribe(intent.id, webhook_url="mailto:x@example.com")
    await aclient.unsubscribe(sub.id)
    assert await aclient.get_subscriptions() == []
    with pytest.raises(NotFoundError):
        await aclient.unsubscribe(sub.id)


def test_unsubscribe_in_the_seed_form(client: Client) -> None:
    """``client.unsubscribe(intent.id, subscription.id)``, as the seed README writes it."""
    intent = client.create_intent("watched")
    other = client.create_intent("elsewhere")
    sub = client.subscribe(intent.id, webhook_url="https://example.com/hook")
    with pytest.raises(NotFoundError):
        client.unsubscribe(other.id, sub.id)  # not that intent's subscription
    assert [s.id for s in client.get_subscriptions(intent_id=intent.id)] == [sub.id]
    client.unsubscribe(intent.id, sub.id)
    assert client.get_subscriptions(intent_id=intent.id) == []
