"""``oibus portfolios``: portfolios and their members."""

from __future__ import annotations

import click

from oibus.bus.portfolios import Portfolio
from oibus.cli._common import Group, Target, bus_command, listing, say, status_text, table


@click.group(cls=Group)
def portfolios() -> None:
    """Portfolios (RFC-0007): list them, show one with its members."""


def _progress(p: Portfolio) -> str:
    agg = p.aggregate_status
    return f"{agg.by_status.get('completed', 0)}/{agg.total} ({agg.completion_percentage}%)"


@portfolios.command("list")
@bus_command
@click.option("--status", help="Only portfolios in this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
def list_(target: Target, status: str | None, limit: int, cursor: str | None) -> None:
    """Newest first: id, status, members completed, name.

    \b
    Example:
      oibus portfolios list --status active
    """
    with target.client() as client:
        page = client.list_portfolios(status, limit=limit, cursor=cursor)

    def text() -> None:
        listing(
            [[p.id, status_text(p.status), _progress(p), p.name] for p in page],
            ["ID", "STATUS", "COMPLETED", "NAME"],
            "no portfolios",
            page.next_cursor,
        )

    target.emit({"portfolios": list(page), "next_cursor": page.next_cursor}, text)


@portfolios.command("show")
@bus_command
@click.argument("portfolio_id")
def show(target: Target, portfolio_id: str) -> None:
    """A portfolio's record, aggregate status and members (by priority).

    \b
    Example:
      oibus portfolios show 5d0e…
    """
    with target.client() as client:
        p = client.get_portfolio(portfolio_id)

    def text() -> None:
        click.echo(f"id           {p.id}")
        say(f"name         {p.name}")
        click.echo(f"status       {status_text(p.status)}  (members: {p.aggregate_status.status})")
        click.echo(f"completed    {_progress(p)}")
        say(f"created      {p.created_at:%Y-%m-%d %H:%M:%S} by {p.created_by}")
        if p.primary_intent_id:
            click.echo(f"primary      {p.primary_intent_id}")
        if p.description:
            say(f"description  {p.description}")
        table(
            [[m.intent_id, status_text(m.status), m.role, str(m.priority)] for m in p.intents],
            ["MEMBER", "STATUS", "ROLE", "PRIORITY"],
        )

    target.emit(p, text)
