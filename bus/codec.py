"""Encoding arguments for the scripts and decoding their replies. Pure and shared by the
sync and async clients, so both read the same bytes the same way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from .errors import NotFoundError, PayloadTooLargeError, ValidationError
from .limits import STATE_BYTES
from .models import Event, Intent, StatePatch
from .pointer import parse
from .statuses import IntentStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_list_decoder = msgspec.json.Decoder(list[str])

PATCH_OPS = ("set", "append", "remove")


def to_datetime(micros: str | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValidationError("datetimes must be timezone-aware", field="since")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def json_text(value: Any, field: str) -> str:
    try:
        return _encoder.encode(value).decode()
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        raise ValidationError(f"{field}: value is not JSON-encodable ({exc})", field=field) from exc


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
    return _encoder.encode(packed).decode()


def encode_state_pairs(state: Mapping[str, Any]) -> str:
    pairs = []
    for key, value in state.items():
        if not isinstance(key, str):
            raise ValidationError("state keys must be strings", field="state")
        pairs.append([key, json_text(value, f"state[{key!r}]")])
    return _encoder.encode(pairs).decode()


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def decode_intent(reply: Sequence[Any], intent_id: str) -> Intent:
    """Build an Intent from a script snapshot ``[intent hash, state hash]``."""
    fields = _pairs(reply[0])
    if not fields:
        raise NotFoundError(f"intent {intent_id} does not exist", resource="intent", id=intent_id)
    state_flat = reply[1]
    if state_flat:
        parts = [
            _encoder.encode(state_flat[n]).decode() + ":" + state_flat[n + 1]
            for n in range(0, len(state_flat), 2)
        ]
        state = _dict_decoder.decode("{" + ",".join(parts) + "}")
    else:
        state = {}
    confidence = fields.get("confidence")
    return Intent(
        id=fields["id"],
        title=fields["title"],
        description=fields.get("description"),
        created_by=fields["created_by"],
        status=IntentStatus(fields["status"]),
        constraints=_dict_decoder.decode(fields["constraints"]),
        state=state,
        confidence=int(confidence) if confidence is not None else None,
        version=int(fields["version"]),
        created_at=to_datetime(fields["created_at"]),
        updated_at=to_datetime(fields["updated_at"]),
        parent_intent_id=fields.get("parent_intent_id"),
        depends_on=_list_decoder.decode(fields["depends_on"]),
        assigned_agents=_list_decoder.decode(fields["agents"]),
    )


def decode_event(intent_id: str, entry_id: str, fields: Mapping[str, str]) -> Event:
    payload = _decoder.decode(fields["p"])
    return Event(
        id=entry_id,
        intent_id=intent_id,
        seq=int(fields["s"]),
        event_type=fields["t"],
        actor=fields["a"],
        payload=payload if isinstance(payload, dict) else {"value": payload},
        created_at=to_datetime(fields["at"]),
    )


def index_member_id(member: str) -> str:
    """Index members are ``<16-digit created_at micros>:<id>`` so that lexical order is
    creation order and a member is an exact, stable cursor."""
    return member.split(":", 1)[1]
