"""`jobvisor validate` wall time and peak memory against `python -c "import yaml"`.

Both run as fresh processes (interpreter start included), interleaved, and the
median of each is compared: the ratio is what validation costs beyond the
smallest process that can read YAML at all. `--jobs N` validates a generated
manifest of N one-line command jobs instead of `--manifest` (issue 10: 10,000
jobs in at most 1 s); the peak RSS of each run is taken from `wait4`.

    python bench/validate.py [--runs 15] [--manifest jobs.yaml]
    python bench/validate.py --jobs 10000 [--runs 5] [--cli ../main/cli.py]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_10K = 1.0  # seconds for 10,000 jobs (issue 10)


# Users' interpreters cache bytecode; a sandbox that sets PYTHONDONTWRITEBYTECODE would make
# every run recompile the package and measure the compiler instead.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one run of ``argv``."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def generated(jobs: int, folder: Path) -> Path:
    """A manifest of ``jobs`` one-line command jobs, as a big real one would be written."""
    path = folder / f"jobs-{jobs}.yaml"
    lines = ["version: 1", "jobs:"]
    lines += [f"  - {{name: job{i}, command: echo {i}}}" for i in range(jobs)]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--manifest", default="jobs.yaml")
    parser.add_argument("--jobs", type=int, default=0, help="validate N generated jobs")
    parser.add_argument(
        "--cli", default=str(ROOT / "cli.py"), help="the cli.py to run (another checkout: before)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = str(generated(args.jobs, Path(tmp))) if args.jobs else args.manifest
        ours = [sys.executable, args.cli, "validate", manifest]
        base = [sys.executable, "-c", "import yaml"]
        timed(ours)
        timed(base)  # warm the page cache for both
        runs: dict[str, list[tuple[float, float, float]]] = {"ours": [], "base": []}
        for _ in range(args.runs):
            runs["ours"].append(timed(ours))
            runs["base"].append(timed(base))
    (o, o_cpu, o_rss), (b, b_cpu, b_rss) = (
        tuple(statistics.median(column) for column in zip(*runs[side], strict=True))
        for side in ("ours", "base")
    )
    shown = f"{args.jobs} generated jobs" if args.jobs else args.manifest
    print(f"validate, {args.runs} runs each, interleaved")
    print(
        f"  python -c 'import yaml'  median wall {b * 1000:7.1f} ms  "
        f"CPU {b_cpu * 1000:7.1f} ms  peak RSS {b_rss:6.1f} MiB"
    )
    print(
        f"  jobvisor validate ({shown})  median wall {o * 1000:7.1f} ms  "
        f"CPU {o_cpu * 1000:7.1f} ms  peak RSS {o_rss:6.1f} MiB"
    )
    print(f"  ratio validate/import-yaml = {o / b:.2f}x wall, {o_cpu / b_cpu:.2f}x CPU")
    if args.jobs == 10_000:
        verdict = "met" if o <= TARGET_10K else "missed"
        print(f"  target <= {TARGET_10K:.1f} s wall for 10,000 jobs: {verdict}")


if __name__ == "__main__":
    main()
