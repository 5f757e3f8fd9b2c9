"""The journal's cost on the restart cycle: the same supervised crash/restart/ping loop
with and without the journal subscribed, interleaved rounds, in one process.

Target: at most 5% over no journal (ratio <= 1.05).

    python bench/journal_cost.py [--runtime threads|gevent] [--cycles 2000] [--rounds 9]
"""

from __future__ import annotations

from _common import install, runtime_from_argv, silence_logs

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pykka  # noqa: E402

from supervision import (  # noqa: E402
    ActorSpec,
    Backoff,
    Intensity,
    Journal,
    RestartPolicy,
    SupervisorSpec,
    start_tree,
)

TARGET = 1.05


class Crashy(pykka.ThreadingActor):
    def on_receive(self, message):
        if message == "crash":
            raise RuntimeError("crash")
        return "pong"


SPEC = SupervisorSpec(
    policy=RestartPolicy(
        backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=10**9)
    ),
    children=(ActorSpec(name="c", actor_class=Crashy),),
)


def cycles(n: int, journal: Journal | None) -> float:
    tree = start_tree(SPEC, RUNTIME, sink=journal.record if journal else None)
    try:
        ref = tree.ref("c")
        ref.ask("ping", timeout=10)
        start = time.perf_counter()
        for _ in range(n):
            ref.tell("crash")
            ref.ask("ping", timeout=10)
        elapsed = time.perf_counter() - start
        if journal is not None:
            assert journal.flush(30)  # the journal's work counts too
            elapsed = time.perf_counter() - start
    finally:
        tree.stop()
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    silence_logs()
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp))
        try:
            cycles(200, None)
            cycles(200, journal)
            bare, journaled = [], []
            for i in range(args.rounds):
                # Alternate which side goes first: the second of a pair pays for the
                # first one's teardown (garbage, a collection), which must not hit one side.
                if i % 2:
                    journaled.append(cycles(args.cycles, journal))
                    bare.append(cycles(args.cycles, None))
                else:
                    bare.append(cycles(args.cycles, None))
                    journaled.append(cycles(args.cycles, journal))
        finally:
            journal.close()
        rows = len(journal.history(limit=10**9))
    b, j = statistics.median(bare), statistics.median(journaled)
    print(f"journal cost, runtime={RUNTIME}, {args.cycles} cycles x {args.rounds} rounds")
    print(f"  no journal    median {b:8.1f} us/cycle")
    print(f"  with journal  median {j:8.1f} us/cycle ({rows} rows written)")
    verdict = "met" if j / b <= TARGET else "MISSED"
    print(f"  ratio = {j / b:.3f}x (target <= {TARGET}x: {verdict})")
    paired = [jr / br for br, jr in zip(bare, journaled, strict=True)]
    print(
        f"  (median of the per-round ratios {statistics.median(paired):.3f}x; rounds: "
        + " ".join(f"{r:.2f}" for r in paired)
        + ")"
    )


if __name__ == "__main__":
    main()
