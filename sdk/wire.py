"""Writing a packed pipeline to one of redis-py's connections, in both flavours (written
by hand, like ``fanin.py``: the async one differs in more than its keywords).

redis-py's async ``send_packed_command`` wraps the drain in ``asyncio.wait_for`` when a
socket timeout is set, and on Python 3.11 that runs the drain as a task of its own: two
more turns of the event loop per round trip (profiled: a quarter of the client CPU of a
PING through the runner, which an agent pays five times per assignment). The async
writer here hands the bytes to the transport at once and waits only while the transport
is paused, under the same timeout and with the same redis-py errors. The sync writer is
redis-py's own: it has no such cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions as rex


async def write_packed_async(conn: Any, packed: bytes) -> None:
    if not conn.is_connected:
        await conn.connect()
    if conn.health_check_interval:
        await conn.check_health()  # the idle PING redis-py sends before a command
    try:
        conn._writer.write(packed)
        if conn.socket_timeout:
            async with asyncio.timeout(conn.socket_timeout):
                await conn._writer.drain()
        else:
            await conn._writer.drain()
    except TimeoutError:
        raise rex.TimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        raise rex.ConnectionError(f"Error while writing to socket: {exc}") from exc


def write_packed(conn: Any, packed: bytes) -> None:
    conn.send_packed_command([packed])
