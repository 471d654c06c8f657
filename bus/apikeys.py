"""API keys of the HTTP server: what a key is, how it is stored, and what each role may
do. Pure: the store itself is ``oibus.gateway.keys``.

A key names a **principal** (the agent id every event it causes is recorded under) and a
**role**:

- ``reader``: reads only;
- ``agent``: reads and writes as its own principal; an ``X-Agent-ID`` naming anyone else
  is refused (403), so an agent cannot act as another;
- ``service``: reads and writes as any agent it names in ``X-Agent-ID`` (a trusted process
  that runs several agents, as the reference SDK's clients do), else as itself;
- ``admin``: what a service may, plus the admin surface (dead letters, leases of others).

Keys are random (``oik_`` and 32 bytes, URL-safe) and stored by their SHA-256 only: a
read of the store gives no usable key, and a lookup by digest compares in constant time
with respect to the key (a hash table keyed by a cryptographic digest leaks nothing of
the key's bytes through timing).
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum
from typing import Final

import msgspec

from oibus.bus.checks import check_text
from oibus.bus.errors import ValidationError

__all__ = ["KEY_PREFIX", "KeyRecord", "Role", "digest", "key_id", "new_key", "record_of"]

KEY_PREFIX: Final = "oik_"
ID_CHARS: Final = 12
"""How much of the digest names a key in listings and ``oibus keys revoke``."""


class Role(StrEnum):
    READER = "reader"
    AGENT = "agent"
    SERVICE = "service"
    ADMIN = "admin"

    @property
    def writes(self) -> bool:
        return self is not Role.READER

    @property
    def acts_for_others(self) -> bool:
        """May name another agent in ``X-Agent-ID``."""
        return self in (Role.SERVICE, Role.ADMIN)


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    principal: str
    role: Role
    label: str = ""
    created_at: int = 0
    """Microseconds since the epoch, by the server's clock."""


_record_decoder = msgspec.json.Decoder(KeyRecord)
_record_encoder = msgspec.json.Encoder()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """What the store keeps and looks up by."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest_hex: str) -> str:
    return digest_hex[:ID_CHARS]


def record_of(principal: object, role: object, label: object = "") -> KeyRecord:
    """A checked record (``created_at`` is set by the store, from the server's clock)."""
    name = check_text(principal, "principal", 256, line=True)
    try:
        kind = Role(str(role))
    except ValueError:
        raise ValidationError(
            f"role must be one of {', '.join(r.value for r in Role)}", field="role"
        ) from None
    note = check_text(label, "label", 256, required=False, line=True)
    return KeyRecord(principal=name, role=kind, label=note)


def encode_record(record: KeyRecord) -> str:
    return _record_encoder.encode(record).decode()


def decode_record(text: str) -> KeyRecord:
    return _record_decoder.decode(text)
