"""The failover tier (issue 15): Redis dies under load and comes back (a replica promoted
by the cluster or by Sentinel, or the same server restarted on its append-only file).

Each test starts its own servers on loopback (never the shared Redis), runs a sync
``Client`` and an ``AsyncClient`` writing and a daemon working, kills the primary with
SIGKILL, and checks that all three carry on without a restart: calls fail with a typed
``BusError`` during the outage (none hangs), every partition takes writes again, and the
daemon records lease expiries on the new primary. Then it reads back every acknowledged
write and reports what was lost, with the time to recover. Replication is asynchronous, so
a promotion may lose the last acknowledged writes; the assertion is the honest bound
(nothing older than a second before the fault), and the figure is printed. An AOF with
``appendfsync always`` must lose nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis
from cluster import LocalCluster, _cli
from failover import Ledger, Loss, SentinelGroup, one_per_partition, write_async, write_sync

from oibus import AsyncClient, Client
from oibus.bus.errors import EmbeddedServerError, NotFoundError
from oibus.daemon.config import DaemonConfig
from oibus.daemon.liveness import live_daemons
from oibus.daemon.service import Daemon
from oibus.embedded import EmbeddedServer, find_engine

pytestmark = [pytest.mark.failover, pytest.mark.anyio]

NAMESPACE = "failover"
PAUSE = 0.002
"""Between a writer's calls: a few hundred calls a second each, on two cores."""
RECOVERY_LIMIT = 30.0
SOCKET_TIMEOUT = 10.0
"""The clients' default; a failed call must fail within it (plus redis-py's retries)."""


@pytest.fixture
def anyio_backend() -> str:
    """One event loop is enough here: the time of this tier is in the faults."""
    return "asyncio"


@pytest.fixture(autouse=True)
def engine() -> None:
    try:
        find_engine()
    except EmbeddedServerError as exc:
        pytest.skip(f"no Redis-compatible engine to run the failover tier: {exc}")


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    if _cli() is None:
        pytest.skip("no valkey-cli/redis-cli to create a cluster with")
    cluster = LocalCluster(tmp_path, replicas=1, node_timeout_ms=1000)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


async def _wait(check: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``check`` until true; returns the seconds it took, fails the test past
    ``within``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            pytest.fail(f"{what}: not within {within:g}s")
        await anyio.sleep(0.05)
    return time.monotonic() - started


async def _daemon_works(aclient: AsyncClient, daemon_id: str) -> float:
    """A lease taken now on every partition expires, and the daemon records it: its bus
    readers and sweeps reach every primary. Returns how long that took."""
    started = time.monotonic()
    ids = one_per_partition(aclient.keyspace, "probe")
    for intent_id in ids:
        await aclient.create_intent("probe", intent_id=intent_id)
        await aclient.acquire_lease(intent_id, "probe", 0.5)
    for intent_id in ids:
        while not await aclient.get_events(intent_id, event_type="lease_expired"):
            if time.monotonic() - started > 15:
                pytest.fail(f"the daemon recorded no lease_expired on {intent_id} in 15s")
            await anyio.sleep(0.05)
    assert daemon_id in await live_daemons(aclient._runner, aclient.keyspace)
    return time.monotonic() - started


async def run_fault(
    url: str,
    fault: Callable[[], None],
    report: Callable[[str], None],
    label: str,
    read_back_url: str | None = None,
) -> tuple[list[Loss], list[Ledger], float]:
    """Load ``url`` with both clients and a daemon, call ``fault`` (in a thread: it may
    block, e.g. restarting a server), and wait until everything works again. Then read
    every acknowledged write back through ``read_back_url`` (a new client needs a node
    that is alive: a cluster URL naming the killed node leads nowhere). Returns the
    losses, the ledgers and the time of the fault."""
    sync_client = Client(
        url, agent_id="sync-writer", namespace=NAMESPACE, socket_timeout=SOCKET_TIMEOUT
    )
    aclient = AsyncClient(
        url, agent_id="async-writer", namespace=NAMESPACE, socket_timeout=SOCKET_TIMEOUT
    )
    sync_ids = one_per_partition(aclient.keyspace, "s")
    async_ids = one_per_partition(aclient.keyspace, "a")
    for intent_id in sync_ids + async_ids:
        await aclient.create_intent("load", intent_id=intent_id, state={"n": -1})
    sync_ledger, async_ledger = Ledger("sync"), Ledger("async")
    daemon_id = f"failover-{label}"
    daemon = Daemon(
        DaemonConfig(
            redis_url=url,
            namespace=NAMESPACE,
            daemon_id=daemon_id,
            heartbeat_ttl=1.0,
            block_ms=100,
            sweep_max_wait=0.3,
            retention_interval=0.5,
        )
    )
    stop_sync, stop_async = threading.Event(), anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            tg.start_soon(_in_thread, write_sync, sync_client, sync_ledger, sync_ids, stop_sync)
            tg.start_soon(write_async, aclient, async_ledger, async_ids, stop_async, PAUSE)
            await _wait(
                lambda: min(sync_ledger.acknowledged, async_ledger.acknowledged) >= 200,
                20,
                "load before the fault",
            )
            fault_at = time.monotonic()
            await anyio.to_thread.run_sync(fault)
            recovered = await _wait(
                lambda: (
                    sync_ledger.recovered_after(fault_at, sync_ids) is not None
                    and async_ledger.recovered_after(fault_at, async_ids) is not None
                ),
                RECOVERY_LIMIT,
                "both clients writing to every partition again after the fault",
            )
            recovered = max(
                sync_ledger.recovered_after(fault_at, sync_ids) or 0.0,
                async_ledger.recovered_after(fault_at, async_ids) or 0.0,
            )
            daemon_took = await _daemon_works(aclient, daemon_id)
            stop_sync.set()
            stop_async.set()
            daemon.stop()
        with Client(read_back_url or url, namespace=NAMESPACE) as reader:
            losses = [sync_ledger.check(reader), async_ledger.check(reader)]
    finally:
        stop_sync.set()
        stop_async.set()
        sync_client.close()
        await aclient.aclose()
    ledgers = [sync_ledger, async_ledger]
    report(
        f"{label}: writers recovered {recovered:.2f}s after the fault, the daemon "
        f"recorded lease expiries on every partition {daemon_took:.2f}s later; "
        + "; ".join(
            f"{loss.writer}: {loss.lost} of {loss.acknowledged} acknowledged writes lost "
            f"({loss.created} creates, {loss.events} events, {loss.updates} updates), "
            f"typed errors {dict(ledger.typed_errors)}, "
            f"slowest failure {ledger.slowest_failure:.2f}s"
            for loss, ledger in zip(losses, ledgers, strict=True)
        )
    )
    for loss, ledger in zip(losses, ledgers, strict=True):
        assert not ledger.untyped, f"untyped errors from {ledger.name}: {ledger.untyped[:3]}"
        assert ledger.typed_errors, f"{ledger.name} never saw the fault"
        assert ledger.slowest_failure < SOCKET_TIMEOUT, "a call hung through the outage"
        assert not loss.out_of_order, f"event logs with gaps: {loss.out_of_order[:3]}"
    return losses, ledgers, fault_at


async def _in_thread(
    writer: Callable[[Client, Ledger, list[str], threading.Event, float], None],
    client: Client,
    ledger: Ledger,
    intents: list[str],
    stop: threading.Event,
) -> None:
    """The sync writer in a worker thread; a failure elsewhere (the daemon dying) cancels
    this task, which then stops the thread instead of waiting for it forever."""
    try:
        await anyio.to_thread.run_sync(
            writer, client, ledger, intents, stop, PAUSE, abandon_on_cancel=True
        )
    finally:
        stop.set()


def _acknowledged_within(ledgers: list[Ledger], fault_at: float, seconds: float) -> int:
    return sum(
        1 for ledger in ledgers for at, _ in ledger.successes if fault_at - seconds < at <= fault_at
    )


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a figure past pytest's capture, so `make test` shows what was measured."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n[failover] {line}")

    return emit


@pytest.mark.timeout(90)
async def test_a_cluster_primary_killed_and_its_replica_promoted(
    replicated_cluster: LocalCluster, report: Callable[[str], None]
) -> None:
    victim = replicated_cluster.servers[0]  # also the node the URL names
    with redis.Redis(port=victim.port or 0, decode_responses=True) as node:
        assert node.info("replication")["role"] == "master"
    url = f"redis+cluster://127.0.0.1:{victim.port}"
    survivor = f"redis+cluster://127.0.0.1:{replicated_cluster.servers[1].port}"
    losses, ledgers, fault_at = await run_fault(url, victim.kill, report, "cluster", survivor)
    # asynchronous replication: only what the replica had not received yet may be gone
    assert sum(loss.lost for loss in losses) <= _acknowledged_within(ledgers, fault_at, 1.0)


@pytest.mark.timeout(90)
async def test_a_sentinel_failover(
    sentinel_group: SentinelGroup, report: Callable[[str], None]
) -> None:
    old = sentinel_group.primary.port
    url = f"redis+sentinel://127.0.0.1:{sentinel_group.port}/{sentinel_group.service}/0"
    losses, ledgers, fault_at = await run_fault(
        url, sentinel_group.primary.kill, report, "sentinel"
    )
    assert sentinel_group.primary_port() not in (None, old)  # it was a real promotion
    assert sum(loss.lost for loss in losses) <= _acknowledged_within(ledgers, fault_at, 1.0)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_a_restart_on_the_append_only_file(
    tmp_path: Path, fsync: str, report: Callable[[str], None]
) -> None:
    server = EmbeddedServer(tmp_path, appendonly=True, extra_args=["--appendfsync", fsync])
    server.start()
    try:
        with redis.Redis(port=server.port or 0, decode_responses=True) as conn:
            assert conn.config_get("appendfsync")["appendfsync"] == fsync

        def crash_and_restart() -> None:
            server.kill()
            server.start()  # the same port and data directory

        losses, ledgers, fault_at = await run_fault(
            server.url, crash_and_restart, report, f"restart, appendfsync {fsync}"
        )
    finally:
        server.stop()
    if fsync == "always":
        assert [loss.lost for loss in losses] == [0, 0]
    else:  # a host crash could lose ~1 s; a killed process keeps what it wrote()
        assert sum(loss.lost for loss in losses) <= _acknowledged_within(ledgers, fault_at, 2.0)


@pytest.mark.timeout(60)
async def test_a_cluster_client_whose_startup_nodes_ran_dry_finds_the_cluster_again(
    cluster_url: str, namespace: str
) -> None:
    """The state a burst of connection errors leaves redis-py's cluster clients in (every
    startup node dropped; the asyncio client closes all connections on each error, so a
    busy one gets there whenever a primary dies): the next rediscovery must still find
    the cluster, not fail with "at least one reachable node: None" until a restart."""
    async with AsyncClient(cluster_url, namespace=namespace) as aclient:
        with pytest.raises(NotFoundError):
            await aclient.get_intent("nobody")
        aclient.redis.nodes_manager.startup_nodes.clear()
        await aclient.redis.aclose()  # the next call rediscovers, as after an error
        with pytest.raises(NotFoundError):
            await aclient.get_intent("nobody")
    with Client(cluster_url, namespace=namespace) as client:
        client.redis.nodes_manager.startup_nodes.clear()
        client.redis.nodes_manager.initialize()  # what redis-py calls after an error
        with pytest.raises(NotFoundError):
            client.get_intent("nobody")


@pytest.mark.timeout(30)
async def test_a_daemon_stopped_while_redis_is_down_stops_cleanly(tmp_path: Path) -> None:
    """Its heartbeat cannot be deleted then (it expires by its TTL): that is logged, and
    ``run`` returns instead of raising the connection error."""
    server = EmbeddedServer(tmp_path, appendonly=False)
    server.start()
    try:
        config = DaemonConfig(
            redis_url=server.url, namespace=NAMESPACE, daemon_id="doomed", heartbeat_ttl=1.0
        )
        daemon = Daemon(config)
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            server.kill()
            daemon.stop()
    finally:
        server.stop()
