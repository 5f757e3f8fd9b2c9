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
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

import pytest
from conftest import RUNTIME
from faultkit import HttpDaemon, Running, http_daemon, wait_until
from httpkit import HttpKit, Reply, Reset, free_port

import supervision

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = secrets.token_urlsafe(24)  # fresh each run; checked never to reach the page
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
READS_TOKEN = MANIFEST.replace("http:\n", "http:\n  reads: token\n", 1)
PATHS = ("caller", "svc", "crasher", "tick", "pipeline", "pipeline/worker")
BREAKER = '.breaker[data-breaker="db"] .badge'


def daemon_at(cwd: Path, port: int, manifest: str = MANIFEST) -> AbstractContextManager[HttpDaemon]:
    """A daemon on ``manifest`` (its token read from PAGE_TOKEN) at ``port``, 0 for any."""
    return http_daemon(
        cwd, manifest, listen=f"127.0.0.1:{port}", token=TOKEN, token_env="PAGE_TOKEN"
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Running, str]]:
    with daemon_at(tmp_path, 0) as running:
        yield running, running.http.url


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


def conn(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "conn").get_attribute("data-conn") or ""


def notices(driver: WebDriver) -> list[tuple[str, str]]:
    """The notices on show, (kind, text), oldest first."""
    # Read in one script: a notice that fades goes between two WebDriver calls.
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll('#notices .notice'),"
        " n => [n.dataset.kind || '', n.querySelector('.text').textContent,"
        " n.getClientRects().length > 0 && getComputedStyle(n).opacity !== '0']);"
    )
    return [(kind, text) for kind, text, visible in found if visible]


def in_view(driver: WebDriver, css: str) -> bool:
    """True when the element ``css`` is shown whole inside the viewport."""
    return bool(
        driver.execute_script(
            "const e = document.querySelector(arguments[0]); if (!e) return false;"
            "const r = e.getBoundingClientRect();"
            "return r.width > 0 && r.height > 0 && r.top >= 0 && r.left >= 0 &&"
            " r.bottom <= window.innerHeight && r.right <= window.innerWidth;",
            css,
        )
    )


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
    with http_daemon(tmp_path, FLOOD) as running:

        def chatty_attempts() -> int:
            out = running.cli("history", "chatty", "--json", "--limit", "1")
            rows = json.loads(out.stdout) if out.returncode == 0 else []
            return int(rows[-1].get("attempt", 0)) if rows else 0

        # Far more rows than one shared window of the journal would hold.
        wait_until(
            lambda: chatty_attempts() > 600, "chatty's attempts", proc=running.proc, timeout=60
        )
        browser.get(running.http.url + "/")
        failed = '.row[data-path="once"] .timeline .bar[data-outcome="failed"]'
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, failed), "once's failed attempt")
        until(browser, lambda d: newest_attempt(d, "chatty") > 600, "chatty's timeline")
        assert console_errors(browser) == []


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
    until(browser, lambda d: any("refused" in t for _, t in notices(d)), "the refusal")
    assert [k for k, t in notices(browser) if "refused" in t] == ["error"]
    assert running.nodes()["svc"]["starts"] == 1, "a wrong token restarted the job"

    use_token(browser, TOKEN)
    browser.execute_script("window.__jobvisorMarker = 'kept'")
    browser.find_element(By.CSS_SELECTOR, restart).click()
    until(browser, lambda d: any("done" in t for _, t in notices(d)), "the restart done")
    until(browser, lambda d: number(d, "svc", "starts") == 2, "the second start")
    assert running.nodes()["svc"]["starts"] == 2
    assert browser.execute_script("return window.__jobvisorMarker") == "kept"
    # The restart's SIGTERM ended its shell: said by its name, as the status table says it.
    assert running.nodes()["svc"]["last_exit"]["code"] == -15
    until(browser, lambda d: "SIGTERM" in cell(d, "svc", ".exit"), "the signal by its name")
    assert "-15" not in cell(browser, "svc", ".exit")

    assert TOKEN not in browser.page_source
    assert TOKEN not in (browser.find_element(By.TAG_NAME, "body").text)
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""
    # The refused POST is the only failed request; the page said so itself.
    assert [e for e in console_errors(browser) if "/restart" not in e["message"]] == []


def test_a_daemon_gone_away_is_said_plainly_and_the_page_comes_back_with_it(
    tmp_path: Path, browser: WebDriver
) -> None:
    port = free_port()
    with daemon_at(tmp_path, port):
        open_page(browser, f"http://127.0.0.1:{port}")
        use_token(browser, TOKEN)
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".actions button"), "the buttons")
        browser.execute_script("window.__jobvisorMarker = 'kept'")
        assert not browser.find_element(By.ID, "down").is_displayed()

    down = browser.find_element(By.ID, "down")
    until(browser, lambda d: down.is_displayed(), "that the daemon cannot be reached")
    assert "cannot reach the daemon" in down.text.lower()
    assert re.search(r"since \d\d:\d\d:\d\d", down.text), down.text
    assert conn(browser) != "live"
    # What the page shows is the last it knew: not a green "running" root, rows greyed.
    root = browser.find_element(By.ID, "tree-state")
    assert root.get_attribute("data-state") == "unknown"
    assert root.text == "unknown"
    opacity = browser.execute_script(
        "return getComputedStyle(document.querySelector('.row[data-path=\"svc\"]')).opacity"
    )
    assert float(opacity) < 0.8, "the rows are not marked stale"
    buttons = browser.find_elements(By.CSS_SELECTOR, ".actions button")
    assert buttons
    assert all(not b.is_enabled() for b in buttons), "actions stay on while unreachable"

    with daemon_at(tmp_path, port):
        until(
            browser,
            lambda d: conn(d) == "live" and not d.find_element(By.ID, "down").is_displayed(),
            "that it is live again",
        )
        # The status read that ends the stale view does not wipe the notice that says so.
        assert any(k == "ok" and t.startswith("reconnected") for k, t in notices(browser))
        assert browser.find_element(By.ID, "tree-state").get_attribute("data-state") == "running"
        assert all(
            b.is_enabled() for b in browser.find_elements(By.CSS_SELECTOR, ".actions button")
        )
        opacity = browser.execute_script(
            "return getComputedStyle(document.querySelector('.row[data-path=\"svc\"]')).opacity"
        )
        assert float(opacity) == 1.0
        # The new daemon's tree, read again on reconnect: crasher failed once in this daemon.
        (tmp_path / "go").touch()
        until(browser, lambda d: number(d, "crasher", "failures") == 1, "the new daemon's events")
        assert browser.execute_script("return window.__jobvisorMarker") == "kept"


# Status answers of the wrong shape (children a mapping): the page's rendering throws.
WRONG_SHAPE = """
const realFetch = window.fetch.bind(window);
window.fetch = function (url, options) {
  const answer = realFetch(url, options);
  if (new URL(String(url), location.href).pathname !== '/api/status') return answer;
  return answer.then(r => r.json().then(doc => {
    doc.children = {};
    return new Response(JSON.stringify(doc), {headers: r.headers});
  }));
};
"""


def test_a_fault_in_the_page_is_a_console_error_not_an_unreachable_daemon(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    running, url = daemon
    open_page(browser, url)
    assert console_errors(browser) == []
    browser.execute_script(WRONG_SHAPE)
    (running.dir / "go").touch()  # crasher exits: its counters are read again
    errors = until(browser, console_errors, "the page's fault in the console")
    assert "bug while showing the status" in errors[0]["message"], errors
    assert not browser.find_element(By.ID, "down").is_displayed()
    assert conn(browser) == "live"
    said = [text for kind, text in notices(browser) if kind == "error"]
    assert any("a bug in the page, not the daemon" in t for t in said), said


def test_action_results_show_wherever_the_page_is_scrolled(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    """The header (state, connection) stays in view; a done notice fades, an error stays
    until dismissed."""
    _, url = daemon
    size(browser, 1280, 330)
    open_page(browser, url)
    use_token(browser, "wrong-token")
    restart = '.row[data-path="{}"] button[data-action="restart"]'
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, restart.format("svc")), "the buttons")
    browser.find_element(By.CSS_SELECTOR, restart.format("svc")).click()
    until(
        browser,
        lambda d: any(k == "error" and "refused" in t for k, t in notices(d)),
        "the refusal",
    )

    use_token(browser, TOKEN)
    browser.execute_script("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert browser.execute_script("return window.scrollY") > 100, "the window is too tall to test"
    worker = browser.find_element(By.CSS_SELECTOR, restart.format("pipeline/worker"))
    assert in_view(browser, "#conn"), "the header scrolled away"
    assert in_view(browser, "#tree-state")
    worker.click()
    until(
        browser,
        lambda d: any(k == "ok" and "restart pipeline/worker: done" in t for k, t in notices(d)),
        "the restart done",
    )
    assert in_view(browser, "#notices .notice[data-kind='ok']"), "the notice is off-screen"
    until(browser, lambda d: number(d, "pipeline/worker", "starts") == 2, "the second start")
    # The done notice goes by itself; the refusal, older than it, is still there.
    until(browser, lambda d: not any("done" in t for _, t in notices(d)), "the done notice fading")
    assert any(k == "error" and "refused" in t for k, t in notices(browser))
    browser.find_element(
        By.CSS_SELECTOR, "#notices .notice[data-kind='error'] button.dismiss"
    ).click()
    until(browser, lambda d: not any(k == "error" for k, _ in notices(d)), "the refusal dismissed")
    # The refused POST is the only failed request; the page said so itself.
    assert [e for e in console_errors(browser) if "/restart" not in e["message"]] == []


# A job whose error holds a right-to-left override: the page shows it escaped, as the CLI does.
BIDI = """
version: 1
jobs:
  - name: bidi
    restart: temporary
    command: "exit 3 # \u202edesrever\u202c done"
"""


def test_job_text_with_control_characters_is_shown_escaped(
    tmp_path: Path, browser: WebDriver
) -> None:
    with http_daemon(tmp_path, BIDI) as running:
        shown = running.cli("status")
        assert "\\u202e" in shown.stdout, shown.stdout  # what the CLI does
        browser.get(running.http.url + "/")
        until(browser, lambda d: "code 3" in cell(d, "bidi", ".exit"), "the failure")
        error = cell(browser, "bidi", ".exit .err")
        assert "\\u202edesrever\\u202c done" in error, error
        until(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, '.row[data-path="bidi"] .bar'),
            "the attempt",
        )
        bar = browser.find_element(By.CSS_SELECTOR, '.row[data-path="bidi"] .bar')
        ActionChains(browser).move_to_element(bar).perform()
        tip = browser.find_element(By.ID, "tip")
        until(browser, lambda d: tip.is_displayed(), "the attempt's tooltip")
        assert "\\u202edesrever" in tip.text
        html = browser.execute_script("return document.documentElement.outerHTML")
        for raw in ("\u202e", "\u202c"):
            assert raw not in html, f"a raw U+{ord(raw):04X} on the page"
        assert console_errors(browser) == []


def test_a_failed_commands_last_line_on_stderr_is_shown_before_its_argv(
    tmp_path: Path, browser: WebDriver
) -> None:
    """The cell showed `command echo 'ERROR: db refused connect…`, the argv filling it and
    the why cut off; the whole error is its title."""
    manifest = (
        "version: 1\njobs:\n  - name: db\n    restart: temporary\n"
        "    command: \"echo 'ERROR: db refused connection' >&2; exit 3\"\n"
    )
    with http_daemon(tmp_path, manifest) as running:
        browser.get(running.http.url + "/")
        until(browser, lambda d: "code 3" in cell(d, "db", ".exit"), "the failure")
        assert cell(browser, "db", ".exit .err") == "ERROR: db refused connection"
        title = browser.find_element(
            By.CSS_SELECTOR, '.row[data-path="db"] .exit .err'
        ).get_attribute("title")
        assert title is not None
        assert title.startswith("command echo 'ERROR: db refused connection' >&2; exit 3 exited")
        assert console_errors(browser) == []


TICKERS = "\n".join(
    f"""  - name: t{i}
    python: "math:sqrt"
    args: [4]
    every: 100ms"""
    for i in range(6)
)
MANY = f"""
version: 1
jobs:
{TICKERS}
  - group: g
    jobs:
      - name: svc
        service: true
        command: [sh, -c, "while true; do sleep 0.2; done"]
"""

# The event streams opened without the token: an EventSource's (its request is a resource
# entry, "other"; its status is 401, or 0 when cut before it is read). The page's own
# token stream is a fetch.
TOKENLESS_STREAMS = """
    return performance.getEntriesByType('resource').filter(e =>
        new URL(e.name).pathname === '/api/events' && e.initiatorType !== 'fetch').length;
"""

COUNT_REQUESTS = """
    const seen = {};
    for (const e of performance.getEntriesByType('resource')) {
        const u = new URL(e.name);
        seen[u.pathname] = (seen[u.pathname] || 0) + 1;
    }
    return seen;
"""


def test_events_update_the_page_without_a_request_each(tmp_path: Path, browser: WebDriver) -> None:
    """One history read for every timeline, and the status is not read again for each tick
    that the event itself describes."""
    with http_daemon(tmp_path, MANY) as running:
        browser.get(running.http.url + "/")
        browser.execute_script("performance.setResourceTimingBufferSize(5000)")
        until(
            browser,
            lambda d: all(state_of(d, f"t{i}") in ("running", "idle") for i in range(6)),
            "the jobs",
        )
        until(browser, lambda d: conn(d) == "live", "live")
        until(browser, lambda d: newest_attempt(d, "t0") >= 5, "t0's ticks")
        start = newest_attempt(browser, "t0")
        began = browser.execute_script("return performance.now()")
        before = browser.execute_script(COUNT_REQUESTS)
        assert before.get("/api/history") == 1, before
        # About four seconds of ticks (60 events), counted by the events themselves.
        until(browser, lambda d: newest_attempt(d, "t0") >= start + 40, "t0's next ticks")
        seconds = (browser.execute_script("return performance.now()") - began) / 1000
        after = browser.execute_script(COUNT_REQUESTS)
        reads = after.get("/api/status", 0) - before.get("/api/status", 0)
        assert reads <= seconds + 1, f"{reads} status reads in {seconds:.1f}s"
        assert after.get("/api/history") == 1, after
        # The row follows the ticks all the same: its last exit and its next one.
        assert "succeeded" in cell(browser, "t3", ".exit")
        assert cell(browser, "t3", ".next") != ""
        assert console_errors(browser) == []


def test_a_replaced_jobs_earlier_attempts_are_set_apart(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    """After a reload replaces svc, its timeline's bars are the old instance's: shown as
    such, beside a last exit of "—" that is the new one's."""
    running, url = daemon
    open_page(browser, url)
    text = (running.dir / "jobs.yaml").read_text()
    (running.dir / "jobs.yaml").write_text(text.replace("sleep 0.2; done", "sleep 0.3; done", 1))
    out = running.cli("reload")
    assert out.returncode == 0, out.stderr
    bars = '.row[data-path="svc"] .timeline .bar'
    # The old instance's stop ends its one attempt; the new instance has no exit yet.
    until(
        browser,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, bars)
            and cell(d, "svc", ".exit") == "—"
            and state_of(d, "svc") == "running"
        ),
        "the new svc beside the old one's attempt",
    )
    assert number(browser, "svc", "starts") == 1
    until(
        browser,
        lambda d: all(
            b.get_attribute("data-earlier") is not None
            for b in d.find_elements(By.CSS_SELECTOR, bars)
        ),
        "the old attempts set apart",
    )
    bar = browser.find_element(By.CSS_SELECTOR, bars)
    assert "earlier instance" in (bar.get_attribute("data-tip") or "")
    assert float(bar.value_of_css_property("opacity")) < 0.8
    # The same after a fresh load (the history read, not the events).
    browser.refresh()
    open_page(browser, url)
    until(
        browser,
        lambda d: (
            (found := d.find_elements(By.CSS_SELECTOR, bars))
            and all(b.get_attribute("data-earlier") is not None for b in found)
        ),
        "the old attempts set apart after a load",
    )
    assert console_errors(browser) == []


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


HELD = """
version: 1
jobs:
  - name: held
    service: true
    autostart: false
    command: [sh, -c, "while true; do sleep 0.2; done"]
"""


def test_a_job_left_stopped_by_autostart_false_says_why(tmp_path: Path, browser: WebDriver) -> None:
    with http_daemon(tmp_path, HELD) as running:
        browser.get(running.http.url + "/")
        until(browser, lambda d: state_of(d, "held") == "stopped", "the job left stopped")
        assert cell(browser, "held", ".exit") == "not started (autostart: false)"
        assert running.cli("start", "held").returncode == 0
        until(browser, lambda d: state_of(d, "held") == "running", "its start")
        assert cell(browser, "held", ".exit") == "—"
        assert console_errors(browser) == []


def test_reads_that_need_the_token_go_live_once_it_is_typed(
    tmp_path: Path, browser: WebDriver
) -> None:
    """http: {reads: token}: the page reads nothing until the token is typed, then reads the
    status and the live stream with it in a header (fetch, not EventSource), never in a URL."""
    with daemon_at(tmp_path, 0, READS_TOKEN) as running:
        url = running.http.url
        browser.get(url + "/")
        until(
            browser,
            lambda d: "Reading needs the token" in d.find_element(By.ID, "down").text,
            "that reading needs the token",
        )
        assert not any(state_of(browser, p) for p in PATHS)
        # Nothing is known of the breakers either: not "none" (it said so, trial 30's look).
        assert browser.find_element(By.ID, "no-breakers").is_displayed() is False
        use_token(browser, TOKEN)
        until(browser, lambda d: all(state_of(d, p) for p in PATHS), "every job")
        until(
            browser,
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-conn") == "live",
            "the stream live",
        )
        # The first stream waits for /api/config: it was opened before, without the token
        # (an EventSource), and refused (review).
        assert browser.execute_script(TOKENLESS_STREAMS) == 0, "a stream opened without it"
        assert not [e for e in browser.get_log("browser") if "/api/events" in e["message"]]
        assert browser.find_element(By.ID, "down").is_displayed() is False
        (tmp_path / "go").touch()
        until(browser, lambda d: (number(d, "crasher", "restarts") or 0) >= 1, "a restart")
        assert browser.current_url == url + "/"
        assert TOKEN not in browser.page_source


def test_a_page_loaded_while_the_daemon_restarts_reaches_token_needed_and_goes_live(
    tmp_path: Path, browser: WebDriver
) -> None:
    """The first /api/config failed (the daemon restarting): the page then streamed without
    the token for ever, refused (401), and typing the token did nothing (review 40)."""
    from supervision._httpapi import PAGE

    page = Reply(200, {"Content-Type": "text/html; charset=utf-8"}, PAGE.read_bytes())
    with HttpKit(page, default=Reset()) as kit:  # the page, then nothing answers
        port = kit.port
        browser.get(f"{kit.url}/")
        until(
            browser,
            lambda d: "cannot reach the daemon" in d.find_element(By.ID, "down").text.lower(),
            "that the daemon cannot be reached",
        )
        assert any(r.path == "/api/config" for r in kit.requests)
    with daemon_at(tmp_path, port, READS_TOKEN):
        until(
            browser,
            lambda d: "Reading needs the token" in d.find_element(By.ID, "down").text,
            "that reading needs the token",
        )
        use_token(browser, TOKEN)
        until(browser, lambda d: all(state_of(d, p) for p in PATHS), "every job")
        until(browser, lambda d: conn(d) == "live", "the stream live")
        assert not browser.find_element(By.ID, "down").is_displayed()
        (tmp_path / "go").touch()  # events come on the token stream
        until(browser, lambda d: (number(d, "crasher", "restarts") or 0) >= 1, "a restart")


def test_the_time_unreachable_counts_from_when_the_daemon_went_not_from_the_token_wanted(
    tmp_path: Path, browser: WebDriver
) -> None:
    """The page kept the time "token needed" began into "unreachable" that followed: a
    daemon that answered (wanting the token) for a minute, then went for a few seconds, was
    "unreachable since" that minute ago and "reconnected: ... unreachable for 61s" (review)."""
    port = free_port()

    def ago(driver: WebDriver) -> int | None:
        found = re.search(r"\((\d+)s\)", driver.find_element(By.ID, "down").text)
        return int(found[1]) if found else None

    with daemon_at(tmp_path, port, READS_TOKEN):
        browser.get(f"http://127.0.0.1:{port}/")
        until(
            browser,
            lambda d: "Reading needs the token" in d.find_element(By.ID, "down").text,
            "that reading needs the token",
        )
        # A minute goes by on the page's clock, which all it shows is counted on.
        browser.execute_script("const real = Date.now; Date.now = () => real.call(Date) + 60000;")
        until(browser, lambda d: (ago(d) or 0) >= 60, "a minute of token needed")
    down = browser.find_element(By.ID, "down")
    until(browser, lambda d: "cannot reach the daemon" in down.text.lower(), "unreachable")
    assert (ago(browser) or 0) < 30, down.text  # since it went, not since the token was wanted
    use_token(browser, TOKEN)  # typed while it is away: the page goes live once it is back
    with daemon_at(tmp_path, port, READS_TOKEN):
        until(
            browser,
            lambda d: conn(d) == "live" and not d.find_element(By.ID, "down").is_displayed(),
            "that it is live again",
        )
        said = [t for k, t in notices(browser) if t.startswith("reconnected")]
        assert len(said) == 1, notices(browser)
        found = re.fullmatch(r"reconnected: the daemon was unreachable for (\d+)s", said[0])
        assert found is not None, said
        assert int(found[1]) < 30, said


def ticks(lasting: int, every: int) -> str:
    """A manifest of one periodic job, ``tick``, whose ticks last ``lasting`` s."""
    return f"""
version: 1
jobs:
  - name: tick
    command: [sh, -c, "sleep {lasting}"]
    every: {every}s
"""


# A periodic job whose tick lasts long enough to be seen running, with an idle second or
# two between ticks.
PERIODIC = ticks(2, every=6)


def daemon_node(running: Running, path: str) -> dict[str, Any]:
    return dict(running.nodes()[path])


def test_a_periodic_job_between_ticks_shows_idle_as_status_does(
    tmp_path: Path, browser: WebDriver
) -> None:
    """Between ticks the page says ``idle`` with the next tick, as ``status`` and ``top`` do;
    a tick that starts shows ``running``, its end ``idle`` again; a restarted periodic job
    is idle until its first tick (it showed ``running`` throughout)."""
    with http_daemon(tmp_path, PERIODIC) as running:
        browser.get(running.http.url + "/")
        until(
            browser, lambda d: state_of(d, "tick") == "idle", "the job idle before its first tick"
        )
        assert cell(browser, "tick", ".badge") == "idle"
        assert cell(browser, "tick", ".next").startswith("in "), cell(browser, "tick", ".next")
        assert daemon_node(running, "tick").get("between_ticks") is True
        table = running.cli("status")
        assert re.search(r"^tick\s.*\bidle\b", table.stdout, re.MULTILINE), table.stdout
        assert "1 idle" in browser.find_element(By.ID, "summary").text
        # The state, its colour and the newest attempt's bar read at once: a tick lasts a
        # second, and the page shows it running up to a second late (its clock's step).
        look = (
            "const b = document.querySelector('.row[data-path=\"tick\"] .badge');"
            "const bars = document.querySelectorAll('.row[data-path=\"tick\"] .timeline .bar');"
            "return [b.dataset.state, b.textContent, getComputedStyle(b).backgroundColor,"
            " bars.length ? bars[bars.length - 1].getAttribute('aria-label') : ''];"
        )
        idle = browser.execute_script(look)
        assert idle[:2] == ["idle", "idle"]
        busy = until(
            browser, lambda d: (s := d.execute_script(look))[0] == "running" and s, "a tick"
        )
        assert busy[1] == "running"
        assert busy[2] != idle[2], "idle and running look the same"
        # The tick shown running is the one after the newest bar; its end is idle again. (No
        # look at the daemon's status here: a CLI read takes most of a tick.)
        ended = int(m[1]) if (m := re.match(r"attempt (\d+)", busy[3])) else 0
        until(
            browser,
            lambda d: state_of(d, "tick") == "idle" and newest_attempt(d, "tick") > ended,
            "the tick's end: idle again",
        )
        assert "succeeded" in cell(browser, "tick", ".exit")
        assert cell(browser, "tick", ".next").startswith("in ")
        browser.save_screenshot(str(tmp_path / "idle.png"))
        if os.environ.get("PAGE_SHOTS"):
            shutil.copy(tmp_path / "idle.png", Path(os.environ["PAGE_SHOTS"]) / "idle.png")

        # A restart: the new instance is idle until its first tick, one interval after it.
        bars = '.row[data-path="tick"] .timeline .bar[data-outcome="succeeded"]'
        before = len(browser.find_elements(By.CSS_SELECTOR, bars))
        assert running.cli("restart", "tick").returncode == 0
        until(browser, lambda d: number(d, "tick", "starts") == 2, "the restart")
        until(browser, lambda d: state_of(d, "tick") == "idle", "the restarted job idle")
        # Before the new instance's first tick ended (the restart may stop one: not succeeded).
        assert len(browser.find_elements(By.CSS_SELECTOR, bars)) == before, "idle too late"
        assert console_errors(browser) == []


def test_a_long_tick_shows_the_next_one_while_it_runs(tmp_path: Path, browser: WebDriver) -> None:
    """A job that ticks every 4 s for 3 s: the page reads the status when a tick starts (its
    ticks are 4 s apart), so its next tick shows while it runs. (The page went by the idle
    gap, 1 s: no read, and a blank next-start cell for each tick after the first.)"""
    manifest = ticks(3, every=4)
    look = (
        "const row = document.querySelector('.row[data-path=\"tick\"]');"
        "if (!row) return ['', '', ''];"
        "const bars = row.querySelectorAll('.timeline .bar');"
        "return [row.querySelector('.badge').dataset.state, row.querySelector('.next').textContent,"
        " bars.length ? bars[bars.length - 1].getAttribute('aria-label') : ''];"
    )

    def after_a_tick_running_with_its_next(driver: WebDriver) -> bool:
        state, after, label = driver.execute_script(look)
        return state == "running" and after.startswith("in ") and label.startswith("attempt ")

    with http_daemon(tmp_path, manifest) as running:
        browser.get(running.http.url + "/")
        # Before the page's resync (30 s), which reads the status whatever the ticks do.
        WebDriverWait(browser, 20, poll_frequency=0.05).until(
            after_a_tick_running_with_its_next, "page never showed a tick with the next one's time"
        )
        assert running.cli("status").returncode == 0
        assert console_errors(browser) == []


def test_a_tick_shows_by_the_daemons_clock_not_the_browsers(
    tmp_path: Path, browser: WebDriver
) -> None:
    """The browser's clock 10 s behind the daemon's: a tick shows running when it starts, by
    the daemon's clock as its events tell it (it showed 10 s late, after the tick had ended)."""
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "const realNow = Date.now; Date.now = () => realNow() - 10000;"},
    )
    with http_daemon(tmp_path, PERIODIC) as running:
        browser.get(running.http.url + "/")
        until(browser, lambda d: newest_attempt(d, "tick") >= 1, "the first tick's end")
        # The next is due 4 s after it ended, and lasts 2 s.
        WebDriverWait(browser, 6, poll_frequency=0.05).until(
            lambda d: state_of(d, "tick") == "running", "page never showed the next tick"
        )
        left = cell(browser, "tick", ".next")
        assert left == "" or not left.startswith("in 1"), left
        assert running.cli("status").returncode == 0
        assert console_errors(browser) == []


# Ticks of a second, three seconds apart: the idle gap is long enough to be told from a tick.
SHORT_TICKS = ticks(1, every=4)
GAP = 3.0  # s: SHORT_TICKS's idle gap


def api(url: str, path: str) -> Any:
    """``path`` read from the daemon at ``url`` as JSON (loopback: reads need no token)."""
    with urlopen(url + path, timeout=10) as answer:
        return json.loads(answer.read())


def tick_shown(driver: WebDriver) -> tuple[str, int]:
    """The state the page shows ``tick`` in and its newest attempt's number, read at once."""
    state, label = driver.execute_script(
        "const row = document.querySelector('.row[data-path=\"tick\"]');"
        "if (!row) return ['', ''];"
        "const bars = row.querySelectorAll('.timeline .bar');"
        "return [row.querySelector('.badge').dataset.state,"
        " bars.length ? bars[bars.length - 1].getAttribute('aria-label') : ''];"
    )
    return state, int(m[1]) if (m := re.match(r"attempt (\d+)", label)) else 0


def idle_after(driver: WebDriver, ended: int) -> bool:
    """Whether the page shows the job idle after attempt ``ended``; fails once it shows a
    later attempt without having been idle in between."""
    state, shown = tick_shown(driver)
    assert shown <= ended, f"attempt {shown} ended with the page never idle after {ended}"
    return state == "idle" and shown == ended


@pytest.mark.parametrize("when", ["during a tick", "just after a tick"])
def test_a_page_loaded_anywhere_in_the_tick_cycle_shows_idle_after_each_tick(
    tmp_path: Path, browser: WebDriver, when: str
) -> None:
    """Loaded while a tick runs or just after one ended, the page shows the job idle within
    one gap of each tick's end, tick after tick, as ``status`` says ``between_ticks``. (It
    was seen ``running`` through gaps: screenshots that fell in a tick, as it turned out.)"""
    with http_daemon(tmp_path, SHORT_TICKS) as running:
        url = running.http.url

        def tick() -> dict[str, Any]:
            return node_in(api(url, "/api/status"), "tick")

        now = wait_until(
            lambda: "between_ticks" not in (n := tick()) and n, "a tick", proc=running.proc
        )
        if when == "just after a tick":
            now = wait_until(
                lambda: (n := tick()).get("between_ticks") is True and n,
                "its end",
                proc=running.proc,
            )
        # The number of the attempt its last exit is (the journal may write it a moment after).
        last = now.get("last_exit") or {}
        done = 0
        if last:
            done = wait_until(
                lambda: next(
                    (
                        a["attempt"]
                        for a in api(url, "/api/history?job=tick")
                        if a["type"] == "attempt" and a["at"] == last["at"]
                    ),
                    0,
                ),
                "the last exit in the journal",
                proc=running.proc,
            )
        browser.get(url + "/")
        # The tick running at the load ends next; one that just ended is the first to check.
        ended = done + 1 if when == "during a tick" else done
        # Unless the page's first showing came later than that (a loaded machine): then from
        # what it shows first, the tick it shows running or the one it shows idle after.
        state, shown = until(browser, lambda d: (n := tick_shown(d))[0] and n, "the tick's row")
        ended = max(ended, shown + (state != "idle"))
        for _ in range(2):  # tick after tick: the first and one more (a tick is 4 s)
            until(browser, lambda d, n=ended: newest_attempt(d, "tick") >= n, f"attempt {ended}")
            WebDriverWait(browser, GAP, poll_frequency=0.05).until(
                lambda d, n=ended: idle_after(d, n), f"page never idle after attempt {ended}"
            )
            ended += 1
        assert tick()["state"] == "running"
        assert console_errors(browser) == []


# Installed before the page's own script: status answers can be held back (each is taken by
# the daemon when asked, and given to the page when the test says), and the EventSource is
# kept where the test can hand the page an event of its own.
HOOKS = """
(() => {
  const realFetch = window.fetch.bind(window);
  window.__holdStatus = false;
  window.__held = [];      // release functions of the status answers held back
  window.__heldDocs = [];  // what each of them said
  window.__statusReads = 0;
  window.fetch = function (url, options) {
    const answer = realFetch(url, options);
    if (new URL(String(url), location.href).pathname !== '/api/status') return answer;
    window.__statusReads += 1;
    if (!window.__holdStatus) return answer;
    return answer.then(r => r.clone().json().then(doc => new Promise(resolve => {
      window.__heldDocs.push(doc);
      window.__held.push(() => resolve(r));
    })));
  };
  const Real = window.EventSource;
  window.__sources = [];
  function Kept(url, options) {
    const source = new Real(url, options);
    window.__sources.push(source);
    return source;
  }
  Kept.CONNECTING = Real.CONNECTING; Kept.OPEN = Real.OPEN; Kept.CLOSED = Real.CLOSED;
  window.EventSource = Kept;
})();
"""

SEND_EVENT = """
    const source = window.__sources[window.__sources.length - 1];
    source.dispatchEvent(new MessageEvent('message', {data: arguments[0], lastEventId: arguments[1]}));
"""


def node_in(doc: dict[str, Any], path: str) -> dict[str, Any]:
    for child in doc.get("children") or ():
        if child["path"] == path:
            return dict(child)
        if path.startswith(child["path"] + "/"):
            return node_in(child, path)
    raise AssertionError(f"no {path} in {doc}")


def test_a_status_read_older_than_the_events_shown_does_not_take_a_row_back(
    daemon: tuple[Running, str], browser: WebDriver
) -> None:
    """A status answer taken before an event the page applied (its read was on its way, as
    after a reconnect) does not overwrite what that event said; an event the shown status
    reflects already (replayed after a reconnect) does not take the row back either."""
    running, url = daemon
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": HOOKS})
    open_page(browser, url)
    browser.execute_script("window.__holdStatus = true")
    (running.dir / "go").touch()
    # The crash asks for a status read: taken in the backoff, held back until the job has
    # run again (4s), which the page hears of by events.
    until(browser, lambda d: d.execute_script("return window.__held.length") == 1, "a held read")
    held = browser.execute_script("return window.__heldDocs[0]")
    assert node_in(held, "crasher")["state"] == "backoff", node_in(held, "crasher")
    until(browser, lambda d: state_of(d, "crasher") == "running", "the restart, by its events")
    reads = browser.execute_script("return window.__statusReads")
    browser.execute_script("window.__held.shift()()")
    # The page asks again once that read is done (the restart's events asked for one): the
    # held answer has been shown by then.
    until(
        browser,
        lambda d: d.execute_script("return window.__statusReads") > reads,
        "the next status read",
    )
    assert state_of(browser, "crasher") == "running", "the older status took the row back"
    assert number(browser, "crasher", "failures") == 1  # the rest of that status is shown
    browser.execute_script("window.__holdStatus = false; window.__held.forEach(f => f())")
    until(browser, lambda d: number(d, "crasher", "starts") == 2, "a status after the restart")

    # An event the status shown reflects already: its replay does not change the row.
    newest = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/status').then(r => done(r.headers.get('Jobvisor-Last-Event-Id')));"
    )
    life = newest.rpartition("-")[0]
    crash = json.dumps({"type": "state_changed", "path": "svc", "old": "running", "new": "backoff"})
    browser.execute_script(SEND_EVENT, crash, f"{life}-1")
    assert state_of(browser, "svc") == "running", "a replayed event took the row back"
    # One after it does (the hook reaches the page).
    browser.execute_script(SEND_EVENT, crash, f"{life}-{10**9}")
    assert state_of(browser, "svc") == "backoff"
    assert console_errors(browser) == []


def test_the_pages_signal_names_are_linuxs_1_to_31() -> None:
    """Each signal that ends a job is said by its name (it said "signal 31" for SIGSYS, and so
    for 5, 16-23 and 26-31): the page's table is this Linux's own, 1 to 31."""
    page = (Path(supervision.__file__).parent / "_page.html").read_text(encoding="utf-8")
    table = re.search(r"var SIGNALS = \{(.*?)\};", page, re.DOTALL)
    assert table is not None
    names = {int(n): name for n, name in re.findall(r'(\d+): "(\w+)"', table[1])}
    assert names == {n: signal.Signals(n).name for n in range(1, 32)}


ONCE = """
version: 1
http: {}
jobs:
  - {name: once, command: [sh, -c, "exit 0"]}
  - {name: svc, service: true, command: [sleep, "100"]}
"""


def test_a_last_exit_of_another_day_says_its_day(tmp_path: Path, browser: WebDriver) -> None:
    """The browser's clock three days ahead: the once job's exit, "today" by the daemon's,
    is three days old by the page's, and says its day (a bare time of day read as today's);
    its full date and time are its title. A timeline bar's tip has them too."""
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "const realNow = Date.now; Date.now = () => realNow() + 3 * 86400000;"},
    )
    with http_daemon(tmp_path, ONCE) as running:
        wait_until(lambda: running.nodes()["once"]["state"] == "succeeded", "once done")
        ended = running.nodes()["once"]["last_exit"]["at"]
        browser.get(running.http.url + "/")
        shown = until(browser, lambda d: cell(d, "once", ".exit .at"), "the exit's time")
        when = datetime.fromtimestamp(ended, UTC).astimezone()
        day = f"{when:%b} {when.day}"
        assert shown == f" at {day} {when:%H:%M:%S}", shown
        found = browser.find_element(By.CSS_SELECTOR, '.row[data-path="once"] .exit .at')
        title = found.get_attribute("title") or ""
        assert str(when.year) in title, title
        assert f"{when:%H:%M:%S}" in title, title
        if os.environ.get("JV_PAGE_SHOTS"):
            browser.save_screenshot(str(Path(os.environ["JV_PAGE_SHOTS"]) / "another_day.png"))
        assert console_errors(browser) == []


FIRST = """
version: 1
http: {}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
  - {name: held, service: true, autostart: false, command: [sleep, "100"]}
"""


def empty_timeline(driver: WebDriver, path: str) -> str:
    """What ``path``'s timeline says while it has no bar ("" once it has one)."""
    said = driver.execute_script(
        "const c = document.querySelector(arguments[0]);"
        "return c && !c.children.length ? getComputedStyle(c, '::after').content : '';",
        f'.row[data-path="{path}"] .timeline',
    )
    return str(said or "").removeprefix('"').removesuffix('"')


def test_a_service_whose_first_attempt_runs_says_since_when_not_no_attempts_yet(
    tmp_path: Path, browser: WebDriver
) -> None:
    """A running service's recent attempts said "no attempts yet", as one never started does:
    its first attempt runs, and none has ended to draw. It says since when it runs, as the
    page says a time of day; a service started while the page is open says its own start."""
    with http_daemon(tmp_path, FIRST) as running:

        def since(path: str) -> str:
            at = running.nodes()[path]["since"]
            return f"running since {datetime.fromtimestamp(at, UTC).astimezone():%H:%M:%S}"

        wait_until(lambda: running.nodes()["svc"]["state"] == "running", "svc running")
        browser.get(running.http.url + "/")
        until(browser, lambda d: state_of(d, "held") == "stopped", "held, never started")
        assert empty_timeline(browser, "held") == "no attempts yet"
        assert empty_timeline(browser, "svc") == since("svc")
        until(
            browser,
            lambda d: d.find_element(By.ID, "conn").get_attribute("data-conn") == "live",
            "live",
        )
        out = running.cli("start", "held")
        assert out.returncode == 0, out.stderr
        until(browser, lambda d: empty_timeline(d, "held") == since("held"), "held's start")
        assert console_errors(browser) == []
