"""Webhook subscriptions (RFC-0006): subscribe, list, unsubscribe. The reference server
has no such routes (the SDK's calls answer 404 there); these answer what the SDK parses.

Deliveries are the daemon's, signed with the subscription's secret (shown once, in the
answer to the POST). The namespace's webhook address policy applies when subscribing: a
URL whose host is private, loopback or link-local under the public-only policy is a 400
now rather than a dead letter at every delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.errors import AccessDeniedError, ValidationError
from oibus.gateway.context import caller
from oibus.gateway.http import (
    body,
    path_param,
    respond,
    strings,
    text_field,
)
from oibus.gateway.shapes import subscription_json


def _expires(value: Any) -> datetime | None:
    """An ISO 8601 time; one without an offset is taken as UTC. (The async SDK sends
    ``datetime.now() + 24h`` without an offset, its own local time: on a host whose clock
    is not on UTC the expiry moves by the offset; give one to be exact.)"""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError("expires_at must be an ISO 8601 time", field="expires_at")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("expires_at must be an ISO 8601 time", field="expires_at") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def subscribe(request: Request) -> Response:
    """``subscriber_id`` defaults to the acting agent; naming another is for keys that may
    act for others (``service``, ``admin``), as ``X-Agent-ID`` is. The SDK's empty
    ``event_types`` means every type."""
    c = await caller(request, write=True)
    data = await body(request)
    subscriber = text_field(data, "subscriber_id", "subscriberId", default=c.actor)
    if subscriber != c.actor and not c.role.acts_for_others:
        raise AccessDeniedError(
            f"an agent key subscribes only as its own principal ({c.actor}), not as {subscriber}"
        )
    types = strings(data, "event_types") or None
    subscription = await c.client.subscribe(
        text_field(data, "intent_id", "intentId"),
        text_field(data, "portfolio_id", "portfolioId"),
        subscriber_id=subscriber,
        webhook_url=text_field(data, "webhook_url", "webhookUrl"),
        callback_url=text_field(data, "callback_url", "callbackUrl"),
        event_types=types,
        expires_at=_expires(text_field(data, "expires_at", "expiresAt")),
        secret=text_field(data, "secret"),
    )
    return respond(subscription_json(subscription))


async def list_subscriptions(request: Request) -> Response:
    c = await caller(request)
    q = request.query_params
    found = await c.client.get_subscriptions(
        intent_id=q.get("intent_id") or None,
        portfolio_id=q.get("portfolio_id") or None,
        subscriber_id=q.get("subscriber_id") or None,
    )
    return respond({"subscriptions": [subscription_json(s) for s in found]})


async def unsubscribe(request: Request) -> Response:
    c = await caller(request, write=True)
    await c.client.unsubscribe(path_param(request, "subscription_id"))
    return Response(status_code=204)


routes = [
    Route("/api/v1/subscriptions", subscribe, methods=["POST"]),
    Route("/api/v1/subscriptions", list_subscriptions, methods=["GET"]),
    Route("/api/v1/subscriptions/{subscription_id}", unsubscribe, methods=["DELETE"]),
]
