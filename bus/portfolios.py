"""Portfolios (RFC-0004/0007): the records, the calls that change a portfolio, and the
decoders of what the scripts store. Pure: no I/O. ``docs/portfolios.md`` has the design.

**Where things live.** A portfolio id partitions like an intent id, so a portfolio's
keys (record, roster, priority index, event log) share one slot, and its members may be
anywhere. Membership is decided in the portfolio's slot (``add_portfolio_member``,
``remove_portfolio_member``) and mirrored on the member (``link_portfolio`` writes the
intent's ``pf`` field, which status-changing scripts report with their moves).

**Aggregates without reading members.** The record keeps counts by member status;
``sync_portfolio`` adjusts them from moves (``oibus.bus.moves``), applying a member's move
only when its version is newer than the one last applied, so replays change nothing.

**Lifecycle.** ``active`` → ``completed`` | ``abandoned``, both terminal. Members change
only while active. The governance policy decides when a portfolio completes by itself:
``auto_complete_threshold`` (a percentage of completed members, in (0, 100]) or, with
``require_all_completed``, 100; with ``allow_partial_completion`` abandoned members leave
the base of that percentage. Completing or abandoning by hand is always the caller's call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_json, check_text
from oibus.bus.codec import STORED_ERRORS, json_text, to_datetime, unreadable
from oibus.bus.costs import CostSummary, decode_summary
from oibus.bus.errors import NotFoundError, ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.moves import Move
from oibus.bus.ops import Call
from oibus.bus.statuses import IntentStatus

__all__ = [
    "MemberRole",
    "Portfolio",
    "PortfolioAggregate",
    "PortfolioCosts",
    "PortfolioMember",
    "PortfolioStatus",
]

PRIORITY_MAX: Final = 1_000_000_000


class PortfolioStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    ABANDONED = "abandoned"


PORTFOLIO_TRANSITIONS: Final[dict[PortfolioStatus, frozenset[PortfolioStatus]]] = {
    PortfolioStatus.ACTIVE: frozenset({PortfolioStatus.COMPLETED, PortfolioStatus.ABANDONED}),
    PortfolioStatus.COMPLETED: frozenset(),
    PortfolioStatus.ABANDONED: frozenset(),
}
"""Mirrors ``lua/includes/portfolio.lua``; a test keeps the two equal."""


class MemberRole(StrEnum):
    PRIMARY = "primary"
    MEMBER = "member"
    DEPENDENCY = "dependency"


class PortfolioMember(msgspec.Struct, frozen=True, kw_only=True):
    """One member intent: its role and priority, and its status and version as last
    applied to the portfolio's counts (version 0: as read when it was added, not yet
    confirmed from the member's own slot)."""

    intent_id: str
    role: str
    priority: int
    status: str
    version: int
    added_at: datetime


class PortfolioAggregate(msgspec.Struct, frozen=True, kw_only=True):
    """RFC-0007's aggregate: ``completed`` when every member is, ``failed`` when any is
    abandoned, else ``in_progress`` (also for an empty portfolio). ``by_status`` counts
    members in every intent status (zeros included, as a graph's aggregate does);
    ``completion_percentage`` is completed members over all, rounded down (a whole
    percent, as in RFC-0004's example)."""

    status: str
    total: int
    by_status: dict[str, int]
    completion_percentage: int
    has_suspended_members: bool
    suspended_member_count: int


class Portfolio(msgspec.Struct, frozen=True, kw_only=True):
    """A portfolio. ``governance_policy`` is the caller's object verbatim (its
    ``shared_constraints`` are what members share); ``intents`` are filled by
    ``get_portfolio`` (highest priority first) and empty in listings."""

    id: str
    name: str
    description: str | None = None
    created_by: str
    status: str
    governance_policy: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    version: int
    primary_intent_id: str | None = None
    aggregate_status: PortfolioAggregate
    intents: list[PortfolioMember] = msgspec.field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @property
    def shared_constraints(self) -> dict[str, Any]:
        value = self.governance_policy.get("shared_constraints")
        return dict(value) if isinstance(value, Mapping) else {}


class PortfolioCosts(msgspec.Struct, frozen=True, kw_only=True):
    """RFC-0009's portfolio-level costs: the sum of the members' cost summaries (exact, in
    micro-units), and each member's own total."""

    portfolio_id: str
    summary: CostSummary
    by_intent: dict[str, int | float]


# -- arguments --------------------------------------------------------------------------
def check_status(value: object) -> PortfolioStatus:
    try:
        return PortfolioStatus(str(value))
    except ValueError:
        raise ValidationError(
            f"unknown portfolio status {value!r}; one of {', '.join(PortfolioStatus)}",
            field="status",
        ) from None


def check_role(value: object) -> str:
    if not isinstance(value, str) or value not in set(MemberRole):
        raise ValidationError(f"role must be one of {', '.join(MemberRole)}", field="role")
    return str(value)


def check_priority(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > PRIORITY_MAX:
        raise ValidationError(
            f"priority must be an integer from -{PRIORITY_MAX} to {PRIORITY_MAX}", field="priority"
        )
    return value


def _object(value: object, field: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a mapping", field=field)
    return check_json(dict(value), field, limits.PORTFOLIO_JSON_BYTES)


def check_governance(policy: object) -> str:
    """The policy as JSON text; its known fields must have their RFC-0004 types."""
    text = _object(policy, "governance_policy")
    if not isinstance(policy, Mapping):
        return text
    for flag in ("require_all_completed", "allow_partial_completion"):
        if policy.get(flag) is not None and not isinstance(policy.get(flag), bool):
            raise ValidationError(
                f"{flag} must be true or false", field=f"governance_policy.{flag}"
            )
    threshold = policy.get("auto_complete_threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0 < threshold <= 100
    ):
        raise ValidationError(
            "auto_complete_threshold must be a percentage above 0 and at most 100",
            field="governance_policy.auto_complete_threshold",
        )
    shared = policy.get("shared_constraints")
    if shared is not None and not isinstance(shared, Mapping):
        raise ValidationError(
            "shared_constraints must be a mapping", field="governance_policy.shared_constraints"
        )
    return text


def _status_indexes(ks: Keyspace, pid: str) -> list[str]:
    """One index per portfolio status, in lifecycle order: every script that may change
    a portfolio's status (auto-completion included) moves its entry."""
    return [ks.index_portfolios(ks.partition(pid), s) for s in PortfolioStatus]


def _record_keys(ks: Keyspace, pid: str) -> list[str]:
    """record, roster, priority index, events, bus, status indexes: what a membership
    change touches."""
    return [
        ks.portfolio(pid),
        ks.portfolio_roster(pid),
        ks.portfolio_members(pid),
        ks.portfolio_events(pid),
        ks.bus(ks.partition(pid)),
        *_status_indexes(ks, pid),
    ]


def create_call(
    ks: Keyspace,
    actor: str,
    portfolio_id: str,
    name: object,
    description: object,
    governance_policy: object,
    metadata: object,
    created_by: object,
) -> Call:
    pid = check_id(portfolio_id, "portfolio_id")
    check_text(name, "name", limits.TITLE_BYTES, line=True)
    if description is not None:
        check_text(description, "description", limits.TEXT_BYTES, required=False)
    owner = check_text(created_by, "created_by", 256)
    return Call(
        "create_portfolio",
        [ks.portfolio(pid), ks.portfolio_events(pid), ks.bus(ks.partition(pid)),
         ks.index_portfolios(ks.partition(pid)), *_status_indexes(ks, pid)],
        [
            pid,
            str(name),
            str(description or ""),
            owner,
            check_governance(governance_policy),
            _object(metadata, "metadata"),
            actor,
        ],
    )  # fmt: skip


def add_member_call(
    ks: Keyspace,
    actor: str,
    portfolio_id: str,
    intent_id: str,
    role: str,
    priority: int,
    status: str,
) -> Call:
    """Step 1 of adding: ``status`` is the member's as just read (provisional until the
    sync after step 2 confirms it with a version)."""
    pid = check_id(portfolio_id, "portfolio_id")
    return Call(
        "add_portfolio_member",
        _record_keys(ks, pid),
        [pid, intent_id, role, str(priority), status, actor],
    )


def remove_member_call(
    ks: Keyspace, actor: str, portfolio_id: str, intent_id: str, token: int | None = None
) -> Call:
    """Step 1 of removing; ``token`` limits it to that membership (an undo's)."""
    pid = check_id(portfolio_id, "portfolio_id")
    return Call(
        "remove_portfolio_member",
        _record_keys(ks, pid),
        [pid, check_id(intent_id), actor, "" if token is None else str(token)],
    )


def link_call(
    ks: Keyspace, actor: str, intent_id: str, portfolio_id: str, token: int, role: str | None
) -> Call:
    """Step 2 (the member's slot): ``role`` for an add, ``None`` for a removal."""
    ik, _, ek, bk = ks.intent_keys(check_id(intent_id))
    op = "remove" if role is None else "add"
    return Call(
        "link_portfolio",
        [ik, ek, bk],
        [intent_id, check_id(portfolio_id, "portfolio_id"), str(token), op, role or "", actor],
    )


def status_call(
    ks: Keyspace, actor: str, portfolio_id: str, status: object, reason: str | None
) -> Call:
    pid = check_id(portfolio_id, "portfolio_id")
    target = check_status(status)
    if reason is not None:
        check_text(reason, "reason", limits.TEXT_BYTES, required=False)
    return Call(
        "set_portfolio_status",
        [
            ks.portfolio(pid),
            ks.portfolio_events(pid),
            ks.bus(ks.partition(pid)),
            *_status_indexes(ks, pid),
        ],
        [pid, str(target), reason or "", actor],
    )


def sync_calls(ks: Keyspace, actor: str, moves: Iterable[Move]) -> list[Call]:
    """One ``sync_portfolio`` call per portfolio (and per ``BATCH`` moves) named by the
    moves; the order of moves is kept, so a member's later move comes later."""
    by_portfolio: dict[str, list[list[Any]]] = defaultdict(list)
    for move in moves:
        for pid in move.portfolios:
            by_portfolio[pid].append([move.intent_id, move.status, move.version])
    calls = []
    for pid, items in by_portfolio.items():
        keys = [
            ks.portfolio(pid),
            ks.portfolio_roster(pid),
            ks.portfolio_events(pid),
            ks.bus(ks.partition(pid)),
            *_status_indexes(ks, pid),
        ]
        for start in range(0, len(items), limits.BATCH):
            chunk = json_text(items[start : start + limits.BATCH], "moves")
            calls.append(Call("sync_portfolio", keys, [pid, chunk, actor]))
    return calls


REPAIRED_TYPES: Final = frozenset({"added_to_portfolio", "removed_from_portfolio"})


def repair_target(fields: Mapping[str, str]) -> tuple[str, str, int] | None:
    """What a portfolio bus entry asks a repair to finish: (portfolio id, event id,
    membership token), or None for an entry that is not a membership change."""
    if fields.get("k") != "portfolio" or fields.get("t") not in REPAIRED_TYPES:
        return None
    token = fields.get("s", "")
    if not token.isdigit() or not fields.get("e"):
        raise ValidationError("bus entry has no seq or event id", field="entry")
    return check_id(fields.get("i"), "portfolio_id"), fields["e"], int(token)


# -- decoding ---------------------------------------------------------------------------
def pairs(flat: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """A hash as a dict, from HGETALL's dict or a script's flat array."""
    if isinstance(flat, Mapping):
        return dict(flat)
    return dict(zip(flat[::2], flat[1::2], strict=True))


_object_decoder = msgspec.json.Decoder(dict[str, Any])


def aggregate(record: Mapping[str, str]) -> PortfolioAggregate:
    by_status = {str(name): int(record.get(f"c:{name}") or 0) for name in IntentStatus}
    total = int(record.get("total") or 0)
    done = by_status.get(IntentStatus.COMPLETED, 0)
    suspended = by_status.get(IntentStatus.SUSPENDED_AWAITING_INPUT, 0)
    if total and done == total:
        status = "completed"
    elif by_status.get(IntentStatus.ABANDONED, 0):
        status = "failed"
    else:
        status = "in_progress"
    return PortfolioAggregate(
        status=status,
        total=total,
        by_status=by_status,
        completion_percentage=done * 100 // total if total else 0,
        has_suspended_members=suspended > 0,
        suspended_member_count=suspended,
    )


def decode_member(intent_id: str, entry: str) -> PortfolioMember:
    """A roster entry (``lua/includes/portfolio.lua``: role, priority, status, version,
    added µs, token, tab-separated)."""
    role, priority, status, version, added, _token = entry.split("\t")
    return PortfolioMember(
        intent_id=intent_id,
        role=role,
        priority=int(priority),
        status=status,
        version=int(version),
        added_at=to_datetime(added),
    )


def decode_portfolio(
    portfolio_id: str,
    flat: Sequence[str] | Mapping[str, str] | None,
    roster: Mapping[str, str] | None = None,
) -> Portfolio:
    record = pairs(flat or {})
    if not record:
        raise NotFoundError(
            f"portfolio {portfolio_id} does not exist", resource="portfolio", id=portfolio_id
        )
    try:
        members = [decode_member(i, e) for i, e in (roster or {}).items()]
        members.sort(key=lambda m: (-m.priority, m.added_at, m.intent_id))
        return Portfolio(
            id=record["id"],
            name=record["name"],
            description=record.get("description"),
            created_by=record["created_by"],
            status=record["status"],
            governance_policy=_object_decoder.decode(record.get("gov") or "{}"),
            metadata=_object_decoder.decode(record.get("md") or "{}"),
            version=int(record["version"]),
            primary_intent_id=record.get("primary"),
            aggregate_status=aggregate(record),
            intents=members,
            created_at=to_datetime(record["created_us"]),
            updated_at=to_datetime(record["updated_us"]),
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"portfolio {portfolio_id}", exc) from exc


def decode_links(text: str | None) -> list[str]:
    """The intent's ``pf`` field: a JSON array of portfolio ids (absent: none)."""
    if not text:
        return []
    try:
        return msgspec.json.decode(text, type=list[str])
    except STORED_ERRORS as exc:
        raise unreadable("an intent's portfolio list", exc) from exc


def sum_costs(portfolio_id: str, summaries: Mapping[str, Mapping[str, str]]) -> PortfolioCosts:
    """Add the members' cost-summary hashes field by field (integer micro-units and
    counts; alert flags are per intent and not summed), then read the sum as one summary."""
    total: dict[str, int] = defaultdict(int)
    by_intent = {}
    for intent_id, flat in summaries.items():
        member = decode_summary(intent_id, flat)
        by_intent[intent_id] = member.total
        for field, value in flat.items():
            if not field.startswith("f:"):
                total[field] += int(value)
    summary = decode_summary(portfolio_id, {k: str(v) for k, v in total.items()})
    return PortfolioCosts(portfolio_id=portfolio_id, summary=summary, by_intent=by_intent)
