"""Load, bookkeeping and a Sentinel group for the failover tier (tests/test_failover.py).

A writer keeps one intent per partition busy with ``log_event`` and ``update_state`` (and
creates a new intent now and then), and writes down every call that returned: that is what
the bus acknowledged. After the fault, ``Ledger.check`` reads everything back and counts
what an acknowledged call wrote and the server no longer has. Each writer owns its intents,
so the last acknowledged update of an intent is its state unless something was lost.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import redis

from oibus import AsyncClient, Client
from oibus.bus.errors import BusError, NotFoundError
from oibus.bus.keyspace import Keyspace
from oibus.embedded import EmbeddedServer, find_engine, free_port

CREATE_EVERY = 20
"""One call in this many creates an intent; the others alternate event and update."""


def one_per_partition(keyspace: Keyspace, tag: str) -> list[str]:
    """Intent ids covering every partition, so a writer touches every primary's slots."""
    ids: dict[int, str] = {}
    while len(ids) < keyspace.partitions:
        candidate = f"{tag}-{uuid.uuid4()}"
        ids.setdefault(keyspace.partition(candidate), candidate)
    return [ids[p] for p in sorted(ids)]


@dataclass
class Ledger:
    """What one writer was told succeeded, and how its calls fared around the fault."""

    name: str
    created: list[str] = field(default_factory=list)
    events: list[tuple[str, int, int]] = field(default_factory=list)
    """(intent id, seq, n) of every acknowledged log_event."""
    updates: dict[str, tuple[int, int]] = field(default_factory=dict)
    """intent id -> (version, n) of its last acknowledged update_state."""
    typed_errors: Counter[str] = field(default_factory=Counter)
    """How many calls failed, by the ``BusError`` subclass they raised."""
    untyped: list[BaseException] = field(default_factory=list)
    slowest_failure: float = 0.0
    """Longest a failed call took to fail: a client must not hang through an outage."""
    successes: list[tuple[float, str]] = field(default_factory=list)
    """(monotonic time, intent id) of each acknowledged call."""
    calls: int = 0

    @property
    def acknowledged(self) -> int:
        return len(self.created) + len(self.events) + len(self.updates)

    def recovered_after(self, fault_at: float, intents: list[str]) -> float | None:
        """Seconds from the fault until every intent had an acknowledged call again (each
        partition counts: a cluster fault stops only the killed primary's slots)."""
        first: dict[str, float] = {}
        for at, intent_id in self.successes:
            if at > fault_at and intent_id not in first:
                first[intent_id] = at
        if any(i not in first for i in intents):
            return None
        return max(first[i] for i in intents) - fault_at

    def _record(self, op: str, intent_id: str, n: int, reply: Any) -> None:
        if op == "create":
            self.created.append(intent_id)
        elif op == "event":
            self.events.append((intent_id, reply.seq, n))
        else:
            self.updates[intent_id] = (reply.version, n)
        self.successes.append((time.monotonic(), intent_id))

    def _failed(self, exc: BaseException, started: float) -> None:
        self.slowest_failure = max(self.slowest_failure, time.monotonic() - started)
        if isinstance(exc, BusError):  # BusConnectionError, BusTimeoutError, ...
            self.typed_errors[type(exc).__name__] += 1
        else:
            self.untyped.append(exc)

    def check(self, client: Client) -> Loss:
        """Read back everything this writer was acknowledged; count what is missing."""
        loss = Loss(self.name, self.acknowledged)
        for intent_id in self.created:
            if _intent(client, intent_id) is None:
                loss.created += 1
        logged: dict[str, list[Any]] = {}
        for intent_id, seq, n in self.events:
            if intent_id not in logged:
                logged[intent_id] = _whole_log(client, intent_id)
                seqs = [e.seq for e in logged[intent_id]]
                if seqs != list(range(1, len(seqs) + 1)):
                    loss.out_of_order.append(intent_id)
            if not any(e.seq == seq and e.payload.get("n") == n for e in logged[intent_id]):
                loss.events += 1
        for intent_id, (version, n) in self.updates.items():
            intent = _intent(client, intent_id)
            if intent is None or intent.version < version or intent.state.get("n", -1) < n:
                loss.updates += 1
        return loss


def _intent(client: Client, intent_id: str) -> Any:
    try:
        return client.get_intent(intent_id)
    except NotFoundError:
        return None


def _whole_log(client: Client, intent_id: str) -> list[Any]:
    events: list[Any] = []
    cursor = None
    while True:
        page = client.get_events(intent_id, after=cursor, limit=1000)
        events += page
        cursor = page.next_cursor
        if cursor is None:
            return events


@dataclass
class Loss:
    writer: str
    acknowledged: int
    created: int = 0
    events: int = 0
    updates: int = 0
    out_of_order: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.created + self.events + self.updates


def _next_op(ledger: Ledger, intents: list[str], tag: str) -> tuple[str, str, int]:
    n = ledger.calls
    ledger.calls += 1
    if n % CREATE_EVERY == 0:
        return "create", f"{tag}-{uuid.uuid4()}", n
    return ("event" if n % 2 else "update"), intents[n % len(intents)], n


def write_sync(
    client: Client, ledger: Ledger, intents: list[str], stop: threading.Event, pause: float
) -> None:
    """The sync client's load, in a thread until ``stop``; ``pause`` paces it (and lets
    an outage be retried at a sane rate, as a real caller would)."""
    while not stop.is_set():
        op, intent_id, n = _next_op(ledger, intents, ledger.name)
        started = time.monotonic()
        try:
            if op == "create":
                reply: Any = client.create_intent("load", intent_id=intent_id, state={"n": n})
            elif op == "event":
                reply = client.log_event(intent_id, "comment", {"n": n})
            else:
                reply = client.update_state(intent_id, None, {"n": n})
        except Exception as exc:
            ledger._failed(exc, started)
        else:
            ledger._record(op, intent_id, n, reply)
        time.sleep(pause)


async def write_async(
    client: AsyncClient, ledger: Ledger, intents: list[str], stop: anyio.Event, pause: float
) -> None:
    """The async client's load, until ``stop``."""
    while not stop.is_set():
        op, intent_id, n = _next_op(ledger, intents, ledger.name)
        started = time.monotonic()
        try:
            if op == "create":
                reply: Any = await client.create_intent("load", intent_id=intent_id, state={"n": n})
            elif op == "event":
                reply = await client.log_event(intent_id, "comment", {"n": n})
            else:
                reply = await client.update_state(intent_id, None, {"n": n})
        except Exception as exc:
            ledger._failed(exc, started)
        else:
            ledger._record(op, intent_id, n, reply)
        await anyio.sleep(pause)


class SentinelGroup:
    """A primary, one replica and one sentinel (quorum 1) on loopback, with failure
    detection and failover timeouts short enough for a test."""

    def __init__(self, root: Path, service: str = "main", down_after_ms: int = 500) -> None:
        self.root = root
        self.service = service
        self.down_after_ms = down_after_ms
        self.primary = EmbeddedServer(root / "primary", appendonly=False)
        self.replica: EmbeddedServer | None = None
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> str:
        self.primary.start()
        assert self.primary.port is not None
        self.replica = EmbeddedServer(
            self.root / "replica",
            appendonly=False,
            extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        self.replica.start()
        self.port = free_port()
        conf = self.root / "sentinel.conf"  # sentinel rewrites its file: one of its own
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.root}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 3000\n"
        )
        with (self.root / "sentinel.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [find_engine().path, str(conf), "--sentinel"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel did not see a synced replica in time")
            time.sleep(0.05)
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def _ready(self) -> bool:
        """The replica has synced and the sentinel knows it: a failover has a target."""
        assert self.replica is not None and self.replica.port is not None
        try:
            with redis.Redis(port=self.replica.port, decode_responses=True) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            with redis.Redis(port=self.port, decode_responses=True) as sentinel:
                return bool(sentinel.execute_command("SENTINEL", "REPLICAS", self.service))
        except redis.ConnectionError:
            return False

    def primary_port(self) -> int | None:
        """The port the sentinel names as primary now."""
        with redis.Redis(port=self.port, decode_responses=True) as sentinel:
            found = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(found[1]) if found else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        for server in (self.replica, self.primary):
            if server is not None:
                server.stop()
