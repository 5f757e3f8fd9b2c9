"""What registering and unregistering one incarnation costs with N other actors alive.

Every incarnation registers its ``ActorRef`` in pykka's ``ActorRegistry`` and
unregisters it when it ends, so both are on every restart. Baseline: pykka's own
``ActorRegistry.register``/``unregister`` over pykka's list (put back for its
rounds). Ours: ``actors._registry.register``/``unregister`` over the container
jobvisor installs. Same process, rounds alternate; figures are medians of
microseconds per register+unregister pair, with N refs of other (never started)
actors registered around it. pykka's debug lines go to a logger with no
handler, as in a daemon; ``--debug`` turns pykka's logger to DEBUG (a handler
that drops them), as an embedding program with debug logging on would have.

    python bench/registry.py [--others 0,100,1000,10000] [--pairs 2000] [--rounds 7] [--debug]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import pykka
from _common import machine

from actors._registry import _Refs, register, unregister


class Idle(pykka.ThreadingActor):
    pass


def _pairs(reg: Any, unreg: Any, ref: Any, pairs: int) -> float:
    """Microseconds per register+unregister of ``ref``."""
    start = time.perf_counter()
    for _ in range(pairs):
        reg(ref)
        unreg(ref)
    return (time.perf_counter() - start) / pairs * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", default="0,100,1000,10000")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--debug", action="store_true", help="pykka's logger at DEBUG")
    args = parser.parse_args()
    if args.debug:
        logger = logging.getLogger("pykka")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    print(
        f"registry: {args.pairs} register+unregister pairs per round, {args.rounds} rounds; "
        f"pykka logger at {'DEBUG' if args.debug else 'its default'}; {machine()}"
    )
    ours_refs = pykka.ActorRegistry._actor_refs
    assert isinstance(ours_refs, _Refs)
    ref = Idle().actor_ref
    for others in (int(n) for n in args.others.split(",")):
        crowd = [Idle().actor_ref for _ in range(others)]
        base: list[float] = []
        mine: list[float] = []
        for number in range(args.rounds):
            sides = ["pykka", "ours"] if number % 2 == 0 else ["ours", "pykka"]
            for side in sides:
                if side == "pykka":
                    pykka.ActorRegistry._actor_refs = list(crowd)  # type: ignore[assignment]
                    base.append(
                        _pairs(
                            pykka.ActorRegistry.register,
                            pykka.ActorRegistry.unregister,
                            ref,
                            args.pairs,
                        )
                    )
                else:
                    pykka.ActorRegistry._actor_refs = _Refs(crowd)  # type: ignore[assignment]
                    mine.append(_pairs(register, unregister, ref, args.pairs))
        pykka.ActorRegistry._actor_refs = ours_refs
        b, m = statistics.median(base), statistics.median(mine)
        print(
            f"  {others:>6} other actors: pykka {b:8.2f} us/pair   ours {m:6.2f} us/pair"
            f"   ours/pykka {m / b:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
