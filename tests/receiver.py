"""A real HTTP receiver on loopback for the webhook tests (the ``receiver`` fixture in
conftest.py serves one per test)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class Receiver:
    """Answers each path with the statuses queued for it (then 200), after an optional
    delay; records every request."""

    port: int = 0
    plan: dict[str, list[int]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def ok(self, path: str) -> list[Hit]:
        return [h for h in self.on(path) if h.status == 200]
