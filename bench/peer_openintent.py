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
import threading
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


def _loop(fn: Any, deadline: int, latencies: list[int]) -> int:
    clock = time.perf_counter_ns
    t = clock()
    i = 0
    while t < deadline:
        fn(i)
        now = clock()
        latencies.append(now - t)
        t = now
        i += 1
    return t


def timed(fn: Any, seconds: float, fns: list[Any] | None = None) -> dict[str, float]:
    """One caller (``fn``), or one thread per function of ``fns`` calling at once."""
    latencies: list[int] = []
    start = time.perf_counter_ns()
    deadline = start + int(seconds * 1e9)
    if fns is None:
        end = _loop(fn, deadline, latencies)
    else:
        ends: list[int] = []
        per: list[list[int]] = [[] for _ in fns]

        def work(k: int) -> None:
            ends.append(_loop(fns[k], deadline, per[k]))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(fns))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        end = max(ends)
        latencies = [x for lat in per for x in lat]
    t = end
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


OPS = ("create_intent", "update_state", "log_event", "lease_pair", "get_intent")


class Slot:
    """One caller: its own client and intent (concurrent callers never share a version)."""

    def __init__(self, client: Any, event_type: Any) -> None:
        self.client, self.comment = client, event_type.COMMENT
        self.intent = client.create_intent(
            "benchmark intent", "a small intent", initial_state={"progress": 0}
        )
        self.version = self.intent.version

    def create_intent(self, i: int) -> None:
        self.client.create_intent(
            "benchmark intent", "a small intent", initial_state={"progress": 0}
        )

    def update_state(self, i: int) -> None:
        reply = self.client.update_state(self.intent.id, self.version, {"progress": i})
        self.version = reply.version

    def log_event(self, i: int) -> None:
        self.client.log_event(self.intent.id, self.comment, {"n": i})

    def lease_pair(self, i: int) -> None:
        lease = self.client.acquire_lease(self.intent.id, "bench", 30)
        self.client.release_lease(self.intent.id, lease.id)

    def get_intent(self, i: int) -> None:
        self.client.get_intent(self.intent.id)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--client-cpu", type=int)
    p.add_argument("--server-cpu", type=int)
    p.add_argument("--concurrency", type=int, default=16, help="threads for the xN figures")
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
            slots = [
                Slot(OpenIntentClient(url, api_key=API_KEY, agent_id=f"bench{k}"), EventType)
                for k in range(args.concurrency)
            ]
            results: dict[str, Any] = {}
            for name in OPS:
                timed(getattr(slots[0], name), min(0.3, args.seconds))  # warm-up
                results[name] = timed(getattr(slots[0], name), args.seconds)
                results[f"{name} x{args.concurrency}"] = timed(
                    None, args.seconds, [getattr(s, name) for s in slots]
                )
            results["sanity"] = {
                "version_kept": sum(s.version for s in slots),
                "version_read": sum(s.client.get_intent(s.intent.id).version for s in slots),
            }
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
