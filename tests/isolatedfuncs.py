"""Functions that ``isolation: process`` jobs of the tests call in their child process.

A child shares no memory with the test, so these report through the file
system: ``announce`` writes the child's pid (and any other pid it started) as
one line to a FIFO the test reads (see ``Beacon`` in ``test_isolation``).
Only the standard library is imported, so a child starts fast.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def announce(fifo: str, *pids: int) -> None:
    """Tell the test this child runs: one line ``PID [PID...]`` on the FIFO."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, (" ".join(str(p) for p in (os.getpid(), *pids)) + "\n").encode())
    finally:
        os.close(fd)


def exit_now(code: int) -> None:
    os._exit(code)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def hold_the_gil() -> None:
    """Catastrophic backtracking in C: the GIL is never released, signals wait for its end."""
    re.match(r"(a+)+$", "a" * 40 + "b")


def _deeper(message: str) -> None:
    raise ValueError(message)


def boom(message: str) -> None:
    _deeper(message)


def block(fifo: str) -> None:
    announce(fifo)
    time.sleep(1000)


def stubborn(fifo: str) -> None:
    """Ignore SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    announce(fifo)
    while True:
        time.sleep(1000)


def with_grandchild(fifo: str) -> None:
    """Start a process in our group (it is not ours to stop), then block."""
    grandchild = subprocess.Popen(["sleep", "1000"])
    announce(fifo, grandchild.pid)
    time.sleep(1000)


def flaky(counter: str, failures: int) -> str:
    """Raise ConnectionError on the first ``failures`` calls, counted in the file ``counter``."""
    path = Path(counter)
    n = int(path.read_text() or 0) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n <= failures:
        raise ConnectionError(f"call {n} refused")
    return "ok"


def returns(value: object) -> object:
    return value


def check_type(value: object, name: str) -> None:
    """Fail unless ``value`` arrived as an instance of the class ``name``."""
    if type(value).__name__ != name:
        raise TypeError(f"got a {type(value).__name__}, expected a {name}")


def sys_exit(code: object) -> None:
    sys.exit(code)


async def async_returns(value: int) -> int:
    return value


def print_lines(text: str) -> None:
    print(text)
    print("to stderr", file=sys.stderr)


class CustomBase(BaseException):
    """A user's own ``BaseException``: a failure like any other, not a kill."""


_BASES: dict[str, type[BaseException]] = {
    "CustomBase": CustomBase,
    "KeyboardInterrupt": KeyboardInterrupt,
    "GeneratorExit": GeneratorExit,
}


def raise_base(name: str, message: str) -> None:
    raise _BASES[name](message)


def generator() -> object:
    yield 1
    raise ValueError("the body ran")


async def async_generator() -> object:
    yield 1


def huge(length: int) -> None:
    raise ValueError("x" * length)


def deep(depth: int) -> None:
    """Fail ``depth`` distinct frames down: a traceback Python cannot fold into 'repeated'."""
    if depth <= 0:
        raise ValueError("at the bottom")
    _deep_other(depth - 1)


def _deep_other(depth: int) -> None:
    deep(depth)


class ConfigError(Exception):
    """A user's own exception class, for ``give_up_on`` and ``retry.on`` by ``module.Class``."""


class BadConfigError(ConfigError):
    pass


_FAILURES: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "KeyError": KeyError,
    "ConnectionError": ConnectionError,
    "ConfigError": ConfigError,
    "BadConfigError": BadConfigError,
}


def _failure(spelled: str) -> BaseException:
    """``"A"``: an A; ``"A<B"``: an A raised from a B; ``"A+B"``: a TaskGroup's group of both."""
    if "+" in spelled:
        import asyncio

        async def one(part: str) -> None:
            raise _failure(part)

        async def group() -> None:
            async with asyncio.TaskGroup() as tasks:
                for part in spelled.split("+"):
                    tasks.create_task(one(part))

        try:
            asyncio.run(group())
        except BaseException as exc:  # the TaskGroup's ExceptionGroup
            return exc
        raise AssertionError("the TaskGroup did not fail")
    name, _, cause = spelled.partition("<")
    if not cause:
        return _FAILURES[name](f"a {name}")
    try:
        raise _failure(cause)
    except BaseException as inner:
        try:
            raise _FAILURES[name](f"a {name} from a {cause}") from inner
        except BaseException as outer:
            return outer


def fail_as(spelled: str) -> None:
    """Raise the failure ``spelled`` says (see ``_failure``)."""
    raise _failure(spelled)


def fail_counted(counter: str, failures: int, spelled: str) -> str:
    """``fail_as(spelled)`` on the first ``failures`` calls, counted in the file ``counter``."""
    path = Path(counter)
    n = int(path.read_text() or 0) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n <= failures:
        fail_as(spelled)
    return "ok"


def chained() -> None:
    raise RuntimeError("outer") from KeyError("k")


def _lookup() -> None:
    raise KeyError("inner")


def during_handling() -> None:
    try:
        _lookup()
    except KeyError:
        raise RuntimeError("while handling")  # noqa: B904 - the implicit chain is the point


def leave_a_thread(path: str, delay: float) -> None:
    """Start a thread (not a daemon by choice) that writes ``path`` ``delay`` seconds later."""

    def later() -> None:
        time.sleep(delay)
        Path(path).write_text("written")

    threading.Thread(target=later, name="late-writer").start()


def leave_a_non_daemon(delay: float) -> None:
    """Start a thread that is no daemon, by asking: Python's exit waits for it."""
    threading.Thread(target=time.sleep, args=(delay,), name="held-exit", daemon=False).start()


# Threads alive before an attempt that ``leave_one_as_another_ends`` ends, with their release.
ENDING: list[tuple[threading.Thread, threading.Event]] = []


def leave_one_as_another_ends(delay: float) -> None:
    """``leave_a_non_daemon``, while the threads alive before the call in ``ENDING`` end: no
    more threads at its end than at its start, one of them new."""
    leave_a_non_daemon(delay)
    for thread, release in ENDING:
        release.set()
        thread.join()
