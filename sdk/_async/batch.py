"""Many calls from one caller in few round trips: ``create_intents``, ``log_events`` and
``batch()`` (BullMQ's ``addBulk`` is the peer), and the plans they share with the single
calls.

A plan is one protocol call as data: the script call that ``oibus.bus.ops`` validated and
built, and how its reply becomes the caller's result. A single call sends its plan and
decodes the reply; a batch builds every plan first (so a bad item is refused before
anything is sent) and then sends them pipelined, ``CHUNK`` calls per round trip, in the
order given. Each call is still its own atomic script with its own typed result or error:
a batch is not a transaction, it only saves the round trips. On a cluster, redis-py's
pipeline sends each node its calls in one round trip, to every node at once.

This file is the source of the sync ``Batch`` too (``scripts/unasync.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, cast

from oibus.bus.codec import decode_intent, decode_lease, encode_patches, encode_sets, to_datetime
from oibus.bus.costs import CostRecord, recorded
from oibus.bus.errors import (
    BatchError,
    OpenIntentError,
    PayloadTooLargeError,
    ScriptError,
    ValidationError,
)
from oibus.bus.graphs import CASCADE_ROUNDS, decode_ids
from oibus.bus.models import Event, Intent, Lease, StatePatch
from oibus.bus.moves import Move, decode_moves
from oibus.bus.ops import Call, LeaseRef, new_intent_id
from oibus.sdk._async.base import AsyncClientBase
from oibus.sdk._async.costs import cost_call

T = TypeVar("T")
P = ParamSpec("P")

CHUNK = 1000
"""Calls per pipelined round trip: a 1,000-call batch is one, like the raw pipeline it is
measured beside. Smaller chunks cost throughput (log_events x2000 on the embedded valkey:
100 per round trip -11%, 250 and 500 -5% against 1,000) and larger ones gained nothing
(2,000: -8%, within the noise); a chunk of creates answers about 1 MB of snapshots."""


@dataclass(slots=True)
class Plan(Generic[T]):
    """One call: what to send and how its reply becomes the result. ``again`` is for a
    script that answers "call me again with more keys" (``set_status``'s cascade across
    a graph), ``moves`` for a reply that reports status moves (``_after_moves``)."""

    call: Call
    decode: Callable[[Any], T]
    again: Callable[[Any], Plan[T] | None] | None = None
    moves: Callable[[Any], Sequence[Move]] | None = None


class Pending(Generic[T]):
    """A queued call's outcome, known once its batch has been sent: ``result()`` is the
    call's typed result, or raises its typed error."""

    __slots__ = ("_error", "_sent", "_value")

    def __init__(self) -> None:
        self._sent = False
        self._value: Any = None
        self._error: OpenIntentError | None = None

    def done(self) -> bool:
        return self._sent

    def result(self) -> T:
        if not self._sent:
            raise RuntimeError(
                "this call has not been sent yet: its batch sends it when the block ends "
                "or at execute()"
            )
        if self._error is not None:
            raise self._error
        return cast("T", self._value)

    def _settle(self, outcome: Any) -> None:
        if isinstance(outcome, OpenIntentError):
            self._error = outcome
        else:
            self._value = outcome
        self._sent = True


def at_index(exc: OpenIntentError, index: int) -> OpenIntentError:
    """The error of the item at ``index``, saying so (its type and fields unchanged)."""
    exc.message = f"item {index}: {exc.message}"
    exc.args = (exc.message, *exc.args[1:])
    exc.details["index"] = index
    return exc


def failed(results: list[Any]) -> BatchError:
    errors = [(n, r) for n, r in enumerate(results) if isinstance(r, OpenIntentError)]
    shown = "; ".join(f"item {n}: {type(r).__name__}: {r.message}" for n, r in errors[:3])
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    return BatchError(
        f"{len(errors)} of {len(results)} calls failed (the others were applied): {shown}{more}",
        results,
    )


class AsyncBatchMixin(AsyncClientBase):
    # -- plans: shared by the single calls and the batches --------------------------------
    def _create_intent_plan(
        self,
        title: str,
        description: str | None = None,
        constraints: Mapping[str, Any] | None = None,
        *,
        state: Mapping[str, Any] | None = None,
        created_by: str | None = None,
        status: str = "active",
        confidence: int | None = None,
        parent_intent_id: str | None = None,
        depends_on: Sequence[str] | None = None,
        intent_id: str | None = None,
        idempotency_key: str | None = None,
        colocate_with: str | None = None,
        on_dependency_failure: str = "block",
        cascade_abandon: bool = True,
        assign: str | None = None,
    ) -> Plan[Intent]:
        if colocate_with is None:
            colocate_with = parent_intent_id
            if colocate_with is None and depends_on and not isinstance(depends_on, str):
                colocate_with = next(iter(depends_on))
        new_id = new_intent_id(
            intent_id=intent_id, idempotency_key=idempotency_key, colocate_with=colocate_with
        )
        call = self._ops.create_intent(
            new_id,
            title=title,
            description=description,
            constraints=constraints,
            state=state,
            created_by=created_by,
            status=status,
            confidence=confidence,
            parent_intent_id=parent_intent_id,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
            cascade_abandon=cascade_abandon,
            assign=assign,
        )
        return Plan(call, lambda reply: decode_intent(reply[1], new_id))

    def _update_state_plan(
        self,
        intent_id: str,
        version: int | None,
        state_patch: Mapping[str, Any],
        *,
        lease: LeaseRef = None,
    ) -> Plan[Intent]:
        call = self._ops.update_state(intent_id, version, encode_sets(state_patch), lease)
        return Plan(call, lambda reply: decode_intent(reply, intent_id))

    def _patch_state_plan(
        self,
        intent_id: str,
        version: int | None,
        patches: Iterable[StatePatch | Mapping[str, Any]],
        *,
        lease: LeaseRef = None,
    ) -> Plan[Intent]:
        call = self._ops.patch_state(intent_id, version, encode_patches(patches), lease)
        return Plan(call, lambda reply: decode_intent(reply, intent_id))

    def _set_status_plan(
        self, intent_id: str, version: int | None, status: str, reason: str | None = None
    ) -> Plan[Intent]:
        return self._status_plan(intent_id, version, status, reason, [])

    def _status_plan(
        self,
        intent_id: str,
        version: int | None,
        status: str,
        reason: str | None,
        related: list[str],
    ) -> Plan[Intent]:
        """``related``: the other intents of the graph whose keys the call declares; a
        reply without a snapshot names the ones still missing (see graph.lua)."""

        def again(reply: Any) -> Plan[Intent] | None:
            snapshot, moves = reply
            if snapshot is not None:
                return None
            more = [i for i in decode_ids(moves) if i not in related]
            if not more:
                raise ScriptError(f"set_status asked again for keys it was given: {moves}")
            return self._status_plan(intent_id, version, status, reason, related + more)

        return Plan(
            self._ops.set_status(intent_id, version, status, reason, related),
            lambda reply: decode_intent(reply[0], intent_id),
            again=again,
            moves=lambda reply: decode_moves(reply[1]),
        )

    def _assign_agent_plan(self, intent_id: str, agent_id: str) -> Plan[Intent]:
        call = self._ops.assign_agent(intent_id, agent_id)
        return Plan(call, lambda reply: decode_intent(reply, intent_id))

    def _unassign_agent_plan(self, intent_id: str, agent_id: str) -> Plan[Intent]:
        call = self._ops.unassign_agent(intent_id, agent_id)
        return Plan(call, lambda reply: decode_intent(reply, intent_id))

    def _log_event_plan(
        self, intent_id: str, event_type: str, payload: Mapping[str, Any] | None = None
    ) -> Plan[Event]:
        call = self._ops.log_event(intent_id, event_type, payload)
        kind, actor = call.args[1], self.agent_id

        def decode(reply: Any) -> Event:
            entry_id, seq, at = reply
            return Event(
                id=entry_id,
                intent_id=intent_id,
                seq=int(seq),
                event_type=kind,
                actor=actor,
                payload=dict(payload or {}),
                created_at=to_datetime(at),
            )

        return Plan(call, decode)

    def _acquire_lease_plan(
        self, intent_id: str, scope: str, duration_seconds: float = 300
    ) -> Plan[Lease]:
        call = self._ops.acquire_lease(intent_id, scope, str(uuid.uuid4()), duration_seconds)
        return Plan(call, lambda reply: decode_lease(reply, intent_id))

    def _renew_lease_plan(
        self, intent_id: str, lease_id: str, duration_seconds: float = 300
    ) -> Plan[Lease]:
        call = self._ops.renew_lease(intent_id, lease_id, duration_seconds)
        return Plan(call, lambda reply: decode_lease(reply, intent_id))

    def _release_lease_plan(self, intent_id: str, lease_id: str) -> Plan[Lease]:
        call = self._ops.release_lease(intent_id, lease_id)
        return Plan(call, lambda reply: decode_lease(reply, intent_id))

    def _record_cost_plan(
        self,
        intent_id: str,
        cost_type: str,
        amount: float | Decimal,
        unit: str,
        provider: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Plan[CostRecord]:
        call = cost_call(self, intent_id, cost_type, amount, unit, provider, metadata)
        return Plan(call, lambda reply: recorded(call, reply))

    # -- sending ----------------------------------------------------------------------------
    async def _settle(self, plan: Plan[T], reply: Any, rounds: int = CASCADE_ROUNDS) -> T:
        """The result of a sent plan: the calls its reply asks for, one at a time and at
        most ``rounds`` calls in all (a cascade that reaches intents whose keys it needs
        too), then the moves it reports, then the result."""
        plan, reply = await self._follow(plan, reply, rounds)
        if plan.moves is not None:
            await self._after_moves(plan.moves(reply))
        return plan.decode(reply)

    async def _follow(self, plan: Plan[T], reply: Any, rounds: int) -> tuple[Plan[T], Any]:
        calls = 1
        while plan.again is not None:
            follow = plan.again(reply)
            if follow is None:
                break
            if calls >= rounds:
                raise PayloadTooLargeError(
                    f"{plan.call.script} of {plan.call.args[0]} cascades more than "
                    f"{rounds} levels deep; change the graph in smaller parts",
                    limit=rounds,
                )  # not reached while the script's own bound on moves holds
            plan, reply = follow, await self._run(follow.call)
            calls += 1
        return plan, reply

    async def _send_plans(self, plans: Sequence[Plan[Any]]) -> list[Any]:
        """Every plan's result or typed error, in order, ``CHUNK`` calls per round trip.
        A transport failure raises (BusError): the chunks before it were applied, its own
        may or may not have been."""
        if not self._meta_checked:
            await self._check_meta()
        await self._load_new(plans)
        out: list[Any] = []
        for start in range(0, len(plans), CHUNK):
            chunk = plans[start : start + CHUNK]
            moves: list[Move] = []
            for sent, answer in zip(chunk, await self._pipeline(chunk), strict=True):
                if isinstance(answer, OpenIntentError):
                    out.append(answer)
                    continue
                try:
                    plan, reply = sent, answer
                    if plan.again is not None:
                        plan, reply = await self._follow(plan, reply, CASCADE_ROUNDS)
                    if plan.moves is not None:
                        moves += plan.moves(reply)
                    out.append(plan.decode(reply))
                except OpenIntentError as exc:
                    out.append(exc)
            if moves:  # one round trip for the portfolios of the whole chunk
                await self._after_moves(moves)
        return out

    async def _load_new(self, plans: Sequence[Plan[Any]]) -> None:
        """Load the scripts this client has not batched before, ahead of the first batch
        that uses them. Calls of a script missing from the server's cache fail with
        NOSCRIPT while the rest of the pipeline runs, so once resent they would run after
        calls queued behind them; single calls load their scripts lazily, so a cache that
        holds some scripts and not others is the usual case. A user who may not load
        scripts (the agent role) relies on the operator having loaded them all."""
        await self._runner.ensure_loaded({p.call.script for p in plans})

    async def _pipeline(self, plans: Sequence[Plan[Any]]) -> list[Any]:
        """One pipelined round trip (per cluster node), each reply a value or its typed
        error (``call_many``: after a lost script cache only the refused calls are sent
        again, so they then run after the rest of the chunk, the one case where a
        batch's order bends)."""
        return await self._runner.call_many([p.call for p in plans])

    async def _send_all(self, plans: Sequence[Plan[T]]) -> list[T]:
        results = await self._send_plans(plans)
        if any(isinstance(r, OpenIntentError) for r in results):
            raise failed(results)
        return results

    # -- the batch calls --------------------------------------------------------------------
    async def create_intents(
        self, specs: Iterable[Mapping[str, Any] | Sequence[Any]]
    ) -> list[Intent]:
        """Create many intents in few round trips; the intents come back in the order of
        ``specs``. Each spec holds ``create_intent``'s arguments: a mapping of its keyword
        arguments (``{"title": ..., "state": {...}, "depends_on": [...]}``) or a tuple of
        its positional ones. Every spec is checked before anything is sent: a bad one
        raises its ValidationError, naming its index (``details["index"]``), and nothing is
        written. Each intent is then created by its own script, in order (a spec may name
        an earlier spec's ``intent_id`` as its parent or dependency); if some fail on the
        server, the others are still created and BatchError says which failed and
        carries every result. For a batch that is safe to retry after a lost connection,
        give each spec an ``intent_id`` or ``idempotency_key``."""
        return await self._send_all(self._plan_items(self._create_intent_plan, specs))

    async def log_events(self, items: Iterable[Mapping[str, Any] | Sequence[Any]]) -> list[Event]:
        """Log many events in few round trips: each item ``(intent_id, event_type,
        payload)`` or a mapping of ``log_event``'s arguments. Checked, sent and reported
        like ``create_intents``; an intent's events get consecutive ``seq`` in the order
        given."""
        return await self._send_all(self._plan_items(self._log_event_plan, items))

    def batch(self) -> AsyncBatch:
        """Queue any calls and send them together: ``async with client.batch() as b:``,
        then ``b.create_intent(...)``, ``b.log_event(...)``, ... each return a ``Pending``
        whose ``result()`` is that call's result (or raises its typed error) once the
        block has ended; see ``AsyncBatch``."""
        return AsyncBatch(self)

    def _plan_items(
        self,
        build: Callable[..., Plan[T]],
        items: Iterable[Mapping[str, Any] | Sequence[Any]],
    ) -> list[Plan[T]]:
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise ValidationError("items must be a list of mappings or tuples", field="items")
        plans = []
        for index, item in enumerate(items):
            try:
                if isinstance(item, tuple | list):  # first: Mapping is a slower (ABC) check
                    plans.append(build(*item))
                elif isinstance(item, Mapping):
                    plans.append(build(**item))
                else:
                    raise ValidationError(
                        "each item must be a mapping of the call's arguments or a tuple",
                        field="items",
                    )
            except OpenIntentError as exc:
                raise at_index(exc, index) from None
            except TypeError as exc:  # missing or unknown arguments
                name = build.__name__.removeprefix("_").removesuffix("_plan")
                problem = str(exc).rpartition("() ")[2]
                raise ValidationError(
                    f"item {index}: {name} {problem}", field="items", index=index
                ) from None
        return plans


def _queued(
    plan: Callable[Concatenate[AsyncBatchMixin, P], Plan[T]],
) -> Callable[Concatenate[AsyncBatch, P], Pending[T]]:
    """A batch method with the signature of the client's call of the same name."""

    def queue(self: AsyncBatch, /, *args: P.args, **kwargs: P.kwargs) -> Pending[T]:
        return self._queue(plan(self._client, *args, **kwargs))

    queue.__name__ = queue.__qualname__ = plan.__name__.removeprefix("_").removesuffix("_plan")
    queue.__doc__ = f"Queue ``{queue.__name__}`` (the client's call of that name)."
    return queue


class AsyncBatch:
    """Calls queued, then sent together in pipelines (``CHUNK`` per round trip) when the
    ``async with`` block ends or at ``await execute()``. Each call is checked when it is
    queued (a bad one raises there), runs as its own atomic script in the order queued
    (on a cluster: in order per node, the nodes at once) and has its own result or typed
    error in its ``Pending``. If any failed, the send raises BatchError after the others
    were applied. A block left by an exception sends nothing. A batch can be sent more
    than once: each send takes what was queued since the last."""

    def __init__(self, client: AsyncBatchMixin) -> None:
        self._client = client
        self._queued: list[tuple[Plan[Any], Pending[Any]]] = []

    def __len__(self) -> int:
        return len(self._queued)

    def _queue(self, plan: Plan[T]) -> Pending[T]:
        pending: Pending[T] = Pending()
        self._queued.append((plan, pending))
        return pending

    create_intent = _queued(AsyncBatchMixin._create_intent_plan)
    update_state = _queued(AsyncBatchMixin._update_state_plan)
    patch_state = _queued(AsyncBatchMixin._patch_state_plan)
    set_status = _queued(AsyncBatchMixin._set_status_plan)
    assign_agent = _queued(AsyncBatchMixin._assign_agent_plan)
    unassign_agent = _queued(AsyncBatchMixin._unassign_agent_plan)
    log_event = _queued(AsyncBatchMixin._log_event_plan)
    acquire_lease = _queued(AsyncBatchMixin._acquire_lease_plan)
    renew_lease = _queued(AsyncBatchMixin._renew_lease_plan)
    release_lease = _queued(AsyncBatchMixin._release_lease_plan)
    record_cost = _queued(AsyncBatchMixin._record_cost_plan)

    async def execute(self) -> list[Any]:
        """Send what is queued; every result in the order queued (BatchError if any
        call failed, after every ``Pending`` has its outcome)."""
        queued, self._queued = self._queued, []
        if not queued:
            return []
        results = await self._client._send_plans([plan for plan, _ in queued])
        for (_, pending), outcome in zip(queued, results, strict=True):
            pending._settle(outcome)
        if any(isinstance(r, OpenIntentError) for r in results):
            raise failed(results)
        return results

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.execute()
        else:
            self._queued = []
