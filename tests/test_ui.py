"""The dashboard over real sockets (httpx against uvicorn, the embedded engine and the
local cluster): signing in, what a reader may and may not do, CSRF, bad input answered
as pages with a 4xx, paging that neither skips nor repeats, escaping of stored text,
the vendored files, and pages whose cost does not grow with the bus (100,000 intents).
The browser itself is tests/test_ui_browser.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.cluster
from gateway_server import LiveGateway, live_gateway

from oibus import AsyncClient, Client
from oibus.embedded import EmbeddedServer
from oibus.gateway.keys import add_key, revoke_key
from oibus.gateway.ui.session import COOKIE, csrf_for

pytestmark = pytest.mark.real

VENDOR = Path(__file__).resolve().parent.parent / "gateway" / "ui" / "static" / "vendor"
PAGES = ["/ui/", "/ui/intents", "/ui/portfolios", "/ui/dead-letters/bus", "/ui/agents"]


OPEN: list[httpx.Client] = []


def browser(gw: LiveGateway, role: str | None = None) -> httpx.Client:
    """A client that keeps cookies, as a browser would, signed in as ``role`` (closed
    after each test)."""
    web = httpx.Client(base_url=gw.url, follow_redirects=False, timeout=30)
    OPEN.append(web)
    if role is not None:
        answer = web.post("/ui/login", data={"key": gw.keys[role], "next": "/ui/"})
        assert answer.status_code == 303, answer.text
    return web


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def token(web: httpx.Client) -> str:
    """The signed-in browser's CSRF token, as its pages carry it."""
    return csrf_for(web.cookies[COOKIE])


def message(page: httpx.Response) -> str:
    found = re.search(r'id="error-message">([^<]*)<', page.text)
    return found.group(1) if found else ""


@pytest.fixture(scope="module")
def bus(gateway: LiveGateway) -> Iterator[Client]:
    client = Client(gateway.redis_url, agent_id="ada", namespace=gateway.namespace)
    yield client
    client.close()


def test_signing_in(gateway: LiveGateway) -> None:
    web = browser(gateway)
    first = web.get("/ui/intents?status=active")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fintents%3Fstatus%3Dactive"
    fragment = web.get("/ui/", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"] == "/ui/login"
    refused = web.post("/ui/login", data={"key": "oik_nope", "next": "/ui/"})
    assert refused.status_code == 401 and "unknown API key" in refused.text
    assert "set-cookie" not in refused.headers
    done = web.post("/ui/login", data={"key": gateway.keys["reader"], "next": "/ui/intents"})
    assert done.status_code == 303 and done.headers["location"] == "/ui/intents"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert gateway.keys["reader"].lower() not in cookie  # a session token, never the key
    # never sent elsewhere after signing in
    for target in ("//evil.example/x", "https://evil.example/", "/api/v1/intents", "/ui\\@x"):
        away = web.post("/ui/login", data={"key": gateway.keys["reader"], "next": target})
        assert away.headers["location"] == "/ui/", target
    assert web.get("/ui/").status_code == 200
    kept = web.cookies[COOKIE]
    web.post("/ui/logout")
    web.cookies.clear()
    assert web.get("/ui/").status_code == 303
    web.cookies.set(COOKIE, kept, path="/ui")  # the old session is gone from the bus
    assert web.get("/ui/").status_code == 303


def test_a_revoked_key_is_out_on_the_next_page(gateway: LiveGateway) -> None:
    async def add() -> str:
        async with AsyncClient(gateway.redis_url, namespace=gateway.namespace) as client:
            return (await add_key(client, "temp", "reader"))[0]

    async def revoke(key: str) -> None:
        async with AsyncClient(gateway.redis_url, namespace=gateway.namespace) as client:
            await revoke_key(client, key)

    key = asyncio.run(add())
    web = browser(gateway)
    assert web.post("/ui/login", data={"key": key, "next": "/ui/"}).status_code == 303
    assert web.get("/ui/agents").status_code == 200
    asyncio.run(revoke(key))
    assert web.get("/ui/agents").status_code == 303


def test_every_page_for_a_reader(gateway: LiveGateway, bus: Client) -> None:
    intent = bus.create_intent("Reader can look")
    web = browser(gateway, "reader")
    for path in [*PAGES, f"/ui/intents/{intent.id}", f"/ui/intents/{intent.id}/graph"]:
        page = web.get(path)
        assert page.status_code == 200, (path, page.text[:500])
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY"
        assert "read-only" in page.text
    graph = web.get(f"/ui/intents/{intent.id}/graph.json").json()
    assert graph["nodes"] == [{"id": intent.id, "title": "Reader can look", "status": "active"}]


def test_bad_input_is_a_page_with_a_4xx(gateway: LiveGateway) -> None:
    web = browser(gateway, "reader")
    cases = {
        "/ui/intents?status=finished": (400, "no status"),
        "/ui/intents?cursor=garbage": (400, "cursor"),
        "/ui/intents?portfolio=nope": (404, ""),
        "/ui/intents?q=" + "x" * 300: (400, "at most 256"),
        "/ui/intents/no-such-intent": (404, "no-such-intent"),
        "/ui/intents/no-such-intent/graph.json": (404, ""),
        "/ui/dead-letters/mail": (400, "kind must be one of"),
        "/ui/dead-letters/bus/not-an-id": (400, ""),
        "/ui/dead-letters/bus/1-1": (404, "no bus dead letter"),
        "/ui/dead-letters/bus?cursor=zz": (400, ""),
        "/ui/portfolios?status=sleeping": (400, "no portfolio status"),
        "/ui/portfolios/missing": (404, ""),
        "/ui/no-such-page": (404, "no page /ui/no-such-page"),
        "/ui/dead-letters/bus?cursor=99999999999999999999999-0": (400, "entry id"),
        "/ui/dead-letters/bus/18446744073709551615-18446744073709551615": (400, "entry id"),
        "/ui/dead-letters/bus/\u00b2-0": (400, "entry id"),
        "/ui/intents?portfolio=p&cursor=zz": (400, "cursor"),
    }
    for path, (status, said) in cases.items():
        page = web.get(path)
        assert page.status_code == status, (path, page.status_code, page.text[:300])
        assert "<html" in page.text and said in message(page), (path, message(page))
    # what a redirect reports is read as numbers; anything else is ignored, not shown
    shown = web.get("/ui/dead-letters/bus?replayed=3&purged=<b>x</b>")
    assert shown.status_code == 200 and "Replayed 3; 0 could not be" in shown.text
    assert "&lt;b&gt;" not in shown.text and "<b>x</b>" not in shown.text
    crowded = web.post("/ui/login", content="&".join(f"f{n}=1" for n in range(3000)))
    assert crowded.status_code == 400 and "fields" in message(crowded)


def test_writes_need_an_admin_a_token_and_this_origin(gateway: LiveGateway, bus: Client) -> None:
    intent = bus.create_intent("Leased")
    lease = bus.acquire_lease(intent.id, "draft", 60)
    path = f"/ui/intents/{intent.id}/leases/{lease.id}/revoke"
    reader = browser(gateway, "reader")
    theirs = token(reader)
    refused = reader.post(path, data={"csrf": theirs})
    assert refused.status_code == 403 and "needs an admin key" in message(refused)
    admin = browser(gateway, "admin")
    own = token(admin)
    assert admin.post(path, data={}).status_code == 403  # no token
    assert admin.post(path, data={"csrf": theirs}).status_code == 403  # another session's
    forged = admin.post(path, data={"csrf": own}, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "another site" in message(forged)
    opaque = admin.post(path, data={"csrf": own}, headers={"Origin": "null"})
    assert opaque.status_code == 403
    assert [x.id for x in bus.get_leases(intent.id)] == [lease.id]  # nothing happened
    done = admin.post(path, data={"csrf": own, "reason": "stuck"}, headers={"Origin": gateway.url})
    assert done.status_code == 303 and done.headers["location"].endswith("#leases")
    assert list(bus.get_leases(intent.id)) == []
    revoked = [e for e in bus.get_events(intent.id) if e.event_type == "lease_revoked"]
    assert revoked and revoked[0].actor == "boss" and revoked[0].payload.get("reason") == "stuck"
    again = admin.post(path, data={"csrf": own})
    assert again.status_code in (303, 409), again.text  # revoked already: never a 500


def test_stored_text_is_escaped(gateway: LiveGateway, bus: Client) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    intent = bus.create_intent(evil, description=evil)
    bus.update_state(intent.id, intent.version, {evil: evil})
    bus.log_event(intent.id, "comment", {"note": evil})
    web = browser(gateway, "admin")
    for path in ("/ui/intents", f"/ui/intents/{intent.id}", f"/ui/intents/{intent.id}/graph"):
        page = web.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;" in page or "\\u003cscript\\u003e" in page, path


def test_paging_neither_skips_nor_repeats(gateway: LiveGateway, bus: Client) -> None:
    made = bus.create_intents([{"title": f"paged {n} task"} for n in range(130)])
    for intent in made[::3]:
        bus.assign_agent(intent.id, "pager-bot")
    web = browser(gateway, "reader")

    def walk(query: str) -> list[str]:
        ids: list[str] = []
        url = f"/ui/intents?{query}"
        while url:
            page = web.get(url)
            assert page.status_code == 200
            ids += re.findall(r'<tr data-id="([^"]+)"', page.text)
            more = re.search(r'id="next-page" href="([^"]+)"', page.text)
            url = more.group(1).replace("&amp;", "&") if more else ""
        return ids

    by_text = walk("q=paged")
    assert sorted(by_text) == sorted(i.id for i in made) and len(set(by_text)) == 130
    by_agent = walk("agent=pager-bot&q=task")
    assert sorted(by_agent) == sorted(i.id for i in made[::3])


def test_vendored_files_are_the_recorded_ones(gateway: LiveGateway) -> None:
    recorded = dict(
        re.findall(r"\| (\S+\.js) \|.*\| ([0-9a-f]{64}) \|", (VENDOR / "VENDOR.md").read_text())
    )
    assert set(recorded) == {p.name for p in VENDOR.glob("*.js")}
    web = browser(gateway)
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest
        served = web.get(f"/ui/static/vendor/{name}")  # no key needed for the library files
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest
        assert (VENDOR / name.replace(".min.js", ".LICENSE")).exists()
    assert not any(p.startswith("/ui") for p in web.get("/openapi.json").json()["paths"])


# -- bounded with 100,000 intents ------------------------------------------------------------
def _commands(conn: redis.Redis) -> int:
    stats = conn.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _cost(web: httpx.Client, conn: redis.Redis, path: str) -> tuple[int, float]:
    """Server commands (scripts' own included) and seconds one page took."""
    web.get(path)  # warm: scripts loaded, connections open
    before = _commands(conn)
    started = time.perf_counter()
    assert web.get(path).status_code == 200
    return _commands(conn) - before, time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pages_cost_the_same_at_100k_intents(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "engine", appendonly=False)
    server.start()
    try:
        with live_gateway(server.url, "big") as gw:
            client = Client(server.url, agent_id="loader", namespace="big")
            conn = redis.Redis.from_url(server.url, decode_responses=True)
            web = browser(gw, "reader")
            first = client.create_intents([{"title": f"task {n}"} for n in range(1000)])
            probe = first[0].id
            pages = [*PAGES, "/ui/intents?q=task 9", "/ui/intents?status=active",
                     f"/ui/intents/{probe}", f"/ui/intents/{probe}/graph.json"]  # fmt: skip
            small = {p: _cost(web, conn, p) for p in pages}
            for _ in range(99):
                client.create_intents([{"title": f"task {n}"} for n in range(1000)])
            assert 'id="stat-intents">100000<' in web.get("/ui/").text
            large = {p: _cost(web, conn, p) for p in pages}
            for path in pages:
                (c1, t1), (c2, t2) = small[path], large[path]
                print(f"{path}: {c1} -> {c2} commands, {t1 * 1000:.1f} -> {t2 * 1000:.1f} ms")
                assert c2 <= c1 * 1.5 + 20, (path, c1, c2)  # not growing with the bus
            client.close()
            conn.close()
    finally:
        server.stop()


def raw(url: str) -> Any:
    """A plain redis-py client of the tier's server (a cluster client on the cluster)."""
    if url.startswith("redis+cluster://"):
        return redis.cluster.RedisCluster.from_url(
            url.replace("redis+cluster://", "redis://"), decode_responses=True
        )
    return redis.Redis.from_url(url, decode_responses=True)


def _dead_letters(conn: Any, bus: Client, n: int) -> list[str]:
    """``n`` bus-store letters whose replay is harmless (the handling of a real entry)."""
    ks = bus.keyspace
    intent = bus.create_intent("for the dead letters")
    part = ks.partition(intent.id)
    entry, fields = next((i, f) for i, f in conn.xrange(ks.bus(part)) if f.get("i") == intent.id)
    ids = [
        conn.xadd(
            ks.bus_dead_letters,
            {"partition": part, "entry": entry, "type": fields.get("t", "?"), "intent": intent.id,
             "deliveries": 10, "error": "boom", "fields": json.dumps(fields)},
        )
        for _ in range(n)
    ]  # fmt: skip
    return [str(i) for i in ids]


def test_replay_and_purge_do_only_what_was_asked(gateway: LiveGateway, bus: Client) -> None:
    ks = bus.keyspace
    conn = raw(gateway.redis_url)
    conn.delete(ks.bus_dead_letters)
    ids = _dead_letters(conn, bus, 3)
    admin = browser(gateway, "admin")
    path = "/ui/dead-letters/bus"
    nothing = admin.post(path + "/replay", data={"csrf": token(admin)})
    assert nothing.status_code == 400 and "tick the letters" in message(nothing)
    assert conn.xlen(ks.bus_dead_letters) == 3  # nothing checked: nothing replayed
    one = admin.post(path + "/replay", data={"csrf": token(admin), "id": ids[0]})
    assert one.status_code == 303 and "replayed=1" in one.headers["location"]
    assert conn.xlen(ks.bus_dead_letters) == 2
    asked = admin.post(path + "/purge", data={"csrf": token(admin), "id": ids[1]})
    assert asked.status_code == 200 and "Purge 1 bus dead letter?" in asked.text
    assert conn.xlen(ks.bus_dead_letters) == 2  # asking deletes nothing
    assert token(admin) not in str(asked.url)
    done = admin.post(
        path + "/purge", data={"csrf": token(admin), "id": ids[1], "confirmed": "yes"}
    )
    assert done.status_code == 303 and "purged=1" in done.headers["location"]
    assert [i for i, _ in conn.xrange(ks.bus_dead_letters)] == [ids[2]]
    rest = admin.post(path + "/replay", data={"csrf": token(admin), "all": "yes"})
    assert rest.status_code == 303 and "replayed=1" in rest.headers["location"]
    assert conn.xlen(ks.bus_dead_letters) == 0
    conn.close()


def test_portfolio_listing_pages_by_member(gateway: LiveGateway, bus: Client) -> None:
    portfolio = bus.create_portfolio("many")
    made = bus.create_intents([{"title": f"member {n}"} for n in range(60)])
    for intent in made:
        bus.add_intent_to_portfolio(portfolio.id, intent.id)
    web = browser(gateway, "reader")
    first = web.get(f"/ui/intents?portfolio={portfolio.id}")
    ids = re.findall(r'<tr data-id="([^"]+)"', first.text)
    more = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert len(ids) == 50 and more
    late = bus.create_intent("added between pages")
    bus.add_intent_to_portfolio(portfolio.id, late.id)  # newest: on a first page, not the next
    second = web.get(more.group(1).replace("&amp;", "&"))
    ids += re.findall(r'<tr data-id="([^"]+)"', second.text)
    assert sorted(ids) == sorted(i.id for i in made)
