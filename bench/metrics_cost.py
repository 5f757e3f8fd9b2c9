"""The HTTP endpoint's cost on the restart cycle when nobody scrapes: the same supervised
crash/restart/ping loop with and without an endpoint (metrics and event streams fed from
the tree's events, a server listening on 127.0.0.1), interleaved rounds, in one process.

Target: at most 5% over no endpoint (ratio <= 1.05). The metrics are bumped inline, in
the supervisor's thread, so their work is inside each cycle's time.

    python bench/metrics_cost.py [--runtime threads|gevent] [--cycles 2000] [--rounds 9]
"""

from __future__ import annotations

from _common import install, runtime_from_argv, silence_logs

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import pykka  # noqa: E402

from supervision import (  # noqa: E402
    ActorSpec,
    Backoff,
    Intensity,
    RestartPolicy,
    SupervisorSpec,
    start_tree,
)
from supervision._httpapi import Endpoint  # noqa: E402
from supervision._listen import HttpSpec  # noqa: E402
from supervision._metrics import TreeMetrics  # noqa: E402

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


def cycles(n: int, endpoint: Endpoint | None) -> float:
    tree = start_tree(SPEC, RUNTIME, sink=endpoint.sink() if endpoint else None)
    try:
        ref = tree.ref("c")
        ref.ask("ping", timeout=10)
        start = time.perf_counter()
        for _ in range(n):
            ref.tell("crash")
            ref.ask("ping", timeout=10)
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
    metrics = TreeMetrics(lambda: SPEC)
    endpoint = Endpoint(HttpSpec.of("127.0.0.1:0"), metrics)
    try:
        cycles(200, None)
        cycles(200, endpoint)
        bare, served = [], []
        for i in range(args.rounds):
            # Alternate which side goes first: the second of a pair pays for the first one's
            # teardown (garbage, a collection), which must not hit one side.
            if i % 2:
                served.append(cycles(args.cycles, endpoint))
                bare.append(cycles(args.cycles, None))
            else:
                bare.append(cycles(args.cycles, None))
                served.append(cycles(args.cycles, endpoint))
        restarts = metrics._series("c").restarts
    finally:
        endpoint.close()
    b, m = statistics.median(bare), statistics.median(served)
    print(f"metrics cost, runtime={RUNTIME}, {args.cycles} cycles x {args.rounds} rounds")
    print(f"  no endpoint    median {b:8.1f} us/cycle")
    print(f"  with endpoint  median {m:8.1f} us/cycle ({restarts:.0f} restarts counted)")
    verdict = "met" if m / b <= TARGET else "MISSED"
    print(f"  ratio = {m / b:.3f}x (target <= {TARGET}x: {verdict})")
    paired = [mr / br for br, mr in zip(bare, served, strict=True)]
    print(
        f"  (median of the per-round ratios {statistics.median(paired):.3f}x; rounds: "
        + " ".join(f"{r:.2f}" for r in paired)
        + ")"
    )


if __name__ == "__main__":
    main()
