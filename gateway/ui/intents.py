"""The intents: a filtered, cursor-paged list and one intent's page (state, the live
event log, leases, costs against budget, retries, attachments), with the lease revoke
an admin may do from it.

Every read is paged or capped: a list page reads at most ``SCAN`` intents whatever the
filter (a filter the indexes cannot answer, an agent or words of the title, is applied
to what is read, and the page then ends early with a cursor to go on), and an intent's
page reads the newest ``EVENTS`` events, then follows the log live over SSE from there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from oibus.bus.codec import index_member, to_micros
from oibus.bus.costs import budget_total
from oibus.bus.errors import ValidationError
from oibus.bus.listing import check_cursor
from oibus.bus.models import Intent
from oibus.bus.portfolios import PortfolioMember
from oibus.bus.statuses import IntentStatus
from oibus.gateway import streams
from oibus.gateway.http import path_param
from oibus.gateway.shapes import REFERENCE_TYPES
from oibus.gateway.streams import intent_events
from oibus.gateway.ui.render import page
from oibus.gateway.ui.session import gateway, viewer, writer
from oibus.sdk._async.client import AsyncClient

PAGE: Final = 50
SCAN: Final = 2000
"""Intents one list page looks at, at most, for filters the indexes cannot answer."""
EVENTS: Final = 100
FAILURES: Final = 50
LIVE_SECONDS: Final = 60.0
"""A live log's stream ends after this and the browser reconnects from its last event,
signed in again: a revoked key stops seeing events within a minute."""
FRAME_TYPES: Final = sorted({*REFERENCE_TYPES, "comment"})
"""The SSE event names the live log can receive (an EventSource listens by name)."""


@dataclass(frozen=True)
class Filters:
    status: str | None
    creator: str | None
    agent: str | None
    portfolio: str | None
    text: str | None

    @property
    def narrows(self) -> bool:
        """Whether a filter applies that no index answers."""
        return bool(self.agent or self.text)

    def keep(self, intent: Intent) -> bool:
        if self.agent and self.agent not in intent.assigned_agents:
            return False
        if self.status and intent.status != self.status:
            return False
        if self.creator and intent.created_by != self.creator:
            return False
        return not self.text or self.text.casefold() in intent.title.casefold()

    def query(self) -> dict[str, str]:
        pairs = {
            "status": self.status,
            "creator": self.creator,
            "agent": self.agent,
            "portfolio": self.portfolio,
            "q": self.text,
        }
        return {k: v for k, v in pairs.items() if v}


def filters(request: Request) -> Filters:
    q = request.query_params

    def text(name: str, limit: int = 256) -> str | None:
        value = (q.get(name) or "").strip()
        if len(value) > limit:
            raise ValidationError(f"{name} must be at most {limit} characters", field=name)
        return value or None

    status = text("status")
    if status is not None and status not in {s.value for s in IntentStatus}:
        raise ValidationError(f"no status {status!r}", field="status")
    return Filters(status, text("creator"), text("agent"), text("portfolio"), text("q"))


async def _listed(
    client: AsyncClient, f: Filters, cursor: str | None
) -> tuple[list[Intent], str | None, int]:
    """A page from the indexes (status, creator), the other filters applied to what is
    read; the cursor is exact (the last intent looked at), so nothing is skipped."""
    found: list[Intent] = []
    scanned = 0
    position = check_cursor(cursor)
    # one index only: with both a creator and a status, list_intents would filter the
    # creator's index itself, reading more than it returns (not counted against SCAN)
    status = None if f.creator else f.status
    while True:
        batch = await client.list_intents(
            status=status,
            created_by=f.creator,
            limit=PAGE * 4 if f.narrows or status != f.status else PAGE,
            cursor=position,
        )
        for intent in batch:
            scanned += 1
            position = index_member(intent.created_at, intent.id)
            if f.keep(intent):
                found.append(intent)
                if len(found) == PAGE:
                    return found, position, scanned
        if batch.next_cursor is None:
            return found, None, scanned
        position = batch.next_cursor
        if scanned >= SCAN:
            return found, position, scanned


def _member_order(member: PortfolioMember) -> tuple[int, str]:
    return to_micros(member.added_at, "added_at"), member.intent_id


def _member_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    micros, _, intent_id = cursor.partition(":")
    if not (micros.isascii() and micros.isdigit() and len(micros) <= 18 and intent_id):
        raise ValidationError("cursor is not one this listing returned", field="cursor")
    return int(micros), intent_id


async def _members(
    client: AsyncClient, f: Filters, cursor: str | None
) -> tuple[list[Intent], str | None, int]:
    """A portfolio's members, newest added first; the cursor is the last member looked
    at (when it was added, its id), so members added or removed between pages neither
    repeat nor push others out."""
    assert f.portfolio is not None
    after = _member_cursor(cursor)
    portfolio = await client.get_portfolio(f.portfolio)
    members = sorted(portfolio.intents, key=_member_order, reverse=True)
    if after is not None:
        members = [m for m in members if _member_order(m) < after]
    found: list[Intent] = []
    looked = 0
    while looked < len(members) and looked < SCAN and len(found) < PAGE:
        chunk = members[looked : looked + PAGE]
        found += [i for i in await client._fetch_intents([m.intent_id for m in chunk]) if f.keep(i)]
        looked += len(chunk)
    if looked >= len(members):
        return found, None, looked
    micros, intent_id = _member_order(members[looked - 1])
    return found, f"{micros}:{intent_id}", looked


async def intents_page(request: Request) -> Response:
    seen = await viewer(request)
    client = gateway(request).base
    f = filters(request)
    cursor = request.query_params.get("cursor") or None
    lister = _members if f.portfolio else _listed
    rows, more, scanned = await lister(client, f, cursor)
    return page(
        request,
        "intents.html",
        seen,
        section="intents",
        rows=rows,
        filters=f,
        more=more,
        scanned=scanned,
        cursor=cursor,
    )


async def intent_page(request: Request) -> Response:
    seen = await viewer(request)
    client = gateway(request).base
    intent = await client.get_intent(path_param(request))
    events = list(reversed(await client.get_events(intent.id, limit=EVENTS, reverse=True)))
    summary = await client.get_cost_summary(intent.id)
    limit, unit = budget_total(intent.constraints)
    spent = summary.by_unit.get(unit, 0)
    children = await client.get_children(intent.id, limit=PAGE)
    return page(
        request,
        "intent.html",
        seen,
        section="intents",
        intent=intent,
        events=events,
        last_event=events[-1].id if events else "0",
        more_events=len(events) == EVENTS,
        frame_types=" ".join(FRAME_TYPES),
        leases=await client.get_leases(intent.id),
        costs=summary,
        budget=None if limit is None else _budget(limit, unit, spent),
        retry=await client.get_retry_policy(intent.id),
        failures=await client.get_failures(intent.id, limit=FAILURES),
        attachments=await client.get_attachments(intent.id),
        children=children,
        more_children=children.next_cursor is not None,
    )


def _budget(limit: Decimal, unit: str, spent: float) -> dict[str, Any]:
    share = float(spent) / float(limit) * 100 if limit else (100.0 if spent else 0.0)
    return {"limit": limit, "unit": unit, "spent": spent, "percent": min(share, 100.0)}


async def intent_live(request: Request) -> Response:
    """The intent's log as SSE from the event after ``last_event_id`` (or after the
    browser's ``Last-Event-ID`` when it reconnects): the API's own stream, signed in by
    the dashboard's cookie, for ``LIVE_SECONDS`` at a time."""
    await viewer(request)
    settings = replace(streams.SETTINGS, max_seconds=LIVE_SECONDS)
    return await intent_events(request, gateway(request).base, settings)


async def revoke(request: Request) -> Response:
    seen, fields = await writer(request)
    intent_id = path_param(request)
    lease_id = path_param(request, "lease_id")
    given = (fields.get("reason") or [""])[0].strip()
    reason = given or f"revoked from the dashboard by {seen.principal}"
    # the admin is the actor of the lease_revoked event, as on the API
    await gateway(request).client_for(seen.principal).revoke_lease(intent_id, lease_id, reason)
    return RedirectResponse(f"/ui/intents/{intent_id}#leases", 303)


routes: list[Any] = [
    Route("/intents", intents_page, methods=["GET"]),
    Route("/intents/{intent_id}", intent_page, methods=["GET"]),
    Route("/intents/{intent_id}/live", intent_live, methods=["GET"]),
    Route("/intents/{intent_id}/leases/{lease_id}/revoke", revoke, methods=["POST"]),
]
