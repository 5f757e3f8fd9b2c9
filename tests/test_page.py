"""The live page (``GET /``) in a real headless Chromium against a real ``jobvisor daemon``.

Runs under the threads runtime only: the test process drives a browser and a
separate daemon process, so the runtime under test does not touch either; the
daemon's HTTP code under gevent is covered by test_http.py. Without Chromium
and its driver the tests skip, except in CI (``CI`` set), where they must run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import RUNTIME
from faultkit import Running, start_daemon, stop_daemon, wait_until
from httpkit import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "page-test-token-7f3a"  # checked never to reach the page
WAIT = 30.0

if RUNTIME != "threads":
    pytest.skip(
        "the browser test runs once, under threads: the browser and the daemon are separate"
        " processes the test runtime does not touch",
        allow_module_level=True,
    )
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)) and not os.environ.get("CI"):
    pytest.skip(
        f"no {CHROMIUM} or {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only once a browser is known to exist
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

# A service, a job that crashes (exit 3) each time the test drops a file `go`, one behind a
# breaker that a file `trip` opens, a job with more attempts than a timeline holds, and a
# group: every column has something to show.
MANIFEST = """
version: 1
supervisor: {backoff: {initial: 4s, max: 4s}, intensity: {max_restarts: 50, within: 60s}}
http:
  token: {secret: {env: PAGE_TOKEN}}
breakers:
  db: {failure_threshold: 1, reset_timeout: 60s}
jobs:
  - name: caller
    service: true
    breaker: db
    command: [sh, -c, "while [ ! -e trip ]; do sleep 0.05; done; exit 1"]
  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.2; done"]
  - name: crasher
    service: true
    command: [sh, -c, "while [ ! -e go ]; do sleep 0.05; done; rm -f go; echo boom >&2; exit 3"]
  - name: tick
    python: "math:sqrt"
    args: [4]
    every: 50ms
  - group: pipeline
    jobs:
      - name: worker
        service: true
        command: [sh, -c, "while true; do sleep 0.2; done"]
"""
PATHS = ("caller", "svc", "crasher", "tick", "pipeline", "pipeline/worker")
BREAKER = '.breaker[data-breaker="db"] .badge'


def daemon_at(cwd: Path, port: int) -> Running:
    return start_daemon(
        cwd, MANIFEST, "--http", f"127.0.0.1:{port}", env_extra={"PAGE_TOKEN": TOKEN}
    )


def url_of(running: Running) -> str:
    """Where a daemon started with ``--http 127.0.0.1:0`` listens, as it wrote it down."""
    address = json.loads((running.state / "http.json").read_text())
    return str(address["url"]).rstrip("/")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Running, str]]:
    running = daemon_at(tmp_path, 0)
    yield running, url_of(running)
    assert stop_daemon(running) == 0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        size(driver, 1280, 800)
        yield driver
    finally:
        driver.quit()


def size(driver: WebDriver, width: int, height: int) -> None:
    """The viewport itself (not the window around it) at ``width`` x ``height`` CSS pixels."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def until(driver: WebDriver, check: Callable[[WebDriver], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT, poll_frequency=0.05).until(
        check, f"page never showed {what}"
    )


def cell(driver: WebDriver, path: str, css: str) -> str:
    """The text of ``css`` in the row of ``path``; "" while the row is not there."""
    found = driver.find_elements(By.CSS_SELECTOR, f'.row[data-path="{path}"] {css}')
    return found[0].get_attribute("textContent") or "" if found else ""


def state_of(driver: WebDriver, path: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, f'.row[data-path="{path}"] .badge')
    return found[0].get_attribute("data-state") or "" if found else ""


def number(driver: WebDriver, path: str, name: str) -> int | None:
    text = cell(driver, path, f".num.{name}").removeprefix(name).strip()
    return int(text) if text.isdigit() else None


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url + "/")
    until(driver, lambda d: all(state_of(d, p) for p in PATHS), "every job")
    until(
        driver, lambda d: d.find_element(By.ID, "conn").get_attribute("data-conn") == "live", "live"
    )


def newest_attempt(driver: WebDriver, path: str) -> int:
    """The number of the newest attempt on ``path``'s timeline (0 without any)."""
    label = driver.execute_script(
        "const bars = document.querySelectorAll(arguments[0]);"
        "return bars.length ? bars[bars.length - 1].getAttribute('aria-label') : '';",
        f'.row[data-path="{path}"] .timeline .bar',
    )
    found = re.match(r"attempt (\d+)", label or "")
    return int(found[1]) if found else 0


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def use_token(driver: WebDriver, token: str) -> None:
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "token-use").click()


def test_every_job_shows_and_a_crash_changes_the_page_without_a_reload(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    running, url = daemon
    open_page(browser, url)
    assert state_of(browser, "svc") == "running"
    assert cell(browser, "svc", ".badge") == "running", "a state is a word, not only a colour"
    assert number(browser, "crasher", "failures") == 0
    label = '.row[data-path="{}"] .label-name'
    top = browser.find_element(By.CSS_SELECTOR, label.format("svc")).location["x"]
    worker = browser.find_element(By.CSS_SELECTOR, label.format("pipeline/worker")).location["x"]
    assert worker >= top + 10, "a group's children are indented"
    browser.execute_script("window.__jobvisorMarker = 'kept'")

    (running.dir / "go").touch()

    # The backoff lasts 4s: its state and countdown come straight from the events.
    until(browser, lambda d: state_of(d, "crasher") == "backoff", "the backoff")
    until(browser, lambda d: cell(d, "crasher", ".next").startswith("in "), "the countdown")
    until(browser, lambda d: number(d, "crasher", "failures") == 1, "the crash counted")
    until(browser, lambda d: "code 3" in cell(d, "crasher", ".exit"), "the crash's exit code")
    failed = '.row[data-path="crasher"] .timeline .bar[data-outcome="failed"]'
    bar = until(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, failed),
        "a failed attempt on the timeline",
    )[0]
    until(browser, lambda d: number(d, "crasher", "starts") == 2, "the restart")
    assert browser.execute_script("return window.__jobvisorMarker") == "kept", "the page reloaded"

    ActionChains(browser).move_to_element(bar).perform()
    tip = browser.find_element(By.ID, "tip")
    until(browser, lambda d: tip.is_displayed(), "the attempt's tooltip")
    assert "failed" in tip.text
    assert "3" in tip.text

    assert browser.find_element(By.CSS_SELECTOR, BREAKER).get_attribute("data-state") == "closed"
    (running.dir / "trip").touch()
    until(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, BREAKER).get_attribute("data-state") == "open",
        "the breaker open",
    )
    assert browser.find_element(By.CSS_SELECTOR, BREAKER).text == "open"
    assert browser.execute_script("return window.__jobvisorMarker") == "kept"

    assert console_errors(browser) == []


FLOOD = """
version: 1
jobs:
  - name: once
    restart: temporary
    command: [sh, -c, "echo no luck >&2; exit 3"]
  - name: chatty
    python: "math:sqrt"
    args: [4]
    every: 10ms
"""


def test_each_timeline_comes_from_its_own_history(tmp_path: Path, browser: WebDriver) -> None:
    """A job with many attempts does not push another job's out of the page's first load."""
    running = start_daemon(tmp_path, FLOOD, "--http", "127.0.0.1:0")
    try:

        def chatty_attempts() -> int:
            out = running.cli("history", "chatty", "--json", "--limit", "1")
            rows = json.loads(out.stdout) if out.returncode == 0 else []
            return int(rows[-1].get("attempt", 0)) if rows else 0

        # Far more rows than one shared window of the journal would hold.
        wait_until(
            lambda: chatty_attempts() > 600, "chatty's attempts", proc=running.proc, timeout=60
        )
        browser.get(url_of(running) + "/")
        failed = '.row[data-path="once"] .timeline .bar[data-outcome="failed"]'
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, failed), "once's failed attempt")
        until(browser, lambda d: newest_attempt(d, "chatty") > 600, "chatty's timeline")
        assert console_errors(browser) == []
    finally:
        assert stop_daemon(running) == 0


def test_actions_need_the_token_and_the_page_never_shows_it(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    running, url = daemon
    open_page(browser, url)
    assert browser.find_elements(By.CSS_SELECTOR, ".actions button") == [], "buttons need a token"
    starts = number(browser, "svc", "starts")
    assert starts == 1

    use_token(browser, "wrong-token")
    restart = '.row[data-path="svc"] button[data-action="restart"]'
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, restart), "the buttons")
    browser.find_element(By.CSS_SELECTOR, restart).click()
    until(browser, lambda d: "refused" in d.find_element(By.ID, "notice").text, "the refusal")
    assert browser.find_element(By.ID, "notice").get_attribute("data-kind") == "error"
    assert running.nodes()["svc"]["starts"] == 1, "a wrong token restarted the job"

    use_token(browser, TOKEN)
    browser.execute_script("window.__jobvisorMarker = 'kept'")
    browser.find_element(By.CSS_SELECTOR, restart).click()
    until(browser, lambda d: "done" in d.find_element(By.ID, "notice").text, "the restart done")
    until(browser, lambda d: number(d, "svc", "starts") == 2, "the second start")
    assert running.nodes()["svc"]["starts"] == 2
    assert browser.execute_script("return window.__jobvisorMarker") == "kept"

    assert TOKEN not in browser.page_source
    assert TOKEN not in (browser.find_element(By.TAG_NAME, "body").text)
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""
    # The refused POST is the only failed request; the page said so itself.
    assert [e for e in console_errors(browser) if "/restart" not in e["message"]] == []


def test_reconnects_when_the_daemon_restarts(tmp_path: Path, browser: WebDriver) -> None:
    port = free_port()
    running = daemon_at(tmp_path, port)
    try:
        open_page(browser, f"http://127.0.0.1:{port}")
        browser.execute_script("window.__jobvisorMarker = 'kept'")
        assert stop_daemon(running) == 0
        until(
            browser,
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-conn") == "reconnecting",
            "that it lost the daemon",
        )
        assert "reconnecting" in browser.find_element(By.ID, "conn").text
        running = daemon_at(tmp_path, port)
        until(
            browser,
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-conn") == "live",
            "that it is live again",
        )
        # The new daemon's tree, read again on reconnect: svc started once in this daemon.
        (tmp_path / "go").touch()
        until(browser, lambda d: number(d, "crasher", "failures") == 1, "the new daemon's events")
        assert browser.execute_script("return window.__jobvisorMarker") == "kept"
    finally:
        assert stop_daemon(running) == 0


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
def test_readable_without_sideways_scrolling(
    daemon: tuple[Running, str], browser: WebDriver, width: int, height: int
) -> None:
    _, url = daemon
    size(browser, width, height)
    open_page(browser, url)
    use_token(browser, TOKEN)  # the buttons are the widest thing a row can hold
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".actions button"), "the buttons")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{overflow}px of sideways scrolling at {width}px"
    for path in PATHS:
        box = browser.find_element(By.CSS_SELECTOR, f'.row[data-path="{path}"]').rect
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width, f"{path}'s row is cut at {width}px"

    # More attempts than fit: the timeline fills up and keeps the newest, none cut off.
    # Measured in one script: the bars are redrawn with every attempt.
    measure = """
        const cell = document.querySelector('.row[data-path="tick"] .timeline');
        const box = cell.getBoundingClientRect();
        const ends = Array.from(cell.querySelectorAll('.bar'), b => b.getBoundingClientRect().right);
        return {holds: Math.floor((box.width + 2) / 9), right: box.right, ends: ends};
    """
    full = until(
        browser,
        lambda d: (m := d.execute_script(measure)) and len(m["ends"]) >= m["holds"] and m,
        "a full timeline",
    )
    assert max(full["ends"]) <= full["right"] + 0.5, "the newest attempts are cut off"
    assert console_errors(browser) == []
