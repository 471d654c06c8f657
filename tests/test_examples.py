"""The examples run end to end against a real engine (they are documentation that must
not rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.real


@pytest.mark.parametrize(
    "name",
    [
        "basic_usage.py",
        "async_agents.py",
        "incident_response.py",
        "incident_agents.py",
        "research_pipeline.py",
        "llm_agents.py",
    ],
)
def test_example_runs(name: str, embedded_url: str, namespace: str) -> None:
    env = {**os.environ, "OIBUS_REDIS_URL": embedded_url, "OIBUS_EXAMPLE_NAMESPACE": namespace}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if name == "basic_usage.py":
        assert "stale write refused" in result.stdout
        assert "reviewer blocked by researcher" in result.stdout
        assert "status completed" in result.stdout
    elif name == "incident_response.py":
        lines = result.stdout.splitlines()
        done = [line.split(" completes ")[1] for line in lines if " completes " in line]
        assert sorted(done[:2]) == ["Customer Communication", "Diagnose Root Cause"]
        assert done[2:] == ["Implement Hotfix", "Deploy Fix"]
        assert "parent gated: 4 children still open" in lines
        assert lines[-1] == "parent completed"
    elif name == "incident_agents.py":
        lines = result.stdout.splitlines()
        done = [line.split()[4] for line in lines if '"to":"completed"' in line]
        # each agent's completion, in an order the graph allows, then the parent's
        assert sorted(done[:2]) == ["communicate", "diagnose"] or done[:2] == [
            "diagnose",
            "hotfix",
        ]
        assert done.index("hotfix") > done.index("diagnose")
        assert done.index("deploy") > done.index("hotfix")
        assert done[-1] == "incident-commander"
        assert lines[-1] == "parent: completed"
        assert "Implement Hotfix: completed {'patch': 'raise the pool limit" in result.stdout
    elif name == "llm_agents.py":
        lines = result.stdout.splitlines()
        out = result.stdout
        # the plan, and the graph it became (statuses as the events had them by then)
        assert "create_plan: research by researcher; write by writer after research" in out
        assert re.search(
            r"the graph it became: research \[\w+\]; write \[\w+\] after research; "
            r"tides \[\w+\] after research, write$",
            out,
            re.M,
        ), out
        # a custom tool, memory stored and read back, a streamed answer
        assert 'web_search(query="tides") -> {"results": ["tides: tides are caused' in out
        assert 'remember(key="tides", value="tides: tides are caused' in out
        memory = "researcher's memory outlives the intent: tides = tides: tides are caused"
        assert f"{memory} by the moon's gravity" in lines
        assert "streamed its answer: 5 tokens" in out
        assert "research by researcher: completed {'research': 'Tides follow the moon.'}" in lines
        assert "write by writer: completed {'report': 'Report: Tides follow the moon.'}" in lines
        assert "tides by editor: completed {'plan': 'Planned: research, then the report.'}" in lines
        # the question, suspended until the human's answer, then resumed with it
        asked = next(i for i, line in enumerate(lines) if "asks a human:" in line)
        answered = next(i for i, line in enumerate(lines) if "answered: EU" in line)
        assert lines[asked].endswith("asks a human: Which region should the report cover?")
        assert asked < answered
        assert any("-> suspended_awaiting_input" in line for line in lines[asked:answered])
        assert any("suspended_awaiting_input -> active" in line for line in lines[answered:])
        assert lines[-1] == "sales by careful-agent: completed {'result': 'Covering EU'}"
    elif name == "research_pipeline.py":
        lines = result.stdout.splitlines()
        assert "portfolio_status_changed" in result.stdout
        assert lines[-1].startswith("Agentic coordination brief is completed: Report.")
    else:
        assert "done = 20 after 20 writes" in result.stdout
