"""A real gateway for tests: uvicorn on a free loopback port in a thread of the test
process, in front of a real server (the embedded engine or the local cluster), with API
keys made through the same store ``oibus keys`` uses. Requests travel over real sockets,
so the reference SDK is exercised as its users run it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn

from oibus import AsyncClient
from oibus.embedded import free_port
from oibus.gateway.app import GatewayConfig, create_app
from oibus.gateway.keys import add_key


@dataclass
class LiveGateway:
    url: str
    redis_url: str
    namespace: str
    keys: dict[str, str] = field(default_factory=dict)
    """role name -> key: ``admin`` (principal ``boss``), ``service`` (``svc``), ``agent``
    (``ada``), ``reader`` (``rita``)."""


PRINCIPALS = {"admin": "boss", "service": "svc", "agent": "ada", "reader": "rita"}


def headers(gw: LiveGateway, role: str = "service", agent: str | None = None) -> dict[str, str]:
    """Headers of a raw request with ``role``'s key, acting as ``agent`` if given."""
    out = {"X-API-Key": gw.keys[role]}
    if agent is not None:
        out["X-Agent-ID"] = agent
    return out


def _keys(redis_url: str, namespace: str) -> dict[str, str]:
    async def make() -> dict[str, str]:
        async with AsyncClient(redis_url, namespace=namespace) as client:
            made = {}
            for role, principal in PRINCIPALS.items():
                key, _ = await add_key(client, principal, role)
                made[role] = key
            return made

    return asyncio.run(make())


@contextmanager
def live_gateway(redis_url: str, namespace: str) -> Iterator[LiveGateway]:
    app = create_app(GatewayConfig(redis_url=redis_url, namespace=namespace))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="asyncio",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    try:
        yield LiveGateway(
            f"http://127.0.0.1:{port}", redis_url, namespace, _keys(redis_url, namespace)
        )
    finally:
        server.should_exit = True
        thread.join(10)
