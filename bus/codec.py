"""Encoding arguments for the scripts and decoding their replies. Pure and shared by the
sync and async clients, so both read the same bytes the same way."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from oibus.bus.errors import BusError, NotFoundError, PayloadTooLargeError, ValidationError
from oibus.bus.limits import JSON_DEPTH, STATE_BYTES
from oibus.bus.limits import PATCH_OPS as PATCH_OPS_LIMIT
from oibus.bus.models import Event, Intent, Lease, StatePatch
from oibus.bus.pointer import parse

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])

PATCH_OPS = ("set", "append", "remove")


_MICROSECOND = timedelta(microseconds=1)


def to_datetime(micros: str | int) -> datetime:
    # the same value as timedelta(microseconds=...) (integer arithmetic, same OverflowError),
    # at under half the cost: every event and lease read makes one
    return _EPOCH + _MICROSECOND * int(micros)


def to_micros(moment: object, field: str = "since") -> int:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValidationError(f"{field} must be a timezone-aware datetime", field=field)
    micros = (moment - _EPOCH) // timedelta(microseconds=1)
    if micros < 0:
        raise ValidationError(f"{field} must not be before 1970", field=field)
    return micros


INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
"""The integers a JSON value may hold: what every reader of the bus (Lua's cjson, msgspec,
the HTTP clients) parses without loss or refusal."""
_SCALARS: Final = (str, bool, type(None))


def _json_problem(value: Any, depth: int) -> tuple[str, str] | None:
    """Where (a JSON pointer) and why ``value`` is not plain JSON, or None. The encoder
    would convert what is not (NaN to null, bytes to base64, a set to a list, a datetime
    or a Decimal to a string, an integer key to a string): the caller would read back
    something else than it wrote, so such values are refused instead."""
    kind = type(value)
    if kind in _SCALARS:
        return None
    if kind is int:
        return None if INT_MIN <= value <= INT_MAX else ("", "integer out of the 64-bit range")
    if kind is float:
        return None if math.isfinite(value) else ("", f"{value} is not a JSON number")
    if kind is dict or kind is list or kind is tuple:
        if depth >= JSON_DEPTH:
            return "", f"nests deeper than {JSON_DEPTH} levels"
        items = value.items() if kind is dict else enumerate(value)
        for key, item in items:
            if type(key) is not str and kind is dict:
                return f"/{key}", f"{type(key).__name__} key (JSON object keys are strings)"
            problem = _json_problem(item, depth + 1)
            if problem is not None:
                return f"/{key}{problem[0]}", problem[1]
        return None
    if isinstance(value, str):  # subclasses (str enums) encode as their value
        return None
    if isinstance(value, int):  # int enums too
        return _json_problem(int(value), depth)
    if isinstance(value, float):
        return _json_problem(float(value), depth)
    if isinstance(value, Mapping):
        return _json_problem(dict(value), depth)
    if isinstance(value, list | tuple):
        return _json_problem(list(value), depth)
    return "", f"{kind.__name__} is not a JSON value"


def json_text(value: Any, field: str) -> str:
    """``value`` as JSON text, refusing anything that is not plain JSON (see
    ``_json_problem``) with the place in it that is not."""
    problem = _json_problem(value, 0)
    if problem is not None:
        where, why = problem
        if len(where) > 60:  # a path as deep as the limit says nothing more
            where = where[:57] + "..."
        raise ValidationError(f"{field}{where}: {why}", field=field)
    try:
        return _encoder.encode(value).decode()
    except (TypeError, ValueError, msgspec.EncodeError, OverflowError, RecursionError) as exc:
        # ValueError covers lone surrogates (not UTF-8)
        raise ValidationError(f"{field}: value is not JSON-encodable ({exc})", field=field) from exc


def canonical_digest(*parts: Any) -> str:
    """A fingerprint of a request that does not depend on the order of mapping keys, so a
    retried create with the same content is recognised as the same create."""
    try:
        raw = _sorted_encoder.encode(parts)
    except (TypeError, ValueError, msgspec.EncodeError, RecursionError) as exc:
        raise ValidationError(f"request is not JSON-encodable ({exc})") from exc
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def encode_patches(patches: Iterable[StatePatch | Mapping[str, Any]]) -> str:
    """Check each op at the boundary and pack them as ``[[op, path, value JSON text]]``:
    values travel as text so the script can store them without re-encoding."""
    packed: list[list[str]] = []
    total = 0
    for n, raw in enumerate(patches):
        field = f"patches[{n}]"
        op: object
        path: object
        value: object
        if isinstance(raw, StatePatch):
            op, path, value = raw.op, raw.path, raw.value
        elif isinstance(raw, Mapping):
            op, path, value = raw.get("op"), raw.get("path"), raw.get("value")
            if op in ("set", "append") and "value" not in raw:
                raise ValidationError(f"{field}: {op} needs a value", field=field)
        else:
            raise ValidationError(f"{field}: a patch is a StatePatch or a mapping", field=field)
        if op not in PATCH_OPS:
            raise ValidationError(f"{field}: unknown op {op!r} (set, append, remove)", field=field)
        parse(path, field)
        text = "" if op == "remove" else json_text(value, field)
        total += len(text)
        packed.append([str(op), str(path), text])
    if not packed:
        raise ValidationError("patches must be a non-empty list", field="patches")
    if total > STATE_BYTES:
        raise PayloadTooLargeError(
            f"patch values are {total} bytes; the state limit is {STATE_BYTES}",
            field="patches",
            limit=STATE_BYTES,
            size=total,
        )
    return json_text(packed, "patches")


def encode_sets(state: Mapping[str, Any]) -> str:
    """``update_state``'s top-level sets as ``[[key, value JSON text]]``."""
    if not isinstance(state, Mapping) or not state:
        raise ValidationError("state_patch must be a non-empty mapping", field="state_patch")
    if len(state) > PATCH_OPS_LIMIT:
        raise PayloadTooLargeError(
            f"more than {PATCH_OPS_LIMIT} keys in one update",
            field="state_patch",
            limit=PATCH_OPS_LIMIT,
            size=len(state),
        )
    packed = []
    total = 0
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValidationError("state keys must be strings", field="state_patch")
        text = json_text(value, f"state_patch[{key!r}]")
        total += len(text)
        packed.append([key, text])
    if total > STATE_BYTES:
        raise PayloadTooLargeError(
            f"values are {total} bytes; the state limit is {STATE_BYTES}",
            field="state_patch",
            limit=STATE_BYTES,
            size=total,
        )
    return json_text(packed, "state_patch")


def encode_state_pairs(state: Mapping[str, Any]) -> str:
    pairs = []
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValidationError("state keys must be strings", field="state")
        pairs.append([key, json_text(value, f"state[{key!r}]")])
    return json_text(pairs, "state")


STORED_ERRORS = (msgspec.MsgspecError, RecursionError, ValueError, KeyError)
"""What decoding a stored record can raise when it was written around the scripts."""


def unreadable(what: str, exc: BaseException) -> BusError:
    """The error for a stored record this SDK cannot decode: a server-side problem, never
    the caller's bad input."""
    return BusError(f"{what} is stored in a form this SDK cannot read: {exc}")


_intent_decoder = msgspec.json.Decoder(Intent)


def decode_intent(reply: str | None, intent_id: str) -> Intent:
    """The intent from a script's snapshot: one JSON document (``lua/includes/snapshot.lua``),
    or nil when the intent does not exist."""
    if reply is None:
        raise NotFoundError(f"intent {intent_id} does not exist", resource="intent", id=intent_id)
    try:
        return _intent_decoder.decode(reply)
    except STORED_ERRORS as exc:
        raise unreadable(f"intent {intent_id}", exc) from exc


def decode_event(intent_id: str, entry_id: str, fields: Mapping[str, str]) -> Event:
    """Entries written around the scripts (missing or malformed fields) still read: an
    audit log must be readable whatever was put in it."""
    raw = fields.get("p", "{}")
    try:
        payload = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        payload = {"raw": raw}
    seq, at = fields.get("s", "0"), fields.get("at", "")
    return Event(
        id=entry_id,
        intent_id=intent_id,
        seq=int(seq) if seq.isdigit() else 0,
        event_type=fields.get("t", "unknown"),
        actor=fields.get("a", ""),
        payload=payload if isinstance(payload, dict) else {"value": payload},
        created_at=to_datetime(at)
        if at.isdigit()
        else to_datetime(int(entry_id.split("-", maxsplit=1)[0]) * 1000),
    )


def decode_written(intent_id: str, entry_id: str, fields: Mapping[str, str]) -> Event | None:
    """The Event ``decode_event`` makes of an entry the scripts wrote (every field, digits
    for seq and time, an object payload), built straight into the struct: fields by name,
    the payload decoded by the one dict decoder (which refuses anything but an object),
    the time added as integer microseconds. None for any other entry, which
    ``decode_event`` reads (or fails on) exactly as it always did. Pages and consumers
    decode every event they hand out, so this is their hot path."""
    try:
        seq, at = fields["s"], fields["at"]
        if seq.isdigit() and at.isdigit():
            return Event(
                id=entry_id,
                intent_id=intent_id,
                seq=int(seq),
                event_type=fields["t"],
                actor=fields["a"],
                payload=_dict_decoder.decode(fields["p"]),
                created_at=_EPOCH + _MICROSECOND * int(at),
            )
    except (KeyError, TypeError, msgspec.DecodeError, RecursionError):
        pass
    return None


def decode_events(intent_id: str, entries: Iterable[tuple[str, Mapping[str, str]]]) -> list[Event]:
    """A page of log entries in one pass, each the Event ``decode_event`` makes of it."""
    return [
        decode_written(intent_id, entry_id, fields) or decode_event(intent_id, entry_id, fields)
        for entry_id, fields in entries
    ]


def index_member(created_at: datetime, intent_id: str) -> str:
    """The index member of an intent (as ``create_intent.lua`` writes it): a listing
    cursor that stops exactly after this intent."""
    return f"{to_micros(created_at, 'created_at'):016d}:{intent_id}"


def index_member_id(member: str) -> str:
    """Index members are ``<16-digit created_at micros>:<id>`` so that lexical order is
    creation order and a member is an exact, stable cursor."""
    return member.split(":", 1)[1]


class _LeaseWire(msgspec.Struct):
    id: str
    agent_id: str
    scope: str
    status: str
    fence: int
    acquired_us: str
    expires_us: str
    ended_us: str = ""


_lease_decoder = msgspec.json.Decoder(_LeaseWire)


def decode_lease(text: str, intent_id: str, now_us: int | None = None) -> Lease:
    """A lease from its stored JSON; with the server's ``now_us``, an active lease past
    its expiry reads as expired (the script would treat it so)."""
    try:
        w = _lease_decoder.decode(text)
    except STORED_ERRORS as exc:
        raise unreadable(f"a lease of {intent_id}", exc) from exc
    status = w.status
    if status == "active" and now_us is not None and int(w.expires_us) <= now_us:
        status = "expired"
    return Lease(
        id=w.id,
        intent_id=intent_id,
        agent_id=w.agent_id,
        scope=w.scope,
        status=status,  # type: ignore[arg-type]
        fencing_token=w.fence,
        acquired_at=to_datetime(w.acquired_us),
        expires_at=to_datetime(w.expires_us),
        ended_at=to_datetime(w.ended_us) if w.ended_us else None,
    )
