"""The daemon process: its loops, side by side in one anyio task group.

``Daemon.run`` checks the server, loads the scripts, starts its heartbeat and then runs,
until ``stop()`` (SIGTERM/SIGINT in the CLI) or cancellation: one bus reader per
partition, the reclaim loop, the lease and retry sweeps, retention, and the HTTP endpoint
when a port is configured. Stopping cancels the loops: entries being handled stay pending
(nothing is acknowledged before its effect is stored) and the heartbeat key is deleted, so
another daemon takes them over at once. Extra bus handlers and loops (webhook fan-out)
plug in through ``handlers`` and ``services``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import anyio

from oibus.daemon.busreader import BusReader, Handler
from oibus.daemon.checks import check_server
from oibus.daemon.config import DaemonConfig
from oibus.daemon.handlers import BusHandlers
from oibus.daemon.http import serve
from oibus.daemon.liveness import Heartbeat
from oibus.daemon.metrics import Metrics
from oibus.daemon.retention import retention_loop
from oibus.daemon.sweeps import DueSweeper
from oibus.daemon.webhooks import WebhookFanout
from oibus.sdk._async.client import AsyncClient

_log = logging.getLogger("oibus.daemon")

Service = Callable[[], Coroutine[Any, Any, None]]


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        client: AsyncClient | None = None,
        metrics: Metrics | None = None,
        handlers: Sequence[Handler] = (),
        services: Sequence[Service] = (),
    ) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self.client = (
            client
            if client is not None
            else AsyncClient(
                config.redis_url,
                agent_id=f"oibus-daemon:{config.daemon_id}",
                namespace=config.namespace,
                partitions=config.partitions,
            )
        )
        self._owns_client = client is None
        self.extra_handlers = list(handlers)
        self.services = list(services)
        self.webhooks: WebhookFanout | None = None
        if config.webhooks is not None:
            self.webhooks = WebhookFanout(
                self.client.redis,
                self.client.keyspace,
                consumer=config.daemon_id,
                metrics=self.metrics,
                config=config.webhooks,
            )
            self.extra_handlers.append(self.webhooks.on_bus_entry)
            self.services.append(self.webhooks.run)
        self.leases = DueSweeper(self.client, config, self.metrics, "lease")
        self.retries = DueSweeper(self.client, config, self.metrics, "retry")
        self.handlers = BusHandlers(
            self.client, config, self.metrics, self.leases, self.retries, self.extra_handlers
        )
        self.reader = BusReader(self.client, config, self.metrics, self.handlers)
        self.heartbeat = Heartbeat(
            self.client._runner, self.client.keyspace, config.daemon_id, config.heartbeat_ttl
        )
        self.http_port: int | None = None
        self._last_beat = 0.0
        self._stop = anyio.Event()

    def healthy(self) -> bool:
        return time.monotonic() - self._last_beat < self.config.heartbeat_ttl

    def stop(self) -> None:
        self._stop.set()

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self.heartbeat.beat()
                self._last_beat = time.monotonic()
                self.metrics.loop_heartbeats.labels("heartbeat").inc()
            except Exception as exc:  # a missed beat is retried; the TTL allows a few
                self.metrics.loop_errors.labels("heartbeat").inc()
                _log.warning("heartbeat failed: %s", exc)
            await anyio.sleep(self.config.heartbeat_ttl / 3)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        cfg = self.config
        try:
            await check_server(self.client, refuse_eviction=cfg.refuse_eviction)
            loaded = await self.client.load_scripts()
            if self.webhooks is not None:
                await self.webhooks.settle_policy()  # before any delivery
            await self.reader.ensure_groups()
            await self.heartbeat.beat()
            self._last_beat = time.monotonic()
            _log.info(
                "daemon %s up: namespace %s, %d partitions, %d scripts loaded",
                cfg.daemon_id,
                cfg.namespace,
                cfg.partitions,
                loaded,
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._beat_loop)
                for p in range(self.client.keyspace.partitions):
                    tg.start_soon(self.reader.run_partition, p)
                tg.start_soon(self.reader.reclaim_loop)
                tg.start_soon(self.leases.run)
                tg.start_soon(self.retries.run)
                tg.start_soon(retention_loop, self.client, cfg, self.metrics)
                for service in self.services:
                    tg.start_soon(service)
                if cfg.http_port is not None:
                    self.http_port = await tg.start(
                        serve, self.metrics, self.healthy, cfg.http_host, cfg.http_port
                    )
                loops = ["bus", "reclaim", "lease_sweep", "retry_sweep", "retention"]
                for loop in loops + (["webhooks"] if self.webhooks is not None else []):
                    _log.info("loop %s started", loop)
                task_status.started(self)
                await self._stop.wait()
                _log.info("daemon %s stopping: in-flight entries stay pending", cfg.daemon_id)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                try:
                    await self.heartbeat.stop()
                except Exception as exc:  # Redis is down: the key expires by its TTL
                    _log.warning("could not delete the heartbeat: %s", exc)
                finally:
                    if self._owns_client:
                        await self.client.aclose()
            _log.info("daemon %s stopped", cfg.daemon_id)
