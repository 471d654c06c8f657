"""LLM agents on the bus, with no key and no network: each agent's model is a scripted
provider (``ScriptedProvider``) playing what a model would answer, so every run is the
same and the bus sees what it would see of agents on a real model.

    python examples/llm_agents.py

1. An editor (an LLM coordinator) makes a plan with create_plan: research, then writing.
   The plan is an intent graph: the writer's intent starts when the research completes,
   and the editor's own intent completes after both.
2. The researcher uses a custom tool (web_search) and remembers its findings (agent
   memory, namespaced per agent); the writer streams a report from the research.
3. A careful agent asks a human a question (clarify): its intent is suspended until the
   human answers, then it resumes with the answer and completes. The human here is this
   script, and it answers "EU".

What each model asks for, each tool call with its result, the plan and the graph it
became, the question and its answer are printed as they happen, from the events of the
namespace (read by a consumer group: nothing polls). ``oibus demo`` runs this too.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oibus import (
    Agent,
    AgentBase,
    AsyncClient,
    Coordinator,
    Delivery,
    Intent,
    define_tool,
    on_assignment,
)
from oibus.bus.keyspace import group_of
from oibus.sdk.llm.messages import Message
from oibus.sdk.llm.scripted import ScriptedProvider, call
from oibus.sdk.locate import resolve_url

FAST = {"heartbeat_ttl": 1.0, "lease_seconds": 5.0, "block_seconds": 0.2}

NARRATED = (
    "intent_created",
    "dependency_added",
    "status_changed",
    "llm_request_completed",
    "tool_call_completed",
    "stream_completed",
    "arbitration_requested",
    "arbitration_resolved",
    "failure_recorded",
)
"""The events the story is told from; the group never fetches the rest (leases, ...)."""


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


def team() -> list[AgentBase]:
    """One run's agents. A scripted provider plays its script once, and a process may run
    this example more than once (``oibus demo``'s tests do), so each run declares its
    agents with fresh scripts; agents on a real model are declared once, at module level."""

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
        async def plan(self, intent: Intent) -> dict[str, Any]:
            return {"plan": await self.think(f"Plan this project: {intent.description}")}

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
        async def work(self, intent: Intent) -> dict[str, Any]:
            return {"research": await self.think(f"Research: {intent.description}")}

    @Agent(
        "writer",
        model="scripted",
        provider=ScriptedProvider([lambda m: "Report: " + m[-1].content.split("research: ", 1)[1]]),
        **FAST,
    )
    class Writer(AgentBase):
        @on_assignment
        async def work(self, intent: Intent) -> dict[str, Any]:
            research = await self.client.get_intent(intent.depends_on[0])
            tokens: list[str] = []
            async for token in self.think_stream(
                f"Write a report from the research: {research.state['research']}"
            ):
                tokens.append(token)
            return {"report": "".join(tokens)}

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
        async def work(self, intent: Intent) -> dict[str, Any]:
            return {"result": await self.think(f"Analyze: {intent.description}")}

    return [Editor(), Researcher(), Writer(), CarefulAgent()]


def brief(value: Any, limit: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Node:
    title: str
    status: str
    after: list[str]


class Story:
    """One intent's graph as its events have told it so far: the names of its intents,
    and the graph as it was when a line is printed (a read of the bus would show it as
    it is by then: with scripted models, usually done)."""

    def __init__(self, root: Intent) -> None:
        self.root = root
        self.nodes = {root.id: Node(root.title, root.status, list(root.depends_on))}

    def title(self, intent_id: str) -> str:
        node = self.nodes.get(intent_id)
        return intent_id if node is None else node.title

    def named(self, text: str) -> str:
        """Ids in a reason read as the titles they stand for (a step's id begins with its
        plan's: the longest first)."""
        for intent_id in sorted(self.nodes, key=len, reverse=True):
            text = text.replace(intent_id, self.nodes[intent_id].title)
        return text

    def graph(self) -> str:
        root, parts = self.nodes[self.root.id], []
        for node in sorted(self.nodes.values(), key=lambda n: n is root):  # the steps first
            after = f" after {', '.join(map(self.title, node.after))}" if node.after else ""
            parts.append(f"{node.title} [{node.status}]{after}")
        return "; ".join(parts)


async def follow(
    watch: AsyncIterator[Delivery],
    story: Story,
    until: str,
    echo: Callable[[str], None],
) -> None:
    """Tell the events of the story's graph as they arrive, until its root becomes
    ``until``.

    The group outlives the process, so an earlier run's events may still be queued for it:
    only this graph's count (a plan's steps are in the group of the intent they plan)."""
    root = story.root
    async for delivery in watch:
        event = delivery.event
        if group_of(event.intent_id) != root.id:
            continue
        kind, p = event.event_type, event.payload
        if kind == "intent_created":
            story.nodes[event.intent_id] = Node(p["title"], p["status"], list(p["depends_on"]))
            continue
        node = story.nodes.setdefault(event.intent_id, Node(event.intent_id, "?", []))

        def say(text: str, title: str = node.title, actor: str = event.actor) -> None:
            echo(f"  {title:<9} {actor:<14} {text}")

        if kind == "dependency_added":
            node.after.append(p["dependency_id"])
        elif kind == "llm_request_completed":
            calls = [c["tool_name"] for c in p.get("tool_calls", [])]
            said = (
                "calls " + ", ".join(calls) if calls else "answers " + brief(p["response_content"])
            )
            say(f"model {said} ({p['total_tokens']} tokens)")
        elif kind == "tool_call_completed" and p["tool_name"] == "create_plan":
            steps = [
                f"{s['title']} by {s['assign']}"
                + (f" after {', '.join(s['depends_on'])}" if s.get("depends_on") else "")
                for s in p["arguments"]["steps"]
            ]
            say(f"create_plan: {'; '.join(steps)}")
            say(f"the graph it became: {story.graph()}")
        elif kind == "tool_call_completed":
            arguments = ", ".join(f"{k}={brief(v, 50)}" for k, v in p["arguments"].items())
            say(f"{p['tool_name']}({arguments}) -> {brief(p.get('result'))}")
        elif kind == "stream_completed":
            say(f"streamed its answer: {p['tokens_streamed']} tokens")
        elif kind == "arbitration_requested":
            say(f"asks a human: {p['reason']}")
        elif kind == "arbitration_resolved":
            say(f"answered: {p['resolution']}")
        elif kind == "failure_recorded":
            raise RuntimeError(f"{node.title}: {event.actor} failed: {p.get('error_message')}")
        elif kind == "status_changed":
            node.status = p["to"]
            reason = f" ({story.named(p['reason'])})" if p.get("reason") else ""
            say(f"{p['from']} -> {p['to']}{reason}")
            if event.intent_id == root.id and p["to"] == until:
                return


def final(intent: Intent) -> str:
    return f"{intent.title} by {intent.assigned_agents[0]}: {intent.status} {intent.state}"


async def run(url: str, namespace: str, echo: Callable[[str], None] = print) -> None:
    agents = team()
    async with AsyncClient(url, agent_id="human", namespace=namespace) as client:
        for a in agents:
            await a.start(url, namespace=namespace)
        echo(
            f"LLM agents in namespace {namespace!r}: agents "
            f"{', '.join(a.agent_id for a in agents)} started, each on a scripted model"
        )
        watch = client.events("human", event_types=NARRATED, block_seconds=0.5)
        await watch.ensure_group()  # from now: the events of this run
        try:
            async with asyncio.timeout(60):  # a broken script says so instead of hanging
                project = await client.create_intent("tides", "a report on tides", assign="editor")
                echo(f"human asks editor for {project.title!r}: {project.description}")
                await follow(watch, Story(project), "completed", echo)
                for child in await client.get_children(project.id):
                    echo(final(child))
                echo(final(await client.get_intent(project.id)))
                for memory in await client.recall("tides", agent_id="researcher"):
                    echo(f"researcher's memory outlives the intent: {memory.key} = {memory.value}")

                question = await client.create_intent(
                    "sales", "a sales report", assign="careful-agent"
                )
                echo(f"human asks careful-agent for {question.title!r}: {question.description}")
                asked = Story(question)
                await follow(watch, asked, "suspended_awaiting_input", echo)
                (pending,) = await client.get_arbitrations(question.id, status="pending")
                await client.resolve_arbitration(question.id, pending.id, "EU")
                await follow(watch, asked, "completed", echo)
                echo(final(await client.get_intent(question.id)))
        finally:
            await watch.aclose()
            await asyncio.gather(*(a.stop() for a in agents))  # each ends its read


async def main() -> None:
    await run(resolve_url(), os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples"))


if __name__ == "__main__":
    asyncio.run(main())
