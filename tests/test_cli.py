"""The command line: ``oibus up`` on the embedded engine (start, serve, clean stop),
``oibus demo`` printing a real event log, ``--version``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from oibus import __version__
from oibus.cli import main

pytestmark = pytest.mark.real


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_prints_the_event_log(embedded_url: str, namespace: str) -> None:
    result = CliRunner().invoke(
        main, ["demo", "--redis-url", embedded_url, "--namespace", namespace]
    )
    assert result.exit_code == 0, result.output
    for needle in [
        "intent_created",
        "state_patched",
        "status_changed",
        "stale write refused",
        "#8",
    ]:
        assert needle in result.output
    conn = redis.Redis.from_url(embedded_url, decode_responses=True)
    for key in conn.scan_iter(f"{{{namespace}*"):
        conn.delete(key)
    conn.close()


def test_demo_without_a_url_starts_its_own_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OIBUS_REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "started a temporary embedded server" in result.output
    assert "status_changed" in result.output


def test_bad_url_is_one_line_not_a_traceback() -> None:
    result = CliRunner().invoke(main, ["demo", "--redis-url", "redis://127.0.0.1:1/0"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "cannot reach Redis" in result.output


def test_up_serves_until_signalled_then_stops_the_engine(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OIBUS_REDIS_URL"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oibus.cli", "up", "--data-dir", str(tmp_path), "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "press Ctrl-C" in line or not line:
            break
    output = "".join(lines)
    assert "press Ctrl-C" in output, output
    url = (tmp_path / "url").read_text().strip()
    assert f"OIBUS_REDIS_URL={url}" in output
    assert "status_changed" in output
    conn = redis.Redis.from_url(url)
    assert conn.ping()
    assert (tmp_path / "appendonlydir").exists()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    proc.stdout.close()
    with pytest.raises(redis.ConnectionError):
        conn.ping()
    conn.close()
    assert not (tmp_path / "url").exists()
