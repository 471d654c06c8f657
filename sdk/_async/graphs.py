"""Intent graphs (RFC-0002) on the async client: dependency edits, and the reads that walk
a graph. Changes are one script each (cascades included, see ``lua/includes/graph.lua``);
reads go level by level, one pipelined round trip per level, within the bounds of
``oibus.bus.graphs``."""

from __future__ import annotations

from typing import Any, cast

import msgspec

from oibus.bus import limits
from oibus.bus.codec import decode_intent, index_member_id
from oibus.bus.errors import NotFoundError
from oibus.bus.graphs import (
    GRAPH_DEPTH,
    GRAPH_NODES,
    AggregateStatus,
    GraphEdge,
    GraphNode,
    IntentGraph,
    aggregate,
    aggregate_nodes,
    count_fields,
)
from oibus.bus.keyspace import check_id
from oibus.bus.listing import check_cursor, check_limit
from oibus.bus.models import Intent, Page
from oibus.bus.moves import decode_moves
from oibus.bus.statuses import IntentStatus
from oibus.sdk._async.base import AsyncClientBase

_SCAN_BATCH = 500


class AsyncGraphsMixin(AsyncClientBase):
    # -- edits --------------------------------------------------------------------------
    async def add_dependency(
        self, intent_id: str, dependency_id: str, version: int | None = None
    ) -> Intent:
        """Make ``intent_id`` depend on ``dependency_id`` (same group). CycleError names the
        cycle it would close; an active intent with a new unmet dependency is blocked."""
        return await self._edit_dependency("add", intent_id, dependency_id, version)

    async def remove_dependency(
        self, intent_id: str, dependency_id: str, version: int | None = None
    ) -> Intent:
        """Drop the edge; a blocked intent whose last unmet dependency it was becomes active."""
        return await self._edit_dependency("remove", intent_id, dependency_id, version)

    async def _edit_dependency(
        self, op: str, intent_id: str, dependency_id: str, version: int | None
    ) -> Intent:
        call = self._ops.set_dependency(op, intent_id, dependency_id, version)
        snapshot, moves = await self._run(call)
        await self._after_moves(decode_moves(moves))
        return decode_intent(snapshot, intent_id)

    # -- reads --------------------------------------------------------------------------
    async def _require(self, intent_id: str) -> None:
        if not await self._runner.command("EXISTS", self.keyspace.intent(check_id(intent_id))):
            raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)

    async def get_children(
        self, parent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Intent]:
        """The parent's children, oldest first; pass ``next_cursor`` back as ``cursor``."""
        check_limit(limit)
        low = "-" if check_cursor(cursor) is None else "(" + str(cursor)
        key = self.keyspace.children(check_id(parent_id, "parent_id"))
        if not self._meta_checked:
            await self._check_meta()
        members = cast(
            "list[str]",
            await self._runner.command("ZRANGE", key, low, "+", "BYLEX", "LIMIT", 0, limit),
        )
        if not members and cursor is None:
            await self._require(parent_id)
        page = await self._fetch_intents([index_member_id(m) for m in members])
        return Page(page, members[-1] if len(members) == limit else None)

    async def get_dependencies(self, intent_id: str) -> list[Intent]:
        """The intents this one depends on, in the order they were added."""
        intent = decode_intent(await self._run(self._ops.get_intent(intent_id)), intent_id)
        return await self._fetch_intents(intent.depends_on)

    async def get_dependents(
        self, intent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Intent]:
        """The intents that depend on this one (from the reverse index), by id."""
        check_limit(limit)
        check_id(intent_id)
        if cursor is not None:
            check_id(cursor, "cursor")
        dependents_key = self.keyspace.graph_hashes(self.keyspace.partition(intent_id))[4]
        if not self._meta_checked:
            await self._check_meta()
        text = await self._runner.command("HGET", dependents_key, intent_id)
        if text is None and cursor is None:
            await self._require(intent_id)
        ids = sorted(i for i in _decode_list(text) if cursor is None or i > cursor)[:limit]
        return Page(await self._fetch_intents(ids), ids[-1] if len(ids) == limit else None)

    async def get_ancestors(self, intent_id: str) -> list[Intent]:
        """Parent, grandparent, … up to the root (at most ``GRAPH_DEPTH`` levels)."""
        await self._require(intent_id)
        chain: list[str] = []
        current = intent_id
        for _ in range(GRAPH_DEPTH):
            parent = await self._runner.command(
                "HGET", self.keyspace.intent(current), "parent_intent_id"
            )
            if parent is None or parent in chain:
                break
            chain.append(str(parent))
            current = str(parent)
        return await self._fetch_intents(chain)

    async def get_descendants(
        self, intent_id: str, limit: int = GRAPH_NODES, max_depth: int = GRAPH_DEPTH
    ) -> list[Intent]:
        """Children, grandchildren, … breadth first, at most ``limit`` intents and
        ``max_depth`` levels."""
        check_limit(limit, GRAPH_NODES)
        check_limit(max_depth, GRAPH_DEPTH, "max_depth")
        await self._require(intent_id)
        found: list[str] = []
        level = [intent_id]
        for _ in range(max_depth):
            room = limit - len(found)
            if not level or room <= 0:
                break
            batches = await self._runner.commands(
                [("ZRANGE", self.keyspace.children(node), 0, room - 1) for node in level]
            )
            level = [index_member_id(m) for batch in batches for m in batch][:room]
            found += level
        return await self._fetch_intents(found)

    async def _children_batch(
        self, parent_id: str, after: str | None
    ) -> list[tuple[str, str, str | None]]:
        """The next batch of the parent's children after the index member ``after``,
        oldest first, as (member, id, status from the partition's mirror): two reads."""
        ks = self.keyspace
        low = "-" if after is None else "(" + after
        members = cast(
            "list[str]",
            await self._runner.command(
                "ZRANGE", ks.children(parent_id), low, "+", "BYLEX", "LIMIT", 0, _SCAN_BATCH
            ),
        )
        if not members:
            return []
        ids = [index_member_id(m) for m in members]
        mirror = ks.graph_hashes(ks.partition(parent_id))[0]
        statuses = cast("list[str | None]", await self._runner.command("HMGET", mirror, *ids))
        return list(zip(members, ids, statuses, strict=True))

    async def _children_where(
        self, parent_id: str, wanted: frozenset[str], limit: int, cursor: str | None
    ) -> Page[Intent]:
        """Children in the wanted statuses (read from the partition's status mirror), at
        most ``FILTER_SCAN`` children read per page."""
        check_limit(limit)
        position = check_cursor(cursor)
        check_id(parent_id, "parent_id")
        if not self._meta_checked:
            await self._check_meta()
        if position is None:
            await self._require(parent_id)
        chosen: list[str] = []
        scanned = 0
        while True:
            batch = await self._children_batch(parent_id, position)
            for member, child, status in batch:
                scanned += 1
                position = member
                if status in wanted:
                    chosen.append(child)
                    if len(chosen) == limit:
                        return Page(await self._fetch_intents(chosen), position)
            if len(batch) < _SCAN_BATCH:
                return Page(await self._fetch_intents(chosen), None)
            if scanned >= limits.FILTER_SCAN:
                return Page(await self._fetch_intents(chosen), position)

    async def get_ready_intents(
        self, parent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Intent]:
        """The parent's children that can be worked on now (``active``: open, unblocked,
        not waiting for input), oldest first."""
        return await self._children_where(
            parent_id, frozenset({IntentStatus.ACTIVE}), limit, cursor
        )

    async def get_blocked_intents(
        self, parent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[Intent]:
        """The parent's children held back (``blocked``), oldest first."""
        return await self._children_where(
            parent_id, frozenset({IntentStatus.BLOCKED}), limit, cursor
        )

    async def get_aggregate_status(self, intent_id: str) -> AggregateStatus:
        """The children by status (counts kept by the scripts, one read), with the ids of
        the blocked and ready ones (a walk of the children only, at most
        ``FILTER_SCAN``)."""
        ks = self.keyspace
        counts_key = ks.graph_hashes(ks.partition(check_id(intent_id)))[2]
        await self._require(intent_id)
        raw = cast(
            "list[str | None]",
            await self._runner.command("HMGET", counts_key, *count_fields(intent_id)),
        )
        counts = {str(s): int(n or 0) for s, n in zip(IntentStatus, raw, strict=True)}
        blocking: list[str] = []
        ready: list[str] = []
        position = None
        for _ in range(0, limits.FILTER_SCAN, _SCAN_BATCH):
            batch = await self._children_batch(intent_id, position)
            for _, child, status in batch:
                if status == IntentStatus.BLOCKED:
                    blocking.append(child)
                elif status == IntentStatus.ACTIVE:
                    ready.append(child)
            if len(batch) < _SCAN_BATCH:
                break
            position = batch[-1][0]
        return aggregate(counts, blocking, ready)

    async def get_intent_graph(self, intent_id: str, max_nodes: int = 500) -> IntentGraph:
        """The graph around the intent: parents, children, dependencies and dependents,
        transitively, breadth first, at most ``max_nodes`` intents; with the aggregate
        status of those nodes."""
        check_limit(max_nodes, GRAPH_NODES, "max_nodes")
        ks = self.keyspace
        await self._require(intent_id)
        dependents_key = ks.graph_hashes(ks.partition(intent_id))[4]
        nodes: dict[str, GraphNode] = {}
        edges: dict[tuple[str, str, str], GraphEdge] = {}
        seen = {intent_id}
        level = [intent_id]
        truncated = False
        while level:
            replies = await self._runner.commands(
                [
                    cmd
                    for node in level
                    for cmd in (
                        (
                            "HMGET",
                            ks.intent(node),
                            "title",
                            "status",
                            "parent_intent_id",
                            "depends_on",
                        ),
                        ("HGET", dependents_key, node),
                        ("ZRANGE", ks.children(node), 0, max_nodes - 1),
                    )
                ]
            )
            following: list[str] = []
            for n, node in enumerate(level):
                fields, dependents_text, children = replies[3 * n : 3 * n + 3]
                dependents = cast("list[str]", _decode_list(dependents_text))
                title, status, parent, deps_text = fields
                if status is None:
                    continue
                deps = cast("list[str]", _decode_list(deps_text))
                nodes[node] = GraphNode(
                    id=node, title=title, status=status, parent_intent_id=parent, depends_on=deps
                )
                links: list[tuple[str, str, str, str]] = [(d, node, d, "depends_on") for d in deps]
                links += [(d, d, node, "depends_on") for d in dependents]
                links += [
                    (index_member_id(c), node, index_member_id(c), "parent") for c in children
                ]
                if parent is not None:
                    links.append((parent, parent, node, "parent"))
                for other, source, target, kind in links:
                    edges[(source, target, kind)] = GraphEdge(
                        source=source, target=target, kind=cast("Any", kind)
                    )
                    if other not in seen:
                        if len(seen) >= max_nodes:
                            truncated = True
                            continue
                        seen.add(other)
                        following.append(other)
            level = following
        kept = [e for e in edges.values() if e.source in nodes and e.target in nodes]
        return IntentGraph(
            root=intent_id,
            nodes=list(nodes.values()),
            edges=kept,
            aggregate=aggregate_nodes(nodes.values()),
            truncated=truncated,
        )


def _decode_list(text: str | None) -> list[Any]:
    return [] if not text else list(msgspec.json.decode(text))
