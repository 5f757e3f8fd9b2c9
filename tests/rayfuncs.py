"""Functions placed jobs call on Ray in the tests (``"rayfuncs:NAME"``).

They run in Ray worker processes, which share no memory with the test: they
leave their traces (pids, call counts) in files the test names.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pykka


def _calls(path: str) -> int:
    """Count this call in the file at ``path``; return the count."""
    with Path(path).open("a") as file:
        file.write(f"{os.getpid()}\n")
    return len(Path(path).read_text().split())


def die_first(path: str) -> None:
    """The first call kills its own process with SIGKILL; later calls return."""
    if _calls(path) == 1:
        os.kill(os.getpid(), signal.SIGKILL)


def _deeper(value: int) -> None:
    raise ValueError(f"bad value {value}")


def raise_deep() -> None:
    _deeper(42)


def pid_and_block(path: str) -> None:
    """Record the process, then block, deaf to any cancel: only killing it ends the call."""
    _calls(path)
    threading.Event().wait()


def where_and_block(path: str) -> None:
    """Record the node this runs on, then block."""
    import ray

    with Path(path).open("a") as file:
        file.write(f"{ray.get_runtime_context().get_node_id()}\n")
    threading.Event().wait()


class Counter(pykka.ThreadingActor):
    """A user's actor class, placed on Ray in the tests."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: object) -> object:
        if message == "pid":
            return os.getpid()
        if message == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        self.count += 1
        return self.count


class BadInit(pykka.ThreadingActor):
    """A user's actor whose own __init__ raises: its configuration is wrong."""

    def __init__(self) -> None:
        super().__init__()
        raise ValueError("bad config in __init__")


def where(path: str) -> None:
    """Record the node this runs on, and return."""
    import ray

    with Path(path).open("a") as file:
        file.write(f"{ray.get_runtime_context().get_node_id()}\n")


def count(path: str) -> None:
    """Record this call's process."""
    _calls(path)


class Unpicklable(Exception):
    """An exception that cannot travel: it holds a lock."""

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
        self.lock = threading.Lock()


class TwoArgs(LookupError):
    """An exception that pickles but cannot be rebuilt: its __init__ needs two arguments."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")


def raise_unpicklable() -> None:
    raise Unpicklable("cannot travel", "x")


def raise_two_args(path: str) -> None:
    """Count the call, then raise."""
    _calls(path)
    raise TwoArgs(1, 2)
