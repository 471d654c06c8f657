"""Intent graphs (RFC-0002): dependencies that really block and unblock, completion gates,
failure policies, cascade abandonment, and the bounded reads, in every tier."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from helpers import create_call, event_types

from oibus import (
    AsyncClient,
    Client,
    CompletionGateError,
    ConflictError,
    CycleError,
    Intent,
    IntentClosedError,
    IntentStatus,
    InvalidTransitionError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus.moves import Move


def _status(client: Client, intent: Intent | str) -> str:
    intent_id = intent if isinstance(intent, str) else intent.id
    return str(client.get_intent(intent_id).status)


def _complete(client: Client, intent: Intent | str) -> Intent:
    current = client.get_intent(intent if isinstance(intent, str) else intent.id)
    return client.set_status(current.id, current.version, "completed")


def _unblocks(client: Client, intent_id: str) -> list[dict[str, object]]:
    """The status_changed payloads that took the intent out of blocked."""
    return [
        e.payload
        for e in client.get_events(intent_id, event_type="status_changed", limit=1000)
        if e.payload["from"] == "blocked"
    ]


# -- blocking and unblocking -------------------------------------------------------------
def test_unmet_dependencies_block_on_create_and_unblock_once(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id])
    assert b.status is IntentStatus.BLOCKED
    assert b.depends_on == [a.id]
    assert client.keyspace.tag_of(b.id) == client.keyspace.tag_of(a.id)
    _complete(client, a)
    b = client.get_intent(b.id)
    assert b.status is IntentStatus.ACTIVE
    assert _unblocks(client, b.id) == [
        {"from": "blocked", "to": "active", "version": 2, "reason": "dependencies satisfied"}
    ]
    # a completed dependency holds nothing back
    c = client.create_intent("c", depends_on=[a.id])
    assert c.status is IntentStatus.ACTIVE


def test_draft_stays_draft_and_activating_lands_in_blocked(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id], status="draft")
    assert b.status is IntentStatus.DRAFT
    b = client.set_status(b.id, b.version, "active")
    assert b.status is IntentStatus.BLOCKED
    with pytest.raises(CompletionGateError) as info:
        client.set_status(b.id, b.version, "active")
    assert info.value.unmet_dependencies == [a.id]
    assert client.get_intent(b.id) == b
    _complete(client, a)
    assert _status(client, b) == "active"


def test_incident_response_completes_in_order(client: Client) -> None:
    """The seed README's example: each dependent unblocks exactly once, when its last
    dependency completes, and the parent completes last."""
    parent = client.create_intent("Resolve Production Outage")
    diagnose = client.create_child_intent(parent.id, "Diagnose Root Cause", assign="agent:sre")
    communicate = client.create_child_intent(parent.id, "Customer Communication")
    hotfix = client.create_child_intent(parent.id, "Implement Hotfix", depends_on=[diagnose.id])
    deploy = client.create_child_intent(
        parent.id, "Deploy Fix", depends_on=[diagnose.id, hotfix.id]
    )
    verify = client.create_child_intent(parent.id, "Verify Resolution", depends_on=[deploy.id])
    children = [diagnose, communicate, hotfix, deploy, verify]
    assert diagnose.assigned_agents == ["agent:sre"]
    assert [c.status for c in children] == ["active", "active", "blocked", "blocked", "blocked"]
    assert {i.id for i in client.get_ready_intents(parent.id)} == {diagnose.id, communicate.id}
    assert [i.id for i in client.get_blocked_intents(parent.id)] == [
        hotfix.id,
        deploy.id,
        verify.id,
    ]
    assert [i.id for i in client.get_dependencies(deploy.id)] == [diagnose.id, hotfix.id]

    with pytest.raises(CompletionGateError) as info:
        _complete(client, parent)
    assert info.value.open_children_count == 5

    _complete(client, diagnose)
    assert [_status(client, i) for i in (hotfix, deploy)] == ["active", "blocked"]
    _complete(client, communicate)
    _complete(client, hotfix)
    assert _status(client, deploy) == "active"
    _complete(client, deploy)
    assert _status(client, verify) == "active"
    agg = client.get_aggregate_status(parent.id)
    assert agg.total == 5
    assert agg.by_status["completed"] == 4
    assert agg.completion_percentage == 80
    assert agg.ready_intents == [verify.id]
    assert agg.blocking_intents == []
    _complete(client, verify)
    done = _complete(client, parent)
    assert done.status is IntentStatus.COMPLETED
    for child in (hotfix, deploy, verify):
        assert len(_unblocks(client, child.id)) == 1
    assert client.get_aggregate_status(parent.id).completion_percentage == 100


def test_completion_gate_names_what_holds_it_back_and_changes_nothing(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id], status="draft")
    child = client.create_child_intent(b.id, "child")
    before = client.get_intent(b.id)
    events = event_types(client, b.id)
    b2 = client.set_status(b.id, b.version, "active")  # lands in blocked
    assert b2.status is IntentStatus.BLOCKED
    with pytest.raises(InvalidTransitionError) as refused:  # blocked cannot complete at all
        client.set_status(b.id, b2.version, "completed")
    assert not isinstance(refused.value, CompletionGateError)
    parent = client.create_intent("p")
    kid = client.create_child_intent(parent.id, "kid")
    with pytest.raises(CompletionGateError) as info:
        client.set_status(parent.id, parent.version, "completed")
    assert info.value.open_children == [kid.id]
    assert info.value.open_children_count == 1
    assert info.value.unmet_dependencies == []
    assert info.value.from_status == "active"
    assert client.get_intent(parent.id).status is IntentStatus.ACTIVE
    assert before.version + 1 == b2.version
    assert event_types(client, b.id) == [*events, "status_changed"]
    assert child.parent_intent_id == b.id


def test_adding_and_removing_dependencies_re_evaluates(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", colocate_with=a.id)
    b = client.add_dependency(b.id, a.id, b.version)
    assert b.status is IntentStatus.BLOCKED
    assert b.depends_on == [a.id]
    assert [i.id for i in client.get_dependents(a.id)] == [b.id]
    with pytest.raises(ConflictError):
        client.remove_dependency(b.id, a.id, b.version - 1)
    b = client.remove_dependency(b.id, a.id, b.version)
    assert b.status is IntentStatus.ACTIVE
    assert b.depends_on == []
    assert list(client.get_dependents(a.id)) == []
    types = event_types(client, b.id)
    assert types[-4:] == [
        "dependency_added",
        "status_changed",
        "dependency_removed",
        "status_changed",
    ]
    with pytest.raises(NotFoundError):
        client.remove_dependency(b.id, a.id)


def test_cycles_are_refused_with_their_path(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id])
    c = client.create_intent("c", depends_on=[b.id])
    with pytest.raises(CycleError) as direct:
        client.add_dependency(a.id, b.id)
    assert direct.value.cycle == [a.id, b.id, a.id]
    before = client.get_intent(a.id)
    with pytest.raises(CycleError) as transitive:
        client.add_dependency(a.id, c.id, before.version)
    assert transitive.value.cycle == [a.id, c.id, b.id, a.id]
    assert client.get_intent(a.id) == before
    assert event_types(client, a.id) == ["intent_created"]
    assert list(client.get_dependents(c.id)) == []
    with pytest.raises(ValidationError):
        client.add_dependency(a.id, a.id)
    with pytest.raises(ValidationError):
        client.create_intent("self", intent_id="s1", depends_on=["s1"])


def test_graph_edges_must_exist_and_share_a_group(client: Client) -> None:
    a = client.create_intent("a")
    with pytest.raises(NotFoundError):
        client.create_intent("b", depends_on=[f"{a.id}.missing"])
    with pytest.raises(NotFoundError):
        client.create_intent("b", parent_intent_id="nobody")
    with pytest.raises(NotFoundError):
        client.add_dependency(a.id, f"{a.id}.missing")
    elsewhere = client.create_intent("elsewhere")
    with pytest.raises(ValidationError) as info:
        client.create_intent("b", depends_on=[a.id, elsewhere.id])
    assert info.value.field == "depends_on"
    with pytest.raises(ValidationError):
        client.add_dependency(a.id, elsewhere.id)
    with pytest.raises(ValidationError):
        client.create_intent("dup", depends_on=[a.id, a.id])
    assert client.list_intents().__len__() == 2
    done = _complete(client, a)
    with pytest.raises(IntentClosedError):
        client.create_child_intent(done.id, "late")
    with pytest.raises(IntentClosedError):
        client.add_dependency(done.id, f"{a.id}.x")


# -- failure policies and cascades --------------------------------------------------------
def test_abandoned_dependency_blocks_by_default_and_says_so(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id])
    client.set_status(a.id, a.version, "abandoned")
    b2 = client.get_intent(b.id)
    assert b2.status is IntentStatus.BLOCKED
    failed = client.get_events(b.id, event_type="dependency_failed")
    assert [e.payload for e in failed] == [{"dependency_id": a.id, "policy": "block"}]
    # the way out: drop the failed dependency
    b2 = client.remove_dependency(b.id, a.id, b2.version)
    assert b2.status is IntentStatus.ACTIVE
    with pytest.raises(ValidationError):
        client.create_intent("late", depends_on=[a.id])


def test_abandon_policy_follows_the_chain(client: Client) -> None:
    a = client.create_intent("a")
    chain = [a]
    for n in range(5):  # each level needs the next level's keys: several rounds
        chain.append(
            client.create_intent(
                f"l{n}", depends_on=[chain[-1].id], on_dependency_failure="abandon"
            )
        )
    keep = client.create_intent("keep", depends_on=[chain[2].id])
    client.set_status(a.id, a.version, "abandoned", reason="cancelled")
    assert [_status(client, i) for i in chain] == ["abandoned"] * 6
    assert _status(client, keep) == "blocked"
    last = client.get_events(chain[-1].id, event_type="status_changed")
    assert last[-1].payload["reason"] == f"dependency {chain[-2].id} was abandoned"


def test_ignore_policy_counts_an_abandoned_dependency_as_met(client: Client) -> None:
    a = client.create_intent("a")
    b = client.create_intent("b", colocate_with=a.id)
    c = client.create_intent("c", depends_on=[a.id, b.id], on_dependency_failure="ignore")
    client.set_status(a.id, a.version, "abandoned")
    assert _status(client, c) == "blocked"
    _complete(client, b)
    assert _status(client, c) == "active"
    assert _complete(client, c).status is IntentStatus.COMPLETED
    late = client.create_intent("late", depends_on=[a.id], on_dependency_failure="ignore")
    assert late.status is IntentStatus.ACTIVE


def test_abandoning_a_parent_cascades_unless_told_not_to(client: Client) -> None:
    root = client.create_intent("root")
    kid = client.create_child_intent(root.id, "kid")
    grandkid = client.create_child_intent(kid.id, "grandkid")
    done = _complete(client, client.create_child_intent(root.id, "done"))
    keeper = client.create_child_intent(root.id, "keeper", cascade_abandon=False)
    keeper_kid = client.create_child_intent(keeper.id, "keeper's kid")
    dependent = client.create_intent("dependent", depends_on=[kid.id])
    client.set_status(root.id, root.version, "abandoned")
    assert [_status(client, i) for i in (kid, grandkid, keeper)] == ["abandoned"] * 3
    assert _status(client, done) == "completed"
    assert _status(client, keeper_kid) == "active"  # keeper does not cascade
    assert _status(client, dependent) == "blocked"
    reason = client.get_events(grandkid.id, event_type="status_changed")[-1].payload["reason"]
    assert reason == f"parent {kid.id} was abandoned"

    solo = client.create_intent("solo", cascade_abandon=False)
    left = client.create_child_intent(solo.id, "left")
    client.set_status(solo.id, solo.version, "abandoned")
    assert _status(client, left) == "active"
    assert not client.get_intent(solo.id).cascade_abandon


def test_a_cascade_past_the_limit_is_refused_whole(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oibus.bus import graphs

    root = client.create_intent("root")
    for n in range(4):
        client.create_child_intent(root.id, f"k{n}", cascade_abandon=True)
    monkeypatch.setattr(graphs, "CASCADE_ROUNDS", 1)
    import oibus.sdk._sync.client as sync_client

    monkeypatch.setattr(sync_client, "CASCADE_ROUNDS", 1)
    with pytest.raises(PayloadTooLargeError):
        client.set_status(root.id, root.version, "abandoned")
    assert _status(client, root) == "active"
    assert [i.status for i in client.get_children(root.id)] == ["active"] * 4


def test_moves_reach_the_hook(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Move] = []

    def hook(moves: Sequence[Move]) -> None:
        seen.extend(moves)

    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id])
    c = client.create_intent("c", depends_on=[a.id])
    monkeypatch.setattr(client, "_after_moves", hook)
    _complete(client, a)
    assert [m.intent_id for m in seen] == [a.id, b.id, c.id] or [m.intent_id for m in seen] == [
        a.id,
        c.id,
        b.id,
    ]
    assert {m.status for m in seen[1:]} == {"active"}
    assert all(m.version == 2 for m in seen)


# -- reads -----------------------------------------------------------------------------
def test_graph_reads(client: Client) -> None:
    root = client.create_intent("root")
    kids = [client.create_child_intent(root.id, f"k{n}") for n in range(5)]
    grand = client.create_child_intent(kids[0].id, "g", depends_on=[kids[1].id])
    page = client.get_children(root.id, limit=2)
    assert [i.id for i in page] == [k.id for k in kids[:2]]
    rest = client.get_children(root.id, limit=10, cursor=page.next_cursor)
    assert [i.id for i in rest] == [k.id for k in kids[2:]]
    assert rest.next_cursor is None
    assert [i.id for i in client.get_ancestors(grand.id)] == [kids[0].id, root.id]
    assert [i.id for i in client.get_descendants(root.id)] == [*(k.id for k in kids), grand.id]
    assert [i.id for i in client.get_descendants(root.id, limit=3)] == [k.id for k in kids[:3]]
    assert [i.id for i in client.get_descendants(root.id, max_depth=1)] == [k.id for k in kids]
    assert [i.id for i in client.get_dependents(kids[1].id)] == [grand.id]
    graph = client.get_intent_graph(grand.id)
    assert {n.id for n in graph.nodes} == {root.id, grand.id, *(k.id for k in kids)}
    edges = {(e.source, e.target, e.kind) for e in graph.edges}
    assert (grand.id, kids[1].id, "depends_on") in edges
    assert (root.id, kids[3].id, "parent") in edges
    assert (kids[0].id, grand.id, "parent") in edges
    assert len(edges) == 7
    assert graph.aggregate.total == 7
    assert graph.aggregate.blocking_intents == [grand.id]
    assert not graph.truncated
    small = client.get_intent_graph(root.id, max_nodes=3)
    assert small.truncated and len(small.nodes) == 3
    for read in (client.get_children, client.get_descendants, client.get_ancestors):
        with pytest.raises(NotFoundError):
            read("missing")
    with pytest.raises(ValidationError):
        client.get_descendants(root.id, limit=0)


def test_dependents_page_by_id(client: Client) -> None:
    a = client.create_intent("a")
    made = sorted(client.create_intent(f"d{n}", depends_on=[a.id]).id for n in range(7))
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get_dependents(a.id, limit=3, cursor=cursor)
        seen += [i.id for i in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == made


def test_bad_related_keys_are_refused(client: Client) -> None:
    from oibus.bus.ops import Call

    a = client.create_intent("a")
    b = client.create_intent("b", depends_on=[a.id])
    call = client._ops.set_status(a.id, None, "completed", None, related=[b.id])
    keys = list(call.keys)
    keys[-3] = client.keyspace.intent(a.id)  # b's intent key swapped for a's
    with pytest.raises(ValidationError):
        client._runner.call(Call(call.script, keys, call.args))
    with pytest.raises(ValidationError):
        client._runner.call(Call(call.script, call.keys[:-1], call.args))
    assert _status(client, a) == "active"
    assert _status(client, b) == "blocked"


# -- concurrency and the async client ----------------------------------------------------
@pytest.mark.anyio
async def test_many_dependencies_completing_at_once_unblock_once(aclient: AsyncClient) -> None:
    """Twelve agents complete the twelve dependencies of one intent at the same moment:
    the dependent leaves blocked exactly once, whatever the interleaving."""
    hub = await aclient.create_intent("hub")
    deps = [await aclient.create_child_intent(hub.id, f"dep{n}") for n in range(12)]
    target = await aclient.create_child_intent(hub.id, "target", depends_on=[d.id for d in deps])
    assert target.status is IntentStatus.BLOCKED
    agents = [
        AsyncClient(redis=aclient.redis, agent_id=f"agent{n}", namespace=aclient.keyspace.namespace)
        for n in range(len(deps))
    ]
    start = anyio.Event()

    async def finish(agent: AsyncClient, dep: Intent) -> None:
        await start.wait()
        await agent.set_status(dep.id, dep.version, "completed")

    async with anyio.create_task_group() as tg:
        for agent, dep in zip(agents, deps, strict=True):
            tg.start_soon(finish, agent, dep)
        start.set()
    after = await aclient.get_intent(target.id)
    assert after.status is IntentStatus.ACTIVE
    changes = await aclient.get_events(target.id, event_type="status_changed")
    assert [(e.payload["from"], e.payload["to"]) for e in changes] == [("blocked", "active")]
    agg = await aclient.get_aggregate_status(hub.id)
    assert agg.by_status["completed"] == 12
    assert agg.ready_intents == [target.id]


@pytest.mark.anyio
async def test_async_graph_calls(aclient: AsyncClient) -> None:
    parent = await aclient.create_intent("parent")
    a = await aclient.create_child_intent(parent.id, "a")
    b = await aclient.create_child_intent(parent.id, "b")
    b = await aclient.add_dependency(b.id, a.id, b.version)
    assert b.status is IntentStatus.BLOCKED
    with pytest.raises(CycleError):
        await aclient.add_dependency(a.id, b.id)
    assert [i.id for i in await aclient.get_blocked_intents(parent.id)] == [b.id]
    await aclient.set_status(a.id, a.version, "completed")
    assert [i.id for i in await aclient.get_ready_intents(parent.id)] == [b.id]
    assert [i.id for i in await aclient.get_dependencies(b.id)] == [a.id]
    assert [i.id for i in await aclient.get_ancestors(b.id)] == [parent.id]
    graph = await aclient.get_intent_graph(parent.id)
    assert graph.aggregate.by_status["completed"] == 2 - 1
    b = await aclient.remove_dependency(b.id, a.id, None)
    assert b.depends_on == []


def test_bad_graph_options_are_refused(client: Client, raw_redis: object) -> None:
    from oibus.bus.ops import Call

    with pytest.raises(ValidationError) as info:
        client.create_intent("t", on_dependency_failure="explode")
    assert info.value.field == "on_dependency_failure"
    with pytest.raises(ValidationError):
        client.create_intent("t", cascade_abandon="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.create_intent("t", assign="")
    good = create_call(client._ops, "raw-g")
    base = '{"title":"t","created_by":"x","status":"active","depends_on":[]'
    for spec in (
        base + ',"on_dependency_failure":"explode","cascade_abandon":true}',
        base + ',"on_dependency_failure":"block","cascade_abandon":1}',
        base + ',"on_dependency_failure":"block","cascade_abandon":true,"assign":7}',
    ):
        args = list(good.args)
        args[1] = spec
        with pytest.raises(ValidationError):
            client._runner.call(Call(good.script, good.keys, args))
    # the script checks its graph keys too
    with pytest.raises(ValidationError):
        client._runner.call(Call(good.script, good.keys[:-1], good.args))
    assert not client._runner.command("EXISTS", client.keyspace.intent("raw-g"))
    a = client.create_intent("a")
    with pytest.raises(ValidationError):
        client._runner.call(
            Call(
                "set_dependency",
                client._ops.set_dependency("add", a.id, f"{a.id}.b", None).keys,
                ["swap", a.id, f"{a.id}.b", "", "x"],
            )
        )


# -- from the review: deadlocks through parents, limits, deep cascades -------------------
def test_a_child_cannot_wait_for_what_waits_for_its_parent(client: Client) -> None:
    parent = client.create_intent("parent")
    with pytest.raises(CycleError) as made:
        client.create_child_intent(parent.id, "child", depends_on=[parent.id])
    cycle = made.value.cycle
    assert cycle[0] == cycle[-1] and cycle[1:-1] == [parent.id]
    assert list(client.get_children(parent.id)) == []
    child = client.create_child_intent(parent.id, "child")
    with pytest.raises(CycleError) as added:
        client.add_dependency(child.id, parent.id)
    assert added.value.cycle == [child.id, parent.id, child.id]
    # indirect: the dependency waits for the parent, which waits for the child
    after = client.create_intent("after the parent", depends_on=[parent.id])
    with pytest.raises(CycleError) as indirect:
        client.add_dependency(child.id, after.id)
    assert indirect.value.cycle == [child.id, after.id, parent.id, child.id]
    with pytest.raises(CycleError):
        client.create_child_intent(parent.id, "late", depends_on=[after.id])
    grandchild = client.create_child_intent(child.id, "grandchild")
    with pytest.raises(CycleError):
        client.add_dependency(grandchild.id, parent.id)
    assert client.get_intent(child.id).depends_on == []
    assert _complete(client, grandchild).status is IntentStatus.COMPLETED


def _many(client: Client, n: int, **options: object) -> list[str]:
    """n intents created in one pipelined round trip."""
    from oibus.bus.ops import new_intent_id

    group = options.pop("group")
    calls = [
        create_call(
            client._ops,
            new_intent_id(intent_id=None, idempotency_key=None, colocate_with=str(group)),
            **options,
        )
        for _ in range(n)
    ]
    replies = client._runner.call_many(calls)
    assert not any(isinstance(r, Exception) for r in replies), replies[:3]
    return [c.args[0] for c in calls]


def test_a_hub_with_a_thousand_dependents_completes_and_abandons(client: Client) -> None:
    from oibus.bus import limits

    hub = client.create_intent("hub")
    other = client.create_intent("other", colocate_with=hub.id)
    ids = _many(
        client,
        limits.DEPENDENTS,
        group=hub.id,
        depends_on=[hub.id, other.id],
        on_dependency_failure="ignore",
    )
    with pytest.raises(PayloadTooLargeError):
        client.create_intent("one too many", depends_on=[hub.id])
    client.set_status(other.id, other.version, "abandoned")  # 1,000 notes, one move
    assert client.get_intent(ids[0]).status is IntentStatus.BLOCKED
    _complete(client, hub)  # 1,001 moves
    statuses = client._runner.command(
        "HMGET", client.keyspace.graph_hashes(client.keyspace.partition(hub.id))[0], *ids
    )
    assert set(statuses) == {"active"}


def test_a_cascade_deeper_than_the_old_round_limit(client: Client) -> None:
    root = client.create_intent("root")
    chain = [root]
    for n in range(70):
        chain.append(client.create_child_intent(chain[-1].id, f"level {n}"))
    client.set_status(root.id, root.version, "abandoned")
    assert _status(client, chain[-1]) == "abandoned"
    assert client.get_aggregate_status(chain[-2].id).by_status["abandoned"] == 1


def test_a_missing_mirror_entry_is_refused_before_any_write(client: Client) -> None:
    parent = client.create_intent("parent")
    child = client.create_child_intent(parent.id, "child")
    mirror = client.keyspace.graph_hashes(client.keyspace.partition(parent.id))[0]
    client._runner.command("HDEL", mirror, child.id)
    with pytest.raises(NotFoundError):
        client.set_status(parent.id, parent.version, "abandoned")
    assert client.get_intent(parent.id) == parent
    assert event_types(client, parent.id) == ["intent_created"]
