"""Three ways to start ``/bin/true`` as a command is started, against ``subprocess.run``.

Each start is what a command attempt needs: a new session, stdin from
``/dev/null``, stdout and stderr to pipes of their own, ``cwd`` set, then a
blocking ``waitpid`` and the pipes closed.

- ``spawn``: ``actors._spawn.spawn``, ours: the C ``fork_exec`` (vfork+exec)
  called directly, every fd but 0-2 closed in the child.
- ``Popen``: the standard library's ``Popen`` with the same options (what
  ``spawn`` did before: the same ``fork_exec`` with ``Popen``'s Python around it).
- ``posix_spawn``: ``os.posix_spawn`` with ``setsid`` and dup2 file actions,
  the environment passed as the ``dict`` of bytes behind ``os.environ`` (the
  ``os.environ`` mapping itself costs ~60 µs more per call). It cannot
  ``chdir`` in Python 3.11 and does not close inherited fds: measured
  without a ``cwd``, so it is favoured.
- floor: ``subprocess.run(["/bin/true"])`` (no pipes, no session).

Under ``--runtime gevent``, ``Popen``, ``subprocess.run`` and ``os.posix_spawn``
are gevent's patched ones (what code that does not avoid them gets); ours
is the same C call under either runtime.

Rounds alternate the four (the first one changes each round); figures are
medians over rounds of µs per start, wall and this process's CPU.

    python bench/spawn_paths.py [--runtime threads|gevent] [--runs 1000] [--rounds 7]
"""

from __future__ import annotations

import sys

from _common import install, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)

import argparse  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from _common import add_runtime_arg, machine  # noqa: E402

from actors._spawn import _devnull, real_os, spawn  # noqa: E402

TRUE = "/bin/true"


class Record:
    """What ``spawn`` records the process in (``actors._spawn.Spawned``)."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.lock = threading.Lock()
        self.fds: list[int] = []


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ours(runs: int, cwd: str) -> None:
    real = real_os()
    for _ in range(runs):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        record = Record()
        spawn([TRUE], cwd=cwd, env={}, stdout=out_w, stderr=err_w, record=record)
        for fd in (out_w, err_w):
            real.close(fd)
        real.waitpid(record.pids[0], 0)
        for fd in (out_r, err_r):
            real.close(fd)


def popen(runs: int, cwd: str) -> None:
    real = real_os()
    for _ in range(runs):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        proc = subprocess.Popen(
            [TRUE], stdin=_devnull(), stdout=out_w, stderr=err_w, cwd=cwd, start_new_session=True
        )
        for fd in (out_w, err_w):
            real.close(fd)
        proc.wait()
        for fd in (out_r, err_r):
            real.close(fd)


def posix_spawn(runs: int, cwd: str) -> None:
    del cwd  # it has no chdir: measured without one
    real = real_os()
    environ = os.environ._data  # type: ignore[attr-defined]
    devnull = _devnull()
    for _ in range(runs):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        pid = os.posix_spawn(TRUE, [TRUE], environ, file_actions=actions, setsid=True)
        for fd in (out_w, err_w):
            real.close(fd)
        real.waitpid(pid, 0)
        for fd in (out_r, err_r):
            real.close(fd)


def floor(runs: int, cwd: str) -> None:
    del cwd
    for _ in range(runs):
        subprocess.run([TRUE], check=True)


SIDES = {
    "spawn (fork_exec direct)": ours,
    "Popen": popen,
    "os.posix_spawn": posix_spawn,
    "subprocess.run floor": floor,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    names = list(SIDES)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as cwd:
        for side in SIDES.values():
            side(50, cwd)  # warm-up
        for number in range(args.rounds):
            for name in names[number % len(names) :] + names[: number % len(names)]:
                t0, c0 = time.perf_counter(), _cpu()
                SIDES[name](args.runs, cwd)
                wall[name].append((time.perf_counter() - t0) / args.runs * 1e6)
                cpu[name].append((_cpu() - c0) / args.runs * 1e6)
    load = os.getloadavg()[0]
    print(f"spawn_paths, runtime={RUNTIME}, {args.runs} starts x {args.rounds} rounds; {machine()}")
    base = statistics.median(cpu[names[0]])
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:<26} {w:7.1f} µs/start wall   cpu {c:6.1f} µs ({c / base:.2f}x ours)")
    print(f"  load average (1 min) at the end {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
