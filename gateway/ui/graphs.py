"""The pictures: an intent's graph (parents, children, dependencies, transitively, as
``get_intent_graph`` reads it, capped at ``NODES``) drawn in the browser by cytoscape
(vendored, see static/vendor/VENDOR.md) with status colours, redrawn live as statuses
change; and the portfolios with their aggregate, each member graph drawn the same way.

The page carries no data itself: the browser reads ``graph.json`` and reads it again
every few seconds, so a status that changes shows in its colour without a reload."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.errors import ValidationError
from oibus.bus.graphs import AggregateStatus, IntentGraph
from oibus.bus.portfolios import Portfolio, PortfolioAggregate, PortfolioStatus
from oibus.gateway.http import path_param, respond
from oibus.gateway.ui.render import page
from oibus.gateway.ui.session import gateway, viewer

NODES: Final = 300
"""Most intents one picture draws (the page says when the graph was cut there)."""
PAGE: Final = 50
REFRESH_MS: Final = 3000


def _aggregate(agg: AggregateStatus | PortfolioAggregate) -> dict[str, Any]:
    """The figures the picture's caption shows; a graph's and a portfolio's alike."""
    return {
        "total": agg.total,
        "by_status": agg.by_status,
        "completion_percentage": agg.completion_percentage,
    }


def graph_json(graph: IntentGraph) -> dict[str, Any]:
    return {
        "root": graph.root,
        "nodes": [{"id": n.id, "title": n.title, "status": n.status} for n in graph.nodes],
        "edges": [{"source": e.source, "target": e.target, "kind": e.kind} for e in graph.edges],
        "aggregate": _aggregate(graph.aggregate),
        "truncated": graph.truncated,
    }


def members_json(portfolio: Portfolio, intents: list[Any]) -> dict[str, Any]:
    """A portfolio's members as one picture: their dependencies and parents among them."""
    ids = {i.id for i in intents}
    edges = [  # as get_intent_graph: a depends_on edge's source is the waiting intent
        {"source": i.id, "target": d, "kind": "depends_on"}
        for i in intents
        for d in i.depends_on
        if d in ids
    ]
    edges += [
        {"source": i.parent_intent_id, "target": i.id, "kind": "parent"}
        for i in intents
        if i.parent_intent_id in ids
    ]
    return {
        "root": portfolio.primary_intent_id,
        "nodes": [{"id": i.id, "title": i.title, "status": i.status} for i in intents],
        "edges": edges,
        "aggregate": _aggregate(portfolio.aggregate_status),
        "truncated": len(portfolio.intents) > NODES,
    }


def _json(data: dict[str, Any]) -> Response:
    answer = respond(data)
    answer.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    return answer


async def intent_graph(request: Request) -> Response:
    seen = await viewer(request)
    intent = await gateway(request).base.get_intent(path_param(request))
    return page(
        request,
        "graph.html",
        seen,
        section="graphs",
        title=intent.title,
        intent=intent,
        portfolio=None,
        source=f"/ui/intents/{intent.id}/graph.json",
        refresh=REFRESH_MS,
    )


async def intent_graph_json(request: Request) -> Response:
    await viewer(request)
    client = gateway(request).base
    return _json(graph_json(await client.get_intent_graph(path_param(request), NODES)))


async def portfolios_page(request: Request) -> Response:
    seen = await viewer(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in {s.value for s in PortfolioStatus}:
        raise ValidationError(f"no portfolio status {status!r}", field="status")
    cursor = request.query_params.get("cursor") or None
    found = await gateway(request).base.list_portfolios(status=status, limit=PAGE, cursor=cursor)
    return page(
        request,
        "portfolios.html",
        seen,
        section="graphs",
        portfolios=found,
        chosen=status,
        statuses_p=[s.value for s in PortfolioStatus],
        more=found.next_cursor,
    )


async def portfolio_page(request: Request) -> Response:
    seen = await viewer(request)
    portfolio = await gateway(request).base.get_portfolio(path_param(request, "portfolio_id"))
    return page(
        request,
        "portfolio.html",
        seen,
        section="graphs",
        portfolio=portfolio,
        members=portfolio.intents[:NODES],
        source=f"/ui/portfolios/{portfolio.id}/graph.json",
        refresh=REFRESH_MS,
    )


async def portfolio_graph_json(request: Request) -> Response:
    await viewer(request)
    client = gateway(request).base
    portfolio = await client.get_portfolio(path_param(request, "portfolio_id"))
    intents = await client._fetch_intents([m.intent_id for m in portfolio.intents[:NODES]])
    return _json(members_json(portfolio, intents))


routes = [
    Route("/intents/{intent_id}/graph", intent_graph, methods=["GET"]),
    Route("/intents/{intent_id}/graph.json", intent_graph_json, methods=["GET"]),
    Route("/portfolios", portfolios_page, methods=["GET"]),
    Route("/portfolios/{portfolio_id}", portfolio_page, methods=["GET"]),
    Route("/portfolios/{portfolio_id}/graph.json", portfolio_graph_json, methods=["GET"]),
]
