"""State patches: every op, RFC 6901 paths, and every error leaving state and version alone."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis

from oibus import (
    Client,
    ConflictError,
    NotFoundError,
    PatchError,
    PayloadTooLargeError,
    StatePatch,
    ValidationError,
)
from oibus.bus import limits

BASE = {"a": {"b": [1, 2], "c": "x", "e": {}}, "list": [], "n": 0.1, "s/l": {"t~": 1}}


@pytest.fixture
def intent_id(client: Client) -> str:
    return client.create_intent("t", state=BASE).id


CASES: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
    (
        [{"op": "set", "path": "/new", "value": {"k": [None, True]}}],
        {**BASE, "new": {"k": [None, True]}},
    ),
    (
        [{"op": "set", "path": "/a/c", "value": "y"}],
        {**BASE, "a": {"b": [1, 2], "c": "y", "e": {}}},
    ),
    (
        [{"op": "set", "path": "/a/d/e/f", "value": 1}],
        {**BASE, "a": {"b": [1, 2], "c": "x", "e": {}, "d": {"e": {"f": 1}}}},
    ),
    (
        [{"op": "set", "path": "/a/b/0", "value": 9}],
        {**BASE, "a": {"b": [9, 2], "c": "x", "e": {}}},
    ),
    (
        [{"op": "set", "path": "/a/b/2", "value": 3}],
        {**BASE, "a": {"b": [1, 2, 3], "c": "x", "e": {}}},
    ),
    (
        [{"op": "set", "path": "/a/b/-", "value": 3}],
        {**BASE, "a": {"b": [1, 2, 3], "c": "x", "e": {}}},
    ),
    (
        [{"op": "set", "path": "/a/e/x", "value": []}],
        {**BASE, "a": {"b": [1, 2], "c": "x", "e": {"x": []}}},
    ),
    ([{"op": "append", "path": "/list", "value": "v"}], {**BASE, "list": ["v"]}),
    (
        [{"op": "append", "path": "/a/b", "value": {"z": 1}}],
        {**BASE, "a": {"b": [1, 2, {"z": 1}], "c": "x", "e": {}}},
    ),
    ([{"op": "append", "path": "/fresh", "value": 1}], {**BASE, "fresh": [1]}),
    (
        [{"op": "append", "path": "/a/fresh", "value": 1}],
        {**BASE, "a": {"b": [1, 2], "c": "x", "e": {}, "fresh": [1]}},
    ),
    ([{"op": "remove", "path": "/n"}], {k: v for k, v in BASE.items() if k != "n"}),
    ([{"op": "remove", "path": "/a/c"}], {**BASE, "a": {"b": [1, 2], "e": {}}}),
    ([{"op": "remove", "path": "/a/b"}], {**BASE, "a": {"c": "x", "e": {}}}),
    ([{"op": "remove", "path": "/a/e"}], {**BASE, "a": {"b": [1, 2], "c": "x"}}),
    ([{"op": "remove", "path": "/a/b/0"}], {**BASE, "a": {"b": [2], "c": "x", "e": {}}}),
    ([{"op": "remove", "path": "/a/b/1"}], {**BASE, "a": {"b": [1], "c": "x", "e": {}}}),
    ([{"op": "set", "path": "/s~1l/t~0", "value": 2}], {**BASE, "s/l": {"t~": 2}}),
    ([{"op": "set", "path": "/", "value": "empty key"}], {**BASE, "": "empty key"}),
    (
        [
            {"op": "set", "path": "/x", "value": 1},
            {"op": "append", "path": "/y", "value": 2},
            {"op": "remove", "path": "/x"},
            {"op": "set", "path": "/y/-", "value": 3},
        ],
        {**BASE, "y": [2, 3]},
    ),
    ([{"op": "set", "path": "/u", "value": 'üñí "q" \\ \n'}], {**BASE, "u": 'üñí "q" \\ \n'}),
    (
        [{"op": "set", "path": "/a/big", "value": 2**60 + 1}],
        {**BASE, "a": {"b": [1, 2], "c": "x", "e": {}, "big": 2**60 + 1}},
    ),
]


@pytest.mark.parametrize(("patches", "expected"), CASES)
def test_patch_ops(
    client: Client, intent_id: str, patches: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    patched = client.patch_state(intent_id, 1, patches)
    assert patched.state == expected
    assert patched.version == 2
    assert client.get_intent(intent_id).state == expected
    event = client.get_events(intent_id, event_type="state_patched")[0]
    assert event.payload == {"patches": patches, "version": 2}


def test_state_patch_struct(client: Client, intent_id: str) -> None:
    patched = client.patch_state(
        intent_id, 1, [StatePatch("set", "/a/c", 5), StatePatch("remove", "/n")]
    )
    assert patched.state["a"]["c"] == 5
    assert "n" not in patched.state


def test_update_state_sets_top_level_keys(client: Client, intent_id: str) -> None:
    updated = client.update_state(intent_id, 1, {"progress": 0.5, "a/b": [1], "~": None})
    assert updated.state == {**BASE, "progress": 0.5, "a/b": [1], "~": None}


ERRORS: list[tuple[list[dict[str, Any]], type[Exception]]] = [
    ([{"op": "move", "path": "/a", "value": 1}], ValidationError),
    ([{"op": "set", "path": "", "value": 1}], ValidationError),
    ([{"op": "set", "path": "a", "value": 1}], ValidationError),
    ([{"op": "set", "path": "/a~2", "value": 1}], ValidationError),
    ([{"op": "set", "path": "/a~", "value": 1}], ValidationError),
    ([{"op": "set", "path": "/" + "/".join(["d"] * 33), "value": 1}], ValidationError),
    ([{"op": "set", "path": "/a"}], ValidationError),
    ([], ValidationError),
    ([{"op": "set", "path": "/a/c/d", "value": 1}], PatchError),
    ([{"op": "set", "path": "/n/x", "value": 1}], PatchError),
    ([{"op": "set", "path": "/a/b/5", "value": 1}], PatchError),
    ([{"op": "set", "path": "/a/b/01", "value": 1}], PatchError),
    ([{"op": "set", "path": "/a/b/x", "value": 1}], PatchError),
    ([{"op": "append", "path": "/a", "value": 1}], PatchError),
    ([{"op": "append", "path": "/a/c", "value": 1}], PatchError),
    ([{"op": "append", "path": "/n", "value": 1}], PatchError),
    ([{"op": "remove", "path": "/missing"}], PatchError),
    ([{"op": "remove", "path": "/a/missing"}], PatchError),
    ([{"op": "remove", "path": "/a/b/7"}], PatchError),
    (
        [{"op": "set", "path": "/ok", "value": 1}, {"op": "append", "path": "/n", "value": 1}],
        PatchError,
    ),
    ([{"op": "set", "path": "/big", "value": "x" * limits.STATE_BYTES}], PayloadTooLargeError),
]


@pytest.mark.parametrize(("patches", "error"), ERRORS)
def test_patch_errors_change_nothing(
    client: Client,
    raw_redis: redis.Redis,
    intent_id: str,
    patches: list[dict[str, Any]],
    error: type[Exception],
) -> None:
    events = raw_redis.xlen(client.keyspace.events(intent_id))
    with pytest.raises(error):
        client.patch_state(intent_id, 1, patches)
    after = client.get_intent(intent_id)
    assert after.state == BASE
    assert after.version == 1
    assert raw_redis.xlen(client.keyspace.events(intent_id)) == events


def test_script_checks_paths_and_values_itself(client: Client, intent_id: str) -> None:
    """Bypass the SDK: the script refuses malformed ops and non-JSON values on its own."""
    for raw in [
        '[["set","nope","1"]]',
        '[["set","/a","NaN"]]',
        '[["set","/a","{"]]',
        '[["zap","/a","1"]]',
        "[]",
        "{}",
        '[["set","/a","0x1F"]]',
    ]:
        call = client._ops.patch_state(intent_id, 1, raw)
        with pytest.raises(ValidationError):
            client._runner.call(call)
    assert client.get_intent(intent_id).version == 1


def test_state_size_limit_counts_the_whole_state(client: Client) -> None:
    intent = client.create_intent("t")
    half = "x" * (limits.STATE_BYTES // 2)
    v = client.update_state(intent.id, 1, {"a": half}).version
    with pytest.raises(PayloadTooLargeError):
        client.update_state(intent.id, v, {"b": half})
    v = client.patch_state(intent.id, v, [{"op": "remove", "path": "/a"}]).version
    assert client.update_state(intent.id, v, {"b": half}).version == v + 1


def test_wrong_version_is_a_conflict_with_the_current_version(
    client: Client, intent_id: str
) -> None:
    client.update_state(intent_id, 1, {"k": 1})
    with pytest.raises(ConflictError) as info:
        client.update_state(intent_id, 1, {"k": 2})
    assert info.value.current_version == 2
    assert client.get_intent(intent_id).state["k"] == 1


def test_version_none_skips_the_check(client: Client, intent_id: str) -> None:
    client.update_state(intent_id, 1, {"k": 1})
    assert client.update_state(intent_id, None, {"k": 2}).version == 3


@pytest.mark.parametrize("version", [0, -1, True, "1"])
def test_bad_version(client: Client, intent_id: str, version: object) -> None:
    with pytest.raises(ValidationError):
        client.update_state(intent_id, version, {"k": 1})  # type: ignore[arg-type]


def test_patch_unknown_intent(client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.update_state("ghost", 1, {"a": 1})


def test_update_state_script_checks_pairs_itself(client: Client, intent_id: str) -> None:
    for raw in ["[]", "{}", '[["a"]]', '[[1,"2"]]', '[["a","NaN"]]', '[["a",2]]', '[["a","{"]]']:
        call = client._ops.update_state(intent_id, 1, raw)
        with pytest.raises(ValidationError):
            client._runner.call(call)
    assert client.get_intent(intent_id).version == 1


def test_update_state_counts_size_with_repeated_keys(client: Client) -> None:
    intent = client.create_intent("t")
    half = '"' + "x" * (limits.STATE_BYTES // 2) + '"'
    # the same key twice replaces itself: the size counts it once
    pairs = msgspec.json.encode([["a", half], ["a", half]]).decode()
    call = client._ops.update_state(intent.id, 1, pairs)
    assert client._runner.call(call) is not None
    assert client.get_intent(intent.id).state == {"a": "x" * (limits.STATE_BYTES // 2)}
    with pytest.raises(PayloadTooLargeError):
        client.update_state(intent.id, None, {"b": "x" * (limits.STATE_BYTES // 2)})


def test_update_state_records_the_same_event_as_a_patch(client: Client, intent_id: str) -> None:
    client.update_state(intent_id, 1, {"a/b": 1, "c~": [2]})
    event = client.get_events(intent_id, event_type="state_patched")[-1]
    assert event.payload == {
        "patches": [
            {"op": "set", "path": "/a~1b", "value": 1},
            {"op": "set", "path": "/c~0", "value": [2]},
        ],
        "version": 2,
    }
