"""Starts that fail for jobvisor's own want of descriptors, processes or memory.

With ``ulimit -n 64`` and 40 services, 31 gave up for good within 0.7 s: "could not
start: Too many open files" counted against each job's ``max_restarts``, though no job
was at fault, and each needed a person's ``start`` once descriptors were free again.
Such a start (``host_shortage``) is tried again after its job's backoff, at least
``RETRY`` seconds, and counts against nothing; the shortage is said once at WARNING
when it begins, whichever jobs and however many tries, and once at INFO when it ends.

It ends when no start has failed for it for ``RETRY`` seconds past the last retry it
called for: a started command tells its supervisor nothing more, so the end is the
silence after the retries. One ``SHORTAGES`` per process: the limits are the process's.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import TYPE_CHECKING, Final

import logbook

from actors import CommandFailed

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._runtime import Scheduler

__all__ = ["RETRY", "SHORTAGES", "Shortages", "host_shortage"]

log = logbook.Logger("supervision.limits")

# The shortest wait before a start that failed for a shortage is tried again: a tight
# loop of spawns that fail would only eat the CPU that whatever frees them needs.
RETRY: Final = 1.0

# What the process ran short of, by the errno its start failed with: the fork or the
# pipes of a command (``actors._command``).
_WANTS: Final[dict[int, tuple[str, str]]] = {
    errno.EMFILE: (
        "file descriptors",
        (
            "raise the open-file limit where jobvisor starts (ulimit -n in its shell, "
            "LimitNOFILE= in its systemd unit)"
        ),
    ),
    errno.ENFILE: (
        "file descriptors (the system's)",
        "raise the system's limit (sysctl fs.file-max)",
    ),
    errno.EAGAIN: (
        "processes",
        (
            "raise the process limit where jobvisor starts (ulimit -u, LimitNPROC=, a cgroup's "
            "pids.max)"
        ),
    ),
    errno.ENOMEM: ("memory", "free some memory"),
}


def host_shortage(error: BaseException | None) -> int | None:
    """The errno of a command's start that failed for jobvisor's own want (not the job's
    fault): its open-file limit (EMFILE), the system's (ENFILE), its process limit
    (EAGAIN from fork), memory (ENOMEM). None for any other failure."""
    if not isinstance(error, CommandFailed):
        return None
    cause = error.__cause__
    if isinstance(cause, OSError) and cause.errno in _WANTS:
        return cause.errno
    return None


class Shortages:
    """The starts failing for a shortage now: said when the first fails, and when none has
    for a while. Thread-safe: every supervisor of every tree tells it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # when the shortage began; None: none now
        self._until = 0.0  # over if no start fails for it until then
        self._jobs: set[str] = set()
        self._tries = 0
        self._told = 0  # failures told: a check armed before the last one is stale

    def failed(self, path: str, code: int, error: str, delay: float, scheduler: Scheduler) -> None:
        """``path``'s start failed for a shortage (``code``, its errno); it is tried again in
        ``delay`` seconds. ``scheduler``: where the check of its end is timed."""
        now = self._clock()
        with self._lock:
            # (a shortage whose end was never checked, its tree's scheduler gone: over too)
            first = self._since is None or now > self._until + RETRY
            if first:
                self._since, self._jobs, self._tries, self._until = now, set(), 0, now
            self._jobs.add(path)
            self._tries += 1
            self._until = max(self._until, now + delay + RETRY)
            self._told += 1
            told, wait = self._told, self._until - now
        scheduler.call_later(wait, lambda: self._over(told))
        if first:
            want, fix = _WANTS[code]
            log.warning(
                "starts fail for want of {}: {}: {}; each start that fails for it is tried "
                "again after its job's backoff ({:g}s at least) and counts against no "
                "max_restarts; stop some jobs, or {}",
                want,
                path,
                error,
                RETRY,
                fix,
            )

    def _over(self, told: int) -> None:
        """On a scheduler's thread: the shortage is over if no start failed for it since the
        ``told``-th failure, whose retry is long done."""
        with self._lock:
            since = self._since
            if since is None or told != self._told:
                return  # a later failure armed a later check
            jobs, tries = len(self._jobs), self._tries
            self._since, self._jobs = None, set()
        log.info(
            "starts work again, after {:.1f}s: {} {} waited, {} {} failed for want meanwhile",
            self._clock() - since,
            jobs,
            "job" if jobs == 1 else "jobs",
            tries,
            "start" if tries == 1 else "starts",
        )


SHORTAGES: Final = Shortages()
