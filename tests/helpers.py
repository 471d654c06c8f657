"""Small helpers the capability tests share (imported as ``helpers``: pytest puts this
folder on sys.path)."""

from __future__ import annotations

from oibus import Client


def event_types(client: Client, intent_id: str) -> list[str]:
    """The types of an intent's whole log, oldest first."""
    return [e.event_type for e in client.get_events(intent_id, limit=1000)]
