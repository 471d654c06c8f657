"""Agent replicas as processes on a real engine: kill -9 in the middle of a handler, and
SIGTERM, with another replica finishing the work once (nothing lost, nothing doubled)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import wait_until

from oibus import Client

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.timeout(120)]
REPLICA = str(Path(__file__).with_name("agent_replica.py"))


def _replica(url: str, namespace: str, name: str, hold: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, REPLICA, url, namespace, name, str(hold)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _started_by(client: Client, intent_id: str) -> list[str]:
    events = client.get_events(intent_id, event_type="handler_started")
    return [e.payload["replica"] for e in events]


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_a_replica_dying_mid_handler_hands_the_work_to_another(
    bus: Client, embedded_url: str, how: str
) -> None:
    ns = bus.keyspace.namespace
    doomed = _replica(embedded_url, ns, "A", 60)
    heir: subprocess.Popen[bytes] | None = None
    try:
        intent = bus.create_intent("one job")
        bus.assign_agent(intent.id, "worker")
        assert wait_until(lambda: _started_by(bus, intent.id) == ["A"], 30)
        heir = _replica(embedded_url, ns, "B", 0)
        time.sleep(0.5)  # B is up and reading; A still holds the event
        if how == "kill -9":
            doomed.send_signal(signal.SIGKILL)
            assert doomed.wait(10) == -signal.SIGKILL
        else:
            doomed.send_signal(signal.SIGTERM)
            assert doomed.wait(10) == 0  # handler cancelled, the event handed back
        assert wait_until(lambda: bus.get_intent(intent.id).status == "completed", 30)
        assert bus.get_intent(intent.id).state == {"by": "B"}
        assert _started_by(bus, intent.id) == ["A", "B"]
        completions = [
            e
            for e in bus.get_events(intent.id, event_type="status_changed")
            if e.payload["to"] == "completed"
        ]
        assert len(completions) == 1
        assert bus.get_failures(intent.id) == []  # nothing was recorded as a failure
        group = bus.redis.xinfo_groups(bus.keyspace.bus(bus.keyspace.partition(intent.id)))
        mine = [g for g in group if g["name"] == "agent:worker"]

        def settled() -> bool:
            info = bus.redis.xinfo_groups(bus.keyspace.bus(bus.keyspace.partition(intent.id)))
            return [g["pending"] for g in info if g["name"] == "agent:worker"] == [0]

        assert mine and wait_until(settled, 10)
    finally:
        for proc in (doomed, heir):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
