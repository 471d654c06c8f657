"""Governance, attachments, costs, retry policies and failures over HTTP (RFC-0003/0004,
0005, 0009, 0010) with the real reference SDK (``openintent`` 0.17.0), sync and async,
over real sockets, on the embedded engine and the cluster tier. Each call's result is
asserted, including the calls that fail against the reference's own server
(request_arbitration, record_decision, get_decisions, and the async add_attachment,
record_cost and record_failure)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime

import httpx
import pytest
from gateway_server import LiveGateway, headers
from openintent import AsyncOpenIntentClient, OpenIntentClient
from openintent.exceptions import (
    ConflictError,
    NotFoundError,
    ValidationError,
)
from openintent.models import EventType, RetryStrategy

pytestmark = pytest.mark.real


# -- governance -----------------------------------------------------------------------------
def test_arbitration_and_decisions(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="governed")
    asked = c.request_arbitration(intent.id, "two plans disagree", context={"plans": ["a", "b"]})
    assert (asked.intent_id, asked.requester_id, asked.reason) == (
        intent.id,
        "researcher",
        "two plans disagree",
    )
    assert (asked.status, asked.context) == ("pending", {"plans": ["a", "b"]})
    assert isinstance(asked.created_at, datetime) and asked.created_at.tzinfo is not None

    base = f"{gateway.url}/api/v1/intents/{intent.id}"
    listed = httpx.get(f"{base}/arbitrations", headers=headers(gateway, "reader")).json()
    assert [(a["id"], a["status"]) for a in listed["arbitrations"]] == [(asked.id, "pending")]
    resolved = httpx.post(
        f"{base}/arbitrations/{asked.id}/resolve",
        json={"resolution": "plan a", "rationale": "cheaper"},
        headers=headers(gateway, agent="judge"),
    )
    assert resolved.status_code == 200, resolved.text
    got = resolved.json()
    assert (got["status"], got["resolution"], got["rationale"], got["resolved_by"]) == (
        "resolved",
        "plan a",
        "cheaper",
        "judge",
    )
    twice = httpx.post(
        f"{base}/arbitrations/{asked.id}/resolve",
        json={"resolution": "plan b"},
        headers=headers(gateway, agent="judge"),
    )
    assert twice.status_code == 409 and "lease" not in twice.text.lower()
    pending = httpx.get(
        f"{base}/arbitrations", params={"status": "pending"}, headers=headers(gateway)
    )
    assert pending.json()["arbitrations"] == []

    first = c.record_decision(intent.id, "arbitration", "plan a", "the judge chose it")
    assert (first.intent_id, first.decision_maker_id, first.decision_type) == (
        intent.id,
        "researcher",
        "arbitration",
    )
    assert (first.outcome, first.reasoning) == ("plan a", "the judge chose it")
    second = c.record_decision(intent.id, "escalation", "none", "settled")
    decisions = c.get_decisions(intent.id)
    assert [(d.id, d.outcome) for d in decisions] == [(first.id, "plan a"), (second.id, "none")]
    types = [e.event_type for e in c.get_events(intent.id)]
    assert types.count(EventType.ARBITRATION_REQUESTED) == 1
    assert types.count(EventType.DECISION_RECORDED) == 3  # the resolution, then two records

    page = httpx.get(f"{base}/decisions", params={"limit": 1}, headers=headers(gateway)).json()
    assert [d["id"] for d in page["decisions"]] == [first.id] and page["next_cursor"]
    rest = httpx.get(
        f"{base}/decisions", params={"cursor": page["next_cursor"]}, headers=headers(gateway)
    ).json()
    assert [d["id"] for d in rest["decisions"]] == [second.id]


def test_the_requester_and_decider_are_the_actor_never_a_body_field(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    intent = sdk().create_intent(title="who")
    base = f"{gateway.url}/api/v1/intents/{intent.id}"
    asked = httpx.post(
        f"{base}/arbitrate",
        json={"reason": "r", "requested_by": "mallory", "options": [{"label": "x"}]},
        headers=headers(gateway, "agent"),
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["requester_id"] == "ada" and asked.json()["options"] == [{"label": "x"}]
    decided = httpx.post(
        f"{base}/decisions",
        json={"decided_by": "mallory", "outcome": "go", "rationale": "server's spelling"},
        headers=headers(gateway, "agent"),
    )
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["decision_maker_id"], body["decided_by"]) == ("ada", "ada")
    assert (body["outcome"], body["reasoning"]) == ("go", "server's spelling")


@pytest.mark.anyio
async def test_governance_with_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async governance", "d")
        asked = await c.request_arbitration(intent.id, "stuck")
        assert (asked.requester_id, asked.status, asked.context) == ("ada", "pending", {})
        made = await c.record_decision(intent.id, "plan_created", "yes", "because")
        assert (made.decision_maker_id, made.outcome, made.reasoning) == ("ada", "yes", "because")
        assert [d.id for d in await c.get_decisions(intent.id)] == [made.id]


# -- attachments ----------------------------------------------------------------------------
def test_attachments_sync_async_and_inline(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="files")
    sync_made = c.add_attachment(
        intent.id, "report.pdf", "application/pdf", 2048, "s3://bucket/report.pdf", {"pages": 3}
    )
    assert (sync_made.filename, sync_made.mime_type, sync_made.size) == (
        "report.pdf",
        "application/pdf",
        2048,
    )
    assert (sync_made.storage_url, sync_made.metadata) == ("s3://bucket/report.pdf", {"pages": 3})
    assert sync_made.uploaded_by == "researcher" and sync_made.created_at is not None

    inline = httpx.post(
        f"{gateway.url}/api/v1/intents/{intent.id}/attachments",
        json={
            "filename": "note.txt",
            "content_type": "text/plain",
            "content_base64": base64.b64encode(b"hello").decode(),
            "description": "the seed's form",
        },
        headers=headers(gateway, agent="seeder"),
    )
    assert inline.status_code == 200, inline.text
    got = inline.json()
    assert (got["size"], got["mime_type"], got["storage_url"]) == (5, "text/plain", None)
    assert (got["description"], got["uploaded_by"]) == ("the seed's form", "seeder")

    listed = c.get_attachments(intent.id)
    assert [a.filename for a in listed] == ["report.pdf", "note.txt"]
    c.delete_attachment(intent.id, sync_made.id)
    assert [a.filename for a in c.get_attachments(intent.id)] == ["note.txt"]
    with pytest.raises(NotFoundError):
        c.delete_attachment(intent.id, sync_made.id)


@pytest.mark.anyio
async def test_attachments_with_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async files", "d")
        made = await c.add_attachment(intent.id, "img.png", "image/png", "https://x/img.png", 99)
        assert (made.mime_type, made.storage_url, made.size) == (
            "image/png",
            "https://x/img.png",
            99,
        )
        assert made.uploaded_by == "ada"
        assert [a.id for a in await c.get_attachments(intent.id)] == [made.id]
        await c.delete_attachment(intent.id, made.id)
        assert await c.get_attachments(intent.id) == []


# -- costs ----------------------------------------------------------------------------------
def test_costs_and_the_summary(sdk: Callable[..., OpenIntentClient], gateway: LiveGateway) -> None:
    ada, bob = sdk("ada"), sdk("bob")
    intent = ada.create_intent(title="spend")
    first = ada.record_cost(intent.id, "tokens", 1500, "tokens", "openai", {"model": "gpt"})
    assert (first.agent_id, first.cost_type, first.amount, first.unit) == (
        "ada",
        "tokens",
        1500,
        "tokens",
    )
    assert (first.provider, first.metadata) == ("openai", {"model": "gpt"})
    assert first.recorded_at is not None
    bob.record_cost(intent.id, "tokens", 500, "tokens")
    raw = httpx.post(
        f"{gateway.url}/api/v1/intents/{intent.id}/costs",
        json={
            "agent_id": "mallory",
            "cost_type": "compute",
            "amount": 2.5,
            "unit": "seconds",
            "cost_metadata": {"gpu": "a100"},
        },
        headers=headers(gateway, agent="bob"),
    )
    assert raw.status_code == 200, raw.text
    assert (raw.json()["agent_id"], raw.json()["metadata"]) == ("bob", {"gpu": "a100"})

    costs, summary = ada.get_costs(intent.id)
    assert [x.amount for x in costs] == [1500, 500, 2.5]
    assert summary.total == 2002.5
    assert summary.by_type == {"tokens": 2000, "compute": 2.5}
    assert summary.by_agent == {"ada": 1500, "bob": 502.5}

    page = httpx.get(
        f"{gateway.url}/api/v1/intents/{intent.id}/costs",
        params={"limit": 2},
        headers=headers(gateway, "reader"),
    ).json()
    assert len(page["costs"]) == 2 and page["next_cursor"]
    assert page["summary"]["count"] == 3  # the whole intent's totals on every page


@pytest.mark.anyio
async def test_costs_with_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async spend", "d")
        made = await c.record_cost(intent.id, "api_call", 0.25, "usd", metadata={"n": 1})
        assert (made.agent_id, made.amount, made.unit, made.metadata) == (
            "ada",
            0.25,
            "usd",
            {"n": 1},
        )
        costs, summary = await c.get_costs(intent.id)
        assert [x.id for x in costs] == [made.id]
        assert (summary.total, summary.by_agent) == (0.25, {"ada": 0.25})


# -- retry policy and failures --------------------------------------------------------------
def test_retry_policy_and_failures(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="flaky")
    assert c.get_retry_policy(intent.id) is None
    policy = c.set_retry_policy(
        intent.id,
        RetryStrategy.LINEAR,
        max_retries=2,
        base_delay_ms=500,
        max_delay_ms=5000,
        fallback_agent_id="backup",
        failure_threshold=4,
    )
    assert (policy.intent_id, policy.strategy, policy.max_retries) == (
        intent.id,
        RetryStrategy.LINEAR,
        2,
    )
    assert (policy.base_delay_ms, policy.max_delay_ms) == (500, 5000)
    assert (policy.fallback_agent_id, policy.failure_threshold) == ("backup", 4)
    assert policy.created_at is not None
    got = c.get_retry_policy(intent.id)
    assert got is not None
    assert (got.strategy, got.fallback_agent_id, got.failure_threshold) == (
        RetryStrategy.LINEAR,
        "backup",
        4,
    )

    first = c.record_failure(intent.id, 1, "TIMEOUT", "took too long", metadata={"s": 30})
    assert (first.agent_id, first.attempt_number, first.error_code) == ("researcher", 1, "TIMEOUT")
    assert (first.error_message, first.metadata) == ("took too long", {"s": 30})
    assert first.retry_scheduled_at is not None  # the policy scheduled it
    assert first.created_at is not None
    with pytest.raises(ConflictError):  # attempt 1 again: not the next one
        c.record_failure(intent.id, 1, "TIMEOUT")
    unrecoverable = httpx.post(
        f"{gateway.url}/api/v1/intents/{intent.id}/failures",
        json={"error_type": "AUTH", "error_message": "denied", "recoverable": False},
        headers=headers(gateway, agent="researcher"),
    )
    assert unrecoverable.status_code == 200, unrecoverable.text
    assert unrecoverable.json()["attempt_number"] == 2
    assert unrecoverable.json()["retry_scheduled_at"] is None  # declined

    failures = c.get_failures(intent.id)
    assert [(f.attempt_number, f.error_code) for f in failures] == [(1, "TIMEOUT"), (2, "AUTH")]

    replaced = httpx.put(
        f"{gateway.url}/api/v1/intents/{intent.id}/retry-policy",
        json={"strategy": "fixed", "fallback_agent_id": None},
        headers=headers(gateway),
    ).json()
    assert (replaced["strategy"], replaced["fallback_agent_id"]) == ("fixed", None)


@pytest.mark.anyio
async def test_retries_with_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async flaky", "d")
        assert await c.get_retry_policy(intent.id) is None
        policy = await c.set_retry_policy(
            intent.id, RetryStrategy.FIXED, max_retries=1, fallback_agent_id="spare"
        )
        assert (policy.strategy, policy.max_delay_ms, policy.fallback_agent_id) == (
            RetryStrategy.FIXED,
            30000,
            "spare",
        )
        failed = await c.record_failure(intent.id, "RATE_LIMIT", "slow down", metadata={"q": 1})
        assert (failed.agent_id, failed.attempt_number, failed.error_code) == (
            "ada",
            1,
            "RATE_LIMIT",
        )
        assert failed.retry_scheduled_at is not None
        declined = await c.record_failure(intent.id, "FATAL", "no", recoverable=False)
        assert (declined.attempt_number, declined.retry_scheduled_at) == (2, None)
        assert [f.error_code for f in await c.get_failures(intent.id)] == ["RATE_LIMIT", "FATAL"]


# -- auth and refusals ----------------------------------------------------------------------
def test_a_reader_cannot_write_any_of_these_routes(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="read only")
    asked = c.request_arbitration(intent.id, "r")
    made = c.add_attachment(intent.id, "f", "text/plain", 1, "s3://f")
    base = f"{gateway.url}/api/v1/intents/{intent.id}"
    reader = headers(gateway, "reader")
    writes = [
        ("POST", "/arbitrate", {"reason": "r"}),
        ("POST", f"/arbitrations/{asked.id}/resolve", {"resolution": "x"}),
        ("POST", "/decisions", {"outcome": "o", "reasoning": "r"}),
        ("POST", "/attachments", {"filename": "g", "storage_url": "s3://g"}),
        ("DELETE", f"/attachments/{made.id}", None),
        ("POST", "/costs", {"cost_type": "tokens", "amount": 1, "unit": "tokens"}),
        ("PUT", "/retry-policy", {"strategy": "fixed"}),
        ("POST", "/failures", {"error_code": "E"}),
    ]
    for method, path, body in writes:
        answer = httpx.request(method, base + path, json=body, headers=reader)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["message"]
    for path in ("/arbitrations", "/decisions", "/attachments", "/costs", "/failures"):
        assert httpx.get(base + path, headers=reader).status_code == 200, path
    assert httpx.get(base + "/retry-policy", headers=reader).status_code == 404
    assert httpx.get(base + "/costs").status_code == 401
    # nothing was written by a refused request
    assert [a.id for a in c.get_attachments(intent.id)] == [made.id]
    assert c.get_costs(intent.id)[0] == [] and c.get_failures(intent.id) == []
    assert c.get_decisions(intent.id) == [] and c.get_retry_policy(intent.id) is None


def test_bad_bodies_are_400_with_a_message(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    intent = c.create_intent(title="bad input")
    asked = c.request_arbitration(intent.id, "r")
    base = f"{gateway.url}/api/v1/intents/{intent.id}"
    cases: list[tuple[str, str, object, str]] = [
        ("POST", "/arbitrate", {}, "reason"),
        ("POST", "/arbitrate", {"reason": "r", "options": "a"}, "options"),
        ("POST", "/arbitrate", {"reason": "r", "context": [1]}, "context"),
        ("POST", f"/arbitrations/{asked.id}/resolve", {"resolution": 5}, "resolution"),
        ("GET", "/arbitrations?status=bogus", None, "status"),
        ("POST", "/decisions", {"outcome": "o"}, "rationale"),
        ("POST", "/decisions", {"outcome": "o", "reasoning": "r", "evidence": {}}, "evidence"),
        ("GET", "/decisions?limit=0", None, "limit"),
        ("POST", "/attachments", {"filename": "f"}, "content_base64"),
        ("POST", "/attachments", {"filename": "f", "url": "not a url"}, "storage_url"),
        ("POST", "/attachments", {"filename": "f", "url": "s3://f", "size": "big"}, "size"),
        (
            "POST",
            "/attachments",
            {"filename": "f", "url": "s3://f", "mime_type": "a/b", "content_type": "c/d"},
            "mime_type",
        ),
        ("POST", "/attachments", {"filename": "f", "content_base64": "%%%"}, "content_base64"),
        ("POST", "/costs", {"cost_type": "tokens", "amount": "1", "unit": "t"}, "amount"),
        ("POST", "/costs", {"cost_type": "beer", "amount": 1, "unit": "t"}, "cost_type"),
        ("POST", "/costs", {"cost_type": "tokens", "amount": -1, "unit": "t"}, "amount"),
        (
            "POST",
            "/costs",
            {"cost_type": "tokens", "amount": 1, "unit": "t", "metadata": 3},
            "metadata",
        ),
        ("PUT", "/retry-policy", {"strategy": "random"}, "strategy"),
        ("PUT", "/retry-policy", {"max_retries": "3"}, "max_retries"),
        ("PUT", "/retry-policy", {"base_delay_ms": 10, "max_delay_ms": 5}, "max_delay_ms"),
        ("PUT", "/retry-policy", {"jitter": True}, "jitter"),
        ("POST", "/failures", {"error_code": 7}, "error_code"),
        ("POST", "/failures", {"error_code": "A", "error_type": "B"}, "error_code"),
        ("POST", "/failures", {"attempt_number": "one"}, "attempt"),
        ("POST", "/failures", {"recoverable": "yes"}, "recoverable"),
        ("POST", "/failures", {"will_retry": 1}, "will_retry"),
        ("POST", "/failures", {"error_message": 5}, "error_message"),
        ("GET", "/failures?cursor=x", None, "cursor"),
    ]
    for method, path, body, field in cases:
        answer = httpx.request(method, base + path, json=body, headers=headers(gateway))
        assert answer.status_code == 400, (method, path, body, answer.text)
        assert answer.json()["message"], answer.text
        assert answer.json()["errors"][0]["field"] == field, (path, body, answer.json())
    for path in ("/arbitrate", "/decisions", "/attachments", "/costs", "/failures"):
        answer = httpx.post(base + path, content=b"{", headers=headers(gateway))
        assert answer.status_code == 400 and answer.json()["errors"][0]["field"] == "body"
    with pytest.raises(ValidationError):
        c.record_cost(intent.id, "tokens", -5, "tokens")
    # nothing was written by a refused request
    assert c.get_failures(intent.id) == [] and c.get_costs(intent.id)[0] == []
    assert c.get_retry_policy(intent.id) is None and c.get_attachments(intent.id) == []


def test_unknown_intents_and_records_are_404(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    with pytest.raises(NotFoundError):
        c.record_cost("no-such-intent", "tokens", 1, "tokens")
    with pytest.raises(NotFoundError):
        c.get_attachments("no-such-intent")
    with pytest.raises(NotFoundError):
        c.request_arbitration("no-such-intent", "r")
    assert c.get_retry_policy("no-such-intent") is None
    intent = c.create_intent(title="exists")
    base = f"{gateway.url}/api/v1/intents/{intent.id}"
    for method, path in [
        ("DELETE", "/attachments/no-such-file"),
        ("POST", "/arbitrations/no-such-request/resolve"),
        ("GET", "/retry-policy"),
    ]:
        answer = httpx.request(
            method, base + path, json={"resolution": "x"}, headers=headers(gateway)
        )
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["message"]
