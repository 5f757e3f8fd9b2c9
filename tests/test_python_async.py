"""A coroutine function run as a python job: a stop or a timeout cancels its task, as asyncio
code expects (``CancelledError`` at its await, ``finally`` runs, its event loop is closed),
where in a thread it used to run on until killed and abandoned, and a child process
(``isolation: process``) ended at SIGTERM at once."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import asyncfuncs
import pytest
from test_isolation import Beacon
from treekit import tree_of

from actors._python_call import call_target, cancel_coroutine
from actors._runtime import KILL_GRACE, new_event
from supervision import (
    AttemptFinished,
    Intensity,
    Outcome,
    RestartPolicy,
    RestartType,
    Schedule,
    ThreadAbandoned,
    python_job,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import logbook

# How long past its grace and KILL_GRACE a stop may take on a loaded 2-core machine.
SLACK = 3.0
# The stop grace these jobs have (python_job's default): a cancelled job ends well within it.
GRACE = 5.0


@pytest.fixture(autouse=True)
def _threads_only(runtime: str, request: pytest.FixtureRequest) -> None:
    if runtime == "gevent" and "child_log" not in request.fixturenames:
        # Refused there, every attempt (test_jobs.test_coroutine_functions_run_to_completion).
        pytest.skip("a coroutine function is refused in a thread under the gevent runtime")


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    asyncfuncs.reset()
    yield
    asyncfuncs.reset()  # lets a swallowing coroutine go: no thread outlives the test


def _warned_killing(logs: logbook.TestHandler) -> list[str]:
    return [r.message for r in logs.records if "killing it" in r.message]


@pytest.mark.parametrize(
    ("function", "seen"),
    [
        ("wait_long", ["started", "cancelled", "finally"]),
        ("wait_then_return", ["started", "cancelled"]),
    ],
)
def test_a_stop_cancels_the_coroutine_at_its_await_and_ends_well_within_the_grace(
    make_tree, events, logs: logbook.TestHandler, function: str, seen: list[str]
) -> None:
    key = f"stop-{function}"
    job = python_job("co", f"asyncfuncs:{function}", key, schedule=Schedule(service=True))
    tree = make_tree(tree_of(job), on_event=events)
    assert asyncfuncs.RUNNING[key].wait(10)
    started = time.monotonic()
    assert tree.stop(GRACE + KILL_GRACE + SLACK) is True
    took = time.monotonic() - started
    assert took < GRACE / 2, f"the stop took {took:.1f}s: it waited for the grace"
    assert asyncfuncs.SEEN[key] == seen
    assert not _warned_killing(logs)
    assert tree.abandoned == ()
    [attempt] = events.of(AttemptFinished, "co")
    # As a thread job that returns once current_attempt().cancelled is set: stopped, no error.
    assert (attempt.outcome, attempt.error) == (Outcome.STOPPED, None)
    [loop] = asyncfuncs.LOOPS[key]
    assert loop.is_closed()


def test_each_timed_out_attempt_is_cancelled_and_leaves_no_thread_or_loop(
    make_tree, events, logs: logbook.TestHandler
) -> None:
    key = "timeout"
    before = set(threading.enumerate())
    policy = RestartPolicy(intensity=Intensity(max_restarts=2))
    job = python_job("t", "asyncfuncs:wait_long", key, schedule=Schedule(timeout=0.3))
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    assert tree.wait(20)
    assert tree.result().failed == ("t",)
    assert tree.stop(GRACE + KILL_GRACE + SLACK) is True
    left = [t.name for t in threading.enumerate() if t not in before]
    assert left == [], f"threads left behind: {left}"
    attempts = events.of(AttemptFinished, "t")
    assert [a.outcome for a in attempts] == [Outcome.TIMEOUT] * 3
    assert all("timed out after 300ms" in (a.error or "") for a in attempts)
    # Each attempt's own: the next may start (its backoff is ms) before the last's cancel lands.
    assert asyncfuncs.CALLS[key] == [["started", "cancelled", "finally"]] * 3
    loops = asyncfuncs.LOOPS[key]
    assert len(loops) == 3
    assert all(loop.is_closed() for loop in loops)
    assert not _warned_killing(logs)


def test_a_timed_out_attempts_cleanup_ends_before_the_next_attempt_starts(
    make_tree, events, logs: logbook.TestHandler
) -> None:
    """Its exit is reported once the cancelled call has returned, as a command's once its
    process has ended: two loops of one job never run at once."""
    key = "slow-cleanup"
    policy = RestartPolicy(intensity=Intensity(max_restarts=1))
    job = python_job("t", "asyncfuncs:slow_cleanup", key, schedule=Schedule(timeout=0.3))
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    assert tree.wait(20)
    assert tree.result().failed == ("t",)
    assert asyncfuncs.SEEN[key] == ["started", "cleaning", "cleaned"] * 2
    attempts = events.of(AttemptFinished, "t")
    assert [a.outcome for a in attempts] == [Outcome.TIMEOUT] * 2
    assert all("timed out after 300ms" in (a.error or "") for a in attempts)
    assert all(loop.is_closed() for loop in asyncfuncs.LOOPS[key])
    assert not _warned_killing(logs)


def test_a_timed_out_coroutine_stuck_in_its_cleanup_is_restarted_at_its_grace_s_kill(
    make_tree, events
) -> None:
    """Its exit waits for the call no longer than the kill: a swallowed cancel does not hold
    the job's restarts for ever."""
    key = "swallow"
    policy = RestartPolicy(intensity=Intensity(max_restarts=1))
    job = python_job("sw", "asyncfuncs:swallow", key, schedule=Schedule(timeout=0.3), grace=0.3)
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    assert tree.wait(20)
    assert tree.result().failed == ("sw",)
    attempts = events.of(AttemptFinished, "sw")
    assert [a.outcome for a in attempts] == [Outcome.TIMEOUT] * 2
    assert asyncfuncs.SEEN[key] == ["started", "swallowed"] * 2
    asyncfuncs.reset()  # released, their threads end: the fixture's stop sees them go


def test_a_coroutine_that_swallows_its_cancellation_is_killed_and_abandoned_as_before(
    make_tree, events, logs: logbook.TestHandler
) -> None:
    key = "swallow"
    job = python_job("sw", "asyncfuncs:swallow", key, schedule=Schedule(service=True), grace=0.2)
    tree = make_tree(tree_of(job), on_event=events)
    assert asyncfuncs.RUNNING[key].wait(10)
    assert tree.stop(0.2 + KILL_GRACE + SLACK) is False
    events.wait_for(lambda items: any(isinstance(e, ThreadAbandoned) for e in items))
    [abandoned] = events.of(ThreadAbandoned)
    assert abandoned.path == "sw"
    assert tree.abandoned == (abandoned.thread,)
    assert asyncfuncs.SEEN[key] == ["started", "swallowed"]  # cancelled once, not again
    assert _warned_killing(logs)
    [attempt] = events.of(AttemptFinished, "sw")
    assert attempt.outcome == Outcome.KILLED
    # Released, its thread ends (the kill lands as the loop wakes): the fixture's join sees it.
    asyncfuncs.reset()
    # It may have ended already (the loop woke before the release): then there is none to join.
    for thread in [t for t in threading.enumerate() if t.name == abandoned.thread]:
        thread.join(10)
        assert not thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == abandoned.thread]


def test_a_cancelled_error_of_the_coroutines_own_still_fails_the_attempt(make_tree, events) -> None:
    """Only our cancel is a stop: a task it awaited that was cancelled is the job's failure."""
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    job = python_job("own", "asyncfuncs:cancels_itself", "own", restart=RestartType.TRANSIENT)
    tree = make_tree(tree_of(job, policy=policy), on_event=events)
    assert tree.wait(10)
    [attempt] = events.of(AttemptFinished, "own")
    assert attempt.outcome == Outcome.FAILED
    assert "CancelledError" in (attempt.error or "")


def _call_in_thread(key: str, cancelled: Any) -> tuple[threading.Thread, list[Any]]:
    """``call_target`` of ``asyncfuncs:wait_long(key)`` in a thread of its own, and what it
    returned or raised once it ends (the caller joins the thread)."""
    got: list[Any] = []

    def run() -> None:
        try:
            got.append(call_target("asyncfuncs:wait_long", (key,), {}, cancelled))
        except BaseException as exc:
            got.append(exc)

    thread = threading.Thread(target=run, name=f"test-call-{key}", daemon=True)
    thread.start()
    return thread, got


def test_cancel_coroutine_ends_the_call_with_none_once_only() -> None:
    key = "direct"
    cancelled = new_event()
    thread, got = _call_in_thread(key, cancelled)
    assert asyncfuncs.RUNNING[key].wait(10)
    cancelled.set()  # as the job actor does: the event first, then the work's cancel
    cancel_coroutine(cancelled)
    cancel_coroutine(cancelled)  # a stop after a timeout: no second CancelledError
    thread.join(10)
    assert not thread.is_alive()
    assert got == [None]
    assert asyncfuncs.SEEN[key] == ["started", "cancelled", "finally"]
    cancel_coroutine(cancelled)  # the call is over: nothing to cancel, no error


def test_a_call_whose_attempt_was_cancelled_before_it_began_is_cancelled_at_its_first_await() -> (
    None
):
    """The stop came as the attempt was made, before any loop ran: the coroutine still starts
    (as a sync job does, seeing ``cancelled`` set) and is cancelled at its first await."""
    key = "early"
    cancelled = new_event()
    cancelled.set()
    thread, got = _call_in_thread(key, cancelled)
    thread.join(10)
    assert not thread.is_alive()
    assert got == [None]
    assert asyncfuncs.SEEN[key] == ["started", "cancelled", "finally"]


def test_a_call_without_an_event_runs_as_asyncio_run_does() -> None:
    """None: plain ``asyncio.run``, nothing to cancel it (a child passes ``ON_SIGTERM``)."""
    assert call_target("jobfuncs:async_ok", ("plain",), {}) == 0


def test_a_stop_after_a_timeout_does_not_cancel_the_timed_out_coroutine_again(
    make_tree, events, logs: logbook.TestHandler
) -> None:
    """The timeout's cancel began the coroutine's cleanup; the stop that comes while it still
    runs must not throw a second ``CancelledError`` into that cleanup."""
    key = "swallow-timeout"
    job = python_job(
        "sw",
        "asyncfuncs:swallow",
        key,
        schedule=Schedule(timeout=0.3),
        restart=RestartType.TEMPORARY,  # one attempt: SEEN is that attempt's alone
        grace=GRACE,  # the kill does not come before the stop's cancel would
    )
    tree = make_tree(tree_of(job), on_event=events)
    events.wait_for(lambda items: any(isinstance(e, AttemptFinished) for e in items))
    [attempt] = events.of(AttemptFinished, "sw")
    assert attempt.outcome == Outcome.TIMEOUT
    assert asyncfuncs.SWALLOWED[key].wait(10)  # the timeout's cancel landed; it waits on
    # Its loop is idle: a second cancel would land well within the stop's 0.5 s.
    assert tree.stop(0.5) is False
    seen = list(asyncfuncs.SEEN[key])
    asyncfuncs.reset()  # released, its thread ends and the fixture's stop sees the tree end
    assert seen == ["started", "swallowed"]  # cancelled once, by the timeout only


@pytest.fixture
def child_log(tmp_path: Path) -> Iterator[tuple[Path, Beacon]]:
    """The file a child's ``asyncfuncs:wait_long_in_a_child`` writes what happened to it to,
    and the FIFO it gives its pid on (under either runtime: a child runs no gevent)."""
    beacon = Beacon(tmp_path / "beacon")
    yield tmp_path / "seen", beacon
    beacon.close()


@pytest.mark.parametrize("how", ["stop", "timeout"])
def test_in_a_child_process_sigterm_cancels_the_coroutine_as_in_a_thread(
    make_tree, events, procs, child_log: tuple[Path, Beacon], how: str
) -> None:
    """``isolation: process``: the stop's SIGTERM cancels the task (``CancelledError`` at its
    await, ``finally`` runs), where Python's default ended the child at once."""
    log, beacon = child_log
    schedule = Schedule(service=True) if how == "stop" else Schedule(timeout=1.5)
    job = python_job(
        "c",
        "asyncfuncs:wait_long_in_a_child",
        str(log),
        beacon.path,
        schedule=schedule,
        isolation="process",
        restart=RestartType.TEMPORARY,
    )
    tree = make_tree(tree_of(job), on_event=events)
    [pid] = beacon.next()
    procs.add(pid)
    started = time.monotonic()
    if how == "stop":
        assert tree.stop(GRACE + KILL_GRACE + SLACK) is True
    else:
        events.reached("c", "failed")
    took = time.monotonic() - started
    assert procs.dead(pid, 5)
    assert log.read_text().split() == ["started", "cancelled", "finally"]
    [attempt] = events.of(AttemptFinished, "c")
    if how == "stop":
        assert took < GRACE / 2, f"the stop took {took:.1f}s: it waited for the grace"
        assert (attempt.outcome, attempt.error) == (Outcome.STOPPED, None)
    else:
        assert attempt.outcome == Outcome.TIMEOUT
        assert "timed out after 1.5s" in (attempt.error or "")
