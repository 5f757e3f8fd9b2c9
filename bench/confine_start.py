"""What a command's ``user``/``umask`` and ``limits`` cost per start.

Three sides, each ``CommandWork(...).run(Attempt(...))`` of ``/bin/true``, the
whole attempt as the job actor runs it: plain (the baseline, in the same
script), with ``user: nobody`` and ``umask: 027`` (``Popen`` switches the
credentials, which turns vfork into a real fork), and with ``limits`` (a
small Python helper sets the rlimits and execs the command). Needs root for
the user side (it is left out otherwise). Rounds are interleaved; figures are
medians of the per-round ms per start, ratios against plain.

    python bench/confine_start.py [--runtime threads|gevent] [--runs 50] [--rounds 7]
"""

from __future__ import annotations

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from _common import add_runtime_arg, machine, median, silence_logs  # noqa: E402

from actors import Attempt  # noqa: E402
from actors._command import CommandWork  # noqa: E402
from actors._confine import Limits  # noqa: E402

TRUE = "/bin/true"


def sides() -> dict[str, CommandWork]:
    works = {"plain": CommandWork(argv=(TRUE,))}
    if os.geteuid() == 0:
        works["user+umask"] = CommandWork(argv=(TRUE,), user="nobody", umask=0o27, cwd="/")
    works["limits"] = CommandWork(argv=(TRUE,), limits=Limits(nofile=1024))
    return works


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--runs", type=int, default=50, help="starts per round (default 50)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per side (default 7)")
    args = parser.parse_args()
    silence_logs("off")
    works = sides()
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(args.rounds):
        for name, work in works.items():
            t0 = time.perf_counter()
            for _ in range(args.runs):
                work.run(Attempt("bench", 1, time.time()))
            times[name].append((time.perf_counter() - t0) / args.runs * 1e3)
    base = median(times["plain"])
    print(f"confine_start ({RUNTIME}, {machine()}): {args.rounds} rounds of {args.runs} starts")
    for name, per in times.items():
        print(f"  {name:<11} {median(per):7.2f} ms/start  {median(per) / base:5.2f}x plain")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
