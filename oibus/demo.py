"""``oibus demo``: a short coordination story against a live bus, printed as its event log.

It is the smallest end-to-end proof that a machine is set up: intents are created, state
is patched under the version check, a stale write is refused, agents are assigned, work
completes, and every step shows up in the log, in order, with its sequence number.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import msgspec

from oibus.bus.consuming import Delivery
from oibus.bus.errors import ConflictError
from oibus.bus.models import Intent
from oibus.sdk import AsyncClient, Client


def _line(intent: Intent) -> str:
    return f"  {intent.id}  v{intent.version}  {intent.status:<10}  {intent.title}"


def run_demo(client: Client, echo: Callable[[str], None] = print) -> list[Intent]:
    echo(f"oibus demo on {client.keyspace.namespace!r} as agent {client.agent_id!r}")
    research = client.create_intent(
        "Research market trends",
        "Analyze Q4 market data and identify patterns",
        {"deadline": "2026-12-01", "max_cost": 50.0},
        state={"progress": 0, "sources": []},
    )
    write = client.create_intent("Write the summary", depends_on=[research.id])
    echo("created:")
    echo(_line(research))
    echo(_line(write))

    research = client.assign_agent(research.id, "agent:researcher")
    research = client.update_state(research.id, research.version, {"progress": 0.5})
    research = client.patch_state(
        research.id,
        research.version,
        [{"op": "append", "path": "/sources", "value": "https://example.com/q4"}],
    )
    try:
        client.update_state(research.id, 1, {"progress": 0.9})
    except ConflictError as exc:
        echo(f"stale write refused: {exc} (current version {exc.current_version})")
    client.log_event(research.id, "comment", {"message": "halfway through the data"})
    client.log_event(
        research.id,
        "llm_request_completed",
        {"model": "gpt-4", "prompt_tokens": 500, "completion_tokens": 200},
    )
    research = client.update_state(research.id, research.version, {"progress": 1.0})
    research = client.set_status(research.id, research.version, "completed", reason="done")

    write = client.get_intent(write.id)  # unblocked by research's completion
    echo("now:")
    echo(_line(research))
    echo(_line(write))
    echo(f"  state: {msgspec.json.encode(research.state).decode()}")
    echo(f"event log of {research.id}:")
    for event in client.get_events(research.id):
        payload = msgspec.json.encode(event.payload).decode()
        echo(
            f"  #{event.seq:<3} {event.created_at:%H:%M:%S.%f}  {event.event_type:<22} "
            f"{event.actor:<8} {payload}"
        )
    return [research, write]


def event_line(delivery: Delivery) -> str:
    """One event as the live demos print it: when, which intent, what, by whom."""
    event = delivery.event
    payload = msgspec.json.encode(event.payload).decode()
    if len(payload) > 90:
        payload = payload[:87] + "..."
    short = event.intent_id.rsplit(".", 1)[-1][:22]  # a graph's ids share their group
    return (
        f"  {event.created_at:%H:%M:%S.%f}  {short:<22} #{event.seq:<3} "
        f"{event.event_type:<24} {event.actor:<18} {payload}"
    )


@asynccontextmanager
async def live_events(client: AsyncClient, echo: Callable[[str], None]) -> AsyncIterator[None]:
    """Print the namespace's events as they happen while the block runs (a best-effort
    tail pinned before the block starts), and what had arrived by its end."""
    tail = client.tail(block_seconds=0.1)
    await tail.pin()
    stop = asyncio.Event()

    async def follow() -> None:
        while True:
            done = stop.is_set()
            for delivery in await tail.read():
                echo(event_line(delivery))
            if done:
                return

    printer = asyncio.ensure_future(follow())
    try:
        yield
    finally:
        stop.set()
        await printer
