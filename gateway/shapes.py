"""oibus's records as the OpenIntent HTTP API spells them (``openintent`` 0.17.0's server
and SDK), so the reference SDK parses every answer.

Liberal in what is sent back where the SDK and its server disagree: both spellings where
they differ (``parent_intent_id`` and ``parent_id``; ``metadata`` and ``cost_metadata``;
snake and camel timestamps, which some SDK models read only in camel case), every
timestamp with an explicit UTC offset (the SDK parses them with ``fromisoformat``).

**Event types.** The SDK parses ``event_type`` into a closed enum and fails on a type it
lacks, for the whole list it was reading. oibus's own types that the enum lacks are sent
as their nearest reference type (``COMPAT_TYPES``) with the real one beside it in
``oibus_event_type``; filters (``?event_type=``) use the real types.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from oibus.bus.attachments import Attachment
from oibus.bus.costs import CostRecord, CostSummary
from oibus.bus.events import EventType
from oibus.bus.governance import ArbitrationRequest, DecisionRecord
from oibus.bus.graphs import AggregateStatus
from oibus.bus.models import Event, Intent, Lease
from oibus.bus.portfolios import Portfolio, PortfolioAggregate, PortfolioMember
from oibus.bus.retries import FailureRecord, RetryPolicy
from oibus.bus.subscriptions import Subscription

Json = dict[str, Any]

COMPAT_TYPES: Final[dict[str, str]] = {
    "lease_renewed": "lease_acquired",
    "lease_expired": "lease_released",
    "lease_revoked": "lease_released",
    "arbitration_resolved": "decision_recorded",
    "delegation_created": "task.delegated",
    "delegation_revoked": "grant.revoked",
    "portfolio_status_changed": "status_changed",
    "llm_stream_started": "stream_started",
    "llm_stream_completed": "stream_completed",
    "budget_alert": "governance.violation",
    "budget_exceeded": "governance.violation",
    "retry_scheduled": "task.retrying",
    "retry_dispatched": "task.retrying",
    "retries_exhausted": "task.failed",
    "fallback_triggered": "task.delegated",
}
"""oibus event types the reference SDK's enum lacks -> the reference type sent instead.
Any other type it lacks (a custom one, or one of oibus's with no near equivalent:
``dependency_failed``, ``attachment_deleted``, ``subscription_created`` ...) is sent as
``comment``."""


NOT_IN_REFERENCE: Final = frozenset(
    {
        "dependency_failed",
        "attachment_deleted",
        "subscription_created",
        "subscription_removed",
        "cost_recorded",
        "retry_policy_set",
        *COMPAT_TYPES,
    }
)
"""oibus's types that ``openintent`` 0.17.0's enum lacks (a test checks this against it)."""
REFERENCE_TYPES: Final = frozenset(t.value for t in EventType) - NOT_IN_REFERENCE


def ts(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def event_type_for_sdk(real: str) -> str:
    if real in REFERENCE_TYPES:
        return real
    return COMPAT_TYPES.get(real, "comment")


def intent_json(intent: Intent) -> Json:
    return {
        "id": intent.id,
        "title": intent.title,
        "description": intent.description,
        "created_by": intent.created_by,
        "status": intent.status,
        "constraints": intent.constraints,
        "state": intent.state,
        "confidence": intent.confidence if intent.confidence is not None else 0,
        "version": intent.version,
        "parent_intent_id": intent.parent_intent_id,
        "parent_id": intent.parent_intent_id,
        "depends_on": list(intent.depends_on),
        "assigned_agents": list(intent.assigned_agents),
        "governance_policy": None,
        "created_at": ts(intent.created_at),
        "updated_at": ts(intent.updated_at),
    }


def event_json(event: Event, entry: str | None = None) -> Json:
    shown = event_type_for_sdk(event.event_type)
    out: Json = {
        "id": event.id,
        "intent_id": event.intent_id,
        "event_type": shown,
        "actor": event.actor,
        "payload": event.payload,
        "created_at": ts(event.created_at),
        "sequence": event.seq,
    }
    if shown != event.event_type:
        out["oibus_event_type"] = event.event_type
    return out


def lease_json(lease: Lease) -> Json:
    return {
        "id": lease.id,
        "intent_id": lease.intent_id,
        "agent_id": lease.agent_id,
        "scope": lease.scope,
        "status": lease.status,
        "fencing_token": lease.fencing_token,
        "acquired_at": ts(lease.acquired_at),
        "created_at": ts(lease.acquired_at),
        "expires_at": ts(lease.expires_at),
        "released_at": ts(lease.ended_at),
    }


def aggregate_json(aggregate: AggregateStatus | PortfolioAggregate) -> Json:
    out: Json = {
        "total": aggregate.total,
        "by_status": dict(aggregate.by_status),
        "completion_percentage": aggregate.completion_percentage,
    }
    if isinstance(aggregate, PortfolioAggregate):
        out["status"] = aggregate.status
    return out


def cost_json(cost: CostRecord) -> Json:
    return {
        "id": cost.id,
        "intent_id": cost.intent_id,
        "agent_id": cost.agent_id,
        "cost_type": cost.cost_type,
        "amount": cost.amount,
        "unit": cost.unit,
        "provider": cost.provider,
        "metadata": cost.metadata,
        "cost_metadata": cost.metadata,
        "recorded_at": ts(cost.recorded_at),
        "recordedAt": ts(cost.recorded_at),
    }


def cost_summary_json(summary: CostSummary) -> Json:
    return {
        "total": summary.total,
        "count": summary.count,
        "by_type": dict(summary.by_type),
        "by_agent": dict(summary.by_agent),
        "by_provider": dict(summary.by_provider),
        "by_unit": dict(summary.by_unit),
    }


def attachment_json(attachment: Attachment) -> Json:
    return {
        "id": attachment.id,
        "intent_id": attachment.intent_id,
        "filename": attachment.filename,
        "mime_type": attachment.mime_type,
        "content_type": attachment.mime_type,
        "size": attachment.size,
        "storage_url": attachment.storage_url,
        "url": attachment.storage_url,
        "description": attachment.description,
        "metadata": attachment.metadata,
        "uploaded_by": attachment.uploaded_by,
        "created_by": attachment.uploaded_by,
        "created_at": ts(attachment.created_at),
        "createdAt": ts(attachment.created_at),
    }


def portfolio_json(portfolio: Portfolio) -> Json:
    out: Json = {
        "id": portfolio.id,
        "name": portfolio.name,
        "description": portfolio.description,
        "created_by": portfolio.created_by,
        "status": portfolio.status,
        "governance_policy": portfolio.governance_policy,
        "metadata": portfolio.metadata,
        "version": portfolio.version,
        "primary_intent_id": portfolio.primary_intent_id,
        "created_at": ts(portfolio.created_at),
        "updated_at": ts(portfolio.updated_at),
        "createdAt": ts(portfolio.created_at),
        "updatedAt": ts(portfolio.updated_at),
    }
    if portfolio.aggregate_status is not None:
        out["aggregate_status"] = aggregate_json(portfolio.aggregate_status)
    return out


def membership_json(portfolio_id: str, member: PortfolioMember) -> Json:
    return {
        "id": f"{portfolio_id}:{member.intent_id}",
        "portfolio_id": portfolio_id,
        "intent_id": member.intent_id,
        "role": member.role,
        "priority": member.priority,
        "added_at": ts(member.added_at),
    }


def subscription_json(subscription: Subscription) -> Json:
    out: Json = {
        "id": subscription.id,
        "intent_id": subscription.intent_id,
        "portfolio_id": subscription.portfolio_id,
        "subscriber_id": subscription.subscriber_id,
        "event_types": list(subscription.event_types or []),
        "webhook_url": subscription.webhook_url,
        "active": subscription.active,
        "expires_at": ts(subscription.expires_at),
        "expiresAt": ts(subscription.expires_at),
        "created_at": ts(subscription.created_at),
        "createdAt": ts(subscription.created_at),
    }
    if subscription.secret is not None:
        out["secret"] = subscription.secret  # shown once, on creation
    return out


def arbitration_json(request: ArbitrationRequest) -> Json:
    return {
        "id": request.id,
        "intent_id": request.intent_id,
        "requester_id": request.requestor,
        "requested_by": request.requestor,
        "reason": request.reason,
        "options": list(request.options),
        "context": request.context,
        "status": request.status,
        "resolution": request.resolution,
        "rationale": request.rationale,
        "resolved_by": request.resolved_by,
        "created_at": ts(request.created_at),
        "resolved_at": ts(request.resolved_at),
    }


def decision_json(decision: DecisionRecord) -> Json:
    return {
        "id": decision.id,
        "intent_id": decision.intent_id,
        "decision_maker_id": decision.decided_by,
        "decided_by": decision.decided_by,
        "decision_type": decision.decision_type or "decision",
        "outcome": decision.decision,
        "reasoning": decision.rationale,
        "rationale": decision.rationale,
        "evidence": list(decision.evidence),
        "context": decision.context,
        "created_at": ts(decision.created_at),
    }


def retry_policy_json(policy: RetryPolicy) -> Json:
    return {
        "id": f"{policy.intent_id}:retry-policy",
        "intent_id": policy.intent_id,
        "strategy": policy.strategy,
        "max_retries": policy.max_retries,
        "base_delay_ms": policy.base_delay_ms,
        "max_delay_ms": policy.max_delay_ms,
        "backoff_multiplier": policy.backoff_multiplier,
        "jitter": policy.jitter,
        "retryable_errors": list(policy.retryable_errors or []),
        "fallback_agent_id": policy.fallback_agent_id,
        "failure_threshold": policy.failure_threshold,
        "set_by": policy.set_by,
        "created_at": ts(policy.set_at),
        "updated_at": ts(policy.set_at),
        "createdAt": ts(policy.set_at),
        "updatedAt": ts(policy.set_at),
    }


def failure_json(failure: FailureRecord) -> Json:
    return {
        "id": failure.id,
        "intent_id": failure.intent_id,
        "agent_id": failure.agent_id,
        "attempt_number": failure.attempt_number,
        "error_code": failure.error_code,
        "error_type": failure.error_code,
        "error_message": failure.error_message,
        "retry_scheduled_at": ts(failure.retry_scheduled_at),
        "retryScheduledAt": ts(failure.retry_scheduled_at),
        "metadata": failure.metadata,
        "created_at": ts(failure.recorded_at),
        "createdAt": ts(failure.recorded_at),
    }
