"""LLM, tool-call and stream observability (RFC-0008): the payloads the logging calls
append, their checks, and the cost of a request's tokens. Pure: no I/O.

Every call appends one typed event through ``log_event``'s script, so an observation is
an ordinary event: sequenced, on the bus, readable with ``get_events(event_type=...)``.
The payloads are the structs below; a field that was not given is left out of the JSON
(``payload.get(...)`` reads ``None`` for it), which keeps per-chunk events small.

Ids (``tool_id``, ``request_id``, ``stream_id``) are free text of at most 256 bytes, as
providers make them (``call_abc``, ``toolu_01…``); when the caller gives none a UUID is
made, and the call returns it in ``Observation.id`` so the later events can name it.

**Cost from usage.** ``log_llm_request_completed`` with ``prompt_price_per_1k`` and/or
``completion_price_per_1k`` records a ``tokens`` cost (RFC-0009) next to the event:
``prompt_tokens x prompt_price / 1000 + completion_tokens x completion_price / 1000``,
computed exactly in ``Decimal`` and rounded once, half to even, to the six decimal places
costs keep. A price needs its token count (a price with no tokens to apply it to is a
ValidationError); a side without a price costs nothing.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Context, Decimal
from typing import Any, ClassVar, Final, NamedTuple

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_json, check_text
from oibus.bus.codec import decode_event
from oibus.bus.costs import CostRecord, amount_of, decimal_of, micros_of
from oibus.bus.errors import ValidationError
from oibus.bus.events import EventType
from oibus.bus.models import Event
from oibus.bus.ops import Call

__all__ = [
    "KINDS",
    "Kind",
    "LLMRequestPayload",
    "Observation",
    "Payload",
    "StreamPayload",
    "ToolCallPayload",
    "cost_metadata",
    "logged_event",
    "observation_payload",
    "priced",
    "token_cost",
]

REF_BYTES: Final = 256
"""Largest tool, request or stream id (and provider, model, tool name)."""
COUNT_MAX: Final = 10**15
"""Largest token or chunk count: JSON integers beyond 2^53 would not survive every reader."""
TOOLS_MAX: Final = 1024
"""Most tool names one request may list as available."""
_EXACT = Context(prec=60)

Duration = int | float


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the observability events carry. ``REF`` names the field holding the id the
    event is about: it is made up (a UUID) when the caller gives none."""

    REF: ClassVar[str]

    @property
    def ref(self) -> str:
        return str(getattr(self, self.REF))

    def body(self) -> dict[str, Any]:
        """The JSON object logged: fields left at their default are left out."""
        return dict(msgspec.to_builtins(self))


class ToolCallPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``tool_call_started``, ``tool_call_completed`` and ``tool_call_failed``."""

    REF: ClassVar[str] = "tool_id"

    tool_name: str
    tool_id: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None = None
    duration_ms: Duration | None = None
    provider: str | None = None
    model: str | None = None
    parent_request_id: str | None = None
    metadata: dict[str, Any] | None = None


class LLMRequestPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``llm_request_started``, ``llm_request_completed`` and ``llm_request_failed``.
    ``cost``, ``cost_unit`` and ``cost_id`` are set when a price turned the usage into a
    cost record (``cost_id`` is that record's id)."""

    REF: ClassVar[str] = "request_id"

    request_id: str
    provider: str
    model: str
    messages_count: int | None = None
    tools_available: list[str] | None = None
    stream: bool | None = None
    temperature: float | int | None = None
    max_tokens: int | None = None
    response_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    duration_ms: Duration | None = None
    error: str | None = None
    cost: float | int | None = None
    cost_unit: str | None = None
    cost_id: str | None = None
    metadata: dict[str, Any] | None = None


class StreamPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``stream_started``, ``stream_chunk``, ``stream_completed`` and
    ``stream_cancelled``. ``request_id`` links a stream to its ``llm_request_*`` events."""

    REF: ClassVar[str] = "stream_id"

    stream_id: str
    provider: str | None = None
    model: str | None = None
    request_id: str | None = None
    chunk_index: int | None = None
    token_count: int | None = None
    chunks_received: int | None = None
    tokens_streamed: int | None = None
    duration_ms: Duration | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """What an observability call wrote. ``id`` is the tool call's, request's or stream's
    id (the one given, or the one generated for it): pass it to the calls that follow.
    ``event`` is the appended event, equal to what ``get_events`` reads back; ``cost``
    the record a priced ``log_llm_request_completed`` made."""

    id: str
    event: Event
    cost: CostRecord | None = None


# -- field checks ---------------------------------------------------------------------------
# Each takes a value that is not None and the field's name, and returns what is stored.
def _text(value: object, field: str) -> str:
    return check_text(value, field, REF_BYTES)


def _long_text(value: object, field: str) -> str:
    return check_text(value, field, limits.TEXT_BYTES)


def _content(value: object, field: str) -> str:
    return check_text(value, field, limits.PAYLOAD_BYTES, required=False)


def _count(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise ValidationError(f"{field} must be a whole number from 0 to {COUNT_MAX}", field=field)
    return value


def _duration(value: object, field: str) -> Duration:
    """Milliseconds as measured (``perf_counter`` differences are floats), kept to the
    microsecond."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= COUNT_MAX
    ):
        raise ValidationError(f"{field} must be a number of milliseconds from 0 up", field=field)
    return value if isinstance(value, int) else round(value, 3)


def _json(value: Any, field: str) -> Any:
    """Any JSON value; refused here, with its own field name, rather than as ``payload``."""
    check_json(value, field, limits.PAYLOAD_BYTES)
    return value


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a mapping", field=field)
    return dict(_json(dict(value), field))


def _names(value: object, field: str) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(f"{field} must be a list of names", field=field)
    if len(value) > TOOLS_MAX:
        raise ValidationError(f"{field} lists more than {TOOLS_MAX} names", field=field)
    return [check_text(name, field, REF_BYTES) for name in value]


def _objects(value: object, field: str) -> list[dict[str, Any]]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(f"{field} must be a list of mappings", field=field)
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            raise ValidationError(f"{field} must be a list of mappings", field=field)
        out.append(dict(item))
    return list(_json(out, field))


def _number(value: object, field: str) -> float | int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or abs(value) > COUNT_MAX
    ):
        raise ValidationError(f"{field} must be a finite number", field=field)
    return value


def _flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field} must be True or False", field=field)
    return value


_CHECKS: Final[Mapping[str, Callable[[object, str], Any]]] = {
    **dict.fromkeys(
        (
            "tool_name",
            "tool_id",
            "request_id",
            "stream_id",
            "parent_request_id",
            "provider",
            "model",
            "finish_reason",
        ),
        _text,
    ),
    **dict.fromkeys(("error", "reason"), _long_text),
    **dict.fromkeys(
        (
            "messages_count",
            "max_tokens",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "chunk_index",
            "token_count",
            "chunks_received",
            "tokens_streamed",
        ),
        _count,
    ),
    "response_content": _content,
    "duration_ms": _duration,
    "result": _json,
    "arguments": _object,
    "metadata": _object,
    "tools_available": _names,
    "tool_calls": _objects,
    "temperature": _number,
    "stream": _flag,
}
"""Every field an observability call takes, and how its value is checked: one rule per
field name, whichever event carries it."""


# -- the events -----------------------------------------------------------------------------
class Kind(NamedTuple):
    """One observability event: the payload it carries and the fields its call must be
    given (the rest may be left out)."""

    payload: type[Payload]
    required: tuple[str, ...] = ()


KINDS: Final[Mapping[EventType, Kind]] = {
    EventType.TOOL_CALL_STARTED: Kind(ToolCallPayload, ("tool_name",)),
    EventType.TOOL_CALL_COMPLETED: Kind(ToolCallPayload, ("tool_name",)),
    EventType.TOOL_CALL_FAILED: Kind(ToolCallPayload, ("tool_name",)),
    EventType.LLM_REQUEST_STARTED: Kind(LLMRequestPayload, ("provider", "model")),
    EventType.LLM_REQUEST_COMPLETED: Kind(LLMRequestPayload, ("provider", "model")),
    EventType.LLM_REQUEST_FAILED: Kind(LLMRequestPayload, ("provider", "model")),
    EventType.STREAM_STARTED: Kind(StreamPayload, ("provider", "model")),
    EventType.STREAM_CHUNK: Kind(StreamPayload, ("stream_id", "chunk_index")),
    EventType.STREAM_COMPLETED: Kind(StreamPayload, ("stream_id",)),
    EventType.STREAM_CANCELLED: Kind(StreamPayload, ("stream_id",)),
}


def observation_payload(event_type: EventType, fields: Mapping[str, object]) -> Payload:
    """The checked payload of an observability event from its call's arguments: a
    required field given as None is refused; the id the event is about (``REF``) is
    generated when not given; tool calls always carry their ``arguments`` (``{}``); an
    LLM request's ``total_tokens`` defaults to prompt + completion when both are known
    (some providers report no total)."""
    kind = KINDS[event_type]
    ref = kind.payload.REF
    values: dict[str, Any] = {}
    for field, value in fields.items():
        if value is not None:
            values[field] = _CHECKS[field](value, field)
        elif field in kind.required:
            raise ValidationError(f"{field} is required", field=field)
    values.setdefault(ref, str(uuid.uuid4()))
    if kind.payload is ToolCallPayload:
        values.setdefault("arguments", {})
    if kind.payload is LLMRequestPayload and values.get("total_tokens") is None:
        prompt, completion = values.get("prompt_tokens"), values.get("completion_tokens")
        if prompt is not None and completion is not None:
            values["total_tokens"] = prompt + completion
    return kind.payload(**values)


def token_cost(
    payload: LLMRequestPayload, prompt_price_per_1k: object, completion_price_per_1k: object
) -> Decimal | None:
    """The exact cost of the payload's tokens at the prices (``None`` without a price)."""
    cost = None
    for tokens, price, field in (
        (payload.prompt_tokens, prompt_price_per_1k, "prompt"),
        (payload.completion_tokens, completion_price_per_1k, "completion"),
    ):
        if price is None:
            continue
        exact = decimal_of(price, f"{field}_price_per_1k")
        if tokens is None:
            raise ValidationError(
                f"{field}_price_per_1k needs {field}_tokens to price", field=f"{field}_tokens"
            )
        part = _EXACT.divide(_EXACT.multiply(Decimal(tokens), exact), Decimal(1000))
        cost = part if cost is None else _EXACT.add(cost, part)
    if cost is not None:
        micros_of(cost, "cost")  # refuse a cost record_cost would refuse, before any write
    return cost


def priced(payload: LLMRequestPayload, cost: Decimal, unit: str, cost_id: str) -> dict[str, Any]:
    """The payload as logged with the cost it was charged: the amount as the cost record
    stores it (six decimals), so the event and the record agree to the last digit."""
    out = payload.body()
    out.update(cost=amount_of(micros_of(cost, "cost")), cost_unit=unit, cost_id=cost_id)
    return out


def cost_metadata(
    payload: LLMRequestPayload, prompt_price_per_1k: object, completion_price_per_1k: object
) -> dict[str, Any]:
    """What a token cost record carries so it can be traced to its request and re-priced."""
    meta: dict[str, Any] = {"model": payload.model, "request_id": payload.request_id}
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if getattr(payload, name) is not None:
            meta[name] = getattr(payload, name)
    for name, price in (
        ("prompt_price_per_1k", prompt_price_per_1k),
        ("completion_price_per_1k", completion_price_per_1k),
    ):
        if price is not None:
            meta[name] = str(decimal_of(price, name))  # text: a price may need 7+ decimals
    return meta


def logged_event(call: Call, reply: list[Any]) -> Event:
    """The event a ``log_event`` call appended, from its arguments and the reply
    ``{entry id, seq, created_at µs}``; decoded like a read, so both give equal events."""
    intent_id, event_type, payload_text, actor = call.args
    entry_id, seq, at = reply
    fields = {"s": str(seq), "t": event_type, "a": actor, "p": payload_text, "at": str(at)}
    return decode_event(intent_id, str(entry_id), fields)
