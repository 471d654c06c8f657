"""Agent memory (RFC-0015): per-agent entries with versions, types and server-clock
expiry, keyword recall over a bounded inverted index, cursor-paged listing. Every refused
call, by the SDK or by the script, leaves the agent's memory as it was."""

from __future__ import annotations

import math
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis

from oibus import (
    AlreadyExistsError,
    AsyncClient,
    Client,
    ConflictError,
    MemoryRecord,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from oibus.bus import limits
from oibus.bus import memory as mem
from oibus.bus.codec import to_micros
from oibus.bus.keyspace import Keyspace, key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import default_registry
from oibus.sdk._async.runner import check_one_slot

LUA = Path(__file__).resolve().parent.parent / "lua"


def _dump(client: Client, raw: redis.Redis, agent: str = "tester") -> tuple[Any, ...]:
    """Everything stored for the agent's memory."""
    meta, val, exp, idx = client.keyspace.memory_keys(agent)
    return (
        raw.hgetall(meta),
        raw.hgetall(val),
        raw.zrange(exp, 0, -1, withscores=True),
        raw.zrange(idx, 0, -1),
    )


def _server_us(raw: redis.Redis) -> int:
    seconds, micros = raw.time()  # type: ignore[misc]
    return int(seconds) * 1_000_000 + int(micros)


def _wait_past(raw: redis.Redis, record: MemoryRecord) -> None:
    """Poll the server's clock (the one expiry is decided by) until the record expired."""
    assert record.expires_at is not None
    due = to_micros(record.expires_at)
    deadline = time.monotonic() + 5
    while _server_us(raw) <= due:
        assert time.monotonic() < deadline, "the server clock did not pass the expiry"
        time.sleep(0.01)


# -- pure: the scripts' contract, the tokenizer ------------------------------------------
def test_limits_match_the_scripts() -> None:
    text = (LUA / "includes" / "memory.lua").read_text()
    lua = {m[0]: int(m[1]) for m in re.findall(r"local (MEMORY_\w+) = (\d+)", text)}
    assert len(lua) == 15
    assert lua == {name: getattr(limits, name) for name in lua}


def test_calls_send_what_the_headers_declare_in_one_slot() -> None:
    ks, reg = Keyspace("k", 8), default_registry()
    common: dict[str, Any] = {"agent_id": "a", "key": "k", "value": {"x": "y"}}
    calls = [
        mem.put_call(
            ks, **common, memory_type="working", tags=["t"], ttl_seconds=None, mode="create"
        ).call,
        mem.update_call(ks, **common, version=1, tags=None).call,
        mem.delete_call(ks, "a", "k"),
        mem.get_call(ks, "a", "k"),
        mem.list_call(ks, "a", memory_type=None, tag=None, limit=10, cursor=None),
        mem.recall_call(ks, "a", "some words", memory_type=None, limit=5),
    ]
    assert {c.script for c in calls if c is not None} == {n for n in reg if n.endswith("_memory")}
    for call in calls:
        assert call is not None
        header = reg[call.script].header
        assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script
        check_one_slot(call)
        assert header.events == ()


def test_each_agent_has_its_own_tag_and_braces_cannot_escape_it() -> None:
    ks = Keyspace("k", 8)
    for agent in ("a", "b", "x{y}:z", "%7B", "émile"):
        keys = ks.memory_keys(agent)
        assert len({key_slot(k) for k in keys}) == 1
        assert all(k.startswith(ks.memory_tag(agent)) for k in keys)
        assert ks.memory_tag(agent).count("{") == 1 and ks.memory_tag(agent).count("}") == 1
    tags = {ks.memory_tag(a) for a in ("x{y}", "x%7By%7D", "x:y", "x%3Ay")}
    assert len(tags) == 4  # escaping is unambiguous


def test_tokens() -> None:
    assert mem.query_tokens("The QUICK brown_fox, a fox!") == ["the", "quick", "brown", "fox"]
    assert mem.query_tokens("Straße 5 猫") == ["strasse", "猫"]  # case-folded; 1 non-ASCII char
    assert mem.content_tokens("trip:paris", {"city": "Paris", "n": [1, "Louvre"]}) == [
        "trip",
        "paris",
        "louvre",
    ]
    many = " ".join(f"w{n}" for n in range(500))
    assert len(mem.content_tokens("k", many)) == limits.MEMORY_TOKENS
    assert len(mem.query_tokens(many)) == limits.MEMORY_QUERY_TOKENS
    assert mem.tag_tokens(["Project-X", "project"]) == ["project"]
    assert mem.query_tokens("x" * (limits.MEMORY_TOKEN_BYTES + 1)) == []


# -- round trips and versions -------------------------------------------------------------
def test_round_trip_keeps_values_exact(client: Client) -> None:
    value = {"n": 2**63 - 1, "f": 0.1, "empty": [], "obj": {}, "text": "héllo ✓", "nil": None}
    created = client.create_memory("profile", value, tags=["user", "prefs"])
    assert created.version == 1 and created.agent_id == "tester"
    assert created.memory_type == "episodic" and created.expires_at is None
    assert created.tags == ("user", "prefs")
    assert created.created_at == created.updated_at
    got = client.get_memory("profile")
    assert got == created and got.value == value
    assert client.list_memory() == [created]
    assert client.recall("prefs") == [created]
    for scalar in (None, 7, "plain", [1, [2]], True):
        assert client.remember("s", scalar).value == scalar
        assert client.get_memory("s").value == scalar


def test_create_refuses_a_live_key_and_changes_nothing(
    client: Client, raw_redis: redis.Redis
) -> None:
    client.create_memory("k", 1)
    before = _dump(client, raw_redis)
    with pytest.raises(AlreadyExistsError) as info:
        client.create_memory("k", 2, memory_type="long_term")
    assert info.value.current_version == 1
    assert _dump(client, raw_redis) == before


def test_remember_upserts_and_bumps_the_version(client: Client) -> None:
    first = client.remember("plan", "draft one", tags=["alpha"])
    second = client.remember("plan", "final", memory_type="long_term", tags=["beta"])
    assert (first.version, second.version) == (1, 2)
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert second.memory_type == "long_term" and second.tags == ("beta",)
    assert client.get_memory("plan") == second
    # the index follows the replacement: old words and tags are gone, new ones found
    assert client.recall("draft alpha") == []
    assert client.recall("final") == [second] == client.recall("beta")
    assert client.list_memory(tag="alpha") == [] and client.list_memory(tag="beta") == [second]
    assert client.list_memory(memory_type="episodic") == []


def test_update_checks_the_version_and_keeps_type_and_expiry(
    client: Client, raw_redis: redis.Redis
) -> None:
    rec = client.remember("note", "apples", memory_type="working", tags=["fruit"])
    newer = client.update_memory("note", 1, "bananas")
    assert newer.version == 2 and newer.tags == ("fruit",)  # tags=None keeps them
    assert newer.memory_type == "working" and newer.expires_at == rec.expires_at
    assert newer.created_at == rec.created_at and newer.value == "bananas"
    before = _dump(client, raw_redis)
    with pytest.raises(ConflictError) as info:
        client.update_memory("note", 1, "cherries", tags=["red"])
    assert info.value.current_version == 2
    assert _dump(client, raw_redis) == before
    assert client.recall("cherries") == [] and client.recall("bananas") == [newer]
    tagged = client.update_memory("note", 2, "bananas", tags=["yellow"])
    assert tagged.tags == ("yellow",) and client.recall("fruit") == []
    with pytest.raises(NotFoundError):
        client.update_memory("absent", 1, "x")


def test_delete_and_forget(client: Client, raw_redis: redis.Redis) -> None:
    client.remember("a", "alpha words", tags=["t"])
    client.delete_memory("a")
    with pytest.raises(NotFoundError):
        client.get_memory("a")
    with pytest.raises(NotFoundError):
        client.delete_memory("a")
    assert client.forget("a") is False
    client.remember("b", "beta")
    assert client.forget("b") is True
    assert _dump(client, raw_redis) == ({}, {}, [], [])  # no index member left behind


# -- expiry by the server clock ------------------------------------------------------------
def test_ttl_defaults_by_type(client: Client) -> None:
    working = client.remember("w", 1, memory_type="working")
    assert working.expires_at is not None
    assert working.expires_at - working.updated_at == timedelta(seconds=mem.WORKING_TTL_SECONDS)
    assert client.remember("e", 1).expires_at is None
    episodic = client.remember("e2", 1, ttl_seconds=90)
    assert episodic.expires_at is not None
    assert episodic.expires_at - episodic.updated_at == timedelta(seconds=90)
    assert client.remember("l", 1, memory_type="long_term").expires_at is None
    with pytest.raises(ValidationError, match="long_term"):
        client.remember("l", 2, memory_type="long_term", ttl_seconds=5)
    for bad in (0, -1, math.nan, math.inf, True, "5", limits.MEMORY_TTL_MS / 1000 + 1, 10**400):
        with pytest.raises(ValidationError):
            client.remember("x", 1, ttl_seconds=bad)
    assert client.get_memory("l").version == 1


def test_expired_entries_read_as_absent_and_are_purged(
    client: Client, raw_redis: redis.Redis
) -> None:
    keep = client.remember("keep", "lasting fact", memory_type="long_term")
    short = client.remember("brief", "fleeting fact", memory_type="working", ttl_seconds=0.05)
    assert client.get_memory("brief") == short
    _wait_past(raw_redis, short)
    with pytest.raises(NotFoundError):
        client.get_memory("brief")
    assert client.list_memory() == [keep]
    assert client.recall("fact") == [keep]
    with pytest.raises(NotFoundError):
        client.update_memory("brief", 1, "x")
    # still stored until a write purges it: reads never write
    meta, _, _, idx = client.keyspace.memory_keys("tester")
    assert raw_redis.hexists(meta, "brief")
    again = client.create_memory("brief", "new life")  # an expired key is absent
    assert again.version == 1 and again.created_at > short.created_at
    assert again.expires_at is None
    client.remember("late", 1, ttl_seconds=0.05)
    _wait_past(raw_redis, client.get_memory("late"))
    client.remember("other", 2)  # purges the expired entry and its index members
    assert not raw_redis.hexists(meta, "late")
    assert not [m for m in raw_redis.zrange(idx, 0, -1) if m.endswith("\0late")]


# -- recall ---------------------------------------------------------------------------------
def test_recall_ranks_by_matches_then_recency(client: Client) -> None:
    client.remember("old-both", "red apple pie")
    client.remember("one", "red car")
    client.remember("new-both", "apple tart, red")
    client.remember("none", "blue sky")
    client.remember("tagged", "something", tags=["Apple"])
    found = client.recall("RED apple")
    assert [r.key for r in found] == ["new-both", "old-both", "tagged", "one"]
    assert [r.key for r in client.recall("red apple", limit=2)] == ["new-both", "old-both"]
    assert client.recall("nothing matches") == []
    assert client.recall("  ,;  ") == []
    client.remember("old-both", "red apple pie, again")  # now the most recent
    assert [r.key for r in client.recall("red apple", limit=2)] == ["old-both", "new-both"]
    client.remember("w", "red apple", memory_type="working")
    assert [r.key for r in client.recall("apple", memory_type="working")] == ["w"]
    assert "w" not in [r.key for r in client.recall("apple", memory_type="episodic")]
    for bad in (0, limits.MEMORY_RECALL_MAX + 1, True, "5"):
        with pytest.raises(ValidationError):
            client.recall("apple", limit=bad)
    with pytest.raises(ValidationError):
        client.recall("apple", memory_type="semantic")
    with pytest.raises(ValidationError):
        client.recall(b"apple")  # type: ignore[arg-type]


def test_recall_reads_a_bounded_part_of_the_index(client: Client, raw_redis: redis.Redis) -> None:
    """Each query token is read for its MEMORY_RECALL_SCAN most recent index members
    only: entries behind that many newer holders of the token are not reached."""
    for n in range(3):
        client.remember(f"k{n}", "common")
    _, _, _, idx = client.keyspace.memory_keys("tester")
    newer = 9_999_999_999_999_999
    ghosts = {f"w\0e\0common\0{newer - n:016d}\0ghost{n}": 0 for n in range(200)}
    raw_redis.zadd(idx, ghosts)  # members of entries that do not exist, newer than all
    assert len(ghosts) == limits.MEMORY_RECALL_SCAN
    assert client.recall("common", limit=limits.MEMORY_RECALL_MAX) == []
    raw_redis.zrem(idx, next(iter(ghosts)))
    assert [r.key for r in client.recall("common", limit=10)] == ["k2"]
    assert [r.key for r in client.list_memory()] == ["k2", "k1", "k0"]


# -- listing -------------------------------------------------------------------------------
def test_list_pages_newest_first_with_filters(client: Client) -> None:
    for n in range(5):
        client.remember(f"e{n}", n, tags=["even"] if n % 2 == 0 else ["odd"])
    client.remember("w", "x", memory_type="working", tags=["even"])
    seen: list[str] = []
    cursor = None
    while True:
        page = client.list_memory(limit=2, cursor=cursor)
        seen += [r.key for r in page]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["w", "e4", "e3", "e2", "e1", "e0"]
    assert [r.key for r in client.list_memory(tag="even")] == ["w", "e4", "e2", "e0"]
    assert [r.key for r in client.list_memory(memory_type="working")] == ["w"]
    both = client.list_memory(tag="even", memory_type="episodic", limit=2)
    assert [r.key for r in both] == ["e4", "e2"]
    rest = client.list_memory(tag="even", memory_type="episodic", cursor=both.next_cursor)
    assert [r.key for r in rest] == ["e0"] and rest.next_cursor is None
    for bad in ("nope", "123:k", "0000000000000000:" + "k" * 300, 5):
        with pytest.raises(ValidationError):
            client.list_memory(cursor=bad)  # type: ignore[arg-type]
    for limit in (0, limits.MEMORY_PAGE + 1):
        with pytest.raises(ValidationError):
            client.list_memory(limit=limit)


def test_list_stops_at_its_scan_budget_with_a_cursor(
    client: Client, raw_redis: redis.Redis
) -> None:
    """A filtered page that finds nothing within MEMORY_LIST_SCAN members says where to
    go on instead of reading the whole index."""
    client.remember("target", 1, memory_type="working", tags=["t"])
    _, _, _, idx = client.keyspace.memory_keys("tester")
    # index members of entries that do not exist, newer than the target: skipped as absent
    filler = {f"g\0t\0{9_999_999_999_999_999 - n:016d}\0ghost{n}": 0 for n in range(1200)}
    raw_redis.zadd(idx, filler)
    page = client.list_memory(tag="t", memory_type="working", limit=5)
    assert list(page) == [] and page.next_cursor is not None
    page = client.list_memory(tag="t", memory_type="working", limit=5, cursor=page.next_cursor)
    assert [r.key for r in page] == ["target"]


# -- bounds and bad input -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"value": "x" * limits.MEMORY_VALUE_BYTES}, PayloadTooLargeError),
        ({"key": "k" * (limits.MEMORY_KEY_BYTES + 1)}, PayloadTooLargeError),
        ({"key": ""}, ValidationError),
        ({"key": "two\nlines"}, ValidationError),
        ({"key": 5}, ValidationError),
        ({"tags": [f"t{n}" for n in range(limits.MEMORY_TAGS + 1)]}, PayloadTooLargeError),
        ({"tags": ["t" * (limits.MEMORY_TAG_BYTES + 1)]}, PayloadTooLargeError),
        ({"tags": "one-string"}, ValidationError),
        ({"tags": [""]}, ValidationError),
        ({"tags": [7]}, ValidationError),
        ({"value": math.nan}, ValidationError),
        ({"value": {"x": [math.inf]}}, ValidationError),
        ({"value": b"bytes"}, ValidationError),
        ({"value": {1: "int key"}}, ValidationError),
        ({"value": {"s": {1, 2}}}, ValidationError),
        ({"value": 2**64}, ValidationError),
        ({"value": "\ud800"}, ValidationError),
        ({"memory_type": "semantic"}, ValidationError),
        ({"agent_id": ""}, ValidationError),
        ({"agent_id": "a\x00b"}, ValidationError),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    client: Client, raw_redis: redis.Redis, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    client.remember("existing", "value")
    before = _dump(client, raw_redis)
    args: dict[str, Any] = {"key": "k", "value": "v", **kwargs}
    for write in (client.remember, client.create_memory):
        rest = dict(args)
        with pytest.raises(error):
            write(rest.pop("key"), rest.pop("value"), **rest)
    if "memory_type" not in kwargs:  # update_memory takes no type
        rest = {"key": "existing", **kwargs}
        with pytest.raises(error):
            client.update_memory(rest.pop("key"), 1, rest.pop("value", "v"), **rest)
    assert _dump(client, raw_redis) == before


def test_the_scripts_refuse_what_the_sdk_would(client: Client, raw_redis: redis.Redis) -> None:
    """Never trust the caller: the same checks again in Lua, before any write."""
    client.remember("existing", {"a": 1}, tags=["t"])
    before = _dump(client, raw_redis)
    keys = list(client.keyspace.memory_keys("tester"))
    rival_keys = list(client.keyspace.memory_keys("rival"))

    def put(**over: str) -> Call:
        args = {
            "agent": "tester",
            "key": "k",
            "mode": "upsert",
            "type": "episodic",
            "value": "1",
            "tags": "[]",
            "ttoks": "[]",
            "ctoks": "[]",
            "ttl": "",
        }
        args.update(over)
        return Call("put_memory", keys, list(args.values()))

    def update(version: str, tags: str = "", ttoks: str = "", key: str = "existing") -> Call:
        return Call("update_memory", keys, ["tester", key, version, "1", tags, ttoks, "[]"])

    bad = [
        (put(value="NaN"), ValidationError),
        (put(value='{"a": NaN}'), ValidationError),
        (put(value="[1,]"), ValidationError),
        (put(value='"' + "x" * limits.MEMORY_VALUE_BYTES + '"'), PayloadTooLargeError),
        (put(key="k" * (limits.MEMORY_KEY_BYTES + 1)), PayloadTooLargeError),
        (put(key="a\x00b"), ValidationError),
        (put(key=""), ValidationError),
        (put(type="semantic"), ValidationError),
        (put(mode="replace"), ValidationError),
        (put(tags='["a","a"]'), ValidationError),
        (put(tags='{"a":1}'), ValidationError),
        (put(tags=str([f"t{n}" for n in range(17)]).replace("'", '"')), PayloadTooLargeError),
        (put(ctoks='["ok","bad\\u0000"]'), ValidationError),
        (put(ttl="0"), ValidationError),
        (put(ttl="1.5"), ValidationError),
        (put(ttl=str(limits.MEMORY_TTL_MS + 1)), ValidationError),
        (put(type="long_term", ttl="1000"), ValidationError),
        (put(agent="rival"), ValidationError),  # the keys are tester's, not rival's
        (Call("put_memory", rival_keys, put().args), ValidationError),
        (update("0"), ValidationError),
        (update("1", tags="[]"), ValidationError),  # tags without their tokens
        (update("9"), ConflictError),
        (update("1", key="nope"), NotFoundError),
        (Call("list_memory", keys, ["tester", "", "", "", "0"]), ValidationError),
        (Call("list_memory", keys, ["tester", "", "", "garbage", "5"]), ValidationError),
        (Call("recall_memory", keys, ["tester", "", "5", '["a","a"]']), ValidationError),
        (Call("recall_memory", keys, ["tester", "", "101", '["a"]']), ValidationError),
    ]
    for call, error in bad:
        with pytest.raises(error):
            client._run(call)
        assert _dump(client, raw_redis) == before, call


def test_the_entry_bound_holds_and_expired_entries_never_block(
    client: Client, raw_redis: redis.Redis
) -> None:
    meta, *_ = client.keyspace.memory_keys("tester")
    short = client.remember("short", 1, ttl_seconds=0.05)
    # fill the memory to its bound with entries written around the scripts (fast)
    raw_redis.hset(meta, mapping={f"f{n}": "{}" for n in range(limits.MEMORY_ENTRIES - 1)})
    _wait_past(raw_redis, short)
    client.remember("fits", 1)  # the purge removes the expired entry first
    assert not raw_redis.hexists(meta, "short")
    before = _dump(client, raw_redis)
    with pytest.raises(PayloadTooLargeError) as info:
        client.remember("one-too-many", 1)
    assert info.value.details["limit"] == limits.MEMORY_ENTRIES
    assert _dump(client, raw_redis) == before
    assert client.remember("fits", 2).version == 2  # replacing never counts as adding


# -- isolation -------------------------------------------------------------------------------
def test_other_agents_memory_is_invisible(client: Client, other: Client) -> None:
    mine = client.remember("secret", "launch codes", tags=["private"])
    assert other.recall("launch codes") == [] and list(other.list_memory()) == []
    with pytest.raises(NotFoundError):
        other.get_memory("secret")
    assert other.forget("secret") is False
    theirs = other.remember("secret", "their own")
    assert theirs.version == 1 and theirs.agent_id == "rival"
    assert client.get_memory("secret") == mine
    # naming the agent reaches it (the trust boundary is the HTTP server)
    assert other.get_memory("secret", agent_id="tester") == mine
    odd = client.remember("k", 1, agent_id="x{y}:z%")
    assert client.get_memory("k", agent_id="x{y}:z%") == odd and odd.agent_id == "x{y}:z%"
    assert client.list_memory(agent_id="x{y}:z%") == [odd]


# -- async --------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_async_round_trip_and_one_winner_per_version(aclient: AsyncClient) -> None:
    rec = await aclient.remember("counter", 0, memory_type="long_term", tags=["n"])
    assert await aclient.get_memory("counter") == rec
    wins: list[int] = []
    losses: list[int | None] = []

    async def bump(n: int) -> None:
        try:
            await aclient.update_memory("counter", rec.version, n)
            wins.append(n)
        except ConflictError as exc:
            losses.append(exc.current_version)

    async with anyio.create_task_group() as tg:
        for n in range(1, 9):
            tg.start_soon(bump, n)
    assert len(wins) == 1 and losses == [2] * 7
    final = await aclient.get_memory("counter")
    assert final.version == 2 and final.value == wins[0]
    assert [r.key for r in await aclient.recall("counter")] == ["counter"]
    page = await aclient.list_memory(tag="n")
    assert page == [final] and page.next_cursor is None
    assert await aclient.forget("counter") is True
    with pytest.raises(NotFoundError):
        await aclient.delete_memory("counter")
