"""Leases over HTTP (RFC-0003) with the real reference SDK (``openintent`` 0.17.0), sync
and async, over real sockets, on the embedded engine and the cluster tier: acquire, the
conflict the SDK types as LeaseConflictError, list (the call that crashed on the
reference's own server), renew, release (twice: idempotent, one event), and the refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from gateway_server import LiveGateway, headers
from openintent import AsyncOpenIntentClient, OpenIntentClient
from openintent.exceptions import ConflictError, LeaseConflictError, ValidationError
from openintent.models import EventType, LeaseStatus

pytestmark = pytest.mark.real


def test_acquire_list_renew_release(sdk: Callable[..., OpenIntentClient]) -> None:
    c = sdk()
    intent = c.create_intent(title="leased")
    before = datetime.now(UTC)
    lease = c.acquire_lease(intent.id, "research", duration_seconds=60)
    assert (lease.intent_id, lease.agent_id, lease.scope) == (intent.id, "researcher", "research")
    assert lease.status == LeaseStatus.ACTIVE
    assert lease.expires_at.tzinfo is not None
    assert before + timedelta(seconds=55) < lease.expires_at < before + timedelta(seconds=65)

    listed = c.get_leases(intent.id)
    assert [(x.id, x.scope, x.agent_id, x.status) for x in listed] == [
        (lease.id, "research", "researcher", LeaseStatus.ACTIVE)
    ]

    renewed = c.renew_lease(intent.id, lease.id, duration_seconds=600)
    assert renewed.id == lease.id
    assert renewed.expires_at > lease.expires_at + timedelta(seconds=500)

    c.release_lease(intent.id, lease.id)
    assert c.get_leases(intent.id) == []  # active only, by default
    c.release_lease(intent.id, lease.id)  # again: 200, nothing changes
    released = [e for e in c.get_events(intent.id) if e.event_type == EventType.LEASE_RELEASED]
    assert len(released) == 1

    again = c.acquire_lease(intent.id, "research")  # the scope is free again
    assert again.id != lease.id and again.status == LeaseStatus.ACTIVE


def test_the_context_manager_and_a_conflict_between_agents(
    sdk: Callable[..., OpenIntentClient],
) -> None:
    ada, bob = sdk("ada"), sdk("bob")
    intent = ada.create_intent(title="shared")
    with ada.lease(intent.id, "draft", 30) as held:
        with pytest.raises(LeaseConflictError) as caught:
            bob.acquire_lease(intent.id, "draft")
        assert caught.value.existing_lease is not None
        assert caught.value.existing_lease["holder"] == "ada"
        assert caught.value.existing_lease["scope"] == "draft"
        with pytest.raises(LeaseConflictError):
            bob.release_lease(intent.id, held.id)  # only the holder releases
        with pytest.raises(LeaseConflictError):
            bob.renew_lease(intent.id, held.id, 60)
        assert bob.acquire_lease(intent.id, "other").agent_id == "bob"  # scopes are apart
    assert sorted(x.scope for x in ada.get_leases(intent.id)) == ["other"]
    assert bob.acquire_lease(intent.id, "draft").agent_id == "bob"


def test_history_listing(sdk: Callable[..., OpenIntentClient], gateway: LiveGateway) -> None:
    c = sdk()
    intent = c.create_intent(title="history")
    first = c.acquire_lease(intent.id, "a")
    c.release_lease(intent.id, first.id)
    second = c.acquire_lease(intent.id, "a")
    url = f"{gateway.url}/api/v1/intents/{intent.id}/leases"
    for query in ({"status": "all"}, {"status": "history"}, {"include_history": "true"}):
        answer = httpx.get(url, params=query, headers=headers(gateway, "reader"))
        assert answer.status_code == 200, answer.text
        got = [(x["id"], x["status"]) for x in answer.json()["leases"]]
        assert got == [(first.id, "released"), (second.id, "active")], query
        released = answer.json()["leases"][0]
        assert released["released_at"] is not None and released["fencing_token"] == 1
    active = httpx.get(url, params={"status": "active"}, headers=headers(gateway, "reader"))
    assert [x["id"] for x in active.json()["leases"]] == [second.id]
    paged = httpx.get(url, params={"status": "all", "limit": 1}, headers=headers(gateway))
    assert [x["id"] for x in paged.json()["leases"]] == [first.id]
    cursor = paged.json()["next_cursor"]
    assert cursor
    rest = httpx.get(url, params={"status": "all", "cursor": cursor}, headers=headers(gateway))
    assert [x["id"] for x in rest.json()["leases"]] == [second.id]


@pytest.mark.anyio
async def test_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async leases", "d")
        lease = await c.acquire_lease(intent.id, "s", 45)
        assert (lease.agent_id, lease.scope, lease.status) == ("ada", "s", LeaseStatus.ACTIVE)
        assert [x.id for x in await c.get_leases(intent.id)] == [lease.id]
        renewed = await c.renew_lease(intent.id, lease.id, 900)
        assert renewed.expires_at > lease.expires_at + timedelta(seconds=800)
        with pytest.raises(LeaseConflictError):
            await c.acquire_lease(intent.id, "s")  # the same agent twice: still a conflict
        await c.release_lease(intent.id, lease.id)
        assert await c.get_leases(intent.id) == []


def test_a_lease_conflict_body_says_lease_and_a_version_conflict_does_not(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="bodies")
    c.acquire_lease(intent.id, "x")
    url = f"{gateway.url}/api/v1/intents/{intent.id}/leases"
    refused = httpx.post(url, json={"scope": "x"}, headers=headers(gateway, agent="other"))
    assert refused.status_code == 409
    assert "lease" in refused.text.lower()
    assert refused.json()["code"] == "LEASE_CONFLICT"
    assert refused.json()["existing_lease"]["holder"] == "researcher"
    stale = httpx.post(
        f"{gateway.url}/api/v1/intents/{intent.id}/state",
        json={"patches": [{"op": "set", "path": "k", "value": 1}]},
        headers={**headers(gateway), "If-Match": "7"},
    )
    assert stale.status_code == 409 and "lease" not in stale.text.lower()
    with pytest.raises(ConflictError):
        c.update_state(intent.id, 7, {"k": 1})


def test_refusals(sdk: Callable[..., OpenIntentClient], gateway: LiveGateway) -> None:
    c = sdk()
    intent = c.create_intent(title="refusals")
    lease = c.acquire_lease(intent.id, "held")
    base = f"{gateway.url}/api/v1/intents/{intent.id}/leases"
    reader = headers(gateway, "reader")
    for method, url, body in [
        ("POST", base, {"scope": "r"}),
        ("PATCH", f"{base}/{lease.id}", {"duration_seconds": 60}),
        ("DELETE", f"{base}/{lease.id}", None),
    ]:
        answer = httpx.request(method, url, json=body, headers=reader)
        assert answer.status_code == 403, (method, answer.text)
    assert httpx.get(base, headers=reader).status_code == 200
    assert [x.id for x in c.get_leases(intent.id)] == [lease.id]  # still held

    writer = headers(gateway)
    for method, url, body, field in [
        ("POST", base, {}, "scope"),
        ("POST", base, {"scope": "s", "duration_seconds": "long"}, "duration_seconds"),
        ("POST", base, {"scope": "s", "duration_seconds": 10**9}, "duration_seconds"),
        ("POST", base, {"scope": ["s"]}, "scope"),
        ("PATCH", f"{base}/{lease.id}", {"duration_seconds": -1}, "duration_seconds"),
        ("DELETE", f"{base}/bad%20id", None, "lease_id"),
        ("GET", f"{base}?status=bogus", None, "status"),
        ("GET", f"{base}?include_history=maybe", None, "include_history"),
        ("GET", f"{base}?status=all&cursor=nope", None, "cursor"),
    ]:
        answer = httpx.request(method, url, json=body, headers=writer)
        assert answer.status_code == 400, (method, url, body, answer.text)
        assert answer.json()["message"]
        assert answer.json()["errors"][0]["field"] == field, answer.json()
    with pytest.raises(ValidationError):
        c.acquire_lease(intent.id, "", 60)
    missing = httpx.patch(f"{base}/no-such-lease", json={}, headers=writer)
    assert missing.status_code == 404 and missing.json()["message"]
