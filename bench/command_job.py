"""A command-job attempt vs ``subprocess.run(["/bin/true"])``.

Ours, direct: ``CommandWork(argv=("/bin/true",)).run(Attempt(...))``. That is
one attempt as the job actor runs it: a new session, registration with the
warden, both output pipes captured and polled, the exit waited for through a
pidfd, then the group's end, the reap and the unregistration.

Ours, end to end (informational): a ``restart: permanent`` once-job running
``/bin/true`` under a root with no backoff, so every attempt is a fresh job
actor incarnation started by the supervisor; timed from ``AttemptFinished``
to ``AttemptFinished``. A tree is started and stopped around each round, untimed.

Floor: ``subprocess.run(["/bin/true"])`` under the threads runtime (no
capture). Under ``--runtime gevent`` the floor is still the threads one,
measured in a child process run under threads, one round at a time between
ours; gevent's own ``subprocess.run`` is shown for reference.

Rounds are interleaved so that drift (CPU frequency, other load) hits both
sides alike; figures are medians of the per-round µs per run (wall clock,
and this process's CPU beside it); the median of the per-round ratios is
shown too.

    python bench/command_job.py [--runtime threads|gevent] [--runs 200] [--rounds 15]
"""

from __future__ import annotations

import sys

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import add_runtime_arg, jv_threads_alive, machine, median, silence_logs, verdict  # noqa: E402

from actors import Attempt  # noqa: E402
from actors._command import CommandWork  # noqa: E402
from supervision import (  # noqa: E402
    AttemptFinished,
    Backoff,
    Intensity,
    JobSpec,
    RestartPolicy,
    RestartType,
    SupervisorSpec,
    start_tree,
)

TARGET = 1.3  # ours at most 1.3x the threads floor, under either runtime
TRUE = "/bin/true"


class Clock:
    """Wall-clock and process-CPU µs per run over one round."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def per_run(self, runs: int) -> tuple[float, float]:
        wall = (time.perf_counter() - self.wall) / runs * 1e6
        return wall, (time.process_time() - self.cpu) / runs * 1e6


def floor_round(runs: int) -> tuple[float, float]:
    """µs per ``subprocess.run([TRUE])`` in this process (wall, cpu)."""
    clock = Clock()
    for _ in range(runs):
        subprocess.run([TRUE], check=True)
    return clock.per_run(runs)


def threads_floor_round(runs: int) -> tuple[float, float]:
    """One floor round measured in a child process run under threads."""
    script = str(Path(__file__).resolve())
    out = subprocess.run(
        [sys.executable, script, "--runtime", "threads", "--floor-round", "--runs", str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def ours_round(runs: int) -> tuple[float, float]:
    """µs per ``CommandWork.run`` of ``TRUE``, a new ``Attempt`` each time (wall, cpu)."""
    work = CommandWork(argv=(TRUE,))
    clock = Clock()
    for number in range(1, runs + 1):
        work.run(Attempt("bench", number, time.time()))
    return clock.per_run(runs)


class Attempts:
    """Counts ``AttemptFinished`` events; ``wait(n)`` returns once ``n`` have come."""

    def __init__(self) -> None:
        self.count = 0
        self.cond = threading.Condition()

    def __call__(self, event: object) -> None:
        if isinstance(event, AttemptFinished):
            with self.cond:
                self.count += 1
                self.cond.notify_all()

    def wait(self, n: int) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= n, timeout=120):
                raise RuntimeError(f"only {self.count} of {n} attempts in 120s")


def end_to_end_round(runs: int, warmup: int) -> tuple[float, float]:
    """µs per attempt of a permanent once-job that the supervisor restarts at once."""
    policy = RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0),
        intensity=Intensity(max_restarts=10**9, within=60),
    )
    job = JobSpec(name="true", work=CommandWork(argv=(TRUE,)), restart=RestartType.PERMANENT)
    attempts = Attempts()
    tree = start_tree(
        SupervisorSpec(name="bench", policy=policy, children=(job,)), RUNTIME, on_event=attempts
    )
    try:
        attempts.wait(warmup)
        with attempts.cond:
            first = attempts.count
        clock = Clock()
        attempts.wait(first + runs)
        result = clock.per_run(runs)
    finally:
        if not tree.stop(timeout=30):
            raise RuntimeError("tree did not stop")
    return result


FLOOR = "subprocess.run, threads"
OURS = "command attempt (CommandWork.run)"
GEVENT_RUN = "subprocess.run, gevent (reference)"
E2E = "end to end (job actor per attempt)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--runs", type=int, default=200, help="runs per round (default 200)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per side (default 15)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up runs per side")
    parser.add_argument("--floor-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_round:  # the child that measures one threads floor round for a gevent run
        floor_round(args.warmup)
        print(*floor_round(args.runs))
        return 0
    silence_logs()

    floor = floor_round if RUNTIME == "threads" else threads_floor_round
    floor_round(args.warmup)
    ours_round(args.warmup)
    names = [FLOOR, OURS] + ([GEVENT_RUN] if RUNTIME == "gevent" else []) + [E2E]
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    pairs: list[float] = []  # ours/floor of each round: drift hits both halves of a pair alike
    for _ in range(args.rounds):
        rounds = {FLOOR: floor(args.runs), OURS: ours_round(args.runs)}
        if RUNTIME == "gevent":
            rounds[GEVENT_RUN] = floor_round(args.runs)
        rounds[E2E] = end_to_end_round(args.runs, args.warmup)
        for name, (w, c) in rounds.items():
            wall[name].append(w)
            cpu[name].append(c)
        pairs.append(rounds[OURS][0] / rounds[FLOOR][0])

    base = median(wall[FLOOR])
    ratio = median(wall[OURS]) / base
    where = " (in a child process under threads)" if RUNTIME == "gevent" else ""
    print(f"command_job, runtime={RUNTIME}, {args.runs} runs of {TRUE} x {args.rounds} rounds")
    print(f"  ({machine()}; floor: {FLOOR}{where})")
    for name in names:
        rounds_text = " ".join(f"{v:.0f}" for v in wall[name])
        print(
            f"  {name:<36} median {median(wall[name]):7.1f} µs/run "
            f"(cpu {median(cpu[name]):6.1f})   rounds: {rounds_text}"
        )
    print(f"  ratio command attempt/threads floor = {ratio:.2f}x ({verdict(ratio, TARGET)})")
    print(f"  median of the per-round ratios = {median(pairs):.2f}x")
    print(f"  ratio end to end/threads floor = {median(wall[E2E]) / base:.2f}x (informational)")
    left = jv_threads_alive()
    if left:
        print(f"  threads left behind: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
