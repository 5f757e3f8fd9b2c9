"""Python calls per restart in a real ``jobvisor daemon`` (cProfile counts, not times).

The daemon and its manifest are ``command_restart.py``'s (one permanent command, backoff 0,
logging at information to a file, its journal); ``_callcount_site/sitecustomize.py`` profiles
the job's thread (under gevent, the daemon's one thread) for ``--span`` s after a ``--warm``
s warm-up, counted per restart; ``--thread supervisor`` (threads) profiles the supervisor's
turns instead, counted per exit report it handles. Counts do not move with the machine's
load, as times do: this is how a change of a few calls a restart is seen. ``--also DIR``
counts another checkout's daemon too.

    python bench/call_counts.py [--runtime threads|gevent] [--command true|crash|boom]
                                [--thread job|supervisor] [--also DIR] [--top 25]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _supervisord_proc import launched, stop_and_time
from command_restart import COMMANDS, _env, _manifest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(__file__).resolve().parent / "_callcount_site"


def count(
    root: Path, runtime: str, argv: list[str], warm: float, span: float, *, thread: str = "job"
) -> list[str]:
    """The profile's lines: its total per restart first."""
    with tempfile.TemporaryDirectory(prefix="call-counts-") as tmp:
        directory = Path(tmp)
        (directory / "jobs.yaml").write_text(_manifest(argv, "information"))
        out = directory / "counts.txt"
        env = _env(root)
        env.update(
            PYTHONPATH=f"{SITE}{os.pathsep}{root}",
            CALLCOUNT_OUT=str(out),
            CALLCOUNT_WARM=str(warm),
            CALLCOUNT_SPAN=str(span),
            CALLCOUNT_THREAD=thread,
        )
        cli = [sys.executable, str(root / "cli.py"), "--runtime", runtime, "daemon", "jobs.yaml"]
        with launched(cli, directory, env) as popen:
            deadline = time.monotonic() + warm + span + 60
            while not out.exists() or not out.stat().st_size:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{root}: the daemon wrote no counts")
                time.sleep(0.1)
            time.sleep(0.1)  # the file is written in one go; let it close
            stop_and_time(popen, 60)
            return out.read_text().splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--command", choices=sorted(COMMANDS), default="true")
    parser.add_argument("--also", type=Path, help="another checkout, counted the same way")
    parser.add_argument("--warm", type=float, default=3.0)
    parser.add_argument("--span", type=float, default=5.0)
    parser.add_argument("--top", type=int, default=25, help="functions shown, by calls")
    parser.add_argument(
        "--thread",
        choices=("job", "supervisor"),
        default="job",
        help="the job's thread (gevent: the whole daemon), or the supervisor's (threads only)",
    )
    args = parser.parse_args()
    if args.thread == "supervisor" and args.runtime != "threads":
        parser.error("--thread supervisor: under gevent the job's thread is the whole daemon")
    argv = COMMANDS[args.command]
    print(f"call_counts: {args.command} ({' '.join(argv)}), {args.runtime}, {args.thread}'s thread")
    for root in (ROOT, args.also) if args.also else (ROOT,):
        lines = count(root, args.runtime, argv, args.warm, args.span, thread=args.thread)
        print(f"{root}: {lines[0]}")
        for line in lines[1 : 1 + args.top]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
