"""What the job actor around a command's attempt costs its thread, restarting in place.

Two sides, alternating in one process, each for ``--seconds`` after a second of warm-up:

- ``tree``: an embedded tree (``start_tree``) with one permanent command job, backoff 0,
  restarting in place; the CPU of the job's thread (the busiest thread the tree made) and
  of the supervisor's (the next), per restart (``status()["restarts"]``);
- ``bare``: ``CommandWork.run`` of a fresh ``Attempt`` in a loop, in a thread of its own,
  catching the failure: the attempt alone, per run.

CPU is each thread's time on a CPU (``/proc/self/task/TID/schedstat``), with its voluntary
context switches; figures are medians of ``--rounds``. The difference is the job actor's
own share of a restart: the attempt and exit reports, the permit's decision, the tells.
Logging is off (``silence_logs``) and no journal is kept.

    python bench/job_layer.py [--runtime threads] [--command crash|true]
                              [--seconds 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time

from _common import install, machine, silence_logs, thread_cpu
from command_restart import COMMANDS


def _tids() -> set[int]:
    return set(thread_cpu())


def tree_side(argv: tuple[str, ...], seconds: float) -> list[tuple[float, float]]:
    """[(ms, switches) per restart] of the tree's threads, busiest first."""
    from actors import CommandWork  # noqa: PLC0415 - after the runtime is installed
    from supervision import (  # noqa: PLC0415
        Backoff,
        Intensity,
        JobSpec,
        RestartPolicy,
        RestartType,
        SupervisorSpec,
        start_tree,
    )

    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0),
        intensity=Intensity(max_restarts=10**9, within=1),
    )
    spec = SupervisorSpec(
        policy=policy,
        children=(JobSpec(name="c", work=CommandWork(argv=argv), restart=RestartType.PERMANENT),),
    )
    before = _tids()
    tree = start_tree(spec)
    try:
        time.sleep(1.0)
        made = sorted(_tids() - before)
        r0, c0 = tree.status()["children"][0]["restarts"], thread_cpu()
        time.sleep(seconds)
        r1, c1 = tree.status()["children"][0]["restarts"], thread_cpu()
    finally:
        tree.stop()
    n = r1 - r0
    per = [((c1[t][0] - c0[t][0]) / 1e6 / n, (c1[t][1] - c0[t][1]) / n) for t in made]
    return sorted(per, reverse=True)


def bare_side(argv: tuple[str, ...], seconds: float) -> tuple[float, float]:
    """(ms, switches) per run of the attempt alone, looped in a thread."""
    from actors import CommandWork  # noqa: PLC0415
    from actors._attempt import Attempt  # noqa: PLC0415

    work = CommandWork(argv=argv)
    stop, runs = threading.Event(), [0]

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a failing command is the point
                work.run(Attempt("c", 1, time.time()))
            runs[0] += 1

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(1.0)
        tid = thread.native_id
        assert tid is not None
        n0, c0 = runs[0], thread_cpu()[tid]
        time.sleep(seconds)
        n1, c1 = runs[0], thread_cpu()[tid]
    finally:
        stop.set()
        thread.join()
    n = n1 - n0
    return (c1[0] - c0[0]) / 1e6 / n, (c1[1] - c0[1]) / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads",), default="threads")
    parser.add_argument("--command", choices=sorted(COMMANDS), default="crash")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    install(args.runtime)
    # Loaded first: silence_logs disables the loggers of the modules loaded by then, and the
    # supervisor's (its debug and trace lines on every restart) would be left logging.
    import supervision._tree  # noqa: F401, PLC0415

    silence_logs()
    argv = tuple(COMMANDS[args.command])
    print(f"job_layer: {args.command}, {args.rounds} rounds of {args.seconds:g} s; {machine()}")
    job, supervisor, bare = [], [], []
    for number in range(args.rounds):
        sides = ("tree", "bare") if number % 2 == 0 else ("bare", "tree")
        for side in sides:
            if side == "tree":
                threads = tree_side(argv, args.seconds)
                job.append(threads[0])
                supervisor.append(threads[1])
            else:
                bare.append(bare_side(argv, args.seconds))
    for name, got in (("tree: the job's thread", job), ("tree: the supervisor's", supervisor)):
        print(
            f"  {name:<26} cpu {statistics.median(c for c, _ in got):.3f} ms/restart"
            f"  switches {statistics.median(s for _, s in got):.2f}"
            f"   rounds {' '.join(f'{c:.3f}' for c, _ in got)}"
        )
    print(
        f"  {'bare: the attempt alone':<26} cpu {statistics.median(c for c, _ in bare):.3f} ms/run"
        f"      switches {statistics.median(s for _, s in bare):.2f}"
        f"   rounds {' '.join(f'{c:.3f}' for c, _ in bare)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
