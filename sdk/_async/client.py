"""``AsyncClient``: the protocol's calls over redis-py's asyncio client.

This file is the source of the sync ``Client`` too (``scripts/unasync.py`` generates
``sdk/_sync/client.py`` from it), so it holds control flow and I/O only; every decision is
made by the pure code in ``oibus.bus``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, cast

from redis.asyncio import Redis

from ... import _version
from ...bus import limits
from ...bus.codec import (
    decode_event,
    decode_intent,
    decode_lease,
    encode_patches,
    encode_sets,
    index_member_id,
    to_datetime,
    to_micros,
)
from ...bus.discovery import protocol_info
from ...bus.errors import BusError, ConfigurationError, NotFoundError
from ...bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS, Keyspace, check_id
from ...bus.listing import (
    check_cursor,
    check_event_cursor,
    check_limit,
    event_bounds,
    intent_query,
    merge_newest,
)
from ...bus.models import Event, Intent, Lease, Page, ProtocolInfo, StatePatch
from ...bus.ops import Call, LeaseRef, Ops, new_intent_id
from ...bus.registry import default_registry
from ..leasing import hold_lease_async
from .runner import AsyncScriptRunner

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class AsyncClient:
    """One agent's connection to the bus.

    ``agent_id`` is recorded as the actor of every event this client causes and is the
    default ``created_by``. The Redis URL comes from the argument, then ``OIBUS_REDIS_URL``,
    then the local default. Pass ``redis=`` to reuse a configured client (it must decode
    responses). ``slot_guard`` (default: ``OIBUS_SLOT_GUARD=1``) checks that each script
    call's keys share one cluster slot; tests turn it on.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        agent_id: str = "anonymous",
        namespace: str = DEFAULT_NAMESPACE,
        partitions: int = DEFAULT_PARTITIONS,
        redis: Redis | None = None,
        slot_guard: bool | None = None,
        socket_timeout: float = 10.0,
    ) -> None:
        self.keyspace = Keyspace(namespace, partitions)
        self.agent_id = agent_id
        self._ops = Ops(self.keyspace, agent_id)
        if redis is None:
            url = redis_url or os.environ.get("OIBUS_REDIS_URL") or DEFAULT_URL
            redis = Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
            )
            self._owns_redis = True
        else:
            if not redis.connection_pool.connection_kwargs.get("decode_responses"):
                raise ConfigurationError("the redis client must be made with decode_responses=True")
            self._owns_redis = False
        self.redis = redis
        if slot_guard is None:
            slot_guard = os.environ.get("OIBUS_SLOT_GUARD") == "1"
        self._runner = AsyncScriptRunner(redis, default_registry(), slot_guard=slot_guard)
        self._meta_checked = False

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()

    async def _run(self, call: Call) -> Any:
        if not self._meta_checked:
            await self._check_meta()
        return await self._runner.call(call)

    async def _check_meta(self) -> None:
        """The partition count decides where every id lives, so all clients of a namespace
        must agree on it: the first client records it, every later one compares."""
        key = self.keyspace.meta
        await self._runner.command("HSETNX", key, "partitions", str(self.keyspace.partitions))
        stored = await self._runner.command("HGET", key, "partitions")
        if stored != str(self.keyspace.partitions):
            raise ConfigurationError(
                f"namespace {self.keyspace.namespace!r} uses {stored} partitions; this client "
                f"was configured with {self.keyspace.partitions}"
            )
        self._meta_checked = True

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
    ) -> Intent:
        """Create an intent. Retrying with the same ``intent_id`` or ``idempotency_key`` and
        the same content returns the intent the first attempt made; the same id with other
        content raises AlreadyExistsError. Children colocate with their parent (same slot)
        unless ``colocate_with`` says otherwise."""
        new_id = new_intent_id(
            intent_id=intent_id,
            idempotency_key=idempotency_key,
            colocate_with=colocate_with if colocate_with is not None else parent_intent_id,
        )
        call = self._ops.create_intent(
            new_id,
            title=title,
            description=description,
            constraints=constraints,
            state=state,
            created_by=created_by,
            status=status,
            confidence=confidence,
            parent_intent_id=parent_intent_id,
            depends_on=depends_on,
        )
        reply = await self._run(call)
        return decode_intent(reply[1], new_id)

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
        found: list[Intent] = []
        scanned = 0
        if not self._meta_checked:
            await self._check_meta()
        while True:
            high = "+" if position is None else "(" + position
            per_partition = await self._runner.commands(
                [
                    ("ZRANGE", query.index(p), high, "-", "BYLEX", "REV", "LIMIT", 0, batch)
                    for p in range(self.keyspace.partitions)
                ]
            )
            members = merge_newest(per_partition, batch)
            ids = [index_member_id(m) for m in members]
            replies = await self._runner.call_many([self._ops.get_intent(i) for i in ids])
            for member, intent_id, reply in zip(members, ids, replies, strict=True):
                scanned += 1
                position = member
                if isinstance(reply, Exception):
                    raise reply
                if reply is None:
                    continue
                intent = decode_intent(reply, intent_id)
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
        call = self._ops.update_state(intent_id, version, encode_sets(state_patch), lease)
        return decode_intent(await self._run(call), intent_id)

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
        call = self._ops.patch_state(intent_id, version, encode_patches(patches), lease)
        return decode_intent(await self._run(call), intent_id)

    async def set_status(
        self, intent_id: str, version: int | None, status: str, reason: str | None = None
    ) -> Intent:
        call = self._ops.set_status(intent_id, version, status, reason)
        return decode_intent(await self._run(call), intent_id)

    async def assign_agent(self, intent_id: str, agent_id: str) -> Intent:
        call = self._ops.assign_agent(intent_id, agent_id)
        return decode_intent(await self._run(call), intent_id)

    async def unassign_agent(self, intent_id: str, agent_id: str) -> Intent:
        call = self._ops.unassign_agent(intent_id, agent_id)
        return decode_intent(await self._run(call), intent_id)

    # -- leases (RFC-0003) --------------------------------------------------------------
    async def acquire_lease(
        self, intent_id: str, scope: str, duration_seconds: float = 300
    ) -> Lease:
        """Hold ``scope`` of the intent for ``duration_seconds``. The scope guards the state
        subtree of the same name (``"content.draft"`` guards ``/content/draft``): writes
        there must present this lease. LeaseConflictError (with ``holder`` and
        ``expires_at``) while anyone else, or another acquire of the same agent, holds it;
        retried internally with the same lease id, so a lost reply cannot orphan a lease."""
        call = self._ops.acquire_lease(intent_id, scope, str(uuid.uuid4()), duration_seconds)
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
        recorded = {x.id for x in ended}
        tail = [x for x in current if x.status in ("active", "expired") and x.id not in recorded]
        return Page([*ended, *tail], None)

    def lease(
        self, intent_id: str, scope: str, duration_seconds: float = 300
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold a lease for the duration of an ``async with`` block: acquired on entry,
        renewed in the background every third of ``duration_seconds``, released on exit
        (also on error). If a renewal fails, the block is cancelled and LeaseLostError
        raised: work never goes on silently without the lease."""
        return hold_lease_async(self, intent_id, scope, duration_seconds)

    # -- events -------------------------------------------------------------------------
    async def log_event(
        self,
        intent_id: str,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
    ) -> Event:
        call = self._ops.log_event(intent_id, event_type, payload)
        entry_id, seq, at = await self._run(call)
        return Event(
            id=entry_id,
            intent_id=intent_id,
            seq=int(seq),
            event_type=str(event_type),
            actor=self.agent_id,
            payload=dict(payload or {}),
            created_at=to_datetime(at),
        )

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
            for entry_id, fields in entries:
                scanned += 1
                if since_us is not None and int(fields.get("at") or 0) < since_us:
                    continue
                if wanted is None or fields.get("t") == wanted:
                    found.append(decode_event(intent_id, entry_id, fields))
                    if len(found) == limit:
                        return Page(found, entry_id)
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

    # -- protocol -----------------------------------------------------------------------
    async def load_scripts(self) -> int:
        """Load every script into the server's cache now (calls would load them on first
        use anyway); returns how many. Useful after a failover or SCRIPT FLUSH."""
        return await self._runner.load_all()

    async def discover(self) -> ProtocolInfo:
        """Protocol metadata: version, RFCs, capabilities, limits, and the server under us."""
        try:
            info = await self._runner.command("INFO", "server")
        except BusError:
            info = {}  # INFO renamed or disabled (managed services): report what we know
        return protocol_info(self.keyspace, info, _version.__version__)
