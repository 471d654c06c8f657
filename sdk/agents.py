"""Agents: classes whose decorated methods handle the events of the intents assigned to
them, driven by a Redis consumer group (no polling).

Every process running an agent named ``researcher`` is a replica: all of them consume
the partition buses as consumers of the one group ``agent:researcher``, so each event
(an assignment included) goes to one replica, and adding replicas spreads the work. A
replica that dies holding events has them taken over by another once its heartbeat
expires (``sdk/_async/events.py``).

Running an assignment (``on_assignment``):

1. take a lease on the agent's scope of the intent (waiting while another holder's lease
   runs out: a replica that died mid-handler leaves one behind), renewed in the
   background for as long as the handler runs;
2. read the intent; skip it unless it is ``active`` and still assigned to this agent;
3. run the handler. If the lease is lost meanwhile the handler is cancelled and nothing
   is written; a returned dict is patched into the state with the version read in step
   2 and the lease presented (so a superseded holder can never write), then the intent
   is completed (``auto_complete``);
4. an exception (or a lost lease, or a conflicting write) is recorded as a failure
   (RFC-0010): the intent's retry policy decides whether the daemon dispatches a retry
   and, once retries are exhausted, hands the intent to the fallback agent;
5. release the lease and acknowledge the event.

With ``model=`` an agent also has an LLM engine (``oibus.sdk.llm.engine``): ``self.think``
and friends, the tool loop, its conversation persisted per intent so that the replica
that takes a killed agent's intent over resumes it. Two more events drive such an agent:
``arbitration_resolved`` answering its ``clarify`` question moves the suspended intent
back to ``active``, and that ``status_changed`` (suspended to active) re-delivers the work.
A handler whose ``think()`` suspended the intent writes nothing and does not complete it;
one whose intent waits for the sub-intents its model delegated (``blocked``) writes its
result and completes when re-delivered after them. Agents without ``model=`` behave as
they always did.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Final, NamedTuple, TypeVar

import anyio
import msgspec
from anyio import from_thread

from oibus.bus.codec import decode_intent, decode_lease
from oibus.bus.consuming import START_BEGINNING, Delivery, check_name
from oibus.bus.errors import (
    BatchError,
    CompletionGateError,
    ConfigurationError,
    IntentClosedError,
    InvalidTransitionError,
    LeaseConflictError,
    NotFoundError,
    OpenIntentError,
    ValidationError,
)
from oibus.bus.models import Intent, Lease
from oibus.bus.ops import new_uuid
from oibus.bus.routing import (
    HandlerSpec,
    Work,
    move_of,
    observers,
    payload_types,
    relevant_types,
    route_table,
    work_for,
)
from oibus.sdk._async.batch import Pending
from oibus.sdk._async.client import AsyncClient
from oibus.sdk._async.events import AsyncEventStream, default_consumer
from oibus.sdk.handlers import arity, call, discover, is_async
from oibus.sdk.llm.engine import LLM_OPTIONS, Engine, LLMSettings, RunContext, current_run

_log = logging.getLogger("oibus.agent")
_LLM_TYPES = frozenset({"arbitration_resolved", "status_changed"})
_LLM_PAYLOADS = frozenset({"arbitration_resolved"})
_SCOPE_PART = re.compile(r"[^A-Za-z0-9_-]+")
C = TypeVar("C", bound=type)


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How an agent runs. ``lease_scope`` defaults to ``agent.<agent id>`` (the scope it
    leases on each intent it works on); ``start`` applies when the agent's group is first
    created (``"start"``: assignments made before the agent ever ran are handled too)."""

    agent_id: str
    max_concurrency: int = 10
    auto_complete: bool = True
    lease_scope: str | None = None
    lease_seconds: float = 30.0
    lease_wait_seconds: float = 300.0
    heartbeat_ttl: float = 10.0
    drain_timeout: float = 30.0
    start: str = START_BEGINNING
    block_seconds: float = 1.0
    max_deliveries: int = 5
    llm: LLMSettings | None = None
    """Set by ``model=`` and its options (``LLMSettings``): the agent thinks with an LLM."""

    def scope(self) -> str:
        if self.lease_scope is not None:
            return self.lease_scope
        part = _SCOPE_PART.sub("_", self.agent_id)[:100] or "agent"
        return f"agent.{part}"

    @property
    def group(self) -> str:
        return f"agent:{self.agent_id}"


def _check(config: AgentConfig) -> AgentConfig:
    check_name(config.agent_id, "agent_id")
    if config.max_concurrency < 1:
        raise ValidationError("max_concurrency must be at least 1", field="max_concurrency")
    if not 0.5 <= config.lease_seconds <= 86_400:
        raise ValidationError("lease_seconds must be from 0.5 to 86400", field="lease_seconds")
    return config


CHEAP_SECONDS: Final = 0.002
CHEAP_AFTER: Final = 32
"""An observer that returned within ``CHEAP_SECONDS`` this many times (net: a slow run
takes 8 off) is cheap: its deliveries are run one after another in a shared task. One
slow run (a handler that started waiting on something) makes it not cheap, and the rest
of its batch gets a task each, so a slow handler delays at most the one batch it was
found slow in; a lone spike (the process was descheduled) costs only 8 quick runs."""
CHEAP_BATCH: Final = 64
MAX_READ: Final = 500
"""The most entries one read asks for (a batch of cheap deliveries per free slot)."""


_WORK_SCRIPTS: Final = frozenset(
    {"acquire_lease", "get_intent", "renew_lease", "update_state", "set_status", "release_lease"}
)
"""The scripts an assignment runs: loaded when an agent with work handlers starts."""


class _Turn:
    """The runs of one intent in this process, one at a time (``_run_work``)."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Observer(NamedTuple):
    """A non-work handler with what calling it needs, worked out once at start (an
    observer is called per event: the per-call look-ups showed in drain profiles)."""

    handler: Callable[..., Any]
    spec: HandlerSpec
    arity: int
    direct: bool
    """An async ``on_event`` handler of the event alone: awaited as it is."""


def _observer(handler: Callable[..., Any], spec: HandlerSpec) -> Observer:
    n = arity(handler)
    return Observer(handler, spec, n, spec.kind == "event" and n == 1 and is_async(handler))


class _Runtime:
    """A running agent's state, made by ``start`` (an agent class's own ``__init__`` need
    not call ours)."""

    def __init__(self, owner: AgentBase) -> None:
        self.client: AsyncClient | None = None
        self.owns_client = False
        self.stream: AsyncEventStream | None = None
        self.reader: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.slot_freed = asyncio.Event()
        self.stopped = asyncio.Event()
        self.stopping = False
        self.flusher: asyncio.Task[None] | None = None
        self.engine: Engine | None = None
        self.waiting: deque[tuple[Delivery, tuple[Work | None, list[int]]]] = deque()
        self.working: dict[str, _Turn] = {}
        handlers = discover(owner)
        self.work = [h for h, s in handlers if s.kind == "assignment"]
        self.retry = [h for h, s in handlers if s.kind == "retry"]
        self.observers = [
            _observer(h, s) for h, s in handlers if s.kind not in ("assignment", "retry")
        ]
        self.specs = [o.spec for o in self.observers]
        self.routes = route_table(self.specs)
        self.fast = [0] * len(self.observers)
        """Per observer: how many of its latest runs in a row were quick (``CHEAP_SECONDS``)."""

    def cheap(self, work: Work | None, hits: list[int]) -> bool:
        """A delivery that calls only observers proven quick: it may share a task with
        others (``CHEAP_BATCH``) instead of costing a task of its own."""
        if work is not None or not hits or self.engine is not None:
            return False
        return min(map(self.fast.__getitem__, hits)) >= CHEAP_AFTER

    def timed(self, n: int, seconds: float) -> None:
        fast = self.fast[n]
        self.fast[n] = min(fast + 1, CHEAP_AFTER) if seconds < CHEAP_SECONDS else max(0, fast - 8)


class _Serving:
    """``run`` works on the class (a new instance) and on an instance alike."""

    def __init__(self, func: Callable[..., None]) -> None:
        self.func = func

    def __get__(self, obj: Any, cls: type) -> Callable[..., None]:
        def bound(*args: Any, **kwargs: Any) -> None:
            self.func(obj if obj is not None else cls(), *args, **kwargs)

        return bound


class AgentBase:
    """What ``@agent`` mixes into a class: ``start``/``stop``/``run`` and helpers."""

    _oibus_config: ClassVar[AgentConfig]
    _oibus_own_config: AgentConfig | None = None
    _oibus_rt: _Runtime | None = None

    @property
    def _rt(self) -> _Runtime:
        if self._oibus_rt is None:
            self._oibus_rt = _Runtime(self)
        return self._oibus_rt

    # -- identity and helpers -------------------------------------------------------------
    @property
    def config(self) -> AgentConfig:
        return self._oibus_own_config or type(self)._oibus_config

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    @property
    def client(self) -> AsyncClient:
        """The agent's client (its agent id is the actor of what it writes)."""
        if self._rt.client is None:
            raise RuntimeError("the agent is not started")
        return self._rt.client

    async def log(self, intent_id: str, message: str, **data: Any) -> None:
        """A comment on the intent's log, as this agent."""
        await self.client.log_event(intent_id, "comment", {"message": message, **data})

    async def patch_state(self, intent_id: str, state: Mapping[str, Any]) -> Intent:
        """Set top-level keys of an intent's state (the seeds' helper). On the intent this
        handler works on, the write carries the agent's lease and the version it last
        wrote, and the handler's own result is then written on top of it."""
        run = current_run.get()
        if run is not None and run.intent.id == intent_id:
            intent = await self.client.update_state(intent_id, run.version, state, lease=run.lease)
            run.version = intent.version
            return intent
        return await self.client.update_state(intent_id, None, state)

    async def escalate(self, intent_id: str, reason: str, **context: Any) -> Any:
        """Ask a supervisor to look at the intent: an arbitration request (RFC-0003) with
        ``context["kind"] == "escalation"``, pending until someone resolves it."""
        return await self.client.request_arbitration(
            intent_id, reason, context={"kind": "escalation", "agent_id": self.agent_id, **context}
        )

    # -- the LLM engine (model=) --------------------------------------------------------
    @property
    def engine(self) -> Engine:
        engine = self._rt.engine
        if engine is None:
            if self.config.llm is None:
                raise ConfigurationError(
                    f"agent {self.agent_id} has no model: pass model= to @agent to use think()"
                )
            raise RuntimeError("the agent is not started")
        return engine

    def think(
        self,
        prompt: str,
        *,
        stream: bool | None = None,
        on_token: Callable[[str], Any] | None = None,
    ) -> Any:
        """Send ``prompt`` through the tool loop; the model's answer (text), or
        ``{"status": "awaiting_response", ...}`` when it asked a human (``clarify``).
        ``stream=True`` or ``on_token`` streams the answer's tokens to ``on_token``.

        An async handler awaits it. A plain ``def`` handler runs in a worker thread, where
        nothing can be awaited: there ``think()`` runs the loop on the agent's event loop
        and returns the answer itself, so a sync handler writes ``self.think(p)``."""
        work = partial(self.engine.think, prompt, stream=stream, on_token=on_token)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a sync handler's worker thread
            return from_thread.run(work)
        return work()

    def think_stream(self, prompt: str) -> Any:
        """The answer's tokens as an async iterator (``async for t in self.think_stream(p)``;
        awaiting it first works too). Its ``.result`` is the whole answer at the end."""
        return self.engine.think_stream(prompt)

    def reset_conversation(self) -> None:
        """The next ``think()`` starts from a fresh context."""
        self.engine.reset_conversation()

    # -- lifecycle ------------------------------------------------------------------------
    async def start(
        self,
        redis_url: str | None = None,
        *,
        client: AsyncClient | None = None,
        consumer: str | None = None,
        **client_options: Any,
    ) -> None:
        """Join the agent's group and start handling events in the background. Pass a
        ``client`` to share one (its agent id should be this agent's), or a URL and
        ``AsyncClient`` options (``namespace``, ``partitions``, ...)."""
        if self._rt.reader is not None:
            raise RuntimeError("the agent is already running")
        cfg = self.config
        works = bool(self._rt.work or self._rt.retry)
        engine = None
        if cfg.llm is not None:  # provider and tools resolve now: fail the start, not a run
            engine = Engine(self, cfg.llm, coordinator=getattr(self, "_oibus_coordinator", False))
        if client is None:
            client = AsyncClient(redis_url, agent_id=cfg.agent_id, **client_options)
            self._rt.owns_client = True
        self._rt.client = client
        event_types = relevant_types(self._rt.specs, works)
        payloads = payload_types(self._rt.specs, works)
        if engine is not None:
            try:
                engine.attach(client)
            except ConfigurationError:
                if self._rt.owns_client:
                    await client.aclose()
                self._rt.client = None
                raise
            event_types |= _LLM_TYPES
            payloads |= _LLM_PAYLOADS
        self._rt.engine = engine
        self._rt.stream = client.events(
            cfg.group,
            consumer or default_consumer(),
            start=cfg.start,
            count=min(500, max(cfg.max_concurrency, 64)),
            block_seconds=cfg.block_seconds,
            auto_ack=False,
            heartbeat_ttl=cfg.heartbeat_ttl,
            max_deliveries=cfg.max_deliveries,
            event_types=event_types,
            assigned_to=cfg.agent_id,
            payloads=payloads,
        )
        await self._rt.stream.ensure_group()
        if works:
            # what the first assignment would otherwise pay before its handler starts:
            # the namespace check and a SCRIPT LOAD per script of the work path, one
            # round trip each (measured: the first assignments at 1,000/s waited 20-55 ms)
            if not client._meta_checked:
                await client._check_meta()
            await client._runner.ensure_loaded(_WORK_SCRIPTS)
        self._rt.stopped.clear()
        self._rt.stopping = False
        self._rt.waiting.clear()
        self._rt.reader = asyncio.ensure_future(self._read_loop())

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop taking events; let handlers in flight finish (up to ``drain_timeout``),
        then cancel the rest: their events were not acknowledged and go back to the
        group, where another replica takes them at once (the heartbeat is deleted)."""
        rt = self._rt
        if rt.reader is None:
            return
        # the reader ends after its current read (at most block_seconds): a read
        # cancelled half-way may have been handed entries it never sees
        rt.stopping = True
        rt.slot_freed.set()
        try:
            await asyncio.wait_for(asyncio.shield(rt.reader), self.config.block_seconds + 5)
        except (TimeoutError, asyncio.CancelledError):
            rt.reader.cancel()
            await asyncio.wait([rt.reader], timeout=5)
        rt.reader = None
        if self._rt.tasks:
            wait = self.config.drain_timeout if drain_timeout is None else drain_timeout
            _, late = await asyncio.wait(set(self._rt.tasks), timeout=wait)
            for task in late:
                task.cancel()
            if late:  # bounded: a command cancelled mid-read may never finish
                await asyncio.wait(late, timeout=5)
        if self._rt.stream is not None:
            await self._rt.stream.aclose()
            self._rt.stream = None
        if self._rt.owns_client and self._rt.client is not None:
            await self._rt.client.aclose()
        self._rt.client = None
        self._rt.stopped.set()

    async def wait(self) -> None:
        """Until the agent is stopped (or its reading fails for good)."""
        await self._rt.stopped.wait()

    @_Serving
    def run(self, redis_url: str | None = None, **options: Any) -> None:
        """Run one replica until SIGINT/SIGTERM (blocking), then stop gracefully. On the
        class (``Researcher.run(url)``) it makes the instance first."""

        async def main() -> None:
            await self.start(redis_url, **options)
            # this process is the agent's: what imports and start-up made lives as long
            # as it does, so the collector stops walking it (a full collection over it
            # took 16-42 ms, the agent's worst assignment latencies; profiled)
            gc.freeze()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with suppress(NotImplementedError):
                    loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.stop()))
            await self.wait()

        _run_loop(main())

    # -- reading --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        """Read only when every event read before has a handler slot: a read over several
        streams may return up to its count from each, so the surplus waits here (held
        by this consumer, so no other replica takes it while this one lives)."""
        rt = self._rt
        assert rt.stream is not None
        stream, limit = rt.stream, self.config.max_concurrency
        loop = asyncio.get_running_loop()
        waiting, tasks = rt.waiting, rt.tasks
        while not rt.stopping:
            while waiting and len(tasks) < limit:
                delivery, plan = waiting.popleft()
                if rt.cheap(*plan):
                    shared = [(delivery, plan)]
                    while len(shared) < CHEAP_BATCH and waiting and rt.cheap(*waiting[0][1]):
                        shared.append(waiting.popleft())
                    self._spawn(loop, self._handle_shared(shared))
                else:
                    self._spawn(loop, self._handle(delivery, *plan))
            free = limit - len(tasks)
            if free <= 0 or waiting:
                rt.slot_freed.clear()
                await rt.slot_freed.wait()
                continue
            # observers proven cheap share tasks: read enough to fill the free slots' batches
            if rt.observers and all(f >= CHEAP_AFTER for f in rt.fast):
                free = min(free * CHEAP_BATCH, MAX_READ)
            try:
                batch = await stream.read(free)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server went away: wait, then read again
                _log.warning("agent %s: reading failed: %s", self.agent_id, exc)
                await asyncio.sleep(1.0)
                continue
            me = self.agent_id
            for delivery in batch:
                todo = self._plan(delivery, rt, me)
                if todo is None:
                    stream.ack_later(delivery)
                else:
                    rt.waiting.append((delivery, todo))

    def _spawn(self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(work)
        self._rt.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._rt.tasks.discard(task)
        self._rt.slot_freed.set()

    async def _handle_shared(
        self, shared: list[tuple[Delivery, tuple[Work | None, list[int]]]]
    ) -> None:
        """Cheap deliveries (observers only) one after another in one task; if one turns
        out slow, the rest each get a task of their own (the slots' limit is not checked
        for them: they were read for this batch and are held by this consumer already).
        Acknowledged together at the end, like ``_handle``'s."""
        rt = self._rt
        stream, observers, timed, clock = rt.stream, rt.observers, rt.timed, time.monotonic
        assert stream is not None
        done = 0
        try:
            for d, (_, hits) in shared:
                try:
                    if len(hits) == 1 and observers[hits[0]].direct:
                        # the common case inline (as _observe_all times it): a coroutine
                        # less per event, which showed in drain profiles
                        began = clock()
                        try:
                            await observers[hits[0]].handler(d.event)
                        finally:
                            took = clock() - began
                            timed(hits[0], took)
                        slow = took >= CHEAP_SECONDS
                    else:
                        slow = await self._observe_all(d, hits)
                except asyncio.CancelledError:
                    raise  # stopping: the rest go back to the group
                except Exception as exc:
                    _log.exception(
                        "agent %s: handling %s failed: %s", self.agent_id, d.event.event_type, exc
                    )
                    slow = False
                done += 1
                if slow:
                    loop = asyncio.get_running_loop()
                    for rest, plan in shared[done:]:
                        self._spawn(loop, self._handle(rest, *plan))
                    return
        finally:
            stream.ack_later(*(d for d, _ in shared[:done]))
            self._flush_soon(stream)

    async def _observe_all(self, d: Delivery, hits: list[int]) -> bool:
        """Call the observers a delivery hits, timing each (``_Runtime.timed``); True when
        one of them was slow."""
        rt, clock = self._rt, time.monotonic
        subject: list[Any] = []  # the intent (or portfolio), read once for all observers
        slow = False
        for n in hits:
            observer = rt.observers[n]
            began = clock()
            try:
                if observer.direct:  # the common case, without a coroutine of ours around it
                    await observer.handler(d.event)
                else:
                    await self._observe(d, observer, subject)
            finally:
                took = clock() - began
                rt.timed(n, took)
                slow = slow or took >= CHEAP_SECONDS
        return slow

    def _plan(self, d: Delivery, rt: _Runtime, me: str) -> tuple[Work | None, list[int]] | None:
        """What a delivery calls (None: nothing, acknowledge it). Called per event read,
        with the runtime and the agent id looked up once per batch by the caller."""
        e = d.event
        work = None
        if rt.work or rt.retry:
            work = work_for(me, e.event_type, e.payload, d.agents, d.portfolio_id, d.hint)
            if work is None and rt.engine is not None and self._resumes(d):
                work = Work(reason="unblocked")  # a clarified intent is ready again
            if work is not None and not (rt.work or (work.reason == "retry" and rt.retry)):
                work = None
        hits = (
            observers(
                me, rt.specs, e.event_type, e.payload, d.agents, d.portfolio_id, d.hint, rt.routes
            )
            if rt.specs
            else []
        )
        if work is None and not hits and not (rt.engine is not None and self._answers(d)):
            return None
        return work, hits

    def _resumes(self, d: Delivery) -> bool:
        """An LLM agent's intent back from ``suspended_awaiting_input`` (its question was
        answered): the work is delivered again, and ``think()`` resumes."""
        e = d.event
        return (
            self._rt.engine is not None
            and e.event_type == "status_changed"
            and d.portfolio_id is None
            and self.agent_id in d.agents
            and move_of(e.payload, d.hint) == ("suspended_awaiting_input", "active")
        )

    def _answers(self, d: Delivery) -> bool:
        e = d.event
        return (
            self._rt.engine is not None
            and e.event_type == "arbitration_resolved"
            and d.portfolio_id is None
            and self.agent_id in d.agents
        )

    async def _handle(self, d: Delivery, work: Work | None, hits: list[int]) -> None:
        rt = self._rt
        stream = rt.stream
        assert stream is not None
        try:
            if rt.engine is not None and self._answers(d):
                arbitration = d.event.payload.get("arbitration_id")
                if isinstance(arbitration, str):
                    await rt.engine.reactivate(d.event.intent_id, arbitration)
            if work is not None:
                await self._run_work(d, work)
            if hits:
                await self._observe_all(d, hits)
        except asyncio.CancelledError:
            raise  # stopping: not acknowledged, so the event goes back to the group
        except Exception as exc:  # a handler's failure must not stop the agent
            _log.exception(
                "agent %s: handling %s failed: %s", self.agent_id, d.event.event_type, exc
            )
        self._ack(stream, d)

    def _ack(self, stream: AsyncEventStream, d: Delivery) -> None:
        """Acknowledge soon, together with whatever else finishes in the same turn of the
        event loop: one XACK per batch instead of one per event. A crash before the flush
        hands the event out again, which the checks at the start of work make harmless."""
        stream.ack_later(d)
        self._flush_soon(stream)

    def _flush_soon(self, stream: AsyncEventStream) -> None:
        rt = self._rt
        if rt.flusher is None or rt.flusher.done():
            rt.flusher = asyncio.ensure_future(self._flush(stream))

    async def _flush(self, stream: AsyncEventStream) -> None:
        try:
            await stream.flush_acks()
        except Exception as exc:  # the acks stay queued for the next read to send
            _log.warning("agent %s: acknowledging failed: %s", self.agent_id, exc)

    # -- observers --------------------------------------------------------------------------
    async def _observe(self, d: Delivery, observer: Observer, subject: list[Any]) -> None:
        handler, spec, n = observer.handler, observer.spec, observer.arity
        event = d.event
        if spec.kind == "event" and n == 1:
            await call(handler, [event])
            return
        if not subject:  # a portfolio's event calls only all_complete handlers
            read = self.client.get_portfolio if d.portfolio_id else self.client.get_intent
            subject.append(await read(event.intent_id))
        if spec.kind == "all_complete" and subject[0].created_by != self.agent_id:
            return
        second: Any = spec.scope if spec.kind == "lease_available" else event
        await call(handler, [subject[0], second][: max(n, 1)])

    # -- work -------------------------------------------------------------------------------
    async def _run_work(self, d: Delivery, work: Work) -> None:
        """One run at a time per intent in this process. Two reasons to work on an
        intent can be read together (its assignment and its unblocking); the run that
        gets the lease second must see what the first left, and a completion that needs
        a second round trip for its graph keys lands after the release the first sent
        with it, so the second waits for the first to be over, not only for its lease."""
        intent_id = d.event.intent_id
        working = self._rt.working
        entry = working.get(intent_id)
        if entry is None:
            entry = working[intent_id] = _Turn()
        entry.users += 1
        try:
            async with entry.lock:
                await self._work_once(d, work)
        finally:
            entry.users -= 1
            if entry.users == 0:
                del working[intent_id]

    async def _work_once(self, d: Delivery, work: Work) -> None:
        cfg, client = self.config, self.client
        intent_id = d.event.intent_id
        taken = await self._take_lease(intent_id)
        if taken is None:
            return
        lease, intent = taken
        released = False
        try:
            if intent.status != "active" or self.agent_id not in intent.assigned_agents:
                return
            handler = (
                (self._rt.retry or self._rt.work)[0] if work.reason == "retry" else self._rt.work[0]
            )
            run = RunContext(intent=intent, lease=lease, version=intent.version)
            token = current_run.set(run)
            try:
                result = await self._under_lease(intent_id, lease, handler, [intent, work])
            except asyncio.CancelledError:
                raise
            except _LeaseLostError as lost:
                await self._fail(intent_id, "lease_lost", str(lost.cause))
                return
            except Exception as exc:
                code = getattr(exc, "error_code", None)
                await self._fail(
                    intent_id,
                    code if isinstance(code, str) and code else type(exc).__name__,
                    str(exc),
                )
                return
            finally:
                current_run.reset(token)
            if run.suspended is not None:  # waiting for a human: nothing to write yet
                return
            released = await self._finish(intent, lease, result, cfg.auto_complete, run)
        finally:
            if not released:
                with anyio.CancelScope(shield=True), suppress(Exception):
                    await client.release_lease(intent_id, lease.id)

    async def _take_lease(self, intent_id: str) -> tuple[Lease, Intent] | None:
        """The agent's lease on the intent and the intent as read right after it was taken
        (one round trip), waiting (bounded) while another holder's lease runs."""
        cfg, client = self.config, self.client  # the namespace was checked at start
        calls = [
            client._ops.acquire_lease(intent_id, cfg.scope(), new_uuid(), cfg.lease_seconds),
            client._ops.get_intent(intent_id),
        ]
        deadline = anyio.current_time() + cfg.lease_wait_seconds
        while True:
            lease, intent = await client._runner.call_many(calls)
            if isinstance(lease, IntentClosedError | NotFoundError):
                return None
            if isinstance(lease, LeaseConflictError):
                now = anyio.current_time()
                if now >= deadline:
                    await self._fail(intent_id, "lease_conflict", str(lease))
                    return None
                await anyio.sleep(min(_until(lease.expires_at), deadline - now, 1.0))
                continue
            if isinstance(lease, Exception):
                raise lease
            held = decode_lease(lease, intent_id)
            if isinstance(intent, Exception):
                with suppress(Exception):
                    await client.release_lease(intent_id, held.id)
                raise intent
            return held, decode_intent(intent, intent_id)

    async def _under_lease(
        self, intent_id: str, lease: Lease, handler: Callable[..., Any], args: list[Any]
    ) -> Any:
        """Run the handler while the lease is renewed every third of its duration; a
        renewal that fails cancels the handler. (A timer, not a task per handler: most
        handlers end before the first renewal is due.)"""
        seconds = self.config.lease_seconds
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        lost: list[BaseException] = []
        renewing: list[asyncio.Task[None]] = []
        timer: asyncio.TimerHandle

        async def renew() -> None:
            nonlocal timer
            try:
                await self.client.renew_lease(intent_id, lease.id, seconds)
            except Exception as exc:
                lost.append(exc)
                me.cancel()
                return
            timer = loop.call_later(seconds / 3, due)

        def due() -> None:
            renewing[:] = [asyncio.ensure_future(renew())]

        timer = loop.call_later(seconds / 3, due)
        try:
            return await call(handler, args[: max(arity(handler), 1)])
        except asyncio.CancelledError:
            if lost:
                me.uncancel()
                raise _LeaseLostError(lost[0]) from None
            raise
        finally:
            timer.cancel()
            for task in renewing:
                task.cancel()

    async def _finish(
        self, intent: Intent, lease: Lease, result: Any, complete: bool, run: RunContext
    ) -> bool:
        """Write the handler's result under its lease, complete the intent and release the
        lease in one round trip (one pipeline: each its own script, in order). The
        completion expects the version the result's write makes (one more than read),
        so it is refused, as before, if anyone else wrote in between. True when the
        lease was released with them."""
        client = self.client
        version = run.version  # the intent's version read at the start, or since written
        engine = self._rt.engine
        writes: list[Pending[Intent]] = []
        batch = client.batch()
        try:
            if isinstance(result, Mapping) and result:
                writes.append(batch.update_state(intent.id, version, result, lease=lease))
                version += 1
            if complete:
                writes.append(batch.set_status(intent.id, version, "completed"))
        except OpenIntentError as exc:  # refused before anything was sent (bad state)
            await self._fail(intent.id, exc.code or "invalid", str(exc))
            return False
        released = batch.release_lease(intent.id, lease.id)
        try:
            await batch.execute()
        except BatchError:  # each call's own outcome is read below
            pass
        except OpenIntentError as exc:  # not sent, or no answer: the lease is released after
            await self._fail(intent.id, exc.code or "unavailable", str(exc))
            return False
        try:
            for write in writes:
                write.result()
        except CompletionGateError as exc:
            _log.info("agent %s: %s not completed yet: %s", self.agent_id, intent.id, exc)
        except InvalidTransitionError as exc:
            if engine is None or exc.from_status != "blocked":
                await self._fail(intent.id, exc.code or "conflict", str(exc))
            else:  # it waits for the sub-intents its model made; re-delivered after them
                _log.info("agent %s: %s waits for its sub-intents", self.agent_id, intent.id)
        except OpenIntentError as exc:
            await self._fail(intent.id, exc.code or "conflict", str(exc))
        else:
            if engine is not None:  # done: the conversation is no longer needed
                try:
                    await engine.clear(intent.id)
                except Exception as exc:  # it expires by itself
                    _log.warning(
                        "agent %s: could not clear the conversation: %s", self.agent_id, exc
                    )
            if result is not None and not isinstance(result, Mapping):
                _log.warning(
                    "agent %s: handler result for %s is a %s, not a dict: not stored",
                    self.agent_id,
                    intent.id,
                    type(result).__name__,
                )
        try:
            released.result()
        except OpenIntentError:
            return False
        return True

    async def _fail(self, intent_id: str, code: str, message: str) -> None:
        with suppress(IntentClosedError, NotFoundError):
            await self.client.record_failure(
                intent_id, error_code=code[:128], error_message=message[:4000]
            )


class _LeaseLostError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """uvloop when it is there (a third less CPU per event here), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        asyncio.run(main)
    else:
        uvloop.run(main)


def _until(expires_at: str | None) -> float:
    """Seconds until an ISO time (a short wait when it is unknown or past)."""
    if not expires_at:
        return 0.2
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.2
    return max(0.05, (moment - datetime.now(UTC)).total_seconds() + 0.05)


def make_agent_class(
    agent_id: str, base: type[AgentBase], options: Mapping[str, Any], **attrs: Any
) -> Callable[[C], C]:
    """The class decorators' common part: check the options, then derive a class from the
    user's class and ``base`` that keeps the user's name, docs and module."""
    config = _check(AgentConfig(agent_id=agent_id, **options))

    def decorate(cls: C) -> C:
        made = type(cls.__name__, (cls, base), {"_oibus_config": config, **attrs})
        made.__qualname__ = cls.__qualname__
        made.__module__ = cls.__module__
        made.__doc__ = cls.__doc__
        return made  # type: ignore[return-value]

    return decorate


def llm_options(options: Mapping[str, Any], *, planning: bool = False) -> dict[str, Any]:
    """Split ``model=`` and its options (``LLMSettings``) out of a decorator's options:
    the rest are ``AgentConfig``'s. LLM options without ``model=`` are a mistake worth
    saying at once."""
    rest = {k: v for k, v in options.items() if k not in LLM_OPTIONS}
    llm = {k: v for k, v in options.items() if k in LLM_OPTIONS}
    if not llm:
        return rest
    if llm.get("model") is None:
        extra = ", ".join(sorted(k for k in llm if k != "model"))
        if extra:
            raise ValidationError(f"{extra} need model=", field="model")
        return rest
    llm.setdefault("planning", planning)
    if "tools" in llm:
        llm["tools"] = tuple(llm["tools"] or ())
    rest["llm"] = LLMSettings(**llm)
    return rest


def agent(agent_id: str, **options: Any) -> Callable[[C], C]:
    """Class decorator: make the class an agent named ``agent_id`` (options: the fields
    of ``AgentConfig``, and ``model=`` with the ``LLMSettings`` options for an LLM
    agent). The class keeps its own methods and base classes."""
    return make_agent_class(agent_id, AgentBase, llm_options(options))


Agent = agent
"""The seeds' spelling: ``@Agent("researcher")``."""


class Worker(AgentBase):
    """An agent made of one plain function: ``Worker("summarizer", fn).run(url)``; ``fn``
    takes the intent (and optionally the work) and returns a dict for its state."""

    def __init__(self, agent_id: str, handler: Callable[..., Any], **options: Any) -> None:
        self._oibus_own_config = _check(AgentConfig(agent_id=agent_id, **options))
        self._rt.work = [handler]
