"""Custom tools for LLM agents: ``ToolDef`` and ``@define_tool`` (the seed's ``Tool`` and
``@tool`` are aliases), and the grant registry that plain-string tool names resolve
through.

The model is shown the tool's name, description and ``parameters`` (a JSON Schema object
given explicitly: what the model sees is what you wrote, not a guess from a signature).
Before the handler runs, the arguments are checked against that schema's ``required``
list and property types; a call that fails the check, like a handler that raises, goes
back to the model as an error message it can correct, and never ends the tool loop.

Plain strings in ``tools=[...]`` name tools granted elsewhere: ``register_tool`` (the
process-wide registry) or the agent's ``tool_registry=`` mapping. A name found in
neither is a ConfigurationError when the agent starts, not a surprise mid-run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from oibus.bus.errors import ConfigurationError, ValidationError
from oibus.sdk.llm.messages import ToolSpec

__all__ = [
    "Tool",
    "ToolDef",
    "check_arguments",
    "define_tool",
    "register_tool",
    "registered_tools",
    "resolve_tools",
    "tool",
    "unregister_tool",
]

_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What every provider accepts as a function name (OpenAI's rule, the strictest)."""
_TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}
EMPTY_SCHEMA: Final[dict[str, Any]] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ToolDef:
    """A tool the model may call: ``handler(**arguments)`` runs in-process (sync handlers
    in a worker thread, so a slow one does not stall the agent's leases), and what it
    returns (any JSON value) is the result the model reads."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: dict(EMPTY_SCHEMA))
    handler: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValidationError(
                f"tool name {self.name!r} must be 1-64 characters of A-Z a-z 0-9 _ -",
                field="name",
            )
        if not isinstance(self.description, str):
            raise ValidationError("a tool's description must be a string", field="description")
        params = self.parameters
        if not isinstance(params, Mapping) or params.get("type", "object") != "object":
            raise ValidationError(
                f"tool {self.name}: parameters must be a JSON Schema object "
                '({"type": "object", "properties": {...}})',
                field="parameters",
            )
        if self.handler is not None and not callable(self.handler):
            raise ValidationError(f"tool {self.name}: handler is not callable", field="handler")

    def spec(self) -> ToolSpec:
        params = dict(self.parameters)
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        return ToolSpec(name=self.name, description=self.description, parameters=params)

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Run the handler with checked arguments (ValidationError, naming every problem,
        when they do not fit the schema; the handler is not called then)."""
        if self.handler is None:
            raise ConfigurationError(f"tool {self.name} has no handler to run")
        problems = check_arguments(self.parameters, arguments)
        if problems:
            raise ValidationError(
                f"invalid arguments for {self.name}: " + "; ".join(problems), field="arguments"
            )
        handler = self.handler
        if inspect.iscoroutinefunction(handler):
            return await handler(**arguments)
        result = await anyio.to_thread.run_sync(lambda: handler(**arguments))
        if inspect.isawaitable(result):
            return await result
        return result


Tool = ToolDef
"""The seed's earlier name, kept as an alias."""


def define_tool(
    *, description: str, parameters: Mapping[str, Any] | None = None, name: str | None = None
) -> Callable[[Callable[..., Any]], ToolDef]:
    """Decorator: make a function (sync or async) a ``ToolDef``; the name defaults to the
    function's."""

    def decorate(func: Callable[..., Any]) -> ToolDef:
        return ToolDef(
            name=name or func.__name__,
            description=description,
            parameters=dict(parameters) if parameters is not None else dict(EMPTY_SCHEMA),
            handler=func,
        )

    return decorate


tool = define_tool
"""The seed's earlier spelling: ``@tool(description=..., parameters=...)``."""


def check_arguments(schema: Mapping[str, Any], arguments: Any, path: str = "") -> list[str]:
    """What is wrong with ``arguments`` against an object schema: required properties
    missing, values of the wrong type or outside an ``enum``, properties not allowed
    (``additionalProperties: false``); nested objects and array items are checked the same
    way. The subset models actually get wrong, not a full JSON Schema validator."""
    problems: list[str] = []
    _check(schema, arguments, path or "arguments", problems)
    return problems


def _check(schema: Mapping[str, Any], value: Any, where: str, problems: list[str]) -> None:
    if not isinstance(schema, Mapping):
        return
    wanted = schema.get("type")
    if wanted is not None:
        types = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_TYPES.get(t, lambda v: True)(value) for t in types):
            problems.append(f"{where} must be {' or '.join(map(str, types))}")
            return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        problems.append(f"{where} must be one of {enum}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                problems.append(f"{where}: missing required property {name!r}")
        for name, item in value.items():
            if name in props:
                _check(props[name], item, f"{name}" if where == "arguments" else f"{where}.{name}",
                       problems)  # fmt: skip
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected property {name!r}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for n, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{n}]", problems)


# -- the grant registry ---------------------------------------------------------------------
_registry: dict[str, ToolDef] = {}


def register_tool(definition: ToolDef, *, replace: bool = False) -> ToolDef:
    """Grant a tool to every agent of the process that names it as a plain string. A
    second registration under the same name is an error unless ``replace``."""
    if not isinstance(definition, ToolDef):
        raise ValidationError("register_tool takes a ToolDef", field="definition")
    known = _registry.get(definition.name)
    if known is not None and known is not definition and not replace:
        raise ConfigurationError(f"a tool named {definition.name!r} is already registered")
    _registry[definition.name] = definition
    return definition


def unregister_tool(name: str) -> None:
    _registry.pop(name, None)


def registered_tools() -> dict[str, ToolDef]:
    return dict(_registry)


def resolve_tools(
    tools: Iterable[ToolDef | str], registry: Mapping[str, ToolDef] | None = None
) -> list[ToolDef]:
    """The agent's tools as ``ToolDef``s: plain names looked up in ``registry`` first, then
    the process registry. Every unknown name, and every duplicate, is reported at once."""
    found: list[ToolDef] = []
    missing: list[str] = []
    for item in tools:
        if isinstance(item, ToolDef):
            found.append(item)
        elif isinstance(item, str):
            granted = (registry or {}).get(item) or _registry.get(item)
            if granted is None:
                missing.append(item)
            else:
                found.append(granted)
        else:
            raise ConfigurationError(
                f"tools= takes ToolDef objects and granted tool names, not {type(item).__name__}"
            )
    if missing:
        raise ConfigurationError(
            "no tool is granted under "
            + ", ".join(repr(m) for m in missing)
            + ": register it (oibus.register_tool) or pass it in tool_registry="
        )
    names: Sequence[str] = [t.name for t in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigurationError(f"two tools share the name(s) {', '.join(dupes)}")
    return found
