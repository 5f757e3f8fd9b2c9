"""Memory per idle supervised child vs per idle bare pykka actor (resident set size).

Each side runs in a fresh subprocess of this script (``--side bare`` /
``--side supervised``) so the two never share a heap. A side imports
everything, warms up (starts and stops a few actors of its own kind), reads
``VmRSS`` from ``/proc/self/status``, starts ``--n`` idle actors and waits
until every one has run ``on_start``, collects garbage, reads ``VmRSS``
again and reports the difference divided by ``--n``. tracemalloc is never
enabled (it would inflate both sides); the figures are RSS only.

Ours: one root ``SupervisorSpec`` with N ``ActorSpec`` children, after
``tree.started()``. Baseline: N ``Idle.start()`` with pykka's defaults, after
every ``on_start`` ran. The parent prints both and the ratio.

    python bench/memory.py [--runtime threads|gevent] [--n 5000] [--repeat 3]
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
import gc  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pykka  # noqa: E402
from _actors import Idle, StartCounter  # noqa: E402

from supervision import ActorSpec, SupervisorSpec, start_tree  # noqa: E402

TARGET = 1.3  # ours at most 1.3x the baseline's bytes per actor
WARMUP = 20


def rss_bytes() -> int:
    with Path("/proc/self/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def bare_start(n: int) -> list[pykka.ActorRef]:
    counter = StartCounter(n)
    refs = [Idle.start(counter) for _ in range(n)]
    if not counter.done.wait(120):
        raise RuntimeError("bare actors did not start")
    return refs


def bare_stop(refs: list[pykka.ActorRef]) -> None:
    futures = [ref.stop(block=False) for ref in refs]
    for future in futures:
        future.get(timeout=60)
    for thread in threading.enumerate():
        if thread.name.startswith("Idle-"):
            thread.join(60)


def tree_start(n: int):
    spec = SupervisorSpec(
        name="bench", children=tuple(ActorSpec(name=f"c{i}", actor_class=Idle) for i in range(n))
    )
    tree = start_tree(spec, RUNTIME)
    if not tree.started(timeout=300):
        tree.stop()
        raise RuntimeError("tree did not start")
    return tree


def side(kind: str, n: int, logging: str) -> dict[str, float]:
    silence_logs(logging)
    start, stop = (bare_start, bare_stop) if kind == "bare" else (tree_start, lambda t: t.stop(60))
    stop(start(WARMUP))  # load lazily imported code and warm allocator pools
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    handle = start(n)
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    stop(handle)
    left = jv_threads_alive()
    if left:
        raise RuntimeError(f"threads left behind: {left[:5]}")
    return {
        "bytes_per_actor": (after - before) / n,
        "rss_before": before,
        "rss_after": after,
        "start_s": elapsed,
    }


# -- the parent: run both sides in fresh processes ---------------------------------------------


def run_side(kind: str, n: int, logging: str) -> dict[str, float]:
    return side_in_subprocess(__file__, RUNTIME, kind, n, logging, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument("--n", type=int, default=5000, help="idle actors per side (default 5000)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh processes per side (default 3)"
    )
    parser.add_argument("--side", choices=("bare", "supervised"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side is not None:
        print(json.dumps(side(args.side, args.n, args.logging)))
        return 0

    results: dict[str, list[dict[str, float]]] = {"bare": [], "supervised": []}
    for _ in range(args.repeat):
        for kind, runs in results.items():
            runs.append(run_side(kind, args.n, args.logging))
    per = {kind: median([r["bytes_per_actor"] for r in rs]) for kind, rs in results.items()}
    ratio = per["supervised"] / per["bare"]
    print(
        f"memory per idle actor, runtime={RUNTIME}, logging={args.logging}, N={args.n}, "
        f"{args.repeat} fresh processes per side"
    )
    print(f"  ({machine()}; RSS from /proc/self/status, no tracemalloc)")
    names = {"bare": "bare pykka", "supervised": "jobvisor"}
    for kind, rs in results.items():
        each = " ".join(f"{r['bytes_per_actor'] / 1024:.1f}" for r in rs)
        delta = median([(r["rss_after"] - r["rss_before"]) / 2**20 for r in rs])
        print(
            f"  {names[kind]:<11} median {per[kind] / 1024:7.1f} KiB/actor "
            f"(RSS +{delta:.1f} MiB for {args.n})   runs: {each}"
        )
    print(f"  ratio jobvisor/bare = {ratio:.2f}x ({verdict(ratio, TARGET)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
