"""Subscriptions (RFC-0006): the record, the calls that create and remove one, and the
decoder of what the scripts store. Pure: no I/O.

**Scopes.** A subscription names an intent (``intent_id``), a portfolio
(``portfolio_id``: the portfolio's own events and those of its member intents) or neither
(global: every event of the namespace). ``event_types`` narrows it to some types (custom
types included); ``None`` takes every type.

**Storage** is namespace-wide (``Keyspace.subscriptions``: id -> record JSON, and one index
set per scope, ``Keyspace.subscription_index``), all under the namespace's tag, so one
script writes a record and its index together and matching an event reads at most three
small sets. Cross-slot effects (the deliveries) are the daemon's: see
``oibus.daemon.webhooks`` and docs/webhooks.md.

**Secrets.** Every subscription has an HMAC secret that signs its deliveries. It is
generated when not given, returned once by ``subscribe`` and never by
``get_subscriptions`` (it is stored, because the daemon signs with it).

**Bounds.** At most ``SUBSCRIPTIONS`` per namespace and ``PER_SCOPE`` per scope, so
matching one event costs at most three index reads and ``3 x PER_SCOPE`` records, whatever
the namespace holds. Mirrors ``lua/includes/subscriptions.lua``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

import msgspec

from oibus.bus.checks import check_text
from oibus.bus.codec import STORED_ERRORS, to_datetime, to_micros, unreadable
from oibus.bus.errors import ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.ops import Call

__all__ = [
    "EVENT_TYPES",
    "PER_SCOPE",
    "SUBSCRIPTIONS",
    "URL_BYTES",
    "StoredSubscription",
    "Subscription",
    "check_url",
    "create_subscription_call",
    "created",
    "decode_record",
    "public",
    "remove_subscription_call",
]

SUBSCRIPTIONS: Final = 10_000
"""Most subscriptions of one namespace."""
PER_SCOPE: Final = 1000
"""Most subscriptions of one intent, one portfolio, or global ones."""
URL_BYTES: Final = 2048
"""Longest webhook URL."""
EVENT_TYPES: Final = 64
"""Most event types one subscription may list."""
SECRET_BYTES: Final = 256
SECRET_MIN_BYTES: Final = 16
"""A shorter HMAC key would make signatures guessable."""

_URL_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what a URL may hold


class StoredSubscription(msgspec.Struct, frozen=True, kw_only=True):
    """What ``{ns}:subs`` holds for one id (the scripts write it; the daemon reads it).
    Times in µs from the server clock; ``expires_at`` None means never."""

    id: str
    intent_id: str | None = None
    portfolio_id: str | None = None
    subscriber_id: str
    event_types: list[str] | None = None
    webhook_url: str
    secret: str
    expires_at: int | None = None
    created_at: int = 0
    created_by: str = ""

    def matches(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def expired(self, now_us: int) -> bool:
        return self.expires_at is not None and self.expires_at <= now_us


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription as RFC-0006 shows it. ``secret`` is set only on the result of
    ``subscribe`` (shown once); ``active`` is false once ``expires_at`` has passed by the
    server's clock."""

    id: str
    intent_id: str | None = None
    portfolio_id: str | None = None
    subscriber_id: str
    event_types: list[str] | None = None
    webhook_url: str
    active: bool = True
    expires_at: datetime | None = None
    created_at: datetime
    created_by: str = ""
    secret: str | None = None

    @property
    def callback_url(self) -> str:
        """The seed SDK's name for ``webhook_url``."""
        return self.webhook_url


def check_url(value: object) -> str:
    """An absolute http(s) URL with a host, of printable ASCII (IDNs in their xn-- form),
    at most ``URL_BYTES`` long. Where it may point (no private addresses) is decided at
    delivery time, when the host is resolved."""
    if not isinstance(value, str) or not value:
        raise ValidationError("webhook_url must be a non-empty string", field="webhook_url")
    if len(value) > URL_BYTES:
        raise ValidationError(
            f"webhook_url is over {URL_BYTES} characters", field="webhook_url", limit=URL_BYTES
        )
    if _URL_TEXT.fullmatch(value) is None:
        raise ValidationError(
            "webhook_url must be printable ASCII without spaces", field="webhook_url"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError(f"webhook_url is malformed ({exc})", field="webhook_url") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            "webhook_url must be an http:// or https:// URL with a host", field="webhook_url"
        )
    return value


def _event_types(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError("event_types must be a list of event types", field="event_types")
    types = [str(check_text(t, "event_types", 64)) for t in value]
    if not types:
        raise ValidationError(
            "event_types must name at least one type (None takes every type)",
            field="event_types",
        )
    if len(types) > EVENT_TYPES:
        raise ValidationError(f"event_types takes at most {EVENT_TYPES} types", field="event_types")
    if len(set(types)) != len(types):
        raise ValidationError("event_types lists a type twice", field="event_types")
    return types


def _secret(value: object) -> str:
    if value is None:
        return secrets.token_urlsafe(32)
    text = check_text(value, "secret", SECRET_BYTES)
    if len(text.encode()) < SECRET_MIN_BYTES:
        raise ValidationError(f"secret must be at least {SECRET_MIN_BYTES} bytes", field="secret")
    return text


_record_encoder = msgspec.json.Encoder()


def create_subscription_call(
    ks: Keyspace,
    actor: str,
    subscription_id: str,
    *,
    intent_id: str | None,
    portfolio_id: str | None,
    subscriber_id: object,
    webhook_url: object,
    event_types: object,
    expires_at: object,
    secret: object,
) -> Call:
    """The ``create_subscription`` call; ``created`` turns its reply into the result. The
    record travels as JSON text without ``created_at``, which the script adds from the
    server clock."""
    check_id(subscription_id, "subscription_id")
    if intent_id is not None and portfolio_id is not None:
        raise ValidationError(
            "give intent_id or portfolio_id (or neither, for every event), not both",
            field="portfolio_id",
        )
    if intent_id is not None:
        check_id(intent_id)
    if portfolio_id is not None:
        check_id(portfolio_id, "portfolio_id")
    expires = None if expires_at is None else to_micros(expires_at, "expires_at")
    record = StoredSubscription(
        id=subscription_id,
        intent_id=intent_id,
        portfolio_id=portfolio_id,
        subscriber_id=check_text(subscriber_id, "subscriber_id", 256),
        event_types=_event_types(event_types),
        webhook_url=check_url(webhook_url),
        secret=_secret(secret),
        expires_at=expires,
        created_by=actor,
    )
    fields = msgspec.structs.asdict(record)
    del fields["created_at"]  # the script writes it, from the server's clock
    if intent_id is not None:
        kind, scope = "i", intent_id
    elif portfolio_id is not None:
        kind, scope = "p", portfolio_id
    else:
        kind, scope = "g", ""
    return Call(
        "create_subscription",
        [ks.subscriptions, ks.subscription_index(intent_id, portfolio_id)],
        [
            subscription_id,
            kind,
            scope,
            record.webhook_url,
            "" if expires is None else str(expires),
            _record_encoder.encode(fields).decode(),
        ],
    )


_stored_decoder = msgspec.json.Decoder(StoredSubscription)


def decode_record(text: str, subscription_id: str) -> StoredSubscription:
    try:
        return _stored_decoder.decode(text)
    except STORED_ERRORS as exc:
        raise unreadable(f"subscription {subscription_id}", exc) from exc


def public(record: StoredSubscription, now_us: int, *, with_secret: bool = False) -> Subscription:
    """What a caller sees of a stored record: the secret only when just created."""
    return Subscription(
        id=record.id,
        intent_id=record.intent_id,
        portfolio_id=record.portfolio_id,
        subscriber_id=record.subscriber_id,
        event_types=record.event_types,
        webhook_url=record.webhook_url,
        active=not record.expired(now_us),
        expires_at=None if record.expires_at is None else to_datetime(record.expires_at),
        created_at=to_datetime(record.created_at),
        created_by=record.created_by,
        secret=record.secret if with_secret else None,
    )


def created(call: Call, created_at: int) -> Subscription:
    """The result of ``subscribe``: the record sent and the creation time the script
    replied with, secret included (the only time it is shown)."""
    record = msgspec.structs.replace(
        decode_record(call.args[5], call.args[0]), created_at=created_at
    )
    return public(record, created_at, with_secret=True)


def remove_subscription_call(
    ks: Keyspace, record: StoredSubscription, *, only_expired: bool = False
) -> Call:
    """The ``remove_subscription`` call for a record read beforehand (the record names the
    index key; the script checks that it still does). ``only_expired``: remove it only if
    it has expired by the server's clock (the daemon's clean-up), else do nothing."""
    return Call(
        "remove_subscription",
        [ks.subscriptions, ks.subscription_index(record.intent_id, record.portfolio_id)],
        [record.id, "expired" if only_expired else "any"],
    )
