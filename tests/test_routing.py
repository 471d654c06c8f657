"""Which handlers an event calls: the per-type route table judges exactly as a scan of
every handler does."""

from __future__ import annotations

import itertools
from typing import Any

from oibus.bus.routing import HandlerSpec, observers, route_table

SPECS = [
    HandlerSpec(kind="event", event_type="note"),
    HandlerSpec(kind="status_change"),
    HandlerSpec(kind="complete"),
    HandlerSpec(kind="state_change", keys=("plan",)),
    HandlerSpec(kind="state_change"),
    HandlerSpec(kind="lease_expired"),
    HandlerSpec(kind="lease_available", scope="draft"),
    HandlerSpec(kind="all_complete"),
    HandlerSpec(kind="event", event_type="status_changed"),
    HandlerSpec(kind="event"),  # no type: calls nothing
]
TYPES = [
    "note",
    "status_changed",
    "state_patched",
    "lease_expired",
    "lease_released",
    "lease_revoked",
    "portfolio_status_changed",
    "other",
]
PAYLOADS: list[dict[str, Any]] = [
    {},
    {"from": "active", "to": "completed"},
    {"to": "completed"},
    {"patches": [{"path": "/plan/0"}]},
    {"patches": [{"path": "/other"}]},
    {"scope": "draft"},
    {"scope": "elsewhere"},
]


def test_route_table_calls_what_a_scan_calls() -> None:
    for size in (1, 3, len(SPECS)):
        for specs in itertools.combinations(SPECS, size):
            table = route_table(specs)
            for event_type, payload, agents, portfolio, hint in itertools.product(
                TYPES,
                PAYLOADS,
                [("me",), ("other",)],
                [None, "p1"],
                [None, "active>completed"],
            ):
                args = ("me", specs, event_type, payload, agents, portfolio, hint)
                assert observers(*args, table) == observers(*args), (specs, args)


def test_route_table_lists_each_type_in_spec_order() -> None:
    table = route_table(SPECS)
    assert table["note"] == (0,)
    assert table["status_changed"] == (1, 2, 8)
    assert table["lease_released"] == (6,)
    assert "other" not in table
