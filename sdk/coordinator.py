"""Coordinators: agents that turn a spec of named intents into a portfolio whose graph and
agents then run by themselves, and that hear when it is all done (``@on_all_complete``).

``launch`` does the whole set-up; after it the coordinator waits for nothing: each
intent is assigned to its agent (which starts it when it is ready), dependencies unblock
their dependents in the scripts that complete them, the portfolio completes itself when
every member has (``require_all_completed``), and its completion event reaches the
coordinator's consumer group like any other. A crash half-way through ``launch`` leaves
a portfolio that ``launch`` completes when called again with the same ``run_id``
(every step is idempotent by id).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from oibus.bus.errors import AlreadyExistsError, CycleError, ValidationError
from oibus.bus.portfolios import Portfolio
from oibus.sdk.agents import AgentBase, C, llm_options, make_agent_class

_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


class IntentSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One intent of a portfolio spec. ``depends_on`` names other specs' titles (or
    ``name``s); ``assign`` is the agent that does it."""

    title: str
    description: str | None = None
    name: str | None = None
    assign: str | None = None
    depends_on: tuple[str, ...] = ()
    constraints: dict[str, Any] = msgspec.field(default_factory=dict)
    initial_state: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name or self.title


class PortfolioSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str | None = None
    intents: tuple[IntentSpec, ...] = ()
    governance_policy: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


def plan_order(specs: Sequence[IntentSpec]) -> list[IntentSpec]:
    """The specs with every dependency before its dependents (stable otherwise)."""
    by_key: dict[str, IntentSpec] = {}
    for spec in specs:
        if spec.key in by_key:
            raise ValidationError(
                f"two intents in the spec are named {spec.key!r}", field="intents"
            )
        by_key[spec.key] = spec
    for spec in specs:
        for dep in spec.depends_on:
            if dep not in by_key:
                raise ValidationError(
                    f"{spec.key!r} depends on {dep!r}, which the spec does not name",
                    field="depends_on",
                )
    done: dict[str, None] = {}
    visiting: list[str] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            path = [*visiting[visiting.index(key) :], key]
            raise CycleError(
                f"the spec's dependencies form a cycle: {' -> '.join(path)}",
                field="depends_on",
                cycle=path,
            )
        visiting.append(key)
        for dep in by_key[key].depends_on:
            visit(dep)
        visiting.pop()
        done[key] = None

    for spec in specs:
        visit(spec.key)
    return [by_key[k] for k in done]


def member_ids(run_id: str, specs: Sequence[IntentSpec]) -> dict[str, str]:
    """Every intent of a run shares the group ``run_id`` (one slot, so one script can
    change the whole graph); the ids are readable and stable for a rerun."""
    ids: dict[str, str] = {}
    for n, spec in enumerate(specs):
        slug = _SLUG.sub("-", spec.key.lower()).strip("-")[:60] or "intent"
        ids[spec.key] = f"{run_id}.{n:03d}-{slug}"
    return ids


class CoordinatorBase(AgentBase):
    _oibus_coordinator = True
    """An LLM coordinator's model also gets delegate, create_plan and record_decision."""

    async def launch(
        self, spec: PortfolioSpec | Mapping[str, Any], *, run_id: str | None = None
    ) -> Portfolio:
        """Create the portfolio and its intents (dependencies by name, each assigned to its
        agent); returns the portfolio. ``on_all_complete`` runs when it completes."""
        if not isinstance(spec, PortfolioSpec):
            spec = msgspec.convert(dict(spec), PortfolioSpec)
        ordered = plan_order(spec.intents)
        run_id = run_id or f"run-{uuid.uuid4().hex[:12]}"
        ids = member_ids(run_id, spec.intents)
        client = self.client
        policy = {"require_all_completed": True, **spec.governance_policy}
        with contextlib.suppress(AlreadyExistsError):
            await client.create_portfolio(
                spec.name,
                spec.description,
                governance_policy=policy,
                metadata={**spec.metadata, "run_id": run_id},
                portfolio_id=run_id,
            )
        for item in ordered:
            intent_id = ids[item.key]
            with contextlib.suppress(AlreadyExistsError):
                await client.create_intent(
                    item.title,
                    item.description,
                    item.constraints,
                    state=item.initial_state,
                    depends_on=[ids[d] for d in item.depends_on] or None,
                    intent_id=intent_id,
                )
            await client.add_intent_to_portfolio(run_id, intent_id)
        # assigned last: an agent may finish an intent at once, and the portfolio must
        # count every member by then
        for item in ordered:
            if item.assign:
                await client.assign_agent(ids[item.key], item.assign)
        return await client.get_portfolio(run_id)


def coordinator(agent_id: str, agents: Sequence[str] = (), **options: Any) -> Callable[[C], C]:
    """Class decorator like ``@agent`` that adds ``launch``. ``agents`` lists the agents it
    hands work to (with ``model=``, the only ones its model may delegate to; planning is
    on by default)."""
    return make_agent_class(
        agent_id,
        CoordinatorBase,
        llm_options(options, planning=True),
        managed_agents=tuple(agents),
    )


Coordinator = coordinator
"""The seeds' spelling: ``@Coordinator("editor", agents=[...])``."""
