"""Leak checks: hundreds of crash/restart cycles of one job, then nothing left behind.

A job that fails at once is restarted at once (backoff 0, an intensity that
never runs out) N times; cycles are counted from the tree's ``ChildExited``
events. After the tree stops, the process must hold the same threads, live
greenlets, open fds and child processes as before it started, with no zombie
among them; memory must not grow with the cycles.

What a process makes once, on first use, is not a leak: the command warden
(a child process and the write end of its pipe, see ``actors._command``),
gevent's hub and its loop's fds, lazily imported modules. A priming tree of
the same spec runs a few cycles and stops before the baseline is taken, so
all of that is in the baseline, and a leak of anything per tree or per
cycle still shows.

Memory is read at two pauses (``stop_child``, then ``start_child``), after
N/5 cycles and after N, so that both readings see the same quiescent tree.
Three measures, because none alone is both sensitive and steady:

- gc-tracked objects, exact: a leak of one object every 5 cycles fails.
  The only known difference between the pauses is the second pause's kill
  timer, cancelled but left in the scheduler's heap until the job's grace
  has passed (2 objects).
- bytes traced by ``tracemalloc`` (started for the measured tree only):
  every Python allocation, also dicts and strings that gc does not track.
  Allowed: 16 KiB of caches settling plus 128 bytes per cycle. Measured
  here: under 72 bytes per cycle, most of it CPython 3.11's type attribute
  cache keeping the fresh attribute-name string of each python attempt
  (bounded: 4096 entries); a leaked future, event, attempt record or
  exception (256 bytes and more) fails.
- resident set (``/proc/self/statm``), coarse, for what Python does not
  allocate (native buffers, thread stacks, libev watchers). At this size RSS
  moves in allocator steps: a new malloc arena for a new thread, a new
  pymalloc arena, each up to about 1 MiB whatever is freed. Allowed: 1 MiB
  plus 4 KiB per cycle, so a leaked thread stack, pipe buffer or actor still
  fails, while the settling measured here (under 1 KiB per cycle over these
  few hundred cycles; see ``bench/leaks.py`` for the full-size run) never does.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import tracemalloc
from collections import Counter
from typing import Any

import jobfuncs
import logbook
import pytest
from prockit import children, fds, rss, zombies

from actors import live_tasks
from supervision import (
    Backoff,
    ChildExited,
    CommandWork,
    Intensity,
    JobSpec,
    RestartPolicy,
    StateChanged,
    SupervisorSpec,
    Tree,
    python_job,
)

JOB = "crashy"
CYCLES = {"python": 500, "command": 100}
PRIMING = 10
# Restart at once, never give up; the wide window keeps one float per restart (bounded).
POLICY = RestartPolicy(
    backoff=Backoff(initial=0, max=0, jitter=0),
    intensity=Intensity(max_restarts=10**9, within=3600),
)
RSS_STEP = 1 << 20  # one allocator step (see the module's docstring)
RSS_PER_CYCLE = 4096
PAUSE_OBJECTS = 2  # the second pause's cancelled kill timer and its heap entry
TRACED_SLACK = 16 << 10
TRACED_PER_CYCLE = 128


def spec(kind: str, key: str) -> SupervisorSpec:
    job = (
        python_job(JOB, "jobfuncs:fail", key)
        if kind == "python"
        else JobSpec(name=JOB, work=CommandWork(argv=("false",)))
    )
    return SupervisorSpec(name="leaks", policy=POLICY, children=(job,))


class Cycles:
    """Counts the job's failed exits (by exit code) and follows its state; keeps no event."""

    def __init__(self) -> None:
        self.codes: Counter[int | None] = Counter()
        self.state = ""
        self._cond = threading.Condition()

    @property
    def failures(self) -> int:
        return self.codes.total()

    def __call__(self, event: Any) -> None:
        with self._cond:
            if isinstance(event, ChildExited) and event.outcome.is_failure:
                self.codes[event.code] += 1
            elif isinstance(event, StateChanged) and event.path == JOB:
                self.state = event.new.value
            else:
                return
            self._cond.notify_all()

    def wait_failures(self, n: int, timeout: float = 30.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.failures >= n, timeout)
            assert ok, f"{self.failures} of {n} cycles in {timeout}s (state {self.state!r})"

    def wait_state(self, state: str, timeout: float = 10.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.state == state, timeout)
            assert ok, f"state {self.state!r}, expected {state!r}"


# -- what the process holds ----------------------------------------------------------------------


def threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def live_greenlets(runtime: str) -> int:
    if runtime != "gevent":
        return 0
    import greenlet

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)


def heap() -> tuple[int, int, int]:
    """(gc-tracked objects, bytes traced, resident bytes) after a full collection."""
    gc.collect()
    return len(gc.get_objects()), tracemalloc.get_traced_memory()[0], rss()


def pause(tree: Tree, cycles: Cycles) -> None:
    """Stop the job and wait until its incarnation's thread (or greenlet) has ended too.

    The exit is reported from that thread, which then unwinds; reading the
    heap before it is gone would count its frames.
    """
    tree.stop_child(JOB)
    cycles.wait_state("stopped")
    for task in job_tasks():
        task.join(10)
    assert job_tasks() == []


def job_tasks() -> list[Any]:
    return [task for task in live_tasks("jv-") if task.name.endswith(f"-{JOB}")]


# -- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["python", "command"])
def test_crash_restart_cycles_leave_nothing_behind(kind, runtime, make_tree) -> None:
    n = CYCLES[kind]
    # Records go nowhere: the `logs` fixture's handler would keep every one of them.
    with logbook.NullHandler().applicationbound():
        primer = Cycles()
        tree = make_tree(spec(kind, "leaks.prime"), on_event=primer)
        primer.wait_failures(PRIMING)
        assert tree.stop(20)
        assert zombies() == []
        threads0, greenlets0 = threads(), live_greenlets(runtime)
        fds0, children0 = fds(), children()

        cycles = Cycles()
        tracing = tracemalloc.is_tracing()  # left as found: `python -X tracemalloc` traces all
        if not tracing:
            tracemalloc.start()
        try:
            tree = make_tree(spec(kind, "leaks"), on_event=cycles)
            marks = []
            for target in (n // 5, n):
                cycles.wait_failures(target)
                pause(tree, cycles)
                marks.append((cycles.failures, *heap()))
                tree.start_child(JOB)
            assert tree.stop(20)
        finally:
            if not tracing:
                tracemalloc.stop()

    # Nothing new may be left; what earlier tests of the same process left may have ended
    # meanwhile (a socket their garbage held, closed by a collection), so "at most as before".
    assert threads() <= threads0
    assert live_greenlets(runtime) <= greenlets0
    assert set(fds().items()) <= set(fds0.items())
    assert zombies() == []
    with contextlib.suppress(ChildProcessError):  # raised when we have no child at all
        # The kernel's view, and without reaping what is not ours to reap (WNOWAIT): gevent's
        # waitpid(-1) also hands out statuses it keeps for children long reaped.
        assert os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    assert set(children()) <= set(children0)  # the same warden, if any

    (c0, objects0, traced0, rss0), (c1, objects1, traced1, rss1) = marks
    done = c1 - c0
    assert objects1 - objects0 <= PAUSE_OBJECTS + done // 5, (objects0, objects1, done)
    assert traced1 - traced0 <= TRACED_SLACK + TRACED_PER_CYCLE * done, (traced0, traced1, done)
    assert rss1 - rss0 <= RSS_STEP + RSS_PER_CYCLE * done, (rss0, rss1, done)

    # The cycles were the job's own failures, every one of them.
    if kind == "python":
        assert jobfuncs.CALLS["leaks"] >= cycles.failures >= n
        assert set(cycles.codes) == {None}
    else:
        assert set(cycles.codes) == {1}
