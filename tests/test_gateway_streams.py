"""Server-sent events over the HTTP server, over real sockets, on the embedded engine and
the cluster tier: the reference SDK's own ``subscribe_sse`` / ``subscribe_portfolio`` /
``subscribe_agent`` (which loop on 404 against the reference server, whose paths differ),
both path styles, 10,000 events to one subscriber in order, an exact resume with
``Last-Event-ID``, pings, refusals before the first byte, and 1,000 concurrent streams
held by one gateway process (its memory per connection is printed).

Every read is bounded (a read timeout, a count to stop at, a thread joined with a
timeout): a stream that stops sending fails the test instead of hanging it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from gateway_server import LiveGateway, live_gateway
from openintent import OpenIntentClient
from openintent.models import EventType
from openintent.streaming import SSEEvent

from oibus import AsyncClient, Client
from oibus.embedded import free_port
from oibus.gateway import streams

pytestmark = pytest.mark.real

_json = msgspec.json.Decoder()


@dataclass
class Frame:
    type: str
    id: str | None
    data: dict[str, Any] = field(default_factory=dict)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The events of an SSE response (comments skipped), as a client parses them."""
    kind, ident, data = "message", None, ""
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if data:
                yield Frame(kind, ident, _json.decode(data))
            kind, ident, data = "message", None, ""
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "id":
            ident = value
        elif name == "data":
            data += value


async def take(response: httpx.Response, count: int) -> list[Frame]:
    got: list[Frame] = []
    async for f in frames(response):
        got.append(f)
        if len(got) == count:
            break
    return got


def headers(gateway: LiveGateway, role: str = "reader", **more: str) -> dict[str, str]:
    return {"X-API-Key": gateway.keys[role], **more}


@pytest.fixture
def bus(gateway: LiveGateway) -> Iterator[Client]:
    """oibus's own client on the gateway's namespace, to write events quickly."""
    client = Client(gateway.redis_url, agent_id="writer", namespace=gateway.namespace)
    yield client
    client.close()


def event_ids(bus: Client, intent_id: str) -> list[str]:
    """Every event id of the intent's log, oldest first, read back in pages."""
    ids: list[str] = []
    after = None
    while True:
        page = bus.get_events(intent_id, after=after, limit=1000)
        ids += [e.id for e in page]
        if page.next_cursor is None:
            return ids
        after = page.next_cursor


def wait_open(count: int, timeout: float = 10.0) -> None:
    """Until this process's gateway is sending ``count`` streams."""
    deadline = time.monotonic() + timeout
    while streams.OPEN.now < count:
        assert time.monotonic() < deadline, f"{streams.OPEN.now} streams open, not {count}"
        time.sleep(0.01)


def collect(stream: Any, count: int, into: list[SSEEvent]) -> threading.Thread:
    """Iterate an SDK stream in a thread until ``count`` events (the SDK's iterator
    blocks), skipping none."""

    def run() -> None:
        for event in stream:
            into.append(event)
            if len(into) == count:
                break

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- the reference SDK ------------------------------------------------------------------------
def test_the_sdk_subscribe_sse_receives_events(
    sdk: Callable[..., OpenIntentClient], bus: Client
) -> None:
    c = sdk()
    intent = c.create_intent(title="streamed")
    before = streams.OPEN.now
    got: list[SSEEvent] = []
    thread = collect(c.subscribe_sse(intent.id), 4, got)
    wait_open(before + 1)
    updated = c.update_state(intent.id, intent.version, {"step": 1})
    for n in range(3):
        c.log_event(intent.id, EventType.COMMENT, {"n": n})
    thread.join(10)
    assert not thread.is_alive()
    assert [e.type for e in got] == ["state_patched", "comment", "comment", "comment"]
    assert [e.data["payload"].get("n") for e in got[1:]] == [0, 1, 2]
    assert all(e.intent_id == intent.id for e in got)
    assert got[0].data["sequence"] == 2 and updated.version == 2
    ids = [e.id for e in got]
    assert ids == [e.id for e in c.get_events(intent.id)][1:]  # the events' own ids


def test_the_sdk_portfolio_and_agent_channels(
    sdk: Callable[..., OpenIntentClient], bus: Client
) -> None:
    """``subscribe_portfolio`` sees the portfolio's member events; ``subscribe_agent``
    gets ``AGENT_ASSIGNED`` with ``data.intent_id`` (what the SDK's Agent dispatches on),
    and only for assignments naming that agent."""
    c = sdk()
    portfolio = c.create_portfolio("streamed", "d")
    intent = c.create_intent(title="member")
    before = streams.OPEN.now
    members: list[SSEEvent] = []
    assigned: list[SSEEvent] = []
    first = collect(c.subscribe_portfolio(portfolio.id), 1, members)
    second = collect(c.subscribe_agent("worker-7"), 1, assigned)
    wait_open(before + 2)
    c.assign_agent(intent.id, "someone-else")
    c.add_intent_to_portfolio(portfolio.id, intent.id)
    c.assign_agent(intent.id, "worker-7")
    first.join(10)
    second.join(10)
    assert not first.is_alive() and not second.is_alive()
    assert members[0].type == "added_to_portfolio"
    assert (members[0].portfolio_id, members[0].intent_id) == (portfolio.id, intent.id)
    assert assigned[0].type == "AGENT_ASSIGNED"
    assert (assigned[0].intent_id, assigned[0].agent_id) == (intent.id, "worker-7")


# -- both path styles, refusals, pings --------------------------------------------------------
@pytest.mark.anyio
async def test_both_path_styles_and_refusals_before_the_first_byte(
    gateway: LiveGateway, bus: Client
) -> None:
    intent = bus.create_intent("paths")
    portfolio = bus.create_portfolio("paths")
    base = f"{gateway.url}/api/v1"
    async with httpx.AsyncClient(timeout=10) as http:
        for path in (
            f"/intents/{intent.id}/subscribe",
            f"/subscribe/intents/{intent.id}",
            f"/portfolios/{portfolio.id}/subscribe",
            f"/subscribe/portfolios/{portfolio.id}",
            "/agents/ada/subscribe",
            "/subscribe/agents/ada",
        ):
            async with http.stream("GET", base + path, headers=headers(gateway)) as answer:
                assert answer.status_code == 200, path  # a reader key may subscribe
                assert answer.headers["content-type"].startswith("text/event-stream")
                assert answer.headers["x-accel-buffering"] == "no"
                first = await anext(answer.aiter_lines())
                assert first == ": connected"
        for path, key, status in [
            ("/intents/no-such-intent/subscribe", "reader", 404),
            ("/subscribe/portfolios/no-such-portfolio", "reader", 404),
            (f"/intents/{intent.id}/subscribe", None, 401),
        ]:
            sent = headers(gateway, key) if key else {}
            answer = await http.get(base + path, headers=sent)
            assert answer.status_code == status, path
            assert answer.json()["message"]
        bad = await http.get(
            f"{base}/intents/{intent.id}/subscribe",
            headers=headers(gateway, **{"Last-Event-ID": "yesterday"}),
        )
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "Last-Event-ID"
        bad = await http.get(
            f"{base}/agents/ada/subscribe", headers=headers(gateway, **{"Last-Event-ID": "1-0"})
        )
        assert bad.status_code == 400


def test_a_quiet_stream_pings_and_a_gone_client_is_cleaned_up(
    gateway: LiveGateway, bus: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "SETTINGS", streams.StreamSettings(ping_seconds=0.2))
    intent = bus.create_intent("quiet")
    before = streams.OPEN.now
    url = f"{gateway.url}/api/v1/intents/{intent.id}/subscribe"
    pings = 0
    with (
        httpx.Client(timeout=5) as http,
        http.stream("GET", url, headers=headers(gateway)) as answer,
    ):
        for line in answer.iter_lines():
            pings += line == ": ping"
            if pings == 3:
                break
        assert streams.OPEN.now == before + 1
    deadline = time.monotonic() + 5
    while streams.OPEN.now != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert streams.OPEN.now == before  # the generator's finally ran


# -- volume and resume ----------------------------------------------------------------------
async def _write(gateway: LiveGateway, intent_id: str, count: int, first: int = 0) -> None:
    async with AsyncClient(
        gateway.redis_url, agent_id="writer", namespace=gateway.namespace
    ) as client:
        for start in range(first, first + count, 250):
            await asyncio.gather(
                *(
                    client.log_event(intent_id, "comment", {"n": n})
                    for n in range(start, min(start + 250, first + count))
                )
            )


def test_ten_thousand_events_to_one_subscriber_in_order(gateway: LiveGateway, bus: Client) -> None:
    """Live (written while the subscriber reads) and then replayed from the start: all of
    them, in log order, each once. Prints both wall times (no timing assert)."""
    intent = bus.create_intent("volume")
    total = 10_000
    url = f"{gateway.url}/api/v1/intents/{intent.id}/subscribe"

    async def run() -> tuple[list[Frame], float, list[Frame], float]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0)) as http:
            async with http.stream("GET", url, headers=headers(gateway)) as answer:
                started = time.perf_counter()
                writer = asyncio.create_task(_write(gateway, intent.id, total))
                live = await take(answer, total)
                await writer
                live_s = time.perf_counter() - started
            started = time.perf_counter()
            params = {"last_event_id": "0"}
            async with http.stream("GET", url, headers=headers(gateway), params=params) as again:
                replay = await take(again, total + 1)
            return live, live_s, replay, time.perf_counter() - started

    live, live_s, replay, replay_s = asyncio.run(run())
    print(
        f"\n10,000 SSE events to one subscriber: {live_s:.2f} s live (written meanwhile by"
        f" the same process), {replay_s:.2f} s replayed from the log"
    )
    assert len(live) == total
    assert [f.data["sequence"] for f in live] == list(range(2, total + 2))  # in order, no gap
    assert sorted(f.data["payload"]["n"] for f in live) == list(range(total))
    assert all(f.type == "comment" and f.id == f.data["id"] for f in live)
    ids = event_ids(bus, intent.id)
    assert [f.id for f in live] == ids[1:]  # the events' own ids
    assert [f.id for f in replay] == ids


def test_resume_with_last_event_id_gets_exactly_the_missed_ones(
    gateway: LiveGateway, bus: Client
) -> None:
    intent = bus.create_intent("resume")
    url = f"{gateway.url}/api/v1/subscribe/intents/{intent.id}"

    async def run() -> tuple[list[Frame], list[Frame], list[Frame]]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
            async with http.stream("GET", url, headers=headers(gateway)) as answer:
                writer = asyncio.create_task(_write(gateway, intent.id, 300))
                early = await take(answer, 120)
                await writer
            # disconnected: 180 written before it went, and 200 more while it is away
            await _write(gateway, intent.id, 200, first=300)
            resume = headers(gateway, **{"Last-Event-ID": str(early[-1].id)})
            async with http.stream("GET", url, headers=resume) as answer:
                writer = asyncio.create_task(_write(gateway, intent.id, 100, first=500))
                rest = await take(answer, 380 + 100)
                await writer
            params = {"last_event_id": "0"}
            async with http.stream("GET", url, headers=headers(gateway), params=params) as again:
                replay = await take(again, 601)
        return early, rest, replay

    early, rest, replay = asyncio.run(run())
    seqs = [f.data["sequence"] for f in early + rest]
    assert seqs == list(range(2, 602))  # every event once: no gap, no duplicate
    assert rest[0].data["sequence"] == early[-1].data["sequence"] + 1
    assert [f.id for f in replay] == [e.id for e in bus.get_events(intent.id, limit=601)]
    assert replay[0].type == "intent_created"


def test_the_agent_channel_resumes_across_partitions(gateway: LiveGateway, bus: Client) -> None:
    """An agent's assignments come from every partition's bus; the frame's id is the
    position in all of them, so a resume is exact there too."""
    intents = [bus.create_intent(f"job-{n}") for n in range(12)]
    url = f"{gateway.url}/api/v1/agents/crew-1/subscribe"

    async def run() -> tuple[list[Frame], list[Frame]]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
            async with http.stream("GET", url, headers=headers(gateway)) as answer:
                for intent in intents[:6]:
                    bus.assign_agent(intent.id, "crew-1")
                    bus.assign_agent(intent.id, "crew-2")
                early = await take(answer, 3)
            for intent in intents[6:]:
                bus.assign_agent(intent.id, "crew-1")
            resume = headers(gateway, **{"Last-Event-ID": str(early[-1].id)})
            async with http.stream("GET", url, headers=resume) as answer:
                rest = await take(answer, 9)
        return early, rest

    early, rest = asyncio.run(run())
    assert {f.type for f in early + rest} == {"AGENT_ASSIGNED"}
    assert {f.data["agent_id"] for f in early + rest} == {"crew-1"}
    assert sorted(f.data["intent_id"] for f in early + rest) == sorted(i.id for i in intents)


# -- many streams on one process -----------------------------------------------------------
def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def served(gateway: LiveGateway) -> Iterator[tuple[str, int]]:
    """``oibus serve`` as its own process on the gateway's bus and namespace (its keys
    are the gateway's), so its memory is its own."""
    port = free_port()
    env = {**os.environ, "OIBUS_SSE_PING_SECONDS": "15"}
    cmd = [sys.executable, "-m", "oibus", "serve", "--port", str(port)]
    cmd += ["--redis-url", gateway.redis_url, "--namespace", gateway.namespace]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "oibus serve did not start"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(15)


async def _open(address: str, path: str, key: str) -> tuple[asyncio.StreamReader, Any]:
    host, port = address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 16)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {address}\r\nX-API-Key: {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    return reader, writer


@pytest.mark.timeout(120)
def test_a_thousand_concurrent_streams_on_one_gateway_process(
    gateway: LiveGateway, bus: Client, served: tuple[str, int]
) -> None:
    """1,000 clients hold a stream each on one ``oibus serve`` process; one event then
    reaches every one of them. Prints the process's memory per connection and the wall
    time (no timing assert)."""
    address, pid = served
    intent = bus.create_intent("crowd")
    path = f"/api/v1/intents/{intent.id}/subscribe"
    count = 1000
    key = gateway.keys["reader"]

    async def run() -> tuple[int, int, float]:
        warm = await _open(address, path, key)  # the first stream's one-off costs
        warm[1].close()
        await asyncio.sleep(0.5)
        before = _rss_kb(pid)
        started = time.perf_counter()
        opened = []
        for start in range(0, count, 100):
            opened += await asyncio.gather(
                *(_open(address, path, key) for _ in range(start, start + 100))
            )
        held = _rss_kb(pid)
        bus.log_event(intent.id, "comment", {"to": "all"})

        async def receives(reader: asyncio.StreamReader) -> bool:
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if b'"to":"all"' in line:
                    return True
                assert line, "the stream ended"

        results = await asyncio.gather(*(receives(r) for r, _ in opened))
        seconds = time.perf_counter() - started
        assert all(results) and len(results) == count
        for _, writer in opened:
            writer.close()
        return before, held, seconds

    before, held, seconds = asyncio.run(run())
    per = (held - before) / count
    print(
        f"\n{count} concurrent SSE streams on one gateway process: RSS {before / 1024:.1f} MiB"
        f" -> {held / 1024:.1f} MiB, {per:.1f} KiB per connection; opened and one event"
        f" delivered to all in {seconds:.2f} s"
    )
    assert held > before  # measured something


def test_shutdown_does_not_hang_on_open_streams(
    gateway: LiveGateway, bus: Client, served: tuple[str, int]
) -> None:
    """``oibus serve`` asked to stop (SIGTERM) with streams open ends them and exits
    within its graceful timeout (5 s), and each client sees its stream end; a gateway run
    from a thread (no signal handlers: only uvicorn's timeout) stops too."""
    address, pid = served
    intent = bus.create_intent("shutdown")
    path = f"/api/v1/intents/{intent.id}/subscribe"
    key = gateway.keys["reader"]
    proc_status = f"/proc/{pid}/stat"

    async def run() -> float:
        opened = await asyncio.gather(*(_open(address, path, key) for _ in range(20)))
        started = time.perf_counter()
        os.kill(pid, 15)

        async def ends(reader: asyncio.StreamReader) -> None:
            while await asyncio.wait_for(reader.read(1 << 16), 15):
                pass

        await asyncio.gather(*(ends(r) for r, _ in opened))
        for _, writer in opened:
            writer.close()
        return time.perf_counter() - started

    seconds = asyncio.run(run())
    deadline = time.monotonic() + 10
    while os.path.exists(proc_status) and time.monotonic() < deadline:
        with open(proc_status) as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):
                break  # exited, not yet reaped
        time.sleep(0.05)
    print(f"\nSIGTERM with 20 streams open: every stream ended in {seconds:.2f} s")
    assert seconds < 10

    with live_gateway(gateway.redis_url, gateway.namespace) as local:
        port = local.url.rsplit(":", 1)[1]
        url = f"{local.url}{path}"
        reader = httpx.Client(timeout=10)
        answer = reader.send(reader.build_request("GET", url, headers=headers(local)), stream=True)
        assert answer.status_code == 200
        started = time.perf_counter()
    stopped = time.perf_counter() - started
    answer.close()
    reader.close()
    server_threads = [t for t in threading.enumerate() if t.name == f"gateway-{port}"]
    assert not server_threads, f"the gateway thread is still running after {stopped:.1f} s"
