"""The demo a newcomer runs first (``jobs.yaml``, ``demo/``): it shows the same on every run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import RUNTIME
from faultkit import CLI, ENV, ROOT, Running, start_daemon, stop_daemon, wait_until
from httpkit import free_port
from test_terminal import status_on_a_terminal

FLAKY = """
version: 1
supervisor:
  backoff: {initial: 10ms, max: 10ms, jitter: 0}
  intensity: {max_restarts: 10, within: 60s}
jobs:
  - name: flaky
    python: "demo.tasks:flaky"
    kwargs: {name: flaky, failures: FAILURES}
"""


def _demo() -> str:
    """The root's demo manifest on a free port (a demo a person runs may hold 8765)."""
    return (ROOT / "jobs.yaml").read_text().replace("8765", str(free_port()))


def _succeeded(running: Running) -> dict[str, Any] | None:
    node = running.nodes()["flaky"]
    return node if node["state"] == "succeeded" else None


def test_the_demos_flaky_fails_as_often_after_an_edit_and_a_reload(tmp_path: Path) -> None:
    """Trial 30: flaky counted its failures in jobvisor's memory, so after an edit and a reload
    it failed no more (its count was past the new ``failures``): the README's retry was gone."""
    running = start_daemon(tmp_path, FLAKY.replace("FAILURES", "2"))
    try:
        node = wait_until(lambda: _succeeded(running), "flaky's first run", proc=running.proc)
        assert (node["starts"], node["failures"]) == (3, 2), node
        (tmp_path / "jobs.yaml").write_text(FLAKY.replace("FAILURES", "3"))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("replace flaky"), out.stdout
        node = wait_until(lambda: _succeeded(running), "flaky after the reload", proc=running.proc)
        assert (node["starts"], node["failures"]) == (4, 3), node
    finally:
        assert stop_daemon(running) == 0


def test_the_demo_shows_what_the_readme_says_in_under_30_seconds(tmp_path: Path) -> None:
    """README, "What the demo shows": a retry, restarts with backoff, a give-up, a periodic
    job and a group restart, each said at the demo's level (information); exit 1, under 30 s."""
    (tmp_path / "jobs.yaml").write_text(_demo())
    began = time.monotonic()
    done = subprocess.run(
        [*CLI, "run", "jobs.yaml"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    took = time.monotonic() - began
    assert done.returncode == 1, done.stderr
    assert took < 30, took
    log = done.stderr
    for said in (
        "report: try 1 failed (HttpStatusError",  # a retry inside the attempt
        "flaky: restart 1 in ",  # restarts with backoff
        "flaky: restart 2 in ",
        "flaky: exited (succeeded) [path=flaky attempt=3]",
        "mailer: gave up: restart 3 within 60s is more than max_restarts (2) allows (raise max_restarts or within, or fix what makes it exit)",
        "heartbeat: exited (succeeded) [path=heartbeat attempt=4]",  # every: 1s, times: 4
        "pipeline: one_for_all restart of pipeline/cache, pipeline/transform in ",
    ):
        assert said in log, f"{said!r} not in the log:\n{log}"
    assert "jobvisor: failed or gave up: mailer" in done.stdout + done.stderr


def test_the_demos_status_on_80_columns_says_why_mailer_failed(tmp_path: Path) -> None:
    """Trial 30: ``jobvisor status`` on 80 columns read ``failed (3): command…`` for mailer."""
    running = start_daemon(tmp_path, _demo(), "--runtime", RUNTIME)
    try:
        wait_until(
            lambda: running.nodes()["mailer"]["state"] == "gave_up", "mailer gives up",
            proc=running.proc,
        )  # fmt: skip
        shown = status_on_a_terminal(tmp_path, 80).splitlines()
    finally:
        stop_daemon(running)
    assert all(len(line) <= 80 for line in shown), shown
    header = shown[0]
    (mailer,) = [line for line in shown if line.startswith("mailer ")]
    assert mailer[header.index("LAST EXIT") :] == "failed (3)", shown
    assert shown[-1] == "mailer: command echo 'cannot reach smtp.invalid'; exit 3 exited with 3"
