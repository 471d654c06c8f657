"""The daemon as a process on a real engine: --check, SIGTERM, and kill -9 in the middle of
a batch with another daemon taking over (nothing lost, nothing doubled)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis
from helpers import create_call, wait_until
from receiver import Receiver

from oibus import Client
from oibus.bus.ops import new_intent_id
from oibus.daemon.config import GROUP

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _daemon_cmd(url: str, namespace: str, *extra: str) -> list[str]:
    """The daemon on a test namespace; webhooks may reach the loopback receiver."""
    return [
        sys.executable,
        "-m",
        "oibus.cli",
        "daemon",
        "--redis-url",
        url,
        "--namespace",
        namespace,
        "--heartbeat-ttl",
        "1",
        "--allow-private-webhooks",
        "--webhook-timeout",
        "2",
        *extra,
    ]


def _check(url: str, namespace: str) -> int:
    done = subprocess.run(
        [*_daemon_cmd(url, namespace), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode


def test_check_and_sigterm(bus: Client, embedded_url: str) -> None:
    ns = bus.keyspace.namespace
    assert _check(embedded_url, ns) == 1
    proc = subprocess.Popen(
        _daemon_cmd(embedded_url, ns, "--http-port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_until(lambda: _check(embedded_url, ns) == 0, 20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert _check(embedded_url, ns) == 1  # a clean stop drops the heartbeat at once
        output = proc.stdout.read() if proc.stdout else ""
        assert "loop bus started" in output and "stopped" in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.timeout(240)
def test_kill_9_mid_batch_and_another_daemon_takes_over(
    bus: Client, embedded_url: str, receiver: Receiver
) -> None:
    """1,000 members complete with their clients dying before the portfolio sync (raw
    script calls), and a webhook subscription wants every one of those events; daemon A
    starts catching up and is killed with SIGKILL half-way; daemon B takes over A's pending
    entries and webhook jobs once A's heartbeat and locks lapse. In the end: every member
    counted once, the portfolio completed exactly once, every event delivered at least
    once, every dependent unblocked exactly once, nothing pending, nothing dead."""
    ns = bus.keyspace.namespace
    total = 1000
    portfolio = bus.create_portfolio("big", governance_policy={"require_all_completed": True})
    ids = [
        new_intent_id(intent_id=None, idempotency_key=None, colocate_with=None)
        for _ in range(total)
    ]
    create = [create_call(bus._ops, i) for i in ids]
    assert not any(isinstance(r, Exception) for r in bus._runner.call_many(create))
    # a dependent on each of the first 100 members: unblocked by the member's completion
    dependents = [bus.create_intent(f"after {i}", depends_on=[i]).id for i in ids[:100]]
    after = {i: [d] for i, d in zip(ids, dependents, strict=False)}
    for i in ids:
        bus.add_intent_to_portfolio(portfolio.id, i)
    raw = redis.Redis.from_url(embedded_url, decode_responses=True)
    try:
        # a group that has read everything so far: the daemons start from here
        for p in range(bus.keyspace.partitions):
            raw.xgroup_create(bus.keyspace.bus(p), GROUP, "$", mkstream=True)
        bus.set_webhook_policy(True)  # the receiver is on 127.0.0.1; the daemons agree
        bus.subscribe(webhook_url=receiver.url("/all"), event_types=["status_changed"])
        replies = bus._runner.call_many(
            [  # the dependents' keys declared up front, as the client's second try would
                bus._ops.set_status(i, None, "completed", None, related=after.get(i, ()))
                for i in ids
            ]
        )
        assert not any(isinstance(r, Exception) for r in replies)
        record = bus.keyspace.portfolio(portfolio.id)

        def delivered() -> set[str]:
            """Distinct events delivered (a delivery may repeat: at least once)."""
            return {h.headers["X-OIBus-Event-Id"] for h in receiver.ok("/all")}

        def counted() -> int:
            return int(raw.hget(record, "c:completed") or 0)

        assert counted() == 0
        a = subprocess.Popen(
            _daemon_cmd(embedded_url, ns, "--id", "daemon-a"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: counted() > 50, 30), "daemon A never started"
            os.kill(a.pid, signal.SIGKILL)
            a.wait(timeout=10)
        finally:
            if a.poll() is None:
                a.kill()
        at_kill = counted()
        pending_at_kill = sum(
            raw.xpending(bus.keyspace.bus(p), GROUP)["pending"]
            for p in range(bus.keyspace.partitions)
        )
        b = subprocess.Popen(
            _daemon_cmd(embedded_url, ns, "--id", "daemon-b"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def settled() -> bool:
                pending = sum(
                    raw.xpending(bus.keyspace.bus(p), GROUP)["pending"]
                    for p in range(bus.keyspace.partitions)
                )
                return (
                    counted() == total
                    and pending == 0
                    and len(delivered()) == total + len(dependents)
                )

            ok = wait_until(settled, 120)
            assert ok, (
                counted(),
                at_kill,
                pending_at_kill,
                len(delivered()),
            )
        finally:
            b.send_signal(signal.SIGTERM)
            assert b.wait(timeout=15) == 0
    finally:
        raw.close()
    found = bus.get_portfolio(portfolio.id)
    assert {k: v for k, v in found.aggregate_status.by_status.items() if v} == {"completed": total}
    assert at_kill < total  # A really died with work left, which B finished
    assert found.status == "completed"
    changes, cursor = [], None
    while True:
        page = bus.get_portfolio_events(portfolio.id, limit=1000, after=cursor)
        changes += [e for e in page if e.event_type == "portfolio_status_changed"]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(changes) == 1, changes
    assert not raw_dead_letters(embedded_url, ns)
    for dependent in dependents:  # each left blocked exactly once, whatever was replayed
        moves = bus.get_events(dependent, event_type="status_changed")
        assert [(e.payload["from"], e.payload["to"]) for e in moves] == [("blocked", "active")]


def raw_dead_letters(url: str, namespace: str) -> list[object]:
    conn = redis.Redis.from_url(url, decode_responses=True)
    try:
        return list(conn.xrange(f"{{{namespace}}}:dlq:bus"))
    finally:
        conn.close()
