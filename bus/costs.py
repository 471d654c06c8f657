"""Costs and budgets (RFC-0009): the records, the call that records a cost, and the
decoders of what the scripts store. Pure: no I/O.

**Cost types.** ``cost_type`` is one of ``tokens``, ``api_call``, ``compute`` and
``custom`` (``CostType``), as RFC-0009 lists them; anything else is refused. Free-form
types are not allowed: use ``custom`` and say what it is in ``metadata``, so that
``by_type`` always means the same four things.

**Amounts** are non-negative ``int``, ``float`` or ``Decimal`` values of at most
``AMOUNT_MAX`` (10^9) units, kept to six decimal places (rounded half to even; a float is
read as its shortest ``repr``, so ``0.1 + 0.2`` is stored as 0.3). They travel, are stored
and are summed as integer micro-units (amount x 1,000,000) with ``HINCRBY``, so totals
never drift from the sum of the records. ``CostRecord.amount`` and the summary's amounts
are ``int`` when whole and otherwise the nearest ``float``; ``amount_micros`` and
``total_micros`` are exact. All of an intent's costs together stay below ``TOTAL_MAX``
units (a cost that would pass it is refused with PayloadTooLargeError).

**Units** are 1-32 characters of ``A-Z a-z 0-9 _ . / -`` (``USD``, ``cents``, ``tokens``,
``seconds``), compared exactly (``usd`` is not ``USD``). ``total``, ``by_type``,
``by_agent`` and ``by_provider`` add amounts whatever their unit, as RFC-0009's summary
does; ``by_unit`` keeps the units apart (use it when an intent mixes units).

**Budgets** come from the intent's ``constraints`` and are enforced by ``record_cost``'s
script, atomically with the write, so concurrent agents can never overshoot them:

- ``max_cost``: a limit on the total;
- ``budget``: an object with ``max_total``, ``max_per_agent`` (each agent's own total),
  ``max_per_call`` (one record), ``alert_threshold_percent`` (a whole percent 1-100 of
  the total limit, or a list of up to 16) and ``unit``. RFC-0009's names
  ``max_total_cents``, ``max_per_agent_cents``, ``max_per_call_cents`` are accepted too
  (not together with the plain name of the same limit) and make the unit ``cents``.
  ``budget`` may also be a bare number, meaning ``{"max_total": n}``.

Every limit is in **one unit**: ``budget.unit`` if given, else ``cents`` when a
``*_cents`` name is used, else ``USD``. Only costs recorded in that unit count against
the budget; costs in other units (tokens, seconds) are recorded and summed but never
limited. With both ``max_cost`` and ``budget.max_total``, the smaller one applies.

A cost that would take a total past its limit (reaching it exactly is allowed), or one
over ``max_per_call``, raises BudgetExceededError and records nothing at all (no record,
no total, no event): ``details`` hold ``limit`` (``max_total``, ``max_per_agent`` or
``max_per_call``), ``unit``, ``max``, ``amount`` and ``spent`` as exact decimal text.
When a recorded cost brings the total in the budget unit to a threshold percent of the
total limit, a ``budget_alert`` event (``threshold_percent``, ``unit``, ``limit``,
``total``, ``cost_id``) is appended, once per threshold per intent however the costs
arrive (the summary hash remembers the thresholds that fired: ``alerts_fired``).
Alert thresholds without a total limit are ignored. A budget that cannot be read (a
negative or non-numeric limit, a bad unit) **fails closed**: every ``record_cost`` on the
intent raises ValidationError naming the ``constraints.`` field, rather than letting
spending run unlimited. ``budget_exceeded`` is not appended: a refusal writes nothing,
so refused retries cannot flood the log.

Costs do not change an intent's version, and completed or abandoned intents still take
costs (they were spent). Keys: ``Keyspace.costs`` (stream of records, oldest first; the
entry id is the paging cursor) and ``Keyspace.cost_summary`` (hash of running totals; the
layout is in ``lua/record_cost.lua``), so a summary is one ``HGETALL``, never a scan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from typing import Any, Final

import msgspec

from oibus.bus.checks import check_json, check_text
from oibus.bus.codec import to_datetime
from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.ops import Call

__all__ = [
    "AMOUNT_MAX",
    "METADATA_BYTES",
    "TOTAL_MAX",
    "CostRecord",
    "CostSummary",
    "CostType",
    "decimal_of",
    "decode_cost",
    "decode_summary",
    "micros_of",
    "record_cost_call",
    "recorded",
]

MICROS: Final = 1_000_000
_EXACT = Context(prec=60)
AMOUNT_MAX_MICROS: Final = 10**15
"""Largest single amount, in micro-units (mirrors ``lua/includes/cost_limits.lua``)."""
TOTAL_MAX_MICROS: Final = 9 * 10**15
"""Largest sum of an intent's costs, in micro-units: below 2^53, so Lua holds it exactly."""
METADATA_BYTES: Final = 16_384
"""Largest metadata JSON text of one record."""
THRESHOLDS: Final = 16
"""Most alert thresholds a budget may list."""
AMOUNT_MAX: Final = AMOUNT_MAX_MICROS // MICROS
TOTAL_MAX: Final = TOTAL_MAX_MICROS // MICROS

_UNIT = re.compile(r"[A-Za-z0-9_./-]{1,32}")


class CostType(StrEnum):
    TOKENS = "tokens"
    API_CALL = "api_call"
    COMPUTE = "compute"
    CUSTOM = "custom"


_COST_TYPES: Final = frozenset(CostType)

Amount = int | float


def amount_of(micros: int) -> Amount:
    """Micro-units as the amount a caller reads: an ``int`` when whole, else the nearest
    float (``int / int`` is correctly rounded)."""
    whole, frac = divmod(micros, MICROS)
    return whole if frac == 0 else micros / MICROS


class CostRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One cost of an intent (RFC-0009). ``amount`` is as stored (six decimal places);
    ``amount_micros`` is the same value exactly, in millionths of ``unit``."""

    id: str
    intent_id: str
    agent_id: str
    cost_type: str
    amount: Amount
    amount_micros: int
    unit: str
    provider: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    recorded_at: datetime


class CostSummary(msgspec.Struct, frozen=True, kw_only=True):
    """An intent's running totals, read from one hash the recording script keeps exact.
    ``total`` and the ``by_*`` maps other than ``by_unit`` add amounts whatever their unit
    (as RFC-0009's summary does). ``alerts_fired``: the budget alert thresholds (percents)
    that have fired. Item access works as on a dict: ``summary["by_type"]``."""

    intent_id: str
    count: int = 0
    total: Amount = 0
    total_micros: int = 0
    by_type: dict[str, Amount] = msgspec.field(default_factory=dict)
    by_agent: dict[str, Amount] = msgspec.field(default_factory=dict)
    by_provider: dict[str, Amount] = msgspec.field(default_factory=dict)
    by_unit: dict[str, Amount] = msgspec.field(default_factory=dict)
    alerts_fired: list[int] = msgspec.field(default_factory=list)

    # item access, as on the reference SDK's dict (``summary["total"]``; ``dict(summary)``)
    def __getitem__(self, key: str) -> Any:
        if key not in self.__struct_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__struct_fields__ else default

    def keys(self) -> tuple[str, ...]:
        return self.__struct_fields__

    def __contains__(self, key: object) -> bool:
        return key in self.__struct_fields__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__struct_fields__)


def decimal_of(amount: object, field: str = "amount") -> Decimal:
    """A caller's non-negative finite number, exactly (bools are not numbers here; a float
    is read as its shortest ``repr``, so ``0.1`` is one tenth, not the binary value)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal):
        raise ValidationError(f"{field} must be a number", field=field)
    if isinstance(amount, float) and not math.isfinite(amount):
        raise ValidationError(f"{field} must be finite", field=field)
    if isinstance(amount, Decimal) and not amount.is_finite():
        raise ValidationError(f"{field} must be finite", field=field)
    exact = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount)
    if exact < 0:
        raise ValidationError(f"{field} must not be negative", field=field)
    return exact


def micros_of(amount: object, field: str = "amount") -> int:
    """A caller's amount as integer micro-units, refusing what is not a finite number from
    0 to ``AMOUNT_MAX``."""
    exact = decimal_of(amount, field)
    if exact > AMOUNT_MAX:
        raise ValidationError(f"{field} must be at most {AMOUNT_MAX}", field=field)
    # scaleb is exact whatever the caller's decimal context; round once, half to even
    return int(exact.scaleb(6, _EXACT).to_integral_value(ROUND_HALF_EVEN, _EXACT))


def _cost_type(value: object) -> str:
    if isinstance(value, str) and value in _COST_TYPES:
        return str(value)  # a CostType member travels as its plain value
    raise ValidationError(f"cost_type must be one of {', '.join(CostType)}", field="cost_type")


def _unit(value: object) -> str:
    if not isinstance(value, str) or _UNIT.fullmatch(value) is None:
        raise ValidationError("unit must be 1-32 characters of A-Z a-z 0-9 _ . / -", field="unit")
    return value


def _provider(value: object) -> str:
    if value is None:
        return ""
    return check_text(value, "provider", 128)


def _metadata(value: object) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ValidationError("metadata must be a mapping", field="metadata")
    return check_json(dict(value), "metadata", METADATA_BYTES)


def record_cost_call(
    ks: Keyspace,
    actor: str,
    cost_id: str,
    intent_id: str,
    cost_type: object,
    amount: object,
    unit: object,
    provider: object,
    metadata: object,
) -> Call:
    """The ``record_cost`` script call; ``recorded`` turns its reply into the record."""
    check_id(intent_id)
    check_id(cost_id, "cost_id")
    ik, _, ek, bk = ks.intent_keys(intent_id)
    return Call(
        "record_cost",
        [ik, ek, bk, ks.costs(intent_id), ks.cost_summary(intent_id)],
        [
            intent_id,
            cost_id,
            _cost_type(cost_type),
            str(micros_of(amount)),
            _unit(unit),
            _provider(provider),
            _metadata(metadata),
            actor,
        ],
    )


_metadata_decoder = msgspec.json.Decoder(dict[str, Any])


def decode_cost(intent_id: str, fields: Mapping[str, str]) -> CostRecord:
    """A record from its costs-stream entry (``lua/record_cost.lua`` writes them)."""
    micros = int(fields.get("m") or 0)
    try:
        metadata = _metadata_decoder.decode(fields.get("md") or "{}")
    except (msgspec.DecodeError, RecursionError):
        metadata = {"raw": fields.get("md")}
    return CostRecord(
        id=fields.get("id", ""),
        intent_id=intent_id,
        agent_id=fields.get("a", ""),
        cost_type=fields.get("t", ""),
        amount=amount_of(micros),
        amount_micros=micros,
        unit=fields.get("u", ""),
        provider=fields.get("p") or None,
        metadata=metadata,
        recorded_at=to_datetime(fields.get("at") or 0),
    )


def recorded(call: Call, reply: list[Any]) -> CostRecord:
    """The record a ``record_cost`` call made: its arguments, and the time from the reply
    ``{entry id, recorded_at µs}``. Decoded like a read, so both give equal records."""
    intent_id, cost_id, cost_type, micros, unit, provider, metadata, actor = call.args
    fields = {"id": cost_id, "a": actor, "t": cost_type, "m": micros, "u": unit}
    fields.update(p=provider, md=metadata, at=str(reply[1]))
    return decode_cost(intent_id, fields)


_GROUPS: Final = {"t": "by_type", "a": "by_agent", "p": "by_provider", "u": "by_unit"}


def decode_summary(intent_id: str, flat: Mapping[str, str]) -> CostSummary:
    """The summary from the hash ``HGETALL`` returns (layout in ``lua/record_cost.lua``)."""
    groups: dict[str, dict[str, Amount]] = {name: {} for name in _GROUPS.values()}
    fired = []
    for field, value in flat.items():
        kind, _, name = field.partition(":")
        if kind in _GROUPS:
            groups[_GROUPS[kind]][name] = amount_of(int(value))
        elif kind == "f" and name.isdigit():
            fired.append(int(name))
    total = int(flat.get("total") or 0)
    return CostSummary(
        intent_id=intent_id,
        count=int(flat.get("n") or 0),
        total=amount_of(total),
        total_micros=total,
        alerts_fired=sorted(fired),
        **groups,
    )


def budget_total(constraints: Mapping[str, Any]) -> tuple[Decimal | None, str]:
    """The total limit an intent's constraints set, and its unit, read as
    ``record_cost``'s script reads them (the smaller of ``max_cost`` and
    ``budget.max_total``); for showing spending against it. ``None`` when there is no
    total limit or it cannot be read (the script then refuses every cost: it is
    enforced there, not here)."""
    budget = constraints.get("budget")
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        budget = {"max_total": budget}
    if not isinstance(budget, Mapping):
        budget = {}
    cents = any(str(k).endswith("_cents") for k in budget)
    unit = budget.get("unit")
    unit = unit if isinstance(unit, str) and unit else ("cents" if cents else "USD")
    limits: list[Decimal] = []
    for raw in (
        constraints.get("max_cost"),
        budget.get("max_total"),
        budget.get("max_total_cents"),
    ):
        if raw is None:
            continue
        try:
            value = decimal_of(raw, "budget")
        except ValidationError:
            return None, unit
        limits.append(value)
    return (min(limits) if limits else None), unit
