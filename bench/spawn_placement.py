"""Where the thread that spawns a command should be while its child runs: a stand-alone loop.

The loop spawns ``/bin/true`` as a command attempt of the daemon does (``_posixsubprocess``
with vfork: two output pipes, exec's error pipe, a session of its own), spends ``--post`` us of
Python after the spawn (the attempt's set-up) and again after the exit (its report), and
waits on a pidfd and the pipes in ``poll``. Variants, each against ``base`` in alternating
rounds (the period start to start, and this process's CPU):

- ``yield``: ``sched_yield()`` right after the spawn, so the child runs before the set-up;
- ``away``: after the spawn the thread restricts itself to the CPUs but the one it runs on
  (``sched_setaffinity``), and takes them all again before the next spawn;
- ``janitor``: the ended attempt's fds are closed by another thread;
- ``prepipe``: that thread also makes the next attempts' output pipes ahead;
- ``late``: the work after the exit (the report) is done after the next spawn instead, so
  that it could run beside the new child rather than before it.

None of these is in jobvisor: bench/README.md ("stop 46", and "stop 47" for ``late``) has
the figures and why.

    python bench/spawn_placement.py [--variants yield,away,janitor,prepipe,late] [--rounds 4]
                                    [--runs 3000] [--post 65]
"""

from __future__ import annotations

import _posixsubprocess  # type: ignore[import-not-found]
import argparse
import collections
import os
import queue
import select
import statistics
import sys
import threading
import time

from _common import machine

_VFORK = (True,) if sys.version_info < (3, 14) else ()


def _busy(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def one(variant: str, runs: int, post: float) -> tuple[float, float]:
    """(period us, CPU us) per run of ``variant``."""
    devnull = os.open(os.devnull, os.O_RDWR)
    todo: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
    ready: collections.deque[tuple[int, int]] = collections.deque()
    everyone = os.sched_getaffinity(0)

    def janitor() -> None:
        while (fds := todo.get()) is not None:
            for fd in fds:
                os.close(fd)
            while variant == "prepipe" and len(ready) < 8:
                ready.append(os.pipe())

    helper = threading.Thread(target=janitor, daemon=True)
    helper.start()

    def pipe() -> tuple[int, int]:
        if ready:
            return ready.popleft()
        return os.pipe()

    def spawn() -> tuple[int, int, int]:
        r1, w1 = pipe()
        r2, w2 = pipe()
        er, ew = os.pipe()
        # As actors/_spawn.py calls it: close_fds, restore_signals and call_setsid are True.
        call = (
            [b"/bin/true"], [b"/bin/true"], True, (ew,), None, None, devnull, -1, -1, w1,
            -1, w2, er, ew, True, True, -1, None, None, None, -1, None, *_VFORK,
        )  # fmt: skip
        pid = _posixsubprocess.fork_exec(*call)
        os.close(ew)
        os.read(er, 50000)
        for fd in (er, w1, w2):
            os.close(fd)
        return pid, r1, r2

    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(runs):
            pid, r1, r2 = spawn()
            if variant == "yield":
                os.sched_yield()
            elif variant == "away":
                stat = open("/proc/thread-self/stat").read()  # noqa: PTH123, SIM115
                here = int(stat.rsplit(")", 1)[1].split()[36])
                if everyone - {here}:
                    os.sched_setaffinity(0, everyone - {here})
            _busy(2 * post if variant == "late" else post)  # late: the last run's report too
            pidfd, wake = os.pidfd_open(pid), os.eventfd(0)
            poll = select.poll()
            for fd in (r1, r2, pidfd, wake):
                poll.register(fd, select.POLLIN)
            exited = False
            while not exited:
                ready_fds = {fd for fd, _ in poll.poll()}
                for fd in (r1, r2):
                    if fd in ready_fds and not os.read(fd, 65536):
                        poll.unregister(fd)
                exited = pidfd in ready_fds
            if variant == "away":
                os.sched_setaffinity(0, everyone)
            os.waitpid(pid, 0)
            if variant in ("janitor", "prepipe"):
                todo.put([r1, r2, pidfd, wake])
            else:
                for fd in (r1, r2, pidfd, wake):
                    os.close(fd)
            if variant != "late":
                _busy(post)
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        todo.put(None)
        helper.join()
        for r, w in ready:
            os.close(r)
            os.close(w)
        os.close(devnull)
    return (t1 - t0) / runs * 1e6, (c1 - c0) / runs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="yield,away,janitor,prepipe,late")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--post", type=float, default=65.0, help="us of Python after each step")
    args = parser.parse_args()
    variants = ["base", *args.variants.split(",")]
    print(f"spawn_placement: {args.rounds} rounds of {args.runs} runs; {machine()}")
    got: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for n in range(args.rounds):
        order = variants if n % 2 == 0 else variants[::-1]
        for variant in order:
            period, cpu = one(variant, args.runs, args.post)
            got[variant].append((period, cpu))
            print(f"  round {n + 1} {variant:8s} period {period:7.1f} us  cpu {cpu:6.1f} us")
    base = statistics.median(p for p, _ in got["base"])
    for variant in variants:
        period = statistics.median(p for p, _ in got[variant])
        cpu = statistics.median(c for _, c in got[variant])
        print(f"{variant:8s} period {period:7.1f} us ({period - base:+6.1f})  cpu {cpu:6.1f} us")


if __name__ == "__main__":
    main()
