"""The provider adapter over the official ``anthropic`` package: the messages API with
tools and streaming.

Anthropic's shape differs from the neutral conversation in three ways, all handled here:

- the system prompt is no turn but the request's ``system=`` (several system turns are
  joined);
- a tool's result is a ``tool_result`` block in a *user* turn: the results of one
  assistant turn's calls go together in the user turn right after it (before any text of
  that turn), and a history where a ``tool_use`` is not answered there is refused by the
  API, so it is refused here with the ids named, before anything is sent;
- an assistant turn is a list of content blocks (text, ``tool_use``, thinking with its
  signature) that must go back as they came: the reply keeps them in
  ``provider_data["anthropic_content"]`` and the next request sends them unchanged
  (rebuilt from the text and tool calls only for a turn another provider wrote).

``complete`` and ``stream`` share one reading: the stream's events are assembled into the
same blocks a whole message has (text deltas joined, ``input_json_delta`` pieces decoded
at the end) and the same function makes the reply of both.
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
    import anthropic
    from anthropic.types import Message as AnthropicMessage
    from anthropic.types import MessageParam, ToolParam
except ImportError as exc:  # the SDK is an optional extra
    raise ConfigurationError(
        "the anthropic provider needs the anthropic package: pip install oibus[anthropic]"
    ) from exc

__all__ = ["CONTENT", "AnthropicProvider", "to_anthropic_messages"]

CONTENT = "anthropic_content"
"""The key of ``Message.provider_data`` that holds an assistant turn's content blocks."""


class AnthropicProvider:
    """Messages through ``anthropic.AsyncAnthropic``. Give a ready ``client``, or the
    arguments to make one (``api_key``, ``base_url``, ``http_client``, ``max_retries``,
    ``timeout``). Claude models after Opus 4.6 refuse a temperature other than 1.0:
    ``send_temperature=False`` leaves it out (the API's default applies)."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic | None = None,
        *,
        name: str = "anthropic",
        api_key: str | None = None,
        base_url: str | None = None,
        http_client: Any = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        send_temperature: bool = True,
    ) -> None:
        self.name = name
        self.send_temperature = send_temperature
        if client is None:
            options: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
            if http_client is not None:
                options["http_client"] = http_client
            if max_retries is not None:
                options["max_retries"] = max_retries
            if timeout is not None:
                options["timeout"] = timeout
            client = anthropic.AsyncAnthropic(**options)
        self.client = client

    def request(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` (without ``stream``)."""
        system, turns = to_anthropic_messages(messages)
        body: dict[str, Any] = {
            "model": settings.model,
            "messages": turns,
            "max_tokens": settings.max_tokens,
        }
        if self.send_temperature and settings.temperature is not None:
            # anthropic>=1.0 dropped the keyword (the API still reads the field, on the
            # models that take sampling options): extra_body sends it with every version
            body["extra_body"] = {"temperature": settings.temperature}
        if system:
            body["system"] = system
        if tools:
            body["tools"] = to_anthropic_tools(tools)
        return body

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> Reply:
        body = self.request(messages, tools, settings)
        message: AnthropicMessage = await self.client.messages.create(**body)
        usage = message.usage
        return _reply(
            blocks=[_block(b) for b in message.content],
            stop_reason=message.stop_reason,
            prompt_tokens=_prompt_tokens(usage),
            completion_tokens=usage.output_tokens,
            model=message.model,
            request_id=message.id,
        )

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> AsyncIterator[StreamEvent]:
        body = self.request(messages, tools, settings)
        events = await self.client.messages.create(**body, stream=True)
        blocks: dict[int, dict[str, Any]] = {}
        json_pieces: dict[int, list[str]] = {}
        stop: str | None = None
        prompt = completion = 0
        model: str | None = None
        request_id: str | None = None
        try:
            async for event in events:
                if event.type == "message_start":
                    model, request_id = event.message.model, event.message.id
                    prompt = _prompt_tokens(event.message.usage)
                    completion = event.message.usage.output_tokens
                elif event.type == "content_block_start":
                    block = _block(event.content_block)
                    if block["type"] == "tool_use":
                        block.pop("input", None)  # an empty placeholder: the deltas carry it
                        json_pieces[event.index] = []
                    blocks[event.index] = block
                elif event.type == "content_block_delta":
                    block = blocks[event.index]
                    delta = event.delta
                    if delta.type == "text_delta":
                        block["text"] = block.get("text", "") + delta.text
                        if delta.text:
                            yield StreamEvent(token=delta.text)
                    elif delta.type == "input_json_delta":
                        json_pieces[event.index].append(delta.partial_json)
                    elif delta.type == "thinking_delta":
                        block["thinking"] = block.get("thinking", "") + delta.thinking
                    elif delta.type == "signature_delta":
                        block["signature"] = delta.signature
                    elif delta.type == "citations_delta":
                        citation = delta.citation.model_dump(mode="json", exclude_none=True)
                        block.setdefault("citations", []).append(citation)
                elif event.type == "message_delta":
                    stop = event.delta.stop_reason or stop
                    usage = event.usage  # cumulative counts
                    completion = usage.output_tokens
                    if usage.input_tokens is not None:
                        prompt = _prompt_tokens(usage)
        finally:
            await events.close()  # free the connection when the reader stops early
        for index, pieces in json_pieces.items():
            blocks[index]["input"] = decode_arguments("".join(pieces))
        yield StreamEvent(
            reply=_reply(
                blocks=[block for _, block in sorted(blocks.items())],
                stop_reason=stop,
                prompt_tokens=prompt,
                completion_tokens=completion,
                model=model,
                request_id=request_id,
            )
        )


def decode_arguments(text: str) -> dict[str, Any]:
    """A ``tool_use`` input streamed as JSON pieces: ``{}`` for none, ``{"raw": text}`` for
    text that is not a JSON object (cut off by ``max_tokens``), so the tool's argument
    check refuses it and the model is told, rather than the request failing."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"raw": text}
    return value if isinstance(value, dict) else {"raw": text}


def _block(block: Any) -> dict[str, Any]:
    """A reply's content block as the parameter that sends it back: its fields as the
    API gave them, less the unset ones."""
    data: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return data


def _prompt_tokens(usage: Any) -> int:
    """Every input token the request was billed for: cache writes and reads included."""
    return sum(
        getattr(usage, field, None) or 0
        for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _reply(
    *,
    blocks: list[dict[str, Any]],
    stop_reason: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    model: str | None,
    request_id: str | None,
) -> Reply:
    text = "".join(b.get("text", "") for b in blocks if b["type"] == "text")
    calls = []
    for block in blocks:
        if block["type"] == "tool_use":
            if not block.get("id"):
                block["id"] = f"toolu_{uuid.uuid4().hex}"
            arguments = block.get("input")
            calls.append(
                ToolCall(
                    id=block["id"],
                    name=block["name"],
                    arguments=arguments if isinstance(arguments, dict) else {"raw": arguments},
                )
            )
    return Reply(
        message=Message(
            role="assistant",
            content=text,
            tool_calls=tuple(calls),
            provider_data={CONTENT: blocks},
        ),
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        finish_reason=stop_reason,
        model=model,
        request_id=request_id,
    )


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    """The turn's blocks as Anthropic sent them; rebuilt from its text and calls when it
    has none, or when they no longer hold the turn's tool calls."""
    kept = (message.provider_data or {}).get(CONTENT)
    if isinstance(kept, list):
        ids = [b.get("id") for b in kept if isinstance(b, dict) and b.get("type") == "tool_use"]
        if ids == [call.id for call in message.tool_calls]:
            return [dict(b) for b in kept]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return blocks


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str, list[MessageParam]]:
    """The ``system`` text and the turns of a request. Tool results join the user turn
    after their assistant turn; every ``tool_use`` must be answered there, and every
    ``tool_result`` must answer one, or this raises ``ValidationError``."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def user(block: dict[str, Any]) -> None:
        if turns and turns[-1]["role"] == "user":
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": "user", "content": [block]})

    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "user":
            if message.content:
                user({"type": "text", "text": message.content})
        elif message.role == "tool":
            if not message.tool_call_id:
                raise ValidationError("a tool turn needs its tool_call_id", field="tool_call_id")
            user(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            )
        else:
            blocks = _assistant_blocks(message)
            if blocks:  # the API refuses an empty assistant turn
                turns.append({"role": "assistant", "content": blocks})
    _check_pairs(turns)
    return "\n\n".join(system), turns  # type: ignore[return-value]


def _check_pairs(turns: list[dict[str, Any]]) -> None:
    """Each assistant ``tool_use`` answered by a ``tool_result`` in the next turn, and
    each ``tool_result`` answering one of the turn before: the API refuses anything else,
    so a history cut between a call and its result fails here, naming the ids."""
    asked: set[str] = set()
    for turn in turns:
        blocks = turn["content"]
        if turn["role"] == "assistant":
            if asked:
                break
            asked = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            continue
        answered = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
        if answered - asked:
            raise ValidationError(
                f"tool results {sorted(answered - asked)} answer no tool call of the turn "
                "before them",
                field="messages",
            )
        if asked - answered:
            break
        asked = set()
    if asked:
        raise ValidationError(
            f"tool calls {sorted(asked)} have no result in the turn after them: the "
            "conversation was cut between a tool call and its result",
            field="messages",
        )


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[ToolParam]:
    return [
        {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
    ]
