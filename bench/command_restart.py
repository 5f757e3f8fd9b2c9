"""A permanent command restarted at once by a real ``jobvisor daemon`` vs a ``subprocess.run`` loop.

Two commands, each its own case:

- ``true``: ``/bin/true``, start to start: the time per restart is all supervisor.
- ``crash``: a Python that exits 1 at once (``python -I -S -c 'raise SystemExit(1)'``,
  about 10 ms): a crashing command, where what counts is the supervisor's CPU per
  restart beside the command's own time.
- ``boom``: the same crash saying why on stderr (``raise SystemExit('boom')``), as most do:
  its line goes to the log and the job's output file. No goal; the floor's loop sends its
  stderr to /dev/null.

Ours: ``cli.py --runtime R daemon`` (the composition root as a person runs it) on a
manifest with one ``restart: permanent`` command job, backoff 0, an intensity that
never runs out, logging at its default level (information; ``--logging none``
shows what that costs) to a file, and its
journal, as the daemon always keeps one. After a warm-up, the starts inside a
``--seconds`` window are read from its journal; its CPU (user+sys of the daemon
process only, not its children nor its warden) from ``/proc/PID/stat``.

Floor: ``subprocess.run(argv)`` in a loop in this script, for the same window:
runs per window, and this process's own CPU (``RUSAGE_SELF``: not the children's).

Also, for reference (no goal on it): ``--like``, the same loop doing what jobvisor must do for
every command and the floor does not: both output streams captured through pipes and read to
their end, and a session of its own (the group a stop signals); ``subprocess.run(argv,
stdout=PIPE, stderr=PIPE, start_new_session=True)``.

Rounds alternate floor and ours (the side that goes first changes each round),
so drift hits both alike; figures are medians over rounds, ratios are
ours / floor of the medians, and the median of the per-round ratios beside.
``--also DIR`` adds the daemon of another checkout (say, the commit before a
change) as sides of its own in the same rounds: a before/after in one run.

    python bench/command_restart.py [--runtime threads|gevent|both] [--rounds 5]
                                    [--seconds 3] [--what true,crash] [--also DIR]
                                    [--logging information|none] [--like]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import machine
from _supervisord_proc import cpu_seconds, launched, stop_and_time, tail

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 1.0  # seconds of restarts before the window opens
READY_DEADLINE = 60.0
# What the goal is on, and its bound (None: no goal).
TARGETS: dict[str, tuple[str, float | None]] = {
    "true": ("wall", 1.2),
    "crash": ("cpu", 2.0),
    "boom": ("cpu", None),
}
COMMANDS = {
    "true": ["/bin/true"],
    "crash": [sys.executable, "-I", "-S", "-c", "raise SystemExit(1)"],
    "boom": [sys.executable, "-I", "-S", "-c", "raise SystemExit('boom')"],
}


class BenchError(Exception):
    """The daemon did not come up or did not restart; the message shows its output."""


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOBVISOR_RUNTIME")}
    env["PYTHONPATH"] = str(root)
    return env


def _manifest(argv: list[str], level: str) -> str:
    quoted = ", ".join(f'"{a}"' for a in argv)
    return "\n".join(
        [
            "version: 1",
            f"logging: {{level: {level}, file: jobvisor.log}}",
            "supervisor:",
            "  strategy: one_for_one",
            "  backoff: {initial: 0, max: 0, jitter: 0}",
            "  intensity: {max_restarts: 1000000000, within: 1s}",
            "jobs:",
            f"  - {{name: fast, command: [{quoted}], restart: permanent}}",
            "",
        ]
    )


def _starts(directory: Path) -> list[float]:
    db = directory / ".jobvisor" / "journal.sqlite3"
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        try:
            rows = conn.execute(
                "SELECT started_at FROM attempts WHERE path = 'fast' ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:  # the daemon has not made its tables yet
            return []
    return [float(s) for (s,) in rows]


@contextlib.contextmanager
def restarting(
    runtime: str, argv: list[str], root: Path, level: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``root``'s daemon restarting ``argv``, past its warm-up: (its process, its directory).

    The caller stops it (``stop_and_time``) and reads the journal (``_starts``) inside the
    block: the directory goes with it.
    """
    with tempfile.TemporaryDirectory(prefix="cmd-restart-") as tmp:
        directory = Path(tmp)
        (directory / "jobs.yaml").write_text(_manifest(argv, level))
        cli = [sys.executable, str(root / "cli.py"), "--runtime", runtime, "daemon", "jobs.yaml"]
        with launched(cli, directory, _env(root)) as popen:
            deadline = time.monotonic() + READY_DEADLINE
            while len(_starts(directory)) < 2:
                if popen.poll() is not None or time.monotonic() > deadline:
                    output = tail(directory / "output.log")
                    raise BenchError(f"the daemon did not restart:\n{output}")
                time.sleep(0.05)
            time.sleep(WARMUP)
            yield popen, directory


def ours(
    runtime: str, argv: list[str], seconds: float, root: Path, level: str
) -> tuple[float, float, int]:
    """(ms per restart, daemon CPU ms per restart, restarts) over one window (``root``'s cli.py)."""
    with restarting(runtime, argv, root, level) as (popen, directory):
        t0, c0 = time.time(), cpu_seconds(popen.pid)
        time.sleep(seconds)
        t1, c1 = time.time(), cpu_seconds(popen.pid)
        stop_and_time(popen, 60)
        count = sum(1 for s in _starts(directory) if t0 <= s < t1)
    if not count:
        raise BenchError("no start in the window")
    return (t1 - t0) / count * 1000, (c1 - c0) / count * 1000, count


def floor(
    argv: list[str], seconds: float, *, like: bool = False, quiet: bool = False
) -> tuple[float, float, int]:
    """(ms per run, this process's CPU ms per run, runs) of a ``subprocess.run`` loop.

    ``like``: capturing both streams in a session of its own, as jobvisor runs a command.
    ``quiet``: stderr to /dev/null (a command that prints, ``boom``), not to our terminal.
    """
    extra: dict[str, Any] = (
        {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "start_new_session": True}
        if like
        else {}
    )
    if quiet and not like:
        extra["stderr"] = subprocess.DEVNULL  # what boom says: not on our terminal
    end = time.monotonic() + WARMUP / 5
    while time.monotonic() < end:
        subprocess.run(argv, check=False, **extra)
    count = 0
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    end = t0 + seconds
    while time.perf_counter() < end:
        subprocess.run(argv, check=False, **extra)
        count += 1
    t1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return (t1 - t0) / count * 1000, cpu / count * 1000, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="each measuring window")
    parser.add_argument("--what", default="true,crash", help="true, crash, boom (comma)")
    parser.add_argument("--also", type=Path, help="a checkout whose daemon runs beside ours")
    parser.add_argument(
        "--logging",
        default="information",
        help="the daemon's log level (default information; none: what logging costs)",
    )
    parser.add_argument(
        "--like",
        action="store_true",
        help="also a loop that captures both streams in a new session (reference, no goal)",
    )
    args = parser.parse_args()
    runtimes: tuple[str, ...] = ("threads", "gevent") if args.runtime == "both" else (args.runtime,)
    roots = dict.fromkeys(runtimes, ROOT)
    if args.also is not None:
        if not (args.also / "cli.py").is_file():
            parser.error(f"--also: no cli.py in {args.also}")
        roots |= {f"{r}@also": args.also.resolve() for r in runtimes}
        runtimes = tuple(roots)
    cases = [w.strip() for w in args.what.split(",") if w.strip()]
    if not cases or set(cases) - set(COMMANDS):
        parser.error(f"--what: expected some of true, crash, boom, got {args.what!r}")
    load0 = os.getloadavg()[0]
    print(
        f"command_restart: {args.rounds} rounds of {args.seconds:g} s; "
        f"daemon log level {args.logging}; {machine()}"
    )
    if args.also is not None:
        print(f"  <runtime>@also: the daemon of {args.also}")
    for case in cases:
        argv = COMMANDS[case]
        sides = ["floor", *(["like"] if args.like else []), *runtimes]
        res: dict[str, list[tuple[float, float, int]]] = {s: [] for s in sides}
        pairs: dict[str, list[tuple[float, float]]] = {r: [] for r in runtimes}
        for number in range(args.rounds):
            order = sides[number % len(sides) :] + sides[: number % len(sides)]
            got = {}
            for side in order:
                got[side] = (
                    floor(argv, args.seconds, like=side == "like", quiet=case == "boom")
                    if side in ("floor", "like")
                    else ours(side.split("@")[0], argv, args.seconds, roots[side], args.logging)
                )
                res[side].append(got[side])
            for r in runtimes:
                pairs[r].append((got[r][0] / got["floor"][0], got[r][1] / got["floor"][1]))
            print(
                f"  round {number + 1} {case}: "
                + "  ".join(f"{s} {w:.2f} ms (cpu {c:.3f}) x{n}" for s, (w, c, n) in got.items()),
                file=sys.stderr,
            )
        what, target = TARGETS[case]
        print(f"{case}: {' '.join(argv)}")
        base_w = statistics.median(w for w, _, _ in res["floor"])
        base_c = statistics.median(c for _, c, _ in res["floor"])
        print(f"  floor subprocess.run loop   {base_w:7.3f} ms/run      cpu {base_c:6.3f} ms/run")
        if args.like:
            like_w = statistics.median(w for w, _, _ in res["like"])
            like_c = statistics.median(c for _, c, _ in res["like"])
            print(
                f"  the loop, capturing, session {like_w:7.3f} ms/run      cpu {like_c:6.3f} ms/run"
                f"   wall {like_w / base_w:.2f}x  cpu {like_c / base_c:.2f}x of the floor"
            )
        for r in runtimes:
            w = statistics.median(x for x, _, _ in res[r])
            c = statistics.median(x for _, x, _ in res[r])
            rw = statistics.median(p for p, _ in pairs[r])
            rc = statistics.median(p for _, p in pairs[r])
            ratio = w / base_w if what == "wall" else c / base_c
            ok = "no goal" if target is None else "met" if ratio <= target else "MISSED"
            print(
                f"  jobvisor daemon {r:<14}    {w:7.3f} ms/restart  cpu {c:6.3f} ms/restart"
                f"   wall {w / base_w:.2f}x (per round {rw:.2f}x)"
                f"  cpu {c / base_c:.2f}x (per round {rc:.2f}x)"
                + ("" if target is None else f"   target {what} <= {target:g}x: {ok}")
            )
    print(f"  load average (1 min) at the start {load0:.2f}, at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"command_restart: {exc}", file=sys.stderr)
        sys.exit(1)
