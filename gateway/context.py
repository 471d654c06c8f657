"""Who is asking, and the client that acts for them.

One Redis connection pool per gateway process; one lightweight ``AsyncClient`` per acting
agent on top of it (the SDK records its ``agent_id`` as the actor of every event), made
on first use and kept in a bounded cache. The actor comes from the API key, never from a
body field: the key's principal, or, for a ``service`` or ``admin`` key, the agent named
in ``X-Agent-ID`` (the reference SDK sends its agent id there on every request).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from starlette.requests import HTTPConnection, Request

from oibus.bus.apikeys import Role
from oibus.bus.checks import check_text
from oibus.bus.errors import AccessDeniedError, AuthenticationError, ValidationError
from oibus.gateway.keys import lookup
from oibus.sdk._async.client import AsyncClient

CLIENTS_MAX = 4096
"""Acting agents whose client is kept; past it the least recently used is dropped (it
shares the pool, so dropping it closes nothing)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The principal a key names, its role, and the agent it acts as on this request."""

    principal: str
    role: Role
    actor: str
    client: AsyncClient


class Gateway:
    """What every request shares: the bus client and the per-agent clients on its pool."""

    def __init__(self, base: AsyncClient) -> None:
        self.base = base
        self._clients: OrderedDict[str, AsyncClient] = OrderedDict()

    def client_for(self, actor: str) -> AsyncClient:
        found = self._clients.get(actor)
        if found is not None:
            self._clients.move_to_end(actor)
            return found
        ks = self.base.keyspace
        made = AsyncClient(
            redis=self.base.redis,
            agent_id=actor,
            namespace=ks.namespace,
            partitions=ks.partitions,
        )
        self._clients[actor] = made
        if len(self._clients) > CLIENTS_MAX:
            self._clients.popitem(last=False)
        return made

    async def caller(self, conn: HTTPConnection, *, write: bool, admin: bool = False) -> Caller:
        """Authenticate the request and decide its actor; 401 without a known key, 403
        when the role may not write (or administer), or an agent key names another."""
        key = conn.headers.get("x-api-key") or _bearer(conn.headers.get("authorization"))
        if not key:
            raise AuthenticationError("an API key is required (X-API-Key header)")
        record = await lookup(self.base, key)
        if record is None:
            raise AuthenticationError("unknown API key")
        principal, role = record.principal, record.role
        if admin and role is not Role.ADMIN:
            raise AccessDeniedError(f"this needs an admin key; {principal}'s is {role.value}")
        if write and not role.writes:
            raise AccessDeniedError(f"{principal}'s key is a reader's: it may not write")
        named = conn.headers.get("x-agent-id")
        actor = principal
        if named and named != principal:
            if not role.acts_for_others:
                raise AccessDeniedError(
                    f"an agent key acts only as its own principal ({principal}), not as {named}"
                )
            try:
                actor = check_text(named, "X-Agent-ID", 256, line=True)
            except ValidationError as exc:
                raise ValidationError(exc.message, field="X-Agent-ID") from None
        return Caller(principal, role, actor, self.client_for(actor))


def _bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


async def caller(request: Request, *, write: bool = False) -> Caller:
    """The request's caller, by the app's one ``Gateway`` (made by its lifespan)."""
    gateway: Gateway = request.app.state.gateway
    return await gateway.caller(request, write=write)
