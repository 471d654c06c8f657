"""Where is my server? One discovery order for the clients, the CLI, the examples and the
demo: the URL given, then ``OIBUS_REDIS_URL``, then the ``oibus up`` running on the data
directory of the working directory (``./.oibus``, or ``OIBUS_DATA_DIR``), then the local
default. Before this, the CLI looked in the data directory and the clients did not, so a
Quickstart copied verbatim wrote to whatever answered on 6379.

``oibus up`` holds an exclusive lock on ``<data dir>/lock`` for as long as it runs (an
``flock``: the kernel drops it when the process dies, even by ``kill -9``), and writes its
URL to ``<data dir>/url``. The lock is what makes the URL file true: a URL file whose lock
nobody holds was left by a process that is gone, and is ignored; a second ``oibus up`` on
the same directory finds the lock taken and refuses, instead of starting a second server
on the same append-only file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO, Final

from oibus.bus.errors import ConfigurationError

__all__ = ["DataDirLock", "data_dir", "resolve_url", "running_url"]

LOCAL_URL: Final = "redis://127.0.0.1:6379/0"
DATA_DIR_ENV: Final = "OIBUS_DATA_DIR"
DEFAULT_DATA_DIR: Final = ".oibus"
URL_FILE: Final = "url"
LOCK_FILE: Final = "lock"


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the one given, else ``OIBUS_DATA_DIR``, else ``./.oibus``."""
    return Path(path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def _held(lock_path: Path) -> bool:
    """Whether some process holds the lock (this one included: flock locks belong to an
    open file, so a second open in the same process conflicts too)."""
    try:
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:  # no such directory, or not ours to open: nobody we can see
        return False


def running_url(path: str | os.PathLike[str] | None = None) -> str | None:
    """The URL of the ``oibus up`` running on the data directory, or None."""
    folder = data_dir(path)
    url_file = folder / URL_FILE
    if not url_file.is_file() or not _held(folder / LOCK_FILE):
        return None
    return url_file.read_text().strip() or None


def resolve_url(url: str | None = None, path: str | os.PathLike[str] | None = None) -> str:
    """The URL to connect to, by the one discovery order (module docstring)."""
    return url or os.environ.get("OIBUS_REDIS_URL") or running_url(path) or LOCAL_URL


class DataDirLock:
    """The running ``oibus up``'s claim on its data directory. ``acquire`` refuses, with
    the running one's URL and pid, when another process holds it; only the holder writes
    or removes the URL file."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.folder = data_dir(path).absolute()
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = (self.folder / LOCK_FILE).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "unknown"
            handle.close()
            url = (self.folder / URL_FILE).read_text().strip() if self._has_url() else None
            where = f" at {url}" if url else ""
            raise ConfigurationError(
                f"oibus up is already running on {self.folder} (pid {pid}){where}; "
                "stop it first, or give another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def _has_url(self) -> bool:
        return (self.folder / URL_FILE).is_file()

    def publish(self, url: str) -> None:
        """Write the URL file (the lock must be held)."""
        if self._handle is None:
            raise ConfigurationError("publish() before acquire()")
        (self.folder / URL_FILE).write_text(url + "\n")

    def release(self) -> None:
        """Remove the URL file and let go of the lock, if this process holds it."""
        if self._handle is None:
            return
        (self.folder / URL_FILE).unlink(missing_ok=True)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
