"""``oibus graph ID``: an intent's graph drawn as a tree with statuses."""

from __future__ import annotations

import click

from oibus.bus.graphs import tree_lines
from oibus.cli._common import Command, Target, bus_command, say, status_text, styled


@click.command(cls=Command)
@bus_command
@click.argument("intent_id")
@click.option("--max-nodes", type=click.IntRange(1, 1000), default=500, show_default=True)
def graph(target: Target, intent_id: str, max_nodes: int) -> None:
    """Draw the intent's graph (parents, children, dependencies, dependents) as a tree
    by parent and child; "after" names what a node waits for; "*" marks ID.

    \b
    Example:
      oibus graph 3f2a…
    """
    with target.client() as client:
        found = client.get_intent_graph(intent_id, max_nodes=max_nodes)

    def text() -> None:
        titles = {n.id: n.title for n in found.nodes}
        for line in tree_lines(found):
            node = line.node
            mark = styled(" *", bold=True) if node.id == found.root else ""
            after = ""
            if line.waits_for:
                after = "  after " + ", ".join(titles.get(d, d) for d in line.waits_for)
            say(f"{line.prefix}{node.title} [{status_text(node.status)}] {node.id}{mark}{after}")
        agg = found.aggregate
        counts = ", ".join(f"{k} {v}" for k, v in agg.by_status.items() if v)
        click.echo(f"{agg.total} intents ({counts}), {agg.completion_percentage}% completed")
        if found.truncated:
            click.echo(f"(cut at {max_nodes} intents: --max-nodes for more)")

    target.emit(found, text)
