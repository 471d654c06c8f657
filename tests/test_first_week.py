"""Regressions of issue 15 ("the first week of a new user and an operator"), one test or
group per defect, each with the defect it pins in its docstring. Defects whose natural
home is another file are tested there (the retention race in test_daemon.py, the agent
stop in test_agents.py, the superseded lease in test_leases.py)."""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

import pytest

from oibus import Client, ValidationError

NOT_JSON: list[tuple[str, Any, str]] = [
    ("nan", math.nan, "nan is not a JSON number"),
    ("inf", math.inf, "inf is not a JSON number"),
    ("-inf", -math.inf, "-inf is not a JSON number"),
    ("bytes", b"raw", "bytes is not a JSON value"),
    ("set", {1, 2}, "set is not a JSON value"),
    ("frozenset", frozenset({1}), "frozenset is not a JSON value"),
    ("naive datetime", datetime.datetime(2026, 1, 1), "datetime is not a JSON value"),
    ("decimal nan", decimal.Decimal("NaN"), "Decimal is not a JSON value"),
    ("decimal", decimal.Decimal("1.5"), "Decimal is not a JSON value"),
    ("int key", {1: "a"}, "int key (JSON object keys are strings)"),
    ("huge int", 10**400, "integer out of the 64-bit range"),
    ("nested nan", {"a": [1, {"b": math.nan}]}, "nan is not a JSON number"),
]


@pytest.mark.parametrize(
    ("value", "why"), [(v, w) for _, v, w in NOT_JSON], ids=[n for n, _, _ in NOT_JSON]
)
def test_values_that_are_not_json_are_refused_not_converted(
    client: Client, value: Any, why: str
) -> None:
    """15.5: NaN and inf became null, bytes base64 text, sets lists, datetimes and
    Decimals strings. Each is refused with the field named, and nothing is written."""
    intent = client.create_intent("t", state={"keep": 1})
    before = client.get_events(intent.id)
    calls = [
        ("state", lambda: client.update_state(intent.id, intent.version, {"v": value})),
        (
            "patches[0]",
            lambda: client.patch_state(
                intent.id, intent.version, [{"op": "set", "path": "/v", "value": value}]
            ),
        ),
        ("payload", lambda: client.log_event(intent.id, "comment", {"v": value})),
        ("state", lambda: client.create_intent("u", state={"v": value})),
    ]
    for name, call in calls:
        with pytest.raises(ValidationError, match=why.replace("(", r"\(").replace(")", r"\)")) as e:
            call()
        assert name.split("[")[0] in (e.value.field or ""), (name, e.value.field)
    after = client.get_intent(intent.id)
    assert (after.version, after.state) == (intent.version, {"keep": 1})
    assert client.get_events(intent.id) == before
    assert [i.title for i in client.list_intents(limit=10)] == ["t"]


def test_plain_json_still_round_trips(client: Client) -> None:
    """The refusals above leave every plain JSON value alone, tuples (arrays) and the
    64-bit integer range included."""
    value = {"f": 1.5, "i": -(2**63), "u": 2**63 - 1, "t": (1, "x"), "n": None, "b": True}
    intent = client.create_intent("t", state=value)
    assert intent.state == {**value, "t": [1, "x"]}


def test_messages_say_what_is_wrong(client: Client) -> None:
    """15.8: an integer beyond what JSON readers parse was reported as "not JSON, or
    nests deeper than 64 levels", and a payload nested too deep as "must be a JSON
    object"."""
    intent = client.create_intent("t")
    with pytest.raises(ValidationError, match="integer out of the 64-bit range"):
        client.update_state(intent.id, intent.version, {"big": 10**400})
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(70):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(ValidationError, match="nests deeper than 64 levels"):
        client.log_event(intent.id, "comment", deep)
    with pytest.raises(ValidationError, match="nests deeper than 64 levels"):
        client.update_state(intent.id, intent.version, {"deep": deep})
