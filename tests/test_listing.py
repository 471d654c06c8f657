"""Listing pages read few index members and one script per partition, and event pages
decode in one pass: the pages stay exactly what the one-intent-at-a-time reads gave
(order, cursors, filters), whatever the spread of intents over the partitions."""

from __future__ import annotations

import random
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from oibus import AsyncClient, Client, NotFoundError, ValidationError
from oibus.bus import limits
from oibus.bus.codec import (
    decode_event,
    decode_events,
    decode_intent,
    index_member_id,
    to_micros,
)
from oibus.bus.keyspace import Keyspace
from oibus.bus.listing import (
    check_cursor,
    first_share,
    group_by_partition,
    index_read,
    intent_query,
    merge_newest,
    merge_page,
)
from oibus.bus.models import Event, Intent, Page
from oibus.bus.ops import Call, Ops
from oibus.bus.registry import default_registry

LUA = Path(__file__).resolve().parent.parent / "lua"


# -- the reference: the listing as it read before (every partition's whole batch, one
# script per intent) ----------------------------------------------------------------------
def listed_one_by_one(
    client: Client,
    status: str | None = None,
    created_by: str | None = None,
    parent_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Intent]:
    query = intent_query(client.keyspace, status, created_by, parent_id)
    position = check_cursor(cursor)
    batch = max(limit, 100) if query.filtered else limit
    found: list[Intent] = []
    scanned = 0
    while True:
        high = "+" if position is None else "(" + position
        per_partition = client._runner.commands(
            [
                ("ZRANGE", query.index(p), high, "-", "BYLEX", "REV", "LIMIT", 0, batch)
                for p in range(client.keyspace.partitions)
            ]
        )
        members = merge_newest(per_partition, batch)
        for member in members:
            scanned += 1
            position = member
            try:
                intent = client.get_intent(index_member_id(member))
            except NotFoundError:
                continue
            if query.keep(intent):
                found.append(intent)
                if len(found) == limit:
                    return Page(found, position)
        if len(members) < batch:
            return Page(found, None)
        if scanned >= limits.FILTER_SCAN:
            return Page(found, position)


def all_pages(client: Client, lister: Any, **query: Any) -> list[Page[Intent]]:
    pages = []
    cursor = None
    while True:
        page = lister(client, cursor=cursor, **query)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def listed(client: Client, cursor: str | None = None, **query: Any) -> Page[Intent]:
    return client.list_intents(cursor=cursor, **query)


def assert_same_pages(client: Client, **query: Any) -> list[str]:
    new = all_pages(client, listed, **query)
    old = all_pages(client, listed_one_by_one, **query)
    assert [list(p) for p in new] == [list(p) for p in old], query
    assert [p.next_cursor for p in new] == [p.next_cursor for p in old], query
    return [i.id for p in new for i in p]


# -- pure: the merge plan ----------------------------------------------------------------
def test_first_share_is_a_fair_share_with_a_margin() -> None:
    assert first_share(50, 16) < 50 // 2
    assert first_share(50, 16) * 16 >= 50
    assert first_share(1, 16) == 1
    assert first_share(5, 1) == 5
    assert first_share(1000, 16) < 1000
    for count in (1, 2, 7, 50, 100, 1000):
        for partitions in (1, 2, 16, 64, 1024):
            assert 1 <= first_share(count, partitions) <= count


def _read(index: list[str], below: str | None, count: int) -> list[str]:
    """ZRANGE <index> (<below> - BYLEX REV LIMIT 0 <count> on a sorted list."""
    newer_first = sorted(index, reverse=True)
    if below is not None:
        newer_first = [m for m in newer_first if m < below]
    return newer_first[:count]


@pytest.mark.parametrize("seed", range(40))
def test_merge_page_is_exact_however_skewed(seed: int) -> None:
    rng = random.Random(seed)
    partitions = rng.choice([1, 2, 3, 16])
    weights = [rng.random() ** rng.choice([1, 8]) for _ in range(partitions)]
    total = rng.randrange(0, 300)
    indexes: list[list[str]] = [[] for _ in range(partitions)]
    for n in range(total):
        p = rng.choices(range(partitions), weights)[0]
        indexes[p].append(f"{1_700_000_000_000_000 + n * 7:016d}:i{n}")
    everything = sorted((m for ix in indexes for m in ix), reverse=True)
    for count in (1, 3, 50, 100):
        below = rng.choice([None, *everything[:40]])
        share = first_share(count, partitions)
        reads = [_read(ix, below, share) for ix in indexes]
        page, short = merge_page(reads, share, count)
        for p in short:
            reads[p] = reads[p] + _read(indexes[p], reads[p][-1], count - share)
        if short:
            page = merge_newest(reads, count)
        expected = [m for m in everything if below is None or m < below][:count]
        assert page == expected, (seed, count, short)
        # only partitions that may hold more of the page are read again
        for p in short:
            assert len(_read(indexes[p], below, share)) == share


def test_index_read_reads_newest_first_below_a_member() -> None:
    assert index_read("k", None, 3) == ("ZRANGE", "k", "+", "-", "BYLEX", "REV", "LIMIT", 0, 3)
    assert index_read("k", "0017:x", 2)[2] == "(0017:x"


def test_group_by_partition_keeps_page_order_within_each_group() -> None:
    ks = Keyspace("k", 16)
    ids = [f"g.{n}" for n in range(5)] + [f"x{n}" for n in range(40)]
    random.Random(1).shuffle(ids)
    groups = group_by_partition(ks, ids)
    assert sorted(i for g in groups for i in g) == sorted(ids)
    for group in groups:
        assert len({ks.partition(i) for i in group}) == 1
        assert group == [i for i in ids if i in set(group)]


# -- the get_intents script --------------------------------------------------------------
def test_get_intents_header_and_bounds() -> None:
    header = default_registry()["get_intents"].header
    assert header.variadic_keys
    assert header.argv == ()
    ops = Ops(Keyspace("k", 4), "actor")
    call = ops.get_intents(["g.a", "g.b", "g"])
    assert len(call.keys) == 6 and call.args == []
    assert call.keys[:2] == [ops.keyspace.intent("g.a"), ops.keyspace.state("g.a")]
    source = (LUA / "get_intents.lua").read_text()
    match = re.search(r"local MAX_IDS = (\d+)", source)
    assert match is not None and int(match.group(1)) == limits.PAGE_MAX


@pytest.mark.parametrize(
    "ids",
    [[], ["bad id"], ["g.a", "other"], [f"g.{n}" for n in range(limits.PAGE_MAX + 1)]],
)
def test_get_intents_refuses_bad_input(ids: list[str]) -> None:
    ops = Ops(Keyspace("k", 16), "actor")
    with pytest.raises(ValidationError):
        ops.get_intents(ids)


def test_get_intents_reads_one_partition_in_order(client: Client) -> None:
    a = client.create_intent("a", state={"k": [1, 2]}, colocate_with="grp")
    b = client.update_state(
        client.create_intent("b", colocate_with="grp").id, 1, {"x": {"y": None}}
    )
    ghost = "grp.ghost"
    replies = client._runner.call(client._ops.get_intents([b.id, ghost, a.id]))
    assert replies[1] is None
    assert [decode_intent(r, "?") for r in (replies[0], replies[2])] == [
        client.get_intent(b.id),
        client.get_intent(a.id),
    ]


def test_get_intents_script_checks_its_keys_itself(client: Client) -> None:
    a = client.create_intent("a")
    ks = client.keyspace
    with pytest.raises(ValidationError):
        client._runner.call(Call("get_intents", [ks.intent(a.id)], []))
    too_many = [ks.intent(a.id), ks.state(a.id)] * (limits.PAGE_MAX + 1)
    with pytest.raises(ValidationError):
        client._runner.call(Call("get_intents", too_many, []))


# -- pages against the reference ---------------------------------------------------------
def test_the_newest_page_all_in_one_partition(client: Client) -> None:
    spread = [client.create_intent(f"s{n}").id for n in range(12)]
    grouped = [client.create_intent(f"g{n}", colocate_with="grp").id for n in range(55)]
    page = client.list_intents(limit=50)
    assert [i.id for i in page] == list(reversed(grouped))[:50]
    assert page.next_cursor is not None
    rest = client.list_intents(limit=50, cursor=page.next_cursor)
    assert [i.id for i in rest] == list(reversed(grouped))[50:] + list(reversed(spread))
    assert rest.next_cursor is None
    for limit in (1, 5, 16, 17, 50, 100):
        assert assert_same_pages(client, limit=limit) == list(reversed(spread + grouped))


def test_skewed_and_spread_pages_match_the_one_by_one_reads(client: Client) -> None:
    made = []
    for n in range(70):
        if n % 5 == 0:
            made.append(client.create_intent(f"s{n}", created_by="y"))
        else:
            made.append(client.create_intent(f"g{n}", colocate_with="big", created_by="x"))
    for intent in made[::3]:
        client.set_status(intent.id, None, "completed")
    parent = made[1]
    for n in range(6):
        client.create_intent(f"kid{n}", parent_intent_id=parent.id, created_by="y")
    for limit in (1, 4, 7, 50):
        assert_same_pages(client, limit=limit)
        assert_same_pages(client, status="completed", limit=limit)
        assert_same_pages(client, created_by="y", limit=limit)
        assert_same_pages(client, created_by="x", status="active", limit=limit)
        assert_same_pages(client, parent_id=parent.id, limit=limit)


def test_a_missing_intent_is_skipped_as_before(client: Client, raw_redis: redis.Redis) -> None:
    made = [client.create_intent(f"t{n}", colocate_with="g" if n % 2 else None) for n in range(30)]
    for gone in (made[3], made[20], made[21]):
        raw_redis.delete(client.keyspace.intent(gone.id))
    for limit in (2, 5, 50):
        seen = assert_same_pages(client, limit=limit)
        assert len(seen) == 27


def test_cursors_across_pages_while_a_skewed_group_grows(client: Client) -> None:
    existing = [
        client.create_intent(f"old{n}", colocate_with="hot" if n % 4 else None).id
        for n in range(45)
    ]
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            client.create_intent(f"new{n}", colocate_with="hot")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: list[str] = []
        cursor = None
        while True:
            page = client.list_intents(limit=7, cursor=cursor)
            seen += [i.id for i in page]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    finally:
        stop.set()
        thread.join()
    old = set(existing)
    assert [i for i in seen if i in old] == list(reversed(existing))
    assert len(seen) == len(set(seen))


@pytest.mark.anyio
async def test_async_pages_match(aclient: AsyncClient) -> None:
    made = [
        (await aclient.create_intent(f"t{n}", colocate_with="g" if n % 3 else None)).id
        for n in range(40)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        page = await aclient.list_intents(limit=9, cursor=cursor)
        seen += [i.id for i in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made))


# -- event pages -------------------------------------------------------------------------
ODD_ENTRIES: list[dict[str, str]] = [
    {"s": "1", "t": "comment", "a": "x", "p": '{"m":"hi","n":[1,2.5,null,true]}', "at": "5"},
    {"s": "2", "t": "comment", "a": "x", "p": '{"big":123456789012345678901234567890}', "at": "1"},
    {"s": "+3", "t": "comment", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": " 4", "t": "comment", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": "5_0", "t": "comment", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": "-6", "t": "comment", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": "7", "t": "comment", "a": "x", "p": "{}", "at": ""},
    {"s": "8", "t": "comment", "a": "x", "p": "{}", "at": "+1700000000123456"},
    {"s": "9", "t": "comment", "a": "x", "p": "not json", "at": "1700000000123456"},
    {"s": "10", "t": "comment", "a": "x", "p": "[1, 2]", "at": "1700000000123456"},
    {"s": "11", "t": "comment", "a": "x", "p": "3", "at": "1700000000123456"},
    {"s": "12", "t": "comment", "a": "x", "p": '"text"', "at": "1700000000123456"},
    {"s": "13", "t": "comment", "a": "x", "p": '{"a":1}, {"b":2}', "at": "1700000000123456"},
    {"s": "14", "t": "comment", "a": "x", "p": "[" * 5000 + "]" * 5000, "at": "17"},
    {"s": "15", "t": "comment", "a": "x", "p": '{"a":' * 3000 + "1" + "}" * 3000, "at": "17"},
    {"s": "16", "t": "comment", "a": "x", "at": "1700000000123456"},
    {"s": "17", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": "18", "t": "comment", "p": "{}", "at": "1700000000123456"},
    {"t": "comment", "a": "x", "p": "{}", "at": "1700000000123456"},
    {"s": "20", "t": "comment", "a": "x", "p": "{}"},
    {},
    {"s": "22", "t": "x", "a": "y", "p": '{"k":"v"}', "at": "1700000000999999", "extra": "z"},
    {"s": "٢٣", "t": "comment", "a": "x", "p": "{}", "at": "١٧٠٠٠٠٠٠٠٠١٢٣٤٥٦"},
    {"s": "24", "t": "comment", "a": "", "p": '{"\\u00e9":"\\ud83d\\ude00"}', "at": "0"},
]


def _same(new: list[Event], old: list[Event]) -> None:
    assert new == old
    for a, b in zip(new, old, strict=True):
        for field in Event.__struct_fields__:
            x, y = getattr(a, field), getattr(b, field)
            assert type(x) is type(y), field
        assert a.created_at.tzinfo is b.created_at.tzinfo
        assert a.payload == b.payload and repr(a.payload) == repr(b.payload)


def test_decode_events_reads_every_entry_as_decode_event() -> None:
    entries = [(f"1700000000{n:03d}-{n}", dict(f)) for n, f in enumerate(ODD_ENTRIES)]
    new = decode_events("i1", entries)
    old = [decode_event("i1", entry_id, fields) for entry_id, fields in entries]
    _same(new, old)
    assert new[0].payload == {"m": "hi", "n": [1, 2.5, None, True]}
    assert new[0].created_at == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=5)
    assert new[2].seq == 0 and new[8].payload == {"raw": "not json"}
    assert new[9].payload == {"value": [1, 2]}
    assert decode_events("i1", []) == []


def test_decode_events_fails_where_decode_event_fails() -> None:
    for fields in ({"s": "1", "at": "9" * 30}, {"s": "²", "at": "1"}):
        entry = ("1-0", fields)
        with pytest.raises(Exception) as old:
            decode_event("i", *entry)
        with pytest.raises(Exception) as new:
            decode_events("i", [entry])
        assert type(new.value) is type(old.value)


def _raw_page(raw_redis: redis.Redis, key: str, **query: Any) -> list[Event]:
    reverse = query.pop("reverse", False)
    rows = raw_redis.xrevrange(key, **query) if reverse else raw_redis.xrange(key, **query)
    return [decode_event(key.rsplit(":", 1)[1], entry_id, fields) for entry_id, fields in rows]


def test_event_pages_match_the_entry_by_entry_decode(
    client: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    key = client.keyspace.events(intent.id)
    for n in range(40):
        client.log_event(intent.id, "tick" if n % 3 else "tock", {"n": n, "deep": {"l": [n]}})
        if n % 7 == 0:
            raw_redis.xadd(key, dict(ODD_ENTRIES[n % len(ODD_ENTRIES)]))
    client.update_state(intent.id, None, {"a": 1})
    everything = _raw_page(raw_redis, key)
    _same(list(client.get_events(intent.id, limit=1000)), everything)
    _same(
        list(client.get_events(intent.id, limit=1000, reverse=True)),
        _raw_page(raw_redis, key, reverse=True),
    )
    pages: list[Event] = []
    cursor = None
    while True:
        page = client.get_events(intent.id, limit=6, after=cursor)
        pages += page
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    _same(pages, everything)
    ticks = client.get_events(intent.id, event_type="tick", limit=5)
    _same(list(ticks), [e for e in everything if e.event_type == "tick"][:5])
    assert ticks.next_cursor == ticks[-1].id
    since = [e for e in everything if e.event_type == "tick"][8].created_at
    since_us = to_micros(since)
    rows = raw_redis.xrange(key, min=str(since_us // 1000))
    _same(
        list(client.get_events(intent.id, since=since, limit=1000)),
        [decode_event(intent.id, i, f) for i, f in rows if int(f.get("at") or 0) >= since_us],
    )


def test_a_skewed_page_reads_more_from_the_crowded_partition_only(client: Client) -> None:
    for n in range(12):
        client.create_intent(f"s{n}")
    grouped = [client.create_intent(f"g{n}", colocate_with="grp").id for n in range(55)]
    rounds: list[int] = []
    commands = client._runner.commands

    def counting(batch: Any) -> list[Any]:
        rounds.append(len(batch))
        return commands(batch)

    client._runner.commands = counting  # type: ignore[method-assign]
    page = client.list_intents(limit=50)
    assert [i.id for i in page] == list(reversed(grouped))[:50]
    assert rounds == [client.keyspace.partitions, 1]
