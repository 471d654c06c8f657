"""Leases (RFC-0003): fencing, expiry decided by the server clock at the edge, owners,
governance, history, lease-guarded state writes, and the lease() context managers."""

from __future__ import annotations

import itertools
import json
import time

import anyio
import pytest
import redis
from helpers import event_types

from oibus import (
    AsyncClient,
    Client,
    LeaseConflictError,
    LeaseExpiredError,
    LeaseLostError,
    NotFoundError,
    ValidationError,
)


def test_acquire_returns_a_fenced_lease(client: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "content.draft", duration_seconds=30)
    assert (lease.intent_id, lease.agent_id, lease.scope, lease.status) == (
        intent.id,
        "tester",
        "content.draft",
        "active",
    )
    assert lease.fencing_token == 1
    assert 29 < (lease.expires_at - lease.acquired_at).total_seconds() <= 30
    event = client.get_events(intent.id, event_type="lease_acquired")[0]
    assert event.payload["lease_id"] == lease.id
    assert event.payload["fencing_token"] == 1
    assert client.get_intent(intent.id).version == 1  # leases are not state


def test_a_live_lease_excludes_everyone_else(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "s", 30)
    with pytest.raises(LeaseConflictError) as info:
        other.acquire_lease(intent.id, "s", 30)
    assert info.value.holder == "tester"
    assert info.value.expires_at is not None
    with pytest.raises(LeaseConflictError):  # the holder itself: a second acquire conflicts
        client.acquire_lease(intent.id, "s", 30)
    assert other.acquire_lease(intent.id, "other-scope", 30).fencing_token == 1
    live = client.get_leases(intent.id)
    assert {(x.scope, x.agent_id) for x in live} == {("s", "tester"), ("other-scope", "rival")}
    assert lease.id in {x.id for x in live}


def test_retried_acquire_returns_the_same_lease(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    call = client._ops.acquire_lease(intent.id, "s", "fixed-lease", 30)
    first = client._runner.call(call)
    assert client._runner.call(call) == first
    with pytest.raises(LeaseConflictError):
        other._runner.call(other._ops.acquire_lease(intent.id, "s", "fixed-lease", 30))


def test_expiry_is_decided_at_the_edge(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "s", 0.2)
    time.sleep(0.25)
    with pytest.raises(LeaseExpiredError):
        client.renew_lease(intent.id, lease.id, 30)
    with pytest.raises(LeaseExpiredError):
        client.release_lease(intent.id, lease.id)
    assert client.get_leases(intent.id) == []
    history = client.get_leases(intent.id, include_history=True)
    assert [(x.id, x.status) for x in history] == [(lease.id, "expired")]
    second = other.acquire_lease(intent.id, "s", 30)  # at once, no sweep needed
    assert second.fencing_token == 2
    assert event_types(client, intent.id).count("lease_expired") == 1
    # superseded (issue 15.8: this was a NotFoundError): it expired, and says by whom
    with pytest.raises(LeaseExpiredError, match=r"superseded by lease .* of rival") as caught:
        client.renew_lease(intent.id, lease.id, 30)
    assert caught.value.holder == other.agent_id
    with pytest.raises(LeaseExpiredError):
        client.release_lease(intent.id, lease.id)
    with pytest.raises(NotFoundError):  # an id that never was a lease here
        client.renew_lease(intent.id, "no-such-lease", 30)


def test_lease_expired_is_recorded_exactly_once(client: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "s", 0.2)
    expire = client._ops.expire_lease(intent.id, "s", lease.id)
    assert client._runner.call(expire) == 0  # still live: nothing to record
    time.sleep(0.25)
    assert client._runner.call(expire) == 1
    assert client._runner.call(expire) == 0
    client.acquire_lease(intent.id, "s", 30)
    assert event_types(client, intent.id).count("lease_expired") == 1
    due = client.redis.zrange(
        client.keyspace.due_leases(client.keyspace.partition(intent.id)), 0, -1
    )
    assert not any(lease.id in member for member in due)


def test_renew_and_release_by_the_owner_only(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "s", 5)
    renewed = client.renew_lease(intent.id, lease.id, 60)
    assert renewed.expires_at > lease.expires_at
    assert renewed.fencing_token == lease.fencing_token
    with pytest.raises(LeaseConflictError):
        other.renew_lease(intent.id, lease.id, 60)
    with pytest.raises(LeaseConflictError):
        other.release_lease(intent.id, lease.id)
    released = client.release_lease(intent.id, lease.id)
    assert released.status == "released"
    assert released.ended_at is not None
    assert client.release_lease(intent.id, lease.id) == released  # a retry is harmless
    with pytest.raises(LeaseConflictError):
        client.renew_lease(intent.id, lease.id, 60)
    assert other.acquire_lease(intent.id, "s", 5).fencing_token == 2
    assert event_types(client, intent.id)[1:] == [
        "lease_acquired",
        "lease_renewed",
        "lease_released",
        "lease_acquired",
    ]


def test_revoke(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    lease = client.acquire_lease(intent.id, "s", 30)
    revoked = other.revoke_lease(intent.id, lease.id, reason="stuck agent")
    assert revoked.status == "revoked"
    event = client.get_events(intent.id, event_type="lease_revoked")[0]
    assert event.actor == "rival"
    assert event.payload["reason"] == "stuck agent"
    with pytest.raises(ValidationError):
        other.revoke_lease(intent.id, lease.id, reason="")
    with pytest.raises(LeaseConflictError):
        client.update_state(intent.id, 1, {"s": 1}, lease=lease)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c, i: c.acquire_lease("ghost", "s", 5), NotFoundError),
        (lambda c, i: c.acquire_lease(i, "bad scope", 5), ValidationError),
        (lambda c, i: c.acquire_lease(i, "a..b", 5), ValidationError),
        (lambda c, i: c.acquire_lease(i, "s", 0.01), ValidationError),
        (lambda c, i: c.acquire_lease(i, "s", 10**6), ValidationError),
        (lambda c, i: c.renew_lease(i, "no-such-lease", 5), NotFoundError),
        (lambda c, i: c.release_lease(i, "no-such-lease"), NotFoundError),
        (lambda c, i: c.release_lease(i, "bad id!"), ValidationError),
    ],
)
def test_lease_input_errors(client: Client, call: object, error: type[Exception]) -> None:
    intent = client.create_intent("t")
    with pytest.raises(error):
        call(client, intent.id)  # type: ignore[operator]


def test_closed_intents_take_no_leases(client: Client) -> None:
    from oibus import IntentClosedError

    intent = client.create_intent("t")
    client.set_status(intent.id, 1, "completed")
    with pytest.raises(IntentClosedError):
        client.acquire_lease(intent.id, "s", 5)


def test_guarded_writes(client: Client, other: Client, raw_redis: redis.Redis) -> None:
    intent = client.create_intent("t", state={"content": {"draft": {}, "notes": []}})
    lease = other.acquire_lease(intent.id, "content.draft", 30)
    before = raw_redis.xlen(client.keyspace.events(intent.id))
    for patch in (
        [{"op": "set", "path": "/content/draft/x", "value": 1}],
        [{"op": "set", "path": "/content", "value": {}}],
        [{"op": "remove", "path": "/content/draft"}],
    ):
        with pytest.raises(LeaseConflictError) as info:
            client.patch_state(intent.id, 1, patch)
        assert info.value.holder == "rival"
    with pytest.raises(LeaseConflictError):
        client.update_state(intent.id, 1, {"content": 1})
    with pytest.raises(LeaseConflictError):  # someone else's lease authorises nothing
        client.patch_state(
            intent.id, 1, [{"op": "set", "path": "/content/draft/x", "value": 1}], lease=lease
        )
    assert raw_redis.xlen(client.keyspace.events(intent.id)) == before
    assert client.get_intent(intent.id).version == 1
    # outside the subtree: free
    v = client.patch_state(
        intent.id, 1, [{"op": "append", "path": "/content/notes", "value": "n"}]
    ).version
    v = client.update_state(intent.id, v, {"contentx": 1}).version
    # the holder, presenting the lease by object, id, or scope#token
    v = other.patch_state(
        intent.id, v, [{"op": "set", "path": "/content/draft/x", "value": 1}], lease=lease
    ).version
    v = other.patch_state(
        intent.id, v, [{"op": "set", "path": "/content/draft/y", "value": 2}], lease=lease.id
    ).version
    v = other.patch_state(
        intent.id,
        v,
        [{"op": "set", "path": "/content/draft/z", "value": 3}],
        lease="content.draft#1",
    ).version
    assert client.get_intent(intent.id).state["content"]["draft"] == {"x": 1, "y": 2, "z": 3}
    with pytest.raises(LeaseConflictError):  # wrong token: stale
        other.patch_state(
            intent.id,
            v,
            [{"op": "set", "path": "/content/draft/x", "value": 9}],
            lease="content.draft#7",
        )


def test_a_superseded_or_expired_lease_cannot_write(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    old = client.acquire_lease(intent.id, "s", 0.2)
    time.sleep(0.25)
    with pytest.raises(LeaseExpiredError):
        client.update_state(intent.id, 1, {"s": 1}, lease=old)
    new = other.acquire_lease(intent.id, "s", 30)
    with pytest.raises(LeaseConflictError):  # fencing: the old holder's token is stale
        client.update_state(intent.id, 1, {"s": 1}, lease=old)
    with pytest.raises(LeaseConflictError):
        client.update_state(intent.id, 1, {"s": 1}, lease=f"s#{old.fencing_token}")
    assert other.update_state(intent.id, 1, {"s": 1}, lease=new).state == {"s": 1}


def test_history_pages(client: Client) -> None:
    intent = client.create_intent("t")
    ids = []
    for _ in range(5):
        lease = client.acquire_lease(intent.id, "s", 30)
        client.release_lease(intent.id, lease.id)
        ids.append(lease.id)
    live = client.acquire_lease(intent.id, "s", 30)
    first = client.get_leases(intent.id, include_history=True, limit=3)
    rest = client.get_leases(intent.id, include_history=True, limit=3, cursor=first.next_cursor)
    assert [x.id for x in [*first, *rest]] == [*ids, live.id]
    assert rest.next_cursor is None
    assert [x.id for x in client.get_leases(intent.id)] == [live.id]


def test_lease_context_manager(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    with client.lease(intent.id, "work", duration_seconds=0.9) as lease:
        time.sleep(1.2)  # longer than the duration: renewals keep it
        assert client.update_state(intent.id, 1, {"work": 1}, lease=lease).version == 2
    assert client.get_leases(intent.id) == []
    with pytest.raises(RuntimeError), client.lease(intent.id, "work", 30):
        raise RuntimeError("boom")
    assert client.get_leases(intent.id) == []  # released on the way out of an error too


def test_sync_lease_lost_is_reported(client: Client, other: Client) -> None:
    intent = client.create_intent("t")
    with pytest.raises(LeaseLostError), client.lease(intent.id, "work", 0.3) as lease:
        other.revoke_lease(intent.id, lease.id, "reassigned")
        time.sleep(0.3)
        with pytest.raises(LeaseConflictError):
            client.update_state(intent.id, 1, {"work": 1}, lease=lease)


@pytest.mark.anyio
async def test_async_lease_block_is_cancelled_when_the_lease_is_lost(
    aclient: AsyncClient,
) -> None:
    intent = await aclient.create_intent("t")
    rival = AsyncClient(redis=aclient.redis, agent_id="rival", namespace=aclient.keyspace.namespace)
    reached_end = False
    with pytest.raises(LeaseLostError):
        async with aclient.lease(intent.id, "work", 0.3) as lease:
            await rival.revoke_lease(intent.id, lease.id, "reassigned")
            await anyio.sleep(5)  # cancelled at the next renewal, ~0.1 s in
            reached_end = True
    assert not reached_end


@pytest.mark.anyio
async def test_async_lease_renews_and_releases(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    async with aclient.lease(intent.id, "work", 0.9) as lease:
        await anyio.sleep(1.2)
        intent = await aclient.update_state(intent.id, 1, {"work": 1}, lease=lease)
    assert await aclient.get_leases(intent.id) == []


@pytest.mark.anyio
async def test_twenty_agents_race_for_one_scope(aclient: AsyncClient) -> None:
    """Every grant is recorded with its window on the server's clock; no two overlap."""
    intent = await aclient.create_intent("race")
    agents = [
        AsyncClient(
            redis=aclient.redis, agent_id=f"agent-{n}", namespace=aclient.keyspace.namespace
        )
        for n in range(20)
    ]
    windows: list[tuple[float, float, str, int]] = []
    deadline = time.monotonic() + 10.0  # ends at 12 grants; the deadline is for a slow machine

    async def contend(agent: AsyncClient) -> None:
        while len(windows) < 12 and time.monotonic() < deadline:
            try:
                lease = await agent.acquire_lease(intent.id, "s", 0.15)
            except LeaseConflictError:
                await anyio.sleep(0.005)
                continue
            if lease.fencing_token % 2:  # half the holders release, half let it expire
                await anyio.sleep(0.02)
                try:
                    done = await agent.release_lease(intent.id, lease.id)
                    end = done.ended_at
                except (LeaseExpiredError, NotFoundError):
                    # a slow holder: it expired, and may already have been superseded
                    end = lease.expires_at
            else:
                end = lease.expires_at
            assert end is not None
            windows.append(
                (
                    lease.acquired_at.timestamp(),
                    end.timestamp(),
                    lease.agent_id,
                    lease.fencing_token,
                )
            )

    async with anyio.create_task_group() as tg:
        for agent in agents:
            tg.start_soon(contend, agent)
    windows.sort()
    assert len(windows) >= 5
    tokens = [w[3] for w in windows]
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(windows):
        assert end <= start


def test_removing_a_list_element_counts_as_writing_the_list(client: Client, other: Client) -> None:
    intent = client.create_intent("t", state={"items": ["a0", "a1", "a2"]})
    other.acquire_lease(intent.id, "items.1", 30)
    for path in ("/items/0", "/items/1"):
        with pytest.raises(LeaseConflictError):
            client.patch_state(intent.id, 1, [{"op": "remove", "path": path}])
    assert client.get_intent(intent.id).state["items"] == ["a0", "a1", "a2"]


def test_history_pages_do_not_repeat(client: Client) -> None:
    intent = client.create_intent("t")
    ids = []
    for _ in range(4):
        lease = client.acquire_lease(intent.id, "s", 30)
        client.release_lease(intent.id, lease.id)
        ids.append(lease.id)
    seen, cursor = [], None
    while True:
        page = client.get_leases(intent.id, include_history=True, limit=1, cursor=cursor)
        seen += [x.id for x in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids


@pytest.mark.anyio
async def test_async_lease_block_errors_come_out_unwrapped(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t")
    with pytest.raises(KeyError):
        async with aclient.lease(intent.id, "work", 30):
            raise KeyError("mine")
    assert await aclient.get_leases(intent.id) == []


@pytest.mark.parametrize("duration", [float("inf"), float("nan"), 1e308, 10**400])
def test_absurd_durations_are_validation_errors(client: Client, duration: float) -> None:
    intent = client.create_intent("t")
    with pytest.raises(ValidationError):
        client.acquire_lease(intent.id, "s", duration)


def test_lease_replies_are_the_stored_lease(client: Client, raw_redis: redis.Redis) -> None:
    """acquire, renew and release answer with the text they stored (built once), and the
    expiry schedule holds the lease at its expiry: what get_leases and the daemon read."""
    intent = client.create_intent("t")
    ops, ks = client._ops, client.keyspace
    leases_key = ks.leases(intent.id)
    due_key = ks.due_leases(ks.partition(intent.id))
    acquired = client._runner.call(ops.acquire_lease(intent.id, "s.t", "lease-one", 30))
    assert acquired == raw_redis.hget(leases_key, "s.t")
    member = f"{intent.id}\ts.t\tlease-one"
    assert raw_redis.zscore(due_key, member) == int(json.loads(acquired)["expires_us"])
    renewed = client._runner.call(ops.renew_lease(intent.id, "lease-one", 60))
    assert renewed == raw_redis.hget(leases_key, "s.t")
    assert raw_redis.zscore(due_key, member) == int(json.loads(renewed)["expires_us"])
    assert json.loads(renewed)["expires_us"] > json.loads(acquired)["expires_us"]
    released = client._runner.call(ops.release_lease(intent.id, "lease-one"))
    assert released == raw_redis.hget(leases_key, "s.t")
    assert client._runner.call(ops.release_lease(intent.id, "lease-one")) == released
    assert raw_redis.zscore(due_key, member) is None
    history = raw_redis.xrange(ks.lease_history(intent.id))
    assert [fields["l"] for _, fields in history] == [released]
