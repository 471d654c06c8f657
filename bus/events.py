"""Event types: every type the seeds and RFC-0001..0010 name, plus free-form custom ones.

``Event.event_type`` stays a plain ``str`` so that reading a type this SDK does not know
never raises; ``EventType`` is a ``StrEnum``, so ``event.event_type == EventType.COMMENT``
works either way.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EventType(StrEnum):
    # RFC-0001 core
    INTENT_CREATED = "intent_created"
    STATE_PATCHED = "state_patched"
    STATUS_CHANGED = "status_changed"
    AGENT_ASSIGNED = "agent_assigned"
    AGENT_UNASSIGNED = "agent_unassigned"
    COMMENT = "comment"
    # RFC-0002 graphs
    DEPENDENCY_ADDED = "dependency_added"
    DEPENDENCY_REMOVED = "dependency_removed"
    DEPENDENCY_FAILED = "dependency_failed"
    # RFC-0003 leasing and governance
    LEASE_ACQUIRED = "lease_acquired"
    LEASE_RENEWED = "lease_renewed"
    LEASE_RELEASED = "lease_released"
    LEASE_EXPIRED = "lease_expired"
    LEASE_REVOKED = "lease_revoked"
    ARBITRATION_REQUESTED = "arbitration_requested"
    ARBITRATION_RESOLVED = "arbitration_resolved"
    DECISION_RECORDED = "decision_recorded"
    DELEGATION_CREATED = "delegation_created"
    DELEGATION_REVOKED = "delegation_revoked"
    # RFC-0005 attachments
    ATTACHMENT_ADDED = "attachment_added"
    ATTACHMENT_DELETED = "attachment_deleted"
    # RFC-0006 subscriptions
    SUBSCRIPTION_CREATED = "subscription_created"
    SUBSCRIPTION_REMOVED = "subscription_removed"
    # RFC-0004/0007 portfolios
    PORTFOLIO_CREATED = "portfolio_created"
    PORTFOLIO_MEMBER_ADDED = "added_to_portfolio"
    PORTFOLIO_MEMBER_REMOVED = "removed_from_portfolio"
    PORTFOLIO_STATUS_CHANGED = "portfolio_status_changed"
    PORTFOLIO_MEMBER_SUSPENDED = "portfolio.member_suspended"
    PORTFOLIO_MEMBER_RESUMED = "portfolio.member_resumed"
    # RFC-0008 LLM integration, tool calls and streams
    LLM_REQUEST_STARTED = "llm_request_started"
    LLM_REQUEST_COMPLETED = "llm_request_completed"
    LLM_REQUEST_FAILED = "llm_request_failed"
    LLM_STREAM_STARTED = "llm_stream_started"
    LLM_STREAM_COMPLETED = "llm_stream_completed"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    STREAM_STARTED = "stream_started"
    STREAM_CHUNK = "stream_chunk"
    STREAM_COMPLETED = "stream_completed"
    STREAM_CANCELLED = "stream_cancelled"
    # RFC-0009 costs
    COST_RECORDED = "cost_recorded"
    BUDGET_ALERT = "budget_alert"
    BUDGET_EXCEEDED = "budget_exceeded"
    # RFC-0010 retries
    RETRY_POLICY_SET = "retry_policy_set"
    FAILURE_RECORDED = "failure_recorded"
    RETRY_SCHEDULED = "retry_scheduled"
    RETRY_DISPATCHED = "retry_dispatched"
    RETRIES_EXHAUSTED = "retries_exhausted"
    FALLBACK_TRIGGERED = "fallback_triggered"


E = EventType

RESERVED: Final = frozenset(
    {
        E.INTENT_CREATED,
        E.STATE_PATCHED,
        E.STATUS_CHANGED,
        E.AGENT_ASSIGNED,
        E.AGENT_UNASSIGNED,
        E.LEASE_ACQUIRED,
        E.LEASE_RENEWED,
        E.LEASE_RELEASED,
        E.LEASE_EXPIRED,
        E.LEASE_REVOKED,
        E.ARBITRATION_REQUESTED,
        E.ARBITRATION_RESOLVED,
        E.DECISION_RECORDED,
        E.DELEGATION_CREATED,
        E.DELEGATION_REVOKED,
        E.ATTACHMENT_ADDED,
        E.ATTACHMENT_DELETED,
        E.COST_RECORDED,
        E.BUDGET_ALERT,
        E.BUDGET_EXCEEDED,
        E.RETRY_POLICY_SET,
        E.FAILURE_RECORDED,
        E.RETRY_SCHEDULED,
        E.RETRY_DISPATCHED,
        E.RETRIES_EXHAUSTED,
        E.FALLBACK_TRIGGERED,
        E.DEPENDENCY_ADDED,
        E.DEPENDENCY_REMOVED,
        E.DEPENDENCY_FAILED,
        E.SUBSCRIPTION_CREATED,
        E.SUBSCRIPTION_REMOVED,
        E.PORTFOLIO_CREATED,
        E.PORTFOLIO_MEMBER_ADDED,
        E.PORTFOLIO_MEMBER_REMOVED,
        E.PORTFOLIO_STATUS_CHANGED,
        E.PORTFOLIO_MEMBER_SUSPENDED,
        E.PORTFOLIO_MEMBER_RESUMED,
    }
)
"""Types only oibus's scripts record; ``log_event`` refuses them (no forged audit records).
Mirrors ``lua/includes/event_types.lua``."""
