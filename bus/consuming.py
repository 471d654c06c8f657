"""Consuming events through consumer groups: which streams a consumer reads, how a bus
pointer leads to its event, and what a consumer is handed. Pure: no I/O.

Three sources share one reading machinery (``sdk/_async/events.py``):

- one intent's log (``T:e:<id>``): its entries are whole events;
- one portfolio's log (``T:pe:<pid>``): the same;
- every partition's bus (``T:bus``): pointers (intent, event id, seq, type, actor, the
  intent's assignees) to events in their logs; the consumer fetches the events it keeps
  in one pipelined round trip per batch, after filtering on the pointer alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from oibus.bus.checks import check_text
from oibus.bus.codec import decode_written
from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.models import Event

START_NEW = "new"
"""Create the group at the end of the streams: only events appended after it exists."""
START_BEGINNING = "start"
"""Create the group at the start: every event the streams still hold."""

_STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
_decoder = msgspec.json.Decoder(list[str])
_encoder = msgspec.json.Encoder()


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """What a consumer reads. ``owner`` is the intent or portfolio whose log ``keys``
    holds (entries are events); None means the keys are partition buses (pointers)."""

    keys: tuple[str, ...]
    owner: str | None = None


class Pointer(msgspec.Struct, frozen=True, kw_only=True):
    """A bus entry: where an event is and the little a consumer filters on."""

    intent_id: str
    event_id: str
    seq: int
    event_type: str
    actor: str
    agents: tuple[str, ...] = ()
    portfolio: bool = False
    member_id: str | None = None
    hint: str | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One event handed to a consumer. ``stream`` and ``entry_id`` name the entry the
    group acknowledges (a bus pointer or a log entry); ``deliveries`` is how often the
    group has handed it out (more than 1 after a consumer died holding it), and the
    event id is the key to de-duplicate on. ``agents`` are the intent's assignees as of
    the event; ``portfolio_id`` is set for a portfolio's events (then ``member_id`` names
    the member intent an event is about, when it is about one). ``hint`` is what the bus
    entry says without the payload: the agent an ``agent_assigned`` names, or
    ``"<from>><to>"`` of a ``status_changed``."""

    event: Event
    stream: str
    entry_id: str
    deliveries: int = 1
    agents: tuple[str, ...] = ()
    portfolio_id: str | None = None
    member_id: str | None = None
    hint: str | None = None


def check_name(value: object, field: str) -> str:
    """Group and consumer names go into a key (escaped) and into Redis replies."""
    text = check_text(value, field, 200)
    if any(ord(ch) < 32 for ch in text):
        raise ValidationError(f"{field} must not contain control characters", field=field)
    return text


def start_id(start: str) -> str:
    """The id a new group starts at: ``new``, ``start``, or an event cursor (a stream id
    such as an earlier ``Delivery.entry_id``: the group starts after it)."""
    if start == START_NEW:
        return "$"
    if start == START_BEGINNING:
        return "0"
    if isinstance(start, str) and _STREAM_ID.match(start):
        return start
    raise ValidationError(
        f"start must be {START_NEW!r}, {START_BEGINNING!r} or a stream id, not {start!r}",
        field="start",
    )


def plan_source(ks: Keyspace, intent_id: str | None, portfolio_id: str | None) -> Source:
    if intent_id is not None and portfolio_id is not None:
        raise ValidationError(
            "give intent_id or portfolio_id, not both (a portfolio's log holds its own events; "
            "its members' events are on the bus)",
            field="portfolio_id",
        )
    if intent_id is not None:
        return Source(keys=(ks.events(check_id(intent_id)),), owner=intent_id)
    if portfolio_id is not None:
        pid = check_id(portfolio_id, "portfolio_id")
        return Source(keys=(ks.portfolio_events(pid),), owner=pid)
    return Source(keys=tuple(ks.bus(p) for p in range(ks.partitions)))


def check_types(event_types: Iterable[str] | str | None) -> frozenset[str] | None:
    if event_types is None:
        return None
    if isinstance(event_types, str):
        event_types = [event_types]
    wanted = frozenset(str(t) for t in event_types)
    if not wanted:
        raise ValidationError("event_types must name at least one type", field="event_types")
    return wanted


REPLAY_FOR: Final = "rg"
"""A bus entry with this field is a replayed copy for that one consumer group (``oibus
dlq replay --kind events``): every other reader skips it."""


def wanted(
    fields: Mapping[str, str],
    types: frozenset[str] | None,
    assigned_to: str | None,
    group: str | None = None,
) -> bool:
    """Whether a consumer keeps an entry, judged on the entry alone (before any event is
    fetched): its type, and for ``assigned_to`` whether the intent is assigned to that
    agent (bus pointers carry the assignees; a portfolio's events pass, and so does an
    entry of a log, which has no assignees to judge by). A replayed copy is kept only by
    the ``group`` it is for."""
    if not fields or (types is not None and fields.get("t") not in types):
        return False
    if REPLAY_FOR in fields and fields[REPLAY_FOR] != group:
        return False
    if assigned_to is None or "i" not in fields or fields.get("k") == "portfolio":
        return True
    raw = fields.get("g")
    return raw is not None and assigned_to in (_AGENTS_CACHE.get(raw) or assignees(raw))


_AGENTS_CACHE: dict[str, tuple[str, ...]] = {}
_AGENTS_CACHE_SIZE: Final = 4096


def assignees(raw: str) -> tuple[str, ...]:
    """A pointer's ``g`` field as a tuple. Every event of an intent carries the same text
    while its assignees stay the same, so a consumer draining a busy intent decodes it
    once (a bounded cache, emptied when full)."""
    agents = _AGENTS_CACHE.get(raw)
    if agents is None:
        try:
            agents = tuple(_decoder.decode(raw))
        except msgspec.DecodeError:
            agents = ()
        if len(_AGENTS_CACHE) >= _AGENTS_CACHE_SIZE:
            _AGENTS_CACHE.clear()
        _AGENTS_CACHE[raw] = agents
    return agents


def parse_pointer(fields: Mapping[str, str]) -> Pointer | None:
    """None for an entry that is not a pointer (written around the scripts)."""
    intent_id, event_id = fields.get("i"), fields.get("e")
    if not intent_id or not event_id:
        return None
    raw = fields.get("g")
    agents = assignees(raw) if raw else ()
    seq = fields.get("s", "0")
    return Pointer(
        intent_id=intent_id,
        event_id=event_id,
        seq=int(seq) if seq.isdigit() else 0,
        event_type=fields.get("t", "unknown"),
        actor=fields.get("a", ""),
        agents=agents,
        portfolio=fields.get("k") == "portfolio",
        member_id=fields.get("m") or None,
        hint=fields.get("x"),
    )


def inline_delivery(
    key: str, entry_id: str, fields: Mapping[str, str], deliveries: int
) -> Delivery | None:
    """A pointer that carries its event (a small payload, written by the scripts) as its
    Delivery in one step, without the Pointer in between: the general path
    (``parse_pointer`` then ``decode_event``) costs about twice as much, and a consumer
    pays it for every event it is handed. None for anything else, which the general
    path reads exactly as before."""
    intent_id, event_id = fields.get("i"), fields.get("e")
    if not intent_id or not event_id or "p" not in fields:
        return None
    event = decode_written(intent_id, event_id, fields)
    if event is None:
        return None
    raw = fields.get("g")
    return Delivery(
        event=event,
        stream=key,
        entry_id=entry_id,
        deliveries=deliveries,
        agents=(_AGENTS_CACHE.get(raw) or assignees(raw)) if raw else (),
        portfolio_id=intent_id if fields.get("k") == "portfolio" else None,
        member_id=fields.get("m") or None,
        hint=fields.get("x"),
    )


def log_key(ks: Keyspace, pointer: Pointer) -> str:
    """The log a pointer's event is in."""
    if pointer.portfolio:
        return ks.portfolio_events(pointer.intent_id)
    return ks.events(pointer.intent_id)


def dead_letter_fields(
    group: str, stream: str, entry_id: str, fields: Mapping[str, str], deliveries: int
) -> list[str | int]:
    """What the dead-letter stream keeps of an entry given up on: enough to find the
    event again and to replay it by hand."""
    return [
        "group",
        group,
        "stream",
        stream,
        "entry",
        entry_id,
        "type",
        fields.get("t", ""),
        "intent",
        fields.get("i", ""),
        "event",
        fields.get("e", entry_id),
        "deliveries",
        deliveries,
        "fields",
        _encoder.encode(dict(fields)).decode(),
    ]
