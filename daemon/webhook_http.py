"""The webhook POST: httpcore's connection pool (HTTP/1.1 keep-alive), with the address
policy in the network backend it connects through.

Why httpcore and not an ``httpx.AsyncClient``: profiled on the benchmark's receiver, an
httpx POST cost about 500 µs of CPU, most of it httpx's own request and response models,
URL and header normalisation and auth/redirect/cookie machinery, none of which a webhook
needs (one method, no redirects: they could lead past the address policy; no proxies:
the policy must see where we connect; no cookies; only the status and ``Retry-After``).
httpcore is the layer under httpx that does the HTTP work: h11 parses every byte
(chunked bodies, 1xx, ``Connection: close``, HTTP/1.0 peers), and its pool decides when
a connection may be reused, keeps idle ones for ``KEEPALIVE_S``, drops those closed by
their peer while idle, and closes one whose exchange was cancelled or failed mid-way.
(Before it, a hand-written pool drove h11 directly for ~100 µs a POST; the project
keeps a maintained library wherever one does the job, and httpcore costs ~230 µs with
one connection, ~360 with ten: see bench/WEBHOOKS.md.)

**The address policy is kept where the connection is made**: httpcore opens every TCP
connection through ``_PolicyBackend.connect_tcp``, which resolves the host once,
requires every address to be allowed, and connects to one of those checked addresses, so
a DNS answer that changes between the check and the connection cannot slip through.
TLS is then started by httpcore with the URL's host name as ``server_hostname`` (SNI and
certificate verification), not the address. A reused connection was checked when it was
opened.

The response body is read (and dropped) only so the connection can be reused, up to
``BODY_MAX`` bytes; a longer one is not drained, and closing the unfinished response
closes its connection.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import select
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, unquote, urlsplit

import anyio
import httpcore
import httpx

from oibus.bus.webhooks import address_allowed

__all__ = ["Answer", "PostFailed", "WebhookHTTP"]

KEEPALIVE_S: Final = 5.0
"""How long an idle connection is kept (httpx's default keep-alive expiry)."""
BODY_MAX: Final = 65_536
"""Most response body bytes read to reuse a connection."""

_FAILED: Final = (
    httpcore.NetworkError,  # ConnectError, ReadError, WriteError
    httpcore.TimeoutException,  # only with httpcore's own timeouts (the caller bounds ours)
    httpcore.ProtocolError,  # RemoteProtocolError, LocalProtocolError
    httpcore.UnsupportedProtocol,
)
"""httpcore's errors for a request that got no status (or lost its connection after)."""


class PostFailed(Exception):  # noqa: N818 - internal: never leaves the delivery path
    """An attempt that got no status: ``text`` is what the dead letter or the retry
    state records (named as httpx named these errors, which operators already grep
    for); ``refused`` when the address policy refused the host (not worth retrying)."""

    def __init__(self, text: str, *, refused: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's anyio stream with its socket kept at hand. Profiled with ten
    connections, a fifth of a POST's CPU was the pool asking every idle connection
    whether its peer closed it (``is_readable``, before each request and after each
    response) and anyio building its table of socket attributes to answer each time."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._sock: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # as httpcore asks it: readable while idle means closed
            if self._sock is None or self._sock.fileno() < 0:
                return True
            poll = select.poll()  # not select(): descriptors past 1023 are common here
            poll.register(self._sock, select.POLLIN)
            return bool(poll.poll(0))
        return self._stream.get_extra_info(info)


class _PolicyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, connecting only to addresses the policy allows."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._tcp = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        error: httpcore.ConnectError | None = None
        for address in await self._addresses(host, port):
            try:
                stream = await self._tcp.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
                return _Stream(stream)
            except httpcore.ConnectError as exc:
                error = exc
        raise error if error is not None else httpcore.ConnectError(f"{host} has no address")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, every one allowed by the policy (else refused)."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            found = [host]
        except ValueError:  # a name: resolve it once, check and connect to what it gave
            try:
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(str(exc)) from exc
            found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            for address in found:
                if not address_allowed(address):
                    raise PostFailed(
                        f"{host} resolves to {address}, a private, loopback or link-local "
                        "address, and the namespace's webhook policy is public only "
                        "(allow_private is off)",
                        refused=True,
                    )
        return found


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpcore.URL
    host_header: bytes
    auth: bytes | None

    @classmethod
    def of(cls, url: str) -> _Target:
        parts: SplitResult = urlsplit(url)
        scheme = parts.scheme.lower()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        auth = None
        if parts.username is not None:  # as httpx did: credentials in the URL are Basic auth
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = b"Basic " + base64.b64encode(pair.encode())
        target = httpcore.URL(
            scheme=scheme,
            host=parts.hostname or "",
            port=parts.port or (443 if scheme == "https" else 80),
            target=path,
        )
        return cls(target, parts.netloc.rpartition("@")[2].encode("ascii"), auth)


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's trust store (certifi), built once per process (~25 ms)."""
    return httpx.create_ssl_context(trust_env=False)


class WebhookHTTP:
    """POSTs over pooled keep-alive connections (module docstring). One per engine;
    ``aclose`` closes every connection."""

    def __init__(self, *, allow_private: bool, user_agent: str, max_idle: int) -> None:
        self.allow_private = allow_private
        self._user_agent = user_agent.encode("ascii")
        # a worker makes one request at a time, and the engine runs fewer workers than
        # max_idle: no request ever waits for a connection of the pool
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_tls(),
            max_connections=max_idle,
            max_keepalive_connections=max_idle,
            keepalive_expiry=KEEPALIVE_S,
            network_backend=_PolicyBackend(allow_private=allow_private),
        )
        self._targets: dict[str, _Target] = {}

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        """One POST; the caller bounds its time (cancellation closes the connection).
        Raises PostFailed when no status came back."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:  # bounded: URLs come and go with subscriptions
                self._targets.clear()
            try:
                target = self._targets[url] = _Target.of(url)
            except ValueError as exc:  # a bad port (the URL's credentials kept out)
                raise PostFailed(f"InvalidURL: {exc}") from exc
        fields = [
            (b"Host", target.host_header),
            (b"User-Agent", self._user_agent),
            (b"Content-Length", b"%d" % len(body)),
            *((name.encode("ascii"), value.encode("ascii")) for name, value in headers),
        ]
        if target.auth is not None:
            fields.append((b"Authorization", target.auth))
        request = httpcore.Request(b"POST", target.url, headers=fields, content=body)
        try:
            response = await self._pool.handle_async_request(request)
        except _FAILED as exc:
            raise PostFailed(_text(exc)) from exc
        retry_after = None
        for name, value in response.headers:
            if name.lower() == b"retry-after":
                retry_after = value.decode("latin-1")
        answer = Answer(response.status, retry_after)
        try:
            read = 0
            async for chunk in response.aiter_stream():
                read += len(chunk)
                if read > BODY_MAX:
                    break  # not worth draining: closing it unfinished closes the connection
        except _FAILED:
            pass  # the status came: only the connection is lost (httpcore closed it)
        finally:
            await response.aclose()  # back to the pool if the exchange was complete
        return answer

    async def aclose(self) -> None:
        await self._pool.aclose()


def _text(exc: Exception) -> str:
    """``ReadError: ...`` as httpx named it; the cause's name when anyio's error has no
    message (a broken or closed stream)."""
    text = str(exc) or (type(exc.__cause__).__name__ if exc.__cause__ else "")
    return f"{type(exc).__name__}: {text}"
