"""RFC-0002's incident response, end to end: a parent intent, children that depend on
each other, and agents completing them in whatever order the graph allows.

Run beside `oibus up` (same directory), or against any Redis with OIBUS_REDIS_URL set:
`python examples/incident_response.py`
"""

from __future__ import annotations

import os

from oibus import Client, CompletionGateError
from oibus.sdk.locate import resolve_url


def main() -> None:
    url = resolve_url()
    namespace = os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples")
    with Client(url, agent_id="coordinator", namespace=namespace) as client:
        parent = client.create_intent("Resolve Production Outage", "API returning 500s")
        diagnose = client.create_child_intent(parent.id, "Diagnose Root Cause", assign="agent:sre")
        client.create_child_intent(parent.id, "Customer Communication", assign="agent:comms")
        hotfix = client.create_child_intent(
            parent.id, "Implement Hotfix", assign="agent:dev", depends_on=[diagnose.id]
        )
        client.create_child_intent(
            parent.id, "Deploy Fix", assign="agent:deploy", depends_on=[diagnose.id, hotfix.id]
        )

        try:
            client.set_status(parent.id, parent.version, "completed")
        except CompletionGateError as exc:
            print(f"parent gated: {exc.open_children_count} children still open")

        # agents work on whatever is ready; the graph unblocks the rest
        while True:
            ready = client.get_ready_intents(parent.id)
            if not ready:
                break
            for intent in ready:
                print(f"{intent.assigned_agents[0]:<13} completes {intent.title}")
                client.set_status(intent.id, intent.version, "completed")
            agg = client.get_aggregate_status(parent.id)
            print(f"  progress {agg.completion_percentage}%  blocked: {len(agg.blocking_intents)}")

        parent = client.get_intent(parent.id)
        parent = client.set_status(parent.id, parent.version, "completed", reason="resolved")
        print("parent", parent.status)


if __name__ == "__main__":
    main()
