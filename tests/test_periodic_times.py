"""A periodic job's ``times: N``: a person's start of one that ran them begins a new run of N.

Its attempt numbers go on (they never repeat); the count of the run's ticks starts again.
"""

from __future__ import annotations

import jobfuncs
import pytest
from treekit import FAST, tree_of

from supervision import (
    AttemptFinished,
    Outcome,
    Schedule,
    Strategy,
    SupervisorSpec,
    python_job,
)

# A service beside it: the tree runs on once the periodic job is done.
KEEP = python_job("keep", "jobfuncs:block", "keep", schedule=Schedule(service=True))


@pytest.mark.parametrize("started_by", ["start", "restart"])
def test_a_persons_start_of_a_job_that_ran_its_ticks_runs_them_all_again(
    make_tree, events, started_by: str
) -> None:
    job = python_job("tick", "jobfuncs:ok", "tick", schedule=Schedule(every=0.01, times=3))
    tree = make_tree(tree_of(job, KEEP), on_event=events)
    events.reached("tick", "succeeded")
    (tree.start_child if started_by == "start" else tree.restart)("tick")
    events.reached("tick", "succeeded", times=2)
    done = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "tick")]
    assert done == [(n, Outcome.SUCCEEDED) for n in range(1, 7)], "3 ticks, then 3 more"
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["restarts"]) == ("succeeded", 2, 0)


def test_a_failing_job_started_again_runs_its_ticks_and_says_their_count(
    make_tree, events, logs
) -> None:
    # Every tick fails: each is restarted until the run's ``times`` are run (failed ones count).
    job = python_job("tick", "jobfuncs:fail", "tick", schedule=Schedule(every=0.01, times=2))
    tree = make_tree(tree_of(job, KEEP), on_event=events)
    events.reached("tick", "failed")
    tree.start_child("tick")
    events.reached("tick", "failed", times=2)
    done = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "tick")]
    assert done == [(n, Outcome.FAILED) for n in range(1, 5)], "2 ticks, then 2 more"
    said = [r.message for r in logs.records if "failed finally" in r.message]
    assert said == ["tick: failed finally (its 2 ticks, times: 2, are run)"] * 2


def test_a_group_started_anew_runs_its_periodic_jobs_ticks_all_again(make_tree, events) -> None:
    """A group's restart carries its jobs' counters over (attempt numbers never repeat): the
    job that had run its ticks ran one more, not ``times``."""
    job = python_job("tick", "jobfuncs:ok", "tick", schedule=Schedule(every=0.01, times=2))
    group = SupervisorSpec(name="g", policy=FAST, children=(job, KEEP))
    tree = make_tree(tree_of(group), on_event=events)
    events.reached("g/tick", "succeeded")
    tree.restart("g")
    events.reached("g/tick", "succeeded", times=2)
    done = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "g/tick")]
    assert done == [(n, Outcome.SUCCEEDED) for n in range(1, 5)], "2 ticks, then 2 more"


def test_a_one_for_all_restart_runs_a_finished_periodic_jobs_ticks_all_again(
    make_tree, events
) -> None:
    """A sibling's exit restarts the whole one_for_all group, the job that had run its ticks
    too: it ran one more tick, where a parent's restart of the group gave it ``times``."""
    job = python_job("tick", "jobfuncs:ok", "tick", schedule=Schedule(every=0.01, times=2))
    # It ends once: a release left set ended each svc after it too, each a group restart more
    # (CI on 106057e saw 6 ticks).
    svc = python_job(
        "svc", "jobfuncs:block_until_released_once", "ofa-svc", schedule=Schedule(service=True)
    )
    spec = SupervisorSpec(policy=FAST, strategy=Strategy.ONE_FOR_ALL, children=(job, svc))
    tree = make_tree(spec, on_event=events)
    events.reached("tick", "succeeded")
    jobfuncs.EVENTS["ofa-svc.release"].set()  # svc ends: one_for_all takes tick down too
    events.reached("tick", "succeeded", times=2)
    done = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "tick")]
    assert done == [(n, Outcome.SUCCEEDED) for n in range(1, 5)], "2 ticks, then 2 more"
    assert tree.status()["children"][0]["state"] == "succeeded"


def test_a_periodic_job_between_ticks_is_shown_idle_with_its_next_tick(make_tree, events) -> None:
    """SPEC's state stays ``running`` (it counts as running for its dependants), but no tick
    runs: the node says ``between_ticks`` and the table shows it ``idle``, no UPTIME, the
    countdown in NEXT START (it said ``running`` with an UPTIME that grew, and no process)."""
    import time

    import jobfuncs

    from supervision._table import summary_table

    jobfuncs.reset()
    job = python_job("tick", "jobfuncs:block", "tick", schedule=Schedule(every=0.5))
    tree = make_tree(tree_of(job, KEEP), on_event=events)
    events.reached("tick", "running")
    # keep runs too, so the table has its UPTIME column (left out when no row would fill it)
    events.reached("keep", "running")
    now = time.time()
    doc = tree.status()
    node = doc["children"][0]
    assert (node["state"], node.get("between_ticks")) == ("running", True)  # its first tick waits
    assert node["next_start_at"] > now
    row = next(
        line for line in summary_table(doc, width=None, now=now).splitlines() if "tick" in line
    )
    assert row.split()[:4] == ["tick", "python", "idle", "-"], row  # no UPTIME
    assert "in 0." in row  # NEXT START
    assert jobfuncs.EVENTS["tick.running"].wait(10)  # a tick runs now, until released
    node = tree.status()["children"][0]
    assert (node["state"], "between_ticks" in node) == ("running", False)
    row = next(
        line for line in summary_table(tree.status(), width=None).splitlines() if "tick" in line
    )
    assert row.split()[2] == "running"
    jobfuncs.EVENTS["tick.release"].set()
