"""LLM, tool-call and stream observability (RFC-0008) on the async client: each call
appends one typed event through ``log_event``'s script; a priced LLM completion also
records its token cost (RFC-0009). Payloads and checks are in ``oibus.bus.observability``;
``oibus.sdk.adapters`` makes these calls around any chat client automatically."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

from oibus.bus.costs import CostType, record_cost_call, recorded
from oibus.bus.events import EventType
from oibus.bus.observability import (
    LLMRequestPayload,
    Observation,
    Payload,
    cost_metadata,
    logged_event,
    observation_payload,
    priced,
    token_cost,
)
from oibus.sdk._async.base import AsyncClientBase

Price = float | Decimal


_NOT_FIELDS = frozenset(
    {"self", "intent_id", "prompt_price_per_1k", "completion_price_per_1k", "cost_unit"}
)


def _fields(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A call's arguments as its event's fields. The seed's signatures already name every
    field, so ``locals()``, taken before anything else in the method, is the field list,
    and ``oibus.bus.observability.KINDS`` says how each is checked: no second copy."""
    return {name: value for name, value in arguments.items() if name not in _NOT_FIELDS}


class AsyncObservabilityMixin(AsyncClientBase):
    async def _observe(
        self, intent_id: str, event_type: EventType, fields: Mapping[str, Any]
    ) -> Observation:
        return await self._log(intent_id, event_type, observation_payload(event_type, fields))

    async def _log(
        self,
        intent_id: str,
        event_type: EventType,
        payload: Payload,
        body: Mapping[str, Any] | None = None,
    ) -> Observation:
        call = self._ops.log_event(intent_id, event_type, payload.body() if body is None else body)
        return Observation(id=payload.ref, event=logged_event(call, await self._run(call)))

    # -- tool calls ---------------------------------------------------------------------
    async def log_tool_call_started(
        self,
        intent_id: str,
        *,
        tool_name: str,
        tool_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        provider: str | None = None,
        model: str | None = None,
        parent_request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """A model asked for a tool. ``tool_id`` (generated when omitted, returned as
        ``.id``) ties the call's later events to this one; ``parent_request_id`` to the
        LLM request that asked for it."""
        return await self._observe(intent_id, EventType.TOOL_CALL_STARTED, _fields(locals()))

    async def log_tool_call_completed(
        self,
        intent_id: str,
        *,
        tool_name: str,
        tool_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        result: Any = None,
        duration_ms: float | None = None,
        provider: str | None = None,
        model: str | None = None,
        parent_request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """A tool call returned ``result`` (any JSON value)."""
        return await self._observe(intent_id, EventType.TOOL_CALL_COMPLETED, _fields(locals()))

    async def log_tool_call_failed(
        self,
        intent_id: str,
        *,
        tool_name: str,
        error: str,
        tool_id: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        duration_ms: float | None = None,
        provider: str | None = None,
        model: str | None = None,
        parent_request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        return await self._observe(intent_id, EventType.TOOL_CALL_FAILED, _fields(locals()))

    # -- LLM requests -------------------------------------------------------------------
    async def log_llm_request_started(
        self,
        intent_id: str,
        *,
        provider: str,
        model: str,
        request_id: str | None = None,
        messages_count: int | None = None,
        tools_available: Sequence[str] | None = None,
        stream: bool = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """An LLM request is being sent. ``request_id`` (generated when omitted, returned
        as ``.id``) ties its completion or failure, its tool calls and its stream to it."""
        return await self._observe(intent_id, EventType.LLM_REQUEST_STARTED, _fields(locals()))

    async def log_llm_request_completed(
        self,
        intent_id: str,
        *,
        provider: str,
        model: str,
        request_id: str | None = None,
        messages_count: int | None = None,
        response_content: str | None = None,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        finish_reason: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        duration_ms: float | None = None,
        prompt_price_per_1k: Price | None = None,
        completion_price_per_1k: Price | None = None,
        cost_unit: str = "USD",
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """An LLM request answered. With a price per 1,000 prompt and/or completion
        tokens, the usage is also recorded as a ``tokens`` cost in ``cost_unit`` (the
        intent's budget applies; ``.cost`` is the record, and the event carries ``cost``
        and ``cost_id``). The event is written first: if the budget refuses the cost,
        BudgetExceededError is raised and the event stays, since the request happened."""
        fields = _fields(locals())
        payload = cast(
            LLMRequestPayload, observation_payload(EventType.LLM_REQUEST_COMPLETED, fields)
        )
        cost = token_cost(payload, prompt_price_per_1k, completion_price_per_1k)
        if cost is None:
            return await self._log(intent_id, EventType.LLM_REQUEST_COMPLETED, payload)
        cost_call = record_cost_call(
            self.keyspace,
            self._ops.actor,
            str(uuid.uuid4()),
            intent_id,
            CostType.TOKENS,
            cost,
            cost_unit,
            provider,
            cost_metadata(payload, prompt_price_per_1k, completion_price_per_1k),
        )  # built, hence checked, before anything is written
        body = priced(payload, cost, cost_unit, cost_id=cost_call.args[1])
        logged = await self._log(intent_id, EventType.LLM_REQUEST_COMPLETED, payload, body)
        record = recorded(cost_call, await self._run(cost_call))
        return Observation(id=logged.id, event=logged.event, cost=record)

    async def log_llm_request_failed(
        self,
        intent_id: str,
        *,
        provider: str,
        model: str,
        error: str,
        request_id: str | None = None,
        messages_count: int | None = None,
        duration_ms: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        return await self._observe(intent_id, EventType.LLM_REQUEST_FAILED, _fields(locals()))

    # -- streams ------------------------------------------------------------------------
    async def start_stream(
        self,
        intent_id: str,
        *,
        provider: str,
        model: str,
        stream_id: str | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """A streamed response began. ``stream_id`` (generated when omitted, returned as
        ``.id``) names it in the chunk, completion and cancellation events."""
        return await self._observe(intent_id, EventType.STREAM_STARTED, _fields(locals()))

    async def log_stream_chunk(
        self,
        intent_id: str,
        stream_id: str,
        *,
        chunk_index: int,
        token_count: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """One chunk arrived (an event per chunk is a write per chunk: log every Nth)."""
        return await self._observe(intent_id, EventType.STREAM_CHUNK, _fields(locals()))

    async def complete_stream(
        self,
        intent_id: str,
        stream_id: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        chunks_received: int | None = None,
        tokens_streamed: int | None = None,
        duration_ms: float | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        return await self._observe(intent_id, EventType.STREAM_COMPLETED, _fields(locals()))

    async def cancel_stream(
        self,
        intent_id: str,
        stream_id: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        reason: str | None = None,
        chunks_received: int | None = None,
        tokens_streamed: int | None = None,
        duration_ms: float | None = None,
        request_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Observation:
        """The stream ended before the provider finished it (the reader stopped, or an
        error); ``reason`` says which."""
        return await self._observe(intent_id, EventType.STREAM_CANCELLED, _fields(locals()))
