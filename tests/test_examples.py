"""The examples run end to end against a real engine (they are documentation that must
not rot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.real


@pytest.mark.parametrize("name", ["basic_usage.py", "async_agents.py"])
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
    else:
        assert "done = 20 after 20 writes" in result.stdout
