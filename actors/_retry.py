"""Retry inside one attempt (tenacity): ``retry: {attempts, wait, on}`` of the manifest."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Protocol, TypeVar

from actors._checks import need, need_count
from actors._exponential import Exponential

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import tenacity

__all__ = [
    "DEFAULT_ATTEMPTS",
    "RETRY_AFTER_MAX",
    "RetrySpec",
    "RetryWait",
    "Retryable",
    "retry_delay",
    "run_with_retry",
]

T = TypeVar("T")

# The tries of a retry block that does not say how many: the first and two retries.
DEFAULT_ATTEMPTS: Final = 3

# The longest a server's Retry-After is waited inside one attempt (an attempt's timeout ends
# a wait sooner): past it, a Retry-After of an hour would hold the attempt for that hour.
RETRY_AFTER_MAX: Final = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryWait(Exponential):
    """Wait before retry ``n``: ``min(max, initial * multiplier**(n-1))``, jittered ±``jitter``."""

    FIELD: ClassVar[str] = "retry.wait"
    initial: float = 0.5
    max: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySpec:
    """Up to ``attempts`` tries per attempt; ``on`` narrows which failures are retried.

    An empty ``on`` means the job kind's defaults (http: connection errors,
    timeouts, 5xx and 429; command: any non-zero exit; python: any exception).
    ``attempts`` counts the tries, the first one included.
    """

    # A retry block that leaves attempts out still asks for retries: with 1 here,
    # ``retry: {on: [429]}`` (the README's and validate's own advice) made one try, silently.
    # 3 tries, as resilience4j's maxAttempts; a job without a retry block makes one.
    attempts: int = DEFAULT_ATTEMPTS
    wait: RetryWait = RetryWait()
    on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        need_count(self.attempts, "retry.attempts", 1)
        need(isinstance(self.wait, Exponential), "retry.wait", "a RetryWait", self.wait)
        on = self.on
        ok = isinstance(on, list | tuple) and all(isinstance(name, str) for name in on)
        need(ok, "retry.on", "a list of failure names", on)
        object.__setattr__(self, "on", tuple(on))


def retry_delay(wait: RetryWait, number: int, hinted: float | None, rand: float) -> float:
    """Seconds before retry ``number``: the server's ``hinted`` Retry-After when it gave one
    (SPEC: honour it, beyond ``wait.max`` too: a retry sooner than asked only meets another
    429), up to ``RETRY_AFTER_MAX``; else ``wait``'s computed delay (``rand`` in [0, 1))."""
    if hinted is not None:
        return min(RETRY_AFTER_MAX, max(0.0, hinted))
    return wait.delay(number, rand)


class Retryable(Protocol):
    """What a job kind tells the retry loop about one failure."""

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool: ...

    def retry_after(self, exc: BaseException) -> float | None: ...


def run_with_retry(
    spec: RetrySpec,
    work: Retryable,
    call: Callable[[], T],
    cancelled: threading.Event,
    *,
    on_retry: Callable[[int, BaseException, float], None],
    rand: Callable[[], float] = random.random,
) -> T:
    """Call ``call`` until it succeeds, a failure is not retryable, or tries run out.

    Waiting happens on ``cancelled`` (the attempt's), so a stop or a timeout
    ends a wait at once, and no try starts once it is set. A ``Retry-After``
    the work reports replaces the computed wait (``retry_delay``). The last
    failure is re-raised as it was.
    """
    # Imported on first use: a daemon whose jobs never retry does not carry tenacity.
    import tenacity  # noqa: PLC0415

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = work.retry_after(exc) if exc is not None else None
        return retry_delay(spec.wait, state.attempt_number, hinted, rand())

    def before_sleep(state: tenacity.RetryCallState) -> None:
        # Tenacity also asks `wait` after the last try; only a real sleep is a retry.
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            on_retry(state.attempt_number, exc, state.upcoming_sleep)

    def should_retry(state: tenacity.RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed or cancelled.is_set():
            return False
        exc = state.outcome.exception()
        return exc is not None and work.retryable(exc, spec.on)

    def sleep(seconds: float) -> None:
        cancelled.wait(seconds)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(spec.attempts),
        wait=wait,
        retry=should_retry,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(call)
