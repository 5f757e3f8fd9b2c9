"""Stuck Python work never keeps a stop, a ``with`` block or ``jobvisor run`` waiting (issue 11.1).

A thread cannot be killed in Python: ``Kill`` lands at the next bytecode, so
a thread blocked in a C call, or code that swallows ``BaseException``, runs
on. The contract: such a thread is abandoned ``KILL_GRACE`` after its kill
(reported in the log, journaled), never joined past that, and a second
SIGINT/SIGTERM ends ``run`` at once whatever a job's thread is doing.

Under gevent a greenlet blocked in ``time.sleep`` cooperates and the kill
lands; what stays stuck there is code that swallows the kill, which the
embedded tests use on both runtimes (``stuckfuncs.hold``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jobfuncs
import logbook
import pytest
import stuckfuncs
from faultkit import Jobvisor, wait_until

from actors import PythonWork, Schedule
from actors._runtime import KILL_GRACE
from supervision import (
    ActorSpec,
    JobSpec,
    RestartType,
    SupervisorSpec,
    ThreadAbandoned,
    Tree,
    start_tree,
)
from supervision._history import read_history
from supervision._journal import Journal

# How long past its grace and KILL_GRACE a stop may take on a loaded 2-core machine.
SLACK = 3.0


@pytest.fixture(autouse=True)
def _release_held() -> Iterator[None]:
    # Whatever a test held is let go at its end, so no thread outlives it (no_leftovers).
    yield
    for event in list(stuckfuncs.RELEASE.values()):
        event.set()
    stuckfuncs.RELEASE.clear()
    stuckfuncs.RUNNING.clear()


def _timed(call: Callable[[], Any], bound: float) -> float | None:
    """Seconds ``call`` took in a thread of its own, None if it had not returned after ``bound``."""
    done = threading.Event()
    started = time.monotonic()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, name="test-timed", daemon=True).start()
    if not done.wait(bound):
        return None
    return time.monotonic() - started


def _stuck_actor_tree(key: str) -> SupervisorSpec:
    return SupervisorSpec(
        children=(
            ActorSpec(name="stuck", actor_class=stuckfuncs.StuckOnStop, args=(key,), grace=0.1),
        )
    )


def _one_job(function: str, key: str, **options: Any) -> SupervisorSpec:
    """A tree of one python job ``blk`` calling ``stuckfuncs.FUNCTION(key)``."""
    work = PythonWork(target=f"stuckfuncs:{function}", args=(key,))
    return SupervisorSpec(children=(JobSpec(name="blk", work=work, **options),))


def _abandoned_logged(logs: logbook.TestHandler, path: str) -> bool:
    return any(
        r.level == logbook.WARNING and "abandoned" in r.message and path in r.message
        for r in logs.records
    )


def _stop_and_release(tree: Tree, key: str) -> None:
    """After a failed assertion: let the held code go so the stop can finish."""
    stuckfuncs.RELEASE[key].set()
    tree.stop(20)


@pytest.mark.parametrize("timeout", [None, 0.5], ids=["none", "shorter-than-the-kill-grace"])
def test_a_stop_abandons_an_actor_stuck_in_on_stop_and_reports_it(
    runtime: str, events: Any, logs: logbook.TestHandler, timeout: float | None
) -> None:
    # stop(None) must not wait for the thread past KILL_GRACE. A stop whose own timeout ends
    # sooner than that after the kill (0.5: the 0.1 s grace, the kill, 0.4 s more) leaves the
    # thread running all the same, so that is when it is abandoned and said so.
    key = f"on_stop-{timeout}"
    tree = start_tree(_stuck_actor_tree(key), runtime, on_event=events)
    try:
        assert tree.started(10)
        said: list[bool] = []
        took = _timed(lambda: said.append(tree.stop(timeout)), 0.1 + KILL_GRACE + SLACK)
        assert took is not None, f"stop({timeout}) still waits for a thread stuck in on_stop"
        events.wait_for(lambda items: any(isinstance(e, ThreadAbandoned) for e in items))
        [abandoned] = events.of(ThreadAbandoned)
        assert abandoned.path == "stuck"
        # The root ended, but not every thread of the tree: no "all ended".
        assert said == [False]
        assert tree.ended
        assert tree.abandoned == (abandoned.thread,)
        warning = next(r.message for r in logs.records if "abandoned" in r.message)
        assert "stuck" in warning
        if timeout is not None:  # the time it really had, not the grace it did not
            assert f"{KILL_GRACE}s" not in warning
    finally:
        _stop_and_release(tree, key)


def test_an_ask_an_actor_was_stuck_in_is_answered_when_it_is_killed(runtime: str) -> None:
    # Under threads its asker waited for ever, the tree stopped and the thread abandoned (h244).
    from supervision import ChildKilled

    key = "stuck-ask"
    spec = ActorSpec(name="s", actor_class=stuckfuncs.StuckOnReceive, args=(key,), grace=0.1)
    tree = start_tree(SupervisorSpec(children=(spec,)), runtime)
    try:
        assert tree.started(10)
        answer = tree.ref("s").ask("x", block=False)
        assert stuckfuncs.RUNNING[key].wait(10)
        tree.stop(0.1 + KILL_GRACE + SLACK)
        with pytest.raises(ChildKilled, match=r"^child s was killed while it handled this message"):
            answer.get(timeout=5)
    finally:
        _stop_and_release(tree, key)


def test_stop_after_removing_a_stuck_actor_does_not_wait_for_it(runtime: str) -> None:
    key = "removed"
    tree = start_tree(_stuck_actor_tree(key), runtime)
    try:
        assert tree.started(10)
        tree.remove_child("stuck")  # returns once it was killed after its 0.1 s grace
        # The thread is held until the test lets it go: a stop that waited for it would wait
        # out its whole timeout, 300 s. It ends in about the kill grace; 30 s is a margin no
        # load eats, and a stop that waited even a tenth of its timeout fails.
        said: list[bool] = []
        took = _timed(lambda: said.append(tree.stop(300)), 30)
        assert took is not None, "stop(300) waited for the removed child's stuck thread"
        # It was stuck in on_stop, and no one let it go: the stop gave up on it, and said so.
        assert stuckfuncs.RUNNING[key].is_set()
        assert not stuckfuncs.RELEASE[key].is_set()
        assert said == [False]
        assert tree.ended
        [thread] = tree.abandoned
        assert thread.endswith("stuck"), thread
    finally:
        _stop_and_release(tree, key)


def test_a_with_block_ends_soon_after_its_stuck_actor_is_killed(runtime: str) -> None:
    key = "with"

    def block() -> None:
        with start_tree(_stuck_actor_tree(key), runtime) as tree:
            assert tree.started(10)

    took = _timed(block, 0.1 + KILL_GRACE + SLACK)
    if took is None:
        stuckfuncs.RELEASE[key].set()
    assert took is not None, "leaving the with block waited for the stuck thread"


def test_a_timed_out_python_job_is_abandoned_reported_and_journaled(
    runtime: str, tmp_path: Path, events: Any, logs: logbook.TestHandler
) -> None:
    key = "timeout"
    spec = _one_job(
        "hold", key, schedule=Schedule(timeout=0.1), restart=RestartType.TEMPORARY, grace=0.2
    )
    journal = Journal(tmp_path)
    tree = start_tree(spec, runtime, on_event=events, sink=journal.record)
    try:
        assert tree.wait(10)
        assert tree.result().failed == ("blk",)
        # Reported while the tree still runs, a kill grace after the kill that comes at the end
        # of the stop grace the timeout gives it.
        events.wait_for(lambda items: any(isinstance(e, ThreadAbandoned) for e in items))
        assert _abandoned_logged(logs, "blk")
        took = _timed(lambda: tree.stop(None), SLACK)
        assert took is not None, "stop(None) waited for the abandoned thread"
    finally:
        _stop_and_release(tree, key)
        journal.close()
    rows = read_history(journal.path)
    abandoned = [r for r in rows if r.get("kind") == "abandoned"]
    assert [r["path"] for r in abandoned] == ["blk"]
    assert abandoned[0]["detail"]["thread"].startswith("jv-")
    assert len(events.of(ThreadAbandoned)) == 1  # once, though both the timer and stop saw it


def test_a_stop_that_abandons_nothing_says_true_and_leaves_nothing(runtime: str) -> None:
    key = "released"
    tree = start_tree(_one_job("block_in_c", key, schedule=Schedule(service=True)), runtime)
    try:
        assert stuckfuncs.RUNNING[key].wait(10)
        stuckfuncs.RELEASE[key].set()  # returns on its own: a service that ended, restarted
        assert tree.stop(20) is True
        assert tree.abandoned == ()
    finally:
        _stop_and_release(tree, key)


def _late_stop(key: str, function: str = "stubborn") -> SupervisorSpec:
    """A thread job ``j`` that ignores its stop, whose grace (45 s) outlasts any with block."""
    work = PythonWork(target=f"jobfuncs:{function}", args=(key,))
    return SupervisorSpec(children=(JobSpec(name="j", work=work, grace=45.0),))


def _warned_leaving(logs: logbook.TestHandler) -> list[str]:
    return [
        r.message
        for r in logs.records
        if r.level == logbook.WARNING and "leaving the with block" in r.message
    ]


def test_leaving_a_with_block_kills_what_has_not_stopped_in_time_and_says_so(
    runtime: str, events: Any, logs: logbook.TestHandler
) -> None:
    # The trial's case: a thread job whose grace outlasts the block's wait. The block used to
    # end with the tree half-stopped, its job still stopping, its thread running, unsaid.
    key = "exit-late"
    started = time.monotonic()
    with start_tree(_late_stop(key), runtime, on_event=events) as tree:
        tree.exit_timeout = 0.5
        assert jobfuncs.EVENTS[f"{key}.running"].wait(10)
        started = time.monotonic()
    took = time.monotonic() - started
    assert took < 0.5 + KILL_GRACE + SLACK, f"leaving the block took {took:.1f}s"
    assert tree.ended
    assert tree.abandoned == ()  # a kill reaches a thread in Python code
    assert not [
        t.name for t in threading.enumerate() if t.name.startswith("jv-") and "-j" in t.name
    ]
    assert events.states("j")[-2:] == ["stopping", "stopped"]
    [warned] = _warned_leaving(logs)
    assert "did not stop within 0.5s" in warned
    assert "still running: j (stopping)" in warned
    assert "killing it now" in warned
    assert "tree.stop(timeout)" in warned  # what to do about it


def test_leaving_a_with_block_abandons_a_thread_no_kill_reaches_and_ends_on_time(
    runtime: str, events: Any, logs: logbook.TestHandler
) -> None:
    key = "exit-stuck"
    spec = _one_job("hold", key, grace=45.0)
    started = time.monotonic()
    try:
        with start_tree(spec, runtime, on_event=events) as tree:
            tree.exit_timeout = 0.5
            assert stuckfuncs.RUNNING[key].wait(10)
            started = time.monotonic()
        took = time.monotonic() - started
        assert took < 0.5 + KILL_GRACE + SLACK, f"leaving the block took {took:.1f}s"
        assert tree.ended
        [abandoned] = events.of(ThreadAbandoned)
        assert tree.abandoned == (abandoned.thread,)
        assert _warned_leaving(logs)
        assert _abandoned_logged(logs, "blk")
    finally:
        stuckfuncs.RELEASE[key].set()


def test_a_with_block_that_stops_in_time_says_nothing(
    runtime: str, logs: logbook.TestHandler
) -> None:
    key = "exit-clean"
    with start_tree(_late_stop(key, "block"), runtime) as tree:
        assert jobfuncs.EVENTS[f"{key}.running"].wait(10)
    assert tree.ended
    assert not _warned_leaving(logs)
    assert not [r for r in logs.records if r.level >= logbook.WARNING]


# -- a real jobvisor process ------------------------------------------------------------------------


def _manifest(tmp_path: Path, jobs: str) -> None:
    (tmp_path / "jobs.yaml").write_text(f"version: 1\nstate_dir: state\njobs:\n{jobs}")


def _stuck_service(marker: Path, grace: str) -> str:
    """A service ``svc`` that swallows every kill; it creates ``marker`` once it runs."""
    return f"""  - name: svc
    python: "stuckfuncs:swallow_kills"
    args: ["{marker}"]
    service: true
    stop: {{grace: {grace}}}
"""


def _journal_rows(tmp_path: Path) -> list[dict[str, Any]]:
    return read_history(tmp_path / "state" / "journal.sqlite3", limit=1000)


def test_run_ends_after_a_blocked_python_job_times_out(runtime: str, tmp_path: Path) -> None:
    # The reproduction: the timeout fires, the job fails finally, and run used to
    # hang after "root: shutting down" whatever signals it got. The tree ends at the timeout;
    # its stop waits for the thread only until a kill grace after its kill, due at the end of
    # its stop grace.
    _manifest(
        tmp_path,
        """  - name: blk
    python: "stuckfuncs:sleep_long"
    timeout: 200ms
    restart: temporary
    stop: {grace: 1s}
""",
    )
    jv = Jobvisor(tmp_path, "run", "--runtime", runtime)
    try:
        code = jv.wait(0.2 + 1 + KILL_GRACE + 20)
    finally:
        jv.close()
    assert code == 1, jv.stderr
    assert "blk" in jv.stdout
    abandoned = [r for r in _journal_rows(tmp_path) if r.get("kind") == "abandoned"]
    if runtime == "threads":
        # Blocked in one C call: the kill cannot land, the thread is abandoned.
        assert "abandoned" in jv.stderr
        assert [r["path"] for r in abandoned] == ["blk"]
    else:
        # A greenlet in time.sleep cooperates: the kill lands and nothing is left behind.
        assert not abandoned, jv.stderr


def test_run_ends_after_the_first_signal_kills_a_stuck_service(
    runtime: str, tmp_path: Path
) -> None:
    marker = tmp_path / "running"
    _manifest(tmp_path, _stuck_service(marker, "200ms"))
    jv = Jobvisor(tmp_path, "run", "--runtime", runtime)
    try:
        wait_until(marker.exists, "the service runs", proc=jv.proc)
        jv.proc.send_signal(signal.SIGINT)
        code = jv.wait(0.2 + KILL_GRACE + 20)
    finally:
        jv.close()
    assert code == 0, jv.stderr
    assert "killed" in jv.stdout, jv.stderr
    assert "abandoned" in jv.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_second_signal_ends_run_at_once_whatever_a_thread_does(
    runtime: str, tmp_path: Path, signum: int
) -> None:
    marker, beats = tmp_path / "running", tmp_path / "beats"
    _manifest(
        tmp_path,
        # Endless (only the signals stop the run), and journaled as it goes.
        f"""  - name: first
    python: "faultkit:beat"
    args: ["{beats}"]
    every: 50ms
"""
        + _stuck_service(marker, "60s"),
    )
    jv = Jobvisor(tmp_path, "run", "--runtime", runtime)
    try:
        wait_until(lambda: marker.exists() and beats.exists(), "both jobs run", proc=jv.proc)
        jv.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "svc: stopping" in jv.stderr, "the graceful stop began", proc=jv.proc)
        sent = time.monotonic()
        jv.proc.send_signal(signum)
        code = jv.wait(20)
        took = time.monotonic() - sent
    finally:
        jv.close()
    assert took < SLACK, f"the second signal took {took:.2f}s to end run"
    assert code == 1, jv.stderr  # not a clean stop
    assert "killed" in jv.stdout
    # The journal was flushed before the process ended: every tick that ran has its row (but
    # maybe the one the kill cut short).
    ticks = len(beats.read_text().splitlines())
    rows = [r for r in _journal_rows(tmp_path) if r["path"] == "first" and r.get("outcome")]
    assert ticks - 1 <= len(rows) <= ticks
    assert rows


def test_an_abandoned_row_does_not_hide_a_cooldown_from_a_restarted_daemon(tmp_path: Path) -> None:
    from supervision._events import CooldownStarted
    from supervision._history import FILENAME, open_cooldowns

    journal = Journal(tmp_path)
    now = time.time()
    journal.record(CooldownStarted(path="c", at=now - 2, duration=30.0, cycle=1))
    # The timed-out attempt's thread is abandoned a kill grace after the cooldown began.
    journal.record(ThreadAbandoned(path="c", at=now - 1, thread="jv-t1-c"))
    assert journal.flush()
    journal.close()
    assert list(open_cooldowns(tmp_path / FILENAME, now)) == ["c"]


def test_a_job_blocked_in_one_c_call_is_abandoned(runtime: str, events: Any) -> None:
    if runtime == "gevent":
        pytest.skip(
            "under gevent every wait is cooperative, so the kill lands at once; a real C-level "
            "block there stops the hub itself, which only a child process per attempt can help"
        )
    key = "c_call"
    spec = _one_job("block_in_c", key, schedule=Schedule(service=True), grace=0.1)
    tree = start_tree(spec, runtime, on_event=events)
    try:
        assert stuckfuncs.RUNNING[key].wait(10)
        said: list[bool] = []
        took = _timed(lambda: said.append(tree.stop(None)), 0.1 + KILL_GRACE + SLACK)
        assert took is not None, "stop(None) waited for a thread blocked in one C call"
        assert [e.path for e in events.of(ThreadAbandoned)] == ["blk"]
        assert said == [False]
        assert tree.abandoned == (events.of(ThreadAbandoned)[0].thread,)
        assert tree.stop(None) is False  # asked again: the thread still runs
        stuckfuncs.RELEASE[key].set()
        wait_until(lambda: not tree.abandoned, "the released thread ends")
        assert tree.stop(None) is True  # once it has returned, all of the tree has ended
    finally:
        _stop_and_release(tree, key)


def _blocking_job(marker: Path) -> str:
    """``blk``, blocked in ``os.read`` on an empty pipe: under gevent the hub cannot run at all."""
    return f"""  - name: blk
    python: "stuckfuncs:read_pipe"
    args: ["{marker}"]
    timeout: 1s
    restart: temporary
"""


@pytest.mark.parametrize("mode", ["run", "daemon"])
def test_second_signal_ends_the_process_while_a_job_blocks_in_a_c_call(
    runtime: str, tmp_path: Path, mode: str
) -> None:
    # Under gevent a call that never yields stops the hub: no timeout, no stop can run. The
    # first signal is still heard (a line names the job), the second ends the process.
    marker = tmp_path / "running"
    _manifest(tmp_path, _blocking_job(marker))
    jv = Jobvisor(tmp_path, mode, "--runtime", runtime)
    try:
        wait_until(marker.exists, "the job runs", proc=jv.proc)
        jv.proc.send_signal(signal.SIGTERM)
        if runtime == "gevent":
            wait_until(
                lambda: "blocks gevent's hub" in jv.stderr,
                "the first signal was heard",
                proc=jv.proc,
            )
        else:
            wait_until(lambda: "stopping" in jv.stderr, "the graceful stop began", proc=jv.proc)
        sent = time.monotonic()
        jv.proc.send_signal(signal.SIGTERM)
        code = jv.wait(20)
        took = time.monotonic() - sent
    finally:
        jv.close()
    assert took < SLACK, f"the second signal took {took:.2f}s to end {mode}"
    assert code == 1, jv.stderr  # not a clean stop
    if runtime == "gevent":
        first = next(line for line in jv.stderr.splitlines() if "blocks gevent's hub" in line)
        assert "SIGTERM" in first
        assert "blk" in first, first
        assert "ending the process now" in jv.stderr
    assert "Traceback" not in jv.stderr
