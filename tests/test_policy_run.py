"""The restart policy's rules seen through a real tree (and one real ``run``).

The pure rules are in ``test_policy.py``; here real job actors fail under a real
supervisor whose clock the test moves, so cooldowns, probations and backoffs
of seconds take none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jobfuncs
from clockkit import ManualClock

from supervision import (
    Backoff,
    Intensity,
    RestartPolicy,
    RestartScheduled,
    SupervisorSpec,
    python_job,
)

ROOT = Path(__file__).resolve().parent.parent


def test_a_fast_crasher_gives_up_after_max_restarts_though_its_backoff_outgrows_within(
    make_tree, events
) -> None:
    # The trial's t25: its restarts were numbered 1, 2, 1, 2... and it never gave up.
    policy = RestartPolicy(
        backoff=Backoff(initial=1, max=30, multiplier=2, jitter=0),
        intensity=Intensity(max_restarts=3, within=3),
    )
    clock = ManualClock()
    job = python_job("c", "jobfuncs:fail", "c")
    tree = make_tree(
        SupervisorSpec(policy=policy, children=(job,)), on_event=events, monotonic=clock
    )
    for n, delay in enumerate((1, 2, 4), 1):
        events.reached("c", "backoff", times=n)
        clock.advance(delay)
    events.reached("c", "gave_up")
    assert [(e.number, e.delay) for e in events.of(RestartScheduled, "c")] == [
        (1, 1),
        (2, 2),
        (3, 4),
    ]
    assert jobfuncs.CALLS["c"] == 4
    assert tree.status()["children"][0]["restarts"] == 3


def test_run_gives_a_fast_crasher_up_though_its_backoff_outgrows_within(tmp_path: Path) -> None:
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        textwrap.dedent(
            """\
            version: 1
            supervisor:
              backoff: {initial: 200ms, max: 30s, multiplier: 2, jitter: 0}
              intensity: {max_restarts: 3, within: 500ms}
            jobs:
              - name: crash
                command: "exit 1"
            """
        ),
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "run", str(manifest), "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 1, out.stderr
    node = json.loads(out.stdout)["children"][0]
    assert (node["state"], node["starts"], node["restarts"]) == ("gave_up", 4, 3)
    # The third restart's line is the crash-loop damper's to fold; the first two climb.
    assert "in 0.200s (restart 1 of 3" in out.stderr
    assert "in 0.400s (restart 2 of 3" in out.stderr
    assert "crash: gave up: 4 restarts within 0.5s would exceed max_restarts 3" in out.stderr
