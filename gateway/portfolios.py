"""Portfolios (RFC-0007; RFC-0004 in oibus's own files): each handler authenticates,
decodes, makes the SDK calls and encodes the answer as the reference SDK reads it.

Where the reference server and its SDK disagree, this answers what the SDK parses: a
portfolio read carries its member intents (whole intents: the SDK builds ``Intent``
objects from them) and its ``aggregate_status``; adding a member answers the membership
record with the ``id`` the SDK requires (the reference server answers a message, and the
SDK crashes on it); a ``description`` may be null (the SDK sends null when it has none)
and ``metadata`` is kept."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus import limits
from oibus.bus.codec import to_micros
from oibus.bus.errors import ValidationError
from oibus.bus.portfolios import Portfolio
from oibus.gateway.context import caller
from oibus.gateway.http import (
    PAGE_MAX,
    body,
    mapping,
    path_param,
    query_int,
    respond,
    text_field,
)
from oibus.gateway.shapes import (
    Json,
    aggregate_json,
    intent_json,
    membership_json,
    portfolio_json,
)


def _with_members(portfolio: Portfolio, intents: list[Json]) -> Json:
    """A portfolio as ``get_portfolio`` shows it: the record, its aggregate, its member
    intents in full (what the SDK parses) and the memberships (role, priority) beside."""
    out = portfolio_json(portfolio)
    out["intents"] = intents
    out["members"] = [membership_json(portfolio.id, m) for m in portfolio.intents]
    return out


async def create_portfolio(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    portfolio = await c.client.create_portfolio(
        text_field(data, "name"),
        text_field(data, "description"),
        mapping(data, "governance_policy", "governancePolicy"),
        mapping(data, "metadata"),
    )
    return respond(_with_members(portfolio, []))


async def list_portfolios(request: Request) -> Response:
    """Newest first, optionally one ``status``. The SDK's ``created_by`` filter is applied
    to the pages read: at most ``FILTER_SCAN`` portfolios per answer, with a cursor to go
    on from when it stops early (as the event type filter does)."""
    c = await caller(request)
    status = request.query_params.get("status") or None
    created_by = request.query_params.get("created_by") or None
    limit = query_int(request, "limit", 50, 1, PAGE_MAX)
    cursor = request.query_params.get("cursor") or None
    found: list[Json] = []
    scanned = 0
    while True:
        page = await c.client.list_portfolios(status=status, limit=limit, cursor=cursor)
        next_cursor = page.next_cursor
        for portfolio in page:
            scanned += 1
            if created_by is None or portfolio.created_by == created_by:
                found.append(portfolio_json(portfolio))
                if len(found) == limit:
                    # the next page starts after this one (the listing's index member)
                    next_cursor = _cursor(portfolio) if portfolio is not page[-1] else next_cursor
                    break
        cursor = next_cursor
        if len(found) == limit or cursor is None or scanned >= limits.FILTER_SCAN:
            break
    return respond({"portfolios": found, "next_cursor": cursor})


def _cursor(portfolio: Portfolio) -> str:
    """A portfolio's place in the listing, as ``list_portfolios`` pages by it: its index
    member, ``<created_at micros, 16 digits>:<id>``."""
    return f"{to_micros(portfolio.created_at, 'created_at'):016d}:{portfolio.id}"


async def get_portfolio(request: Request) -> Response:
    c = await caller(request)
    portfolio = await c.client.get_portfolio(path_param(request, "portfolio_id"))
    intents = await c.client.get_portfolio_intents(portfolio.id)
    return respond(_with_members(portfolio, [intent_json(i) for i in intents]))


async def set_portfolio_status(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    portfolio = await c.client.update_portfolio_status(
        path_param(request, "portfolio_id"), text_field(data, "status"), text_field(data, "reason")
    )
    return respond(portfolio_json(portfolio))


async def add_intent(request: Request) -> Response:
    c = await caller(request, write=True)
    data = await body(request)
    priority = text_field(data, "priority", default=0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError("priority must be a whole number", field="priority")
    member = await c.client.add_intent_to_portfolio(
        path_param(request, "portfolio_id"),
        text_field(data, "intent_id", "intentId"),
        text_field(data, "role", default="member"),
        priority,
    )
    return respond(membership_json(path_param(request, "portfolio_id"), member))


async def remove_intent(request: Request) -> Response:
    c = await caller(request, write=True)
    await c.client.remove_intent_from_portfolio(
        path_param(request, "portfolio_id"), path_param(request)
    )
    return Response(status_code=204)


async def portfolio_intents(request: Request) -> Response:
    """The members in full (highest priority first) with the portfolio's aggregate, the
    dict form the SDK reads both from (a bare list would leave its aggregate at zero)."""
    c = await caller(request)
    portfolio = await c.client.get_portfolio(path_param(request, "portfolio_id"))
    intents = await c.client.get_portfolio_intents(portfolio.id)
    return respond(
        {
            "intents": [intent_json(i) for i in intents],
            "aggregate_status": aggregate_json(portfolio.aggregate_status),
            "members": [membership_json(portfolio.id, m) for m in portfolio.intents],
        }
    )


async def intent_portfolios(request: Request) -> Response:
    c = await caller(request)
    found = await c.client.get_intent_portfolios(path_param(request))
    return respond({"portfolios": [portfolio_json(p) for p in found]})


P = "/api/v1/portfolios/{portfolio_id}"
routes = [
    Route("/api/v1/portfolios", create_portfolio, methods=["POST"]),
    Route("/api/v1/portfolios", list_portfolios, methods=["GET"]),
    Route(P, get_portfolio, methods=["GET"]),
    Route(P + "/status", set_portfolio_status, methods=["PATCH", "POST"]),
    Route(P + "/intents", add_intent, methods=["POST"]),
    Route(P + "/intents", portfolio_intents, methods=["GET"]),
    Route(P + "/intents/{intent_id}", remove_intent, methods=["DELETE"]),
    Route("/api/v1/intents/{intent_id}/portfolios", intent_portfolios, methods=["GET"]),
]
