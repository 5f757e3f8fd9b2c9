"""What an exit report means: the one classification of an actor's raw facts.

Actors report what happened (the error that ended them, an exit code, whether
a stop was asked, whether they were killed, how many attempts ran); only here
do those facts become an ``Outcome`` and the error to show. As in OTP, the
exit reason is data the supervisor reads, and a pure function reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors import (
    AttemptDone,
    AttemptTimeout,
    ChildExit,
    ChildKilled,
    Kill,
    Outcome,
    ServiceExited,
)

__all__ = ["ExitReason", "classify"]


@dataclass(frozen=True, slots=True)
class ExitReason:
    """How an attempt or an incarnation ended, and the error to show for it."""

    outcome: Outcome
    error: BaseException | None


def classify(
    report: ChildExit | AttemptDone, *, service: bool = False, path: str = ""
) -> ExitReason:
    """Classify an exit or attempt report; ``service`` and ``path`` describe the child.

    A deadline beats a stop (a timed-out attempt is a timeout even while
    stopping); an ordinary exception is a failure; a child killed after its
    grace was stopped by force; a ``BaseException`` (``SystemExit``, a stray
    ``Kill``) is reported as ``ChildKilled``; a stop that was asked is never a
    failure; a service that returns by itself failed.
    """
    error = report.error
    if isinstance(error, AttemptTimeout):
        return ExitReason(Outcome.TIMEOUT, error)
    if isinstance(report, AttemptDone):
        if report.stop_requested:
            # Ended because it was stopped: its error is no failure of the job's.
            return ExitReason(Outcome.STOPPED if error is not None else Outcome.SUCCEEDED, error)
        return ExitReason(Outcome.FAILED if error is not None else Outcome.SUCCEEDED, error)
    return _ended(report, service, path)


def _ended(report: ChildExit, service: bool, path: str) -> ExitReason:
    error = report.error
    if isinstance(error, Exception):
        return ExitReason(Outcome.FAILED, error)
    if report.killed or (isinstance(error, Kill) and report.stop_requested):
        return ExitReason(Outcome.KILLED, None)
    if error is not None:
        return ExitReason(Outcome.FAILED, _as_child_killed(error))
    if report.stop_requested:
        return ExitReason(Outcome.STOPPED, None)
    if service:
        return ExitReason(Outcome.FAILED, ServiceExited(f"service {path} returned"))
    return ExitReason(Outcome.SUCCEEDED, None)


def _as_child_killed(error: BaseException) -> ChildKilled:
    """A ``BaseException`` that ended a child, as the ordinary failure it is reported as."""
    if isinstance(error, Kill):
        return ChildKilled("the actor was killed")
    killed = ChildKilled(f"{type(error).__name__} ended the actor")
    killed.__cause__ = error
    return killed
