"""Portfolios (RFC-0004/0007) on the async client: create, read, list and close
portfolios, add and remove members, and keep aggregates current after status moves.

A membership change is two scripts in two slots (the portfolio's, then the member's),
then a sync of the member's current status; ``repair_portfolio_link`` finishes the second
step from the portfolio's bus entry when a client died in between. The rules and the
records are in ``oibus.bus.portfolios``; the design in ``docs/portfolios.md``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from oibus.bus import limits
from oibus.bus.codec import decode_event, index_member_id, to_datetime
from oibus.bus.errors import NotFoundError, OpenIntentError, PayloadTooLargeError
from oibus.bus.keyspace import check_id
from oibus.bus.listing import check_cursor, check_event_cursor, check_limit, merge_newest
from oibus.bus.models import Event, Intent, Page
from oibus.bus.moves import Move
from oibus.bus.portfolios import (
    Portfolio,
    PortfolioCosts,
    PortfolioMember,
    add_member_call,
    check_priority,
    check_role,
    check_status,
    create_call,
    decode_links,
    decode_portfolio,
    link_call,
    remove_member_call,
    repair_target,
    status_call,
    sum_costs,
    sync_calls,
)
from oibus.sdk._async.base import AsyncClientBase

_log = logging.getLogger("oibus.portfolios")


class AsyncPortfoliosMixin(AsyncClientBase):
    async def create_portfolio(
        self,
        name: str,
        description: str | None = None,
        governance_policy: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        portfolio_id: str | None = None,
        created_by: str | None = None,
    ) -> Portfolio:
        """Create an active, empty portfolio. ``governance_policy`` takes
        ``require_all_completed``, ``allow_partial_completion``, ``auto_complete_threshold``
        (a percentage) and ``shared_constraints``, plus any fields of your own, kept
        verbatim. Pass ``portfolio_id`` (e.g. the group of its members' ids) to place it in
        the same slot as its members; an id in use raises AlreadyExistsError."""
        pid = portfolio_id if portfolio_id is not None else str(uuid.uuid4())
        call = create_call(
            self.keyspace,
            self._ops.actor,
            pid,
            name,
            description,
            governance_policy,
            metadata,
            created_by if created_by is not None else self.agent_id,
        )
        return decode_portfolio(pid, await self._run(call))

    async def get_portfolio(self, portfolio_id: str) -> Portfolio:
        """The portfolio with its members (highest priority first) and aggregate status;
        one round trip to the portfolio's slot, however the members are spread."""
        pid = check_id(portfolio_id, "portfolio_id")
        record, roster = await self._runner.commands(
            [
                ("HGETALL", self.keyspace.portfolio(pid)),
                ("HGETALL", self.keyspace.portfolio_roster(pid)),
            ]
        )
        return decode_portfolio(pid, record, roster)

    async def list_portfolios(
        self, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[Portfolio]:
        """Newest first, without members, all or those in one status (each status has its
        own index, so a filtered page reads no more than an unfiltered one); pass
        ``page.next_cursor`` back as ``cursor``."""
        check_limit(limit)
        wanted = None if status is None else str(check_status(status))
        high = "+" if cursor is None else "(" + str(check_cursor(cursor))
        if not self._meta_checked:
            await self._check_meta()
        index = self.keyspace.index_portfolios
        per_partition = await self._runner.commands(
            [
                ("ZRANGE", index(p, wanted), high, "-", "BYLEX", "REV", "LIMIT", 0, limit)
                for p in range(self.keyspace.partitions)
            ]
        )
        members = merge_newest(per_partition, limit)
        ids = [index_member_id(m) for m in members]
        records = await self._runner.commands(
            [("HGETALL", self.keyspace.portfolio(i)) for i in ids]
        )
        found = [decode_portfolio(i, r) for i, r in zip(ids, records, strict=True)]
        return Page(found, members[-1] if len(members) == limit else None)

    async def update_portfolio_status(
        self, portfolio_id: str, status: str, reason: str | None = None
    ) -> Portfolio:
        """Complete or abandon an active portfolio (InvalidTransitionError otherwise);
        returns it without members (``get_portfolio`` reads them)."""
        call = status_call(self.keyspace, self._ops.actor, portfolio_id, status, reason)
        return decode_portfolio(portfolio_id, await self._run(call))

    async def add_intent_to_portfolio(
        self, portfolio_id: str, intent_id: str, role: str = "member", priority: int = 0
    ) -> PortfolioMember:
        """Add a member. AlreadyExistsError for a member already in; ConflictError for a
        second primary; IntentClosedError when the portfolio is completed or abandoned.
        The portfolio records it first, then the intent, then the intent's current status
        is synced, so a move made meanwhile is counted (see docs/portfolios.md)."""
        pid = check_id(portfolio_id, "portfolio_id")
        check_id(intent_id)
        role = check_role(role)
        priority = check_priority(priority)
        if not self._meta_checked:
            await self._check_meta()
        status, links = await self._runner.command(
            "HMGET", self.keyspace.intent(intent_id), "status", "pf"
        )
        if status is None:
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        linked = decode_links(links)
        if pid not in linked and len(linked) >= limits.PORTFOLIOS_PER_INTENT:
            raise PayloadTooLargeError(
                f"intent {intent_id} is in {limits.PORTFOLIOS_PER_INTENT} portfolios, the most",
                field="intent_id",
                limit=limits.PORTFOLIOS_PER_INTENT,
            )
        call = add_member_call(
            self.keyspace, self._ops.actor, pid, intent_id, role, priority, status
        )
        token, _, added = await self._run(call)
        move = await self._link(pid, intent_id, int(token), role)
        return PortfolioMember(
            intent_id=intent_id,
            role=role,
            priority=priority,
            status=move.status,
            version=move.version,
            added_at=to_datetime(added),
        )

    async def remove_intent_from_portfolio(self, portfolio_id: str, intent_id: str) -> None:
        """Take a member out (NotFoundError if it is not one): the portfolio first, then
        the intent's own list of portfolios."""
        call = remove_member_call(self.keyspace, self._ops.actor, portfolio_id, intent_id)
        token, _ = await self._run(call)
        await self._link(portfolio_id, intent_id, int(token), None)

    async def _link(self, pid: str, intent_id: str, token: int, role: str | None) -> Move:
        """Step 2 of a membership change, then (for an add) the sync of the member's
        status as step 2 read it. Idempotent: the token orders repeated or late steps."""
        call = link_call(self.keyspace, self._ops.actor, intent_id, pid, token, role)
        try:
            _, status, version = await self._run(call)
        except PayloadTooLargeError:
            if role is not None:
                await self._undo_add(pid, intent_id, token)
            raise
        move = Move(intent_id, str(status), int(version), [pid] if role is not None else [])
        await self._sync_portfolios([move])  # not a status change: no other hook's business
        return move

    async def _undo_add(self, pid: str, intent_id: str, token: int) -> None:
        """The intent joined its last allowed portfolio in a race: take this membership
        (only this one: its token) out of the portfolio again, and leave the removal's
        tombstone on the intent so that no late repeat of the add applies."""
        call = remove_member_call(self.keyspace, self._ops.actor, pid, intent_id, token)
        try:
            removal, _ = await self._run(call)
        except NotFoundError:
            return  # undone already (the client and a repair both got here)
        undo = link_call(self.keyspace, self._ops.actor, intent_id, pid, int(removal), None)
        await self._run(undo)

    async def repair_portfolio_link(self, fields: Mapping[str, str]) -> bool:
        """Finish a membership change from its entry on the portfolio's partition bus
        (``added_to_portfolio`` / ``removed_from_portfolio``, ``k=portfolio``): what the
        daemon calls for entries it finds, because the client that made them may have
        died between the two steps. Safe to call any number of times, in any order:
        returns False for entries that are not membership changes."""
        target = repair_target(fields)
        if target is None:
            return False
        pid, event_id, token = target
        check_event_cursor(event_id, "entry")
        raw = await self._runner.command(
            "XRANGE", self.keyspace.portfolio_events(pid), event_id, event_id
        )
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        if not entries:
            raise NotFoundError(f"portfolio event {event_id} does not exist", resource="event")
        payload = decode_event(pid, event_id, entries[0][1]).payload
        intent_id = check_id(payload.get("intent_id"))
        role = check_role(payload.get("role")) if fields["t"] == "added_to_portfolio" else None
        await self._link(pid, intent_id, token, role)
        return True

    async def get_portfolio_intents(self, portfolio_id: str) -> list[Intent]:
        """The member intents, highest priority first (at most ``PORTFOLIO_MEMBERS``)."""
        pid = check_id(portfolio_id, "portfolio_id")
        if not self._meta_checked:
            await self._check_meta()
        ids, exists = await self._runner.commands(
            [
                ("ZRANGE", self.keyspace.portfolio_members(pid), 0, -1, "REV"),
                ("EXISTS", self.keyspace.portfolio(pid)),
            ]
        )
        if not exists:
            raise NotFoundError(f"portfolio {pid} does not exist", resource="portfolio", id=pid)
        return await self._fetch_intents(ids)

    async def get_intent_portfolios(self, intent_id: str) -> list[Portfolio]:
        """The portfolios the intent belongs to (without their members): their
        ``governance_policy`` and ``shared_constraints`` are what applies to it."""
        check_id(intent_id)
        version, links = await self._runner.command(
            "HMGET", self.keyspace.intent(intent_id), "version", "pf"
        )
        if version is None:
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
        pids = decode_links(links)
        records = await self._runner.commands(
            [("HGETALL", self.keyspace.portfolio(p)) for p in pids]
        )
        return [decode_portfolio(p, r) for p, r in zip(pids, records, strict=True) if r]

    async def get_portfolio_costs(self, portfolio_id: str) -> PortfolioCosts:
        """RFC-0009 across the portfolio: the members' cost summaries added exactly (one
        read per member, at most ``PORTFOLIO_MEMBERS``)."""
        pid = check_id(portfolio_id, "portfolio_id")
        ids, exists = await self._runner.commands(
            [
                ("ZRANGE", self.keyspace.portfolio_members(pid), 0, -1),
                ("EXISTS", self.keyspace.portfolio(pid)),
            ]
        )
        if not exists:
            raise NotFoundError(f"portfolio {pid} does not exist", resource="portfolio", id=pid)
        flats = await self._runner.commands(
            [("HGETALL", self.keyspace.cost_summary(i)) for i in ids]
        )
        return sum_costs(pid, dict(zip(ids, flats, strict=True)))

    async def get_portfolio_events(
        self, portfolio_id: str, limit: int = 100, after: str | None = None
    ) -> Page[Event]:
        """The portfolio's own log, oldest first (``Event.intent_id`` holds the portfolio
        id); pass ``next_cursor`` back as ``after``."""
        pid = check_id(portfolio_id, "portfolio_id")
        check_limit(limit)
        low = "-" if after is None else "(" + check_event_cursor(after)
        raw = await self._runner.command(
            "XRANGE", self.keyspace.portfolio_events(pid), low, "+", "COUNT", limit
        )
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        events = [decode_event(pid, entry_id, fields) for entry_id, fields in entries]
        if not events and after is None:
            await self.get_portfolio(pid)  # NotFoundError for an unknown portfolio
        return Page(events, events[-1].id if len(events) == limit else None)

    async def _after_moves(self, moves: Sequence[Move]) -> None:
        """Bring every portfolio the moves name up to date, then pass the moves on to
        whatever else the client's other parts do with them."""
        await self._sync_portfolios(moves)
        await super()._after_moves(moves)

    async def _sync_portfolios(self, moves: Sequence[Move]) -> None:
        """One pipelined round trip of idempotent ``sync_portfolio`` calls, one per
        portfolio named (the daemon replays the same moves; stale ones apply nothing).

        The status change these moves report is already stored when this runs, so a
        failure here is logged, not raised: raising would tell the caller that a change
        which happened did not, and the daemon brings the portfolio up to date from the
        bus."""
        calls = sync_calls(self.keyspace, self._ops.actor, moves)
        if not calls:
            return
        try:
            replies = await self._runner.call_many(calls)
        except OpenIntentError as exc:
            _log.warning("portfolio sync after a status change failed: %s", exc)
            return
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                _log.warning("portfolio sync failed for %s: %s", call.args[0], reply)
