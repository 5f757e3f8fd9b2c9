"""Take ``docs/page.png``: the live page of the demo manifest, settled, the pointer on a failure.

Starts ``cli.py daemon --http 127.0.0.1:0`` on a copy of the root ``jobs.yaml`` in a
temporary directory, opens its page in headless Chromium at 1280x800 (Debian's
``chromium`` and ``chromium-driver``, what ``tests/test_page.py`` drives), waits until
every job of the demo has reached the state it ends in, rests the pointer on the newest
failed attempt of ``mailer`` (so the tooltip shows its error) and saves the screenshot.
The daemon is stopped by its PID (SIGTERM, then SIGKILL if it does not end) and the
temporary directory removed, whatever happened.

    python docs/shoot_page.py [--out docs/page.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEADLINE = 60.0  # seconds for the daemon to listen and for the demo to settle
# The states the demo's jobs end in (README, "What the demo shows"); the page is shot then.
SETTLED = {
    "api": "running",
    "report": "succeeded",
    "flaky": "succeeded",
    "mailer": "gave_up",
    "heartbeat": "succeeded",
    "pipeline": "running",
}
FAILED_BAR = '.row[data-path="mailer"] .timeline .bar[data-outcome="failed"]'


class ShotError(Exception):
    """The daemon or the page did not get where the screenshot needs them."""


def start_daemon(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the demo's daemon in ``work``; return it and its page's URL."""
    shutil.copy(ROOT / "jobs.yaml", work / "jobs.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOBVISOR_RUNTIME")}
    env["PYTHONPATH"] = str(ROOT)  # the demo's own modules (demo.server, demo.tasks)
    log = (work / "daemon.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "daemon", "--http", "127.0.0.1:0"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = work / ".jobvisor" / "http.json"
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return proc, str(json.loads(address.read_text())["url"]).rstrip("/")
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)  # a tool, not a test: the daemon writes the file once it listens
    stop_daemon(proc)
    tail = (work / "daemon.out").read_text(errors="replace")[-2000:]
    raise ShotError(f"the daemon did not start listening within {DEADLINE:.0f}s:\n{tail}")


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def open_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def states(driver: webdriver.Chrome) -> dict[str, str]:
    found: dict[str, str] = driver.execute_script(
        "const out = {};"
        "for (const row of document.querySelectorAll('.row[data-path]')) {"
        "  const badge = row.querySelector('.badge');"
        "  if (badge) out[row.dataset.path] = badge.dataset.state; }"
        "return out;"
    )
    return found


def shoot(url: str, out: Path, profile: Path) -> None:
    driver = open_browser(profile)
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, DEADLINE, poll_frequency=0.1)
        try:
            wait.until(lambda d: all(states(d).get(p) == s for p, s in SETTLED.items()))
        except TimeoutException:
            raise ShotError(
                f"the demo did not settle in {DEADLINE:.0f}s: the page shows {states(driver)},"
                f" the screenshot wants {SETTLED}"
            ) from None
        bars = driver.find_elements(By.CSS_SELECTOR, FAILED_BAR)
        if not bars:
            raise ShotError("mailer shows no failed attempt on its timeline")
        ActionChains(driver).move_to_element(bars[-1]).perform()
        time.sleep(0.3)  # the tooltip's fade-in, so the picture shows it whole
        out.parent.mkdir(parents=True, exist_ok=True)
        if not driver.save_screenshot(str(out)):
            raise ShotError(f"the browser could not write {out}")
    finally:
        driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "page.png")
    args = parser.parse_args()
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(tool):
            print(f"shoot_page: no {tool} (apt-get install chromium chromium-driver)")
            return 2
    with tempfile.TemporaryDirectory(prefix="jv-shot-") as tmp:
        work = Path(tmp)
        proc, url = start_daemon(work)
        try:
            shoot(url, args.out.resolve(), work / "chromium-profile")
        except ShotError as exc:
            print(f"shoot_page: {exc}")
            return 1
        finally:
            stop_daemon(proc)
    print(f"shoot_page: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
