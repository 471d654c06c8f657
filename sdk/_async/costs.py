"""Costs and budgets (RFC-0009) on the async client: record a cost (within the intent's
budget), page through the records, read the running totals. The rules (types, units,
amounts, budgets) are in ``oibus.bus.costs``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, cast

from oibus.bus.costs import (
    CostRecord,
    CostSummary,
    decode_cost,
    decode_summary,
    record_cost_call,
    recorded,
)
from oibus.bus.errors import NotFoundError
from oibus.bus.keyspace import check_id
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.bus.ops import Call
from oibus.sdk._async.base import AsyncClientBase


def cost_call(
    client: AsyncClientBase,
    intent_id: str,
    cost_type: str,
    amount: float | Decimal,
    unit: str,
    provider: str | None,
    metadata: Mapping[str, Any] | None,
) -> Call:
    """The ``record_cost`` script call with a new record id: the single call and a
    batch's queued one are built here."""
    return record_cost_call(
        client.keyspace,
        client._ops.actor,
        str(uuid.uuid4()),
        intent_id,
        cost_type,
        amount,
        unit,
        provider,
        metadata,
    )


class AsyncCostsMixin(AsyncClientBase):
    async def record_cost(
        self,
        intent_id: str,
        cost_type: str,
        amount: float | Decimal,
        unit: str,
        provider: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> CostRecord:
        """Record a cost spent by this client's agent on the intent. ``cost_type`` is one of
        tokens, api_call, compute, custom; ``amount`` a number from 0 to 10^9 ``unit``s,
        kept to six decimal places. BudgetExceededError (nothing recorded) when it would
        pass a limit of the intent's budget; a ``budget_alert`` event when it reaches an
        alert threshold (see ``oibus.bus.costs``)."""
        call = cost_call(self, intent_id, cost_type, amount, unit, provider, metadata)
        return recorded(call, await self._run(call))

    async def get_costs(
        self, intent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[CostRecord]:
        """The intent's cost records, oldest first; pass ``next_cursor`` back as ``cursor``."""
        check_id(intent_id)
        check_limit(limit)
        low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
        raw = await self._runner.command(
            "XRANGE", self.keyspace.costs(intent_id), low, "+", "COUNT", limit + 1
        )
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        records = [decode_cost(intent_id, fields) for _, fields in entries[:limit]]
        if len(entries) > limit:
            return Page(records, entries[limit - 1][0])
        if not entries and cursor is None:
            await self._check_exists(intent_id)
        return Page(records, None)

    async def get_cost_summary(self, intent_id: str) -> CostSummary:
        """Running totals: ``total``, ``count``, ``by_type``, ``by_agent``, ``by_provider``,
        ``by_unit`` and the alert thresholds fired; one read of the summary hash, however
        many records there are. Attributes or items: ``summary["by_type"]``."""
        check_id(intent_id)
        flat = await self._runner.command("HGETALL", self.keyspace.cost_summary(intent_id))
        if not flat:
            await self._check_exists(intent_id)
        return decode_summary(intent_id, cast("dict[str, str]", flat or {}))

    async def _check_exists(self, intent_id: str) -> None:
        if not await self._runner.command("EXISTS", self.keyspace.intent(intent_id)):
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
