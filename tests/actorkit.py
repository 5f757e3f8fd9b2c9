"""Plain pykka actors the integration tests supervise through ``ActorSpec``."""

from __future__ import annotations

import threading
from typing import Any

import pykka


class Journal:
    """A thread-safe list of what actors did, shared by one test."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self._cond = threading.Condition()

    def add(self, what: str, name: str) -> None:
        with self._cond:
            self.items.append((what, name))
            self._cond.notify_all()

    def count(self, what: str, name: str) -> int:
        with self._cond:
            return self.items.count((what, name))

    def wait_count(self, what: str, name: str, n: int, timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.items.count((what, name)) >= n, timeout), (
                f"{what} {name} not seen {n} times: {self.items}"
            )

    def of(self, what: str) -> list[str]:
        with self._cond:
            return [name for w, name in self.items if w == what]


class Recorder(pykka.ThreadingActor):
    """Records its starts and stops; crashes on "crash"; answers "ping" with its incarnation."""

    incarnations: dict[str, int] = {}

    def __init__(self, name: str, journal: Journal, fail_start: bool = False) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        Recorder.incarnations[name] = Recorder.incarnations.get(name, 0) + 1
        self.incarnation = Recorder.incarnations[name]
        self.seen: list[Any] = []

    def on_start(self) -> None:
        self.journal.add("start", self.name)
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")

    def on_stop(self) -> None:
        self.journal.add("stop", self.name)

    def on_failure(self, *args: Any) -> None:
        self.journal.add("crash", self.name)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if message == "ping":
            return ("pong", self.name, self.incarnation)
        if message == "stop-self":
            self.stop()
            return None
        if message == "seen":
            return list(self.seen)
        self.seen.append(message)
        return None


class SlowStop(Recorder):
    """Ignores its stop by blocking in on_stop until released."""

    release = threading.Event()

    def on_stop(self) -> None:
        self.journal.add("stopping", self.name)
        while not SlowStop.release.wait(0.01):
            pass
        self.journal.add("stop", self.name)


class SlowCrash(Recorder):
    """On ``("crash", gate)`` crashes once the test sets ``gate``: messages queue up behind
    it meanwhile, as many as the test sends."""

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "crash":
            self.journal.add("crashing", self.name)
            assert message[1].wait(10), "the test never let the crash go"
            message = "crash"
        return super().on_receive(message)


class FailingInit(Recorder):
    """Raises in ``__init__``: a connection its constructor cannot open."""

    def __init__(self, name: str, journal: Journal) -> None:
        super().__init__(name, journal)
        raise ConnectionError(f"{name}: cannot connect")


class FailingStop(Recorder):
    """Raises in on_stop: what an actor that cannot close a connection does."""

    def on_stop(self) -> None:
        super().on_stop()
        raise RuntimeError(f"{self.name}: on_stop fails")
