"""The API key store: one hash per namespace (``Keyspace.api_keys``), SHA-256 of a key ->
its record. Used by the HTTP server on every request (one HGET) and by ``oibus keys``."""

from __future__ import annotations

from typing import cast

from oibus.bus.apikeys import (
    KeyRecord,
    Role,
    decode_record,
    digest,
    encode_record,
    key_id,
    new_key,
    record_of,
)
from oibus.bus.errors import NotFoundError, ValidationError
from oibus.sdk._async.client import AsyncClient

__all__ = ["add_key", "list_keys", "lookup", "revoke_key"]


async def add_key(
    client: AsyncClient, principal: str, role: str | Role, label: str = ""
) -> tuple[str, KeyRecord]:
    """A new key for ``principal`` with ``role``: returns the key (shown this once) and
    its record."""
    checked = record_of(principal, role, label)
    seconds, micros = await client._runner.command("TIME")
    record = KeyRecord(
        principal=checked.principal,
        role=checked.role,
        label=checked.label,
        created_at=int(seconds) * 1_000_000 + int(micros),
    )
    key = new_key()
    await client._runner.command(
        "HSET", client.keyspace.api_keys, digest(key), encode_record(record)
    )
    return key, record


async def lookup(client: AsyncClient, key: str) -> KeyRecord | None:
    text = await client._runner.command("HGET", client.keyspace.api_keys, digest(key))
    return None if text is None else decode_record(cast(str, text))


async def list_keys(client: AsyncClient) -> list[tuple[str, KeyRecord]]:
    """Every key as (its id: the digest's first characters, its record), oldest first."""
    raw = cast(dict[str, str], await client._runner.command("HGETALL", client.keyspace.api_keys))
    rows = [(key_id(h), decode_record(text)) for h, text in raw.items()]
    return sorted(rows, key=lambda row: (row[1].created_at, row[0]))


async def revoke_key(client: AsyncClient, ident: str) -> KeyRecord:
    """Revoke by id (as listed) or by the key itself; an id must name exactly one key."""
    store = client.keyspace.api_keys
    if not ident:
        raise ValidationError("give a key id or the key", field="key")
    raw = cast(dict[str, str], await client._runner.command("HGETALL", store))
    hashes = [h for h in raw if h == digest(ident) or h.startswith(ident.lower())]
    if not hashes:
        raise NotFoundError(f"no API key {ident}", resource="key", id=ident)
    if len(hashes) > 1:
        raise ValidationError(f"{ident} names {len(hashes)} keys: give more of it", field="key")
    await client._runner.command("HDEL", store, hashes[0])
    return decode_record(raw[hashes[0]])
