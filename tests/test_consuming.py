"""Consuming events through consumer groups (client.events) and the live tail."""

from __future__ import annotations

import asyncio

import pytest

from oibus import AsyncClient, Client, ValidationError

pytestmark = pytest.mark.timeout(60)


def test_bus_events_carry_payload_and_assignees(client: Client) -> None:
    intent = client.create_intent("watched")
    client.assign_agent(intent.id, "researcher")
    client.log_event(intent.id, "note", {"n": 1})
    with client.events("g", "c1", start="start", block_seconds=0.2) as stream:
        got = [next(stream) for _ in range(3)]
    assert [d.event.event_type for d in got] == ["intent_created", "agent_assigned", "note"]
    assert got[0].agents == ()  # not assigned yet when it was created
    assert got[1].agents == ("researcher",)
    assert got[1].event.payload["agent_id"] == "researcher"
    assert got[2].event.payload == {"n": 1}
    assert all(d.event.intent_id == intent.id and d.deliveries == 1 for d in got)
    assert [d.event.seq for d in got] == [1, 2, 3]


def test_small_events_travel_on_the_bus_and_big_ones_are_fetched(client: Client) -> None:
    """A payload up to 512 bytes is carried by its bus entry (no read of the intent's
    log); a bigger one is read from the log. Consumers get the same events either way,
    and the log stays the record (the bus copy is what retention trims)."""
    intent = client.create_intent("inline")
    small, big = {"n": 1}, {"text": "x" * 600}
    client.log_event(intent.id, "note", small)
    client.log_event(intent.id, "note", big)
    bus = [
        fields
        for p in range(client.keyspace.partitions)
        for _, fields in client.redis.xrange(client.keyspace.bus(p))  # type: ignore[union-attr]
        if fields.get("i") == intent.id and fields.get("t") == "note"
    ]
    assert [("p" in f, "at" in f) for f in bus] == [(True, True), (False, False)]
    logged = client.get_events(intent.id, event_type="note")
    assert bus[0]["p"] == '{"n":1}' and bus[0]["at"] == str(
        int(logged[0].created_at.timestamp() * 1_000_000)
    )
    with client.events("g", start="start", event_types="note", block_seconds=0.2) as stream:
        got = [next(stream).event for _ in range(2)]
    assert got == list(logged)
    assert [e.payload for e in got] == [small, big]


def test_type_filter_and_payloads_off(client: Client) -> None:
    intent = client.create_intent("filtered")
    for n in range(3):
        client.log_event(intent.id, "note", {"n": n})
    with client.events(
        "g", start="start", event_types=["note"], payloads=False, block_seconds=0.2
    ) as stream:
        got = [next(stream) for _ in range(3)]
    assert {d.event.event_type for d in got} == {"note"}
    assert all(d.event.payload == {} for d in got)  # ids, type and actor only


@pytest.mark.anyio
async def test_intent_log_resumes_where_the_group_left_off(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("log")
    for n in range(6):
        await aclient.log_event(intent.id, "step", {"n": n})
    stream = aclient.events(
        "readers", intent_id=intent.id, event_types="step", start="start", block_seconds=0.2
    )
    seen = []
    async for delivery in stream:
        seen.append(delivery.event.payload["n"])
        if len(seen) == 3:
            break
    await stream.aclose()  # acknowledges the last one handled
    again = aclient.events("readers", intent_id=intent.id, block_seconds=0.2)
    async for delivery in again:
        seen.append(delivery.event.payload["n"])
        if len(seen) == 6:
            break
    await again.aclose()
    assert seen == [0, 1, 2, 3, 4, 5]  # nothing skipped, nothing handled twice


@pytest.mark.anyio
async def test_consumers_of_a_group_share_and_groups_each_get_all(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("shared")
    a = aclient.events(
        "workers", "a", intent_id=intent.id, start="start", count=7, block_seconds=0.05
    )
    b = aclient.events(
        "workers", "b", intent_id=intent.id, start="start", count=7, block_seconds=0.05
    )
    audit = aclient.events("audit", intent_id=intent.id, start="start")
    for n in range(100):
        await aclient.log_event(intent.id, "job", {"n": n})
    taken: list[int] = []
    while len(taken) < 101:  # 100 jobs and intent_created
        for stream in (a, b):
            for d in await stream.read():
                taken.append(d.event.seq)
                await stream.ack(d)
    all_seen = [d.event.seq for d in await audit.read()]
    while len(all_seen) < 101:
        all_seen += [d.event.seq for d in await audit.read()]
    for stream in (a, b, audit):
        await stream.aclose()
    assert sorted(taken) == list(range(1, 102))  # each to one consumer, none twice
    assert sorted(all_seen) == list(range(1, 102))


@pytest.mark.anyio
async def test_a_dead_consumers_events_are_taken_over(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("crash")
    for n in range(5):
        await aclient.log_event(intent.id, "job", {"n": n})
    doomed = aclient.events(
        "g", "doomed", intent_id=intent.id, start="start", heartbeat_ttl=0.3, auto_ack=False
    )
    held = await doomed.read()
    assert len(held) == 6
    await _die(doomed)  # its heartbeat is no longer renewed (as after kill -9)
    heir = aclient.events(
        "g", "heir", intent_id=intent.id, heartbeat_ttl=0.3, block_seconds=0.1, auto_ack=False
    )
    await heir.ensure_group()
    assert await heir.read() == []  # still alive: nothing is taken from it yet
    taken = []
    for _ in range(40):
        await asyncio.sleep(0.1)
        taken += await heir.read()
        if len(taken) >= 6:
            break
    assert sorted(d.event.seq for d in taken) == [1, 2, 3, 4, 5, 6]
    assert all(d.deliveries == 2 for d in taken)
    await heir.ack(*taken)
    await heir.aclose()
    pending = await aclient.redis.xpending(aclient.keyspace.events(intent.id), "g")
    assert pending["pending"] == 0


@pytest.mark.anyio
async def test_an_entry_delivered_too_often_goes_to_dead_letters(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("poison")
    doomed = aclient.events(
        "g", "doomed", intent_id=intent.id, start="start", heartbeat_ttl=0.2, auto_ack=False
    )
    assert len(await doomed.read()) == 1
    await _die(doomed)
    heir = aclient.events(
        "g",
        "heir",
        intent_id=intent.id,
        heartbeat_ttl=0.2,
        block_seconds=0.05,
        max_deliveries=1,
        auto_ack=False,
    )
    letters: list[object] = []
    for _ in range(40):
        await asyncio.sleep(0.1)
        assert await heir.read() == []  # never handed out again
        letters = await aclient.redis.xrange(aclient.keyspace.event_dead_letters)
        if letters:
            break
    await heir.aclose()
    assert len(letters) == 1
    fields = letters[0][1]  # type: ignore[index]
    assert fields["group"] == "g" and fields["type"] == "intent_created"
    assert fields["deliveries"] == "2"
    assert (await aclient.redis.xpending(aclient.keyspace.events(intent.id), "g"))["pending"] == 0


def test_a_restarted_consumer_gets_its_own_pending_first(client: Client) -> None:
    intent = client.create_intent("restart")
    first = client.events("g", "same", intent_id=intent.id, start="start", auto_ack=False)
    [delivery] = first.read()
    first.close()  # not acknowledged: still pending to "same"
    second = client.events("g", "same", intent_id=intent.id, block_seconds=0.1, auto_ack=False)
    [again] = second.read()
    assert again.entry_id == delivery.entry_id and again.deliveries == 2
    second.ack(again)
    assert second.read() == []
    second.close()


@pytest.mark.anyio
async def test_tail_follows_from_now(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("tailed")
    await aclient.log_event(intent.id, "before", {})
    tail = aclient.tail(event_types=["after"], block_seconds=0.2)
    assert await tail.read() == []

    async def later() -> None:
        await asyncio.sleep(0.1)
        await aclient.log_event(intent.id, "after", {"x": 1})

    task = asyncio.ensure_future(later())
    got = await asyncio.wait_for(tail.__anext__(), 10)
    await task
    assert got.event.event_type == "after" and got.event.payload == {"x": 1}


def test_portfolio_log_as_a_source(client: Client) -> None:
    portfolio = client.create_portfolio("p")
    intent = client.create_intent("member")
    client.add_intent_to_portfolio(portfolio.id, intent.id)
    with client.events("g", portfolio_id=portfolio.id, start="start", block_seconds=0.2) as s:
        got = s.read()
    assert got[0].event.event_type == "portfolio_created"
    assert all(d.portfolio_id == portfolio.id for d in got)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"group": ""}, "group"),
        ({"group": "g", "consumer": "a\nb"}, "consumer"),
        ({"group": "g", "count": 0}, "count"),
        ({"group": "g", "start": "yesterday"}, "start"),
        ({"group": "g", "block_seconds": 0}, "block_seconds"),
        ({"group": "g", "max_deliveries": 0}, "max_deliveries"),
        ({"group": "g", "intent_id": "a", "portfolio_id": "b"}, "portfolio_id"),
        ({"group": "g", "intent_id": "bad{id}"}, "intent_id"),
        ({"group": "g", "event_types": []}, "event_types"),
    ],
)
def test_bad_arguments_are_refused(client: Client, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        client.events(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


async def _die(stream: object) -> None:
    """Stop a consumer's heartbeat without the clean exit's delete: like kill -9."""
    beat = stream._beat  # type: ignore[attr-defined]
    beat._task.cancel()
    beat._task = None


def test_sync_tail_pins_now_and_follows(client: Client) -> None:
    intent = client.create_intent("tailed")
    client.log_event(intent.id, "before", {})
    tail = client.subscribe_sse(intent_id=intent.id, block_seconds=0.1)
    tail.pin()
    client.log_event(intent.id, "after", {"n": 1})
    got = []
    for _ in range(20):
        got += tail.read()
        if got:
            break
    assert [d.event.event_type for d in got] == ["after"]
    assert got[0].event.payload == {"n": 1}


_WRITTEN = {
    "i": "intent-1",
    "e": "1796667323920-0",
    "s": "3",
    "t": "note",
    "a": "alice",
    "g": '["researcher","critic"]',
    "p": '{"n":1}',
    "at": "1796667323920390",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},  # as the scripts write it
        {"k": "portfolio", "m": "member-1"},
        {"x": "blocked>active", "t": "status_changed"},
        {"g": "not json"},
        {"g": ""},
        {"at": ""},  # no time: read from the entry id
        {"s": "x"},
        {"p": "[1]"},  # not an object
        {"p": "{bad"},
        {"t": None},
        {"a": None},
        {"i": ""},
    ],
)
def test_inline_delivery_is_the_general_path_or_declines(changes: dict[str, str | None]) -> None:
    """The one-step decoder of a pointer that carries its event hands out exactly the
    Delivery that parse_pointer + decode_event make, or None (then the general path
    runs): a consumer must see the same event whichever path read it."""
    from oibus.bus.consuming import inline_delivery, parse_pointer
    from oibus.sdk._async.events import _delivery

    fields = {k: v for k, v in {**_WRITTEN, **changes}.items() if v is not None}
    fast = inline_delivery("bus:0", "9-0", fields, 2)
    pointer = parse_pointer(fields)
    if fast is None:
        assert changes, "the shape the scripts write must take the fast path"
        return
    assert pointer is not None
    assert fast == _delivery(pointer, "bus:0", "9-0", 2, fields)
