"""What a job kind sees of one attempt: ``Attempt``, ``current_attempt``, ``Work``, ``ReadyCheck``.

A leaf module: the job actor, the retry loop and every job kind import it,
and it imports none of them (only ``actors._runtime``, a leaf too, for its events), so no
import cycle runs through ``actors``.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from actors._runtime import new_event

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

__all__ = [
    "Attempt",
    "LineCut",
    "OutputOpener",
    "OutputSink",
    "ReadyCheck",
    "Work",
    "current_attempt",
    "current_attempt_var",
]

# Set by the job actor around each attempt; read through ``current_attempt()``.
current_attempt_var: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "jobvisor_attempt", default=None
)


def current_attempt() -> Attempt | None:
    """Return the attempt the calling code runs in, or None outside a job.

    A long python job can poll ``current_attempt().cancelled`` to stop
    gracefully before its grace period ends and it is killed.

    None also in a python job's child process (``isolation: process``): there a
    stop is SIGTERM, for a ``signal`` handler to catch. A context variable, it is
    None in a thread the job starts, unless that thread runs in a copy of the
    job's context: ``Thread(target=contextvars.copy_context().run, args=(f,))``.
    """
    return current_attempt_var.get()


@dataclass(slots=True)
class Attempt:
    """One execution of a job's work, as the work sees it."""

    path: str
    number: int
    started_at: float
    # threading.Event's methods (is_set, set, clear, wait); not one under threads, where
    # it builds its Condition only if somebody waits (see actors._runtime.new_event).
    cancelled: threading.Event = field(default_factory=new_event)
    # Opens where this attempt's command output goes besides the log (the job's output
    # file); None: nowhere else. Called by the command kind in the attempt's thread.
    output: Callable[[Attempt], OutputSink] | None = None
    # Called once the work has started (a command: once it is spawned), in the attempt's
    # thread: what was kept off the start's path may go now (``JobActor._restarted_in_place``).
    # It may return seconds: the work, if it still runs then, calls it again (and again while
    # it returns one), so that what it keeps is not kept for as long as the work runs.
    started: Callable[[], float | None] | None = None
    # Where a command's line too long for one record may be cut without splitting a secret
    # (the tree's ``SecretMasker``); None: the tree has no secret, any cut will do.
    cut: LineCut | None = None


class LineCut(Protocol):
    """Keeps secrets whole where ``actors._command`` cuts a long line into parts, each masked
    on its own (``supervision._secrets.SecretMasker``). Any thread; never raises."""

    @property
    def longest(self) -> int:
        """The most bytes a secret takes in a line; 0 for none (then no cut moves)."""

    def safe_cut(self, data: bytes, at: int) -> int:
        """A cut near ``at`` that no secret in ``data`` straddles (``data`` holds
        ``longest - 1`` bytes past ``at``)."""


class OutputSink(Protocol):
    """Where a command's output also goes: a job's output file (``supervision._output``).

    Called only in the attempt's thread, with bytes as the job wrote them.
    It must not raise: a file that cannot be written loses lines, never the attempt.
    """

    @property
    def logged(self) -> bool:
        """Whether the lines go to the log too (read after each ``write``)."""

    def write(self, stream: str, lines: bytes) -> None:
        """Whole lines from ``stream`` (stdout, stderr), joined by b"\\n", without the last one."""

    def close(self) -> None:
        """The attempt's command ended: release the file."""


class OutputOpener(Protocol):
    """A job actor's opener of its attempts' ``OutputSink`` (``Attempt.output``), which may
    keep what they write to open from one attempt to the next (``supervision._output``)."""

    def __call__(self, attempt: Attempt) -> OutputSink: ...

    # While a file is kept open that the attempt under way has not tried to write to: when
    # an attempt last began writing to it (monotonic); else None.
    idle_since: float | None

    def close(self) -> None:
        """The attempts that followed each other at once are over: let the file go."""


class ReadyCheck(Protocol):
    """A readiness probe (``actors.ReadyProbe``): returns once ready, raises when not."""

    def wait_ready(self, cancelled: threading.Event) -> None: ...


class Work(Protocol):
    """What a job kind does in one attempt.

    ``run`` executes in the job actor's thread; it returns an exit code (or
    None) on success and raises on failure. ``cancel`` is called from another
    thread to ask a running attempt to stop gracefully; the actor is killed
    if the attempt has not ended by the end of the grace period.

    An optional ``close()`` lets go of what the work keeps between attempts
    (an http job's session); it runs in the job actor's thread when the job
    is stopped, or in its supervisor's when the supervisor stops while the
    job is down. An exception in it is logged and does not fail the stop.
    """

    kind: ClassVar[str]

    def run(self, attempt: Attempt) -> int | None: ...

    def cancel(self, attempt: Attempt) -> None: ...

    def describe(self) -> str: ...

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool: ...

    def retry_after(self, exc: BaseException) -> float | None: ...

    # Optional: ``kill(attempt)`` ends the attempt's work at once from another thread. Work
    # that has it stops itself on ``cancel`` and keeps its grace; work without it (python)
    # is interrupted with ``Kill`` when it must end.
