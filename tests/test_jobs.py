"""Python jobs in each run mode, with real job actors under a real supervisor."""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import jobfuncs
import logbook
import pytest
from faultkit import wait_until
from treekit import tree_of

from actors import CommandWork
from supervision import (
    AttemptFinished,
    Backoff,
    ChildExited,
    Intensity,
    JobSpec,
    Outcome,
    RestartPolicy,
    RestartType,
    Schedule,
    SpecError,
    StateChanged,
    python_job,
)


def test_once_job_succeeds_with_its_exit_code(make_tree, events) -> None:
    tree = make_tree(tree_of(python_job("j", "jobfuncs:exit_code", "j", 0)), on_event=events)
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "succeeded"
    assert node["last_exit"]["outcome"] == "succeeded"
    assert node["last_exit"]["code"] == 0
    assert tree.result().ok


@pytest.mark.parametrize(
    "case", [(3, "failed", 3), (0, "succeeded", 0), (None, "succeeded", 0), ("bye", "failed", 1)]
)
def test_sys_exit_in_a_python_job_ends_the_attempt_with_its_code(
    make_tree, events, logs, case: tuple[object, str, int]
) -> None:
    """As for a process: sys.exit(n) is exit code n; None is 0; a message is 1."""
    code, outcome, reported = case
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    job = python_job("x", "jobfuncs:raise_system_exit", "x", code)
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    assert tree.wait(10)
    [attempt] = events.of(AttemptFinished, "x")
    assert (attempt.outcome.value, attempt.code) == (outcome, reported)
    assert tree.status()["children"][0]["last_exit"]["code"] == reported
    if outcome == "failed":
        assert "sys.exit" in attempt.error
        assert any("attempt 1 failed" in r.message for r in logs.records)


def test_coroutine_functions_run_to_completion(make_tree, runtime) -> None:
    tree = make_tree(tree_of(python_job("a", "jobfuncs:async_ok", "a")))
    assert tree.wait(10)
    last = tree.status()["children"][0]["last_exit"]
    if runtime == "gevent":  # refused there: see test_isolation
        assert "is a coroutine function" in last["error"]
        return
    assert last["code"] == 0


@pytest.mark.parametrize("value", [4, 254])
def test_a_non_zero_int_result_fails_the_attempt_as_sys_exit_would(make_tree, value: int) -> None:
    """An int result is the exit code (README): 4 is a failure with code 4, never "succeeded (4)"."""
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(tree_of(python_job("r", "jobfuncs:exit_code", "r", value), policy=policy))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert node["last_exit"]["outcome"] == "failed"
    assert node["last_exit"]["code"] == value
    assert f"jobfuncs:exit_code returned {value}" in node["last_exit"]["error"]
    assert not tree.result().ok


def test_import_errors_fail_the_attempt_with_a_clear_message(make_tree) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(tree_of(python_job("m", "no_such_module_xyz:main"), policy=policy))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert "no_such_module_xyz" in node["last_exit"]["error"]


def test_a_target_that_is_not_a_function_fails_the_attempt_saying_what_it_is(make_tree) -> None:
    """``errno:EPERM`` is an int: the failure said "a int"."""
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(tree_of(python_job("m", "errno:EPERM"), policy=policy))
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert node["state"] == "gave_up"
    assert "errno:EPERM is an int, not a function" in node["last_exit"]["error"]


def test_service_that_returns_is_a_failure(make_tree, events) -> None:
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=1)
    )
    job = python_job("svc", "jobfuncs:service_returns", "svc", schedule=Schedule(service=True))
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    events.reached("svc", "gave_up")
    exits = events.of(ChildExited, "svc")
    assert [e.outcome for e in exits] == [Outcome.FAILED, Outcome.FAILED]
    assert "returned" in (exits[0].error or "")
    assert jobfuncs.CALLS["svc"] == 2
    assert not tree.result().ok


def test_a_command_service_that_exits_says_its_code_and_why_it_failed(make_tree, events) -> None:
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=0))
    work = CommandWork(shell="exit 2", success_exit_codes=(0, 2))
    tree = make_tree(
        tree_of(JobSpec(name="svc", work=work, schedule=Schedule(service=True)), policy=policy),
        on_event=events,
    )
    events.reached("svc", "gave_up")
    (exit_,) = events.of(ChildExited, "svc")
    assert exit_.error == (
        "service svc exited with 2: a service runs until it is stopped, so any exit is a failure"
    )
    assert not tree.result().ok


def test_periodic_job_with_times_runs_exactly_that_many_attempts(make_tree, events) -> None:
    job = python_job("tick", "jobfuncs:ok", "tick", schedule=Schedule(every=0.01, times=3))
    tree = make_tree(tree_of(job), on_event=events)
    assert tree.wait(10)
    attempts = events.wait_for(
        lambda items: len([e for e in items if isinstance(e, AttemptFinished)]) >= 3
    )
    assert [e.attempt for e in attempts if isinstance(e, AttemptFinished)] == [1, 2, 3]
    assert jobfuncs.CALLS["tick"] == 3
    assert tree.status()["children"][0]["state"] == "succeeded"


def test_a_periodic_job_shows_its_last_tick_and_when_the_next_one_is_due(make_tree, events) -> None:
    """Each tick is an attempt (SPEC §2): between two, the status says how the last ended."""
    every = 0.2
    job = python_job("tick", "jobfuncs:once_then_block", "tick", schedule=Schedule(every=every))
    tree = make_tree(tree_of(job), on_event=events)
    before = tree.status()["children"][0]  # maybe not started yet: then no tick due either
    if before["state"] == "running":
        assert before["next_start_at"] == pytest.approx(time.time() + every, abs=0.15)
    ended = events.wait_for(lambda items: any(isinstance(e, AttemptFinished) for e in items))
    first = next(e for e in ended if isinstance(e, AttemptFinished))
    assert first.started_at == pytest.approx(before["next_start_at"] or first.started_at, abs=0.05)
    # The first tick comes one interval after the start.
    started = next(e for e in events.of(StateChanged, "tick") if e.new.value == "running")
    assert first.started_at - started.at == pytest.approx(every, abs=0.1)
    node = tree.status()["children"][0]  # the second tick blocks: the first is the last ended
    assert node["state"] == "running"
    assert node["last_exit"] == {
        "outcome": "succeeded",
        "code": None,
        "error": None,
        "at": first.at,
    }
    # Fixed rate: the second tick at start + 2 intervals, the third at + 3, whichever is next.
    due = node["next_start_at"] - first.started_at
    assert due == pytest.approx(every, abs=0.1) or due == pytest.approx(2 * every, abs=0.1), due
    jobfuncs.EVENTS["tick.release"].set()


def test_while_a_tick_runs_the_next_one_is_shown_not_the_running_ones(make_tree) -> None:
    """The running tick's own time is past: the status shows the one after it."""
    every = 0.2
    job = python_job("slowtick", "jobfuncs:block", "slowtick", schedule=Schedule(every=every))
    tree = make_tree(tree_of(job))
    try:
        assert jobfuncs.EVENTS["slowtick.running"].wait(10)  # the first tick, which blocks
        # The status's own now lies between these two: on a loaded machine the second came
        # after the next tick's time (the check failed once so, with helpers running).
        before = time.time()
        node = tree.status()["children"][0]
        after = time.time()
        assert node["last_exit"] is None
        assert before < node["next_start_at"] <= after + every + 0.05, (node, before, after)
    finally:
        jobfuncs.EVENTS["slowtick.release"].set()


def test_the_upcoming_tick_follows_the_actors_schedule() -> None:
    from actors._job import cron_delay, upcoming_tick

    every = Schedule(every=10)
    assert upcoming_tick(every, 130.0, 125.0) == 130.0  # not due yet: itself
    assert upcoming_tick(every, 100.0, 125.0) == 130.0  # fixed rate from the one due
    assert upcoming_tick(every, 100.0, 130.0) == 140.0
    cron = Schedule(cron="*/5 * * * *")
    now = 1_800_000_123.0
    assert upcoming_tick(cron, now - 1, now) == now + cron_delay("*/5 * * * *", now)


def test_an_attempt_killed_after_its_grace_is_an_attempt_too(make_tree, events, tmp_path) -> None:
    """SPEC §6: every attempt is journaled; one killed (a command ignoring its stop, a
    thread that never returns) was not: its own thread never reported it."""
    stubborn = JobSpec(
        name="cmd",
        work=CommandWork(
            shell=f"trap '' TERM; touch {tmp_path}/trapped; while true; do sleep 0.05; done"
        ),
        schedule=Schedule(service=True),
        grace=0.2,
    )
    thread = python_job("py", "jobfuncs:stubborn", "py", schedule=Schedule(service=True))
    tree = make_tree(tree_of(stubborn, replace(thread, grace=0.2)), on_event=events)
    wait_until((tmp_path / "trapped").exists, "the command ignores TERM")
    assert jobfuncs.EVENTS["py.running"].wait(10)
    tree.stop_child("cmd")
    tree.stop_child("py")
    for i, path in enumerate(("cmd", "py")):
        events.wait_for(lambda _, path=path: events.of(AttemptFinished, path), 10)
        done = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, path)]
        assert done == [(1, Outcome.KILLED)], path
        assert tree.status()["children"][i]["last_exit"]["outcome"] == "killed"


def test_a_deadline_that_falls_during_a_stop_is_no_failure(make_tree, events, tmp_path) -> None:
    """A stop asked first, its grace running, and then the attempt's timeout: the stop ends it
    (a shutdown is never a failure). It was a `timeout`, counted in failures, the trial's
    `stopped, failures=2, last_exit timeout (-15)`."""
    stubborn = JobSpec(
        name="cmd",
        work=CommandWork(
            shell=f"trap '' TERM; touch {tmp_path}/trapped; while true; do sleep 0.05; done"
        ),
        schedule=Schedule(service=True, timeout=2.0),
        grace=3.0,
    )
    tree = make_tree(tree_of(stubborn), on_event=events)
    wait_until((tmp_path / "trapped").exists, "the command ignores TERM")
    tree.stop_child("cmd")  # returns once it ended: killed after its grace, past the deadline
    events.wait_for(lambda _: events.of(AttemptFinished, "cmd"), 10)
    assert [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "cmd")] == [
        (1, Outcome.KILLED)
    ]
    node = tree.status()["children"][0]
    assert (node["state"], node["failures"], node["last_exit"]["outcome"]) == (
        "stopped",
        0,
        "killed",
    )


def test_a_failed_tick_restarts_and_the_count_goes_on(make_tree, events) -> None:
    job = python_job(
        "tick", "jobfuncs:fail_times", "tick", 1, schedule=Schedule(every=0.01, times=3)
    )
    tree = make_tree(tree_of(job), on_event=events)
    assert tree.wait(10)
    finished = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "tick")]
    assert finished == [(1, Outcome.FAILED), (2, Outcome.SUCCEEDED), (3, Outcome.SUCCEEDED)]
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["restarts"]) == ("succeeded", 2, 1)


def test_a_periodic_job_whose_last_tick_fails_ends_there(make_tree, events, logs) -> None:
    # ``times`` counts the ticks run, failed ones included: a job whose every tick fails ran
    # one more tick per restart (4 of ``times: 2`` before its intensity gave up).
    job = python_job("tick", "jobfuncs:fail", "tick", schedule=Schedule(every=0.01, times=2))
    tree = make_tree(tree_of(job), on_event=events)
    assert tree.wait(10)
    finished = [(e.attempt, e.outcome) for e in events.of(AttemptFinished, "tick")]
    assert finished == [(1, Outcome.FAILED), (2, Outcome.FAILED)]
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["restarts"]) == ("failed", 2, 1)
    assert logs.has_warning("tick: failed finally (its 2 ticks, times: 2, are run)")


def test_overlapping_ticks_are_skipped_and_logged(make_tree) -> None:
    skipped = threading.Event()

    class Watch(logbook.Handler):
        def emit(self, record: logbook.LogRecord) -> None:
            if "tick skipped" in record.message:
                skipped.set()

    with Watch(level=logbook.INFO, bubble=True).applicationbound():
        job = python_job("slow", "jobfuncs:block", "slow", schedule=Schedule(every=0.005))
        tree = make_tree(tree_of(job))
        assert jobfuncs.EVENTS["slow.running"].wait(5)
        assert skipped.wait(10), "no skipped tick was logged"
    jobfuncs.EVENTS["slow.release"].set()
    tree.stop_child("slow")
    assert tree.status()["children"][0]["state"] == "stopped"


def test_timeout_fails_the_attempt_and_stops_its_work(make_tree, events) -> None:
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=0)
    )
    # 51 * 0.001 is how a manifest's 51ms parses: it was told as 0.051000000000000004s.
    job = python_job(
        "t", "jobfuncs:stubborn", "t", schedule=Schedule(timeout=51 * 0.001), grace=0.05
    )
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    events.reached("t", "gave_up")
    exits = events.of(ChildExited, "t")
    assert [e.outcome for e in exits] == [Outcome.TIMEOUT]
    assert (exits[0].error or "").endswith("t attempt 1 timed out after 51ms")
    node = tree.status()["children"][0]
    assert node["last_exit"]["outcome"] == "timeout"


def test_a_call_that_returns_after_its_timeout_is_a_timeout(make_tree, events, runtime) -> None:
    # Under gevent a loop that never yields keeps the timer from firing: its late return was
    # reported succeeded. Under threads the kill lands in the loop at the deadline.
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=0)
    )
    job = python_job("spin", "jobfuncs:spin", "spin", 0.6, schedule=Schedule(timeout=0.2))
    make_tree(tree_of(job, policy=policy), on_event=events)
    events.reached("spin", "gave_up")
    exits = events.of(ChildExited, "spin")
    assert [e.outcome for e in exits] == [Outcome.TIMEOUT]
    error = exits[0].error or ""
    assert "timed out after 200ms" in error
    if runtime == "gevent":
        assert "never yielded to gevent" in error, error
        assert re.search(r"overran it by 0\.\ds", error), error


def test_a_timeout_asks_a_python_thread_to_stop_and_waits_its_grace(make_tree, events) -> None:
    # As a stop does: cancelled is set, the grace is waited, and only then the kill comes. A
    # timeout under threads killed at once: cancelled was never seen, the grace skipped.
    job = python_job(
        "g",
        "jobfuncs:graceful",
        "g",
        0.3,
        schedule=Schedule(timeout=0.1),
        grace=5.0,
        restart=RestartType.TEMPORARY,
    )
    make_tree(tree_of(job), on_event=events)
    assert jobfuncs.EVENTS["g.cancelled"].wait(10), "the job never saw its attempt cancelled"
    assert jobfuncs.EVENTS["g.cleaned"].wait(10), "the kill came before the grace was over"
    events.reached("g", "failed")
    exits = events.of(ChildExited, "g")
    assert [e.outcome for e in exits] == [Outcome.TIMEOUT]
    assert "timed out after 100ms" in (exits[0].error or "")


def test_a_timed_out_python_thread_that_ignores_it_is_killed_after_its_grace(
    make_tree, events
) -> None:
    job = python_job(
        "s",
        "jobfuncs:stubborn_until_killed",
        "s",
        schedule=Schedule(timeout=0.05),
        grace=0.5,
        restart=RestartType.TEMPORARY,
    )
    make_tree(tree_of(job), on_event=events)
    events.reached("s", "failed")  # reported at the timeout, as before: the grace is the thread's
    failed_at = time.monotonic()
    assert [e.outcome for e in events.of(ChildExited, "s")] == [Outcome.TIMEOUT]
    assert jobfuncs.EVENTS["s.ended"].wait(10), "the kill never came"
    # The kill came at the end of its grace (0.5 s after the timeout), no sooner.
    assert jobfuncs.ENDED["s"] - failed_at > 0.3


def test_stop_of_a_cooperative_job_is_not_a_failure(make_tree, events) -> None:
    job = python_job("b", "jobfuncs:block", "b", restart=RestartType.PERMANENT)
    tree = make_tree(tree_of(job), on_event=events)
    assert jobfuncs.EVENTS["b.running"].wait(5)
    tree.stop_child("b")
    node = tree.status()["children"][0]
    assert (node["state"], node["failures"], node["restarts"]) == ("stopped", 0, 0)
    assert node["last_exit"]["outcome"] == "stopped"


def test_a_job_ignoring_its_stop_is_killed_after_its_grace(make_tree, events) -> None:
    job = python_job("s", "jobfuncs:stubborn", "s", grace=0.05)
    tree = make_tree(tree_of(job), on_event=events)
    assert jobfuncs.EVENTS["s.running"].wait(5)
    tree.stop_child("s")
    node = tree.status()["children"][0]
    assert node["state"] == "stopped"
    assert node["last_exit"]["outcome"] == "killed"
    assert node["failures"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": True, "every": 1.0}, "one run mode"),
        ({"cron": "every day"}, "cron"),
        ({"every": 0}, "every"),
        ({"times": 3}, "times"),
        ({"timeout": -1}, "timeout"),
    ],
)
def test_invalid_schedules_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        Schedule(**kwargs)


def test_bad_python_target_is_refused() -> None:
    with pytest.raises(SpecError, match="module:function"):
        python_job("x", "not a target")


def test_cron_delay_counts_to_the_next_matching_minute() -> None:
    from datetime import datetime

    from actors._job import cron_delay

    at = datetime(2026, 3, 2, 10, 14, 30).astimezone().timestamp()  # local 10:14:30
    assert cron_delay("15 10 * * *", at) == pytest.approx(30.0)
    assert cron_delay("*/5 * * * *", at) == pytest.approx(30.0)
    assert cron_delay("14 10 * * *", at) == pytest.approx(24 * 3600 - 30.0, abs=3600)  # tomorrow
    assert Schedule(cron="*/5 * * * *", times=2).finite
    assert not Schedule(cron="*/5 * * * *").finite


@pytest.mark.parametrize(
    ("nickname", "fields"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_cron_nicknames_fire_as_their_five_fields(nickname: str, fields: str) -> None:
    # crontab(5)'s nicknames, which a crontab or systemd's OnCalendar=daily user writes.
    from datetime import datetime

    from actors._job import cron_delay

    Schedule(cron=nickname)  # accepted
    Schedule(cron=nickname.upper())  # as crontab, case does not matter
    for at in (
        datetime(2026, 3, 2, 10, 14, 30).astimezone().timestamp(),
        datetime(2026, 12, 31, 23, 59, 59).astimezone().timestamp(),
    ):
        assert cron_delay(nickname, at) == cron_delay(fields, at)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("@reboot", "a job without cron runs once at every start"),
        (
            "@fortnightly",
            "one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
        ("@daily 5", "one of @yearly"),
    ],
)
def test_other_cron_nicknames_are_refused_saying_what_there_is(expr: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        Schedule(cron=expr)


_DST_FIRES = """
import time
from actors._job import cron_delay

def at(y, m, d, hh, mm):
    return time.mktime((y, m, d, hh, mm, 0, 0, 0, -1))

def fires(expr, start, n):
    out, now = [], start
    for _ in range(n):
        now += cron_delay(expr, now)
        out.append(time.strftime("%m-%d %H:%M %Z", time.localtime(now)))
        now += 1
    return " ".join(out)

print(fires("0 12 * * *", at(2026, 3, 7, 12, 0) + 1, 2))
print(fires("0 12 * * *", at(2026, 10, 31, 12, 0) + 1, 2))
print(fires("30 1 * * *", at(2026, 10, 31, 1, 30) + 1, 2))
print(fires("30 2 * * *", at(2026, 3, 7, 2, 30) + 1, 2))
print(fires("0 * * * *", at(2026, 11, 1, 0, 0) + 1, 3))
"""


def test_cron_keeps_local_time_across_the_zones_dst_changes() -> None:
    """A cron job's next time was reckoned with the UTC offset of the moment it was reckoned
    in: the day after a change it ran an hour off (13:00 for `0 12 * * *`), and twice on the
    autumn day (11:00 and 12:00). In a process of its own: the zone is the process's."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TZ": "EST5EDT,M3.2.0,M11.1.0"}  # New York's rule, no tz database
    out = subprocess.run(
        [sys.executable, "-c", _DST_FIRES], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "03-08 12:00 EDT 03-09 12:00 EDT",  # the spring day: noon, not 13:00
        "11-01 12:00 EST 11-02 12:00 EST",  # the autumn day: once, at noon
        "11-01 01:30 EDT 11-02 01:30 EST",  # 01:30 comes twice that night: run once
        "03-08 03:30 EDT 03-09 02:30 EDT",  # 02:30 never comes that night: run an hour on
        # A wall time is fired once, an hourly job's too: 01:00 comes again at 01:00 EST.
        "11-01 01:00 EDT 11-01 02:00 EST 11-01 03:00 EST",
    ]


@pytest.mark.parametrize("step", [-20.0, 25.0], ids=["set-back", "set-forward"])
def test_a_cron_tick_comes_at_its_wall_time_when_the_clock_is_set(make_tree, events, step) -> None:
    """The next cron tick was a monotonic delay armed once: a wall clock set back (an NTP
    step) ran it early, and then again at its time; one set forward ran it late, by as much.
    Its wait comes in pieces now, and the wall clock is read after each."""
    from clockkit import ManualClock

    from supervision import PythonWork, SupervisorSpec

    clock = ManualClock()
    minute = 1_700_000_040.0  # a whole minute
    epoch = minute - 30 - clock()  # the wall clock reads 30 s before it at the start
    offset = [0.0]

    def wall() -> float:
        return epoch + clock() + offset[0]

    def job(name: str, schedule: Schedule) -> JobSpec:
        return JobSpec(
            name=name, work=PythonWork(target="jobfuncs:ok", args=(name,)), schedule=schedule
        )

    # m ticks when c's monotonic wait runs out: once its tick is done, so is c's timer.
    spec = SupervisorSpec(
        children=(job("c", Schedule(cron="* * * * *")), job("m", Schedule(every=30)))
    )
    tree = make_tree(spec, on_event=events, monotonic=clock, wall=wall)
    # Both armed before the clock moves: m's interval counts from its own start, which a
    # loaded machine may make after c's; armed late, its tick (and the wait below) never came.
    wait_until(
        lambda: [c["next_start_at"] for c in tree.status()["children"]] == [minute, minute],
        "both armed",
    )
    offset[0] = step
    if step < 0:
        clock.advance(30)  # the monotonic wait is over; by the wall clock, 20 s are left
        events.wait_for(lambda _: bool(events.of(AttemptFinished, "m")))
        clock.advance(20)
    else:
        clock.advance(10)  # the first piece: by the wall clock it is 5 s past the tick
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "c")))
    assert events.of(AttemptFinished, "c")[0].started_at >= minute
    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == minute + 60, "next")
    assert len(events.of(AttemptFinished, "c")) == 1


def test_a_periodic_job_stopped_between_ticks_keeps_its_last_ticks_exit(make_tree, events) -> None:
    """README: a periodic job's `last_exit` is its last tick's. A person's stop (or restart)
    between two ticks made it `stopped`, hiding how the last tick ended."""
    from clockkit import ManualClock

    from supervision import PythonWork, SupervisorSpec

    clock = ManualClock()
    job = JobSpec(
        name="p", work=PythonWork(target="jobfuncs:ok", args=("p",)), schedule=Schedule(every=30)
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events, monotonic=clock)
    events.reached("p", "running")
    clock.advance(30)
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "p")))
    tree.stop_child("p")
    [node] = tree.status()["children"]
    assert node["state"] == "stopped"
    assert node["last_exit"]["outcome"] == "succeeded"
    tree.start_child("p")
    events.reached("p", "running", times=2)
    [node] = tree.status()["children"]
    assert node["last_exit"]["outcome"] == "succeeded"


def test_ticks_skipped_behind_a_long_attempt_are_said_once_then_counted(
    make_tree, events, logs
) -> None:
    """A job every 10 ms running for a second wrote a hundred `tick skipped` lines a second:
    the first is said, the rest counted in one line when a tick runs again."""
    from clockkit import ManualClock

    from supervision import PythonWork, SupervisorSpec

    clock = ManualClock()
    epoch = 1_700_000_000.0

    def wall() -> float:
        return epoch + clock()

    job = JobSpec(
        name="p", work=PythonWork(target="jobfuncs:block", args=("p",)), schedule=Schedule(every=1)
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events, monotonic=clock, wall=wall)

    def skips() -> int:
        return sum("skipped" in r.message for r in logs.records)

    wait_until(lambda: tree.status()["children"][0]["next_start_at"] == epoch + 101, "armed")
    clock.advance(1)
    assert jobfuncs.EVENTS["p.running"].wait(10)
    for n in range(1, 6):  # each tick comes while attempt 1 runs
        clock.advance(1)
        wait_until(lambda n=n: skips() == n, "the tick passed")  # the later ones at DEBUG
    jobfuncs.EVENTS["p.release"].set()
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "p")))
    clock.advance(1)  # a tick runs again
    events.wait_for(lambda _: len(events.of(AttemptFinished, "p")) == 2)
    said = [r.message for r in logs.records if "skipped" in r.message and r.level_name == "INFO"]
    assert said == [
        "p: tick skipped, attempt 1 still running (the next are counted, said once a tick runs)",
        "p: 5 ticks skipped while attempt 1 ran",
    ]


def test_no_tick_is_said_skipped_behind_a_periodic_jobs_last_attempt(
    make_tree, events, logs
) -> None:
    """The `times`-th attempt is the last: a tick passing while it runs skips nothing, and its
    "the next are counted, said once a tick runs" promised a line that never came (h267)."""
    from clockkit import ManualClock

    from supervision import PythonWork, SupervisorSpec

    clock = ManualClock()
    epoch = 1_700_000_000.0

    def wall() -> float:
        return epoch + clock()

    job = JobSpec(
        name="p",
        work=PythonWork(target="jobfuncs:block", args=("p",)),
        schedule=Schedule(every=1, times=1),
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events, monotonic=clock, wall=wall)

    def next_at() -> float | None:
        return tree.status()["children"][0]["next_start_at"]

    wait_until(lambda: next_at() == epoch + 101, "armed")
    clock.advance(1)
    assert jobfuncs.EVENTS["p.running"].wait(10)
    for n in range(2, 4):  # two ticks pass while the last attempt runs
        clock.advance(1)
        wait_until(lambda n=n: next_at() == epoch + 101 + n, "the tick passed")
    jobfuncs.EVENTS["p.release"].set()
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "p")))
    assert [r.message for r in logs.records if "skipped" in r.message] == []


def test_a_name_added_to_a_module_imported_before_is_said_to_need_a_restart(
    tmp_path, monkeypatch
) -> None:
    """A daemon's reload added a thread job naming a function its module's file has now;
    the module was imported before, once in the process, so the job failed with a bare "has
    no 'evil'" that `validate` (a new process) did not see. The message says why."""
    from actors._python_call import resolve_target

    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "reloaded_tasks.py"
    source.write_text("def ok():\n    return None\n")
    try:
        assert resolve_target("reloaded_tasks:ok")() is None
        source.write_text("def ok():\n    return None\n\n\ndef evil():\n    return None\n")
        with pytest.raises(AttributeError) as refused:
            resolve_target("reloaded_tasks:evil")
        assert str(refused.value) == (
            f"reloaded_tasks:evil: module 'reloaded_tasks' has no 'evil' (it was imported from "
            f"{source} before, and a module is imported once in a process: to run what its "
            "file holds now, restart jobvisor, or give the job isolation: process, whose every "
            "attempt imports it anew)"
        )
        # A typo in a module imported before: its file never had it, so no restart would
        # help (h249); a name close to it is suggested.
        with pytest.raises(AttributeError) as refused:
            resolve_target("reloaded_tasks:evli")
        assert str(refused.value) == (
            "reloaded_tasks:evli: module 'reloaded_tasks' has no 'evli' (did you mean 'evil'?) "
            f"(it was imported from {source} before, and a module is imported once in a "
            "process: to run what its file holds now, restart jobvisor, or give the job "
            "isolation: process, whose every attempt imports it anew)"
        )
        # Only what the file binds: a name in a comment, a docstring or another's import is
        # not its own; one under an if, or imported over lines, is.
        source.write_text(
            '"""def late(): a docstring."""\n'
            "# def later(): a comment\n"
            "from os import (\n    sep,\n)\n"
            "if True:\n    def maybe():\n        pass\n"
            "limit: int\n"
        )
        for name, hinted in (("late", False), ("later", False), ("limit", False)):
            with pytest.raises(AttributeError) as refused:
                resolve_target(f"reloaded_tasks:{name}")
            assert ("imported once" in str(refused.value)) is hinted, name
        for name in ("sep", "maybe"):
            with pytest.raises(AttributeError) as refused:
                resolve_target(f"reloaded_tasks:{name}")
            assert "imported once" in str(refused.value), name
        source.write_text("def ok():\n    return None\n\n\ndef evil():\n    return None\n")
    finally:
        sys.modules.pop("reloaded_tasks", None)
    # Imported now for the first time: what it lacks is a typo, said as before.
    with pytest.raises(AttributeError) as refused:
        resolve_target("reloaded_tasks:nope")
    assert str(refused.value) == "reloaded_tasks:nope: module 'reloaded_tasks' has no 'nope'"
    with pytest.raises(AttributeError) as refused:
        resolve_target("reloaded_tasks:evli")
    assert str(refused.value) == (
        "reloaded_tasks:evli: module 'reloaded_tasks' has no 'evli' (did you mean 'evil'?)"
    )
    sys.modules.pop("reloaded_tasks", None)
