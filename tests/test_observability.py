"""LLM, tool-call and stream observability (RFC-0008): every logging call appends its
typed event with the payload it was given, refuses bad input with a typed error and
writes nothing, and turns priced token usage into an exact cost (RFC-0009). The
adapters log a fake provider's calls (plain, failing, tool calls, streams read to the end
or abandoned) and never let a failed write break the call they wrap."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import redis
from helpers import event_types

from oibus import (
    AdapterConfig,
    AsyncClient,
    AsyncLLMAdapter,
    BudgetExceededError,
    Client,
    Extractor,
    LLMAdapter,
    NotFoundError,
    PayloadTooLargeError,
    ResponseInfo,
    ValidationError,
)
from oibus.bus.observability import LLMRequestPayload, StreamPayload, ToolCallPayload


def payloads(client: Client, intent_id: str, event_type: str) -> list[dict[str, Any]]:
    return [e.payload for e in client.get_events(intent_id, event_type=event_type, limit=1000)]


def observed(client: Client, intent_id: str) -> list[str]:
    """The intent's log without its creation."""
    return [t for t in event_types(client, intent_id) if t != "intent_created"]


def footprint(client: Client, raw: redis.Redis, intent_id: str) -> tuple[Any, ...]:
    ks = client.keyspace
    return (
        raw.xlen(ks.events(intent_id)),
        raw.xlen(ks.bus(ks.partition(intent_id))),
        raw.xlen(ks.costs(intent_id)),
        raw.hgetall(ks.cost_summary(intent_id)),
    )


# -- the logging calls --------------------------------------------------------------------
def test_tool_call_events(client: Client) -> None:
    intent = client.create_intent("t")
    started = client.log_tool_call_started(
        intent.id,
        tool_name="web_search",
        arguments={"query": "latest AI news"},
        provider="openai",
        model="gpt-4",
        parent_request_id="req-1",
    )
    tool_id = started.id
    assert started.event.payload == {
        "tool_name": "web_search",
        "tool_id": tool_id,
        "arguments": {"query": "latest AI news"},
        "provider": "openai",
        "model": "gpt-4",
        "parent_request_id": "req-1",
    }
    completed = client.log_tool_call_completed(
        intent.id,
        tool_name="web_search",
        tool_id=tool_id,
        arguments={"query": "latest AI news"},
        result={"articles": ["a", "b"]},
        duration_ms=1500,
        metadata={"cached": False},
    )
    failed = client.log_tool_call_failed(
        intent.id, tool_name="web_search", tool_id="t-2", error="Connection timeout"
    )
    events = client.get_events(intent.id)[1:]
    assert events == [started.event, completed.event, failed.event]
    assert [e.event_type for e in events] == [
        "tool_call_started",
        "tool_call_completed",
        "tool_call_failed",
    ]
    assert completed.event.payload == {
        "tool_name": "web_search",
        "tool_id": tool_id,
        "arguments": {"query": "latest AI news"},
        "result": {"articles": ["a", "b"]},
        "duration_ms": 1500,
        "metadata": {"cached": False},
    }
    assert failed.id == "t-2"
    assert failed.event.payload == {
        "tool_name": "web_search",
        "tool_id": "t-2",
        "arguments": {},
        "error": "Connection timeout",
    }
    assert failed.event.actor == "tester" and failed.cost is None
    assert client.get_intent(intent.id).version == 1  # events are not state


def test_llm_request_events(client: Client) -> None:
    intent = client.create_intent("t")
    started = client.log_llm_request_started(
        intent.id,
        request_id="req-1",
        provider="openai",
        model="gpt-4",
        messages_count=5,
        tools_available=["web_search", "calculator"],
        stream=False,
        temperature=0.7,
        max_tokens=256,
    )
    assert started.id == "req-1"
    assert started.event.payload == {
        "request_id": "req-1",
        "provider": "openai",
        "model": "gpt-4",
        "messages_count": 5,
        "tools_available": ["web_search", "calculator"],
        "stream": False,
        "temperature": 0.7,
        "max_tokens": 256,
    }
    completed = client.log_llm_request_completed(
        intent.id,
        request_id="req-1",
        provider="openai",
        model="gpt-4",
        messages_count=5,
        response_content="Here is the analysis...",
        tool_calls=[{"tool_id": "c1", "tool_name": "web_search"}],
        finish_reason="stop",
        prompt_tokens=500,
        completion_tokens=200,
        duration_ms=2500.1234,
    )
    assert completed.event.payload == {
        "request_id": "req-1",
        "provider": "openai",
        "model": "gpt-4",
        "messages_count": 5,
        "response_content": "Here is the analysis...",
        "tool_calls": [{"tool_id": "c1", "tool_name": "web_search"}],
        "finish_reason": "stop",
        "prompt_tokens": 500,
        "completion_tokens": 200,
        "total_tokens": 700,  # filled in from its parts
        "duration_ms": 2500.123,
    }
    failed = client.log_llm_request_failed(
        intent.id, provider="anthropic", model="claude", error="overloaded", duration_ms=12
    )
    assert failed.id and failed.id != "req-1"
    assert failed.event.payload == {
        "request_id": failed.id,
        "provider": "anthropic",
        "model": "claude",
        "error": "overloaded",
        "duration_ms": 12,
    }
    assert client.get_events(intent.id)[1:] == [started.event, completed.event, failed.event]
    assert client.get_costs(intent.id) == []  # no price, no cost


def test_stream_events(client: Client) -> None:
    intent = client.create_intent("t")
    started = client.start_stream(intent.id, provider="openai", model="gpt-4", request_id="r")
    stream_id = started.id
    chunk = client.log_stream_chunk(intent.id, stream_id, chunk_index=10, token_count=3)
    done = client.complete_stream(
        intent.id,
        stream_id=stream_id,
        provider="openai",
        model="gpt-4",
        chunks_received=100,
        tokens_streamed=1500,
    )
    cancelled = client.cancel_stream(
        intent.id,
        "s-2",
        provider="openai",
        model="gpt-4",
        reason="User interrupted",
        chunks_received=50,
        tokens_streamed=750,
    )
    assert [p for p in payloads(client, intent.id, "stream_started")] == [
        {"stream_id": stream_id, "provider": "openai", "model": "gpt-4", "request_id": "r"}
    ]
    assert chunk.event.payload == {"stream_id": stream_id, "chunk_index": 10, "token_count": 3}
    assert done.event.payload == {
        "stream_id": stream_id,
        "provider": "openai",
        "model": "gpt-4",
        "chunks_received": 100,
        "tokens_streamed": 1500,
    }
    assert cancelled.event.payload == {
        "stream_id": "s-2",
        "provider": "openai",
        "model": "gpt-4",
        "chunks_received": 50,
        "tokens_streamed": 750,
        "reason": "User interrupted",
    }
    assert observed(client, intent.id) == [
        "stream_started",
        "stream_chunk",
        "stream_completed",
        "stream_cancelled",
    ]


def test_the_seed_examples_run_as_written(client: Client) -> None:
    intent = client.create_intent("t")
    tool_call_id = "0b6c"
    client.log_tool_call_started(
        intent.id,
        tool_name="web_search",
        tool_id=tool_call_id,
        arguments={"query": "latest AI news"},
        provider="openai",
        model="gpt-4",
    )
    client.log_llm_request_completed(
        intent.id,
        request_id="r",
        provider="openai",
        model="gpt-4",
        messages_count=5,
        response_content="Here is the analysis...",
        finish_reason="stop",
        prompt_tokens=500,
        completion_tokens=200,
        total_tokens=700,
        duration_ms=2500,
    )
    stream_id = "s"
    client.start_stream(intent.id, stream_id=stream_id, provider="openai", model="gpt-4")
    for i, _ in enumerate(range(21)):
        if i % 10 == 0:
            client.log_stream_chunk(intent.id, stream_id, chunk_index=i)
    assert [p["chunk_index"] for p in payloads(client, intent.id, "stream_chunk")] == [0, 10, 20]


def test_closed_intents_still_take_observations(client: Client) -> None:
    intent = client.create_intent("t")
    client.set_status(intent.id, None, "completed")
    logged = client.log_llm_request_completed(
        intent.id, provider="p", model="m", completion_tokens=10, completion_price_per_1k=1
    )
    assert logged.cost is not None and logged.cost.amount_micros == 10_000
    assert client.get_events(intent.id)[-2] == logged.event


def test_payloads_decode_into_their_structs(client: Client) -> None:
    intent = client.create_intent("t")
    tool = client.log_tool_call_started(intent.id, tool_name="f", arguments={"a": 1})
    llm = client.log_llm_request_started(intent.id, provider="p", model="m", stream=True)
    stream = client.start_stream(intent.id, provider="p", model="m")
    assert msgspec.convert(tool.event.payload, ToolCallPayload).ref == tool.id
    assert msgspec.convert(llm.event.payload, LLMRequestPayload).stream is True
    assert msgspec.convert(stream.event.payload, StreamPayload).ref == stream.id


@pytest.mark.anyio
async def test_async_client_logs_the_same_events(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    tool = await aclient.log_tool_call_started(intent.id, tool_name="f", tool_id="c1")
    await aclient.log_tool_call_completed(intent.id, tool_name="f", tool_id="c1", result=42)
    await aclient.log_tool_call_failed(intent.id, tool_name="f", error="boom")
    request = await aclient.log_llm_request_started(intent.id, provider="p", model="m")
    await aclient.log_llm_request_completed(
        intent.id, request_id=request.id, provider="p", model="m", prompt_tokens=1
    )
    await aclient.log_llm_request_failed(intent.id, provider="p", model="m", error="e")
    stream = await aclient.start_stream(intent.id, provider="p", model="m")
    await aclient.log_stream_chunk(intent.id, stream.id, chunk_index=0)
    await aclient.complete_stream(intent.id, stream.id, chunks_received=1)
    await aclient.cancel_stream(intent.id, stream.id, reason="r")
    events = await aclient.get_events(intent.id)
    assert [e.event_type for e in events][1:] == [
        "tool_call_started",
        "tool_call_completed",
        "tool_call_failed",
        "llm_request_started",
        "llm_request_completed",
        "llm_request_failed",
        "stream_started",
        "stream_chunk",
        "stream_completed",
        "stream_cancelled",
    ]
    assert events[1] == tool.event and tool.id == "c1"
    assert events[2].payload["result"] == 42
    assert events[5].payload["request_id"] == request.id


# -- refusals -----------------------------------------------------------------------------
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("log_tool_call_started", {"tool_name": ""}, "tool_name"),
    ("log_tool_call_started", {"tool_name": "f", "tool_id": ""}, "tool_id"),
    ("log_tool_call_started", {"tool_name": "f", "arguments": "q=1"}, "arguments"),
    ("log_tool_call_started", {"tool_name": "f", "metadata": [1]}, "metadata"),
    ("log_tool_call_completed", {"tool_name": "f", "result": object()}, "result"),
    ("log_tool_call_completed", {"tool_name": "f", "duration_ms": -5}, "duration_ms"),
    ("log_tool_call_completed", {"tool_name": "f", "duration_ms": float("nan")}, "duration_ms"),
    ("log_tool_call_failed", {"tool_name": "f", "error": ""}, "error"),
    ("log_llm_request_started", {"provider": "p", "model": ""}, "model"),
    ("log_llm_request_started", {"provider": "p", "model": "m", "stream": "yes"}, "stream"),
    (
        "log_llm_request_started",
        {"provider": "p", "model": "m", "tools_available": "web_search"},
        "tools_available",
    ),
    (
        "log_llm_request_started",
        {"provider": "p", "model": "m", "messages_count": -1},
        "messages_count",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "prompt_tokens": -1},
        "prompt_tokens",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "completion_tokens": True},
        "completion_tokens",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "total_tokens": 1.5},
        "total_tokens",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "tool_calls": [1]},
        "tool_calls",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "prompt_tokens": 5, "prompt_price_per_1k": -0.1},
        "prompt_price_per_1k",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "completion_price_per_1k": 0.1},
        "completion_tokens",
    ),
    (
        "log_llm_request_completed",
        {"provider": "p", "model": "m", "prompt_tokens": 5, "prompt_price_per_1k": 1e300},
        "cost",
    ),
    (
        "log_llm_request_completed",
        {
            "provider": "p",
            "model": "m",
            "prompt_tokens": 5,
            "prompt_price_per_1k": 1,
            "cost_unit": "U S",
        },
        "unit",
    ),
    ("log_llm_request_failed", {"provider": "p", "model": "m", "error": 3}, "error"),
    (
        "log_llm_request_failed",
        {"provider": "p", "model": "m", "error": "e", "request_id": ""},
        "request_id",
    ),
    ("start_stream", {"provider": None, "model": "m"}, "provider"),
    ("log_stream_chunk", {"stream_id": "s", "chunk_index": "3"}, "chunk_index"),
    ("log_stream_chunk", {"stream_id": "s", "chunk_index": 1.0}, "chunk_index"),
    ("log_stream_chunk", {"stream_id": "s", "chunk_index": None}, "chunk_index"),
    ("log_stream_chunk", {"stream_id": None, "chunk_index": 0}, "stream_id"),
    ("complete_stream", {"stream_id": "", "chunks_received": 1}, "stream_id"),
    ("complete_stream", {"stream_id": "s", "tokens_streamed": -1}, "tokens_streamed"),
    ("cancel_stream", {"stream_id": "s", "reason": ""}, "reason"),
]


@pytest.mark.parametrize(
    ("method", "kwargs", "field"), BAD, ids=[f"{m}-{f}-{n}" for n, (m, _, f) in enumerate(BAD)]
)
def test_bad_input_is_refused_and_writes_nothing(
    client: Client, raw_redis: redis.Redis, method: str, kwargs: dict[str, Any], field: str
) -> None:
    intent = client.create_intent("t")
    before = footprint(client, raw_redis, intent.id)
    with pytest.raises(ValidationError) as caught:
        getattr(client, method)(intent.id, **kwargs)
    assert caught.value.field == field
    assert footprint(client, raw_redis, intent.id) == before


def test_oversize_content_and_unknown_intents_are_refused(
    client: Client, raw_redis: redis.Redis
) -> None:
    intent = client.create_intent("t")
    before = footprint(client, raw_redis, intent.id)
    with pytest.raises(PayloadTooLargeError) as caught:
        client.log_llm_request_completed(
            intent.id, provider="p", model="m", response_content="x" * 300_000
        )
    assert caught.value.field == "response_content"
    assert footprint(client, raw_redis, intent.id) == before
    with pytest.raises(NotFoundError):
        client.log_llm_request_completed(
            "nope", provider="p", model="m", prompt_tokens=10, prompt_price_per_1k=1
        )
    with pytest.raises(NotFoundError):
        client.start_stream("nope", provider="p", model="m")
    ks = client.keyspace
    assert not raw_redis.exists(ks.events("nope"), ks.costs("nope"), ks.cost_summary("nope"))


@pytest.mark.anyio
async def test_async_bad_input_writes_nothing(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    with pytest.raises(ValidationError) as caught:
        await aclient.log_llm_request_completed(
            intent.id, provider="p", model="m", prompt_tokens=-3
        )
    assert caught.value.field == "prompt_tokens"
    with pytest.raises(ValidationError) as caught:
        await aclient.log_stream_chunk(intent.id, "s", chunk_index=-1)
    assert caught.value.field == "chunk_index"
    assert len(await aclient.get_events(intent.id)) == 1


# -- costs from token usage ---------------------------------------------------------------
def test_priced_usage_records_an_exact_token_cost(client: Client) -> None:
    intent = client.create_intent("t")
    logged = client.log_llm_request_completed(
        intent.id,
        request_id="req-1",
        provider="openai",
        model="gpt-4",
        prompt_tokens=1234,
        completion_tokens=567,
        prompt_price_per_1k=0.0015,  # floats are read as written, not as binary fractions
        completion_price_per_1k=Decimal("0.002"),
    )
    cost = logged.cost
    assert cost is not None
    assert (cost.cost_type, cost.unit, cost.provider, cost.amount_micros) == (
        "tokens",
        "USD",
        "openai",
        2985,  # 1.851 + 1.134 thousandths
    )
    assert cost.metadata == {
        "model": "gpt-4",
        "request_id": "req-1",
        "prompt_tokens": 1234,
        "completion_tokens": 567,
        "total_tokens": 1801,
        "prompt_price_per_1k": "0.0015",
        "completion_price_per_1k": "0.002",
    }
    payload = payloads(client, intent.id, "llm_request_completed")[0]
    assert (payload["cost"], payload["cost_unit"], payload["cost_id"]) == (
        0.002985,
        "USD",
        cost.id,
    )
    assert observed(client, intent.id) == ["llm_request_completed", "cost_recorded"]
    assert client.get_costs(intent.id) == [cost]
    # many small requests add up without drift: 1000 x 0.1 x 3 / 1000
    for _ in range(10):
        client.log_llm_request_completed(
            intent.id, provider="openai", model="gpt-4", prompt_tokens=3, prompt_price_per_1k=0.1
        )
    summary = client.get_cost_summary(intent.id)
    assert summary.total_micros == 2985 + 10 * 300
    assert summary.by_type == {"tokens": 0.005985}
    assert summary.by_unit == {"USD": 0.005985}
    assert summary.by_provider == {"openai": 0.005985}
    assert summary.count == 11


def test_token_costs_round_half_to_even_once(client: Client) -> None:
    intent = client.create_intent("t")
    half_up = client.log_llm_request_completed(  # 0.0000015: 1.5 micro-units
        intent.id, provider="p", model="m", prompt_tokens=1, prompt_price_per_1k=0.0015
    )
    half_down = client.log_llm_request_completed(  # 0.0000025: 2.5 micro-units
        intent.id, provider="p", model="m", completion_tokens=1, completion_price_per_1k=0.0025
    )
    assert half_up.cost is not None and half_down.cost is not None
    assert (half_up.cost.amount_micros, half_down.cost.amount_micros) == (2, 2)
    # the sum is rounded once, not each side
    both = client.log_llm_request_completed(
        intent.id,
        provider="p",
        model="m",
        prompt_tokens=1,
        completion_tokens=1,
        prompt_price_per_1k=Decimal("0.0015"),
        completion_price_per_1k=Decimal("0.0015"),
        cost_unit="cents",
    )
    assert both.cost is not None and both.cost.amount_micros == 3 and both.cost.unit == "cents"


def test_a_budget_refuses_the_cost_but_keeps_the_event(client: Client) -> None:
    intent = client.create_intent("t", constraints={"max_cost": 0.001})
    with pytest.raises(BudgetExceededError):
        client.log_llm_request_completed(
            intent.id, provider="p", model="m", prompt_tokens=1000, prompt_price_per_1k=0.01
        )
    assert observed(client, intent.id) == ["llm_request_completed"]
    assert client.get_costs(intent.id) == []


@pytest.mark.anyio
async def test_async_priced_usage(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    logged = await aclient.log_llm_request_completed(
        intent.id,
        provider="anthropic",
        model="claude",
        prompt_tokens=2000,
        completion_tokens=1000,
        prompt_price_per_1k=Decimal("0.003"),
        completion_price_per_1k=Decimal("0.015"),
    )
    assert logged.cost is not None and logged.cost.amount_micros == 21_000
    summary = await aclient.get_cost_summary(intent.id)
    assert (summary.total, summary.by_type, summary.by_provider) == (
        0.021,
        {"tokens": 0.021},
        {"anthropic": 0.021},
    )


# -- a fake provider ----------------------------------------------------------------------
class ProviderError(Exception):
    pass


USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def completion(
    content: str | None = "Hello!", tool_calls: list[Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in tool_calls
        ]
    return {
        "id": "chatcmpl-1",
        "model": "gpt-test-0613",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
        "usage": USAGE,
    }


def chunks(words: list[str], usage: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words
    ]
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        out.append({"choices": [], "usage": USAGE})
    return out


class FakeStream:
    """A provider's sync stream: an iterator with close(), like openai.Stream."""

    def __init__(self, items: list[Any], fail_at: int | None = None) -> None:
        self.items = items
        self.fail_at = fail_at
        self.read = 0
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self.read == self.fail_at:
            raise ProviderError("connection reset mid-stream")
        if self.closed or self.read >= len(self.items):
            raise StopIteration
        self.read += 1
        return self.items[self.read - 1]

    def close(self) -> None:
        self.closed = True


class FakeAsyncStream(FakeStream):
    """A provider's async stream, with an async close() like openai.AsyncStream."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        try:
            return self.__next__()
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:  # type: ignore[override]
        self.closed = True


class FakeProvider:
    """Records its calls; answers with ``reply`` (or raises it when it is an exception)."""

    def __init__(self, reply: Any = None) -> None:
        self.reply = completion() if reply is None else reply
        self.calls: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    async def acreate(self, **kwargs: Any) -> Any:
        return self.create(**kwargs)


REQUEST = {
    "model": "gpt-test",
    "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    "temperature": 0.2,
}


class Raising:
    """A client whose every call fails, as one would with Redis down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("redis is down")

        return fail


class AsyncRaising:
    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> None:
            raise ConnectionError("redis is down")

        return fail


# -- the sync adapter ---------------------------------------------------------------------
def test_adapter_logs_a_plain_call(client: Client) -> None:
    intent = client.create_intent("t")
    provider = FakeProvider()
    adapter = LLMAdapter(provider.create, client, intent.id, provider="openai")
    response = adapter(**REQUEST)
    assert response is provider.reply and provider.calls == [REQUEST]
    assert observed(client, intent.id) == ["llm_request_started", "llm_request_completed"]
    started = payloads(client, intent.id, "llm_request_started")[0]
    request_id = started.pop("request_id")
    assert started == {
        "provider": "openai",
        "model": "gpt-test",
        "messages_count": 2,
        "tools_available": ["get_weather"],
        "stream": False,
        "temperature": 0.2,
    }
    done = payloads(client, intent.id, "llm_request_completed")[0]
    assert done.pop("duration_ms") >= 0
    assert done == {
        "request_id": request_id,
        "provider": "openai",
        "model": "gpt-test",
        "messages_count": 2,
        "response_content": "Hello!",
        "finish_reason": "stop",
        **USAGE,
    }


def test_adapter_logs_a_failure_and_reraises_it(client: Client) -> None:
    intent = client.create_intent("t")
    error = ProviderError("rate limited")
    adapter = LLMAdapter(FakeProvider(error).create, client, intent.id, provider="openai")
    with pytest.raises(ProviderError) as caught:
        adapter(model="gpt-test", messages=[])
    assert caught.value is error
    assert observed(client, intent.id) == ["llm_request_started", "llm_request_failed"]
    failed = payloads(client, intent.id, "llm_request_failed")[0]
    assert failed["error"] == "ProviderError: rate limited"
    assert failed["messages_count"] == 0 and failed["duration_ms"] >= 0


def test_adapter_logs_tool_calls_and_prices_usage(client: Client) -> None:
    intent = client.create_intent("t")
    reply = completion(
        None, [("call_1", "get_weather", {"city": "NYC"}), ("call_2", "get_time", {})]
    )
    adapter = LLMAdapter(
        FakeProvider(reply).create,
        client,
        intent.id,
        provider="openai",
        prompt_price_per_1k=Decimal("0.01"),
        completion_price_per_1k=Decimal("0.03"),
    )
    adapter(**REQUEST)
    assert observed(client, intent.id) == [
        "llm_request_started",
        "llm_request_completed",
        "cost_recorded",
        "tool_call_started",
        "tool_call_started",
    ]
    request_id = payloads(client, intent.id, "llm_request_started")[0]["request_id"]
    done = payloads(client, intent.id, "llm_request_completed")[0]
    assert done["tool_calls"] == [
        {"tool_id": "call_1", "tool_name": "get_weather"},
        {"tool_id": "call_2", "tool_name": "get_time"},
    ]
    assert done["finish_reason"] == "tool_calls" and "response_content" not in done
    assert payloads(client, intent.id, "tool_call_started") == [
        {
            "tool_name": "get_weather",
            "tool_id": "call_1",
            "arguments": {"city": "NYC"},
            "provider": "openai",
            "model": "gpt-test",
            "parent_request_id": request_id,
        },
        {
            "tool_name": "get_time",
            "tool_id": "call_2",
            "arguments": {},
            "provider": "openai",
            "model": "gpt-test",
            "parent_request_id": request_id,
        },
    ]
    # 12 x 0.01 / 1000 + 5 x 0.03 / 1000
    assert client.get_cost_summary(intent.id).total_micros == 270


def test_adapter_relays_a_stream_read_to_the_end(client: Client) -> None:
    intent = client.create_intent("t")
    items = chunks(["The ", "answer ", "is ", "42"])
    adapter = LLMAdapter(
        FakeProvider(FakeStream(items)).create,
        client,
        intent.id,
        provider="openai",
        prompt_price_per_1k=1,
    )
    stream = adapter(model="gpt-test", messages=[{}], stream=True)
    assert list(stream) == items
    assert observed(client, intent.id) == [
        "llm_request_started",
        "stream_started",
        "stream_completed",
        "llm_request_completed",
        "cost_recorded",
    ]
    started = payloads(client, intent.id, "llm_request_started")[0]
    assert started["stream"] is True
    opened = payloads(client, intent.id, "stream_started")[0]
    assert opened["request_id"] == started["request_id"]
    done = payloads(client, intent.id, "stream_completed")[0]
    assert done["stream_id"] == opened["stream_id"]
    assert (done["chunks_received"], done["tokens_streamed"]) == (6, 5)
    completed = payloads(client, intent.id, "llm_request_completed")[0]
    assert completed["response_content"] == "The answer is 42"
    assert (completed["finish_reason"], completed["total_tokens"]) == ("stop", 17)
    assert client.get_cost_summary(intent.id).total_micros == 12_000
    stream.close()  # closing a finished stream logs nothing more
    assert len(observed(client, intent.id)) == 5


def test_adapter_logs_a_stream_abandoned_early(client: Client) -> None:
    intent = client.create_intent("t")
    sources = [FakeStream(chunks(["a", "b", "c", "d"])) for _ in range(4)]
    provider = FakeProvider()
    adapter = LLMAdapter(provider.create, client, intent.id, provider="openai")

    provider.reply = sources[0]  # closed after two chunks
    stream = adapter(model="m", messages=[], stream=True)
    for n, _ in enumerate(stream):
        if n == 1:
            break
    stream.close()
    stream.close()
    provider.reply = sources[1]  # left by a with block
    with adapter(model="m", messages=[], stream=True) as stream:
        next(stream)
    provider.reply = sources[2]  # dropped while half read
    stream = adapter(model="m", messages=[], stream=True)
    next(stream)
    del stream
    gc.collect()
    provider.reply = sources[3]  # closed before reading anything
    adapter(model="m", messages=[], stream=True).close()

    cancelled = payloads(client, intent.id, "stream_cancelled")
    assert [c["chunks_received"] for c in cancelled] == [2, 1, 1, 0]
    assert all(c["reason"].startswith("the reader stopped") for c in cancelled)
    assert all(source.closed for source in sources)
    assert "stream_completed" not in observed(client, intent.id)
    assert "llm_request_completed" not in observed(client, intent.id)


def test_adapter_logs_every_nth_chunk(client: Client) -> None:
    intent = client.create_intent("t")
    words = [str(n) for n in range(9)]  # + the finish chunk: 10 chunks, no usage
    config = AdapterConfig(log_stream_chunks=True, chunk_log_interval=3)
    adapter = LLMAdapter(
        FakeProvider(FakeStream(chunks(words, usage=False))).create,
        client,
        intent.id,
        provider="p",
        config=config,
    )
    assert len(list(adapter(model="m", messages=[], stream=True))) == 10
    logged = payloads(client, intent.id, "stream_chunk")
    assert [c["chunk_index"] for c in logged] == [0, 3, 6, 9]
    assert len({c["stream_id"] for c in logged}) == 1
    done = payloads(client, intent.id, "stream_completed")[0]
    assert (done["chunks_received"], done["tokens_streamed"]) == (10, 9)  # no usage: text chunks


def test_adapter_logs_a_stream_the_provider_breaks(client: Client) -> None:
    intent = client.create_intent("t")
    source = FakeStream(chunks(["a", "b", "c"]), fail_at=2)
    adapter = LLMAdapter(FakeProvider(source).create, client, intent.id, provider="p")
    stream = adapter(model="m", messages=[], stream=True)
    with pytest.raises(ProviderError):
        for _ in stream:
            pass
    assert observed(client, intent.id) == [
        "llm_request_started",
        "stream_started",
        "stream_cancelled",
        "llm_request_failed",
    ]
    cancelled = payloads(client, intent.id, "stream_cancelled")[0]
    assert cancelled["reason"] == "ProviderError: connection reset mid-stream"
    assert cancelled["chunks_received"] == 2


def test_adapter_joins_streamed_tool_calls(client: Client) -> None:
    intent = client.create_intent("t")

    def delta(**fields: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    items = [
        delta(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"ci'}}]),
        delta(tool_calls=[{"index": 1, "id": "c2", "function": {"name": "g", "arguments": "{"}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]),
        delta(tool_calls=[{"index": 1, "function": {"arguments": "}"}}]),
    ]
    adapter = LLMAdapter(FakeProvider(FakeStream(items)).create, client, intent.id, provider="p")
    list(adapter(model="m", messages=[], stream=True))
    calls = payloads(client, intent.id, "tool_call_started")
    assert [(c["tool_id"], c["tool_name"], c["arguments"]) for c in calls] == [
        ("c1", "f", {"city": "Oslo"}),
        ("c2", "g", {}),
    ]


def test_logging_failures_never_break_the_call(client: Client, caplog: Any) -> None:
    errors: list[tuple[Exception, dict[str, Any]]] = []
    config = AdapterConfig(on_error=lambda error, context: errors.append((error, context)))
    provider = FakeProvider()
    # an intent that does not exist: every write is refused
    adapter = LLMAdapter(provider.create, client, "missing", provider="p", config=config)
    assert adapter(model="m", messages=[]) is provider.reply
    assert [type(e) for e, _ in errors] == [NotFoundError, NotFoundError]
    assert [c["phase"] for _, c in errors] == ["llm_request_started", "llm_request_completed"]
    assert errors[0][1]["intent_id"] == "missing"
    assert errors[0][1]["request_id"] == errors[1][1]["request_id"]
    # a client whose calls raise, also while streaming
    errors.clear()
    provider.reply = FakeStream(chunks(["a"]))
    config = AdapterConfig(on_error=config.on_error, log_stream_chunks=True, chunk_log_interval=1)
    adapter = LLMAdapter(provider.create, Raising(), "any", provider="p", config=config)  # type: ignore[arg-type]
    assert len(list(adapter(model="m", messages=[], stream=True))) == 3
    assert {type(e) for e, _ in errors} == {ConnectionError}
    assert [c["phase"] for _, c in errors] == [
        "llm_request_started",
        "stream_started",
        "stream_chunk",
        "stream_chunk",
        "stream_chunk",
        "stream_completed",
        "llm_request_completed",
    ]

    # an on_error that raises is itself only logged; without one, a warning is
    def broken(error: Exception, context: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    provider.reply = completion()
    caplog.set_level(logging.WARNING, logger="oibus.adapters")
    adapter = LLMAdapter(
        provider.create,
        Raising(),
        "any",
        provider="p",
        config=AdapterConfig(on_error=broken),  # type: ignore[arg-type]
    )
    assert adapter(model="m") is provider.reply
    adapter = LLMAdapter(provider.create, Raising(), "any", provider="p")  # type: ignore[arg-type]
    assert adapter(model="m") is provider.reply
    messages = [r.getMessage() for r in caplog.records]
    assert sum("on_error raised" in m for m in messages) == 2
    assert sum("could not log llm_request_started" in m for m in messages) == 1


def test_adapter_config_switches_and_checks(client: Client) -> None:
    intent = client.create_intent("t")
    quiet = AdapterConfig(log_requests=False, log_tool_calls=False, log_streams=False)
    provider = FakeProvider(completion("x", [("c", "f", {})]))
    adapter = LLMAdapter(provider.create, client, intent.id, provider="p", config=quiet)
    adapter(model="m")
    provider.reply = FakeStream(chunks(["a"]))
    list(adapter(model="m", stream=True))
    assert observed(client, intent.id) == []
    only_tools = AdapterConfig(log_requests=False, log_streams=False)
    provider.reply = completion("x", [("c", "f", {"a": 1})])
    LLMAdapter(provider.create, client, intent.id, provider="p", config=only_tools)(model="m")
    assert observed(client, intent.id) == ["tool_call_started"]
    short = AdapterConfig(max_content_chars=4)
    provider.reply = completion("a long answer")
    LLMAdapter(provider.create, client, intent.id, provider="p", config=short)(model="m")
    assert payloads(client, intent.id, "llm_request_completed")[0]["response_content"] == "a lo"
    for bad in ({"chunk_log_interval": 0}, {"chunk_log_interval": True}, {"max_content_chars": -1}):
        with pytest.raises(ValidationError) as caught:
            AdapterConfig(**bad)
        assert caught.value.field == next(iter(bad))
    with pytest.raises(ValidationError):
        LLMAdapter(provider.create, client, intent.id, provider="")
    with pytest.raises(ValidationError):
        LLMAdapter(provider.create, client, intent.id, provider="p", prompt_price_per_1k=-1)


def test_sync_adapter_refuses_an_async_call(client: Client) -> None:
    intent = client.create_intent("t")
    adapter = LLMAdapter(FakeProvider().acreate, client, intent.id, provider="p")
    with pytest.raises(TypeError, match="AsyncLLMAdapter"):
        adapter(model="m")  # and no "never awaited" warning (warnings are errors here)
    assert observed(client, intent.id) == ["llm_request_started", "llm_request_failed"]


class AnthropicShaped(Extractor):
    """A provider with another shape: content blocks and input/output token counts."""

    def response(self, response: Any) -> ResponseInfo:
        text = "".join(b.text for b in response.content if b.type == "text")
        return ResponseInfo(
            content=text,
            finish_reason=response.stop_reason,
            prompt_tokens=response.usage.input_tokens,
            completion_tokens=response.usage.output_tokens,
        )


def test_an_extractor_makes_the_adapter_read_any_provider(client: Client) -> None:
    intent = client.create_intent("t")
    message = SimpleNamespace(
        content=[SimpleNamespace(type="text", text="Bonjour")],
        stop_reason="end_turn",
        usage=SimpleNamespace(input_tokens=7, output_tokens=3),
    )
    adapter = LLMAdapter(
        FakeProvider(message).create,
        client,
        intent.id,
        provider="anthropic",
        extractor=AnthropicShaped(),
    )
    adapter(model="claude", max_tokens=100, messages=[{}])
    started, done = client.get_events(intent.id)[1:]
    assert started.payload["max_tokens"] == 100
    assert (done.payload["response_content"], done.payload["finish_reason"]) == (
        "Bonjour",
        "end_turn",
    )
    assert done.payload["total_tokens"] == 10


def test_the_default_extractor_reads_objects_and_ignores_odd_values() -> None:
    extractor = Extractor()
    function = SimpleNamespace(name="f", arguments='{"x": 1}')
    message = SimpleNamespace(
        content="hi", tool_calls=[SimpleNamespace(id="c", function=function, index=None)]
    )
    response = SimpleNamespace(
        model="m",
        choices=[SimpleNamespace(message=message, finish_reason="stop")],
        usage=SimpleNamespace(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    info = extractor.response(response)
    assert (info.content, info.finish_reason, info.total_tokens, info.model) == (
        "hi",
        "stop",
        3,
        "m",
    )
    assert [(c.id, c.name, c.arguments) for c in info.tool_calls] == [("c", "f", '{"x": 1}')]
    not_given = object()  # what client libraries pass for "not set"
    request = extractor.request(
        (), {"model": "m", "messages": "oops", "temperature": not_given, "max_tokens": True}
    )
    assert (request.messages_count, request.temperature, request.max_tokens) == (None, None, None)
    assert extractor.response(None) == ResponseInfo()
    assert extractor.chunk({"choices": "x"}) == ResponseInfo()


# -- the async adapter --------------------------------------------------------------------
@pytest.mark.anyio
async def test_async_adapter_logs_calls_failures_and_tool_calls(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    provider = FakeProvider(completion("ok", [("c1", "get_weather", {"city": "Rome"})]))
    adapter = AsyncLLMAdapter(
        provider.acreate, aclient, intent.id, provider="openai", prompt_price_per_1k=1
    )
    assert await adapter(**REQUEST) is provider.reply
    provider.reply = ProviderError("down")
    with pytest.raises(ProviderError):
        await adapter(model="m")
    events = (await aclient.get_events(intent.id))[1:]
    assert [e.event_type for e in events] == [
        "llm_request_started",
        "llm_request_completed",
        "cost_recorded",
        "tool_call_started",
        "llm_request_started",
        "llm_request_failed",
    ]
    assert events[3].payload["arguments"] == {"city": "Rome"}
    assert events[5].payload["error"] == "ProviderError: down"
    summary = await aclient.get_cost_summary(intent.id)
    assert summary.total_micros == 12_000


@pytest.mark.anyio
async def test_async_adapter_relays_streams(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    provider = FakeProvider(FakeAsyncStream(chunks(["x", "y", "z"])))
    config = AdapterConfig(log_stream_chunks=True, chunk_log_interval=2)
    adapter = AsyncLLMAdapter(provider.acreate, aclient, intent.id, provider="p", config=config)
    stream = await adapter(model="m", messages=[], stream=True)
    assert [c async for c in stream] == provider.reply.items
    # a sync create returning a sync stream works too
    sync_source = FakeStream(chunks(["s"]))
    adapter2 = AsyncLLMAdapter(lambda **kw: sync_source, aclient, intent.id, provider="p")
    assert len([c async for c in await adapter2(model="m", stream=True)]) == 3
    types = [e.event_type for e in await aclient.get_events(intent.id)][1:]
    assert types == [
        "llm_request_started",
        "stream_started",
        "stream_chunk",
        "stream_chunk",
        "stream_chunk",
        "stream_completed",
        "llm_request_completed",
        "llm_request_started",
        "stream_started",
        "stream_completed",
        "llm_request_completed",
    ]
    chunk_events = await aclient.get_events(intent.id, event_type="stream_chunk")
    assert [e.payload["chunk_index"] for e in chunk_events] == [0, 2, 4]
    completed = await aclient.get_events(intent.id, event_type="llm_request_completed")
    assert completed[0].payload["response_content"] == "xyz"


@pytest.mark.anyio
async def test_async_adapter_logs_streams_abandoned_or_broken(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    sources = [FakeAsyncStream(chunks(["a", "b", "c"])) for _ in range(3)]
    provider = FakeProvider()
    adapter = AsyncLLMAdapter(provider.acreate, aclient, intent.id, provider="p")
    provider.reply = sources[0]
    stream = await adapter(model="m", stream=True)
    await anext(stream)
    await stream.aclose()
    provider.reply = sources[1]
    async with await adapter(model="m", stream=True) as stream:
        await anext(stream)
        await anext(stream)
    provider.reply = sources[2]
    await (await adapter(model="m", stream=True)).close()  # never read
    provider.reply = FakeAsyncStream(chunks(["a", "b"]), fail_at=1)
    with pytest.raises(ProviderError):
        async for _ in await adapter(model="m", stream=True):
            pass
    cancelled = await aclient.get_events(intent.id, event_type="stream_cancelled")
    assert [e.payload["chunks_received"] for e in cancelled] == [1, 2, 0, 1]
    assert cancelled[-1].payload["reason"] == "ProviderError: connection reset mid-stream"
    assert all(s.closed for s in sources)
    failed = await aclient.get_events(intent.id, event_type="llm_request_failed")
    assert len(failed) == 1


@pytest.mark.anyio
async def test_async_logging_failures_never_break_the_call(aclient: AsyncClient) -> None:
    errors: list[str] = []
    config = AdapterConfig(on_error=lambda error, context: errors.append(context["phase"]))
    provider = FakeProvider(FakeAsyncStream(chunks(["a"])))
    adapter = AsyncLLMAdapter(provider.acreate, AsyncRaising(), "x", provider="p", config=config)  # type: ignore[arg-type]
    stream = await adapter(model="m", stream=True)
    assert len([c async for c in stream]) == 3
    assert errors == [
        "llm_request_started",
        "stream_started",
        "stream_completed",
        "llm_request_completed",
    ]
    errors.clear()
    missing = AsyncLLMAdapter(
        FakeProvider().acreate, aclient, "missing", provider="p", config=config
    )
    assert (await missing(model="m"))["choices"][0]["message"]["content"] == "Hello!"
    assert errors == ["llm_request_started", "llm_request_completed"]
