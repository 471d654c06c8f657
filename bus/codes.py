"""The one table of script error codes, and the translation of a script's error reply
(``OIBUS <CODE> <json details>``) into the exception that code stands for."""

from __future__ import annotations

from typing import Any

import msgspec

from oibus.bus import errors as e

PREFIX = "OIBUS "

CODES: dict[str, type[e.OpenIntentError]] = {
    "INVALID": e.ValidationError,
    "PATCH": e.PatchError,
    "TOO_LARGE": e.PayloadTooLargeError,
    "NOT_FOUND": e.NotFoundError,
    "CONFLICT": e.ConflictError,
    "LEASE_CONFLICT": e.LeaseConflictError,
    "LEASE_EXPIRED": e.LeaseExpiredError,
    "EXISTS": e.AlreadyExistsError,
    "TRANSITION": e.InvalidTransitionError,
    "BUDGET_EXCEEDED": e.BudgetExceededError,
    "CLOSED": e.IntentClosedError,
    "CYCLE": e.CycleError,
    "GATED": e.CompletionGateError,
}


def from_reply(text: str) -> e.OpenIntentError:
    """Map an error reply to its exception; anything unrecognised is a ScriptError (a bug),
    never silently a generic failure."""
    if not text.startswith(PREFIX):
        return e.ScriptError(f"script failed: {text}")
    code, _, raw = text[len(PREFIX) :].partition(" ")
    cls = CODES.get(code)
    try:
        details: dict[str, Any] = msgspec.json.decode(raw) if raw else {}
    except msgspec.DecodeError:
        details = {"message": raw}
    if cls is None or not isinstance(details, dict):
        return e.ScriptError(f"script failed with unknown code {code}: {raw}")
    message = str(details.pop("message", code))
    if cls is e.NotFoundError:
        return e.NotFoundError(
            message, resource=str(details.get("resource", "intent")), id=details.get("id")
        )
    if issubclass(cls, e.ConflictError):
        return cls(message, current_version=details.pop("current_version", None), **details)
    if cls is e.CompletionGateError:
        # cjson writes an empty list as {}
        return e.CompletionGateError(
            message,
            from_status=details.get("from_status"),
            to_status=details.get("to_status"),
            unmet_dependencies=list(details.get("unmet_dependencies") or []),
            open_children=list(details.get("open_children") or []),
            open_children_count=int(details.get("open_children_count") or 0),
        )
    if cls is e.InvalidTransitionError:
        return e.InvalidTransitionError(
            message, from_status=details.get("from_status"), to_status=details.get("to_status")
        )
    if issubclass(cls, e.ValidationError):
        return cls(message, field=details.pop("field", None), **details)
    return cls(message, **details)
