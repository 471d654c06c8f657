"""The intent lifecycle (RFC-0001, RFC-0002, and RFC-0026's suspension).

``lua/includes/statuses.lua`` enforces the same table; a test checks they agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class IntentStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    BLOCKED = "blocked"
    SUSPENDED_AWAITING_INPUT = "suspended_awaiting_input"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


S = IntentStatus

TRANSITIONS: Final[dict[IntentStatus, frozenset[IntentStatus]]] = {
    S.DRAFT: frozenset({S.ACTIVE, S.BLOCKED, S.ABANDONED}),
    S.ACTIVE: frozenset({S.BLOCKED, S.SUSPENDED_AWAITING_INPUT, S.COMPLETED, S.ABANDONED}),
    S.BLOCKED: frozenset({S.ACTIVE, S.ABANDONED}),
    S.SUSPENDED_AWAITING_INPUT: frozenset({S.ACTIVE, S.BLOCKED, S.ABANDONED}),
    S.COMPLETED: frozenset(),
    S.ABANDONED: frozenset(),
}

TERMINAL: Final = frozenset({S.COMPLETED, S.ABANDONED})
INITIAL: Final = frozenset({S.DRAFT, S.ACTIVE})
"""Statuses an intent may be created in (``blocked`` comes from unmet dependencies)."""


def can_transition(from_status: IntentStatus, to_status: IntentStatus) -> bool:
    return to_status in TRANSITIONS[from_status]
