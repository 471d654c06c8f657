"""The daemon's HTTP endpoint: ``GET /metrics`` (Prometheus text format) and
``GET /healthz`` (200 while the daemon's heartbeat is current, else 503). A few lines of
HTTP/1.1 on an anyio listener: two read-only paths do not need a web framework."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from oibus.daemon.metrics import Metrics

_log = logging.getLogger("oibus.daemon")
_MAX_REQUEST = 8192


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def serve(
    metrics: Metrics,
    healthy: Callable[[], bool],
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; reports the bound port through ``task_status``."""

    async def handle(stream: SocketStream) -> None:
        async with stream:
            request = b""
            with anyio.move_on_after(5):
                while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
                    chunk = await stream.receive(4096)
                    if not chunk:
                        break
                    request += chunk
            line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (line[0], line[1]) if len(line) >= 2 else ("", "")
            if method != "GET":
                reply = _response("405 Method Not Allowed", b"GET only\n", "text/plain")
            elif path == "/metrics":
                reply = _response(
                    "200 OK", metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
                )
            elif path == "/healthz":
                ok = healthy()
                reply = _response(
                    "200 OK" if ok else "503 Service Unavailable",
                    b"ok\n" if ok else b"heartbeat is stale\n",
                    "text/plain",
                )
            else:
                reply = _response("404 Not Found", b"/metrics or /healthz\n", "text/plain")
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(reply)

    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound = int(listener.extra(SocketAttribute.local_port))
        _log.info("serving /metrics and /healthz on http://%s:%d", host, bound)
        task_status.started(bound)
        await listener.serve(handle)
