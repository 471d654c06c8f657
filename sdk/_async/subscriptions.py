"""Subscriptions (RFC-0006) on the async client: subscribe a webhook to an intent, a
portfolio or every event, list subscriptions, unsubscribe. Deliveries are the daemon's
(``oibus.daemon.webhooks``); the rules are in ``oibus.bus.subscriptions`` and
docs/webhooks.md."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from oibus.bus.errors import NotFoundError, ValidationError
from oibus.bus.keyspace import check_id
from oibus.bus.subscriptions import (
    StoredSubscription,
    Subscription,
    create_subscription_call,
    created,
    decode_record,
    public,
    remove_subscription_call,
)
from oibus.bus.webhooks import POLICY_FIELD, allows_private, policy_name
from oibus.sdk._async.addresses import url_refusal
from oibus.sdk._async.base import AsyncClientBase


class AsyncSubscriptionsMixin(AsyncClientBase):
    async def subscribe(
        self,
        intent_id: str | None = None,
        portfolio_id: str | None = None,
        *,
        subscriber_id: str | None = None,
        webhook_url: str | None = None,
        callback_url: str | None = None,
        event_types: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> Subscription:
        """Subscribe ``webhook_url`` (or the seed SDK's ``callback_url``) to the events of
        an intent, of a portfolio (its own and its members'), or of the whole namespace
        (neither given), optionally only ``event_types``, until ``expires_at``. The
        result carries the HMAC ``secret`` that signs every delivery (generated unless
        given): it is shown this once. NotFoundError for an unknown intent or portfolio
        (neither is ever deleted, so checking first is exact)."""
        if webhook_url is not None and callback_url is not None and webhook_url != callback_url:
            raise ValidationError(
                "give webhook_url or callback_url (the same thing), not both",
                field="callback_url",
            )
        call = create_subscription_call(
            self.keyspace,
            self._ops.actor,
            str(uuid.uuid4()),
            intent_id=intent_id,
            portfolio_id=portfolio_id,
            subscriber_id=self.agent_id if subscriber_id is None else subscriber_id,
            webhook_url=webhook_url if webhook_url is not None else callback_url,
            event_types=event_types,
            expires_at=expires_at,
            secret=secret,
        )
        if intent_id is not None:
            await self._check_scope(self.keyspace.intent(intent_id), "intent", intent_id)
        elif portfolio_id is not None:
            await self._check_scope(
                self.keyspace.portfolio(portfolio_id), "portfolio", portfolio_id
            )
        await self._check_address(call.args[3])
        return created(call, int(await self._run(call)))

    async def _check_address(self, url: str) -> None:
        """Refuse now what the namespace's daemons would refuse at every delivery (and
        dead-letter): a host that resolves to a private address under a public-only
        policy. A name that does not resolve yet is left to the daemons' check."""
        recorded = await self._runner.command("HGET", self.keyspace.meta, POLICY_FIELD)
        try:
            refusal = await url_refusal(url, allows_private(recorded))
        except OSError:
            return
        if refusal is not None:
            raise ValidationError(f"webhook_url: {refusal}", field="webhook_url")

    async def set_webhook_policy(self, allow_private: bool) -> str:
        """Set the namespace's webhook address policy (an operator's call: restart the
        daemons afterwards, each reads it when it starts and refuses to run with another
        one). Returns the policy's name."""
        name = policy_name(allow_private)
        await self._runner.command("HSET", self.keyspace.meta, POLICY_FIELD, name)
        return name

    async def get_webhook_policy(self) -> str:
        """The namespace's webhook address policy: ``public`` (the default) or
        ``private``."""
        recorded = await self._runner.command("HGET", self.keyspace.meta, POLICY_FIELD)
        return policy_name(allows_private(recorded))

    async def get_subscriptions(
        self,
        intent_id: str | None = None,
        portfolio_id: str | None = None,
        subscriber_id: str | None = None,
    ) -> list[Subscription]:
        """Active subscriptions, oldest first: those of an intent or of a portfolio, or of
        every scope when neither is given; ``subscriber_id`` narrows the list further.
        Expired ones are left out (the daemon removes them). Secrets are never listed."""
        if intent_id is not None and portfolio_id is not None:
            raise ValidationError("give intent_id or portfolio_id, not both", field="portfolio_id")
        subs = self.keyspace.subscriptions
        if intent_id is None and portfolio_id is None:
            # every scope: the namespace holds at most SUBSCRIPTIONS records
            raw, now = await self._runner.commands([("HGETALL", subs), ("TIME",)])
            texts = cast("dict[str, str]", raw)
        else:
            if intent_id is not None:
                check_id(intent_id)
            else:
                check_id(portfolio_id, "portfolio_id")
            index = self.keyspace.subscription_index(intent_id, portfolio_id)
            ids = sorted(cast("set[str]", await self._runner.command("SMEMBERS", index)))
            if not ids:
                return []
            values, now = await self._runner.commands([("HMGET", subs, *ids), ("TIME",)])
            pairs = zip(ids, cast("list[str | None]", values), strict=True)
            texts = {i: text for i, text in pairs if text is not None}
        now_us = int(now[0]) * 1_000_000 + int(now[1])
        records = [decode_record(text, i) for i, text in texts.items()]
        return [
            public(r, now_us)
            for r in sorted(records, key=lambda r: (r.created_at, r.id))
            if not r.expired(now_us) and subscriber_id in (None, r.subscriber_id)
        ]

    async def unsubscribe(self, subscription_id: str, scoped_id: str | None = None) -> None:
        """Remove a subscription: the daemon queues nothing more for it and drops what it
        had queued. NotFoundError when there is no such subscription.

        The seed's form ``unsubscribe(intent.id, subscription.id)`` is accepted too: with a
        second argument, the first names the intent (or portfolio) the subscription must
        be scoped to, and a subscription of another scope is NotFoundError."""
        if scoped_id is None:
            record = await self._subscription(subscription_id)
        else:
            scope, record = subscription_id, await self._subscription(scoped_id)
            if scope not in (record.intent_id, record.portfolio_id):
                raise NotFoundError(
                    f"subscription {scoped_id} is not one of {scope}'s",
                    resource="subscription",
                    id=scoped_id,
                )
        await self._run(remove_subscription_call(self.keyspace, record))

    async def _subscription(self, subscription_id: str) -> StoredSubscription:
        check_id(subscription_id, "subscription_id")
        text = await self._runner.command("HGET", self.keyspace.subscriptions, subscription_id)
        if text is None:
            raise NotFoundError(
                f"subscription {subscription_id} does not exist",
                resource="subscription",
                id=subscription_id,
            )
        return decode_record(cast("str", text), subscription_id)

    async def _check_scope(self, key: str, resource: str, scope_id: str) -> None:
        if not await self._runner.command("EXISTS", key):
            raise NotFoundError(
                f"{resource} {scope_id} does not exist", resource=resource, id=scope_id
            )
