"""Paging plans for list_intents and get_events. Pure: which index to read, how to merge the
per-partition reads, where a page ends and what its cursor is."""

from __future__ import annotations

import itertools
import math
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
    # one C sort of the partitions' runs (timsort merges them) beats heapq.merge's Python
    # generator about threefold for a page; equal members are equal strings, so the
    # order is the same
    return sorted(itertools.chain.from_iterable(per_partition), reverse=True)[:count]


def index_read(index: str, below: str | None, count: int) -> tuple[str | int, ...]:
    """The newest ``count`` members of a per-partition index, all of them or those older
    than ``below`` (a member: a cursor, or the last member an earlier read returned)."""
    high = "+" if below is None else "(" + below
    return ("ZRANGE", index, high, "-", "BYLEX", "REV", "LIMIT", 0, count)


def first_share(count: int, partitions: int) -> int:
    """How many members a listing asks each partition for first, instead of ``count`` from
    every one. Ids spread uniformly over the partitions (uuids, or groups hashed by crc32),
    so a partition's part of the newest ``count`` is binomial around ``count /
    partitions``: the mean plus three standard deviations rarely falls short, and when it
    does (a skewed spread: a big group, a colocated graph) ``merge_page`` names the
    partition and one more read completes it."""
    mean = count / partitions
    return min(count, math.ceil(mean + 3 * math.sqrt(mean)) + 1)


def merge_page(
    per_partition: Sequence[Sequence[str]], share: int, count: int
) -> tuple[list[str], list[int]]:
    """The newest ``count`` members of what a first read of ``share`` per partition
    returned, and the partitions to read ``count - share`` more from (below their last
    member) before that page is exact; when none are named, it is exact already.

    A partition is named when it returned its full ``share`` (it may hold more) and its
    last member is newer than the page's last one (more of it may belong to the page), or
    when fewer than ``count`` were read in all. A partition not named either ran out or
    stopped below the page's last member, and more reads only move that member up, so
    whatever it still holds stays off the page; a named one, read again, has returned its
    own newest ``count``, which is all a page of ``count`` can take from it."""
    page = merge_newest(per_partition, count)
    if share >= count:
        return page, []
    full = [p for p, members in enumerate(per_partition) if len(members) >= share]
    if len(page) < count:
        return page, full
    last = page[-1]
    return page, [p for p in full if per_partition[p][-1] > last]


def group_by_partition(ks: Keyspace, intent_ids: Sequence[str]) -> list[list[str]]:
    """A page's ids by partition (in page order within each), one script call each: the
    keys of one call must share a slot."""
    groups: dict[str, list[str]] = {}
    for intent_id in intent_ids:
        groups.setdefault(ks.tag_of(intent_id), []).append(intent_id)
    return list(groups.values())


def check_event_cursor(cursor: object, field: str = "after") -> str:
    """Stream entry ids (``<ms>-<n>``) are the cursors of every log read."""
    parts = cursor.split("-") if isinstance(cursor, str) else []
    # ASCII digits only ("²" is a digit to str.isdigit), each part a 64-bit number, and
    # not the largest id, after which nothing can be read (the server refuses "(max")
    if (
        len(parts) != 2
        or not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts)
        or not all(int(p) <= _ID_PART_MAX for p in parts)
        or int(parts[0]) == int(parts[1]) == _ID_PART_MAX
    ):
        raise ValidationError(f"{field} must be an entry id like '1700000000000-0'", field=field)
    return str(cursor)


_ID_PART_MAX = 2**64 - 1


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
