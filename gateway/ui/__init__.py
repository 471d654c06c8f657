"""The dashboard (``/ui``): server-rendered pages on the same process, bus client and API
keys as the HTTP API, with htmx and cytoscape served from this package (no CDN, works
offline). docs/dashboard.md says what each page shows and what it costs the bus."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from oibus.bus.errors import AuthenticationError
from oibus.gateway.ui import agents, deadletters, graphs, intents, overview
from oibus.gateway.ui.render import page
from oibus.gateway.ui.session import form, same_origin, sign_in, sign_out

PREFIX = "/ui"


def _next(raw: str | None) -> str:
    """Where to go after signing in: a dashboard page only (never another site)."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return PREFIX + "/"


async def login_form(request: Request) -> Response:
    return page(request, "login.html", None, next=_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    same_origin(request)
    fields = await form(request)
    key = (fields.get("key") or [""])[0].strip()
    target = _next((fields.get("next") or [""])[0])
    answer = RedirectResponse(target, 303)
    try:
        if not key:
            raise AuthenticationError("paste an API key (`oibus keys add <name> --role reader`)")
        await sign_in(request, answer, key)
    except AuthenticationError as exc:
        return page(request, "login.html", None, status=401, next=target, error=exc.message)
    return answer


async def logout(request: Request) -> Response:
    same_origin(request)
    answer = RedirectResponse(PREFIX + "/login", 303)
    await sign_out(request, answer)
    return answer


def is_ui(request: Request) -> bool:
    path: str = request.url.path
    return path == PREFIX or path.startswith(PREFIX + "/")


# `/ui` itself is redirected to `/ui/` by the router (redirect_slashes)
routes: list[BaseRoute] = [
    Mount(
        PREFIX,
        routes=[
            Route("/login", login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Mount(
                "/static",
                app=StaticFiles(packages=[("oibus.gateway.ui", "static")]),
                name="ui-static",
            ),
            *overview.routes,
            *intents.routes,
            *graphs.routes,
            *deadletters.routes,
            *agents.routes,
        ],
    ),
]
