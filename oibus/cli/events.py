"""``oibus events tail``: the latest events, then (``-f``) new ones as they happen."""

from __future__ import annotations

import click

from oibus.bus.consuming import Delivery, Source, check_types, plan_source, wanted
from oibus.bus.models import Event
from oibus.cli._common import Group, Target, bus_command, say, styled, to_json
from oibus.sdk import Client
from oibus.sdk._sync.events import join_events

HISTORY_SCAN = 10
"""With a type filter, the history looks at most this many entries per line asked for."""


@click.group(cls=Group)
def events() -> None:
    """Event logs: the latest events and a live tail."""


TYPE_COLOURS = (
    ("fail", "red"),
    ("error", "red"),
    ("expired", "red"),
    ("abandon", "red"),
    ("complete", "green"),
    ("created", "green"),
    ("status", "cyan"),
    ("lease", "magenta"),
    ("state", "blue"),
    ("assign", "yellow"),
)


def type_text(event_type: str) -> str:
    for needle, colour in TYPE_COLOURS:
        if needle in event_type:
            return styled(event_type, fg=colour)
    return event_type


def history(client: Client, source: Source, types: frozenset[str] | None, n: int) -> list[Delivery]:
    """The last ``n`` events of the source, oldest first: the newest entries of each
    stream, merged by entry id, joined with their events. Across partitions the order is
    by each partition's server clock (on a cluster: its node's)."""
    if n == 0:
        return []
    scan = n if types is None else n * HISTORY_SCAN
    replies = client._runner.commands(
        [("XREVRANGE", k, "+", "-", "COUNT", scan) for k in source.keys]
    )
    found: list[tuple[str, str, dict[str, str], int]] = []
    for key, reply in zip(source.keys, replies, strict=True):
        found += [(key, i, f, 1) for i, f in reply if wanted(f, types, None)]
    found.sort(key=lambda entry: tuple(int(x) for x in entry[1].split("-")))
    _, deliveries = join_events(client, source, found[-n:], True)
    # entry ids have millisecond resolution; the events' own times have microseconds
    return sorted(deliveries, key=lambda d: (d.event.created_at, d.entry_id))


def event_line(event: Event, *, with_intent: bool = False) -> str:
    """One line per event: time, (intent,) sequence number, type, actor, payload."""
    where = f"{event.intent_id}  " if with_intent else ""
    payload = to_json(event.payload) if event.payload else ""
    if len(payload) > 160:
        payload = payload[:157] + "..."
    return (
        f"{event.created_at:%H:%M:%S.%f}"[:-3]
        + f"  {where}#{event.seq}  {type_text(event.event_type)}  {event.actor}  {payload}"
    ).rstrip()


@events.command("tail")
@bus_command
@click.option("--intent", "intent_id", help="Only this intent's events.")
@click.option("--portfolio", "portfolio_id", help="Only this portfolio's events.")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="How many of the latest events to print first.",
)
@click.option(
    "--exit-after", type=click.IntRange(1), help="With -f: stop after this many new events."
)
def tail(
    target: Target,
    intent_id: str | None,
    portfolio_id: str | None,
    types: tuple[str, ...],
    follow: bool,
    lines: int,
    exit_after: int | None,
) -> None:
    """One line per event: time, intent, sequence number, type, actor, payload; coloured
    on a terminal. ``--json`` prints one JSON object per line.

    \b
    Example:
      oibus events tail -n 50
      oibus events tail -f --type status_changed --type intent_failed
      oibus events tail --intent 3f2a… -f
    """
    wanted = check_types(types or None)
    with target.client() as client:
        source = plan_source(client.keyspace, intent_id, portfolio_id)
        live = client.tail(
            intent_id=intent_id, portfolio_id=portfolio_id, event_types=wanted, block_seconds=1.0
        )
        if follow:
            live.pin()  # before the history: nothing between the two is missed
        shown = history(client, source, wanted, lines)
        for delivery in shown:
            emit(target, delivery)
        if not follow:
            return
        seen = {d.event.id for d in shown}
        printed = 0
        try:
            for delivery in live:
                if delivery.event.id in seen:
                    continue
                emit(target, delivery)
                printed += 1
                if exit_after is not None and printed >= exit_after:
                    return
        except KeyboardInterrupt:
            return


def emit(target: Target, delivery: Delivery) -> None:
    event = delivery.event
    if target.as_json:
        click.echo(to_json({"event": event, "portfolio_id": delivery.portfolio_id}))
    else:
        say(event_line(event, with_intent=True))
