"""Attachments (RFC-0005), costs (RFC-0009), retry policies and failures (RFC-0010).

The sync and async reference SDKs send these with different field names, and its own
server refused the async ones (422): every spelling either sends is accepted here, and
handed to the one SDK call that checks it. The agent who uploads, spends or fails is the
caller's actor; an ``agent_id`` in the body is not trusted (it could name anyone).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.errors import NotFoundError, ValidationError
from oibus.gateway.context import caller
from oibus.gateway.http import (
    body,
    paging,
    path_param,
    respond,
    text_field,
)
from oibus.gateway.shapes import (
    attachment_json,
    cost_json,
    cost_summary_json,
    failure_json,
    retry_policy_json,
)


# -- attachments (RFC-0005) ---------------------------------------------------------------
async def add_attachment(request: Request) -> Response:
    """The sync SDK's ``mime_type, size, storage_url``, the async one's ``content_type,
    size_bytes, url``, and the seed's inline ``content_base64``: ``content_type`` and
    ``mime_type`` both go to the SDK, which refuses them when they disagree."""
    c = await caller(request, write=True)
    data = await body(request)
    found = await c.client.add_attachment(
        path_param(request),
        text_field(data, "filename"),
        content_type=data.get("content_type"),
        content_base64=data.get("content_base64"),
        storage_url=text_field(data, "storage_url", "url", "storageUrl"),
        description=data.get("description"),
        metadata=data.get("metadata"),
        mime_type=text_field(data, "mime_type", "mimeType"),
        size=text_field(data, "size", "size_bytes", "sizeBytes"),
    )
    return respond(attachment_json(found))


async def list_attachments(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_attachments(path_param(request))
    return respond({"attachments": [attachment_json(a) for a in found]})


async def delete_attachment(request: Request) -> Response:
    """204 with no body, as the reference server answers (its SDK skips the body on 204)."""
    c = await caller(request, write=True)
    await c.client.delete_attachment(path_param(request), path_param(request, "attachment_id"))
    return Response(status_code=204)


# -- costs (RFC-0009) -----------------------------------------------------------------------
async def record_cost(request: Request) -> Response:
    """``metadata`` (the SDK) or ``cost_metadata`` (its server); no ``agent_id`` needed
    (the async SDK sends none): the cost is the actor's."""
    c = await caller(request, write=True)
    data = await body(request)
    cost = await c.client.record_cost(
        path_param(request),
        text_field(data, "cost_type", "costType"),
        text_field(data, "amount"),
        text_field(data, "unit"),
        data.get("provider"),
        text_field(data, "metadata", "cost_metadata"),
    )
    return respond(cost_json(cost))


async def list_costs(request: Request) -> Response:
    """The records and the running totals, so the SDK's ``get_costs`` gets its summary
    (the reference server sent a bare list: the SDK's summary was always zero). Two
    reads, side by side; the summary is the intent's whole total, whatever the page."""
    c = await caller(request)
    limit, cursor = paging(request)
    intent_id = path_param(request)
    page, summary = await asyncio.gather(
        c.client.get_costs(intent_id, limit, cursor), c.client.get_cost_summary(intent_id)
    )
    return respond(
        {
            "costs": [cost_json(x) for x in page],
            "summary": cost_summary_json(summary),
            "next_cursor": page.next_cursor,
        }
    )


# -- retry policy and failures (RFC-0010) ---------------------------------------------------
POLICY_FIELDS: dict[str, tuple[str, ...]] = {
    "strategy": ("strategy",),
    "max_retries": ("max_retries", "maxRetries"),
    "max_attempts": ("max_attempts", "maxAttempts"),
    "base_delay_ms": ("base_delay_ms", "baseDelayMs"),
    "max_delay_ms": ("max_delay_ms", "maxDelayMs"),
    "base_delay_seconds": ("base_delay_seconds",),
    "max_delay_seconds": ("max_delay_seconds",),
    "backoff_multiplier": ("backoff_multiplier", "backoffMultiplier"),
    "jitter": ("jitter",),
    "retryable_errors": ("retryable_errors", "retryableErrors"),
    "fallback_agent_id": ("fallback_agent_id", "fallbackAgentId"),
    "failure_threshold": ("failure_threshold", "failureThreshold"),
}
"""The SDK's parameter -> the body names that set it (RFC-0010, the seed, camel case)."""


async def set_retry_policy(request: Request) -> Response:
    """A PUT replaces the policy: a field left out (or null, as the sync SDK sends an
    unset ``fallback_agent_id``) takes the SDK's default, not its old value."""
    c = await caller(request, write=True)
    data = await body(request)
    given: dict[str, Any] = {}
    for name, spellings in POLICY_FIELDS.items():
        value = text_field(data, *spellings)
        if value is not None:
            given[name] = value
    policy = await c.client.set_retry_policy(path_param(request), **given)
    return respond(retry_policy_json(policy))


async def get_retry_policy(request: Request) -> Response:
    """404 when the intent has none: the SDK's ``get_retry_policy`` turns that into None."""
    c = await caller(request)
    intent_id = path_param(request)
    policy = await c.client.get_retry_policy(intent_id)
    if policy is None:
        raise NotFoundError(
            f"intent {intent_id} has no retry policy", resource="retry_policy", id=intent_id
        )
    return respond(retry_policy_json(policy))


def _will_retry(data: dict[str, Any]) -> bool | None:
    """``will_retry`` (oibus), else the async SDK's ``recoverable``: an unrecoverable
    failure declines a retry; a recoverable one leaves it to the policy."""
    if data.get("will_retry") is not None:
        value: bool | None = data["will_retry"]  # the SDK checks it is a bool
        return value
    recoverable = data.get("recoverable")
    if recoverable is None:
        return None
    if not isinstance(recoverable, bool):
        raise ValidationError("recoverable must be true or false", field="recoverable")
    return None if recoverable else False


async def record_failure(request: Request) -> Response:
    """``error_code`` (sync SDK) or ``error_type`` (async SDK, the reference server);
    ``attempt_number`` may be left out (the next one is taken; a given one must be it).
    ``retry_scheduled_at`` is accepted and not used: the intent's policy schedules the
    retry, in the same step, and the answer says when."""
    c = await caller(request, write=True)
    data = await body(request)
    failure = await c.client.record_failure(
        path_param(request),
        error_type=data.get("error_type"),
        error_code=text_field(data, "error_code", "errorCode"),
        error_message=data.get("error_message", ""),  # null reads as "" too
        attempt=text_field(data, "attempt_number", "attempt", "attemptNumber"),
        will_retry=_will_retry(data),
        metadata=data.get("metadata"),
    )
    return respond(failure_json(failure))


async def list_failures(request: Request) -> Response:
    c = await caller(request)
    limit, cursor = paging(request)
    page = await c.client.get_failures(path_param(request), limit, cursor)
    return respond({"failures": [failure_json(f) for f in page], "next_cursor": page.next_cursor})


P = "/api/v1/intents/{intent_id}"
routes = [
    Route(P + "/attachments", add_attachment, methods=["POST"]),
    Route(P + "/attachments", list_attachments, methods=["GET"]),
    Route(P + "/attachments/{attachment_id}", delete_attachment, methods=["DELETE"]),
    Route(P + "/costs", record_cost, methods=["POST"]),
    Route(P + "/costs", list_costs, methods=["GET"]),
    Route(P + "/retry-policy", set_retry_policy, methods=["PUT"]),
    Route(P + "/retry-policy", get_retry_policy, methods=["GET"]),
    Route(P + "/failures", record_failure, methods=["POST"]),
    Route(P + "/failures", list_failures, methods=["GET"]),
]
