"""Test tiers over the same tests: fakeredis (unit), an embedded real engine started for
the session (contract), a local three-node Redis Cluster of embedded engines (cluster),
and the server at OIBUS_TEST_REDIS_URL when it is set.

Every test gets its own namespace, so its keys hash to their own slots and are deleted
afterwards; nothing here flushes a server."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fakeredis
import pytest
import redis
import redis.cluster
from cluster import LocalCluster
from gateway_server import LiveGateway, live_gateway
from openintent import OpenIntentClient
from receiver import Hit, Receiver

from oibus import AsyncClient, Client
from oibus.embedded import EmbeddedServer

BACKENDS = ["fake", "embedded", "cluster"] + (
    ["env"] if os.environ.get("OIBUS_TEST_REDIS_URL") else []
)


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedServer(tmp_path_factory.mktemp("engine"), appendonly=False)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(params=[pytest.param("asyncio+uvloop", id="uvloop"), "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    if request.param == "asyncio+uvloop":
        return ("asyncio", {"use_uvloop": True})
    return ("asyncio", {})


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name != "fake":
        request.applymarker(pytest.mark.real)
    return name


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


def _url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend in ("embedded", "cluster"):
        return str(request.getfixturevalue(f"{backend}_url"))
    return os.environ["OIBUS_TEST_REDIS_URL"]


@pytest.fixture
def raw_redis(
    backend: str, request: pytest.FixtureRequest, fake_server: fakeredis.FakeServer
) -> Iterator[redis.Redis]:
    """A plain sync connection to the test's server (for setup and inspection)."""
    if backend == "fake":
        conn: redis.Redis = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
    elif backend == "cluster":
        url = _url(backend, request).replace("redis+cluster://", "redis://")
        conn = redis.cluster.RedisCluster.from_url(url, decode_responses=True)  # type: ignore[assignment]
    else:
        conn = redis.Redis.from_url(_url(backend, request), decode_responses=True)
    yield conn
    conn.close()


@pytest.fixture
def cleanup(raw_redis: redis.Redis, namespace: str) -> Iterator[None]:
    yield
    keys = [*raw_redis.scan_iter(f"{{{namespace}:*"), *raw_redis.scan_iter(f"{{{namespace}}}*")]
    for start in range(0, len(keys), 500):
        for key in keys[start : start + 500]:
            raw_redis.delete(key)


@pytest.fixture
def private_webhooks(raw_redis: redis.Redis, namespace: str, cleanup: None) -> None:
    """Record the namespace's webhook policy as private-allowed: the tests' receivers
    listen on 127.0.0.1, which the default (public only) policy refuses at subscribe."""
    raw_redis.hset(f"{{{namespace}}}:meta", "webhook_policy", "private")


def _connection_args(
    backend: str, request: pytest.FixtureRequest, namespace: str
) -> tuple[str | None, dict[str, object]]:
    """URL (None for fakeredis) and the keyword arguments every test client shares."""
    url = None if backend == "fake" else _url(backend, request)
    return url, {"agent_id": "tester", "namespace": namespace, "slot_guard": True}


@pytest.fixture
def client(
    backend: str,
    namespace: str,
    request: pytest.FixtureRequest,
    fake_server: fakeredis.FakeServer,
    cleanup: None,
) -> Iterator[Client]:
    url, kwargs = _connection_args(backend, request, namespace)
    if url is None:
        kwargs["redis"] = fakeredis.FakeRedis(server=fake_server, decode_responses=True)
    c = Client(url, **kwargs)  # type: ignore[arg-type]
    yield c
    c.close()


@pytest.fixture
async def aclient(
    backend: str,
    namespace: str,
    request: pytest.FixtureRequest,
    fake_server: fakeredis.FakeServer,
    cleanup: None,
) -> AsyncIterator[AsyncClient]:
    url, kwargs = _connection_args(backend, request, namespace)
    if url is None:
        kwargs["redis"] = fakeredis.FakeAsyncRedis(server=fake_server, decode_responses=True)
    c = AsyncClient(url, **kwargs)  # type: ignore[arg-type]
    yield c
    await c.aclose()


@pytest.fixture
def other(client: Client) -> Client:
    """A second agent ("rival") on the same bus as ``client``."""
    return Client(redis=client.redis, agent_id="rival", namespace=client.keyspace.namespace)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (see tests/receiver.py)."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay.get(self.path, 0))
            with state.lock:
                queued = state.plan.get(self.path) or []
                status = queued.pop(0) if queued else 200
                state.hits.append(
                    Hit(self.path, dict(self.headers), body, time.monotonic(), status)
                )
            self.send_response(status)
            for name, value in state.headers.get(self.path, {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def bus(embedded_url: str, namespace: str) -> Iterator[Client]:
    """A sync client on the embedded engine, for the process tests (their children
    connect by URL); its namespace's keys are deleted afterwards."""
    client = Client(embedded_url, agent_id="tester", namespace=namespace)
    yield client
    raw = redis.Redis.from_url(embedded_url)
    for key in [*raw.scan_iter(f"{{{namespace}:*"), *raw.scan_iter(f"{{{namespace}}}*")]:
        raw.delete(key)
    raw.close()
    client.close()


@pytest.fixture(scope="module", params=["embedded", "cluster"])
def gateway(request: pytest.FixtureRequest) -> Iterator[LiveGateway]:
    """The HTTP server over real sockets, in front of the embedded engine or the local
    cluster, in a namespace of its own for the module (see tests/gateway_server.py)."""
    url = str(request.getfixturevalue(f"{request.param}_url"))
    namespace = "g" + uuid.uuid4().hex[:12]
    with live_gateway(url, namespace) as gw:
        yield gw
    if url.startswith("redis+cluster://"):
        conn: redis.Redis = redis.cluster.RedisCluster.from_url(  # type: ignore[assignment]
            url.replace("redis+cluster://", "redis://"), decode_responses=True
        )
    else:
        conn = redis.Redis.from_url(url, decode_responses=True)
    for key in [*conn.scan_iter(f"{{{namespace}:*"), *conn.scan_iter(f"{{{namespace}}}*")]:
        conn.delete(key)
    conn.close()


@pytest.fixture
def sdk(gateway: LiveGateway) -> Iterator[Callable[..., OpenIntentClient]]:
    """The reference SDK's sync client against the gateway (a service key, acting as the
    agent it names, as the SDK's agents do); every client made is closed after the test."""
    made: list[OpenIntentClient] = []

    def make(agent: str = "researcher", role: str = "service") -> OpenIntentClient:
        client = OpenIntentClient(base_url=gateway.url, api_key=gateway.keys[role], agent_id=agent)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
