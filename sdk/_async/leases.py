"""Leases (RFC-0003) on the async client: acquire, renew, release, revoke, list, and the
``lease()`` context manager."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import cast

from oibus.bus.codec import decode_lease
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Lease, Page
from oibus.bus.ops import new_uuid
from oibus.sdk._async.base import AsyncClientBase
from oibus.sdk.leasing import hold_lease_async


class AsyncLeasesMixin(AsyncClientBase):
    async def acquire_lease(
        self, intent_id: str, scope: str, duration_seconds: float = 300
    ) -> Lease:
        """Hold ``scope`` of the intent for ``duration_seconds``. The scope guards the state
        subtree of the same name (``"content.draft"`` guards ``/content/draft``): writes
        there must present this lease. LeaseConflictError (with ``holder`` and
        ``expires_at``) while anyone else, or another acquire of the same agent, holds it;
        retried internally with the same lease id, so a lost reply cannot orphan a lease."""
        call = self._ops.acquire_lease(intent_id, scope, new_uuid(), duration_seconds)
        return decode_lease(await self._run(call), intent_id)

    async def renew_lease(
        self, intent_id: str, lease_id: str, duration_seconds: float = 300
    ) -> Lease:
        """Extend a live lease to ``duration_seconds`` from now (holder only)."""
        call = self._ops.renew_lease(intent_id, lease_id, duration_seconds)
        return decode_lease(await self._run(call), intent_id)

    async def release_lease(self, intent_id: str, lease_id: str) -> Lease:
        """End a live lease (holder only); releasing it again returns it unchanged."""
        call = self._ops.release_lease(intent_id, lease_id)
        return decode_lease(await self._run(call), intent_id)

    async def revoke_lease(self, intent_id: str, lease_id: str, reason: str) -> Lease:
        """End anyone's lease, for governance; the actor and reason are recorded."""
        call = self._ops.revoke_lease(intent_id, lease_id, reason)
        return decode_lease(await self._run(call), intent_id)

    async def get_leases(
        self,
        intent_id: str,
        include_history: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Lease]:
        """The live leases; with ``include_history``, every lease oldest first, paged:
        ended leases from the history, then (on the last page) the current ones."""
        check_limit(limit)
        reply = await self._run(self._ops.get_leases(intent_id))
        now = int(reply[0])
        current = [decode_lease(t, intent_id, now) for t in reply[1:]]
        if not include_history:
            return Page([x for x in current if x.status == "active"], None)
        low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
        raw = await self._runner.command(
            "XRANGE", self.keyspace.lease_history(intent_id), low, "+", "COUNT", limit
        )
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        ended = [decode_lease(fields["l"], intent_id) for _, fields in entries]
        if len(entries) == limit:
            return Page(ended, entries[-1][0])
        # still stored as active (live, or expired but not yet recorded): not in the history
        tail = [x for x in current if x.ended_at is None]
        return Page([*ended, *tail], None)

    def lease(
        self, intent_id: str, scope: str, duration_seconds: float = 300
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold a lease for the duration of an ``async with`` block: acquired on entry,
        renewed in the background every third of ``duration_seconds``, released on exit
        (also on error). If a renewal fails, the block is cancelled and LeaseLostError
        raised: work never goes on silently without the lease."""
        return hold_lease_async(self, intent_id, scope, duration_seconds)
