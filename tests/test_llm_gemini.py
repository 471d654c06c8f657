"""The Gemini provider adapter through the real ``google-genai`` package, with no network
and no key: the SDK's client is given an ``httpx.AsyncClient`` over a mock transport that
records each request and answers with a reply of Gemini's recorded shape (the JSON of
``generateContent``, or the SSE ``data:`` lines of ``streamGenerateContent?alt=sse``).
Asserted: the request body (system instruction, roles, function calls and responses with
their ids, function declarations, generation config) and the neutral reply (text,
function calls, usage), streaming and not; the parts and their thought signatures going
back unchanged, through the conversation's record too; the typed errors of the SDK; the
provider from a model name and its key; and an agent's ``think()`` running a tool through
the adapter end to end."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import google
import httpx
import pytest
from google.genai import errors
from test_agents import FAST, completed, started, stopped
from test_llm_providers import CONVERSATION, WEATHER, Settings, _drain

from oibus import AsyncClient, ConfigurationError, ValidationError, agent, on_assignment
from oibus.sdk.llm.detect import provider_for
from oibus.sdk.llm.gemini import PARTS, GeminiProvider
from oibus.sdk.llm.messages import Message, ToolCall, decode_messages, encode_messages
from oibus.sdk.llm.tools import ToolDef

URL = re.compile(r"https://generativelanguage\.googleapis\.com/v1(beta)?/models/")


class Recorder:
    """A mock transport's handler: keeps each request (URL, headers, JSON body) and
    answers the next canned reply: a JSON body, an SSE body (text), or a
    ``(status, JSON)`` error."""

    def __init__(self, *replies: dict[str, Any] | str | tuple[int, dict[str, Any]]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(
            {
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": json.loads(request.content),
            }
        )
        reply = self.replies.pop(0)
        if isinstance(reply, tuple):
            return httpx.Response(reply[0], json=reply[1])
        if isinstance(reply, str):
            return httpx.Response(
                200, content=reply.encode(), headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(200, json=reply)

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))

    @property
    def body(self) -> dict[str, Any]:
        assert len(self.requests) == 1
        body: dict[str, Any] = self.requests[0]["body"]
        return body


def _gemini(recorder: Recorder) -> GeminiProvider:
    return GeminiProvider(api_key="g-test", http_client=recorder.async_client(), max_retries=0)


def sse(chunks: list[dict[str, Any]]) -> str:
    """Gemini's SSE body: one ``data: {...}`` line per chunk, CRLF-separated as sent."""
    return "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks)


def response(
    parts: list[dict[str, Any]],
    finish: str | None = "STOP",
    usage: dict[str, Any] | None = None,
    response_id: str = "resp-1",
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": "gemini-2.5-pro-001",
        "responseId": response_id,
    }
    if usage is not None:
        body["usageMetadata"] = usage
    return body


USAGE = {
    "promptTokenCount": 12,
    "candidatesTokenCount": 3,
    "thoughtsTokenCount": 20,
    "totalTokenCount": 35,
}
TEXT = response([{"text": "Hello!"}], usage=USAGE)
SIGNED_CALL = {
    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
    "thoughtSignature": "c2lnLTE=",
}
TOOLS = response(
    [
        {"text": "Looking it up."},
        SIGNED_CALL,
        {"functionCall": {"id": "fc_2", "name": "get_weather", "args": {"city": "Rome"}}},
    ],
    usage={"promptTokenCount": 40, "candidatesTokenCount": 9, "totalTokenCount": 49},
)


# -- requests and replies -----------------------------------------------------------------
@pytest.mark.anyio
async def test_gemini_plain_text_request_and_reply() -> None:
    recorder = Recorder(TEXT)
    provider = _gemini(recorder)
    messages = [Message(role="system", content="Be brief."), Message(role="user", content="Hi")]
    reply = await provider.complete(messages, [], Settings("gemini-2.5-pro"))
    request = recorder.requests[0]
    assert URL.match(request["url"])
    assert request["url"].endswith("/models/gemini-2.5-pro:generateContent")
    assert request["headers"]["x-goog-api-key"] == "g-test"
    body = recorder.body
    assert body.pop("systemInstruction")["parts"] == [{"text": "Be brief."}]
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 512},
    }
    assert reply.text == "Hello!" and reply.tool_calls == ()
    # the thinking tokens are billed as output: counted with the candidates'
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 23)
    assert (reply.finish_reason, reply.model, reply.request_id) == (
        "STOP",
        "gemini-2.5-pro-001",
        "resp-1",
    )


@pytest.mark.anyio
async def test_gemini_temperature_none_is_left_out() -> None:
    recorder = Recorder(TEXT)
    settings = Settings("gemini-2.5-pro", temperature=None)  # type: ignore[arg-type]
    await _gemini(recorder).complete([Message(role="user", content="Hi")], [], settings)
    assert recorder.body["generationConfig"] == {"maxOutputTokens": 512}
    assert "systemInstruction" not in recorder.body and "tools" not in recorder.body


@pytest.mark.anyio
async def test_gemini_function_calls_and_function_responses() -> None:
    recorder = Recorder(TOOLS)
    reply = await _gemini(recorder).complete(CONVERSATION, [WEATHER], Settings("gemini-x"))
    body = recorder.body
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse."}]
    [declaration] = body["tools"][0]["functionDeclarations"]
    schema = declaration.pop("parametersJsonSchema", None) or declaration.pop(
        "parameters_json_schema"
    )
    assert schema == WEATHER.parameters  # as JSON Schema, not Gemini's OpenAPI subset
    assert declaration == {"name": "get_weather", "description": "The weather in a city."}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        # another provider's turn: rebuilt, with the calls' ids
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {
                        "id": "call_a",
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                    }
                },
                {"functionCall": {"id": "call_b", "name": "get_weather", "args": {"city": "Rome"}}},
            ],
        },
        # both results in the one user turn after the calls, objects as they are
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_a",
                        "name": "get_weather",
                        "response": {"t": 21},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_b",
                        "name": "get_weather",
                        "response": {"t": 25},
                    }
                },
            ],
        },
    ]
    assert body["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 512}
    assert reply.text == "Looking it up." and reply.finish_reason == "STOP"
    made_up, given = reply.tool_calls
    assert made_up.id.startswith("call_") and (made_up.name, made_up.arguments) == (
        "get_weather",
        {"city": "Oslo"},
    )
    assert given == ToolCall(id="fc_2", name="get_weather", arguments={"city": "Rome"})
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (40, 9)
    # kept as sent, signature included; the made-up id is not put in
    assert reply.message.provider_data == {
        PARTS: [
            {"text": "Looking it up."},
            {
                "function_call": {"name": "get_weather", "args": {"city": "Oslo"}},
                "thought_signature": "c2lnLTE=",
            },
            {"function_call": {"id": "fc_2", "name": "get_weather", "args": {"city": "Rome"}}},
        ]
    }


@pytest.mark.anyio
async def test_gemini_parts_go_back_exactly_through_the_record() -> None:
    """The text, the signed call and the call with an id come back in the next request
    as they came, after the conversation's record (JSON) round trip; the results answer
    by name, with the id only where the call had one."""
    recorder = Recorder(TOOLS, TEXT)
    provider = _gemini(recorder)
    first = [Message(role="user", content="Weather in Oslo and Rome?")]
    reply = await provider.complete(first, [WEATHER], Settings("gemini-x"))
    oslo, rome = reply.tool_calls
    history = [
        *first,
        reply.message,
        Message(role="tool", tool_call_id=oslo.id, name="get_weather", content='{"t": 12}'),
        Message(role="tool", tool_call_id=rome.id, name="get_weather", content="sunny"),
    ]
    history = decode_messages(encode_messages(history))  # as a replica would read it
    await provider.complete(history, [WEATHER], Settings("gemini-x"))
    sent = recorder.requests[1]["body"]["contents"]
    assert sent[1] == {"role": "model", "parts": TOOLS["candidates"][0]["content"]["parts"]}
    assert sent[2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"t": 12}}},
            # not a JSON object: under "output", where Gemini reads a function's output
            {
                "functionResponse": {
                    "id": "fc_2",
                    "name": "get_weather",
                    "response": {"output": "sunny"},
                }
            },
        ],
    }


@pytest.mark.anyio
async def test_gemini_rebuilds_parts_that_no_longer_match_the_calls() -> None:
    recorder = Recorder(TEXT)
    stale = Message(
        role="assistant",
        content="Checking.",
        tool_calls=(ToolCall(id="call_z", name="get_weather", arguments={"city": "Oslo"}),),
        provider_data={PARTS: [{"text": "Checking."}, {"no_such_field": 1}]},
    )
    result = Message(role="tool", tool_call_id="call_z", name="get_weather", content="{}")
    messages = [Message(role="user", content="Hi"), stale, result]
    await _gemini(recorder).complete(messages, [], Settings("gemini-x"))
    assert recorder.body["contents"][1]["parts"] == [
        {"text": "Checking."},
        {"functionCall": {"id": "call_z", "name": "get_weather", "args": {"city": "Oslo"}}},
    ]
    assert recorder.body["contents"][2]["parts"][0]["functionResponse"]["id"] == "call_z"


@pytest.mark.anyio
async def test_gemini_function_call_arguments_are_always_an_object() -> None:
    """Gemini's arguments are a protobuf Struct: a call without them is ``{}``, and the
    SDK itself refuses a reply whose arguments are not an object (no ``raw`` case)."""
    bare = response([{"functionCall": {"name": "get_weather"}}])
    text_args = response([{"functionCall": {"name": "get_weather", "args": '{"city": "Ber'}}])
    recorder = Recorder(bare, text_args)
    provider = _gemini(recorder)
    reply = await provider.complete([Message(role="user", content="Hi")], [], Settings("g"))
    assert reply.tool_calls[0].arguments == {}
    with pytest.raises(ValueError, match="args"):
        await provider.complete([Message(role="user", content="Hi")], [], Settings("g"))


@pytest.mark.anyio
async def test_gemini_refuses_a_history_cut_between_a_call_and_its_result() -> None:
    recorder = Recorder()
    provider = _gemini(recorder)
    cut = CONVERSATION[:4]  # call_b has no result
    with pytest.raises(ValidationError, match="call_b"):
        await provider.complete(cut, [], Settings("gemini-x"))
    orphan = [Message(role="user", content="hi"), CONVERSATION[3]]
    with pytest.raises(ValidationError, match="call_a"):
        await provider.complete(orphan, [], Settings("gemini-x"))
    assert recorder.requests == []  # refused before anything was sent


@pytest.mark.anyio
async def test_gemini_blocked_prompt_is_an_error_naming_the_reason() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    recorder = Recorder(blocked, sse([blocked]))
    provider = _gemini(recorder)
    messages = [Message(role="user", content="something unsafe")]
    with pytest.raises(ValidationError, match=r"no candidate.*blocked: SAFETY"):
        await provider.complete(messages, [], Settings("gemini-x"))
    with pytest.raises(ValidationError, match=r"no candidate.*blocked: SAFETY"):
        await _drain(provider.stream(messages, [], Settings("gemini-x")))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (429, errors.ClientError, "RESOURCE_EXHAUSTED"),
        (400, errors.ClientError, "INVALID_ARGUMENT"),
        (503, errors.ServerError, "UNAVAILABLE"),
    ],
)
async def test_gemini_api_errors_surface_as_the_sdks_typed_errors(
    status: int, kind: type[errors.APIError], code: str
) -> None:
    """Like the other adapters, the SDK's own error goes up unchanged (the engine logs it
    as llm_request_failed and re-raises), with the HTTP status and Google's status."""
    error = {"error": {"code": status, "message": "nope", "status": code}}
    recorder = Recorder((status, error), (status, error))
    provider = _gemini(recorder)
    messages = [Message(role="user", content="Hi")]
    with pytest.raises(kind) as caught:
        await provider.complete(messages, [], Settings("gemini-x"))
    assert (caught.value.code, caught.value.status) == (status, code)
    with pytest.raises(kind):
        await _drain(provider.stream(messages, [], Settings("gemini-x")))
    assert len(recorder.requests) == 2  # max_retries=0: no retry


# -- streaming ------------------------------------------------------------------------------
def chunk(
    parts: list[dict[str, Any]],
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return response(parts, finish=finish, usage=usage, response_id="resp-s")


GEMINI_STREAM = sse(
    [
        chunk([{"text": "Let me "}]),
        chunk([{"text": "check."}]),
        chunk([SIGNED_CALL]),
        chunk([{"functionCall": {"id": "fc_2", "name": "get_weather", "args": {"city": "Rome"}}}]),
        chunk(
            [{"text": ""}],
            finish="STOP",
            usage={"promptTokenCount": 25, "candidatesTokenCount": 22, "totalTokenCount": 47},
        ),
    ]
)


@pytest.mark.anyio
async def test_gemini_stream_joins_text_calls_and_usage() -> None:
    recorder = Recorder(GEMINI_STREAM)
    provider = _gemini(recorder)
    stream = provider.stream(CONVERSATION, [WEATHER], Settings("gemini-x"))
    tokens, reply = await _drain(stream)
    request = recorder.requests[0]
    assert URL.match(request["url"])
    assert request["url"].endswith("/models/gemini-x:streamGenerateContent?alt=sse")
    body = recorder.body
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse."}]
    assert body["contents"][2]["parts"][1]["functionResponse"]["id"] == "call_b"
    assert tokens == ["Let me ", "check."]
    assert reply.text == "Let me check."
    oslo, rome = reply.tool_calls
    assert (oslo.name, oslo.arguments) == ("get_weather", {"city": "Oslo"})
    assert rome == ToolCall(id="fc_2", name="get_weather", arguments={"city": "Rome"})
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (25, 22)
    assert (reply.finish_reason, reply.model, reply.request_id) == (
        "STOP",
        "gemini-2.5-pro-001",
        "resp-s",
    )
    assert reply.message.provider_data == {
        PARTS: [
            {"text": "Let me check."},
            {
                "function_call": {"name": "get_weather", "args": {"city": "Oslo"}},
                "thought_signature": "c2lnLTE=",
            },
            {"function_call": {"id": "fc_2", "name": "get_weather", "args": {"city": "Rome"}}},
        ]
    }


@pytest.mark.anyio
async def test_gemini_stream_of_plain_text_matches_complete() -> None:
    """The two calls share one reading: a text answer streamed in pieces, its signature
    on a last empty piece, is the same reply as the whole one with the signed part."""
    whole = response([{"text": "Hello!", "thoughtSignature": "c2ln"}], usage=USAGE)
    pieces = [
        chunk([{"text": "Hel"}]),
        chunk([{"text": "lo!"}]),
        chunk([{"text": "", "thoughtSignature": "c2ln"}], finish="STOP", usage=USAGE),
    ]
    recorder = Recorder(sse(pieces), whole)
    provider = _gemini(recorder)
    messages = [Message(role="user", content="Hi")]
    tokens, streamed = await _drain(provider.stream(messages, [], Settings("gemini-x")))
    complete = await provider.complete(messages, [], Settings("gemini-x"))
    assert tokens == ["Hel", "lo!"]
    assert streamed.message == complete.message
    assert streamed.message.provider_data == {
        PARTS: [{"text": "Hello!", "thought_signature": "c2ln"}]
    }
    assert streamed.usage == complete.usage and streamed.finish_reason == complete.finish_reason


@pytest.mark.anyio
async def test_gemini_thought_summaries_are_kept_but_not_the_answer() -> None:
    reply_parts = [
        {"text": "Think", "thought": True},
        {"text": "ing.", "thought": True},
        {"text": "Answer."},
    ]
    recorder = Recorder(sse([chunk([p]) for p in reply_parts]))
    provider = _gemini(recorder)
    tokens, reply = await _drain(
        provider.stream([Message(role="user", content="Hi")], [], Settings("gemini-x"))
    )
    assert tokens == ["Answer."] and reply.text == "Answer."
    assert reply.message.provider_data == {
        PARTS: [{"text": "Thinking.", "thought": True}, {"text": "Answer."}]
    }


# -- detection, keys, the extra ---------------------------------------------------------------
@pytest.mark.anyio
async def test_gemini_models_get_the_gemini_adapter_with_their_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=r"GOOGLE_API_KEY.*llm_api_key"):
        provider_for("gemini-2.5-pro")
    given = provider_for("gemini-2.5-pro", api_key="k")
    assert isinstance(given, GeminiProvider) and given.name == "gemini"
    monkeypatch.setenv("GOOGLE_API_KEY", "from-env")
    recorder = Recorder(TEXT, TEXT)
    provider = provider_for("gemini-2.5-pro", http_client=recorder.async_client(), max_retries=0)
    assert isinstance(provider, GeminiProvider)
    await provider.complete([Message(role="user", content="Hi")], [], Settings("gemini-2.5-pro"))
    assert recorder.requests[0]["headers"]["x-goog-api-key"] == "from-env"
    proxied = provider_for(
        "gemini-2.5-pro",
        api_key="k",
        base_url="http://localhost:8080/gemini",
        http_client=recorder.async_client(),
    )
    await proxied.complete([Message(role="user", content="Hi")], [], Settings("gemini-2.5-pro"))
    # the service's root: the SDK adds the API version
    assert re.fullmatch(
        r"http://localhost:8080/gemini/v1(beta)?/models/gemini-2\.5-pro:generateContent",
        recorder.requests[1]["url"],
    )


def test_a_missing_google_genai_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.genai", None)  # the import now fails
    monkeypatch.delattr(google, "genai")  # `from google import genai` reads this first
    monkeypatch.delitem(sys.modules, "oibus.sdk.llm.gemini", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install oibus\[gemini\]"):
        provider_for("gemini-2.5-pro", api_key="k")


# -- an agent's think() through the adapter -------------------------------------------------
@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_an_agent_thinks_through_gemini_with_a_tool(aclient: AsyncClient) -> None:
    calculator = ToolDef(
        name="calculator",
        description="Evaluate an arithmetic expression.",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
        handler=lambda expression: {"result": eval(expression)},
    )
    recorder = Recorder(
        response(
            [{"functionCall": {"name": "calculator", "args": {"expression": "2 + 3 * 4"}}}],
            usage={"promptTokenCount": 100, "candidatesTokenCount": 10},
        ),
        response(
            [{"text": "It is 14."}], usage={"promptTokenCount": 130, "candidatesTokenCount": 5}
        ),
    )

    @agent("gem", model="gemini-2.5-pro", provider=_gemini(recorder), tools=[calculator], **FAST)
    class Gem:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("What is 2 + 3 * 4?")}

    gem = Gem()
    await started(aclient, gem)
    try:
        intent = await aclient.create_intent("arithmetic")
        await aclient.assign_agent(intent.id, "gem")
        assert await completed(aclient, intent.id), await aclient.get_failures(intent.id)
    finally:
        await stopped(gem)
    assert (await aclient.get_intent(intent.id)).state == {"answer": "It is 14."}
    first, second = (r["body"] for r in recorder.requests)
    assert "calculator" in {d["name"] for d in first["tools"][0]["functionDeclarations"]}
    assert second["contents"][-2:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "calculator", "args": {"expression": "2 + 3 * 4"}}}
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "calculator", "response": {"result": 14}}},
            ],
        },
    ]
    done = await aclient.get_events(intent.id, event_type="llm_request_completed")
    assert [(e.payload["provider"], e.payload["prompt_tokens"]) for e in done] == [
        ("gemini", 100),
        ("gemini", 130),
    ]
    [call] = await aclient.get_events(intent.id, event_type="tool_call_completed")
    assert call.payload["tool_name"] == "calculator" and call.payload["result"] == {"result": 14}
