"""Server-sent events (sse-starlette) read straight from the streams the events live in.

Three channels, each under both path styles (the SDK's ``/api/v1/intents/{id}/subscribe``
and the reference server's ``/api/v1/subscribe/intents/{id}``; the same for portfolios
and agents):

- **intent**: the intent's log (``T:e:<id>``), one frame per event;
- **portfolio**: the portfolio's own log (``T:pe:<pid>``): its events and its members'
  (``portfolio_id`` is set in the data; ``intent_id`` names the member, or is null);
- **agent**: assignments naming the agent, read from every partition's bus; sent as
  ``AGENT_ASSIGNED`` (data: the event, ``intent_id`` and ``agent_id``), the type the
  SDK's ``Agent``/``Worker`` runtime dispatches on, and nothing else (the runtime logs
  an error for any type it does not handle).

**Exact resume.** Every frame carries ``id:``: the event's stream entry id (for the agent
channel, the position reached in every partition's bus, comma separated). A client that
sends it back as ``Last-Event-ID`` (the SDK does on reconnect; a browser's EventSource
too; ``?last_event_id=`` works where headers cannot be set, ``0`` meaning from the
start) gets exactly what followed: the stream is read with XREAD from that id, which a
stream makes exact, so there is no gap and no duplicate between the replay and the live
part (they are the same read). Without one, a subscription starts at the log's end as
it stands before the response starts, so an event written after the client has the
response headers is never missed.

**Backpressure, not queues.** Each connection reads its stream at the pace its client
takes the frames (the next XREAD happens after the previous batch was sent), so a slow
reader makes nothing drop and holds nothing but its position; sse-starlette's
``send_timeout`` ends a connection whose client stopped reading.

**No helper tasks of ours.** The read blocks on the server (``XREAD BLOCK``, at most
``block_seconds``, below the client's socket timeout) and its timeout is the ping clock:
a quiet stream sends a ``: ping`` comment every ``ping_seconds`` from the same loop, and
that send is what finds a dead client. sse-starlette's own ping task is off; what it
still runs per connection is its disconnect listener and its exit listener (the shutdown
watcher behind those is one per process). A parked read holds one pooled Redis
connection (the agent channel on a cluster polls instead: see ``_agent_frames``).

**Shutdown.** sse-starlette ends every stream when uvicorn is asked to exit (its
``handle_exit``, or the server's ``should_exit`` found through the signal handler), and
uvicorn's ``timeout_graceful_shutdown`` bounds the rest (a server run from a thread
without signal handlers relies on that bound). A cancelled read closes its Redis
connection rather than returning it with a reply pending.

Errors before the first byte are the usual typed answers (401/403, 404 for an unknown
intent or portfolio, 400 for a bad ``Last-Event-ID``); once streaming, an error becomes
an ``event: error`` frame and the stream ends (the client reconnects with its last id).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from redis.exceptions import RedisError
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from oibus.bus.codec import decode_event
from oibus.bus.consuming import REPLAY_FOR, Source
from oibus.bus.errors import OpenIntentError, ValidationError
from oibus.bus.listing import check_event_cursor
from oibus.bus.models import Event
from oibus.gateway.context import caller
from oibus.gateway.http import path_param
from oibus.gateway.shapes import Json, event_json, event_type_for_sdk
from oibus.sdk._async.client import AsyncClient
from oibus.sdk._async.events import join_events
from oibus.sdk.fanin import entries_of, is_cluster

_encoder = msgspec.json.Encoder()

ASSIGNED: Final = "AGENT_ASSIGNED"
"""The agent channel's frame type: the SDK's ``SSEEventType.AGENT_ASSIGNED``."""


CLUSTER_POLL: Final = 0.2
"""How often the agent channel reads every partition's bus on a cluster while quiet."""


@dataclass(frozen=True)
class StreamSettings:
    """Per-process stream settings; the defaults suit production, tests shorten them.
    ``OIBUS_SSE_PING_SECONDS`` and ``OIBUS_SSE_SEND_TIMEOUT`` set the first two."""

    ping_seconds: float = 15.0
    send_timeout: float = 30.0
    block_seconds: float = 5.0
    """The longest single XREAD BLOCK: below the bus client's socket timeout (10 s)."""
    batch: int = 100
    """Entries read (and sent as one chunk) at a time: bounds a connection's memory."""
    retry_ms: int = 2000
    """The reconnect delay suggested to clients (``retry:``)."""
    max_seconds: float | None = None
    """End a stream after this long (the client reconnects from its last id, and is
    authenticated again): the dashboard's, so a revoked key stops seeing events."""


def _from_env() -> StreamSettings:
    return StreamSettings(
        ping_seconds=float(os.environ.get("OIBUS_SSE_PING_SECONDS") or 15.0),
        send_timeout=float(os.environ.get("OIBUS_SSE_SEND_TIMEOUT") or 30.0),
    )


SETTINGS = _from_env()
"""Read at each subscription, so a test may replace it."""


class _Gauge:
    def __init__(self) -> None:
        self.now = 0


OPEN = _Gauge()
"""``OPEN.now``: streams this process is sending now (counted when a stream's first byte
is about to go, uncounted in its ``finally``: a stream that never started holds nothing)."""


# -- frames ---------------------------------------------------------------------------------
def frame(kind: str, entry_id: str, data: Json) -> bytes:
    """One SSE event. ``kind`` comes from a closed set (the SDK's types or the alias), and
    the JSON is one line (msgspec escapes newlines), so no field can break the framing."""
    head = f"event: {kind}\nid: {entry_id}\ndata: ".encode()
    return head + _encoder.encode(data) + b"\n\n"


def _error_frame(message: str) -> bytes:
    return b"event: error\ndata: " + _encoder.encode({"error": message}) + b"\n\n"


def _intent_data(event: Event) -> Json:
    return event_json(event)


def _portfolio_data(event: Event) -> Json:
    data = event_json(event)
    member = event.payload.get("intent_id")
    data["portfolio_id"] = event.intent_id
    data["intent_id"] = member if isinstance(member, str) else None
    return data


# -- the readers ------------------------------------------------------------------------------
class _Clock:
    """When the next ping is due: a stream is quiet when nothing was sent for a ping
    interval."""

    def __init__(self, settings: StreamSettings) -> None:
        self.settings = settings
        self.last = time.monotonic()

    def wait_ms(self) -> int:
        """How long the next read may block: until the ping is due, at most the block cap."""
        due = self.last + self.settings.ping_seconds - time.monotonic()
        return max(1, int(min(due, self.settings.block_seconds) * 1000))

    def ping(self) -> bytes | None:
        now = time.monotonic()
        if now - self.last < self.settings.ping_seconds:
            return None
        self.last = now
        return b": ping\n\n"

    def sent(self) -> None:
        self.last = time.monotonic()


async def _log_frames(
    redis: Any,
    key: str,
    owner: str,
    start: str,
    shape: Callable[[Event], Json],
    settings: StreamSettings,
) -> AsyncIterator[bytes]:
    """One log, from ``start`` (exclusive) on: replay and live are one XREAD loop."""
    last = start
    clock = _Clock(settings)
    ends = None if settings.max_seconds is None else time.monotonic() + settings.max_seconds
    while ends is None or time.monotonic() < ends:
        reply = await redis.xread({key: last}, count=settings.batch, block=clock.wait_ms())
        chunk = []
        for _, entry_id, fields in entries_of(reply):
            last = entry_id
            event = decode_event(owner, entry_id, fields)
            chunk.append(frame(event_type_for_sdk(event.event_type), entry_id, shape(event)))
        if chunk:
            yield b"".join(chunk)
            clock.sent()
        else:
            ping = clock.ping()
            if ping is not None:
                yield ping


def _agent_position(keys: tuple[str, ...], positions: dict[str, str]) -> str:
    return ",".join(positions[k] for k in keys)


async def _agent_frames(
    client: AsyncClient,
    agent_id: str,
    source: Source,
    start: dict[str, str],
    settings: StreamSettings,
) -> AsyncIterator[bytes]:
    """Assignments naming ``agent_id`` on every partition's bus, judged on the bus entry
    (its type and its routing hint, the agent it names) before any event is fetched. One
    server: one XREAD BLOCK over every partition. A cluster (a command may not span
    slots, and one blocking read per partition would mean a task each): every partition
    read at once without blocking (one pipelined round trip per node), every
    ``CLUSTER_POLL`` seconds while nothing comes."""
    redis: Any = client.redis
    keys = source.keys
    positions = dict(start)
    split = is_cluster(redis) and len(keys) > 1
    clock = _Clock(settings)
    while True:
        if split:
            replies = await client._runner.commands(
                [("XREAD", "COUNT", settings.batch, "STREAMS", k, positions[k]) for k in keys]
            )
            read = [e for reply in replies for e in entries_of(reply)]
        else:
            reply = await redis.xread(
                {k: positions[k] for k in keys}, count=settings.batch, block=clock.wait_ms()
            )
            read = entries_of(reply)
        matched: list[tuple[str, str, dict[str, str], int]] = []
        ids: list[str] = []
        for key, entry_id, fields in read:
            positions[key] = entry_id
            if (
                fields.get("t") == "agent_assigned"
                and fields.get("x") == agent_id
                and REPLAY_FOR not in fields
            ):
                matched.append((key, entry_id, fields, 1))
                ids.append(_agent_position(keys, positions))
        _, deliveries = await join_events(client, source, matched, True)
        chunk = []
        for delivery, position in zip(deliveries, ids, strict=True):
            data = event_json(delivery.event)
            data["agent_id"] = agent_id
            chunk.append(frame(ASSIGNED, position, data))
        if chunk:
            yield b"".join(chunk)
            clock.sent()
            continue
        ping = clock.ping()
        if ping is not None:
            yield ping
        if split and not read:
            await asyncio.sleep(min(CLUSTER_POLL, clock.wait_ms() / 1000))


async def _guarded(frames: AsyncIterator[bytes], settings: StreamSettings) -> AsyncIterator[bytes]:
    """The stream as sent: a first comment and the suggested retry delay, the frames, an
    ``error`` frame if the bus fails mid-stream (a status code is no longer possible),
    and the count of open streams kept right however it ends."""
    OPEN.now += 1
    try:
        yield f": connected\nretry: {settings.retry_ms}\n\n".encode()
        try:
            async for chunk in frames:
                yield chunk
        except (RedisError, OpenIntentError) as exc:
            yield _error_frame(f"the bus failed: {exc}")
    finally:
        OPEN.now -= 1
        await _close(frames)


async def _close(frames: AsyncIterator[bytes]) -> None:
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        await aclose()


def _response(frames: AsyncIterator[bytes], settings: StreamSettings) -> Response:
    return EventSourceResponse(
        _guarded(frames, settings),
        ping=0,  # the read loop pings (see the module)
        sep="\n",
        send_timeout=settings.send_timeout,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- positions ------------------------------------------------------------------------------
def _last_eventpath_param(request: Request) -> str | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return raw.strip() if raw and raw.strip() else None


def _log_start(given: str | None) -> str | None:
    """The entry to read after; ``0`` (or ``0-0``) replays the whole log."""
    if given is None:
        return None
    if given in ("0", "0-0"):
        return "0-0"
    try:
        return check_event_cursor(given, "Last-Event-ID")
    except ValidationError as exc:
        raise ValidationError(exc.message, field="Last-Event-ID") from None


async def _end_of(client: AsyncClient, keys: tuple[str, ...]) -> dict[str, str]:
    """The last entry of each stream now (``0-0`` for an empty one): reading after it is
    reading what comes next, with nothing appended in between missed."""
    tails = await client._runner.commands([("XREVRANGE", k, "+", "-", "COUNT", 1) for k in keys])
    return {k: (t[0][0] if t else "0-0") for k, t in zip(keys, tails, strict=True)}


# -- routes ---------------------------------------------------------------------------------
async def intent_stream(request: Request) -> Response:
    c = await caller(request)
    return await intent_events(request, c.client)


async def intent_events(
    request: Request, client: AsyncClient, settings: StreamSettings | None = None
) -> Response:
    """The intent's log as SSE, resumed as the request asks; also the dashboard's live
    log (gateway/ui/intents.py), which signs in its own way."""
    intent = await client.get_intent(path_param(request))  # 404 before any byte is sent
    key = client.keyspace.events(intent.id)
    start = _log_start(_last_eventpath_param(request)) or (await _end_of(client, (key,)))[key]
    settings = settings or SETTINGS
    return _response(
        _log_frames(client.redis, key, intent.id, start, _intent_data, settings), settings
    )


async def portfolio_stream(request: Request) -> Response:
    c = await caller(request)
    portfolio = await c.client.get_portfolio(path_param(request, "portfolio_id"))
    key = c.client.keyspace.portfolio_events(portfolio.id)
    start = _log_start(_last_eventpath_param(request)) or (await _end_of(c.client, (key,)))[key]
    settings = SETTINGS
    return _response(
        _log_frames(c.client.redis, key, portfolio.id, start, _portfolio_data, settings),
        settings,
    )


async def agent_stream(request: Request) -> Response:
    """Any key may watch any agent's assignments (it reads what ``GET`` of the intents
    would show it anyway). ``Last-Event-ID`` is the position in every partition's bus
    that a frame of this channel carried; ``0`` replays what the buses still hold."""
    c = await caller(request)
    agent_id = path_param(request, "agent_id")
    if not agent_id or len(agent_id) > 256:
        raise ValidationError("agent_id must be 1 to 256 characters", field="agent_id")
    ks = c.client.keyspace
    source = Source(keys=tuple(ks.bus(p) for p in range(ks.partitions)))
    given = _last_eventpath_param(request)
    if given is None:
        start = await _end_of(c.client, source.keys)
    elif given in ("0", "0-0"):
        start = dict.fromkeys(source.keys, "0-0")
    else:
        parts = given.split(",")
        if len(parts) != len(source.keys):
            raise ValidationError(
                "Last-Event-ID is not a position this agent channel sent", field="Last-Event-ID"
            )
        start = {k: _log_start(p) or "0-0" for k, p in zip(source.keys, parts, strict=True)}
    settings = SETTINGS
    return _response(_agent_frames(c.client, agent_id, source, start, settings), settings)


routes = [
    Route("/api/v1/intents/{intent_id}/subscribe", intent_stream, methods=["GET"]),
    Route("/api/v1/subscribe/intents/{intent_id}", intent_stream, methods=["GET"]),
    Route("/api/v1/portfolios/{portfolio_id}/subscribe", portfolio_stream, methods=["GET"]),
    Route("/api/v1/subscribe/portfolios/{portfolio_id}", portfolio_stream, methods=["GET"]),
    Route("/api/v1/agents/{agent_id}/subscribe", agent_stream, methods=["GET"]),
    Route("/api/v1/subscribe/agents/{agent_id}", agent_stream, methods=["GET"]),
]
