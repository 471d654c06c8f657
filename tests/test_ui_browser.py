"""The dashboard in a real browser: Debian's headless chromium driven by Selenium
through its chromedriver, against a live bus (the embedded engine) behind the HTTP
server on a real socket. Each page is opened and saved as a screenshot in
``tests/.artifacts/ui/`` (``OIBUS_TEST_ARTIFACTS`` moves it); with
``OIBUS_UPDATE_SCREENSHOTS=1`` the overview and the graph also replace the README's
pictures in ``docs/img/``.

The tier skips, saying why, where chromium or its driver is missing (``make test``
installs them with apt-get when it can: scripts/browser.sh)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from gateway_server import LiveGateway, live_gateway

from oibus import Client

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("OIBUS_TEST_ARTIFACTS") or ROOT / "tests" / ".artifacts") / "ui"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (os.access(CHROMIUM, os.X_OK) and os.access(DRIVER, os.X_OK)):
    pytest.skip(
        f"the browser tier needs Debian's chromium and chromium-driver ({CHROMIUM}, {DRIVER}): "
        "run `make browser` as root, or apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = [pytest.mark.real, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def live(embedded_url: str) -> Iterator[LiveGateway]:
    namespace = "ui" + uuid.uuid4().hex[:10]
    with live_gateway(embedded_url, namespace) as gw:
        yield gw
    conn = redis.Redis.from_url(embedded_url, decode_responses=True)
    for key in [*conn.scan_iter(f"{{{namespace}:*"), *conn.scan_iter(f"{{{namespace}}}*")]:
        conn.delete(key)
    conn.close()


@pytest.fixture(scope="module")
def bus(live: LiveGateway) -> Iterator[Client]:
    client = Client(live.redis_url, agent_id="planner", namespace=live.namespace)
    yield client
    client.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1440,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, check: Callable[[WebDriver], Any], seconds: float = 15) -> Any:
    """Until ``check`` holds; an element htmx swapped out between finding it and reading
    it (stale) is looked for again at the next poll."""
    return WebDriverWait(
        driver, seconds, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(check)


def shot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("OIBUS_UPDATE_SCREENSHOTS") == "1" and name in ("overview", "graph"):
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / "img" / f"dashboard-{name}.png")
    return path


def sign_in(driver: WebDriver, gw: LiveGateway, role: str) -> None:
    driver.get(gw.url + "/ui/")
    if "/ui/login" not in driver.current_url:  # signed in already: sign out first
        driver.find_element(By.CSS_SELECTOR, "form.who button").click()
        wait(driver, lambda d: "/ui/login" in d.current_url)
    driver.find_element(By.ID, "key").send_keys(gw.keys[role])
    driver.find_element(By.ID, "sign-in").click()
    wait(driver, lambda d: d.find_elements(By.ID, "who"))
    assert role in driver.find_element(By.ID, "who").text


def text(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


@pytest.fixture(scope="module")
def plan(bus: Client) -> dict[str, Any]:
    """A small plan: a goal with three children, one waiting for the others, a lease, a
    cost against a budget, and a portfolio of them all."""
    goal = bus.create_intent(
        "Launch the <b>summer</b> campaign",
        description="everything the campaign needs",
        constraints={"budget": {"max_total": 50, "unit": "USD"}},
    )
    research = bus.create_child_intent(goal.id, "Research the audience")
    copy = bus.create_child_intent(goal.id, "Write the copy", depends_on=[research.id])
    design = bus.create_child_intent(goal.id, "Design the banners", depends_on=[research.id])
    ship = bus.create_child_intent(goal.id, "Ship it", depends_on=[copy.id, design.id])
    bus.update_state(
        goal.id, goal.version, {"plan": {"steps": ["research", "write"], "owner": "ada"}}
    )
    bus.acquire_lease(copy.id, "draft", 120)
    bus.record_cost(goal.id, "api_call", 12.5, unit="USD")
    bus.set_status(research.id, None, "completed")
    portfolio = bus.create_portfolio("Summer campaign")
    for member in (goal, research, copy, design, ship):
        bus.add_intent_to_portfolio(portfolio.id, member.id)
    for n in range(30):
        bus.create_intent(f"Background task {n}")
    return {
        "goal": goal.id,
        "research": research.id,
        "copy": copy.id,
        "design": design.id,
        "ship": ship.id,
        "portfolio": portfolio.id,
    }


def test_sign_in_and_overview(browser: WebDriver, live: LiveGateway, plan: dict[str, Any]) -> None:
    browser.get(live.url + "/ui/intents")
    assert "/ui/login" in browser.current_url  # no key: the sign-in form
    browser.find_element(By.ID, "key").send_keys("not-a-key")
    browser.find_element(By.ID, "sign-in").click()
    assert "unknown API key" in text(browser, "#login-error")
    browser.find_element(By.ID, "key").send_keys(live.keys["admin"])
    browser.find_element(By.ID, "sign-in").click()
    wait(browser, lambda d: d.current_url.endswith("/ui/intents"))  # back where it was going
    browser.get(live.url + "/ui/")
    assert int(text(browser, "#stat-intents")) == 35
    assert "active" in text(browser, ".legend")
    shot(browser, "overview")


def test_intents_list_and_filters(
    browser: WebDriver, live: LiveGateway, plan: dict[str, Any]
) -> None:
    browser.get(live.url + "/ui/intents")
    titles = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, "#intents tbody td:first-child")
    ]
    assert "Launch the <b>summer</b> campaign" in titles  # shown as text, never as markup
    assert len(titles) == 35
    browser.find_element(By.ID, "f-q").send_keys("banners")
    browser.find_element(By.ID, "f-apply").click()
    wait(browser, lambda d: "q=banners" in d.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "#intents tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [plan["design"]]
    shot(browser, "intents")


def test_intent_page_shows_an_event_arrive_live(
    browser: WebDriver, live: LiveGateway, bus: Client, plan: dict[str, Any]
) -> None:
    browser.get(f"{live.url}/ui/intents/{plan['goal']}")
    assert "ada" in text(browser, "#state")
    assert "12.5 of 50 USD" in text(browser, "#budget")
    wait(browser, lambda d: d.find_element(By.ID, "live-state").text == "live")
    before = len(browser.find_elements(By.CSS_SELECTOR, "#events li"))
    bus.log_event(plan["goal"], "comment", {"note": "arrived while watching"})
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#events li")) == before + 1)
    assert "arrived while watching" in browser.find_elements(By.CSS_SELECTOR, "#events li")[-1].text
    shot(browser, "intent")
    browser.get(f"{live.url}/ui/intents/{plan['copy']}")
    countdown = text(browser, "[data-expires]")
    assert countdown.startswith("in ")  # the lease's expiry, ticking
    assert "planner" in text(browser, "[data-lease]")
    shot(browser, "intent-lease")


def test_graph_draws_and_follows_status(
    browser: WebDriver, live: LiveGateway, bus: Client, plan: dict[str, Any]
) -> None:
    browser.get(f"{live.url}/ui/intents/{plan['goal']}/graph")
    holder = browser.find_element(By.ID, "graph")
    try:
        wait(browser, lambda d: holder.get_attribute("data-ready") == "yes")
    except TimeoutException:
        pytest.fail(f"not drawn: {holder.get_attribute('data-error')} {browser.get_log('browser')}")
    assert holder.get_attribute("data-nodes") == "5"
    statuses = json.loads(holder.get_attribute("data-statuses") or "{}")
    assert statuses[plan["research"]] == "completed"
    assert statuses[plan["ship"]] == "blocked"
    time.sleep(0.5)  # let the layout settle before the picture
    shot(browser, "graph")
    bus.set_status(plan["design"], None, "completed")
    wait(
        browser,
        lambda d: (
            json.loads(holder.get_attribute("data-statuses") or "{}")[plan["design"]] == "completed"
        ),
    )
    browser.execute_script(
        "arguments[0].oibusGraph.getElementById(arguments[1]).emit('tap')", holder, plan["ship"]
    )
    wait(browser, lambda d: d.current_url.endswith(f"/ui/intents/{plan['ship']}"))
    browser.get(f"{live.url}/ui/portfolios/{plan['portfolio']}")
    holder = browser.find_element(By.ID, "graph")
    wait(browser, lambda d: holder.get_attribute("data-ready") == "yes")
    assert holder.get_attribute("data-nodes") == "5"
    shot(browser, "portfolio")
    browser.get(f"{live.url}/ui/portfolios")
    assert "Summer campaign" in text(browser, "#portfolios")
    shot(browser, "portfolios")


def _bus_letters(bus: Client, raw: redis.Redis, intent_id: str, n: int) -> None:
    """``n`` dead letters of the bus store, each the real ``intent_created`` entry of the
    intent (its handling is idempotent), and one whose entry is gone (it stays)."""
    ks = bus.keyspace
    part = ks.partition(intent_id)
    entry, fields = next(
        (i, f)
        for i, f in raw.xrange(ks.bus(part))
        if f.get("i") == intent_id and f.get("t") == "intent_created"
    )
    for _ in range(n):
        raw.xadd(
            ks.bus_dead_letters,
            {"partition": part, "entry": entry, "type": "intent_created", "intent": intent_id,
             "deliveries": 10, "error": "handler failed", "fields": json.dumps(fields)},
        )  # fmt: skip
    raw.xadd(
        ks.bus_dead_letters, {"partition": part, "entry": "1-1", "type": "x", "intent": "gone"}
    )


def test_dead_letters_replay_with_progress_and_purge(
    browser: WebDriver, live: LiveGateway, bus: Client, plan: dict[str, Any]
) -> None:
    raw = redis.Redis.from_url(live.redis_url, decode_responses=True)
    raw.delete(bus.keyspace.bus_dead_letters)
    _bus_letters(bus, raw, plan["goal"], 120)
    browser.get(f"{live.url}/ui/dead-letters/bus")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#letters tbody tr")) == 50  # a page
    shot(browser, "dead-letters")
    browser.find_element(By.CSS_SELECTOR, "#letters tbody a").click()
    assert "handler failed" in text(browser, "#letter-fields")
    shot(browser, "dead-letter")
    browser.get(f"{live.url}/ui/dead-letters/bus")
    browser.find_element(By.ID, "replay-all").click()
    try:
        wait(
            browser,
            lambda d: d.find_element(By.ID, "replay-progress").get_attribute("data-done") == "yes",
            60,
        )
    except TimeoutException:
        pytest.fail("replay did not finish: " + text(browser, "#replay-progress"))
    status = text(browser, "#replay-status")
    assert "121 of 121 looked at, 120 replayed, 1 left" in status, status
    shot(browser, "dead-letters-replayed")
    assert raw.xlen(bus.keyspace.bus_dead_letters) == 1
    browser.get(f"{live.url}/ui/dead-letters/bus")
    browser.find_element(By.ID, "purge-all").click()
    wait(browser, lambda d: d.current_url.endswith("/purge"))
    assert "Purge 1 bus dead letter?" in text(browser, "h1")
    assert raw.xlen(bus.keyspace.bus_dead_letters) == 1  # asking deletes nothing
    browser.find_element(By.ID, "confirm-purge").click()
    wait(browser, lambda d: "purged=" in d.current_url)
    assert "Purged 1." in text(browser, "#said")
    assert raw.xlen(bus.keyspace.bus_dead_letters) == 0
    raw.close()


def test_a_reader_sees_everything_and_cannot_replay(
    browser: WebDriver, live: LiveGateway, bus: Client, plan: dict[str, Any]
) -> None:
    raw = redis.Redis.from_url(live.redis_url, decode_responses=True)
    raw.delete(bus.keyspace.bus_dead_letters)
    _bus_letters(bus, raw, plan["goal"], 1)
    sign_in(browser, live, "reader")
    browser.get(f"{live.url}/ui/dead-letters/bus")
    assert browser.find_elements(By.ID, "read-only")
    assert not browser.find_elements(By.ID, "replay-all")
    assert not browser.find_elements(By.CSS_SELECTOR, "#letters input[type=checkbox]")
    # the reader's own page, its own CSRF token: still refused, and nothing replayed
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
        fetch('/ui/dead-letters/bus/replay', {method: 'POST', headers: {'X-CSRF-Token': token,
          'HX-Request': 'true', 'Content-Type': 'application/x-www-form-urlencoded'}, body: ''})
          .then(r => r.text().then(t => done([r.status, t])));
        """
    )
    assert status[0] == 403 and "needs an admin key" in status[1]
    assert raw.xlen(bus.keyspace.bus_dead_letters) == 2
    browser.get(f"{live.url}/ui/intents/{plan['copy']}")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-lease] button")  # no revoke
    shot(browser, "reader-intent")
    raw.close()


def test_agents_page_shows_groups_replicas_and_last_intents(
    browser: WebDriver, live: LiveGateway, plan: dict[str, Any]
) -> None:
    worker = Client(live.redis_url, agent_id="summarizer", namespace=live.namespace)
    try:
        with worker.events("agent:summarizer", "replica-1", block_seconds=0.1) as stream:
            intent = worker.create_intent("Summarize the interviews")
            worker.log_event(intent.id, "comment", {"done": True})
            next(iter(stream), None)
            sign_in(browser, live, "admin")
            browser.get(f"{live.url}/ui/agents")
            card = text(browser, "[id='agent:summarizer']")
            assert "replica-1" in card and "live" in card
            assert intent.id in card  # what the agent did last
            shot(browser, "agents")
    finally:
        worker.close()
