"""The one place redis-py exceptions become oibus exceptions (both flavours use it)."""

from __future__ import annotations

import redis.exceptions as rex

from oibus.bus import errors
from oibus.bus.codes import PREFIX, from_reply

ACL_REFUSALS = ("ACL failure in script", "The user executing the script can't")
"""How a command a script called and the caller's ACL refused is reported: Valkey and
Redis 7.2+, then Redis 6.2/7.0 (an ``ERR`` reply, not ``NOPERM``)."""


UNAVAILABLE = ("CLUSTERDOWN", "TRYAGAIN", "READONLY", "MASTERDOWN", "LOADING")
"""Replies of a server that cannot serve the call right now (a failover or a restart in
progress): the call did nothing and may be retried, like a lost connection."""


def translate(exc: Exception, *, script: bool = False) -> errors.OpenIntentError:
    """``script`` says the error came from running one of our scripts: an error reply
    without our prefix is then a bug in that script, not a server problem."""
    if isinstance(exc, errors.OpenIntentError):
        return exc
    if isinstance(exc, rex.TimeoutError):
        return errors.BusTimeoutError(f"Redis did not answer in time: {exc}")
    if isinstance(exc, rex.ConnectionError):
        return errors.BusConnectionError(f"cannot reach Redis: {exc}")
    if isinstance(exc, rex.ReadOnlyError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith(UNAVAILABLE)
    ):
        return errors.BusConnectionError(f"Redis cannot serve it now (retry): {exc}")
    if isinstance(exc, rex.NoPermissionError) or (
        isinstance(exc, rex.ResponseError) and str(exc).startswith(ACL_REFUSALS)
    ):
        return errors.PermissionDeniedError(
            f"this Redis user's ACL refused it (the role may not do this): {exc}"
        )
    if isinstance(exc, rex.OutOfMemoryError) or (
        isinstance(exc, rex.ResponseError) and "used memory > 'maxmemory'" in str(exc)
    ):
        return errors.BusFullError(
            "Redis is at maxmemory and refuses writes (noeviction): the write was refused; "
            "free memory or raise maxmemory"
        )
    if isinstance(exc, rex.ResponseError) and (script or str(exc).startswith(PREFIX)):
        return from_reply(str(exc))
    if isinstance(exc, rex.ResponseError):
        return errors.BusError(f"Redis refused a command: {exc}")
    return errors.BusError(f"Redis call failed: {exc!r}")
