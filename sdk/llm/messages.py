"""The engine's conversation, in no provider's shape: what the tool loop keeps, persists
between rounds (so a replica resumes a killed agent's ``think()``), and hands to a
provider adapter, which alone knows its provider's wire format.

Anything one provider needs carried from its reply to its next request (Anthropic's
content blocks, Gemini's thought signatures) travels in ``Message.provider_data``, which
only that adapter reads: the core never interprets it and never drops it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "Message",
    "Reply",
    "Role",
    "StreamEvent",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "decode_messages",
    "encode_messages",
]

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool the model asked for: ``id`` ties its result to it (invented when the
    provider gives none), ``arguments`` is the decoded JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One turn. ``tool_calls`` only on assistant turns; ``tool_call_id`` (and ``name``)
    only on tool turns, which carry a tool's result (JSON text) as ``content``. Never cut
    a conversation between an assistant turn with tool calls and their results:
    providers refuse such histories."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    provider_data: dict[str, Any] | None = None


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the model is shown of a tool: name, description, JSON Schema of its
    arguments (an object schema)."""

    name: str
    description: str
    parameters: dict[str, Any]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's answer to one request: text, or tool calls, or both. ``message`` is
    the assistant turn to append to the conversation (with the adapter's
    ``provider_data``)."""

    message: Message
    usage: Usage = Usage()
    finish_reason: str | None = None
    model: str | None = None
    request_id: str | None = None

    @property
    def text(self) -> str:
        return self.message.content

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.message.tool_calls


class StreamEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a streamed reply: a text delta (``token``), or, last, the whole
    ``reply`` assembled from the stream (its tool calls and usage included)."""

    token: str = ""
    reply: Reply | None = None


_messages_encoder = msgspec.json.Encoder()
_messages_decoder = msgspec.json.Decoder(list[Message])


def encode_messages(messages: list[Message]) -> bytes:
    return _messages_encoder.encode(messages)


def decode_messages(raw: bytes | str) -> list[Message]:
    return _messages_decoder.decode(raw)
