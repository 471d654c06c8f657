"""Redis Functions (FUNCTION LOAD + FCALL) beside EVALSHA for one oibus script, on the same
server in the same run (``python -m bench.functions [--engine valkey|redis|both]
[--redis-url URL] [--script create_intent|update_state] [--seconds N] [--rounds R]
[--runs N] [--smoke] [--out FILE]``).

Why it could matter: an EVALSHA runs the whole script body on every call, so every helper
the script includes (``-- @include``) is defined again each time (closures, constant
tables). A Functions library runs its top level once, at FUNCTION LOAD: the helpers are
made once and the registered function only runs the body. The two variants here are the
same text: the script as the registry ships it (EVALSHA) and the same includes and body
as one library (FCALL), so the difference is the per-call definitions and nothing else.

Each engine is started for the run in a temporary directory (the bundled valkey, and the
``redis-server`` on PATH), pinned to CPU 1 with the client on CPU 0 as in bench/core.py;
``--redis-url`` measures an existing server instead (not pinned; its keys and library are
removed at the end). The variants alternate in ``--rounds`` rounds; each figure is the
median over the rounds: server µs per call (INFO commandstats, ``evalsha`` or ``fcall``),
calls/s and client CPU per call of one sync redis-py caller. ``--runs`` repeats all of it
on a fresh server.

- **sanity**: both variants made the same writes (the same reply for the same input:
  one created intent each, decoded as ``Intent``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from statistics import median
from typing import Any

import redis

from oibus.bus.codec import decode_intent
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Ops, new_intent_id
from oibus.bus.registry import _HEADER, _INCLUDE, default_registry, expand
from oibus.embedded import EmbeddedServer, _probe

from .core import cpu_model, git_commit, place, server_version

SCRIPTS = ("create_intent", "update_state")
FIELD = "progress"


# -- the library ------------------------------------------------------------------------
def library_source(name: str, library: str, function: str) -> str:
    """``name``'s script as a Functions library registering ``function``.

    The includes become the library's top level (run once, at FUNCTION LOAD) and the body
    the registered function. Helpers read ``KEYS`` (graph_ctx does) as the global an
    EVALSHA has; a function gets its keys as arguments instead, so ``KEYS`` and ``ARGV``
    are the library's locals, set on each call (scripts run one at a time)."""
    root = resources.files("oibus.lua")
    raw = (root / f"{name}.lua").read_text(encoding="utf-8")
    includes = {
        p.name[:-4]: p.read_text(encoding="utf-8")
        for p in (root / "includes").iterdir()
        if p.name.endswith(".lua")
    }
    header = _HEADER.match(raw)
    text = raw[header.end() :] if header else raw
    wanted = "\n".join(m.group(0) for m in _INCLUDE.finditer(text))
    helpers = expand(wanted, includes, (name,))
    body = _INCLUDE.sub("", text)
    return (
        f"#!lua name={library}\n"
        "local KEYS, ARGV\n"
        f"{helpers}\n"
        "local function body(keys, argv)\n"
        "  KEYS, ARGV = keys, argv\n"
        f"{body}\n"
        "end\n"
        f"redis.register_function('{function}', body)\n"
    )


# -- the workload -----------------------------------------------------------------------
class Workload:
    """One script, loaded both ways, and the calls that drive it."""

    def __init__(self, url: str, script: str) -> None:
        token = secrets.token_hex(4)
        self.script = script
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.keyspace = Keyspace(f"benchfn{token}")
        self.ops = Ops(self.keyspace, "bench")
        self.sha = self.redis.script_load(default_registry()[script].source)
        self.library = f"oibus_bench_{token}"
        self.function = f"{script}_{token}"
        self.redis.execute_command(
            "FUNCTION", "LOAD", library_source(script, self.library, self.function)
        )
        self.intent_id = ""
        if script == "update_state":  # the intent it updates, made by create_intent
            keys, args = self.create_call()
            create = self.redis.script_load(default_registry()["create_intent"].source)
            reply = self.redis.execute_command("EVALSHA", create, len(keys), *keys, *args)
            self.intent_id = decode_intent(reply[1], "setup").id

    def create_call(self) -> tuple[list[str], list[str]]:
        new_id = new_intent_id(intent_id=None, idempotency_key=None, colocate_with=None)
        call = self.ops.create_intent(
            new_id,
            title="benchmark intent",
            description="a small intent",
            constraints=None,
            state={FIELD: 0},
            created_by=None,
            status="active",
            confidence=None,
            parent_intent_id=None,
            depends_on=None,
        )
        return call.keys, call.args

    def next_call(self, i: int) -> tuple[list[str], list[str]]:
        if self.script == "create_intent":
            return self.create_call()
        call = self.ops.update_state(self.intent_id, None, f'[["{FIELD}","{i}"]]')
        return call.keys, call.args

    def evalsha(self, keys: list[str], args: list[str]) -> Any:
        return self.redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def fcall(self, keys: list[str], args: list[str]) -> Any:
        return self.redis.execute_command("FCALL", self.function, len(keys), *keys, *args)

    def sanity(self) -> list[str]:
        """The same input gives the same kind of reply both ways: a created intent."""
        problems = []
        for label, run in (("EVALSHA", self.evalsha), ("FCALL", self.fcall)):
            reply = run(*self.next_call(0))
            try:
                intent = decode_intent(reply[1] if isinstance(reply, list) else reply, label)
            except Exception as exc:  # reported, not raised
                problems.append(f"{label}: reply does not decode ({exc})")
                continue
            if intent.state.get(FIELD) is None:
                problems.append(f"{label}: the intent has no {FIELD}")
        return problems

    def stats(self, command: str) -> tuple[int, int]:
        stat = self.redis.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stat.get("calls", 0)), int(stat.get("usec", 0))

    def cleanup(self) -> None:
        self.redis.execute_command("FUNCTION", "DELETE", self.library)
        batch: list[str] = []
        for key in self.redis.scan_iter(match=f"{{{self.keyspace.namespace}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                self.redis.delete(*batch)
                batch = []
        if batch:
            self.redis.delete(*batch)
        self.redis.close()


def measure(work: Workload, variant: str, seconds: float) -> dict[str, float]:
    """One round of one variant: calls/s, client CPU µs and server µs per call."""
    run: Callable[[list[str], list[str]], Any] = (
        work.evalsha if variant == "EVALSHA" else work.fcall
    )
    command = variant.lower()
    calls0, usec0 = work.stats(command)
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    n = 0
    while time.perf_counter() < deadline:
        run(*work.next_call(n))
        n += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    calls1, usec1 = work.stats(command)
    return {
        "calls_per_s": n / elapsed,
        "client_cpu_us": cpu * 1e6 / max(n, 1),
        "server_us": (usec1 - usec0) / max(calls1 - calls0, 1),
    }


def one_run(url: str, server_pid: int | None, args: argparse.Namespace) -> dict[str, Any]:
    # an earlier run pinned this process to the client CPU: place() starts from all CPUs
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    placement = place(server_pid)
    work = Workload(url, args.script)
    try:
        version = server_version(work.redis)
        round_s = args.seconds / args.rounds
        for variant in ("EVALSHA", "FCALL"):  # warm-up: connections, caches
            measure(work, variant, min(0.2, round_s))
        rounds: dict[str, list[dict[str, float]]] = {"EVALSHA": [], "FCALL": []}
        for n in range(args.rounds):
            order = ("EVALSHA", "FCALL") if n % 2 == 0 else ("FCALL", "EVALSHA")
            for variant in order:
                rounds[variant].append(measure(work, variant, round_s))
        problems = work.sanity()
    finally:
        work.cleanup()
    figures = {
        variant: {key: median(r[key] for r in rs) for key in rs[0]}
        for variant, rs in rounds.items()
    }
    paired = [
        f["calls_per_s"] / e["calls_per_s"]
        for e, f in zip(rounds["EVALSHA"], rounds["FCALL"], strict=True)
    ]
    return {
        "server": version,
        "placement": placement,
        "figures": figures,
        "rate_ratio": median(paired),
        "sanity": problems,
    }


def engines(args: argparse.Namespace) -> list[tuple[str, Any]]:
    if args.redis_url:
        return [("external", None)]
    out: list[tuple[str, Any]] = []
    if args.engine in ("valkey", "both"):
        out.append(("valkey (bundled)", None))
    if args.engine in ("redis", "both"):
        path = shutil.which("redis-server")
        if path is None:
            print("redis-server is not on PATH: Redis skipped")
        else:
            out.append(("redis (redis-server on PATH)", _probe(path)))
    return out


def run_on(label: str, engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    if args.redis_url:
        return one_run(args.redis_url, None, args)
    with tempfile.TemporaryDirectory(prefix="oibus-bench-fn-") as tmp:
        kwargs = {"engine": engine} if engine is not None else {}
        server = EmbeddedServer(tmp, appendonly=False, **kwargs)
        url = server.start()
        try:
            return one_run(url, server.pid, args)
        finally:
            server.stop()


# -- reporting --------------------------------------------------------------------------
def table(results: list[tuple[str, int, dict[str, Any]]]) -> list[str]:
    lines = [
        "| server | run | EVALSHA server µs | FCALL server µs | FCALL / EVALSHA server time "
        "| EVALSHA calls/s | FCALL calls/s | FCALL / EVALSHA calls/s "
        "| client CPU µs EVALSHA / FCALL |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, n, r in results:
        e, f = r["figures"]["EVALSHA"], r["figures"]["FCALL"]
        lines.append(
            f"| {server} | {n} | {e['server_us']:.1f} | {f['server_us']:.1f} "
            f"| {f['server_us'] / e['server_us']:.2f} | {e['calls_per_s']:,.0f} "
            f"| {f['calls_per_s']:,.0f} | {r['rate_ratio']:.2f} "
            f"| {e['client_cpu_us']:.1f} / {f['client_cpu_us']:.1f} |"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.functions", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--redis-url", help="measure this server (default: start the engines)")
    p.add_argument("--engine", choices=("valkey", "redis", "both"), default="both")
    p.add_argument("--script", choices=SCRIPTS, default="create_intent")
    p.add_argument("--seconds", type=float, default=None, help="per variant (default 5)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 10)")
    p.add_argument("--runs", type=int, default=2, help="whole runs, each on a fresh server")
    p.add_argument("--smoke", action="store_true", help="a moment of each: the harness works")
    p.add_argument("--out", help="write the report (Markdown) here")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 10
    if args.seconds is None:
        args.seconds = 0.2 if args.smoke else 5.0
    if args.smoke:
        args.runs = 1
    if args.rounds < 1 or args.seconds <= 0 or args.runs < 1:
        p.error("--rounds and --runs must be ≥ 1 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[tuple[str, int, dict[str, Any]]] = []
    for label, engine in engines(args):
        for n in range(1, args.runs + 1):
            r = run_on(label, engine, args)
            results.append((r["server"], n, r))
            print(f"{r['server']} run {n}: {r['placement']}", flush=True)
    problems = [f"{s} run {n}: {p}" for s, n, r in results for p in r["sanity"]]
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    report = [
        f"# Redis Functions beside EVALSHA: {args.script}",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S UTC}",
        f"- command: `python -m bench.functions {shown}`",
        f"- machine: {cpu_model()}; oibus at commit {git_commit()}",
        f"- {args.rounds} rounds x {args.seconds / args.rounds:.2f} s per variant, "
        "alternating; each number is the median over the rounds",
        "",
        *table(results),
        "",
        f"sanity: {'ok' if not problems else '; '.join(problems)}",
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
