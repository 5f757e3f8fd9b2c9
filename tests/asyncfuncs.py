"""Coroutine functions run as python jobs (``python: "asyncfuncs:NAME"``), for test_python_async.

They import nothing of ours. Each says what happened to it in ``SEEN[key]`` and sets
``RUNNING[key]`` once it waits; ``LOOPS[key]`` keeps the event loops its attempts ran in.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

SEEN: defaultdict[str, list[str]] = defaultdict(list)
RUNNING: defaultdict[str, threading.Event] = defaultdict(threading.Event)
LOOPS: defaultdict[str, list[asyncio.AbstractEventLoop]] = defaultdict(list)
# What ``wait_long`` saw, a list per call in the order they began: attempts may overlap.
CALLS: defaultdict[str, list[list[str]]] = defaultdict(list)
# Set once ``swallow`` has swallowed a cancellation.
SWALLOWED: defaultdict[str, threading.Event] = defaultdict(threading.Event)
# Lets the coroutines that swallow their cancellation go (any thread): see ``swallow``.
RELEASE: defaultdict[str, list[Callable[[], None]]] = defaultdict(list)


def reset() -> None:
    for releases in list(RELEASE.values()):
        for release in releases:
            release()
    for table in (SEEN, RUNNING, LOOPS, RELEASE, SWALLOWED, CALLS):
        table.clear()


def _started(key: str) -> None:
    LOOPS[key].append(asyncio.get_running_loop())
    SEEN[key].append("started")
    RUNNING[key].set()


async def wait_long(key: str) -> None:
    """The trial's ``acoro``: waits 1000 s, says so when cancelled, re-raises, cleans up."""
    mine: list[str] = []
    CALLS[key].append(mine)
    try:
        _started(key)
        mine.append("started")
        await asyncio.sleep(1000)
    except asyncio.CancelledError:
        SEEN[key].append("cancelled")
        mine.append("cancelled")
        raise
    finally:
        SEEN[key].append("finally")
        mine.append("finally")


async def wait_then_return(key: str) -> int:
    """Catches its cancellation and returns 0: a graceful end of its own."""
    _started(key)
    try:
        await asyncio.sleep(1000)
    except asyncio.CancelledError:
        SEEN[key].append("cancelled")
    return 0


async def swallow(key: str) -> None:
    """Swallows every cancellation and waits on, until the test calls ``reset()``."""
    loop = asyncio.get_running_loop()
    released = loop.create_future()
    RELEASE[key].append(lambda: loop.call_soon_threadsafe(_done, released))
    _started(key)
    while not released.done():
        try:
            await asyncio.wait({released})  # asyncio.wait never cancels what it waits for
        except asyncio.CancelledError:
            SEEN[key].append("swallowed")
            SWALLOWED[key].set()


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def cancels_itself(key: str) -> None:
    """A CancelledError of its own (a task it awaited was cancelled): a failure, not a stop."""
    _started(key)
    inner = asyncio.get_running_loop().create_future()
    inner.cancel()
    await inner


async def wait_long_in_a_child(log: str, fifo: str) -> None:
    """``wait_long`` for a child process (``isolation: process``): it says what happened to
    it as lines of the file ``log``, and its pid on the FIFO ``fifo`` once it waits."""

    def say(what: str) -> None:
        with Path(log).open("a") as file:
            file.write(what + "\n")

    try:
        say("started")
        fd = os.open(fifo, os.O_WRONLY)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        await asyncio.sleep(1000)
    except asyncio.CancelledError:
        say("cancelled")
        raise
    finally:
        say("finally")


async def slow_cleanup(key: str) -> None:
    """Waits 1000 s; cancelled, its ``finally`` takes 0.5 s (a connection closed politely)."""
    _started(key)
    try:
        await asyncio.sleep(1000)
    finally:
        SEEN[key].append("cleaning")
        await asyncio.sleep(0.5)
        SEEN[key].append("cleaned")
