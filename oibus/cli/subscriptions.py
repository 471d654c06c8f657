"""``oibus subscriptions``: webhook subscriptions (RFC-0006)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from oibus.bus.subscriptions import Subscription
from oibus.cli._common import Group, Target, bus_command, listing, styled


@click.group(cls=Group)
def subscriptions() -> None:
    """Webhook subscriptions: list, add, remove, and the address policy."""


def _scope(s: Subscription) -> str:
    if s.intent_id:
        return f"intent {s.intent_id}"
    if s.portfolio_id:
        return f"portfolio {s.portfolio_id}"
    return "everything"


@subscriptions.command("list")
@bus_command
@click.option("--intent", "intent_id", help="Only this intent's subscriptions.")
@click.option("--portfolio", "portfolio_id", help="Only this portfolio's subscriptions.")
@click.option("--subscriber", help="Only this subscriber's.")
def list_(
    target: Target, intent_id: str | None, portfolio_id: str | None, subscriber: str | None
) -> None:
    """Every subscription (or one scope's): id, scope, URL, event types, expiry.

    \b
    Example:
      oibus subscriptions list --intent 3f2a…
    """
    with target.client() as client:
        found = client.get_subscriptions(intent_id, portfolio_id, subscriber)

    def text() -> None:
        listing(
            [
                [
                    s.id,
                    _scope(s),
                    s.webhook_url,
                    ",".join(s.event_types) if s.event_types else "*",
                    f"{s.expires_at:%Y-%m-%d %H:%M:%S}" if s.expires_at else "never",
                    styled("active", fg="green") if s.active else styled("expired", fg="red"),
                    s.subscriber_id,
                ]
                for s in found
            ],
            ["ID", "SCOPE", "URL", "TYPES", "EXPIRES", "STATE", "SUBSCRIBER"],
            "no subscriptions",
        )

    target.emit({"subscriptions": found}, text)


@subscriptions.command("add")
@bus_command
@click.argument("url")
@click.option("--intent", "intent_id", help="Only this intent's events.")
@click.option("--portfolio", "portfolio_id", help="This portfolio's and its members' events.")
@click.option("--type", "types", multiple=True, help="Only events of this type (repeatable).")
@click.option("--subscriber", default="oibus-cli", show_default=True)
@click.option("--expires-in", type=click.FloatRange(min=1), help="Seconds until it lapses.")
@click.option("--secret", envvar="OIBUS_WEBHOOK_SECRET", help="HMAC key for the signature.")
def add(
    target: Target,
    url: str,
    intent_id: str | None,
    portfolio_id: str | None,
    types: tuple[str, ...],
    subscriber: str,
    expires_in: float | None,
    secret: str | None,
) -> None:
    """Deliver events to a webhook URL (the daemon posts them, signed, with retries).
    Without --intent or --portfolio it receives every event of the namespace.

    \b
    Example:
      oibus subscriptions add https://hooks.example.com/oibus --type intent_completed
    """
    expires = None if expires_in is None else datetime.now(UTC) + timedelta(seconds=expires_in)
    with target.client() as client:
        sub = client.subscribe(
            intent_id,
            portfolio_id,
            subscriber_id=subscriber,
            webhook_url=url,
            event_types=list(types) or None,
            expires_at=expires,
            secret=secret,
        )
    target.emit(sub, lambda: click.echo(f"{sub.id}  {_scope(sub)}  {sub.webhook_url}"))


@subscriptions.command("remove")
@bus_command
@click.argument("subscription_id")
def remove(target: Target, subscription_id: str) -> None:
    """Remove a subscription and the deliveries it had queued.

    \b
    Example:
      oibus subscriptions remove 0c4e…
    """
    with target.client() as client:
        client.unsubscribe(subscription_id)
    target.emit({"removed": subscription_id}, lambda: click.echo(f"removed {subscription_id}"))


@subscriptions.command("policy")
@bus_command
@click.option(
    "--allow-private/--public-only",
    "allow_private",
    default=None,
    help="Set the policy (without either: show it).",
)
def policy(target: Target, allow_private: bool | None) -> None:
    """The namespace's webhook address policy: ``public`` (only globally routable
    addresses, the default) or ``private`` (private, loopback and link-local too).
    ``subscribe`` refuses what it refuses; every daemon of the namespace delivers by it
    and refuses to start with another one (restart the daemons after a change).

    \b
    Example:
      oibus subscriptions policy --allow-private
    """
    with target.client() as client:
        if allow_private is None:
            name = client.get_webhook_policy()
        else:
            name = client.set_webhook_policy(allow_private)
    target.emit({"webhook_policy": name}, lambda: click.echo(f"webhook policy: {name}"))
