"""The one fake clock of the tests: time stands still until the test moves it.

Modelled on trio's ``MockClock``: ``clock()`` returns monotonic seconds for
``start_tree(monotonic=clock)``, ``Scheduler(clock)`` and breakers;
``advance`` moves it and wakes every scheduler it was handed (``start_tree``
calls ``attach``), so what falls due fires at once instead of after real
seconds. ``datetime()`` is the same instant as an aware wall-clock time, for
code that reads dates (log rotation).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


class ManualClock:
    def __init__(self, start: float = 100.0, epoch: datetime | None = None) -> None:
        self.now = start
        self._start = start
        self._epoch = epoch if epoch is not None else datetime(2024, 1, 1, tzinfo=UTC)
        self._wakers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return self._epoch + timedelta(seconds=self.now - self._start)

    def attach(self, wake: Callable[[], None]) -> None:
        """Wake ``wake`` whenever the clock moves (a scheduler re-reads it then)."""
        with self._lock:
            self._wakers.append(wake)

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move on by ``seconds`` (plus a ``timedelta``'s keywords: ``hours=1``)."""
        step = seconds + timedelta(**delta).total_seconds()
        if step < 0:
            raise ValueError(f"a clock only moves forward, not by {step}s")
        with self._lock:
            self.now += step
            wakers = list(self._wakers)
        for wake in wakers:
            wake()
