"""Runs commands and script calls: EVALSHA, a reload on NOSCRIPT, error translation, and
(in test mode) the guard that every call's keys live in one cluster slot.

Everything goes through ``execute_command``: one layer less per call than redis-py's
command helpers, and one place where redis-py's (version-dependent) typing is bridged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import redis.exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from oibus.bus.errors import ScriptError
from oibus.bus.keyspace import key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import Registry
from oibus.sdk._errors import translate

Command = Sequence[str | int]


def check_one_slot(call: Call) -> None:
    slots = {key_slot(k) for k in call.keys}
    if len(slots) > 1:
        raise ScriptError(f"{call.script} was called with keys in {len(slots)} slots: {call.keys}")


class AsyncScriptRunner:
    def __init__(
        self, redis: Redis | RedisCluster, registry: Registry, *, slot_guard: bool = False
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.slot_guard = slot_guard

    async def _execute(self, *args: str | int) -> Any:
        # redis-py's typing of execute_command differs between versions and flavours
        return await cast(Any, self.redis).execute_command(*args)

    async def command(self, *args: str | int) -> Any:
        """One plain command, its errors translated."""
        try:
            return await self._execute(*args)
        except Exception as exc:
            raise translate(exc) from exc

    async def commands(self, batch: Sequence[Command]) -> list[Any]:
        """Plain commands pipelined in one round trip (no transaction)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for args in batch:
                    cast(Any, pipe).execute_command(*args)
                return list(await pipe.execute())
        except Exception as exc:
            raise translate(exc) from exc

    def _evalsha(self, call: Call) -> tuple[str | int, ...]:
        script = self.registry[call.script]
        if self.slot_guard:
            check_one_slot(call)
        return ("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)

    async def call(self, call: Call) -> Any:
        args = self._evalsha(call)
        try:
            try:
                # the hot path: no helper coroutine in between
                return await cast(Any, self.redis).execute_command(*args)
            except rex.NoScriptError:
                await self._load(call.script)
                return await self._execute(*args)
        except Exception as exc:
            raise translate(exc, script=True) from exc

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Pipelined calls (one round trip); each reply is a value or an exception."""
        if not calls:
            return []
        batch = [self._evalsha(c) for c in calls]
        try:
            replies = await self._pipeline(batch)
            if any(isinstance(r, rex.NoScriptError) for r in replies):
                for name in {c.script for c in calls}:
                    await self._load(name)
                replies = await self._pipeline(batch)
        except Exception as exc:
            raise translate(exc) from exc
        return [translate(r, script=True) if isinstance(r, Exception) else r for r in replies]

    async def _pipeline(self, batch: Sequence[Command]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for args in batch:
                cast(Any, pipe).execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))

    async def _load(self, name: str) -> None:
        """SCRIPT LOAD through the client's own helper: on a cluster it reaches every
        primary (a raw command would go to one node)."""
        await cast(Any, self.redis).script_load(self.registry[name].source)

    async def load_all(self) -> int:
        try:
            for name in self.registry:
                await self._load(name)
        except Exception as exc:
            raise translate(exc) from exc
        return len(self.registry)
