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
from collections.abc import Mapping, Sequence
from decimal import Context, Decimal
from typing import Any, Final

import msgspec

from . import limits
from .checks import check_json, check_text
from .codec import decode_event
from .costs import CostRecord, amount_of, decimal_of, micros_of
from .errors import ValidationError
from .models import Event
from .ops import Call

__all__ = [
    "LLMRequestPayload",
    "Observation",
    "Payload",
    "StreamPayload",
    "ToolCallPayload",
    "cost_metadata",
    "llm_request_payload",
    "logged_event",
    "priced",
    "required",
    "stream_payload",
    "token_cost",
    "tool_call_payload",
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
    """What the observability events carry; ``ref`` is the id the event is about."""

    @property
    def ref(self) -> str:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """The JSON object logged: fields left at their default are left out."""
        return dict(msgspec.to_builtins(self))


class ToolCallPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``tool_call_started``, ``tool_call_completed`` and ``tool_call_failed``."""

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

    @property
    def ref(self) -> str:
        return self.tool_id


class LLMRequestPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``llm_request_started``, ``llm_request_completed`` and ``llm_request_failed``.
    ``cost``, ``cost_unit`` and ``cost_id`` are set when a price turned the usage into a
    cost record (``cost_id`` is that record's id)."""

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

    @property
    def ref(self) -> str:
        return self.request_id


class StreamPayload(Payload, frozen=True, kw_only=True, omit_defaults=True):
    """``stream_started``, ``stream_chunk``, ``stream_completed`` and
    ``stream_cancelled``. ``request_id`` links a stream to its ``llm_request_*`` events."""

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

    @property
    def ref(self) -> str:
        return self.stream_id


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """What an observability call wrote. ``id`` is the tool call's, request's or stream's
    id (the one given, or the one generated for it): pass it to the calls that follow.
    ``event`` is the appended event, equal to what ``get_events`` reads back; ``cost``
    the record a priced ``log_llm_request_completed`` made."""

    id: str
    event: Event
    cost: CostRecord | None = None


# -- argument checks ------------------------------------------------------------------------
def required(value: Any, field: str) -> Any:
    """For the arguments that are optional elsewhere but not here (an id that must name
    something already started, a chunk's index)."""
    if value is None:
        raise ValidationError(f"{field} is required", field=field)
    return value


def _ref(value: object, field: str) -> str:
    return str(uuid.uuid4()) if value is None else check_text(value, field, REF_BYTES)


def _text(value: object, field: str, max_bytes: int = REF_BYTES) -> str | None:
    return None if value is None else check_text(value, field, max_bytes)


def _count(value: object, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise ValidationError(f"{field} must be a whole number from 0 to {COUNT_MAX}", field=field)
    return value


def _duration(value: object) -> Duration | None:
    """Milliseconds as measured (``perf_counter`` differences are floats), kept to the
    microsecond."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= COUNT_MAX
    ):
        raise ValidationError(
            "duration_ms must be a number of milliseconds from 0 up", field="duration_ms"
        )
    return value if isinstance(value, int) else round(value, 3)


def _json(value: Any, field: str) -> Any:
    """Any JSON value; refused here, with its own field name, rather than as ``payload``."""
    check_json(value, field, limits.PAYLOAD_BYTES)
    return value


def _object(value: object, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field} must be a mapping", field=field)
    return dict(_json(dict(value), field))


def _names(value: object, field: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(f"{field} must be a list of names", field=field)
    if len(value) > TOOLS_MAX:
        raise ValidationError(f"{field} lists more than {TOOLS_MAX} names", field=field)
    return [check_text(name, field, REF_BYTES) for name in value]


def _objects(value: object, field: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(f"{field} must be a list of mappings", field=field)
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            raise ValidationError(f"{field} must be a list of mappings", field=field)
        out.append(dict(item))
    return list(_json(out, field))


def _number(value: object, field: str) -> float | int | None:
    if value is None:
        return None
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


# -- payloads -------------------------------------------------------------------------------
def tool_call_payload(
    *,
    tool_name: object,
    tool_id: object,
    arguments: object,
    result: Any = None,
    error: object = None,
    duration_ms: object = None,
    provider: object = None,
    model: object = None,
    parent_request_id: object = None,
    metadata: object = None,
) -> ToolCallPayload:
    return ToolCallPayload(
        tool_name=check_text(tool_name, "tool_name", REF_BYTES),
        tool_id=_ref(tool_id, "tool_id"),
        arguments=_object(arguments, "arguments") or {},
        result=_json(result, "result"),
        error=_text(error, "error", limits.TEXT_BYTES),
        duration_ms=_duration(duration_ms),
        provider=_text(provider, "provider"),
        model=_text(model, "model"),
        parent_request_id=_text(parent_request_id, "parent_request_id"),
        metadata=_object(metadata, "metadata"),
    )


def llm_request_payload(
    *,
    request_id: object,
    provider: object,
    model: object,
    messages_count: object = None,
    tools_available: object = None,
    stream: object = None,
    temperature: object = None,
    max_tokens: object = None,
    response_content: object = None,
    tool_calls: object = None,
    finish_reason: object = None,
    prompt_tokens: object = None,
    completion_tokens: object = None,
    total_tokens: object = None,
    duration_ms: object = None,
    error: object = None,
    metadata: object = None,
) -> LLMRequestPayload:
    """``total_tokens`` defaults to prompt + completion when both are known (some providers
    report no total)."""
    prompt = _count(prompt_tokens, "prompt_tokens")
    completion = _count(completion_tokens, "completion_tokens")
    total = _count(total_tokens, "total_tokens")
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return LLMRequestPayload(
        request_id=_ref(request_id, "request_id"),
        provider=check_text(provider, "provider", REF_BYTES),
        model=check_text(model, "model", REF_BYTES),
        messages_count=_count(messages_count, "messages_count"),
        tools_available=_names(tools_available, "tools_available"),
        stream=None if stream is None else _flag(stream, "stream"),
        temperature=_number(temperature, "temperature"),
        max_tokens=_count(max_tokens, "max_tokens"),
        response_content=(
            None
            if response_content is None
            else check_text(
                response_content, "response_content", limits.PAYLOAD_BYTES, required=False
            )
        ),
        tool_calls=_objects(tool_calls, "tool_calls"),
        finish_reason=_text(finish_reason, "finish_reason"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        duration_ms=_duration(duration_ms),
        error=_text(error, "error", limits.TEXT_BYTES),
        metadata=_object(metadata, "metadata"),
    )


def stream_payload(
    *,
    stream_id: object,
    provider: object = None,
    model: object = None,
    request_id: object = None,
    chunk_index: object = None,
    token_count: object = None,
    chunks_received: object = None,
    tokens_streamed: object = None,
    duration_ms: object = None,
    reason: object = None,
    metadata: object = None,
) -> StreamPayload:
    return StreamPayload(
        stream_id=_ref(stream_id, "stream_id"),
        provider=_text(provider, "provider"),
        model=_text(model, "model"),
        request_id=_text(request_id, "request_id"),
        chunk_index=_count(chunk_index, "chunk_index"),
        token_count=_count(token_count, "token_count"),
        chunks_received=_count(chunks_received, "chunks_received"),
        tokens_streamed=_count(tokens_streamed, "tokens_streamed"),
        duration_ms=_duration(duration_ms),
        reason=_text(reason, "reason", limits.TEXT_BYTES),
        metadata=_object(metadata, "metadata"),
    )


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
