"""Webhook delivery, the pure parts: configuration, the request a delivery sends (body,
signature, idempotency key), how a response is classified, backoff with full jitter,
``Retry-After``, and which addresses a webhook may reach. No I/O: the engine that does the
I/O is ``oibus.daemon.webhooks``; docs/webhooks.md is the user's guide.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final

import msgspec

from oibus.bus.codec import decode_event
from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace
from oibus.bus.ops import Call

__all__ = [
    "BATCH_MAX",
    "GROUP",
    "Batch",
    "Outcome",
    "Retry",
    "WebhookConfig",
    "address_allowed",
    "backoff",
    "batch_call",
    "body_with",
    "classify",
    "delivery_body",
    "event_json",
    "event_key",
    "parse_batch",
    "retry_after",
    "sign",
    "verify",
]

GROUP: Final = "oibus-webhooks"
"""The consumer group of every delivery queue; its consumers are the daemons."""

SIGNATURE_PREFIX: Final = "sha256="


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """How deliveries are made. Times in seconds.

    ``timeout``: one attempt, connect to last byte. ``max_attempts`` and ``max_age`` (from
    the time the job was queued): past either, a failing delivery is dead-lettered.
    ``backoff_base``/``backoff_cap``: the n-th retry waits a random time in
    ``[0, min(cap, base * 2**(n-1))]`` (full jitter, so endpoints that fail together are
    not retried together), or what the endpoint's ``Retry-After`` asks. ``allow_private``:
    let webhooks reach private, loopback and link-local addresses (off: a subscriber could
    otherwise make the daemon probe the network it runs in). ``concurrency``: most
    subscriptions delivered to at once (one worker each). ``poll_interval``: how often the
    engine looks for work queued by other daemons or due for a retry (work this process
    queues wakes it at once). ``batch``: most jobs one worker delivers before it gives its
    slot to another subscription. ``marker_ttl``: how long a queued (subscription, event)
    pair is remembered so that handling a bus entry twice queues it once. ``queue_max``:
    most jobs waiting for one subscription; past it, new jobs go to the dead-letter store
    (nothing is dropped, memory stays bounded)."""

    timeout: float = 10.0
    max_attempts: int = 10
    max_age: float = 24 * 3600.0
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    allow_private: bool = False
    concurrency: int = 32
    poll_interval: float = 0.5
    batch: int = 100
    marker_ttl: float = 24 * 3600.0
    queue_max: int = 100_000

    def __post_init__(self) -> None:
        for name in ("timeout", "max_age", "backoff_base", "backoff_cap", "poll_interval"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValidationError(f"{name} must be a positive number of seconds", field=name)
        if not 1 <= self.marker_ttl <= 30 * 86_400:
            raise ValidationError("marker_ttl must be from 1 s to 30 days", field="marker_ttl")
        for name in ("max_attempts", "concurrency", "batch", "queue_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a positive integer", field=name)

    @property
    def lock_ms(self) -> int:
        """How long a worker's hold on a queue lasts without renewal: longer than one
        attempt. A worker renews it with every batch it claims and ends a batch before
        the hold could lapse during an attempt, so a live worker never loses it
        mid-request."""
        return math.ceil((self.timeout * 2 + 5) * 1000)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


def classify(status: int) -> Outcome:
    """2xx delivered; 408, 429 and 5xx worth retrying; anything else (other 4xx, and 3xx:
    redirects are not followed, since they could lead past the address policy) will not
    get better by retrying."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Outcome.RETRY
    return Outcome.DEAD_LETTER


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempt``-th failure (1-based): full jitter over an
    exponential ceiling."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    return (rng or random).uniform(0, ceiling)


def retry_after(value: str | None, now: datetime) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date), or
    None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-OIBus-Signature``: HMAC-SHA256 over ``<timestamp>.<body>`` with the
    subscription's secret. The timestamp is signed too, so a receiver that refuses old
    timestamps also refuses replayed requests."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time compare)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def event_key(source_id: str, event_id: str) -> str:
    """``X-OIBus-Event-Id``: the intent (or portfolio) id and the event's entry id in its
    log. Unique and stable across retries, replays and duplicate deliveries."""
    return f"{source_id}/{event_id}"


def address_allowed(address: str) -> bool:
    """Whether a webhook may reach ``address`` without ``allow_private``: only globally
    routable unicast addresses (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]  # an IPv6 zone index
    )
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


_body_encoder = msgspec.json.Encoder()


def event_json(
    source_id: str,
    event_id: str,
    fields: Mapping[str, str],
    *,
    portfolio: bool,
    member: str | None,
) -> bytes:
    """The ``event`` object of a delivery, as ``get_events`` returns it (RFC-0006's
    shape), encoded once however many subscriptions it goes to. A portfolio's event also
    carries ``portfolio_id``; its ``intent_id`` is the member it concerns (or null)."""
    event = decode_event(source_id, event_id, fields)
    body: dict[str, Any] = {
        "id": event.id,
        "intent_id": (member or None) if portfolio else source_id,
        "seq": event.seq,
        "event_type": event.event_type,
        "actor": event.actor,
        "payload": event.payload,
        "created_at": event.created_at,
    }
    if portfolio:
        body["portfolio_id"] = source_id
    return _body_encoder.encode(body)


def body_with(subscription_id: str, event: bytes) -> bytes:
    """The JSON a delivery POSTs, ``{"subscription_id", "event": {...}}``, around an
    encoded ``event_json``: the same bytes as encoding the whole object, without
    decoding and encoding the event again for every subscription."""
    return (
        b'{"subscription_id":' + _body_encoder.encode(subscription_id) + b',"event":' + event + b"}"
    )


def delivery_body(
    subscription_id: str,
    source_id: str,
    event_id: str,
    fields: Mapping[str, str],
    *,
    portfolio: bool,
    member: str | None,
) -> bytes:
    """The JSON a delivery POSTs (``body_with`` of ``event_json``)."""
    event = event_json(source_id, event_id, fields, portfolio=portfolio, member=member)
    return body_with(subscription_id, event)


POLICY_FIELD: Final = "webhook_policy"
"""The namespace's address policy, in its meta hash beside the partition count: recorded
once (by the first daemon that delivers, or by ``oibus subscriptions policy``), so every
daemon of the namespace delivers by the same rule and ``subscribe`` can refuse at once
what the daemons would refuse later."""
PUBLIC_ONLY: Final = "public"
PRIVATE_ALLOWED: Final = "private"


def policy_name(allow_private: bool) -> str:
    return PRIVATE_ALLOWED if allow_private else PUBLIC_ONLY


def allows_private(recorded: str | None) -> bool:
    """The recorded policy; a namespace with none recorded is public only (the safe one)."""
    return recorded == PRIVATE_ALLOWED


# -- a worker's round trip on its queue (lua/webhook_batch.lua) ---------------------------
BATCH_MAX: Final = 1000
"""Most jobs one ``webhook_batch`` call claims, and most it records as finished."""


@dataclass(frozen=True, slots=True)
class Retry:
    """A job's retry, recorded in its queue's state: the attempts made, when it is due
    (µs, server clock) and the last error."""

    job: str
    attempts: int
    due: int
    error: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What ``webhook_batch`` gave the lock's holder: the server's time (µs), the queue's
    retry state (None when no job has one), whether pending jobs are left that it could
    not take, and the claimed jobs, oldest first."""

    now: int
    retry: Retry | None
    more_pending: bool
    jobs: list[tuple[str, dict[str, str]]]


def batch_call(
    ks: Keyspace,
    subscription_id: str,
    owner: str,
    *,
    ttl_ms: int,
    count: int,
    done: Sequence[str] = (),
    retry: Retry | None = None,
    if_empty: str = "keep",
    pending: bool = True,
) -> Call:
    """Record ``done`` (delivered or dead-lettered) and ``retry``, keep the queue's lock
    for ``ttl_ms`` (0 gives it back) and claim up to ``count`` jobs: one round trip.
    ``if_empty="release"`` gives the lock back when there was nothing to claim;
    ``pending=False`` claims only new jobs (the holder took every pending one already)."""
    r = retry
    return Call(
        "webhook_batch",
        [
            ks.webhook_lock(subscription_id),
            ks.webhook_queue(subscription_id),
            ks.webhook_state(subscription_id),
        ],
        [
            owner,
            str(ttl_ms),
            GROUP,
            str(count),
            if_empty,
            "1" if pending else "0",
            "" if r is None else r.job,
            "" if r is None else str(r.attempts),
            "" if r is None else str(r.due),
            "" if r is None else r.error,
            *done,
        ],
    )


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[n]): str(flat[n + 1]) for n in range(0, len(flat) - 1, 2)}


def parse_batch(reply: Any) -> Batch | None:
    """``webhook_batch``'s reply; None when another consumer holds the lock."""
    if not isinstance(reply, list):
        return None
    state = _pairs(reply[2] or [])
    job = state.get("job")
    retry = None
    if job:
        n, due = state.get("n", "0"), state.get("next", "0")
        retry = Retry(
            job,
            int(n) if n.isdigit() else 0,
            int(due) if due.isdigit() else 0,
            state.get("err", ""),
        )
    jobs = [(str(reply[n]), _pairs(reply[n + 1] or [])) for n in range(4, len(reply) - 1, 2)]
    return Batch(int(reply[0]) * 1_000_000 + int(reply[1]), retry, bool(int(reply[3])), jobs)
