"""The peers the suite measures beside oibus, each in a virtual environment of their own
that this module makes (``bench/.peers/``, ignored by git): the reference OpenIntent
server and BullMQ's Python worker are never dependencies of oibus.

A peer that cannot be installed (no network, no matching wheel) is skipped with the
reason, and the suite reports without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".peers"
REQUIREMENTS = ["openintent[server]==0.17.0", "bullmq>=2"]
"""The reference server pinned to the release the brief measures; BullMQ current."""


class PeerUnavailableError(Exception):
    """The peer could not be installed or started; the message says why."""


def python() -> Path:
    """The peers' interpreter, making the environment on first use (about 15 s)."""
    exe = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if exe.exists() and stamp.exists() and stamp.read_text() == wanted:
        return exe
    try:
        if not exe.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run(
            [str(exe), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *REQUIREMENTS],
            check=True,
            timeout=600,
            capture_output=True,
            text=True,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-3:]
        raise PeerUnavailableError(
            f"pip could not install {REQUIREMENTS}: {' / '.join(tail)}"
        ) from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailableError(f"could not make the peers' environment: {exc}") from exc
    stamp.write_text(wanted)
    return exe


def _run(script: str, args: list[str], timeout: float) -> dict[str, Any]:
    exe = python()
    try:
        done = subprocess.run(
            [str(exe), str(HERE / script), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailableError(f"{script} ran past {timeout:.0f} s") from exc
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise PeerUnavailableError(f"{script} failed: {' / '.join(tail)}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def openintent(seconds: float, client_cpu: int | None, server_cpu: int | None) -> dict[str, Any]:
    """The reference server with its SQLite file, driven by its own client."""
    args = ["--seconds", str(seconds)]
    if client_cpu is not None and server_cpu is not None:
        args += ["--client-cpu", str(client_cpu), "--server-cpu", str(server_cpu)]
    return _run("peer_openintent.py", args, timeout=120 + 12 * seconds)


def bullmq(
    url: str,
    jobs: int,
    seconds: float,
    client_cpu: int | None,
    concurrency: tuple[int, ...] | list[int] = (1, 10),
) -> dict[str, Any]:
    """Jobs added one at a time per second, and drained per second at each concurrency."""
    args = ["--redis-url", url, "--jobs", str(jobs), "--seconds", str(seconds)]
    args += ["--concurrency", *map(str, concurrency)]
    if client_cpu is not None:
        args += ["--client-cpu", str(client_cpu)]
    return _run("peer_bullmq.py", args, timeout=300 + jobs / 100)
