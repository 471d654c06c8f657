"""``oibus serve`` (the OpenIntent HTTP server) and ``oibus keys`` (its API keys)."""

from __future__ import annotations

import os

import click
import uvicorn

from oibus.bus.apikeys import Role
from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS
from oibus.cli._common import Command, Group, Target, bus_command, listing
from oibus.gateway.keys import add_key, list_keys, revoke_key
from oibus.sdk.locate import resolve_url


@click.command(cls=Command)
@click.option("--host", envvar="OIBUS_HTTP_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="OIBUS_HTTP_PORT", type=int, default=8000, show_default=True)
@click.option("--redis-url", envvar="OIBUS_REDIS_URL", help="Default: as every command finds it.")
@click.option("--namespace", envvar="OIBUS_NAMESPACE", default=DEFAULT_NAMESPACE, show_default=True)
@click.option(
    "--partitions",
    envvar="OIBUS_PARTITIONS",
    type=int,
    default=DEFAULT_PARTITIONS,
    show_default=True,
)
@click.option("--workers", envvar="OIBUS_HTTP_WORKERS", type=click.IntRange(1, 64), default=1)
def serve(
    host: str, port: int, redis_url: str | None, namespace: str, partitions: int, workers: int
) -> None:
    """Serve the OpenIntent REST API and SSE (the reference SDK, curl and agents in any
    language) in front of the bus; stateless, so run as many as you like. Create a key
    first with `oibus keys add`.

    \b
    Example:
      oibus keys add ada --role agent
      oibus serve --port 8000 --workers 2
      curl -H "X-API-Key: $KEY" localhost:8000/api/v1/intents
    """
    # the workers are processes of their own: they read their settings from here
    os.environ["OIBUS_REDIS_URL"] = resolve_url(redis_url)
    os.environ["OIBUS_NAMESPACE"] = namespace
    os.environ["OIBUS_PARTITIONS"] = str(partitions)
    click.echo(f"oibus HTTP server on http://{host}:{port} (namespace {namespace!r})")
    click.echo(f"dashboard: http://{host}:{port}/ui (sign in with an API key)")
    uvicorn.run(
        "oibus.gateway.asgi:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


@click.group(cls=Group)
def keys() -> None:
    """API keys of the HTTP server: add, list, revoke."""


@keys.command("add")
@bus_command
@click.argument("principal")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.AGENT.value,
    show_default=True,
    help="reader: reads; agent: writes as itself; service: as any agent it names; admin: all.",
)
@click.option("--label", default="", help="A note for listings.")
def add(target: Target, principal: str, role: str, label: str) -> None:
    """Make a key for PRINCIPAL (the agent id its writes are recorded under) and print
    it: it is shown this once, and stored only as a hash.

    \b
    Example:
      oibus keys add ada --role agent --label "ada's laptop"
    """
    key, record = target.run(lambda client: add_key(client, principal, role, label))
    target.emit(
        {"key": key, "principal": record.principal, "role": record.role.value},
        lambda: click.echo(f"{key}  ({record.principal}, {record.role.value})"),
    )


@keys.command("list")
@bus_command
def list_(target: Target) -> None:
    """Every key: its id, principal, role and label (never the key)."""
    rows = target.run(list_keys)
    target.emit(
        [
            {"id": i, "principal": r.principal, "role": r.role.value, "label": r.label}
            for i, r in rows
        ],
        lambda: listing(
            [[i, r.principal, r.role.value, r.label] for i, r in rows],
            ["ID", "PRINCIPAL", "ROLE", "LABEL"],
            "no keys: oibus keys add PRINCIPAL",
        ),
    )


@keys.command("revoke")
@bus_command
@click.argument("key_id")
def revoke(target: Target, key_id: str) -> None:
    """Revoke a key by its id (as listed) or by the key itself: it stops working at once."""
    record = target.run(lambda client: revoke_key(client, key_id))
    target.emit(
        {"revoked": key_id, "principal": record.principal},
        lambda: click.echo(f"revoked {key_id} ({record.principal})"),
    )
