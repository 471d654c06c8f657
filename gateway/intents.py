"""Intents, their state, status, events, agents and graph (RFC-0001, 0002): each handler
authenticates, decodes, makes one SDK call and encodes the answer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.errors import ConflictError, LeaseConflictError, ValidationError
from oibus.gateway.context import Caller, caller
from oibus.gateway.errors import error_response
from oibus.gateway.http import (
    PAGE_MAX,
    body,
    if_match,
    mapping,
    paging,
    path_param,
    query_int,
    query_time,
    respond,
    strings,
    text_field,
)
from oibus.gateway.shapes import aggregate_json, event_json, intent_json


async def _with_current(request: Request, c: Caller, exc: ConflictError) -> Response:
    """A version conflict answers with the intent as it is now, so the caller can retry
    without another read (a lease conflict stays a lease conflict)."""
    if isinstance(exc, LeaseConflictError):
        return error_response(exc)
    current = await c.client.get_intent(path_param(request))
    return error_response(
        exc, {"current_version": current.version, "current": intent_json(current)}
    )


# -- intents ------------------------------------------------------------------------------
async def create_intent(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    intent = await c.client.create_intent(
        text_field(data, "title"),
        text_field(data, "description"),
        mapping(data, "constraints"),
        state=mapping(data, "state", "initial_state"),
        status=text_field(data, "status", default="active"),
        parent_intent_id=text_field(data, "parent_intent_id", "parent_id"),
        depends_on=strings(data, "depends_on"),
        idempotency_key=request.headers.get("idempotency-key"),
        intent_id=text_field(data, "id"),
    )
    return respond(intent_json(intent))


async def list_intents(request: Request) -> Response:
    c = await caller(request)
    if query_int(request, "offset", 0, 0, 0) != 0:
        raise ValidationError("offset paging is not supported: use cursor", field="offset")
    page = await c.client.list_intents(
        status=request.query_params.get("status") or None,
        created_by=request.query_params.get("created_by") or None,
        parent_id=request.query_params.get("parent_id") or None,
        limit=query_int(request, "limit", 50, 1, PAGE_MAX),
        cursor=request.query_params.get("cursor") or None,
    )
    return respond({"intents": [intent_json(i) for i in page], "next_cursor": page.next_cursor})


async def get_intent(request: Request) -> Response:
    c = await caller(request)
    return respond(intent_json(await c.client.get_intent(path_param(request))))


async def patch_state(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    version = if_match(request)
    try:
        if "patches" in data:
            patches = data["patches"]
            if not isinstance(patches, list):
                raise ValidationError("patches must be a list", field="patches")
            intent = await c.client.patch_state(
                path_param(request), version, [_patch(p) for p in patches]
            )
        elif "state" in data:
            state = mapping(data, "state") or {}
            intent = await c.client.update_state(path_param(request), version, state)
        else:
            raise ValidationError('give {"patches": [...]} or {"state": {...}}', field="patches")
    except ConflictError as exc:
        return await _with_current(request, c, exc)
    return respond(intent_json(intent))


def _patch(raw: Any) -> dict[str, Any]:
    """A patch as the SDK sends it: ``path`` may be a bare key (``progress``) or a
    slash path without its leading slash (``a/b``): both are JSON pointers here."""
    if not isinstance(raw, dict):
        raise ValidationError("each patch is a JSON object", field="patches")
    patch: dict[str, Any] = raw
    path = patch.get("path")
    if isinstance(path, str) and not path.startswith("/"):
        patch = {**patch, "path": "/" + path}
    return patch


async def set_status(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    try:
        intent = await c.client.set_status(
            path_param(request),
            if_match(request),
            text_field(data, "status"),
            text_field(data, "reason"),
        )
    except ConflictError as exc:
        return await _with_current(request, c, exc)
    return respond(intent_json(intent))


# -- events ---------------------------------------------------------------------------------
async def get_events(request: Request) -> Response:
    c = await caller(request)
    page = await c.client.get_events(
        path_param(request),
        event_type=request.query_params.get("event_type") or None,
        since=query_time(request, "since"),
        after=request.query_params.get("cursor") or request.query_params.get("after") or None,
        limit=query_int(request, "limit", 100, 1, PAGE_MAX),
    )
    events = [event_json(e) for e in page]
    return respond({"events": events, "next_cursor": page.next_cursor})


async def log_event(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    event = await c.client.log_event(
        path_param(request), text_field(data, "event_type", "type"), mapping(data, "payload")
    )
    return respond(event_json(event))


# -- agents -------------------------------------------------------------------------------
async def assign_agent(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request, required=False)
    agent = text_field(data, "agent_id", default=c.actor)
    intent = await c.client.assign_agent(path_param(request), agent)
    return respond(
        _assignment(intent.id, agent, intent.updated_at.isoformat(), intent_json(intent))
    )


async def unassign_agent(request: Request) -> Response:
    c = await caller(request, write=True)
    agent = path_param(request, "agent_id")
    intent = await c.client.unassign_agent(path_param(request), agent)
    return respond({"intent_id": intent.id, "agent_id": agent, "intent": intent_json(intent)})


async def list_agents(request: Request) -> Response:
    c = await caller(request)
    intent = await c.client.get_intent(path_param(request))
    at = intent.updated_at.isoformat()
    return respond([_assignment(intent.id, a, at) for a in intent.assigned_agents])


def _assignment(
    intent_id: str, agent: str, at: str, intent: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"{intent_id}:{agent}",
        "intent_id": intent_id,
        "agent_id": agent,
        "role": "worker",
        "assigned_at": at,
    }
    if intent is not None:
        out["intent"] = intent
    return out


# -- graph (RFC-0002) -----------------------------------------------------------------------
async def create_child(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    intent = await c.client.create_child_intent(
        path_param(request),
        text_field(data, "title"),
        text_field(data, "description"),
        mapping(data, "constraints"),
        depends_on=strings(data, "depends_on"),
        state=mapping(data, "state", "initial_state"),
        assign=text_field(data, "assign"),
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return respond(intent_json(intent))


async def _intent_page(request: Request, key: str, method: str) -> Response:
    """A paged graph read (children, dependents, ready, blocked): ``{key: [...],
    "next_cursor"}``, the SDK's call of that name with the request's paging."""
    c = await caller(request)
    read = getattr(c.client, method)
    page = await read(path_param(request), *paging(request))
    return respond({key: [intent_json(i) for i in page], "next_cursor": page.next_cursor})


async def children(request: Request) -> Response:
    return await _intent_page(request, "children", "get_children")


async def descendants(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_descendants(
        path_param(request), query_int(request, "limit", 1000, 1, 10_000)
    )
    return respond({"descendants": [intent_json(i) for i in found]})


async def ancestors(request: Request) -> Response:
    c = await caller(request)
    return respond(
        {"ancestors": [intent_json(i) for i in await c.client.get_ancestors(path_param(request))]}
    )


async def dependencies(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_dependencies(path_param(request))
    return respond({"dependencies": [intent_json(i) for i in found]})


async def dependents(request: Request) -> Response:
    return await _intent_page(request, "dependents", "get_dependents")


async def ready(request: Request) -> Response:
    return await _intent_page(request, "ready", "get_ready_intents")


async def blocked(request: Request) -> Response:
    return await _intent_page(request, "blocked", "get_blocked_intents")


async def graph(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_intent_graph(
        path_param(request), query_int(request, "max_nodes", 500, 1, 10_000)
    )
    return respond(
        {
            "root_id": found.root,
            "nodes": [
                {
                    "id": n.id,
                    "title": n.title,
                    "status": n.status,
                    "parent_id": n.parent_intent_id,
                    "depends_on": list(n.depends_on),
                }
                for n in found.nodes
            ],
            "edges": [{"from": e.source, "to": e.target, "type": e.kind} for e in found.edges],
            "aggregate_status": aggregate_json(found.aggregate),
            "truncated": found.truncated,
        }
    )


async def add_dependency(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    try:
        intent = await c.client.add_dependency(
            path_param(request), text_field(data, "dependency_id", "depends_on"), if_match(request)
        )
    except ConflictError as exc:
        return await _with_current(request, c, exc)
    return respond(intent_json(intent))


async def remove_dependency(request: Request) -> Response:
    c = await caller(request, write=True)
    try:
        intent = await c.client.remove_dependency(
            path_param(request), path_param(request, "dependency_id"), if_match(request)
        )
    except ConflictError as exc:
        return await _with_current(request, c, exc)
    return respond(intent_json(intent))


P = "/api/v1/intents/{intent_id}"
routes = [
    Route("/api/v1/intents", create_intent, methods=["POST"]),
    Route("/api/v1/intents", list_intents, methods=["GET"]),
    Route(P, get_intent, methods=["GET"]),
    Route(P + "/state", patch_state, methods=["POST", "PATCH"]),
    Route(P + "/status", set_status, methods=["POST"]),
    Route(P + "/events", get_events, methods=["GET"]),
    Route(P + "/events", log_event, methods=["POST"]),
    Route(P + "/agents", list_agents, methods=["GET"]),
    Route(P + "/agents", assign_agent, methods=["POST"]),
    Route(P + "/agents/{agent_id}", unassign_agent, methods=["DELETE"]),
    Route(P + "/children", create_child, methods=["POST"]),
    Route(P + "/children", children, methods=["GET"]),
    Route(P + "/descendants", descendants, methods=["GET"]),
    Route(P + "/ancestors", ancestors, methods=["GET"]),
    Route(P + "/dependencies", dependencies, methods=["GET"]),
    Route(P + "/dependencies", add_dependency, methods=["POST"]),
    Route(P + "/dependencies/{dependency_id}", remove_dependency, methods=["DELETE"]),
    Route(P + "/dependents", dependents, methods=["GET"]),
    Route(P + "/ready", ready, methods=["GET"]),
    Route(P + "/blocked", blocked, methods=["GET"]),
    Route(P + "/graph", graph, methods=["GET"]),
]
