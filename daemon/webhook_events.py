"""The events a batch of webhook jobs delivers: read in one round trip, encoded once.

A job names its event (log key and entry id), not its content: the event is read when it
is delivered. Profiled with ten subscriptions, every event was read (``XRANGE``),
decoded and encoded once per subscription; the daemon now keeps the encoded ``event``
object of recent events (an event never changes once appended) in a small LRU bounded
by entries and bytes, so subscriptions delivering the same events at about the same time
read each one once, and the misses of a batch are read in one pipelined round trip.
A bus entry whose event is small carries all of it (``emit.lua``): matching puts those
in the cache, so a delivery made by the daemon that matched it reads nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

from oibus.bus.keyspace import Keyspace
from oibus.bus.webhooks import event_json
from oibus.sdk._async.runner import AsyncScriptRunner

__all__ = ["EventCache"]

CACHE_ENTRIES: Final = 16_384
CACHE_BYTES: Final = 16 * 1024 * 1024
"""Bounds of the cache: some seconds of events at full speed, at most 16 MiB."""

_Key = tuple[str, str, str]  # log key, entry id, member


class EventCache:
    def __init__(
        self,
        runner: AsyncScriptRunner,
        keyspace: Keyspace,
        *,
        entries: int = CACHE_ENTRIES,
        size: int = CACHE_BYTES,
    ) -> None:
        self._runner = runner
        self._keyspace = keyspace
        self._entries = entries
        self._size = size
        self._bytes = 0
        self._cache: OrderedDict[_Key, bytes] = OrderedDict()

    async def bodies(self, jobs: Sequence[tuple[str, dict[str, str]]]) -> list[bytes | None]:
        """The encoded event of each job (its fields ``l``, ``e``, ``i``, ``m``); None
        when the event is not in its log any more (trimmed)."""
        keys = [(job.get("l", ""), job.get("e", ""), job.get("m", "")) for _, job in jobs]
        found: dict[_Key, bytes | None] = {}
        missing: dict[_Key, str] = {}
        for key, (_, job) in zip(keys, jobs, strict=True):
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                found[key] = hit
            elif key not in missing:
                missing[key] = job.get("i", "")
        if missing:
            replies = await self._runner.commands([("XRANGE", log, e, e) for log, e, _ in missing])
            for (key, source), rows in zip(missing.items(), replies, strict=True):
                found[key] = self._add(key, source, cast("list[Any]", rows))
        return [found[key] for key in keys]

    def put(
        self, log: str, event_id: str, member: str, source: str, fields: Mapping[str, str]
    ) -> None:
        """Keep an event the daemon already holds (a bus entry carries the whole event
        when its payload is small), so its deliveries need not read it again."""
        key = (log, event_id, member)
        if key in self._cache:
            self._cache.move_to_end(key)
        else:
            self._encode(key, source, fields)

    def _add(self, key: _Key, source: str, rows: list[Any]) -> bytes | None:
        if not rows:
            return None
        fields = rows[0][1]
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        return self._encode(key, source, fields)

    def _encode(self, key: _Key, source: str, fields: Mapping[str, str]) -> bytes:
        log, event_id, member = key
        encoded = event_json(
            source,
            event_id,
            fields,
            portfolio=log == self._keyspace.portfolio_events(source),
            member=member or None,
        )
        self._cache[key] = encoded
        self._bytes += len(encoded)
        while self._cache and (len(self._cache) > self._entries or self._bytes > self._size):
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= len(dropped)
        return encoded
