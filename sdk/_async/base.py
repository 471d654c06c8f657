"""``AsyncClientBase``: the connection, configuration and call path every part of the
client shares; the protocol's calls live in mixins (one module per capability) that
``AsyncClient`` combines.

This file is the source of the sync ``Client`` too (``scripts/unasync.py`` generates
``sdk/_sync/client.py`` from it), so it holds control flow and I/O only; every decision is
made by the pure code in ``oibus.bus``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from oibus import _version
from oibus.bus.codec import decode_intent
from oibus.bus.discovery import protocol_info
from oibus.bus.errors import BusError, ConfigurationError
from oibus.bus.keyspace import DEFAULT_NAMESPACE, DEFAULT_PARTITIONS, Keyspace
from oibus.bus.models import Intent, ProtocolInfo
from oibus.bus.moves import Move
from oibus.bus.ops import Call, Ops
from oibus.bus.registry import default_registry
from oibus.bus.urls import SENTINEL_SCHEME, SentinelTarget, check_url, parse_sentinel_url
from oibus.sdk._async.runner import AsyncScriptRunner
from oibus.sdk._cluster import AsyncSeededCluster
from oibus.sdk.locate import resolve_url

CLUSTER_SCHEME = "redis+cluster://"


class AsyncClientBase:
    """One agent's connection to the bus.

    ``agent_id`` is recorded as the actor of every event this client causes and is the
    default ``created_by``. The Redis URL comes from the argument, then ``OIBUS_REDIS_URL``,
    then the ``oibus up`` running in the working directory, then the local default
    (``oibus.sdk.locate``); a ``redis+cluster://host:port`` URL connects to a Redis Cluster
    (any node; the keyspace is cluster-safe, see docs/keyspace.md), and a
    ``redis+sentinel://host:26379/<service>`` URL to the primary that Sentinel names
    (``oibus.bus.urls``). Pass ``redis=`` to
    reuse a configured client or cluster client (it must decode responses). ``slot_guard``
    (default: ``OIBUS_SLOT_GUARD=1``) checks that each script call's keys share one
    cluster slot; tests turn it on.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        agent_id: str = "anonymous",
        namespace: str = DEFAULT_NAMESPACE,
        partitions: int = DEFAULT_PARTITIONS,
        redis: Redis | RedisCluster | None = None,
        slot_guard: bool | None = None,
        socket_timeout: float = 10.0,
    ) -> None:
        self.keyspace = Keyspace(namespace, partitions)
        self.agent_id = agent_id
        self._ops = Ops(self.keyspace, agent_id)
        self._sentinels: list[Any] = []
        if redis is None:
            url = check_url(resolve_url(redis_url))
            try:
                if url.startswith(CLUSTER_SCHEME):
                    # a subclass, else a failover can strand the client (see _cluster.py)
                    redis = cast(
                        Any, AsyncSeededCluster
                    ).from_url(  # typed in one flavour only
                        "redis://" + url[len(CLUSTER_SCHEME) :],
                        decode_responses=True,
                        socket_timeout=socket_timeout,
                        socket_connect_timeout=socket_timeout,
                    )
                elif url.startswith(SENTINEL_SCHEME):
                    redis, self._sentinels = _sentinel_primary(
                        parse_sentinel_url(url), socket_timeout
                    )
                else:
                    redis = Redis.from_url(
                        url,
                        decode_responses=True,
                        socket_timeout=socket_timeout,
                        socket_connect_timeout=socket_timeout,
                        health_check_interval=30,
                    )
            except ValueError as exc:  # redis-py's word for a URL it cannot read
                raise ConfigurationError(f"bad Redis URL: {exc}") from exc
            self._owns_redis = True
        else:
            if not cast(Any, redis).get_encoder().decode_responses:
                raise ConfigurationError("the redis client must be made with decode_responses=True")
            self._owns_redis = False
        self.redis = redis
        if slot_guard is None:
            slot_guard = os.environ.get("OIBUS_SLOT_GUARD") == "1"
        self._runner = AsyncScriptRunner(redis, default_registry(), slot_guard=slot_guard)
        self._meta_checked = False

    # -- lifecycle ----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_redis:
            await self.redis.aclose()
        for sentinel in self._sentinels:  # the connections that asked for the primary
            await sentinel.aclose()

    async def _run(self, call: Call) -> Any:
        if not self._meta_checked:
            await self._check_meta()
        return await self._runner.call(call)

    async def _check_meta(self) -> None:
        """The partition count decides where every id lives, so all clients of a namespace
        must agree on it: the first client records it, every later one compares. Read
        first, so that a read-only Redis user (the reader role) can check it too."""
        key = self.keyspace.meta
        stored = await self._runner.command("HGET", key, "partitions")
        if stored is None:
            _, stored = await self._runner.commands(
                [
                    ("HSETNX", key, "partitions", str(self.keyspace.partitions)),
                    ("HGET", key, "partitions"),
                ]
            )  # one round trip
        if stored != str(self.keyspace.partitions):
            raise ConfigurationError(
                f"namespace {self.keyspace.namespace!r} uses {stored} partitions; this client "
                f"was configured with {self.keyspace.partitions}"
            )
        self._meta_checked = True

    async def _fetch_intents(self, ids: Sequence[str]) -> list[Intent]:
        """The intents, in order; ones that do not exist are left out."""
        replies = await self._runner.call_many([self._ops.get_intent(i) for i in ids])
        found = []
        for intent_id, reply in zip(ids, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if reply is not None:
                found.append(decode_intent(reply, intent_id))
        return found

    async def _after_moves(self, moves: Sequence[Move]) -> None:
        """Called with the status moves of every status-changing call once it succeeded.
        Portfolio aggregates (other slots) are brought up to date here; the daemon replays
        the same moves from the bus if this process dies first (see ``oibus.bus.moves``)."""
        return None

    # -- protocol -----------------------------------------------------------------------
    async def load_scripts(self) -> int:
        """Load every script into the server's cache now (calls would load them on first
        use anyway); returns how many. Useful after a failover or SCRIPT FLUSH."""
        return await self._runner.load_all()

    async def discover(self) -> ProtocolInfo:
        """Protocol metadata: version, RFCs, capabilities, limits, and the server under us."""
        try:
            info = await self._runner.command("INFO", "server")
        except BusError:
            info = {}  # INFO renamed or disabled (managed services): report what we know
        return protocol_info(self.keyspace, info, _version.__version__)


def _sentinel_primary(target: SentinelTarget, socket_timeout: float) -> tuple[Redis, list[Any]]:
    """A client of the primary the sentinels name; each new connection asks them again,
    so connections made after a failover reach the new primary."""
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": socket_timeout}
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel: Any = cast(Any, Sentinel)(target.sentinels, sentinel_kwargs=sentinel_kwargs)
    primary = cast(
        Redis,
        sentinel.master_for(
            target.service,
            db=target.db,
            username=target.username,
            password=target.password,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        ),
    )
    return primary, list(sentinel.sentinels)
