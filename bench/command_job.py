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
sides alike; figures are medians of the per-round µs per run.

    python bench/command_job.py [--runtime threads|gevent] [--runs 300] [--rounds 9]
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


def floor_round(runs: int) -> float:
    """µs per ``subprocess.run([TRUE])`` in this process."""
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run([TRUE], check=True)
    return (time.perf_counter() - start) / runs * 1e6


def threads_floor_round(runs: int) -> float:
    """One floor round measured in a child process run under threads."""
    script = str(Path(__file__).resolve())
    out = subprocess.run(
        [sys.executable, script, "--runtime", "threads", "--floor-round", "--runs", str(runs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout)


def ours_round(runs: int) -> float:
    """µs per ``CommandWork.run`` of ``TRUE``, a new ``Attempt`` each time."""
    work = CommandWork(argv=(TRUE,))
    start = time.perf_counter()
    for number in range(1, runs + 1):
        work.run(Attempt("bench", number, time.time()))
    return (time.perf_counter() - start) / runs * 1e6


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


def end_to_end_round(runs: int, warmup: int) -> float:
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
        start = time.perf_counter()
        attempts.wait(first + runs)
        elapsed = time.perf_counter() - start
    finally:
        if not tree.stop(timeout=30):
            raise RuntimeError("tree did not stop")
    return elapsed / runs * 1e6


def show(name: str, values: list[float]) -> str:
    rounds = " ".join(f"{v:.0f}" for v in values)
    return f"  {name:<40} median {median(values):7.1f} µs/run   rounds: {rounds}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--runs", type=int, default=300, help="runs per round (default 300)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per side (default 9)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up runs per side")
    parser.add_argument("--floor-round", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_round:  # the child that measures one threads floor round for a gevent run
        floor_round(args.warmup)
        print(floor_round(args.runs))
        return 0
    silence_logs()

    floor_name = "subprocess.run, threads" + (" (child process)" if RUNTIME == "gevent" else "")
    floor = floor_round if RUNTIME == "threads" else threads_floor_round
    floor_round(args.warmup)
    ours_round(args.warmup)
    times: dict[str, list[float]] = {floor_name: [], "command attempt (CommandWork.run)": []}
    if RUNTIME == "gevent":
        times["subprocess.run, gevent (reference)"] = []
    times["end to end (job actor per attempt)"] = []
    for _ in range(args.rounds):
        times[floor_name].append(floor(args.runs))
        times["command attempt (CommandWork.run)"].append(ours_round(args.runs))
        if RUNTIME == "gevent":
            times["subprocess.run, gevent (reference)"].append(floor_round(args.runs))
        times["end to end (job actor per attempt)"].append(end_to_end_round(args.runs, args.warmup))

    base = median(times[floor_name])
    ratio = median(times["command attempt (CommandWork.run)"]) / base
    e2e = median(times["end to end (job actor per attempt)"]) / base
    print(f"command_job, runtime={RUNTIME}, {args.runs} runs of {TRUE} x {args.rounds} rounds")
    print(f"  ({machine()})")
    for name, values in times.items():
        print(show(name, values))
    print(f"  ratio command attempt/threads floor = {ratio:.2f}x ({verdict(ratio, TARGET)})")
    print(f"  ratio end to end/threads floor = {e2e:.2f}x (informational)")
    left = jv_threads_alive()
    if left:
        print(f"  threads left behind: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
