"""A python-job attempt in a thread and in a child process, against a bare call.

The call is ``math.sqrt(4)``: next to nothing, so what is measured is the
attempt's own cost. Three sides, in the same process, rounds alternating:

- bare: ``math.sqrt(4)`` called directly;
- thread: ``PythonWork(target="math:sqrt", args=(4,)).run(Attempt(...))``, one
  attempt as the job actor runs it with ``isolation: thread`` (the target is
  resolved on every attempt, as the job actor does);
- process: the same with ``isolation="process"``: a private directory and two
  files, a new interpreter in a session of its own that imports the target and
  writes the result, the wait for its exit (pidfd, or libev under gevent), the
  reap and the clean-up.

End to end (informational): a ``restart: permanent`` once-job that the
supervisor restarts at once, each attempt in a fresh job actor, timed from one
``AttemptFinished`` to the next, for each isolation.

Figures are medians of the per-round µs per attempt (wall clock; this
process's CPU and its children's CPU beside it). Overhead = median minus the
bare call's median.

    python bench/python_isolation.py [--runtime threads|gevent] [--rounds 9]
                                     [--runs 2000] [--process-runs 20]
"""

from __future__ import annotations

import sys

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from _common import add_runtime_arg, jv_threads_alive, machine, median, silence_logs  # noqa: E402

from actors import Attempt  # noqa: E402
from supervision import (  # noqa: E402
    AttemptFinished,
    Backoff,
    Intensity,
    JobSpec,
    PythonWork,
    RestartPolicy,
    RestartType,
    SupervisorSpec,
    start_tree,
)

TARGET = "math:sqrt"


class Clock:
    """Wall, process-CPU and children-CPU µs per run over one round."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        self.kids = self._children()

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def per_run(self, runs: int) -> tuple[float, float, float]:
        wall = (time.perf_counter() - self.wall) / runs * 1e6
        cpu = (time.process_time() - self.cpu) / runs * 1e6
        return wall, cpu, (self._children() - self.kids) / runs * 1e6


def bare_round(runs: int) -> tuple[float, float, float]:
    clock = Clock()
    for _ in range(runs):
        math.sqrt(4)
    return clock.per_run(runs)


def work_round(isolation: str, runs: int) -> tuple[float, float, float]:
    work = PythonWork(target=TARGET, args=(4,), isolation=isolation)
    clock = Clock()
    for number in range(1, runs + 1):
        work.run(Attempt("bench", number, time.time()))
    return clock.per_run(runs)


def end_to_end_round(isolation: str, runs: int, warmup: int) -> tuple[float, float, float]:
    """µs per attempt of a permanent once-job restarted at once: a fresh job actor each time."""
    work = PythonWork(target=TARGET, args=(4,), isolation=isolation)
    never_give_up = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=10**9)
    )
    finished = itertools.count(1)
    timed: list[Any] = []  # the Clock started after the warm-up, then the figures
    done = threading.Event()

    def on_event(event: object) -> None:  # the supervisor's thread
        if not isinstance(event, AttemptFinished) or done.is_set():
            return
        n = next(finished)
        if n == warmup:
            timed.append(Clock())
        elif n == warmup + runs:
            timed.append(timed[0].per_run(runs))
            done.set()

    job = JobSpec(name="sqrt", work=work, restart=RestartType.PERMANENT)
    tree = start_tree(
        SupervisorSpec(name="bench", policy=never_give_up, children=(job,)),
        RUNTIME,
        on_event=on_event,
    )
    try:
        if not done.wait(120):
            raise RuntimeError(f"not {warmup + runs} attempts in 120s")
    finally:
        if not tree.stop(timeout=30):
            raise RuntimeError("tree did not stop")
    return timed[1]  # type: ignore[no-any-return]


BARE, THREAD, PROCESS = "bare call", "thread attempt", "process attempt"
E2E_THREAD, E2E_PROCESS = "end to end, thread", "end to end, process"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    parser.add_argument("--runs", type=int, default=2000, help="bare/thread runs per round")
    parser.add_argument("--process-runs", type=int, default=20, help="process runs per round")
    args = parser.parse_args()
    silence_logs()

    fast, slow = args.runs, args.process_runs
    bare_round(fast)
    work_round("thread", fast)
    work_round("process", 3)
    names = (BARE, THREAD, PROCESS, E2E_THREAD, E2E_PROCESS)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        results[BARE].append(bare_round(fast))
        results[THREAD].append(work_round("thread", fast))
        results[PROCESS].append(work_round("process", slow))
        results[E2E_THREAD].append(end_to_end_round("thread", fast // 10, 20))
        results[E2E_PROCESS].append(end_to_end_round("process", slow, 3))

    def med(name: str, i: int = 0) -> float:
        return median([r[i] for r in results[name]])

    print(
        f"python_isolation, runtime={RUNTIME}, {args.rounds} rounds; per round: {fast} bare and "
        f"thread runs, {slow} process runs; end to end {fast // 10} thread and {slow} process"
    )
    print(f"  ({machine()}; target {TARGET}(4))")
    for name in names:
        rounds_text = " ".join(f"{r[0]:.1f}" for r in results[name])
        print(
            f"  {name:<22} median {med(name):9.1f} µs/run (cpu {med(name, 1):8.1f}, "
            f"children {med(name, 2):8.1f})   rounds: {rounds_text}"
        )
    bare = med(BARE)
    thread, process = med(THREAD) - bare, med(PROCESS) - bare
    print(
        f"  overhead of an attempt over the bare call: thread {thread:.1f} µs, "
        f"process {process:.1f} µs ({process / thread:.0f}x the thread's)"
    )
    if jv_threads_alive():
        sys.exit(f"  threads left behind: {jv_threads_alive()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
