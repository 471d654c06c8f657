"""What ``discover()`` reports: which protocol, which parts of it, which limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oibus.bus import limits
from oibus.bus.events import EventType
from oibus.bus.keyspace import Keyspace
from oibus.bus.models import ProtocolInfo
from oibus.bus.statuses import IntentStatus

PROTOCOL = "OpenIntent Coordination Protocol"
PROTOCOL_VERSION = "1.0"
RFCS = [
    "RFC-0001",
    "RFC-0002",
    "RFC-0003",
    "RFC-0004",
    "RFC-0005",
    "RFC-0006",
    "RFC-0007",
    "RFC-0008",
    "RFC-0009",
    "RFC-0010",
]
CAPABILITIES = [
    "intents",
    "state_patches",
    "optimistic_concurrency",
    "event_log",
    "event_sequence",
    "idempotent_create",
    "assignment",
    "listing",
    "leases",
    "fencing_tokens",
    "lease_guarded_writes",
    "arbitration",
    "decisions",
    "delegations",
    "attachments",
    "costs",
    "budgets",
    "retry_policies",
    "failures",
]


def protocol_info(keyspace: Keyspace, server: Mapping[str, Any], version: str) -> ProtocolInfo:
    engine = "valkey" if "valkey_version" in server else "redis"
    return ProtocolInfo(
        protocol=PROTOCOL,
        protocol_version=PROTOCOL_VERSION,
        implementation="oibus",
        implementation_version=version,
        rfcs=RFCS,
        capabilities=CAPABILITIES,
        statuses=[str(s) for s in IntentStatus],
        event_types=[str(t) for t in EventType],
        limits={
            "state_bytes": limits.STATE_BYTES,
            "payload_bytes": limits.PAYLOAD_BYTES,
            "patch_ops": limits.PATCH_OPS,
            "path_depth": limits.PATH_DEPTH,
            "page_max": limits.PAGE_MAX,
        },
        namespace=keyspace.namespace,
        partitions=keyspace.partitions,
        server={
            "engine": engine,
            "version": str(server.get("valkey_version") or server.get("redis_version", "")),
            "mode": str(server.get("server_mode") or server.get("redis_mode") or "standalone"),
        },
    )
