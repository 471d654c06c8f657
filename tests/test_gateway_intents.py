"""The HTTP server with the real reference SDK (``openintent`` 0.17.0), sync and async,
over real sockets, on the embedded engine and the cluster tier: intents, state, status,
events, agents and the graph. Each call's result is asserted, not just its status."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from gateway_server import LiveGateway
from openintent import AsyncOpenIntentClient, OpenIntentClient
from openintent.exceptions import ConflictError, NotFoundError, OpenIntentError
from openintent.models import EventType, IntentStatus

pytestmark = pytest.mark.real


def test_create_get_list_and_the_actor_is_the_agent(sdk: Callable[..., OpenIntentClient]) -> None:
    c = sdk()
    intent = c.create_intent(
        title="Research", description="Q4", constraints={"deadline": "soon"}, initial_state={"p": 0}
    )
    assert (intent.title, intent.description, intent.version) == ("Research", "Q4", 1)
    assert intent.state.to_dict() == {"p": 0}
    assert intent.status == IntentStatus.ACTIVE  # oibus starts intents active (docs/http.md)
    got = c.get_intent(intent.id)
    assert (got.id, got.title, got.version) == (intent.id, "Research", 1)
    listed = c.list_intents()
    assert intent.id in [i.id for i in listed]
    events = c.get_events(intent.id)
    assert [e.event_type for e in events] == [EventType.INTENT_CREATED]
    assert events[0].actor == "researcher"  # X-Agent-ID, named by a service key


def test_state_versions_step_by_one_and_a_stale_write_is_a_conflict(
    sdk: Callable[..., OpenIntentClient],
) -> None:
    c = sdk()
    intent = c.create_intent(title="t", initial_state={"a": 1})
    intent = c.update_state(intent.id, intent.version, {"progress": 0.5, "nested/x": 5})
    assert intent.version == 2
    assert intent.state.to_dict() == {"a": 1, "progress": 0.5, "nested": {"x": 5}}
    with pytest.raises(ConflictError) as caught:
        c.update_state(intent.id, 1, {"progress": 0.9})
    assert caught.value.current_version == 2
    assert c.get_intent(intent.id).version == 2  # nothing written
    done = c.set_status(intent.id, 2, IntentStatus.COMPLETED)
    assert (done.status, done.version) == (IntentStatus.COMPLETED, 3)
    types = [e.event_type for e in c.get_events(intent.id)]
    assert types == [EventType.INTENT_CREATED, EventType.STATE_PATCHED, EventType.STATUS_CHANGED]


def test_events_filters_and_unknown_ids(sdk: Callable[..., OpenIntentClient]) -> None:
    c = sdk()
    intent = c.create_intent(title="t")
    for n in range(3):
        c.log_event(intent.id, EventType.COMMENT, {"n": n})
    comments = c.get_events(intent.id, event_type=EventType.COMMENT, limit=2)
    assert [e.payload for e in comments] == [{"n": 0}, {"n": 1}]
    with pytest.raises(NotFoundError):
        c.get_intent("no-such-intent")


def test_agents_children_and_graph(
    sdk: Callable[..., OpenIntentClient], gateway: LiveGateway
) -> None:
    c = sdk()
    parent = c.create_intent(title="parent")
    first = c.create_child_intent(parent.id, "first")
    second = c.create_child_intent(parent.id, "second", depends_on=[first.id])
    assert first.parent_intent_id == parent.id
    assert sorted(i.title for i in c.get_children(parent.id)) == ["first", "second"]
    assert [i.id for i in c.get_dependencies(second.id)] == [first.id]
    assert [i.id for i in c.get_ancestors(first.id)] == [parent.id]
    graph = c.get_intent_graph(parent.id)
    assert graph["aggregate_status"]["total"] == 3
    assert c.assign_agent(parent.id, "bob")["agent_id"] == "bob"
    assert c.get_intent(parent.id).to_dict().get("id") == parent.id
    c.unassign_agent(parent.id, "bob")
    raw = httpx.get(
        f"{gateway.url}/api/v1/intents/{parent.id}/agents",
        headers={"X-API-Key": gateway.keys["reader"]},
    )
    assert raw.status_code == 200 and raw.json() == []


@pytest.mark.anyio
async def test_the_async_sdk(gateway: LiveGateway) -> None:
    async with AsyncOpenIntentClient(
        base_url=gateway.url, api_key=gateway.keys["agent"], agent_id="ada"
    ) as c:
        intent = await c.create_intent("async", "d")
        intent = await c.update_state(intent.id, intent.version, {"k": "v"})
        assert (intent.version, intent.state.to_dict()) == (2, {"k": "v"})
        assert intent.created_by == "ada"


def test_auth(gateway: LiveGateway) -> None:
    """No key 401, unknown key 401, a reader cannot write (403), an agent key cannot act
    as another agent (403), and nothing was written by a refused request."""
    url = f"{gateway.url}/api/v1/intents"
    body = {"title": "x"}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"X-API-Key": "nope"}).status_code == 401
    reader = {"X-API-Key": gateway.keys["reader"]}
    assert httpx.post(url, json=body, headers=reader).status_code == 403
    spoof = {"X-API-Key": gateway.keys["agent"], "X-Agent-ID": "boss"}
    refused = httpx.post(url, json=body, headers=spoof)
    assert refused.status_code == 403 and "own principal" in refused.json()["message"]
    listed = httpx.get(url, headers=reader).json()["intents"]
    assert "x" not in [i["title"] for i in listed]
    with (
        OpenIntentClient(base_url=gateway.url, api_key="nope", agent_id="a") as bad,
        pytest.raises(OpenIntentError),
    ):
        bad.create_intent("x")


def test_bad_input_is_a_4xx_with_a_body(gateway: LiveGateway) -> None:
    headers = {"X-API-Key": gateway.keys["admin"], "Content-Type": "application/json"}
    url = f"{gateway.url}/api/v1/intents"
    for raw, status in [
        (b"{", 400),
        (b"[]", 400),
        (b'{"title": ""}', 400),
        (b'{"title": "t", "state": [1]}', 400),
        (b'{"title": "t", "status": "bogus"}', 400),
        (b"x" * (2 << 20), 413),
    ]:
        answer = httpx.post(url, content=raw, headers=headers)
        assert answer.status_code == status, (raw[:40], answer.text)
        assert answer.json()["message"]
