"""``oibus acl``: the Redis ACL users of a namespace's roles, as ``ACL SETUSER`` lines.

It sends nothing to Redis: the server administrator reviews the lines and applies them
(``oibus acl | redis-cli ...``), then gives each user a password. The rules are
built by ``oibus.bus.acl``, whose docstring says what they can enforce and what not."""

from __future__ import annotations

import click

from oibus.bus.acl import ROLES, Role, default_user_prefix, role_commands, setuser_line
from oibus.bus.keyspace import DEFAULT_NAMESPACE, Keyspace
from oibus.cli._common import Command, to_json

PURPOSES: dict[Role, str] = {
    "operator": "oibus scripts load, doctor, groups, dlq replay/purge, leases revoke",
    "daemon": "oibus daemon (loads the scripts when it starts)",
    "agent": "clients and agents: the protocol's calls and consumer groups; no script loading",
    "reader": "reads only (get_intent, list_intents, get_events, tail); writes nothing",
}


@click.command("acl", cls=Command)
@click.option("--namespace", envvar="OIBUS_NAMESPACE", default=DEFAULT_NAMESPACE, show_default=True)
@click.option(
    "--role",
    type=click.Choice([*ROLES, "all"]),
    default="all",
    show_default=True,
    help="The role whose user to print.",
)
@click.option(
    "--user-prefix",
    help="User names are the prefix and the role (default: oibus-<namespace>-).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def acl(namespace: str, role: str, user_prefix: str | None, as_json: bool) -> None:
    """Print the ACL SETUSER rules of the namespace's roles, one line each. Nothing is
    sent to Redis. The rules reset a user's permissions, not its passwords; add one to a
    new user with ACL SETUSER <user> ><password>.

    \b
    operator  oibus scripts load, doctor, groups, dlq replay/purge, leases revoke
    daemon    oibus daemon (it loads the scripts when it starts)
    agent     clients and agents: every protocol call, consumer groups; no script loading
    reader    reads only (get_intent, list_intents, get_events, tail): writes nothing

    \b
    Example:
      oibus acl --namespace oi | REDISCLI_AUTH=... redis-cli --user admin
      REDISCLI_AUTH=... redis-cli --user admin ACL SETUSER oibus-oi-agent '>secret'
    """
    keyspace = Keyspace(namespace)
    prefix = default_user_prefix(keyspace) if user_prefix is None else user_prefix
    roles = ROLES if role == "all" else tuple(r for r in ROLES if r == role)
    lines = {r: setuser_line(keyspace, r, f"{prefix}{r}") for r in roles}
    if as_json:
        click.echo(
            to_json(
                {
                    "namespace": namespace,
                    "users": [
                        {
                            "role": r,
                            "user": f"{prefix}{r}",
                            "purpose": PURPOSES[r],
                            "commands": list(role_commands(r)),
                            "setuser": line,
                        }
                        for r, line in lines.items()
                    ],
                }
            )
        )
        return
    for line in lines.values():  # commands only: the output is redis-cli's input
        click.echo(line)
