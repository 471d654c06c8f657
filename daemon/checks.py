"""What the daemon checks before it starts: a server new enough for the commands it uses,
and one that will not evict coordination data (DESIGN invariant 8)."""

from __future__ import annotations

import logging
from typing import Any, cast

from oibus.bus.errors import BusError, ConfigurationError
from oibus.sdk._async.client import AsyncClient

_log = logging.getLogger("oibus.daemon")

MIN_VERSION = (6, 2)
"""XAUTOCLAIM, ZRANGE BYSCORE/BYLEX and XTRIM MINID arrived in Redis 6.2."""

SAFE_POLICIES = frozenset({"noeviction"})
"""Policies under which no oibus key can be evicted. The volatile-* policies evict only keys
with a TTL (oibus gives one to heartbeats and idempotency markers only): a warning."""


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


async def check_server(client: AsyncClient, *, refuse_eviction: bool) -> list[str]:
    """Log what is wrong; raise ConfigurationError for what the daemon cannot run on (an old
    server, or eviction when ``refuse_eviction``). Returns the warnings."""
    warnings: list[str] = []
    try:
        info = cast("dict[str, Any]", await client._runner.command("INFO", "server"))
    except BusError:
        info = {}
    version_text = str(info.get("valkey_version") or info.get("redis_version") or "")
    if version_text and parse_version(version_text) < MIN_VERSION:
        raise ConfigurationError(
            f"the server is version {version_text}; the daemon needs Redis 6.2 or later"
        )
    try:
        reply = await cast("Any", client.redis).config_get("maxmemory-policy")
        policy = str(reply.get("maxmemory-policy", "")) if isinstance(reply, dict) else ""
    except Exception:
        policy = ""  # CONFIG disabled (managed services): say so and go on
        warnings.append(
            "could not read maxmemory-policy (CONFIG GET refused); check it is noeviction"
        )
    if policy and policy not in SAFE_POLICIES:
        message = (
            f"maxmemory-policy is {policy}: the server may evict keys under memory pressure, "
            "and an evicted intent, lease or bus entry is lost coordination data; set it to "
            "noeviction"
        )
        if refuse_eviction:  # volatile-* evicts heartbeats and locks: work runs twice
            raise ConfigurationError(message)
        warnings.append(message)
    for warning in warnings:
        _log.warning(warning)
    return warnings
