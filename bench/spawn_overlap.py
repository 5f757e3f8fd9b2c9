"""Does a just-started child run beside its parent's work, or after it?

A restart's bookkeeping (the supervisor's turn, the old incarnation's end, the
new thread's start) could be moved to after the new command's spawn, if the
child then ran on the other CPU meanwhile. This measures whether it does, on
the machine at hand: the parent spawns ``/bin/true`` (``os.posix_spawn``),
then stays busy in Python for ``B`` µs, then waits for the child's exit on a
pidfd. The figure is the time from the spawn's return to the exit seen, as a
median over ``--runs`` children; each busy time's extra over ``B = 0``, divided
by ``B``, is how much of the parent's work the child waited for (0: none, it
ran beside it; 1: all of it). Sides alternate per round. ``pinned``: the child
is moved to another CPU than the parent's (``sched_setaffinity``) right after
its spawn.

    python bench/spawn_overlap.py [--runs 1500] [--rounds 3] [--busy 0,100,200,400]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import sys
import time

from _common import machine

TRUE = "/bin/true"


def child_time(busy_us: float, *, pinned_to: int | None, runs: int) -> float:
    """Median µs from the spawn's return to the child's exit seen, with ``busy_us`` of work."""
    times = []
    env = dict(os.environ)
    for _ in range(runs):
        pid = os.posix_spawn(TRUE, [TRUE], env)
        spawned = time.perf_counter()
        if pinned_to is not None:
            os.sched_setaffinity(pid, {pinned_to})
        pidfd = os.pidfd_open(pid)
        try:
            until = spawned + busy_us / 1e6
            while time.perf_counter() < until:
                pass
            select.select([pidfd], [], [])
            times.append((time.perf_counter() - spawned) * 1e6)
        finally:
            os.close(pidfd)
            os.waitpid(pid, 0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1500, help="children per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--busy", default="0,100,200,400", help="parent's busy µs, comma-separated")
    args = parser.parse_args()
    busy = [float(b) for b in args.busy.split(",")]
    if 0.0 not in busy:
        parser.error("--busy must include 0 (the reference)")
    cpus = sorted(os.sched_getaffinity(0))
    sides: list[tuple[str, float, int | None]] = [("free", b, None) for b in busy]
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})  # the parent on one CPU, so "another" is known
        sides += [("pinned", b, cpus[1]) for b in busy]
    print(f"spawn_overlap: {args.rounds} rounds of {args.runs} children; {machine()}")
    results: dict[tuple[str, float], list[float]] = {(s, b): [] for s, b, _ in sides}
    for n in range(args.rounds):
        order = sides[n % len(sides) :] + sides[: n % len(sides)]
        for name, b, cpu in order:
            results[(name, b)].append(child_time(b, pinned_to=cpu, runs=args.runs))
    for name in dict.fromkeys(s for s, _, _ in sides):
        base = statistics.median(results[(name, 0.0)])
        print(f"  child on {'another CPU' if name == 'pinned' else 'any CPU'}:")
        for b in busy:
            value = statistics.median(results[(name, b)])
            share = "" if b == 0 else f"   waited for {(value - base) / b:.2f} of it"
            print(f"    parent busy {b:5.0f} us: spawn to exit {value:7.1f} us{share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
