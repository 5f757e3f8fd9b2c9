"""What a restart costs in CPU by the shape of the supervisor alone, with no supervisor in it.

Issue 15's command goals are on the daemon's CPU per restart. This asks how much
of that the shape costs by itself: how many threads a restart passes through,
and whether one is created per incarnation. Each shape restarts one command
for ``--seconds``, in this process, with the least Python that shape needs
(no logging, journal, events or policy); its CPU is this process's
(``RUSAGE_SELF``: every thread, not the children):

- ``floor``: ``subprocess.run(argv)`` in a loop, as in ``command_restart.py``.
- ``inline``: the attempt as jobvisor makes one (stdout and stderr pipes, a
  pidfd, ``poll`` until the exit and both EOFs, ``waitpid``, the fds closed),
  restarted in the same thread: the pattern without hops.
- ``threads``: jobvisor's shape before issue 15's fifth pass. A supervisor
  thread with a ``SimpleQueue`` inbox; each incarnation a new thread that runs
  one attempt and puts its exit in the inbox; the supervisor then starts the
  next incarnation's thread, the cheapest way there is
  (``_thread.start_new_thread``: no waiting for it to run, like ``_Task``).
- ``pool``: the same, but each incarnation runs on one long-lived worker
  thread, handed to it through a queue: a thread reused, not created (what a
  command's incarnations do since that pass).
- ``reaper``: one thread waits for every command (``epoll`` over pidfds and
  pipes) and puts each exit in the supervisor's inbox; the supervisor spawns
  the next command itself. No thread per incarnation, two threads per restart.

Rounds alternate the shapes (the order rotates each round); figures are medians
over rounds; ratios are to the floor's medians.

    python bench/restart_skeleton.py [--what true,crash,sleep] [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import _thread
import argparse
import os
import queue
import resource
import select
import statistics
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from _common import machine

if TYPE_CHECKING:
    from collections.abc import Callable

COMMANDS = {
    "true": ["/bin/true"],
    "crash": [sys.executable, "-I", "-S", "-c", "raise SystemExit(1)"],
    "sleep": ["/bin/sleep", "0.01"],
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Running:
    """One started command: its pid, pidfd and the read ends of its two pipes."""

    __slots__ = ("owned", "pid", "pidfd", "pipes")

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)],
                setsid=True,
            )
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pidfd = os.pidfd_open(self.pid)
        self.pipes = [out_r, err_r]
        self.owned = (self.pidfd, out_r, err_r)

    def read(self, fd: int) -> bool:
        """Read what ``fd`` holds; False at its end."""
        return bool(os.read(fd, 65536))

    def close(self, fd: int) -> None:
        self.pipes.remove(fd)
        os.close(fd)

    def reap(self) -> int:
        os.close(self.pidfd)
        for fd in self.pipes:
            os.close(fd)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def _attempt(argv: list[str], env: dict[str, str]) -> int:
    """Run one attempt in this thread, the way a jobvisor incarnation does."""
    running = _Running(argv, env)
    poller = select.poll()
    for fd in (running.pidfd, *running.pipes):
        poller.register(fd, select.POLLIN)
    exited = False
    while not exited or running.pipes:
        for fd, _ in poller.poll():
            if fd == running.pidfd:
                exited = True
                poller.unregister(fd)
            elif not running.read(fd):
                poller.unregister(fd)
                running.close(fd)
    return running.reap()


def floor(argv: list[str], env: dict[str, str], until: float) -> int:
    runs = 0
    while time.perf_counter() < until:
        subprocess.run(argv, env=env, check=False)
        runs += 1
    return runs


def inline(argv: list[str], env: dict[str, str], until: float) -> int:
    runs = 0
    while time.perf_counter() < until:
        _attempt(argv, env)
        runs += 1
    return runs


def threads(argv: list[str], env: dict[str, str], until: float) -> int:
    inbox: queue.SimpleQueue[int] = queue.SimpleQueue()

    def incarnation() -> None:
        inbox.put(_attempt(argv, env))

    def start() -> None:
        # The cheapest start there is: no Thread object, no waiting for the thread to run.
        _thread.start_new_thread(incarnation, ())

    return _supervise(inbox, start, until)


def pool(argv: list[str], env: dict[str, str], until: float) -> int:
    inbox: queue.SimpleQueue[int] = queue.SimpleQueue()
    jobs: queue.SimpleQueue[str] = queue.SimpleQueue()

    def worker() -> None:
        while jobs.get() == "run":
            inbox.put(_attempt(argv, env))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        return _supervise(inbox, lambda: jobs.put("run"), until)
    finally:
        jobs.put("stop")
        thread.join()


def reaper(argv: list[str], env: dict[str, str], until: float) -> int:
    inbox: queue.SimpleQueue[int] = queue.SimpleQueue()
    epoll = select.epoll()
    by_fd: dict[int, _Running] = {}
    exited: set[_Running] = set()
    stop_r, stop_w = os.pipe()
    epoll.register(stop_r, select.EPOLLIN)

    def reap_loop() -> None:
        while True:
            for fd, _ in epoll.poll():
                if fd == stop_r:
                    return
                running = by_fd[fd]
                if fd == running.pidfd:
                    exited.add(running)
                    epoll.unregister(fd)
                elif not running.read(fd):
                    epoll.unregister(fd)
                    running.close(fd)
                if running in exited and not running.pipes:
                    exited.discard(running)
                    for owned in running.owned:
                        by_fd.pop(owned, None)
                    inbox.put(running.reap())

    def start() -> None:
        running = _Running(argv, env)
        for fd in running.owned:
            by_fd[fd] = running
            epoll.register(fd, select.EPOLLIN)

    loop = threading.Thread(target=reap_loop, daemon=True)
    loop.start()
    try:
        return _supervise(inbox, start, until)
    finally:
        os.write(stop_w, b"x")
        loop.join()
        for fd in (stop_r, stop_w):
            os.close(fd)
        epoll.close()


def _supervise(inbox: queue.SimpleQueue[int], start: Callable[[], None], until: float) -> int:
    """A supervisor thread: on each exit, start the next incarnation, until ``until``."""
    restarts = [0]
    done = threading.Event()

    def loop() -> None:
        start()
        while True:
            inbox.get()
            if time.perf_counter() >= until:
                done.set()
                return
            restarts[0] += 1
            start()

    threading.Thread(target=loop, daemon=True).start()
    done.wait()
    return restarts[0]


SHAPES: dict[str, Callable[[list[str], dict[str, str], float], int]] = {
    "floor": floor,
    "inline": inline,
    "threads": threads,
    "pool": pool,
    "reaper": reaper,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", default="true,crash", help=f"of {','.join(COMMANDS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    env = dict(os.environ)
    names = list(SHAPES)
    print(f"restart_skeleton: {args.rounds} rounds of {args.seconds:g} s per shape; {machine()}")
    for what in args.what.split(","):
        argv = COMMANDS[what]
        wall: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            line = []
            for name in order:
                cpu0, t0 = _cpu(), time.perf_counter()
                runs = SHAPES[name](argv, env, t0 + args.seconds)
                elapsed, used = time.perf_counter() - t0, _cpu() - cpu0
                wall[name].append(elapsed / runs * 1e3)
                cpu[name].append(used / runs * 1e3)
                line.append(f"{name} {wall[name][-1]:.3f} ms (cpu {cpu[name][-1]:.3f}) x{runs}")
            print(f"  round {rnd + 1} {what}: " + "  ".join(line))
        print(f"{what}: {' '.join(argv)}")
        base_wall, base_cpu = statistics.median(wall["floor"]), statistics.median(cpu["floor"])
        for name in names:
            w, c = statistics.median(wall[name]), statistics.median(cpu[name])
            print(
                f"  {name:8} {w:7.3f} ms/restart ({w / base_wall:4.2f}x)"
                f"   cpu {c:6.3f} ms/restart ({c / base_cpu:4.2f}x)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
