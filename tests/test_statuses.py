"""The lifecycle: every legal and every illegal transition, enforced by the script."""

from __future__ import annotations

import itertools

import pytest
import redis

from oibus import (
    Client,
    ConflictError,
    IntentClosedError,
    IntentStatus,
    InvalidTransitionError,
    ValidationError,
)
from oibus.bus.statuses import TRANSITIONS

S = IntentStatus

# how to bring a fresh intent to each status (by legal moves only)
ROUTES: dict[IntentStatus, list[IntentStatus]] = {
    S.DRAFT: [],
    S.ACTIVE: [S.ACTIVE],
    S.BLOCKED: [S.BLOCKED],
    S.SUSPENDED_AWAITING_INPUT: [S.ACTIVE, S.SUSPENDED_AWAITING_INPUT],
    S.COMPLETED: [S.ACTIVE, S.COMPLETED],
    S.ABANDONED: [S.ABANDONED],
}
PAIRS = list(itertools.product(IntentStatus, IntentStatus))


def _at(client: Client, status: IntentStatus) -> tuple[str, int]:
    intent = client.create_intent("t", status="draft")
    version = intent.version
    for step in ROUTES[status]:
        version = client.set_status(intent.id, version, step).version
    return intent.id, version


@pytest.mark.parametrize(("src", "dst"), [p for p in PAIRS if p[1] in TRANSITIONS[p[0]]], ids=str)
def test_legal_transition(client: Client, src: IntentStatus, dst: IntentStatus) -> None:
    intent_id, version = _at(client, src)
    moved = client.set_status(intent_id, version, dst, reason="because")
    assert moved.status is dst
    assert moved.version == version + 1
    last = client.get_events(intent_id, reverse=True, limit=1)[0]
    assert last.event_type == "status_changed"
    assert last.payload == {
        "from": str(src),
        "to": str(dst),
        "version": version + 1,
        "reason": "because",
    }
    assert client.list_intents(status=str(dst))[0].id == intent_id
    assert intent_id not in {i.id for i in client.list_intents(status=str(src))}


@pytest.mark.parametrize(
    ("src", "dst"), [p for p in PAIRS if p[1] not in TRANSITIONS[p[0]]], ids=str
)
def test_illegal_transition_changes_nothing(
    client: Client, raw_redis: redis.Redis, src: IntentStatus, dst: IntentStatus
) -> None:
    intent_id, version = _at(client, src)
    before = client.get_intent(intent_id)
    events = raw_redis.xlen(client.keyspace.events(intent_id))
    with pytest.raises(InvalidTransitionError) as info:
        client.set_status(intent_id, version, dst)
    assert (info.value.from_status, info.value.to_status) == (str(src), str(dst))
    assert client.get_intent(intent_id) == before
    assert raw_redis.xlen(client.keyspace.events(intent_id)) == events


def test_status_needs_current_version(client: Client) -> None:
    intent = client.create_intent("t")
    client.update_state(intent.id, 1, {"a": 1})
    with pytest.raises(ConflictError) as info:
        client.set_status(intent.id, 1, "completed")
    assert info.value.current_version == 2
    assert client.get_intent(intent.id).status is S.ACTIVE


def test_unknown_status_is_a_validation_error(client: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError) as info:
        client.set_status(intent.id, 1, "finished")
    assert info.value.field == "status"
    # and the script refuses it on its own, too
    call = client._ops.set_status(intent.id, 1, "completed", None)
    call.args[2] = "finished"
    with pytest.raises(ValidationError):
        client._runner.call(call)
    assert client.get_intent(intent.id).version == 1


def test_terminal_intents_refuse_patches_and_assignment(client: Client) -> None:
    intent = client.create_intent("t")
    done = client.set_status(intent.id, 1, "completed")
    with pytest.raises(IntentClosedError):
        client.update_state(intent.id, done.version, {"a": 1})
    with pytest.raises(IntentClosedError):
        client.assign_agent(intent.id, "late")
    assert client.get_intent(intent.id) == done
    # the log stays open for audit notes
    client.log_event(intent.id, "comment", {"text": "post-mortem"})
