"""Running the daemon as a process: logging, signals, the event loop, and ``--check``."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable

import anyio

from oibus.daemon.config import DaemonConfig
from oibus.daemon.liveness import live_daemons
from oibus.daemon.service import Daemon
from oibus.sdk._async.client import AsyncClient


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def configure_logging(as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger("oibus")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _backend() -> dict[str, object]:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        return {}
    return {"use_uvloop": True}


async def serve_until_signalled(
    config: DaemonConfig, started: Callable[[Daemon], None] | None = None
) -> None:
    """Run the daemon until SIGTERM or SIGINT, then stop it (in-flight work is handed
    back, see ``Daemon``) and return."""
    daemon = Daemon(config)
    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await tg.start(daemon.run)
            if started is not None:
                started(daemon)
            async for _ in signals:
                daemon.stop()
                break


def run(config: DaemonConfig, started: Callable[[Daemon], None] | None = None) -> None:
    anyio.run(serve_until_signalled, config, started, backend="asyncio", backend_options=_backend())


async def _live(config: DaemonConfig) -> list[str]:
    async with AsyncClient(
        config.redis_url,
        agent_id="oibus-check",
        namespace=config.namespace,
        partitions=config.partitions,
    ) as client:
        return await live_daemons(client._runner, client.keyspace)


def check(config: DaemonConfig) -> list[str]:
    """The ids of the daemons alive on this namespace (for ``oibus daemon --check``)."""
    return anyio.run(_live, config, backend="asyncio", backend_options=_backend())
