"""The seed README's curl quickstart, as a user runs it: `oibus up` as a process, then the
printed URL and key in the README's curl command (run with curl when it is installed,
else sent byte for byte with httpx), and the intent it made read back over HTTP and over
Redis by another `oibus` process."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.real

QUICKSTART_BODY = '{"title": "Hello World", "created_by": "me"}'


def _up(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "oibus", "up", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 40
    while "press Ctrl-C" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    api = re.search(r"^HTTP API: (http://\S+) \(docs at /docs\)$", seen, re.M)
    key = re.search(r"^API key: (oik_\S+)$", seen, re.M)
    if not (api and key and "press Ctrl-C" in seen):
        proc.kill()
        proc.wait()
        pytest.fail(f"`oibus up` did not print its HTTP API and key:\n{seen}")
    return proc, api.group(1), key.group(1)


def _quickstart(url: str, key: str) -> tuple[int, dict[str, object]]:
    """The README's command with its URL and key replaced, nothing else."""
    curl = shutil.which("curl")
    if curl:
        done = subprocess.run(
            [
                *(curl, "-sS", "-w", "\n%{http_code}", "-X", "POST", f"{url}/api/v1/intents"),
                *("-H", f"X-API-Key: {key}", "-H", "Content-Type: application/json"),
                *("-d", QUICKSTART_BODY),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        text, _, status = done.stdout.rpartition("\n")
        return int(status), json.loads(text)
    answer = httpx.post(
        f"{url}/api/v1/intents",
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        content=QUICKSTART_BODY,
        timeout=30,
    )
    return answer.status_code, answer.json()


def test_the_readme_curl_quickstart_against_oibus_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIBUS_")}
    proc, url, key = _up(tmp_path, env)
    try:
        status, intent = _quickstart(url, key)
        assert status == 200, intent
        assert intent["title"] == "Hello World"
        assert intent["version"] == 1 and intent["status"] == "active"
        assert intent["created_by"] == "dev"  # the key's principal, never the body's "me"
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
            got = http.get(f"/api/v1/intents/{intent['id']}")
            assert got.status_code == 200 and got.json()["title"] == "Hello World"
            listed = http.get("/api/v1/intents").json()["intents"]
            assert intent["id"] in [i["id"] for i in listed]
            events = http.get(f"/api/v1/intents/{intent['id']}/events").json()["events"]
            assert [e["event_type"] for e in events] == ["intent_created"]
            assert http.get("/openapi.json").json()["openapi"] == "3.1.0"
            assert http.get("/docs").status_code == 200
        env["OIBUS_DATA_DIR"] = str(tmp_path)
        shown = subprocess.run(
            [sys.executable, "-m", "oibus", "intents", "show", str(intent["id"])],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0 and "Hello World" in shown.stdout, shown.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    assert code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=5)
