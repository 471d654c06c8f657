"""The reference OpenIntent server (``openintent[server]==0.17.0``) driven by its own
``OpenIntentClient``: the peer figures of the benchmark suite.

Runs inside the peers' virtual environment (``bench/peers.py`` makes it), never in
oibus's: it imports only the standard library and ``openintent``. Prints one JSON
object: each operation's calls/s and p50/p99 latency, one call at a time.

    <peers-venv>/bin/python bench/peer_openintent.py --seconds 3 --client-cpu 0 --server-cpu 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

API_KEY = "dev-user-key"  # one of the server's default development keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpu: int | None) -> None:
    if cpu is None:
        return
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), {cpu})


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"openintent-server exited with {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url + "/.well-known/openintent.json", timeout=2),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError("openintent-server did not answer in time")


def timed(fn: Any, seconds: float) -> dict[str, float]:
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = t = clock()
    deadline = start + int(seconds * 1e9)
    i = 0
    while t < deadline:
        fn(i)
        now = clock()
        latencies.append(now - t)
        t = now
        i += 1
    latencies.sort()
    n = len(latencies)

    def rank(q: float) -> float:
        return latencies[min(n - 1, max(0, int(q * n + 0.999999) - 1))] / 1000

    return {
        "ops": n,
        "ops_per_s": n / ((t - start) / 1e9),
        "p50_us": rank(0.5),
        "p99_us": rank(0.99),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--client-cpu", type=int)
    p.add_argument("--server-cpu", type=int)
    args = p.parse_args()
    from openintent import OpenIntentClient  # type: ignore[import-not-found]
    from openintent.models import EventType  # type: ignore[import-not-found]

    pin(os.getpid(), args.client_cpu)
    port = free_port()
    server_bin = Path(sys.executable).with_name("openintent-server")
    with tempfile.TemporaryDirectory(prefix="oibus-bench-openintent-") as tmp:
        db = f"sqlite:///{tmp}/openintent.db"
        proc = subprocess.Popen(
            [str(server_bin), "--host", "127.0.0.1", "--port", str(port),
             "--database-url", db, "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, proc)
            pin(proc.pid, args.server_cpu)
            client = OpenIntentClient(url, api_key=API_KEY, agent_id="bench")
            intent = client.create_intent(
                "benchmark intent", "a small intent", initial_state={"progress": 0}
            )
            version = [intent.version]

            def create(i: int) -> None:
                client.create_intent(
                    "benchmark intent", "a small intent", initial_state={"progress": 0}
                )

            def update(i: int) -> None:
                version[0] = client.update_state(intent.id, version[0], {"progress": i}).version

            def log(i: int) -> None:
                client.log_event(intent.id, EventType.COMMENT, {"n": i})

            def lease_pair(i: int) -> None:
                lease = client.acquire_lease(intent.id, "bench", 30)
                client.release_lease(intent.id, lease.id)

            def get(i: int) -> None:
                client.get_intent(intent.id)

            ops = {"create_intent": create, "update_state": update, "log_event": log,
                   "lease_pair": lease_pair, "get_intent": get}  # fmt: skip
            for fn in ops.values():  # warm-up
                timed(fn, min(0.3, args.seconds))
            results = {name: timed(fn, args.seconds) for name, fn in ops.items()}
            final = client.get_intent(intent.id)
            results["sanity"] = {"version_kept": version[0], "version_read": final.version}
            import openintent  # type: ignore[import-not-found]

            results["version"] = getattr(openintent, "__version__", "?")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
