"""The ``oibus`` command: entry points only; the work lives in the modules they call.

Every admin command takes ``--redis-url`` (or ``OIBUS_REDIS_URL``), ``--namespace`` and
``--json``, and exits with a code a script can branch on (see ``_common``)."""

from __future__ import annotations

import click

from oibus._version import __version__
from oibus.cli import (
    acl,
    dlq,
    events,
    gateway,
    graph,
    inspect,
    intents,
    leases,
    portfolios,
    subscriptions,
)
from oibus.cli._common import Group
from oibus.cli.serve import daemon, demo, up


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="oibus")
def main() -> None:
    """oibus: the OpenIntent Coordination Protocol on Redis.

    \b
    Example:
      oibus up                  # embedded server in ./.oibus, prints its URL
      oibus doctor              # is this bus safe to run on?
      oibus intents list --status active
      oibus events tail -f
    """


for command in (
    up,
    demo,
    daemon,
    inspect.doctor,
    inspect.groups,
    inspect.stats,
    inspect.scripts,
    intents.intents,
    events.events,
    graph.graph,
    leases.leases,
    portfolios.portfolios,
    subscriptions.subscriptions,
    dlq.dlq,
    acl.acl,
    gateway.serve,
    gateway.keys,
):
    main.add_command(command)

__all__ = ["main"]
