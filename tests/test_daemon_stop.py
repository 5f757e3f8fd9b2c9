"""A daemon's graceful stop takes as long as its jobs' graces, one after another.

Alone in its module: the test waits out 34 s of graces (sleeping, not working), and on
its own the suite's two workers can run it beside the rest (``--dist loadfile``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import start_daemon, stop_daemon, wait_until


@pytest.mark.skipif(
    RUNTIME == "gevent", reason="the daemon's wait for its stop is the same under gevent: 35 s once"
)
def test_the_daemons_stop_waits_for_every_grace_and_stops_every_job(tmp_path: Path) -> None:
    """Its stop gave up after 30 s and said `daemon stopped (exit 0)`: the jobs it had not
    reached yet (here the first, stopped last, behind two that wait out 17 s each) never got
    their stop signal, only the SIGKILL of the process's end."""
    said = tmp_path / "polite-stopped"
    running = start_daemon(
        tmp_path,
        f"""\
        version: 1
        jobs:
          - name: polite
            command: "trap 'touch {said}; exit 0' TERM; while :; do sleep 0.1; done"
            service: true
          - {{name: stubborn1, command: "trap '' TERM; exec sleep 600", service: true,
              stop: {{grace: 17s}}}}
          - {{name: stubborn2, command: "trap '' TERM; exec sleep 600", service: true,
              stop: {{grace: 17s}}}}
        """,
    )
    wait_until(
        lambda: {n["state"] for n in running.nodes().values()} == {"running"}, "all three run"
    )
    began = time.monotonic()
    running.proc.send_signal(signal.SIGTERM)
    try:
        _, log = running.proc.communicate(timeout=60)
    finally:
        stop_daemon(running)
    took = time.monotonic() - began
    assert running.proc.returncode == 0, log
    assert said.exists(), "the first job got no SIGTERM: the stop gave up before it"
    assert took >= 34, took
    last = log.strip().splitlines()[-1]
    assert "daemon stopped (exit 0)" in last, log
