"""``isolation: process``: each attempt of a python job runs in a child process of its own.

Real trees, real child processes and real signals. A child reports through
a FIFO (``Beacon``): the test learns its pid the moment it runs, and then
watches it through a pidfd (the ``procs`` fixture). The functions the
children run are in ``isolatedfuncs``.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import killkit
import pytest
from test_leaks import children, fds, zombies

from actors import Attempt, Kill, _command, _isolated, _spawn, _waiters
from actors._isolated import PythonError
from supervision import (
    AttemptFinished,
    Backoff,
    ChildExited,
    Intensity,
    JobSpec,
    Outcome,
    PythonWork,
    RestartPolicy,
    RestartType,
    RetrySpec,
    RetryWait,
    Schedule,
    SpecError,
    SupervisorSpec,
    python_job,
)

FAST = RestartPolicy(backoff=Backoff(initial=0.001, max=0.005, jitter=0))
ONCE = RestartPolicy(intensity=Intensity(max_restarts=0))


def tree_of(*jobs: Any, policy: RestartPolicy = FAST) -> SupervisorSpec:
    return SupervisorSpec(policy=policy, children=jobs)


def isolated(name: str, func: str, *args: Any, **kwargs: Any) -> JobSpec:
    return python_job(name, f"isolatedfuncs:{func}", *args, isolation="process", **kwargs)


class Beacon:
    """A FIFO that children write ``PID [PID...]`` lines to; ``next()`` waits for one line.

    The test holds a write end too, so the FIFO never reports a hang-up
    between two children.
    """

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        os.mkfifo(self.path, 0o600)
        self._read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        self._pending = b""

    def next(self, timeout: float = 10.0) -> list[int]:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            assert left > 0, "no child reported in time"
            if poller.poll(int(left * 1000) + 1):
                self._pending += os.read(self._read, 4096)
        line, _, self._pending = self._pending.partition(b"\n")
        return [int(p) for p in line.split()]

    def close(self) -> None:
        os.close(self._read)
        os.close(self._keep)


@pytest.fixture
def beacon(tmp_path: Path) -> Any:
    b = Beacon(tmp_path / "beacon")
    yield b
    b.close()


# -- the spec ------------------------------------------------------------------------------------


def test_isolation_is_thread_by_default_and_checked() -> None:
    assert PythonWork(target="m:f").isolation == "thread"
    assert python_job("j", "m:f", isolation="process").work.isolation == "process"
    with pytest.raises(SpecError, match=r"isolation: expected thread or process, got 'fork'"):
        PythonWork(target="m:f", isolation="fork")
    with pytest.raises(SpecError, match=r"grace: expected a duration >= 0"):
        PythonWork(target="m:f", isolation="process", grace=-1)


# -- a child that ends itself --------------------------------------------------------------------


def test_os_exit_fails_the_attempt_with_its_code_and_the_supervisor_lives_on(
    make_tree, events
) -> None:
    """In a thread, os._exit(7) would end this very test process with 7."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=2)
    )
    tree = make_tree(tree_of(isolated("x", "exit_now", 7), policy=policy), on_event=events)
    assert tree.wait(20)
    attempts = events.of(AttemptFinished, "x")
    assert [(a.outcome, a.code) for a in attempts] == [(Outcome.FAILED, 7)] * 3
    assert "exit code 7" in (attempts[0].error or "")
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["last_exit"]["code"]) == ("gave_up", 3, 7)


def test_a_crash_in_c_code_fails_the_attempt_with_its_signal(make_tree, events) -> None:
    tree = make_tree(tree_of(isolated("seg", "segfault"), policy=ONCE), on_event=events)
    assert tree.wait(20)
    [attempt] = events.of(AttemptFinished, "seg")
    assert (attempt.outcome, attempt.code) == (Outcome.FAILED, -signal.SIGSEGV)
    assert "killed by SIGSEGV" in (attempt.error or "")


@pytest.mark.parametrize(
    "case",
    [
        ("returns", 3, "failed", 3),
        ("returns", 0, "succeeded", 0),
        ("returns", "text", "succeeded", None),
        ("returns", True, "succeeded", None),
        ("sys_exit", 4, "failed", 4),
        ("sys_exit", -1, "failed", 255),  # as a process exits: never a "signal" -1
        ("returns", -2, "failed", 254),
        ("sys_exit", 0, "succeeded", 0),
        ("sys_exit", None, "succeeded", 0),
        ("sys_exit", "bye", "failed", 1),
        ("async_returns", 7, "failed", 7),
        ("async_returns", 0, "succeeded", 0),
        ("exit_now", 0, "succeeded", 0),
    ],
)
def test_a_child_reports_like_a_thread(make_tree, events, runtime, case) -> None:
    """Return values and exits end the attempt alike in both isolations."""
    func, arg, outcome, code = case
    jobs = [python_job(i, f"isolatedfuncs:{func}", arg, isolation=i) for i in ("thread", "process")]
    if func == "exit_now" or (func.startswith("async") and runtime == "gevent"):
        # In a thread os._exit would end this test process; gevent runs no coroutine there.
        jobs = jobs[1:]
    tree = make_tree(tree_of(*jobs, policy=ONCE), on_event=events)
    assert tree.wait(20)
    for job in jobs:
        [attempt] = events.of(AttemptFinished, job.name)
        assert (attempt.outcome.value, attempt.code) == (outcome, code), job.name
    if outcome == "failed" and func != "exit_now":
        errors = {a.error for a in events.of(AttemptFinished)}
        assert len(errors) == 1, errors  # the same message: "... called sys.exit(4)", "returned 3"
        want = "called sys.exit" if func == "sys_exit" else f"returned {arg}"
        assert want in errors.pop()


def test_arguments_that_are_not_plain_values_arrive_as_they_were(make_tree, events) -> None:
    from fractions import Fraction

    jobs = [
        isolated("fraction", "check_type", Fraction(1, 3), "Fraction"),
        isolated("path", "check_type", Path("/x"), "PosixPath"),
        isolated("plain", "check_type", {"a": [1, (2.5, None)]}, "dict"),
    ]
    tree = make_tree(tree_of(*jobs, policy=ONCE), on_event=events)
    assert tree.wait(20)
    assert {e.path: e.outcome for e in events.of(AttemptFinished)} == {
        "fraction": Outcome.SUCCEEDED,
        "path": Outcome.SUCCEEDED,
        "plain": Outcome.SUCCEEDED,
    }


def test_the_child_imports_what_the_parent_can(make_tree, tmp_path, monkeypatch) -> None:
    """A module beside a manifest is on the parent's sys.path: the child finds it too."""
    folder = tmp_path / "manifest_dir"
    folder.mkdir()
    (folder / "isolation_probe_mod.py").write_text("def main():\n    return 0\n")
    monkeypatch.syspath_prepend(str(folder))
    job = python_job("m", "isolation_probe_mod:main", isolation="process")
    tree = make_tree(tree_of(job, policy=ONCE))
    assert tree.wait(20)
    last = tree.status()["children"][0]["last_exit"]
    assert (last["outcome"], last["code"]) == ("succeeded", 0)


def test_an_exception_reaches_the_log_and_the_status_with_its_traceback(make_tree, logs) -> None:
    tree = make_tree(tree_of(isolated("b", "boom", "it broke"), policy=ONCE))
    assert tree.wait(20)
    error = tree.status()["children"][0]["last_exit"]["error"]
    assert error.startswith("ValueError: it broke\nTraceback (most recent call last):")
    assert 'isolatedfuncs.py", line' in error
    assert "in _deeper" in error
    assert "_python_call" not in error  # our own frames are not the user's business
    logged = [r.message for r in logs.records if "attempt 1 failed" in r.message]
    assert logged
    assert "in _deeper" in logged[0]


def test_an_import_error_in_the_child_fails_the_attempt(make_tree) -> None:
    tree = make_tree(tree_of(python_job("m", "no_such_module_xyz:main", isolation="process")))
    assert tree.wait(20)
    error = tree.status()["children"][0]["last_exit"]["error"]
    assert error.startswith("ModuleNotFoundError: No module named 'no_such_module_xyz'")


def test_arguments_that_cannot_reach_a_child_fail_the_attempt_clearly(make_tree) -> None:
    job = python_job("p", "isolatedfuncs:returns", lambda: 1, isolation="process")
    tree = make_tree(tree_of(job, policy=ONCE))
    assert tree.wait(20)
    error = tree.status()["children"][0]["last_exit"]["error"]
    assert "cannot be sent to its child process" in error


def test_output_of_the_child_is_logged_line_by_line(make_tree, logs) -> None:
    tree = make_tree(tree_of(isolated("o", "print_lines", "hello {there}"), policy=ONCE))
    assert tree.wait(20)
    lines = [r.message for r in logs.records if r.channel == "actors.command"]
    assert "o[1] hello {there}" in lines
    assert "o[1] to stderr" in lines


# -- what a failure says, alike in both isolations -----------------------------------------------

BOTH = ("thread", "process")


def both(name: str, func: str, *args: Any, **kwargs: Any) -> list[JobSpec]:
    """The same call as a thread job (``NAME-thread``) and a process job (``NAME-process``)."""
    target = f"isolatedfuncs:{func}"
    return [python_job(f"{name}-{i}", target, *args, isolation=i, **kwargs) for i in BOTH]


@pytest.mark.parametrize("base", ["CustomBase", "KeyboardInterrupt", "GeneratorExit"])
def test_a_base_exception_of_the_job_is_an_attempt_that_failed(
    make_tree, events, logs, base
) -> None:
    """Not "CustomBase ended the actor" with no attempt: its message, its attempt, the policy."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=1)
    )
    tree = make_tree(
        tree_of(*both("b", "raise_base", base, "custom base"), policy=policy), on_event=events
    )
    assert tree.wait(20)
    for isolation in BOTH:
        path = f"b-{isolation}"
        attempts = events.of(AttemptFinished, path)
        assert [(a.attempt, a.outcome) for a in attempts] == [
            (1, Outcome.FAILED),
            (2, Outcome.FAILED),
        ]
        for attempt in attempts:
            assert (attempt.error or "").startswith(f"{base}: custom base"), attempt.error
        node = next(c for c in tree.status()["children"] if c["name"] == path)
        assert (node["state"], node["starts"]) == ("gave_up", 2)
        assert node["last_exit"]["error"].startswith(f"{base}: custom base")
        failed = [r for r in logs.records if r.message.startswith(f"{path}: failed (attempt")]
        assert [r.extra.get("attempt") for r in failed] == [1, 2]
        assert all(f"{base}: custom base" in r.message for r in failed)
    [thread] = {a.error for a in events.of(AttemptFinished, "b-thread")}
    assert thread == f"{base}: custom base"


def _failed_lines(logs: Any, path: str) -> list[str]:
    return [r.message for r in logs.records if r.message.startswith(f"{path}: failed (attempt")]


def test_a_failure_is_logged_with_its_traceback_and_its_cause_in_both_isolations(
    make_tree, logs
) -> None:
    """A thread job's log said only ``RuntimeError: outer``: not where, nor what caused it."""
    tree = make_tree(tree_of(*both("c", "chained"), *both("i", "during_handling"), policy=ONCE))
    assert tree.wait(20)
    for isolation in BOTH:
        [logged] = _failed_lines(logs, f"c-{isolation}")
        head, _, traceback = logged.partition("\n")
        assert head.endswith("RuntimeError: outer (caused by KeyError: 'k')"), head
        assert "The above exception was the direct cause of the following exception" in traceback
        assert 'isolatedfuncs.py", line' in traceback
        assert "in chained" in traceback
        assert traceback.endswith("RuntimeError: outer"), traceback
        # Our own frames are not the user's business.
        assert "_python_call" not in traceback
        assert "_job.py" not in traceback
        [logged] = _failed_lines(logs, f"i-{isolation}")
        assert "During handling of the above exception, another exception occurred" in logged
        assert "in _lookup" in logged
        assert "in during_handling" in logged
    # The status keeps one line for a thread, the head of a child's record: the cause is named.
    errors = {c["name"]: c["last_exit"]["error"] for c in tree.status()["children"]}
    assert errors["c-thread"] == "RuntimeError: outer (caused by KeyError: 'k')"
    assert errors["c-process"].startswith("RuntimeError: outer (caused by KeyError: 'k')\n")
    assert errors["i-thread"] == "RuntimeError: while handling"


def test_an_import_error_says_where_the_import_failed(
    make_tree, logs, tmp_path, monkeypatch
) -> None:
    (tmp_path / "badimport_probe.py").write_text("import os\nraise ImportError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    jobs = [python_job(f"b-{i}", "badimport_probe:main", isolation=i) for i in BOTH]
    tree = make_tree(tree_of(*jobs, policy=ONCE))
    assert tree.wait(20)
    for isolation in BOTH:
        [logged] = _failed_lines(logs, f"b-{isolation}")
        assert 'badimport_probe.py", line 2, in <module>' in logged, logged
        assert logged.endswith("ImportError: nope"), logged


def test_an_exit_of_our_own_making_has_no_traceback(make_tree, logs) -> None:
    """sys.exit(3) and a non-zero int result are exit codes: nothing raised to trace."""
    tree = make_tree(tree_of(*both("s", "sys_exit", 3), *both("r", "returns", 4), policy=ONCE))
    assert tree.wait(20)
    for isolation in BOTH:
        for path in (f"s-{isolation}", f"r-{isolation}"):
            [logged] = _failed_lines(logs, path)
            assert "\n" not in logged, logged


def test_threads_a_job_leaves_running_are_named_in_a_thread_and_waited_for_in_a_child(
    make_tree, events, logs, tmp_path
) -> None:
    """Plain Python waits for a thread at its exit: a child does; a thread job warns of it."""
    written = {i: tmp_path / f"written-{i}" for i in BOTH}
    jobs = [
        python_job(f"t-{i}", "isolatedfuncs:leave_a_thread", str(written[i]), 0.3, isolation=i)
        for i in BOTH
    ]
    tree = make_tree(tree_of(*jobs, policy=ONCE), on_event=events)
    assert tree.wait(20)
    assert {e.path: e.outcome for e in events.of(AttemptFinished)} == {
        "t-thread": Outcome.SUCCEEDED,
        "t-process": Outcome.SUCCEEDED,
    }
    # The child ended once its thread had: what it wrote is there when the attempt is over.
    assert written["process"].read_text() == "written"
    [warned] = [r for r in logs.records if "still running" in r.message]
    assert warned.level_name == "WARNING"
    assert warned.message.startswith("t-thread: attempt 1 ended with 1 thread it started still")
    assert "late-writer" in warned.message
    assert warned.extra["path"] == "t-thread"
    assert not [
        r for r in logs.records if "t-process" in r.message and "still running" in r.message
    ]
    deadline = time.monotonic() + 10
    while not written["thread"].exists():  # it runs on beside us: let it end before the test
        assert time.monotonic() < deadline, "the thread job's thread never wrote"
        time.sleep(0.01)


def test_a_thread_a_job_starts_as_no_daemon_is_warned_of(make_tree, events, logs) -> None:
    # Python's exit waits for it: a run would hang at its end. Warned of, as a daemon one is.
    tree = make_tree(
        tree_of(python_job("nd", "isolatedfuncs:leave_a_non_daemon", 0.5), policy=ONCE),
        on_event=events,
    )
    assert tree.wait(20)
    [warned] = [r for r in logs.records if "still running" in r.message]
    assert "held-exit" in warned.message


def test_a_thread_left_is_warned_of_also_when_another_ended_meanwhile(
    make_tree, events, logs
) -> None:
    # The process has no more threads at the attempt's end than at its start: one of them new.
    # Two end (under gevent the job's join makes a dummy thread for its greenlet: one more).
    import isolatedfuncs

    release = threading.Event()
    for name in ("app-ending", "app-ending-too"):
        other = threading.Thread(target=release.wait, args=(30,), name=name, daemon=True)
        other.start()
        isolatedfuncs.ENDING.append((other, release))
    try:
        tree = make_tree(
            tree_of(python_job("nd", "isolatedfuncs:leave_one_as_another_ends", 0.5), policy=ONCE),
            on_event=events,
        )
        assert tree.wait(20)
    finally:
        release.set()
        isolatedfuncs.ENDING.clear()
    [warned] = [r for r in logs.records if "still running" in r.message]
    assert "held-exit" in warned.message
    assert "app-ending" not in warned.message
    for thread in threading.enumerate():  # the job's, no daemon: ended before the next test
        if thread.name == "held-exit":
            thread.join(10)


@pytest.mark.parametrize("started_by", ["thread", "pool", "during"])
def test_a_thread_the_program_started_before_the_attempt_is_never_blamed_on_the_job(
    make_tree, events, logs, started_by
) -> None:
    """The program's own thread, alive from before the attempt to after it, is not the job's.

    ``j1`` returns only once ``j2`` runs, so the process has one more thread as it ends
    than as it began (``j2``'s): the leftover threads are looked at, and the program's
    must be left out, whoever started it, and one the main thread started meanwhile too.
    """
    import jobfuncs

    release = threading.Event()
    pool = None
    if started_by == "pool":
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="app-worker")
        pool.submit(release.wait, 30)
    elif started_by == "thread":
        threading.Thread(target=release.wait, args=(30,), name="app-runner", daemon=True).start()
    key = f"blame-{started_by}"
    try:
        make_tree(
            tree_of(
                python_job("j1", "jobfuncs:deaf", f"{key}-j1"),
                python_job("j2", "jobfuncs:block", f"{key}-j2"),
                policy=ONCE,
            ),
            on_event=events,
        )
        assert jobfuncs.EVENTS[f"{key}-j2.running"].wait(10)
        if started_by == "during":
            # As ``await asyncio.to_thread(tree.stop)`` does while the job runs: a thread of
            # the program's, no daemon as the main thread is none, which a job's never is.
            threading.Thread(target=release.wait, args=(30,), name="asyncio_0").start()
        jobfuncs.EVENTS[f"{key}-j1.release"].set()
        events.wait_for(
            lambda items: any(isinstance(e, AttemptFinished) and e.path == "j1" for e in items)
        )
        assert [e.outcome for e in events.of(AttemptFinished, "j1")] == [Outcome.SUCCEEDED]
        assert not [r.message for r in logs.records if "still running" in r.message]
    finally:
        release.set()
        if pool is not None:
            pool.shutdown(wait=True)


def test_a_coroutine_function_runs_in_both_isolations_but_not_in_a_gevent_thread(
    make_tree, events, runtime
) -> None:
    """Under gevent two asyncio.run at once failed: "cannot be called from a running event loop"."""
    tree = make_tree(
        tree_of(*both("a", "async_returns", 0), *both("b", "async_returns", 0), policy=ONCE),
        on_event=events,
    )
    assert tree.wait(20)
    ended = {e.path: e for e in events.of(AttemptFinished)}
    for name in ("a", "b"):
        assert ended[f"{name}-process"].outcome is Outcome.SUCCEEDED
        thread = ended[f"{name}-thread"]
        if runtime != "gevent":
            assert thread.outcome is Outcome.SUCCEEDED
            continue
        assert thread.outcome is Outcome.FAILED
        assert thread.error == (
            "TypeError: isolatedfuncs:async_returns is a coroutine function, which jobvisor does "
            "not run in a thread under the gevent runtime (asyncio's event loop and gevent's "
            "would share that thread): use isolation: process, or the threads runtime"
        )


def test_a_very_long_message_is_cut_and_says_how_much(make_tree, events, logs) -> None:
    tree = make_tree(tree_of(*both("h", "huge", 5_000_000), policy=ONCE), on_event=events)
    assert tree.wait(30)
    for isolation in BOTH:
        path = f"h-{isolation}"
        [attempt] = events.of(AttemptFinished, path)
        error = attempt.error or ""
        assert error.startswith("ValueError: " + "x" * 8192 + "... (4,991,808 more characters)")
        assert len(error) < 80_000, len(error)
        node = next(c for c in tree.status()["children"] if c["name"] == path)
        assert node["last_exit"]["error"] == error
        logged = [r.message for r in logs.records if r.message.startswith(f"{path}: failed")]
        assert logged
        assert all(len(m) < 80_000 for m in logged)


def test_a_very_long_sys_exit_argument_is_cut_too(make_tree, events) -> None:
    tree = make_tree(tree_of(*both("s", "sys_exit", "y" * 100_000), policy=ONCE), on_event=events)
    assert tree.wait(30)
    for isolation in BOTH:
        [attempt] = events.of(AttemptFinished, f"s-{isolation}")
        error = attempt.error or ""
        assert error.endswith("y" * 100 + "... (91,810 more characters))"), error[-100:]
        assert len(error) < 9_000


def test_a_very_long_traceback_keeps_its_end(make_tree) -> None:
    job = isolated("d", "deep", 400)
    tree = make_tree(tree_of(job, policy=ONCE))
    assert tree.wait(30)
    error = tree.status()["children"][0]["last_exit"]["error"]
    head, _, traceback = error.partition("\n")
    assert head == "ValueError: at the bottom"
    assert re.match(r"\(([\d,]+) more characters\) \.\.\.", traceback), traceback[:200]
    assert traceback.endswith('raise ValueError("at the bottom")\nValueError: at the bottom')
    assert 64 * 1024 < len(traceback) < 64 * 1024 + 100


@pytest.mark.parametrize("func", ["generator", "async_generator"])
def test_a_generator_function_fails_saying_it_is_never_iterated(make_tree, events, func) -> None:
    tree = make_tree(tree_of(*both("g", func), policy=ONCE), on_event=events)
    assert tree.wait(20)
    for isolation in BOTH:
        [attempt] = events.of(AttemptFinished, f"g-{isolation}")
        assert attempt.outcome is Outcome.FAILED
        assert "generator" in (attempt.error or "")
        assert "never iterates" in (attempt.error or "")
        assert "the body ran" not in (attempt.error or "")


@pytest.mark.parametrize("code", [2**70, -(2**70), 2**63, 2**63 - 1, 2**32 + 3, 2**31, 256, -1])
def test_sys_exit_of_any_int_gives_the_code_the_interpreter_exits_with(
    make_tree, events, code
) -> None:
    real = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code})"], check=False)
    tree = make_tree(tree_of(*both("e", "sys_exit", code), policy=ONCE), on_event=events)
    assert tree.wait(20)
    for isolation in BOTH:
        [attempt] = events.of(AttemptFinished, f"e-{isolation}")
        assert attempt.code == real.returncode, isolation
        want = Outcome.SUCCEEDED if real.returncode == 0 else Outcome.FAILED
        assert attempt.outcome is want


@pytest.mark.parametrize("code", [2**70, 2**64, -(2**70), 256, 3])
def test_an_int_result_is_the_exit_code_sys_exit_with_it_gives(make_tree, events, code) -> None:
    # The result's low byte made 2**70 a success, where sys.exit(2**70) exits 255 (h249).
    real = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code})"], check=False)
    tree = make_tree(tree_of(*both("r", "returns", code), policy=ONCE), on_event=events)
    assert tree.wait(20)
    for isolation in BOTH:
        [attempt] = events.of(AttemptFinished, f"r-{isolation}")
        assert attempt.code == real.returncode, isolation
        want = Outcome.SUCCEEDED if real.returncode == 0 else Outcome.FAILED
        assert attempt.outcome is want


@pytest.mark.parametrize("kwargs", ["x", 5, [("a", 1)]])
def test_kwargs_that_are_not_a_mapping_are_a_spec_error_naming_the_job(kwargs) -> None:
    with pytest.raises(
        SpecError, match=r"^etl: kwargs: expected a mapping of keyword arguments"
    ) as info:
        python_job("etl", "m:f", kwargs=kwargs)
    assert info.value.field == "kwargs"


def test_a_spec_error_of_python_job_names_the_job() -> None:
    with pytest.raises(SpecError, match=r"^etl: isolation: expected thread or process") as info:
        python_job("etl", "m:f", isolation="fork")
    assert (info.value.field, info.value.got) == ("isolation", "fork")


# -- timeouts and stops --------------------------------------------------------------------------


def test_a_gil_holding_call_times_out_and_is_killed(make_tree, events) -> None:
    """In a thread, the regex would hold the GIL for minutes and freeze the supervisor."""
    job = isolated(
        "re", "hold_the_gil", schedule=Schedule(timeout=1), restart=RestartType.TEMPORARY
    )
    started = time.monotonic()
    tree = make_tree(tree_of(job), on_event=events)
    assert tree.wait(10)
    elapsed = time.monotonic() - started
    [exit_] = events.of(ChildExited, "re")
    assert exit_.outcome is Outcome.TIMEOUT
    assert "timed out after 1" in (exit_.error or "")
    assert elapsed < 5, elapsed  # SIGTERM ends it at once: no waiting for the 5s grace


def test_a_blocked_service_is_stopped_within_its_grace(make_tree, events, beacon, procs) -> None:
    job = isolated("svc", "block", beacon.path, schedule=Schedule(service=True), grace=5)
    tree = make_tree(tree_of(job), on_event=events)
    [pid] = beacon.next()
    procs.add(pid)
    events.reached("svc", "running")
    started = time.monotonic()
    tree.stop_child("svc")
    events.reached("svc", "stopped")
    assert time.monotonic() - started < 2.5  # SIGTERM, not the 5s grace
    assert procs.dead(pid, 5)
    assert events.of(ChildExited, "svc")[-1].outcome is Outcome.STOPPED


def test_a_waiting_child_leaves_the_other_jobs_running(make_tree, events, beacon) -> None:
    """Under gevent the wait for the child must not block the hub."""
    blocker = isolated("blocker", "block", beacon.path, schedule=Schedule(service=True))
    ticker = python_job("tick", "isolatedfuncs:returns", 0, schedule=Schedule(every=0.01, times=5))
    tree = make_tree(tree_of(blocker, ticker), on_event=events)
    beacon.next()
    events.reached("tick", "succeeded")
    assert len(events.of(AttemptFinished, "tick")) == 5
    assert tree.status()["children"][0]["state"] == "running"


@pytest.mark.parametrize("how", ["stop", "timeout"])
def test_a_child_ignoring_sigterm_is_sigkilled_after_the_grace(
    make_tree, events, beacon, procs, how
) -> None:
    schedule = Schedule(service=True) if how == "stop" else Schedule(timeout=0.5)
    job = isolated(
        "st", "stubborn", beacon.path, schedule=schedule, grace=0.5, restart=RestartType.TEMPORARY
    )
    tree = make_tree(tree_of(job), on_event=events)
    [pid] = beacon.next()
    procs.add(pid)
    started = time.monotonic()
    if how == "stop":
        events.reached("st", "running")
        tree.stop_child("st")
    assert procs.dead(pid, 10)
    assert time.monotonic() - started >= 0.4  # it outlived SIGTERM until the grace ran out
    if how == "stop":
        events.reached("st", "stopped")
        # The job's grace and the work's end together: killed by the supervisor, or stopped
        # when the child's SIGKILL came first.
        assert events.of(ChildExited, "st")[-1].outcome in (Outcome.KILLED, Outcome.STOPPED)
    else:
        events.reached("st", "failed")
        assert events.of(ChildExited, "st")[-1].outcome is Outcome.TIMEOUT


def test_stopping_the_tree_leaves_no_process_no_zombie_and_no_fd(
    make_tree, events, beacon, procs
) -> None:
    # First use starts what a process keeps (the command warden): not part of the check.
    primer = make_tree(tree_of(isolated("p", "returns", 0)))
    assert primer.wait(20)
    assert primer.stop(20)
    fds0, children0 = fds(), children()

    jobs = [
        isolated(f"g{i}", "with_grandchild", beacon.path, schedule=Schedule(service=True))
        for i in range(2)
    ]
    tree = make_tree(tree_of(*jobs), on_event=events)
    pids = beacon.next() + beacon.next()
    procs.add(*pids)
    assert tree.stop(20)
    for pid in pids:  # the children and the grandchildren they left in their groups
        assert procs.dead(pid, 5), pid
    assert zombies() == []
    assert set(children()) <= set(children0)
    watching = set(procs.fds.values())  # the test's own pidfds
    assert {(fd, to) for fd, to in fds().items() if fd not in watching} <= set(fds0.items())
    assert [e.outcome for e in events.of(ChildExited)] == [Outcome.STOPPED] * 2


def test_restart_cycles_of_an_isolated_job_leave_nothing_behind(make_tree, events) -> None:
    primer = make_tree(tree_of(isolated("p", "returns", 0)))
    assert primer.wait(20)
    assert primer.stop(20)
    fds0, children0 = fds(), children()
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=19)
    )
    tree = make_tree(tree_of(isolated("c", "boom", "again"), policy=policy), on_event=events)
    assert tree.wait(60)
    assert len(events.of(ChildExited, "c")) == 20
    assert tree.stop(20)
    assert zombies() == []
    assert set(children()) <= set(children0)
    assert set(fds().items()) <= set(fds0.items())
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"jobvisor-py-{os.getpid()}-*"))


# -- retry inside the attempt --------------------------------------------------------------------


def test_retry_runs_each_try_in_a_new_child(make_tree, events, logs, tmp_path) -> None:
    counter = tmp_path / "calls"
    retry = RetrySpec(attempts=3, wait=RetryWait(initial=0.001, max=0.001, jitter=0))
    job = JobSpec(
        name="r",
        work=PythonWork(target="isolatedfuncs:flaky", args=(str(counter), 2), isolation="process"),
        retry=retry,
    )
    tree = make_tree(tree_of(job, policy=ONCE), on_event=events)
    assert tree.wait(20)
    [attempt] = events.of(AttemptFinished, "r")
    assert attempt.outcome is Outcome.SUCCEEDED
    assert counter.read_text() == "3"
    retried = [r.message for r in logs.records if "retrying in" in r.message]
    assert len(retried) == 2
    # As a thread's says it: no wrapper class of ours, no traceback (h249).
    assert retried[0].startswith("r: try 1 failed (ConnectionError: call 1 refused); retrying")
    assert "\n" not in retried[0]


def test_retry_on_names_the_exception_classes_of_the_child(make_tree, events, tmp_path) -> None:
    counter = tmp_path / "calls"
    wait = RetryWait(initial=0.001, max=0.001, jitter=0)
    job = JobSpec(
        name="r",
        work=PythonWork(target="isolatedfuncs:flaky", args=(str(counter), 5), isolation="process"),
        retry=RetrySpec(attempts=3, wait=wait, on=("OSError",)),  # ConnectionError's base
    )
    other = JobSpec(
        name="n",
        work=PythonWork(
            target="isolatedfuncs:flaky", args=(str(tmp_path / "n"), 5), isolation="process"
        ),
        retry=RetrySpec(attempts=3, wait=wait, on=("KeyError",)),
    )
    tree = make_tree(tree_of(job, other, policy=ONCE), on_event=events)
    assert tree.wait(20)
    assert counter.read_text() == "3"
    assert (tmp_path / "n").read_text() == "1"


# -- the work on its own -------------------------------------------------------------------------


@pytest.mark.skipif(not killkit.CHECKED, reason="models where CPython 3.11/3.12 checks for a Kill")
def test_a_kill_at_each_point_of_a_try_leaves_no_fd_file_or_process(runtime: str) -> None:
    # Every point of the try's own code (its files, its child's command) where a Kill thrown
    # into the thread can land, one per try: a stop whose grace ran out, at any moment.
    if runtime == "gevent":
        pytest.skip("under gevent a Kill lands only in a cooperative wait")
    work = PythonWork(target="isolatedfuncs:boom", args=("no",), isolation="process")
    with pytest.raises(PythonError):  # the first try imports what every try needs
        work.run(Attempt("w", 1, time.time()))
    boxes = Path(tempfile.gettempdir()).glob
    mine = f"jobvisor-py-{os.getpid()}-*"
    before, kept = fds(), children()  # the command warden stays (its state letter changes)
    files = {_isolated.__file__, _command.__file__, _spawn.__file__, _waiters.__file__}
    runs = 0
    for where, result in killkit.kill_each_point(
        lambda: work.run(Attempt("w", 1, time.time())), files, Kill
    ):
        assert isinstance(result, Kill), f"{where}: {result!r}"
        assert fds() == before, where
        assert list(boxes(mine)) == [], where
        ours = children()  # one look at /proc for both: each is a few ms
        assert [pid for pid, state in ours.items() if state == "Z"] == [], where
        assert set(ours) == set(kept), where
        runs += 1
    assert runs > 100


def test_a_cancel_before_the_child_runs_ends_it_at_once() -> None:
    work = PythonWork(target="isolatedfuncs:hold_the_gil", isolation="process", grace=5)
    attempt = Attempt("w", 1, time.time())
    work.cancel(attempt)
    started = time.monotonic()
    with pytest.raises(Exception, match="SIGTERM"):
        work.run(attempt)
    assert time.monotonic() - started < 3


def test_kill_ends_a_stubborn_child_at_once(beacon, procs) -> None:
    import threading

    work = PythonWork(target="isolatedfuncs:stubborn", args=(beacon.path,), isolation="process")
    attempt = Attempt("w", 1, time.time())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work.run(attempt)
        except Exception as exc:
            errors.append(exc)

    runner = threading.Thread(target=run, name="test-isolated-kill")
    runner.start()
    [pid] = beacon.next()
    procs.add(pid)
    assert work.kill is not None
    work.kill(attempt)
    runner.join(5)
    assert not runner.is_alive()
    assert procs.dead(pid, 1)
    assert [getattr(e, "code", None) for e in errors] == [-signal.SIGKILL]


def test_thread_isolation_has_no_kill() -> None:
    """The job actor reads a ``kill`` as "this work stops itself": a thread cannot."""
    assert PythonWork(target="m:f").kill is None


# -- the manifest --------------------------------------------------------------------------------


def test_the_manifest_sets_isolation_and_the_grace_of_a_python_job() -> None:
    from supervision import load_manifest

    manifest = load_manifest(
        "version: 1\njobs:\n"
        "  - {name: a, python: 'isolatedfuncs:exit_now', isolation: process, stop: {grace: 2s}}\n"
        "  - {name: b, python: 'isolatedfuncs:exit_now'}\n",
        env={},
    )
    a, b = manifest.root.children
    assert (a.work.isolation, a.work.grace) == ("process", 2.0)
    assert b.work.isolation == "thread"


@pytest.mark.parametrize(
    ("job", "where", "says"),
    [
        ("{name: a, python: 'm:f', isolation: fork}", "jobs[0].isolation", "thread, process"),
        ("{name: a, command: ['true'], isolation: process}", "jobs[0].isolation", "python jobs"),
    ],
)
def test_a_bad_isolation_is_a_manifest_error_naming_its_place(
    job: str, where: str, says: str
) -> None:
    from supervision import ManifestError, load_manifest

    with pytest.raises(ManifestError) as caught:
        load_manifest(f"version: 1\njobs:\n  - {job}\n", env={})
    (issue,) = caught.value.issues
    assert (issue.path, issue.line) == (where, 3)
    assert says in issue.message


def test_run_survives_os_exit_and_a_gil_holding_job_of_its_manifest(tmp_path: Path) -> None:
    """The issue's two probes, through a real `jobvisor run`: neither takes jobvisor down."""
    import json
    import subprocess

    from faultkit import CLI, ENV

    (tmp_path / "probes.py").write_text(
        "import os, re\n"
        "def leave():\n    os._exit(7)\n"
        "def spin():\n    re.match(r'(a+)+$', 'a' * 40 + 'b')\n"
    )
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\ndefaults: {restart: temporary, isolation: process}\njobs:\n"
        "  - {name: leave, python: 'probes:leave'}\n"
        "  - {name: spin, python: 'probes:spin', timeout: 1s, stop: {grace: 0.2s}}\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "run", "--json", str(tmp_path / "jobs.yaml")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # failed jobs: 1, not the job's 7
    assert time.monotonic() - started < 30
    nodes = {node["path"]: node for node in json.loads(done.stdout)["children"]}
    assert nodes["leave"]["last_exit"]["code"] == 7
    assert nodes["spin"]["last_exit"]["outcome"] == "timeout"


def test_the_files_of_a_jobvisor_killed_by_sigkill_are_swept(make_tree, events) -> None:
    """A jobvisor SIGKILLed while an isolated attempt ran left its call directory in /tmp for
    ever; the next one to run an isolated attempt removes those of processes that are gone
    (its own, and any process's that still runs, it leaves)."""
    gone = Path(tempfile.gettempdir(), f"jobvisor-py-{dead_pid()}-{os.urandom(8).hex()}")
    alive = Path(tempfile.gettempdir(), f"jobvisor-py-{os.getppid()}-{os.urandom(8).hex()}")
    for where in (gone, alive):
        where.mkdir(mode=0o700)
        (where / "call").write_bytes(b"x")
    try:
        _isolated.SWEPT.clear()  # as in a process that has run no isolated attempt yet
        tree = make_tree(tree_of(isolated("x", "exit_now", 0), policy=ONCE), on_event=events)
        assert tree.wait(20)
        assert not gone.exists()
        assert (alive / "call").exists()
    finally:
        for where in (gone, alive):
            for name in ("call", "result"):
                (where / name).unlink(missing_ok=True)
            if where.exists():
                where.rmdir()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped): no process has it for now."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_a_base_exception_that_ends_a_stopped_thread_job_is_a_stop(make_tree, events) -> None:
    """A stop asked is never a failure, whatever the work raises as it ends."""
    import jobfuncs

    job = python_job("s", "jobfuncs:base_when_stopped", "s", schedule=Schedule(service=True))
    tree = make_tree(tree_of(job), on_event=events)
    assert jobfuncs.EVENTS["s.running"].wait(10)
    assert tree.stop_child("s") is None
    events.wait_for(lambda _: bool(events.of(ChildExited, "s")))
    [exited] = events.of(ChildExited, "s")
    assert exited.outcome is Outcome.STOPPED
    assert tree.status()["children"][0]["state"] == "stopped"
