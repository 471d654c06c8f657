"""Retry policies and failures (RFC-0010) on the async client: set and read a policy,
record a failure (the script decides whether and when it is retried), page the history."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, cast

from oibus.bus.errors import NotFoundError
from oibus.bus.keyspace import check_id
from oibus.bus.listing import check_event_cursor, check_limit
from oibus.bus.models import Page
from oibus.bus.retries import (
    FailureRecord,
    RetryPolicy,
    check_failure,
    check_policy,
    decode_failure,
    decode_policy,
    pairs,
    record_failure_call,
    recorded_failure,
    set_policy_call,
)
from oibus.sdk._async.base import AsyncClientBase


class AsyncRetriesMixin(AsyncClientBase):
    async def set_retry_policy(
        self,
        intent_id: str,
        strategy: str = "exponential",
        max_retries: int = 3,
        base_delay_seconds: float = 1.0,
        max_delay_seconds: float = 60.0,
        backoff_multiplier: float = 2.0,
        jitter: float = 0.0,
        retryable_errors: Sequence[str] | None = None,
        fallback_agent_id: str | None = None,
        failure_threshold: int | None = None,
        *,
        max_attempts: int | None = None,
        base_delay_ms: int | None = None,
        max_delay_ms: int | None = None,
    ) -> RetryPolicy:
        """Set (or replace) the intent's retry policy. ``strategy`` is ``none``,
        ``fixed``, ``exponential`` or ``linear``; ``max_attempts`` (the seed's name) is
        ``max_retries + 1``; delays may be given in seconds or, as RFC-0010 does, in
        milliseconds (``base_delay_ms``, ``max_delay_ms``). ``jitter`` (0-1) adds up to
        that fraction of each delay at random. ``retryable_errors`` ``None`` retries
        every error; a list retries only those codes (ASCII case ignored)."""
        policy = check_policy(
            intent_id,
            strategy=strategy,
            max_retries=max_retries,
            base_delay_seconds=base_delay_seconds,
            max_delay_seconds=max_delay_seconds,
            backoff_multiplier=backoff_multiplier,
            jitter=jitter,
            retryable_errors=retryable_errors,
            fallback_agent_id=fallback_agent_id,
            failure_threshold=failure_threshold,
            max_attempts=max_attempts,
            base_delay_ms=base_delay_ms,
            max_delay_ms=max_delay_ms,
        )
        reply = await self._run(set_policy_call(self.keyspace, self._ops.actor, policy))
        return decode_policy(intent_id, pairs(reply))

    async def get_retry_policy(self, intent_id: str) -> RetryPolicy | None:
        """The intent's policy, or ``None`` when it has none (NotFoundError when the
        intent does not exist)."""
        key = self.keyspace.retry_policy(check_id(intent_id))
        raw = await self._runner.command("HGETALL", key)
        fields = cast("dict[str, str]", raw if isinstance(raw, dict) else pairs(raw))
        if fields:
            return decode_policy(intent_id, fields)
        await _require_intent(self, intent_id)
        return None

    async def record_failure(
        self,
        intent_id: str,
        error_type: str | None = None,
        error_message: str = "",
        attempt: int | None = None,
        will_retry: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        error_code: str | None = None,
    ) -> FailureRecord:
        """Record a failed attempt of this client's agent. The attempt number is the
        next one of the intent (a given ``attempt`` must be that number: ConflictError
        otherwise). The intent's policy decides, in the same atomic step, whether a
        retry is due and when (``retry_scheduled_at``); ``will_retry=False`` declines
        one. ``error_type`` is the seed's name for ``error_code``."""
        failure = check_failure(
            intent_id,
            error_type=error_type,
            error_code=error_code,
            error_message=error_message,
            metadata=metadata,
        )
        call = record_failure_call(
            self.keyspace,
            self._ops.actor,
            failure,
            attempt=attempt,
            will_retry=will_retry,
            jitter_fraction=random.random(),  # jitter, not a secret
        )
        return recorded_failure(failure, self._ops.actor, await self._run(call))

    async def get_failures(
        self, intent_id: str, limit: int = 100, cursor: str | None = None
    ) -> Page[FailureRecord]:
        """The intent's failures, oldest first; pass ``next_cursor`` back as ``cursor``."""
        key = self.keyspace.failures(check_id(intent_id))
        check_limit(limit)
        low = "-" if cursor is None else "(" + check_event_cursor(cursor, "cursor")
        raw = await self._runner.command("XRANGE", key, low, "+", "COUNT", limit)
        entries = cast("list[tuple[str, dict[str, str]]]", raw)
        records = [decode_failure(intent_id, entry_id, fields) for entry_id, fields in entries]
        if not entries and cursor is None:
            await _require_intent(self, intent_id)
        return Page(records, entries[-1][0] if len(entries) == limit else None)


async def _require_intent(client: AsyncClientBase, intent_id: str) -> None:
    if not await client._runner.command("EXISTS", client.keyspace.intent(intent_id)):
        raise NotFoundError(f"intent {intent_id} does not exist", id=intent_id)
