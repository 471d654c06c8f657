"""One replica of the agent "worker", run as a process by test_agents_process.py:
``python agent_replica.py URL NAMESPACE REPLICA HOLD_SECONDS``. Its handler logs that it
started (with the replica's name), holds for HOLD_SECONDS, then returns its name."""

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


if __name__ == "__main__":
    Replica.run(url, namespace=namespace)
