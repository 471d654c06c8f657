"""The three dead-letter stores, as ``oibus dlq`` shows and works them: list (paged),
inspect, replay and purge, through the same functions (daemon/deadletters.py).

Replaying a whole store shows its progress: with htmx, each POST replays the next
``CHUNK`` letters up to the newest one present when the replay began (letters that
arrive meanwhile wait for the next replay, as on the CLI) and answers the progress bar,
which posts the next chunk itself until it reaches that mark. Purge asks first, on a
page of its own, and only a POST from that page deletes."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from oibus.bus.errors import ValidationError
from oibus.bus.listing import check_event_cursor
from oibus.daemon.admin import dead_letter_sizes
from oibus.daemon.deadletters import (
    KINDS,
    check_kind,
    get_letter,
    list_letters,
    purge,
    replay,
    size,
    store,
)
from oibus.gateway.http import path_param
from oibus.gateway.ui.render import is_fragment, page
from oibus.gateway.ui.session import Viewer, gateway, viewer, writer

PAGE: Final = 50
CHUNK: Final = 50


def _kind(request: Request) -> str:
    return check_kind(path_param(request, "kind"))


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = check_event_cursor(entry_id, "id").partition("-")
    return int(ms), int(seq)


def _ids(fields: dict[str, list[str]]) -> list[str]:
    ids = [check_event_cursor(i, "id") for i in fields.get("id", [])]
    if len(ids) > 1000:
        raise ValidationError("at most 1000 letters at a time", field="id")
    return ids


def _all(fields: dict[str, list[str]]) -> bool:
    return (fields.get("all") or [""])[0] == "yes"


def _number(fields: dict[str, list[str]], name: str) -> int:
    raw = (fields.get(name) or ["0"])[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ValidationError(f"{name} must be a whole number", field=name)
    return int(raw)


def _back(kind: str, **said: int | str) -> Response:
    return RedirectResponse(f"/ui/dead-letters/{kind}?{urlencode(said)}", 303)


async def letters_page(request: Request) -> Response:
    seen = await viewer(request)
    client = gateway(request).base
    kind = _kind(request)
    cursor = request.query_params.get("cursor") or None
    found = await list_letters(client, kind, limit=PAGE, cursor=cursor)
    q = request.query_params
    return page(
        request,
        "dead_letters.html",
        seen,
        section="dead-letters",
        kind=kind,
        kinds=KINDS,
        sizes=await dead_letter_sizes(client),
        letters=found,
        more=found.next_cursor,
        said=_said(q),
    )


def _said(q: Any) -> dict[str, int]:
    """What the last action reported (the redirect's query), as numbers; anything else
    in the query is ignored rather than shown."""
    said: dict[str, int] = {}
    for name in ("replayed", "skipped", "purged", "more"):
        raw = q.get(name, "")
        if raw.isascii() and raw.isdigit() and len(raw) <= 18:
            said[name] = int(raw)
    if "replayed" in said:
        said.setdefault("skipped", 0)
        said.setdefault("more", 0)
    return said


async def letters_index(request: Request) -> Response:
    await viewer(request)
    return RedirectResponse("/ui/dead-letters/webhooks", 303)


async def letter_page(request: Request) -> Response:
    seen = await viewer(request)
    kind = _kind(request)
    letter = await get_letter(gateway(request).base, kind, path_param(request, "letter_id"))
    return page(request, "dead_letter.html", seen, section="dead-letters", kind=kind, letter=letter)


async def replay_letters(request: Request) -> Response:
    """The letters a form names (checked boxes, or one letter's page); or, with
    ``all=yes``, the whole store: chunk by chunk with a progress bar under htmx, one
    chunk per click without it (the page says how many remain)."""
    seen, fields = await writer(request)
    client = gateway(request).base
    kind = _kind(request)
    ids = _ids(fields)
    if ids:
        result = await replay(client, kind, ids)
        return _back(kind, replayed=result.replayed, skipped=len(result.skipped))
    if not _all(fields):
        raise ValidationError("tick the letters to replay, or replay all", field="id")
    if is_fragment(request):
        return await _replay_chunk(request, seen, kind, fields)
    chunk = await list_letters(client, kind, limit=CHUNK)
    result = await replay(client, kind, [letter.id for letter in chunk])
    more = max(0, await size(client, kind) - len(result.skipped))
    return _back(kind, replayed=result.replayed, skipped=len(result.skipped), more=more)


async def _replay_chunk(
    request: Request, seen: Viewer, kind: str, fields: dict[str, list[str]]
) -> Response:
    client = gateway(request).base

    high = (fields.get("high") or [""])[0]
    after = (fields.get("after") or [""])[0] or None
    if after is not None:
        check_event_cursor(after, "after")
    if not high:  # the first chunk: mark the newest letter present now
        newest = await client._runner.command(
            "XREVRANGE", store(client.keyspace, kind), "+", "-", "COUNT", 1
        )
        if not newest:
            return page(
                request,
                "_replay.html",
                seen,
                kind=kind,
                done=True,
                replayed=0,
                skipped=0,
                total=0,
                looked=0,
                high="",
                after="",
            )
        high = newest[0][0]
        total = await size(client, kind)
    else:
        high = check_event_cursor(high, "high")
        total = _number(fields, "total")
    chunk = await list_letters(client, kind, limit=CHUNK, cursor=after)
    ids = [letter.id for letter in chunk if _order(letter.id) <= _order(high)]
    result = await replay(client, kind, ids) if ids else None
    replayed = _number(fields, "replayed") + (result.replayed if result else 0)
    skipped = _number(fields, "skipped") + (len(result.skipped) if result else 0)
    looked = _number(fields, "looked") + len(ids)
    done = not ids or ids[-1] == high or len(ids) < len(chunk) or chunk.next_cursor is None
    return page(
        request,
        "_replay.html",
        seen,
        kind=kind,
        done=done,
        high=high,
        after=ids[-1] if ids else "",
        total=max(total, looked),
        looked=looked,
        replayed=replayed,
        skipped=skipped,
    )


async def purge_confirm(request: Request) -> Response:
    """What a purge would delete, and the button that does it."""
    seen = await viewer(request)
    kind = _kind(request)
    ids = [check_event_cursor(i, "id") for i in request.query_params.getlist("id")]
    count = len(ids) if ids else await size(gateway(request).base, kind)
    return page(
        request, "purge.html", seen, section="dead-letters", kind=kind, ids=ids, count=count
    )


async def purge_letters(request: Request) -> Response:
    """Checked boxes arrive here first (a POST, so the CSRF token never travels in a
    URL) and get the confirmation page; only its own form, with ``confirmed=yes``,
    deletes."""
    seen, fields = await writer(request)
    kind = _kind(request)
    ids = _ids(fields)
    if not ids and not _all(fields):
        raise ValidationError("tick the letters to purge, or purge all", field="id")
    if (fields.get("confirmed") or [""])[0] != "yes":
        count = len(ids) if ids else await size(gateway(request).base, kind)
        return page(
            request, "purge.html", seen, section="dead-letters", kind=kind, ids=ids, count=count
        )
    deleted = await purge(gateway(request).base, kind, ids or None)
    return _back(kind, purged=deleted)


routes = [
    Route("/dead-letters", letters_index, methods=["GET"]),
    Route("/dead-letters/{kind}", letters_page, methods=["GET"]),
    Route("/dead-letters/{kind}/replay", replay_letters, methods=["POST"]),
    Route("/dead-letters/{kind}/purge", purge_confirm, methods=["GET"]),
    Route("/dead-letters/{kind}/purge", purge_letters, methods=["POST"]),
    Route("/dead-letters/{kind}/{letter_id}", letter_page, methods=["GET"]),
]
