"""The one place redis-py exceptions become oibus exceptions (both flavours use it)."""

from __future__ import annotations

import redis.exceptions as rex

from ..bus import errors
from ..bus.codes import from_reply


def translate(exc: Exception) -> errors.OpenIntentError:
    if isinstance(exc, errors.OpenIntentError):
        return exc
    if isinstance(exc, rex.TimeoutError):
        return errors.BusTimeoutError(f"Redis did not answer in time: {exc}")
    if isinstance(exc, rex.ConnectionError):
        return errors.BusConnectionError(f"cannot reach Redis: {exc}")
    if isinstance(exc, rex.ResponseError):
        return from_reply(str(exc))
    return errors.BusError(f"Redis call failed: {exc!r}")
