"""jobvisor beside supervisord: restart latency, the idle cost of N services, the time to stop them.

Both tools run as real processes in the same run, one at a time, each in a
fresh temp dir: supervisord (installed from PyPI into ``bench/.venv-supervisord/``,
created once) with a generated config and its XML-RPC on a unix socket there;
jobvisor as ``cli.py daemon`` with a generated manifest, under each runtime asked for.

- restart: one command that exits at once (``/bin/true``) with each tool's
  fastest restart settings (supervisord: ``autorestart=true``, ``startsecs=0``,
  ``startretries=1000000``; jobvisor: ``restart: permanent``, backoff 0, an
  intensity that never runs out). After a 1 s warm-up, the starts inside a
  ``--seconds`` window are counted from each tool's own record of them
  (supervisord's log lines ``spawned:``/``exited:``, jobvisor's journal).
- idle: ``--services`` commands ``sleep 3600``, each its own program/job. Once
  all run and ``--settle`` seconds passed, the supervisor process's CPU
  (user+sys, ``/proc/PID/stat``) over ``--seconds``, then its RSS and PSS.
  Only the supervisor process is counted, not its children; helper processes
  that are not services (jobvisor's warden) are listed apart. A second launch
  with one service gives the RSS before any work, hence the RSS per service.
- stop: SIGTERM to the supervisor, timed until it exited (``waitpid``); then
  every process that was below it is checked by PID and start time.

Both log at their information level to a file (supervisord's default; its log
is where its restart timestamps come from); jobvisor also keeps its journal,
as its daemon always does. The ratio column is jobvisor / supervisord. Every
process is started by this script and ended by PID, also on errors and Ctrl-C.

    python bench/vs_supervisord.py [--runtime threads|gevent|both] [--rounds 1]
                                   [--services 200] [--seconds 10] [--settle 2]
                                   [--what restart,idle]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import _supervisord as supd
from _common import machine
from _supervisord_proc import (
    Proc,
    cpu_seconds,
    descendants,
    launched,
    pss_kib,
    rss_kib,
    stop_and_time,
    tail,
    threads,
)

if TYPE_CHECKING:
    import subprocess

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ("sleep", "3600")
WARMUP = 1.0  # seconds of restarts before the window opens: the cycle reaches its pace
READY_DEADLINE = 120.0
STOP_DEADLINE = 120.0


class BenchError(Exception):
    """A side did not come up or did not stop; the message names it and shows its output."""


class Side(Protocol):
    label: str

    def prepare(self, directory: Path, services: int) -> tuple[list[str], dict[str, str]]:
        """Write the config for ``services`` sleeps (0: the restart case); argv and env."""
        ...

    def running(self, directory: Path) -> int | None:
        """Children running now, or None while the supervisor does not answer yet."""
        ...

    def attempts(self, directory: Path) -> list[tuple[float, float | None]]:
        """(start, end) epoch seconds of every start of the restart case's command."""
        ...


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NOTIFY_SOCKET")}
    env.pop("JOBVISOR_RUNTIME", None)
    return {**env, **extra}


class Supervisord:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.label = f"supervisord {supd.VERSION}"

    def prepare(self, directory: Path, services: int) -> tuple[list[str], dict[str, str]]:
        if services == 0:
            programs = {
                "fast": {
                    "command": "/bin/true",
                    "autorestart": "true",
                    "startsecs": "0",
                    "startretries": "1000000",
                }
            }
        else:
            service = {
                "command": " ".join(SERVICE),
                "autorestart": "true",
                "startsecs": "0",
                "stopsignal": "TERM",
                "stopwaitsecs": "5",
            }
            programs = {f"s{i:04d}": service for i in range(services)}
        config = supd.write_config(directory, programs)
        env = _clean_env()
        env.pop("VIRTUAL_ENV", None)
        return supd.argv(self.binary, config), env

    def running(self, directory: Path) -> int | None:
        return supd.running_count(directory)

    def attempts(self, directory: Path) -> list[tuple[float, float | None]]:
        return supd.attempts(directory, "fast")


class Jobvisor:
    def __init__(self, runtime: str) -> None:
        self.runtime = runtime
        self.label = f"jobvisor {runtime}"

    def prepare(self, directory: Path, services: int) -> tuple[list[str], dict[str, str]]:
        head = [
            "version: 1",
            "logging: {level: information, file: jobvisor.log}",
            "supervisor:",
            "  strategy: one_for_one",
            "  backoff: {initial: 0, max: 0, jitter: 0}",
            "  intensity: {max_restarts: 1000000000, within: 1s}",
            "jobs:",
        ]
        if services == 0:
            jobs = ["  - {name: fast, command: [/bin/true], restart: permanent}"]
        else:
            argv = json.dumps(list(SERVICE))
            jobs = [
                f"  - {{name: s{i:04d}, command: {argv}, service: true, restart: permanent,"
                " stop: {signal: TERM, grace: 5s}}"
                for i in range(services)
            ]
        (directory / "jobs.yaml").write_text("\n".join(head + jobs) + "\n")
        cli = [sys.executable, str(ROOT / "cli.py"), "--runtime", self.runtime, "daemon"]
        return [*cli, "jobs.yaml"], _clean_env(PYTHONPATH=str(ROOT))

    def running(self, directory: Path) -> int | None:
        from supervision import JobvisorError  # noqa: PLC0415
        from supervision._client import request  # noqa: PLC0415 - jobvisor's own client

        try:
            reply = request(directory / ".jobvisor", {"op": "status"}, timeout=10)
        except (OSError, ValueError, JobvisorError):
            return None
        if not reply.get("ok"):
            return None
        return sum(1 for c in reply["result"]["children"] if c["state"] == "running")

    def attempts(self, directory: Path) -> list[tuple[float, float | None]]:
        db = directory / ".jobvisor" / "journal.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT started_at, ended_at FROM attempts WHERE path = 'fast' ORDER BY id"
            ).fetchall()
        return [(float(s), float(e) if e is not None else None) for s, e in rows]


def _wait_running(side: Side, popen: subprocess.Popen[bytes], directory: Path, want: int) -> None:
    """Until the supervisor answers and ``want`` children run (polled: no event crosses over)."""
    deadline = time.monotonic() + READY_DEADLINE
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise BenchError(
                f"{side.label} exited with {popen.returncode} before it was ready:\n"
                + tail(directory / "output.log")
            )
        count = side.running(directory)
        if count is not None and count >= want:
            return
        time.sleep(0.05)
    raise BenchError(
        f"{side.label}: {want} children not running after {READY_DEADLINE:g} s:\n"
        + tail(directory / "output.log")
    )


def _stop(side: Side, popen: subprocess.Popen[bytes], directory: Path) -> float:
    try:
        return stop_and_time(popen, STOP_DEADLINE)
    except Exception as exc:
        raise BenchError(
            f"{side.label} did not exit within {STOP_DEADLINE:g} s of SIGTERM ({exc}):\n"
            + tail(directory / "output.log")
        ) from exc


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few values p99 is simply the largest one; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure_restart(side: Side, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vs-supd-") as tmp:
        directory = Path(tmp)
        argv, env = side.prepare(directory, 0)
        with launched(argv, directory, env) as popen:
            _wait_running(side, popen, directory, 0)
            time.sleep(WARMUP)
            t0, c0 = time.time(), cpu_seconds(popen.pid)
            time.sleep(seconds)
            t1, c1 = time.time(), cpu_seconds(popen.pid)
            _stop(side, popen, directory)
        attempts = side.attempts(directory)
    inside = [(s, e) for s, e in attempts if t0 <= s < t1]
    if not inside:
        raise BenchError(f"{side.label}: no start in the {seconds:g} s window")
    starts = [s for s, _ in inside]
    cycles = [(b - a) * 1000 for a, b in itertools.pairwise(starts)]
    # From the exit the supervisor noted to the next start: its own share of a cycle.
    gaps = [(b[0] - a[1]) * 1000 for a, b in itertools.pairwise(inside) if a[1] is not None]
    count = len(inside)
    return {
        "restarts": count,
        "mean_ms": (t1 - t0) / count * 1000,
        "p50_ms": _pct(cycles, 0.5),
        "p99_ms": _pct(cycles, 0.99),
        "gap_ms": _pct(gaps, 0.5),
        "cpu_ms": (c1 - c0) / count * 1000,
        "cpu_pct": (c1 - c0) / (t1 - t0) * 100,
    }


def measure_idle(side: Side, services: int, seconds: float, settle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="vs-supd-") as tmp:
        directory = Path(tmp)
        argv, env = side.prepare(directory, services)
        begin = time.perf_counter()
        with launched(argv, directory, env) as popen:
            _wait_running(side, popen, directory, services)
            up = time.perf_counter() - begin
            time.sleep(settle)
            below = descendants(popen.pid)
            helpers = [p for p in below if p.argv != SERVICE]
            t0, c0 = time.perf_counter(), cpu_seconds(popen.pid)
            h0 = sum(cpu_seconds(p.pid) for p in helpers)
            time.sleep(seconds)
            t1, c1 = time.perf_counter(), cpu_seconds(popen.pid)
            h1 = sum(cpu_seconds(p.pid) for p in helpers)
            rss, pss, tasks = rss_kib(popen.pid), pss_kib(popen.pid), threads(popen.pid)
            helper_pss = sum(pss_kib(p.pid) or 0 for p in helpers)
            seen = sum(1 for p in below if p.argv == SERVICE)
            stopped = _stop(side, popen, directory)
            left = [p for p in below if p.alive()]
            gone = _gone_after(left)
    if seen != services:
        raise BenchError(f"{side.label}: {seen} '{' '.join(SERVICE)}' below it, not {services}")
    return {
        "up_s": up,
        "idle_cpu_ms": (c1 - c0) * 1000,
        "idle_cpu_pct": (c1 - c0) / (t1 - t0) * 100,
        "rss_mib": rss / 1024,
        "pss_mib": pss / 1024 if pss is not None else math.nan,
        "threads": tasks,
        "helpers": len(helpers),
        "helper_pss_mib": helper_pss / 1024,
        "helper_cpu_ms": (h1 - h0) * 1000,
        "stop_s": stopped,
        "left_services": sum(1 for p in left if p.argv == SERVICE),
        "left_helpers": sum(1 for p in left if p.argv != SERVICE),
        "gone_s": gone,
    }


def measure_base(side: Side, settle: float) -> dict[str, float]:
    """RSS and PSS with one service: what the supervisor costs before it has work."""
    with tempfile.TemporaryDirectory(prefix="vs-supd-") as tmp:
        directory = Path(tmp)
        argv, env = side.prepare(directory, 1)
        with launched(argv, directory, env) as popen:
            _wait_running(side, popen, directory, 1)
            time.sleep(settle)
            rss, pss = rss_kib(popen.pid), pss_kib(popen.pid)
            _stop(side, popen, directory)
    return {"base_rss_mib": rss / 1024, "base_pss_mib": pss / 1024 if pss else math.nan}


def _gone_after(left: list[Proc]) -> float:
    """Seconds until every process in ``left`` is gone (polled; nothing else signals it)."""
    start = time.perf_counter()
    deadline = start + 10
    while any(p.alive() for p in left):
        if time.perf_counter() > deadline:
            names = ", ".join(f"{p.pid} {' '.join(p.argv)[:60]}" for p in left if p.alive())
            raise BenchError(f"still alive 10 s after their supervisor exited: {names}")
        time.sleep(0.005)
    return time.perf_counter() - start


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    label: str
    fmt: str
    ratio: bool = True


RESTART_ROWS = (
    Row("restarts", "starts of `/bin/true` in the window", "{:.0f}", ratio=False),
    Row("mean_ms", "mean time per restart (window / starts)", "{:.2f} ms"),
    Row("p50_ms", "start-to-start p50", "{:.2f} ms"),
    Row("p99_ms", "start-to-start p99", "{:.2f} ms"),
    Row("gap_ms", "noted exit to next start, p50", "{:.2f} ms"),
    Row("cpu_ms", "supervisor CPU per restart (10 ms ticks)", "{:.2f} ms"),
    Row("cpu_pct", "supervisor CPU while restarting", "{:.0f} % of a core", ratio=False),
)
IDLE_ROWS = (
    Row("up_s", "launch until all N run", "{:.2f} s"),
    Row("idle_cpu_ms", "supervisor CPU over the idle window", "{:.0f} ms"),
    Row("idle_cpu_pct", "… as a share of one core", "{:.2f} %"),
    Row("rss_mib", "supervisor RSS", "{:.1f} MiB"),
    Row("pss_mib", "supervisor PSS", "{:.1f} MiB"),
    Row("base_rss_mib", "supervisor RSS with 1 service", "{:.1f} MiB"),
    Row("per_service_kib", "RSS per further service", "{:.0f} KiB"),
    Row("threads", "OS threads in the supervisor", "{:.0f}", ratio=False),
    Row("helpers", "helper processes (not services)", "{:.0f}", ratio=False),
    Row("helper_pss_mib", "… their PSS", "{:.1f} MiB", ratio=False),
    Row("helper_cpu_ms", "… their CPU over the idle window", "{:.0f} ms", ratio=False),
    Row("stop_s", "SIGTERM until the supervisor exited", "{:.3f} s"),
    Row("left_services", "services still alive then", "{:.0f}", ratio=False),
    Row("left_helpers", "helpers still alive then", "{:.0f}", ratio=False),
    Row("gone_s", "… until the last was gone", "{:.3f} s", ratio=False),
)


def _cell(row: Row, values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    text = row.fmt.format(statistics.median(values))
    if len(values) > 1 and min(values) != max(values):
        number = row.fmt.split(" ")[0]
        text += f" ({number.format(min(values))} to {number.format(max(values))})"
    return text


def _ratio(row: Row, ours: list[float], theirs: list[float]) -> str:
    ours = [v for v in ours if not math.isnan(v)]
    theirs = [v for v in theirs if not math.isnan(v)]
    if not row.ratio or not ours or not theirs or statistics.median(theirs) == 0:
        return ""
    ratio = statistics.median(ours) / statistics.median(theirs)
    if ratio == 0 or ratio >= 0.1:
        return f"{ratio:.2f}x"
    return f"{ratio:.4f}x (1/{1 / ratio:.0f})"


def table(
    sides: list[Side],
    results: dict[str, dict[str, list[float]]],
    sections: list[tuple[str, tuple[Row, ...]]],
) -> str:
    baseline = sides[0].label
    header = ["what", baseline]
    for side in sides[1:]:
        header += [side.label, "ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, rows in sections:
        lines.append(f"| **{title}** |" + " |" * (len(header) - 1))
        for row in rows:
            theirs = results[baseline].get(row.key, [])
            cells = [row.label, _cell(row, theirs)]
            for side in sides[1:]:
                ours = results[side.label].get(row.key, [])
                cells += [_cell(row, ours), _ratio(row, ours, theirs)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0, help="each measuring window")
    parser.add_argument("--settle", type=float, default=2.0, help="idle time before measuring")
    parser.add_argument("--what", default="restart,idle", help="restart, idle or both (comma)")
    args = parser.parse_args(argv)
    for name, low in (("rounds", 1), ("services", 1), ("seconds", 0.5), ("settle", 0)):
        if getattr(args, name) < low:
            parser.error(f"--{name}: expected a number >= {low:g}, got {getattr(args, name):g}")
    args.what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = sorted(set(args.what) - {"restart", "idle"})
    if unknown or not args.what:
        parser.error(f"--what: expected restart and/or idle, got {','.join(unknown) or 'none'}")
    return args


def run(args: argparse.Namespace) -> None:
    sides: list[Side] = [Supervisord(supd.ensure_installed())]
    runtimes = ("threads", "gevent") if args.runtime == "both" else (args.runtime,)
    sides += [Jobvisor(runtime) for runtime in runtimes]
    results: dict[str, dict[str, list[float]]] = {side.label: {} for side in sides}
    for number in range(args.rounds):
        # Each round starts with another side, so drift does not always hit the same one.
        order = sides[number % len(sides) :] + sides[: number % len(sides)]
        for side in order:
            measured: dict[str, float] = {}
            if "restart" in args.what:
                measured |= measure_restart(side, args.seconds)
            if "idle" in args.what:
                measured |= measure_idle(side, args.services, args.seconds, args.settle)
                measured |= measure_base(side, args.settle)
                extra = (measured["rss_mib"] - measured["base_rss_mib"]) * 1024
                measured["per_service_kib"] = extra / max(1, args.services - 1)
            for key, value in measured.items():
                results[side.label].setdefault(key, []).append(value)
            print(
                f"  round {number + 1} {side.label}: "
                + json.dumps({k: round(v, 3) for k, v in measured.items()}),
                file=sys.stderr,
            )
    sections: list[tuple[str, tuple[Row, ...]]] = []
    if "restart" in args.what:
        title = f"restart a command that exits at once ({args.seconds:g} s window)"
        sections.append((title, RESTART_ROWS))
    if "idle" in args.what:
        title = (
            f"{args.services} idle `sleep 3600` services ({args.seconds:g} s window), then SIGTERM"
        )
        sections.append((title, IDLE_ROWS))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"vs_supervisord: {', '.join(s.label for s in sides)}; median of {args.rounds} round(s)"
        f"{' (min to max)' if args.rounds > 1 else ''}; {machine()}; load {load}"
    )
    print(
        "Figures are of the supervisor process only (user+sys CPU from /proc/PID/stat, "
        "VmRSS, smaps_rollup Pss), not of its children; ratio = jobvisor / supervisord."
    )
    print(table(sides, results, sections))


def main() -> int:
    args = parse_args()
    try:
        run(args)
    except (BenchError, supd.SetupError) as exc:
        print(f"vs_supervisord: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vs_supervisord: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
