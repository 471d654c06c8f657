"""Creating, reading and listing intents (RFC-0001), on every backend."""

from __future__ import annotations

import pytest
import redis
from helpers import create_call

from oibus import (
    AlreadyExistsError,
    Client,
    IntentStatus,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import limits


def test_create_returns_every_field(client: Client) -> None:
    dep = client.create_intent("Gather the data")
    dep = client.set_status(dep.id, dep.version, "completed")
    intent = client.create_intent(
        "Research market trends",
        "Analyze Q4 data",
        {"deadline": "2024-02-01", "max_cost": 50.0},
        state={"progress": 0, "notes": [], "big": 12345678901234567},
        confidence=80,
        depends_on=[dep.id],
    )
    assert intent.title == "Research market trends"
    assert intent.description == "Analyze Q4 data"
    assert intent.constraints == {"deadline": "2024-02-01", "max_cost": 50.0}
    assert intent.state == {"progress": 0, "notes": [], "big": 12345678901234567}
    assert intent.status is IntentStatus.ACTIVE
    assert intent.version == 1
    assert intent.confidence == 80
    assert intent.created_by == "tester"
    assert intent.depends_on == [dep.id]
    assert intent.id.startswith(dep.id + ".")  # a dependent joins its dependency's group
    assert intent.parent_intent_id is None
    assert intent.created_at == intent.updated_at
    assert intent.created_at.tzinfo is not None
    assert client.get_intent(intent.id) == intent


def test_create_draft_and_created_by(client: Client) -> None:
    intent = client.create_intent("t", status="draft", created_by="planner")
    assert intent.status is IntentStatus.DRAFT
    assert intent.created_by == "planner"


def test_get_unknown_intent(client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_intent("no-such-intent")
    assert info.value.id == "no-such-intent"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * (limits.TITLE_BYTES + 1)}, "title"),
        ({"title": "t", "status": "completed"}, "status"),
        ({"title": "t", "status": "bogus"}, "status"),
        ({"title": "t", "confidence": 101}, "confidence"),
        ({"title": "t", "confidence": True}, "confidence"),
        ({"title": "t", "intent_id": "bad id"}, "intent_id"),
        ({"title": "t", "intent_id": "{x}"}, "intent_id"),
        ({"title": "t", "intent_id": "a", "depends_on": ["a"]}, "depends_on"),
        ({"title": "t", "intent_id": "a", "parent_intent_id": "a"}, "parent_intent_id"),
        ({"title": "t", "state": {"x": object()}}, "state['x']"),
        ({"title": "t", "intent_id": "a", "idempotency_key": "k"}, "intent_id"),
    ],
)
def test_create_rejects_bad_input(
    client: Client, raw_redis: redis.Redis, namespace: str, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        client.create_intent(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert list(raw_redis.scan_iter(f"{{{namespace}:*")) == []


def test_lua_rejects_what_the_sdk_would(
    client: Client, raw_redis: redis.Redis, namespace: str
) -> None:
    """The script never trusts the caller: bypass the SDK and send bad input directly."""
    good = create_call(client._ops, "raw-1")
    cases = {
        1: '{"title":"","created_by":"x","status":"active","depends_on":[]}',
        2: '{"title":"t","created_by":"x","status":"done","depends_on":[]}',
        3: '{"title":"t","created_by":"x","status":"active","depends_on":[],"confidence":1.5}',
    }
    for spec in cases.values():
        args = list(good.args)
        args[1] = spec
        with pytest.raises(ValidationError):
            client._runner.call(type(good)(good.script, good.keys, args))
    for constraints in ["[1]", "NaN", '{"a":0x10}', "{"]:
        args = list(good.args)
        args[2] = constraints
        with pytest.raises(ValidationError) as info:
            client._runner.call(type(good)(good.script, good.keys, args))
        assert info.value.field == "constraints"
    assert not raw_redis.exists(client.keyspace.intent("raw-1"))


def test_oversize_state_is_refused(client: Client) -> None:
    with pytest.raises(PayloadTooLargeError):
        client.create_intent("t", state={"blob": "x" * limits.STATE_BYTES})


def test_same_id_same_content_is_idempotent(client: Client) -> None:
    first = client.create_intent("t", intent_id="fixed-1", state={"a": 1})
    again = client.create_intent("t", intent_id="fixed-1", state={"a": 1})
    assert again == first
    assert len(client.get_events(first.id)) == 1


def test_same_id_other_content_conflicts(client: Client) -> None:
    client.create_intent("t", intent_id="fixed-2")
    with pytest.raises(AlreadyExistsError):
        client.create_intent("other title", intent_id="fixed-2")


def test_idempotency_key_returns_the_same_intent(client: Client) -> None:
    first = client.create_intent("t", idempotency_key="req-42")
    again = client.create_intent("t", idempotency_key="req-42")
    assert again.id == first.id
    other = client.create_intent("t", idempotency_key="req-43")
    assert other.id != first.id
    assert len(client.list_intents()) == 2


def test_idempotent_create_after_changes_returns_current(client: Client) -> None:
    first = client.create_intent("t", idempotency_key="req-1")
    client.update_state(first.id, 1, {"x": 1})
    again = client.create_intent("t", idempotency_key="req-1")
    assert again.version == 2
    assert again.state == {"x": 1}


def test_children_share_their_parents_slot(client: Client) -> None:
    parent = client.create_intent("parent")
    child = client.create_intent("child", parent_intent_id=parent.id)
    assert child.parent_intent_id == parent.id
    assert child.id.startswith(parent.id + ".")
    assert client.keyspace.tag_of(child.id) == client.keyspace.tag_of(parent.id)
    # a graph never leaves its group: a child elsewhere is refused and nothing is made
    with pytest.raises(ValidationError) as info:
        client.create_intent("apart", parent_intent_id=parent.id, colocate_with="elsewhere")
    assert info.value.field == "parent_intent_id"
    assert [c.id for c in client.get_children(parent.id)] == [child.id]


def test_list_pages_newest_first_without_overlap(client: Client) -> None:
    made = [client.create_intent(f"t{n}").id for n in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_intents(limit=5, cursor=cursor)
        seen += [i.id for i in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made))


def test_list_filters(client: Client) -> None:
    a = client.create_intent("a", created_by="alice")
    b = client.create_intent("b", created_by="bob")
    c = client.create_intent("c", created_by="alice:x{y}")
    done = client.set_status(b.id, None, "completed")
    child = client.create_intent("kid", parent_intent_id=a.id, created_by="bob")
    assert {i.id for i in client.list_intents(created_by="alice")} == {a.id}
    assert {i.id for i in client.list_intents(created_by="alice:x{y}")} == {c.id}
    assert {i.id for i in client.list_intents(status="completed")} == {done.id}
    assert {i.id for i in client.list_intents(status="active")} == {a.id, c.id, child.id}
    assert {i.id for i in client.list_intents(parent_id=a.id)} == {child.id}
    assert {i.id for i in client.list_intents(created_by="bob", status="active")} == {child.id}
    assert [i.id for i in client.list_intents(parent_id=a.id, status="completed")] == []


def test_filtered_list_pages(client: Client) -> None:
    ids = []
    for n in range(30):
        i = client.create_intent(f"t{n}", created_by="x" if n % 3 else "y")
        ids.append(i.id)
    wanted = [ids[n] for n in range(30) if n % 3 == 0 and n % 2 == 0]
    for n in range(30):
        if n % 2:
            client.set_status(ids[n], None, "abandoned")
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_intents(created_by="y", status="active", limit=2, cursor=cursor)
        seen += [i.id for i in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(wanted))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"limit": limits.PAGE_MAX + 1},
        {"status": "nope"},
        {"cursor": "junk"},
        {"parent_id": "bad id"},
    ],
)
def test_list_rejects_bad_input(client: Client, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        client.list_intents(**kwargs)  # type: ignore[arg-type]


def test_namespace_partition_count_is_checked(client: Client, backend: str, namespace: str) -> None:
    from oibus import ConfigurationError

    client.create_intent("t")
    other = Client(redis=client.redis, namespace=namespace, partitions=8)
    with pytest.raises(ConfigurationError):
        other.create_intent("t")


def test_discover(client: Client) -> None:
    info = client.discover()
    assert info.implementation == "oibus"
    assert "RFC-0001" in info.rfcs
    assert "suspended_awaiting_input" in info.statuses
    assert "lease_expired" in info.event_types
    assert info.namespace == client.keyspace.namespace


def test_list_paging_while_intents_are_created(client: Client) -> None:
    """Newest-first paging by cursor while new intents keep arriving: every intent that
    existed when paging began is seen exactly once; newcomers never shift the pages."""
    existing = [client.create_intent(f"old{n}").id for n in range(40)]
    seen: list[str] = []
    cursor = None
    n = 0
    while True:
        page = client.list_intents(limit=6, cursor=cursor)
        seen += [i.id for i in page]
        client.create_intent(f"new{n}")
        n += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [i for i in seen if i in set(existing)] == list(reversed(existing))
    assert len(seen) == len(set(seen))


def test_each_event_is_announced_on_the_partition_bus(
    client: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    client.update_state(intent.id, 1, {"a": 1})
    events = client.get_events(intent.id)
    bus = raw_redis.xrange(client.keyspace.bus(client.keyspace.partition(intent.id)))
    pointers = [f for _, f in bus if f["i"] == intent.id]
    assert [(p["e"], int(p["s"]), p["t"]) for p in pointers] == [
        (e.id, e.seq, e.event_type) for e in events
    ]


def test_created_reply_is_the_stored_document(client: Client) -> None:
    """create_intent answers with what it has just written instead of reading it back:
    the reply must be, byte for byte, the document get_intent then reads (every optional
    field, a blocked start, escapes and non-ASCII text included)."""
    parent = client.create_intent("parent")
    dep = client.create_intent("dep", colocate_with=parent.id)
    cases = [
        create_call(client._ops, "plain-1"),
        create_call(
            client._ops,
            f"{parent.id}.full",
            title='quotes " and / and \\ and é ✓',
            description="line\nbreak \u2028 and 🙂",
            constraints={"max_cost": 50.5, "nested": {"list": [1, "two", None]}},
            state={"progress": 0, "big": 12345678901234567, "text": "ü", "obj": {"a": []}},
            created_by="planner:one{x}",
            status="active",
            confidence=0,
            parent_intent_id=parent.id,
            depends_on=[dep.id],
            on_dependency_failure="ignore",
            cascade_abandon=False,
            assign="agent-7",
        ),
        create_call(client._ops, "draft-1", status="draft", confidence=100, description=""),
    ]
    for call in cases:
        created, document = client._runner.call(call)
        assert created == 1
        assert document == client._runner.call(client._ops.get_intent(call.args[0]))
    assert client.get_intent(f"{parent.id}.full").status is IntentStatus.BLOCKED


def test_graph_fields_only_for_intents_in_a_graph(client: Client, raw_redis: redis.Redis) -> None:
    """An intent without dependencies or parent writes only its status mirror (a missing
    dependency or parent entry reads as none); every graph read still sees it."""
    ks = client.keyspace
    lone = client.create_intent("lone")
    st, um, _ag, dep_h, rd, par = ks.graph_hashes(ks.partition(lone.id))
    assert raw_redis.hget(st, lone.id) == "active"
    for key in (um, dep_h, rd, par):
        assert not raw_redis.hexists(key, lone.id)
    assert client.get_dependencies(lone.id) == []
    assert list(client.get_dependents(lone.id)) == []
    assert list(client.get_children(lone.id)) == []
    waiting = client.create_intent("waits", depends_on=[lone.id])
    assert waiting.status is IntentStatus.BLOCKED
    assert [i.id for i in client.get_dependents(lone.id)] == [waiting.id]
    client.set_status(lone.id, lone.version, "completed")
    assert client.get_intent(waiting.id).status is IntentStatus.ACTIVE


def test_new_ids_are_uuid4_text() -> None:
    """The fast id maker gives what str(uuid.uuid4()) gives: version 4, RFC 4122 variant,
    the canonical text."""
    import uuid

    from oibus.bus.ops import new_uuid

    made = {new_uuid() for _ in range(2000)}
    assert len(made) == 2000
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
