"""The records the SDK returns: msgspec structs, frozen because they are values (a snapshot
of the bus at one version), with the field names of RFC-0001 and the reference SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import msgspec

from oibus.bus.statuses import IntentStatus

T = TypeVar("T")

PatchOp = Literal["set", "append", "remove"]


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    description: str | None = None
    created_by: str
    status: IntentStatus
    constraints: dict[str, Any] = msgspec.field(default_factory=dict)
    state: dict[str, Any] = msgspec.field(default_factory=dict)
    confidence: int | None = None
    version: int
    created_at: datetime
    updated_at: datetime
    parent_intent_id: str | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)
    assigned_agents: list[str] = msgspec.field(default_factory=list)
    on_dependency_failure: str = "block"
    cascade_abandon: bool = True


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of an intent's log. ``id`` is its stream id (the cursor for paging and the
    key for de-duplication together with ``intent_id``); ``seq`` counts from 1 per intent
    with no gaps. ``event_type`` is a plain string so unknown types never fail to read."""

    id: str
    intent_id: str
    seq: int
    event_type: str
    actor: str
    payload: dict[str, Any]
    created_at: datetime


LeaseStatus = Literal["active", "released", "expired", "revoked"]


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    """A lease on a scope of an intent (RFC-0003). ``fencing_token`` increases with every
    new lease on the same intent and scope: present it (or ``id``) with a guarded write,
    and a lease that was superseded can never write again. ``status`` is as of the
    server's clock when this was read: an ``active`` lease past ``expires_at`` is shown
    as ``expired`` even before the daemon records it."""

    id: str
    intent_id: str
    agent_id: str
    scope: str
    status: LeaseStatus
    fencing_token: int
    acquired_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


class StatePatch(msgspec.Struct, frozen=True):
    """One op of RFC-0001's state patch: ``set``/``append`` carry a value, ``remove`` not."""

    op: PatchOp
    path: str
    value: Any = None


class ProtocolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What ``discover()`` returns: the protocol, this implementation and its server."""

    protocol: str
    protocol_version: str
    implementation: str
    implementation_version: str
    rfcs: list[str]
    capabilities: list[str]
    statuses: list[str]
    event_types: list[str]
    limits: dict[str, int]
    namespace: str
    partitions: int
    server: dict[str, str]


class Page(list[T], Generic[T]):
    """A list of results plus ``next_cursor``: pass it back as ``cursor``/``after`` to get
    the following page; ``None`` means there is nothing more (as of this read)."""

    def __init__(self, items: list[T] | None = None, next_cursor: str | None = None) -> None:
        super().__init__(items or [])
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, next_cursor={self.next_cursor!r})"
