"""The daemon's configuration: flags and ``OIBUS_*`` environment variables, one record.

Defaults are for one daemon beside an embedded server; every number is a bound the
daemon keeps (how long it may hold work before another daemon takes it over, how much it
reads at once, how long acknowledged bus entries are kept)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from oibus.bus.errors import ConfigurationError
from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS
from oibus.bus.webhooks import WebhookConfig

GROUP = "oibus-daemon"
"""The consumer group every daemon reads the partition buses through (they share the work)."""


def _default_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    redis_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    partitions: int = DEFAULT_PARTITIONS
    daemon_id: str = field(default_factory=_default_id)
    heartbeat_ttl: float = 10.0
    """A daemon silent this long is dead: its pending bus entries are taken over."""
    batch: int = 100
    """Bus entries read per partition per call."""
    block_ms: int = 2000
    """How long a bus read waits for new entries (below the connection's socket timeout)."""
    max_deliveries: int = 10
    """A bus entry handled and failed this many times goes to the dead-letter store."""
    retention_seconds: float = 3600.0
    """How long bus entries every group has acknowledged are kept before trimming."""
    retention_interval: float = 30.0
    sweep_max_wait: float = 5.0
    """Longest wait between due-set checks when nothing on the bus says to look sooner."""
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    """Port of /metrics and /healthz; None serves none, 0 picks a free port."""
    webhooks: WebhookConfig | None = field(default_factory=WebhookConfig)
    """How webhooks are delivered (RFC-0006); None runs no webhook fan-out."""
    refuse_eviction: bool = False
    """Refuse to start when the server may evict keys (any maxmemory-policy but
    noeviction: volatile-* evicts the keys with TTLs, heartbeats and locks among them)."""
    log_json: bool = False

    def __post_init__(self) -> None:
        if self.heartbeat_ttl <= 0.3:
            raise ConfigurationError("heartbeat_ttl must be over 0.3 seconds")
        if not 1 <= self.batch <= 10_000:
            raise ConfigurationError("batch must be from 1 to 10000")
        if not 10 <= self.block_ms <= 60_000:
            raise ConfigurationError("block_ms must be from 10 to 60000")
        if self.max_deliveries < 1:
            raise ConfigurationError("max_deliveries must be at least 1")
        if self.retention_seconds < 0 or self.retention_interval <= 0:
            raise ConfigurationError("retention_seconds must be >= 0, retention_interval > 0")
        if self.sweep_max_wait <= 0:
            raise ConfigurationError("sweep_max_wait must be > 0")
