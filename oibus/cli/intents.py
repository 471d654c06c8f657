"""``oibus intents``: list, show, create, move and patch intents from a shell."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from oibus.bus.errors import ValidationError
from oibus.bus.models import Event, Intent, Lease, StatePatch
from oibus.bus.statuses import IntentStatus
from oibus.cli._common import Group, Target, bus_command, listing, say, status_text, to_json
from oibus.cli.events import event_line

STATUSES = [s.value for s in IntentStatus]


@click.group(cls=Group)
def intents() -> None:
    """Intents: list, show, create, change status, patch state.

    \b
    Example:
      oibus intents list --status blocked
      oibus intents patch 3f2a… --set progress=0.5 --set owner.name=ada
    """


def when(intent: Intent) -> str:
    return intent.updated_at.strftime("%Y-%m-%d %H:%M:%S")


@intents.command("list")
@bus_command
@click.option("--status", type=click.Choice(STATUSES), help="Only intents in this status.")
@click.option("--created-by", help="Only intents this agent created.")
@click.option("--parent", help="Only the children of this intent.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after the page that printed this cursor.")
def list_(
    target: Target,
    status: str | None,
    created_by: str | None,
    parent: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """Newest first, one line each: id, status, version, last update, title.

    \b
    Example:
      oibus intents list --status active --limit 20
      oibus intents list --json | jq -r '.intents[].id'
    """
    with target.client() as client:
        page = client.list_intents(status, created_by, parent, limit=limit, cursor=cursor)

    def text() -> None:
        listing(
            [[i.id, status_text(i.status), str(i.version), when(i), i.title] for i in page],
            ["ID", "STATUS", "VER", "UPDATED", "TITLE"],
            "no intents",
            page.next_cursor,
        )

    target.emit({"intents": list(page), "next_cursor": page.next_cursor}, text)


@intents.command("show")
@bus_command
@click.argument("intent_id")
@click.option("--events", "n_events", type=click.IntRange(0, 1000), default=10, show_default=True)
def show(target: Target, intent_id: str, n_events: int) -> None:
    """Fields, state, live leases, dependencies and the latest events of one intent.

    \b
    Example:
      oibus intents show 3f2a…
    """
    with target.client() as client:
        intent = client.get_intent(intent_id)
        leases = list(client.get_leases(intent_id))
        deps = client.get_dependencies(intent_id) if intent.depends_on else []
        recent = (
            list(client.get_events(intent_id, limit=n_events, reverse=True)) if n_events else []
        )
    recent.reverse()

    def text() -> None:
        show_intent(intent, leases, deps, recent)

    target.emit({"intent": intent, "leases": leases, "dependencies": deps, "events": recent}, text)


def show_intent(
    intent: Intent, leases: list[Lease], deps: list[Intent], recent: list[Event]
) -> None:
    rows = [
        ("id", intent.id),
        ("title", intent.title),
        ("status", status_text(intent.status)),
        ("version", str(intent.version)),
        ("created", f"{intent.created_at:%Y-%m-%d %H:%M:%S} by {intent.created_by}"),
        ("updated", f"{intent.updated_at:%Y-%m-%d %H:%M:%S}"),
    ]
    if intent.description:
        rows.append(("description", intent.description))
    if intent.parent_intent_id:
        rows.append(("parent", intent.parent_intent_id))
    if intent.assigned_agents:
        rows.append(("assigned", ", ".join(intent.assigned_agents)))
    if intent.confidence is not None:
        rows.append(("confidence", str(intent.confidence)))
    if intent.constraints:
        rows.append(("constraints", to_json(intent.constraints)))
    for name, value in rows:
        say(f"{name:<12} {value}")
    click.echo("state:" if intent.state else "state: {}")
    for key in sorted(intent.state):
        say(f"  {key} = {to_json(intent.state[key])}")
    if leases:
        click.echo("leases:")
        for lease in leases:
            click.echo(
                f"  {lease.scope}  {lease.id}  held by {lease.agent_id}  "
                f"until {lease.expires_at:%H:%M:%S}  fence {lease.fencing_token}"
            )
    if deps:
        click.echo("depends on:")
        for dep in deps:
            say(f"  {dep.id}  {status_text(dep.status)}  {dep.title}")
    if recent:
        click.echo("latest events:")
        for event in recent:
            say("  " + event_line(event))


def parse_json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return msgspec.json.decode(value)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"{name}: not valid JSON: {exc}", field=name) from exc


@intents.command("create")
@bus_command
@click.argument("title")
@click.option("--description")
@click.option("--state", "state_json", help="Initial state as a JSON object, e.g. '{\"k\": 1}'.")
@click.option("--constraints", "constraints_json", help="Constraints as a JSON object.")
@click.option("--depends-on", multiple=True, help="An intent this one waits for (repeatable).")
@click.option("--parent", help="Make it a child of this intent.")
@click.option("--id", "intent_id", help="Choose the id (default: a new UUID).")
@click.option("--created-by", default="oibus-cli", show_default=True)
@click.option(
    "--status", type=click.Choice(["active", "draft"]), default="active", show_default=True
)
def create(
    target: Target,
    title: str,
    description: str | None,
    state_json: str | None,
    constraints_json: str | None,
    depends_on: tuple[str, ...],
    parent: str | None,
    intent_id: str | None,
    created_by: str,
    status: str,
) -> None:
    """Create an intent and print its id.

    \b
    Example:
      oibus intents create "Triage the outage" --state '{"severity": 2}'
      oibus intents create "Write the report" --depends-on 3f2a…
    """
    state = parse_json_option(state_json, "state")
    constraints = parse_json_option(constraints_json, "constraints")
    for name, value in (("state", state), ("constraints", constraints)):
        if value is not None and not isinstance(value, dict):
            raise ValidationError(f"{name}: must be a JSON object", field=name)
    with target.client() as client:
        intent = client.create_intent(
            title,
            description,
            constraints,
            state=state,
            created_by=created_by,
            status=status,
            parent_intent_id=parent,
            depends_on=list(depends_on) or None,
            intent_id=intent_id,
        )
    target.emit(intent, lambda: click.echo(f"{intent.id}  {status_text(intent.status)}"))


@intents.command("status")
@bus_command
@click.argument("intent_id")
@click.argument("status", type=click.Choice(STATUSES))
@click.option("--reason", help="Recorded in the status_changed event.")
@click.option(
    "--version", "expected", type=int, help="Refuse unless the intent is at this version."
)
def status(
    target: Target, intent_id: str, status: str, reason: str | None, expected: int | None
) -> None:
    """Move an intent to another status (the lifecycle and the graph's gates apply).

    \b
    Example:
      oibus intents status 3f2a… abandoned --reason "superseded by 77c1…"
    """
    with target.client() as client:
        before = client.get_intent(intent_id).status if expected is None else None
        intent = client.set_status(intent_id, expected, status, reason)
    was = f"{status_text(before)} -> " if before else ""
    target.emit(
        intent,
        lambda: click.echo(f"{intent.id}  {was}{status_text(intent.status)}  v{intent.version}"),
    )


def parse_assignment(text: str) -> StatePatch:
    """``path=text`` sets the text itself, always a string; ``path:=json`` sets a JSON
    value, and JSON that does not parse is refused (as HTTPie spells the two). Guessing
    ("JSON when it parses, else text") stored a mistyped ``{"a":1`` as a string. The
    path is a JSON pointer (``/a/b``) or dotted (``a.b``)."""
    at = text.find("=")
    if at <= 0 or (at == 1 and text[0] == ":"):
        raise ValidationError(f"--set {text!r}: expected path=text or path:=json", field="set")
    if text[at - 1] == ":":
        path, raw = text[: at - 1], text[at + 1 :]
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ValidationError(f"--set {path}:= is not valid JSON: {exc}", field="set") from exc
        return StatePatch("set", pointer(path), value)
    return StatePatch("set", pointer(text[:at]), text[at + 1 :])


def pointer(path: str) -> str:
    if path.startswith("/"):
        return path
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path.split("."))


@intents.command("patch")
@bus_command
@click.argument("intent_id")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="PATH=TEXT|PATH:=JSON",
    help="Set a string (path=text) or a JSON value (path:=json); repeatable.",
)
@click.option(
    "--remove", "removes", multiple=True, metavar="PATH", help="Remove a key (repeatable)."
)
@click.option(
    "--version",
    "expected",
    type=int,
    help="The version the patch is for (default: the version read just before).",
)
def patch(
    target: Target,
    intent_id: str,
    sets: tuple[str, ...],
    removes: tuple[str, ...],
    expected: int | None,
) -> None:
    """Patch an intent's state under the version check: if anyone wrote in between, the
    patch is refused, nothing changes, and the exit code is 4.

    \b
    Example:
      oibus intents patch 3f2a… --set progress:=0.5 --set notes=checked
      oibus intents patch 3f2a… --set 'cfg:={"retries": 3}'
      oibus intents patch 3f2a… --remove /draft --version 7
    """
    ops = [parse_assignment(s) for s in sets]
    ops += [StatePatch("remove", pointer(p)) for p in removes]
    if not ops:
        raise ValidationError("nothing to patch: give --set or --remove", field="set")
    with target.client() as client:
        version = client.get_intent(intent_id).version if expected is None else expected
        intent = client.patch_state(intent_id, version, ops)
    target.emit(intent, lambda: click.echo(f"{intent.id}  v{version} -> v{intent.version}"))
