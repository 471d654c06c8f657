"""Twenty async agents race for one scope; the lease lets exactly one work at a time.

python examples/async_agents.py
"""

from __future__ import annotations

import asyncio
import os

from oibus import AsyncClient, LeaseConflictError
from oibus.sdk.locate import resolve_url


async def agent(n: int, url: str, namespace: str, intent_id: str, log: list[str]) -> None:
    async with AsyncClient(url, agent_id=f"agent-{n}", namespace=namespace) as client:
        for _ in range(50):
            try:
                async with client.lease(intent_id, "work", duration_seconds=5) as lease:
                    current = await client.get_intent(intent_id)
                    done = current.state.get("done", 0) + 1
                    await client.update_state(
                        intent_id, current.version, {"done": done}, lease=lease
                    )
                    log.append(f"agent-{n} (token {lease.fencing_token}) -> {done}")
                    return
            except LeaseConflictError:
                await asyncio.sleep(0.01)


async def main() -> None:
    url = resolve_url()
    namespace = os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples")
    async with AsyncClient(url, agent_id="coordinator", namespace=namespace) as client:
        intent = await client.create_intent(
            "Count to twenty, one agent at a time", state={"done": 0}
        )
        log: list[str] = []
        await asyncio.gather(*(agent(n, url, namespace, intent.id, log) for n in range(20)))
        final = await client.get_intent(intent.id)
        print("\n".join(log))
        print("done =", final.state["done"], "after", final.version - 1, "writes")


if __name__ == "__main__":
    asyncio.run(main())
