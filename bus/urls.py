"""Connection URLs beyond what redis-py parses itself: ``redis+cluster://`` (handled by
the client) and ``redis+sentinel://``, for a primary that Sentinel fails over.

``redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>]
[?sentinel_password=...]``: the sentinels to ask, the name they monitor the primary
under, the database. The password is the primary's; sentinels that require their own
take ``sentinel_password``. The client asks the sentinels for the current primary on
every new connection, so after a failover new connections reach the new primary."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from oibus.bus.errors import ConfigurationError

SENTINEL_SCHEME: Final = "redis+sentinel://"
DEFAULT_SENTINEL_PORT: Final = 26379


class SentinelTarget(msgspec.Struct, frozen=True, kw_only=True):
    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelTarget:
    if not url.startswith(SENTINEL_SCHEME):
        raise ConfigurationError(f"not a {SENTINEL_SCHEME} URL")
    parts = urlsplit("//" + url[len(SENTINEL_SCHEME) :])
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, sep, port = item.rpartition(":") if ":" in item else (item, "", "")
        if not host or (sep and not port.isdigit()):
            raise ConfigurationError(f"{SENTINEL_SCHEME} URL: bad sentinel address {item!r}")
        sentinels.append((host, int(port) if sep else DEFAULT_SENTINEL_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigurationError(
            f"{SENTINEL_SCHEME} URL needs the monitored service name: "
            f"{SENTINEL_SCHEME}host:26379/<service>[/<db>]"
        )
    if len(path) == 2 and not path[1].isdigit():
        raise ConfigurationError(f"{SENTINEL_SCHEME} URL: the database must be a number")
    query = parse_qs(parts.query)
    return SentinelTarget(
        sentinels=sentinels,
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=query.get("sentinel_password", [None])[0],
    )


SCHEMES: Final = ("redis://", "rediss://", "unix://", "redis+cluster://", SENTINEL_SCHEME)


def check_url(url: object) -> str:
    """Refuse what is not a Redis URL before redis-py sees it: it raises a bare
    ValueError for some (``http://...``) and reads others surprisingly (a bare host name
    as a path). The password, if any, is kept out of the message."""
    if not isinstance(url, str) or not url.startswith(SCHEMES):
        shown = re.sub(r"//[^@/]*@", "//***@", url) if isinstance(url, str) else url
        raise ConfigurationError(
            f"not a Redis URL: {shown!r} (expected one of {', '.join(SCHEMES)}, "
            "e.g. redis://127.0.0.1:6379/0)"
        )
    return url
