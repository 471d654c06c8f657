"""oibus: the OpenIntent Coordination Protocol on Redis.

Intents, their versioned state, lifecycle and event log live in Redis; every mutation is
one atomic Lua script. Start with ``Client`` (or ``AsyncClient``)::

    from oibus import Client

    with Client("redis://localhost:6379/0", agent_id="me") as client:
        intent = client.create_intent("Research market trends")
        client.update_state(intent.id, intent.version, {"progress": 0.5})
"""

from oibus._version import __version__
from oibus.bus.attachments import Attachment
from oibus.bus.consuming import Delivery
from oibus.bus.costs import CostRecord, CostSummary, CostType
from oibus.bus.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    AuthenticationError,
    BatchError,
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
    PermissionDeniedError,
    ScriptError,
    ScriptsNotLoadedError,
    ToolLoopLimitError,
    ValidationError,
)
from oibus.bus.events import EventType
from oibus.bus.governance import ArbitrationRequest, DecisionRecord, Delegation
from oibus.bus.graphs import AggregateStatus, GraphEdge, GraphNode, IntentGraph
from oibus.bus.keyspace import Keyspace
from oibus.bus.memory import MemoryRecord
from oibus.bus.models import Event, Intent, Lease, Page, ProtocolInfo, StatePatch
from oibus.bus.observability import Observation
from oibus.bus.portfolios import (
    MemberRole,
    Portfolio,
    PortfolioAggregate,
    PortfolioCosts,
    PortfolioMember,
    PortfolioStatus,
)
from oibus.bus.retries import FailureRecord, RetryPolicy
from oibus.bus.routing import Work
from oibus.bus.statuses import IntentStatus
from oibus.bus.subscriptions import Subscription
from oibus.sdk import AsyncClient, Client
from oibus.sdk.adapters import (
    AdapterConfig,
    AsyncLLMAdapter,
    AsyncLoggedStream,
    LLMAdapter,
    LoggedStream,
)
from oibus.sdk.agents import Agent, AgentBase, AgentConfig, Worker, agent
from oibus.sdk.coordinator import (
    Coordinator,
    CoordinatorBase,
    IntentSpec,
    PortfolioSpec,
    coordinator,
)
from oibus.sdk.extractors import (
    AnthropicExtractor,
    Extractor,
    OpenAIExtractor,
    RequestInfo,
    ResponseInfo,
    ToolCallInfo,
)
from oibus.sdk.handlers import (
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
from oibus.sdk.llm.detect import provider_for
from oibus.sdk.llm.engine import LLMSettings, TokenStream
from oibus.sdk.llm.provider import Provider
from oibus.sdk.llm.scripted import ScriptedProvider
from oibus.sdk.llm.tools import (
    Tool,
    ToolDef,
    define_tool,
    register_tool,
    tool,
    unregister_tool,
)
from oibus.sdk.llm.wrappers import (
    AnthropicAdapter,
    AsyncAnthropicAdapter,
    AsyncOpenAIAdapter,
    OpenAIAdapter,
)

__all__ = [
    "AccessDeniedError",
    "AdapterConfig",
    "Agent",
    "AgentBase",
    "AgentConfig",
    "AggregateStatus",
    "AlreadyExistsError",
    "AnthropicAdapter",
    "AnthropicExtractor",
    "ArbitrationRequest",
    "AsyncAnthropicAdapter",
    "AsyncClient",
    "AsyncLLMAdapter",
    "AsyncLoggedStream",
    "AsyncOpenAIAdapter",
    "Attachment",
    "AuthenticationError",
    "BatchError",
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
    "LLMSettings",
    "Lease",
    "LeaseConflictError",
    "LeaseExpiredError",
    "LeaseLostError",
    "LoggedStream",
    "MemberRole",
    "MemoryRecord",
    "NotFoundError",
    "Observation",
    "OpenAIAdapter",
    "OpenAIExtractor",
    "OpenIntentError",
    "Page",
    "PatchError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Portfolio",
    "PortfolioAggregate",
    "PortfolioCosts",
    "PortfolioMember",
    "PortfolioSpec",
    "PortfolioStatus",
    "ProtocolInfo",
    "Provider",
    "RequestInfo",
    "ResponseInfo",
    "RetryPolicy",
    "ScriptError",
    "ScriptedProvider",
    "ScriptsNotLoadedError",
    "StatePatch",
    "Subscription",
    "TokenStream",
    "Tool",
    "ToolCallInfo",
    "ToolDef",
    "ToolLoopLimitError",
    "ValidationError",
    "Work",
    "Worker",
    "__version__",
    "agent",
    "coordinator",
    "define_tool",
    "on_all_complete",
    "on_assignment",
    "on_complete",
    "on_event",
    "on_lease_available",
    "on_lease_expired",
    "on_retry",
    "on_state_change",
    "on_status_change",
    "provider_for",
    "register_tool",
    "tool",
    "unregister_tool",
]
