"""Under gevent: a command loop's wait in the hub (as jobvisor does) vs on a native thread.

A stand-alone loop, monkey-patched as the daemon is, restarting ``/bin/true`` as a command
attempt does (vfork, two output pipes, exec's error pipe, a session of its own):

- ``hub``: one greenlet spawns, then the supervisor's work (``--sup`` us of Python) runs in
  the hub's thread beside the new child (a restart in place tells the supervisor after the
  spawn), then it waits for the pipes' ends and the exit on io watchers (a pidfd), reaps,
  and does ``--cmd`` us of its own Python (the attempt's report);
- ``native``: a native thread spawns, waits in ``poll`` on the pipes and a pidfd, reaps,
  does ``--cmd`` us, and hands each report to the hub through an async watcher; a greenlet
  does the supervisor's ``--sup`` us for each.

Rounds alternate; the period start to start and this process's CPU per run are medians.
bench/README.md ("stop 47") has the figures: the native thread is no faster, and costs more.

    python bench/gevent_native.py [--cmd 100] [--sup 140] [--rounds 5] [--runs 2000]
"""

from __future__ import annotations

import gevent.monkey

gevent.monkey.patch_all()

import _posixsubprocess  # type: ignore[import-not-found]  # noqa: E402
import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from _common import machine  # noqa: E402
from gevent.monkey import get_original  # noqa: E402
from gevent.socket import wait_read  # noqa: E402

_VFORK = (True,) if sys.version_info < (3, 14) else ()
# The real calls: gevent's os.close closes an fd later, which kept exec's error pipe open.
real_close = get_original("os", "close")
real_poll = get_original("select", "poll")
real_waitpid = get_original("os", "waitpid")
start_new_thread = get_original("_thread", "start_new_thread")
allocate_lock = get_original("_thread", "allocate_lock")


def _busy(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def _spawn(devnull: int) -> tuple[int, int, int]:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    er, ew = os.pipe()
    # As actors/_spawn.py calls it: close_fds, restore_signals and call_setsid are True.
    call = (
        [b"/bin/true"], [b"/bin/true"], True, (ew,), None, None, devnull, -1, -1, w1,
        -1, w2, er, ew, True, True, -1, None, None, None, -1, None, *_VFORK,
    )  # fmt: skip
    pid = _posixsubprocess.fork_exec(*call)
    real_close(ew)
    os.read(er, 50000)
    for fd in (er, w1, w2):
        real_close(fd)
    return pid, r1, r2


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # libev's SIGCHLD handler took it
        real_waitpid(pid, 0)


def in_hub(runs: int, cmd: float, sup: float, devnull: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(runs):
        pid, r1, r2 = _spawn(devnull)
        _busy(sup)  # the supervisor's turn, in the hub's thread, beside the new child
        pidfd = os.pidfd_open(pid)
        for fd in (r1, r2):
            os.set_blocking(fd, False)
            while True:
                wait_read(fd)
                if not os.read(fd, 65536):
                    break
            real_close(fd)
        wait_read(pidfd)
        _reap(pid)
        real_close(pidfd)
        _busy(cmd)
    return (time.perf_counter() - t0) / runs * 1e6, (time.process_time() - c0) / runs * 1e6


def on_native_thread(runs: int, cmd: float, sup: float, devnull: int) -> tuple[float, float]:
    watcher = gevent.get_hub().loop.async_()
    reports: list[int] = []
    finished = allocate_lock()
    finished.acquire()

    def take() -> None:
        while reports:
            reports.pop()
            _busy(sup)

    def loop() -> None:
        for _ in range(runs):
            pid, r1, r2 = _spawn(devnull)
            pidfd = os.pidfd_open(pid)
            poll = real_poll()
            for fd in (r1, r2, pidfd):
                poll.register(fd, select.POLLIN)
            live, exited = {r1, r2}, False
            while live or not exited:
                for fd, _ in poll.poll():
                    if fd == pidfd:
                        exited = True
                        poll.unregister(fd)
                    elif not os.read(fd, 65536):
                        poll.unregister(fd)
                        live.discard(fd)
            _reap(pid)
            for fd in (r1, r2, pidfd):
                real_close(fd)
            _busy(cmd)
            reports.append(1)
            watcher.send()
        finished.release()

    watcher.start(take)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        start_new_thread(loop, ())
        while not finished.acquire(blocking=False):
            gevent.sleep(0.001)
        return (time.perf_counter() - t0) / runs * 1e6, (time.process_time() - c0) / runs * 1e6
    finally:
        watcher.stop()
        watcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cmd", type=float, default=100.0, help="us of the attempt's Python")
    parser.add_argument("--sup", type=float, default=140.0, help="us of the supervisor's")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    devnull = os.open(os.devnull, os.O_RDWR)
    sides = {"hub": in_hub, "native": on_native_thread}
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    print(f"gevent_native: cmd {args.cmd:g} us, sup {args.sup:g} us; {machine()}")
    try:
        for n in range(args.rounds):
            for name in sides if n % 2 == 0 else reversed(sides):
                got[name].append(sides[name](args.runs, args.cmd, args.sup, devnull))
                period, cpu = got[name][-1]
                print(f"  round {n + 1} {name:7s} period {period:7.1f} us  cpu {cpu:6.1f} us")
    finally:
        real_close(devnull)
    for name, values in got.items():
        period = statistics.median(p for p, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:7s} period {period:7.1f} us  cpu {cpu:6.1f} us")


if __name__ == "__main__":
    main()
