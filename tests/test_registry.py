"""The script registry against the scripts' own headers, and the tables the Lua and Python
sides both keep (limits, lifecycle, reserved event types, error codes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import create_call

from oibus.bus import limits
from oibus.bus.codes import CODES
from oibus.bus.errors import ConfigurationError
from oibus.bus.events import RESERVED, EventType
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Ops
from oibus.bus.registry import Registry, default_registry, expand
from oibus.bus.statuses import TERMINAL, TRANSITIONS, IntentStatus

LUA = Path(__file__).resolve().parent.parent / "lua"


def _lua(name: str) -> str:
    return (LUA / "includes" / f"{name}.lua").read_text()


def test_registry_is_the_directory_listing() -> None:
    names = {p.stem for p in LUA.glob("*.lua")}
    assert set(default_registry()) == names
    assert {
        "create_intent",
        "patch_state",
        "update_state",
        "set_status",
        "log_event",
        "assign_agent",
        "unassign_agent",
        "get_intent",
    } <= names


def test_every_script_keeps_the_header_contract() -> None:
    for script in default_registry().values():
        header = script.header
        raw = (LUA / f"{script.name}.lua").read_text()
        assert header.purpose
        assert header.keys, script.name
        assert set(header.errors) <= set(CODES), script.name
        own = set(re.findall(r'fail\("([A-Z_]+)"', raw))
        reachable = set(re.findall(r'fail\("([A-Z_]+)"', script.source))
        assert own <= set(header.errors) <= reachable, script.name
        for event in header.events:
            assert event in set(EventType) or script.name == "log_event", script.name
        emitted = {e for e in re.findall(r'emit\([^)]*?"([a-z_]+)"', raw) if not e.endswith("_")}
        assert emitted <= set(header.events), script.name
        assert "@include" not in script.source.replace("-- @include", "")
        assert not re.search(r"^-- @include", script.source, re.MULTILINE)


def test_ops_send_the_key_counts_the_headers_declare() -> None:
    ops = Ops(Keyspace("k", 4), "actor")
    reg = default_registry()
    calls = [
        create_call(ops, "i"),
        create_call(ops, "p.i", parent_intent_id="p"),
        ops.get_intent("i"),
        ops.patch_state("i", 1, '[["set","/a","1"]]'),
        ops.update_state("i", 1, '[["a","1"]]'),
        ops.acquire_lease("i", "a.b", "l1", 1),
        ops.renew_lease("i", "l1", 1),
        ops.release_lease("i", "l1"),
        ops.revoke_lease("i", "l1", "why"),
        ops.expire_lease("i", "a", "l1"),
        ops.get_leases("i"),
        ops.set_status("i", 1, "completed", None),
        ops.set_status("i.x", 1, "completed", None, related=["i.y", "i.z"]),
        ops.set_dependency("add", "i.x", "i.y", 1),
        create_call(ops, "p.j", parent_intent_id="p", depends_on=["p.a", "p.b"]),
        ops.log_event("i", "comment", {}),
        ops.assign_agent("i", "a"),
        ops.unassign_agent("i", "a"),
    ]
    for call in calls:
        header = reg[call.script].header
        if header.variadic_keys:
            assert len(call.keys) >= len(header.keys) - 1, call.script
        else:
            assert len(call.keys) == len(header.keys), call.script
        assert len(call.args) == len(header.argv), call.script
    status_calls = [c for c in calls if c.script == "set_status"]
    assert [len(c.keys) for c in status_calls] == [17, 17 + 2 * 3]
    assert len(calls[-4].keys) == 19


def test_includes_expand_once_and_cycles_are_named() -> None:
    out = expand('-- @include "a"\n-- @include "a"\n', {"a": "local A = 1"}, ("s",))
    assert out.count("local A = 1") == 1
    with pytest.raises(ConfigurationError, match="s -> a -> b -> a"):
        expand('-- @include "a"', {"a": '-- @include "b"', "b": '-- @include "a"'}, ("s",))
    with pytest.raises(ConfigurationError, match="nope"):
        expand('-- @include "nope"', {}, ("s",))


def test_header_problems_are_reported(tmp_path: Path) -> None:
    (tmp_path / "includes").mkdir()
    (tmp_path / "bad.lua").write_text("return 1\n")
    with pytest.raises(ConfigurationError, match="header"):
        Registry.from_directory(tmp_path)


def test_limits_match() -> None:
    text = _lua("limits")
    lua = {m[0]: int(m[1]) for m in re.findall(r"local LIMIT_(\w+) = (\d+)", text)}
    py = {k: getattr(limits, k) for k in lua}
    assert lua == py


def test_lifecycle_tables_match() -> None:
    text = _lua("statuses")
    statuses = re.search(r"local STATUSES = \{(.*?)\}", text)
    assert statuses is not None
    order = re.findall(r'"(\w+)"', statuses.group(1))
    assert order == [str(s) for s in IntentStatus]
    table = {}
    for name, body in re.findall(r"^  (\w+) = \{(.*?)\},$", text, re.MULTILINE):
        table[name] = set(re.findall(r"(\w+) = true", body))
    assert table == {str(k): {str(s) for s in v} for k, v in TRANSITIONS.items()}
    terminal = re.search(r"local TERMINAL = \{(.*?)\}", _lua("terminal"))
    assert terminal is not None
    assert set(re.findall(r"(\w+) = true", terminal.group(1))) == {str(s) for s in TERMINAL}


def test_reserved_event_types_match() -> None:
    text = _lua("event_types")
    names = set(re.findall(r"(?<![\w.\"])(\w+) = true", text))
    names |= set(re.findall(r'\["([\w.]+)"\] = true', text))
    assert names == {str(t) for t in RESERVED}
