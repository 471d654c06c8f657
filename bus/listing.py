"""Paging plans for list_intents and get_events. Pure: which index to read, how to merge the
per-partition reads, where a page ends and what its cursor is."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from oibus.bus import limits
from oibus.bus.codec import to_micros
from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.models import Intent
from oibus.bus.statuses import IntentStatus


def check_limit(limit: object, maximum: int = limits.PAGE_MAX, field: str = "limit") -> int:
    """A count bound given by the caller (a page size, a depth): an integer, 1..maximum."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise ValidationError(f"{field} must be an integer from 1 to {maximum}", field=field)
    return limit


@dataclass(frozen=True, slots=True)
class IntentQuery:
    """Which per-partition index a listing reads, and which filters it still has to apply
    to what it reads. The most selective single index is chosen (parent, then creator, then
    status); the rest is filtered, within a scan budget, so a page never costs more than
    ``FILTER_SCAN`` entries however many intents exist."""

    index: Callable[[int], str]
    status: IntentStatus | None
    created_by: str | None
    filtered: bool

    def keep(self, intent: Intent) -> bool:
        return (self.status is None or intent.status == self.status) and (
            self.created_by is None or intent.created_by == self.created_by
        )


def intent_query(
    ks: Keyspace, status: str | None, created_by: str | None, parent_id: str | None
) -> IntentQuery:
    wanted = None
    if status is not None:
        try:
            wanted = IntentStatus(status)
        except ValueError:
            raise ValidationError(f"unknown status {status!r}", field="status") from None
    if created_by is not None and not isinstance(created_by, str):
        raise ValidationError("created_by must be a string", field="created_by")
    if parent_id is not None:
        pid = check_id(parent_id, "parent_id")
        return IntentQuery(
            lambda p: ks.index_parent(p, pid),
            wanted,
            created_by,
            wanted is not None or created_by is not None,
        )
    if created_by is not None:
        return IntentQuery(
            lambda p: ks.index_creator(p, created_by), wanted, None, wanted is not None
        )
    if wanted is not None:
        return IntentQuery(lambda p: ks.index_status(p, wanted), None, None, False)
    return IntentQuery(ks.index_all, None, None, False)


def check_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    if not isinstance(cursor, str) or ":" not in cursor or not cursor.split(":", 1)[0].isdigit():
        raise ValidationError("cursor is not one this listing returned", field="cursor")
    return cursor


def merge_newest(per_partition: Sequence[Sequence[str]], count: int) -> list[str]:
    """Members of each partition arrive newest first; the newest ``count`` of all of them
    form the page. Exact: every partition returned its own newest ``count`` below the
    cursor, so nothing newer can be missing."""
    merged = heapq.merge(*per_partition, reverse=True)
    return list(itertools.islice(merged, count))


def check_event_cursor(cursor: object, field: str = "after") -> str:
    """Stream entry ids (``<ms>-<n>``) are the cursors of every log read."""
    parts = cursor.split("-") if isinstance(cursor, str) else []
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValidationError(f"{field} must be an entry id like '1700000000000-0'", field=field)
    return str(cursor)


def event_bounds(*, since: datetime | None, after: str | None, reverse: bool) -> tuple[str, str]:
    """XRANGE bounds (low, high) for a page of events. ``after`` is the last event id of the
    previous page (exclusive); ``since`` is a time lower bound (inclusive)."""
    if after is not None:
        check_event_cursor(after)
    low = "-" if since is None else str(to_micros(since) // 1000)
    high = "+"
    if after is not None:
        if reverse:
            high = "(" + after
        else:
            low = "(" + after
    return low, high
