"""The seed README's incident response run by four agents: diagnose, communicate, hotfix
and deploy each wait on their consumer group, start when the graph lets them (hotfix
after the diagnosis, deploy after both), and the event log is printed as it happens.

Nothing polls: an assignment, an unblocking or a completion reaches an agent as an event
of its consumer group.

    python examples/incident_agents.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from oibus import AgentBase, AsyncClient, Intent, agent, on_assignment
from oibus.demo import live_events
from oibus.sdk.locate import resolve_url


@agent("diagnose")
class Diagnose(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # look at dashboards, logs and traces
        return {"root_cause": "connection pool exhausted in payments-db", "confidence": 0.9}


@agent("communicate")
class Communicate(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        return {"status_page": "investigating", "customers_notified": 1200}


@agent("hotfix")
class Hotfix(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        client = self.client
        [diagnosis] = [await client.get_intent(i) for i in intent.depends_on]
        return {"patch": f"raise the pool limit ({diagnosis.state['root_cause']})"}


@agent("deploy")
class Deploy(AgentBase):
    @on_assignment
    async def work(self, intent: Intent) -> dict[str, Any]:
        await asyncio.sleep(0.05)  # canary, then everywhere
        return {"deployed": True, "version": "2026.11.22-hotfix1"}


async def run(url: str, namespace: str, echo: Callable[[str], None] = print) -> None:
    agents = [Diagnose(), Communicate(), Hotfix(), Deploy()]
    async with AsyncClient(url, agent_id="incident-commander", namespace=namespace) as client:
        async with live_events(client, echo):
            for a in agents:
                await a.start(url, namespace=namespace)
            echo(
                f"incident response in namespace {namespace!r}: agents "
                f"{', '.join(a.agent_id for a in agents)} started"
            )
            watch = client.events(
                "incident-commander", event_types="status_changed", block_seconds=0.5
            )
            await watch.ensure_group()  # from now: the completions of this run
            try:
                parent = await client.create_intent("Resolve Production Outage", "API 500s")
                diagnose = await client.create_child_intent(
                    parent.id, "Diagnose Root Cause", assign="diagnose"
                )
                communicate = await client.create_child_intent(
                    parent.id, "Customer Communication", assign="communicate"
                )
                hotfix = await client.create_child_intent(
                    parent.id, "Implement Hotfix", assign="hotfix", depends_on=[diagnose.id]
                )
                deploy = await client.create_child_intent(
                    parent.id, "Deploy Fix", assign="deploy", depends_on=[diagnose.id, hotfix.id]
                )
                # this run's children: the group outlives the process, so an earlier run's
                # completions may still be queued for it
                open_children = {diagnose.id, communicate.id, hotfix.id, deploy.id}
                async for delivery in watch:  # the commander waits for events, not in a loop
                    if delivery.event.payload.get("to") == "completed":
                        open_children.discard(delivery.event.intent_id)
                        if not open_children:
                            break
                parent = await client.get_intent(parent.id)
                await client.set_status(parent.id, parent.version, "completed", "all fixed")
            finally:
                await watch.aclose()
                await asyncio.gather(*(a.stop() for a in agents))  # each ends its read
        for child in await client.get_children(parent.id):
            echo(f"{child.title}: {child.status} {child.state}")
        echo(f"parent: {(await client.get_intent(parent.id)).status}")


if __name__ == "__main__":
    asyncio.run(
        run(
            resolve_url(),
            os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples"),
        )
    )
