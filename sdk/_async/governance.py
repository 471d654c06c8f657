"""Governance (RFC-0003) on the async client: arbitration requests, decision records and
delegation contracts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from oibus.bus import governance as gov
from oibus.bus.errors import NotFoundError, ValidationError
from oibus.bus.governance import ArbitrationRequest, DecisionRecord, Delegation
from oibus.bus.keyspace import check_id
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.sdk._async.base import AsyncClientBase


class AsyncGovernanceMixin(AsyncClientBase):
    # -- arbitration --------------------------------------------------------------------
    async def request_arbitration(
        self,
        intent_id: str,
        reason: str,
        options: Sequence[Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> ArbitrationRequest:
        """Ask for human or higher-authority arbitration; this agent is the requestor.
        ``options`` are the choices put to the arbiter (e.g. ``{"label", "rationale"}``
        objects). The request stays pending until ``resolve_arbitration``. Closed intents
        take no requests (IntentClosedError)."""
        call = gov.request_arbitration(
            self.keyspace, self._ops.actor, intent_id, str(uuid.uuid4()), reason, options, context
        )
        return gov.decode_arbitration(await self._run(call), intent_id)

    async def resolve_arbitration(
        self,
        intent_id: str,
        arbitration_id: str,
        resolution: str,
        rationale: str | None = None,
    ) -> ArbitrationRequest:
        """Resolve a pending request; this agent is recorded as the resolver. A request is
        resolved once: resolving it again raises ConflictError and changes nothing."""
        call = gov.resolve_arbitration(
            self.keyspace, self._ops.actor, intent_id, arbitration_id, resolution, rationale
        )
        return gov.decode_arbitration(await self._run(call), intent_id)

    async def get_arbitrations(
        self, intent_id: str, status: str | None = None
    ) -> list[ArbitrationRequest]:
        """The intent's arbitration requests, oldest first; ``status`` is ``"pending"`` or
        ``"resolved"`` to filter."""
        check_id(intent_id)
        wanted = gov.check_arbitration_status(status)
        raw, exists = await self._runner.commands(
            [
                ("HGETALL", self.keyspace.arbitrations(intent_id)),
                ("EXISTS", self.keyspace.intent(intent_id)),
            ]
        )
        if not exists:
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        found = [
            gov.decode_arbitration(text, intent_id) for text in cast(dict[str, str], raw).values()
        ]
        found.sort(key=lambda a: (a.created_at, a.id))
        return [a for a in found if wanted is None or a.status == wanted]

    # -- decisions ----------------------------------------------------------------------
    async def record_decision(
        self,
        intent_id: str,
        decision: str,
        rationale: str,
        evidence: Sequence[Any] | None = None,
        decided_by: str | None = None,
        *,
        decision_type: str | None = None,
        context: Mapping[str, Any] | None = None,
        alternatives: Sequence[Any] | None = None,
    ) -> DecisionRecord:
        """Append an immutable decision record. ``decided_by`` defaults to this agent (the
        recorder is kept apart as ``recorded_by``); ``evidence`` is a list (e.g.
        ``{"source", "summary"}`` objects); ``decision_type``, ``context`` and
        ``alternatives`` are the reference SDK's extras."""
        call = gov.record_decision(
            self.keyspace,
            self._ops.actor,
            intent_id,
            str(uuid.uuid4()),
            decision=decision,
            rationale=rationale,
            decided_by=decided_by,
            evidence=evidence,
            decision_type=decision_type,
            context=context,
            alternatives=alternatives,
        )
        return gov.decode_decision(await self._run(call), intent_id)

    async def get_decisions(
        self, intent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        """Decision records, oldest first; pass ``next_cursor`` back as ``cursor``."""
        check_id(intent_id)
        check_limit(limit)
        low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
        raw = await self._runner.command(
            "XRANGE", self.keyspace.decisions(intent_id), low, "+", "COUNT", limit
        )
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        if (
            not entries
            and cursor is None
            and not await self._runner.command("EXISTS", self.keyspace.intent(intent_id))
        ):
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        records = [gov.decode_decision(fields.get("d", ""), intent_id) for _, fields in entries]
        return Page(records, entries[-1][0] if len(entries) == limit else None)

    # -- delegations --------------------------------------------------------------------
    async def create_delegation(
        self,
        delegate: str,
        scope: Mapping[str, Sequence[str]],
        constraints: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        delegator: str | None = None,
    ) -> Delegation:
        """Delegate authority over ``scope`` (``{"intents": [ids], "actions": [names]}``)
        to ``delegate``, from ``delegator`` (default: this agent), with ``constraints``
        (e.g. ``{"max_cost": 1000}``), until ``expires_at`` (a timezone-aware datetime in
        the future by the server's clock) or revocation."""
        call = gov.create_delegation(
            self.keyspace,
            self._ops.actor,
            str(uuid.uuid4()),
            delegate=delegate,
            scope=scope,
            constraints=constraints,
            expires_at=expires_at,
            delegator=delegator,
        )
        now, text = await self._run(call)
        return gov.decode_delegation(text, int(now))

    async def get_delegations(
        self,
        delegator: str | None = None,
        delegate: str | None = None,
        include_expired: bool = False,
    ) -> list[Delegation]:
        """Delegation contracts of the namespace, oldest first, filtered by ``delegator``
        and/or ``delegate``. Only those in force (by the server's clock) unless
        ``include_expired``, which adds expired and revoked ones."""
        for name, value in (("delegator", delegator), ("delegate", delegate)):
            if value is not None and not isinstance(value, str):
                raise ValidationError(f"{name} must be a string", field=name)
        clock, raw = await self._runner.commands(
            [("TIME",), ("HGETALL", self.keyspace.delegations)]
        )
        now = gov.server_micros(clock)
        found = [
            d
            for d in (gov.decode_delegation(t, now) for t in cast(dict[str, str], raw).values())
            if (delegator is None or d.delegator == delegator)
            and (delegate is None or d.delegate == delegate)
            and (include_expired or d.status == "active")
        ]
        found.sort(key=lambda d: (d.created_at, d.id))
        return found

    async def revoke_delegation(self, delegation_id: str, reason: str) -> Delegation:
        """End a delegation in force; this agent and ``reason`` are recorded. A revoked or
        expired one is returned unchanged (a retried revoke is harmless)."""
        call = gov.revoke_delegation(self.keyspace, self._ops.actor, delegation_id, reason)
        now, text = await self._run(call)
        return gov.decode_delegation(text, int(now))
