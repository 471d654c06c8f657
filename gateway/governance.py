"""Governance (RFC-0004): arbitration requests and decision records, each one SDK
call.

Who asks and who decides is the caller's actor: the reference server wanted
``requested_by``/``decided_by`` in the body (and refused the SDK's own requests without
them); here those fields are ignored, so no body can speak for another agent. The SDK's
``outcome``/``reasoning`` and the server's ``rationale`` are both accepted.

Escalations (``/api/v1/intents/{id}/escalations``, ``/api/v1/escalations``) are not
served: oibus has no escalation records, and a route that stored them apart from the bus's
rules would be a second implementation.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.gateway.context import caller
from oibus.gateway.http import (
    PAGE_MAX,
    body,
    path_param,
    query_int,
    respond,
    text_field,
)
from oibus.gateway.shapes import arbitration_json, decision_json


async def request_arbitration(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    found = await c.client.request_arbitration(
        path_param(request),
        text_field(data, "reason"),
        options=data.get("options"),
        context=data.get("context"),
    )
    return respond(arbitration_json(found))


async def list_arbitrations(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_arbitrations(
        path_param(request), status=request.query_params.get("status") or None
    )
    return respond({"arbitrations": [arbitration_json(a) for a in found]})


async def resolve_arbitration(request: Request) -> Response:
    """Resolved once: a second resolution is a 409 and changes nothing."""
    c = await caller(request, write=True)
    data = await body(request)
    found = await c.client.resolve_arbitration(
        path_param(request),
        path_param(request, "arbitration_id"),
        text_field(data, "resolution", "outcome", "decision"),
        text_field(data, "rationale", "reasoning"),
    )
    return respond(arbitration_json(found))


async def record_decision(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    decision = await c.client.record_decision(
        path_param(request),
        text_field(data, "outcome", "decision"),
        text_field(data, "reasoning", "rationale"),
        data.get("evidence"),
        decision_type=text_field(data, "decision_type"),
        context=data.get("context"),
        alternatives=data.get("alternatives"),
    )
    return respond(decision_json(decision))


async def list_decisions(request: Request) -> Response:
    c = await caller(request)
    page = await c.client.get_decisions(
        path_param(request),
        query_int(request, "limit", 100, 1, PAGE_MAX),
        request.query_params.get("cursor") or None,
    )
    return respond({"decisions": [decision_json(d) for d in page], "next_cursor": page.next_cursor})


P = "/api/v1/intents/{intent_id}"
routes = [
    Route(P + "/arbitrate", request_arbitration, methods=["POST"]),
    Route(P + "/arbitrations", list_arbitrations, methods=["GET"]),
    Route(P + "/arbitrations/{arbitration_id}/resolve", resolve_arbitration, methods=["POST"]),
    Route(P + "/decisions", record_decision, methods=["POST"]),
    Route(P + "/decisions", list_decisions, methods=["GET"]),
]
