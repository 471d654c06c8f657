"""A provider that plays a script: for tests, demos and benchmarks, with no key and no
network (``model="scripted"`` with ``provider=ScriptedProvider([...])``).

Each step answers one request: a ``Reply``, a plain string (a text answer), a
``ToolCall`` or a list of them (a round of tool calls), or a callable given the
conversation so far that returns any of these (to answer from what the tools returned).
A request with no step left raises, and so does a test that leaves steps unused
(``assert_done``): a script that does not match what the engine did fails loudly.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

from oibus.bus.errors import ConfigurationError
from oibus.sdk.llm.messages import Message, Reply, StreamEvent, ToolCall, ToolSpec, Usage
from oibus.sdk.llm.provider import RequestSettings

__all__ = ["ScriptedProvider", "Step", "call"]

Answer: TypeAlias = Reply | str | ToolCall | list[ToolCall]
Step: TypeAlias = Answer | Callable[[Sequence[Message]], Answer]

_ids = itertools.count(1)


def call(name: str, call_id: str | None = None, **arguments: Any) -> ToolCall:
    """A tool call for a script: ``call("remember", key="k", value="v")``; ids are made
    unique in the process unless given."""
    return ToolCall(id=call_id or f"call_{next(_ids)}", name=name, arguments=arguments)


class ScriptedProvider:
    name = "scripted"

    def __init__(self, steps: Sequence[Step], *, tokens_per_word: int = 1) -> None:
        self._steps = list(steps)
        self._tokens_per_word = tokens_per_word
        self.requests: list[tuple[list[Message], list[ToolSpec]]] = []
        """Every request as it was received: what the engine sent, for assertions."""

    async def complete(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> Reply:
        self.requests.append((list(messages), list(tools)))
        if not self._steps:
            raise ConfigurationError(
                f"the scripted provider has no step left for request {len(self.requests)}"
            )
        step = self._steps.pop(0)
        answer = step(messages) if callable(step) else step
        return self._reply(answer, messages, settings)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[ToolSpec], settings: RequestSettings
    ) -> AsyncIterator[StreamEvent]:
        reply = await self.complete(messages, tools, settings)
        words = reply.text.split(" ") if reply.text else []
        for n, word in enumerate(words):
            yield StreamEvent(token=word if n == 0 else " " + word)
        yield StreamEvent(reply=reply)

    def assert_done(self) -> None:
        if self._steps:
            raise AssertionError(f"{len(self._steps)} scripted steps were never asked for")

    def _reply(
        self, answer: Answer, messages: Sequence[Message], settings: RequestSettings
    ) -> Reply:
        if isinstance(answer, Reply):
            return answer
        prompt = sum(len(m.content.split()) for m in messages) * self._tokens_per_word
        if isinstance(answer, str):
            message = Message(role="assistant", content=answer)
            finish = "stop"
        else:
            calls = (answer,) if isinstance(answer, ToolCall) else tuple(answer)
            message = Message(role="assistant", tool_calls=calls)
            finish = "tool_calls"
        completion = max(1, len(message.content.split())) * self._tokens_per_word
        return Reply(
            message=message,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
            finish_reason=finish,
            model=settings.model,
        )
