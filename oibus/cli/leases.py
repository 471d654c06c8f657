"""``oibus leases``: who holds which scope of an intent, and taking a lease away."""

from __future__ import annotations

import click

from oibus.bus.models import Lease
from oibus.cli._common import Group, Target, bus_command, listing, styled


@click.group(cls=Group)
def leases() -> None:
    """Scope leases (RFC-0003): list them, revoke one."""


def _row(lease: Lease) -> list[str]:
    ended = f"{lease.ended_at:%H:%M:%S}" if lease.ended_at else ""
    colour = "green" if lease.status == "active" else "white"
    return [
        lease.scope,
        lease.id,
        lease.agent_id,
        styled(lease.status, fg=colour),
        str(lease.fencing_token),
        f"{lease.acquired_at:%Y-%m-%d %H:%M:%S}",
        f"{lease.expires_at:%H:%M:%S}",
        ended,
    ]


@leases.command("list")
@bus_command
@click.argument("intent_id")
@click.option("--history", is_flag=True, help="Also the ended leases, newest first.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
def list_(target: Target, intent_id: str, history: bool, limit: int) -> None:
    """The live leases of an intent (and with --history the ended ones).

    \b
    Example:
      oibus leases list 3f2a… --history
    """
    with target.client() as client:
        client.get_intent(intent_id)  # a mistyped id says so instead of "no leases"
        page = client.get_leases(intent_id, include_history=history, limit=limit)

    def text() -> None:
        listing(
            [_row(lease) for lease in page],
            ["SCOPE", "LEASE", "AGENT", "STATUS", "FENCE", "ACQUIRED", "EXPIRES", "ENDED"],
            "no leases" if history else "no live leases",
        )

    target.emit({"leases": list(page), "next_cursor": page.next_cursor}, text)


@leases.command("revoke")
@bus_command
@click.argument("intent_id")
@click.argument("lease_id")
@click.option("--reason", default="revoked by an operator", show_default=True)
def revoke(target: Target, intent_id: str, lease_id: str, reason: str) -> None:
    """Take a lease away from its holder: the scope is free at once, and the holder's
    next guarded write or renewal fails with a lease error.

    \b
    Example:
      oibus leases revoke 3f2a… 9b1c… --reason "agent hung"
    """
    with target.client() as client:
        lease = client.revoke_lease(intent_id, lease_id, reason)
    target.emit(
        lease,
        lambda: click.echo(f"revoked {lease.id} ({lease.scope}, held by {lease.agent_id})"),
    )
