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
    JobFailure,
    Kill,
    Outcome,
    ServiceExited,
)
from actors._checks import EXIT_CODES, HTTP_STATUSES, need, need_int_in
from actors._failnames import first_match, qualified_name

__all__ = ["ExitReason", "GiveUpOn", "classify"]


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
    failure, nor a success; a service that returns by itself failed. An
    attempt and the exit it ends are classified alike: the journal, ``--resume``
    and the events read the attempt's outcome, the status reads the exit's.
    """
    error = report.error
    if isinstance(error, AttemptTimeout):
        return ExitReason(Outcome.TIMEOUT, error)
    if isinstance(report, AttemptDone):
        return _attempt_ended(report, service, path)
    attempt = report.attempt
    if report.stop_requested and attempt is not None and error is attempt.error is not None:
        # What a stopped attempt raised as it stopped ended its incarnation: told as its
        # attempt's report tells it (stopped, with that error), the two agree.
        return _attempt_ended(attempt, service, path)
    return _ended(report, service, path)


def _attempt_ended(report: AttemptDone, service: bool, path: str) -> ExitReason:
    error = report.error
    if isinstance(error, Kill):  # killed after its grace (or by a forced stop)
        return ExitReason(Outcome.KILLED, None)
    if report.stop_requested:
        # Ended because it was stopped: never a failure of the job's, nor a success (a command
        # that traps SIGTERM and exits 0 proves no work done). The job actor took the stop's
        # own signal or cancellation out already; an error left is one of the work's own as
        # it stopped (a flush that failed, a trap's exit 3), told as the exit it ends tells it.
        return ExitReason(Outcome.STOPPED, error)
    if error is not None:
        return ExitReason(_failed(error), error)
    if service:
        return _service_exited(report.code, path)
    return ExitReason(Outcome.SUCCEEDED, None)


def _failed(error: BaseException) -> Outcome:
    """A failure of the job's own: one that ran out of its time (an http job's request past
    its ``http.timeout``) is a ``timeout``, as an attempt past its deadline is."""
    return Outcome.TIMEOUT if isinstance(error, JobFailure) and error.timed_out else Outcome.FAILED


def _ended(report: ChildExit, service: bool, path: str) -> ExitReason:
    error = report.error
    if isinstance(error, Exception):
        # An actor's on_stop that raised as it was stopped: a stop is never a failure; told
        # with what it raised, as a job's attempt that raised as it stopped is. A crash of
        # its own before (a message handled ahead of the stop) stays a failure.
        stopped = report.stop_requested and report.in_stop and not report.killed
        return ExitReason(Outcome.STOPPED if stopped else _failed(error), error)
    if report.killed or (isinstance(error, Kill) and report.stop_requested):
        return ExitReason(Outcome.KILLED, None)
    if error is not None:
        return ExitReason(Outcome.FAILED, _as_child_killed(error))
    if report.stop_requested:
        return ExitReason(Outcome.STOPPED, None)
    if service:
        return _service_exited(report.code, path)
    return ExitReason(Outcome.SUCCEEDED, None)


def _service_exited(code: int | None, path: str) -> ExitReason:
    how = "returned" if code is None else f"exited with {code}"
    why = "a service runs until it is stopped, so any exit is a failure"
    if code == 0:
        # How a daemonizing command (nginx, a double fork) ends: its copy left our group.
        why += (
            " (a program that puts itself in the background, as a daemon does, must run in "
            "the foreground here: a copy that left its process group runs on out of "
            "jobvisor's reach)"
        )
    return ExitReason(Outcome.FAILED, ServiceExited(f"service {path} {how}: {why}"))


def _as_child_killed(error: BaseException) -> ChildKilled:
    """A ``BaseException`` that ended a child, as the ordinary failure it is reported as."""
    if isinstance(error, Kill):
        return ChildKilled("the actor was killed")
    killed = ChildKilled(f"{type(error).__name__} ended the actor")
    killed.__cause__ = error
    return killed


@dataclass(frozen=True, slots=True)
class GiveUpOn:
    """``give_up_on``: failures no restart can mend, so the child gives up at once.

    Like systemd's ``RestartPreventExitStatus=`` and Akka's decider, for every
    kind: a command's exit code, an exception class (its subclasses count;
    anywhere in the cause chain or in an exception group, by the names of the
    classes: see ``actors._failnames``) or an http job's status.
    """

    exit_codes: tuple[int, ...] = ()
    exceptions: tuple[type[BaseException], ...] = ()
    http_status: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for key in ("exit_codes", "exceptions", "http_status"):
            value = getattr(self, key)
            need(isinstance(value, tuple | list), key, "a list", value)
            object.__setattr__(self, key, tuple(value))
        for i, code in enumerate(self.exit_codes):
            need_int_in(code, f"exit_codes[{i}]", "an exit code", *EXIT_CODES)
        for i, cls in enumerate(self.exceptions):
            ok = isinstance(cls, type) and issubclass(cls, BaseException)
            need(ok, f"exceptions[{i}]", "an exception class", cls)
        for i, code in enumerate(self.http_status):
            need_int_in(code, f"http_status[{i}]", "a status", *HTTP_STATUSES)

    def matches(self, error: BaseException | None) -> str | None:
        """The rule ``error`` matches, said as the log and status show it; None when none does."""
        if error is None:
            return None
        # Imported here: actors' kinds load on first use, and most trees use one or two.
        from actors._command import CommandFailed  # noqa: PLC0415
        from actors._http import HttpStatusError  # noqa: PLC0415
        from actors._python import PythonExit  # noqa: PLC0415

        seen: set[int] = set()
        link: BaseException | None = error
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            # A python job's sys.exit(n) or int result is its exit code, as a command's (h249)
            if isinstance(link, CommandFailed | PythonExit) and link.code in self.exit_codes:
                return f"give_up_on.exit_codes matched exit code {link.code}"
            if isinstance(link, HttpStatusError) and link.code in self.http_status:
                return f"give_up_on.http_status matched status {link.code}"
            link = link.__cause__ or link.__context__
        # By the names of its classes, whether it was raised here, in a child process or on a
        # Ray node (where only names travel): one matcher for all three.
        wanted = [qualified_name(cls) for cls in self.exceptions]
        found = first_match(error, wanted) if wanted else None
        if found is not None:
            return f"give_up_on.exceptions matched {found[0]} ({found[1]})"
        return None

    def describe(self) -> str:
        """The rules that are set, as ``validate --explain`` shows them."""
        rules = {
            "exit_codes": map(str, self.exit_codes),
            "exceptions": map(qualified_name, self.exceptions),
            "http_status": map(str, self.http_status),
        }
        shown = ((key, ", ".join(values)) for key, values in rules.items())
        return " ".join(f"{key}=[{text}]" for key, text in shown if text)
