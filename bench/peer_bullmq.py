"""BullMQ's Python worker (``bullmq``) on the same Redis: the queue peer of the benchmark
suite. Runs inside the peers' virtual environment (``bench/peers.py``), never in
oibus's. Prints one JSON object: jobs added one at a time per second, and jobs drained
per second by a worker with an empty processor at each concurrency.

    <peers-venv>/bin/python bench/peer_bullmq.py --redis-url redis://127.0.0.1:6379/0 --jobs 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from typing import Any


async def add_rate(url: str, seconds: float) -> dict[str, float]:
    from bullmq import Queue  # type: ignore[import-not-found]

    queue = Queue(f"bench-add-{uuid.uuid4().hex[:8]}", {"connection": url})
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = t = clock()
    deadline = start + int(seconds * 1e9)
    while t < deadline:
        await queue.add("tick", {"n": len(latencies)})
        now = clock()
        latencies.append(now - t)
        t = now
    await queue.obliterate(force=True)
    await queue.close()
    latencies.sort()
    n = len(latencies)
    return {
        "ops": n,
        "ops_per_s": n / ((t - start) / 1e9),
        "p50_us": latencies[n // 2] / 1000,
        "p99_us": latencies[min(n - 1, int(n * 0.99))] / 1000,
    }


async def drain_rate(url: str, jobs: int, concurrency: int) -> float:
    from bullmq import Queue, Worker  # type: ignore[import-not-found]

    name = f"bench-drain-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, {"connection": url})
    for start in range(0, jobs, 1000):
        await queue.addBulk(
            [{"name": "tick", "data": {}} for _ in range(start, min(jobs, start + 1000))]
        )
    done = asyncio.Event()
    count = 0

    async def process(job: Any, token: Any) -> None:
        return None

    def completed(*_: Any) -> None:
        nonlocal count
        count += 1
        if count == jobs:
            done.set()

    t = time.perf_counter()
    worker = Worker(name, process, {"connection": url, "concurrency": concurrency})
    worker.on("completed", completed)
    await done.wait()
    elapsed = time.perf_counter() - t
    await worker.close()
    await queue.obliterate(force=True)
    await queue.close()
    return count / elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"add": await add_rate(args.redis_url, args.seconds)}
    for c in args.concurrency:
        out[f"drain_c{c}"] = await drain_rate(args.redis_url, args.jobs, c)
    import importlib.metadata as md

    out["version"] = md.version("bullmq")
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
    p.add_argument("--client-cpu", type=int)
    args = p.parse_args()
    if args.client_cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.client_cpu})
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
