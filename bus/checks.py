"""Argument checks every capability shares, so that the same kind of bad input gets the
same error everywhere (and the scripts, which check again, never see what these refuse)."""

from __future__ import annotations

import re
from typing import Any

from oibus.bus.codec import json_text
from oibus.bus.errors import PayloadTooLargeError, ValidationError

_LINE_BREAKERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_text(
    value: object, field: str, max_bytes: int, *, required: bool = True, line: bool = False
) -> str:
    """A string of at most ``max_bytes`` UTF-8 bytes (non-empty unless ``required=False``);
    a lone surrogate cannot be sent as UTF-8 and is refused here, not by redis-py. NUL is
    refused everywhere (C readers of the data stop at it); with ``line``, every control
    character and line separator too (a title is one line: a newline in it forges lines
    in whatever lists it)."""
    if not isinstance(value, str) or (required and not value):
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    if "\x00" in value:
        raise ValidationError(f"{field} contains a NUL character", field=field)
    if line and _LINE_BREAKERS.search(value):
        raise ValidationError(f"{field} must be one line without control characters", field=field)
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValidationError(f"{field} is not valid text (lone surrogate)", field=field) from None
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{field} is over {max_bytes} bytes", field=field, limit=max_bytes, size=size
        )
    return value


def check_json(value: Any, field: str, max_bytes: int) -> str:
    """``value`` as JSON text of at most ``max_bytes`` bytes."""
    text = json_text(value, field)
    size = len(text.encode())
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{field} is over {max_bytes} bytes", field=field, limit=max_bytes, size=size
        )
    return text
