"""How an adapter reads a provider's requests, responses and stream chunks.

Providers shape their replies differently, so the adapters (``oibus.sdk.adapters``) never
look inside one themselves: an ``Extractor`` turns each into the same small records. The
default understands OpenAI-shaped chat completions, as dicts or as the SDK's objects
(``choices[0].message``, ``choices[0].delta``, ``usage``, ``tool_calls[].function``),
which many providers and gateways also speak. For another shape, subclass it and
override ``request``, ``response``, ``chunk`` or ``is_stream``.

Reading must never break the caller's LLM call: the default returns ``None`` for anything
it does not find or whose type is wrong (such as a client library's "not given"
sentinels), and an adapter reports an extractor that raises to its ``on_error`` instead of
raising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AnthropicExtractor",
    "Extractor",
    "OpenAIExtractor",
    "RequestInfo",
    "ResponseInfo",
    "ToolCallInfo",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestInfo:
    """What the ``llm_request_started`` event says about a request."""

    model: str | None = None
    messages_count: int | None = None
    tools_available: list[str] | None = None
    stream: bool = False
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallInfo:
    """A tool call the model asked for. ``arguments`` is a mapping or JSON text; in a
    stream chunk it is the fragment of the text this chunk adds, and ``index`` says which
    call of the response the fragment belongs to."""

    name: str | None = None
    id: str | None = None
    arguments: Mapping[str, Any] | str | None = None
    index: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseInfo:
    """What a response says, or what one stream chunk adds to it (``content`` then is a
    fragment of the text)."""

    content: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    tool_calls: list[ToolCallInfo] = field(default_factory=list)
    model: str | None = None


def get(obj: Any, name: str) -> Any:
    """A field of a dict-shaped or object-shaped reply, or ``None``."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: Any) -> Sequence[Any]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        return ()
    return value


def _first(value: Any) -> Any:
    items = _list(value)
    return items[0] if items else None


class Extractor:
    """Reads OpenAI-shaped chat completions; subclass it for other shapes."""

    def request(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> RequestInfo:
        """From the arguments of the wrapped call (chat clients take keywords)."""
        messages = kwargs.get("messages")
        temperature = kwargs.get("temperature")
        max_tokens = kwargs.get("max_tokens")
        if max_tokens is None:
            max_tokens = kwargs.get("max_completion_tokens")
        return RequestInfo(
            model=_str(kwargs.get("model")),
            messages_count=len(messages)
            if isinstance(messages, Sized) and not isinstance(messages, str | bytes | Mapping)
            else None,
            tools_available=self._tool_names(kwargs.get("tools")),
            stream=kwargs.get("stream") is True,
            temperature=temperature
            if isinstance(temperature, int | float) and not isinstance(temperature, bool)
            else None,
            max_tokens=_int(max_tokens),
        )

    def _tool_names(self, tools: Any) -> list[str] | None:
        names = []
        for tool in _list(tools):
            # {"type": "function", "function": {"name": ...}}, or a flat {"name": ...}
            name = _str(get(get(tool, "function"), "name")) or _str(get(tool, "name"))
            if name:
                names.append(name)
        return names or None

    def response(self, response: Any) -> ResponseInfo:
        choice = _first(get(response, "choices"))
        message = get(choice, "message")
        return self._info(response, choice, message)

    def chunk(self, chunk: Any) -> ResponseInfo:
        """One chunk's part: its text fragment, tool-call fragments, and the finish
        reason or usage when this chunk carries them (usually the last ones)."""
        choice = _first(get(chunk, "choices"))
        delta = get(choice, "delta")
        return self._info(chunk, choice, delta)

    def _info(self, reply: Any, choice: Any, message: Any) -> ResponseInfo:
        usage = get(reply, "usage")
        calls = []
        for n, call in enumerate(_list(get(message, "tool_calls"))):
            function = get(call, "function")
            arguments = get(function, "arguments")
            index = _int(get(call, "index"))
            calls.append(
                ToolCallInfo(
                    name=_str(get(function, "name")),
                    id=_str(get(call, "id")),
                    arguments=arguments if isinstance(arguments, str | Mapping) else None,
                    index=n if index is None else index,
                )
            )
        return ResponseInfo(
            content=_str(get(message, "content")),
            finish_reason=_str(get(choice, "finish_reason")),
            prompt_tokens=_int(get(usage, "prompt_tokens")),
            completion_tokens=_int(get(usage, "completion_tokens")),
            total_tokens=_int(get(usage, "total_tokens")),
            tool_calls=calls,
            model=_str(get(reply, "model")),
        )

    def is_stream(self, response: Any, request: RequestInfo) -> bool:
        """Whether the call returned chunks to relay rather than one response: an
        iterator (a generator, a client library's stream), or anything iterable when the
        request asked for ``stream=True``."""
        if isinstance(response, Mapping | str | bytes):
            return False
        if hasattr(response, "__next__") or hasattr(response, "__anext__"):
            return True
        return request.stream and (hasattr(response, "__iter__") or hasattr(response, "__aiter__"))


class OpenAIExtractor(Extractor):
    """OpenAI's chat completions (and the providers that speak them: Grok, DeepSeek,
    OpenRouter), as the ``openai`` package returns them. The default reading is already
    this shape; the name says so where an adapter is made for OpenAI, and the last chunk
    of a stream asked with ``stream_options={"include_usage": True}`` (usage, no
    choice) is read like any other."""


class AnthropicExtractor(Extractor):
    """Anthropic's messages API: a reply's ``content`` blocks (``text`` joined,
    ``tool_use`` with its ``input`` mapping), ``stop_reason`` and ``usage``
    (``input_tokens`` with the cache reads and writes, ``output_tokens``); a stream's
    events (``message_start`` with the prompt's usage, ``content_block_start`` naming a
    tool call, ``content_block_delta`` with text or a piece of the call's JSON input,
    ``message_delta`` with the stop reason and output tokens). Requests take the same
    keywords as OpenAI's, with tools flat (``{"name": ...}``); ``system=`` is not a
    message and is not counted."""

    def response(self, response: Any) -> ResponseInfo:
        text = []
        calls = []
        for n, block in enumerate(_list(get(response, "content"))):
            kind = get(block, "type")
            if kind == "text":
                text.append(_str(get(block, "text")) or "")
            elif kind == "tool_use":
                arguments = get(block, "input")
                calls.append(
                    ToolCallInfo(
                        name=_str(get(block, "name")),
                        id=_str(get(block, "id")),
                        arguments=arguments if isinstance(arguments, Mapping) else None,
                        index=n,
                    )
                )
        usage = get(response, "usage")
        prompt = _prompt_tokens(usage)
        completion = _int(get(usage, "output_tokens"))
        return ResponseInfo(
            content="".join(text) if text else None,
            finish_reason=_str(get(response, "stop_reason")),
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=_total(prompt, completion),
            tool_calls=calls,
            model=_str(get(response, "model")),
        )

    def chunk(self, chunk: Any) -> ResponseInfo:
        kind = get(chunk, "type")
        if kind == "message_start":
            message = get(chunk, "message")
            usage = get(message, "usage")
            return ResponseInfo(
                prompt_tokens=_prompt_tokens(usage),
                completion_tokens=_int(get(usage, "output_tokens")),
                model=_str(get(message, "model")),
            )
        if kind == "content_block_start":
            block = get(chunk, "content_block")
            if get(block, "type") != "tool_use":
                return ResponseInfo()
            # its ``input`` is an empty placeholder: the deltas carry the JSON text
            call = ToolCallInfo(
                name=_str(get(block, "name")),
                id=_str(get(block, "id")),
                index=_int(get(chunk, "index")),
            )
            return ResponseInfo(tool_calls=[call])
        if kind == "content_block_delta":
            delta = get(chunk, "delta")
            delta_kind = get(delta, "type")
            if delta_kind == "text_delta":
                return ResponseInfo(content=_str(get(delta, "text")))
            if delta_kind == "input_json_delta":
                call = ToolCallInfo(
                    arguments=_str(get(delta, "partial_json")), index=_int(get(chunk, "index"))
                )
                return ResponseInfo(tool_calls=[call])
            return ResponseInfo()
        if kind == "message_delta":
            usage = get(chunk, "usage")
            prompt = _prompt_tokens(usage)
            completion = _int(get(usage, "output_tokens"))
            return ResponseInfo(
                finish_reason=_str(get(get(chunk, "delta"), "stop_reason")),
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=_total(prompt, completion),
            )
        return ResponseInfo()


def _prompt_tokens(usage: Any) -> int | None:
    """Anthropic's input tokens, cache writes and reads included (all are billed)."""
    counts = [
        _int(get(usage, name))
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if counts[0] is None:
        return None
    return sum(c for c in counts if c is not None)


def _total(prompt: int | None, completion: int | None) -> int | None:
    return None if prompt is None or completion is None else prompt + completion
