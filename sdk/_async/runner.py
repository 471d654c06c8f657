"""Runs script calls: EVALSHA, a reload on NOSCRIPT, error translation, and (in test mode)
the guard that every call's keys live in one cluster slot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.exceptions as rex
from redis.asyncio import Redis

from ...bus.errors import ScriptError
from ...bus.keyspace import key_slot
from ...bus.ops import Call
from ...bus.registry import Registry
from .._errors import translate


def check_one_slot(call: Call) -> None:
    slots = {key_slot(k) for k in call.keys}
    if len(slots) > 1:
        raise ScriptError(f"{call.script} was called with keys in {len(slots)} slots: {call.keys}")


class AsyncScriptRunner:
    def __init__(self, redis: Redis, registry: Registry, *, slot_guard: bool = False) -> None:
        self.redis = redis
        self.registry = registry
        self.slot_guard = slot_guard

    async def call(self, call: Call) -> Any:
        script = self.registry[call.script]
        if self.slot_guard:
            check_one_slot(call)
        try:
            try:
                return await self.redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
            except rex.NoScriptError:
                await self.redis.script_load(script.source)
                return await self.redis.evalsha(script.sha, len(call.keys), *call.keys, *call.args)
        except Exception as exc:
            raise translate(exc, script=True) from exc

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Pipelined calls (one round trip); each reply is a value or an exception."""
        if not calls:
            return []
        try:
            replies = await self._pipeline(calls)
            if any(isinstance(r, rex.NoScriptError) for r in replies):
                for name in {c.script for c in calls}:
                    await self.redis.script_load(self.registry[name].source)
                replies = await self._pipeline(calls)
        except Exception as exc:
            raise translate(exc) from exc
        return [translate(r, script=True) if isinstance(r, Exception) else r for r in replies]

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in calls:
                if self.slot_guard:
                    check_one_slot(call)
                pipe.evalsha(self.registry[call.script].sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))
