"""Pages from templates: one Jinja environment with autoescaping on (every title, state
value, error message and event payload on these pages is text someone else stored), the
filters the templates share, the headers every page carries, and the HTML answer to an
error (the API's one error map decides the status)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from oibus import _version
from oibus.bus.errors import OpenIntentError
from oibus.gateway.errors import status_of
from oibus.gateway.ui.session import Viewer

_log = logging.getLogger("oibus.gateway")

HEADERS: Final = {
    # scripts only from this server (no inline script, no eval); inline style attributes
    # are allowed for the bars' widths
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # live figures and a CSRF token: never from a cache
    "Cache-Control": "no-store",
}

STATUS_ORDER: Final = (
    "draft",
    "active",
    "blocked",
    "suspended_awaiting_input",
    "completed",
    "abandoned",
)


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return span(seconds) + (" ago" if seconds >= 0 else " from now")


def span(seconds: float) -> str:
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def percent(part: float, whole: float) -> float:
    return 0.0 if not whole else max(0.0, min(100.0, 100.0 * part / whole))


def pretty(value: Any) -> str:
    """JSON for reading: indented, keys in stored order."""
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("oibus.gateway.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, size=size, pretty=pretty, span=span)
    env.globals.update(percent=percent, version=_version.__version__, statuses=STATUS_ORDER)
    return env


templates = Jinja2Templates(env=_environment())


def page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    context.setdefault("section", "")
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, **context},
        status_code=status,
        headers=HEADERS,
    )


def is_fragment(request: Request) -> bool:
    """An htmx request: answered with the part of the page it swaps in."""
    return request.headers.get("hx-request") == "true"


def error_page(request: Request, exc: Exception) -> Response:
    """A refusal in the dashboard: no key sends the browser to sign in; anything else is
    the API's status with a page that says why (a 500 only for a bug, logged)."""
    if isinstance(exc, OpenIntentError):
        status, message = status_of(exc), exc.message
    else:
        _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        status, message = 500, "internal error"
    if status == 500 and isinstance(exc, OpenIntentError):
        _log.error("%s %s: %r", request.method, request.url.path, exc, exc_info=exc)
    if status == 401:
        if is_fragment(request):
            return Response(status_code=401, headers={"HX-Redirect": "/ui/login"})
        if request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", 303)
    return status_page(request, status, message)


def status_page(request: Request, status: int, message: str) -> Response:
    return page(request, "error.html", None, status=status, code=status, message=message)
