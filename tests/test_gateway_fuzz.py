"""Property-based fuzzing of every route in the gateway's OpenAPI document (schemathesis
generates the requests from /openapi.json, hypothesis drives them), over real sockets in
front of the embedded engine: no request gets a 500, and a refused request (4xx) changes
nothing (the namespace's key count, and the target intent's version and event count,
are the same after it).

Half of the cases aim at a real intent and portfolio (a random id would only ever meet a
404), the keys are mixed (admin, agent, reader, an unknown one) and ``X-Agent-ID`` is
generated, so the role and acting-agent checks are fuzzed as well as the bodies. The SSE
routes are left out: an accepted stream never ends by design (tests/test_gateway_streams
covers them). Also here: the document itself lists every route, and /docs is served
from the package's files with no external URL.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import requests
import schemathesis
from gateway_server import LiveGateway, live_gateway
from hypothesis import HealthCheck, given, settings
from starlette.routing import Route

from oibus import Client
from oibus.gateway import openapi
from oibus.gateway.app import create_app

pytestmark = pytest.mark.real

APP_ROUTES = create_app().routes
DOCUMENT = openapi.build(APP_ROUTES)
OPERATIONS = [
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if "text/event-stream" not in op["responses"]["200"].get("content", {})
]
MAX_EXAMPLES = 20


# -- the document ------------------------------------------------------------------------------
def test_every_route_is_in_the_document_and_nothing_else() -> None:
    served = {
        (method, r.path_format)
        for r in APP_ROUTES
        if isinstance(r, Route)
        for method in (r.methods or set()) - {"HEAD"}
    }
    documented = {(m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item}
    assert served == documented
    assert ("POST", "/api/v1/intents") in documented  # not vacuous
    assert len(documented) > 40


def test_every_declared_body_names_a_served_route() -> None:
    """BODIES is written by hand: an entry whose route went away is a stale schema."""
    documented = {(m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item}
    assert set(openapi.BODIES) <= documented


def test_parameters_security_and_errors_come_from_the_code() -> None:
    paths = DOCUMENT["paths"]
    listing = {p["name"] for p in paths["/api/v1/intents"]["get"]["parameters"]}
    assert {"status", "limit", "cursor", "X-Agent-ID"} <= listing
    state = paths["/api/v1/intents/{intent_id}/state"]["post"]
    names = {(p["name"], p["in"]) for p in state["parameters"]}
    assert {("intent_id", "path"), ("If-Match", "header")} <= names
    assert state["requestBody"]["required"] is True
    assert {"400", "401", "403", "404", "409", "413"} <= set(state["responses"])
    assert paths["/health"]["get"]["security"] == []
    assert "security" not in state  # the document's default: the ApiKey header
    scheme = DOCUMENT["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    error = DOCUMENT["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"detail", "message", "code"}
    assert state["tags"] == ["intents"]
    assert paths["/api/v1/intents/{intent_id}/events"]["get"]["tags"] == ["events"]
    assert paths["/api/v1/intents/{intent_id}/graph"]["get"]["tags"] == ["graph"]


def test_the_document_and_the_docs_are_served_without_the_internet(gw: LiveGateway) -> None:
    served = httpx.get(gw.url + "/openapi.json")
    assert served.status_code == 200
    assert served.json()["openapi"] == "3.1.0"
    assert served.json()["paths"].keys() == DOCUMENT["paths"].keys()
    page = httpx.get(gw.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "validatorUrl: null" in page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
    assets = re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        got = httpx.get(gw.url + asset)
        assert got.status_code == 200 and len(got.content) > 100, asset


# -- the fuzzing ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gw(embedded_url: str) -> Iterator[LiveGateway]:
    namespace = "f" + uuid.uuid4().hex[:12]
    with live_gateway(embedded_url, namespace) as live:
        yield live
    conn = redis.Redis.from_url(embedded_url)
    for key in [*conn.scan_iter(f"{{{namespace}:*"), *conn.scan_iter(f"{{{namespace}}}*")]:
        conn.delete(key)
    conn.close()


@pytest.fixture(scope="module")
def targets(gw: LiveGateway) -> Iterator[dict[str, str]]:
    """A real intent (with a child and a portfolio) that half of the cases aim at."""
    with Client(gw.redis_url, agent_id="boss", namespace=gw.namespace) as client:
        intent = client.create_intent("fuzzed", state={"a": 1})
        client.create_child_intent(intent.id, "child")
        portfolio = client.create_portfolio("fuzzed portfolio")
        yield {"intent_id": intent.id, "portfolio_id": portfolio.id}


@pytest.fixture(scope="module")
def api_schema() -> Any:
    return schemathesis.openapi.from_dict(DOCUMENT)


def _snapshot(conn: redis.Redis, client: Client, namespace: str, intent_id: str) -> tuple[Any, ...]:
    keys = sum(1 for _ in conn.scan_iter(f"{{{namespace}*", count=1000))
    intent = client.get_intent(intent_id)
    events = len(client.get_events(intent_id, limit=1000))
    return keys, intent.version, intent.status, events


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_500_and_a_refusal_changes_nothing(
    method: str, path: str, gw: LiveGateway, targets: dict[str, str], api_schema: Any
) -> None:
    operation = api_schema[path][method]
    keys = [gw.keys["admin"], gw.keys["admin"], gw.keys["service"], gw.keys["agent"]]
    keys += [gw.keys["reader"], "oik_not-a-key"]
    session = requests.Session()
    conn = redis.Redis.from_url(gw.redis_url)
    client = Client(gw.redis_url, agent_id="fuzz-observer", namespace=gw.namespace)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        pick = zlib.crc32(repr((case.path_parameters, case.body, case.query)).encode())
        if pick % 2 == 0:  # aim at the real intent / portfolio
            for name in ("intent_id", "portfolio_id"):
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = targets[name]
        before = _snapshot(conn, client, gw.namespace, targets["intent_id"])
        response = case.call(
            base_url=gw.url,
            session=session,
            headers={"X-API-Key": keys[pick % len(keys)]},
            timeout=30,
        )
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
        )
        if 400 <= response.status_code < 500:
            after = _snapshot(conn, client, gw.namespace, targets["intent_id"])
            assert after == before, (
                f"refused {case.method} {case.formatted_path} ({response.status_code}) "
                f"changed the namespace: {before} -> {after}; body {case.body!r}"
            )

    try:
        check()
    finally:
        session.close()
        conn.close()
        client.close()
