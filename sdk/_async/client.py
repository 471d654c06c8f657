"""``AsyncClient``: the protocol's calls over redis-py's asyncio client (intents, state and
events here; other capabilities in their mixins).

This file is the source of the sync ``Client`` too (``scripts/unasync.py`` generates
``sdk/_sync/client.py`` from it), so it holds control flow and I/O only; every decision is
made by the pure code in ``oibus.bus``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from oibus.bus import limits
from oibus.bus.codec import (
    decode_events,
    decode_intent,
    index_member_id,
    to_micros,
)
from oibus.bus.errors import NotFoundError
from oibus.bus.graphs import CASCADE_ROUNDS
from oibus.bus.keyspace import check_id
from oibus.bus.listing import (
    check_cursor,
    check_limit,
    event_bounds,
    first_share,
    group_by_partition,
    index_read,
    intent_query,
    merge_newest,
    merge_page,
)
from oibus.bus.models import Event, Intent, Page, StatePatch
from oibus.bus.ops import LeaseRef
from oibus.sdk._async.attachments import AsyncAttachmentsMixin
from oibus.sdk._async.base import AsyncClientBase
from oibus.sdk._async.batch import AsyncBatchMixin
from oibus.sdk._async.costs import AsyncCostsMixin
from oibus.sdk._async.events import AsyncEventsMixin
from oibus.sdk._async.governance import AsyncGovernanceMixin
from oibus.sdk._async.graphs import AsyncGraphsMixin
from oibus.sdk._async.leases import AsyncLeasesMixin
from oibus.sdk._async.memory import AsyncMemoryMixin
from oibus.sdk._async.observability import AsyncObservabilityMixin
from oibus.sdk._async.portfolios import AsyncPortfoliosMixin
from oibus.sdk._async.retries import AsyncRetriesMixin
from oibus.sdk._async.subscriptions import AsyncSubscriptionsMixin


class AsyncClient(
    AsyncGraphsMixin,
    AsyncLeasesMixin,
    AsyncCostsMixin,
    AsyncRetriesMixin,
    AsyncGovernanceMixin,
    AsyncAttachmentsMixin,
    AsyncPortfoliosMixin,
    AsyncSubscriptionsMixin,
    AsyncMemoryMixin,
    AsyncEventsMixin,
    AsyncObservabilityMixin,
    AsyncBatchMixin,
    AsyncClientBase,
):
    """One agent's connection to the bus (see ``AsyncClientBase`` for the arguments)."""

    # -- intents (RFC-0001) -------------------------------------------------------------
    async def create_intent(
        self,
        title: str,
        description: str | None = None,
        constraints: Mapping[str, Any] | None = None,
        *,
        state: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        status: str = "active",
        confidence: int | None = None,
        parent_intent_id: str | None = None,
        depends_on: Sequence[str] | None = None,
        intent_id: str | None = None,
        idempotency_key: str | None = None,
        colocate_with: str | None = None,
        on_dependency_failure: str = "block",
        cascade_abandon: bool = True,
        assign: str | None = None,
    ) -> Intent:
        """Create an intent. Retrying with the same ``intent_id`` or ``idempotency_key`` and
        the same content returns the intent the first attempt made; the same id with other
        content raises AlreadyExistsError.

        Graphs (RFC-0002) stay in one group, so a new id joins the group of its parent,
        else of its first dependency, unless ``colocate_with`` or ``intent_id`` say
        otherwise (a parent or dependency in another group is a ValidationError). With
        unmet dependencies an intent asked to start ``active`` starts ``blocked`` and
        becomes active when the last one completes. ``on_dependency_failure`` (block,
        abandon, ignore) says what an abandoned dependency does to it;
        ``cascade_abandon`` whether abandoning it abandons its open children.
        ``assign`` assigns an agent in the same step. ``create_intents`` makes many in
        few round trips."""
        plan = self._create_intent_plan(
            title,
            description,
            constraints,
            state=state,
            created_by=created_by,
            status=status,
            confidence=confidence,
            parent_intent_id=parent_intent_id,
            depends_on=depends_on,
            intent_id=intent_id,
            idempotency_key=idempotency_key,
            colocate_with=colocate_with,
            on_dependency_failure=on_dependency_failure,
            cascade_abandon=cascade_abandon,
            assign=assign,
        )
        return plan.decode(await self._run(plan.call))

    async def create_child_intent(
        self,
        parent_id: str,
        title: str,
        description: str | None = None,
        constraints: Mapping[str, Any] | None = None,
        *,
        depends_on: Sequence[str] | None = None,
        assign: str | None = None,
        state: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        status: str = "active",
        confidence: int | None = None,
        intent_id: str | None = None,
        idempotency_key: str | None = None,
        on_dependency_failure: str = "block",
        cascade_abandon: bool = True,
    ) -> Intent:
        """A child of ``parent_id`` in its group (RFC-0002): it counts in the parent's
        aggregate status and must complete before the parent can. See ``create_intent``."""
        return await self.create_intent(
            title,
            description,
            constraints,
            state=state,
            created_by=created_by,
            status=status,
            confidence=confidence,
            parent_intent_id=parent_id,
            depends_on=depends_on,
            intent_id=intent_id,
            idempotency_key=idempotency_key,
            on_dependency_failure=on_dependency_failure,
            cascade_abandon=cascade_abandon,
            assign=assign,
        )

    async def get_intent(self, intent_id: str) -> Intent:
        return decode_intent(await self._run(self._ops.get_intent(intent_id)), intent_id)

    async def list_intents(
        self,
        status: str | None = None,
        created_by: str | None = None,
        parent_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Intent]:
        """Newest first. Pass ``page.next_cursor`` back as ``cursor`` for the next page."""
        check_limit(limit)
        query = intent_query(self.keyspace, status, created_by, parent_id)
        position = check_cursor(cursor)
        batch = max(limit, 100) if query.filtered else limit
        partitions = self.keyspace.partitions
        share = first_share(batch, partitions)
        found: list[Intent] = []
        scanned = 0
        if not self._meta_checked:
            await self._check_meta()
        while True:
            # a fair share of the batch from each partition; more only from those whose
            # share may stop short of the batch (merge_page), so the merge stays exact
            per_partition = await self._runner.commands(
                [index_read(query.index(p), position, share) for p in range(partitions)]
            )
            members, short = merge_page(per_partition, share, batch)
            if short:
                more = await self._runner.commands(
                    [index_read(query.index(p), per_partition[p][-1], batch - share) for p in short]
                )
                for p, extra in zip(short, more, strict=True):
                    per_partition[p] = [*per_partition[p], *extra]
                members = merge_newest(per_partition, batch)
            ids = [index_member_id(m) for m in members]
            # the batch's intents: one script per partition, not one per intent
            groups = group_by_partition(self.keyspace, ids)
            replies = await self._runner.call_many([self._ops.get_intents(g) for g in groups])
            snapshots: dict[str, str | None] = {}
            for group, reply in zip(groups, replies, strict=True):
                if isinstance(reply, Exception):
                    raise reply
                snapshots.update(zip(group, reply, strict=True))
            for member, intent_id in zip(members, ids, strict=True):
                scanned += 1
                position = member
                snapshot = snapshots[intent_id]
                if not snapshot:  # gone since the index was read
                    continue
                intent = decode_intent(snapshot, intent_id)
                if query.keep(intent):
                    found.append(intent)
                    if len(found) == limit:
                        return Page(found, position)
            if len(members) < batch:
                return Page(found, None)
            if scanned >= limits.FILTER_SCAN:
                return Page(found, position)

    async def update_state(
        self,
        intent_id: str,
        version: int | None,
        state_patch: Mapping[str, Any],
        *,
        lease: LeaseRef = None,
    ) -> Intent:
        """Set top-level keys of the state (the reference SDK's convenience form).
        ``lease`` presents the lease(s) guarding the keys written (see ``acquire_lease``)."""
        plan = self._update_state_plan(intent_id, version, state_patch, lease=lease)
        return plan.decode(await self._run(plan.call))

    async def patch_state(
        self,
        intent_id: str,
        version: int | None,
        patches: Iterable[StatePatch | Mapping[str, Any]],
        *,
        lease: LeaseRef = None,
    ) -> Intent:
        """Apply ``set``/``append``/``remove`` ops at JSON pointers, all or nothing.
        ``version`` must be the current one (ConflictError carries it otherwise); ``None``
        applies the ops to whatever version is current."""
        plan = self._patch_state_plan(intent_id, version, patches, lease=lease)
        return plan.decode(await self._run(plan.call))

    async def set_status(
        self, intent_id: str, version: int | None, status: str, reason: str | None = None
    ) -> Intent:
        """Move the intent (RFC-0001/0002 lifecycle) and, in the same step, whatever its
        graph makes follow: dependents unblocked, failure policies, abandoned children.
        CompletionGateError when dependencies or children hold a completion back; a move
        to ``active`` with unmet dependencies lands in ``blocked``."""
        plan = self._set_status_plan(intent_id, version, status, reason)
        return await self._settle(plan, await self._run(plan.call), CASCADE_ROUNDS)

    async def assign_agent(self, intent_id: str, agent_id: str) -> Intent:
        plan = self._assign_agent_plan(intent_id, agent_id)
        return plan.decode(await self._run(plan.call))

    async def unassign_agent(self, intent_id: str, agent_id: str) -> Intent:
        plan = self._unassign_agent_plan(intent_id, agent_id)
        return plan.decode(await self._run(plan.call))

    # -- events -------------------------------------------------------------------------
    async def log_event(
        self,
        intent_id: str,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
    ) -> Event:
        """Append a custom event (``log_events`` appends many in few round trips)."""
        plan = self._log_event_plan(intent_id, event_type, payload)
        return plan.decode(await self._run(plan.call))

    async def get_events(
        self,
        intent_id: str,
        event_type: str | None = None,
        since: datetime | None = None,
        after: str | None = None,
        limit: int = 100,
        reverse: bool = False,
    ) -> Page[Event]:
        """Oldest first (newest first with ``reverse``); ``after`` is the previous page's
        ``next_cursor``. A type filter reads at most ``FILTER_SCAN`` entries per page and
        returns a cursor to continue from when it stops early."""
        check_id(intent_id)
        check_limit(limit)
        low, high = event_bounds(since=since, after=after, reverse=reverse)
        # stream ids carry milliseconds; the exact bound is the event's own microseconds
        since_us = None if since is None else to_micros(since)
        key = self.keyspace.events(intent_id)
        wanted = None if event_type is None else str(event_type)
        batch = limit if wanted is None else max(limit, 200)
        found: list[Event] = []
        scanned = 0
        while True:
            if reverse:
                raw = await self._runner.command("XREVRANGE", key, high, low, "COUNT", batch)
            else:
                raw = await self._runner.command("XRANGE", key, low, high, "COUNT", batch)
            entries = cast("list[tuple[str, dict[str, str]]]", raw)
            room = limit - len(found)
            if since_us is None and wanted is None:
                kept = entries if len(entries) <= room else entries[:room]
                scanned += len(kept)
            else:
                kept = []
                for entry in entries:
                    scanned += 1
                    fields = entry[1]
                    if since_us is not None and int(fields.get("at") or 0) < since_us:
                        continue
                    if wanted is None or fields.get("t") == wanted:
                        kept.append(entry)
                        if len(kept) == room:
                            break
            found += decode_events(intent_id, kept)  # the page in one pass
            if len(found) == limit:
                return Page(found, kept[-1][0])
            if len(entries) < batch:
                if (
                    not found
                    and after is None
                    and not await self._runner.command("EXISTS", self.keyspace.intent(intent_id))
                ):
                    raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
                return Page(found, None)
            last = entries[-1][0]
            if reverse:
                high = "(" + last
            else:
                low = "(" + last
            if scanned >= limits.FILTER_SCAN:
                return Page(found, last)
