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
    AttemptFinished,
    Backoff,
    CooldownPolicy,
    CooldownStarted,
    Intensity,
    OnExhausted,
    Outcome,
    ProbationPassed,
    RestartPolicy,
    RestartScheduled,
    Schedule,
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


def cooling(max_cycles: int | None = None) -> RestartPolicy:
    return RestartPolicy(
        intensity=Intensity(max_restarts=0, within=60),
        on_exhausted=OnExhausted.COOLDOWN,
        cooldown=CooldownPolicy(duration=5, probation=10, multiplier=2, max_cycles=max_cycles),
    )


def test_a_periodic_probe_failing_its_first_tick_after_the_probation_time_fails_probation(
    make_tree, events
) -> None:
    # The trial's t26: ticking less often than its probation lasts, the probe "passed" before
    # its first tick, so every cooldown was cycle 1 and max_cycles never came.
    clock = ManualClock()
    job = python_job("tick", "jobfuncs:fail", "tick", schedule=Schedule(every=20, times=100))
    make_tree(
        SupervisorSpec(policy=cooling(max_cycles=2), children=(job,)),
        on_event=events,
        monotonic=clock,
    )
    events.reached("tick", "running")
    clock.advance(20)  # its first tick fails: cycle 1
    for cycle, duration in ((1, 5), (2, 10)):
        events.reached("tick", "cooldown", times=cycle)
        clock.advance(duration)
        events.reached("tick", "probation", times=cycle)
        clock.advance(20)  # the probation's time is over, then its first tick fails
    events.reached("tick", "gave_up")
    assert [e.cycle for e in events.of(CooldownStarted, "tick")] == [1, 2]
    assert events.of(ProbationPassed, "tick") == []
    assert jobfuncs.CALLS["tick"] == 3


def test_a_periodic_probe_passes_its_probation_at_its_first_good_tick_after_the_time(
    make_tree, events
) -> None:
    clock = ManualClock()
    job = python_job(
        "tick", "jobfuncs:fail_times", "tick", 1, schedule=Schedule(every=20, times=100)
    )
    make_tree(SupervisorSpec(policy=cooling(), children=(job,)), on_event=events, monotonic=clock)
    events.reached("tick", "running")
    clock.advance(20)
    events.reached("tick", "cooldown")
    clock.advance(5)
    events.reached("tick", "probation")
    clock.advance(10)  # the probation's time is over; no tick yet: not passed
    clock.advance(10)
    events.reached("tick", "running", times=2)
    items = events.wait_for(lambda items: True)
    good = next(
        i
        for i, e in enumerate(items)
        if isinstance(e, AttemptFinished) and e.outcome is Outcome.SUCCEEDED
    )
    passed = [i for i, e in enumerate(items) if isinstance(e, ProbationPassed)]
    assert len(passed) == 1
    assert passed[0] > good, "the probation passed before the tick that proves it"
    assert events.states("tick")[-3:] == ["starting", "probation", "running"]


def test_a_periodic_probe_whose_tick_succeeded_early_still_serves_its_probation_time(
    make_tree, events
) -> None:
    clock = ManualClock()
    job = python_job(
        "tick", "jobfuncs:fail_times", "tick", 1, schedule=Schedule(every=4, times=100)
    )
    make_tree(SupervisorSpec(policy=cooling(), children=(job,)), on_event=events, monotonic=clock)
    events.reached("tick", "running")
    clock.advance(4)
    events.reached("tick", "cooldown")
    clock.advance(5)
    events.reached("tick", "probation")
    clock.advance(4)
    events.wait_for(
        lambda items: any(
            isinstance(e, AttemptFinished) and e.outcome is Outcome.SUCCEEDED for e in items
        )
    )
    assert events.of(ProbationPassed, "tick") == []
    assert events.states("tick")[-1] == "probation"
    clock.advance(6)
    events.reached("tick", "running", times=2)
    assert len(events.of(ProbationPassed, "tick")) == 1


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
    assert (
        "crash: gave up: restart 4 within 0.5s is more than max_restarts (3) allows (raise"
        in out.stderr
    )
