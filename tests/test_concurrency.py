"""Races: many writers on one intent. The version check is inside the script, so every
version is won exactly once and nothing a winner wrote is lost."""

from __future__ import annotations

import anyio
import pytest

from oibus import AsyncClient, ConflictError

pytestmark = pytest.mark.anyio


async def test_twenty_writers_race_update_state(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("race")
    writers, rounds = 20, 10
    wins: dict[int, int] = {}
    successes = 0

    async def writer(n: int) -> None:
        nonlocal successes
        for r in range(rounds):
            while True:
                current = await aclient.get_intent(intent.id)
                try:
                    done = await aclient.update_state(
                        intent.id, current.version, {f"w{n}": r, "last": n}
                    )
                except ConflictError as exc:
                    assert exc.current_version is not None
                    assert exc.current_version > current.version
                    continue
                assert done.version not in wins
                wins[done.version] = n
                successes += 1
                break

    async with anyio.create_task_group() as tg:
        for n in range(writers):
            tg.start_soon(writer, n)

    final = await aclient.get_intent(intent.id)
    assert successes == writers * rounds
    assert sorted(wins) == list(range(2, writers * rounds + 2))
    assert final.version == writers * rounds + 1
    assert {k: v for k, v in final.state.items() if k != "last"} == {
        f"w{n}": rounds - 1 for n in range(writers)
    }
    assert final.state["last"] == wins[final.version]
    events = await aclient.get_events(intent.id, event_type="state_patched", limit=1000)
    assert len(events) == successes
    assert [e.payload["version"] for e in events] == list(range(2, successes + 2))
    everything = await aclient.get_events(intent.id, limit=1000)
    assert [e.seq for e in everything] == list(range(1, successes + 2))


async def test_one_version_one_winner(aclient: AsyncClient) -> None:
    """Twenty writers all holding version 1: exactly one succeeds."""
    intent = await aclient.create_intent("race")
    results: list[str] = []

    async def writer(n: int) -> None:
        try:
            await aclient.update_state(intent.id, 1, {"winner": n})
            results.append("won")
        except ConflictError as exc:
            assert exc.current_version == 2
            results.append("lost")

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(writer, n)
    assert sorted(results) == ["lost"] * 19 + ["won"]
    assert (await aclient.get_intent(intent.id)).version == 2


async def test_concurrent_idempotent_creates_make_one_intent(aclient: AsyncClient) -> None:
    ids: list[str] = []

    async def create() -> None:
        ids.append((await aclient.create_intent("once", idempotency_key="k-1")).id)

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(create)
    assert len(set(ids)) == 1
    assert len(await aclient.list_intents()) == 1
    assert len(await aclient.get_events(ids[0])) == 1


async def test_async_client_covers_the_basics(aclient: AsyncClient) -> None:
    intent = await aclient.create_intent("t", state={"a": 1})
    intent = await aclient.patch_state(intent.id, 1, [{"op": "append", "path": "/l", "value": 1}])
    intent = await aclient.assign_agent(intent.id, "x")
    intent = await aclient.set_status(intent.id, intent.version, "completed")
    await aclient.log_event(intent.id, "comment", {})
    assert [e.seq for e in await aclient.get_events(intent.id)] == [1, 2, 3, 4, 5]
    assert (await aclient.list_intents(status="completed"))[0].id == intent.id
    assert (await aclient.discover()).implementation == "oibus"
