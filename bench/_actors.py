"""Actors the start and memory benchmarks share; import it after ``_common.install``."""

from __future__ import annotations

import threading

import pykka


class StartCounter:
    """Counts ``on_start`` calls; ``done`` is set once ``expected`` actors have started."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def started(self) -> None:
        with self.lock:
            self.count += 1
            if self.count >= self.expected:
                self.done.set()


class Idle(pykka.ThreadingActor):
    """Does nothing: an idle actor blocked on its inbox."""

    def __init__(self, counter: StartCounter | None = None) -> None:
        super().__init__()
        self.counter = counter

    def on_start(self) -> None:
        if self.counter is not None:
            self.counter.started()

    def on_receive(self, message):
        return message


# -- one side, in its own process -------------------------------------------------------------
