"""One error map: every oibus error to an HTTP status and a body the reference SDK turns
into its own typed exception.

The SDK reads ``message`` (400, 409), ``errors`` (400), ``current_version`` and
``existing_lease`` (409), and tells a lease conflict from a version conflict by whether
the word "lease" appears anywhere in the 409 body; FastAPI-style clients read ``detail``.
Every body carries ``detail``, ``message`` and oibus's ``code``; nothing here ever answers
a 500 for bad input (a 500 is a bug, logged with its traceback).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from oibus.bus import errors as e

_log = logging.getLogger("oibus.gateway")
_encoder = msgspec.json.Encoder()

STATUS: list[tuple[type[e.OpenIntentError], int]] = [
    (e.PayloadTooLargeError, 413),
    (e.ValidationError, 400),
    (e.AuthenticationError, 401),
    (e.AccessDeniedError, 403),
    (e.BudgetExceededError, 403),
    (e.NotFoundError, 404),
    (e.ConflictError, 409),
    (e.InvalidTransitionError, 409),
    (e.IntentClosedError, 409),
    (e.ConfigurationError, 400),
    (e.BusFullError, 507),
    (e.PermissionDeniedError, 503),
    (e.BusConnectionError, 503),
    (e.BusTimeoutError, 504),
]
"""Most specific first: the first class the error is an instance of decides."""


def status_of(exc: e.OpenIntentError) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def body_of(exc: e.OpenIntentError, status: int) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": exc.message, "message": exc.message, "code": exc.code}
    details = {k: v for k, v in exc.details.items() if v is not None}
    if isinstance(exc, e.ValidationError):
        body["errors"] = [{"field": exc.field, "message": exc.message}]
    if isinstance(exc, e.LeaseConflictError):
        body["existing_lease"] = {
            k: details[k] for k in ("holder", "scope", "expires_at") if k in details
        }
    elif isinstance(exc, e.ConflictError):
        body["current_version"] = exc.current_version
    if isinstance(exc, e.NotFoundError | e.InvalidTransitionError):
        body.update({k: v for k, v in details.items() if isinstance(v, str | int)})
    if status >= 500:
        body["detail"] = body["message"] = f"the bus is unavailable: {exc.message}"
    return body


def error_response(exc: e.OpenIntentError, extra: dict[str, Any] | None = None) -> Response:
    status = status_of(exc)
    body = body_of(exc, status)
    if extra:
        body.update(extra)
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    return Response(_encoder.encode(body), status, headers, media_type="application/json")


async def on_oibus_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, e.OpenIntentError)
    if status_of(exc) == 500:
        _log.error("%s %s: %r", request.method, request.url.path, exc, exc_info=exc)
    return error_response(exc)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered without one."""
    _log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    body = {"detail": "internal error", "message": "internal error", "code": "INTERNAL"}
    return Response(_encoder.encode(body), 500, media_type="application/json")
