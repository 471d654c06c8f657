"""The provider protocol: two calls, small enough to plug any model client in.

An adapter turns the neutral conversation (``oibus.sdk.llm.messages``) into its
provider's request, and its reply back. ``complete`` and ``stream`` share that
processing: ``stream`` yields text deltas and then one ``StreamEvent`` whose ``reply`` is
exactly what ``complete`` would have returned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from oibus.sdk.llm.messages import Message, Reply, StreamEvent, ToolSpec

__all__ = ["Provider", "RequestSettings"]


class RequestSettings(Protocol):
    """What the engine asks of every request (the agent's configuration); read-only, so
    a frozen settings record satisfies it. ``temperature`` None: the model's default
    (newer models refuse any other)."""

    @property
    def model(self) -> str: ...

    @property
    def temperature(self) -> float | None: ...

    @property
    def max_tokens(self) -> int: ...


@runtime_checkable
class Provider(Protocol):
    """``name`` is recorded in the RFC-0008 events and cost records (``openai``,
    ``anthropic``, ``gemini``, ``scripted`` ...)."""

    name: str

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> Reply: ...

    def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> AsyncIterator[StreamEvent]: ...
