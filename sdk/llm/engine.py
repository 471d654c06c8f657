"""The LLM engine of an agent: ``think()``, its tool loop, the protocol tools, and the
bookkeeping that makes it crash-safe on the bus.

One ``Engine`` per running agent (made at ``start``: the provider and the tools are
resolved then, so a missing key, package or granted tool fails the start, not a run).
What belongs to one intent lives in a ``RunContext`` that the agent runtime sets around
each assignment handler (a context variable, so concurrent handlers never share a
conversation): the intent, the agent's lease, the intent version the agent last wrote,
and the persisted conversation (``oibus.sdk.llm.conversation``).

A ``think(prompt)``:

1. assembles the context once per conversation: a system prompt (given, or made from the
   agent id, its role, the tools and the planning flag) and the intent's title,
   description and state; then, per call, the memories a recall on the prompt finds
   (when ``memory=`` is set) beside the prompt;
2. asks the provider with the tool schemas (protocol tools first: they take priority
   over a custom tool of the same name), executes the tool calls of the reply in order,
   and writes the round (reply and results together) to Redis;
3. loops until the model answers with text, which is recorded once and returned. A model
   that still asks for tools after ``max_tool_rounds`` rounds raises
   ``ToolLoopLimitError`` with the transcript (a typed error, not a half answer);
4. ``clarify`` ends the loop differently: an arbitration request carries the question,
   the intent moves to ``suspended_awaiting_input`` and ``think()`` returns
   ``{"status": "awaiting_response", "question", "arbitration_id"}``. The handler's
   return value is then not written and the intent not completed. Resolving the request
   (``resolve_arbitration``) is all a human does: the agent hears the
   ``arbitration_resolved`` event and moves the intent back to ``active``, whose
   ``status_changed`` re-delivers it; the handler runs again and its ``think()`` resumes
   from the record with the answer as the ``clarify`` call's result.

Streaming (``stream=True``, ``on_token=``, ``think_stream``) asks the provider for a
streamed reply on every request of the loop and forwards text as it arrives: the answer
is streamed from the very request that produced it (no request is made twice); tool calls
are read from the stream's final reply and executed without streaming.

Every request, tool call and stream is logged on the intent with the RFC-0008 helpers of
the client, best-effort (a failed write is a warning, never a failed tool or answer),
except a cost the intent's budget refuses: that BudgetExceededError stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

import anyio
import msgspec
from redis.exceptions import NoScriptError

from oibus.bus.errors import (
    BudgetExceededError,
    ConfigurationError,
    ConflictError,
    InvalidTransitionError,
    ToolLoopLimitError,
    ValidationError,
)
from oibus.bus.events import EventType
from oibus.bus.governance import ArbitrationRequest
from oibus.bus.models import Intent, Lease
from oibus.bus.observability import observation_payload
from oibus.sdk._errors import translate
from oibus.sdk.llm.conversation import Awaiting, ConversationStore, Transcript, Turn, digest
from oibus.sdk.llm.messages import Message, Reply, ToolCall, ToolSpec
from oibus.sdk.llm.provider import Provider
from oibus.sdk.llm.tools import ToolDef, check_arguments, resolve_tools

if TYPE_CHECKING:
    from oibus.sdk._async.client import AsyncClient
    from oibus.sdk.agents import AgentBase

__all__ = [
    "AGENT_TOOLS",
    "COORDINATOR_TOOLS",
    "LLM_OPTIONS",
    "Engine",
    "LLMSettings",
    "RunContext",
    "TokenStream",
    "current_run",
]

_log = logging.getLogger("oibus.llm")
T = TypeVar("T")

MEMORY_TYPES: Final = ("working", "episodic", "long_term")
MAX_RESULT_CHARS: Final = 32_000
"""A tool result longer than this is cut before the model sees it (and the log gets
less): one runaway tool must not blow the context or the event payload limit."""
MAX_LOGGED_CHARS: Final = 8_192
VISIBLE_AFTER: Final = 0.002
"""A request or tool still running after this long has its started events written at
once; quicker ones are written with what follows them (``Engine._visible``)."""
MAX_STATE_CHARS: Final = 8_000
_STRING: Final = {"type": "string"}


def _obj(props: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


AGENT_TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        name="remember",
        description="Store a fact in your memory under a key, to recall it later "
        "(in this task or another).",
        parameters=_obj(
            {
                "key": {**_STRING, "description": "A short name for the memory."},
                "value": {"description": "What to remember (text or any JSON value)."},
                "tags": {"type": "array", "items": _STRING, "description": "Optional tags."},
            },
            ["key", "value"],
        ),
    ),
    ToolSpec(
        name="recall",
        description="Search your memory by keywords; returns the best matches.",
        parameters=_obj(
            {
                "query": {**_STRING, "description": "Keywords to search for."},
                "limit": {"type": "integer", "description": "How many memories (1-20)."},
            },
            ["query"],
        ),
    ),
    ToolSpec(
        name="update_status",
        description="Record progress: set top-level keys of the current intent's state.",
        parameters=_obj(
            {"patch": {"type": "object", "description": "Keys and values to set."}}, ["patch"]
        ),
    ),
    ToolSpec(
        name="clarify",
        description="Ask a human a question when the request is ambiguous. The task "
        "pauses until they answer; their answer comes back as this tool's result.",
        parameters=_obj(
            {
                "question": {**_STRING, "description": "The question to ask."},
                "options": {"type": "array", "description": "Optional choices to offer."},
            },
            ["question"],
        ),
    ),
    ToolSpec(
        name="escalate",
        description="Escalate the current intent to a supervisor (a human or higher "
        "authority) when you cannot or should not proceed alone.",
        parameters=_obj({"reason": {**_STRING, "description": "Why."}}, ["reason"]),
    ),
)

COORDINATOR_TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        name="delegate",
        description="Hand one task to one of your agents: it becomes a sub-intent "
        "assigned to that agent; this intent completes once it has.",
        parameters=_obj(
            {
                "agent_id": {**_STRING, "description": "The agent to give it to."},
                "title": {**_STRING, "description": "A short title for the task."},
                "description": {**_STRING, "description": "What to do."},
                "depends_on": {
                    "type": "array",
                    "items": _STRING,
                    "description": "Titles of tasks delegated earlier that must finish first.",
                },
            },
            ["agent_id", "title", "description"],
        ),
    ),
    ToolSpec(
        name="create_plan",
        description="Break the work into steps, each assigned to an agent; a step starts "
        "when the steps it depends on have completed. This intent completes after all.",
        parameters=_obj(
            {
                "steps": {
                    "type": "array",
                    "items": _obj(
                        {
                            "title": _STRING,
                            "description": _STRING,
                            "assign": {**_STRING, "description": "The agent that does it."},
                            "depends_on": {
                                "type": "array",
                                "items": _STRING,
                                "description": "Titles of steps that must finish first.",
                            },
                        },
                        ["title", "assign"],
                    ),
                }
            },
            ["steps"],
        ),
    ),
    ToolSpec(
        name="record_decision",
        description="Record a decision and its rationale in the intent's audit trail.",
        parameters=_obj({"decision": _STRING, "rationale": _STRING}, ["decision", "rationale"]),
    ),
)

_NEEDS_INTENT: Final = frozenset(
    {"update_status", "clarify", "escalate", "delegate", "create_plan", "record_decision"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMSettings:
    """The ``model=`` options of ``@agent``/``@coordinator``. ``provider`` is a provider
    name (``"openai"`` ...) or a ``Provider`` object; ``memory`` the memory type the
    agent's ``remember`` writes (and whose recall is added to each prompt); ``prices``
    maps a model to its ``(prompt, completion)`` price per 1,000 tokens (or a mapping
    with those keys), recorded as costs in ``cost_unit``; empty by default: no cost."""

    model: str
    provider: Any = None
    system_prompt: str | None = None
    role: str | None = None
    temperature: float = 0.7
    max_tokens: int = 4096
    max_tool_rounds: int = 10
    planning: bool = False
    stream_by_default: bool = False
    llm_api_key: str | None = None
    memory: str | None = None
    memory_limit: int = 5
    tools: tuple[Any, ...] = ()
    tool_registry: Mapping[str, ToolDef] | None = None
    prices: Mapping[str, Any] | None = None
    cost_unit: str = "USD"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValidationError("model must be a model name", field="model")
        if not 0 <= float(self.temperature) <= 2:
            raise ValidationError("temperature must be from 0 to 2", field="temperature")
        if int(self.max_tokens) < 1:
            raise ValidationError("max_tokens must be at least 1", field="max_tokens")
        if int(self.max_tool_rounds) < 0:
            raise ValidationError("max_tool_rounds must be 0 or more", field="max_tool_rounds")
        if self.memory is not None and self.memory not in MEMORY_TYPES:
            raise ValidationError(
                f"memory must be one of {', '.join(MEMORY_TYPES)}", field="memory"
            )
        for model in self.prices or {}:
            self.price(model)  # a malformed price fails at the decorator

    def price(self, model: str) -> tuple[Decimal | float, Decimal | float] | None:
        entry = (self.prices or {}).get(model)
        if entry is None:
            return None
        if isinstance(entry, Mapping):
            pair = (entry.get("prompt", 0), entry.get("completion", 0))
        elif isinstance(entry, tuple | list) and len(entry) == 2:
            pair = (entry[0], entry[1])
        else:
            raise ValidationError(
                f"prices[{model!r}] must be (prompt, completion) per 1,000 tokens",
                field="prices",
            )
        if not all(isinstance(p, int | float | Decimal) and not isinstance(p, bool) for p in pair):
            raise ValidationError(f"prices[{model!r}] must be numbers", field="prices")
        return pair


LLM_OPTIONS: Final = frozenset(f.name for f in fields(LLMSettings))


@dataclass(slots=True)
class _Request:
    """What every request is sent with (``provider.RequestSettings``)."""

    model: str
    temperature: float
    max_tokens: int


@dataclass(slots=True, eq=False)
class RunContext:
    """One assignment handler's run, as the engine sees it."""

    intent: Intent
    lease: Lease | None
    version: int
    thinks: int = 0
    transcript: Transcript | None = None
    loaded: bool = False
    fresh: bool = False
    suspended: dict[str, Any] | None = None
    pending: list[Any] = field(default_factory=list)
    """Events not written yet (``Engine._flush`` writes them in one round trip)."""
    titles: dict[str, str] = field(default_factory=dict)
    """Sub-intents this run created, by title (so ``depends_on`` may name them)."""


current_run: ContextVar[RunContext | None] = ContextVar("oibus_llm_run", default=None)


class _Memory(Protocol):
    """The agent-memory calls of the client (RFC-0015)."""

    async def remember(
        self,
        key: str,
        value: Any,
        *,
        agent_id: str | None = None,
        memory_type: str = "episodic",
        tags: Sequence[str] = (),
        ttl_seconds: float | None = None,
    ) -> Any: ...

    async def recall(
        self,
        query: str,
        *,
        agent_id: str | None = None,
        memory_type: str | None = None,
        limit: int = 5,
    ) -> list[Any]: ...


_encoder = msgspec.json.Encoder(enc_hook=str)


def _json(value: Any) -> str:
    return _encoder.encode(value).decode()


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    return _cut(f"{type(exc).__name__}: {exc}", 4000)


def _record(r: Any) -> dict[str, Any]:
    return {
        "key": getattr(r, "key", None),
        "value": getattr(r, "value", None),
        "memory_type": getattr(r, "memory_type", None),
        "tags": list(getattr(r, "tags", ()) or ()),
        "version": getattr(r, "version", None),
    }


async def _emit(on_token: Callable[[str], Any] | None, token: str) -> None:
    if on_token is None:
        return
    out = on_token(token)
    if inspect.isawaitable(out):
        await out


def resolve_provider(settings: LLMSettings) -> Provider:
    """The provider object: the one given, or the adapter ``detect`` makes for the model
    (imported only now, so a missing adapter or SDK package is an error at start)."""
    given = settings.provider
    if given is not None and not isinstance(given, str):
        if not isinstance(given, Provider):
            raise ConfigurationError(
                "provider= must be a provider name or an object with name, complete() "
                f"and stream() (oibus.sdk.llm.provider.Provider), not {type(given).__name__}"
            )
        return given
    try:
        detect = importlib.import_module("oibus.sdk.llm.detect")
    except ImportError as exc:
        raise ConfigurationError(
            f"model={settings.model!r} needs a provider adapter, and oibus.sdk.llm.detect "
            f"could not be imported ({exc}); pass provider= a Provider object instead"
        ) from exc
    made = detect.provider_for(settings.model, given, settings.llm_api_key)
    return cast(Provider, made)


class Engine:
    """An agent's LLM engine (see the module's docstring)."""

    def __init__(self, agent: AgentBase, settings: LLMSettings, *, coordinator: bool) -> None:
        self.agent = agent
        self.settings = settings
        self.coordinator = coordinator
        self.provider = resolve_provider(settings)
        custom = resolve_tools(settings.tools, settings.tool_registry)
        protocol = AGENT_TOOLS + (COORDINATOR_TOOLS if coordinator else ())
        self.protocol: dict[str, ToolSpec] = {s.name: s for s in protocol}
        # protocol tools take priority: a custom tool of the same name is never shown
        self.custom: dict[str, ToolDef] = {t.name: t for t in custom if t.name not in self.protocol}
        for name in sorted({t.name for t in custom} & set(self.protocol)):
            _log.warning(
                "agent %s: custom tool %r is shadowed by the protocol tool of that name",
                agent.agent_id,
                name,
            )
        self.specs: list[ToolSpec] = [*protocol, *(t.spec() for t in self.custom.values())]
        self.tool_names = [s.name for s in self.specs]
        self.store: ConversationStore | None = None
        self._detached: list[Message] = []
        self.request = _Request(settings.model, float(settings.temperature), settings.max_tokens)

    # -- set-up ----------------------------------------------------------------------------
    def attach(self, client: AsyncClient) -> None:
        """Bind the started agent's client; memory= needs the client's memory calls."""
        if self.settings.memory is not None and not hasattr(client, "recall"):
            raise ConfigurationError(
                f"memory={self.settings.memory!r} needs agent memory (RFC-0015) on the "
                "client: client.remember/recall are not available in this oibus"
            )
        self.store = ConversationStore(client)

    @property
    def client(self) -> AsyncClient:
        return self.agent.client

    def system_prompt(self) -> str:
        s, me = self.settings, self.agent.agent_id
        lines = [f"You are {me}, an agent working on intents of an OpenIntent coordination bus."]
        if s.role:
            lines.append(f"Your role: {s.role}.")
        lines.append(
            "You act through tools: remember and recall for your memory, update_status to "
            "record progress in the intent's state, clarify to ask a human when the request "
            "is ambiguous (then wait for the answer), escalate when you cannot proceed."
        )
        if self.coordinator:
            managed = ", ".join(self.managed) or "any agent you name"
            lines.append(
                f"You coordinate these agents: {managed}. Use delegate to hand one task to "
                "one agent, create_plan to break the work into steps with dependencies (each "
                "step becomes an intent assigned to its agent and starts when the steps it "
                "depends on have completed), and record_decision to log your decisions."
            )
        if s.planning:
            lines.append(
                "Plan before acting: break the work into steps, decide their order and who "
                "does each, then carry the plan out."
            )
        if self.custom:
            lines.append("Your other tools: " + ", ".join(self.custom) + ".")
        lines.append("When you are done, answer with plain text.")
        if s.system_prompt:
            lines.append("")
            lines.append(s.system_prompt)
        return "\n".join(lines)

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(getattr(self.agent, "managed_agents", ()) or ())

    @staticmethod
    def intent_context(intent: Intent) -> str:
        state = _cut(_json(intent.state), MAX_STATE_CHARS)
        return (
            f"The intent you are working on (id {intent.id}):\n"
            f"Title: {intent.title}\n"
            f"Description: {intent.description or '(none)'}\n"
            f"Current state: {state}"
        )

    # -- think -----------------------------------------------------------------------------
    async def think(
        self,
        prompt: str,
        *,
        stream: bool | None = None,
        on_token: Callable[[str], Any] | None = None,
    ) -> Any:
        if not isinstance(prompt, str):
            raise ValidationError("think() takes the prompt as a string", field="prompt")
        streaming = self.settings.stream_by_default if stream is None else stream
        streaming = streaming or on_token is not None
        run = current_run.get()
        if run is None:
            return await self._think_detached(prompt, streaming, on_token)
        return await self._think_run(run, prompt, streaming, on_token)

    def think_stream(self, prompt: str) -> TokenStream:
        return TokenStream(self, prompt)

    def reset_conversation(self) -> None:
        """The next ``think()`` starts a fresh context (system prompt and intent again).
        Earlier turns stay in the record, so a resumed handler still finds them."""
        self._detached.clear()
        run = current_run.get()
        if run is not None:
            run.fresh = True

    async def clear(self, intent_id: str) -> None:
        if self.store is not None:
            await self.store.clear(intent_id)

    async def _think_detached(
        self, prompt: str, streaming: bool, on_token: Callable[[str], Any] | None
    ) -> Any:
        """Outside an assignment handler (an ``on_all_complete`` handler, a script): no
        intent, so nothing is persisted or logged and intent tools answer with an error."""
        msgs = self._detached
        if not msgs:
            msgs.append(Message(role="system", content=self.system_prompt()))
        msgs.append(Message(role="user", content=await self._with_memories(prompt)))
        turn = Turn(digest=digest(prompt), start=len(msgs) - 1)
        return await self._loop(None, msgs, 0, turn, streaming, on_token)

    async def _think_run(
        self,
        run: RunContext,
        prompt: str,
        streaming: bool,
        on_token: Callable[[str], Any] | None,
    ) -> Any:
        assert self.store is not None
        if not run.loaded:
            run.transcript = await self.store.load(run.intent.id) or Transcript()
            run.loaded = True
        t = run.transcript
        assert t is not None
        n = run.thinks
        run.thinks += 1
        d = digest(prompt)
        if n < len(t.turns) and t.turns[n].digest == d:
            turn = t.turns[n]
            run.fresh = False
            if turn.answer is not None:  # recorded: answered once, never asked again
                await _emit(on_token if streaming else None, turn.answer)
                return turn.answer
            if turn.awaiting is not None and not await self._answered(run, t, turn):
                return await self._suspend(run, turn)
        else:
            if n < len(t.turns):  # the handler asks something else now: redo from here
                del t.messages[t.turns[n].start :]
                del t.turns[n:]
            fresh = not t.turns or run.fresh
            run.fresh = False
            start = len(t.messages)
            if fresh:
                t.messages.append(
                    Message(
                        role="system",
                        content=self.system_prompt() + "\n\n" + self.intent_context(run.intent),
                    )
                )
            t.messages.append(Message(role="user", content=await self._with_memories(prompt)))
            turn = Turn(digest=d, start=start, fresh=fresh)
            t.turns.append(turn)
        base = next(x.start for x in reversed(t.turns[: t.turns.index(turn) + 1]) if x.fresh)
        return await self._loop(run, t.messages, base, turn, streaming, on_token)

    async def _with_memories(self, prompt: str) -> str:
        if self.settings.memory is None:
            return prompt
        try:
            found = await cast(_Memory, self.client).recall(
                prompt, agent_id=self.agent.agent_id, limit=self.settings.memory_limit
            )
        except Exception as exc:  # memory helps; its absence must not stop the answer
            _log.warning("agent %s: recall for the prompt failed: %s", self.agent.agent_id, exc)
            return prompt
        if not found:
            return prompt
        lines = [f"- {r['key']}: {_json(r['value'])}" for r in map(_record, found)]
        return prompt + "\n\nRelevant memories:\n" + "\n".join(lines)

    async def _loop(
        self,
        run: RunContext | None,
        msgs: list[Message],
        base: int,
        turn: Turn,
        streaming: bool,
        on_token: Callable[[str], Any] | None,
    ) -> Any:
        limit = self.settings.max_tool_rounds
        while True:
            reply, request_id = await self._request(run, msgs[base:], streaming, on_token)
            if not reply.tool_calls:
                msgs.append(reply.message)
                turn.answer = reply.text
                await self._save(run)  # the final answer, written once
                return reply.text
            if turn.rounds >= limit:
                transcript = [*msgs, reply.message]
                if run is not None and run.transcript is not None:
                    # dropped from the record: a retry of the intent starts this turn afresh
                    del msgs[turn.start :]
                    run.transcript.turns.remove(turn)
                    run.thinks -= 1
                    run.fresh = turn.fresh
                    try:
                        await self._save(run)
                    except Exception as exc:
                        _log.warning("agent %s: could not save: %s", self.agent.agent_id, exc)
                raise ToolLoopLimitError(
                    f"the model still called tools after {limit} tool rounds "
                    f"({', '.join(c.name for c in reply.tool_calls)})",
                    rounds=turn.rounds,
                    messages=transcript,
                )
            msgs.append(reply.message)
            awaiting: Awaiting | None = None
            for call in reply.tool_calls:
                if call.name == "clarify" and run is not None and awaiting is None:
                    asked = await self._clarify(run, call, request_id)
                    if isinstance(asked, Awaiting):
                        awaiting = asked  # its result is the human's answer, added later
                        continue
                    content = asked
                else:
                    content = await self._execute(run, call, request_id)
                msgs.append(
                    Message(role="tool", content=content, tool_call_id=call.id, name=call.name)
                )
            turn.rounds += 1
            turn.awaiting = awaiting
            await self._save(run)  # one write per completed round
            if awaiting is not None:
                assert run is not None
                return await self._suspend(run, turn)

    async def _save(self, run: RunContext | None) -> None:
        """The record, after whatever events are pending (one round trip)."""
        if run is not None and run.transcript is not None and self.store is not None:
            await self._flush(run, record=True)

    # -- the trace (RFC-0008 events), written in batches ----------------------------------
    def _note(self, run: RunContext | None, event_type: EventType, **fields: Any) -> None:
        """Queue an event: events are written in pipelines at the points where they must
        be visible (before a request or a tool runs, with the round's record), not one
        round trip each. A payload that fails its checks is a warning, not a failure."""
        if run is None:
            return
        try:
            payload = observation_payload(event_type, fields)
            run.pending.append(
                self.client._ops.log_event(run.intent.id, event_type, payload.body())
            )
        except Exception as exc:
            _log.warning("agent %s: could not log %s: %s", self.agent.agent_id, event_type, exc)

    async def _flush(self, run: RunContext | None, *, record: bool = False) -> None:
        """Write the pending events (best-effort) and, with ``record``, the conversation
        (not best-effort: a round whose record was not written must not look done)."""
        if run is None:
            return
        calls, run.pending = run.pending, []
        runner = self.client._runner
        batch: list[Any] = []
        try:
            batch = [runner._evalsha(c) for c in calls]
        except Exception as exc:
            _log.warning("agent %s: could not log: %s", self.agent.agent_id, exc)
            calls, batch = [], []
        if record:
            assert self.store is not None and run.transcript is not None
            lease_id = run.lease.id if run.lease is not None else None
            calls.append(self.store.call(run.intent.id, run.transcript, lease_id))
            batch.append(runner._evalsha(calls[-1]))
        if not batch:
            return
        try:
            replies = list(await runner._pipeline(batch))
        except Exception as exc:
            if record:
                raise translate(exc) from exc
            _log.warning("agent %s: could not log: %s", self.agent.agent_id, exc)
            return
        missing = [n for n, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:  # a server restarted without scripts: load them, write those again
            try:
                again = await runner.call_many([calls[n] for n in missing])
            except Exception as exc:
                again = [exc] * len(missing)
            for n, reply in zip(missing, again, strict=True):
                replies[n] = reply
        if record and isinstance(replies[-1], Exception):
            raise translate(replies[-1], script=True)
        for reply in replies[: len(calls) - record]:
            if isinstance(reply, Exception):
                _log.warning("agent %s: could not log: %s", self.agent.agent_id, reply)

    async def _visible(self, run: RunContext | None, work: Awaitable[T]) -> T:
        """Await ``work`` (a request, a tool); if it is still running after
        ``VISIBLE_AFTER`` seconds, write the pending events meanwhile, so a slow request or
        a stuck tool shows as started. Quick ones leave theirs to the next write: a round
        of a fast model with fast tools costs one round trip, not one per event."""
        if run is None or not run.pending:
            return await work
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait([task], timeout=VISIBLE_AFTER)
            if done:
                return task.result()
            flushing = asyncio.ensure_future(self._flush(run))
            try:
                return await task
            finally:
                with anyio.CancelScope(shield=True):
                    await flushing
        except BaseException:
            task.cancel()
            raise

    # -- requests ----------------------------------------------------------------------------
    async def _request(
        self,
        run: RunContext | None,
        msgs: Sequence[Message],
        streaming: bool,
        on_token: Callable[[str], Any] | None,
    ) -> tuple[Reply, str]:
        s, name = self.settings, self.provider.name
        request_id = str(uuid.uuid4())
        common: dict[str, Any] = {
            "provider": name,
            "model": s.model,
            "request_id": request_id,
            "messages_count": len(msgs),
        }
        self._note(
            run,
            EventType.LLM_REQUEST_STARTED,
            **common,
            tools_available=self.tool_names,
            stream=streaming,
            temperature=s.temperature,
            max_tokens=s.max_tokens,
        )
        stream_id = str(uuid.uuid4())
        if streaming:
            self._note(
                run,
                EventType.STREAM_STARTED,
                provider=name,
                model=s.model,
                stream_id=stream_id,
                request_id=request_id,
            )
        started = time.perf_counter()
        try:
            if streaming:
                work = self._stream(run, request_id, stream_id, msgs, on_token, started)
            else:
                work = self.provider.complete(msgs, self.specs, self.request)
            reply = await self._visible(run, work)
        except Exception as exc:
            self._note(
                run,
                EventType.LLM_REQUEST_FAILED,
                **common,
                error=_describe(exc),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            with anyio.CancelScope(shield=True):
                await self._flush(run)
            raise
        usage = reply.usage
        fields: dict[str, Any] = {
            **common,
            "response_content": _cut(reply.text, MAX_LOGGED_CHARS) or None,
            "tool_calls": [{"tool_id": c.id, "tool_name": c.name} for c in reply.tool_calls]
            or None,
            "finish_reason": reply.finish_reason,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        price = s.price(reply.model or s.model) or s.price(s.model)
        if price is None or run is None:
            self._note(run, EventType.LLM_REQUEST_COMPLETED, **fields)
        else:  # a cost record too: the client's call, after what is pending
            await self._flush(run)
            try:
                await self.client.log_llm_request_completed(
                    run.intent.id,
                    **fields,
                    prompt_price_per_1k=price[0],
                    completion_price_per_1k=price[1],
                    cost_unit=s.cost_unit,
                )
            except BudgetExceededError:
                raise  # the intent's budget refuses the spend: the loop stops
            except Exception as exc:
                _log.warning("agent %s: could not log the cost: %s", self.agent.agent_id, exc)
        return reply, request_id

    async def _stream(
        self,
        run: RunContext | None,
        request_id: str,
        stream_id: str,
        msgs: Sequence[Message],
        on_token: Callable[[str], Any] | None,
        started: float,
    ) -> Reply:
        s, name = self.settings, self.provider.name
        ids = {"provider": name, "model": s.model, "stream_id": stream_id}
        chunks = tokens = 0
        reply: Reply | None = None
        source = self.provider.stream(msgs, self.specs, self.request)
        try:
            async for event in source:
                chunks += 1
                if event.token:
                    tokens += 1
                    await _emit(on_token, event.token)
                if event.reply is not None:
                    reply = event.reply
            if reply is None:
                raise ConfigurationError(f"provider {name}'s stream ended without its final reply")
        except BaseException as exc:
            self._note(
                run,
                EventType.STREAM_CANCELLED,
                **ids,
                reason=_describe(exc),
                chunks_received=chunks,
                tokens_streamed=tokens,
                request_id=request_id,
            )
            raise
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
        self._note(
            run,
            EventType.STREAM_COMPLETED,
            **ids,
            chunks_received=chunks,
            tokens_streamed=reply.usage.completion_tokens or tokens,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            request_id=request_id,
        )
        return reply

    # -- tools -------------------------------------------------------------------------------
    async def _execute(self, run: RunContext | None, call: ToolCall, request_id: str) -> str:
        """Run one tool call; whatever goes wrong becomes the model's to read. Its
        ``tool_call_started`` is written before the tool runs (a stuck tool shows)."""
        s = self.settings
        ids = {"provider": self.provider.name, "model": s.model, "parent_request_id": request_id}
        base = {"tool_name": call.name, "tool_id": call.id, "arguments": call.arguments}
        self._note(run, EventType.TOOL_CALL_STARTED, **base, **ids)
        started = time.perf_counter()
        try:
            result = await self._visible(run, self._dispatch(run, call))
        except Exception as exc:
            error = _describe(exc)
            self._note(
                run,
                EventType.TOOL_CALL_FAILED,
                **base,
                **ids,
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            return _json({"error": error})
        text = _cut(_json(result), MAX_RESULT_CHARS)
        logged = result if len(text) <= MAX_LOGGED_CHARS else _cut(text, MAX_LOGGED_CHARS)
        self._note(
            run,
            EventType.TOOL_CALL_COMPLETED,
            **base,
            **ids,
            result=logged,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return text

    async def _dispatch(self, run: RunContext | None, call: ToolCall) -> Any:
        """Protocol tools first, then the agent's own."""
        name, args = call.name, call.arguments
        spec = self.protocol.get(name)
        if spec is None:
            custom = self.custom.get(name)
            if custom is None:
                raise ValidationError(
                    f"there is no tool named {name!r}; the tools are: "
                    + ", ".join(self.tool_names),
                    field="name",
                )
            return await custom.invoke(args)
        problems = check_arguments(spec.parameters, args)
        if problems:
            raise ValidationError(f"invalid arguments for {name}: " + "; ".join(problems))
        me = self.agent.agent_id
        if name == "remember":
            memory = cast(_Memory, self.client)
            rec = await memory.remember(
                str(args["key"]),
                args["value"],
                agent_id=me,
                memory_type=self.settings.memory or "episodic",
                tags=tuple(args.get("tags") or ()),
            )
            stored = getattr(rec, "key", args["key"])
            return {"stored": stored, "version": getattr(rec, "version", None)}
        if name == "recall":
            limit = max(1, min(int(args.get("limit") or self.settings.memory_limit), 20))
            found = await cast(_Memory, self.client).recall(
                str(args["query"]), agent_id=me, limit=limit
            )
            return {"memories": [_record(r) for r in found]}
        if run is None:
            raise ValidationError(
                f"{name} acts on the current intent, and think() was called outside an "
                "assignment handler"
            )
        client, intent_id = self.client, run.intent.id
        if name == "update_status":
            patch = args["patch"]
            if not patch:
                raise ValidationError("update_status needs at least one key to set")
            try:
                intent = await client.update_state(intent_id, run.version, patch, lease=run.lease)
            except ConflictError as exc:
                if exc.current_version is not None:
                    run.version = exc.current_version
                raise
            run.version = intent.version
            return {"updated": sorted(patch), "version": intent.version}
        if name == "escalate":
            arb = await client.request_arbitration(
                intent_id,
                str(args["reason"]),
                context={"kind": "escalation", "agent_id": me, "tool_call_id": call.id},
            )
            return {"escalated": True, "arbitration_id": arb.id}
        if name == "record_decision":
            rec = await client.record_decision(
                intent_id, str(args["decision"]), str(args["rationale"]), decision_type="llm"
            )
            return {"decision_id": rec.id}
        if name == "delegate":
            return await self._delegate(run, call)
        if name == "create_plan":
            return await self._create_plan(run, call)
        raise ValidationError(f"{name} is not available here")  # clarify, outside a run

    def _check_agent(self, agent_id: Any) -> str:
        if not isinstance(agent_id, str) or not agent_id:
            raise ValidationError("an agent id is needed", field="agent_id")
        if self.managed and agent_id not in self.managed:
            raise ValidationError(
                f"{agent_id!r} is not one of your agents ({', '.join(self.managed)})",
                field="agent_id",
            )
        return agent_id

    async def _sub_intent(
        self,
        run: RunContext,
        key: str,
        title: str,
        description: str | None,
        assign: str,
        depends_on: Sequence[str],
    ) -> Intent:
        """A child of the run's intent, assigned; the parent then depends on it, so the
        parent (blocked meanwhile) becomes active again when its children are done and
        its handler is re-delivered: the graph rules, not a poller, bring it back."""
        client = self.client
        child = await client.create_child_intent(
            run.intent.id,
            title,
            description,
            depends_on=list(depends_on) or None,
            assign=assign,
            created_by=self.agent.agent_id,
            idempotency_key=f"llm:{self.agent.agent_id}:{run.intent.id}:{key}",
        )
        parent = await client.add_dependency(run.intent.id, child.id)
        run.version = parent.version
        run.titles[title] = child.id
        return child

    def _dependencies(self, run: RunContext, names: Any, planned: Mapping[str, str]) -> list[str]:
        out = []
        for name in names or ():
            found = planned.get(name) or run.titles.get(name)
            if found is None:
                raise ValidationError(f"depends_on names {name!r}, which is no task of yours")
            out.append(found)
        return out

    async def _delegate(self, run: RunContext, call: ToolCall) -> Any:
        args = call.arguments
        agent_id = self._check_agent(args["agent_id"])
        deps = self._dependencies(run, args.get("depends_on"), {})
        child = await self._sub_intent(
            run, call.id, str(args["title"]), str(args["description"]), agent_id, deps
        )
        delegation = await self.client.create_delegation(
            agent_id, {"intents": [child.id], "actions": ["work"]}
        )
        return {
            "intent_id": child.id,
            "assigned_to": agent_id,
            "status": str(child.status),
            "delegation_id": delegation.id,
        }

    async def _create_plan(self, run: RunContext, call: ToolCall) -> Any:
        from oibus.sdk.coordinator import IntentSpec, plan_order  # coordinator imports us

        raw = call.arguments["steps"]
        if not raw:
            raise ValidationError("a plan needs at least one step", field="steps")
        specs = []
        for step in raw:
            self._check_agent(step.get("assign"))
            specs.append(
                IntentSpec(
                    title=str(step["title"]),
                    description=step.get("description"),
                    assign=step["assign"],
                    depends_on=tuple(str(d) for d in step.get("depends_on") or ()),
                )
            )
        ordered = plan_order(specs)  # unknown names and cycles fail before anything is made
        made: dict[str, str] = {}
        out = []
        for n, spec in enumerate(ordered):
            deps = self._dependencies(run, spec.depends_on, made)
            assert spec.assign is not None
            child = await self._sub_intent(
                run, f"{call.id}:{n}", spec.title, spec.description, spec.assign, deps
            )
            made[spec.title] = child.id
            out.append(
                {
                    "title": spec.title,
                    "intent_id": child.id,
                    "assign": spec.assign,
                    "depends_on": list(spec.depends_on),
                    "status": str(child.status),
                }
            )
        return {"plan": out}

    # -- clarify -------------------------------------------------------------------------------
    async def _clarify(self, run: RunContext, call: ToolCall, request_id: str) -> Awaiting | str:
        """The question becomes an arbitration request; its answer is awaited, not
        computed, so the call is logged as started and completes when it is answered."""
        problems = check_arguments(self.protocol["clarify"].parameters, call.arguments)
        if problems:
            return await self._execute(run, call, request_id)  # logs and returns the error
        question = str(call.arguments["question"])
        s = self.settings
        self._note(
            run,
            EventType.TOOL_CALL_STARTED,
            tool_name=call.name,
            tool_id=call.id,
            arguments=call.arguments,
            provider=self.provider.name,
            model=s.model,
            parent_request_id=request_id,
        )
        await self._flush(run)
        try:
            arb = await self.client.request_arbitration(
                run.intent.id,
                question,
                options=list(call.arguments.get("options") or []) or None,
                context={
                    "kind": "clarify",
                    "agent_id": self.agent.agent_id,
                    "tool_call_id": call.id,
                },
            )
        except Exception as exc:
            return _json({"error": _describe(exc)})
        return Awaiting(arbitration_id=arb.id, tool_call_id=call.id, question=question)

    async def _answered(self, run: RunContext, t: Transcript, turn: Turn) -> bool:
        """Whether the awaited clarification was answered: if so, the answer is added as
        the clarify call's result and the loop goes on."""
        aw = turn.awaiting
        assert aw is not None
        arb = await self._arbitration(run.intent.id, aw.arbitration_id)
        if arb is None or arb.status != "resolved":
            return False
        answer = {
            "answer": arb.resolution,
            "rationale": arb.rationale,
            "answered_by": arb.resolved_by,
        }
        content = _json(answer)
        t.messages.append(
            Message(role="tool", content=content, tool_call_id=aw.tool_call_id, name="clarify")
        )
        self._note(
            run,
            EventType.TOOL_CALL_COMPLETED,
            tool_name="clarify",
            tool_id=aw.tool_call_id,
            arguments={"question": aw.question},
            result=answer,
            provider=self.provider.name,
            model=self.settings.model,
        )
        turn.awaiting = None
        return True

    async def _suspend(self, run: RunContext, turn: Turn) -> dict[str, Any]:
        aw = turn.awaiting
        assert aw is not None
        client = self.client
        # already suspended: a resumed handler whose question is still open
        with contextlib.suppress(InvalidTransitionError):
            await client.set_status(
                run.intent.id, None, "suspended_awaiting_input", reason=_cut(aw.question, 1000)
            )
        # answered before the suspension landed: its event found the intent active and
        # did nothing, so bring the intent back here (the re-delivery then resumes it)
        arb = await self._arbitration(run.intent.id, aw.arbitration_id)
        if arb is not None and arb.status == "resolved":
            await self.reactivate(run.intent.id, aw.arbitration_id)
        run.suspended = {
            "status": "awaiting_response",
            "question": aw.question,
            "arbitration_id": aw.arbitration_id,
        }
        return dict(run.suspended)

    async def _arbitration(self, intent_id: str, arbitration_id: str) -> ArbitrationRequest | None:
        found = await self.client.get_arbitrations(intent_id)
        return next((a for a in found if a.id == arbitration_id), None)

    async def reactivate(self, intent_id: str, arbitration_id: str) -> bool:
        """An arbitration was resolved: if it answers this agent's open question on a
        suspended intent, move the intent back to active (its ``status_changed`` re-delivers
        the work to one replica). Anything else is not ours to move."""
        if self.store is None:
            return False
        intent = await self.client.get_intent(intent_id)
        if intent.status != "suspended_awaiting_input" or self.agent.agent_id not in (
            intent.assigned_agents or ()
        ):
            return False
        record = await self.store.load(intent_id)
        if record is None or not any(
            t.awaiting is not None and t.awaiting.arbitration_id == arbitration_id
            for t in record.turns
        ):
            return False
        try:
            await self.client.set_status(
                intent_id, intent.version, "active", reason="clarification answered"
            )
        except (ConflictError, InvalidTransitionError):
            return False  # someone moved it meanwhile (a human, another replica)
        return True


_END: Final = object()


class TokenStream:
    """What ``think_stream`` returns: an async iterator of tokens, which may also be
    awaited first (the seed writes ``async for t in await self.think_stream(...)``).
    The ``think()`` behind it runs as a task started at the first ``__anext__``; its
    result (the whole answer, or the ``awaiting_response`` dict) is ``.result`` at the
    end, and its error is raised from the iteration."""

    def __init__(self, engine: Engine, prompt: str) -> None:
        self._engine = engine
        self._prompt = prompt
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.result: Any = None

    def __await__(self) -> Generator[Any, None, TokenStream]:
        async def itself() -> TokenStream:
            return self

        return itself().__await__()

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        item = await self._queue.get()
        if item is _END:
            await self._task
            raise StopAsyncIteration
        return cast(str, item)

    async def _run(self) -> None:
        try:
            self.result = await self._engine.think(
                self._prompt, stream=True, on_token=self._queue.put_nowait
            )
        finally:
            self._queue.put_nowait(_END)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._task])
