"""Small helpers the capability tests share (imported as ``helpers``: pytest puts this
folder on sys.path)."""

from __future__ import annotations

import time
from typing import Any

from oibus import Client
from oibus.bus.ops import Call, Ops


def event_types(client: Client, intent_id: str) -> list[str]:
    """The types of an intent's whole log, oldest first."""
    return [e.event_type for e in client.get_events(intent_id, limit=1000)]


def create_call(ops: Ops, intent_id: str, **options: Any) -> Call:
    """A raw create_intent call with every option at its default unless given (for tests
    that tamper with what the script receives)."""
    spec: dict[str, Any] = {
        "title": "t",
        "description": None,
        "constraints": None,
        "state": None,
        "created_by": None,
        "status": "active",
        "confidence": None,
        "parent_intent_id": None,
        "depends_on": None,
    }
    spec.update(options)
    return ops.create_intent(intent_id, **spec)


def wait_until(predicate: object, within: float) -> bool:
    """Poll ``predicate`` until it is true or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False
