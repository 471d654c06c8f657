"""What the daemon does with each bus entry. Every effect is a script that checks before it
writes, so handling an entry twice (after a crash, or by two daemons) changes nothing the
second time:

- ``status_changed`` of an intent in portfolios: the portfolios' sync (a member's move
  applies only when newer than what the portfolio has), in case the client that moved it
  died before syncing; unblocks are timed for ``oibus_unblock_latency_seconds``;
- ``added_to_portfolio`` / ``removed_from_portfolio`` (portfolio entries): the second step
  of the membership change, in case its client died between the two;
- ``retries_exhausted``: the fallback agent takes the intent (``trigger_fallback``);
- ``lease_acquired`` / ``lease_renewed`` / ``retry_scheduled``: wake the due-set sweeps so
  a new early due time is not waited for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import msgspec

from oibus.bus.moves import Move
from oibus.bus.portfolios import REPAIRED_TYPES, sync_calls
from oibus.bus.retries import trigger_fallback_call
from oibus.daemon.busreader import Handler
from oibus.daemon.config import DaemonConfig
from oibus.daemon.metrics import Metrics
from oibus.daemon.sweeps import DueSweeper
from oibus.sdk._async.client import AsyncClient

_log = logging.getLogger("oibus.daemon")

_WAKE_LEASES = frozenset({"lease_acquired", "lease_renewed"})


class BusHandlers:
    def __init__(
        self,
        client: AsyncClient,
        config: DaemonConfig,
        metrics: Metrics,
        leases: DueSweeper | None = None,
        retries: DueSweeper | None = None,
        extra: Sequence[Handler] = (),
    ) -> None:
        self.client = client
        self.runner = client._runner
        self.ks = client.keyspace
        self.metrics = metrics
        self.actor = f"oibus-daemon:{config.daemon_id}"
        self.leases, self.retries = leases, retries
        self.extra = list(extra)

    async def __call__(self, partition: int, entry_id: str, fields: dict[str, str]) -> None:
        kind = fields.get("t", "")
        if fields.get("k") == "portfolio":
            if kind in REPAIRED_TYPES and await self.client.repair_portfolio_link(fields):
                self.metrics.portfolio_syncs.labels("link").inc()
        elif kind == "status_changed":
            await self._status_changed(entry_id, fields)
        elif kind == "retries_exhausted":
            await self._exhausted(fields["i"])
        elif kind in _WAKE_LEASES and self.leases is not None:
            self.leases.wake()
        elif kind == "retry_scheduled" and self.retries is not None:
            self.retries.wake()
        for handler in self.extra:
            await handler(partition, entry_id, fields)

    async def _status_changed(self, entry_id: str, fields: dict[str, str]) -> None:
        intent_id = fields["i"]
        current, events = await self.runner.commands(
            [
                ("HMGET", self.ks.intent(intent_id), "status", "version", "pf"),
                ("XRANGE", self.ks.events(intent_id), fields["e"], fields["e"]),
            ]
        )
        status, version, pf = cast("list[str | None]", current)
        for _, event in cast("list[tuple[str, dict[str, str]]]", events or []):
            payload = msgspec.json.decode(event.get("p") or "{}")
            if isinstance(payload, dict) and payload.get("reason") == "dependencies satisfied":
                written_ms = int(entry_id.split("-", 1)[0])
                self.metrics.unblock_latency.observe(max(0.0, time.time() - written_ms / 1000))
        portfolios = cast("list[str]", msgspec.json.decode(pf)) if pf else []
        if not portfolios or status is None or version is None:
            return
        calls = sync_calls(self.ks, self.actor, [Move(intent_id, status, int(version), portfolios)])
        for reply in await self.runner.call_many(calls):
            if isinstance(reply, Exception):
                raise reply  # left pending: tried again, then dead-lettered
        self.metrics.portfolio_syncs.labels("move").inc(len(calls))

    async def _exhausted(self, intent_id: str) -> None:
        reply = cast(
            "list[Any]",
            await self.client._run(trigger_fallback_call(self.ks, self.actor, intent_id)),
        )
        if int(reply[0]) == 1:
            self.metrics.retries.labels("fallback").inc()
            _log.info("intent %s handed to fallback agent %s", intent_id, reply[1])
        elif reply[1] == "no_fallback":
            self.metrics.retries.labels("exhausted").inc()
