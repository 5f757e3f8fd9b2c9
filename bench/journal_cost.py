"""The journal's cost on the restart cycle: the same supervised crash/restart/ping loop
with and without the journal subscribed, interleaved rounds, in one process.

With ``--endpoint``, the HTTP endpoint's cost instead, nobody scraping: its metrics fed
as the tree's sink (inline, so their work is inside each cycle's time), a server
listening on 127.0.0.1.

Target: at most 5% over neither (ratio <= 1.05).

    python bench/journal_cost.py [--runtime threads|gevent] [--cycles 2000] [--rounds 9]
                                 [--endpoint]
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
from typing import TYPE_CHECKING, Any  # noqa: E402

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
from supervision._httpapi import Endpoint  # noqa: E402
from supervision._listen import HttpSpec  # noqa: E402
from supervision._metrics import TreeMetrics  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

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


def cycles(n: int, sink: Callable[[Any], None] | None, flush: Callable[[], Any]) -> float:
    """Wall time per cycle (µs); the process CPU time per cycle is appended to ``CPU``."""
    tree = start_tree(SPEC, RUNTIME, sink=sink)
    try:
        ref = tree.ref("c")
        ref.ask("ping", timeout=10)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            ref.tell("crash")
            ref.ask("ping", timeout=10)
        if sink is not None:
            assert flush()  # the journal's work counts too
        elapsed = time.perf_counter() - start
        CPU[sink is not None].append((time.process_time() - cpu) / n * 1e6)
    finally:
        tree.stop()
    return elapsed / n * 1e6


CPU: dict[bool, list[float]] = {False: [], True: []}  # with the sink?: process CPU per cycle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--endpoint", action="store_true", help="the HTTP endpoint's cost")
    args = parser.parse_args()
    silence_logs()
    with tempfile.TemporaryDirectory() as tmp:
        if args.endpoint:
            metrics = TreeMetrics(SPEC)
            endpoint = Endpoint(HttpSpec.of("127.0.0.1:0"), metrics)
            side, sink, flush, close = "endpoint", endpoint.sink(), lambda: True, endpoint.close
        else:
            journal = Journal(Path(tmp))
            side, sink, close = "journal", journal.record, journal.close
            flush = lambda: journal.flush(30)  # noqa: E731
        try:
            cycles(200, None, flush)
            cycles(200, sink, flush)
            CPU[False].clear()
            CPU[True].clear()
            bare, with_ = [], []
            for i in range(args.rounds):
                # Alternate which side goes first: the second of a pair pays for the
                # first one's teardown (garbage, a collection), which must not hit one side.
                if i % 2:
                    with_.append(cycles(args.cycles, sink, flush))
                    bare.append(cycles(args.cycles, None, flush))
                else:
                    bare.append(cycles(args.cycles, None, flush))
                    with_.append(cycles(args.cycles, sink, flush))
        finally:
            close()
        if args.endpoint:
            done = f"{metrics._series('c').restarts} restarts counted"
        else:
            done = f"{len(journal.history(limit=10**9))} rows written"
    b, j = statistics.median(bare), statistics.median(with_)
    print(f"{side} cost, runtime={RUNTIME}, {args.cycles} cycles x {args.rounds} rounds")
    cb, cj = statistics.median(CPU[False]), statistics.median(CPU[True])
    print(f"  no {side:<10} median {b:8.1f} us/cycle (process cpu {cb:6.1f})")
    print(f"  with {side:<8} median {j:8.1f} us/cycle (process cpu {cj:6.1f}; {done})")
    verdict = "met" if j / b <= TARGET else "MISSED"
    print(f"  ratio = {j / b:.3f}x (target <= {TARGET}x: {verdict})")
    paired = [jr / br for br, jr in zip(bare, with_, strict=True)]
    print(
        f"  (median of the per-round ratios {statistics.median(paired):.3f}x; rounds: "
        + " ".join(f"{r:.2f}" for r in paired)
        + ")"
    )
    print(f"  (process cpu ratio {cj / cb:.3f}x)")


if __name__ == "__main__":
    main()
