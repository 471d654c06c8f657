"""The command line: ``oibus up`` on the embedded engine (start, serve, clean stop),
``oibus demo`` printing a real event log, ``--version``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from click.testing import CliRunner

from oibus import AsyncClient, __version__
from oibus.cli import main
from oibus.cli.serve import dev_key
from oibus.gateway.keys import revoke_key

pytestmark = pytest.mark.real


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_prints_the_event_log(embedded_url: str, namespace: str) -> None:
    # twice in one namespace (and one process): a run must not trip over the last one's
    # intents, groups and memory, nor over scripted models the last run used up
    for _ in range(2):
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
            "parent: completed",
            # the LLM agents on scripted models: a plan, tools, memory, a human's answer
            "LLM agents (scripted models: no key, no network):",
            "create_plan: research by researcher; write by writer after research",
            'web_search(query="tides") -> {"results"',
            "researcher's memory outlives the intent: tides = ",
            "asks a human: Which region should the report cover?",
            "answered: EU",
            "write by writer: completed {'report': 'Report: Tides follow the moon.'}",
        ]:
            assert needle in result.output
        last = result.output.splitlines()[-1]
        assert last == "sales by careful-agent: completed {'result': 'Covering EU'}"
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
    assert "answered: EU" in result.output


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
    api, key = http_api_of(output)
    assert (tmp_path / "api-key").read_text().strip() == key
    assert stat.S_IMODE((tmp_path / "api-key").stat().st_mode) == 0o600
    with httpx.Client(base_url=api, timeout=10) as http:
        assert http.get("/health").status_code == 200
        made = http.post("/api/v1/intents", headers={"X-API-Key": key}, json={"title": "via up"})
        assert made.status_code == 200, made.text
        assert made.json()["title"] == "via up" and made.json()["version"] == 1
        assert http.post("/api/v1/intents", json={"title": "no key"}).status_code == 401
        # the dashboard it prints, signed in with the key it prints
        dashboard = re.search(
            r"^dashboard: (http://\S+) \(sign in with the API key\)$", output, re.M
        )
        assert dashboard and dashboard.group(1) == api + "/ui", output
        assert http.post("/ui/login", data={"key": key, "next": "/ui/"}).status_code == 303
        overview = http.get("/ui/")
        assert overview.status_code == 200 and 'id="stat-intents"' in overview.text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    proc.stdout.close()
    with pytest.raises(redis.ConnectionError):
        conn.ping()
    conn.close()
    assert not (tmp_path / "url").exists()
    with pytest.raises(httpx.ConnectError):  # the HTTP API stopped with `up`
        httpx.get(api + "/health", timeout=5)


def http_api_of(output: str) -> tuple[str, str]:
    """The HTTP API's URL and the admin key, as `oibus up` prints them."""
    api = re.search(r"^HTTP API: (http://\S+) \(docs at /docs\)$", output, re.M)
    key = re.search(r"^API key: (oik_\S+)$", output, re.M)
    assert api and key, output
    return api.group(1), key.group(1)


def test_the_dev_key_is_kept_while_it_resolves(
    embedded_url: str, namespace: str, tmp_path: Path
) -> None:
    """`oibus up`'s admin key: written 0600 once, the same key on the next start, and a
    new one when the kept key no longer resolves (revoked, or the data wiped)."""
    first = dev_key(embedded_url, namespace, tmp_path)
    assert first.startswith("oik_")
    assert stat.S_IMODE((tmp_path / "api-key").stat().st_mode) == 0o600
    assert dev_key(embedded_url, namespace, tmp_path) == first

    async def revoke() -> str:
        async with AsyncClient(embedded_url, namespace=namespace) as client:
            return (await revoke_key(client, first)).principal

    assert asyncio.run(revoke()) == "dev"
    second = dev_key(embedded_url, namespace, tmp_path)
    assert second != first and second.startswith("oik_")
    assert (tmp_path / "api-key").read_text().strip() == second


def test_up_then_doctor_then_a_live_tail(tmp_path: Path) -> None:
    """The operator's path, as processes: `oibus up` (embedded engine with its append-only
    file, and the daemon), then `oibus doctor` finds the bus by the URL file `up` left
    (exit 0: nothing unsafe), and `oibus events tail -f` prints an intent created by
    another `oibus` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIBUS_")}
    env["OIBUS_DATA_DIR"] = str(tmp_path)
    oibus = [sys.executable, "-m", "oibus.cli"]
    up = subprocess.Popen(
        [*oibus, "up", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    tail = None
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while "press Ctrl-C" not in seen and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            seen += line
        assert "press Ctrl-C" in seen, seen
        api, key = http_api_of(seen)
        with httpx.Client(base_url=api, timeout=10) as http:
            assert http.get("/health").status_code == 200
            made = http.post(
                "/api/v1/intents", headers={"X-API-Key": key}, json={"title": "over HTTP"}
            )
            assert made.status_code == 200, made.text
            http_made = made.json()["id"]

        def run(*words: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*oibus, *words], check=False, capture_output=True, text=True, env=env, timeout=60
            )

        shown = run("intents", "show", http_made)  # written over HTTP, read over Redis
        assert shown.returncode == 0 and "over HTTP" in shown.stdout, shown.stdout + shown.stderr
        doctor = run("doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "appendonly yes" in doctor.stdout and "live daemons" in doctor.stdout
        tail = subprocess.Popen(
            [*oibus, "events", "tail", "-f", "-n", "0", "--exit-after", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        made = []
        while tail.poll() is None and len(made) < 30:  # until the tail has started and seen one
            created = run("intents", "create", "from another process")
            assert created.returncode == 0, created.stderr
            made.append(created.stdout.split()[0])
            time.sleep(0.3)
        out, err = tail.communicate(timeout=30)
        assert tail.returncode == 0, err
        [line] = out.splitlines()
        assert "intent_created" in line and line.split()[1] in made
    finally:
        if tail is not None and tail.poll() is None:
            tail.kill()
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=20) == 0
        if up.stdout:
            up.stdout.close()
