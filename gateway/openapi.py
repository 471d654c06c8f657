"""The OpenAPI 3.1 document (``/openapi.json``) and the interactive docs (``/docs``).

The document is built from the application's own routes when the app is made, so it
cannot drift from what is served: every Starlette ``Route`` gives its methods, its path
and path parameters; the query parameters and headers each handler reads are found in
its source (and in the same-module helpers it hands the request to); the summary is the
handler's name and the description its docstring. Request body schemas come from
``BODIES`` below, the one part written by hand: where a route is not in it, its body is
declared as what it is known to be, ``type: object``, and nothing more.

``/docs`` is Swagger UI from the files the ``swagger-ui-py`` package ships (Swagger UI 5,
which reads OpenAPI 3.1), served with Starlette's ``StaticFiles``: nothing is fetched
from a CDN (many deployments, and every machine here, have no internet), and the
validator badge, which would call out to swagger.io, is off.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from oibus import _version

OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"

PUBLIC = frozenset(
    {
        "/.well-known/openintent.json",
        "/health",
        "/healthz",
        "/api/v1/server/config",
        OPENAPI_PATH,
        DOCS_PATH,
    }
)
"""Paths answered without a key (discovery, health, the docs): the rest need X-API-Key."""

_TEXT: dict[str, Any] = {"type": "string"}
_TEXT_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
_OBJECT: dict[str, Any] = {"type": "object"}
_OBJECT_OR_NULL: dict[str, Any] = {"type": ["object", "null"]}
_IDS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _obj(required: Iterable[str] = (), **props: dict[str, Any]) -> dict[str, Any]:
    """An object schema that names the fields this server reads and lets others through
    (the SDK sends fields it does not need, and both spellings of some)."""
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


INTENT = "/api/v1/intents/{intent_id}"
PORTFOLIO = "/api/v1/portfolios/{portfolio_id}"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/intents"): _obj(
        ["title"],
        title=_TEXT,
        description=_TEXT_OR_NULL,
        constraints=_OBJECT_OR_NULL,
        state=_OBJECT_OR_NULL,
        initial_state=_OBJECT_OR_NULL,
        status=_TEXT,
        parent_intent_id=_TEXT_OR_NULL,
        parent_id=_TEXT_OR_NULL,
        depends_on={"type": ["array", "null"], "items": {"type": "string"}},
        id=_TEXT,
        created_by={**_TEXT_OR_NULL, "description": "ignored: the actor comes from the key"},
    ),
    ("POST", INTENT + "/state"): {
        "oneOf": [
            _obj(
                ["patches"],
                patches={
                    "type": "array",
                    "items": _obj(
                        ["op", "path"],
                        op={"enum": ["set", "append", "remove", "add", "replace", "merge"]},
                        path=_TEXT,
                        value={},
                    ),
                },
            ),
            _obj(["state"], state=_OBJECT),
        ]
    },
    ("POST", INTENT + "/status"): _obj(["status"], status=_TEXT, reason=_TEXT_OR_NULL),
    ("POST", INTENT + "/events"): _obj(
        ["event_type"], event_type=_TEXT, type=_TEXT, payload=_OBJECT_OR_NULL
    ),
    ("POST", INTENT + "/agents"): _obj(agent_id=_TEXT_OR_NULL),
    ("POST", INTENT + "/children"): _obj(
        ["title"],
        title=_TEXT,
        description=_TEXT_OR_NULL,
        constraints=_OBJECT_OR_NULL,
        state=_OBJECT_OR_NULL,
        depends_on={"type": ["array", "null"], "items": {"type": "string"}},
        assign=_TEXT_OR_NULL,
    ),
    ("POST", INTENT + "/dependencies"): _obj(["dependency_id"], dependency_id=_TEXT),
    ("POST", INTENT + "/leases"): _obj(
        ["scope"], scope=_TEXT, duration_seconds={"type": ["number", "null"]}
    ),
    ("PATCH", INTENT + "/leases/{lease_id}"): _obj(duration_seconds={"type": ["number", "null"]}),
    ("POST", INTENT + "/arbitrate"): _obj(
        ["reason"], reason=_TEXT, options={"type": ["array", "null"]}, context=_OBJECT_OR_NULL
    ),
    ("POST", INTENT + "/arbitrations/{arbitration_id}/resolve"): _obj(
        ["resolution"], resolution=_TEXT, outcome=_TEXT, rationale=_TEXT_OR_NULL
    ),
    ("POST", INTENT + "/decisions"): _obj(
        ["outcome"],
        outcome=_TEXT,
        decision=_TEXT,
        reasoning=_TEXT_OR_NULL,
        decision_type=_TEXT_OR_NULL,
        evidence={},
        context=_OBJECT_OR_NULL,
        alternatives={"type": ["array", "null"]},
    ),
    ("POST", INTENT + "/attachments"): _obj(
        ["filename"],
        filename=_TEXT,
        content_type=_TEXT_OR_NULL,
        mime_type=_TEXT_OR_NULL,
        content_base64=_TEXT_OR_NULL,
        storage_url=_TEXT_OR_NULL,
        url=_TEXT_OR_NULL,
        size={"type": ["integer", "null"]},
        description=_TEXT_OR_NULL,
        metadata=_OBJECT_OR_NULL,
    ),
    ("POST", INTENT + "/costs"): _obj(
        ["cost_type", "amount"],
        cost_type=_TEXT,
        amount={"type": "number"},
        unit=_TEXT_OR_NULL,
        provider=_TEXT_OR_NULL,
        metadata=_OBJECT_OR_NULL,
        cost_metadata=_OBJECT_OR_NULL,
    ),
    ("PUT", INTENT + "/retry-policy"): _obj(
        strategy=_TEXT_OR_NULL,
        max_retries={"type": ["integer", "null"]},
        base_delay_ms={"type": ["integer", "null"]},
        max_delay_ms={"type": ["integer", "null"]},
    ),
    ("POST", INTENT + "/failures"): _obj(
        error_type=_TEXT_OR_NULL,
        error_code=_TEXT_OR_NULL,
        error_message=_TEXT_OR_NULL,
        attempt_number={"type": ["integer", "null"]},
        metadata=_OBJECT_OR_NULL,
    ),
    ("POST", "/api/v1/portfolios"): _obj(
        ["name"],
        name=_TEXT,
        description=_TEXT_OR_NULL,
        governance_policy=_OBJECT_OR_NULL,
        metadata=_OBJECT_OR_NULL,
    ),
    ("PATCH", PORTFOLIO + "/status"): _obj(["status"], status=_TEXT, reason=_TEXT_OR_NULL),
    ("POST", PORTFOLIO + "/intents"): _obj(
        ["intent_id"], intent_id=_TEXT, role=_TEXT, priority={"type": "integer"}
    ),
}
"""Request bodies by (method, path): the fields the handler reads, the SDK's spelling
first (the other spellings it accepts are in docs/http.md). A (method, path) here that
no route serves fails tests/test_gateway_fuzz.py, so the table cannot outlive a route."""

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail", "message", "code"],
    "properties": {
        "detail": {"type": "string", "description": "the message (FastAPI clients read it)"},
        "message": {"type": "string", "description": "the message (the reference SDK's)"},
        "code": {"type": "string", "description": "oibus's error code, e.g. VERSION_CONFLICT"},
        "errors": {
            "type": "array",
            "description": "400: the field at fault",
            "items": _obj(field=_TEXT_OR_NULL, message=_TEXT),
        },
        "current_version": {"type": ["integer", "null"], "description": "409: the version now"},
        "current": {"type": "object", "description": "409 on a versioned write: the intent now"},
        "existing_lease": {"type": "object", "description": "409 on a lease: who holds it"},
    },
}
"""The body of every refusal (gateway/errors.py ``body_of``)."""

ERRORS = {
    "400": "Bad request: a field, a query value or the JSON is wrong (``errors`` names it)",
    "401": "No API key, or an unknown one",
    "403": "The key's role may not do this, or an agent key named another agent",
    "404": "No such intent (or lease, portfolio, ...)",
    "409": "Version conflict (``current_version``, ``current``), lease conflict, "
    "illegal transition or closed intent",
    "413": "The body is over the size limit",
}


def _sources(handler: Callable[..., Any]) -> list[str]:
    """The handler's source and that of the same-module functions it passes the request
    to (one level: where the gateway's handlers read their query values)."""
    try:
        own = inspect.getsource(handler)
    except (OSError, TypeError):
        return []
    module = inspect.getmodule(handler)
    found = [own]
    for name in re.findall(r"\b(\w+)\(request\b", own):
        helper = getattr(module, name, None)
        if inspect.isfunction(helper) and helper is not handler:
            try:
                found.append(inspect.getsource(helper))
            except OSError:
                continue
    return found


_QUERY = [
    (re.compile(r'query_int\(request, "(\w+)"'), {"type": "integer"}),
    (re.compile(r'query_time\(request, "(\w+)"'), {"type": "string", "format": "date-time"}),
    (re.compile(r'query_params\.get\("(\w+)"'), {"type": "string"}),
]


_HEADER = re.compile(r'headers\.get\("([\w-]+)"')
_HEADERS_DONE = frozenset(
    {"x-api-key", "authorization", "x-agent-id", "if-match", "last-event-id", "content-length"}
)


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name, convertor in route.param_convertors.items():
        kind = "integer" if type(convertor).__name__ == "IntegerConvertor" else "string"
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    seen: set[str] = set()
    sources = _sources(route.endpoint)
    for text in sources:
        for pattern, schema in _QUERY:
            for name in pattern.findall(text):
                if name not in seen:
                    seen.add(name)
                    params.append({"name": name, "in": "query", "schema": schema})
    joined = "\n".join(sources)
    if "if_match(request)" in joined:
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "description": "the intent's version (a bare integer, as the SDK sends it); "
                "absent: the write is unconditional",
                "schema": {"type": "string"},
            }
        )
    if route.path not in PUBLIC:
        params.append(
            {
                "name": "X-Agent-ID",
                "in": "header",
                "description": "the agent to act as: any for an admin or service key, only "
                "the key's own principal for an agent key",
                "schema": {"type": "string"},
            }
        )
    if "last-event-id" in joined.lower():
        params.append({"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}})
    for name in dict.fromkeys(_HEADER.findall(joined)):
        if name.lower() not in _HEADERS_DONE:
            title = "-".join(part.capitalize() for part in name.split("-"))
            params.append({"name": title, "in": "header", "schema": {"type": "string"}})
    return params


GRAPH_READS = frozenset(
    [
        "children",
        "descendants",
        "ancestors",
        "dependencies",
        "dependents",
        "ready",
        "blocked",
        "graph",
    ]
)


def _tag(route: Route) -> str:
    """The path's group: the module that serves it, with the intents module's routes
    split by their sub-resource."""
    module = getattr(route.endpoint, "__module__", "") or ""
    group = module.rsplit(".", 1)[-1]
    if group in {"app", "openapi"}:
        return "meta"
    if group == "intents":
        parts = route.path_format.strip("/").split("/")
        sub = parts[4] if len(parts) > 4 else ""
        if sub in {"events", "agents"}:
            return sub
        if sub in GRAPH_READS:
            return "graph"
    return group


def _is_stream(route: Route) -> bool:
    module = getattr(route.endpoint, "__module__", "") or ""
    return module.endswith(".streams") or "subscribe" in route.path_format.split("/")


def _summary(handler: Callable[..., Any]) -> tuple[str, str | None]:
    """The handler's name as the summary, its docstring as the description: the
    gateway's docstrings say what a route does differently (the statuses it answers, the
    spellings it accepts), and their first line is often mid-thought, not a title."""
    title = handler.__name__.replace("_", " ").strip().capitalize()
    return title, inspect.getdoc(handler) or None


def _operation(route: Route, method: str, used: set[str]) -> dict[str, Any]:
    path = route.path_format
    summary, description = _summary(route.endpoint)
    op_id = route.endpoint.__name__
    if op_id in used:
        op_id = f"{op_id}_{method.lower()}"
    used.add(op_id)
    ok: dict[str, Any] = {"description": "OK"}
    if _is_stream(route):
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    elif path == DOCS_PATH:
        ok["content"] = {"text/html": {"schema": {"type": "string"}}}
    else:
        ok["content"] = {"application/json": {}}
    responses: dict[str, Any] = {"200": ok}
    codes = ["400"]
    if path not in PUBLIC:
        codes += ["401", "403"]
    if route.param_convertors:
        codes.append("404")
    if method in {"POST", "PUT", "PATCH", "DELETE"}:
        codes += ["409", "413"]
    for code in codes:
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [_tag(route)],
        "parameters": _parameters(route),
        "responses": responses,
    }
    if description:
        op["description"] = description
    if path in PUBLIC:
        op["security"] = []
    if method in {"POST", "PUT", "PATCH"}:
        # a route served under two verbs (POST and PATCH) reads one body
        schema = next(
            (BODIES[(m, path)] for m in (method, "POST", "PATCH") if (m, path) in BODIES),
            _OBJECT,
        )
        optional = any("required=False" in text for text in _sources(route.endpoint))
        op["requestBody"] = {
            "required": not optional,
            "content": {"application/json": {"schema": schema}},
        }
    return op


def build(routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these routes (Mounts such as the docs' assets are not
    operations and are left out)."""
    paths: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            item = paths.setdefault(route.path_format, {})
            item[method.lower()] = _operation(route, method, used)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "oibus: the OpenIntent Coordination Protocol on Redis",
            "version": _version.__version__,
            "description": "The OpenIntent REST API and SSE, served in front of the bus. "
            "Where it differs from the reference server, and why: docs/http.md.",
        },
        "servers": [{"url": "/"}],
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {"Error": ERROR_SCHEMA},
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code, text in ERRORS.items()
            },
        },
    }


def encode(routes: Iterable[BaseRoute]) -> bytes:
    return msgspec.json.encode(build(routes))


# -- the routes ------------------------------------------------------------------------------
async def openapi_json(request: Request) -> Response:
    """The OpenAPI 3.1 document of this server, built from its routes at start-up."""
    encoded: bytes = request.app.state.openapi
    return Response(encoded, media_type="application/json")


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>oibus HTTP API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{spec}",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  displayRequestDuration: true,
  persistAuthorization: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout"
}});
</script>
</body>
</html>
"""


async def docs(request: Request) -> Response:
    """Interactive API docs (Swagger UI, served from this server: no CDN)."""
    root = request.scope.get("root_path", "")
    return HTMLResponse(PAGE.format(assets=root + ASSETS_PATH, spec=root + OPENAPI_PATH))


def assets_dir() -> Path:
    """Swagger UI's files, as the ``swagger-ui-py`` package ships them (found without
    importing it: its ``__init__`` pulls in jinja2 and its framework adapters)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: it is a dependency of oibus")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def routes() -> list[BaseRoute]:
    return [
        Route(OPENAPI_PATH, openapi_json, methods=["GET"]),
        Route(DOCS_PATH, docs, methods=["GET"]),
        Mount(ASSETS_PATH, app=StaticFiles(directory=assets_dir()), name="docs-assets"),
    ]
