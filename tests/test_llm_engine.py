"""LLM agents on the bus, with the scripted provider (no network, no key): the tool loop,
custom tools (sync, async, bad arguments, raising), the round limit, protocol tools
(memory, update_status, clarify -> suspended -> answered -> completed, escalate), a
coordinator's plan run as an intent graph in dependency order, streaming, the RFC-0008
events and costs, a replica resuming a stopped agent's loop without redoing a tool, and
every example of the seed's "LLM-Powered Agents" page adapted to oibus imports."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from test_agents import FAST, completed, started, stopped
from test_daemon import eventually

from oibus import (
    Agent,
    AsyncClient,
    ConfigurationError,
    Coordinator,
    LeaseConflictError,
    LeaseExpiredError,
    ToolDef,
    ToolLoopLimitError,
    ValidationError,
    agent,
    coordinator,
    define_tool,
    on_all_complete,
    on_assignment,
    register_tool,
    tool,
    unregister_tool,
)
from oibus.sdk.agents import AgentBase
from oibus.sdk.llm.conversation import ConversationStore, Transcript
from oibus.sdk.llm.messages import Message, Reply, Usage
from oibus.sdk.llm.scripted import ScriptedProvider, call
from oibus.sdk.llm.tools import check_arguments

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

MODEL = "scripted-model"


def results(messages: Sequence[Message]) -> dict[str, Any]:
    """The tool results in a conversation, by tool name (the last of each)."""
    return {m.name or "": json.loads(m.content) for m in messages if m.role == "tool"}


async def event_types(client: AsyncClient, intent_id: str) -> list[str]:
    return [e.event_type for e in await client.get_events(intent_id, limit=1000)]


async def events_of(client: AsyncClient, intent_id: str, event_type: str) -> list[Any]:
    return list(await client.get_events(intent_id, event_type=event_type, limit=1000))


async def run_one(
    client: AsyncClient, agents: Sequence[AgentBase], agent_id: str, title: str, **kw: Any
) -> str:
    """Start the agents, create one intent assigned to ``agent_id``, wait for completion."""
    await started(client, *agents)
    try:
        intent = await client.create_intent(title, kw.get("description"))
        await client.assign_agent(intent.id, agent_id)
        assert await completed(client, intent.id), await client.get_failures(intent.id)
        return intent.id
    finally:
        await stopped(*agents)


# -- tools --------------------------------------------------------------------------------
@define_tool(
    description="Search the web and return top results.",
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Search query."},
            "max_results": {"type": "integer", "description": "Max results to return."},
        },
        "required": ["query"],
    },
)
async def web_search(query: str, max_results: int = 5) -> dict[str, Any]:
    return {"results": [f"{query} #{n}" for n in range(1, max_results + 1)]}


calculator = ToolDef(
    name="calculator",
    description="Evaluate a mathematical expression and return the result.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
    handler=lambda expression: {"result": eval(expression)},  # the seed's example
)


def test_define_tool_and_aliases_build_tooldefs() -> None:
    assert web_search.name == "web_search" and web_search.handler is not None
    spec = web_search.spec()
    assert spec.parameters["required"] == ["query"]

    @tool(description="Say hi.", name="greet")
    def hello() -> str:
        return "hi"

    assert isinstance(hello, ToolDef) and hello.name == "greet"
    with pytest.raises(ValidationError):
        ToolDef(name="bad name!", description="x")
    with pytest.raises(ValidationError):
        ToolDef(name="ok", description="x", parameters={"type": "string"})
    problems = check_arguments(
        web_search.parameters, {"query": 3, "max_results": "many", "extra": 1}
    )
    assert problems == ["query must be string", "max_results must be integer"]
    assert check_arguments(web_search.parameters, {}) == [
        "arguments: missing required property 'query'"
    ]


async def test_tool_loop_runs_custom_tools_sync_and_async(aclient: AsyncClient) -> None:
    def final(messages: Sequence[Message]) -> str:
        got = results(messages)
        return f"found {len(got['web_search']['results'])}, sum {got['calculator']['result']}"

    provider = ScriptedProvider(
        [
            call("web_search", query="llm agents", max_results=2),
            call("calculator", expression="2 + 3 * 4"),
            final,
        ]
    )

    @agent("researcher", model=MODEL, provider=provider, tools=[web_search, calculator], **FAST)
    class Researcher:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("Research: " + intent.description)}

    iid = await run_one(aclient, [Researcher()], "researcher", "topic", description="agents")
    assert (await aclient.get_intent(iid)).state == {"answer": "found 2, sum 14"}
    provider.assert_done()
    first_messages, tools = provider.requests[0]
    assert [t.name for t in tools][:5] == [
        "remember",
        "recall",
        "update_status",
        "clarify",
        "escalate",
    ]
    assert {"web_search", "calculator"} <= {t.name for t in tools}
    assert "delegate" not in {t.name for t in tools}  # an agent, not a coordinator
    assert first_messages[0].role == "system" and "topic" in first_messages[0].content
    assert first_messages[-1].content == "Research: agents"
    done = await events_of(aclient, iid, "tool_call_completed")
    assert [e.payload["tool_name"] for e in done] == ["web_search", "calculator"]
    assert done[1].payload["result"] == {"result": 14}
    assert len(await events_of(aclient, iid, "llm_request_completed")) == 3
    # the conversation record is gone once the handler completed
    key = aclient.keyspace.llm_conversation(iid, "researcher")
    assert not await aclient._runner.command("EXISTS", key)


async def test_bad_arguments_and_raising_tools_go_back_to_the_model(
    aclient: AsyncClient,
) -> None:
    ran: list[str] = []

    def explode() -> None:
        ran.append("explode")
        raise RuntimeError("the disk is on fire")

    boom = ToolDef(name="boom", description="Always fails.", handler=explode)

    def final(messages: Sequence[Message]) -> str:
        got = results(messages)
        return " | ".join(got[name]["error"] for name in ("calculator", "boom", "nope"))

    provider = ScriptedProvider(
        [
            [call("calculator", wrong=1), call("boom")],
            call("nope"),
            final,
        ]
    )

    @agent("careful", model=MODEL, provider=provider, tools=[calculator, boom], **FAST)
    class Careful:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("go")}

    iid = await run_one(aclient, [Careful()], "careful", "bad calls")
    answer = (await aclient.get_intent(iid)).state["answer"]
    assert "missing required property 'expression'" in answer
    assert "RuntimeError: the disk is on fire" in answer
    assert "no tool named 'nope'" in answer
    assert ran == ["explode"]  # the bad calculator call never reached its handler
    failed = await events_of(aclient, iid, "tool_call_failed")
    assert [e.payload["tool_name"] for e in failed] == ["calculator", "boom", "nope"]


async def test_a_plain_tool_name_resolves_through_the_grant_registry_or_fails_at_start(
    aclient: AsyncClient,
) -> None:
    @agent("hybrid", model=MODEL, provider=ScriptedProvider([]), tools=["legacy_api"], **FAST)
    class Hybrid:
        @on_assignment
        async def work(self, intent: Any) -> None:
            return None

    with pytest.raises(ConfigurationError, match="legacy_api"):
        await started(aclient, Hybrid())

    legacy = ToolDef(name="legacy_api", description="Old API.", handler=lambda: {"ok": True})
    register_tool(legacy)
    try:
        provider = ScriptedProvider([call("legacy_api"), "done"])

        @agent("hybrid", model=MODEL, provider=provider, tools=["legacy_api"], **FAST)
        class Hybrid2:
            @on_assignment
            async def work(self, intent: Any) -> dict[str, Any]:
                return {"answer": await self.think("x")}

        iid = await run_one(aclient, [Hybrid2()], "hybrid", "granted")
        done = await events_of(aclient, iid, "tool_call_completed")
        assert done[0].payload["result"] == {"ok": True}
    finally:
        unregister_tool("legacy_api")


async def test_max_tool_rounds_raises_a_typed_error_with_the_transcript(
    aclient: AsyncClient,
) -> None:
    provider = ScriptedProvider([call("calculator", expression="1")] * 3)
    caught: list[ToolLoopLimitError] = []

    @agent("looper", model=MODEL, provider=provider, tools=[calculator], max_tool_rounds=2, **FAST)
    class Looper:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            try:
                await self.think("loop forever")
            except ToolLoopLimitError as exc:
                caught.append(exc)
                raise

    agent_ = Looper()
    await started(aclient, agent_)
    try:
        intent = await aclient.create_intent("loop")
        await aclient.assign_agent(intent.id, "looper")

        async def failed() -> Any:
            return await aclient.get_failures(intent.id)

        failures = await eventually(failed, 15)
        assert failures[0].error_code == "ToolLoopLimitError"
    finally:
        await stopped(agent_)
    exc = caught[0]
    assert exc.rounds == 2
    assert [m.role for m in exc.messages][-1] == "assistant"  # the third round's calls
    assert sum(1 for m in exc.messages if m.role == "tool") == 2
    provider.assert_done()  # three requests: two rounds ran, the third was refused
    assert len(await events_of(aclient, intent.id, "tool_call_completed")) == 2


# -- protocol tools -----------------------------------------------------------------------
async def test_memory_remember_then_recall_across_intents(aclient: AsyncClient) -> None:
    seen: list[Sequence[Message]] = []

    def answer_with_memories(messages: Sequence[Message]) -> str:
        seen.append(messages)
        return "recalled"

    provider = ScriptedProvider(
        [
            call("remember", key="capital-of-france", value="Paris is the capital"),
            "stored",
            call("recall", query="capital"),
            answer_with_memories,
        ]
    )

    @agent("historian", model=MODEL, provider=provider, memory="episodic", **FAST)
    class Historian:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think(intent.title)}

    h = Historian()
    await started(aclient, h)
    try:
        first = await aclient.create_intent("learn about the capital of France")
        await aclient.assign_agent(first.id, "historian")
        assert await completed(aclient, first.id)
        second = await aclient.create_intent("what is the capital again")
        await aclient.assign_agent(second.id, "historian")
        assert await completed(aclient, second.id)
    finally:
        await stopped(h)
    stored = await aclient.recall("capital", agent_id="historian")
    assert [r.key for r in stored] == ["capital-of-france"]
    assert stored[0].memory_type == "episodic"
    messages = seen[0]
    # recalled twice: into the prompt (memory=) and by the recall tool
    assert "Paris is the capital" in [m for m in messages if m.role == "user"][-1].content
    assert results(messages)["recall"]["memories"][0]["value"] == "Paris is the capital"


async def test_update_status_patches_under_the_version_check_and_lease(
    aclient: AsyncClient,
) -> None:
    provider = ScriptedProvider(
        [
            call("update_status", patch={"progress": 0.5}),
            call("update_status", patch={"progress": 1.0, "phase": "done"}),
            "finished",
        ]
    )

    @agent("reporter", model=MODEL, provider=provider, **FAST)
    class Reporter:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("report progress")}

    iid = await run_one(aclient, [Reporter()], "reporter", "progress")
    intent = await aclient.get_intent(iid)
    assert intent.state == {"progress": 1.0, "phase": "done", "answer": "finished"}
    assert await aclient.get_failures(iid) == []  # the final write used the tools' version
    patched = await events_of(aclient, iid, "state_patched")
    assert len(patched) == 3
    versions = [r["version"] for r in results(provider.requests[-1][0]).values()]
    assert versions and versions[0] < intent.version


async def test_clarify_suspends_then_the_answer_resumes_and_completes(
    aclient: AsyncClient,
) -> None:
    returned: list[Any] = []

    def use_answer(messages: Sequence[Message]) -> str:
        return "report for " + results(messages)["clarify"]["answer"]

    provider = ScriptedProvider(
        [
            call("update_status", patch={"phase": "asking"}),
            call("clarify", question="Which region?", options=["EU", "US"]),
            use_answer,
        ]
    )

    @agent("careful-agent", model=MODEL, provider=provider, **FAST)
    class CarefulAgent:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            result = await self.think("Analyze: " + intent.description)
            returned.append(result)
            return {"result": result}

    human = AsyncClient(
        redis=aclient.redis,
        namespace=aclient.keyspace.namespace,
        partitions=aclient.keyspace.partitions,
        agent_id="human",
    )
    a = CarefulAgent()
    await started(aclient, a)
    try:
        intent = await aclient.create_intent("sales report", "a report on sales")
        await aclient.assign_agent(intent.id, "careful-agent")

        async def suspended() -> bool:
            # the status is written inside think(), a moment before it returns
            status = (await aclient.get_intent(intent.id)).status
            return status == "suspended_awaiting_input" and bool(returned)

        assert await eventually(suspended, 15)
        assert returned[0]["status"] == "awaiting_response"
        assert returned[0]["question"] == "Which region?"
        (pending,) = await aclient.get_arbitrations(intent.id, status="pending")
        assert pending.id == returned[0]["arbitration_id"] and pending.options == ["EU", "US"]
        assert "result" not in (await aclient.get_intent(intent.id)).state  # nothing written
        await human.resolve_arbitration(intent.id, pending.id, "EU", "our market")
        assert await completed(aclient, intent.id)
    finally:
        await stopped(a)
        await human.aclose()
    final = await aclient.get_intent(intent.id)
    assert final.state == {"phase": "asking", "result": "report for EU"}
    assert returned[1] == "report for EU"
    provider.assert_done()  # three requests: the resumed run did not redo the first two
    moves = [
        (e.payload["from"], e.payload["to"])
        for e in await events_of(aclient, intent.id, "status_changed")
    ]
    assert moves == [
        ("active", "suspended_awaiting_input"),
        ("suspended_awaiting_input", "active"),
        ("active", "completed"),
    ]
    assert (await events_of(aclient, intent.id, "state_patched"))[0].payload  # phase written
    last = provider.requests[-1][0]
    assert sum(1 for m in last if m.role == "tool" and m.name == "update_status") == 1


async def test_escalate_and_record_decision(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(
        [
            [
                call("escalate", reason="over budget"),
                call("record_decision", decision="stop", rationale="too costly"),
            ],
            "escalated",
        ]
    )

    @coordinator("boss", model=MODEL, provider=provider, **FAST)
    class Boss:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("decide")}

    iid = await run_one(aclient, [Boss()], "boss", "decision")
    (arb,) = await aclient.get_arbitrations(iid)
    assert arb.reason == "over budget" and arb.context["kind"] == "escalation"
    (decision,) = await aclient.get_decisions(iid)
    assert (decision.decision, decision.rationale) == ("stop", "too costly")
    tools = {t.name for t in provider.requests[0][1]}
    assert {"delegate", "create_plan", "record_decision"} <= tools


async def test_a_coordinator_plan_is_a_graph_that_completes_in_dependency_order(
    aclient: AsyncClient,
) -> None:
    order: list[str] = []
    provider = ScriptedProvider(
        [
            call(
                "create_plan",
                steps=[
                    {"title": "write", "assign": "writer", "depends_on": ["research"]},
                    {"title": "research", "assign": "researcher", "description": "dig"},
                    {"title": "review", "assign": "writer", "depends_on": ["write"]},
                ],
            ),
            "plan made",
        ]
    )

    @coordinator("lead", agents=["researcher", "writer"], model=MODEL, provider=provider, **FAST)
    class Lead:
        @on_assignment
        async def plan(self, intent: Any) -> dict[str, Any]:
            return {"summary": await self.think("Break it down: " + intent.title)}

    @agent("researcher", **FAST)
    class Researcher:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            order.append(intent.title)
            return {"done": intent.title}

    @agent("writer", **FAST)
    class Writer:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            await asyncio.sleep(0.05)
            order.append(intent.title)
            return {"done": intent.title}

    iid = await run_one(aclient, [Lead(), Researcher(), Writer()], "lead", "launch")
    assert order == ["research", "write", "review"]
    parent = await aclient.get_intent(iid)
    assert parent.state == {"summary": "plan made"}
    children = await aclient.get_children(iid)
    assert sorted(c.title for c in children) == ["research", "review", "write"]
    assert all(c.status == "completed" for c in children)
    provider.assert_done()  # the re-delivered coordinator replayed its recorded answer
    by_title = {c.title: c for c in children}
    assert by_title["write"].depends_on == [by_title["research"].id]
    moves = [e.payload["to"] for e in await events_of(aclient, iid, "status_changed")]
    assert moves == ["blocked", "active", "completed"]


async def test_delegate_checks_the_managed_agents(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(
        [
            call("delegate", agent_id="stranger", title="t", description="d"),
            call("delegate", agent_id="helper", title="t", description="d"),
            "delegated",
        ]
    )

    @coordinator("lead2", agents=["helper"], model=MODEL, provider=provider, **FAST)
    class Lead2:
        @on_assignment
        async def plan(self, intent: Any) -> dict[str, Any]:
            return {"summary": await self.think("delegate it")}

    @agent("helper", **FAST)
    class Helper:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"helped": True}

    iid = await run_one(aclient, [Lead2(), Helper()], "lead2", "delegation")
    first = results(provider.requests[1][0])["delegate"]
    assert "not one of your agents" in first["error"]
    (child,) = await aclient.get_children(iid)
    assert child.assigned_agents == ["helper"] and child.status == "completed"
    (delegation,) = await aclient.get_delegations(delegate="helper")
    assert delegation.scope["intents"] == [child.id]


# -- streaming, events, costs -------------------------------------------------------------
async def test_streaming_tokens_and_stream_events(aclient: AsyncClient) -> None:
    tokens: list[str] = []
    streamed: list[str] = []
    provider = ScriptedProvider(
        [call("calculator", expression="6*7"), "the answer is 42", "second streamed answer"]
    )

    @agent("writer", model=MODEL, provider=provider, tools=[calculator], **FAST)
    class Writer:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            first = await self.think("compute", stream=True, on_token=tokens.append)
            async for token in await self.think_stream("again"):
                streamed.append(token)
            return {"first": first, "second": "".join(streamed)}

    iid = await run_one(aclient, [Writer()], "writer", "stream")
    assert "".join(tokens) == "the answer is 42" and len(tokens) == 4
    assert (await aclient.get_intent(iid)).state == {
        "first": "the answer is 42",
        "second": "second streamed answer",
    }
    done = await events_of(aclient, iid, "stream_completed")
    assert len(done) == 3 and done[1].payload["chunks_received"] == 5
    assert len(await events_of(aclient, iid, "stream_started")) == 3
    started_events = await events_of(aclient, iid, "llm_request_started")
    assert all(e.payload["stream"] for e in started_events)
    # the conversation carried over: the second think saw the first's answer
    assert provider.requests[-1][0][-2].content == "the answer is 42"


async def test_every_request_is_logged_and_priced(aclient: AsyncClient) -> None:
    reply = Reply(
        message=Message(role="assistant", content="priced"),
        usage=Usage(prompt_tokens=1000, completion_tokens=500),
        finish_reason="stop",
        model=MODEL,
    )
    provider = ScriptedProvider([call("calculator", expression="1+1"), reply])

    @agent(
        "accountant",
        model=MODEL,
        provider=provider,
        tools=[calculator],
        prices={MODEL: (0.5, 2.0)},
        **FAST,
    )
    class Accountant:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("count")}

    iid = await run_one(aclient, [Accountant()], "accountant", "costs")
    types = await event_types(aclient, iid)
    trace = [t for t in types if t.startswith(("llm_", "tool_call_"))]
    assert trace == [
        "llm_request_started",
        "llm_request_completed",
        "tool_call_started",
        "tool_call_completed",
        "llm_request_started",
        "llm_request_completed",
    ]
    costs = await aclient.get_costs(iid)
    assert len(costs) == 2
    summary = await aclient.get_cost_summary(iid)
    # second request: 1000 prompt tokens at 0.5 + 500 completion at 2.0 per 1k = 1.5
    assert float(summary.total) >= 1.5
    completed_events = await events_of(aclient, iid, "llm_request_completed")
    assert completed_events[1].payload["total_tokens"] == 1500


async def test_an_agent_without_model_has_no_think(aclient: AsyncClient) -> None:
    @agent("plain", **FAST)
    class Plain:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"x": 1}

    with pytest.raises(ConfigurationError, match="model="):
        await Plain().think("hi")
    with pytest.raises(ValidationError, match="need model="):
        agent("nomodel", tools=[calculator])


# -- crash safety (in process; tests/test_llm_process.py kills a process) -----------------
async def test_a_replica_resumes_a_stopped_agents_loop_without_redoing_a_tool(
    aclient: AsyncClient,
) -> None:
    bumps: list[str] = []
    gate = asyncio.Event()

    def step(messages: Sequence[Message]) -> Any:
        done = results(messages)
        if "bump" not in done:
            return call("bump")
        if "wait_here" not in done:
            return call("wait_here")
        return f"bumped {done['bump']['count']}"

    async def wait_here() -> str:
        if not gate.is_set():
            gate.set()
            await asyncio.sleep(60)  # the first replica is stopped here
        return "waited"

    def bump() -> dict[str, int]:
        bumps.append("x")
        return {"count": len(bumps)}

    tools = [
        ToolDef(name="bump", description="Count.", handler=bump),
        ToolDef(name="wait_here", description="Wait.", handler=wait_here),
    ]
    provider = ScriptedProvider([step] * 6)

    @agent("durable", model=MODEL, provider=provider, tools=tools, **FAST)
    class Durable:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": await self.think("bump once")}

    first, second = Durable(), Durable()
    await started(aclient, first, consumer="first")
    intent = await aclient.create_intent("resume me")
    await aclient.assign_agent(intent.id, "durable")
    await asyncio.wait_for(gate.wait(), 15)
    key = aclient.keyspace.llm_conversation(intent.id, "durable")
    record = json.loads(await aclient._runner.command("GET", key))
    assert record["turns"][0]["rounds"] == 1  # the bump round was written
    await first.stop(drain_timeout=0)  # cancels the handler mid-round: its event goes back
    await started(aclient, second, consumer="second")
    try:
        assert await completed(aclient, intent.id, 30)
    finally:
        await stopped(second)
    assert bumps == ["x"]
    assert (await aclient.get_intent(intent.id)).state == {"answer": "bumped 1"}
    # requests: bump, wait_here (first replica); wait_here again, answer (second)
    assert len(provider.requests) == 4
    completions = [
        e
        for e in await events_of(aclient, intent.id, "status_changed")
        if e.payload["to"] == "completed"
    ]
    assert len(completions) == 1


async def test_a_sync_handler_thinks(aclient: AsyncClient) -> None:
    """A plain def handler runs in a worker thread: think() returns the answer there, run
    on the agent's loop with the handler's intent (its events land on that intent)."""
    provider = ScriptedProvider([call("noop"), "thought in a thread"])
    noop = ToolDef(name="noop", description="Does nothing.", handler=lambda: {"ok": True})

    @agent("sync-thinker", model=MODEL, provider=provider, tools=[noop], **FAST)
    class SyncThinker:
        @on_assignment
        def work(self, intent: Any) -> dict[str, Any]:
            return {"answer": self.think(f"think about {intent.title}")}

    iid = await run_one(aclient, [SyncThinker()], "sync-thinker", "threads")
    assert (await aclient.get_intent(iid)).state == {"answer": "thought in a thread"}
    assert "tool_call_completed" in await event_types(aclient, iid)
    assert provider.requests[0][0][-1].content == "think about threads"


async def test_the_conversation_record_is_fenced_by_the_lease(aclient: AsyncClient) -> None:
    """A process whose lease ended cannot overwrite the record a replica resumes from."""
    store = ConversationStore(aclient)
    intent = await aclient.create_intent("fenced")

    def said(text: str) -> Transcript:
        return Transcript(messages=[Message(role="user", content=text)])

    async def recorded() -> str:
        record = await store.load(intent.id)
        assert record is not None
        return record.messages[0].content

    await store.save(intent.id, said("no lease"), None)  # outside a handler: a plain write
    lease = await aclient.acquire_lease(intent.id, "agent.fenced", 5)
    await store.save(intent.id, said("held"), lease.id)
    assert await recorded() == "held"
    await aclient.release_lease(intent.id, lease.id)
    with pytest.raises(LeaseConflictError):
        await store.save(intent.id, said("after release"), lease.id)
    short = await aclient.acquire_lease(intent.id, "agent.fenced", 0.2)
    await asyncio.sleep(0.3)
    with pytest.raises(LeaseExpiredError):
        await store.save(intent.id, said("after expiry"), short.id)
    assert await recorded() == "held"


# -- the seed's page, example by example --------------------------------------------------
async def test_seed_quick_start(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(["The market grows 5% a year."])

    @Agent("analyst", model=MODEL, provider=provider, memory="episodic", **FAST)
    class Analyst:
        @on_assignment
        async def work(self, intent: Any) -> Any:
            return await self.think(intent.description)

    iid = await run_one(aclient, [Analyst()], "analyst", "market", description="Analyze growth")
    # a text result is not a dict: the intent completes with no state written
    assert (await aclient.get_intent(iid)).state == {}
    assert provider.requests[0][0][-1].content == "Analyze growth"
    completed_events = await events_of(aclient, iid, "llm_request_completed")
    assert completed_events[0].payload["response_content"] == "The market grows 5% a year."


async def test_seed_researcher_remembers_findings(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(
        [
            [
                call("remember", key="finding-1", value="Solar is cheapest"),
                call("remember", key="finding-2", value="Wind is second"),
            ],
            "Solar leads, wind follows.",
        ]
    )

    @Agent("researcher", model=MODEL, provider=provider, memory="episodic", **FAST)
    class Researcher:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            result = await self.think(
                "Research this topic and remember key findings: " + intent.description
            )
            return {"analysis": result}

    iid = await run_one(aclient, [Researcher()], "researcher", "energy", description="energy")
    assert (await aclient.get_intent(iid)).state == {"analysis": "Solar leads, wind follows."}
    found = await aclient.recall("solar", agent_id="researcher")
    assert [r.value for r in found] == ["Solar is cheapest"]
    started_calls = await events_of(aclient, iid, "tool_call_started")
    assert [e.payload["arguments"]["key"] for e in started_calls] == ["finding-1", "finding-2"]


async def test_seed_define_tool_and_tooldef_and_mixing(aclient: AsyncClient) -> None:
    legacy = ToolDef(name="legacy_api", description="Old API.", handler=lambda: {"legacy": "ok"})
    register_tool(legacy)
    try:
        provider = ScriptedProvider(
            [
                [
                    call("web_search", query="oibus"),
                    call("calculator", expression="2 + 3 * 4"),
                    call("legacy_api"),
                ],
                lambda messages: json.dumps(results(messages), sort_keys=True),
            ]
        )

        @Agent(
            "hybrid",
            model=MODEL,
            provider=provider,
            tools=[web_search, calculator, "legacy_api"],
            **FAST,
        )
        class HybridAgent:
            @on_assignment
            async def work(self, intent: Any) -> dict[str, Any]:
                return {"answer": await self.think("Research this topic: " + intent.title)}

        iid = await run_one(aclient, [HybridAgent()], "hybrid", "mix")
    finally:
        unregister_tool("legacy_api")
    answer = json.loads((await aclient.get_intent(iid)).state["answer"])
    assert answer["calculator"] == {"result": 14}
    assert answer["legacy_api"] == {"legacy": "ok"}
    assert len(answer["web_search"]["results"]) == 5


async def test_seed_streaming_writer_and_narrator(aclient: AsyncClient) -> None:
    printed: list[str] = []
    provider = ScriptedProvider(["Once upon a time", "and they lived happily"])

    @Agent("writer", model=MODEL, provider=provider, **FAST)
    class Writer:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            tokens = []
            async for token in await self.think_stream(intent.description):
                tokens.append(token)
            return {"result": "".join(tokens)}

    @Agent("narrator", model=MODEL, provider=provider, **FAST)
    class Narrator:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            result = await self.think(intent.description, stream=True, on_token=printed.append)
            return {"narration": result}

    w = await run_one(aclient, [Writer()], "writer", "story", description="a story")
    n = await run_one(aclient, [Narrator()], "narrator", "ending", description="an ending")
    assert (await aclient.get_intent(w)).state == {"result": "Once upon a time"}
    assert (await aclient.get_intent(n)).state == {"narration": "and they lived happily"}
    assert printed == ["and", " they", " lived", " happily"]
    assert len(await events_of(aclient, w, "stream_completed")) == 1


async def test_seed_project_lead_coordinator_delegates(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(
        [
            call("delegate", agent_id="researcher", title="research", description="dig"),
            call(
                "delegate",
                agent_id="writer",
                title="write",
                description="write it",
                depends_on=["research"],
            ),
            call(
                "delegate",
                agent_id="reviewer",
                title="review",
                description="check",
                depends_on=["write"],
            ),
            "delegated to the team",
        ]
    )
    order: list[str] = []

    @Coordinator(
        "project-lead",
        model=MODEL,
        provider=provider,
        agents=["researcher", "writer", "reviewer"],
        memory="episodic",
        **FAST,
    )
    class ProjectLead:
        @on_assignment
        async def plan(self, intent: Any) -> Any:
            return await self.think(
                f"Break down this project and delegate to your team: {intent.description}"
            )

    def worker(name: str) -> AgentBase:
        @agent(name, **FAST)
        class Member:
            @on_assignment
            async def work(self, intent: Any) -> dict[str, Any]:
                order.append(name)
                return {"by": name}

        return Member()

    lead = ProjectLead()
    team = [worker(n) for n in ("researcher", "writer", "reviewer")]
    iid = await run_one(aclient, [lead, *team], "project-lead", "project", description="x")
    assert order == ["researcher", "writer", "reviewer"]
    system = provider.requests[0][0][0].content
    assert "researcher, writer, reviewer" in system and "Plan before acting" in system
    assert len(await aclient.get_delegations(delegator="project-lead")) == 3
    assert (await aclient.get_intent(iid)).status == "completed"


async def test_seed_hybrid_mixes_think_with_manual_patches(aclient: AsyncClient) -> None:
    provider = ScriptedProvider(
        [call("web_search", query="req", max_results=1), "analysis text", "plan text"]
    )

    @Agent("hybrid", model=MODEL, provider=provider, memory="episodic", tools=[web_search], **FAST)
    class HybridAgent:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            analysis = await self.think(f"Analyze this requirement: {intent.description}")
            await self.patch_state(intent.id, {"analysis": analysis, "status": "analyzed"})
            plan = await self.think("Based on your analysis, create an implementation plan.")
            return {"analysis": analysis, "plan": plan}

    iid = await run_one(aclient, [HybridAgent()], "hybrid", "req", description="a feature")
    state = (await aclient.get_intent(iid)).state
    assert state == {"analysis": "analysis text", "status": "analyzed", "plan": "plan text"}
    assert await aclient.get_failures(iid) == []
    # the second think saw the first one's conversation
    contents = [m.content for m in provider.requests[-1][0]]
    assert "analysis text" in contents


async def test_seed_complete_example(aclient: AsyncClient) -> None:
    researcher_llm = ScriptedProvider(
        [call("remember", key="topic", value="tides"), "Tides follow the moon."]
    )
    writer_llm = ScriptedProvider(["A report on tides."])
    editor_llm = ScriptedProvider(
        [
            call("delegate", agent_id="researcher", title="research", description="tides"),
            call(
                "delegate",
                agent_id="writer",
                title="write",
                description="report",
                depends_on=["research"],
            ),
            "pipeline set up",
            "All work reviewed.",
        ]
    )
    reviews: list[str] = []

    @Agent("researcher", model=MODEL, provider=researcher_llm, memory="episodic", **FAST)
    class Researcher:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            result = await self.think(
                f"Research this topic thoroughly. Remember key findings. "
                f"Topic: {intent.description}"
            )
            return {"research": result}

    @Agent("writer", model=MODEL, provider=writer_llm, memory="episodic", **FAST)
    class Writer:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            result = await self.think(
                f"Write a clear, well-structured report based on: {intent.description}"
            )
            return {"report": result}

    @Coordinator(
        "editor",
        model=MODEL,
        provider=editor_llm,
        agents=["researcher", "writer"],
        memory="episodic",
        **FAST,
    )
    class Editor:
        @on_assignment
        async def plan(self, intent: Any) -> Any:
            return await self.think(
                f"You are managing a research-to-report pipeline. "
                f"Delegate research first, then writing. "
                f"Topic: {intent.description}"
            )

        @on_all_complete
        async def review(self, portfolio: Any) -> Any:
            reviews.append(
                await self.think("Review all completed work and provide a final summary.")
            )

    editor = Editor()
    iid = await run_one(
        aclient, [editor, Researcher(), Writer()], "editor", "tides", description="tides"
    )
    children = {c.title: c for c in await aclient.get_children(iid)}
    assert children["research"].state == {"research": "Tides follow the moon."}
    assert children["write"].state == {"report": "A report on tides."}
    assert children["write"].depends_on == [children["research"].id]
    # on_all_complete is for portfolios; outside a handler, think() works detached
    await started(aclient, editor)
    try:
        await editor.review(None)
    finally:
        await stopped(editor)
    assert reviews == ["All work reviewed."]
    for p in (researcher_llm, writer_llm, editor_llm):
        p.assert_done()


async def test_seed_error_handling_escalates_a_provider_error(aclient: AsyncClient) -> None:
    class Down:
        name = "down"

        async def complete(self, *args: Any) -> Reply:
            raise ConnectionError("provider unreachable")

        def stream(self, *args: Any) -> Any:
            raise ConnectionError("provider unreachable")

    @Agent("safe-agent", model=MODEL, provider=Down(), **FAST)
    class SafeAgent:
        @on_assignment
        async def work(self, intent: Any) -> dict[str, Any]:
            try:
                return await self.think(intent.description)
            except Exception as e:
                await self.escalate(intent.id, f"LLM error: {e}")
                return {"error": str(e)}

    iid = await run_one(aclient, [SafeAgent()], "safe-agent", "fragile", description="x")
    assert (await aclient.get_intent(iid)).state == {"error": "provider unreachable"}
    (arb,) = await aclient.get_arbitrations(iid)
    assert arb.reason == "LLM error: provider unreachable"
    failed = await events_of(aclient, iid, "llm_request_failed")
    assert "ConnectionError" in failed[0].payload["error"]


async def test_a_provider_object_is_checked_at_decoration_time_or_start(
    aclient: AsyncClient,
) -> None:
    @agent("odd", model=MODEL, provider=object(), **FAST)
    class Odd:
        @on_assignment
        async def work(self, intent: Any) -> None:
            return None

    with pytest.raises(ConfigurationError, match="provider="):
        await started(aclient, Odd())
