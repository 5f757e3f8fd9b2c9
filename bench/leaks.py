"""Leak check at full size: N crash/restart cycles of one job, then nothing left behind.

One job crashes at once and is restarted at once (backoff 0, an intensity
that never runs out), N times: ``--kind python`` calls ``operator:truediv``
with ``(1, 0)`` (ZeroDivisionError), ``--kind command`` runs ``false``
(exit 1). Cycles are counted from the tree's ``ChildExited`` events.

Every N/10 cycles the job is paused (``Tree.stop_child``, then wait for
``stopped`` and for its thread or greenlet to end), garbage is collected and
one sample is read: threads alive, live greenlets (gevent only), open fds
(``/proc/self/fd``), zombie children (``/proc/*/stat`` with our pid as parent
and state Z), gc-tracked objects, and the resident set
(``/proc/self/statm``); then the job is started again (``Tree.start_child``).
Pausing makes every sample see the same quiescent tree, so the samples
differ only by what the cycles kept.

The baseline is measured in the same run, before the tree starts: a priming
tree of the same spec runs a few cycles and stops first, so that what is
made once per process (the command warden and its pipe, gevent's hub, lazy
imports, logbook's caches) is in the baseline and not counted as a leak.
After the measured tree stops, threads, greenlets, fds and child processes
must equal the baseline, with no zombie among them once the gevent hub has
had a chance to run (``--settle``; see the note the script prints). Memory
must not grow steadily after the warm-up of N/5 cycles: the least-squares
slope of the samples must stay under ``--max-slope`` bytes of RSS per cycle
and under 0.1 gc-tracked objects per cycle.

The RSS limit is 256 bytes per cycle. Measured here, RSS settles for the
first few thousand cycles whatever is freed (thread stacks and per-thread
malloc arenas of the threads runtime find their steady state), which reads
as up to about 130 bytes per cycle over a 1,000-cycle run and under 20 over
10,000; a leaked exception with its traceback, a future, an actor or a
thread's stack is far bigger than 256 bytes. Smaller Python leaks show in
the gc-tracked object count instead. Each pause adds 2 objects for up to the
job's 5 s grace (the stop's kill timer, cancelled, waits in the tree's
scheduler heap until its deadline), that is at most 20/N objects per cycle,
which the limit adds to its 0.1 per cycle.

The restart window (``--within``, default 1 s) is kept short on purpose: a
supervisor remembers the time of every restart inside the window (SPEC §2),
so with the policy's default 60 s window a fast crash loop legitimately keeps
a float and a list slot per restart (32 bytes; the list is compacted once
half of it has left the window). That is bounded by the window, not a leak;
``--within 60`` shows it.

``--tracemalloc`` also prints the 10 source lines whose allocations grew the
most between the first sample after the warm-up and the last one (tracing
itself inflates the RSS figures of that run).

    python bench/leaks.py [--runtime threads|gevent] [--kind python|command] [--cycles N >= 1000]
"""

from __future__ import annotations

import sys

from _common import (
    ROOT,
    add_log_arg,
    add_runtime_arg,
    install,
    machine,
    runtime_from_argv,
    silence_logs,
)

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from actors import live_tasks  # noqa: E402
from supervision import (  # noqa: E402
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
    start_tree,
)

sys.path.insert(0, os.path.join(ROOT, "tests"))  # noqa: PTH118 - the leak test's /proc probes
from prockit import children, fds, rss, zombies  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_CYCLES = {"python": 10_000, "command": 1_000}
PRIMING = 20  # cycles of the priming tree
SAMPLES = 10
MIN_CYCLES = 1000  # fewer, and RSS settling alone can read as a slope over the limit
MAX_SLOPE = 256.0  # RSS bytes per cycle: see the module's docstring for why
MAX_OBJECT_SLOPE = 0.1  # gc-tracked objects per cycle: one leaked object per 10 cycles fails
PAUSE_OBJECTS = 2  # what one pause leaves for up to a grace period (see the docstring)
JOB = "crashy"


# -- probes -------------------------------------------------------------------------------------


def live_greenlets() -> int | None:
    if RUNTIME != "gevent":
        return None
    import greenlet  # noqa: PLC0415 - only gevent's runtime has them

    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead)


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.is_alive())


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading; ``objects`` leaves out the samples this script keeps."""

    cycles: int
    threads: int
    greenlets: int | None
    fds: int
    zombies: int
    objects: int
    rss: int

    @classmethod
    def take(cls, cycles: int) -> Sample:
        gc.collect()
        return cls(
            cycles=cycles,
            threads=len(thread_names()),
            greenlets=live_greenlets(),
            fds=len(fds()),
            zombies=sum(1 for state in children().values() if state == "Z"),
            objects=sum(1 for o in gc.get_objects() if not isinstance(o, Sample)),
            rss=rss(),
        )

    def row(self) -> str:
        greenlets = "-" if self.greenlets is None else str(self.greenlets)
        return (
            f"  {self.cycles:>8} {self.threads:>7} {greenlets:>9} {self.fds:>4} "
            f"{self.zombies:>7} {self.objects:>9} {self.rss / 2**20:>9.2f}"
        )


HEADER = "    cycles threads greenlets  fds zombies gcobjects  RSS(MiB)"


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


# -- the tree -----------------------------------------------------------------------------------


class Cycles:
    """Counts the job's failed exits and follows its state, from the tree's events."""

    def __init__(self) -> None:
        self.failures = 0
        self.state = ""
        self.cond = threading.Condition()

    def __call__(self, event: object) -> None:
        if isinstance(event, ChildExited) and event.outcome.is_failure:
            with self.cond:
                self.failures += 1
                self.cond.notify_all()
        elif isinstance(event, StateChanged) and event.path == JOB:
            with self.cond:
                self.state = event.new.value
                self.cond.notify_all()

    def wait(self, what: str, predicate: Callable[[], bool], timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise RuntimeError(
                    f"{what} not reached in {timeout:g}s "
                    f"({self.failures} cycles, state {self.state or 'none'})"
                )


def spec(kind: str, within: float) -> SupervisorSpec:
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0),
        intensity=Intensity(max_restarts=10**9, within=within),
    )
    job = (
        python_job(JOB, "operator:truediv", 1, 0)
        if kind == "python"
        else JobSpec(name=JOB, work=CommandWork(argv=("false",)))
    )
    return SupervisorSpec(name="leaks", policy=policy, children=(job,))


def run_until(cycles: Cycles, target: int) -> None:
    cycles.wait(f"{target} cycles", lambda: cycles.failures >= target, 120 + 0.05 * target)


def pause(tree: Tree, cycles: Cycles) -> None:
    """Stop the job; wait for its incarnation's thread (or greenlet) to end after reporting it."""
    tree.stop_child(JOB)
    cycles.wait("the paused job's stop", lambda: cycles.state == "stopped", 30)
    for task in live_tasks("jv-"):
        if task.name.endswith(f"-{JOB}"):
            task.join(30)


def stop(tree: Tree) -> None:
    if not tree.stop(timeout=60):
        raise RuntimeError("the tree did not stop within 60s")


def prime(kind: str, within: float) -> None:
    cycles = Cycles()
    tree = start_tree(spec(kind, within), RUNTIME, on_event=cycles)
    try:
        run_until(cycles, PRIMING)
    finally:
        stop(tree)


def measure(
    kind: str, n: int, within: float, *, trace: bool
) -> tuple[list[Sample], list[str], int]:
    """Run ``n`` cycles, sampled every n/10 at a pause; return samples, growth lines, cycles."""
    cycles = Cycles()
    samples: list[Sample] = []
    growth: list[str] = []
    first: tracemalloc.Snapshot | None = None
    warmup = n // 5
    tree = start_tree(spec(kind, within), RUNTIME, on_event=cycles)
    try:
        for k in range(1, SAMPLES + 1):
            run_until(cycles, n * k // SAMPLES)
            pause(tree, cycles)
            samples.append(Sample.take(cycles.failures))
            if trace and samples[-1].cycles >= warmup:
                if first is None:
                    first = tracemalloc.take_snapshot()
                elif k == SAMPLES:
                    diff = tracemalloc.take_snapshot().compare_to(first, "lineno")
                    growth = [str(stat) for stat in diff[:10]]
            tree.start_child(JOB)
        done = cycles.failures
    finally:
        stop(tree)
    return samples, growth, done


def settle(timeout: float) -> tuple[list[int], float]:
    """Wait up to ``timeout`` for our zombies to be reaped; return them and the time it took.

    Under gevent, libev reaps a command's leader when the hub next handles
    SIGCHLD, which may come after ``Tree.stop()`` returned; ``time.sleep``
    yields to the hub (it is patched), so polling here lets that happen.
    """
    start = time.perf_counter()
    seen = zombies()
    while zombies() and time.perf_counter() - start < timeout:
        time.sleep(0.01)
    return seen, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument("--kind", choices=("python", "command"), default="python")
    parser.add_argument(
        "--cycles", type=int, help="crash/restart cycles (default 10000 python, 1000 command)"
    )
    parser.add_argument(
        "--within", type=float, default=1.0, help="restart window in seconds (default 1)"
    )
    parser.add_argument(
        "--max-slope",
        type=float,
        default=MAX_SLOPE,
        help=f"RSS bytes per cycle allowed after the warm-up (default {MAX_SLOPE:g})",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds a zombie left by the stop may take to be reaped (default 2)",
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="print the 10 lines whose memory grew most"
    )
    args = parser.parse_args()
    n = args.cycles or DEFAULT_CYCLES[args.kind]
    if n < MIN_CYCLES:
        parser.error(f"--cycles: expected at least {MIN_CYCLES} (a slope needs them), got {n}")
    if args.within <= 0:
        parser.error(f"--within: expected a duration > 0, got {args.within:g}")
    silence_logs(args.logging)

    prime(args.kind, args.within)
    settle(args.settle)
    base_threads, base_fds, base_children = thread_names(), fds(), children()
    base = Sample.take(0)
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    samples, growth, done = measure(args.kind, n, args.within, trace=args.tracemalloc)
    elapsed = time.perf_counter() - started
    end = Sample.take(done)
    left, took = settle(args.settle)
    after_threads, after_fds, after_children = thread_names(), fds(), children()

    print(
        f"leaks, runtime={RUNTIME}, kind={args.kind}, logging={args.logging}, "
        f"within={args.within:g}s, {done} cycles in {elapsed:.1f}s "
        f"({elapsed / done * 1e6:.0f} µs/cycle)"
    )
    print(f"  ({machine()})")
    print(HEADER)
    print(base.row() + "   baseline (primed, no tree)")
    for sample in samples:
        print(sample.row() + ("" if sample.cycles >= n // 5 else "   warm-up"))
    print(end.row() + "   right after stop")
    if left:
        reaped = "reaped" if not zombies() else "NOT reaped"
        print(f"  note: zombie(s) {left} right after stop, {reaped} {took * 1000:.0f} ms later")

    kept = [s for s in samples if s.cycles >= n // 5]
    rss_slope = slope([(s.cycles, s.rss) for s in kept])
    obj_slope = slope([(s.cycles, s.objects) for s in kept])
    print(
        f"  RSS slope after warm-up: {rss_slope:.1f} bytes/cycle over {len(kept)} samples; "
        f"gc objects: {obj_slope:.3f}/cycle"
    )
    for line in growth:
        print(f"  tracemalloc: {line}")
    problems = []
    if after_threads != base_threads:
        problems.append(f"threads {base_threads} -> {after_threads}")
    if end.greenlets != base.greenlets:
        problems.append(f"live greenlets {base.greenlets} -> {end.greenlets}")
    if after_fds != base_fds:
        extra = {fd: t for fd, t in after_fds.items() if base_fds.get(fd) != t}
        problems.append(f"fds {len(base_fds)} -> {len(after_fds)} (new: {extra})")
    if zombies():
        problems.append(f"zombie children {zombies()} after {args.settle:g}s")
    if set(after_children) != set(base_children):
        problems.append(f"children {base_children} -> {after_children}")
    if rss_slope > args.max_slope:
        problems.append(f"RSS grows {rss_slope:.1f} bytes/cycle (> {args.max_slope:g})")
    max_objects = MAX_OBJECT_SLOPE + PAUSE_OBJECTS * SAMPLES / n
    if obj_slope > max_objects:
        problems.append(f"gc objects grow {obj_slope:.3f}/cycle (> {max_objects:.3g})")
    if problems:
        print(f"  verdict: LEAK: {'; '.join(problems)}")
        return 1
    print(
        f"  verdict: no leak (threads, greenlets, fds and children as before; "
        f"RSS slope <= {args.max_slope:g} B/cycle, objects <= {max_objects:.3g}/cycle)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
