"""Reading requests and writing answers: bodies decoded once with msgspec under a size
and depth bound, query values checked, JSON answers encoded once. Every refusal is the
SDK's own typed error (a 400 or a 413 through the one error map), never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from oibus.bus.errors import PayloadTooLargeError, ValidationError

PAGE_MAX: Final = 1000
"""Largest page any listing gives at once (``limit``)."""
BODY_BYTES: Final = 1 << 20
"""Largest request body: above every payload and state limit the bus enforces itself."""

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body unless ``required``)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_BYTES:
        raise _too_large(int(declared))
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > BODY_BYTES:
            raise _too_large(len(raw))
    if not raw.strip():
        if required:
            raise ValidationError("a JSON object body is required", field="body")
        return {}
    try:
        value = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}", field="body") from None
    if not isinstance(value, dict):
        raise ValidationError("the body must be a JSON object", field="body")
    return value


def _too_large(size: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"the body is over {BODY_BYTES} bytes", field="body", limit=BODY_BYTES, size=size
    )


def respond(data: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(data), status, media_type="application/json")


def text_field(data: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """The first of ``names`` present and not null (the SDK and its server spell some
    fields differently): liberal in what it accepts."""
    for name in names:
        value = data.get(name)
        if value is not None:
            return value
    return default


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number", field=name) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be from {low} to {high}", field=name)
    return value


def query_time(request: Request, name: str) -> datetime | None:
    """An ISO 8601 time; one without an offset is taken as UTC (the reference SDK sends
    ``datetime.isoformat()`` of whatever it was given)."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{name} must be an ISO 8601 time", field=name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def if_match(request: Request) -> int | None:
    """The version in ``If-Match`` (the SDK sends a bare integer; an ETag's quotes and
    ``W/`` are accepted too), or None when absent (the write is then unconditional, as
    the SDK's ``version=None``)."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise ValidationError("If-Match must be the intent's version", field="If-Match")
    return int(text)


def path_param(request: Request, name: str = "intent_id") -> str:
    value: str = request.path_params[name]
    return value


def paging(request: Request, default: int = 100) -> tuple[int, str | None]:
    """``limit`` and ``cursor`` of a listing."""
    return (
        query_int(request, "limit", default, 1, PAGE_MAX),
        request.query_params.get("cursor") or None,
    )


def mapping(data: Mapping[str, Any], *names: str) -> dict[str, Any] | None:
    """A JSON object field (the first of ``names`` given), or None."""
    value = text_field(data, *names)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(f"{names[0]} must be a JSON object", field=names[0])
    return value


def strings(data: Mapping[str, Any], name: str) -> list[str] | None:
    """A list-of-ids field, or None."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"{name} must be a list of ids", field=name)
    return value
