"""The persisted conversation of an LLM agent on one intent: what lets a replica resume a
``think()`` that a killed process left half-way.

One record per (intent, agent), a JSON string under the intent's hash tag
(``Keyspace.llm_conversation``), so it lives on the intent's node of a cluster and needs
no cross-slot command. It is written once per completed tool round (the model's reply
and every result of its tool calls together, with the round number), once when a final
answer arrives, and once when ``clarify`` suspends the intent. A write between a tool
call and its result never happens, so a resumed conversation never holds a call without
its result (providers refuse such histories) and a tool whose result was recorded is
never run again.

A handler may call ``think()`` several times (the conversation carries over): each call
is a ``Turn``, matched on resumption by its position and the digest of its prompt. A
turn whose answer was recorded returns it without asking the model again; a turn whose
prompt differs from the record's (the handler changed what it asks) drops the record
from that turn on.

The record is deleted when the intent's handler completes; a TTL (refreshed by every
write) bounds what an intent that never completes leaves behind.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Final

import msgspec

from oibus.bus.errors import PayloadTooLargeError
from oibus.bus.ops import Call
from oibus.sdk.llm.messages import Message

if TYPE_CHECKING:
    from oibus.sdk._async.client import AsyncClient

__all__ = ["Awaiting", "ConversationStore", "Transcript", "Turn", "digest"]

TTL_SECONDS: Final = 30 * 86_400
"""A conversation waiting on a human (``clarify``) may wait long; a month, then it goes."""
MAX_BYTES: Final = 8 * 1024 * 1024
"""A conversation bigger than this is refused rather than written (Redis strings may be
512 MB, but a context that size is no provider's, and each round rewrites it)."""


def digest(prompt: str) -> str:
    return hashlib.blake2b(prompt.encode(), digest_size=12).hexdigest()


class Awaiting(msgspec.Struct, kw_only=True):
    """A ``clarify`` call waiting for its answer: the arbitration request that carries it
    and the tool call whose result the answer becomes."""

    arbitration_id: str
    tool_call_id: str
    question: str


class Turn(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One ``think()`` call: where its messages start, the tool rounds it completed, and
    its final answer once the model gave one."""

    digest: str
    start: int
    fresh: bool = False
    """It starts a context (system prompt, intent) of its own: the first turn, and the
    first after ``reset_conversation()``; the model is shown messages from the latest."""
    rounds: int = 0
    answer: str | None = None
    awaiting: Awaiting | None = None


class Transcript(msgspec.Struct, kw_only=True):
    messages: list[Message] = msgspec.field(default_factory=list)
    turns: list[Turn] = msgspec.field(default_factory=list)
    writes: int = 0
    """How many times it was written: the round counter a reader sees advance."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Transcript)


class ConversationStore:
    """Reads and writes the record through the agent's client (its runner handles
    clusters and reconnection like every other command)."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.agent_id = client._ops.actor
        """The record is the writer's own: its key and its lease check name the client's
        agent id."""

    def key(self, intent_id: str) -> str:
        return self.client.keyspace.llm_conversation(intent_id, self.agent_id)

    async def load(self, intent_id: str) -> Transcript | None:
        raw: Any = await self.client._runner.command("GET", self.key(intent_id))
        if not raw:
            return None
        return _decoder.decode(raw)

    def call(self, intent_id: str, transcript: Transcript, lease_id: str | None) -> Call:
        """The write, as a script call to pipeline behind the round's events; fenced by
        ``lease_id`` (the handler's lease), so a process that lost its lease cannot
        overwrite the record a replica resumed from."""
        transcript.writes += 1
        data = _encoder.encode(transcript)
        if len(data) > MAX_BYTES:
            raise PayloadTooLargeError(
                f"the conversation on {intent_id} is {len(data)} bytes, over {MAX_BYTES}",
                limit=MAX_BYTES,
                size=len(data),
            )
        return self.client._ops.save_conversation(intent_id, lease_id, data.decode(), TTL_SECONDS)

    async def save(self, intent_id: str, transcript: Transcript, lease_id: str | None) -> None:
        await self.client._runner.call(self.call(intent_id, transcript, lease_id))

    async def clear(self, intent_id: str) -> None:
        await self.client._runner.command("DEL", self.key(intent_id))
