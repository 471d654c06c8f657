"""LLM agents on the bus, with no key and no network: each agent's model is a scripted
provider playing what a model would answer.

python examples/llm_agents.py

1. An editor (an LLM coordinator) makes a plan with create_plan: research, then writing.
   The plan is an intent graph: the writer's intent starts when the research completes,
   and the editor's own intent completes after both.
2. The researcher uses a custom tool (web_search) and remembers its findings (agent
   memory, namespaced per agent); the writer streams a report from the research.
3. A careful agent asks a human a question (clarify): its intent is suspended until the
   human answers, then it resumes with the answer and completes.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any

from oibus import Agent, AgentBase, AsyncClient, Coordinator, define_tool, on_assignment
from oibus.sdk.llm.messages import Message
from oibus.sdk.llm.scripted import ScriptedProvider, call
from oibus.sdk.locate import resolve_url

FAST = {"heartbeat_ttl": 1.0, "lease_seconds": 5.0, "block_seconds": 0.2}


def tool_results(messages: Sequence[Message]) -> dict[str, Any]:
    return {m.name or "": json.loads(m.content) for m in messages if m.role == "tool"}


@define_tool(
    description="Search the web and return top results.",
    parameters={
        "type": "object",
        "properties": {"query": {"type": "string", "description": "Search query."}},
        "required": ["query"],
    },
)
async def web_search(query: str) -> dict[str, Any]:
    return {"results": [f"{query}: tides are caused by the moon's gravity"]}


@Agent(
    "researcher",
    model="scripted",
    provider=ScriptedProvider(
        [
            call("web_search", query="tides"),
            lambda m: call(
                "remember", key="tides", value=tool_results(m)["web_search"]["results"][0]
            ),
            "Tides follow the moon.",
        ]
    ),
    tools=[web_search],
    memory="episodic",
    **FAST,
)
class Researcher(AgentBase):
    @on_assignment
    async def work(self, intent: Any) -> dict[str, Any]:
        return {"research": await self.think(f"Research: {intent.description}")}


@Agent(
    "writer",
    model="scripted",
    provider=ScriptedProvider([lambda m: "Report: " + m[-1].content.split("research: ", 1)[1]]),
    **FAST,
)
class Writer(AgentBase):
    @on_assignment
    async def work(self, intent: Any) -> dict[str, Any]:
        research = await self.client.get_intent(intent.depends_on[0])
        tokens: list[str] = []
        async for token in self.think_stream(
            f"Write a report from the research: {research.state['research']}"
        ):
            tokens.append(token)
        return {"report": "".join(tokens)}


@Coordinator(
    "editor",
    agents=["researcher", "writer"],
    model="scripted",
    provider=ScriptedProvider(
        [
            call(
                "create_plan",
                steps=[
                    {"title": "research", "description": "tides", "assign": "researcher"},
                    {
                        "title": "write",
                        "description": "a report on tides",
                        "assign": "writer",
                        "depends_on": ["research"],
                    },
                ],
            ),
            "Planned: research, then the report.",
        ]
    ),
    **FAST,
)
class Editor(AgentBase):
    @on_assignment
    async def plan(self, intent: Any) -> dict[str, Any]:
        return {"plan": await self.think(f"Plan this project: {intent.description}")}


@Agent(
    "careful-agent",
    model="scripted",
    provider=ScriptedProvider(
        [
            call("clarify", question="Which region should the report cover?"),
            lambda m: "Covering " + tool_results(m)["clarify"]["answer"],
        ]
    ),
    **FAST,
)
class CarefulAgent(AgentBase):
    @on_assignment
    async def work(self, intent: Any) -> dict[str, Any]:
        return {"result": await self.think(f"Analyze: {intent.description}")}


async def wait_for(client: AsyncClient, intent_id: str, status: str) -> None:
    for _ in range(400):
        if (await client.get_intent(intent_id)).status == status:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{intent_id} never became {status}")


async def main() -> None:
    url = resolve_url()
    namespace = os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples")
    agents: list[AgentBase] = [Editor(), Researcher(), Writer(), CarefulAgent()]
    for a in agents:
        await a.start(url, namespace=namespace)
    try:
        async with AsyncClient(url, agent_id="human", namespace=namespace) as client:
            project = await client.create_intent("tides", "a report on tides", assign="editor")
            await wait_for(client, project.id, "completed")
            for child in sorted(await client.get_children(project.id), key=lambda c: c.title):
                print(f"{child.title} by {child.assigned_agents[0]}: {child.state}")
            print(f"editor: {(await client.get_intent(project.id)).state['plan']}")
            (memory,) = await client.recall("tides", agent_id="researcher")
            print(f"researcher remembers {memory.key}: {memory.value}")

            question = await client.create_intent("sales", "a sales report", assign="careful-agent")
            await wait_for(client, question.id, "suspended_awaiting_input")
            (pending,) = await client.get_arbitrations(question.id, status="pending")
            print(f"asked: {pending.reason}")
            await client.resolve_arbitration(question.id, pending.id, "EU")
            await wait_for(client, question.id, "completed")
            print(f"answered: {(await client.get_intent(question.id)).state['result']}")
    finally:
        for a in agents:
            await a.stop()


if __name__ == "__main__":
    asyncio.run(main())
