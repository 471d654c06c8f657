"""Batches (``create_intents``, ``log_events``, ``batch()``): every item checked before
anything is sent, results in the order given, each call its own atomic script with its
own typed result or error, a NOSCRIPT never running a call twice, and one pipeline per
cluster node per chunk. On every tier, sync and async."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster

import oibus.sdk._async.batch
import oibus.sdk._sync.batch
from oibus import (
    AlreadyExistsError,
    AsyncClient,
    BatchError,
    BusConnectionError,
    Client,
    ConflictError,
    CostRecord,
    Event,
    Intent,
    IntentClosedError,
    Lease,
    LeaseConflictError,
    NotFoundError,
    OpenIntentError,
    PayloadTooLargeError,
    ScriptsNotLoadedError,
    ValidationError,
)
from oibus.bus import limits


def _namespace_keys(raw_redis: redis.Redis, namespace: str) -> list[str]:
    return [*raw_redis.scan_iter(f"{{{namespace}:*"), *raw_redis.scan_iter(f"{{{namespace}}}*")]


# -- create_intents ----------------------------------------------------------------------
def test_create_intents_returns_them_in_order(client: Client) -> None:
    specs = [{"title": f"t{n}", "state": {"n": n}} for n in range(1000)]
    intents = client.create_intents(specs)
    assert [i.title for i in intents] == [f"t{n}" for n in range(1000)]
    assert all(isinstance(i, Intent) and i.version == 1 for i in intents)
    assert [i.state["n"] for i in intents] == list(range(1000))
    for n in (0, 500, 999):
        assert client.get_intent(intents[n].id) == intents[n]
    assert len({i.id for i in intents}) == 1000


def test_chunks_keep_the_order(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oibus.sdk._sync.batch, "CHUNK", 7)  # several round trips
    intents = client.create_intents([{"title": f"t{n}"} for n in range(50)])
    assert [i.title for i in intents] == [f"t{n}" for n in range(50)]
    events = client.log_events([(intents[n % 3].id, "tick", {"n": n}) for n in range(50)])
    assert [e.payload["n"] for e in events] == list(range(50))
    for k in range(3):
        mine = [e.seq for e in events if e.intent_id == intents[k].id]
        assert mine == list(range(2, 2 + len(range(k, 50, 3))))
    with client.batch() as b:
        updates = [b.update_state(intents[0].id, n + 1, {"n": n}) for n in range(20)]
    assert [u.result().version for u in updates] == list(range(2, 22))


def test_create_intents_takes_every_argument_of_create_intent(client: Client) -> None:
    parent = client.create_intent("parent")
    dep_id = f"{parent.id.split('.')[0]}.dep"
    intents = client.create_intents(
        [
            ("positional", "a description", {"deadline": "soon"}),
            {"title": "dep", "intent_id": dep_id},  # made before the spec that needs it
            {
                "title": "child",
                "parent_intent_id": parent.id,
                "depends_on": [dep_id],
                "assign": "worker",
                "idempotency_key": "k-1",
            },
            {"title": "draft", "status": "draft", "confidence": 40},
        ]
    )
    positional, dep, child, draft = intents
    assert (positional.description, positional.constraints) == (
        "a description",
        {"deadline": "soon"},
    )
    assert dep.id == dep_id
    assert child.parent_intent_id == parent.id and child.depends_on == [dep_id]
    assert child.status == "blocked" and child.assigned_agents == ["worker"]
    assert draft.status == "draft" and draft.confidence == 40
    # the same idempotency key and content: the intent the first attempt made
    again = client.create_intent(
        "child",
        parent_intent_id=parent.id,
        depends_on=[dep_id],
        assign="worker",
        idempotency_key="k-1",
    )
    assert again.id == child.id


@pytest.mark.parametrize(
    ("bad", "error", "field"),
    [
        ({"title": ""}, ValidationError, "title"),
        ({"title": "t", "status": "completed"}, ValidationError, "status"),
        ({"title": "t" * (limits.TITLE_BYTES + 1)}, PayloadTooLargeError, "title"),
        ({"title": "t", "state": {"x": float("nan")}}, ValidationError, "state['x']"),
        ({"title": "t", "bogus": 1}, ValidationError, "items"),
        ({"description": "no title"}, ValidationError, "items"),
        ("just a title", ValidationError, "items"),
        (7, ValidationError, "items"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_refused_with_its_index_and_nothing_is_written(
    client: Client,
    raw_redis: redis.Redis,
    namespace: str,
    bad: Any,
    error: type[Exception],
    field: str | None,
) -> None:
    specs: list[Any] = [{"title": f"t{n}"} for n in range(1000)]
    specs[700] = bad
    with pytest.raises(error) as info:
        client.create_intents(specs)
    assert type(info.value) is error
    assert isinstance(info.value, ValidationError)
    assert info.value.details["index"] == 700
    assert str(info.value).startswith("item 700: ")
    if field is not None:
        assert info.value.field == field
    assert _namespace_keys(raw_redis, namespace) == []


@pytest.mark.parametrize("items", ["title", {"title": "t"}, 3, b"x"])
def test_items_must_be_a_list(client: Client, items: Any) -> None:
    with pytest.raises(ValidationError, match="list"):
        client.create_intents(items)


def test_an_empty_batch_sends_nothing(client: Client) -> None:
    assert client.create_intents([]) == []
    assert client.log_events(iter([])) == []


def test_server_errors_come_per_item_and_the_others_are_applied(client: Client) -> None:
    taken = client.create_intent("original", intent_id="taken")
    specs = [{"title": "a"}, {"title": "different", "intent_id": "taken"}, {"title": "b"}]
    with pytest.raises(BatchError) as info:
        client.create_intents(specs)
    batch = info.value
    assert set(batch.errors) == {1}
    assert isinstance(batch.errors[1], AlreadyExistsError)
    assert batch.details == {"failed": 1, "total": 3}
    assert "item 1: AlreadyExistsError" in str(batch)
    a, error, b = batch.results
    assert error is batch.errors[1]
    assert client.get_intent(a.id).title == "a" and client.get_intent(b.id).title == "b"
    assert client.get_intent(taken.id) == taken


# -- log_events --------------------------------------------------------------------------
def test_log_events_in_order_with_consecutive_seq(client: Client) -> None:
    intents = client.create_intents([{"title": f"i{n}"} for n in range(4)])  # several slots
    items = [(intents[n % 4].id, "tick", {"n": n}) for n in range(1000)]
    events = client.log_events(items)
    assert [e.payload["n"] for e in events] == list(range(1000))
    assert all(isinstance(e, Event) and e.actor == "tester" for e in events)
    for k, intent in enumerate(intents):
        mine = [e for e in events if e.intent_id == intent.id]
        assert [e.seq for e in mine] == list(range(2, 252))  # seq 1 is intent_created
        stored = client.get_events(intent.id, event_type="tick", limit=1000)
        assert [e.payload["n"] for e in stored] == list(range(k, 1000, 4))
        assert [(e.id, e.seq) for e in stored] == [(e.id, e.seq) for e in mine]


def test_log_events_item_forms(client: Client) -> None:
    intent = client.create_intent("i")
    events = client.log_events(
        [
            (intent.id, "a"),
            [intent.id, "b", {"x": 1}],
            {"intent_id": intent.id, "event_type": "c", "payload": {"y": 2}},
        ]
    )
    assert [(e.event_type, e.payload) for e in events] == [
        ("a", {}),
        ("b", {"x": 1}),
        ("c", {"y": 2}),
    ]


def test_log_events_refuses_a_bad_item_before_sending(client: Client) -> None:
    intent = client.create_intent("i")
    items: list[Any] = [(intent.id, "tick", {"n": n}) for n in range(10)]
    items[3] = (intent.id, "state_patched", {})  # a type only oibus records
    with pytest.raises(ValidationError) as info:
        client.log_events(items)
    assert info.value.details["index"] == 3 and info.value.field == "event_type"
    assert client.get_events(intent.id, event_type="tick") == []


def test_log_events_per_item_errors(client: Client) -> None:
    intent = client.create_intent("i")
    with pytest.raises(BatchError) as info:
        client.log_events([(intent.id, "a"), ("missing", "b"), (intent.id, "c")])
    assert list(info.value.errors) == [1]
    assert isinstance(info.value.errors[1], NotFoundError)
    assert [e.event_type for e in client.get_events(intent.id)][1:] == ["a", "c"]


# -- batch() -----------------------------------------------------------------------------
def test_batch_queues_any_call_and_sends_them_together(client: Client) -> None:
    intent = client.create_intent("i", state={"n": 0})
    with client.batch() as b:
        made = b.create_intent("new", intent_id="g1")
        logged = b.log_event("g1", "hello", {"x": 1})  # after its create, same slot
        updated = b.update_state(intent.id, 1, {"n": 1})
        patched = b.patch_state(intent.id, 2, [{"op": "set", "path": "/m", "value": 2}])
        assigned = b.assign_agent(intent.id, "worker")
        lease = b.acquire_lease(intent.id, "scope", 30)
        cost = b.record_cost(intent.id, "tokens", 1500, "tokens", provider="openai")
        unassigned = b.unassign_agent(intent.id, "worker")
        moved = b.set_status("g1", None, "completed")
        assert len(b) == 9 and not made.done()
    assert isinstance(made.result(), Intent) and made.result().id == "g1"
    assert isinstance(logged.result(), Event) and logged.result().seq == 2
    assert updated.result().state == {"n": 1} and updated.result().version == 2
    assert patched.result().state == {"n": 1, "m": 2} and patched.result().version == 3
    assert assigned.result().assigned_agents == ["worker"]
    assert unassigned.result().assigned_agents == []
    assert isinstance(lease.result(), Lease) and lease.result().scope == "scope"
    assert isinstance(cost.result(), CostRecord) and cost.result().provider == "openai"
    assert moved.result().status == "completed"
    with client.batch() as b:
        renewed = b.renew_lease(intent.id, lease.result().id, 60)
        released = b.release_lease(intent.id, lease.result().id)
    assert renewed.result().expires_at > lease.result().expires_at
    assert released.result().status == "released"
    assert client.get_cost_summary(intent.id).count == 1


def test_batch_errors_in_place(client: Client, other: Client) -> None:
    intent = client.create_intent("i")
    held = other.acquire_lease(intent.id, "scope", 30)
    done = client.create_intent("done")
    client.set_status(done.id, None, "completed")
    with pytest.raises(BatchError) as info, client.batch() as b:
        stale = b.update_state(intent.id, 7, {"n": 1})
        taken = b.acquire_lease(intent.id, "scope", 30)
        fine = b.log_event(intent.id, "ok")
        closed = b.update_state(done.id, None, {"n": 1})
    assert sorted(info.value.errors) == [0, 1, 3]
    with pytest.raises(ConflictError) as conflict:
        stale.result()
    assert conflict.value.current_version == 1
    with pytest.raises(LeaseConflictError) as lease_error:
        taken.result()
    assert lease_error.value.holder == "rival"
    with pytest.raises(IntentClosedError):
        closed.result()
    assert fine.result().event_type == "ok"
    assert info.value.results[2] == fine.result()
    other.release_lease(intent.id, held.id)


def test_a_call_refused_when_queued_leaves_the_block_and_nothing_is_sent(
    client: Client,
) -> None:
    intent = client.create_intent("i")
    with pytest.raises(ValidationError, match="version"), client.batch() as b:
        b.log_event(intent.id, "queued")
        b.update_state(intent.id, 0, {"n": 1})
    with pytest.raises(KeyError), client.batch() as b:
        b.log_event(intent.id, "queued")
        raise KeyError("the caller's own error")
    assert [e.event_type for e in client.get_events(intent.id)] == ["intent_created"]


def test_a_result_is_known_only_once_sent(client: Client) -> None:
    intent = client.create_intent("i")
    b = client.batch()
    first = b.log_event(intent.id, "one")
    with pytest.raises(RuntimeError, match="not been sent"):
        first.result()
    assert [e.seq for e in b.execute()] == [2]
    assert first.done() and first.result().seq == 2
    second = b.log_event(intent.id, "two")  # a batch can be sent again
    assert b.execute() == [second.result()] and second.result().seq == 3
    assert b.execute() == []


def test_set_status_in_a_batch_cascades_and_syncs_portfolios(client: Client) -> None:
    dep = client.create_intent("dep")
    dependent = client.create_intent("dependent", depends_on=[dep.id])
    other = client.create_intent("other")
    portfolio = client.create_portfolio("p")
    client.add_intent_to_portfolio(portfolio.id, dep.id)
    client.add_intent_to_portfolio(portfolio.id, other.id)
    assert dependent.status == "blocked"
    with client.batch() as b:
        first = b.set_status(dep.id, None, "completed")  # names its dependent: a second call
        second = b.set_status(other.id, 1, "completed")
    assert first.result().status == "completed" and second.result().status == "completed"
    assert client.get_intent(dependent.id).status == "active"
    aggregate = client.get_portfolio(portfolio.id).aggregate_status
    assert aggregate.by_status.get("completed") == 2 and aggregate.status == "completed"


# -- the script cache and the transport -------------------------------------------------
def test_noscript_never_runs_a_call_twice(
    client: Client, raw_redis: redis.Redis, backend: str
) -> None:
    if backend == "env":
        pytest.skip("never flush the script cache of a shared server")
    intent = client.create_intent("i")
    client._runner._ready = set(client._runner.registry)  # loaded once, then lost:
    raw_redis.script_flush()
    client._runner._load("update_state")  # the cache holds one of the batch's scripts
    with client.batch() as b:
        first = b.log_event(intent.id, "a")
        updated = b.update_state(intent.id, 1, {"n": 1})
        last = b.log_event(intent.id, "b")
    assert updated.result().version == 2
    types = [e.event_type for e in client.get_events(intent.id)]
    assert sorted(types) == ["a", "b", "intent_created", "state_patched"]
    assert types.index("a") < types.index("b")  # the resent ones keep their order
    assert (first.result().seq, last.result().seq) == (3, 4)  # after the update: resent
    raw_redis.script_flush()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(oibus.sdk._sync.batch, "CHUNK", 250)  # the first chunk reloads
        events = client.log_events([(intent.id, "c")] * 600)
    assert len(client.get_events(intent.id, event_type="c", limit=1000)) == 600 == len(events)


def test_a_partial_script_cache_keeps_the_order(
    client: Client, raw_redis: redis.Redis, backend: str
) -> None:
    """Single calls load scripts lazily, so a cache holding some of a batch's scripts is
    the usual case (and the shared server's, whose cache other versions fill): a batch
    loads what it has not used before, so nothing is resent out of order."""
    intent = client.create_intent("i")
    if backend != "env":
        raw_redis.script_flush()
        client._runner._load("update_state")
    with client.batch() as b:
        b.log_event(intent.id, "a")
        b.update_state(intent.id, 1, {"n": 1})
        b.log_event(intent.id, "b")
    types = [e.event_type for e in client.get_events(intent.id)]
    assert types == ["intent_created", "a", "state_patched", "b"]


def test_a_script_the_user_may_not_load_fails_those_calls_only(
    client: Client, raw_redis: redis.Redis, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "env":
        pytest.skip("never flush the script cache of a shared server")
    intent = client.create_intent("i")
    client._runner._ready = set(client._runner.registry)
    raw_redis.script_flush()
    client._runner._load("update_state")

    def refuse(name: str) -> None:
        raise ScriptsNotLoadedError(f"{name} may not be loaded by this user", script=name)

    monkeypatch.setattr(client._runner, "_load", refuse)
    with pytest.raises(BatchError) as info, client.batch() as b:
        b.log_event(intent.id, "a")
        b.update_state(intent.id, 1, {"n": 1})
    assert list(info.value.errors) == [0]
    assert isinstance(info.value.errors[0], ScriptsNotLoadedError)
    assert [e.event_type for e in client.get_events(intent.id)] == [
        "intent_created",
        "state_patched",
    ]


def test_a_lost_connection_is_a_bus_error() -> None:
    c = Client("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(BusConnectionError):
        c.create_intents([{"title": "t"}])
    c.close()


def test_batch_error_is_an_open_intent_error() -> None:
    error = BatchError("m", ["ok", NotFoundError("gone")])
    assert isinstance(error, OpenIntentError) and error.code == "BATCH"
    assert list(error.errors) == [1] and error.results[0] == "ok"


# -- cluster: one pipeline per node per chunk --------------------------------------------
def test_cluster_sends_each_node_one_pipeline_per_chunk(
    client: Client, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "cluster":
        pytest.skip("routing per node is a cluster's")
    client.create_intents([{"title": "warm"}])  # the script is cached on every primary
    writes: list[object] = []
    write = redis.cluster.NodeCommands.write

    def counted(self: Any) -> None:
        writes.append(self)
        write(self)

    monkeypatch.setattr(redis.cluster.NodeCommands, "write", counted)
    monkeypatch.setattr(oibus.sdk._sync.batch, "CHUNK", 200)
    intents = client.create_intents([{"title": f"t{n}"} for n in range(300)])
    partitions = {client.keyspace.partition(i.id) for i in intents}
    assert len(partitions) == client.keyspace.partitions  # every slot of the namespace
    assert 2 <= len(writes) <= 6  # two chunks, each of the three nodes once per chunk
    assert [i.title for i in intents] == [f"t{n}" for n in range(300)]


# -- async -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_async_batches(aclient: AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oibus.sdk._async.batch, "CHUNK", 250)
    intents = await aclient.create_intents([{"title": f"t{n}"} for n in range(600)])
    assert [i.title for i in intents] == [f"t{n}" for n in range(600)]
    events = await aclient.log_events([(intents[0].id, "tick", {"n": n}) for n in range(600)])
    assert [e.seq for e in events] == list(range(2, 602))
    with pytest.raises(ValidationError) as info:
        await aclient.log_events([(intents[0].id, "tick"), (intents[0].id, "")])
    assert info.value.details["index"] == 1
    async with aclient.batch() as b:
        made = b.create_intent("new", intent_id="g2")
        logged = b.log_event("g2", "hello")
        updated = b.update_state(intents[1].id, 1, {"n": 1})
    assert made.result().id == "g2" and logged.result().seq == 2
    assert updated.result().version == 2
    with pytest.raises(BatchError) as failed:
        async with aclient.batch() as b:
            stale = b.update_state(intents[1].id, 1, {"n": 2})
            fine = b.log_event(intents[1].id, "ok")
    assert list(failed.value.errors) == [0]
    with pytest.raises(ConflictError):
        stale.result()
    assert fine.result().event_type == "ok"
    b = aclient.batch()
    queued = b.set_status(intents[2].id, 1, "completed")
    assert (await b.execute())[0] == queued.result()
    assert queued.result().status == "completed"


@pytest.mark.anyio
async def test_async_cluster_sends_each_node_one_pipeline_per_chunk(
    aclient: AsyncClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "cluster":
        pytest.skip("routing per node is a cluster's")
    await aclient.create_intents([{"title": "warm"}])
    sent: list[int] = []
    execute = redis.asyncio.cluster.ClusterNode.execute_pipeline

    async def counted(self: Any, commands: list[Any]) -> bool:
        sent.append(len(commands))
        return await execute(self, commands)

    monkeypatch.setattr(redis.asyncio.cluster.ClusterNode, "execute_pipeline", counted)
    monkeypatch.setattr(oibus.sdk._async.batch, "CHUNK", 200)
    intents = await aclient.create_intents([{"title": f"t{n}"} for n in range(300)])
    assert sum(sent) == 300 and len(sent) <= 6  # two chunks, each node once per chunk
    assert [i.title for i in intents] == [f"t{n}" for n in range(300)]
