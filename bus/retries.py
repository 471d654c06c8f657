"""Retry policies and failure records (RFC-0010): the records, the argument checks and
call builders of ``set_retry_policy`` and ``record_failure``, the decoders of what they
store, and the delay formula. Pure: no I/O.

Semantics, in one place:

- **Attempts** are numbered per intent from 1 with no gaps: the *n*-th failure recorded
  is attempt *n*. ``max_retries`` retries follow the first attempt, so failures 1 ..
  ``max_retries`` schedule a retry and failure ``max_retries + 1`` exhausts the budget
  (``max_attempts``, the seed's name, is ``max_retries + 1``).
- **Retryable** errors: every error when the policy's ``retryable_errors`` is ``None``;
  else those whose code (``error_code``, or the seed's ``error_type``) equals an entry,
  ignoring ASCII case (``"rate_limit"`` matches ``"RATE_LIMIT"``). A failure without a
  code is then not retryable.
- **Delay** before the retry of attempt *n*: :func:`retry_delay_ms`; the script
  (``lua/includes/retry_policy.lua``) computes the same milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, get_args

import msgspec

from oibus.bus import limits
from oibus.bus.checks import check_text
from oibus.bus.codec import STORED_ERRORS, json_text, to_datetime, unreadable
from oibus.bus.errors import PayloadTooLargeError, ValidationError
from oibus.bus.keyspace import Keyspace, check_id
from oibus.bus.ops import Call

__all__ = [
    "FailureArgs",
    "FailureRecord",
    "RetryPolicy",
    "RetryStrategy",
    "check_failure",
    "check_policy",
    "decode_failure",
    "decode_policy",
    "dispatch_retry_call",
    "pairs",
    "record_failure_call",
    "recorded_failure",
    "retry_delay_ms",
    "set_policy_call",
    "trigger_fallback_call",
]

RetryStrategy = Literal["none", "fixed", "exponential", "linear"]
STRATEGIES: Final = get_args(RetryStrategy)

# Mirrors of lua/includes/retry_policy.lua (a test keeps the two equal).
MAX_RETRIES: Final = 1000
MAX_DELAY_MS: Final = 604_800_000
"""Longest delay a policy may name: 7 days."""
MAX_MULTIPLIER: Final = 100
MAX_ERRORS: Final = 64
ERROR_BYTES: Final = 128
MAX_THRESHOLD: Final = 1_000_000

_DEFAULT_RETRIES: Final = 3
_DEFAULT_BASE_SECONDS: Final = 1.0
_DEFAULT_MAX_SECONDS: Final = 60.0


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """An intent's retry policy (RFC-0010). Delays are whole milliseconds; the seed's
    names (``max_attempts``, ``base_delay_seconds``, ``max_delay_seconds``) read as
    properties. ``retryable_errors`` ``None`` means every error is retryable.
    ``failure_threshold`` is stored for the daemon; ``set_by``/``set_at`` say who set
    the policy and when (``None`` on a policy not read from the bus)."""

    intent_id: str
    strategy: RetryStrategy = "exponential"
    max_retries: int = _DEFAULT_RETRIES
    base_delay_ms: int = 1000
    max_delay_ms: int = 60_000
    backoff_multiplier: float = 2.0
    jitter: float = 0.0
    retryable_errors: list[str] | None = None
    fallback_agent_id: str | None = None
    failure_threshold: int | None = None
    set_by: str | None = None
    set_at: datetime | None = None

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def base_delay_seconds(self) -> float:
        return self.base_delay_ms / 1000

    @property
    def max_delay_seconds(self) -> float:
        return self.max_delay_ms / 1000


class FailureRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One failed attempt (RFC-0010). ``id`` is its entry id in the intent's failure
    stream (the paging cursor of ``get_failures``); ``retry_scheduled_at`` is when the
    retry is due, or ``None`` when none was scheduled."""

    id: str
    intent_id: str
    agent_id: str
    attempt_number: int
    error_code: str | None = None
    error_message: str = ""
    retry_scheduled_at: datetime | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    recorded_at: datetime

    @property
    def will_retry(self) -> bool:
        return self.retry_scheduled_at is not None

    @property
    def error_type(self) -> str | None:
        """The seed's name for ``error_code``."""
        return self.error_code

    @property
    def attempt(self) -> int:
        """The seed's name for ``attempt_number``."""
        return self.attempt_number


# -- the delay formula ------------------------------------------------------------------


def retry_delay_ms(policy: RetryPolicy, attempt: int, jitter_fraction: float) -> int:
    """Milliseconds from the failure of attempt ``attempt`` (1-based) to its retry.

    ``fixed``: base; ``linear``: base * attempt; ``exponential``: base *
    multiplier ** (attempt - 1), multiplied step by step and stopped at the cap. That is
    capped at ``max_delay_ms`` and floored, and ``floor(delay * jitter * jitter_fraction)``
    is added, ``jitter_fraction`` being a random draw in [0, 1): the jitter lengthens a
    delay by less than ``jitter`` of it. ``none`` never retries: 0.

    The same operations on the same doubles as the script, so both give the same number.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValidationError("attempt must be a positive integer", field="attempt")
    _check_draw(jitter_fraction)
    if policy.strategy == "none":
        return 0
    base, cap = float(policy.base_delay_ms), float(policy.max_delay_ms)
    delay = base
    if policy.strategy == "linear":
        delay = base * attempt
    elif policy.strategy == "exponential":
        for _ in range(attempt - 1):
            if delay >= cap:
                break
            delay = delay * policy.backoff_multiplier
    delay = min(delay, cap)
    return math.floor(delay) + math.floor(delay * policy.jitter * jitter_fraction)


def _check_draw(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value < 1
    ):
        raise ValidationError("jitter_fraction must be a number in [0, 1)", field="jitter_fraction")
    return float(value)


# -- set_retry_policy -------------------------------------------------------------------


def _whole(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{field} must be an integer from {low} to {high}", field=field)
    return value


def _real(value: object, field: str, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not low <= value <= high  # before isfinite: huge ints overflow float()
        or not math.isfinite(value)
    ):
        raise ValidationError(f"{field} must be a number from {low:g} to {high:g}", field=field)
    return float(value)


def _delay(seconds: object, ms: object, name: str, default: float) -> int:
    """A delay given in seconds (the seed) or milliseconds (RFC-0010); both given must
    agree unless the seconds are the untouched default."""
    field = f"{name}_ms"
    if ms is not None:
        whole = _whole(ms, field, 0, MAX_DELAY_MS)
        if seconds != default and _seconds_ms(seconds, name) != whole:
            raise ValidationError(f"{name}_seconds and {field} disagree; give one", field=field)
        return whole
    return _seconds_ms(seconds, name)


def _seconds_ms(seconds: object, name: str) -> int:
    field = f"{name}_seconds"
    ms = _real(seconds, field, 0.0, MAX_DELAY_MS / 1000) * 1000
    return round(ms)


def _retries(max_retries: object, max_attempts: object) -> int:
    if max_attempts is None:
        return _whole(max_retries, "max_retries", 0, MAX_RETRIES)
    attempts = _whole(max_attempts, "max_attempts", 1, MAX_RETRIES + 1)
    if max_retries != _DEFAULT_RETRIES and max_retries != attempts - 1:
        raise ValidationError(
            "max_attempts is max_retries + 1; these two disagree (give one)",
            field="max_attempts",
        )
    return attempts - 1


def _error_codes(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValidationError(
            "retryable_errors must be a list of error codes (or None)", field="retryable_errors"
        )
    codes = list(value)
    if len(codes) > MAX_ERRORS:
        raise ValidationError(
            f"retryable_errors takes at most {MAX_ERRORS} codes", field="retryable_errors"
        )
    for code in codes:
        _code(code, "retryable_errors")
    return codes


def _code(value: object, field: str) -> str:
    return check_text(value, field, ERROR_BYTES)


def _agent(value: object, field: str) -> str:
    return check_text(value, field, 256)


def check_policy(
    intent_id: str,
    *,
    strategy: object = "exponential",
    max_retries: object = _DEFAULT_RETRIES,
    base_delay_seconds: object = _DEFAULT_BASE_SECONDS,
    max_delay_seconds: object = _DEFAULT_MAX_SECONDS,
    backoff_multiplier: object = 2.0,
    jitter: object = 0.0,
    retryable_errors: object = None,
    fallback_agent_id: object = None,
    failure_threshold: object = None,
    max_attempts: object = None,
    base_delay_ms: object = None,
    max_delay_ms: object = None,
) -> RetryPolicy:
    """Every name the seed and RFC-0010 use, resolved to one policy; each field checked
    (``ValidationError`` with ``field=``) as the script will check it again."""
    check_id(intent_id)
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValidationError(f"unknown strategy; one of {', '.join(STRATEGIES)}", field="strategy")
    base = _delay(base_delay_seconds, base_delay_ms, "base_delay", _DEFAULT_BASE_SECONDS)
    cap = _delay(max_delay_seconds, max_delay_ms, "max_delay", _DEFAULT_MAX_SECONDS)
    if cap < base:
        raise ValidationError("max delay must not be below the base delay", field="max_delay_ms")
    return RetryPolicy(
        intent_id=intent_id,
        strategy=str(strategy),  # type: ignore[arg-type]
        max_retries=_retries(max_retries, max_attempts),
        base_delay_ms=base,
        max_delay_ms=cap,
        backoff_multiplier=_real(backoff_multiplier, "backoff_multiplier", 1.0, MAX_MULTIPLIER),
        jitter=_real(jitter, "jitter", 0.0, 1.0),
        retryable_errors=_error_codes(retryable_errors),
        fallback_agent_id=None
        if fallback_agent_id is None
        else _agent(fallback_agent_id, "fallback_agent_id"),
        failure_threshold=None
        if failure_threshold is None
        else _whole(failure_threshold, "failure_threshold", 1, MAX_THRESHOLD),
    )


def set_policy_call(keyspace: Keyspace, actor: str, policy: RetryPolicy) -> Call:
    """The ``set_retry_policy`` script call for a policy made by :func:`check_policy`."""
    ik, _, ek, bk = keyspace.intent_keys(policy.intent_id)
    codes = policy.retryable_errors
    return Call(
        "set_retry_policy",
        [ik, keyspace.retry_policy(policy.intent_id), ek, bk],
        [
            policy.intent_id,
            policy.strategy,
            str(policy.max_retries),
            str(policy.base_delay_ms),
            str(policy.max_delay_ms),
            repr(policy.backoff_multiplier),
            repr(policy.jitter),
            "" if codes is None else json_text(codes, "retryable_errors"),
            policy.fallback_agent_id or "",
            "" if policy.failure_threshold is None else str(policy.failure_threshold),
            actor,
        ],
    )


_codes_decoder = msgspec.json.Decoder(list[str])


def decode_policy(intent_id: str, fields: Mapping[str, str]) -> RetryPolicy:
    """The policy from its stored hash (``HGETALL``, or the script's flat reply made a
    mapping)."""
    try:
        codes = fields.get("retryable_errors")
        threshold = fields.get("failure_threshold")
        return RetryPolicy(
            intent_id=intent_id,
            strategy=fields["strategy"],  # type: ignore[arg-type]
            max_retries=int(fields["max_retries"]),
            base_delay_ms=int(fields["base_delay_ms"]),
            max_delay_ms=int(fields["max_delay_ms"]),
            backoff_multiplier=float(fields["backoff_multiplier"]),
            jitter=float(fields["jitter"]),
            retryable_errors=None if codes is None else _codes_decoder.decode(codes),
            fallback_agent_id=fields.get("fallback_agent_id"),
            failure_threshold=None if threshold is None else int(threshold),
            set_by=fields.get("set_by"),
            set_at=to_datetime(fields["set_at"]) if "set_at" in fields else None,
        )
    except STORED_ERRORS as exc:
        raise unreadable(f"the retry policy of {intent_id}", exc) from exc


def pairs(reply: Sequence[str]) -> dict[str, str]:
    """A flat ``[field, value, …]`` reply as a mapping."""
    return dict(zip(reply[::2], reply[1::2], strict=True))


# -- record_failure ---------------------------------------------------------------------


class FailureArgs(msgspec.Struct, frozen=True, kw_only=True):
    """What ``record_failure`` was asked to record, checked; with the script's reply it
    makes the ``FailureRecord`` without a read."""

    intent_id: str
    error_code: str | None
    error_message: str
    metadata: dict[str, Any]
    metadata_text: str


def check_failure(
    intent_id: str,
    *,
    error_type: object,
    error_code: object,
    error_message: object,
    metadata: object,
) -> FailureArgs:
    check_id(intent_id)
    if error_type is not None and error_code is not None and error_type != error_code:
        raise ValidationError(
            "error_type is the seed's name for error_code; these two disagree (give one)",
            field="error_code",
        )
    code = error_code if error_code is not None else error_type
    if code is not None:
        code = _code(code, "error_code")
    message = "" if error_message is None else error_message
    message = check_text(message, "error_message", limits.TEXT_BYTES, required=False)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValidationError("metadata must be a mapping", field="metadata")
    meta = dict(metadata or {})
    text = json_text(meta, "metadata")
    if len(text) > limits.PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"metadata is over {limits.PAYLOAD_BYTES} bytes",
            field="metadata",
            limit=limits.PAYLOAD_BYTES,
            size=len(text),
        )
    return FailureArgs(
        intent_id=intent_id,
        error_code=code,
        error_message=message,
        metadata=meta,
        metadata_text=text,
    )


def record_failure_call(
    keyspace: Keyspace,
    actor: str,
    failure: FailureArgs,
    *,
    attempt: object,
    will_retry: object,
    jitter_fraction: float,
) -> Call:
    """The ``record_failure`` script call. ``will_retry=False`` declines a retry whatever
    the policy says; ``True`` and ``None`` leave the decision to the policy (the record's
    ``retry_scheduled_at`` says what it was). ``jitter_fraction`` is the random draw in
    [0, 1) that the policy's jitter is scaled by."""
    if attempt is not None:
        _whole(attempt, "attempt", 1, 10**12 - 1)
    if will_retry is not None and not isinstance(will_retry, bool):
        raise ValidationError("will_retry must be True, False or None", field="will_retry")
    draw = _check_draw(jitter_fraction)
    intent_id = failure.intent_id
    ik, _, ek, bk = keyspace.intent_keys(intent_id)
    return Call(
        "record_failure",
        [
            ik,
            keyspace.retry_policy(intent_id),
            keyspace.failures(intent_id),
            ek,
            bk,
            keyspace.due_retries(keyspace.partition(intent_id)),
        ],
        [
            intent_id,
            "" if attempt is None else str(int(attempt)),  # type: ignore[call-overload]
            failure.error_code or "",
            failure.error_message,
            failure.metadata_text,
            "0" if will_retry is False else "",
            repr(draw),
            actor,
        ],
    )


def recorded_failure(failure: FailureArgs, actor: str, reply: Sequence[Any]) -> FailureRecord:
    """The record from what was sent and the script's reply (id, attempt, times)."""
    entry_id, attempt, at, retry_at = reply
    return FailureRecord(
        id=str(entry_id),
        intent_id=failure.intent_id,
        agent_id=actor,
        attempt_number=int(attempt),
        error_code=failure.error_code,
        error_message=failure.error_message,
        retry_scheduled_at=to_datetime(retry_at) if retry_at else None,
        metadata=failure.metadata,
        recorded_at=to_datetime(at),
    )


_metadata_decoder = msgspec.json.Decoder(dict[str, Any])


def decode_failure(intent_id: str, entry_id: str, fields: Mapping[str, str]) -> FailureRecord:
    """A record from its entry in the failure stream."""
    try:
        metadata = _metadata_decoder.decode(fields.get("md") or "{}")
    except (msgspec.MsgspecError, RecursionError):
        metadata = {"raw": fields.get("md", "")}
    retry_at, at = fields.get("r", ""), fields.get("at", "")
    return FailureRecord(
        id=entry_id,
        intent_id=intent_id,
        agent_id=fields.get("a", ""),
        attempt_number=int(fields.get("n") or 0),
        error_code=fields.get("c") or None,
        error_message=fields.get("m", ""),
        retry_scheduled_at=to_datetime(retry_at) if retry_at.isdigit() else None,
        metadata=metadata,
        recorded_at=to_datetime(at)
        if at.isdigit()
        else to_datetime(int(entry_id.split("-", maxsplit=1)[0]) * 1000),
    )


def dispatch_retry_call(keyspace: Keyspace, actor: str, intent_id: str, due_us: int) -> Call:
    """The daemon's dispatch of one due retry (``lua/dispatch_retry.lua``): ``due_us`` is
    the score it read, so a retry rescheduled meanwhile is left alone."""
    ks = keyspace
    check_id(intent_id)
    return Call(
        "dispatch_retry",
        [
            ks.intent(intent_id),
            ks.failures(intent_id),
            ks.events(intent_id),
            ks.bus(ks.partition(intent_id)),
            ks.due_retries(ks.partition(intent_id)),
        ],
        [intent_id, str(int(due_us)), actor],
    )


def trigger_fallback_call(keyspace: Keyspace, actor: str, intent_id: str) -> Call:
    """Hand an exhausted intent to its fallback agent (``lua/trigger_fallback.lua``)."""
    ks = keyspace
    check_id(intent_id)
    return Call(
        "trigger_fallback",
        [
            ks.intent(intent_id),
            ks.retry_policy(intent_id),
            ks.events(intent_id),
            ks.bus(ks.partition(intent_id)),
        ],
        [intent_id, actor],
    )
