"""The provider adapter over the official ``openai`` package: chat completions with tools
(function calling) and streaming, for OpenAI and the providers that speak its API at
another base URL (xAI's Grok, DeepSeek, OpenRouter: ``oibus.sdk.llm.detect``).

``complete`` and ``stream`` share one reading of the reply: ``stream`` joins the chunks
(text deltas, tool-call deltas keyed by their index, the last chunk's usage) into the
same fields a whole completion has and hands them to the same function, so the two
cannot disagree on what a reply means.

Tool arguments arrive as JSON text; text that is not a JSON object is kept as
``{"raw": text}`` (as the RFC-0008 adapters log it), so the tool's own argument check
refuses it and the engine hands that error back to the model instead of the request
failing. A tool call without an id gets one made up, as results must name their call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from oibus.bus.errors import ConfigurationError, ValidationError
from oibus.sdk.llm.messages import Message, Reply, StreamEvent, ToolCall, ToolSpec, Usage
from oibus.sdk.llm.provider import RequestSettings

try:
    import openai
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionMessageParam,
        ChatCompletionToolParam,
    )
except ImportError as exc:  # the SDK is an optional extra
    raise ConfigurationError(
        "the openai provider needs the openai package: pip install oibus[openai]"
    ) from exc

__all__ = ["OpenAIProvider", "decode_arguments"]


def decode_arguments(text: str | None) -> dict[str, Any]:
    """A tool call's JSON arguments as the mapping ``ToolCall`` holds: ``{}`` for none,
    ``{"raw": text}`` for text that is not a JSON object (cut off, or a bare value)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"raw": text}
    return value if isinstance(value, dict) else {"raw": text}


class OpenAIProvider:
    """Chat completions through ``openai.AsyncOpenAI``. ``name`` is what the events and
    cost records call the provider (``openai``, ``grok``, ``deepseek``, ``openrouter``).

    Give a ready ``client``, or the arguments to make one (``api_key``, ``base_url``,
    ``http_client``, ``max_retries``, ``timeout``). ``token_limit_field`` is the request
    field that carries ``max_tokens``: OpenAI's own models (the o-series, GPT-5) refuse
    the older ``max_tokens`` and take ``max_completion_tokens``, while the compatible
    providers still read ``max_tokens``; by default it follows ``name``."""

    def __init__(
        self,
        client: openai.AsyncOpenAI | None = None,
        *,
        name: str = "openai",
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        token_limit_field: str | None = None,
        stream_usage: bool = True,
    ) -> None:
        self.name = name
        if client is None:
            options: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
            if http_client is not None:
                options["http_client"] = http_client
            if max_retries is not None:
                options["max_retries"] = max_retries
            if timeout is not None:
                options["timeout"] = timeout
            client = openai.AsyncOpenAI(**options)
        self.client = client
        if token_limit_field is None:
            token_limit_field = "max_completion_tokens" if name == "openai" else "max_tokens"
        if token_limit_field not in ("max_tokens", "max_completion_tokens"):
            raise ValidationError(
                "token_limit_field must be max_tokens or max_completion_tokens",
                field="token_limit_field",
            )
        self.token_limit_field = token_limit_field
        self.stream_usage = stream_usage

    def request(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` (without ``stream``)."""
        body: dict[str, Any] = {
            "model": settings.model,
            "messages": to_openai_messages(messages),
            self.token_limit_field: settings.max_tokens,
        }
        if settings.temperature is not None:  # None: the model's own default
            body["temperature"] = settings.temperature
        if tools:
            body["tools"] = to_openai_tools(tools)
        return body

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> Reply:
        body = self.request(messages, tools, settings)
        completion: ChatCompletion = await self.client.chat.completions.create(**body)
        if not completion.choices:
            raise ValidationError(f"{self.name} answered with no choice", field="choices")
        choice = completion.choices[0]
        message = choice.message
        calls = []
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)
            if function is None:  # a custom (free-text) tool: never offered by oibus
                raise ValidationError(
                    f"{self.name} answered with an unsupported tool call of type "
                    f"{getattr(call, 'type', '?')!r}",
                    field="tool_calls",
                )
            calls.append((call.id, function.name, function.arguments))
        usage = completion.usage
        return _reply(
            text=message.content or "",
            calls=calls,
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=completion.model,
            request_id=completion.id,
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> AsyncIterator[StreamEvent]:
        body = self.request(messages, tools, settings)
        if self.stream_usage:
            body["stream_options"] = {"include_usage": True}
        chunks = await self.client.chat.completions.create(**body, stream=True)
        text: list[str] = []
        calls: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
        finish: str | None = None
        prompt = completion_tokens = 0
        model: str | None = None
        request_id: str | None = None
        try:
            async for chunk in chunks:
                model = chunk.model or model
                request_id = chunk.id or request_id
                if chunk.usage is not None:  # the last chunk, with no choice
                    prompt = chunk.usage.prompt_tokens
                    completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        yield StreamEvent(token=delta.content)
                    for part in delta.tool_calls or ():
                        entry = calls.setdefault(part.index, [None, None, []])
                        entry[0] = entry[0] or part.id
                        if part.function is not None:
                            entry[1] = entry[1] or part.function.name
                            if part.function.arguments:
                                entry[2].append(part.function.arguments)
                    finish = choice.finish_reason or finish
        finally:
            await chunks.close()  # free the connection when the reader stops early
        yield StreamEvent(
            reply=_reply(
                text="".join(text),
                calls=[(i, n, "".join(a)) for _, (i, n, a) in sorted(calls.items())],
                finish_reason=finish,
                prompt_tokens=prompt,
                completion_tokens=completion_tokens,
                model=model,
                request_id=request_id,
            )
        )


def _reply(
    *,
    text: str,
    calls: Sequence[tuple[str | None, str | None, str | None]],
    finish_reason: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    model: str | None,
    request_id: str | None,
) -> Reply:
    """The neutral reply from the fields of a completion, whole or streamed."""
    tool_calls = []
    for call_id, name, arguments in calls:
        if not name:
            raise ValidationError("a tool call came without a function name", field="tool_calls")
        tool_calls.append(
            ToolCall(
                id=call_id or f"call_{uuid.uuid4().hex}",
                name=name,
                arguments=decode_arguments(arguments),
            )
        )
    return Reply(
        message=Message(role="assistant", content=text, tool_calls=tuple(tool_calls)),
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        finish_reason=finish_reason,
        model=model,
        request_id=request_id,
    )


def to_openai_messages(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    """The conversation as chat-completion messages: a tool turn answers its call by
    ``tool_call_id``; an assistant turn's calls go back with their ids and their
    arguments as JSON text."""
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content})
        elif message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "tool":
            if not message.tool_call_id:
                raise ValidationError("a tool turn needs its tool_call_id", field="tool_call_id")
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
        elif message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": json.dumps(call.arguments, separators=(",", ":")),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": "assistant", "content": message.content})
    return out


def to_openai_tools(tools: Sequence[ToolSpec]) -> list[ChatCompletionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]
