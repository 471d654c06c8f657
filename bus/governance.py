"""Governance (RFC-0003): arbitration requests, decision records and delegation contracts.

The records the SDK returns, the calls that create and close them (validated here, then
again by the scripts) and the decoders of what the scripts store. Pure: no I/O.

- An **arbitration request** lives in the intent's ``ar`` hash, pending until one
  ``resolve_arbitration`` records the resolution; resolving again is a ConflictError.
- A **decision record** is appended to the intent's ``dr`` stream and never changes.
- A **delegation contract** is namespace-wide (``{ns}:dg``), with its own event log
  (``{ns}:dge``); it is in force until it expires (by the server's clock) or is revoked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_text
from oibus.bus.codec import STORED_ERRORS, json_text, to_datetime, to_micros, unreadable
from oibus.bus.errors import PayloadTooLargeError, ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.ops import Call

__all__ = [
    "ARBITRATIONS_PER_INTENT",
    "SCOPE_ITEMS",
    "ArbitrationRequest",
    "ArbitrationStatus",
    "DecisionRecord",
    "Delegation",
    "DelegationStatus",
]

ARBITRATIONS_PER_INTENT: Final = 1000
"""Arbitration requests one intent keeps (``GOV_ARBITRATIONS`` in lua/includes/gov_records.lua)."""
SCOPE_ITEMS: Final = 256
"""Entries of each list of a delegation's scope (``GOV_SCOPE_ITEMS``)."""
TIME_MAX_US: Final = 9_000_000_000_000_000
"""Latest expiry, in µs (year 2255): below 2**53, so Lua's numbers hold it exactly."""
ACTOR_BYTES: Final = 256

ArbitrationStatus = Literal["pending", "resolved"]
DelegationStatus = Literal["active", "expired", "revoked"]


class ArbitrationRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request for human or higher-authority arbitration on an intent. ``options`` are the
    choices put to the arbiter (RFC-0003: ``{"label": ..., "rationale": ...}`` objects, or
    any JSON values); ``resolution``, ``rationale``, ``resolved_by`` and ``resolved_at``
    are set once, when it is resolved."""

    id: str
    intent_id: str
    requestor: str
    reason: str
    options: list[Any] = msgspec.field(default_factory=list)
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    status: ArbitrationStatus
    resolution: str | None = None
    rationale: str | None = None
    resolved_by: str | None = None
    created_at: datetime
    resolved_at: datetime | None = None


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An immutable record of a consequential decision (RFC-0003). ``decided_by`` is who
    decided (by default the recording agent), ``recorded_by`` the agent that recorded it;
    ``evidence`` is a list (RFC-0003: ``{"source": ..., "summary": ...}`` objects).
    ``decision_type``, ``context`` and ``alternatives`` are the reference SDK's extras."""

    id: str
    intent_id: str
    decision: str
    rationale: str
    decided_by: str
    recorded_by: str
    evidence: list[Any] = msgspec.field(default_factory=list)
    decision_type: str | None = None
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    alternatives: list[Any] = msgspec.field(default_factory=list)
    created_at: datetime


class Delegation(msgspec.Struct, frozen=True, kw_only=True):
    """A delegation of authority from ``delegator`` to ``delegate`` (RFC-0003) over
    ``scope`` (``{"intents": [...], "actions": [...]}``) with ``constraints``. ``status``
    is as of the server's clock when it was read: an active contract past ``expires_at``
    reads as ``expired``. Revocation adds ``revoked_by``, ``revoke_reason``, ``revoked_at``."""

    id: str
    delegator: str
    delegate: str
    scope: dict[str, list[str]]
    constraints: dict[str, Any] = msgspec.field(default_factory=dict)
    status: DelegationStatus
    expires_at: datetime | None = None
    created_by: str
    created_at: datetime
    revoked_by: str | None = None
    revoke_reason: str | None = None
    revoked_at: datetime | None = None

    @property
    def in_force(self) -> bool:
        return self.status == "active"


# -- arguments -----------------------------------------------------------------------------
def _json_list(value: object, field: str) -> str:
    if value is None:
        return "[]"
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ValidationError(f"{field} must be a list", field=field)
    return json_text(list(value), field)


def _json_object(value: object, field: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a mapping", field=field)
    if not all(isinstance(k, str) for k in value):
        raise ValidationError(f"{field} keys must be strings", field=field)
    return json_text(dict(value), field)


def _payload(field: str, *texts: str) -> None:
    size = sum(len(t.encode()) for t in texts)
    if size > limits.PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"{field} is over {limits.PAYLOAD_BYTES} bytes",
            field=field,
            limit=limits.PAYLOAD_BYTES,
            size=size,
        )


def _optional(value: str | None, field: str, max_bytes: int) -> str:
    return "" if value is None else check_text(value, field, max_bytes)


def check_arbitration_status(status: object) -> ArbitrationStatus | None:
    if status is None:
        return None
    if status == "pending":
        return "pending"
    if status == "resolved":
        return "resolved"
    raise ValidationError("status must be pending or resolved (or None)", field="status")


def check_scope(scope: object) -> str:
    """``{"intents": [ids], "actions": [names]}``; either list may be left out or empty,
    not both. Returned as JSON text with both lists."""
    if not isinstance(scope, Mapping):
        raise ValidationError(
            'scope must be a mapping {"intents": [...], "actions": [...]}', field="scope"
        )
    extra = set(scope) - {"intents", "actions"}
    if extra:
        raise ValidationError(f"scope holds only intents and actions, not {extra}", field="scope")
    out: dict[str, list[str]] = {}
    for key in ("intents", "actions"):
        items = scope.get(key) or []
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise ValidationError(f"scope.{key} must be a list", field="scope")
        if len(items) > SCOPE_ITEMS:
            raise ValidationError(f"scope.{key} holds at most {SCOPE_ITEMS} entries", field="scope")
        for n, item in enumerate(items):
            if key == "intents":
                check_id(item, "scope")
            else:
                check_text(item, f"scope.actions[{n}]", 128)
        out[key] = list(items)
    if not out["intents"] and not out["actions"]:
        raise ValidationError("scope names no intents and no actions", field="scope")
    return json_text(out, "scope")


# -- calls ---------------------------------------------------------------------------------
def _intent_keys(ks: Keyspace, intent_id: str, record_key: str) -> list[str]:
    ik, _, ek, bk = ks.intent_keys(intent_id)
    return [ik, record_key, ek, bk]


def request_arbitration(
    ks: Keyspace,
    actor: str,
    intent_id: str,
    arbitration_id: str,
    reason: str,
    options: Sequence[Any] | None,
    context: Mapping[str, Any] | None,
) -> Call:
    check_id(intent_id)
    check_id(arbitration_id, "arbitration_id")
    check_text(reason, "reason", limits.TEXT_BYTES)
    options_text = _json_list(options, "options")
    context_text = _json_object(context, "context")
    _payload("options", options_text, context_text)
    return Call(
        "request_arbitration",
        _intent_keys(ks, intent_id, ks.arbitrations(intent_id)),
        [intent_id, arbitration_id, reason, options_text, context_text, actor],
    )


def resolve_arbitration(
    ks: Keyspace,
    actor: str,
    intent_id: str,
    arbitration_id: str,
    resolution: str,
    rationale: str | None,
) -> Call:
    check_id(intent_id)
    check_id(arbitration_id, "arbitration_id")
    check_text(resolution, "resolution", limits.TEXT_BYTES)
    return Call(
        "resolve_arbitration",
        _intent_keys(ks, intent_id, ks.arbitrations(intent_id)),
        [
            intent_id,
            arbitration_id,
            resolution,
            _optional(rationale, "rationale", limits.TEXT_BYTES),
            actor,
        ],
    )


def record_decision(
    ks: Keyspace,
    actor: str,
    intent_id: str,
    decision_id: str,
    *,
    decision: str,
    rationale: str,
    decided_by: str | None,
    evidence: Sequence[Any] | None,
    decision_type: str | None,
    context: Mapping[str, Any] | None,
    alternatives: Sequence[Any] | None,
) -> Call:
    check_id(intent_id)
    check_id(decision_id, "decision_id")
    check_text(decision, "decision", limits.TEXT_BYTES)
    check_text(rationale, "rationale", limits.TEXT_BYTES)
    decider = check_text(decided_by if decided_by is not None else actor, "decided_by", ACTOR_BYTES)
    dtype = _optional(decision_type, "decision_type", ACTOR_BYTES)
    evidence_text = _json_list(evidence, "evidence")
    context_text = _json_object(context, "context")
    alternatives_text = _json_list(alternatives, "alternatives")
    _payload("evidence", evidence_text, context_text, alternatives_text)
    return Call(
        "record_decision",
        _intent_keys(ks, intent_id, ks.decisions(intent_id)),
        [
            intent_id,
            decision_id,
            decision,
            rationale,
            decider,
            dtype,
            evidence_text,
            context_text,
            alternatives_text,
            actor,
        ],
    )


def create_delegation(
    ks: Keyspace,
    actor: str,
    delegation_id: str,
    *,
    delegate: str,
    scope: Mapping[str, Sequence[str]],
    constraints: Mapping[str, Any] | None,
    expires_at: datetime | None,
    delegator: str | None,
) -> Call:
    check_id(delegation_id, "delegation_id")
    giver = check_text(delegator if delegator is not None else actor, "delegator", ACTOR_BYTES)
    check_text(delegate, "delegate", ACTOR_BYTES)
    if giver == delegate:
        raise ValidationError("an agent cannot delegate to itself", field="delegate")
    scope_text = check_scope(scope)
    constraints_text = _json_object(constraints, "constraints")
    _payload("constraints", scope_text, constraints_text)
    expires = ""
    if expires_at is not None:
        micros = to_micros(expires_at, "expires_at")
        if micros >= TIME_MAX_US:
            raise ValidationError("expires_at must be before 2255", field="expires_at")
        expires = str(micros)
    return Call(
        "create_delegation",
        [ks.delegations, ks.delegation_events],
        [delegation_id, giver, delegate, scope_text, constraints_text, expires, actor],
    )


def revoke_delegation(ks: Keyspace, actor: str, delegation_id: str, reason: str) -> Call:
    check_id(delegation_id, "delegation_id")
    check_text(reason, "reason", limits.TEXT_BYTES)
    return Call(
        "revoke_delegation",
        [ks.delegations, ks.delegation_events],
        [delegation_id, reason, actor],
    )


# -- replies -------------------------------------------------------------------------------
class _ArbitrationWire(msgspec.Struct):
    id: str
    requestor: str
    reason: str
    options: list[Any]
    context: dict[str, Any]
    created_us: str
    status: ArbitrationStatus
    resolution: str | None = None
    rationale: str | None = None
    resolved_by: str | None = None
    resolved_us: str = ""


class _DecisionWire(msgspec.Struct):
    id: str
    decision: str
    rationale: str
    decided_by: str
    recorded_by: str
    decision_type: str | None
    evidence: list[Any]
    context: dict[str, Any]
    alternatives: list[Any]
    created_us: str


class _DelegationWire(msgspec.Struct):
    id: str
    delegator: str
    delegate: str
    scope: dict[str, list[str]]
    constraints: dict[str, Any]
    expires_us: str
    created_by: str
    created_us: str
    status: Literal["active", "revoked"]
    revoked_by: str | None = None
    reason: str | None = None
    revoked_us: str = ""


_arbitration_decoder = msgspec.json.Decoder(_ArbitrationWire)
_decision_decoder = msgspec.json.Decoder(_DecisionWire)
_delegation_decoder = msgspec.json.Decoder(_DelegationWire)


def decode_arbitration(text: str, intent_id: str) -> ArbitrationRequest:
    try:
        w = _arbitration_decoder.decode(text)
        return ArbitrationRequest(
            id=w.id,
            intent_id=intent_id,
            requestor=w.requestor,
            reason=w.reason,
            options=w.options,
            context=w.context,
            status=w.status,
            resolution=w.resolution,
            rationale=w.rationale,
            resolved_by=w.resolved_by,
            created_at=to_datetime(w.created_us),
            resolved_at=to_datetime(w.resolved_us) if w.resolved_us else None,
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"an arbitration request of {intent_id}", exc) from exc


def decode_decision(text: str, intent_id: str) -> DecisionRecord:
    try:
        w = _decision_decoder.decode(text)
        return DecisionRecord(
            id=w.id,
            intent_id=intent_id,
            decision=w.decision,
            rationale=w.rationale,
            decided_by=w.decided_by,
            recorded_by=w.recorded_by,
            evidence=w.evidence,
            decision_type=w.decision_type,
            context=w.context,
            alternatives=w.alternatives,
            created_at=to_datetime(w.created_us),
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"a decision record of {intent_id}", exc) from exc


def decode_delegation(text: str, now_us: int) -> Delegation:
    """A delegation from its stored JSON; ``now_us`` is the server's clock, which decides
    whether an active contract has expired."""
    try:
        w = _delegation_decoder.decode(text)
        expires = int(w.expires_us) if w.expires_us else None
        status: DelegationStatus = w.status
        if status == "active" and expires is not None and expires <= now_us:
            status = "expired"
        return Delegation(
            id=w.id,
            delegator=w.delegator,
            delegate=w.delegate,
            scope=w.scope,
            constraints=w.constraints,
            status=status,
            expires_at=to_datetime(expires) if expires is not None else None,
            created_by=w.created_by,
            created_at=to_datetime(w.created_us),
            revoked_by=w.revoked_by,
            revoke_reason=w.reason,
            revoked_at=to_datetime(w.revoked_us) if w.revoked_us else None,
        )
    except STORED_ERRORS as exc:
        raise unreadable("a delegation", exc) from exc


def server_micros(reply: Any) -> int:
    """``TIME``'s reply (seconds, microseconds; redis-py may have made them ints already)."""
    return int(reply[0]) * 1_000_000 + int(reply[1])
