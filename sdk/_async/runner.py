"""Runs commands and script calls: EVALSHA, a reload on NOSCRIPT, error translation, and
(in test mode) the guard that every call's keys live in one cluster slot.

Everything goes through ``execute_command``: one layer less per call than redis-py's
command helpers, and one place where redis-py's (version-dependent) typing is bridged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from contextlib import suppress
from typing import Any, cast

import redis.exceptions as rex
from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)

from oibus.bus.errors import (
    OpenIntentError,
    PermissionDeniedError,
    ScriptError,
    ScriptsNotLoadedError,
)
from oibus.bus.keyspace import key_slot
from oibus.bus.ops import Call
from oibus.bus.registry import Registry
from oibus.sdk._errors import translate
from oibus.sdk.wire import write_packed_async

Command = Sequence[str | int]


def check_one_slot(call: Call) -> None:
    slots = {key_slot(k) for k in call.keys}
    if len(slots) > 1:
        raise ScriptError(f"{call.script} was called with keys in {len(slots)} slots: {call.keys}")


def not_loaded(name: str, redis: object) -> str:
    """The message of ScriptsNotLoadedError: what is missing and the command that fixes
    it, with this server's address (never its credentials) when the client knows it."""
    pool = getattr(redis, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    where = "<this server's URL, with an operator user>"
    if kwargs.get("host") and kwargs.get("port"):
        address = f"{kwargs['host']}:{kwargs['port']}/{kwargs.get('db') or 0}"
        where = f"redis://<operator>:<password>@{address}"
    return (
        f"script {name} is not loaded on the server, and this Redis user may not load "
        "scripts (its ACL refuses SCRIPT LOAD, as it should for an agent or a reader): an "
        f"operator must run `oibus scripts load --redis-url {where}` (after every server "
        "restart, failover or SCRIPT FLUSH)"
    )


_PLAIN_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


def direct_pool(redis: object) -> ConnectionPool | None:
    """The pool of a plain client (one server, redis-py's own connection classes), whose
    pipelines the runner sends on a connection of its own; None for anything else (a
    cluster, a sentinel-managed or test double's pool), which keeps redis-py's Pipeline."""
    pool = getattr(redis, "connection_pool", None)
    if type(pool) is not ConnectionPool and type(pool).__name__ != "BlockingConnectionPool":
        return None
    if cast(Any, pool).connection_class not in _PLAIN_CONNECTIONS:
        return None
    return cast(ConnectionPool, pool)


class AsyncScriptRunner:
    def __init__(
        self, redis: Redis | RedisCluster, registry: Registry, *, slot_guard: bool = False
    ) -> None:
        self.redis = redis
        self.registry = registry
        self.slot_guard = slot_guard
        self._pool = direct_pool(redis)
        self._ready: set[str] = set()
        """Scripts this runner has made sure of (loaded, or the user may not load them)."""

    async def _execute(self, *args: str | int) -> Any:
        # redis-py's typing of execute_command differs between versions and flavours
        return await cast(Any, self.redis).execute_command(*args)

    async def command(self, *args: str | int) -> Any:
        """One plain command, its errors translated."""
        try:
            return await self._execute(*args)
        except Exception as exc:
            raise translate(exc) from exc

    async def commands(self, batch: Sequence[Command]) -> list[Any]:
        """Plain commands pipelined in one round trip (no transaction)."""
        try:
            replies = await self._pipeline(batch)
        except Exception as exc:
            raise translate(exc) from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise translate(reply)
        return replies

    def _evalsha(self, call: Call) -> tuple[str | int, ...]:
        script = self.registry[call.script]
        if self.slot_guard:
            check_one_slot(call)
        return ("EVALSHA", script.sha, len(call.keys), *call.keys, *call.args)

    async def call(self, call: Call) -> Any:
        args = self._evalsha(call)
        try:
            try:
                if self._pool is None:
                    return await cast(Any, self.redis).execute_command(*args)
                (reply,) = await self._send(self._pool, (args,))
                if isinstance(reply, Exception):
                    raise reply
                return reply
            except rex.NoScriptError:
                await self._load(call.script)
                return await self._execute(*args)
        except OpenIntentError:
            raise  # translated already (a refused reload), its cause kept
        except Exception as exc:
            raise translate(exc, script=True) from exc

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Pipelined script calls (one round trip); each reply a value or an exception
        (see ``round_trip``)."""
        return await self.round_trip(calls)

    @property
    def direct(self) -> bool:
        """Whether a round trip goes to one server on a connection of its own (a plain
        client), so that a blocking read may follow other commands in it."""
        return self._pool is not None

    async def round_trip(
        self, items: Sequence[Call | Command], *, raw: Collection[str] = ()
    ) -> list[Any]:
        """Script calls and plain commands pipelined in one round trip, in this order;
        each reply is a value or the (translated) error the server answered for it.

        A call refused with NOSCRIPT did not run: only such calls are sent again once
        their scripts are loaded (sending the whole pipeline again would run the others
        twice). Scripts this runner has not used yet are loaded first, so that this
        happens only when the server lost its cache meanwhile (a restart, a failover,
        SCRIPT FLUSH), and only then can the calls sent again run after items behind
        them. A script this user may not load fails its own calls
        (ScriptsNotLoadedError), not the others.

        Commands named in ``raw`` (on a plain client) come back as the server sent them,
        without redis-py's reply callback: an XREADGROUP's entries as flat field lists
        for ``fanin.entries_of``, which turns each into a dict in one C-level call where
        the callback builds it pair by pair in Python (profiled: about 1.5 µs per entry
        of a consumer's read)."""
        if not items:
            return []
        try:
            scripts = {i.script for i in items if isinstance(i, Call)}
            if scripts:
                await self.ensure_loaded(scripts)
            batch = [self._evalsha(i) if isinstance(i, Call) else i for i in items]
            replies = await self._pipeline(batch, raw)
            missing = [n for n, r in enumerate(replies) if isinstance(r, rex.NoScriptError)]
            if missing:
                await self._send_again(items, batch, replies, missing)
        except OpenIntentError:
            raise
        except Exception as exc:
            raise translate(exc) from exc
        return [
            translate(r, script=isinstance(i, Call)) if isinstance(r, Exception) else r
            for i, r in zip(items, replies, strict=True)
        ]

    async def _send_again(
        self,
        items: Sequence[Call | Command],
        batch: list[Command],
        replies: list[Any],
        missing: list[int],
    ) -> None:
        """Load the scripts of the calls refused with NOSCRIPT and send those calls again,
        their replies put in place."""
        names = {cast(Call, items[n]).script for n in missing}
        refused: dict[str, OpenIntentError] = {}
        for name in sorted(names):
            try:
                await self._load(name)
            except ScriptsNotLoadedError as exc:  # those calls fail, not the rest
                refused[name] = exc
        again = [n for n in missing if cast(Call, items[n]).script not in refused]
        for n in missing:
            script = cast(Call, items[n]).script
            if script in refused:
                replies[n] = refused[script]
        if again:
            resent = await self._pipeline([batch[n] for n in again])
            for n, reply in zip(again, resent, strict=True):
                replies[n] = reply

    async def ensure_loaded(self, names: AbstractSet[str]) -> None:
        """Load the scripts this runner has not used before (one round trip each, once per
        runner). A user who may not load scripts (the agent and reader roles) relies on
        the operator having loaded them: a missing one is then its calls' error."""
        for name in sorted(names - self._ready):
            with suppress(ScriptsNotLoadedError):
                await self._load(name)
            self._ready.add(name)

    async def _pipeline(self, batch: Sequence[Command], raw: Collection[str] = ()) -> list[Any]:
        """One round trip, each reply a value or the error the server answered. On a plain
        client the commands go on a connection of the pool directly: redis-py's Pipeline
        costs about 15 µs of CPU and 60 µs of wall time more per round trip (its state
        machine is for transactions and WATCH), which an agent pays twice per
        assignment."""
        if self._pool is not None:
            return await self._send(self._pool, batch, raw)
        async with self.redis.pipeline(transaction=False) as pipe:
            for args in batch:
                cast(Any, pipe).execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))

    async def _acquire(self, pool: ConnectionPool) -> Any:
        """A connection of the pool, without redis-py's lock and health read: its
        ``get_connection`` holds one lock for every caller while it tries a zero-timeout
        read on the connection (redis-py issue 3692), so a process with a few hundred
        calls in flight queues on it (profiled: most of an agent's wall time per
        assignment at 500/s). A connection the server closed while it idled is seen at
        its end of file and connected again; one left with unread replies never goes
        back to the pool (``_send`` disconnects it). The sync pool (a thread lock and a
        non-blocking poll) is used as it is."""
        pooled = cast(Any, pool)
        if not hasattr(pooled, "get_available_connection"):
            return await pooled.get_connection()
        conn = pooled.get_available_connection()
        try:
            reader = getattr(conn, "_reader", None)
            if reader is not None and reader.at_eof():
                await conn.disconnect()
            await conn.connect()  # nothing to do when it is connected
        except BaseException:
            await pooled.release(conn)
            raise
        return conn

    async def _send(
        self, pool: ConnectionPool, batch: Sequence[Command], raw: Collection[str] = ()
    ) -> list[Any]:
        redis, pooled = cast(Any, self.redis), cast(Any, pool)
        conn = await self._acquire(pool)
        try:
            # hiredis packs in C what redis-py's asyncio connection packs in Python (about
            # 1 µs against 7 for an EVALSHA of ten arguments; the same bytes)
            packed = b"".join([pack_command(cast(Any, tuple(c))) for c in batch])
            await write_packed_async(conn, packed)
            out: list[Any] = []
            for args in batch:
                try:
                    if args[0] in raw:
                        out.append(await conn.read_response())
                    else:
                        out.append(await redis.parse_response(conn, args[0]))
                except rex.ResponseError as exc:
                    out.append(exc)
            return out
        except BaseException:
            # replies may be left unread (an error, a cancel): the connection is not reused
            await conn.disconnect()
            raise
        finally:
            await pooled.release(conn)

    async def _load(self, name: str) -> None:
        """SCRIPT LOAD through the client's own helper: on a cluster it reaches every
        primary (a raw command would go to one node). A user whose ACL refuses it (the
        agent and reader roles, docs/operations.md) is told who loads scripts instead."""
        try:
            await cast(Any, self.redis).script_load(self.registry[name].source)
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, PermissionDeniedError):
                raise ScriptsNotLoadedError(not_loaded(name, self.redis), script=name) from exc
            raise error from exc

    async def load_all(self) -> int:
        for name in self.registry:
            await self._load(name)  # its errors are translated
        return len(self.registry)
