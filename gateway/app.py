"""The OpenIntent HTTP server on the bus, as an ASGI application (Starlette).

Stateless in front of Redis: everything a request needs is on the bus, so any number of
processes (``oibus serve --workers N``, or several hosts) serve one namespace. One
lifespan owns the resources: the Redis pool and the bus client are made at start-up and
closed at shutdown; every request gets them from ``app.state``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from oibus import _version
from oibus.bus.errors import OpenIntentError
from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS
from oibus.gateway import (
    governance,
    intents,
    leases,
    openapi,
    portfolios,
    records,
    streams,
    subscriptions,
    ui,
)
from oibus.gateway.context import Gateway
from oibus.gateway.errors import on_oibus_error, on_unexpected
from oibus.gateway.http import respond
from oibus.gateway.ui.render import error_page, status_page
from oibus.sdk._async.client import AsyncClient

RFCS = [f"/rfc/{n:04d}" for n in range(1, 11)]


@dataclass(frozen=True)
class GatewayConfig:
    """Where the bus is and which namespace this server serves. ``redis`` (a client made
    elsewhere, for tests and embedding) wins over ``redis_url``."""

    redis_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    partitions: int = DEFAULT_PARTITIONS
    redis: Any = None
    extra_routes: Sequence[BaseRoute] = field(default_factory=tuple)


def route_groups() -> list[BaseRoute]:
    """Every route of the API, in the order they are matched."""
    return [
        *meta_routes,
        *intents.routes,
        *leases.routes,
        *governance.routes,
        *records.routes,
        *portfolios.routes,
        *subscriptions.routes,
        *streams.routes,
        *ui.routes,
    ]


def create_app(config: GatewayConfig | None = None) -> Starlette:
    cfg = config if config is not None else GatewayConfig()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        base = AsyncClient(
            cfg.redis_url,
            redis=cfg.redis,
            agent_id="oibus-gateway",
            namespace=cfg.namespace,
            partitions=cfg.partitions,
        )
        await base.load_scripts()
        app.state.gateway = Gateway(base)
        try:
            yield
        finally:
            await base.aclose()

    handlers: dict[Any, Callable[[Request, Exception], Any]] = {
        HTTPException: on_http,
        OpenIntentError: on_error,
        Exception: on_bug,
    }
    app = Starlette(
        routes=[*route_groups(), *cfg.extra_routes],
        lifespan=lifespan,
        exception_handlers=handlers,
    )
    # built once, here, from the routes this app really serves (gateway/openapi.py)
    app.state.openapi = openapi.encode(app.routes)
    return app


async def on_error(request: Request, exc: Exception) -> Response:
    """The one error map; the dashboard answers it as a page, the API as JSON."""
    return error_page(request, exc) if ui.is_ui(request) else await on_oibus_error(request, exc)


async def on_http(request: Request, exc: Exception) -> Response:
    """No such route or method: a page in the dashboard, Starlette's plain answer else."""
    assert isinstance(exc, HTTPException)
    if ui.is_ui(request) and exc.status_code >= 400:
        said = f"no page {request.url.path}" if exc.status_code == 404 else exc.detail
        return status_page(request, exc.status_code, said)
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


async def on_bug(request: Request, exc: Exception) -> Response:
    return error_page(request, exc) if ui.is_ui(request) else await on_unexpected(request, exc)


# -- discovery and health -------------------------------------------------------------------
async def discovery(request: Request) -> Response:
    """``/.well-known/openintent.json``: what this server really serves (no auth)."""
    gw: Gateway = request.app.state.gateway
    info = await gw.base.discover()
    return respond(
        {
            "protocol": "OpenIntent Coordination Protocol",
            "version": info.protocol_version,
            "implementation": "oibus",
            "implementation_version": _version.__version__,
            "rfcUrls": RFCS,
            "capabilities": capabilities(request),
            "openApiUrl": "/openapi.json",
            "limits": info.limits,
        }
    )


def capabilities(request: Request) -> list[str]:
    """Capabilities by the routes this app serves: a capability is listed only when its
    routes are here."""
    paths = {getattr(r, "path", "") for r in request.app.routes}
    table = {
        "intents": "/api/v1/intents",
        "events": "/api/v1/intents/{intent_id}/events",
        "agents": "/api/v1/intents/{intent_id}/agents",
        "state-patches": "/api/v1/intents/{intent_id}/state",
        "optimistic-concurrency": "/api/v1/intents/{intent_id}/state",
        "graphs": "/api/v1/intents/{intent_id}/graph",
        "leasing": "/api/v1/intents/{intent_id}/leases",
        "governance": "/api/v1/intents/{intent_id}/arbitrate",
        "attachments": "/api/v1/intents/{intent_id}/attachments",
        "cost-tracking": "/api/v1/intents/{intent_id}/costs",
        "retry-policies": "/api/v1/intents/{intent_id}/retry-policy",
        "portfolios": "/api/v1/portfolios",
        "subscriptions": "/api/v1/subscriptions",
        "sse": "/api/v1/intents/{intent_id}/subscribe",
    }
    return [name for name, path in table.items() if path in paths]


async def health(request: Request) -> Response:
    """Liveness and the bus behind it: 200 when Redis answers, 503 when it does not."""
    gw: Gateway = request.app.state.gateway
    await gw.base._runner.command("PING")
    return respond({"status": "ok", "namespace": gw.base.keyspace.namespace})


async def server_config(request: Request) -> Response:
    """The server's protocol version (the async reference SDK reads it; no auth)."""
    return respond({"protocol_version": "0.1", "implementation": "oibus"})


meta_routes: list[BaseRoute] = [
    Route("/.well-known/openintent.json", discovery, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/healthz", health, methods=["GET"]),
    Route("/api/v1/server/config", server_config, methods=["GET"]),
    *openapi.routes(),
]
