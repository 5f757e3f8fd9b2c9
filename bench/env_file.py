"""One `env_file` of V variables named by N jobs: what loading the manifest costs.

Two fresh processes per case, their wall time, CPU and peak RSS taken from `wait4`:
`jobvisor validate`, and what a daemon or `run` does before its first start, the
manifest loaded and every job's spec hash made (`job_hashes`). Each job names the
file itself (`--how own`, each its own `env_file:` field) or inherits it from
`defaults:` (`--how defaults`). `--root` runs another checkout (before a change).

    nice -n 19 python bench/env_file.py [--jobs 2000] [--vars 2000] [--how own] [--root ../main]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD = (
    "import sys; from supervision._manifest import load_manifest; "
    "from supervision._journal import job_hashes; "
    "print(len(job_hashes(load_manifest(sys.argv[1]).root)))"
)


def timed(argv: list[str], root: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one run of ``argv``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def generated(jobs: int, variables: int, how: str, folder: Path) -> Path:
    env = folder / "big.env"
    env.write_text("".join(f"VAR_{i}=value-{i}\n" for i in range(variables)))
    env.chmod(0o600)
    lines = ["version: 1"]
    if how == "defaults":
        lines += ["defaults: {env_file: big.env}", "jobs:"]
        lines += [f"  - {{name: job{i}, command: echo {i}}}" for i in range(jobs)]
    else:
        lines += ["jobs:"]
        lines += [
            f"  - {{name: job{i}, command: echo {i}, env_file: big.env}}" for i in range(jobs)
        ]
    path = folder / "jobs.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--vars", type=int, default=2000)
    parser.add_argument("--how", choices=("own", "defaults"), default="own")
    parser.add_argument("--root", default=str(ROOT), help="the checkout to run (before: ../main)")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = str(generated(args.jobs, args.vars, args.how, Path(tmp)))
        cases = {
            "validate": [sys.executable, str(root / "cli.py"), "validate", manifest],
            "load + spec hashes": [sys.executable, "-c", LOAD, manifest],
        }
        print(f"{args.jobs} jobs, one env file of {args.vars} variables ({args.how}), {root}")
        for name, argv in cases.items():
            wall, cpu, rss = timed(argv, root)
            print(f"  {name:20} wall {wall:7.2f} s  CPU {cpu:7.2f} s  peak RSS {rss:8.1f} MiB")


if __name__ == "__main__":
    main()
