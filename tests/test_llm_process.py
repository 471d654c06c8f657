"""An LLM agent's replica killed with kill -9 between two tool rounds, on a real engine:
the replica that takes the intent over resumes the recorded conversation, so the first
round's tool (a side effect appended to a file) ran once, and the intent completed once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import wait_until

from oibus import Client

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.timeout(120)]
REPLICA = str(Path(__file__).with_name("agent_replica.py"))


def _replica(
    url: str, namespace: str, name: str, hold: float, effects: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, REPLICA, url, namespace, name, str(hold), "llm", str(effects)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_kill_9_between_tool_rounds_resumes_without_redoing_a_tool(
    bus: Client, embedded_url: str, tmp_path: Path
) -> None:
    ns = bus.keyspace.namespace
    effects = tmp_path / "bumps.txt"
    doomed = _replica(embedded_url, ns, "A", 60, effects)
    heir: subprocess.Popen[bytes] | None = None
    try:
        intent = bus.create_intent("think once")
        bus.assign_agent(intent.id, "thinker")
        key = bus.keyspace.llm_conversation(intent.id, "thinker")

        def in_second_round() -> bool:
            started = bus.get_events(intent.id, event_type="tool_call_started")
            return [e.payload["tool_name"] for e in started] == ["bump", "wait_here"]

        assert wait_until(in_second_round, 30)
        record = json.loads(bus.redis.get(key))
        assert record["turns"][0]["rounds"] == 1  # round 1 (bump and its result) recorded
        heir = _replica(embedded_url, ns, "B", 0, effects)
        doomed.send_signal(signal.SIGKILL)
        assert doomed.wait(10) == -signal.SIGKILL
        assert wait_until(lambda: bus.get_intent(intent.id).status == "completed", 60)
        assert effects.read_text().splitlines() == ["A"]  # bump ran once, in A
        assert bus.get_intent(intent.id).state == {"answer": "bumped", "by": "B"}
        completions = [
            e
            for e in bus.get_events(intent.id, event_type="status_changed")
            if e.payload["to"] == "completed"
        ]
        assert len(completions) == 1
        assert bus.get_failures(intent.id) == []
        requests = bus.get_events(intent.id, event_type="llm_request_completed")
        # A: bump, wait_here; B: wait_here (round 2 was not recorded), the answer
        assert len(requests) == 4
        tools = [
            e.payload["tool_name"]
            for e in bus.get_events(intent.id, event_type="tool_call_completed")
        ]
        assert tools == ["bump", "wait_here"]  # A's wait_here never completed
        assert not bus.redis.exists(key)  # cleared once the handler completed
    finally:
        for proc in (doomed, heir):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
