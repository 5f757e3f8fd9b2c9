"""System calls per restart of a permanent command in a real ``jobvisor daemon``, by name.

The daemon and its manifest are ``command_restart.py``'s: one permanent command job
(``/bin/true``, or the crash with ``--command crash``), backoff 0, logging at its default level
to a file, and its journal. After a warm-up, ``strace -c`` attaches to every thread the daemon
has (not to its children: their exec is the floor's too) for ``--seconds``; each call's count
is divided by the starts the journal has in that window. strace slows the daemon down: read
the counts, not the times.

Floor: a ``subprocess.run`` loop in a fresh Python under ``strace -c`` (its process only), minus
the same Python running the loop zero times (its start-up and exit), per run.

``--also DIR`` counts another checkout's daemon the same way, in the same run (a before/after).

    python bench/syscalls.py [--runtime threads|gevent] [--seconds 4] [--command true|crash]
                             [--also DIR]

Needs ``strace`` (Debian's ``strace`` package) and permission to attach (root, or
``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine
from _supervisord_proc import stop_and_time
from command_restart import COMMANDS, BenchError, _starts, restarting

ROOT = Path(__file__).resolve().parent.parent


def _counts(report: Path) -> collections.Counter[str]:
    """``strace -c``'s table as {call: count}, without its total line."""
    counts: collections.Counter[str] = collections.Counter()
    for line in report.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] += int(fields[3])
    return counts


def _strace(pids: list[str], seconds: float, report: Path) -> None:
    """``strace -c`` on ``pids`` (threads of one process) for ``seconds``."""
    argv = ["strace", "-c", "-o", str(report)]
    for pid in pids:
        argv += ["-p", pid]
    tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)
    finally:
        tracer.send_signal(signal.SIGINT)  # strace writes its table and detaches
        tracer.wait(30)


def ours(runtime: str, argv: list[str], seconds: float, root: Path) -> tuple[dict[str, float], int]:
    """({call: per restart}, restarts) for ``root``'s daemon."""
    with restarting(runtime, argv, root, "information") as (popen, directory):
        threads = sorted(p.name for p in Path(f"/proc/{popen.pid}/task").iterdir())
        t0 = time.time()
        _strace(threads, seconds, directory / "strace.txt")
        t1 = time.time()
        stop_and_time(popen, 60)
        restarts = sum(1 for s in _starts(directory) if t0 <= s < t1)
        counts = _counts(directory / "strace.txt")
    if not restarts:
        raise BenchError("no start in the window")
    return {name: n / restarts for name, n in counts.items()}, restarts


_LOOP = (
    "import subprocess, sys\nfor _ in range(int(sys.argv[1])):\n    subprocess.run(sys.argv[2:])\n"
)


def floor(argv: list[str], runs: int) -> dict[str, float]:
    """{call: per run} of a ``subprocess.run`` loop, its interpreter's own calls taken away."""
    with tempfile.TemporaryDirectory(prefix="syscalls-") as tmp:
        got = []
        for n in (runs, 0):
            report = Path(tmp) / f"floor-{n}.txt"
            subprocess.run(
                ["strace", "-c", "-o", str(report), sys.executable, "-c", _LOOP, str(n), *argv],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            got.append(_counts(report))
    loop, bare = got
    return {name: (loop[name] - bare[name]) / runs for name in loop}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--command", choices=sorted(COMMANDS), default="true")
    parser.add_argument("--also", type=Path, help="a checkout whose daemon is counted too")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        parser.error("needs strace (apt install strace)")
    if args.also is not None and not (args.also / "cli.py").is_file():
        parser.error(f"--also: no cli.py in {args.also}")
    argv = COMMANDS[args.command]
    print(f"syscalls: {args.command} ({' '.join(argv)}), {args.runtime}; {machine()}")
    columns = {"floor": floor(argv, 1000 if args.command == "true" else 200)}
    restarts = {}
    columns["ours"], restarts["ours"] = ours(args.runtime, argv, args.seconds, ROOT)
    if args.also is not None:
        columns["also"], restarts["also"] = ours(
            args.runtime, argv, args.seconds, args.also.resolve()
        )
    names = sorted(
        {n for col in columns.values() for n, v in col.items() if v >= 0.005},
        key=lambda n: -max(col.get(n, 0.0) for col in columns.values()),
    )
    print(f"  {'per restart (run)':<18}" + "".join(f"{side:>9}" for side in columns))
    for name in names:
        print(f"  {name:<18}" + "".join(f"{col.get(name, 0.0):9.2f}" for col in columns.values()))
    totals = "".join(f"{sum(v for v in col.values() if v > 0):9.2f}" for col in columns.values())
    print(f"  {'all':<18}" + totals)
    print("  restarts counted: " + ", ".join(f"{side} {n}" for side, n in restarts.items()))
    if args.also is not None:
        print(f"  also: the daemon of {args.also}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"syscalls: {exc}", file=sys.stderr)
        sys.exit(1)
