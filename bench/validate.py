"""`jobvisor validate jobs.yaml` wall time against `python -c "import yaml"`.

Both run as fresh processes (interpreter start included), interleaved, and the
median of each is compared: the ratio is what validation costs beyond the
smallest process that can read YAML at all.

    python bench/validate.py [--runs 15] [--manifest jobs.yaml]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Users' interpreters cache bytecode; a sandbox that sets PYTHONDONTWRITEBYTECODE would make
# every run recompile the package and measure the compiler instead.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--manifest", default="jobs.yaml")
    args = parser.parse_args()
    ours = [sys.executable, str(ROOT / "cli.py"), "validate", args.manifest]
    base = [sys.executable, "-c", "import yaml"]
    timed(ours)
    timed(base)  # warm the page cache for both
    ours_t, base_t = [], []
    for _ in range(args.runs):
        ours_t.append(timed(ours))
        base_t.append(timed(base))
    o, b = statistics.median(ours_t), statistics.median(base_t)
    print(f"validate, {args.runs} runs each, interleaved")
    print(f"  python -c 'import yaml'        median {b * 1000:7.1f} ms")
    print(f"  jobvisor validate {args.manifest:<12} median {o * 1000:7.1f} ms")
    print(f"  ratio validate/import-yaml = {o / b:.2f}x")


if __name__ == "__main__":
    main()
