"""The open-file limit against what a tree's jobs hold open while they run.

A command (or an ``isolation: process`` python job) holds its two pipes' read ends,
the waiter's pidfd and eventfd under threads, and its output file while it runs:
``PER_PROCESS_JOB`` fds. Under the usual soft limit of 1,024 that covers about 250
of them; past it attempts fail with "Too many open files" and crash-loop, and
nothing said why. At the start (and at a reload) the soft limit is raised to what
the manifest needs, within the hard limit, as supervisord's ``minfds`` does; a hard
limit that is short is said, with how to raise it. Jobs inherit the raised soft
limit.
"""

from __future__ import annotations

import errno
import resource
import time
from typing import TYPE_CHECKING, Final

import logbook

from actors import CommandWork, PythonWork
from supervision._spec import JobSpec, walk

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from supervision._spec import SupervisorSpec

__all__ = [
    "ACCEPT_PAUSE",
    "ACCEPT_RESAY",
    "BASE",
    "PER_PROCESS_JOB",
    "AcceptShortage",
    "fit_open_files",
    "needed",
    "plan",
]

log = logbook.Logger("supervision.limits")

PER_PROCESS_JOB: Final = 5
# jobvisor's own: its log and journal, 64 control connections, the HTTP endpoint's, python's
# modules and libraries, a job's output file being rotated.
BASE: Final = 256


def needed(root: SupervisorSpec) -> int:
    """The fds a tree of ``root`` may hold at once, every job running."""
    count = 0
    for _, spec in walk(root):
        if not isinstance(spec, JobSpec):
            continue
        work = spec.work
        if isinstance(work, CommandWork) or (
            isinstance(work, PythonWork) and work.isolation == "process"
        ):
            count += 1
    return BASE + PER_PROCESS_JOB * count


def plan(need: int, soft: int, hard: int) -> tuple[int | None, str | None]:
    """The soft limit to set (None: leave it) and what to say of a hard limit that is short."""
    infinite = resource.RLIM_INFINITY
    if soft == infinite or soft >= need:
        return None, None
    if hard == infinite or hard >= need:
        return need, None
    said = (
        f"the open-file limit (hard {hard}) is short of the {need} this manifest needs "
        f"(about {PER_PROCESS_JOB} for each command job while it runs): past it, attempts fail "
        '"Too many open files"; raise it where jobvisor starts (LimitNOFILE= in its systemd '
        "unit, ulimit -n in its shell, nofile in limits.conf)"
    )
    return (hard if hard > soft else None), said


def fit_open_files(root: SupervisorSpec) -> None:
    """Raise this process's soft open-file limit to what ``root`` needs, or say it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised, said = plan(needed(root), soft, hard)
    if raised is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "the open-file limit could not be raised from {} to {}: {}", soft, raised, exc
            )
        else:
            log.info(
                "open-file limit raised from {} to {} (hard {}) for this manifest's jobs",
                soft,
                raised,
                "unlimited" if hard == resource.RLIM_INFINITY else hard,
            )
    if said is not None:
        log.warning("{}", said)


ACCEPT_PAUSE: Final = 0.1  # seconds between two tries of an accept that found nothing to take
ACCEPT_RESAY: Final = 60.0  # seconds after a shortage said before another is said
# What an accept of a socket still open meets that ends it: a socket closed under it (EBADF),
# shut down (EINVAL: it no longer listens), or not a socket at all.
_ENDED: Final = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})
_SHORT: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_RAISE = "raise it where jobvisor starts (ulimit -n in its shell, LimitNOFILE= in its systemd unit)"


class AcceptShortage:
    """An accept loop's shortages: the process out of file descriptors (EMFILE), the host out of
    file handles (ENFILE) or socket memory (ENOBUFS, ENOMEM).

    Each passes once something is freed, so the loop waits ``pause`` seconds and tries again:
    the connections wait in the socket's queue meanwhile, and are answered once it can. A
    shortage is said once, at WARNING, with what ran out and what to do, however long it lasts
    and however often the accept fails meanwhile, and its end at INFO. A process that hovers at
    its limit runs short at every burst of commands: a shortage within ``resay`` seconds of
    the last one said is counted, not said, and the next one said counts them. ``stopped``
    (set when the socket is closed) cuts a wait short. Used by the loop's own thread only.
    """

    def __init__(
        self,
        what: str,
        stopped: threading.Event,
        *,
        pause: float = ACCEPT_PAUSE,
        resay: float = ACCEPT_RESAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what  # "control socket PATH", "http: URL"
        self._stopped = stopped
        self._pause = pause
        self._resay = resay
        self._clock = clock
        self._since: float | None = None  # when the shortage under way began
        self._tries = 0  # the accepts that failed since
        self._saying = False  # the shortage under way was said: its end is too
        self._said_at: float | None = None  # when the last one said began
        self._unsaid = 0  # shortages since then, not said

    def failed(self, exc: OSError) -> bool:
        """After ``accept()`` raised ``exc``: True once it is said (the first of a shortage) and
        waited out a moment, the caller trying again; False if the socket is closed (the loop's
        end)."""
        if self._stopped.is_set() or exc.errno in _ENDED:
            return False
        if exc.errno not in _SHORT:  # one connection's error (aborted before it was taken)
            log.debug("{}: accept failed: {}; trying again", self.what, exc)
            self._stopped.wait(self._pause)
            return True
        if self._since is None:
            self._since = now = self._clock()
            self._saying = self._said_at is None or now - self._said_at >= self._resay
            if self._saying:
                self._say(exc, now)
            else:
                self._unsaid += 1
        self._tries += 1
        self._stopped.wait(self._pause)
        return True

    def _say(self, exc: OSError, now: float) -> None:
        more = ""
        if self._unsaid:
            times = "once" if self._unsaid == 1 else f"{self._unsaid} times"
            more = f" (and it ran short {times} since the last said, briefly)"
        self._said_at, self._unsaid = now, 0
        log.warning(
            "{}: cannot accept a connection: {}: {}; connections wait in its queue, unanswered, "
            "until it passes; trying again every {:g}s{}",
            self.what,
            exc.strerror or exc,
            _why(exc.errno),
            self._pause,
            more,
        )

    def accepted(self) -> None:
        """A connection was accepted: a shortage under way is over (said, if it was)."""
        if self._since is None:
            return
        if self._saying:
            tries = f"{self._tries} failed {'try' if self._tries == 1 else 'tries'}"
            log.info(
                "{}: accepting connections again, after {:.1f}s and {}",
                self.what,
                self._clock() - self._since,
                tries,
            )
        self._since, self._tries, self._saying = None, 0, False


def _why(code: int | None) -> str:
    """What ran out, for an accept's errno, and what to do."""
    if code == errno.EMFILE:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        return (
            f"jobvisor has as many files open as its limit allows ({soft}; hard {shown}), its "
            f"jobs' pipes and output files among them: {_RAISE}"
        )
    if code == errno.ENFILE:
        return (
            "the host has as many files open as it allows (fs.file-max): close some, or raise "
            "fs.file-max"
        )
    return "the host is short of memory for sockets: free some"
