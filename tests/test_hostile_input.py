"""Input meant to break the store: what the review of the core found, kept as tests.
Each must be refused with a typed error and leave nothing behind, or be stored so that
every reader can still read it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from helpers import create_call

from oibus import Client, ValidationError
from oibus.bus import limits
from oibus.bus.ops import Call


def nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_many_state_keys_are_written_whole(client: Client) -> None:
    state = {f"k{n}": n for n in range(2500)}
    intent = client.create_intent("wide", state=state)
    assert client.get_intent(intent.id).state == state
    assert client.list_intents()[0].id == intent.id


def test_nesting_is_bounded_with_the_path(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t", state={"ok": nest(limits.JSON_DEPTH)})
    with pytest.raises(ValidationError):
        client.create_intent("t", state={"deep": nest(limits.JSON_DEPTH + 1)})
    path = "/a" + "/x" * 20
    with pytest.raises(ValidationError):
        client.patch_state(intent.id, 1, [{"op": "set", "path": path, "value": nest(50)}])
    with pytest.raises(ValidationError):
        client.update_state(intent.id, 1, {"huge": nest(5000)})
    assert (
        client.patch_state(intent.id, 1, [{"op": "set", "path": path, "value": nest(40)}]).version
        == 2
    )
    assert len(client.list_intents()) == 1


def _raw_set(client: Client, intent_id: str, value_text: bytes) -> Call:
    ops = b'[["set","/x","' + value_text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"]]'
    call = client._ops.patch_state(intent_id, None, "[]")
    call.args[2] = ops  # type: ignore[call-overload]
    return call


@pytest.mark.parametrize(
    "text", [b"1e400", b"-1e999", b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b"1" + b"0" * 400]
)
def test_script_refuses_values_no_reader_takes_back(client: Client, text: bytes) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client._runner.call(_raw_set(client, intent.id, text))
    assert client.get_intent(intent.id).version == 1
    assert len(client.get_events(intent.id)) == 1


def test_script_takes_valid_unicode(client: Client) -> None:
    intent = client.create_intent("t")
    client._runner.call(_raw_set(client, intent.id, '"ü€😀"'.encode()))
    assert client.get_intent(intent.id).state == {"x": "ü€😀"}


def test_lone_surrogates_are_validation_errors(client: Client) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.update_state(intent.id, 1, {"a": "\ud800"})
    with pytest.raises(ValidationError):
        client.create_intent("t\ud800")
    with pytest.raises(ValidationError):
        client.log_event(intent.id, "comment", {"k": "\ud800"})
    with pytest.raises(ValidationError):
        client.update_state(intent.id, 1, {"\ud800": 1})


def test_since_is_exact_to_the_microsecond(client: Client) -> None:
    intent = client.create_intent("t")
    event = client.log_event(intent.id, "comment", {})
    assert event in client.get_events(intent.id, since=event.created_at)
    later = client.get_events(intent.id, since=event.created_at + timedelta(microseconds=1))
    assert event not in later


@pytest.mark.parametrize(
    "kwargs",
    [
        {"since": "2020-01-01"},
        {"after": 5},
        {"since": __import__("datetime").datetime(1960, 1, 1, tzinfo=__import__("datetime").UTC)},
    ],
)
def test_get_events_argument_types(client: Client, kwargs: dict[str, object]) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.get_events(intent.id, **kwargs)  # type: ignore[arg-type]


def test_depends_on_must_be_a_list(client: Client) -> None:
    with pytest.raises(ValidationError):
        client.create_intent("t", depends_on="abc")  # type: ignore[arg-type]


def test_idempotent_create_ignores_key_order(client: Client) -> None:
    first = client.create_intent(
        "t", constraints={"a": 1, "b": 2}, state={"x": 1, "y": 2}, idempotency_key="order"
    )
    again = client.create_intent(
        "t", constraints={"b": 2, "a": 1}, state={"y": 2, "x": 1}, idempotency_key="order"
    )
    assert again.id == first.id


def test_scripts_check_the_actor_before_writing(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    call = client._ops.log_event(intent.id, "comment", {})
    with pytest.raises(ValidationError):
        client._runner.call(Call(call.script, call.keys, call.args[:3]))
    assert raw_redis.hget(client.keyspace.intent(intent.id), "seq") == "1"
    create = create_call(client._ops, "raw-2", created_by="me")
    with pytest.raises(ValidationError):
        client._runner.call(Call(create.script, create.keys, create.args[:5]))
    assert not raw_redis.exists(client.keyspace.intent("raw-2"))


def test_script_checks_the_creator_index_key(client: Client, raw_redis: redis.Redis) -> None:
    call = create_call(client._ops, "raw-3", created_by="a:b")
    keys = list(call.keys)
    keys[4] = client.keyspace.index_creator(client.keyspace.partition("raw-3"), "someone")
    with pytest.raises(ValidationError):
        client._runner.call(Call(call.script, keys, call.args))
    assert client._runner.call(call)[0] == 1
