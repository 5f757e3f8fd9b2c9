"""Starting N supervised children vs starting N bare pykka actors.

Ours: ``start_tree`` of one root ``SupervisorSpec`` with N ``ActorSpec``
children, timed until ``tree.started()`` returns (every child has gone
through its first start, in order). Baseline: N ``Idle.start()`` calls with
pykka's defaults (non-daemon threads: what users get), timed until every
actor has run ``on_start`` (so both sides wait for the same thing). Each
round stops everything and joins its threads, untimed, before the next.

    python bench/start.py [--runtime threads|gevent] [--n 2000] [--rounds 3]
    python bench/start.py --n 20000 --rounds 1
"""

from __future__ import annotations

import sys

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import gc  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pykka  # noqa: E402
from _common import add_runtime_arg, jv_threads_alive, machine, median, silence_logs, verdict  # noqa: E402

from supervision import ActorSpec, SupervisorSpec, start_tree  # noqa: E402

TARGET = 1.3  # ours at most 1.3x the baseline's time


class StartCounter:
    """Counts ``on_start`` calls; ``done`` is set once ``expected`` actors have started."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def started(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


class Idle(pykka.ThreadingActor):
    def __init__(self, counter: StartCounter | None = None) -> None:
        super().__init__()
        self.counter = counter

    def on_start(self) -> None:
        if self.counter is not None:
            self.counter.started()

    def on_receive(self, message):
        return message


def bare_round(n: int) -> float:
    counter = StartCounter(n)
    start = time.perf_counter()
    refs = [Idle.start(counter) for _ in range(n)]
    if not counter.done.wait(600):
        raise RuntimeError("bare actors did not start")
    elapsed = time.perf_counter() - start
    futures = [ref.stop(block=False) for ref in refs]
    for future in futures:
        future.get(timeout=60)
    for thread in threading.enumerate():
        if thread.name.startswith("Idle-"):
            thread.join(60)
    return elapsed


def ours_round(n: int) -> float:
    spec = SupervisorSpec(
        name="bench", children=tuple(ActorSpec(name=f"c{i}", actor_class=Idle) for i in range(n))
    )
    start = time.perf_counter()
    tree = start_tree(spec, RUNTIME)
    try:
        if not tree.started(timeout=600):
            raise RuntimeError("tree did not start")
        elapsed = time.perf_counter() - start
    finally:
        if not tree.stop(timeout=120):
            raise RuntimeError("tree did not stop")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--n", type=int, default=2000, help="actors per start (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default 3)")
    args = parser.parse_args()
    silence_logs()

    bare_round(50)  # warm-up: load lazily imported code on both sides
    ours_round(50)
    times: dict[str, list[float]] = {"bare pykka": [], "jobvisor": []}
    sides = (("bare pykka", bare_round), ("jobvisor", ours_round))
    for _ in range(args.rounds):
        # Interleaved so that drift (CPU frequency, other load) hits both sides alike.
        for name, run in sides:
            gc.collect()
            times[name].append(run(args.n))

    base, mine = median(times["bare pykka"]), median(times["jobvisor"])
    ratio = mine / base
    print(f"start, runtime={RUNTIME}, N={args.n} x {args.rounds} rounds")
    print(f"  ({machine()})")
    for name, values in times.items():
        rounds = " ".join(f"{v * 1000:.0f}" for v in values)
        per = median(values) / args.n * 1e6
        print(
            f"  {name:<11} median {median(values) * 1000:8.0f} ms ({per:.0f} us/actor)   "
            f"rounds (ms): {rounds}"
        )
    print(f"  ratio jobvisor/bare = {ratio:.2f}x ({verdict(ratio, TARGET)})")
    left = jv_threads_alive()
    if left:
        print(f"  threads left behind: {left[:5]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
