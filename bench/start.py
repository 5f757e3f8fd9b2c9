"""Starting N supervised children vs starting N bare pykka actors.

Ours: ``start_tree`` of one root ``SupervisorSpec`` with N ``ActorSpec``
children, timed until ``tree.started()`` returns (every child has gone
through its first start, in order). Baseline: N ``Idle.start()`` calls with
pykka's defaults (non-daemon threads: what users get), timed until every
actor has run ``on_start`` (so both sides wait for the same thing).

Every round of every side runs in a fresh subprocess of this script
(``--side bare`` / ``--side supervised``), interleaved, so that neither side
pays for the other's leftovers: under gevent the finish callbacks of
thousands of ended non-daemon greenlets run later on the hub, each scanning
``threading._shutdown_locks``, and would land in whichever round runs next.
Inside a side the process warms up (starts and stops 50 actors of its kind)
before the timed start; everything is stopped and joined afterwards, untimed.

    python bench/start.py [--runtime threads|gevent] [--n 2000] [--rounds 5]
    python bench/start.py --n 20000 --rounds 1   # about 2 minutes under threads
"""

from __future__ import annotations

import sys

from _common import (
    add_log_arg,
    add_runtime_arg,
    install,
    jv_threads_alive,
    machine,
    median,
    runtime_from_argv,
    side_in_subprocess,
    silence_logs,
    verdict,
)

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from _actors import Idle, StartCounter  # noqa: E402

from supervision import ActorSpec, SupervisorSpec, start_tree  # noqa: E402

TARGET = 1.3  # ours at most 1.3x the baseline's time


def bare_round(n: int) -> tuple[float, float]:
    counter = StartCounter(n)
    cpu = time.process_time()
    start = time.perf_counter()
    refs = [Idle.start(counter) for _ in range(n)]
    if not counter.done.wait(600):
        raise RuntimeError("bare actors did not start")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    futures = [ref.stop(block=False) for ref in refs]
    for future in futures:
        future.get(timeout=60)
    for thread in threading.enumerate():
        if thread.name.startswith("Idle-"):
            thread.join(60)
    return elapsed, cpu


def ours_round(n: int) -> tuple[float, float]:
    spec = SupervisorSpec(
        name="bench", children=tuple(ActorSpec(name=f"c{i}", actor_class=Idle) for i in range(n))
    )
    cpu = time.process_time()
    start = time.perf_counter()
    tree = start_tree(spec, RUNTIME)
    try:
        if not tree.started(timeout=600):
            raise RuntimeError("tree did not start")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    finally:
        if not tree.stop(timeout=120):
            raise RuntimeError("tree did not stop")
    return elapsed, cpu


def side(kind: str, n: int, logging: str) -> tuple[float, float]:
    silence_logs(logging)
    run = bare_round if kind == "bare" else ours_round
    run(50)  # warm-up: load lazily imported code, warm allocator pools
    time.sleep(0.1)  # under gevent: let the hub run the warm-up's finish callbacks
    elapsed, cpu = run(n)
    left = jv_threads_alive()
    if left:
        raise RuntimeError(f"threads left behind: {left[:5]}")
    return elapsed, cpu


def run_side(kind: str, n: int, logging: str) -> tuple[float, float]:
    result = side_in_subprocess(__file__, RUNTIME, kind, n, logging, timeout=900)
    return float(result["elapsed"]), float(result["cpu"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument("--n", type=int, default=2000, help="actors per start (default 2000)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="fresh processes per side (default 5)"
    )
    parser.add_argument("--side", choices=("bare", "supervised"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side is not None:
        elapsed, cpu = side(args.side, args.n, args.logging)
        print(json.dumps({"elapsed": elapsed, "cpu": cpu}))
        return 0

    times: dict[str, list[float]] = {"bare pykka": [], "jobvisor": []}
    cpu: dict[str, list[float]] = {"bare pykka": [], "jobvisor": []}
    sides = (("bare pykka", "bare"), ("jobvisor", "supervised"))
    for _ in range(args.rounds):
        # Interleaved so that drift (CPU frequency, other load) hits both sides alike.
        for name, kind in sides:
            elapsed, cpu_s = run_side(kind, args.n, args.logging)
            times[name].append(elapsed)
            cpu[name].append(cpu_s)

    base, mine = median(times["bare pykka"]), median(times["jobvisor"])
    ratio = mine / base
    print(
        f"start, runtime={RUNTIME}, logging={args.logging}, N={args.n}, "
        f"{args.rounds} fresh processes per side"
    )
    print(f"  ({machine()})")
    for name, values in times.items():
        rounds = " ".join(f"{v * 1000:.0f}" for v in values)
        per = median(values) / args.n * 1e6
        print(
            f"  {name:<11} median {median(values) * 1000:8.0f} ms ({per:.0f} us/actor, "
            f"process cpu {median(cpu[name]) * 1000:.0f} ms)   rounds (ms): {rounds}"
        )
    cpu_ratio = median(cpu["jobvisor"]) / median(cpu["bare pykka"])
    print(f"  ratio jobvisor/bare = {ratio:.2f}x ({verdict(ratio, TARGET)})")
    print(f"  (process cpu ratio {cpu_ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
