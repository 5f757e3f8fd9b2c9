"""Control commands as a user runs them: `jobvisor status` and `history` against `python -c pass`.

A real `jobvisor daemon` runs a manifest of a few jobs; then fresh processes of
`jobvisor status`, `jobvisor history` and the bare interpreter (`python -c
pass`) run interleaved, so that drift hits all alike, and the median wall time
of each is compared. Targets (issue 10): `status` <= 100 ms and <= 3.5x
`python -c pass`. `validate` of the same manifest is shown for reference
(`bench/validate.py` has its own comparison).

    python bench/control.py [--runs 21] [--jobs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon import manifest, running_daemon

ROOT = Path(__file__).resolve().parent.parent
# Users' interpreters cache bytecode; a sandbox that sets PYTHONDONTWRITEBYTECODE would make
# every run recompile the package and measure the compiler instead.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
TARGET_MS, TARGET_RATIO = 100.0, 3.5


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of ``argv``, in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, str(ROOT / "cli.py")]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "jobvisor status": [*cli, "status"],
        "jobvisor history": [*cli, "history", "--limit", "20"],
        "jobvisor validate": [*cli, "validate"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        with running_daemon(directory, manifest(args.jobs, "threads")):
            for argv in commands.values():
                timed(argv, directory)  # warm the page cache and the bytecode cache
            wall: dict[str, list[float]] = {name: [] for name in commands}
            cpu: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    w, c = timed(argv, directory)
                    wall[name].append(w * 1000)
                    cpu[name].append(c * 1000)
    base = "python -c pass"
    print(f"control commands, daemon with {args.jobs} jobs, {args.runs} runs each, interleaved")
    print(
        f"  {'':<18} {'wall ms (min-max)':>24}  {'CPU ms':>7}  ratio to {base}: medians, per pair"
    )
    for name in commands:
        pairs = [w / b for w, b in zip(wall[name], wall[base], strict=True)]
        low, high = min(wall[name]), max(wall[name])
        print(
            f"  {name:<18} {statistics.median(wall[name]):7.1f} ({low:5.1f}-{high:5.1f})"
            f"  {statistics.median(cpu[name]):7.1f}"
            f"  {statistics.median(wall[name]) / statistics.median(wall[base]):5.2f}x"
            f" {statistics.median(pairs):5.2f}x"
        )
    status = statistics.median(wall["jobvisor status"])
    ratio = statistics.median(
        w / b for w, b in zip(wall["jobvisor status"], wall[base], strict=True)
    )
    met = status <= TARGET_MS and ratio <= TARGET_RATIO
    print(
        f"  status: {status:.1f} ms (target <= {TARGET_MS:g} ms), "
        f"{ratio:.2f}x python -c pass per pair (target <= {TARGET_RATIO:g}x): "
        + ("met" if met else "NOT met")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
