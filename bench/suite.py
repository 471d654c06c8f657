"""The whole benchmark suite in one run, on one server, so every ratio compares figures
taken minutes apart on the same machine: ``make bench`` (``--smoke`` in CI).

    python -m bench.suite [--redis-url URL] [--full] [--smoke] [--out bench/RESULTS.md]

1. core: the raw baseline (one call, async, async x16, pipelined x100) and oibus's calls
   (``bench.core``);
2. peers, each in its own virtual environment (``bench.peers``): the reference OpenIntent
   server 0.17.0 driven by its own client, and BullMQ's Python worker;
3. consumption: an agent draining a consumer group, assignment to handler start,
   completion to dependent active, webhook deliveries (``bench.agents``, ``bench.graphs``,
   ``bench.webhooks``);
   then the HTTP server (``bench.httpserver``): the gateway beside the reference server under
   the reference SDK, and its ceiling beside a bare Starlette route;
4. growth: the same calls and memory per intent at 1,000 and 100,000 intents (and
   1,000,000 with ``--full``) (``bench.growth``).

Placement: this process (every client) on CPU 0, the server (Redis, or the reference
server for its own figures) on CPU 1, the same for every system compared.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import agents, batch, core, graphs, growth, httpserver, peers, webhooks

PEER_OPS = ("create_intent", "update_state", "log_event", "lease_pair", "get_intent")
TARGET_PEER = 40.0
TARGET_DRAIN = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__.split("\n")[0])
    p.add_argument("--redis-url", help="benchmark this server (default: start an embedded one)")
    p.add_argument("--smoke", action="store_true", help="every benchmark for about a second")
    p.add_argument("--full", action="store_true", help="the 1,000,000-intent growth tier too")
    p.add_argument("--no-peers", action="store_true", help="skip the peers (no install)")
    p.add_argument("--out", help="write the Markdown report here (bench/RESULTS.md)")
    p.add_argument("--json", help="also write the raw figures as JSON here")
    p.add_argument("--compare", help="a --json file of an earlier run: its ratios beside these")
    return p.parse_args(argv)


def _peer(name: str, fn: Any, *a: Any) -> dict[str, Any]:
    print(f"== peer: {name}", flush=True)
    try:
        found: dict[str, Any] = fn(*a)
    except peers.PeerUnavailableError as exc:
        print(f"   skipped: {exc}", flush=True)
        return {"skipped": str(exc)}
    print(f"   {json.dumps(found)}", flush=True)
    return found


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, kind: str, command: str
) -> dict[str, Any]:
    smoke = ["--smoke"] if args.smoke else []
    started = time.monotonic()
    print("== core", flush=True)
    core_args = core.parse_args(smoke or ["--seconds", "4", "--rounds", "8"])
    core_report = core.run(core_args, url, server_pid, kind, command)
    seconds = 0.5 if args.smoke else 4.0
    cpus = (core.CLIENT_CPU, core.SERVER_CPU)
    if args.no_peers:
        reference: dict[str, Any] = {"skipped": "--no-peers"}
        bull: dict[str, Any] = {"skipped": "--no-peers"}
    else:
        reference = _peer("openintent 0.17.0", peers.openintent, seconds, *cpus)
        jobs = 1000 if args.smoke else 20_000
        bull = _peer("bullmq", peers.bullmq, url, jobs, seconds, cpus[0])
    consumption: dict[str, Any] = {}
    sections: list[str] = []
    for name, module, extra in (
        ("agents", agents, [] if args.smoke else ["--events", "30000", "--rounds", "3"]),
        ("graphs", graphs, [] if args.smoke else ["--layers", "50", "--width", "100"]),
        ("webhooks", webhooks, []),
        ("http", httpserver, ["--no-peers"] if args.no_peers else []),
    ):
        print(f"== {name}", flush=True)
        sections.append(module.run(module.parse_args(smoke + extra), url, server_pid, consumption))
    print("== growth", flush=True)
    growth_args = growth.parse_args(smoke + (["--full"] if args.full else []))
    growth_args.command = command
    sections.append(growth.run(growth_args, url, server_pid))
    print("== batch", flush=True)
    sections.append(batch.run(batch.parse_args(smoke or ["--runs", "1"]), url, server_pid))
    return {
        "core": core_report,
        "reference": reference,
        "bullmq": bull,
        "consumption": consumption,
        "sections": sections,
        "minutes": (time.monotonic() - started) / 60,
    }


def _fig(core_report: dict[str, Any], op: str, mode: str) -> dict[str, Any] | None:
    return next((f for f in core_report["figures"] if f["op"] == op and f["mode"] == mode), None)


def summary(result: dict[str, Any]) -> list[str]:
    """The headline table: each figure beside the baseline and the peers of the same run."""
    core_report, ref, bull, cons = (
        result["core"], result["reference"], result["bullmq"], result["consumption"]
    )  # fmt: skip
    lines = [
        "## Headline: oibus beside the raw limit and the peers, same run",
        "",
        "| figure | oibus | raw baseline | x baseline | reference server | x reference | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    x16 = f"async x{core.CONCURRENCY}"
    for mode, peer_suffix, label in (
        ("sync", "", "sync"),
        (x16, " x16", "x16: async tasks / threads"),
    ):
        base = _fig(core_report, "baseline", mode)
        for op in PEER_OPS:
            f = _fig(core_report, op, mode)
            if f is None or base is None:
                continue
            calls = core.CALLS.get(op, 1)
            found = ref.get(op + peer_suffix) if "skipped" not in ref else None
            peer = found["ops_per_s"] if found else None
            x_ref = f["ops_per_s"] / peer if peer else None
            gated = op in ("create_intent", "update_state", "lease_pair")
            target = f"≥ {TARGET_PEER:.0f}x reference" if gated else ""
            met = (
                ""
                if x_ref is None or not gated
                else (" met" if x_ref >= TARGET_PEER else " MISSED")
            )
            lines.append(
                f"| {op} ({label}, {'pairs' if calls > 1 else 'calls'}/s) | "
                f"{f['ops_per_s']:,.0f} | "
                f"{base['ops_per_s'] / calls:,.0f} | {f['ratio']:.2f} | "
                f"{'-' if peer is None else f'{peer:,.0f}'} | "
                f"{'-' if x_ref is None else f'{x_ref:,.0f}x'} | {target}{met} |"
            )
    drain = cons.get("drain", {})
    if "agent" in drain:
        c10 = bull.get("drain_c10") if "skipped" not in bull else None
        c1 = bull.get("drain_c1") if "skipped" not in bull else None
        peer_text = "-" if c10 is None else f"BullMQ c10 {c10:,.0f} / c1 {c1:,.0f}"
        x = None if not c10 else drain["agent"] / max(c10, c1 or 0)
        lines.append(
            f"| consumer-group drain, one agent process (events/s) | {drain['agent']:,.0f} | "
            f"{drain.get('raw', 0):,.0f} | {drain['agent'] / drain['raw']:.2f} | {peer_text} | "
            f"{'-' if x is None else f'{x:.1f}x (best BullMQ)'} | ≥ {TARGET_DRAIN:.0f}x BullMQ"
            f"{'' if x is None else (' met' if x >= TARGET_DRAIN else ' MISSED')} |"
        )
    lat = cons.get("latency")
    if lat:
        a, r = lat["agent"], lat["raw"]
        lines.append(
            f"| assignment → handler start at {lat['rate']:.0f}/s (p50 / p99 µs) | "
            f"{a['p50']:,.0f} / {a['p99']:,.0f} | {r['p50']:,.0f} / {r['p99']:,.0f} | "
            f"{r['p50'] / a['p50']:.2f} | - | - | |"
        )
    unblock = cons.get("unblock")
    if unblock:
        lines.append(
            f"| completion → dependent active (p50 / p99 µs) | {unblock['p50_us']:,.0f} / "
            f"{unblock['p99_us']:,.0f} | {unblock['baseline_p50_us']:,.0f} / "
            f"{unblock['baseline_p99_us']:,.0f} | "
            f"{unblock['baseline_p50_us'] / unblock['p50_us']:.2f} | no unblocking | - | |"
        )
    for w in cons.get("webhooks", []):
        if w["run"] != 1:
            continue
        lines.append(
            f"| webhook deliveries/s, {w['subscriptions']} subscription(s) | {w['per_s']:,.0f} | "
            f"{w['raw_per_s']:,.0f} (raw httpx POSTs) | {w['per_s'] / w['raw_per_s']:.2f} | "
            "no webhooks | - | |"
        )
    lines += [""]
    if "skipped" in ref:
        lines.append(f"Reference server skipped: {ref['skipped']}")
    else:
        lines.append(
            "Reference server (openintent 0.17.0, SQLite in a temporary file, its own "
            "`OpenIntentClient`; one call at a time, and 16 threads each with its own client "
            "and intent): "
            + ", ".join(
                f"{op} {ref[op]['ops_per_s']:,.0f}/s (p50 {ref[op]['p50_us'] / 1000:.1f} ms; "
                f"x16 {ref[op + ' x16']['ops_per_s']:,.0f}/s)"
                for op in PEER_OPS
            )
            + f"; sanity: versions {ref['sanity']['version_kept']} kept / "
            f"{ref['sanity']['version_read']} read."
        )
    if "skipped" in bull:
        lines.append(f"BullMQ skipped: {bull['skipped']}")
    else:
        add = bull["add"]
        lines.append(
            f"BullMQ {bull['version']} (Python): `queue.add` one at a time "
            f"{add['ops_per_s']:,.0f}/s "
            f"(p50 {add['p50_us']:.0f} µs); worker drain with an empty processor: concurrency 1 "
            f"{bull['drain_c1']:,.0f}/s, concurrency 10 {bull['drain_c10']:,.0f}/s."
        )
    return lines


def how_to_read_lines() -> list[str]:
    return [
        line.replace("## How to read", "### How to read the core table")
        for line in core.how_to_read()
    ]


def _cells(lines: list[str]) -> dict[str, list[str]]:
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| figure")]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    }


def comparison(result: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """The headline's ratios of an earlier run beside this run's (the machine is noisy:
    two runs show how far a figure moves by itself)."""
    now, before = _cells(summary(result)), _cells(summary(previous))
    lines = [
        "## The same figures in the earlier run",
        "",
        f"Earlier run: {previous['core']['date']}, `{previous['core']['command']}`.",
        "",
        "| figure | oibus: earlier → now | x baseline: earlier → now "
        "| x reference or peer: earlier → now |",
        "|---|---:|---:|---:|",
    ]
    for figure, cells in now.items():
        old = before.get(figure)
        if old is None:
            continue
        lines.append(
            f"| {figure} | {old[0]} → {cells[0]} | {old[2]} → {cells[2]} | {old[4]} → {cells[4]} |"
        )
    return [*lines, ""]


def markdown(result: dict[str, Any], command: str, previous: dict[str, Any] | None = None) -> str:
    c = result["core"]
    facts = c["facts"]
    head = [
        "# oibus benchmark suite",
        "",
        f"- date: {c['date']}; took {result['minutes']:.1f} min",
        f"- command: `{command}`",
        f"- placement: {c['placement']}; the reference server is pinned to CPU "
        f"{core.SERVER_CPU} like the Redis server, its client (and BullMQ's) to CPU "
        f"{core.CLIENT_CPU}",
        f"- server: {facts['server']} ({c['server_kind']})",
        f"- machine: {facts['cpus']} CPUs ({facts['cpu_model']}), {facts['platform']}",
        f"- python {facts['python']}, redis-py {facts['redis_py']}, hiredis {facts['hiredis']}, "
        f"oibus {facts['oibus']} ({facts.get('commit', '?')}), event loop: {facts['loop']}",
        f"- load average at the start: {facts['load_before']}; after the core figures: "
        f"{facts['load_after']}",
        "",
    ]
    head += [
        "Targets missed, by how much and why, with the next lever: "
        "[MISSES.md](MISSES.md) (written by hand from these runs and a profile).",
        "",
    ]
    figures = [core.Figure(**f) for f in c["figures"]]
    body = [
        *summary(result),
        "",
        *(comparison(result, previous) if previous is not None else []),
        "## Core calls beside the raw baseline",
        "",
        core.markdown_table(figures),
        "",
        *how_to_read_lines(),
    ]
    sections = ["#" + s if s.startswith("# ") else s for s in result["sections"]]
    return "\n".join(head + body) + "\n\n" + "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = (
        shlex.join(sys.orig_argv)
        if argv is None
        else shlex.join(["python", "-m", "bench.suite", *argv])
    )
    result = core.on_server(
        args.redis_url, lambda url, pid, kind: run(args, url, pid, kind, command)
    )
    previous = json.loads(Path(args.compare).read_text()) if args.compare else None
    text = markdown(result, command, previous)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if result["core"]["sanity"] else 0


if __name__ == "__main__":
    sys.exit(main())
