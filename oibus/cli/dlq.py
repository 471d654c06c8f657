"""``oibus dlq``: the dead-letter stores (webhook deliveries, daemon bus entries, SDK
consumer entries): list, show, replay, purge."""

from __future__ import annotations

import click

from oibus.bus.errors import NotFoundError, ValidationError
from oibus.cli._common import Group, Target, bus_command, listing, say
from oibus.daemon import deadletters
from oibus.daemon.deadletters import KINDS, Letter, ReplayResult
from oibus.sdk import AsyncClient

kind_option = click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="webhooks",
    show_default=True,
    help="webhooks: deliveries given up on; bus: entries the daemons failed on; "
    "events: entries an SDK consumer group (agent) failed on.",
)


@click.group(cls=Group)
def dlq() -> None:
    """Dead letters: what failed for good, kept for an operator to replay or purge.

    \b
    Example:
      oibus dlq list --kind bus
      oibus dlq replay --all --kind webhooks
    """


@dlq.command("list")
@bus_command
@kind_option
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
def list_(target: Target, kind: str, limit: int, cursor: str | None) -> None:
    """Oldest first: id, when, and what failed.

    \b
    Example:
      oibus dlq list --kind events --limit 20
    """

    async def go(client: AsyncClient) -> tuple[int, list[Letter], str | None]:
        page = await deadletters.list_letters(client, kind, limit=limit, cursor=cursor)
        return await deadletters.size(client, kind), list(page), page.next_cursor

    total, letters, next_cursor = target.run(go)

    def text() -> None:
        click.echo(f"{total} {kind} dead letters")
        listing(
            [[x.id, f"{x.failed_at:%Y-%m-%d %H:%M:%S}", x.summary] for x in letters],
            ["ID", "FAILED", "WHAT"],
            None,
            next_cursor,
        )

    target.emit(
        {"kind": kind, "total": total, "letters": letters, "next_cursor": next_cursor}, text
    )


@dlq.command("show")
@bus_command
@kind_option
@click.argument("letter_id")
def show(target: Target, kind: str, letter_id: str) -> None:
    """Every field of one dead letter (a webhook's body, the error, the original entry).

    \b
    Example:
      oibus dlq show 1732262400000-0 --kind webhooks
    """

    async def go(client: AsyncClient) -> Letter:
        return await deadletters.get_letter(client, kind, letter_id)

    letter = target.run(go)

    def text() -> None:
        click.echo(
            f"{letter.kind} dead letter {letter.id}, failed {letter.failed_at:%Y-%m-%d %H:%M:%S}"
        )
        for name, value in letter.fields.items():
            say(f"  {name}: {value}")

    target.emit(letter, text)


@dlq.command("replay")
@bus_command
@kind_option
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Replay every letter in the store.")
def replay(target: Target, kind: str, ids: tuple[str, ...], everything: bool) -> None:
    """Replay one, some (IDS) or all (--all) dead letters; each replayed letter leaves the
    store, the rest stay and are counted with the reason. Shows progress on long runs.

    \b
    Example:
      oibus dlq replay 1732262400000-0 1732262400001-0
      oibus dlq replay --all --kind bus
    """
    if bool(ids) == everything:
        raise ValidationError("give letter ids or --all (not both)", field="ids")

    async def go(client: AsyncClient) -> ReplayResult:
        todo = len(ids) if ids else await deadletters.size(client, kind)
        show_bar = not target.as_json and todo > 50
        with click.progressbar(length=todo, label=f"replaying {kind}", file=None) as bar:
            step = bar.update if show_bar else None
            return await deadletters.replay(client, kind, list(ids) or None, on_progress=step)

    result = target.run(go)

    def text() -> None:
        click.echo(f"replayed {result.replayed}, {len(result.skipped)} left in the store")
        for letter_id, why in sorted(result.skipped.items())[:20]:
            click.echo(f"  {letter_id}: {why}")
        if len(result.skipped) > 20:
            click.echo(f"  ... and {len(result.skipped) - 20} more")

    target.emit({"kind": kind, **{"replayed": result.replayed, "skipped": result.skipped}}, text)


@dlq.command("purge")
@bus_command
@kind_option
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Delete every letter in the store.")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
def purge(target: Target, kind: str, ids: tuple[str, ...], everything: bool, yes: bool) -> None:
    """Delete dead letters for good: some (IDS) or all (--all).

    \b
    Example:
      oibus dlq purge --all --kind events --yes
    """
    if bool(ids) == everything:
        raise ValidationError("give letter ids or --all (not both)", field="ids")

    async def go(client: AsyncClient) -> int:
        if not yes:
            if everything:
                return await deadletters.size(client, kind)
            found = [await _exists(client, kind, i) for i in ids]
            return sum(found)
        return await deadletters.purge(client, kind, None if everything else list(ids))

    n = target.run(go)
    verb = "deleted" if yes else "would delete"
    target.emit(
        {"kind": kind, "deleted" if yes else "would_delete": n},
        lambda: click.echo(f"{verb} {n} {kind} dead letters" + ("" if yes else "; add --yes")),
    )


async def _exists(client: AsyncClient, kind: str, letter_id: str) -> bool:
    try:
        await deadletters.get_letter(client, kind, letter_id)
    except NotFoundError:
        return False
    return True
