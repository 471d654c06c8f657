"""Every error oibus raises, in one hierarchy.

Callers catch protocol outcomes by type, never by parsing messages, and never see a
redis-py exception: the transport translates those here, chained with ``from``.

    OpenIntentError
    ├── ValidationError            bad input; carries ``field``; nothing was changed
    │   ├── PatchError             a state patch that cannot apply (bad path, wrong type)
    │   └── PayloadTooLargeError   state, payload or argument over a configured limit
    ├── NotFoundError              unknown intent (or lease, …); carries ``resource``/``id``
    ├── ConflictError              the write lost a race; carries ``current_version``
    │   ├── LeaseConflictError     a scope is leased by someone else (or the lease is not yours)
    │   │   ├── LeaseExpiredError  the lease ran out by the server's clock
    │   │   └── LeaseLostError     a held lease() ended while its block was still running
    │   └── AlreadyExistsError     a create reused an id with different content
    ├── BudgetExceededError        a cost over a hard budget limit (nothing recorded)
    ├── InvalidTransitionError     a status change the lifecycle forbids
    ├── IntentClosedError          a mutation on a completed/abandoned intent
    ├── ConfigurationError         the client and the bus disagree (namespace, partitions)
    ├── BatchError                 some calls of a batch failed, the others applied
    ├── ToolLoopLimitError         an LLM agent's think() used its tool rounds without answering
    ├── EmbeddedServerError        no engine to embed, or it would not start
    ├── AuthenticationError        HTTP: no API key, or one the server does not know (401)
    ├── AccessDeniedError          HTTP: the key's role may not do this, or act as that agent (403)
    └── BusError                   the server misbehaved
        ├── BusConnectionError     cannot reach Redis
        ├── BusTimeoutError        Redis did not answer in time
        ├── ScriptError            a script failed in a way no code describes (a bug)
        └── PermissionDeniedError  the Redis user's ACL refused a command (NOPERM)
            └── ScriptsNotLoadedError  a script is missing and this user may not load it

The names follow the reference SDK (``OpenIntentError``, ``ConflictError``, …) so code
written against it catches the same things; the transport-level names are prefixed so they
never shadow builtins.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "AlreadyExistsError",
    "AuthenticationError",
    "BatchError",
    "BudgetExceededError",
    "BusConnectionError",
    "BusError",
    "BusFullError",
    "BusTimeoutError",
    "CompletionGateError",
    "ConfigurationError",
    "ConflictError",
    "CycleError",
    "EmbeddedServerError",
    "IntentClosedError",
    "InvalidTransitionError",
    "LeaseConflictError",
    "LeaseExpiredError",
    "LeaseLostError",
    "NotFoundError",
    "OpenIntentError",
    "PatchError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ScriptError",
    "ScriptsNotLoadedError",
    "ToolLoopLimitError",
    "ValidationError",
]


class OpenIntentError(Exception):
    """Root of every oibus error. ``code`` is the wire code when a script raised it."""

    code: str = "ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class ValidationError(OpenIntentError):
    """Input was rejected before anything was written."""

    code = "INVALID"

    def __init__(self, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class PatchError(ValidationError):
    """A patch op cannot apply to the current state (type mismatch, missing path)."""

    code = "PATCH"


class CycleError(ValidationError):
    """A dependency would close a cycle (RFC-0002 graphs are acyclic); ``cycle`` is the
    path, starting and ending with the intent that would depend on itself."""

    code = "CYCLE"

    def __init__(
        self, message: str, field: str | None = None, cycle: list[str] | None = None
    ) -> None:
        super().__init__(message, field=field, cycle=list(cycle or []))
        self.cycle = list(cycle or [])


class PayloadTooLargeError(ValidationError):
    """A value is over a size limit; the limit and the size are in ``details``."""

    code = "TOO_LARGE"


class NotFoundError(OpenIntentError):
    """The addressed object does not exist."""

    code = "NOT_FOUND"

    def __init__(self, message: str, resource: str = "intent", id: str | None = None) -> None:
        super().__init__(message, resource=resource, id=id)
        self.resource = resource
        self.id = id


class ConflictError(OpenIntentError):
    """The caller's view is stale; re-read and retry with ``current_version``."""

    code = "CONFLICT"

    def __init__(self, message: str, current_version: int | None = None, **details: Any) -> None:
        super().__init__(message, current_version=current_version, **details)
        self.current_version = current_version


class LeaseConflictError(ConflictError):
    """A live lease held by another agent guards the scope; ``holder``, ``scope`` and
    ``expires_at`` say whose, on what, until when (when the script knows)."""

    code = "LEASE_CONFLICT"

    def __init__(self, message: str, current_version: int | None = None, **details: Any) -> None:
        super().__init__(message, current_version=current_version, **details)
        self.holder: str | None = details.get("holder")
        self.scope: str | None = details.get("scope")
        self.expires_at: str | None = details.get("expires_at")


class LeaseExpiredError(LeaseConflictError):
    """The lease's expiry has passed; it can no longer be renewed, released or written with."""

    code = "LEASE_EXPIRED"


class LeaseLostError(LeaseConflictError):
    """A lease kept by ``lease()`` could not be renewed: the work in its block ran (or
    would have run) without it."""

    code = "LEASE_LOST"


class AlreadyExistsError(ConflictError):
    """A create named an existing id but asked for a different intent."""

    code = "EXISTS"


class BudgetExceededError(OpenIntentError):
    """Recording this cost would pass a hard budget limit (RFC-0009); nothing was recorded.
    ``details`` name the limit, its value and the total it would have reached."""

    code = "BUDGET_EXCEEDED"


class InvalidTransitionError(OpenIntentError):
    """The lifecycle (RFC-0001/0002) forbids moving between these statuses."""

    code = "TRANSITION"

    def __init__(
        self, message: str, from_status: str | None = None, to_status: str | None = None
    ) -> None:
        super().__init__(message, from_status=from_status, to_status=to_status)
        self.from_status = from_status
        self.to_status = to_status


class CompletionGateError(InvalidTransitionError):
    """RFC-0002's gates: an intent completes only after every dependency and every child
    has, and a blocked intent becomes active only when its dependencies have completed.
    Carries what still holds it back (``unmet_dependencies``, up to 20 ``open_children``
    and ``open_children_count``)."""

    code = "GATED"

    def __init__(
        self,
        message: str,
        from_status: str | None = None,
        to_status: str | None = None,
        unmet_dependencies: list[str] | None = None,
        open_children: list[str] | None = None,
        open_children_count: int = 0,
    ) -> None:
        super().__init__(message, from_status=from_status, to_status=to_status)
        self.unmet_dependencies = list(unmet_dependencies or [])
        self.open_children = list(open_children or [])
        self.open_children_count = open_children_count
        self.details.update(
            unmet_dependencies=self.unmet_dependencies,
            open_children=self.open_children,
            open_children_count=open_children_count,
        )


class IntentClosedError(OpenIntentError):
    """Completed and abandoned intents are terminal; their state no longer changes."""

    code = "CLOSED"


class ConfigurationError(OpenIntentError):
    """The client's configuration does not match the bus it talks to."""

    code = "CONFIG"


class BatchError(OpenIntentError):
    """Some calls of a batch (``create_intents``, ``log_events``, ``batch()``) failed and
    the others were applied: each call is its own atomic script, as if made one at a time,
    so one call's failure undoes nothing else. ``results`` holds every call's result or
    typed error in the order given; ``errors`` maps the index of each failed call to its
    error."""

    code = "BATCH"

    def __init__(self, message: str, results: list[Any]) -> None:
        errors = {n: r for n, r in enumerate(results) if isinstance(r, OpenIntentError)}
        super().__init__(message, failed=len(errors), total=len(results))
        self.results = results
        self.errors = errors


class ToolLoopLimitError(OpenIntentError):
    """An LLM agent's ``think()`` ran ``max_tool_rounds`` rounds of tool calls and the model
    asked for more instead of answering. Raised rather than returning a half answer (a
    caller cannot tell one from a real answer); ``messages`` is the conversation as the
    model saw it (tool results included) and ``rounds`` the rounds run, so the caller can
    read what happened, and a retry of the intent starts the turn afresh."""

    code = "TOOL_LOOP_LIMIT"

    def __init__(self, message: str, *, rounds: int, messages: list[Any]) -> None:
        super().__init__(message, rounds=rounds)
        self.rounds = rounds
        self.messages = messages


class EmbeddedServerError(OpenIntentError):
    """The embedded engine is missing or failed to start."""

    code = "EMBEDDED"


class AuthenticationError(OpenIntentError):
    """The HTTP server got no API key, or one it does not know (401)."""

    code = "UNAUTHENTICATED"


class AccessDeniedError(OpenIntentError):
    """The HTTP server knows the key, and its role may not do this or may not act as the
    agent named in ``X-Agent-ID`` (403)."""

    code = "FORBIDDEN"


class BusError(OpenIntentError):
    """The Redis side failed; the operation may or may not have applied."""

    code = "BUS"


class BusConnectionError(BusError):
    """Redis could not be reached."""

    code = "CONNECTION"


class BusFullError(BusError):
    """The server is at ``maxmemory`` and refuses writes (``noeviction``, as it should):
    the write was refused, nothing else was lost. Free memory or raise the limit."""

    code = "FULL"


class BusTimeoutError(BusError):
    """Redis did not answer within the configured timeout."""

    code = "TIMEOUT"


class ScriptError(BusError):
    """A script raised an error outside the code table: a bug in oibus, reported as such."""

    code = "SCRIPT"


class PermissionDeniedError(BusError):
    """The Redis user's ACL refused a command or a key (``NOPERM``, or a command a script
    called on the caller's behalf): this client's role may not do that. Nothing the
    refused command would have written was written; use a user of a role that may."""

    code = "DENIED"


class ScriptsNotLoadedError(PermissionDeniedError):
    """A script is not in the server's script cache and this user may not ``SCRIPT LOAD``
    it (an agent or reader role): an operator loads the scripts (``oibus scripts load``)
    after every restart, failover or ``SCRIPT FLUSH``. ``script`` names the one missing."""

    code = "NO_SCRIPT"

    def __init__(self, message: str, script: str | None = None) -> None:
        super().__init__(message, script=script)
        self.script = script
