"""The webhook POST: HTTP/1.1 through h11 over anyio streams, with keep-alive pools.

Why not httpx, which delivered webhooks before: profiled on the benchmark's receiver, an
``httpx.AsyncClient`` POST costs about 500 µs of CPU (its request and response models,
URL and header normalisation, the connection pool's locks; and ``stream()`` without
reading the body threw the connection away, so every delivery opened a new one), where
h11 itself, the protocol engine httpx runs on, costs under 100 µs. A webhook needs little
of httpx: one method, no redirects (they could lead past the address policy), no
proxies (the policy must see where we connect), no cookies, the response's status and
``Retry-After`` only. h11 still parses every byte (chunked bodies, 1xx, ``Connection:
close``, HTTP/1.0 peers) and decides when a connection may be reused.

**The address policy is kept where the connection is made**: the host is resolved once,
every address must be allowed, and the socket connects to one of those checked
addresses, so a DNS answer that changes between the check and the connection can no
longer slip through (the gap httpx's own second lookup left). A reused connection was
checked when it was opened.

**Pools.** Idle connections are kept per origin (scheme, host, port) for
``KEEPALIVE_S`` and checked before reuse (a socket readable while idle was closed by its
peer). A connection goes back to its pool only after a complete exchange; one cancelled
or failed mid-way is closed. The response body is read (and dropped) only to reuse the
connection, up to ``BODY_MAX`` bytes; a longer one closes the connection instead.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import select
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import SplitResult, unquote, urlsplit

import anyio
import h11
import httpx
from anyio.abc import ByteStream, SocketAttribute

from oibus.bus.webhooks import address_allowed

__all__ = ["Answer", "PostFailed", "WebhookHTTP"]

KEEPALIVE_S: Final = 5.0
"""How long an idle connection is kept (httpx's default keep-alive expiry)."""
IDLE_PER_ORIGIN: Final = 16
"""Most idle connections kept for one origin: one per subscription delivering to it at
once, bounded."""
BODY_MAX: Final = 65_536
"""Most response body bytes read to reuse a connection."""
READ_CHUNK: Final = 65_536

Origin = tuple[str, str, int]


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


@dataclass(slots=True, eq=False)  # identity: a key of the idle LRU
class _Conn:
    stream: ByteStream
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    sock: socket.socket | None = None

    def __post_init__(self) -> None:
        try:
            self.sock = self.stream.extra(SocketAttribute.raw_socket)
        except anyio.TypedAttributeLookupError:
            self.sock = None

    def stale(self, now: float) -> bool:
        """Idle too long, or closed (or written to) by its peer while idle."""
        if now - self.idle_since > KEEPALIVE_S or self.sock is None:
            return True
        try:
            # anyio pauses reading between receives, so an idle peer's FIN or stray bytes
            # wait in the socket, where select sees them (httpcore checks the same way)
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)


@dataclass(frozen=True, slots=True)
class _Target:
    origin: Origin
    host_header: str
    path: str
    auth: str | None

    @classmethod
    def of(cls, url: str) -> _Target:
        parts: SplitResult = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        auth = None
        if parts.username is not None:  # as httpx did: credentials in the URL are Basic auth
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls((scheme, host, port), parts.netloc.rpartition("@")[2], path, auth)


class WebhookHTTP:
    """POSTs over pooled keep-alive connections (module docstring). One per engine;
    ``aclose`` closes every idle connection."""

    def __init__(self, *, allow_private: bool, user_agent: str, max_idle: int) -> None:
        self.allow_private = allow_private
        self.user_agent = user_agent
        self.max_idle = max_idle
        self._idle: dict[Origin, list[_Conn]] = {}
        self._lru: OrderedDict[_Conn, Origin] = OrderedDict()  # every idle one, oldest first
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Answer:
        """One POST; the caller bounds its time (cancellation closes the connection).
        Raises PostFailed when no status came back."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:  # bounded: URLs come and go with subscriptions
                self._targets.clear()
            target = self._targets[url] = _Target.of(url)
        conn = await self._reuse(target.origin)
        if conn is None:
            conn = await self._connect(target.origin)
        done = False
        try:
            answer = await self._exchange(conn, target, headers, body)
            done = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
            if done:
                conn.h11.start_next_cycle()
                await self._keep(target.origin, conn)
            return answer
        finally:
            if not done:
                with anyio.CancelScope(shield=True):
                    await _close(conn)

    async def aclose(self) -> None:
        idle, self._idle, self._lru = self._lru, {}, OrderedDict()
        for conn in idle:
            await _close(conn)

    async def _reuse(self, origin: Origin) -> _Conn | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            conn = pool.pop()  # the most recently used: the likeliest to be alive
            del self._lru[conn]
            if not pool:
                del self._idle[origin]  # bounded: origins come and go with subscriptions
            if not conn.stale(now):
                return conn
            await _close(conn)
        return None

    async def _keep(self, origin: Origin, conn: _Conn) -> None:
        """Pool a connection after a complete exchange; close the idle ones past the
        bounds (per origin, in all, or idle too long), oldest first."""
        now = conn.idle_since = time.monotonic()
        pool = self._idle.setdefault(origin, [])
        pool.append(conn)
        self._lru[conn] = origin
        if len(pool) > IDLE_PER_ORIGIN:
            await self._evict(pool[0])
        while self._lru:
            oldest = next(iter(self._lru))
            if len(self._lru) <= self.max_idle and now - oldest.idle_since <= KEEPALIVE_S:
                break
            await self._evict(oldest)

    async def _evict(self, conn: _Conn) -> None:
        origin = self._lru.pop(conn)
        pool = self._idle[origin]
        pool.remove(conn)
        if not pool:
            del self._idle[origin]
        await _close(conn)

    async def _connect(self, origin: Origin) -> _Conn:
        scheme, host, port = origin
        try:
            addresses = await self._addresses(host, port)
            tls = scheme == "https"
            error: OSError | None = None
            for address in addresses:
                try:
                    stream: ByteStream
                    if tls:
                        stream = await anyio.connect_tcp(
                            address,
                            port,
                            ssl_context=self._tls(),
                            tls_hostname=host,
                            tls_standard_compatible=False,
                        )
                    else:
                        stream = await anyio.connect_tcp(address, port)
                    return _Conn(stream)
                except OSError as exc:
                    error = exc
            raise error if error is not None else OSError(f"{host} has no address")
        except PostFailed:
            raise
        except (OSError, ssl.SSLError) as exc:
            raise PostFailed(f"ConnectError: {exc}") from exc

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, every one allowed by the policy (else refused)."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            found = [host]
        except ValueError:  # a name: resolve it once, check and connect to what it gave
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(trust_env=False)  # httpx's trust store
        return self._ssl

    async def _exchange(
        self, conn: _Conn, target: _Target, headers: Sequence[tuple[str, str]], body: bytes
    ) -> Answer:
        h = conn.h11
        fields = [
            ("Host", target.host_header),
            ("User-Agent", self.user_agent),
            ("Content-Length", str(len(body))),
            *headers,
        ]
        if target.auth is not None:
            fields.append(("Authorization", target.auth))
        try:
            data = h.send(h11.Request(method="POST", target=target.path, headers=fields))
            data = (data or b"") + (h.send(h11.Data(data=body)) or b"")
            data += h.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:
            raise PostFailed(f"LocalProtocolError: {exc}") from exc
        try:
            await conn.stream.send(data)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise PostFailed(f"WriteError: {exc or type(exc).__name__}") from exc
        answer: Answer | None = None
        read = 0
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                if answer is not None:
                    return answer  # the status came: only the connection is lost
                raise PostFailed(f"RemoteProtocolError: {exc}") from exc
            if event is h11.NEED_DATA:
                try:
                    chunk = await conn.stream.receive(READ_CHUNK)
                except anyio.EndOfStream:
                    chunk = b""
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                    if answer is not None:
                        return answer
                    raise PostFailed(f"ReadError: {exc or type(exc).__name__}") from exc
                h.receive_data(chunk)
            elif isinstance(event, h11.Response):
                retry_after = None
                for name, value in event.headers:
                    if name == b"retry-after":
                        retry_after = value.decode("latin-1")
                answer = Answer(event.status_code, retry_after)
            elif isinstance(event, h11.Data):
                read += len(event.data)
                if read > BODY_MAX and answer is not None:
                    return answer  # not worth draining: the connection is closed
            elif isinstance(event, h11.EndOfMessage) and answer is not None:
                return answer
            elif isinstance(event, h11.ConnectionClosed):
                if answer is not None:
                    return answer
                raise PostFailed(
                    "RemoteProtocolError: Server disconnected without sending a response."
                )
            # h11.InformationalResponse (1xx): wait for the final response


async def _close(conn: _Conn) -> None:
    with (
        anyio.move_on_after(1, shield=True),
        contextlib.suppress(OSError, anyio.BrokenResourceError),
    ):
        await conn.stream.aclose()
