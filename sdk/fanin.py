"""Reading several streams of one consumer group as one, and keeping a consumer alive.

Written by hand in both flavours (like ``leasing.py``) because what they need differs:

- On one server, one blocking ``XREADGROUP`` names every stream: one connection, one
  round trip, woken by the first entry on any of them. On a Redis Cluster each partition
  is its own slot and a command may not span slots, so each stream gets its own blocking
  read, all in flight at once (tasks in the async flavour, threads in the sync one). A
  read that has not returned when the caller moves on stays in flight and its entries
  are taken by the next call: none is dropped, so there is no polling and no loss.
- A consumer's heartbeat must keep beating while a handler runs for longer than the
  heartbeat's TTL, so it beats from a task (async) or a thread (sync), not from the loop
  that reads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import suppress
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

Entry = tuple[str, str, dict[str, str]]
"""(stream key, entry id, fields)"""

_log = logging.getLogger("oibus.consumer")


RAW_READ: Final = frozenset({"XREADGROUP"})
"""Reads whose replies ``entries_of`` decodes as the server sent them (runner.round_trip's
``raw``)."""


def entries_of(reply: Any) -> list[Entry]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict of streams) as flat entries."""
    if not reply:
        return []
    if isinstance(reply, dict):
        reply = list(reply.items())
    out: list[Entry] = []
    append = out.append
    for stream, items in reply:
        key = stream if type(stream) is str else str(stream)
        for entry_id, raw in items or []:
            # RESP2 pairs as a flat list (paired through one iterator: half the cost of two
            # slices, measured per entry of an agent's drain), or nil for an entry trimmed
            # while pending
            if type(raw) is dict:
                fields = raw
            elif raw:
                pairs = iter(raw)
                fields = dict(zip(pairs, pairs, strict=False))  # the server sends pairs
            else:
                fields = {}
            append((key, entry_id if type(entry_id) is str else str(entry_id), fields))
    return out


def is_cluster(redis: Any) -> bool:
    return isinstance(redis, (RedisCluster, AsyncRedisCluster))


class AsyncFanIn:
    def __init__(self, redis: Any, group: str, consumer: str, keys: tuple[str, ...]) -> None:
        self.redis, self.group, self.consumer, self.keys = redis, group, consumer, keys
        self.split = is_cluster(redis) and len(keys) > 1
        self.block_ms = 0
        self._reads: dict[str, asyncio.Task[list[Entry]]] = {}

    async def _read(self, keys: tuple[str, ...], count: int, block_ms: int) -> list[Entry]:
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, dict.fromkeys(keys, ">"), count=count, block=block_ms
        )
        return entries_of(reply)

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """New entries of any stream, waiting up to ``block_ms`` for the first."""
        if not self.split:
            return await self._read(self.keys, count, block_ms)
        self.block_ms = max(self.block_ms, block_ms)
        for key in self.keys:
            if key not in self._reads:
                self._reads[key] = asyncio.ensure_future(self._read((key,), count, block_ms))
        await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        return _collect(self._reads)

    async def aclose(self) -> None:
        """Reads in flight end by their block timeout: wait for them rather than cancel
        them (a redis-py command cancelled mid-read can leave its connection stuck).
        Entries they took stay pending to this consumer, and the next consumer of the
        group takes them over once its heartbeat is gone."""
        reads = list(self._reads.values())
        self._reads.clear()
        if reads:
            _, late = await asyncio.wait(reads, timeout=self.block_ms / 1000 + 5)
            for task in late:  # the server did not answer: give up on them
                task.cancel()


class FanIn:
    def __init__(self, redis: Any, group: str, consumer: str, keys: tuple[str, ...]) -> None:
        self.redis, self.group, self.consumer, self.keys = redis, group, consumer, keys
        self.split = is_cluster(redis) and len(keys) > 1
        self._reads: dict[str, Future[list[Entry]]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _read(self, keys: tuple[str, ...], count: int, block_ms: int) -> list[Entry]:
        reply = self.redis.xreadgroup(
            self.group, self.consumer, dict.fromkeys(keys, ">"), count=count, block=block_ms
        )
        return entries_of(reply)

    def read(self, count: int, block_ms: int) -> list[Entry]:
        if not self.split:
            return self._read(self.keys, count, block_ms)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.keys), thread_name_prefix="oibus-read")
        for key in self.keys:
            if key not in self._reads:
                self._reads[key] = self._pool.submit(self._read, (key,), count, block_ms)
        wait(self._reads.values(), return_when=FIRST_COMPLETED)
        return _collect(self._reads)

    def close(self) -> None:
        """Reads in flight end by their block timeout; what they took stays pending."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._reads.clear()


def _collect(reads: dict[str, Any]) -> list[Entry]:
    """The entries of every finished read; the first failure is raised after all of them
    were taken off (a failed read is simply started again next time)."""
    out: list[Entry] = []
    error: BaseException | None = None
    for key in [k for k, r in reads.items() if r.done()]:
        read = reads.pop(key)
        exc = read.exception()
        if exc is not None:
            error = error or exc
        else:
            out.extend(read.result())
    if error is not None and not out:
        raise error
    return out


class AsyncBeat:
    """Sets ``key`` with a TTL every third of it until stopped."""

    def __init__(self, redis: Any, key: str, ttl: float, value: str) -> None:
        self.redis, self.key, self.ttl, self.value = redis, key, ttl, value
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def beat(self) -> None:
        await self.redis.set(self.key, self.value, px=int(self.ttl * 1000))

    async def start(self) -> None:
        await self.beat()
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.ttl / 3)
            if self._stop.is_set():
                return
            try:
                await self.beat()
            except Exception as exc:  # keep beating: the next one may reach the server
                _log.warning("heartbeat %s failed: %s", self.key, exc)

    async def stop(self) -> None:
        """A clean stop deletes the key, so whatever this consumer still holds is taken
        over by the others at once instead of after the TTL. The loop is told to end,
        not cancelled (a command cancelled mid-read can leave its connection stuck)."""
        if self._task is not None:
            self._stop.set()
            _, late = await asyncio.wait([self._task], timeout=self.ttl + 5)
            for task in late:
                task.cancel()
            self._task = None
            with suppress(Exception):
                await self.redis.delete(self.key)


class Beat:
    def __init__(self, redis: Any, key: str, ttl: float, value: str) -> None:
        self.redis, self.key, self.ttl, self.value = redis, key, ttl, value
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self.redis.set(self.key, self.value, px=int(self.ttl * 1000))

    def start(self) -> None:
        self.beat()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="oibus-beat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.beat()
            except Exception as exc:
                _log.warning("heartbeat %s failed: %s", self.key, exc)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            with suppress(Exception):
                self.redis.delete(self.key)
