"""The due-set sweeps: leases that ran out (``due:lease``) and retries whose time came
(``due:retry``), per partition.

A sweep runs every entry that is due by the server's clock through its script, which
decides again, atomically, whether anything is to be done: ``expire_lease`` records
``lease_expired`` once per lease, ``dispatch_retry`` dispatches a retry once and leaves a
rescheduled one alone. So several daemons may sweep the same sets: one of them wins each
entry, the others' calls change nothing. Between sweeps the loop sleeps until the earliest
due time it saw (never longer than ``sweep_max_wait``), and wakes early when the bus
reports a new lease or retry (``wake``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, cast

import anyio

from oibus.bus.errors import BusError
from oibus.bus.ops import Call
from oibus.bus.retries import dispatch_retry_call
from oibus.daemon.config import DaemonConfig
from oibus.daemon.metrics import Metrics
from oibus.sdk._async.client import AsyncClient

Kind = Literal["lease", "retry"]

_log = logging.getLogger("oibus.daemon")


class DueSweeper:
    def __init__(
        self, client: AsyncClient, config: DaemonConfig, metrics: Metrics, kind: Kind
    ) -> None:
        self.client = client
        self.runner = client._runner
        self.ks = client.keyspace
        self.config = config
        self.metrics = metrics
        self.kind = kind
        self.actor = f"oibus-daemon:{config.daemon_id}"
        self._wake = anyio.Event()

    def wake(self) -> None:
        """Look again now (a lease or a retry was just scheduled)."""
        self._wake.set()

    def _key(self, p: int) -> str:
        return self.ks.due_leases(p) if self.kind == "lease" else self.ks.due_retries(p)

    def _call(self, member: str, due: int) -> Call:
        if self.kind == "lease":
            intent_id, scope, lease_id = member.split("\t")
            return self.client._ops.expire_lease(intent_id, scope, lease_id)
        return dispatch_retry_call(self.ks, self.actor, member, due)

    async def sweep_once(self) -> int | None:
        """Run every due entry; returns the next due time (µs, server clock) it saw, or None
        when the sets are empty. Reads at most ``batch`` entries per partition per round."""
        batch = self.config.batch
        while True:
            now_raw, *heads = await self.runner.commands(
                [("TIME",)]
                + [
                    ("ZRANGE", self._key(p), 0, batch - 1, "WITHSCORES")
                    for p in range(self.ks.partitions)
                ]
            )
            now = int(now_raw[0]) * 1_000_000 + int(now_raw[1])
            due: list[tuple[str, int]] = []
            upcoming: int | None = None
            full = False
            for head in heads:
                rows = _scored(head)
                full = full or len(rows) == batch
                for member, score in rows:
                    if score <= now:
                        due.append((member, score))
                    else:
                        upcoming = score if upcoming is None else min(upcoming, score)
                        break
            if due:
                await self._run(due, now)
            if not (due and full):
                return upcoming

    async def _run(self, due: Sequence[tuple[str, int]], now: int) -> None:
        calls, kept = [], []
        for member, score in due:
            try:
                calls.append(self._call(member, score))
                kept.append((member, score))
            except (ValueError, BusError) as exc:
                _log.warning("malformed %s due entry %r: %s", self.kind, member, exc)
        replies = await self.runner.call_many(calls)
        for (member, score), reply in zip(kept, replies, strict=True):
            if isinstance(reply, Exception):
                self.metrics.operations.labels(calls[0].script, "error").inc()
                _log.warning("%s due entry %r failed: %s", self.kind, member, reply)
                continue
            done = bool(reply == 1 or (isinstance(reply, list) and int(reply[0]) == 1))
            self.metrics.operations.labels(calls[0].script, "ok" if done else "noop").inc()
            if not done:
                continue
            late = max(0.0, (now - score) / 1e6)
            if self.kind == "lease":
                self.metrics.lease_expiries.inc()
                self.metrics.lease_expiry_delay.observe(late)
            else:
                self.metrics.retries.labels("dispatched").inc()
                self.metrics.retry_delay.observe(late)

    async def run(self) -> None:
        while True:
            self.metrics.loop_heartbeats.labels(f"{self.kind}_sweep").inc()
            woken = self._wake  # a wake() during the sweep below makes the wait return at once
            wait = self.config.sweep_max_wait
            try:
                upcoming = await self.sweep_once()
                if upcoming is not None:
                    now = await self.runner.command("TIME")
                    server_now = int(now[0]) * 1_000_000 + int(now[1])
                    wait = min(wait, max(0.0, (upcoming - server_now) / 1e6))
            except Exception as exc:  # survive and try again: a dead sweep expires nothing
                self.metrics.loop_errors.labels(f"{self.kind}_sweep").inc()
                _log.warning("%s sweep failed: %s", self.kind, exc)
                wait = 1.0
            with anyio.move_on_after(wait):
                await woken.wait()
            if woken.is_set():
                self._wake = anyio.Event()


def _scored(raw: Any) -> list[tuple[str, int]]:
    """ZRANGE ... WITHSCORES, as (member, integer score) pairs."""
    rows = cast("list[Any]", raw or [])
    if rows and not isinstance(rows[0], (list, tuple)):
        rows = list(zip(rows[::2], rows[1::2], strict=True))
    return [(str(m), int(float(s))) for m, s in rows]
