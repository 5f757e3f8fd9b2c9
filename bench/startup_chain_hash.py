"""Two start-up costs that grew faster than the tree: a dependency chain's settle check and
the journal's spec hashes (bench/README.md, "Start-up ... (stop 39)").

``settle``: ``start_tree`` of N once-jobs in a chain (job i depends on job i-1) behind a
head with ``autostart: false``: nothing runs, every job waits (pending) for the one before.
Timed: ``tree.wait()`` from ``start_tree``'s return until the tree counts as settled (the
children start in the background meanwhile), and ``tree.started()`` before it as a
reference. ``hash``: ``job_hashes`` of N command jobs with ``--env`` variables each (what
``--resume`` and the journal compute at start). Each round runs in a fresh process.

    python bench/startup_chain_hash.py [--runtime threads|gevent] [--n 10000] [--rounds 3]
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
)

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

from actors import CommandWork  # noqa: E402
from supervision import JobSpec, SupervisorSpec, python_job, start_tree  # noqa: E402
from supervision._journal import job_hashes  # noqa: E402

ENV_VARS = 20


def chain(n: int) -> SupervisorSpec:
    head = python_job("j0", "time:sleep", 0, autostart=False)
    jobs = [head] + [
        replace(python_job(f"j{i}", "time:sleep", 0), depends_on=(f"j{i - 1}",))
        for i in range(1, n)
    ]
    return SupervisorSpec(name="bench", children=tuple(jobs))


def settle_round(n: int) -> dict[str, float]:
    spec = chain(n)
    begun = time.perf_counter()
    tree = start_tree(spec, RUNTIME)
    try:
        returned = time.perf_counter()
        if not tree.started(timeout=600):
            raise RuntimeError("tree did not start")
        started = time.perf_counter()
        cpu = time.process_time()
        if not tree.wait(600):
            raise RuntimeError("tree did not settle")
        settled = time.perf_counter()
        cpu = time.process_time() - cpu
    finally:
        if not tree.stop(timeout=300):
            raise RuntimeError("tree did not stop")
    left = jv_threads_alive()
    if left:
        raise RuntimeError(f"threads left behind: {left[:5]}")
    return {
        "started": started - begun,
        "wait": settled - returned,
        "wait after started": settled - started,
        "cpu of the last wait": cpu,
    }


def hash_round(n: int) -> dict[str, float]:
    env = {f"VAR_{k:02d}": f"value-{k}-" + "x" * 20 for k in range(ENV_VARS)}
    jobs = tuple(
        JobSpec(
            name=f"j{i}",
            work=CommandWork(argv=("/bin/sh", "-c", f"echo {i}"), env={**env, "ID": str(i)}),
        )
        for i in range(n)
    )
    spec = SupervisorSpec(name="bench", children=jobs)
    cpu = time.process_time()
    begun = time.perf_counter()
    hashes = job_hashes(spec)
    elapsed = time.perf_counter() - begun
    cpu = time.process_time() - cpu
    if len(hashes) != n:
        raise RuntimeError("a hash is missing")
    return {"hash": elapsed, "cpu": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument("--n", type=int, default=10_000, help="jobs (default 10000)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per part")
    parser.add_argument("--side", choices=("settle", "hash"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side is not None:
        silence_logs(args.logging)
        run = settle_round if args.side == "settle" else hash_round
        print(json.dumps(run(args.n)))
        return 0

    print(f"start-up costs, runtime={RUNTIME}, N={args.n}, {args.rounds} fresh processes each")
    print(f"  ({machine()})")
    for part in ("settle", "hash"):
        rounds = [
            side_in_subprocess(__file__, RUNTIME, part, args.n, args.logging, timeout=1800)
            for _ in range(args.rounds)
        ]
        for key in rounds[0]:
            values = [r[key] for r in rounds]
            each = " ".join(f"{v:.3f}" for v in values)
            print(f"  {part:6} {key:22} median {median(values):.3f} s  (rounds: {each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
