"""Graph benchmark (RFC-0002 at scale): a DAG of about 10,000 intents completed layer by
layer, next to the raw-Redis baseline measured in the same moments.

Run ``python -m bench.graphs [--redis-url URL] [--layers 100] [--width 100] [--fan-in 3]
[--smoke] [--out bench/GRAPHS.md]``. Without ``--redis-url`` an embedded engine is started
in a temporary directory (client on CPU 0, server on CPU 1, as bench.core does).

The graph: a root, ``layers`` layer intents (children of the root), each with ``width``
children; every child of layer k > 0 depends on ``fan-in`` random children of layer k-1.
All of it is one group, so every completion and every unblock is one script.

What it reports:
- **unblock latency**: for each completion that moved a dependent from blocked to active,
  the time from sending the completion to having the reply; the dependent is active when
  the reply exists (same script), so this is completion-to-active as a caller sees it.
  Beside it, one baseline EVALSHA (bench/baseline.lua) timed right before each completion.
- **reads**: the graph reads on the 10,000-intent graph and on a 10-intent graph; a read
  is bounded when its cost does not follow the graph's size.
- **sanity**: every dependent left blocked exactly once; everything completed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from statistics import median
from typing import Any

import redis

import oibus
from oibus.bus.moves import Move

from .core import AGENT, BASELINE_LUA, FIELD, git_commit, place, report_on_server, server_version


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, -(-int(q * len(ordered) * 1000) // 1000) - 1))]


class Dag:
    def __init__(self, url: str, layers: int, width: int, fan_in: int, seed: int) -> None:
        token = secrets.token_hex(4)
        self.namespace = f"benchg{token}"
        self.group = f"dag{token}"
        self.base_tag = f"{{benchgbase{token}:0}}"
        self.client = oibus.Client(url, agent_id=AGENT, namespace=self.namespace, slot_guard=False)
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.sha = self.redis.script_load(BASELINE_LUA.read_text())
        self.layers, self.width, self.fan_in = layers, width, fan_in
        self.rng = random.Random(seed)
        self.root = ""
        self.layer_ids: list[str] = []
        self.nodes: list[list[str]] = []
        self.moves: list[Move] = []
        self.base_keys: tuple[str, ...] = ()
        self.client._after_moves = self.moves.extend  # type: ignore[method-assign,assignment]

    def build(self) -> float:
        c, g = self.client, self.group
        start = time.perf_counter()
        self.root = c.create_intent("root", intent_id=f"{g}.root").id
        for k in range(self.layers):
            layer = c.create_child_intent(self.root, f"layer {k}", intent_id=f"{g}.L{k}").id
            self.layer_ids.append(layer)
            row = []
            for i in range(self.width):
                deps = (
                    self.rng.sample(self.nodes[k - 1], min(self.fan_in, self.width)) if k else None
                )
                row.append(
                    c.create_child_intent(
                        layer, f"n{k}-{i}", intent_id=f"{g}.n{k}-{i}", depends_on=deps
                    ).id
                )
            self.nodes.append(row)
        elapsed = time.perf_counter() - start
        # the baseline intent: a copy of a small oibus intent under its own tag
        small = c.create_intent("baseline twin", state={FIELD: 0})
        fields = self.redis.hgetall(c.keyspace.intent(small.id))
        fields.update(id="base", seq="0")
        t = self.base_tag
        self.base_keys = (f"{t}:i:base", f"{t}:s:base", f"{t}:e:base", f"{t}:bus")
        self.redis.hset(self.base_keys[0], mapping=fields)
        self.redis.hset(self.base_keys[1], FIELD, "0")
        return elapsed

    def baseline(self, i: int) -> None:
        self.redis.evalsha(self.sha, 4, *self.base_keys, "base", FIELD, str(i), AGENT)

    def complete_all(self) -> dict[str, list[float]]:
        """Complete layer by layer; time each completion and a baseline call before it."""
        c = self.client
        unblock, plain, base = [], [], []
        clock = time.perf_counter_ns
        i = 0
        for k in range(self.layers):
            row = list(self.nodes[k])
            self.rng.shuffle(row)
            for node in row:
                version = c.get_intent(node).version
                t0 = clock()
                self.baseline(i)
                t1 = clock()
                del self.moves[:]
                c.set_status(node, version, "completed")
                t2 = clock()
                base.append((t1 - t0) / 1000)
                moved = [m for m in self.moves[1:] if m.status == "active"]
                (unblock if moved else plain).append((t2 - t1) / 1000)
                i += 1
            layer = c.get_intent(self.layer_ids[k])
            c.set_status(layer.id, layer.version, "completed")
        root = c.get_intent(self.root)
        c.set_status(root.id, root.version, "completed")
        return {"unblock": unblock, "plain": plain, "baseline": base}

    def sanity(self) -> list[str]:
        problems = []
        c = self.client
        for k in range(1, self.layers):
            for node in self.nodes[k]:
                left = [
                    e
                    for e in c.get_events(node, event_type="status_changed", limit=100)
                    if e.payload["from"] == "blocked"
                ]
                if len(left) != 1:
                    problems.append(f"{node} left blocked {len(left)} times")
        if c.get_intent(self.root).status != "completed":
            problems.append("the root did not complete")
        return problems

    def cleanup(self) -> int:
        deleted = 0
        for pattern in (f"{{{self.namespace}*", f"{self.base_tag}*"):
            batch = list(self.redis.scan_iter(match=pattern, count=1000))
            for n in range(0, len(batch), 500):
                deleted += int(self.redis.delete(*batch[n : n + 500]))
        return deleted


def time_reads(
    client: oibus.Client, root: str, parent: str, node: str, repeat: int
) -> dict[str, float]:
    """Median µs of each graph read."""
    reads: dict[str, Callable[[], Any]] = {
        "get_children(root, limit=100)": lambda: client.get_children(root, limit=100),
        "get_aggregate_status(layer)": lambda: client.get_aggregate_status(parent),
        "get_ready_intents(layer, 100)": lambda: client.get_ready_intents(parent, limit=100),
        "get_dependents(node, 100)": lambda: client.get_dependents(node, limit=100),
        "get_dependencies(node)": lambda: client.get_dependencies(node),
        "get_ancestors(node)": lambda: client.get_ancestors(node),
        "get_intent_graph(node, 200)": lambda: client.get_intent_graph(node, max_nodes=200),
        "get_descendants(root, 1000)": lambda: client.get_descendants(root, limit=1000),
    }
    out: dict[str, tuple[float, int]] = {}
    for name, read in reads.items():
        times = []
        for _ in range(repeat):
            t = time.perf_counter_ns()
            read()
            times.append((time.perf_counter_ns() - t) / 1000)
        result = read()
        size = len(result.nodes) if isinstance(result, oibus.IntentGraph) else None
        if isinstance(result, oibus.AggregateStatus):
            size = result.total
        out[name] = (median(times), size if size is not None else len(result))
    return out


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, into: dict[str, Any] | None = None
) -> str:
    """The report as Markdown; ``into`` (the suite's) receives the figures."""
    placement = place(server_pid)
    big = Dag(url, args.layers, args.width, args.fan_in, args.seed)
    small = Dag(url, 3, 3, 2, args.seed)
    server = server_version(big.redis)
    try:
        built = big.build()
        small.build()
        n = 1 + args.layers * (args.width + 1)
        print(f"built {n} intents in {built:.1f} s ({n / built:.0f} creates/s)", flush=True)
        mid = args.layers // 2
        reads_big = time_reads(
            big.client, big.root, big.layer_ids[mid], big.nodes[mid][0], args.repeat
        )
        reads_small = time_reads(
            small.client, small.root, small.layer_ids[1], small.nodes[1][0], args.repeat
        )
        t = time.perf_counter()
        lat = big.complete_all()
        completed_s = time.perf_counter() - t
        problems = big.sanity()
    finally:
        deleted = big.cleanup() + small.cleanup()
        big.client.close()
        small.client.close()
    u, b, plain = lat["unblock"], lat["baseline"], lat["plain"]
    if into is not None:
        into["unblock"] = {
            "count": len(u),
            "p50_us": pct(u, 0.5),
            "p99_us": pct(u, 0.99),
            "baseline_p50_us": pct(b, 0.5),
            "baseline_p99_us": pct(b, 0.99),
            "sanity": problems,
        }

    def row(name: str, xs: list[float]) -> str:
        return f"| {name} | {len(xs)} | {pct(xs, 0.5):.0f} | {pct(xs, 0.99):.0f} |"

    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
    lines = [
        "# Graph benchmark",
        "",
        f"- date: {stamp}; oibus {oibus.__version__} at {git_commit()}",
        f"- server: {server} ({'embedded' if server_pid else url}); {placement}",
        f"- graph: root + {args.layers} layers x {args.width} children = {n} intents, "
        f"fan-in {args.fan_in}, one group (one slot)",
        f"- built in {built:.1f} s ({n / built:.0f} create_intent/s, one at a time)",
        f"- completed {len(u) + len(plain)} children + {args.layers} layers + root in "
        f"{completed_s:.1f} s",
        "",
        "## Completion to unblock",
        "",
        "The dependent is active when the completing call returns (one script, or two when "
        "the first names the dependents whose keys it needs).",
        "",
        "| calls | count | p50 µs | p99 µs |",
        "|---|---|---|---|",
        row("completion that unblocked a dependent", u),
        row("completion that unblocked nothing", plain),
        row("raw baseline EVALSHA, same moments", b),
        "",
        f"Ratio of p50 latencies (baseline / unblocking completion): "
        f"{pct(b, 0.5) / max(pct(u, 0.5), 1e-9):.2f}",
        "",
        "## Reads stay bounded",
        "",
        f"Median of {args.repeat} calls each, on the {n}-intent graph and on a 13-intent one.",
        "",
        "A read costs what it returns (at most its limit), not what the graph holds.",
        "",
        "| read | big graph: µs | returned | small graph: µs | returned |",
        "|---|---|---|---|---|",
        *(
            f"| {k} | {reads_big[k][0]:.0f} | {reads_big[k][1]} | {reads_small[k][0]:.0f} | "
            f"{reads_small[k][1]} |"
            for k in reads_big
        ),
        "",
        f"sanity: {'ok' if not problems else '; '.join(problems[:5])}",
        f"cleanup: deleted {deleted} keys",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.graphs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--redis-url")
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--fan-in", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="a 5 x 10 graph, 3 reads each")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.smoke:
        args.layers, args.width, args.repeat = 5, 10, 3
    return args


def main(argv: list[str] | None = None) -> int:
    report = report_on_server(parse_args(argv), run)
    return 0 if "sanity: ok" in report else 1


if __name__ == "__main__":
    sys.exit(main())
