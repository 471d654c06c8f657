"""Each protocol operation as a pure function: validated arguments in, a ``Call`` (script,
KEYS, ARGV) out. The sync and async clients only execute calls and decode replies, so the
two flavours cannot disagree about what an operation sends."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_json, check_text
from oibus.bus.codec import canonical_digest, encode_state_pairs, json_text
from oibus.bus.errors import ValidationError
from oibus.bus.events import RESERVED
from oibus.bus.keyspace import Keyspace, check_id, group_of
from oibus.bus.statuses import INITIAL, IntentStatus

_SCOPE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,15}")
_IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c3a52-6c3e-4f2b-9d0e-8b1c1e0a0b15")
_SPEC_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Call:
    script: str
    keys: list[str]
    args: list[str]


def _version(version: int | None) -> str:
    if version is None:
        return ""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValidationError("version must be a positive integer (or None)", field="version")
    return str(version)


def _status(status: object) -> IntentStatus:
    try:
        return IntentStatus(str(status))
    except ValueError:
        raise ValidationError(
            f"unknown status {status!r}; one of {', '.join(IntentStatus)}", field="status"
        ) from None


def check_scope(scope: object) -> str:
    """Scopes name state subtrees ("content.draft" guards /content/draft), so their
    alphabet is that of a key segment, dot-separated."""
    if not isinstance(scope, str) or len(scope) > 128 or _SCOPE.fullmatch(scope) is None:
        raise ValidationError(
            "scope must be 1-128 characters: up to 16 dot-separated parts of A-Z a-z 0-9 _ -",
            field="scope",
        )
    return scope


def duration_ms(seconds: object) -> str:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0.1 <= seconds <= 86_400  # also refuses NaN, inf and huge ints
    ):
        raise ValidationError("duration must be from 0.1 s to 24 h", field="duration_seconds")
    ms = round(seconds * 1000)
    if not 100 <= ms <= 86_400_000:
        raise ValidationError("duration must be from 0.1 s to 24 h", field="duration_seconds")
    return str(ms)


LeaseRef = Any
"""What a guarded write may present: a ``Lease``, a lease id, ``"<scope>#<token>"``, or a
sequence of those."""


def presented_leases(lease: LeaseRef) -> str:
    if lease is None:
        return "[]"
    items = [lease] if isinstance(lease, str) or not isinstance(lease, Sequence) else lease
    out = []
    for item in items:
        ref = getattr(item, "id", item)
        if not isinstance(ref, str) or not ref:
            raise ValidationError(
                "lease must be a Lease, a lease id or 'scope#token' (or a list of them)",
                field="lease",
            )
        out.append(ref)
    return json_text(out, "lease")


_UUID4_KEEP: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def new_uuid() -> str:
    """``str(uuid.uuid4())`` (128 random bits from the OS's generator, the version and
    variant bits set, the same text) at a third of its cost: no UUID object on the way.
    Every new intent and lease id is one."""
    h = "%032x" % ((secrets.randbits(128) & _UUID4_KEEP) | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _spec_text(spec: dict[str, Any]) -> str:
    """create_intent's spec as JSON. Every value in it is checked text, an id, a bool or a
    small int, so it is encoded as it is; json_text's walk of it, which looks for what is
    not plain JSON, would find nothing (and names the problem if it ever did)."""
    try:
        return _SPEC_ENCODER.encode(spec).decode()
    except (TypeError, ValueError, msgspec.EncodeError):
        return json_text(spec, "spec")


@lru_cache(maxsize=4096)
def _partition_keys(ks: Keyspace, partition: int) -> tuple[str, ...]:
    """A partition's keys every create_intent declares after its own: the index of all
    intents and the graph tail (bus, status indexes, graph hashes). The same strings for
    every intent of the partition, so they are built once, not 14 f-strings a call."""
    return (ks.index_all(partition), *ks.graph_tail(partition))


@lru_cache(maxsize=4096)
def _lease_keys_of(ks: Keyspace, intent_id: str) -> tuple[str, ...]:
    """The six keys of every lease call on an intent; an agent takes, renews and releases
    leases on the same intents, so they are remembered (ids are checked before)."""
    ik, _, ek, bk = ks.intent_keys(intent_id)
    due = ks.due_leases(ks.partition(intent_id))
    return (ik, ks.leases(intent_id), ks.lease_history(intent_id), ek, bk, due)


def new_intent_id(
    *, intent_id: str | None, idempotency_key: str | None, colocate_with: str | None
) -> str:
    """The id decides the partition, so colocation is chosen here: ``g.<uuid>`` shares
    ``g``'s slot. An idempotency key maps to one id forever (uuid5), which is what makes
    a retried create find the intent its first attempt made."""
    if intent_id is not None and idempotency_key is not None:
        raise ValidationError("give intent_id or idempotency_key, not both", field="intent_id")
    if intent_id is not None:
        return check_id(intent_id)
    if idempotency_key is not None:
        check_text(idempotency_key, "idempotency_key", 256)
        suffix = str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, idempotency_key))
    else:
        suffix = new_uuid()
    if colocate_with is None:
        return suffix
    return f"{group_of(check_id(colocate_with, 'colocate_with'))}.{suffix}"


DEPENDENCY_FAILURE_POLICIES: Final = ("block", "abandon", "ignore")
"""What happens to an intent when a dependency is abandoned (RFC-0002 leaves it open):
``block`` (the default) keeps it blocked and records ``dependency_failed``; ``abandon``
abandons it too; ``ignore`` counts the dependency as satisfied."""


def same_group(intent_id: str, other: str, field: str) -> None:
    """A graph lives in one group, hence one slot, so that one script changes it whole."""
    if group_of(intent_id) != group_of(other):
        raise ValidationError(
            f"{other} is in group {group_of(other)!r} and {intent_id} in "
            f"{group_of(intent_id)!r}: an intent, its parent and its dependencies share a "
            "group (the id up to its first '.'); create it with parent_intent_id, or "
            "colocate_with one of them",
            field=field,
        )


class Ops:
    """Builds the calls of one client (one keyspace, one acting agent)."""

    def __init__(self, keyspace: Keyspace, actor: str) -> None:
        self.keyspace = keyspace
        self.actor = check_text(actor, "agent_id", 256)

    def _intent_keys(self, intent_id: str) -> list[str]:
        return list(self.keyspace.intent_keys(check_id(intent_id)))

    def create_intent(
        self,
        intent_id: str,
        *,
        title: str,
        description: str | None,
        constraints: Mapping[str, Any] | None,
        state: Mapping[str, Any] | None,
        created_by: str | None,
        status: str,
        confidence: int | None,
        parent_intent_id: str | None,
        depends_on: Sequence[str] | None,
        on_dependency_failure: str = "block",
        cascade_abandon: bool = True,
        assign: str | None = None,
    ) -> Call:
        ks = self.keyspace
        check_text(title, "title", limits.TITLE_BYTES, line=True)
        if description is not None:
            check_text(description, "description", limits.TEXT_BYTES, required=False)
        creator = check_text(
            created_by if created_by is not None else self.actor, "created_by", 256
        )
        initial = _status(status)
        if initial not in INITIAL:
            raise ValidationError("an intent is created as draft or active", field="status")
        if confidence is not None and (
            isinstance(confidence, bool)
            or not isinstance(confidence, int)
            or not 0 <= confidence <= 100
        ):
            raise ValidationError("confidence must be an integer from 0 to 100", field="confidence")
        if constraints is not None and not isinstance(constraints, Mapping):
            raise ValidationError("constraints must be a mapping", field="constraints")
        if state is not None and not isinstance(state, Mapping):
            raise ValidationError("state must be a mapping", field="state")
        if depends_on is not None and (
            isinstance(depends_on, str) or not isinstance(depends_on, Sequence)
        ):
            raise ValidationError("depends_on must be a list of intent ids", field="depends_on")
        deps = list(depends_on or ())
        if len(deps) > limits.DEPENDS_ON:
            raise ValidationError(
                f"depends_on takes at most {limits.DEPENDS_ON} ids", field="depends_on"
            )
        for dep in deps:
            if check_id(dep, "depends_on") == intent_id:
                raise ValidationError("an intent cannot depend on itself", field="depends_on")
        if parent_intent_id is not None:
            if check_id(parent_intent_id, "parent_intent_id") == intent_id:
                raise ValidationError(
                    "an intent cannot be its own parent", field="parent_intent_id"
                )
            same_group(intent_id, parent_intent_id, "parent_intent_id")
        if len(set(deps)) != len(deps):
            raise ValidationError("depends_on lists an id twice", field="depends_on")
        for dep in deps:
            same_group(intent_id, dep, "depends_on")
        if on_dependency_failure not in DEPENDENCY_FAILURE_POLICIES:
            raise ValidationError(
                "on_dependency_failure must be block, abandon or ignore",
                field="on_dependency_failure",
            )
        if not isinstance(cascade_abandon, bool):
            raise ValidationError("cascade_abandon must be True or False", field="cascade_abandon")
        spec: dict[str, Any] = {
            "title": title,
            "created_by": creator,
            "status": str(initial),
            "depends_on": deps,
            "on_dependency_failure": on_dependency_failure,
            "cascade_abandon": cascade_abandon,
        }
        if description is not None:
            spec["description"] = description
        if confidence is not None:
            spec["confidence"] = confidence
        if parent_intent_id is not None:
            spec["parent_intent_id"] = parent_intent_id
        if assign is not None:
            spec["assign"] = check_text(assign, "assign", 256)
        spec_text = _spec_text(spec)
        constraints_text = json_text(dict(constraints or {}), "constraints")
        state_text = encode_state_pairs(state or {})
        digest = canonical_digest(spec, dict(constraints or {}), dict(state or {}))
        p = ks.partition(intent_id)
        ik, sk, ek, _ = ks.intent_keys(intent_id)
        index_all, *tail = _partition_keys(ks, p)
        keys = [
            ik,
            sk,
            ek,
            index_all,
            ks.index_creator(p, creator),
            ks.children(parent_intent_id if parent_intent_id is not None else intent_id),
            *tail,
        ]
        return Call(
            "create_intent",
            keys,
            [intent_id, spec_text, constraints_text, state_text, digest, self.actor],
        )

    def get_intent(self, intent_id: str) -> Call:
        ks = self.keyspace
        check_id(intent_id)
        return Call("get_intent", [ks.intent(intent_id), ks.state(intent_id)], [])

    def patch_state(
        self, intent_id: str, version: int | None, patches_text: str, lease: LeaseRef = None
    ) -> Call:
        return Call(
            "patch_state",
            [*self._intent_keys(intent_id), self.keyspace.leases(intent_id)],
            [intent_id, _version(version), patches_text, self.actor, presented_leases(lease)],
        )

    def update_state(
        self, intent_id: str, version: int | None, pairs_text: str, lease: LeaseRef = None
    ) -> Call:
        return Call(
            "update_state",
            [*self._intent_keys(intent_id), self.keyspace.leases(intent_id)],
            [intent_id, _version(version), pairs_text, self.actor, presented_leases(lease)],
        )

    # -- leases -------------------------------------------------------------------------
    def _lease_keys(self, intent_id: str) -> list[str]:
        return list(_lease_keys_of(self.keyspace, check_id(intent_id)))

    def acquire_lease(
        self, intent_id: str, scope: str, lease_id: str, duration_seconds: float
    ) -> Call:
        return Call(
            "acquire_lease",
            self._lease_keys(intent_id),
            [intent_id, check_scope(scope), lease_id, duration_ms(duration_seconds), self.actor],
        )

    def renew_lease(self, intent_id: str, lease_id: str, duration_seconds: float) -> Call:
        check_id(lease_id, "lease_id")
        return Call(
            "renew_lease",
            self._lease_keys(intent_id),
            [intent_id, lease_id, duration_ms(duration_seconds), self.actor],
        )

    def release_lease(self, intent_id: str, lease_id: str) -> Call:
        check_id(lease_id, "lease_id")
        return Call("release_lease", self._lease_keys(intent_id), [intent_id, lease_id, self.actor])

    def save_conversation(
        self, intent_id: str, lease_id: str | None, record: str, ttl_seconds: int
    ) -> Call:
        """An LLM agent's conversation record (sdk/llm/conversation.py), written only
        while ``lease_id`` (when given) is still the writer's live lease: a process that
        lost its lease cannot overwrite what the replica that took over resumes from."""
        ks = self.keyspace
        ik = ks.intent_keys(check_id(intent_id))[0]
        if lease_id is not None:
            check_id(lease_id, "lease_id")
        return Call(
            "save_conversation",
            [ik, ks.leases(intent_id), ks.llm_conversation(intent_id, self.actor)],
            [intent_id, lease_id or "", self.actor, record, str(ttl_seconds)],
        )

    def revoke_lease(self, intent_id: str, lease_id: str, reason: str) -> Call:
        check_id(lease_id, "lease_id")
        check_text(reason, "reason", limits.TEXT_BYTES)
        return Call(
            "revoke_lease", self._lease_keys(intent_id), [intent_id, lease_id, reason, self.actor]
        )

    def expire_lease(self, intent_id: str, scope: str, lease_id: str) -> Call:
        return Call(
            "expire_lease", self._lease_keys(intent_id), [intent_id, check_scope(scope), lease_id]
        )

    def get_leases(self, intent_id: str) -> Call:
        return Call("get_leases", [self.keyspace.leases(check_id(intent_id))], [])

    def set_status(
        self,
        intent_id: str,
        version: int | None,
        status: str,
        reason: str | None,
        related: Sequence[str] = (),
    ) -> Call:
        """``related``: the other intents of the graph whose keys the call declares, for
        the moves the change causes (the script names the ones it needs; see
        graph.lua)."""
        ks = self.keyspace
        target = _status(status)
        if reason is not None:
            check_text(reason, "reason", limits.TEXT_BYTES, required=False)
        check_id(intent_id)
        keys = [
            ks.intent(intent_id),
            ks.state(intent_id),
            ks.events(intent_id),
            ks.children(intent_id),
            *ks.graph_tail(ks.partition(intent_id)),
        ]
        for other in related:
            keys += [ks.intent(other), ks.events(other), ks.children(other)]
        return Call(
            "set_status",
            keys,
            [
                intent_id,
                _version(version),
                str(target),
                reason or "",
                self.actor,
                json_text(list(related), "related"),
            ],
        )

    def set_dependency(
        self, op: str, intent_id: str, dependency_id: str, version: int | None
    ) -> Call:
        ks = self.keyspace
        check_id(intent_id)
        if check_id(dependency_id, "dependency_id") == intent_id:
            raise ValidationError("an intent cannot depend on itself", field="dependency_id")
        same_group(intent_id, dependency_id, "dependency_id")
        keys = [
            ks.intent(intent_id),
            ks.state(intent_id),
            ks.events(intent_id),
            *ks.graph_tail(ks.partition(intent_id)),
        ]
        return Call(
            "set_dependency",
            keys,
            [op, intent_id, dependency_id, _version(version), self.actor],
        )

    def log_event(self, intent_id: str, event_type: str, payload: Mapping[str, Any] | None) -> Call:
        kind = check_text(str(event_type), "event_type", 64)
        if kind in RESERVED:
            raise ValidationError(
                f"{kind} is recorded by oibus itself and cannot be logged", field="event_type"
            )
        if payload is not None and not isinstance(payload, Mapping):
            raise ValidationError("payload must be a mapping", field="payload")
        text = check_json(dict(payload or {}), "payload", limits.PAYLOAD_BYTES)
        keys = self._intent_keys(intent_id)
        return Call("log_event", [keys[0], keys[2], keys[3]], [intent_id, kind, text, self.actor])

    def assign_agent(self, intent_id: str, agent_id: str) -> Call:
        check_text(agent_id, "agent_id", 256)
        return Call("assign_agent", self._intent_keys(intent_id), [intent_id, agent_id, self.actor])

    def unassign_agent(self, intent_id: str, agent_id: str) -> Call:
        check_text(agent_id, "agent_id", 256)
        return Call(
            "unassign_agent", self._intent_keys(intent_id), [intent_id, agent_id, self.actor]
        )

    def get_intents(self, intent_ids: Sequence[str]) -> Call:
        """Snapshots of several intents of one partition in one script: a listing page's
        share of a partition, instead of one ``get_intent`` per intent. The ids must share
        a partition (one call's keys share a slot) and are at most a page."""
        ks = self.keyspace
        if not intent_ids or len(intent_ids) > limits.PAGE_MAX:
            raise ValidationError(
                f"get_intents reads 1 to {limits.PAGE_MAX} intents", field="intent_ids"
            )
        first = check_id(intent_ids[0], "intent_ids")
        tag = ks.tag_of(first)
        keys: list[str] = []
        for intent_id in intent_ids:
            if ks.tag_of(check_id(intent_id, "intent_ids")) != tag:
                raise ValidationError(
                    f"{intent_id} is not in the partition of {first}: one call reads one partition",
                    field="intent_ids",
                )
            keys += (ks.intent(intent_id), ks.state(intent_id))
        return Call("get_intents", keys, [])
