"""Leases (RFC-0003): acquire, renew, release and list, each one SDK call.

The holder is always the caller's actor, never a body field. A refused lease answers 409
with the lease error's own code (``LEASE_CONFLICT``, ``LEASE_EXPIRED``): the word "lease" is
in the body, which is how the reference SDK tells a lease conflict from a version conflict.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.errors import ValidationError
from oibus.gateway.context import caller
from oibus.gateway.http import (
    PAGE_MAX,
    body,
    path_param,
    query_int,
    respond,
    text_field,
)
from oibus.gateway.shapes import lease_json

DEFAULT_SECONDS = 300
"""The reference SDK's default duration, for a body that names none."""

LISTINGS = {"active": False, "all": True, "history": True}
"""``?status=``: the live leases only (the default), or every lease ever held too."""


def _history(request: Request) -> bool:
    """Whether the listing includes ended leases: the reference server always did (its
    bare list held released and expired ones), the SDK's docstring says "active"; both
    are served, active by default."""
    status = request.query_params.get("status") or "active"
    if status not in LISTINGS:
        raise ValidationError("status must be active, all or history", field="status")
    flag = (request.query_params.get("include_history") or "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise ValidationError("include_history must be true or false", field="include_history")
    return LISTINGS[status] or flag in ("true", "1")


async def acquire(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    lease = await c.client.acquire_lease(
        path_param(request, "intent_id"),
        text_field(data, "scope"),
        text_field(data, "duration_seconds", default=DEFAULT_SECONDS),
    )
    return respond(lease_json(lease))


async def list_leases(request: Request) -> Response:
    c = await caller(request)
    page = await c.client.get_leases(
        path_param(request, "intent_id"),
        include_history=_history(request),
        limit=query_int(request, "limit", 100, 1, PAGE_MAX),
        cursor=request.query_params.get("cursor") or None,
    )
    return respond({"leases": [lease_json(x) for x in page], "next_cursor": page.next_cursor})


async def renew(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request, required=False)
    lease = await c.client.renew_lease(
        path_param(request, "intent_id"),
        path_param(request, "lease_id"),
        text_field(data, "duration_seconds", default=DEFAULT_SECONDS),
    )
    return respond(lease_json(lease))


async def release(request: Request) -> Response:
    """200 with the lease as it ended. Releasing a released lease again is a 200 with the
    same lease and no second ``lease_released`` event (the script returns it unchanged),
    so a client retrying after a lost reply sees success."""
    c = await caller(request, write=True)
    lease = await c.client.release_lease(
        path_param(request, "intent_id"), path_param(request, "lease_id")
    )
    return respond(lease_json(lease))


P = "/api/v1/intents/{intent_id}/leases"
routes = [
    Route(P, acquire, methods=["POST"]),
    Route(P, list_leases, methods=["GET"]),
    Route(P + "/{lease_id}", renew, methods=["PATCH"]),
    Route(P + "/{lease_id}", release, methods=["DELETE"]),
]
