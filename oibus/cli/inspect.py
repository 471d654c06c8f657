"""Looking at a live bus: ``doctor``, ``groups``, ``stats``; and ``scripts load``."""

from __future__ import annotations

from typing import Any

import click

from oibus.bus.doctor import Finding, diagnose, worst
from oibus.bus.errors import NotFoundError, ValidationError
from oibus.bus.registry import default_registry
from oibus.cli._common import (
    EXIT_FOUND_PROBLEMS,
    Command,
    Group,
    Target,
    bus_command,
    listing,
    status_text,
    styled,
)
from oibus.daemon.admin import bus_facts, bus_stats, group_facts, group_rows, primaries
from oibus.daemon.config import GROUP as DAEMON_GROUP
from oibus.sdk import AsyncClient

LEVEL_STYLE = {"ok": ("ok", "green"), "warn": ("WARN", "yellow"), "unsafe": ("UNSAFE", "red")}


@click.command(cls=Command)
@bus_command
@click.option("--quiet", "-q", is_flag=True, help="Print only the warnings and unsafe findings.")
def doctor(target: Target, quiet: bool) -> None:
    """Check the server and the bus: engine and version, mode, eviction policy,
    persistence, script cache, consumer groups (lag, pending, live consumers), live
    daemons, dead letters. Exits 1 when any finding is unsafe, and says why for each.

    \b
    Example:
      oibus doctor
      oibus doctor --json | jq '.findings[] | select(.level != "ok")'
    """
    facts = target.run(bus_facts)
    findings = diagnose(facts)
    verdict = worst(findings)

    def text() -> None:
        for node in facts.nodes:
            click.echo(
                f"{node.address}: {node.engine} {node.version}, {node.role}, "
                f"{node.used_memory / 2**20:.1f} MiB used"
            )
        click.echo(
            f"mode {facts.mode}, namespace {facts.namespace} ({facts.partitions} partitions), "
            f"round trip {facts.round_trip_ms:.2f} ms"
        )
        for finding in findings:
            if quiet and finding.level == "ok":
                continue
            click.echo(line(finding))
        summary = {
            "ok": styled("no unsafe findings", fg="green"),
            "warn": styled("no unsafe findings, some warnings", fg="yellow"),
            "unsafe": styled("UNSAFE: see the findings above", fg="red", bold=True),
        }
        click.echo(summary[verdict])

    target.emit({"verdict": verdict, "findings": findings, "facts": facts}, text)
    if verdict == "unsafe":
        raise SystemExit(EXIT_FOUND_PROBLEMS)


def line(finding: Finding) -> str:
    label, colour = LEVEL_STYLE[finding.level]
    mark = styled(label, fg=colour, bold=finding.level != "ok")
    return f"[{mark}] {finding.topic}: {finding.message}"


@click.group(cls=Group, invoke_without_command=True)
@click.pass_context
@bus_command
def groups(target: Target, ctx: click.Context) -> None:
    """Consumer groups, summed over the streams each reads (every partition's bus, or
    every webhook queue): consumers (live/all), pending, lag, idle.

    \b
    Example:
      oibus groups
      oibus groups delete agent:retired-bot --yes
    """
    if ctx.invoked_subcommand is not None:
        return
    found = target.run(group_facts)

    def text() -> None:
        listing(
            [
                [
                    g.name,
                    g.kind,
                    str(g.streams),
                    f"{len(g.live_consumers)}/{len(g.consumers)}",
                    str(g.pending),
                    "?" if g.lag is None else str(g.lag),
                    "-" if g.idle_ms is None else f"{g.idle_ms / 1000:.1f}s",
                ]
                for g in found
            ],
            ["GROUP", "KIND", "STREAMS", "LIVE", "PENDING", "LAG", "IDLE"],
            "no consumer groups",
        )

    target.emit({"groups": found}, text)


@groups.command("delete")
@bus_command
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do it (without it, only say what would go).")
def groups_delete(target: Target, name: str, yes: bool) -> None:
    """Destroy a consumer group on every partition's bus: for an agent type or consumer
    that is retired for good. Its pending entries are forgotten and the buses can be
    trimmed past it. The daemon's own group cannot be deleted here.

    \b
    Example:
      oibus groups delete agent:old-summarizer --yes
    """
    if name == DAEMON_GROUP:
        raise ValidationError(f"{name} is the daemons' group: stop the daemons instead")

    async def go(client: AsyncClient) -> tuple[int, int]:
        redis: Any = client.redis
        keys = [client.keyspace.bus(p) for p in range(client.keyspace.partitions)]
        found = [k for k in keys if any(g["name"] == name for g in await group_rows(redis, k))]
        pending = 0
        for key in found:
            pending += int((await redis.xpending(key, name))["pending"])
        if yes:
            for key in found:
                await redis.xgroup_destroy(key, name)
        return len(found), pending

    streams, pending = target.run(go)
    if not streams:
        raise NotFoundError(f"no group {name} on the buses", resource="group")
    verb = "deleted" if yes else "would delete"
    target.emit(
        {"group": name, "streams": streams, "pending": pending, "deleted": yes},
        lambda: click.echo(
            f"{verb} group {name} on {streams} buses ({pending} pending entries)"
            + ("" if yes else "; add --yes to do it")
        ),
    )


@click.command(cls=Command)
@bus_command
def stats(target: Target) -> None:
    """Intents by status, events/s over the last minute, live leases, retries due,
    portfolios, subscriptions, daemons and dead letters.

    \b
    Example:
      oibus stats
      watch -n 5 oibus stats
    """
    s = target.run(bus_stats)

    def text() -> None:
        counts = "  ".join(f"{status_text(k)} {v}" for k, v in s.by_status.items())
        click.echo(f"intents       {s.intents}  ({counts})")
        about = "" if s.events_counted_exactly else " (estimated from the newest entries)"
        click.echo(
            f"events        {s.events_last_minute} in the last minute, "
            f"{s.events_per_second:.1f}/s{about}"
        )
        click.echo(f"leases live   {s.leases_live}")
        click.echo(f"retries due   {s.retries_due}")
        click.echo(f"portfolios    {s.portfolios}")
        click.echo(f"subscriptions {s.subscriptions}")
        click.echo(f"daemons live  {', '.join(s.live_daemons) or styled('none', fg='red')}")
        dead = ", ".join(f"{k} {v}" for k, v in s.dead_letters.items())
        click.echo(f"dead letters  {dead}")

    target.emit(s, text)


@click.group(cls=Group)
def scripts() -> None:
    """The Lua scripts in the servers' script caches."""


@scripts.command("load")
@bus_command
def scripts_load(target: Target) -> None:
    """Load every script on every primary (after a failover or SCRIPT FLUSH, so the first
    calls need no reload round trip).

    \b
    Example:
      oibus scripts load --redis-url redis+cluster://node1:7000
    """

    async def go(client: AsyncClient) -> list[tuple[str, int]]:
        await client.load_scripts()
        async with primaries(client) as nodes:
            shas = [s.sha for s in default_registry().values()]
            return [(where, sum(map(bool, await r.script_exists(*shas)))) for where, r in nodes]

    counts = target.run(go)

    def text() -> None:
        for address, n in counts:
            click.echo(f"{address}: {n} scripts loaded")

    target.emit({"nodes": [{"address": a, "loaded": n} for a, n in counts]}, text)
