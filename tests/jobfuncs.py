"""Functions that python jobs in the tests call (``"jobfuncs:NAME"``).

They coordinate with the test through module-level registries keyed by a
name the test picks, so tests never sleep to find out what a job did.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from actors import current_attempt

CALLS: defaultdict[str, int] = defaultdict(int)
EVENTS: defaultdict[str, threading.Event] = defaultdict(threading.Event)
_lock = threading.Lock()


def reset() -> None:
    CALLS.clear()
    EVENTS.clear()
    ENDED.clear()


def _count(key: str) -> int:
    with _lock:
        CALLS[key] += 1
        return CALLS[key]


def ok(key: str = "ok") -> None:
    _count(key)


def fail(key: str = "fail") -> None:
    n = _count(key)
    raise RuntimeError(f"{key} failed on call {n}")


def fail_times(key: str, times: int) -> None:
    """Fail the first ``times`` calls, then succeed."""
    n = _count(key)
    if n <= times:
        raise RuntimeError(f"{key} failed on call {n}")


def block(key: str) -> None:
    """Run until the test sets EVENTS[key + '.release'] or the attempt is cancelled."""
    _count(key)
    EVENTS[key + ".running"].set()
    attempt = current_attempt()
    release = EVENTS[key + ".release"]
    while not release.wait(0.01):
        if attempt is not None and attempt.cancelled.is_set():
            return


def block_until_released_once(key: str) -> None:
    """As ``block``, but a release lets one call return: that call takes it (clears it), so
    the next one blocks again (a service that ends once, not at every restart after)."""
    block(key)
    EVENTS[key + ".release"].clear()


def fail_on_stop(key: str) -> None:
    """Run until the attempt is cancelled, then fail as a flush on shutdown may."""
    _count(key)
    EVENTS[key + ".running"].set()
    attempt = current_attempt()
    assert attempt is not None
    attempt.cancelled.wait(30)
    raise RuntimeError(f"flush on shutdown failed: {key} lost 312 rows")


def once_then_block(key: str) -> None:
    """Return at the first call; block (as ``block``) at every later one."""
    if CALLS[key] >= 1:
        block(key)
        return
    _count(key)


def stubborn(key: str) -> None:
    """Ignore cancellation: only a kill ends it."""
    _count(key)
    EVENTS[key + ".running"].set()
    while True:
        time.sleep(0.005)


def service_returns(key: str) -> None:
    _count(key)


def exit_code(key: str, code: int) -> int:
    _count(key)
    return code


def raise_system_exit(key: str, code: object = 3) -> None:
    _count(key)
    raise SystemExit(code)


async def async_ok(key: str) -> int:
    _count(key)
    return 0


def flaky_then_ok(key: str, failures: int) -> str:
    """Raise ConnectionError for the first ``failures`` calls (a retryable-looking error)."""
    n = _count(key)
    if n <= failures:
        raise ConnectionError(f"{key} call {n} refused")
    return "ok"


def fail_while_flag(key: str) -> None:
    """Fail while EVENTS[key + '.healthy'] is unset; succeed after."""
    _count(key)
    if not EVENTS[key + ".healthy"].is_set():
        raise RuntimeError(f"{key} backend down")


def record_order(key: str, name: str) -> None:
    with _lock:
        ORDER.append(name)
    _count(key)


ORDER: list[str] = []


def deaf(key: str) -> None:
    """Ignore cancellation; end when the test sets EVENTS[key + '.release'] (at most 30 s)."""
    _count(key)
    EVENTS[key + ".running"].set()
    EVENTS[key + ".release"].wait(30)


class Unprintable(Exception):
    """An exception whose ``str()`` itself raises: a user's bug, which must stay the user's."""

    def __str__(self) -> str:
        raise RuntimeError("str of it failed")


def raise_unprintable(key: str) -> None:
    _count(key)
    raise Unprintable


class OwnBase(BaseException):
    """A user's own ``BaseException``."""


def base_when_stopped(key: str) -> None:
    """Run until the attempt is cancelled, then raise a BaseException of its own."""
    _count(key)
    EVENTS[key + ".running"].set()
    attempt = current_attempt()
    assert attempt is not None
    attempt.cancelled.wait(30)
    raise OwnBase(f"{key} was stopped")


def spin(key: str, seconds: float) -> None:
    """Busy for ``seconds`` in pure Python: under gevent it never yields, so no timer fires."""
    _count(key)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def graceful(key: str, cleanup: float) -> None:
    """Wait to be cancelled, then take ``cleanup`` seconds to end, as a job that cleans up does."""
    _count(key)
    attempt = current_attempt()
    assert attempt is not None
    EVENTS[key + ".running"].set()
    if attempt.cancelled.wait(30):
        EVENTS[key + ".cancelled"].set()
        time.sleep(cleanup)
        EVENTS[key + ".cleaned"].set()


ENDED: dict[str, float] = {}


def stubborn_until_killed(key: str) -> None:
    """As ``stubborn``, and says when the kill ended it (``ENDED[key]``, monotonic)."""
    try:
        stubborn(key)
    finally:
        ENDED[key] = time.monotonic()
        EVENTS[key + ".ended"].set()


def log_stdlib(key: str) -> None:
    """Log through the standard library's logging, as a job's own code does."""
    _count(key)
    logging.getLogger("myjob").warning("the job says %s", key)


def fail_after_release(key: str) -> None:
    """Wait until the test sets EVENTS[key + '.release'], then fail as ``fail`` does."""
    EVENTS[key + ".release"].wait(30)
    n = _count(key)
    raise RuntimeError(f"{key} failed on call {n}")
