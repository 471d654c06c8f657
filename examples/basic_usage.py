"""An intent's life, from creation to completion, with the sync client.

Run beside `oibus up` (same directory), or against any Redis with OIBUS_REDIS_URL set:
`python examples/basic_usage.py`
"""

from __future__ import annotations

import os

from oibus import Client, ConflictError, LeaseConflictError
from oibus.sdk.locate import resolve_url


def main() -> None:
    url = resolve_url()
    namespace = os.environ.get("OIBUS_EXAMPLE_NAMESPACE", "examples")
    with (
        Client(url, agent_id="researcher", namespace=namespace) as client,
        Client(url, agent_id="reviewer", namespace=namespace) as reviewer,
    ):
        intent = client.create_intent(
            "Research market trends",
            "Analyze Q4 market data and identify patterns",
            constraints={"deadline": "2026-12-01"},
            state={"sources": [], "findings": {}},
        )
        print("created", intent.id, "version", intent.version)

        # optimistic concurrency: a write based on an old version is refused
        intent = client.update_state(intent.id, intent.version, {"progress": 0.25})
        try:
            reviewer.update_state(intent.id, 1, {"progress": 0.0})
        except ConflictError as exc:
            print("stale write refused; current version is", exc.current_version)

        # a lease guards the /findings subtree while the researcher works on it
        with client.lease(intent.id, "findings", duration_seconds=30) as lease:
            intent = client.patch_state(
                intent.id,
                intent.version,
                [{"op": "set", "path": "/findings/q4", "value": "demand up 12%"}],
                lease=lease,
            )
            try:
                reviewer.patch_state(intent.id, None, [{"op": "remove", "path": "/findings/q4"}])
            except LeaseConflictError as exc:
                print("reviewer blocked by", exc.holder, "until", exc.expires_at)

        client.log_event(intent.id, "comment", {"message": "analysis done"})
        intent = client.set_status(intent.id, intent.version, "completed", reason="done")
        print("status", intent.status, "version", intent.version, "state", intent.state)
        for event in client.get_events(intent.id):
            print(f"  #{event.seq} {event.event_type:<16} by {event.actor}")


if __name__ == "__main__":
    main()
