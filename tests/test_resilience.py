"""Breakers (pure and shared by real jobs), retry inside an attempt, depends_on, readiness."""

from __future__ import annotations

import threading
from typing import Any

import jobfuncs
import logbook
import pykka
import pytest
from clockkit import ManualClock
from faultkit import wait_until
from httpkit import HttpKit, Reply, Stall

from actors import (
    Breaker,
    BreakerState,
    BreakerStatus,
    HttpWork,
    Permit,
    RetrySpec,
    RetryWait,
    Waiting,
    join_tasks,
    step_allow,
    step_record,
    step_release,
)
from actors._job import JobActor
from supervision import (
    AttemptFinished,
    Backoff,
    BreakerChanged,
    ChildExited,
    CooldownPolicy,
    DependencyDownError,
    Intensity,
    JobSpec,
    NotStarted,
    OnExhausted,
    Outcome,
    ProbationPassed,
    PythonWork,
    RestartPolicy,
    RestartType,
    Schedule,
    SpecError,
    StateChanged,
    SupervisorSpec,
    python_job,
)
from supervision._daemon import act
from supervision._spec import BreakerSpec
from supervision._tree import build_breakers


class TestBreakerRules:
    def test_opens_after_threshold_consecutive_failures(self) -> None:
        s = BreakerStatus()
        for _ in range(2):
            s = step_record(s, ok=False, now=0.0, failure_threshold=3, generation=0)
        assert s.state is BreakerState.CLOSED
        # a success resets the count
        s = step_record(s, ok=True, now=0.0, failure_threshold=3, generation=0)
        for _ in range(3):
            s = step_record(s, ok=False, now=5.0, failure_threshold=3, generation=0)
        assert (s.state, s.opened_at) == (BreakerState.OPEN, 5.0)

    def test_open_refuses_until_reset_timeout_then_half_opens_with_limited_calls(self) -> None:
        s = BreakerStatus(BreakerState.OPEN, 0, 10.0, 0)
        ok, s = step_allow(s, 19.9, 10.0, 2)
        assert not ok
        ok1, s = step_allow(s, 20.0, 10.0, 2)
        ok2, s = step_allow(s, 20.0, 10.0, 2)
        ok3, s = step_allow(s, 20.0, 10.0, 2)
        assert (ok1, ok2, ok3) == (True, True, False)
        assert s.state is BreakerState.HALF_OPEN

    def test_half_open_success_closes_failure_reopens(self) -> None:
        half = BreakerStatus(BreakerState.HALF_OPEN, 0, 0.0, 1, generation=2)
        closed = step_record(half, ok=True, now=30.0, failure_threshold=3, generation=2)
        assert closed == BreakerStatus(generation=3)
        reopened = step_record(half, ok=False, now=30.0, failure_threshold=3, generation=2)
        assert (reopened.state, reopened.opened_at) == (BreakerState.OPEN, 30.0)

    def test_a_cancelled_trial_gives_its_permit_back_and_counts_nothing(self) -> None:
        half = BreakerStatus(BreakerState.HALF_OPEN, 0, 0.0, 1)
        released = step_release(half, generation=0)
        assert released == BreakerStatus(BreakerState.HALF_OPEN, 0, 0.0, 0)
        ok, _ = step_allow(released, 30.0, 10.0, 1)
        assert ok, "the next call is the trial"
        for other in (BreakerStatus(), BreakerStatus(BreakerState.OPEN, 0, 5.0, 0), released):
            assert step_release(other, generation=0) == other

    def test_breaker_object_reports_transitions(self) -> None:
        clock = ManualClock(0.0)
        seen: list[tuple[str, str]] = []
        b = Breaker(
            "db",
            failure_threshold=1,
            reset_timeout=5,
            clock=clock,
            on_change=lambda name, old, new: seen.append((old.value, new.value)),
        )
        call = b.allow()
        assert call
        b.record(call, ok=False)
        assert not b.allow()
        assert b.retry_in() == 5
        clock.now = 5.0
        assert b.state is BreakerState.HALF_OPEN
        trial = b.allow()
        assert trial
        b.record(trial, ok=True)
        assert seen == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]

    def test_a_half_open_breaker_gives_its_trials_to_the_callers_that_waited_longest(self) -> None:
        """For one turn after it half-opens, the trial goes to the caller that has waited
        longest; one that had its trial waits behind the rest; after the turn, anyone."""
        clock = ManualClock(0.0)
        b = Breaker("api", failure_threshold=1, reset_timeout=10, clock=clock)
        b.record(b.allow("c"), ok=False)  # open from 0 to 10
        assert [b.queue(caller) for caller in ("c", "a", "b")] == [10, 10, 10]
        clock.now = 10.0
        assert not b.allow("b"), "a and c waited longer"
        assert b.queue("b") == 1.0, "asks again once the turn (reset_timeout / 10) is over"
        assert not b.allow("a")
        trial = b.allow("c")
        assert trial
        assert not b.allow("a"), "the one trial call is made"
        b.record(trial, ok=False)  # open from 10 to 20
        assert b.queue("c") == 10  # behind a and b now
        clock.now = 20.0
        assert not b.allow("c")
        assert not b.allow("b")
        trial = b.allow("a")
        assert trial
        b.record(trial, ok=False)  # open from 20 to 30
        b.queue("a")  # b, c, a
        b.dequeue("b")  # b went away: it holds nobody up
        clock.now = 30.0
        assert not b.allow("a")
        trial = b.allow("c")
        assert trial
        b.record(trial, ok=False)  # open from 30 to 40: a waits
        clock.now = 40.0
        assert not b.allow("x"), "never asked before: it comes after those that wait"
        clock.now = 41.0  # a, at the head, did not come for its turn: first come, first served
        trial = b.allow("x")
        assert trial
        b.record(trial, ok=True)
        assert b.state is BreakerState.CLOSED
        assert b.allow("c")

    def test_a_permit_says_whether_it_is_a_trial_as_it_is_taken(self) -> None:
        """Read from the breaker after the permit, a trial that another trial's failure had
        reopened the breaker behind looked like a call of an open breaker."""
        clock = ManualClock(0.0)
        b = Breaker(
            "api", failure_threshold=1, reset_timeout=10, half_open_max_calls=2, clock=clock
        )
        call = b.allow("a")
        assert call == Permit(trial=False, generation=0)
        b.record(call, ok=False)
        assert b.allow("a") is None
        clock.now = 10.0
        first, second = b.allow("a"), b.allow("b")
        assert (first, second) == (Permit(trial=True, generation=2),) * 2
        assert b.allow("c") is None, "half_open_max_calls: 2"
        # a's trial reopens it: b's is still a trial, whose failure counts
        b.record(first, ok=False)
        assert b.state is BreakerState.OPEN
        b.record(second, ok=False)
        assert (b.state, b.status.opened_at) == (BreakerState.OPEN, 10.0)

    def test_a_permit_from_an_earlier_period_frees_no_trial_of_this_one(self) -> None:
        """A call taken while closed and stopped after the breaker opened and half-opened
        again gave back a permit of this period's trials: a second trial ran beside the one."""
        clock = ManualClock(0.0)
        b = Breaker("api", failure_threshold=1, reset_timeout=10, clock=clock)
        a = b.allow("a")
        assert a == Permit(trial=False, generation=0)
        b.record(b.allow("b"), ok=False)  # b's failure opens it: a's call is still out
        clock.now = 11.0
        c = b.allow("c")
        assert c == Permit(trial=True, generation=2)
        b.release(a)  # a is stopped: its permit was of the closed period
        assert b.status.in_flight == 1, "c's trial still runs"
        assert b.allow("d") is None, "half_open_max_calls: 1"
        b.release(c)
        assert b.allow("d"), "c's own permit, given back, frees the trial"

    def test_a_stale_outcome_decides_nothing_in_a_later_half_open_period(self) -> None:
        clock = ManualClock(0.0)
        seen: list[tuple[float, str]] = []
        b = Breaker(
            "api",
            failure_threshold=1,
            reset_timeout=10,
            half_open_max_calls=2,
            clock=clock,
            on_change=lambda name, old, new: seen.append((clock.now, new.value)),
        )
        b.record(b.allow("x"), ok=False)  # open at 0
        clock.now = 10.0
        a, slow = b.allow("a"), b.allow("b")  # the first period's two trials
        clock.now = 11.0
        b.record(slow, ok=False)  # reopens at 11
        clock.now = 21.0
        c = b.allow("c")  # the second period's trial
        assert c == Permit(trial=True, generation=4)
        clock.now = 22.0
        b.record(a, ok=False)  # a's trial, of the first period, fails late
        assert (b.status.state, b.status.in_flight) == (BreakerState.HALF_OPEN, 1)
        clock.now = 23.0
        b.record(c, ok=True)  # c's trial decides
        assert b.state is BreakerState.CLOSED
        assert seen == [
            (0.0, "open"),
            (10.0, "half_open"),
            (11.0, "open"),
            (21.0, "half_open"),
            (23.0, "closed"),
        ]

    def test_a_stale_success_does_not_close_while_the_trial_is_out(self) -> None:
        clock = ManualClock(0.0)
        b = Breaker("api", failure_threshold=2, reset_timeout=10, clock=clock)
        early = b.allow("a")  # a slow call of the closed breaker
        b.record(b.allow("b"), ok=False)
        b.record(b.allow("b"), ok=False)  # open at 0
        clock.now = 10.0
        trial = b.allow("c")
        b.record(early, ok=True)
        assert (b.state, b.status.in_flight) == (BreakerState.HALF_OPEN, 1)
        b.record(trial, ok=False)
        assert (b.state, b.status.opened_at) == (BreakerState.OPEN, 10.0)

    def test_a_closed_breaker_counts_a_stale_outcome_as_an_ordinary_calls(self) -> None:
        """Once closed again, a call from an earlier period is one more call to the service
        now: its failure counts towards the threshold, its success starts the count again."""
        clock = ManualClock(0.0)
        b = Breaker(
            "api", failure_threshold=2, reset_timeout=10, half_open_max_calls=2, clock=clock
        )
        early = b.allow("a")
        b.record(b.allow("b"), ok=False)
        b.record(b.allow("b"), ok=False)  # open at 0
        clock.now = 10.0
        first, second = b.allow("c"), b.allow("d")
        b.record(first, ok=True)  # closes
        b.record(early, ok=False)  # counts: one failure of two
        assert (b.status.state, b.status.failures) == (BreakerState.CLOSED, 1)
        b.record(second, ok=False)  # a trial of the period that closed it: counts as well
        assert b.status.state is BreakerState.OPEN

    def test_generation_moves_on_every_transition(self) -> None:
        s = BreakerStatus()
        s = step_record(s, ok=False, now=0.0, failure_threshold=1, generation=0)
        assert (s.state, s.generation) == (BreakerState.OPEN, 1)
        ok, s = step_allow(s, 10.0, 10.0, 1)
        assert ok
        assert (s.state, s.generation, s.in_flight) == (BreakerState.HALF_OPEN, 2, 1)
        assert step_release(s, generation=1) == s, "a permit of an earlier period"
        assert step_record(s, ok=False, now=11.0, failure_threshold=1, generation=0) == s
        assert step_record(s, ok=True, now=11.0, failure_threshold=1, generation=1) == s
        closed = step_record(s, ok=True, now=11.0, failure_threshold=1, generation=2)
        assert (closed.state, closed.generation, closed.in_flight) == (BreakerState.CLOSED, 3, 0)

    def test_a_restored_breaker_disowns_the_permits_taken_before(self) -> None:
        clock = ManualClock(0.0)
        b = Breaker("api", failure_threshold=1, reset_timeout=10, clock=clock)
        clock.now = 5.0
        b.restore(BreakerStatus(BreakerState.OPEN, 0, 0.0, 0))
        clock.now = 10.0
        trial = b.allow("t")
        assert trial == Permit(trial=True, generation=2)
        b.restore(BreakerStatus(BreakerState.OPEN, 0, 10.0, 0))
        clock.now = 20.0
        assert b.allow("u")
        b.record(trial, ok=True)
        assert b.status.state is BreakerState.HALF_OPEN

    def test_invalid_breaker_specs(self) -> None:
        with pytest.raises(SpecError, match="failure_threshold"):
            BreakerSpec(failure_threshold=0)
        with pytest.raises(SpecError, match="reset_timeout"):
            BreakerSpec(reset_timeout=0)


def test_open_breaker_makes_jobs_wait_without_calls_or_burned_restarts(make_tree, events) -> None:
    """Two jobs share a breaker; once it opens neither calls, and no restart is burned."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=1)
    )
    breakers = build_breakers({"db": BreakerSpec(failure_threshold=2, reset_timeout=0.2)})
    jobs = tuple(
        JobSpec(
            name=name,
            work=PythonWork(target="jobfuncs:fail_while_flag", args=("backend",)),
            schedule=Schedule(service=False),
            breaker="db",
        )
        for name in ("a", "b")
    )
    tree = make_tree(
        SupervisorSpec(policy=policy, children=jobs), on_event=events, breakers=breakers
    )
    events.reached("a", "waiting")
    events.reached("b", "waiting")
    calls_when_open = jobfuncs.CALLS["backend"]
    assert calls_when_open == 2, "the two failures that opened it, then no call while open"
    status = tree.status()
    assert status["breakers"] == {"db": "open"}
    # The failure below the threshold burned one restart; the one that opened it and the
    # waiting since burn none.
    assert sum(n["restarts"] for n in status["children"]) == 1
    assert [n["state"] for n in status["children"]] == ["waiting", "waiting"]
    jobfuncs.EVENTS["backend.healthy"].set()
    assert tree.wait(10)
    assert tree.result().ok
    # Half-open lets one trial call through (no storm): 2 failing calls + 1 trial + 1 more.
    assert jobfuncs.CALLS["backend"] == 4
    changes = [(e.old, e.new) for e in events.of(BreakerChanged)]
    assert changes[:3] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_probe_that_waits_on_its_breaker_serves_its_probation_once_resumed(
    make_tree, events
) -> None:
    """Probation counts only while the probe may call: waiting on a breaker pauses it."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0),
        intensity=Intensity(max_restarts=0),
        on_exhausted=OnExhausted.COOLDOWN,
        cooldown=CooldownPolicy(duration=5, probation=20),
    )
    clock = ManualClock()
    breakers = build_breakers({"db": BreakerSpec(failure_threshold=3, reset_timeout=10)}, clock)
    job = JobSpec(
        name="a",
        work=PythonWork(target="jobfuncs:flaky_then_ok", args=("a", 1)),
        schedule=Schedule(every=1),
        breaker="db",
    )
    spec = SupervisorSpec(policy=policy, children=(job,))
    make_tree(spec, on_event=events, breakers=breakers, monotonic=clock)

    def tick(attempts: int, seconds: float = 1) -> None:
        """Move the clock on and wait for the attempt the tick then due runs."""
        clock.advance(seconds)
        events.wait_for(lambda items: len(events.of(AttemptFinished, "a")) >= attempts)

    events.reached("a", "running")
    tick(1)  # the first call fails: the intensity (0) is spent at once
    events.reached("a", "cooldown")
    clock.advance(5)
    events.reached("a", "probation")
    tick(2)  # the probe's first call succeeds
    while breakers["db"].state is not BreakerState.OPEN:  # another job's calls fail: it opens
        breakers["db"].record(breakers["db"].allow(), ok=False)
    clock.advance(1)  # the next tick finds the breaker open: no call, the probe waits
    events.reached("a", "waiting")
    # Half-open after 10 s: the probe's next tick is the trial call, it succeeds, and the
    # probe is back in probation for a whole period before its window is cleared.
    tick(3, seconds=9)
    events.reached("a", "probation", times=2)
    clock.advance(19.9)
    assert not events.of(ProbationPassed, "a"), "a whole probation period from the resume"
    clock.advance(0.1)
    events.wait_for(lambda items: any(isinstance(e, ProbationPassed) for e in items), 10)
    # ProbationPassed is published just before the change to running: wait for that too.
    events.wait_for(lambda _: events.states("a")[-1:] == ["running"], 10)
    states = events.states("a")
    assert states[states.index("waiting") :] == ["waiting", "probation", "running"]


def test_a_once_job_whose_trial_calls_fail_gives_up_as_its_policy_says(make_tree, events) -> None:
    """Waiting on an open breaker burns nothing, but a trial call that fails is a failure like
    any other: restarted within the intensity, then given up (it waited for ever, its trial
    failures unlogged and uncounted)."""
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=2))
    clock = ManualClock()
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=10)}, clock)
    job = JobSpec(name="a", work=PythonWork(target="jobfuncs:fail", args=("trial",)), breaker="api")
    tree = make_tree(
        SupervisorSpec(policy=policy, children=(job,)),
        on_event=events,
        breakers=breakers,
        monotonic=clock,
    )
    events.reached("a", "waiting")  # the first failure opened it: no restart burned
    node = tree.status()["children"][0]
    assert (node["restarts"], node["failures"]) == (0, 1)
    assert "trial failed on call 1" in node["last_exit"]["error"]
    for trial in (2, 3):
        clock.advance(10)  # half-open: the trial call fails, a restart, which waits again
        events.reached("a", "waiting", times=trial)
        node = tree.status()["children"][0]
        assert (node["restarts"], node["failures"]) == (trial - 1, trial)
    clock.advance(10)
    events.reached("a", "gave_up")  # the third restart would exceed max_restarts 2
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert (node["restarts"], node["failures"], node["state"]) == (2, 4, "gave_up")
    assert jobfuncs.CALLS["trial"] == 4
    failed = [e for e in events.of(AttemptFinished, "a") if e.outcome is Outcome.FAILED]
    assert len(failed) == 4, "every call that failed is an attempt that failed, as counted"


def test_a_once_job_behind_a_breaker_that_never_closes_gives_up_at_the_default_numbers(
    make_tree, events
) -> None:
    """Review 38b: its waits for the breaker counted as running time, so with max_restarts 3
    within 60 s and a reset_timeout of 30 s each restart left the window before the next
    failure, and the job waited and failed for ever. The waits count as backoff waits do."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=3, within=60)
    )
    clock = ManualClock()
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=30)}, clock)
    job = JobSpec(name="a", work=PythonWork(target="jobfuncs:fail", args=("trial",)), breaker="api")
    make_tree(
        SupervisorSpec(policy=policy, children=(job,)),
        on_event=events,
        breakers=breakers,
        monotonic=clock,
    )
    events.reached("a", "waiting")
    for trial in (2, 3, 4):
        clock.advance(30)  # half-open: the trial fails, a restart, which waits 30 s again
        events.reached("a", "waiting", times=trial)
    clock.advance(30)
    events.reached("a", "gave_up")  # the fourth restart would exceed max_restarts 3
    assert jobfuncs.CALLS["trial"] == 5


def test_each_failed_trial_of_a_shared_half_open_breaker_is_its_jobs_failure(
    make_tree, events
) -> None:
    """The trial run (t20): two jobs on a breaker with ``half_open_max_calls: 2`` each make a
    trial call, and both fail. The job whose failure reopened it was restarted; the other's,
    recorded on the breaker it then found open, only made it wait, burning nothing: which one
    was a race. Each failed trial is a failure like any other, whichever reopened it."""
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=5))
    clock = ManualClock()
    breakers = build_breakers(
        {"api": BreakerSpec(failure_threshold=1, reset_timeout=10, half_open_max_calls=2)}, clock
    )
    breakers["api"].restore(BreakerStatus(BreakerState.OPEN, 0, clock(), 0))
    release = threading.Event()
    with HttpKit(Stall(release, Reply(500)), Stall(release, Reply(500)), default=Reply(500)) as kit:
        jobs = tuple(
            JobSpec(name=name, work=HttpWork(url=f"{kit.url}/{name}"), breaker="api")
            for name in ("a", "b")
        )
        tree = make_tree(
            SupervisorSpec(policy=policy, children=jobs),
            on_event=events,
            breakers=breakers,
            monotonic=clock,
        )
        for name in ("a", "b"):
            events.reached(name, "waiting")
        assert kit.count == 0
        clock.advance(10)  # half-open: both ask in the turn, and each has a trial permit
        kit.wait_requests(2)
        release.set()  # both fail: one reopens the breaker, the other finds it open
        for name in ("a", "b"):
            events.reached(name, "waiting", times=2)  # restarted, behind the reopened breaker
        counts = [(n["restarts"], n["failures"]) for n in tree.status()["children"]]
        assert counts == [(1, 1), (1, 1)]
        assert kit.count == 2
        assert tree.stop(10)


def test_a_breaker_counts_an_attempt_once_whatever_tries_its_retries_made(
    make_tree, events
) -> None:
    """failure_threshold counts failed attempts (as the README says), not calls: an attempt
    whose three tries all failed is one failure of the breaker's two."""
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=2, reset_timeout=10)})
    retry = RetrySpec(attempts=3, wait=RetryWait(initial=0.001, max=0.001))
    job = JobSpec(
        name="a",
        work=PythonWork(target="jobfuncs:fail", args=("tries",)),
        breaker="api",
        retry=retry,
    )
    tree = make_tree(
        SupervisorSpec(policy=policy, children=(job,)), on_event=events, breakers=breakers
    )
    events.reached("a", "gave_up")
    assert jobfuncs.CALLS["tries"] == 3
    assert breakers["api"].status == BreakerStatus(BreakerState.CLOSED, failures=1)
    assert tree.wait(10)


def test_a_once_http_job_failing_behind_a_breaker_is_logged_counted_and_gives_up(
    make_tree, events, logs
) -> None:
    """A real server answering 500: each trial call's error is logged, each failed call is a
    failure in the status as in the attempts, and the job gives up as its intensity says."""
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=1))
    clock = ManualClock()
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=10)}, clock)
    retry = RetrySpec(attempts=2, wait=RetryWait(initial=0.001, max=0.001))
    with HttpKit(default=Reply(500, body=b"down")) as kit:
        job = JobSpec(name="call", work=HttpWork(url=f"{kit.url}/x"), breaker="api", retry=retry)
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(job,)),
            on_event=events,
            breakers=breakers,
            monotonic=clock,
        )
        events.reached("call", "waiting")  # attempt 1 (two tries) opened it
        clock.advance(10)  # the trial (attempt 2) fails: restart 1, which waits again
        events.reached("call", "waiting", times=2)
        clock.advance(10)  # the trial (attempt 3) fails: restart 2 would exceed max_restarts 1
        events.reached("call", "gave_up")
        assert tree.wait(10)
        assert kit.count == 4, "two tries, then one call per trial, and not one call more"
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["restarts"], node["failures"]) == (
        "gave_up",
        2,
        1,
        3,
    )
    failed = [e for e in events.of(AttemptFinished, "call") if e.outcome is Outcome.FAILED]
    assert [e.attempt for e in failed] == [1, 2, 3]
    for number in (1, 2, 3):  # each failure, the trials' too, is an error line with its error
        lines = [
            r.message
            for r in logs.records
            if r.level_name == "ERROR"
            and r.extra.get("path") == "call"
            and r.extra.get("attempt") == number
        ]
        assert any("status 500 Internal Server Error" in line for line in lines), (number, lines)


def test_a_half_open_breakers_trial_is_one_call_without_retries(make_tree, events) -> None:
    """While its breaker is half-open an attempt makes one call, as pybreaker or Polly let
    one call through: it sent every retry of the attempt (4 requests per trial)."""
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=0))
    clock = ManualClock()
    breakers = build_breakers(
        {"b": BreakerSpec(failure_threshold=1, reset_timeout=2, half_open_max_calls=1)}, clock
    )
    retry = RetrySpec(attempts=4, wait=RetryWait(initial=0.001, max=0.001))
    with HttpKit(default=Reply(500)) as kit:
        job = JobSpec(name="one", work=HttpWork(url=f"{kit.url}/e500"), breaker="b", retry=retry)
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(job,)),
            on_event=events,
            breakers=breakers,
            monotonic=clock,
        )
        events.reached("one", "waiting")  # attempt 1, closed: its four tries opened it
        assert kit.count == 4
        clock.advance(2)  # half-open: the trial is one call, which fails: given up
        events.reached("one", "gave_up")
        assert tree.wait(10)
        assert kit.count == 5


def test_a_timed_out_call_behind_a_breaker_leaves_no_incarnation_behind(make_tree, events) -> None:
    """The incarnation a timeout ended is over: it does not wait on the breaker it opened
    (it lived on unseen, took the trial call's permit and kept it: the job waited for ever)."""
    policy = RestartPolicy(backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=1))
    clock = ManualClock()
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=10)}, clock)
    with HttpKit(default=Stall()) as kit:
        job = JobSpec(
            name="call",
            work=HttpWork(url=f"{kit.url}/x", timeout=60),
            schedule=Schedule(timeout=1),
            breaker="api",
        )
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(job,)),
            on_event=events,
            breakers=breakers,
            monotonic=clock,
        )
        kit.wait_requests(1)
        clock.advance(1)  # attempt 1 times out and opens the breaker: restart 1 waits on it
        events.reached("call", "waiting")
        clock.advance(10)  # half-open: restart 1 makes the trial call
        kit.wait_requests(2)
        clock.advance(1)  # it times out too: restart 2 would exceed max_restarts 1
        events.reached("call", "gave_up")
        assert tree.wait(10)
        assert kit.count == 2
        node = tree.status()["children"][0]
        assert tree.stop(10)
    assert (node["state"], node["restarts"], node["failures"]) == ("gave_up", 1, 2)
    assert not join_tasks("jv-", 5), "each incarnation a timeout ended is over"


def test_a_trial_call_stopped_by_a_person_gives_its_permit_back(make_tree, events) -> None:
    """A stop is nothing for a breaker to count, but the trial call it cancelled is no longer
    in flight: the next call may be the trial (the breaker stayed half-open and full, and
    every job behind it waited for ever)."""
    clock = ManualClock()
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=10)}, clock)
    with HttpKit(Reply(500), Stall(), default=Reply(200)) as kit:
        job = JobSpec(name="call", work=HttpWork(url=f"{kit.url}/x", timeout=60), breaker="api")
        tree = make_tree(
            SupervisorSpec(children=(job,)), on_event=events, breakers=breakers, monotonic=clock
        )
        events.reached("call", "waiting")
        clock.advance(10)
        kit.wait_requests(2)  # the trial call, held by the server
        tree.stop_child("call")
        assert tree.status()["children"][0]["state"] == "stopped"
        assert breakers["api"].state is BreakerState.HALF_OPEN
        tree.start_child("call")
        events.reached("call", "succeeded")
        assert kit.count == 3
    assert breakers["api"].state is BreakerState.CLOSED
    node = tree.status()["children"][0]
    assert (node["failures"], node["last_exit"]["outcome"]) == (1, "succeeded")


def test_jobs_waiting_on_a_breaker_say_when_they_call_next_and_take_turns_at_the_trial(
    make_tree, events
) -> None:
    """Two periodic jobs and a permanent once job wait on one breaker, every call failing.

    While they wait, each one's next_start_at is the breaker's half-open time, moved on each
    time it reopens (it stayed at the first one, in the past); the trial calls go round, the
    longest waiting first (the once job, asking right at the half-open time, took them all).
    """
    clock = ManualClock()
    epoch = 1_700_000_000.0

    def wall() -> float:
        return epoch + clock()

    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=100, within=1000)
    )
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=1, reset_timeout=10)}, clock)

    def job(name: str, schedule: Schedule) -> JobSpec:
        work = PythonWork(target="jobfuncs:fail", args=(name,))
        return JobSpec(
            name=name, work=work, schedule=schedule, restart=RestartType.PERMANENT, breaker="api"
        )

    spec = SupervisorSpec(
        policy=policy,
        children=(job("a", Schedule(every=1)), job("b", Schedule(every=1)), job("c", Schedule())),
    )
    tree = make_tree(spec, on_event=events, breakers=breakers, monotonic=clock, wall=wall)

    def waiting_until(half_open: float) -> bool:
        """Each job asked and waits to ask again at ``half_open``: a job's next_start_at moves
        only when it asks, where a running periodic job's is a tick it may not have asked at."""
        nodes = tree.status()["children"]
        return all(
            (n["state"], n["next_start_at"]) == ("waiting", epoch + half_open) for n in nodes
        )

    def ticking(*names: str) -> None:
        """The periodic jobs' (new) incarnations armed their first tick, a second from now:
        its actor answers once its on_start ran, which read the clock (in its own thread,
        maybe only after the clock moved on, a tick later than the others waited for). A job
        has no stable reference: its actor itself is asked."""
        asked = []
        for ref in pykka.ActorRegistry.get_by_class(JobActor):
            actor = ref._actor_weakref()
            if actor is not None and actor.path in names:
                ref.ask("armed?", timeout=10)
                asked.append(actor.path)
        assert sorted(asked) == sorted(names), asked

    events.reached("c", "waiting")  # c's first call opened the breaker, from 100 to 110
    ticking("a", "b")
    clock.advance(1)  # the first ticks of a and b find it open
    wait_until(lambda: waiting_until(110), "a, b and c wait for 110")
    for half_open in (110.0, 120.0, 130.0, 140.0):
        trials = len(events.of(AttemptFinished))
        starts = {n["name"]: n["starts"] for n in tree.status()["children"]}
        clock.advance(half_open - clock())  # one of them makes the trial call: it fails
        tried = events.wait_for(lambda _, n=trials: len(events.of(AttemptFinished)) == n + 1)
        by = next(e.path for e in reversed(tried) if isinstance(e, AttemptFinished))

        def asked(h: float = half_open, by: str = by, starts: int = starts[by]) -> bool:
            """The others asked too, and were told when to ask again (after the turn, or at
            the next half-open time); the one that tried was restarted, to wait again."""
            nodes = tree.status()["children"]
            restarted = next(n["starts"] for n in nodes if n["name"] == by) == starts + 1
            return restarted and all((n["next_start_at"] or 0) > epoch + h for n in nodes)

        wait_until(asked, f"every job asked at {half_open}")
        if by != "c":
            ticking(by)  # its first tick asks, and finds the breaker open
        clock.advance(1)  # those told to ask after the turn learn it reopened
        wait_until(
            lambda h=half_open: waiting_until(h + 10), f"a, b and c wait for {half_open + 10}"
        )
    trials_by = [e.path for e in events.of(AttemptFinished)][1:]
    assert trials_by[0] == "c", "c has waited longest: since its call opened the breaker"
    assert sorted(trials_by[:3]) == ["a", "b", "c"], trials_by
    assert trials_by[3] == "c", trials_by
    assert jobfuncs.CALLS == {"a": 1, "b": 1, "c": 3}


def test_jobs_behind_a_breaker_of_a_server_answering_500_each_get_their_trial(
    make_tree, events
) -> None:
    """The trial run: two every-0.2s http jobs and a permanent once http job on one breaker,
    the server always answering 500. Each job makes a trial call in turn (the once job made
    them all, one periodic job never called), and none says it calls next in the past."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0), intensity=Intensity(max_restarts=100, within=1000)
    )
    breakers = build_breakers({"api": BreakerSpec(failure_threshold=3, reset_timeout=0.5)})
    with HttpKit(default=Reply(500)) as kit:

        def job(name: str, schedule: Schedule) -> JobSpec:
            return JobSpec(
                name=name,
                work=HttpWork(url=f"{kit.url}/{name}"),
                schedule=schedule,
                restart=RestartType.PERMANENT,
                breaker="api",
            )

        spec = SupervisorSpec(
            policy=policy,
            children=(
                job("a", Schedule(every=0.2)),
                job("b", Schedule(every=0.2)),
                job("c", Schedule()),
            ),
        )
        tree = make_tree(spec, on_event=events, breakers=breakers)

        def reopened() -> list[float]:
            return [e.at for e in events.of(BreakerChanged) if e.old == "half_open"]

        events.wait_for(lambda _: any(e.new == "open" for e in events.of(BreakerChanged)))
        opened = kit.count
        # Three trials: each job has had one (the longest waiting goes first).
        events.wait_for(lambda _: len(reopened()) >= 3)
        tried = sorted(r.path for r in kit.requests[opened:][:3])
        assert tried == ["/a", "/b", "/c"], [r.path for r in kit.requests]
        last = reopened()[-1]

        def told_after_reopening() -> bool:
            nodes = [n for n in tree.status()["children"] if n["state"] == "waiting"]
            return bool(nodes) and all(n["next_start_at"] > last for n in nodes)

        wait_until(told_after_reopening, "the jobs waiting say when they call next", timeout=5)
        assert tree.stop(10)


def test_unknown_breaker_is_refused(runtime) -> None:
    from supervision import start_tree

    job = JobSpec(name="j", work=PythonWork(target="jobfuncs:ok"), breaker="nope")
    with pytest.raises(SpecError) as refused:
        start_tree(SupervisorSpec(children=(job,)), runtime)
    # What to do, not only what is wrong (embedded-API trial h240).
    assert str(refused.value) == (
        "job j: unknown breaker 'nope' (none are declared): declare it, "
        "start_tree(spec, breakers={name: Breaker(...)}) or a manifest's breakers:"
    )


def test_retry_inside_one_attempt(make_tree, events) -> None:
    retry = RetrySpec(attempts=3, wait=RetryWait(initial=0.001, max=0.002))
    job = JobSpec(
        name="r", work=PythonWork(target="jobfuncs:flaky_then_ok", args=("r", 2)), retry=retry
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events)
    assert tree.wait(10)
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["failures"]) == ("succeeded", 1, 0)
    assert jobfuncs.CALLS["r"] == 3


def test_retries_exhausted_fail_the_attempt_once(make_tree, events) -> None:
    retry = RetrySpec(attempts=2, wait=RetryWait(initial=0.001, max=0.002))
    job = JobSpec(
        name="r", work=PythonWork(target="jobfuncs:flaky_then_ok", args=("r", 5)), retry=retry
    )
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(SupervisorSpec(policy=policy, children=(job,)), on_event=events)
    assert tree.wait(10)
    assert jobfuncs.CALLS["r"] == 2
    assert [e.outcome.value for e in events.of(ChildExited, "r")] == ["failed"]


def test_retry_on_narrows_by_exception_name(make_tree) -> None:
    retry = RetrySpec(attempts=5, wait=RetryWait(initial=0.001, max=0.001), on=("TimeoutError",))
    job = JobSpec(
        name="r", work=PythonWork(target="jobfuncs:flaky_then_ok", args=("r", 5)), retry=retry
    )
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(SupervisorSpec(policy=policy, children=(job,)))
    assert tree.wait(10)
    assert jobfuncs.CALLS["r"] == 1, "ConnectionError is not in on: no retry"


def test_depends_on_starts_after_once_jobs_succeed(make_tree, events) -> None:
    jobfuncs.ORDER.clear()
    children = (
        JobSpec(
            name="report",
            work=PythonWork(target="jobfuncs:record_order", args=("o", "report")),
            depends_on=("extract", "load"),
        ),
        JobSpec(
            name="extract", work=PythonWork(target="jobfuncs:record_order", args=("o", "extract"))
        ),
        JobSpec(
            name="load",
            work=PythonWork(target="jobfuncs:record_order", args=("o", "load")),
            depends_on=("extract",),
        ),
    )
    tree = make_tree(SupervisorSpec(children=children), on_event=events)
    assert tree.wait(10)
    assert jobfuncs.ORDER == ["extract", "load", "report"]
    assert tree.result().ok


def test_a_wait_for_a_dependency_is_said_once(make_tree, events) -> None:
    """It was said again each time a sibling changed state (the trial's ETL said it twice)."""
    said: list[str] = []

    class Said(logbook.Handler):  # type: ignore[misc]
        def emit(self, record: logbook.LogRecord) -> None:
            if "before starting" in record.message:
                said.append(record.message)

    first = python_job("first", "jobfuncs:block", "chain")
    second = JobSpec(name="second", work=PythonWork(target="jobfuncs:ok"), depends_on=("first",))
    third = JobSpec(name="third", work=PythonWork(target="jobfuncs:ok"), depends_on=("second",))
    with Said(level=logbook.INFO, bubble=True).applicationbound():
        tree = make_tree(SupervisorSpec(children=(first, second, third)), on_event=events)
        assert jobfuncs.EVENTS["chain.running"].wait(10)
        jobfuncs.EVENTS["chain.release"].set()
        assert tree.wait(10)
    assert sorted(said) == [
        "second: waiting for first before starting",
        "third: waiting for second before starting",
    ]


def test_dependent_of_a_job_that_gave_up_fails_without_starting(make_tree, events) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    children = (
        python_job("bad", "jobfuncs:fail", "bad"),
        JobSpec(
            name="after",
            work=PythonWork(target="jobfuncs:ok", args=("after",)),
            depends_on=("bad",),
        ),
    )
    tree = make_tree(SupervisorSpec(policy=policy, children=children), on_event=events)
    assert tree.wait(10)
    status = {n["name"]: n for n in tree.status()["children"]}
    assert status["after"]["state"] == "failed"
    assert status["after"]["starts"] == 0
    assert "dependency bad gave_up" in status["after"]["last_exit"]["error"]
    assert jobfuncs.CALLS["after"] == 0
    assert tree.result().failed == ("after", "bad")


def test_a_dependency_on_a_group_waits_for_every_job_below_it(make_tree, events) -> None:
    """As for a job: a service below it running, a once job succeeded, in nested groups too;
    the group merely running is not enough (c ran while g's once job had not finished)."""
    svc = JobSpec(
        name="svc",
        work=PythonWork(target="jobfuncs:block", args=("svc",)),
        schedule=Schedule(service=True),
    )
    inner = SupervisorSpec(name="inner", children=(python_job("y", "jobfuncs:block", "y"),))
    group = SupervisorSpec(name="g", children=(svc, python_job("x", "jobfuncs:block", "x"), inner))
    c = JobSpec(name="c", work=PythonWork(target="jobfuncs:ok", args=("c",)), depends_on=("g",))
    tree = make_tree(SupervisorSpec(children=(c, group)), on_event=events)
    assert jobfuncs.EVENTS["x.running"].wait(10)
    assert jobfuncs.EVENTS["y.running"].wait(10)
    events.reached("g", "running")
    jobfuncs.EVENTS["x.release"].set()
    events.reached("g/x", "succeeded")
    jobfuncs.EVENTS["y.release"].set()
    events.reached("c", "succeeded")
    order = [(e.path, e.new.value) for e in events.of(StateChanged)]
    assert order.index(("c", "starting")) > order.index(("g/inner/y", "succeeded"))
    assert order.index(("c", "starting")) > order.index(("g/x", "succeeded"))
    assert jobfuncs.CALLS["c"] == 1
    assert tree.wait(10), "every finite job settled (svc runs on)"


def test_a_dependant_of_a_group_whose_job_gave_up_fails_without_starting(make_tree, events) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    group = SupervisorSpec(
        name="g",
        policy=policy,
        children=(python_job("ok", "jobfuncs:ok", "ok"), python_job("x", "jobfuncs:fail", "x")),
    )
    c = JobSpec(name="c", work=PythonWork(target="jobfuncs:ok", args=("c",)), depends_on=("g",))
    tree = make_tree(SupervisorSpec(policy=policy, children=(group, c)), on_event=events)
    assert tree.wait(10)
    node = {n["name"]: n for n in tree.status()["children"]}["c"]
    assert (node["state"], node["starts"]) == ("failed", 0)
    assert node["last_exit"]["error"] == "dependency g/x gave_up"
    assert jobfuncs.CALLS["c"] == 0
    with pytest.raises(DependencyDownError, match="it depends on g/x, which gave up"):
        tree.start_child("c")


def test_a_persons_start_of_a_job_whose_dependency_gave_up_is_refused(make_tree, events) -> None:
    """As systemd's Requires= would not run it: refused, saying what to do, and nothing changes."""
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    bad = python_job("bad", "jobfuncs:fail", "bad")
    after = JobSpec(
        name="after", work=PythonWork(target="jobfuncs:ok", args=("after",)), depends_on=("bad",)
    )
    group = SupervisorSpec(name="g", policy=policy, children=(bad, after))
    tree = make_tree(SupervisorSpec(policy=policy, children=(group,)), on_event=events)
    events.reached("g/after", "failed")
    decided = events.of(NotStarted, "g/after")
    assert [e.reason for e in decided] == ["dependency g/bad gave_up"], "an event the journal keeps"
    for verb, action in (("start", tree.start_child), ("restart", tree.restart)):
        with pytest.raises(DependencyDownError) as refused:
            action("g/after")
        assert str(refused.value) == (
            f"cannot {verb} g/after: it depends on g/bad, which gave up; start g/bad first"
        )
        assert (refused.value.path, refused.value.dependency) == ("g/after", "g/bad")
    assert act(tree, "start", "g/after") == {
        "ok": False,
        "code": "dependency_down",
        "error": "cannot start g/after: it depends on g/bad, which gave up; start g/bad first",
    }
    node = {n["name"]: n for n in tree.status()["children"][0]["children"]}["after"]
    assert (node["state"], node["starts"]) == ("failed", 0)
    assert jobfuncs.CALLS["after"] == 0


def test_a_persons_start_waits_for_a_dependency_not_ready_yet_and_refuses_a_stopped_one(
    make_tree, events, logs
) -> None:
    slow = RestartPolicy(backoff=Backoff(initial=60, max=60, jitter=0))
    svc = JobSpec(
        name="svc",
        work=PythonWork(target="jobfuncs:block", args=("svc",)),
        schedule=Schedule(service=True),
        restart=RestartType.PERMANENT,
    )
    client = JobSpec(
        name="client",
        work=PythonWork(target="jobfuncs:block", args=("client",)),
        schedule=Schedule(service=True),
        depends_on=("svc",),
    )
    tree = make_tree(SupervisorSpec(policy=slow, children=(svc, client)), on_event=events)
    events.reached("client", "running")

    def svc_fails() -> None:
        """The service returns: a failure, restarted in 60 s."""
        times = len([s for s in events.states("svc") if s == "backoff"]) + 1
        jobfuncs.EVENTS["svc.release"].set()
        events.reached("svc", "backoff", times=times)
        jobfuncs.EVENTS["svc.release"].clear()

    def client() -> tuple[str, int]:
        node = {n["name"]: n for n in tree.status()["children"]}["client"]
        return node["state"], node["starts"]

    tree.stop_child("client")
    svc_fails()
    tree.start_child("client")  # accepted: it waits, as at boot
    assert client() == ("pending", 1)
    tree.start_child("svc")
    events.reached("client", "running", times=2)
    assert jobfuncs.CALLS["client"] == 2

    # A restart waits too; and a person's stop of a job waiting for its dependency sticks.
    svc_fails()
    tree.restart("client")
    assert client() == ("pending", 2)
    tree.stop_child("client")
    tree.start_child("svc")
    events.reached("svc", "running", times=3)
    assert client() == ("stopped", 2)
    tree.start_child("client")
    events.reached("client", "running", times=3)

    tree.stop_child("svc")
    with pytest.raises(DependencyDownError, match="which is stopped; start svc first"):
        tree.restart("client")
    assert client() == ("running", 3), "refused: it runs on untouched"
    assert not [r.message for r in logs.records if "jobvisor bug" in r.message]


class GateProbe:
    """A readiness probe the test opens by hand."""

    def __init__(self) -> None:
        self.ready = threading.Event()

    def wait_ready(self, cancelled: threading.Event) -> None:
        while not self.ready.wait(0.005):
            if cancelled.is_set():
                raise RuntimeError("cancelled")


class NeverReady:
    def wait_ready(self, cancelled: threading.Event) -> None:
        raise TimeoutError("not ready within 0s")


def test_service_is_started_only_when_ready_and_dependents_wait(make_tree, events) -> None:
    probe = GateProbe()
    svc = JobSpec(
        name="svc",
        work=PythonWork(target="jobfuncs:block", args=("svc",)),
        schedule=Schedule(service=True),
        ready=probe,
    )
    client = JobSpec(
        name="client", work=PythonWork(target="jobfuncs:ok", args=("client",)), depends_on=("svc",)
    )
    tree = make_tree(SupervisorSpec(children=(svc, client)), on_event=events)
    assert jobfuncs.EVENTS["svc.running"].wait(5)
    assert tree.status()["children"][0]["state"] == "starting"
    assert jobfuncs.CALLS["client"] == 0
    probe.ready.set()
    events.reached("client", "succeeded")
    assert tree.status()["children"][0]["state"] == "running"


def test_a_service_that_never_gets_ready_fails(make_tree, events) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    svc = JobSpec(
        name="svc",
        work=PythonWork(target="jobfuncs:block", args=("svc",)),
        schedule=Schedule(service=True),
        ready=NeverReady(),
    )
    tree = make_tree(SupervisorSpec(policy=policy, children=(svc,)), on_event=events)
    events.reached("svc", "gave_up")
    node: dict[str, Any] = tree.status()["children"][0]
    assert "not ready" in node["last_exit"]["error"]


def test_a_retuned_breaker_keeps_its_state_and_counts_to_its_new_threshold() -> None:
    clock = ManualClock()
    breaker = Breaker("api", failure_threshold=5, reset_timeout=30, clock=clock)
    for _ in range(2):
        call = breaker.allow()
        assert call
        breaker.record(call, ok=False)
    breaker.retune(failure_threshold=3, reset_timeout=10, half_open_max_calls=1)
    assert breaker.state is BreakerState.CLOSED  # two failures so far, kept
    call = breaker.allow()
    assert call
    breaker.record(call, ok=False)
    assert breaker.state is BreakerState.OPEN  # the third, by the new threshold
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN  # the new reset_timeout
    with pytest.raises(SpecError, match="failure_threshold"):
        breaker.retune(failure_threshold=0, reset_timeout=10, half_open_max_calls=1)


def test_a_breaker_wait_told_as_a_stop_begins_counts_the_failure_and_refuses_nothing(
    make_tree, events, logs
) -> None:
    """The attempt that opened a breaker ended just before a stop reached its job: the job
    tells ``Waiting`` (with that failure) while its supervisor has it stopping already. The
    failure counts, the stop goes on, and no "refused transition (a jobvisor bug)" is logged.
    """
    breakers = build_breakers({"db": BreakerSpec(failure_threshold=1, reset_timeout=60)})
    job = JobSpec(
        name="a",
        work=PythonWork(target="jobfuncs:deaf", args=("a",)),
        schedule=Schedule(service=True),
        breaker="db",
        grace=30.0,
    )
    tree = make_tree(SupervisorSpec(children=(job,)), on_event=events, breakers=breakers)
    assert jobfuncs.EVENTS["a.running"].wait(10)
    stopper = threading.Thread(target=tree.stop_child, args=("a",), daemon=True)
    stopper.start()
    try:
        events.reached("a", "stopping")
        root = tree._root  # the protocol's own message, as the job's thread sends it
        rec = root._by_name["a"]
        failure = RuntimeError("backend down")
        root.actor_ref.tell(Waiting(rec.key, rec.incarnation, "db", 0.0, error=failure, code=None))
        node = wait_until(lambda: _failed_once(tree), "the failure counted", timeout=10)
        assert node["state"] == "stopping"
        assert "backend down" in node["last_exit"]["error"]
        assert not [r for r in logs.records if "refused transition" in r.message]
        said = [r.message for r in logs.records if "backend down" in r.message]
        assert len(said) == 1, said
        assert "breaker db is open" in said[0]
        assert "waiting" not in said[0], "it is being stopped: it waits for nothing"
    finally:
        jobfuncs.EVENTS["a.release"].set()  # the attempt ends: the stop completes
        stopper.join(10)


def _failed_once(tree: Any) -> dict[str, Any] | None:
    node = tree.status()["children"][0]
    return node if node["failures"] == 1 else None


@pytest.mark.parametrize("replaced", [False, True], ids=["group-from-start", "job-made-a-group"])
def test_a_dependant_waits_on_a_group_a_reload_made_of_a_job_and_starts_with_it(
    make_tree, events, replaced
) -> None:
    """A reload that replaced job G by a group G: the unchanged D depending on it was never
    told of G's jobs (its supervisor watched only groups named at D's start), and stayed
    pending for ever once it waited on G/x (found by review)."""
    from supervision import PythonWork, python_job

    def svc(name: str, *deps: str) -> JobSpec:
        return JobSpec(
            name=name,
            work=PythonWork(target="jobfuncs:block", args=(name,)),
            schedule=Schedule(service=True),
            depends_on=deps,
        )

    group = SupervisorSpec(name="G", children=(python_job("x", "jobfuncs:block", "x"),))
    tree = make_tree(
        SupervisorSpec(children=(svc("G") if replaced else group, svc("D", "G"))),
        on_event=events,
    )
    if replaced:
        events.reached("D", "running", timeout=10)
        tree.remove_child("G")  # what a reload's "replace G" does
        tree.add_child(group)
    else:
        jobfuncs.EVENTS["x.release"].set()  # D starts once x succeeded
        events.reached("D", "running", timeout=10)
        jobfuncs.EVENTS["x.release"].clear()
        tree.stop_child("D")
        tree.stop_child("G")
        tree.start_child("G")
    events.reached("G", "running", timeout=10, times=1 if replaced else 2)
    tree.stop_child("D")
    tree.start_child("D")  # G/x runs on: D waits
    assert {n["name"]: n for n in tree.status()["children"]}["D"]["state"] == "pending"
    jobfuncs.EVENTS["x.release"].set()
    events.reached("G/x", "succeeded", timeout=10, times=1 if replaced else 2)
    events.reached("D", "running", timeout=5, times=2)
