"""Daemon liveness: a heartbeat key per daemon with a TTL.

Work a daemon holds (pending bus entries) is taken over by another daemon when, and only
when, its heartbeat key has expired: a slow handler on a live daemon is never robbed, and
a dead daemon's work waits no longer than the TTL (no fixed visibility timeout). The
registry zset lists daemons that ever beat, for ``oibus daemon --check`` and for the
clean-up of dead consumers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import cast

from oibus.bus.keyspace import Keyspace
from oibus.sdk._async.runner import AsyncScriptRunner


class Heartbeat:
    def __init__(self, runner: AsyncScriptRunner, ks: Keyspace, daemon_id: str, ttl: float):
        self.runner, self.ks, self.daemon_id, self.ttl = runner, ks, daemon_id, ttl

    async def beat(self) -> None:
        now_ms = int(time.time() * 1000)
        await self.runner.commands(
            [
                (
                    "SET",
                    self.ks.daemon_heartbeat(self.daemon_id),
                    str(now_ms),
                    "PX",
                    int(self.ttl * 1000),
                ),
                ("ZADD", self.ks.daemons, now_ms, self.daemon_id),
            ]
        )

    async def stop(self) -> None:
        """A clean exit: drop the key so the daemon's leftovers are taken over at once."""
        await self.runner.command("DEL", self.ks.daemon_heartbeat(self.daemon_id))


async def alive(runner: AsyncScriptRunner, ks: Keyspace, ids: Sequence[str]) -> set[str]:
    """Which of the daemon ids have a live heartbeat."""
    if not ids:
        return set()
    found = await runner.commands([("EXISTS", ks.daemon_heartbeat(i)) for i in ids])
    return {i for i, n in zip(ids, found, strict=True) if n}


async def live_daemons(runner: AsyncScriptRunner, ks: Keyspace) -> list[str]:
    """Daemons with a live heartbeat (registered ones, at most 10,000 looked at); the
    registry forgets daemons dead for a day."""
    key = ks.daemons
    day_ago = int(time.time() * 1000) - 86_400_000
    _, ids = await runner.commands(
        [("ZREMRANGEBYSCORE", key, "-inf", day_ago), ("ZRANGE", key, 0, 9999)]
    )
    known = cast("list[str]", ids)
    return sorted(await alive(runner, ks, known))
