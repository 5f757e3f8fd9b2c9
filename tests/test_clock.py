"""The manual clock jumps: moving it fires what falls due at once, without waiting real time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from clockkit import ManualClock

from actors import Scheduler


def test_advancing_the_clock_wakes_the_scheduler() -> None:
    clock = ManualClock()
    scheduler = Scheduler(clock)
    clock.attach(scheduler.wake)
    fired = threading.Event()
    try:
        scheduler.call_later(3600.0, fired.set)
        clock.advance(3599.0)
        assert not fired.wait(0.05), "an hour is not up yet"
        begun = time.monotonic()
        clock.advance(1.0)
        assert fired.wait(5)
        assert time.monotonic() - begun < 2, "woken by the jump, not by a real wait"
    finally:
        scheduler.stop()


def test_the_clock_only_moves_forward_and_tells_dates() -> None:
    clock = ManualClock(0.0, epoch=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    clock.advance(hours=1, minutes=30)
    assert clock() == 5400.0
    assert clock.datetime() == datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
