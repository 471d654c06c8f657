"""The public surface: what ``oibus`` exports, and the sync client generated from the async
one (same methods, same signatures, no drift)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import oibus
from oibus import AsyncClient, Client
from oibus.bus import errors

ROOT = Path(__file__).resolve().parent.parent


def test_all_names_resolve_and_every_error_is_exported() -> None:
    for name in oibus.__all__:
        assert hasattr(oibus, name), name
    for name in errors.__all__:
        assert name in oibus.__all__, name
        assert issubclass(getattr(errors, name), errors.OpenIntentError)


def test_sync_twin_is_generated_from_the_async_source() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_sync_and_async_clients_have_the_same_methods() -> None:
    sync, asyn = _public(Client), _public(AsyncClient)
    asyn["close"] = asyn.pop("aclose")
    assert set(sync) == set(asyn)
    for name in sync:
        if name in ("lease", "events", "tail", "subscribe_sse", "batch"):
            # a context manager (`with` / `async with`) or a stream (`for` / `async for`)
            assert sync[name].parameters == asyn[name].parameters
            continue
        assert str(sync[name]) == str(asyn[name]), name
        assert inspect.iscoroutinefunction(
            getattr(AsyncClient, name if name != "close" else "aclose")
        )


def test_seed_method_names_exist() -> None:
    for name in [
        "create_intent",
        "get_intent",
        "list_intents",
        "update_state",
        "patch_state",
        "set_status",
        "log_event",
        "get_events",
        "assign_agent",
        "unassign_agent",
        "discover",
        "acquire_lease",
        "release_lease",
        "renew_lease",
        "get_leases",
        "lease",
        "request_arbitration",
        "record_decision",
        "add_attachment",
        "get_attachments",
        "delete_attachment",
        "record_cost",
        "get_costs",
        "get_cost_summary",
        "set_retry_policy",
        "get_retry_policy",
        "record_failure",
        "get_failures",
        "create_child_intent",
        "add_dependency",
        "remove_dependency",
        "get_children",
        "get_descendants",
        "get_ancestors",
        "get_dependencies",
        "get_dependents",
        "get_ready_intents",
        "get_blocked_intents",
        "get_intent_graph",
        "get_aggregate_status",
    ]:
        assert callable(getattr(Client, name)), name
        assert callable(getattr(AsyncClient, name)), name


def test_errors_follow_the_reference_hierarchy() -> None:
    assert issubclass(errors.LeaseConflictError, errors.ConflictError)
    assert issubclass(errors.PatchError, errors.ValidationError)
    assert issubclass(errors.BusConnectionError, errors.BusError)
    assert not issubclass(errors.BusConnectionError, ConnectionError)
