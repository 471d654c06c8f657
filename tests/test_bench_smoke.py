"""The benchmark harness still runs (every figure for a moment). It judges no numbers:
performance is read from bench/RESULTS.md, never asserted in tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.real
@pytest.mark.timeout(240)
def test_core_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.core", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for op in ("baseline", "create_intent", "update_state", "get_intent", "log_event"):
        assert op in result.stdout
    assert "sanity: ok" in result.stdout
