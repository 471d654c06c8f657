"""The event log: gapless per-intent sequence, filters, cursors, and paging while appends
race with reads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis

from oibus import Client, EventType, NotFoundError, PayloadTooLargeError, ValidationError
from oibus.bus import limits


def test_every_mutation_appends_its_event_with_gapless_seq(client: Client) -> None:
    intent = client.create_intent("t")
    v = client.update_state(intent.id, 1, {"a": 1}).version
    v = client.assign_agent(intent.id, "worker").version
    client.assign_agent(intent.id, "worker")  # already assigned: no event
    v = client.unassign_agent(intent.id, "worker").version
    client.unassign_agent(intent.id, "worker")  # not assigned: no event
    client.log_event(intent.id, EventType.COMMENT, {"m": "hi"})
    client.set_status(intent.id, v, "completed")
    events = client.get_events(intent.id)
    assert [e.event_type for e in events] == [
        "intent_created",
        "state_patched",
        "agent_assigned",
        "agent_unassigned",
        "comment",
        "status_changed",
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e.actor == "tester" and e.intent_id == intent.id for e in events)
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    assert events[2].payload == {"agent_id": "worker", "version": 3}


def test_assignment(client: Client) -> None:
    intent = client.create_intent("t")
    a = client.assign_agent(intent.id, "a")
    b = client.assign_agent(intent.id, "b")
    assert b.assigned_agents == ["a", "b"]
    assert b.version == a.version + 1
    assert client.unassign_agent(intent.id, "a").assigned_agents == ["b"]
    assert client.unassign_agent(intent.id, "b").assigned_agents == []
    with pytest.raises(ValidationError):
        client.assign_agent(intent.id, "")
    with pytest.raises(NotFoundError):
        client.assign_agent("ghost", "a")


def test_log_event_returns_the_event(client: Client) -> None:
    intent = client.create_intent("t")
    event = client.log_event(intent.id, "tool_call_started", {"tool_name": "search"})
    stored = client.get_events(intent.id, event_type="tool_call_started")[0]
    assert stored == event
    assert event.seq == 2


@pytest.mark.parametrize(
    ("event_type", "payload", "error"),
    [
        ("status_changed", {}, ValidationError),
        ("state_patched", {}, ValidationError),
        ("", {}, ValidationError),
        ("has space", {}, ValidationError),
        ("x" * 65, {}, ValidationError),
        ("comment", {"blob": "x" * limits.PAYLOAD_BYTES}, PayloadTooLargeError),
        ("comment", [1], ValidationError),
    ],
)
def test_log_event_rejects(
    client: Client, raw_redis: redis.Redis, event_type: str, payload: object, error: type[Exception]
) -> None:
    intent = client.create_intent("t")
    with pytest.raises(error):
        client.log_event(intent.id, event_type, payload)  # type: ignore[arg-type]
    assert raw_redis.xlen(client.keyspace.events(intent.id)) == 1


def test_script_refuses_forged_types_on_its_own(client: Client) -> None:
    intent = client.create_intent("t")
    call = client._ops.log_event(intent.id, "comment", {})
    for forged in ("status_changed", "portfolio.member_suspended", "dependency_failed"):
        call.args[1] = forged
        with pytest.raises(ValidationError):
            client._runner.call(call)
    call.args[1] = "comment"
    call.args[2] = "[1]"
    with pytest.raises(ValidationError):
        client._runner.call(call)


def test_log_event_unknown_intent(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.log_event("ghost", "comment", {})
    with pytest.raises(NotFoundError):
        client.get_events("ghost")


def test_unknown_event_types_read_fine(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    client.log_event(intent.id, "my.custom:type-1", {"x": 1})
    events = client.get_events(intent.id)
    assert events[-1].event_type == "my.custom:type-1"


def test_filters_and_cursors(client: Client) -> None:
    intent = client.create_intent("t")
    for n in range(12):
        client.log_event(intent.id, "comment" if n % 3 else "tick", {"n": n})
    ticks = client.get_events(intent.id, event_type="tick")
    assert [e.payload["n"] for e in ticks] == [0, 3, 6, 9]
    first = client.get_events(intent.id, limit=5)
    assert [e.seq for e in first] == [1, 2, 3, 4, 5]
    second = client.get_events(intent.id, limit=5, after=first.next_cursor)
    assert [e.seq for e in second] == [6, 7, 8, 9, 10]
    newest = client.get_events(intent.id, limit=4, reverse=True)
    assert [e.seq for e in newest] == [13, 12, 11, 10]
    older = client.get_events(intent.id, limit=4, reverse=True, after=newest.next_cursor)
    assert [e.seq for e in older] == [9, 8, 7, 6]
    paged_ticks = client.get_events(intent.id, event_type="tick", limit=2)
    rest = client.get_events(intent.id, event_type="tick", limit=2, after=paged_ticks.next_cursor)
    assert [e.payload["n"] for e in [*paged_ticks, *rest]] == [0, 3, 6, 9]
    future = datetime.now(UTC) + timedelta(days=1)
    assert client.get_events(intent.id, since=future) == []
    past = datetime.now(UTC) - timedelta(days=1)
    assert len(client.get_events(intent.id, since=past)) == 13


@pytest.mark.parametrize(
    "kwargs", [{"after": "nope"}, {"limit": 0}, {"since": datetime(2020, 1, 1)}]
)
def test_get_events_rejects(client: Client, kwargs: dict[str, object]) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.get_events(intent.id, **kwargs)  # type: ignore[arg-type]


def test_paging_under_concurrent_appends(client: Client, backend: str) -> None:
    """A reader paging with cursors while a writer appends sees every event exactly once,
    in order, with no gaps in seq."""
    intent = client.create_intent("t")
    total = 300
    done = threading.Event()

    def writer() -> None:
        try:
            for n in range(total):
                client.log_event(intent.id, "comment", {"n": n})
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    cursor = None
    while True:
        finished = done.is_set()  # read before the page: the page then covers every write
        page = client.get_events(intent.id, limit=7, after=cursor)
        seen += [e.seq for e in page]
        cursor = page.next_cursor or (page[-1].id if page else cursor)
        if finished and not page:
            break
    thread.join()
    assert seen == list(range(1, total + 2))


def test_events_written_around_the_scripts_still_read(
    client: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    raw_redis.xadd(
        client.keyspace.events(intent.id),
        {"s": 2, "t": "from.elsewhere", "a": "x", "p": "not json", "at": 0},
    )
    last = client.get_events(intent.id)[-1]
    assert last.event_type == "from.elsewhere"
    assert last.payload == {"raw": "not json"}
