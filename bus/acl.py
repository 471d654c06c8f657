"""Least-privilege Redis users for one namespace: the ``ACL SETUSER`` rules of its four
roles, built here (pure) so that ``oibus acl`` prints them and tests check them.

What Redis ACLs can enforce, and what they cannot, decides the shape of the roles:

- **Keys.** Every key of a namespace starts with ``{ns:`` (partition tags ``{ns:<p>}``
  and webhook tags ``{ns:w:<id>}``) or ``{ns}:`` (namespace-wide keys); the namespace's
  alphabet has no glob characters and the ``:``/``}`` after it keeps ``oi`` from
  matching ``oi2``. Two patterns therefore cover all and only one namespace.
- **Commands inside scripts are checked against the caller's ACL.** A user who may run a
  script that writes ``HSET`` must be allowed ``HSET`` itself: Redis cannot tell a write
  made by an oibus script from the same command sent directly. So a role that runs the
  write scripts (agent, daemon, operator) can also write its namespace's keys without
  them; what the ACL takes away is arbitrary Lua (``EVAL``, ``SCRIPT LOAD``), every
  other namespace, and the server's admin commands. The actor such a client names is
  self-asserted; untrusted agents go through the HTTP server with their own keys.
- **A reader is strictly read-only**: it is given no write command at all, so even a
  write script it calls with ``EVALSHA`` fails at its first write, before anything
  changed. Reads go through scripts (``get_intent``, ``get_leases``), so the reader needs
  ``EVALSHA``; ``EVALSHA_RO`` would need Redis 7, and oibus supports 6.2.
- **Which script** a user may call cannot be restricted (``EVALSHA`` takes any loaded
  sha): an agent can call ``revoke_lease`` as well as ``acquire_lease``.

Every role starts from nothing (``-@all``, no keys, no channels) and gets the commands
its processes send, listed here by what needs them (measured with ``INFO commandstats``
and proved on a real server by ``tests/test_acl.py``). The rules reset permissions but
not passwords, so applying them again updates a user without locking it out; a new user
has no password until one is added (``ACL SETUSER <user> ><password>``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace

__all__ = [
    "ROLES",
    "Role",
    "default_user_prefix",
    "key_patterns",
    "role_commands",
    "rules",
    "setuser_line",
]

Role = Literal["operator", "daemon", "agent", "reader"]
ROLES: Final[tuple[Role, ...]] = ("operator", "daemon", "agent", "reader")

CONNECTION: Final = ("+@connection", "-@admin", "-@dangerous", "+cluster|slots")
"""What any redis-py connection sends (PING, HELLO, SELECT, CLIENT SETNAME/SETINFO when
the server has it, ASKING and READONLY on a cluster) without CLIENT KILL/LIST/PAUSE,
which are admin; CLUSTER SLOTS is how a cluster client finds the nodes."""

READS: Final = (
    "exists",
    "get",
    "hexists",
    "hget",
    "hgetall",
    "hkeys",
    "hlen",
    "hmget",
    "hstrlen",
    "scard",
    "smembers",
    "time",
    "xlen",
    "xrange",
    "xread",
    "xrevrange",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zscore",
)
"""The reads of the scripts and of the SDK (pages, event logs, tails); plus ``evalsha``
for the read scripts. No SCAN or KEYS: nothing in oibus walks the keyspace."""

WRITES: Final = (
    "del",
    "hdel",
    "hincrby",
    "hset",
    "hsetnx",
    "sadd",
    "set",
    "srem",
    "xadd",
    "xgroup|create",
    "zadd",
    "zrem",
)
"""The writes the scripts make (Redis checks them against the caller), the first
client's ``HSETNX`` of the partition count, consumer heartbeats (``SET PX``/``DEL``) and
the consumers' dead letters (``XADD``)."""

CONSUMING: Final = ("xack", "xclaim", "xgroup|delconsumer", "xpending", "xreadgroup")
"""Consumer groups (``client.events``, agents): read, acknowledge, take over a dead
consumer's entries and forget it."""

DAEMON: Final = (
    "info",
    "script|load",
    "xautoclaim",
    "xdel",
    "xinfo|groups",
    "xtrim",
    "zremrangebyscore",
)
"""The daemon's own: the server check (INFO), loading the scripts at start, webhook
queues (XAUTOCLAIM, XDEL), retention and its metrics (XINFO GROUPS, XTRIM), forgetting
daemons dead for a day. No CONFIG: CONFIG GET reads ``requirepass`` and
``masterauth``; the daemon warns that it could not read the eviction policy."""

OPERATOR: Final = ("script|exists", "xgroup|destroy", "xinfo|consumers")
"""The admin commands' own: ``doctor`` (SCRIPT EXISTS, INFO), ``groups`` and ``groups
delete`` (XINFO CONSUMERS, XGROUP DESTROY); dead-letter replay and purge use the
daemon's commands. Not SCRIPT FLUSH, FLUSHALL, FLUSHDB, CONFIG, KEYS, DEBUG, SHUTDOWN,
ACL, MODULE: they reach every namespace or the server itself, which is the server
administrator's, not a namespace operator's. Without CONFIG GET, ``doctor`` reports the
persistence settings as unknown; the server administrator checks them."""


def role_commands(role: Role) -> tuple[str, ...]:
    """The commands (``name`` or ``name|subcommand``) the role is given, sorted."""
    if role == "reader":
        found: Iterable[str] = (*READS, "evalsha")
    elif role == "agent":
        found = (*READS, *WRITES, *CONSUMING, "evalsha")
    elif role == "daemon":
        found = (*READS, *WRITES, *CONSUMING, *DAEMON, "evalsha")
    elif role == "operator":
        found = (*READS, *WRITES, *CONSUMING, *DAEMON, *OPERATOR, "evalsha")
    else:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    return tuple(sorted(set(found)))


def key_patterns(keyspace: Keyspace) -> tuple[str, str]:
    """The glob patterns of every key of the namespace, and of no other namespace's."""
    ns = keyspace.namespace
    return f"{{{ns}:*", f"{{{ns}}}:*"


def rules(keyspace: Keyspace, role: Role) -> tuple[str, ...]:
    """The ACL rules of one role, in order (Redis applies them left to right)."""
    return (
        "on",
        "resetkeys",
        "resetchannels",
        "-@all",
        *CONNECTION,
        *(f"+{command}" for command in role_commands(role)),
        *(f"~{pattern}" for pattern in key_patterns(keyspace)),
    )


def default_user_prefix(keyspace: Keyspace) -> str:
    return f"oibus-{keyspace.namespace}-"


def setuser_line(keyspace: Keyspace, role: Role, user: str) -> str:
    """One ``ACL SETUSER`` command, as ``redis-cli`` reads it from its input (no rule
    needs quoting: the namespace and the command names have no blanks or quotes)."""
    if not user or any(ch.isspace() or ch in "\"'" for ch in user):
        raise ValidationError("a user name needs no blanks or quotes", field="user")
    return " ".join(("ACL", "SETUSER", user, *rules(keyspace, role)))
