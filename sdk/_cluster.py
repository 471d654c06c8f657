"""Cluster clients that can find their cluster again after a failover.

redis-py (oibus pins it below 7 for speed) drops a node from a cluster client's startup
nodes on every connection error or timeout to that node, and refills the list only when
a rediscovery succeeds. The asyncio client also closes every node's connections on such
an error, so the calls in flight on healthy nodes fail too and drop those nodes as well:
a primary killed under a busy client (a daemon runs a bus reader per partition) empties
the list, and from then on every call raises "Redis Cluster cannot be connected. Please
provide at least one reachable node: None" until the process is restarted, even once a
replica has been promoted (redis-py issues 2555 and 3693; fixed upstream in 7.2). The
sync client rediscovers at once after each error, but a moment when no node answers (a
whole cluster restarting) empties its list the same way.

These subclasses remember the nodes of the URL and of the last topology discovered, and
put them back before a rediscovery whenever the list has run dry, so the client finds the
new primaries as soon as the cluster has promoted them. They are named so that
``scripts/unasync.py`` maps the async one to the sync one.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio.cluster
import redis.cluster

__all__ = ["AsyncSeededCluster", "SeededCluster"]


class _Seeds:
    """What to put back: the URL's nodes for good (a DNS name there may move to new hosts),
    plus whatever the last successful discovery found."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.url_nodes: dict[str, Any] = dict(manager.startup_nodes)
        self.known: dict[str, Any] = dict(self.url_nodes)

    def refill(self) -> None:
        if not self.manager.startup_nodes:
            self.manager.startup_nodes.update(self.known)

    def remember(self) -> None:
        self.known = {**self.url_nodes, **self.manager.startup_nodes}


class AsyncSeededCluster(redis.asyncio.cluster.RedisCluster):
    """``redis.asyncio.RedisCluster`` whose rediscovery never starts from an empty list."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeds = _Seeds(self.nodes_manager)

    async def initialize(self) -> AsyncSeededCluster:
        self._seeds.refill()
        await super().initialize()
        self._seeds.remember()
        return self


class SeededCluster(redis.cluster.RedisCluster):
    """``redis.RedisCluster`` whose rediscovery never starts from an empty list (the sync
    client rediscovers from inside its node manager, so the hook goes there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        manager: Any = self.nodes_manager
        seeds = _Seeds(manager)
        discover = manager.initialize

        def initialize() -> None:
            seeds.refill()
            discover()
            seeds.remember()

        manager.initialize = initialize
