"""The admin commands, run through click's CliRunner against real servers (the embedded
engine, the local cluster, and OIBUS_TEST_REDIS_URL): each command's output, its JSON,
its exit code on bad input, and that a failed command changes nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result
from conftest import BACKENDS, _url

from oibus import Client
from oibus.bus.consuming import REPLAY_FOR
from oibus.bus.doctor import BusFacts, GroupFacts, NodeFacts, diagnose, worst
from oibus.bus.registry import default_registry
from oibus.cli import main

Cli = Callable[..., Result]


@pytest.fixture(params=[b for b in BACKENDS if b != "fake"])
def backend(request: pytest.FixtureRequest) -> str:
    request.applymarker(pytest.mark.real)
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str:
    return _url(backend, request)


@pytest.fixture
def cli(url: str, namespace: str, cleanup: None) -> Cli:
    def run(*words: str, code: int | None = 0) -> Result:
        env = {"OIBUS_REDIS_URL": url, "OIBUS_NAMESPACE": namespace}
        result = CliRunner().invoke(main, list(words), env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback is a bug: commands end with a line
        if code is not None:
            assert result.exit_code == code, result.output
        return result

    return run


@pytest.fixture
def sync(url: str, namespace: str) -> Iterator[Client]:
    c = Client(url, agent_id="tester", namespace=namespace)
    yield c
    c.close()


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- intents -------------------------------------------------------------------------------
def test_intents_create_list_show(cli: Cli, sync: Client) -> None:
    made = json.loads(cli("intents", "create", "Root", "--state", '{"k": 1}', "--json").stdout)
    root = made["id"]
    child = cli("intents", "create", "Child", "--parent", root).stdout.split()[0]
    after = cli("intents", "create", "After", "--depends-on", root).stdout.split()
    assert after[1] == "blocked"
    listed = cli("intents", "list").stdout
    assert root in listed and child in listed and "After" in listed
    only = json.loads(cli("intents", "list", "--status", "blocked", "--json").stdout)
    assert [i["id"] for i in only["intents"]] == [after[0]]
    kids = json.loads(cli("intents", "list", "--parent", root, "--json").stdout)
    assert [i["id"] for i in kids["intents"]] == [child]
    page = json.loads(cli("intents", "list", "--limit", "2", "--json").stdout)
    assert len(page["intents"]) == 2 and page["next_cursor"]
    rest = json.loads(cli("intents", "list", "--cursor", page["next_cursor"], "--json").stdout)
    assert len(rest["intents"]) == 1
    sync.acquire_lease(root, "draft", 60)
    shown = cli("intents", "show", root).stdout
    assert "k = 1" in shown and "draft" in shown and "intent_created" in shown
    deps = json.loads(cli("intents", "show", after[0], "--json").stdout)
    assert [d["id"] for d in deps["dependencies"]] == [root]


def test_intents_patch_uses_the_version_check(cli: Cli, sync: Client) -> None:
    intent = sync.create_intent("t", state={"a": 1})
    cli("intents", "patch", intent.id, "--set", "progress:=0.5", "--set", "owner.name=ada")
    got = sync.get_intent(intent.id)
    assert got.state == {"a": 1, "progress": 0.5, "owner": {"name": "ada"}}
    assert got.version == 2
    stale = cli("intents", "patch", intent.id, "--set", "x:=1", "--version", "1", code=4)
    assert "version 2" in one_line_error(stale)
    cli("intents", "patch", intent.id, "--remove", "/a", "--set", "note=hi", "--version", "2")
    assert sync.get_intent(intent.id).state == {
        "progress": 0.5,
        "owner": {"name": "ada"},
        "note": "hi",
    }
    # 15.11: bad JSON after := was stored as a string, with exit 0
    for bad in (
        ["--set", "novalue"],
        ["--set", "=1"],
        ["--set", ":=1"],
        [],
        ["--set", "/a/~x=1"],
        ["--set", 'cfg:={"a":1'],
        ["--set", "n:=NaN"],
    ):
        one_line_error(cli("intents", "patch", intent.id, *bad, code=2))
    assert sync.get_intent(intent.id).version == 3  # nothing changed
    cli("intents", "patch", intent.id, "--set", "n=1", "--set", 'cfg:={"a": [1]}')
    assert sync.get_intent(intent.id).state["n"] == "1"  # text is text
    assert sync.get_intent(intent.id).state["cfg"] == {"a": [1]}


def test_intents_status_and_bad_input(cli: Cli, sync: Client) -> None:
    intent = sync.create_intent("t")
    out = cli("intents", "status", intent.id, "completed", "--reason", "done").stdout
    assert "active -> completed" in out
    assert sync.get_intent(intent.id).status == "completed"
    one_line_error(cli("intents", "status", intent.id, "active", code=4))  # a closed intent
    one_line_error(cli("intents", "status", "no-such-intent", "completed", code=3))
    cli("intents", "status", intent.id, "bogus", code=2)  # click's usage error
    one_line_error(cli("intents", "show", "no-such-intent", code=3))
    one_line_error(cli("intents", "create", "t", "--state", "[1]", code=2))
    one_line_error(cli("intents", "create", "t", "--state", "{nope", code=2))
    one_line_error(cli("intents", "show", "bad{id}", code=2))


def test_unreachable_redis_is_one_line_and_exit_5(namespace: str) -> None:
    env = {"OIBUS_REDIS_URL": "redis://127.0.0.1:1/0", "OIBUS_NAMESPACE": namespace}
    result = CliRunner().invoke(main, ["intents", "list"], env=env)
    assert result.exit_code == 5
    assert isinstance(result.exception, SystemExit)
    one_line_error(result)


# -- events --------------------------------------------------------------------------------
def test_events_tail_history(cli: Cli, sync: Client) -> None:
    a = sync.create_intent("a")
    b = sync.create_intent("b")
    sync.log_event(a.id, "note", {"n": 1})
    sync.set_status(b.id, None, "completed")
    lines = cli("events", "tail", "-n", "3").stdout.splitlines()
    assert len(lines) == 3
    assert "note" in lines[1] and "status_changed" in lines[2] and b.id in lines[2]
    only = cli("events", "tail", "--intent", a.id).stdout
    assert "intent_created" in only and "note" in only and b.id not in only
    typed = cli("events", "tail", "--type", "status_changed", "--json").stdout.splitlines()
    assert [json.loads(x)["event"]["intent_id"] for x in typed] == [b.id]


def test_events_tail_follows(cli: Cli, sync: Client) -> None:
    intent = sync.create_intent("watched")
    done = threading.Event()

    def write() -> None:
        n = 0
        while not done.is_set() and n < 200:
            sync.log_event(intent.id, "tick", {"n": n})
            n += 1
            time.sleep(0.05)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        result = cli("events", "tail", "-f", "-n", "0", "--type", "tick", "--exit-after", "3")
    finally:
        done.set()
        writer.join()
    ticks = result.stdout.splitlines()
    assert len(ticks) == 3 and all("tick" in t and intent.id in t for t in ticks)
    seqs = [int(t.split("#")[1].split()[0]) for t in ticks]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


# -- graph, leases, portfolios, subscriptions ----------------------------------------------
def test_graph_draws_the_tree(cli: Cli, sync: Client) -> None:
    root = sync.create_intent("Incident")
    triage = sync.create_intent("Triage", parent_intent_id=root.id)
    fix = sync.create_intent("Fix", parent_intent_id=root.id, depends_on=[triage.id])
    sync.set_status(triage.id, None, "completed")
    drawn = cli("graph", fix.id).stdout.splitlines()
    assert drawn[0].startswith("Incident [active]")
    assert any(
        x.startswith("├── Fix [active]") and x.rstrip().endswith("after Triage") for x in drawn
    ) or any(x.startswith("└── Fix [active]") for x in drawn)
    assert any("Triage [completed]" in x for x in drawn)
    assert "*" in next(x for x in drawn if "Fix" in x)
    assert "3 intents" in drawn[-1]
    data = json.loads(cli("graph", root.id, "--json").stdout)
    assert {n["id"] for n in data["nodes"]} == {root.id, triage.id, fix.id}
    one_line_error(cli("graph", "missing", code=3))


def test_leases_list_and_revoke(cli: Cli, sync: Client) -> None:
    intent = sync.create_intent("t")
    lease = sync.acquire_lease(intent.id, "draft", 60)
    listed = cli("leases", "list", intent.id).stdout
    assert lease.id in listed and "draft" in listed and "active" in listed
    out = cli("leases", "revoke", intent.id, lease.id, "--reason", "hung").stdout
    assert f"revoked {lease.id}" in out
    assert "no live leases" in cli("leases", "list", intent.id).stdout
    history = json.loads(cli("leases", "list", intent.id, "--history", "--json").stdout)
    assert [x["status"] for x in history["leases"]] == ["revoked"]
    sync.acquire_lease(intent.id, "draft", 60)  # the scope was freed
    superseded = one_line_error(cli("leases", "revoke", intent.id, lease.id, code=4))
    assert "superseded" in superseded
    one_line_error(cli("leases", "revoke", intent.id, "no-such-lease", code=3))
    one_line_error(cli("leases", "list", "missing", code=3))


def test_portfolios_list_and_show(cli: Cli, sync: Client) -> None:
    p = sync.create_portfolio("Q4 launch")
    member = sync.create_intent("ship")
    sync.add_intent_to_portfolio(p.id, member.id, role="primary")
    assert p.id in cli("portfolios", "list").stdout
    shown = cli("portfolios", "show", p.id).stdout
    assert "Q4 launch" in shown and member.id in shown and "primary" in shown
    data = json.loads(cli("portfolios", "show", p.id, "--json").stdout)
    assert [m["intent_id"] for m in data["intents"]] == [member.id]
    one_line_error(cli("portfolios", "show", "missing", code=3))
    one_line_error(cli("portfolios", "list", "--status", "nope", code=2))


def test_subscriptions_add_list_remove(cli: Cli, sync: Client) -> None:
    intent = sync.create_intent("t")
    made = json.loads(
        cli(
            "subscriptions", "add", "https://hooks.example.com/a", "--intent", intent.id,
            "--type", "intent_completed", "--expires-in", "3600", "--json",
        ).stdout
    )  # fmt: skip
    cli("subscriptions", "add", "https://hooks.example.com/all")
    listed = cli("subscriptions", "list").stdout
    assert made["id"] in listed and "intent_completed" in listed and "everything" in listed
    mine = json.loads(cli("subscriptions", "list", "--intent", intent.id, "--json").stdout)
    assert [s["id"] for s in mine["subscriptions"]] == [made["id"]]
    cli("subscriptions", "remove", made["id"])
    assert made["id"] not in cli("subscriptions", "list").stdout
    one_line_error(cli("subscriptions", "remove", made["id"], code=3))
    one_line_error(cli("subscriptions", "add", "not a url", code=2))
    assert len(sync.get_subscriptions()) == 1


# -- dead letters ----------------------------------------------------------------------------
def _bus_entry(
    raw: Any, sync: Client, intent_id: str, kind: str
) -> tuple[int, str, dict[str, str]]:
    p = sync.keyspace.partition(intent_id)
    for entry_id, fields in raw.xrevrange(sync.keyspace.bus(p), count=200):
        if fields.get("i") == intent_id and fields.get("t") == kind:
            return p, entry_id, fields
    raise AssertionError(f"no {kind} entry for {intent_id}")


def test_dlq_bus_replay_runs_the_daemon_handling(
    cli: Cli, sync: Client, raw_redis: redis.Redis
) -> None:
    """A member's completion the daemons gave up on: replaying it applies the move to
    the portfolio, as the daemon would have."""
    p = sync.create_portfolio("p")
    member = sync.create_intent("m")
    sync.add_intent_to_portfolio(p.id, member.id)
    # the status script alone: as if the client died before its portfolio sync, and no
    # daemon runs to catch up
    sync._run(sync._ops.set_status(member.id, None, "completed", None, []))
    assert sync.get_portfolio(p.id).intents[0].status == "active"
    part, entry, fields = _bus_entry(raw_redis, sync, member.id, "status_changed")
    letter = raw_redis.xadd(
        sync.keyspace.bus_dead_letters,
        {"partition": part, "entry": entry, "type": "status_changed", "intent": member.id,
         "deliveries": 10, "error": "boom", "fields": json.dumps(fields)},
    )  # fmt: skip
    gone = raw_redis.xadd(
        sync.keyspace.bus_dead_letters,
        {"partition": part, "entry": "1-1", "type": "status_changed", "intent": "x"},
    )
    listed = cli("dlq", "list", "--kind", "bus").stdout
    assert "2 bus dead letters" in listed and "boom" in listed
    shown = cli("dlq", "show", "--kind", "bus", str(letter)).stdout
    assert f"entry: {entry}" in shown
    out = cli("dlq", "replay", "--kind", "bus", "--all").stdout
    assert "replayed 1, 1 left" in out and "trimmed" in out
    assert sync.get_portfolio(p.id).intents[0].status == "completed"
    assert raw_redis.xrange(sync.keyspace.bus_dead_letters) == [
        (gone, raw_redis.xrange(sync.keyspace.bus_dead_letters)[0][1])
    ]
    cli("dlq", "purge", "--kind", "bus", "--all")  # without --yes: nothing goes
    assert raw_redis.xlen(sync.keyspace.bus_dead_letters) == 1
    assert "deleted 1" in cli("dlq", "purge", "--kind", "bus", str(gone), "--yes").stdout
    assert raw_redis.xlen(sync.keyspace.bus_dead_letters) == 0


def test_dlq_events_replay_reaches_that_group_only(
    cli: Cli, sync: Client, raw_redis: redis.Redis
) -> None:
    first = sync.events("g1", "c1", block_seconds=0.2)
    second = sync.events("g2", "c1", block_seconds=0.2)
    first.ensure_group()
    second.ensure_group()
    intent = sync.create_intent("t")
    [got] = first.read()
    assert [d.event.event_type for d in second.read()] == ["intent_created"]
    raw_redis.xadd(
        sync.keyspace.event_dead_letters,
        {"group": "g1", "stream": got.stream, "entry": got.entry_id, "type": "intent_created",
         "intent": intent.id, "event": got.event.id, "deliveries": 6},
    )  # fmt: skip
    raw_redis.xadd(
        sync.keyspace.event_dead_letters,
        {"group": "g1", "stream": sync.keyspace.events(intent.id), "entry": got.event.id},
    )
    out = cli("dlq", "replay", "--kind", "events", "--all").stdout
    assert "replayed 1, 1 left" in out and "append-only log" in out
    again = first.read()
    for _ in range(20):  # on a cluster each partition's read ends on its own
        if again:
            break
        again = first.read()
    assert [(d.event.id, d.event.event_type) for d in again] == [(got.event.id, "intent_created")]
    assert second.read() == []
    copies = [f for _, f in raw_redis.xrange(got.stream) if f.get(REPLAY_FOR) == "g1"]
    assert len(copies) == 1
    history = cli("events", "tail").stdout
    assert history.count("intent_created") == 1  # the copy is nobody's event twice
    first.close()
    second.close()


def test_dlq_webhooks_list_show_replay_purge(
    cli: Cli, sync: Client, raw_redis: redis.Redis
) -> None:
    ids = [
        raw_redis.xadd(
            sync.keyspace.dead_letters,
            {
                "s": "gone-sub",
                "k": f"ev{n}",
                "u": "https://x.example/h",
                "err": "HTTP 500",
                "n": 5,
                "at": 0,
                "b": "{}",
            },
        )
        for n in range(3)
    ]
    data = json.loads(cli("dlq", "list", "--json").stdout)
    assert data["total"] == 3 and [x["id"] for x in data["letters"]] == ids
    assert "HTTP 500" in cli("dlq", "show", str(ids[0])).stdout
    one_line_error(cli("dlq", "show", "1-1", code=3))
    one_line_error(cli("dlq", "show", "nope", code=2))
    one_line_error(cli("dlq", "replay", code=2))  # ids or --all
    out = cli("dlq", "replay", str(ids[0]), str(ids[1])).stdout
    assert "replayed 0, 2 left" in out and "subscription is gone" in out
    assert "would delete 3" in cli("dlq", "purge", "--all").stdout
    assert "deleted 3" in cli("dlq", "purge", "--all", "--yes").stdout
    assert raw_redis.xlen(sync.keyspace.dead_letters) == 0


def test_dlq_replay_shows_progress_on_long_runs(
    cli: Cli, sync: Client, raw_redis: redis.Redis
) -> None:
    for _ in range(60):
        raw_redis.xadd(sync.keyspace.event_dead_letters, {"group": "g", "stream": "elsewhere"})
    out = cli("dlq", "replay", "--kind", "events", "--all").stdout
    assert "replaying events" in out and "replayed 0, 60 left" in out


# -- groups, stats, scripts, doctor ----------------------------------------------------------
def test_groups_and_delete(cli: Cli, sync: Client) -> None:
    live = sync.events("agent:worker", "w1", block_seconds=0.2)
    live.ensure_group()
    retired = sync.events("agent:retired", "r1", block_seconds=0.2, heartbeat_ttl=0.5)
    retired.ensure_group()
    sync.create_intent("t")
    live.read()
    retired.read()  # holds it pending
    retired.close()
    data = json.loads(cli("groups", "--json").stdout)
    by_name = {g["name"]: g for g in data["groups"]}
    assert by_name["agent:worker"]["live_consumers"] == ["w1"]
    assert by_name["agent:worker"]["streams"] == sync.keyspace.partitions
    assert by_name["agent:retired"]["pending"] == 1
    assert by_name["agent:retired"]["live_consumers"] == []
    assert "agent:worker" in cli("groups").stdout
    assert "would delete" in cli("groups", "delete", "agent:retired").stdout
    out = cli("groups", "delete", "agent:retired", "--yes").stdout
    assert f"deleted group agent:retired on {sync.keyspace.partitions} buses (1 pending" in out
    names = {g["name"] for g in json.loads(cli("groups", "--json").stdout)["groups"]}
    assert names == {"agent:worker"}
    one_line_error(cli("groups", "delete", "agent:retired", "--yes", code=3))
    one_line_error(cli("groups", "delete", "oibus-daemon", "--yes", code=2))
    live.close()


def test_stats_counts(cli: Cli, sync: Client) -> None:
    a = sync.create_intent("a")
    sync.create_intent("b", depends_on=[a.id])
    sync.acquire_lease(a.id, "x", 60)
    sync.create_portfolio("p")
    data = json.loads(cli("stats", "--json").stdout)
    assert data["intents"] == 2
    assert data["by_status"]["active"] == 1 and data["by_status"]["blocked"] == 1
    assert data["leases_live"] == 1 and data["portfolios"] == 1
    assert data["events_last_minute"] >= 4 and data["events_counted_exactly"]
    assert "leases live   1" in cli("stats").stdout


def test_scripts_load(cli: Cli, sync: Client, url: str) -> None:
    out = cli("scripts", "load").stdout.splitlines()
    count = len(default_registry())
    assert out and all(line.endswith(f" {count} scripts loaded") for line in out)
    if url.startswith("redis+cluster://"):
        assert len(out) == 3  # every primary


def test_doctor_reports_and_exits_1_when_unsafe(cli: Cli, sync: Client, url: str) -> None:
    sync.create_intent("t")
    result = cli("doctor", code=None)
    assert result.exit_code == 1  # no daemon runs here
    assert "no live daemon" in result.stdout and "UNSAFE" in result.stdout
    data = json.loads(cli("doctor", "--json", code=1).stdout)
    assert data["verdict"] == "unsafe"
    facts = data["facts"]
    assert facts["mode"] == ("cluster" if url.startswith("redis+cluster") else "standalone")
    assert facts["nodes"][0]["maxmemory_policy"] == "noeviction"
    assert facts["recorded_partitions"] == sync.keyspace.partitions
    quiet = cli("doctor", "-q", code=1).stdout
    assert "[ok]" not in quiet


# -- doctor's judgement, without a server ----------------------------------------------------
def node(**changes: Any) -> NodeFacts:
    base: dict[str, Any] = dict(
        address="h:1", engine="valkey", version="8.1", role="master", used_memory=10,
        maxmemory=0, maxmemory_policy="noeviction", appendonly=True, appendfsync="everysec",
        save="", aof_last_write_ok=True, rdb_last_bgsave_ok=True, rdb_changes_since_save=0,
        scripts_missing=[],
    )  # fmt: skip
    return NodeFacts(**{**base, **changes})


def facts(*nodes: NodeFacts, **changes: Any) -> BusFacts:
    base: dict[str, Any] = dict(
        mode="standalone", namespace="oi", partitions=16, recorded_partitions=16,
        nodes=list(nodes) or [node()], cluster_state=None, scripts=37, groups=[],
        live_daemons=["d1"], dead_letters={"webhooks": 0, "bus": 0, "events": 0},
        round_trip_ms=0.1,
    )  # fmt: skip
    return BusFacts(**{**base, **changes})


def unsafe_topics(f: BusFacts) -> set[str]:
    return {x.topic for x in diagnose(f) if x.level == "unsafe"}


def test_doctor_judgement() -> None:
    assert worst(diagnose(facts())) == "ok"
    assert unsafe_topics(facts(node(maxmemory_policy="allkeys-lru"))) == {"eviction"}
    assert unsafe_topics(facts(node(maxmemory_policy="volatile-ttl"))) == {"eviction"}
    assert unsafe_topics(facts(node(role="slave"))) == {"role"}
    assert unsafe_topics(facts(node(appendonly=False, save=""))) == {"persistence"}
    assert unsafe_topics(facts(node(aof_last_write_ok=False))) == {"persistence"}
    assert unsafe_topics(facts(node(maxmemory=100, used_memory=99))) == {"memory"}
    assert unsafe_topics(facts(live_daemons=[])) == {"daemon"}
    assert unsafe_topics(facts(recorded_partitions=32)) == {"namespace"}
    assert unsafe_topics(facts(cluster_state="fail")) == {"cluster"}
    rdb = diagnose(facts(node(appendonly=False, save="3600 1")))
    assert worst(rdb) == "warn" and any("RDB snapshots only" in x.message for x in rdb)
    assert worst(diagnose(facts(node(maxmemory_policy=None, appendonly=None)))) == "warn"
    stuck = GroupFacts(
        name="agent:x", kind="bus", streams=16, consumers=["a"], live_consumers=[],
        pending=3, lag=0, idle_ms=5,
    )  # fmt: skip
    found = diagnose(facts(groups=[stuck], dead_letters={"webhooks": 2, "bus": 0, "events": 0}))
    assert worst(found) == "warn"
    assert any("no live consumer" in x.message for x in found)
    assert any("2 webhooks dead letters" in x.message for x in found)
