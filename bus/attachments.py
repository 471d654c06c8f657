"""Attachments (RFC-0005): files on intents, inline (base64, at most ``ATTACHMENT_BYTES`` of
base64 text) or by reference (``storage_url``). The record, the calls that add and delete
one (validated here, then again by the scripts) and the decoder. Pure: no I/O.

Metadata lives in the intent's ``at`` hash and inline content in its ``ac`` hash, so a
listing never reads content.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_json, check_text
from oibus.bus.codec import STORED_ERRORS, to_datetime, unreadable
from oibus.bus.errors import BusError, PayloadTooLargeError, ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.ops import Call

__all__ = ["ATTACHMENTS_PER_INTENT", "URL_BYTES", "Attachment"]

ATTACHMENTS_PER_INTENT: Final = 256
"""Attachments one intent holds (``ATT_PER_INTENT`` in lua/includes/att_checks.lua)."""
URL_BYTES: Final = 2048
"""Longest storage_url (``ATT_URL_BYTES``)."""
SIZE_MAX: Final = 10**15
DEFAULT_MIME_TYPE: Final = "application/octet-stream"

_MIME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;[\x20-\x7e]*)?"
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COUNTS = ("width", "height", "pages")
_AMOUNTS = ("duration", "frame_rate")

Source = Literal["inline", "url"]


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file attached to an intent (RFC-0005). Inline content (``storage_url`` is None)
    is read with ``get_attachment_content``; its ``size`` is the decoded byte count.
    ``metadata`` holds RFC-0005's content-specific fields (width, height, duration, pages,
    encoding, frame_rate) and any others."""

    id: str
    intent_id: str
    filename: str
    mime_type: str
    size: int | None = None
    storage_url: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    uploaded_by: str
    created_at: datetime

    @property
    def content_type(self) -> str:
        """The seed client's name for ``mime_type``."""
        return self.mime_type

    @property
    def inline(self) -> bool:
        return self.storage_url is None


def check_metadata(metadata: object) -> str:
    """RFC-0005's fields must have their types (null allowed); other keys are free."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise ValidationError("metadata must be a mapping with string keys", field="metadata")
    for key, value in metadata.items():
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (isinstance(value, float) and math.isfinite(value))
        if key in _COUNTS:
            ok = (whole or (number and float(value).is_integer())) and value >= 0
        elif key in _AMOUNTS:
            ok = number and value >= 0
        elif key == "encoding":
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            kind = {"encoding": "a string"}.get(key, "a non-negative number")
            if key in _COUNTS:
                kind = "a non-negative integer"
            raise ValidationError(f"metadata.{key} must be {kind} or None", field="metadata")
    return check_json(dict(metadata), "metadata", limits.TEXT_BYTES)


def _mime(content_type: str | None, mime_type: str | None) -> str:
    if content_type is not None and mime_type is not None and content_type != mime_type:
        raise ValidationError("content_type and mime_type disagree; give one", field="mime_type")
    value = content_type if content_type is not None else mime_type
    if value is None:
        return DEFAULT_MIME_TYPE
    if not isinstance(value, str) or len(value) > 255 or _MIME.fullmatch(value) is None:
        raise ValidationError(
            "mime_type must be type/subtype, like application/pdf", field="mime_type"
        )
    return value


def _content(content_base64: object, size: int | None) -> tuple[str, str]:
    """The base64 text and its decoded size, both checked."""
    if isinstance(content_base64, bytes | bytearray):
        try:
            content_base64 = bytes(content_base64).decode("ascii")
        except UnicodeDecodeError:
            raise ValidationError(
                "content_base64 is not base64 text", field="content_base64"
            ) from None
    if not isinstance(content_base64, str):
        raise ValidationError("content_base64 must be base64 text", field="content_base64")
    if len(content_base64) > limits.ATTACHMENT_BYTES:
        raise PayloadTooLargeError(
            f"content_base64 is {len(content_base64)} bytes; the limit is "
            f"{limits.ATTACHMENT_BYTES}",
            field="content_base64",
            limit=limits.ATTACHMENT_BYTES,
            size=len(content_base64),
        )
    if not content_base64.isascii() or len(content_base64) % 4:
        raise ValidationError("content_base64 is not base64 text", field="content_base64")
    try:
        decoded = len(base64.b64decode(content_base64, validate=True))
    except (binascii.Error, ValueError):
        raise ValidationError("content_base64 is not base64 text", field="content_base64") from None
    if size is not None and size != decoded:
        raise ValidationError(
            f"size {size} does not match the content's {decoded} bytes", field="size"
        )
    return content_base64, str(decoded)


def add_attachment(
    ks: Keyspace,
    actor: str,
    intent_id: str,
    attachment_id: str,
    *,
    filename: str,
    content_type: str | None,
    content_base64: str | bytes | None,
    storage_url: str | None,
    description: str | None,
    metadata: Mapping[str, Any] | None,
    mime_type: str | None,
    size: int | None,
) -> Call:
    check_id(intent_id)
    check_id(attachment_id, "attachment_id")
    check_text(filename, "filename", limits.TITLE_BYTES)
    if _CONTROL.search(filename):
        raise ValidationError("filename must not hold control characters", field="filename")
    mime = _mime(content_type, mime_type)
    if size is not None and (
        isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < SIZE_MAX
    ):
        raise ValidationError("size must be a whole number of bytes (or None)", field="size")
    if (content_base64 is None) == (storage_url is None):
        raise ValidationError(
            "give exactly one of content_base64 (inline) or storage_url",
            field="content_base64" if content_base64 is None else "storage_url",
        )
    source: Source
    if content_base64 is not None:
        source = "inline"
        content, size_text = _content(content_base64, size)
        url = ""
    else:
        source = "url"
        content = ""
        url = check_text(storage_url, "storage_url", URL_BYTES)
        if _URL.fullmatch(url) is None:
            raise ValidationError(
                "storage_url must be an absolute URL (scheme:...)", field="storage_url"
            )
        size_text = "" if size is None else str(size)
    desc = "" if description is None else check_text(description, "description", limits.TEXT_BYTES)
    meta = check_metadata(metadata)
    ik, _, ek, bk = ks.intent_keys(intent_id)
    return Call(
        "add_attachment",
        [ik, ks.attachments(intent_id), ks.attachment_content(intent_id), ek, bk],
        [
            intent_id,
            attachment_id,
            filename,
            mime,
            source,
            content,
            url,
            size_text,
            desc,
            meta,
            actor,
        ],
    )


def delete_attachment(ks: Keyspace, actor: str, intent_id: str, attachment_id: str) -> Call:
    check_id(intent_id)
    check_id(attachment_id, "attachment_id")
    ik, _, ek, bk = ks.intent_keys(intent_id)
    return Call(
        "delete_attachment",
        [ik, ks.attachments(intent_id), ks.attachment_content(intent_id), ek, bk],
        [intent_id, attachment_id, actor],
    )


class _AttachmentWire(msgspec.Struct):
    id: str
    filename: str
    mime_type: str
    size: int | None
    storage_url: str | None
    description: str | None
    metadata: dict[str, Any]
    uploaded_by: str
    created_us: str


_decoder = msgspec.json.Decoder(_AttachmentWire)


def decode_attachment(text: str, intent_id: str) -> Attachment:
    try:
        w = _decoder.decode(text)
        return Attachment(
            id=w.id,
            intent_id=intent_id,
            filename=w.filename,
            mime_type=w.mime_type,
            size=w.size,
            storage_url=w.storage_url,
            description=w.description,
            metadata=w.metadata,
            uploaded_by=w.uploaded_by,
            created_at=to_datetime(w.created_us),
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"an attachment of {intent_id}", exc) from exc


def decode_content(text: str, intent_id: str, attachment_id: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BusError(
            f"attachment {attachment_id} of {intent_id} has unreadable content: {exc}"
        ) from exc
