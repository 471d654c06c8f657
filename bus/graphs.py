"""Intent graphs (RFC-0002): the records graph reads return and the arithmetic behind them.

A graph lives in one group (the id up to its first ".") and so in one slot: every change
to it, cascades included, is one script (``lua/includes/graph.lua``). Reads walk it from
the client, level by level with one pipelined round trip per level, and stop at the
bounds below: a read never costs more than its bound, however big the graph is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

import msgspec

from oibus.bus import limits
from oibus.bus.statuses import IntentStatus

GRAPH_NODES: Final = 1000
"""Most intents one graph read (descendants, the whole graph) returns."""
GRAPH_DEPTH: Final = 64
"""Most levels an ancestor or descendant walk climbs or descends."""
CASCADE_ROUNDS: Final = limits.CASCADE
"""Most times a status change is retried with the keys its cascade asked for. Each round
declares at least one more intent the change moves (the next level of a deep cascade), so
the script's own bound on moves ends the rounds first."""

EdgeKind = Literal["parent", "depends_on"]


class AggregateStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A parent's children (or a graph's nodes) by status, RFC-0002. ``blocking_intents``
    are the blocked ones, ``ready_intents`` the active ones (unblocked, open, not waiting
    for input). ``completion_percentage`` counts completed ones only (a suspended one does
    not count, RFC-0026)."""

    total: int
    by_status: dict[str, int]
    completion_percentage: int
    blocking_intents: list[str] = msgspec.field(default_factory=list)
    ready_intents: list[str] = msgspec.field(default_factory=list)


class GraphNode(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    title: str
    status: str
    parent_intent_id: str | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)


class GraphEdge(msgspec.Struct, frozen=True, kw_only=True):
    """``parent``: source is the parent of target. ``depends_on``: source depends on target."""

    source: str
    target: str
    kind: EdgeKind


class IntentGraph(msgspec.Struct, frozen=True, kw_only=True):
    """The connected part of a graph around ``root`` (parents, children, dependencies and
    dependents, transitively), breadth first; ``truncated`` when the node bound cut it."""

    root: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    aggregate: AggregateStatus
    truncated: bool = False


def aggregate(
    counts: Mapping[str, int], blocking: Iterable[str], ready: Iterable[str]
) -> AggregateStatus:
    by_status = {str(s): max(0, int(counts.get(str(s), 0))) for s in IntentStatus}
    total = sum(by_status.values())
    done = by_status[IntentStatus.COMPLETED]
    return AggregateStatus(
        total=total,
        by_status=by_status,
        completion_percentage=(done * 100 // total) if total else 0,
        blocking_intents=list(blocking),
        ready_intents=list(ready),
    )


def aggregate_nodes(nodes: Iterable[GraphNode]) -> AggregateStatus:
    counts: dict[str, int] = {}
    blocking: list[str] = []
    ready: list[str] = []
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
        if node.status == IntentStatus.BLOCKED:
            blocking.append(node.id)
        elif node.status == IntentStatus.ACTIVE:
            ready.append(node.id)
    return aggregate(counts, blocking, ready)


def count_fields(parent_id: str) -> list[str]:
    """The ``g:ag`` fields holding a parent's children counts, in lifecycle order."""
    return [f"{parent_id}:{s}" for s in IntentStatus]


_IDS = msgspec.json.Decoder(list[str])


def decode_ids(text: str | bytes) -> list[str]:
    return _IDS.decode(text)


class TreeLine(msgspec.Struct, frozen=True):
    """One line of a graph drawn as text: the branch drawing before it, the node, and
    the nodes it waits for."""

    prefix: str
    node: GraphNode
    waits_for: list[str]


def tree_lines(graph: IntentGraph) -> list[TreeLine]:
    """The graph as a tree by parent and child, from the topmost parent above the root;
    dependencies, which need not form a tree, annotate the node that waits. Nodes no
    parent chain reaches are drawn as further trees, in id order, so every node appears
    exactly once."""
    nodes = {n.id: n for n in graph.nodes}
    children: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.kind == "parent" and edge.source in nodes and edge.target in nodes:
            children.setdefault(edge.source, []).append(edge.target)
    top = graph.root
    climbed = {top}
    while top in nodes and (up := nodes[top].parent_intent_id) in nodes and up not in climbed:
        assert up is not None  # a parent id found in ``nodes``
        climbed.add(up)
        top = up
    lines: list[TreeLine] = []
    drawn: set[str] = set()

    def draw(node_id: str, lead: str, branch: str) -> None:
        drawn.add(node_id)
        node = nodes[node_id]
        lines.append(TreeLine(lead + branch, node, [d for d in node.depends_on if d in nodes]))
        below = [c for c in sorted(children.get(node_id, [])) if c not in drawn]
        inner = lead + ("" if not branch else "    " if branch == "└── " else "│   ")
        for n, child in enumerate(below):
            draw(child, inner, "└── " if n == len(below) - 1 else "├── ")

    roots = [top] if top in nodes else []
    roots += sorted(i for i in nodes if i != top and nodes[i].parent_intent_id not in nodes)
    for root in roots:
        if root not in drawn:
            draw(root, "", "")
    for node_id in sorted(nodes):  # a parent cycle no root reaches: still drawn once
        if node_id not in drawn:
            draw(node_id, "", "")
    return lines
