"""The three dead-letter stores, one interface for the operator: list, show, replay,
purge.

- ``webhooks`` (``{ns}:dlq``): deliveries that failed for good; replay queues them on
  their subscription again (``webhooks.replay_dead_letters``).
- ``bus`` (``{ns}:dlq:bus``): bus entries the daemons' handlers failed on
  ``--max-deliveries`` times; replay runs the daemons' handling of the entry again, here
  and now (the handlers are idempotent: an entry handled twice changes nothing more).
- ``events`` (``{ns}:dlq:events``): entries an SDK consumer group (an agent) was handed
  more than ``max_deliveries`` times; replay appends a copy of the bus entry addressed
  to that group alone (field ``rg``): every other group, the daemons and live tails skip
  it. An entry consumed from an intent's or a portfolio's own log cannot be replayed that
  way (those logs are the protocol's append-only record); the consumer re-reads it with
  ``start=<entry id>``.

A letter is removed from its store once replayed, so a replay repeated after a crash
does not do the work twice (except the one letter in flight)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, cast, get_args

import msgspec

from oibus.bus.codec import to_datetime
from oibus.bus.consuming import REPLAY_FOR
from oibus.bus.errors import NotFoundError, ValidationError
from oibus.bus.keyspace import Keyspace
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.daemon.config import DaemonConfig
from oibus.daemon.handlers import BusHandlers
from oibus.daemon.metrics import Metrics
from oibus.daemon.webhooks import WebhookFanout, replay_dead_letters
from oibus.sdk._async.client import AsyncClient

Kind = Literal["webhooks", "bus", "events"]
KINDS: tuple[str, ...] = get_args(Kind)


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead letter, whatever the store: its id (the entry id), when it was given up
    on, and the store's fields as written."""

    kind: str
    id: str
    failed_at: datetime
    fields: dict[str, str]

    @property
    def summary(self) -> str:
        f = self.fields
        if self.kind == "webhooks":
            return (
                f"subscription {f.get('s', '?')}  event {f.get('k', '?')}  "
                f"attempts {f.get('n', '?')}  {f.get('err', '')}"
            )
        if self.kind == "bus":
            return (
                f"bus {f.get('partition', '?')}/{f.get('entry', '?')}  {f.get('type', '?')}  "
                f"intent {f.get('intent', '?')}  deliveries {f.get('deliveries', '?')}  "
                f"{f.get('error', '')}"
            )
        return (
            f"group {f.get('group', '?')}  {f.get('type', '?')}  intent {f.get('intent', '?')}  "
            f"event {f.get('event', '?')}  deliveries {f.get('deliveries', '?')}"
        )


class ReplayResult(msgspec.Struct, kw_only=True):
    replayed: int = 0
    skipped: dict[str, str] = msgspec.field(default_factory=dict)
    """letter id → why it stayed in the store"""


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return cast(Kind, kind)


def store(ks: Keyspace, kind: str) -> str:
    return {
        "webhooks": ks.dead_letters,
        "bus": ks.bus_dead_letters,
        "events": ks.event_dead_letters,
    }[check_kind(kind)]


def _letter(kind: str, entry_id: str, fields: dict[str, str]) -> Letter:
    return Letter(
        kind=kind,
        id=entry_id,
        failed_at=to_datetime(int(entry_id.split("-", maxsplit=1)[0]) * 1000),
        fields=fields,
    )


async def size(client: AsyncClient, kind: str) -> int:
    return int(await client._runner.command("XLEN", store(client.keyspace, kind)))


async def list_letters(
    client: AsyncClient, kind: str, *, limit: int = 100, cursor: str | None = None
) -> Page[Letter]:
    """Oldest first; pass ``next_cursor`` back as ``cursor``."""
    check_limit(limit)
    low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
    raw = await client._runner.command(
        "XRANGE", store(client.keyspace, kind), low, "+", "COUNT", limit + 1
    )
    entries = cast("list[tuple[str, dict[str, str]]]", raw)
    letters = [_letter(kind, i, f) for i, f in entries[:limit]]
    return Page(letters, entries[limit - 1][0] if len(entries) > limit else None)


async def get_letter(client: AsyncClient, kind: str, letter_id: str) -> Letter:
    check_event_cursor(letter_id, "id")
    raw = await client._runner.command("XRANGE", store(client.keyspace, kind), letter_id, letter_id)
    if not raw:
        raise NotFoundError(f"no {kind} dead letter {letter_id}", resource="dead_letter")
    entry_id, fields = raw[0]
    return _letter(kind, entry_id, fields)


async def purge(client: AsyncClient, kind: str, ids: Sequence[str] | None = None) -> int:
    """Delete the given letters, or (``ids`` None) the whole store; returns how many."""
    key = store(client.keyspace, kind)
    if ids is None:
        n, _ = await client._runner.commands([("XLEN", key), ("DEL", key)])
        return int(n)
    checked = [check_event_cursor(i, "ids") for i in ids]
    deleted = 0
    for start in range(0, len(checked), 500):
        deleted += int(await client._runner.command("XDEL", key, *checked[start : start + 500]))
    return deleted


async def _pages(
    client: AsyncClient, kind: str, ids: Sequence[str] | None
) -> list[tuple[str, dict[str, str]]]:
    """The letters to replay, in id order: the given ones (unknown ids are skipped by
    the caller), or every letter present when the replay starts (letters written during
    it wait for the next one: a replay that fails again must not loop)."""
    key = store(client.keyspace, kind)
    if ids is not None:
        found = await client._runner.commands(
            [("XRANGE", key, check_event_cursor(i, "ids"), i) for i in dict.fromkeys(ids)]
        )
        return [entry for reply in found for entry in reply]
    out: list[tuple[str, dict[str, str]]] = []
    last = await client._runner.command("XREVRANGE", key, "+", "-", "COUNT", 1)
    if not last:
        return out
    high, low = last[0][0], "-"
    while True:
        page = await client._runner.command("XRANGE", key, low, high, "COUNT", 500)
        if not page:
            return out
        out += page
        low = "(" + page[-1][0]


Progress = Callable[[int], None]


async def replay(
    client: AsyncClient,
    kind: str,
    ids: Sequence[str] | None = None,
    *,
    config: DaemonConfig | None = None,
    on_progress: Progress | None = None,
) -> ReplayResult:
    """Replay the given letters (or all); ``on_progress(n)`` after each ``n`` looked at."""
    kind = check_kind(kind)
    result = ReplayResult()
    if kind == "webhooks":
        entries = await _pages(client, kind, ids)
        for start in range(0, len(entries), 100):
            batch = [i for i, _ in entries[start : start + 100]]
            result.replayed += await replay_dead_letters(
                client.redis,
                client.keyspace,
                batch,
                config=None if config is None else config.webhooks,
            )
            if on_progress:
                on_progress(len(batch))
        left = await client._runner.commands(
            [("XRANGE", client.keyspace.dead_letters, i, i) for i, _ in entries]
        )
        for (entry_id, _), still in zip(entries, left, strict=True):
            if still:
                result.skipped[entry_id] = "its subscription is gone, expired or full"
        return result
    entries = await _pages(client, kind, ids)
    replay_one = _bus_replayer(client, config) if kind == "bus" else _events_replayer(client)
    key = store(client.keyspace, kind)
    for entry_id, fields in entries:
        why = await replay_one(fields)
        if why is None:
            await client._runner.command("XDEL", key, entry_id)
            result.replayed += 1
        else:
            result.skipped[entry_id] = why
        if on_progress:
            on_progress(1)
    return result


Replayer = Callable[[dict[str, str]], Any]


def _original(fields: dict[str, str]) -> dict[str, str] | None:
    raw = fields.get("fields")
    if not raw:
        return None
    try:
        found = msgspec.json.decode(raw, type=dict[str, str])
    except msgspec.DecodeError:
        return None
    return found


def _bus_replayer(client: AsyncClient, config: DaemonConfig | None) -> Replayer:
    settings = config or DaemonConfig(
        redis_url=None, namespace=client.keyspace.namespace, daemon_id="oibus-cli-replay"
    )
    metrics = Metrics()
    extra = []
    if settings.webhooks is not None:
        fanout = WebhookFanout(
            client.redis,
            client.keyspace,
            consumer="replay",
            metrics=metrics,
            config=settings.webhooks,
        )
        extra.append(fanout.on_bus_entry)
    handlers = BusHandlers(client, settings, metrics, extra=extra)

    async def one(fields: dict[str, str]) -> str | None:
        partition, entry = fields.get("partition", ""), fields.get("entry", "")
        original = _original(fields)
        if original is None and partition.isdigit():
            found = await client._runner.command(
                "XRANGE", client.keyspace.bus(int(partition)), entry, entry
            )
            original = found[0][1] if found else None
        if original is None or not partition.isdigit():
            return "the bus entry was trimmed and the letter does not carry it"
        await handlers(int(partition), entry, original)
        return None

    return one


def _events_replayer(client: AsyncClient) -> Replayer:
    ks = client.keyspace
    buses = {ks.bus(p) for p in range(ks.partitions)}

    async def one(fields: dict[str, str]) -> str | None:
        stream, group = fields.get("stream", ""), fields.get("group", "")
        if stream not in buses:
            return (
                f"consumed from {stream}, an append-only log: re-read it with "
                f"start={fields.get('entry', '?')}"
            )
        original = _original(fields) or {
            "i": fields.get("intent", ""),
            "e": fields.get("event", ""),
            "t": fields.get("type", ""),
        }
        if not original.get("i") or not original.get("e") or not group:
            return "the letter does not say which event it was"
        copy = {k: v for k, v in original.items() if k != REPLAY_FOR}
        copy[REPLAY_FOR] = group
        await client._runner.command("XADD", stream, "*", *[x for kv in copy.items() for x in kv])
        return None

    return one
