"""Agent memory (RFC-0015) on the async client: ``remember``/``recall``/``forget`` for
agents and LLM tools, and the record calls (create, get, list, update with a version
check, delete). Every call is one script on the agent's own hash tag; semantics and
bounds are in ``oibus.bus.memory``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from oibus.bus.errors import NotFoundError
from oibus.bus.memory import (
    MemoryRecord,
    decode_page,
    decode_rows,
    delete_call,
    get_call,
    list_call,
    put_call,
    recall_call,
    update_call,
)
from oibus.bus.models import Page
from oibus.sdk._async.base import AsyncClientBase


class AsyncMemoryMixin(AsyncClientBase):
    async def remember(
        self,
        key: str,
        value: Any,
        *,
        agent_id: str | None = None,
        memory_type: str = "episodic",
        tags: Sequence[str] = (),
        ttl_seconds: float | None = None,
    ) -> MemoryRecord:
        """Store ``value`` (JSON) under ``key`` in the agent's memory (this client's
        agent unless ``agent_id`` names another): creates the entry, or replaces its
        value, type, tags and expiry and bumps its version. ``working`` entries live an
        hour unless ``ttl_seconds`` says otherwise; ``long_term`` ones never expire."""
        write = put_call(
            self.keyspace,
            agent_id=self.agent_id if agent_id is None else agent_id,
            key=key,
            value=value,
            memory_type=memory_type,
            tags=tags,
            ttl_seconds=ttl_seconds,
            mode="upsert",
        )
        return write.record(await self._run(write.call))

    async def recall(
        self,
        query: str,
        *,
        agent_id: str | None = None,
        memory_type: str | None = None,
        limit: int = 5,
    ) -> list[MemoryRecord]:
        """The live entries whose key, tags or string content share the most words with
        ``query``, most recently updated first among equals; at most ``limit`` (1-100).
        A query with no word in it matches nothing."""
        call = recall_call(
            self.keyspace,
            self.agent_id if agent_id is None else agent_id,
            query,
            memory_type=memory_type,
            limit=limit,
        )
        if call is None:
            return []
        return decode_rows(call.args[0], await self._run(call))

    async def forget(self, key: str, *, agent_id: str | None = None) -> bool:
        """Remove the entry; ``False`` when there was none (or it had expired)."""
        call = delete_call(self.keyspace, self.agent_id if agent_id is None else agent_id, key)
        return bool(await self._run(call))

    async def create_memory(
        self,
        key: str,
        value: Any,
        *,
        agent_id: str | None = None,
        memory_type: str = "episodic",
        tags: Sequence[str] = (),
        ttl_seconds: float | None = None,
    ) -> MemoryRecord:
        """Create an entry at version 1; AlreadyExistsError (with ``current_version``)
        when the key holds a live entry."""
        write = put_call(
            self.keyspace,
            agent_id=self.agent_id if agent_id is None else agent_id,
            key=key,
            value=value,
            memory_type=memory_type,
            tags=tags,
            ttl_seconds=ttl_seconds,
            mode="create",
        )
        return write.record(await self._run(write.call))

    async def get_memory(self, key: str, *, agent_id: str | None = None) -> MemoryRecord:
        """The entry; NotFoundError when it does not exist or has expired."""
        call = get_call(self.keyspace, self.agent_id if agent_id is None else agent_id, key)
        rows = decode_rows(call.args[0], await self._run(call))
        if not rows:
            raise NotFoundError(f"memory {key!r} does not exist", resource="memory", id=key)
        return rows[0]

    async def list_memory(
        self,
        *,
        agent_id: str | None = None,
        memory_type: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[MemoryRecord]:
        """The agent's live entries, most recently updated first, optionally of one type
        and/or with one tag; pass ``next_cursor`` back as ``cursor`` for the next page.
        A page reads a bounded part of the index, so a filtered page may hold fewer than
        ``limit`` entries (even none) and still have a ``next_cursor``."""
        call = list_call(
            self.keyspace,
            self.agent_id if agent_id is None else agent_id,
            memory_type=memory_type,
            tag=tag,
            limit=limit,
            cursor=cursor,
        )
        return decode_page(call.args[0], await self._run(call))

    async def update_memory(
        self,
        key: str,
        version: int,
        value: Any,
        *,
        agent_id: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> MemoryRecord:
        """Replace the value (and the tags, unless ``None``) of the entry at ``version``;
        type and expiry are kept. ConflictError (with ``current_version``) when the
        entry is at another version, NotFoundError when it does not exist or expired."""
        write = update_call(
            self.keyspace,
            agent_id=self.agent_id if agent_id is None else agent_id,
            key=key,
            version=version,
            value=value,
            tags=tags,
        )
        return write.record(await self._run(write.call))

    async def delete_memory(self, key: str, *, agent_id: str | None = None) -> None:
        """Remove the entry; NotFoundError when it does not exist or has expired."""
        if not await self.forget(key, agent_id=agent_id):
            raise NotFoundError(f"memory {key!r} does not exist", resource="memory", id=key)
