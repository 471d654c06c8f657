"""The provider adapters through the real SDK packages, with no network and no key: each
SDK client is given an HTTP client over a mock transport that records the outgoing
request and answers with a reply of the provider's recorded shape (JSON, or SSE in the
provider's exact event format). Asserted: the request body (system prompt, tool results
with their ids, tool schemas, temperature, token limit, stream flag) and the neutral
reply (text, tool calls with decoded arguments and kept ids, usage), streaming and not.
Also: provider detection from model names, keys from the environment, the errors for a
missing key or package, and the seed's OpenAIAdapter / AnthropicAdapter logging RFC-0008
events."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anthropic
import openai
import pytest
from helpers import event_types

from oibus import (
    AsyncAnthropicAdapter,
    AsyncClient,
    Client,
    ConfigurationError,
    OpenAIAdapter,
    Provider,
    ScriptedProvider,
    ValidationError,
    provider_for,
)
from oibus.sdk.llm.anthropic import CONTENT, AnthropicProvider
from oibus.sdk.llm.detect import detect_provider
from oibus.sdk.llm.messages import Message, StreamEvent, ToolCall, ToolSpec
from oibus.sdk.llm.openai import OpenAIProvider


def _http_module(sdk: ModuleType) -> ModuleType:
    """The HTTP library the SDK is built on (``httpx``, or ``httpx2`` in newer SDKs): its
    client and mock transport must be the ones the SDK accepts."""
    base = next(c for c in sdk.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    return importlib.import_module(base.__module__.split(".")[0])


@dataclass
class Settings:
    model: str
    temperature: float = 0.3
    max_tokens: int = 512


class Recorder:
    """A mock transport's handler: keeps each request (method, URL, headers, JSON body)
    and answers the next canned reply, JSON or an SSE body."""

    def __init__(self, sdk: ModuleType, *replies: dict[str, Any] | str) -> None:
        self.http = _http_module(sdk)
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(
            {
                "method": request.method,
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": json.loads(request.content),
            }
        )
        reply = self.replies.pop(0)
        if isinstance(reply, str):
            return self.http.Response(
                200, content=reply.encode(), headers={"content-type": "text/event-stream"}
            )
        return self.http.Response(200, json=reply)

    def async_client(self) -> Any:
        return self.http.AsyncClient(transport=self.http.MockTransport(self))

    def sync_client(self) -> Any:
        return self.http.Client(transport=self.http.MockTransport(self))

    @property
    def body(self) -> dict[str, Any]:
        assert len(self.requests) == 1
        body: dict[str, Any] = self.requests[0]["body"]
        return body


def sse(events: list[Any], *, named: bool = False, done: bool = False) -> str:
    """An SSE body: OpenAI's ``data: {...}`` lines (ended by ``[DONE]``), or Anthropic's
    ``event: <type>`` + ``data: {...}`` pairs."""
    out = []
    for event in events:
        if named:
            out.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n")
        else:
            out.append(f"data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


WEATHER = ToolSpec(
    name="get_weather",
    description="The weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)

CONVERSATION = [
    Message(role="system", content="You are terse."),
    Message(role="user", content="Weather in Paris and Rome?"),
    Message(
        role="assistant",
        content="Checking.",
        tool_calls=(
            ToolCall(id="call_a", name="get_weather", arguments={"city": "Paris"}),
            ToolCall(id="call_b", name="get_weather", arguments={"city": "Rome"}),
        ),
    ),
    Message(role="tool", tool_call_id="call_a", name="get_weather", content='{"t": 21}'),
    Message(role="tool", tool_call_id="call_b", name="get_weather", content='{"t": 25}'),
]


async def _drain(stream: Any) -> tuple[list[str], Any]:
    events: list[StreamEvent] = [e async for e in stream]
    assert events[-1].reply is not None and all(e.reply is None for e in events[:-1])
    return [e.token for e in events[:-1]], events[-1].reply


# -- OpenAI -------------------------------------------------------------------------------
def _openai(recorder: Recorder, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(
        api_key="sk-test", http_client=recorder.async_client(), max_retries=0, **kwargs
    )


OPENAI_TEXT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-5.2-2026",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}

OPENAI_TOOLS = {
    **OPENAI_TEXT,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Ber'},
                    },
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
}


@pytest.mark.anyio
async def test_openai_plain_text_request_and_reply() -> None:
    recorder = Recorder(openai, OPENAI_TEXT)
    provider = _openai(recorder)
    messages = [Message(role="system", content="Be brief."), Message(role="user", content="Hi")]
    reply = await provider.complete(messages, [], Settings("gpt-5.2"))
    request = recorder.requests[0]
    assert request["url"] == "https://api.openai.com/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert recorder.body == {
        "model": "gpt-5.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "temperature": 0.3,
        # OpenAI's own models refuse max_tokens
        "max_completion_tokens": 512,
    }
    assert reply.text == "Hello!" and reply.tool_calls == ()
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    assert (reply.finish_reason, reply.model, reply.request_id) == (
        "stop",
        "gpt-5.2-2026",
        "chatcmpl-1",
    )


@pytest.mark.anyio
async def test_openai_tool_calls_and_tool_results() -> None:
    recorder = Recorder(openai, OPENAI_TOOLS)
    reply = await _openai(recorder).complete(CONVERSATION, [WEATHER], Settings("gpt-5.2"))
    body = recorder.body
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["messages"][2] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
            },
        ],
    }
    assert body["messages"][3:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": '{"t": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": '{"t": 25}'},
    ]
    assert "stream" not in body
    assert reply.text == "" and reply.finish_reason == "tool_calls"
    assert reply.tool_calls == (
        ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"}),
        # arguments cut off: kept as text for the tool's check to refuse
        ToolCall(id="call_2", name="get_weather", arguments={"raw": '{"city": "Ber'}),
    )


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-5.2-2026",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def _call_delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, **fields}]}


OPENAI_STREAM = sse(
    [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Let me "}),
        _chunk({"content": "check."}),
        _chunk(
            _call_delta(
                0,
                id="call_x",
                type="function",
                function={"name": "get_weather", "arguments": ""},
            )
        ),
        _chunk(_call_delta(0, function={"arguments": '{"ci'})),
        _chunk(
            _call_delta(
                1, id="call_y", type="function", function={"name": "get_weather", "arguments": ""}
            )
        ),
        _chunk(_call_delta(0, function={"arguments": 'ty": "Oslo"}'})),
        _chunk(_call_delta(1, function={"arguments": '{"city": "Rome"}'})),
        _chunk({}, finish="tool_calls"),
        {
            "id": "chatcmpl-9",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-5.2-2026",
            "choices": [],
            "usage": {"prompt_tokens": 40, "completion_tokens": 17, "total_tokens": 57},
        },
    ],
    done=True,
)


@pytest.mark.anyio
async def test_openai_stream_assembles_tool_call_deltas_and_usage() -> None:
    recorder = Recorder(openai, OPENAI_STREAM)
    provider = _openai(recorder)
    tokens, reply = await _drain(provider.stream(CONVERSATION, [WEATHER], Settings("gpt-5.2")))
    body = recorder.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][3]["tool_call_id"] == "call_a"
    assert tokens == ["Let me ", "check."]
    assert reply.text == "Let me check."
    assert reply.tool_calls == (
        ToolCall(id="call_x", name="get_weather", arguments={"city": "Oslo"}),
        ToolCall(id="call_y", name="get_weather", arguments={"city": "Rome"}),
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (40, 17)
    assert (reply.finish_reason, reply.request_id) == ("tool_calls", "chatcmpl-9")


@pytest.mark.anyio
async def test_openai_stream_of_plain_text_matches_complete() -> None:
    """The two calls share one reading: a streamed text answer is the same reply."""
    chunks = [_chunk({"content": "Hel"}), _chunk({"content": "lo!"}), _chunk({}, "stop")]
    usage = {**chunks[0], "choices": [], "usage": OPENAI_TEXT["usage"]}
    recorder = Recorder(openai, sse([*chunks, usage], done=True), OPENAI_TEXT)
    provider = _openai(recorder)
    messages = [Message(role="user", content="Hi")]
    _, streamed = await _drain(provider.stream(messages, [], Settings("gpt-5.2")))
    whole = await provider.complete(messages, [], Settings("gpt-5.2"))
    assert streamed.message == whole.message
    assert streamed.usage == whole.usage and streamed.finish_reason == whole.finish_reason


@pytest.mark.anyio
async def test_compatible_providers_go_to_their_base_url_with_max_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XAI_API_KEY", "xai-key")
    recorder = Recorder(openai, OPENAI_TEXT)
    provider = provider_for("grok-4", http_client=recorder.async_client(), max_retries=0)
    assert provider.name == "grok"
    await provider.complete([Message(role="user", content="Hi")], [], Settings("grok-4"))
    request = recorder.requests[0]
    assert request["url"] == "https://api.x.ai/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer xai-key"
    assert request["body"]["max_tokens"] == 512 and "max_completion_tokens" not in request["body"]


# -- Anthropic ----------------------------------------------------------------------------
def _anthropic(recorder: Recorder) -> AnthropicProvider:
    return AnthropicProvider(api_key="ak-test", http_client=recorder.async_client(), max_retries=0)


THINKING = {"type": "thinking", "thinking": "Two cities.", "signature": "sig-123"}
ANTHROPIC_TOOLS = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        THINKING,
        {"type": "text", "text": "Looking it up."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "output_tokens": 9,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 0,
    },
}
ANTHROPIC_TEXT = {
    **ANTHROPIC_TOOLS,
    "id": "msg_2",
    "content": [{"type": "text", "text": "Oslo: 12 degrees."}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 50, "output_tokens": 6},
}


@pytest.mark.anyio
async def test_anthropic_request_system_tool_results_and_tools() -> None:
    recorder = Recorder(anthropic, ANTHROPIC_TEXT)
    reply = await _anthropic(recorder).complete(CONVERSATION, [WEATHER], Settings("claude-x"))
    request = recorder.requests[0]
    assert request["url"] == "https://api.anthropic.com/v1/messages"
    headers = request["headers"]
    # x-api-key in older SDKs, a bearer token in newer ones
    assert "ak-test" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert recorder.body == {
        "model": "claude-x",
        "max_tokens": 512,
        "temperature": 0.3,
        "system": "You are terse.",
        "tools": [
            {
                "name": "get_weather",
                "description": "The weather in a city.",
                "input_schema": WEATHER.parameters,
            }
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_a",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_b",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            # both results in the one user turn after the calls
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_a", "content": '{"t": 21}'},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": '{"t": 25}'},
                ],
            },
        ],
    }
    assert reply.text == "Oslo: 12 degrees." and reply.finish_reason == "end_turn"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (50, 6)
    assert (reply.model, reply.request_id) == ("claude-sonnet-4-5-20250929", "msg_2")


@pytest.mark.anyio
async def test_anthropic_temperature_can_be_left_out() -> None:
    """Newer Claude models refuse a temperature other than 1.0: the option omits it."""
    recorder = Recorder(anthropic, ANTHROPIC_TEXT)
    provider = AnthropicProvider(
        api_key="k", http_client=recorder.async_client(), max_retries=0, send_temperature=False
    )
    await provider.complete([Message(role="user", content="Hi")], [], Settings("claude-x"))
    assert "temperature" not in recorder.body and recorder.body["max_tokens"] == 512


@pytest.mark.anyio
async def test_anthropic_tool_use_blocks_go_back_exactly() -> None:
    """The thinking block and its signature, the text and the tool_use come back in the
    next request as they came, followed by the tool's result."""
    recorder = Recorder(anthropic, ANTHROPIC_TOOLS, ANTHROPIC_TEXT)
    provider = _anthropic(recorder)
    first = [Message(role="user", content="Weather in Oslo?")]
    reply = await provider.complete(first, [WEATHER], Settings("claude-x"))
    assert reply.text == "Looking it up." and reply.finish_reason == "tool_use"
    assert reply.tool_calls == (
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Oslo"}),
    )
    # the prompt's tokens include the cache reads
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (130, 9)
    assert reply.message.provider_data == {CONTENT: ANTHROPIC_TOOLS["content"]}
    result = Message(role="tool", tool_call_id="toolu_1", content='{"t": 12}')
    await provider.complete([*first, reply.message, result], [WEATHER], Settings("claude-x"))
    sent = recorder.requests[1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": ANTHROPIC_TOOLS["content"]}
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"t": 12}'}],
    }


@pytest.mark.anyio
async def test_anthropic_refuses_a_history_cut_between_a_call_and_its_result() -> None:
    recorder = Recorder(anthropic)
    provider = _anthropic(recorder)
    cut = CONVERSATION[:4]  # call_b has no result
    with pytest.raises(ValidationError, match="call_b"):
        await provider.complete(cut, [], Settings("claude-x"))
    orphan = [Message(role="user", content="hi"), CONVERSATION[3]]
    with pytest.raises(ValidationError, match="call_a"):
        await provider.complete(orphan, [], Settings("claude-x"))
    assert recorder.requests == []  # refused before anything was sent


ANTHROPIC_STREAM = sse(
    [
        {
            "type": "message_start",
            "message": {
                "id": "msg_s",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "see."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_s",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city": '},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"type": "message_delta", "stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 22},
        },
        {"type": "message_stop"},
    ],
    named=True,
)


@pytest.mark.anyio
async def test_anthropic_stream_assembles_blocks_tool_input_and_usage() -> None:
    recorder = Recorder(anthropic, ANTHROPIC_STREAM)
    provider = _anthropic(recorder)
    stream = provider.stream(CONVERSATION, [WEATHER], Settings("claude-x"))
    tokens, reply = await _drain(stream)
    body = recorder.body
    assert body["stream"] is True and body["system"] == "You are terse."
    assert body["messages"][2]["content"][1]["tool_use_id"] == "call_b"
    assert tokens == ["Let me ", "see."]
    assert reply.text == "Let me see."
    assert reply.tool_calls == (
        ToolCall(id="toolu_s", name="get_weather", arguments={"city": "Oslo"}),
    )
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 22)
    assert (reply.finish_reason, reply.request_id) == ("tool_use", "msg_s")
    assert reply.message.provider_data == {
        CONTENT: [
            {"type": "text", "text": "Let me see."},
            {"type": "tool_use", "id": "toolu_s", "name": "get_weather", "input": {"city": "Oslo"}},
        ]
    }


# -- detection and keys ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("gpt-5.2", "openai"),
        ("o3-mini", "openai"),
        ("o1", "openai"),
        ("o4-mini", "openai"),
        ("claude-sonnet-4-20250514", "anthropic"),
        ("gemini-2.5-pro", "gemini"),
        ("grok-4", "grok"),
        ("deepseek-chat", "deepseek"),
        ("meta-llama/llama-3-70b", "openrouter"),
        ("my-fine-tune", "openai"),
    ],
)
def test_the_provider_follows_the_model_name(model: str, provider: str) -> None:
    assert detect_provider(model) == provider


def test_scripted_models_ask_for_a_scripted_provider() -> None:
    with pytest.raises(ConfigurationError, match="ScriptedProvider"):
        provider_for("scripted")
    script = ScriptedProvider(["hi"])
    assert provider_for("scripted", script) is script
    assert isinstance(script, Provider)


@pytest.mark.parametrize(
    ("model", "env", "name", "cls"),
    [
        ("gpt-5.2", "OPENAI_API_KEY", "openai", OpenAIProvider),
        ("claude-opus-4", "ANTHROPIC_API_KEY", "anthropic", AnthropicProvider),
        ("deepseek-chat", "DEEPSEEK_API_KEY", "deepseek", OpenAIProvider),
        ("x/y", "OPENROUTER_API_KEY", "openrouter", OpenAIProvider),
    ],
)
def test_keys_come_from_the_environment_or_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, model: str, env: str, name: str, cls: type
) -> None:
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=f"{env}.*llm_api_key"):
        provider_for(model)
    monkeypatch.setenv(env, "from-env")
    provider = provider_for(model)
    assert isinstance(provider, cls) and provider.name == name
    assert provider.client.api_key == "from-env"  # type: ignore[attr-defined]
    given = provider_for(model, api_key="given")
    assert given.client.api_key == "given"  # type: ignore[attr-defined]


def test_provider_names_override_detection_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    provider = provider_for("my-fine-tune", "Anthropic")
    assert isinstance(provider, AnthropicProvider)
    with pytest.raises(ConfigurationError, match="unknown provider 'mistral'"):
        provider_for("m", "mistral")
    with pytest.raises(ConfigurationError, match="provider name"):
        provider_for("m", object())  # type: ignore[arg-type]
    custom = provider_for("gpt-x", "openai", "k", base_url="http://localhost:8000/v1")
    assert str(custom.client.base_url) == "http://localhost:8000/v1/"  # type: ignore[attr-defined]


def test_gemini_has_its_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its requests, replies and streams: tests/test_llm_gemini.py."""
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    provider = provider_for("gemini-2.5-pro")
    assert type(provider).__name__ == "GeminiProvider" and provider.name == "gemini"


@pytest.mark.parametrize(("model", "sdk"), [("gpt-5.2", "openai"), ("claude-x", "anthropic")])
def test_a_missing_sdk_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, model: str, sdk: str
) -> None:
    """The SDK import is guarded: without the package, the agent's start fails with
    the pip command, not an ImportError from deep inside."""
    monkeypatch.setitem(sys.modules, sdk, None)  # "import openai" now raises ImportError
    monkeypatch.delitem(sys.modules, f"oibus.sdk.llm.{sdk}", raising=False)
    with pytest.raises(ConfigurationError, match=rf"pip install oibus\[{sdk}\]"):
        provider_for(model, api_key="k")


# -- the seed's wrappers log RFC-0008 events ------------------------------------------------
def test_openai_adapter_logs_a_completion_with_tool_calls(client: Client) -> None:
    intent = client.create_intent("wrapped")
    recorder = Recorder(openai, OPENAI_TOOLS)
    sdk = openai.OpenAI(api_key="k", http_client=recorder.sync_client(), max_retries=0)
    adapter = OpenAIAdapter(sdk, client, intent_id=intent.id, prompt_price_per_1k=1)
    response = adapter.chat.completions.create(
        model="gpt-5.2", messages=[{"role": "user", "content": "Weather?"}]
    )
    assert response.choices[0].message.tool_calls is not None
    assert adapter.models is sdk.models  # the rest of the client, unwrapped
    assert event_types(client, intent.id)[1:] == [
        "llm_request_started",
        "llm_request_completed",
        "cost_recorded",  # the prompt's tokens, priced
        "tool_call_started",
        "tool_call_started",
    ]
    done = client.get_events(intent.id, event_type="llm_request_completed")[0].payload
    assert (done["provider"], done["prompt_tokens"], done["total_tokens"]) == ("openai", 12, 15)
    calls = client.get_events(intent.id, event_type="tool_call_started")
    assert [(c.payload["tool_id"], c.payload["arguments"]) for c in calls] == [
        ("call_1", {"city": "Oslo"}),
        ("call_2", {"raw": '{"city": "Ber'}),
    ]


@pytest.mark.anyio
async def test_async_anthropic_adapter_logs_a_stream(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("wrapped")
    recorder = Recorder(anthropic, ANTHROPIC_STREAM)
    sdk = anthropic.AsyncAnthropic(api_key="k", http_client=recorder.async_client(), max_retries=0)
    adapter = AsyncAnthropicAdapter(sdk, aclient, intent.id)
    stream = await adapter.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
        stream=True,
    )
    kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    with pytest.raises(AttributeError, match="stream=True"):
        adapter.messages.stream  # noqa: B018 -- its events would not be logged
    types = [e.event_type for e in await aclient.get_events(intent.id)][1:]
    assert types == [
        "llm_request_started",
        "stream_started",
        "stream_completed",
        "llm_request_completed",
        "tool_call_started",
    ]
    started = (await aclient.get_events(intent.id, event_type="llm_request_started"))[0]
    assert started.payload["tools_available"] == ["get_weather"]
    done = (await aclient.get_events(intent.id, event_type="llm_request_completed"))[0].payload
    assert done["response_content"] == "Let me see."
    assert (done["finish_reason"], done["prompt_tokens"], done["completion_tokens"]) == (
        "tool_use",
        25,
        22,
    )
    call = (await aclient.get_events(intent.id, event_type="tool_call_started"))[0].payload
    assert (call["tool_id"], call["tool_name"], call["arguments"]) == (
        "toolu_s",
        "get_weather",
        {"city": "Oslo"},
    )
