"""The agents: each agent type's consumer group on the partition buses, its replicas
(consumers) with their pending entries, how long since each last read, and whether its
heartbeat key still lives; and the intents each agent acted on last, read from the
newest ``RECENT`` entries of every bus (bounded: the page costs the same at any size)."""

from __future__ import annotations

from typing import Any, Final

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.daemon.admin import consumer_rows, group_rows
from oibus.gateway.ui.render import page
from oibus.gateway.ui.session import gateway, viewer
from oibus.sdk._async.client import AsyncClient

AGENT_GROUP: Final = "agent:"
"""An ``@agent``'s consumer group is ``agent:<agent id>`` (sdk/agents.py)."""
RECENT: Final = 200
"""Newest entries of each bus read for the agents' last intents."""
LAST: Final = 8


class Replica(msgspec.Struct, kw_only=True):
    name: str
    pending: int = 0
    idle_ms: int | None = None
    heartbeat_ms: int | None = None
    """The heartbeat key's remaining life (None: expired, so the replica is gone)."""
    pid: str | None = None


class AgentGroup(msgspec.Struct, kw_only=True):
    name: str
    agent_id: str
    pending: int = 0
    lag: int | None = 0
    replicas: dict[str, Replica] = msgspec.field(default_factory=dict)
    last: list[tuple[str, str, str]] = msgspec.field(default_factory=list)
    """(intent id, event type, entry id) of what the agent did last, newest first."""

    @property
    def live(self) -> int:
        return sum(1 for r in self.replicas.values() if r.heartbeat_ms is not None)


async def agent_groups(client: AsyncClient) -> list[AgentGroup]:
    ks = client.keyspace
    redis: Any = client.redis
    found: dict[str, AgentGroup] = {}

    async def read(key: str) -> None:
        for row in await group_rows(redis, key):
            name = str(row["name"])
            if not name.startswith(AGENT_GROUP):
                continue
            group = found.setdefault(name, AgentGroup(name=name, agent_id=name[len(AGENT_GROUP) :]))
            group.pending += int(row.get("pending", 0))
            lag = row.get("lag")
            group.lag = None if lag is None or group.lag is None else group.lag + int(lag)
            for c in await consumer_rows(redis, key, name):
                replica = group.replicas.setdefault(str(c["name"]), Replica(name=str(c["name"])))
                replica.pending += int(c.get("pending", 0))
                idle = int(c.get("idle", 0))
                replica.idle_ms = idle if replica.idle_ms is None else min(idle, replica.idle_ms)

    async with anyio.create_task_group() as tg:
        for p in range(ks.partitions):
            tg.start_soon(read, ks.bus(p))
    groups = sorted(found.values(), key=lambda g: g.name)
    beats = [(g, r) for g in groups for r in g.replicas.values()]
    if beats:
        replies = await client._runner.commands(
            [
                cmd
                for g, r in beats
                for cmd in (
                    ("PTTL", ks.consumer_heartbeat(g.name, r.name)),
                    ("GET", ks.consumer_heartbeat(g.name, r.name)),
                )
            ]
        )
        for n, (_, r) in enumerate(beats):
            ttl, pid = int(replies[2 * n]), replies[2 * n + 1]
            r.heartbeat_ms = ttl if ttl >= 0 else None
            r.pid = pid
    await _last_acts(client, {g.agent_id: g for g in groups})
    return groups


async def _last_acts(client: AsyncClient, by_agent: dict[str, AgentGroup]) -> None:
    """What each agent did last: bus entries whose actor (``a``) is the agent."""
    if not by_agent:
        return
    ks = client.keyspace
    replies = await client._runner.commands(
        [("XREVRANGE", ks.bus(p), "+", "-", "COUNT", RECENT) for p in range(ks.partitions)]
    )
    acts: list[tuple[str, str, str, str]] = []
    for reply in replies:
        for entry_id, fields in reply:
            actor = fields.get("a")
            if actor in by_agent and "i" in fields:
                acts.append((entry_id, actor, fields["i"], fields.get("t", "?")))
    acts.sort(key=lambda a: tuple(int(x) for x in a[0].split("-")), reverse=True)
    for entry_id, actor, intent_id, kind in acts:
        group = by_agent[actor]
        if len(group.last) < LAST and all(i != intent_id for i, _, _ in group.last):
            group.last.append((intent_id, kind, entry_id))


async def agents_page(request: Request) -> Response:
    seen = await viewer(request)
    groups = await agent_groups(gateway(request).base)
    return page(request, "agents.html", seen, section="agents", groups=groups, recent=RECENT)


routes = [Route("/agents", agents_page, methods=["GET"])]
