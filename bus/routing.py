"""Which of an agent's handlers an event calls. Pure: the agent runtime
(``oibus.sdk.agents``) reads events from its consumer group and asks this module.

An agent sees the events of the intents it is assigned to (bus pointers carry the
intent's assignees) and, for a coordinator, the completion of its portfolios. Work (the
assignment handler) starts when the intent is ready for it:

- ``agent_assigned`` naming this agent (the intent may still be blocked: then the work
  waits for the unblocking);
- ``status_changed`` from ``blocked`` to ``active`` (its dependencies completed);
- ``retry_dispatched`` (the daemon hands a due retry back, with the attempt number and
  the last error).

Whether the intent is still open and still this agent's is checked by the runtime when
the work starts, against the intent as stored then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

HandlerKind = Literal[
    "assignment",
    "retry",
    "complete",
    "state_change",
    "status_change",
    "event",
    "lease_available",
    "lease_expired",
    "all_complete",
]
LEASE_ENDED = frozenset({"lease_released", "lease_expired", "lease_revoked"})


class HandlerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a decorator recorded on a method: its kind and its filter (state keys for
    ``state_change``, an event type for ``event``, a scope for ``lease_available``)."""

    kind: HandlerKind
    keys: tuple[str, ...] | None = None
    event_type: str | None = None
    scope: str | None = None


class Work(msgspec.Struct, frozen=True, kw_only=True):
    """A reason to run the assignment (or retry) handler on an intent."""

    reason: Literal["assigned", "unblocked", "retry"]
    attempt: int = 1
    last_error: dict[str, Any] | None = None


def move_of(payload: Mapping[str, Any], hint: str | None) -> tuple[Any, Any]:
    """A status_changed's (from, to): from its payload, or from the bus entry's hint when
    the payload was not fetched."""
    if "to" in payload:
        return payload.get("from"), payload.get("to")
    if hint and ">" in hint:
        start, _, end = hint.partition(">")
        return start, end
    return None, None


def work_for(
    me: str,
    event_type: str,
    payload: Mapping[str, Any],
    agents: Sequence[str],
    portfolio_id: str | None,
    hint: str | None = None,
) -> Work | None:
    if portfolio_id is not None:
        return None
    if event_type == "agent_assigned":
        return Work(reason="assigned") if payload.get("agent_id", hint) == me else None
    if me not in agents:
        return None
    if event_type == "status_changed":
        if move_of(payload, hint) == ("blocked", "active"):
            return Work(reason="unblocked")
        return None
    if event_type == "retry_dispatched":
        attempt = payload.get("attempt_number")
        error = payload.get("last_error")
        return Work(
            reason="retry",
            attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
            last_error=error if isinstance(error, dict) else None,
        )
    return None


def changed_keys(payload: Mapping[str, Any]) -> set[str]:
    """Top-level state keys a ``state_patched`` event touched (from its ops' paths)."""
    keys: set[str] = set()
    for op in payload.get("patches") or ():
        path = op.get("path") if isinstance(op, Mapping) else None
        if isinstance(path, str):
            top = path.lstrip("/").split("/", 1)[0]
            keys.add(top.replace("~1", "/").replace("~0", "~"))
    return keys


def observers(
    me: str,
    specs: Sequence[HandlerSpec],
    event_type: str,
    payload: Mapping[str, Any],
    agents: Sequence[str],
    portfolio_id: str | None,
    hint: str | None = None,
    table: Mapping[str, Sequence[int]] | None = None,
) -> list[int]:
    """Indexes into ``specs`` of the non-work handlers this event calls. With ``table``
    (``route_table`` of the same specs) only the specs its type can call are judged."""
    candidates = range(len(specs)) if table is None else table.get(event_type, ())
    if portfolio_id is not None:
        done = event_type == "portfolio_status_changed" and payload.get("to") == "completed"
        return [n for n in candidates if done and specs[n].kind == "all_complete"]
    if me not in agents or not candidates:
        return []
    hits: list[int] = []
    for n in candidates:
        spec = specs[n]
        kind = spec.kind
        if kind == "event":
            hit = spec.event_type == event_type
        elif kind == "status_change":
            hit = event_type == "status_changed"
        elif kind == "complete":
            hit = event_type == "status_changed" and move_of(payload, hint)[1] == "completed"
        elif kind == "state_change":
            hit = event_type == "state_patched" and (
                spec.keys is None or bool(changed_keys(payload) & set(spec.keys))
            )
        elif kind == "lease_expired":
            hit = event_type == "lease_expired"
        elif kind == "lease_available":
            hit = event_type in LEASE_ENDED and payload.get("scope") == spec.scope
        else:
            hit = False
        if hit:
            hits.append(n)
    return hits


WORK_TYPES = frozenset({"agent_assigned", "status_changed", "retry_dispatched"})


def payload_types(specs: Sequence[HandlerSpec], works: bool) -> frozenset[str]:
    """The event types whose payloads the handlers need (the rest are routed on the bus
    entry's hint): a handler that is given the event gets it whole."""
    types: set[str] = {"retry_dispatched"} if works else set()
    for spec in specs:
        if spec.kind == "complete":
            continue  # routed on the hint; its handler reads the intent
        types |= relevant_types([spec], False)
    return frozenset(types)


def relevant_types(specs: Sequence[HandlerSpec], works: bool) -> frozenset[str]:
    """Every event type that can call one of these handlers: an agent's consumer skips the
    rest on the bus entry alone, without fetching the event."""
    types: set[str] = set(WORK_TYPES) if works else set()
    for spec in specs:
        if spec.kind in ("complete", "status_change"):
            types.add("status_changed")
        elif spec.kind == "state_change":
            types.add("state_patched")
        elif spec.kind == "event" and spec.event_type is not None:
            types.add(spec.event_type)
        elif spec.kind == "lease_expired":
            types.add("lease_expired")
        elif spec.kind == "lease_available":
            types |= LEASE_ENDED
        elif spec.kind == "all_complete":
            types.add("portfolio_status_changed")
    return frozenset(types)


def route_table(specs: Sequence[HandlerSpec]) -> dict[str, tuple[int, ...]]:
    """Per event type, the indexes of the specs it can call (``relevant_types`` of each),
    in spec order: an agent judges each event against these alone, not against every
    handler it has (the scan showed in profiles of an agent draining events)."""
    table: dict[str, list[int]] = {}
    for n, spec in enumerate(specs):
        for event_type in relevant_types([spec], False):
            table.setdefault(event_type, []).append(n)
    return {event_type: tuple(found) for event_type, found in table.items()}
