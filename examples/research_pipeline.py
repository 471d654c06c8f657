"""Research, then write: a Coordinator turns a two-step spec into a portfolio, the
researcher and the writer do their parts when the graph lets them, and the coordinator
hears that it is all done through ``@on_all_complete``. The event log is printed as it
happens.

    python examples/research_pipeline.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from oibus import (
    AgentBase,
    AsyncClient,
    CoordinatorBase,
    Intent,
    IntentSpec,
    Portfolio,
    PortfolioSpec,
    agent,
    coordinator,
    on_all_complete,
    on_assignment,
)
from oibus.demo import live_events
from oibus.sdk.locate import resolve_url


@agent("researcher")
class Researcher(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        topic = intent.description or intent.title
        return {"findings": [f"{topic}: adoption doubled", f"{topic}: costs fell 40%"]}


@agent("writer")
class Writer(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        client = self.client
        sources = [await client.get_intent(i) for i in intent.depends_on]
        findings = [f for s in sources for f in s.state.get("findings", [])]
        return {"report": "Report. " + " ".join(f"{f}." for f in findings)}


@coordinator("editor", agents=["researcher", "writer"])
class Editor(CoordinatorBase):
    done: asyncio.Event

    @on_all_complete
    async def review(self, portfolio: Portfolio) -> None:
        client = self.client
        members = await client.get_portfolio_intents(portfolio.id)
        report = next(m.state["report"] for m in members if "report" in m.state)
        self.summary = f"{portfolio.name} is {portfolio.status}: {report}"
        self.done.set()


async def run(url: str, namespace: str, echo: Callable[[str], None] = print) -> None:
    editor, researcher, writer = Editor(), Researcher(), Writer()
    editor.done = asyncio.Event()
    async with (
        AsyncClient(url, agent_id="pipeline", namespace=namespace) as client,
        live_events(client, echo),
    ):
        for a in (editor, researcher, writer):
            await a.start(url, namespace=namespace)
        echo(
            f"research pipeline in namespace {namespace!r}: "
            "agents editor, researcher, writer started"
        )
        try:
            await editor.launch(
                PortfolioSpec(
                    name="Agentic coordination brief",
                    intents=(
                        IntentSpec(
                            title="Research",
                            description="coordination buses",
                            assign="researcher",
                        ),
                        IntentSpec(title="Write", assign="writer", depends_on=("Research",)),
                    ),
                )
            )
            await asyncio.wait_for(editor.done.wait(), 60)
        finally:
            await asyncio.gather(
                *(a.stop() for a in (editor, researcher, writer))
            )  # each ends its read
    echo(editor.summary)


if __name__ == "__main__":
    asyncio.run(
        run(
            resolve_url(),
            os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples"),
        )
    )
