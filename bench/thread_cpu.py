"""Where a real ``jobvisor daemon``'s CPU per restart goes, thread by thread.

The daemon and its manifest are ``command_restart.py``'s: one permanent command job
(the crash by default, ``--command true`` for ``/bin/true``), backoff 0, logging at its
default level to a file, and its journal. After its warm-up, each of its threads' CPU time
(``/proc/PID/task/TID/schedstat``: nanoseconds on a CPU, user and system) and its
voluntary context switches (``/proc/PID/task/TID/status``) are read at the start and the end
of a ``--seconds`` window and divided by the starts the journal has in that window. Threads
are named by ``py-spy dump`` when py-spy is found (beside this Python, or on ``PATH``), else
shown by id in the order they were made. ``--also DIR`` measures another checkout's daemon
the same way, alternating rounds (a before/after in one run); figures are medians of
``--rounds``.

    python bench/thread_cpu.py [--runtime threads|gevent] [--command crash|true]
                               [--seconds 5] [--rounds 3] [--also DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, thread_cpu
from _supervisord_proc import stop_and_time
from command_restart import COMMANDS, BenchError, _starts, restarting

ROOT = Path(__file__).resolve().parent.parent


def _names(pid: int) -> dict[int, str]:
    """{tid: thread name} from ``py-spy dump``, or {} without py-spy."""
    spy = Path(sys.executable).with_name("py-spy")
    exe = str(spy) if spy.exists() else shutil.which("py-spy")
    if exe is None:
        return {}
    try:
        dump = subprocess.run(
            [exe, "dump", "-p", str(pid)], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.MULTILINE)
    return {int(tid): name for tid, name in found}


def one(
    runtime: str, argv: list[str], seconds: float, root: Path
) -> tuple[dict[str, tuple[float, float]], int]:
    """{thread: (CPU ms per restart, voluntary switches per restart)} over one window."""
    with restarting(runtime, argv, root, "information") as (popen, directory):
        names = _names(popen.pid)
        t0, before = time.time(), thread_cpu(popen.pid)
        time.sleep(seconds)
        t1, after = time.time(), thread_cpu(popen.pid)
        stop_and_time(popen, 60)
        count = sum(1 for s in _starts(directory) if t0 <= s < t1)
    if not count:
        raise BenchError("no start in the window")
    out = {}
    for rank, tid in enumerate(sorted(after)):
        ns0, sw0 = before.get(tid, (0, 0))
        ns1, sw1 = after[tid]
        name = names.get(tid, f"thread {rank} ({tid})" if tid != popen.pid else "main")
        out[name] = ((ns1 - ns0) / 1e6 / count, (sw1 - sw0) / count)
    out["all threads"] = (sum(c for c, _ in out.values()), sum(s for _, s in out.values()))
    return out, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--command", choices=sorted(COMMANDS), default="crash")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--also", type=Path, help="a checkout whose daemon is measured too")
    args = parser.parse_args()
    sides = {"ours": ROOT}
    if args.also is not None:
        if not (args.also / "cli.py").is_file():
            parser.error(f"--also: no cli.py in {args.also}")
        sides["also"] = args.also.resolve()
    argv = COMMANDS[args.command]
    print(
        f"thread_cpu: {args.command} ({' '.join(argv)}), {args.runtime}, "
        f"{args.rounds} rounds of {args.seconds:g} s; {machine()}"
    )
    got: dict[str, dict[str, list[tuple[float, float]]]] = {s: {} for s in sides}
    for number in range(args.rounds):
        order = list(sides)[number % len(sides) :] + list(sides)[: number % len(sides)]
        for side in order:
            per, count = one(args.runtime, argv, args.seconds, sides[side])
            print(f"  round {number + 1} {side}: {count} restarts", file=sys.stderr)
            for name, figures in per.items():
                got[side].setdefault(name, []).append(figures)
    for side, threads in got.items():
        print(f"{side}: {sides[side]}")
        for name, figures in sorted(threads.items(), key=lambda kv: -max(c for c, _ in kv[1])):
            cpu = statistics.median(c for c, _ in figures)
            switches = statistics.median(s for _, s in figures)
            if cpu >= 0.001 or name == "all threads":
                print(f"  {name:<24} cpu {cpu:6.3f} ms/restart  switches {switches:5.2f}/restart")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"thread_cpu: {exc}", file=sys.stderr)
        sys.exit(1)
