"""What a supervised actor tells its supervisor: it started, an attempt ended, it ended."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors._ref import ChildRef

__all__ = [
    "AttemptDone",
    "ChildExit",
    "ChildExits",
    "ChildStarted",
    "Link",
    "Outcome",
    "Parent",
    "Resumed",
    "Waiting",
]


class Outcome(enum.StrEnum):
    """How an attempt or a child ended; the ``outcome`` field of ``last_exit``."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    STOPPED = "stopped"  # ended because a person, a shutdown or the actor itself stopped it
    KILLED = "killed"  # did not stop within its grace period and was abandoned

    # Failed or timed out. Set on each member below: a property was a Python call, asked
    # four to eight times a restart.
    is_failure: bool


for _outcome in Outcome:
    _outcome.is_failure = _outcome in (Outcome.FAILED, Outcome.TIMEOUT)
del _outcome


class Parent(Protocol):
    """Anything an exit report can be told to: a supervisor's ActorRef, or the tree's monitor."""

    def tell(self, message: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Link:
    """How a supervised actor reaches its supervisor.

    ``key`` names the child record in the supervisor; ``incarnation`` lets the
    supervisor ignore reports from an incarnation it already gave up on.
    """

    parent: Parent
    key: int
    incarnation: int
    ref: ChildRef | None = None


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """The child's ``on_start`` finished: the supervisor may start the next one."""

    key: int
    incarnation: int


# The two reports of every restart are not frozen: a frozen dataclass's __init__ sets each
# field through object.__setattr__ (1.6 us a report here, against 0.45). Nobody writes to
# one once it is told; the permit of a restart in place sets ``again`` before.


@dataclass(slots=True)
class AttemptDone:
    """One attempt of a job ended (a periodic job reports every tick): its raw facts.

    ``error`` is what the work raised (None when it returned) and
    ``stop_requested`` whether a stop had been asked by then; what they mean
    (succeeded, failed, timed out, stopped) is for the supervisor to decide.
    """

    key: int
    incarnation: int
    attempt: int
    error: BaseException | None
    started_at: float
    ended_at: float
    code: int | None = None
    stop_requested: bool = False
    node: str | None = None  # "ID (IP)": the Ray node a placed job's attempt ran on
    next_at: float | None = None  # a periodic job's next tick, wall time


@dataclass(slots=True)
class ChildExit:
    """The child ended; sent exactly once per incarnation, with the raw facts of its end
    (alone, or among a restart-in-place loop's in a ``ChildExits``).

    ``error`` is the first exception that ended it (None: it returned or
    stopped), ``stop_requested`` whether its supervisor asked it to stop,
    ``killed`` whether it was ended by force after its grace, and ``attempts``
    the attempts it finished (periodic jobs carry the count across restarts).
    The supervisor alone turns these into an ``Outcome``: an actor that
    stopped itself with no error (pykka ``self.stop()``) is a normal exit.
    """

    key: int
    incarnation: int
    error: BaseException | None = None
    code: int | None = None
    stop_requested: bool = False
    killed: bool = False
    attempts: int = 0
    # The attempt whose end ended the child (a once job's, a service's): its report rides
    # with the exit, one message instead of two. Handled before the exit.
    attempt: AttemptDone | None = None
    # Not None: the incarnation restarted in place (``supervision._inplace``), and this is
    # the supervisor's own decision, already made and noted in its window.
    again: Any = None
    # ``error`` was raised by the actor's own ``on_stop``, the first of its end: told as a
    # stop's (``stopped``, with it) when a stop was asked, never as a failure.
    in_stop: bool = False


@dataclass(frozen=True, slots=True)
class ChildExits:
    """Exit reports of restarts in place told together (``supervision._inplace``), oldest
    first: handled one after another, as if each had come alone. One tell and one turn of
    the supervisor's loop for a tight loop's batch (up to ``InPlace.MOST``), where each
    report had its own (seven calls a report, of about 140)."""

    reports: tuple[ChildExit, ...]


@dataclass(frozen=True, slots=True)
class Waiting:
    """The child's breaker is open: it makes no calls until ``retry_at`` (wall time).

    ``error`` (and ``code``): the failure of the attempt that opened it, when one did; the
    child lives on, waiting, so this is where that failure is told. ``still``: it was waiting
    already, and asked again in vain: ``retry_at`` is its next time to ask.
    """

    key: int
    incarnation: int
    breaker: str
    retry_at: float
    error: BaseException | None = None
    code: int | None = None
    still: bool = False


@dataclass(frozen=True, slots=True)
class Resumed:
    """The child's breaker let a call through again."""

    key: int
    incarnation: int
