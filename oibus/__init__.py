"""oibus: the OpenIntent Coordination Protocol on Redis.

Intents, their versioned state, lifecycle and event log live in Redis; every mutation is
one atomic Lua script. Start with ``Client`` (or ``AsyncClient``)::

    from oibus import Client

    with Client("redis://localhost:6379/0", agent_id="me") as client:
        intent = client.create_intent("Research market trends")
        client.update_state(intent.id, intent.version, {"progress": 0.5})
"""

from ._version import __version__
from .bus.attachments import Attachment
from .bus.consuming import Delivery
from .bus.costs import CostRecord, CostSummary, CostType
from .bus.errors import (
    AlreadyExistsError,
    BudgetExceededError,
    BusConnectionError,
    BusError,
    BusFullError,
    BusTimeoutError,
    CompletionGateError,
    ConfigurationError,
    ConflictError,
    CycleError,
    EmbeddedServerError,
    IntentClosedError,
    InvalidTransitionError,
    LeaseConflictError,
    LeaseExpiredError,
    LeaseLostError,
    NotFoundError,
    OpenIntentError,
    PatchError,
    PayloadTooLargeError,
    ScriptError,
    ValidationError,
)
from .bus.events import EventType
from .bus.governance import ArbitrationRequest, DecisionRecord, Delegation
from .bus.graphs import AggregateStatus, GraphEdge, GraphNode, IntentGraph
from .bus.keyspace import Keyspace
from .bus.models import Event, Intent, Lease, Page, ProtocolInfo, StatePatch
from .bus.observability import Observation
from .bus.portfolios import (
    MemberRole,
    Portfolio,
    PortfolioAggregate,
    PortfolioCosts,
    PortfolioMember,
    PortfolioStatus,
)
from .bus.retries import FailureRecord, RetryPolicy
from .bus.routing import Work
from .bus.statuses import IntentStatus
from .bus.subscriptions import Subscription
from .sdk import AsyncClient, Client
from .sdk.adapters import (
    AdapterConfig,
    AsyncLLMAdapter,
    AsyncLoggedStream,
    LLMAdapter,
    LoggedStream,
)
from .sdk.agents import Agent, AgentBase, AgentConfig, Worker, agent
from .sdk.coordinator import (
    Coordinator,
    CoordinatorBase,
    IntentSpec,
    PortfolioSpec,
    coordinator,
)
from .sdk.extractors import Extractor, RequestInfo, ResponseInfo, ToolCallInfo
from .sdk.handlers import (
    on_all_complete,
    on_assignment,
    on_complete,
    on_event,
    on_lease_available,
    on_lease_expired,
    on_retry,
    on_state_change,
    on_status_change,
)

__all__ = [
    "AdapterConfig",
    "Agent",
    "AgentBase",
    "AgentConfig",
    "AggregateStatus",
    "AlreadyExistsError",
    "ArbitrationRequest",
    "AsyncClient",
    "AsyncLLMAdapter",
    "AsyncLoggedStream",
    "Attachment",
    "BudgetExceededError",
    "BusConnectionError",
    "BusError",
    "BusFullError",
    "BusTimeoutError",
    "Client",
    "CompletionGateError",
    "ConfigurationError",
    "ConflictError",
    "Coordinator",
    "CoordinatorBase",
    "CostRecord",
    "CostSummary",
    "CostType",
    "CycleError",
    "DecisionRecord",
    "Delegation",
    "Delivery",
    "EmbeddedServerError",
    "Event",
    "EventType",
    "Extractor",
    "FailureRecord",
    "GraphEdge",
    "GraphNode",
    "Intent",
    "IntentClosedError",
    "IntentGraph",
    "IntentSpec",
    "IntentStatus",
    "InvalidTransitionError",
    "Keyspace",
    "LLMAdapter",
    "Lease",
    "LeaseConflictError",
    "LeaseExpiredError",
    "LeaseLostError",
    "LoggedStream",
    "MemberRole",
    "NotFoundError",
    "Observation",
    "OpenIntentError",
    "Page",
    "PatchError",
    "PayloadTooLargeError",
    "Portfolio",
    "PortfolioAggregate",
    "PortfolioCosts",
    "PortfolioMember",
    "PortfolioSpec",
    "PortfolioStatus",
    "ProtocolInfo",
    "RequestInfo",
    "ResponseInfo",
    "RetryPolicy",
    "ScriptError",
    "StatePatch",
    "Subscription",
    "ToolCallInfo",
    "ValidationError",
    "Work",
    "Worker",
    "__version__",
    "agent",
    "coordinator",
    "on_all_complete",
    "on_assignment",
    "on_complete",
    "on_event",
    "on_lease_available",
    "on_lease_expired",
    "on_retry",
    "on_state_change",
    "on_status_change",
]
