"""Handler decorators for agents (``@on_assignment`` and the rest) and how a handler is
called. A decorator only records what the method handles (``bus.routing.HandlerSpec``);
the agent runtime finds the marked methods when the agent starts.

Handlers may be ``async def`` or plain functions (run in a worker thread so they do not
stop the agent's event loop). They take the leading arguments they declare of:

| decorator | arguments |
|---|---|
| ``on_assignment`` / ``on_retry`` | intent, work (``Work``: reason, attempt, last_error) |
| ``on_complete``, ``on_status_change``, ``on_lease_expired`` | intent, event |
| ``on_state_change(keys=None)`` | intent, event |
| ``on_event(event_type)`` | event — or intent, event |
| ``on_lease_available(scope)`` | intent, scope |
| ``on_all_complete`` | portfolio, event |

The intent is read when the handler runs (so it is current), and only for handlers
that take it.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

import anyio

from oibus.bus.errors import ValidationError
from oibus.bus.routing import HandlerKind, HandlerSpec

F = TypeVar("F", bound=Callable[..., Any])
MARK = "_oibus_handlers"


def _mark(func: F, spec: HandlerSpec) -> F:
    specs: list[HandlerSpec] = list(getattr(func, MARK, ()))
    specs.append(spec)
    setattr(func, MARK, specs)
    return func


def _simple(kind: HandlerKind) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        return _mark(func, HandlerSpec(kind=kind))

    decorator.__name__ = f"on_{kind}"
    return decorator


on_assignment = _simple("assignment")
"""The agent was given an intent that is ready to work on: return a dict to patch into its
state (then the intent is completed, unless ``auto_complete=False``); raise to record a
failure that the intent's retry policy may retry."""
on_retry = _simple("retry")
"""A retry the daemon dispatched; without this handler, retries go to ``on_assignment``
(with ``work.attempt`` and ``work.last_error`` set)."""
on_complete = _simple("complete")
"""An intent of this agent completed."""
on_status_change = _simple("status_change")
"""An intent of this agent changed status (the event's payload has from/to)."""
on_lease_expired = _simple("lease_expired")
"""A lease on an intent of this agent expired (recorded by the daemon)."""
on_all_complete = _simple("all_complete")
"""A portfolio this agent created completed (coordinators)."""


@overload
def on_state_change(keys: F) -> F: ...
@overload
def on_state_change(keys: Iterable[str] | None = None) -> Callable[[F], F]: ...
def on_state_change(keys: Any = None) -> Any:
    """The state of an intent of this agent changed; with ``keys``, only changes that touch
    one of those top-level keys."""
    if callable(keys):  # used bare: @on_state_change
        return _mark(keys, HandlerSpec(kind="state_change"))
    if isinstance(keys, str):
        keys = [keys]
    wanted = None if keys is None else tuple(str(k) for k in keys)

    def decorator(func: F) -> F:
        return _mark(func, HandlerSpec(kind="state_change", keys=wanted))

    return decorator


def on_event(event_type: str) -> Callable[[F], F]:
    """An event of ``event_type`` (any type, custom ones included) on an intent of this
    agent."""
    if not isinstance(event_type, str) or not event_type:
        raise ValidationError("on_event needs an event type", field="event_type")

    def decorator(func: F) -> F:
        return _mark(func, HandlerSpec(kind="event", event_type=str(event_type)))

    return decorator


def on_lease_available(scope: str) -> Callable[[F], F]:
    """A lease on ``scope`` of an intent of this agent ended (released, expired or
    revoked): the scope can be taken."""
    if not isinstance(scope, str) or not scope:
        raise ValidationError("on_lease_available needs a scope", field="scope")

    def decorator(func: F) -> F:
        return _mark(func, HandlerSpec(kind="lease_available", scope=scope))

    return decorator


def discover(obj: object) -> list[tuple[Callable[..., Any], HandlerSpec]]:
    """The marked methods of an agent instance, bound, in name order."""
    found = []
    for name in sorted(dir(type(obj))):
        if name.startswith("__"):
            continue
        raw = getattr(type(obj), name, None)
        for spec in getattr(raw, MARK, ()):
            found.append((getattr(obj, name), spec))
    return found


def arity(func: Callable[..., Any]) -> int:
    """How many positional arguments a handler takes (``*args``: all of them); computed
    once per function (handlers are called per event)."""
    target = getattr(func, "__func__", func)
    try:
        return _arities[target]
    except (KeyError, TypeError):
        pass
    n = _arity(func)
    with contextlib.suppress(TypeError):
        _arities[target] = n
    return n


_arities: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _arity(func: Callable[..., Any]) -> int:
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 99
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


_IS_ASYNC: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def is_async(func: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, remembered per function: a handler's bound method
    is a new object on every access, its function is not (the check showed in profiles
    of an agent draining events)."""
    key = getattr(func, "__func__", func)
    try:
        return _IS_ASYNC[key]
    except (KeyError, TypeError):  # TypeError: not weakly referable (a callable object)
        known = inspect.iscoroutinefunction(func)
    with contextlib.suppress(TypeError):
        _IS_ASYNC[key] = known
    return known


async def call(func: Callable[..., Any], args: list[Any]) -> Any:
    """Call a handler with the arguments it takes, async or not."""
    if is_async(func):
        return await func(*args)
    result = await anyio.to_thread.run_sync(lambda: func(*args))
    if inspect.isawaitable(result):
        return await result
    return result
