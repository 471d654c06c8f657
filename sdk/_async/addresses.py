"""The webhook address rule, one copy for ``subscribe`` (which refuses at once) and the
daemon (which checks again at every delivery, since a name may resolve elsewhere later):
every address a URL's host resolves to must be public, unless the namespace's policy
allows private ones (``oibus.bus.webhooks.POLICY_FIELD``)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import anyio

from oibus.bus.webhooks import address_allowed


async def url_refusal(url: str, allow_private: bool) -> str | None:
    """Why the policy refuses the URL's host, or None. Resolution errors raise OSError
    (the daemon retries; ``subscribe`` lets such a URL through to the daemon's check)."""
    if allow_private:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = {host}
    except ValueError:  # a name, not an address: resolve it
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = {str(info[4][0]) for info in infos}
    for address in sorted(addresses):
        if not address_allowed(address):
            return (
                f"{host} resolves to {address}, a private, loopback or link-local "
                "address, and the namespace's webhook policy is public only "
                "(allow_private is off)"
            )
    return None
