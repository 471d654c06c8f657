"""The script runner: NOSCRIPT reload, the one-slot guard, and error translation (no
redis-py exception ever reaches a caller)."""

from __future__ import annotations

import pytest
import redis

from oibus import BusConnectionError, Client, ScriptError
from oibus.bus.codes import from_reply
from oibus.bus.errors import (
    ConflictError,
    InvalidTransitionError,
    NotFoundError,
    ValidationError,
)
from oibus.bus.keyspace import key_slot
from oibus.bus.ops import Call


def test_noscript_reload(client: Client, raw_redis: redis.Redis, backend: str) -> None:
    if backend == "env":
        pytest.skip("never flush the script cache of a shared server")
    intent = client.create_intent("t")
    raw_redis.script_flush()
    sha = client._runner.registry["update_state"].sha
    assert raw_redis.script_exists(sha) == [False]
    assert client.update_state(intent.id, 1, {"a": 1}).version == 2
    assert raw_redis.script_exists(sha) == [True]
    raw_redis.script_flush()
    assert len(client.list_intents()) == 1  # the pipelined path reloads too


def test_a_pipeline_after_a_lost_script_cache_runs_each_call_once(
    client: Client, raw_redis: redis.Redis, backend: str
) -> None:
    """Calls the server ran are not sent again when others of the same pipeline were
    refused with NOSCRIPT (the cache was lost): only the refused ones are."""
    if backend == "env":
        pytest.skip("never flush the script cache of a shared server")
    intent = client.create_intent("t")
    client._runner.ensure_loaded({"log_event", "update_state"})  # used before: not loaded again
    raw_redis.script_flush()  # the server lost its cache (a restart, a failover)
    raw_redis.script_load(client._runner.registry["log_event"].source)  # this one is back
    calls = [
        client._ops.log_event(intent.id, "note", {"n": 1}),
        client._ops.update_state(intent.id, None, '[["a", "1"]]', None),
        client._ops.log_event(intent.id, "note", {"n": 2}),
    ]
    replies = client._runner.call_many(calls)
    assert not [r for r in replies if isinstance(r, Exception)]
    notes = client.get_events(intent.id, event_type="note")
    assert [e.payload["n"] for e in notes] == [1, 2]  # each once
    assert client.get_intent(intent.id).state == {"a": 1}


def test_slot_guard_refuses_keys_in_two_slots(client: Client) -> None:
    call = client._ops.get_intent("a")
    bad = Call(call.script, [call.keys[0], client.keyspace.state("other-group")], [])
    if key_slot(bad.keys[0]) == key_slot(bad.keys[1]):
        pytest.skip("ids happened to share a slot")
    with pytest.raises(ScriptError, match="slots"):
        client._runner.call(bad)


def test_every_call_is_one_slot(client: Client) -> None:
    """Each op's keys share a slot (the guard is on in every test, so this is a direct
    restatement for a child in its parent's group)."""
    parent = client.create_intent("p")
    child = client.create_intent("c", parent_intent_id=parent.id)
    for call in (
        client._ops.set_status(child.id, 1, "completed", None),
        client._ops.get_intent(child.id),
    ):
        assert len({key_slot(k) for k in call.keys}) == 1


def test_connection_errors_are_translated() -> None:
    c = Client("redis://127.0.0.1:1/0", socket_timeout=0.5)
    with pytest.raises(BusConnectionError) as info:
        c.create_intent("t")
    assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
    c.close()


@pytest.mark.parametrize(
    ("reply", "cls", "attrs"),
    [
        (
            'OIBUS CONFLICT {"message":"m","current_version":7}',
            ConflictError,
            {"current_version": 7},
        ),
        ('OIBUS NOT_FOUND {"message":"m","id":"x"}', NotFoundError, {"id": "x"}),
        ('OIBUS INVALID {"message":"m","field":"title"}', ValidationError, {"field": "title"}),
        (
            'OIBUS TRANSITION {"message":"m","from_status":"a","to_status":"b"}',
            InvalidTransitionError,
            {"from_status": "a", "to_status": "b"},
        ),
        ("OIBUS WHAT {}", ScriptError, {}),
        ("ERR something else", ScriptError, {}),
        ("OIBUS INVALID not-json", ValidationError, {}),
    ],
)
def test_reply_translation(reply: str, cls: type[Exception], attrs: dict[str, object]) -> None:
    exc = from_reply(reply)
    assert type(exc) is cls
    for name, value in attrs.items():
        assert getattr(exc, name) == value


class _Writer:
    def __init__(self, fail: BaseException | None, hang: bool) -> None:
        self.sent: list[bytes] = []
        self.fail, self.hang = fail, hang

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        import asyncio

        if self.fail is not None:
            raise self.fail
        if self.hang:  # a paused transport that never drains
            await asyncio.sleep(10)


class _Conn:
    is_connected = True
    health_check_interval = 0

    def __init__(self, writer: _Writer, timeout: float | None) -> None:
        self._writer, self.socket_timeout = writer, timeout


@pytest.mark.parametrize(
    ("fail", "hang", "expected"),
    [
        (ConnectionResetError(104, "reset"), False, redis.exceptions.ConnectionError),
        (None, True, redis.exceptions.TimeoutError),
        (None, False, None),
    ],
)
def test_the_async_writer_fails_as_redis_py_does(
    fail: BaseException | None, hang: bool, expected: type[Exception] | None
) -> None:
    """The runner's async write (without redis-py's per-call wait_for task) sends the
    bytes at once and fails with redis-py's own errors, which the runner translates."""
    import asyncio

    from oibus.sdk.wire import write_packed_async

    writer = _Writer(fail, hang)
    run = write_packed_async(_Conn(writer, 0.05), b"*1\r\n$4\r\nPING\r\n")
    if expected is None:
        asyncio.run(run)
    else:
        with pytest.raises(expected):
            asyncio.run(run)
    assert writer.sent == [b"*1\r\n$4\r\nPING\r\n"]
