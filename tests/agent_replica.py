"""One replica of the agent "worker", run as a process by test_agents_process.py:
``python agent_replica.py URL NAMESPACE REPLICA HOLD_SECONDS``. Its handler logs that it
started (with the replica's name), holds for HOLD_SECONDS, then returns its name.

``python agent_replica.py URL NAMESPACE REPLICA HOLD_SECONDS llm SIDE_EFFECT_FILE`` runs the
LLM agent "thinker" instead (test_llm_process.py), with the scripted provider: round 1
calls ``bump`` (appends the replica's name to SIDE_EFFECT_FILE: the side effect that
must happen once), round 2 calls ``wait_here`` (holds HOLD_SECONDS: where the test kills
the replica), then it answers with the number of bumps it saw."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from oibus import agent, on_assignment

url, namespace, replica, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])


@agent(
    "worker",
    heartbeat_ttl=1.0,
    lease_seconds=2.0,
    block_seconds=0.2,
    drain_timeout=0.5,
)
class Replica:
    @on_assignment
    async def work(self, intent: Any) -> dict[str, Any]:
        await self.client.log_event(intent.id, "handler_started", {"replica": replica})
        await asyncio.sleep(hold)
        return {"by": replica}


def _thinker(side_effects: str) -> Any:
    """The LLM replica: a script that answers from the conversation (so a resumed one
    goes on where the record stops), and two tools."""
    from collections.abc import Sequence

    from oibus import ToolDef
    from oibus.sdk.llm.messages import Message
    from oibus.sdk.llm.scripted import ScriptedProvider, call

    def step(messages: Sequence[Message]) -> Any:
        done = {m.name for m in messages if m.role == "tool"}
        if "bump" not in done:
            return call("bump")
        if "wait_here" not in done:
            return call("wait_here")
        return "bumped"

    def bump() -> dict[str, str]:
        with open(side_effects, "a") as f:
            f.write(replica + "\n")
        return {"bumped_by": replica}

    async def wait_here() -> str:
        await asyncio.sleep(hold)
        return "waited"

    tools = [
        ToolDef(name="bump", description="Bump the counter.", handler=bump),
        ToolDef(name="wait_here", description="Wait.", handler=wait_here),
    ]

    @agent(
        "thinker",
        model="scripted",
        provider=ScriptedProvider([step] * 10),
        tools=tools,
        heartbeat_ttl=1.0,
        lease_seconds=2.0,
        block_seconds=0.2,
        drain_timeout=0.5,
    )
    class Thinker:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            await self.client.log_event(intent.id, "handler_started", {"replica": replica})
            return {"answer": await self.think("bump once"), "by": replica}

    return Thinker


if __name__ == "__main__":
    if len(sys.argv) > 6 and sys.argv[5] == "llm":
        _thinker(sys.argv[6]).run(url, namespace=namespace)
    else:
        Replica.run(url, namespace=namespace)
