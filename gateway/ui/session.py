"""Who is looking at the dashboard, and whether a form they sent may act.

A browser cannot put an API key in a header on a link it follows, so the dashboard
signs in once: the key is posted to ``/ui/login`` and kept in a cookie that scripts
cannot read (``HttpOnly``), that no other site's page can make the browser send
(``SameSite=Strict``) and that only ``/ui`` receives. Every page looks the key up again
(one HGET), so a revoked key stops working on the next click, as it does on the API.

Writes (replay, purge, revoke) are admin-only and CSRF-safe three ways: the cookie is
``SameSite=Strict``; a form must carry a token derived from the key (an HMAC of the key,
which a page of another origin cannot read); and a request whose ``Origin`` (or, without
one, ``Referer``) names another host is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from oibus.bus.apikeys import Role
from oibus.bus.errors import AccessDeniedError, AuthenticationError, PayloadTooLargeError
from oibus.gateway.context import Gateway
from oibus.gateway.keys import lookup

COOKIE: Final = "oibus_ui"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
SESSION_SECONDS: Final = 12 * 3600
FORM_BYTES: Final = 64 * 1024
"""The largest form the dashboard takes (ids of a page of dead letters fit many times)."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The principal a browser signed in as, its role, and its forms' CSRF token."""

    principal: str
    role: Role
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


def csrf_for(key: str) -> str:
    """Stateless: the same key gives the same token in every worker and after a restart;
    without the key (which the cookie hides from scripts) it cannot be made."""
    return hmac.new(key.encode(), b"oibus-ui-csrf/1", hashlib.sha256).hexdigest()


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


async def viewer_of_key(request: Request, key: str) -> Viewer:
    record = await lookup(gateway(request).base, key)
    if record is None:
        raise AuthenticationError("unknown API key: sign in with a key from `oibus keys add`")
    return Viewer(record.principal, record.role, csrf_for(key))


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer; AuthenticationError (a page answers it with the sign-in form)
    when the browser has no key or its key was revoked."""
    key = request.cookies.get(COOKIE)
    if not key:
        raise AuthenticationError("sign in with an API key to see the dashboard")
    return await viewer_of_key(request, key)


async def form(request: Request) -> dict[str, list[str]]:
    """A URL-encoded form, bounded in size; values by name (a name may repeat)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > FORM_BYTES:
            raise PayloadTooLargeError(
                f"the form is over {FORM_BYTES} bytes", field="body", limit=FORM_BYTES
            )
    return parse_qs(raw.decode("utf-8", "replace"), max_num_fields=2000)


def same_origin(request: Request) -> None:
    """Refuse a request a page of another origin made the browser send. Without either
    header (not a browser) the CSRF token alone decides."""
    origin = request.headers.get("origin")
    if origin == "null":
        raise AccessDeniedError("a request from an opaque origin may not act here")
    claimed = origin or request.headers.get("referer")
    if claimed and urlsplit(claimed).netloc != request.headers.get("host", ""):
        raise AccessDeniedError("this form was sent from another site: refused")


async def writer(request: Request) -> tuple[Viewer, dict[str, list[str]]]:
    """An admin's form, checked: same origin, its CSRF token (form field or header, as
    htmx sends it), then the role."""
    seen = await viewer(request)
    same_origin(request)
    fields = await form(request)
    token = (fields.get(CSRF_FIELD) or [request.headers.get(CSRF_HEADER, "")])[0]
    if not token or not hmac.compare_digest(token, seen.csrf):
        raise AccessDeniedError("the form's CSRF token is missing or wrong: reload the page")
    if not seen.admin:
        raise AccessDeniedError(
            f"this needs an admin key; {seen.principal}'s key is a {seen.role.value}'s"
        )
    return seen, fields


def sign_in(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        COOKIE,
        key,
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
