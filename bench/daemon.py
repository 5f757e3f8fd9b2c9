"""Daemon figures: `status --json` latency with 1,000 jobs, and RSS with 10,000 idle jobs.

Both start a real `jobvisor daemon` on a generated manifest of idle periodic
jobs (`every: 1h`, so each has run once and waits) and wait for its
sd_notify READY on a datagram socket of our own.

- latency: `status` over the control socket, against a request the daemon
  refuses at once (the same socket round trip with no tree work), interleaved;
  the ratio is what building the status of 1,000 children costs.
- rss: the daemon's VmRSS once ready, under gevent by default (target <= 300 MiB
  for 10,000 jobs), with the RSS of the same daemon on an empty manifest as the
  baseline.

    python bench/daemon.py latency [--jobs 1000] [--requests 200] [--runtime threads|gevent]
    python bench/daemon.py rss [--jobs 10000] [--runtime gevent]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def manifest(jobs: int, runtime: str) -> str:
    lines = [f"version: 1\nruntime: {runtime}\nlogging: {{level: none}}\njobs:"]
    lines += [f"  - {{name: j{i}, python: 'math:sqrt', args: [4], every: 1h}}" for i in range(jobs)]
    if jobs == 0:
        lines = [f"version: 1\nruntime: {runtime}\nlogging: {{level: none}}\njobs:"]
        lines.append("  - {name: only, python: 'math:sqrt', args: [4], every: 1h}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_daemon(directory: Path, text: str):
    (directory / "jobs.yaml").write_text(text)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(directory / "notify.sock"))
    notify.settimeout(600)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(directory / "notify.sock")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "daemon"],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        start = time.perf_counter()
        while b"READY=1" not in notify.recv(4096):
            pass
        yield proc, time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(600)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        notify.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def ask(path: Path, payload: bytes) -> float:
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    elapsed = time.perf_counter() - start
    json.loads(data)
    return elapsed


def latency(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_daemon(Path(tmp), manifest(args.jobs, args.runtime)) as (_, ready),
    ):
        sock = Path(tmp) / ".jobvisor" / "control.sock"
        status = b'{"v": 1, "op": "status"}\n'
        refused = b'{"v": 1, "op": "nothing"}\n'
        ours, floor = [], []
        for _ in range(args.requests):
            ours.append(ask(sock, status))
            floor.append(ask(sock, refused))
    o, f = statistics.median(ours), statistics.median(floor)
    print(
        f"daemon status latency, runtime={args.runtime}, {args.jobs} jobs, "
        f"{args.requests} requests each"
    )
    print(f"  ready after {ready:.1f} s")
    print(f"  refused request (socket round trip)  median {f * 1000:8.2f} ms")
    print(f"  status --json                        median {o * 1000:8.2f} ms")
    print(f"  ratio status/round-trip = {o / f:.1f}x")


def rss(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_daemon(Path(tmp), manifest(0, args.runtime)) as (proc, _),
    ):
        base = rss_kib(proc.pid)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_daemon(Path(tmp), manifest(args.jobs, args.runtime)) as (proc, ready),
    ):
        full = rss_kib(proc.pid)
    print(
        f"daemon RSS, runtime={args.runtime}, {args.jobs} idle periodic jobs "
        f"(ready after {ready:.1f} s)"
    )
    print(f"  one job     {base / 1024:8.1f} MiB")
    print(
        f"  {args.jobs} jobs {full / 1024:8.1f} MiB ({(full - base) / args.jobs:.1f} KiB per job)"
    )
    verdict = "met" if full / 1024 <= 300 else "MISSED"
    print(f"  target <= 300 MiB: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("latency", "rss"))
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runtime", choices=("threads", "gevent"))
    args = parser.parse_args()
    if args.what == "latency":
        args.jobs = args.jobs or 1000
        args.runtime = args.runtime or "threads"
        latency(args)
    else:
        args.jobs = args.jobs or 10000
        args.runtime = args.runtime or "gevent"
        rss(args)


if __name__ == "__main__":
    main()
