"""The LLM engine's own cost per tool round, beside a hand-written loop over the same
scripted provider (``python -m bench.llm [--redis-url URL] [--rounds N] [--repeat R]
[--smoke] [--out bench/LLM.md]``). Without ``--redis-url`` an embedded engine is started.

A tool round is: one provider request answered with one tool call, the tool (an async
no-op) run, and its result appended. The direct loop does only that, in memory. The
engine does the same and also what makes it an oibus agent: the RFC-0008 events
(request started/completed, tool call started/completed: four writes) and the round's
conversation record (one script, fenced by the lease), sent in one pipeline per round.
Figures per round, median of ``--repeat`` runs of ``--rounds`` rounds each: wall time
and this process's CPU time. The difference is oibus's time per round, to set beside
the provider's own (seconds for a real model).

- **sanity**: every engine run answered after exactly ``--rounds`` rounds, and its intent
  logged ``4 x rounds + 2`` events of the trace.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from collections.abc import Sequence
from statistics import median
from typing import Any

import oibus
from oibus import AsyncClient, ToolDef, agent, on_assignment
from oibus.sdk.llm.engine import Engine, RunContext, current_run
from oibus.sdk.llm.messages import Message
from oibus.sdk.llm.scripted import ScriptedProvider, call

from .core import git_commit, place, report_on_server, server_version


async def noop() -> dict[str, bool]:
    return {"ok": True}


NOOP = ToolDef(name="noop", description="Does nothing.", handler=noop)


def script(rounds: int) -> list[Any]:
    return [call("noop") for _ in range(rounds)] + ["done"]


class _Settings:
    model = "scripted"
    temperature = 0.0
    max_tokens = 100


async def direct(rounds: int) -> tuple[float, float]:
    """A hand-written loop over the provider: no bus, no logging, no record."""
    provider = ScriptedProvider(script(rounds))
    specs = [NOOP.spec()]
    msgs: list[Message] = [Message(role="user", content="go")]
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        reply = await provider.complete(msgs, specs, _Settings())
        msgs.append(reply.message)
        if not reply.tool_calls:
            break
        for c in reply.tool_calls:
            result = await NOOP.invoke(c.arguments)
            msgs.append(Message(role="tool", content=str(result), tool_call_id=c.id))
    return time.perf_counter() - wall, time.process_time() - cpu


async def engine_run(client: AsyncClient, rounds: int) -> tuple[float, float, str, Any]:
    provider = ScriptedProvider(script(rounds))

    @agent("bench-llm", model="scripted", provider=provider, tools=[NOOP], max_tool_rounds=rounds)
    class Bench:
        @on_assignment
        async def work(self, intent: Any) -> None:
            return None

    me = Bench()
    me._rt.client = client  # the engine alone, without consuming events
    engine = Engine(me, me.config.llm, coordinator=False)  # type: ignore[arg-type]
    engine.attach(client)
    me._rt.engine = engine
    intent = await client.create_intent("bench llm round")
    token = current_run.set(RunContext(intent=intent, lease=None, version=intent.version))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        answer = await engine.think("go")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        current_run.reset(token)
    await engine.clear(intent.id)
    return wall, cpu, intent.id, answer


async def raw_writes(client: AsyncClient, rounds: int) -> tuple[float, float]:
    """The floor under the engine's writes: the same five commands a round writes (four
    log_event scripts and the record's save_conversation script, similar sizes),
    pipelined by redis-py with no engine around them."""
    intent = await client.create_intent("bench llm raw")
    runner, ops = client._runner, client._ops
    payload = {"request_id": "r", "provider": "scripted", "model": "scripted", "x": "y" * 200}
    calls = [ops.log_event(intent.id, f"bench.raw{n}", payload) for n in range(4)]
    calls.append(ops.save_conversation(intent.id, None, "x" * 2000, 60))
    batch = [runner._evalsha(c) for c in calls]
    await runner.call_many(calls)  # scripts loaded
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        await runner._pipeline(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await runner.command("DEL", client.keyspace.llm_conversation(intent.id, ops.actor))
    return wall, cpu


async def measure(url: str, namespace: str, rounds: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"direct": [], "engine": [], "raw": [], "problems": [], "ids": []}
    async with AsyncClient(url, agent_id="bench-llm", namespace=namespace) as client:
        await direct(rounds)  # warm up both paths
        await engine_run(client, rounds)
        for _ in range(repeat):
            out["direct"].append(await direct(rounds))
            out["raw"].append(await raw_writes(client, rounds))
            wall, cpu, iid, answer = await engine_run(client, rounds)
            out["engine"].append((wall, cpu))
            out["ids"].append(iid)
            if answer != "done":
                out["problems"].append(f"{iid} answered {answer!r}")
            trace = [
                e
                for e in await client.get_events(iid, limit=1000)
                if e.event_type.startswith(("llm_request", "tool_call"))
            ]
            if len(trace) != 4 * rounds + 2:
                out["problems"].append(f"{iid} logged {len(trace)} trace events")
        # the run's keys go: a shared server's other users scan past whatever is left
        async for key in client.redis.scan_iter(match=f"{{{namespace}*", count=1000):
            await client.redis.delete(key)
    return out


def per_round(pairs: Sequence[tuple[float, float]], rounds: int) -> tuple[float, float]:
    return (
        median(w for w, _ in pairs) / rounds * 1e6,
        median(c for _, c in pairs) / rounds * 1e6,
    )


def run(
    args: argparse.Namespace, url: str, server_pid: int | None, into: dict[str, Any] | None = None
) -> str:
    placement = place(server_pid)
    namespace = f"bench-llm-{int(time.time())}"
    try:
        import uvloop

        figures = uvloop.run(measure(url, namespace, args.rounds, args.repeat))
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        figures = asyncio.run(measure(url, namespace, args.rounds, args.repeat))
    import redis

    with redis.Redis.from_url(url) as sync_redis:
        server = server_version(sync_redis)
    d_wall, d_cpu = per_round(figures["direct"], args.rounds)
    e_wall, e_cpu = per_round(figures["engine"], args.rounds)
    r_wall, r_cpu = per_round(figures["raw"], args.rounds)
    problems = figures["problems"]
    if into is not None:
        into["llm"] = {"engine_wall_us": e_wall, "direct_wall_us": d_wall, "sanity": problems}
    stamp = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}"
    lines = [
        "# LLM engine benchmark",
        "",
        f"- date: {stamp}; oibus {oibus.__version__} at {git_commit()}",
        f"- server: {server} ({'embedded' if server_pid else url}); {placement}",
        f"- {args.repeat} runs of one think() with {args.rounds} tool rounds, median per round",
        "",
        "| loop | wall µs per round | client CPU µs per round |",
        "|---|---|---|",
        f"| direct calls of the scripted provider | {d_wall:.0f} | {d_cpu:.0f} |",
        f"| engine (events + fenced conversation record) | {e_wall:.0f} | {e_cpu:.0f} |",
        f"| oibus time per round (difference) | {e_wall - d_wall:.0f} | {e_cpu - d_cpu:.0f} |",
        f"| raw redis-py: the round's 5 writes, pipelined | {r_wall:.0f} | {r_cpu:.0f} |",
        f"| engine beyond its writes (difference - raw) | {e_wall - d_wall - r_wall:.0f} | "
        f"{e_cpu - d_cpu - r_cpu:.0f} |",
        "",
        "A round writes once: its four trace events and its conversation record in one "
        "pipeline (started events go first only when a request or tool outlasts 2 ms).",
        "",
        f"Target: under 1000 µs of oibus time per round: "
        f"{'met' if e_wall - d_wall < 1000 else 'not met'} ({e_wall - d_wall:.0f} µs wall).",
        "",
        f"sanity: {'ok' if not problems else '; '.join(problems[:5])}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="3 runs of 5 rounds")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.repeat = 5, 3
    return args


def main(argv: list[str] | None = None) -> int:
    report = report_on_server(parse_args(argv), run)
    return 0 if "sanity: ok" in report else 1


if __name__ == "__main__":
    sys.exit(main())
