"""The overview: what ``oibus stats`` and ``oibus doctor`` compute, as a page that
refreshes itself. The same bounded reads (counts from the per-partition indexes, the
event rate from the newest bus entries, the consumer groups' own summaries, INFO memory
per primary): the cost of the page does not grow with the number of intents."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.daemon.admin import bus_stats, group_facts, primaries
from oibus.gateway.ui.render import is_fragment, page
from oibus.gateway.ui.session import gateway, viewer
from oibus.sdk._async.client import AsyncClient

REFRESH_SECONDS = 5


class Memory(msgspec.Struct, frozen=True):
    address: str
    used: int
    maximum: int
    """0: no limit set (maxmemory 0)."""


async def memory(client: AsyncClient) -> list[Memory]:
    out = []
    async with primaries(client) as nodes:
        for where, r in nodes:
            info: dict[str, Any] = await r.info("memory")
            out.append(
                Memory(where, int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
            )
    return out


async def facts(client: AsyncClient) -> dict[str, Any]:
    stats = await bus_stats(client)
    return {
        "stats": stats,
        "groups": await group_facts(client, stats.live_daemons),
        "memory": await memory(client),
        "refresh": REFRESH_SECONDS,
    }


async def overview(request: Request) -> Response:
    seen = await viewer(request)
    found = await facts(gateway(request).base)
    name = "_overview.html" if is_fragment(request) else "overview.html"
    return page(request, name, seen, section="overview", **found)


routes = [Route("/", overview, methods=["GET"], name="ui-overview")]
