"""Python jobs and actors that get stuck where a kill cannot reach them (issue 11, item 1).

Used in the test process and, as ``python: "stuckfuncs:NAME"`` jobs, inside a
real ``jobvisor`` process (``faultkit.ENV`` puts this folder on its path), so
it imports nothing of ours. A job says it is running by creating ``marker``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import pykka

# Set by a test once it is done: a held job or actor then ends, so no thread outlives the test.
RELEASE: defaultdict[str, threading.Event] = defaultdict(threading.Event)
RUNNING: defaultdict[str, threading.Event] = defaultdict(threading.Event)


def _mark(marker: str) -> None:
    if marker:
        Path(marker).touch()


def sleep_long(marker: str = "") -> None:
    """Blocked in one C call: a kill under threads waits for it to return; gevent cooperates."""
    _mark(marker)
    time.sleep(1000)


def swallow_kills(marker: str = "") -> None:
    """Ignores every kill, on both runtimes: only the end of the process ends it."""
    _mark(marker)
    while True:
        try:
            time.sleep(3600)
        except BaseException:  # the point: a kill is swallowed
            continue


def hold(key: str) -> None:
    """Stuck until the test sets ``RELEASE[key]``, whatever kills it meanwhile.

    Under threads the wait is one C call (a kill lands only once it returns);
    under gevent the kill lands and is swallowed. Either way it is stuck.
    """
    RUNNING[key].set()
    release = RELEASE[key]
    while True:
        try:
            release.wait()
        except BaseException:  # the point: a kill is swallowed
            continue
        return


def block_in_c(key: str) -> None:
    """One wait in C until the test sets ``RELEASE[key]``: under threads a kill lands after it."""
    RUNNING[key].set()
    RELEASE[key].wait()


class StuckOnStop(pykka.ThreadingActor):
    """An actor whose ``on_stop`` is stuck in ``hold(key)``."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def on_stop(self) -> None:
        hold(self.key)


class StuckOnReceive(pykka.ThreadingActor):
    """An actor whose every message is stuck in ``hold(key)``."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def on_receive(self, message: object) -> None:
        hold(self.key)


def read_pipe(marker: str = "") -> None:
    """Blocked in ``os.read`` on a pipe nobody writes: a C call gevent does not make cooperative,
    so under gevent the hub itself cannot run (the whole process waits there)."""
    r, w = os.pipe()
    _mark(marker)
    try:
        os.read(r, 1)
    finally:
        os.close(r)
        os.close(w)
