"""Agent memory (RFC-0015): the record, the keyword tokenizer, the argument checks and
call builders of the memory scripts, and the decoders of what they return. Pure: no I/O.

Semantics, in one place:

- **Namespaced per agent.** All of one agent's memory lives under the hash tag
  ``{ns:m:<agent>}`` (``Keyspace.memory_keys``): four keys that every memory script
  declares, so an entry and all its index entries change in one script on one slot, and
  agents spread over a cluster by name. Another agent's memory is only reached by naming
  that agent; nothing lists agents.
- **Types.** ``working`` entries expire after ``WORKING_TTL_SECONDS`` (1 h) unless the
  call says otherwise; ``episodic`` ones when a ``ttl_seconds`` is given; ``long_term``
  ones never (a TTL for them is refused). Expiry is decided by the server clock: an entry
  whose ``expires_at`` has passed reads as absent everywhere, and the write scripts remove
  up to ``MEMORY_PURGE`` such entries each, with their index entries.
- **Versions.** ``create_memory`` starts an entry at version 1 and refuses a live key;
  ``remember`` (upsert) creates or replaces value, type, tags and expiry, bumping the
  version; ``update_memory`` replaces the value (and tags, when given) only at the
  version the caller read, keeping type and expiry. ``created_at`` survives replacement.
- **Values** are JSON, checked as intent state is (``codec.json_text``: no NaN, bytes,
  sets, non-string keys, out-of-range integers), at most ``MEMORY_VALUE_BYTES``.
- **Recall** is keyword recall over an inverted index kept by the write scripts: the
  tokens of an entry are the distinct words (Unicode letters and digits, case-folded,
  two characters or more unless non-ASCII, at most ``MEMORY_TOKEN_BYTES``) of its key and
  of the strings in its value (the first ``MEMORY_TOKENS``), and of its tags (the first
  ``MEMORY_TAG_TOKENS``). One tokenizer (here) serves both the index and the query, so
  they always agree; the scripts check the tokens' bounds. Ranking: most matching query
  tokens, then most recently updated, then key. The cost is bounded by the query, never
  by the size of the memory: at most ``MEMORY_QUERY_TOKENS`` tokens x (1 or 3 types) x
  ``MEMORY_RECALL_SCAN`` index reads, each token's most recently updated entries.
- **No events.** Memory writes append no events: events belong to an intent (its log and
  its partition's bus), and memory belongs to an agent, on another hash tag, so one
  script could not write both. Memory is also the agent's private scratch space, written
  on every tool call of an LLM loop: putting it on the bus would show every subscriber
  and webhook what an agent keeps to itself and multiply the bus's traffic for no reader.
  Versions and ``updated_at`` say what changed and when; what the agent *did* with its
  memory is logged on the intent by the engine (tool-call events).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_text
from oibus.bus.codec import STORED_ERRORS, json_text, to_datetime, unreadable
from oibus.bus.errors import PayloadTooLargeError, ValidationError
from oibus.bus.keyspace import Keyspace
from oibus.bus.listing import check_limit
from oibus.bus.models import Page
from oibus.bus.ops import Call

__all__ = [
    "MEMORY_TYPES",
    "WORKING_TTL_SECONDS",
    "MemoryRecord",
    "MemoryType",
    "MemoryWrite",
    "check_agent",
    "content_tokens",
    "decode_page",
    "decode_rows",
    "delete_call",
    "get_call",
    "list_call",
    "put_call",
    "query_tokens",
    "recall_call",
    "tag_tokens",
    "update_call",
]

MemoryType = Literal["working", "episodic", "long_term"]
MEMORY_TYPES: Final = get_args(MemoryType)
WORKING_TTL_SECONDS: Final = 3600.0
"""The time to live of a ``working`` entry when the call gives none."""
AGENT_BYTES: Final = 256
"""Longest agent id (as for an actor)."""
QUERY_BYTES: Final = 65_536
"""Longest recall query text; only its first ``MEMORY_QUERY_TOKENS`` tokens count."""


class MemoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of an agent's memory (RFC-0015). ``version`` starts at 1 and grows with
    each replacement or update; ``expires_at`` is ``None`` for an entry that never
    expires. Times are the server's."""

    agent_id: str
    key: str
    value: Any
    memory_type: MemoryType
    tags: tuple[str, ...] = ()
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None


# -- tokens -----------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> Iterator[str]:
    for match in _WORD.finditer(text.casefold()):
        word = match.group()
        if (len(word) >= 2 or not word.isascii()) and len(
            word.encode()
        ) <= limits.MEMORY_TOKEN_BYTES:
            yield word


def _distinct(texts: Iterable[str], most: int) -> list[str]:
    """The first ``most`` distinct words of ``texts``, in reading order; stops reading as
    soon as it has them (a large value is not tokenized past what is indexed)."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in _words(text):
            seen.setdefault(word, None)
            if len(seen) >= most:
                return list(seen)
    return list(seen)


def _strings(value: Any) -> Iterator[str]:
    """The strings of a JSON value in document order (object values, not their keys).
    Iterative: depth is already bounded by the JSON checks, this keeps it off the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))


def content_tokens(key: str, value: Any) -> list[str]:
    """The recall tokens of an entry's key and value."""
    return _distinct(_chain(key, _strings(value)), limits.MEMORY_TOKENS)


def tag_tokens(tags: Sequence[str]) -> list[str]:
    """The recall tokens of an entry's tags."""
    return _distinct(tags, limits.MEMORY_TAG_TOKENS)


def query_tokens(query: str) -> list[str]:
    """The tokens a recall looks up: the query's first distinct words."""
    return _distinct([query], limits.MEMORY_QUERY_TOKENS)


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


# -- checks -----------------------------------------------------------------------------


def check_agent(agent_id: object) -> str:
    return check_text(agent_id, "agent_id", AGENT_BYTES, line=True)


def _key(key: object) -> str:
    return check_text(key, "key", limits.MEMORY_KEY_BYTES, line=True)


def _type(memory_type: object) -> MemoryType:
    if not isinstance(memory_type, str) or memory_type not in MEMORY_TYPES:
        raise ValidationError(
            f"memory_type must be one of {', '.join(MEMORY_TYPES)}", field="memory_type"
        )
    return memory_type  # type: ignore[return-value]


def _tags(tags: object) -> list[str]:
    if isinstance(tags, str | bytes) or not isinstance(tags, Iterable):
        raise ValidationError("tags must be a sequence of strings", field="tags")
    found: dict[str, None] = {}
    for tag in tags:
        found.setdefault(check_text(tag, "tags", limits.MEMORY_TAG_BYTES, line=True), None)
        if len(found) > limits.MEMORY_TAGS:
            raise PayloadTooLargeError(
                f"an entry takes at most {limits.MEMORY_TAGS} tags",
                field="tags",
                limit=limits.MEMORY_TAGS,
            )
    return list(found)


def _ttl_ms(memory_type: MemoryType, ttl_seconds: object) -> int | None:
    """Milliseconds to live (rounded up), the type's default when ``None``."""
    if ttl_seconds is None:
        return round(WORKING_TTL_SECONDS * 1000) if memory_type == "working" else None
    if memory_type == "long_term":
        raise ValidationError("long_term memory does not expire", field="ttl_seconds")
    high = limits.MEMORY_TTL_MS / 1000
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int | float)
        or not 0 < ttl_seconds <= high  # before isfinite: huge ints overflow float()
        or not math.isfinite(ttl_seconds)
    ):
        raise ValidationError(
            f"ttl_seconds must be a number above 0 and at most {high:g}", field="ttl_seconds"
        )
    return min(math.ceil(ttl_seconds * 1000), limits.MEMORY_TTL_MS)


def _value(value: object) -> str:
    text = json_text(value, "value")
    size = len(text.encode())
    if size > limits.MEMORY_VALUE_BYTES:
        raise PayloadTooLargeError(
            f"value is {size} bytes as JSON; the limit is {limits.MEMORY_VALUE_BYTES}",
            field="value",
            limit=limits.MEMORY_VALUE_BYTES,
            size=size,
        )
    return text


def _version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 10**15:
        raise ValidationError("version must be a positive integer", field="version")
    return version


# -- writes -----------------------------------------------------------------------------

_value_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class MemoryWrite:
    """A checked write and what its reply needs to become the record without a read."""

    call: Call
    agent_id: str
    key: str
    value_text: str

    def record(self, meta: str) -> MemoryRecord:
        return _record(self.agent_id, self.key, meta, self.value_text)


def put_call(
    keyspace: Keyspace,
    *,
    agent_id: object,
    key: object,
    value: object,
    memory_type: object,
    tags: object,
    ttl_seconds: object,
    mode: Literal["create", "upsert"],
) -> MemoryWrite:
    """``put_memory``: create only (``mode="create"``) or create-or-replace."""
    agent, name, kind = check_agent(agent_id), _key(key), _type(memory_type)
    text = _value(value)
    tag_list = _tags(tags)
    ttl = _ttl_ms(kind, ttl_seconds)
    call = Call(
        "put_memory",
        list(keyspace.memory_keys(agent)),
        [
            agent,
            name,
            mode,
            kind,
            text,
            json_text(tag_list, "tags"),
            json_text(tag_tokens(tag_list), "tags"),
            json_text(content_tokens(name, _value_decoder.decode(text)), "value"),
            "" if ttl is None else str(ttl),
        ],
    )
    return MemoryWrite(call, agent, name, text)


def update_call(
    keyspace: Keyspace,
    *,
    agent_id: object,
    key: object,
    version: object,
    value: object,
    tags: object,
) -> MemoryWrite:
    """``update_memory``: the new value (and tags, unless ``None``) at ``version``."""
    agent, name, ver = check_agent(agent_id), _key(key), _version(version)
    text = _value(value)
    tag_list = None if tags is None else _tags(tags)
    call = Call(
        "update_memory",
        list(keyspace.memory_keys(agent)),
        [
            agent,
            name,
            str(ver),
            text,
            "" if tag_list is None else json_text(tag_list, "tags"),
            "" if tag_list is None else json_text(tag_tokens(tag_list), "tags"),
            json_text(content_tokens(name, _value_decoder.decode(text)), "value"),
        ],
    )
    return MemoryWrite(call, agent, name, text)


def delete_call(keyspace: Keyspace, agent_id: object, key: object) -> Call:
    """``delete_memory``: its reply is 1 when a live entry was removed, else 0."""
    agent, name = check_agent(agent_id), _key(key)
    return Call("delete_memory", list(keyspace.memory_keys(agent)), [agent, name])


# -- reads ------------------------------------------------------------------------------


def get_call(keyspace: Keyspace, agent_id: object, key: object) -> Call:
    agent, name = check_agent(agent_id), _key(key)
    return Call("get_memory", list(keyspace.memory_keys(agent)[:3]), [agent, name])


def list_call(
    keyspace: Keyspace,
    agent_id: object,
    *,
    memory_type: object,
    tag: object,
    limit: object,
    cursor: object,
) -> Call:
    """One page, most recently updated first; ``cursor`` is a ``next_cursor`` returned
    by the previous page."""
    agent = check_agent(agent_id)
    kind = "" if memory_type is None else _type(memory_type)
    tag_text = "" if tag is None else check_text(tag, "tag", limits.MEMORY_TAG_BYTES, line=True)
    size = check_limit(limit, limits.MEMORY_PAGE)
    return Call(
        "list_memory",
        list(keyspace.memory_keys(agent)),
        [agent, kind, tag_text, _wire_cursor(cursor), str(size)],
    )


def recall_call(
    keyspace: Keyspace, agent_id: object, query: object, *, memory_type: object, limit: object
) -> Call | None:
    """The recall, or ``None`` when the query holds no word to look up (nothing matches)."""
    agent = check_agent(agent_id)
    text = check_text(query, "query", QUERY_BYTES, required=False)
    kind = "" if memory_type is None else _type(memory_type)
    size = check_limit(limit, limits.MEMORY_RECALL_MAX)
    tokens = query_tokens(text)
    if not tokens:
        return None
    return Call(
        "recall_memory",
        list(keyspace.memory_keys(agent)),
        [agent, kind, str(size), json_text(tokens, "query")],
    )


_CURSOR = re.compile(r"\d{16}:")


def _wire_cursor(cursor: object) -> str:
    """A public cursor is ``<16-digit updated_at µs>:<key>``; the index separates the two
    with NUL, which no key holds."""
    if cursor is None:
        return ""
    if not isinstance(cursor, str) or _CURSOR.match(cursor) is None:
        raise ValidationError("cursor is not one this listing returned", field="cursor")
    _key(cursor[17:])
    return cursor[:16] + "\0" + cursor[17:]


# -- decoding ---------------------------------------------------------------------------


class _Meta(msgspec.Struct):
    t: MemoryType
    g: list[str]
    n: int
    c: int
    u: int
    e: int | None = None


_meta_decoder = msgspec.json.Decoder(_Meta)


def _record(agent_id: str, key: str, meta: str, value: str) -> MemoryRecord:
    try:
        m = _meta_decoder.decode(meta)
        return MemoryRecord(
            agent_id=agent_id,
            key=key,
            value=_value_decoder.decode(value),
            memory_type=m.t,
            tags=tuple(m.g),
            version=m.n,
            created_at=to_datetime(m.c),
            updated_at=to_datetime(m.u),
            expires_at=None if m.e is None else to_datetime(m.e),
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"memory {key!r} of agent {agent_id!r}", exc) from exc


def decode_rows(agent_id: str, flat: Sequence[str]) -> list[MemoryRecord]:
    """Records from a read script's ``key, metadata, value, …`` reply."""
    return [_record(agent_id, flat[n], flat[n + 1], flat[n + 2]) for n in range(0, len(flat), 3)]


def decode_page(agent_id: str, reply: Sequence[str]) -> Page[MemoryRecord]:
    """``list_memory``'s reply (the next cursor, then rows) as a page."""
    wire = reply[0]
    cursor = None if not wire else wire[:16] + ":" + wire[17:]
    return Page(decode_rows(agent_id, reply[1:]), cursor)
