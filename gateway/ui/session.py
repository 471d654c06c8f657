"""Who is looking at the dashboard, and whether a form they sent may act.

A browser cannot put an API key in a header on a link it follows, so the dashboard signs
in once: the key is posted to ``/ui/login``, checked, and a random session token is set
in a cookie. The cookie never holds the key: the bus keeps ``{ns}:ui:s:<sha256(token)>``
-> the key's digest, with a TTL, and every page looks the key's record up again through
it (two reads), so a revoked key stops working on the next click, as on the API. The
cookie is ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` (no other
site's page can make the browser send it), only for ``/ui``, and ``Secure`` on https
(``OIBUS_UI_SECURE_COOKIE=1`` forces it behind a TLS proxy whose headers uvicorn does
not trust). It ends with the browser session; the bus forgets it after ``SESSION_SECONDS``
or at sign-out.

Writes (replay, purge, revoke) are admin-only and CSRF-safe three ways: the cookie is
``SameSite=Strict``; a form must carry a token derived from the session token (an HMAC,
which a page of another origin cannot read or make); and a request whose ``Origin`` (or,
without one, ``Referer``) names another host than the request's ``Host`` is refused (a
proxy in front must pass ``Host`` through).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from oibus.bus.apikeys import Role, decode_record, digest
from oibus.bus.errors import (
    AccessDeniedError,
    AuthenticationError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.gateway.context import Gateway
from oibus.gateway.keys import lookup

COOKIE: Final = "oibus_ui"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
SESSION_SECONDS: Final = 12 * 3600
FORM_BYTES: Final = 64 * 1024
"""The largest form the dashboard takes (ids of a page of dead letters fit many times)."""
FORM_FIELDS: Final = 2000


@dataclass(frozen=True, slots=True)
class Viewer:
    """The principal a browser signed in as, its role, and its forms' CSRF token."""

    principal: str
    role: Role
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


def csrf_for(token: str) -> str:
    """Stateless: the same session gives the same token in every worker and after a
    restart; without the session token (which the cookie hides from scripts) it cannot
    be made."""
    return hmac.new(token.encode(), b"oibus-ui-csrf/1", hashlib.sha256).hexdigest()


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.gateway
    return found


async def sign_in(request: Request, response: Response, key: str) -> None:
    """Check the key, start a session for it and set the cookie; AuthenticationError for
    an unknown key."""
    base = gateway(request).base
    if await lookup(base, key) is None:
        raise AuthenticationError("unknown API key: sign in with a key from `oibus keys add`")
    token = secrets.token_urlsafe(32)
    await base._runner.command(
        "SET", base.keyspace.ui_session(digest(token)), digest(key), "EX", SESSION_SECONDS
    )
    secure = request.url.scheme == "https" or os.environ.get("OIBUS_UI_SECURE_COOKIE") == "1"
    response.set_cookie(COOKIE, token, path="/ui", httponly=True, samesite="strict", secure=secure)


async def sign_out(request: Request, response: Response) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        base = gateway(request).base
        await base._runner.command("DEL", base.keyspace.ui_session(digest(token)))
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")


async def viewer(request: Request) -> Viewer:
    """The signed-in viewer; AuthenticationError (a page answers it with the sign-in form)
    when the browser has no session, it ended, or its key was revoked."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise AuthenticationError("sign in with an API key to see the dashboard")
    base = gateway(request).base
    key_digest = await base._runner.command("GET", base.keyspace.ui_session(digest(token)))
    text = None
    if key_digest is not None:
        text = await base._runner.command("HGET", base.keyspace.api_keys, key_digest)
    if text is None:
        raise AuthenticationError("this sign-in ended or its key was revoked: sign in again")
    record = decode_record(str(text))
    return Viewer(record.principal, record.role, csrf_for(token))


async def form(request: Request) -> dict[str, list[str]]:
    """A URL-encoded form, bounded in size and fields; values by name (a name may repeat)."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > FORM_BYTES:
            raise PayloadTooLargeError(
                f"the form is over {FORM_BYTES} bytes", field="body", limit=FORM_BYTES
            )
    try:
        return parse_qs(raw.decode("utf-8", "replace"), max_num_fields=FORM_FIELDS)
    except ValueError:
        raise ValidationError(f"the form has over {FORM_FIELDS} fields", field="body") from None


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
