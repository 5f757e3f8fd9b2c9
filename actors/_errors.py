"""The one exception hierarchy of jobvisor.

It lives in the lowest layer (``actors``) so that both packages raise from it;
``supervision`` re-exports every name::

    JobvisorError
    ├── SpecError                 a spec or policy value is invalid
    │   ├── ManifestError         (supervision) every problem of a manifest, with paths and lines
    │   └── ChildrenChangedError  a group's update names other children than the group has
    ├── RuntimeSetupError         the runtime or the tree cannot run in this process as set up
    ├── LoggingSetupError         (supervision) the log file cannot be opened
    ├── JournalError              (supervision) the journal cannot be opened or written
    ├── DaemonError               (supervision) the daemon cannot start or serve
    ├── NoDaemonError             (supervision) no daemon answers on the state dir's socket
    ├── NoSuchChildError          a path names no child
    │   ├── GroupDownError        the path's group is not running: nothing can reach the child
    │   └── NotAGroupError        the path names a job or an actor where a group is needed
    ├── DependencyDownError       a start refused: a job it depends on is down for good
    ├── NotSignalledError         a signal refused: the child has no process of its own running
    ├── ChildUnavailableError     a message cannot reach a supervised child
    ├── TreeStoppedError          the tree was asked to act after it stopped
    │   └── ShuttingDownError     a group that is shutting down was asked to start or add
    ├── InHubError                a Tree call that waits was made in gevent's hub (a signal handler)
    └── JobFailure                why an attempt or a supervisor failed
        ├── AttemptTimeout        an attempt ran past its ``timeout``
        ├── ServiceExited         a service returned while nobody stopped it
        ├── ChildKilled           a BaseException ended a child
        ├── PythonExit            a python job called sys.exit with a non-zero code
        ├── CommandFailed         a command job exited non-zero or was killed by a signal
        ├── HttpStatusError       an http job got a status it does not expect
        ├── HttpRequestError      an http request got no answer (connection, timeout, cancelled)
        ├── NotReady              a service's readiness probe did not pass
        ├── NoThreadError         an attempt got no thread: the host's limit on tasks is reached
        └── EscalationError       a supervisor exhausted its budget and escalated
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from actors._python_call import (
    MESSAGE_MAX,
    TRACEBACK_MAX,
    clip_head,
    clip_tail,
    headline,
    user_traceback,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "AttemptTimeout",
    "ChildKilled",
    "ChildUnavailableError",
    "ChildrenChangedError",
    "DependencyDownError",
    "EscalationError",
    "GroupDownError",
    "InHubError",
    "JobFailure",
    "JobvisorError",
    "NoSuchChildError",
    "NoThreadError",
    "NotAGroupError",
    "NotSignalledError",
    "RuntimeSetupError",
    "ServiceExited",
    "ShuttingDownError",
    "SpecError",
    "TreeStoppedError",
]

# What comes before a failed command's last line on stderr in its error (``actors._command``):
# here, as the status table and the crash-loop damper read it, with nothing heavy imported.
LAST_LINE_SAID: Final = "; its last line on stderr: "


class JobvisorError(Exception):
    """Root of every error jobvisor raises on purpose.

    Catch it to handle anything jobvisor reports; an exception outside this
    tree that escapes jobvisor is a bug in jobvisor.
    """


class SpecError(JobvisorError, ValueError):
    """A spec or policy value is invalid.

    Raised when a value type is constructed (``Backoff(initial=-1)``), so a
    tree never starts with a policy it cannot honour. ``field`` names the
    field (``backoff.initial``, ``http.expect_status[1]``), ``expected`` says
    what it takes and ``got`` is the value given; ``shown`` is ``got`` as the
    message prints it (masked where the value may hold a secret);
    ``about`` is a description that replaces the value wherever the problem
    is shown (``both service and every``). ``other`` is the same
    problem told from a second field (``backoff.max`` below ``initial`` is
    also ``initial`` above ``max``), for a reader that knows which of the two
    the user wrote. The manifest loader reads these attributes to put each
    problem at its path and line in a ``ManifestError``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        field: str = "",
        expected: str = "",
        got: object = None,
        shown: str | None = None,
        about: str | None = None,
        other: SpecError | None = None,
    ) -> None:
        if about is not None:
            shown = about
        elif shown is None:
            shown = repr(got)
        if not message:
            message = (
                f"{field}: expected {expected}, got {shown}"
                if field
                else f"expected {expected}, got {shown}"
            )
        super().__init__(message)
        # Pickled as (type, (message,), __dict__), which brings these back as they were.
        self.field = field
        self.expected = expected
        self.got = got
        self.shown = shown
        self.about = about
        self.other = other


class ChildrenChangedError(SpecError):
    """``Tree.update_group`` gave a running group other children than it has: nothing changed.

    An update changes a running group's strategy, policy and order, never its children:
    add and remove them first (``add_child``, ``remove_child``), then update it. A group
    that is down takes any children, for its next start. A reload that meets it made its
    update while the group was down, and the group started (or restarted) since, with the
    children it had: the reload looks again at what the group runs now. A ``SpecError``
    too, as it was before it had a name of its own.
    """


class RuntimeSetupError(JobvisorError):
    """The chosen runtime, or the tree's jobs, cannot run in this process as it is set up.

    Raised by ``start_tree(..., runtime="gevent")`` when gevent has not
    monkey-patched the process first. Call ``actors.install_runtime("gevent")``
    before anything else imports ``threading`` users (or run ``jobvisor
    --runtime gevent``). Raised by ``start_tree`` under threads, too, for a
    tree that runs processes while SIGCHLD is ignored (the system would reap
    them unread), and it is the failure of a command attempt whose exit
    status was lost that way or to another ``os.wait()`` in the process.
    """


class NoSuchChildError(JobvisorError, LookupError):
    """A path such as ``etl/load`` names no child of the tree.

    Raised by ``Tree.restart``, ``stop_child``, ``start_child``,
    ``remove_child`` and ``add_child(under=...)``; the CLI maps it to exit 4.
    ``known`` (the paths beside where the lookup failed) lets the message name
    the path meant: a replicated job's replicas (``replicated``: ``replicas_of``'s), the top
    level for ``all``.
    """

    def __init__(
        self, path: str, known: Iterable[str] = (), replicated: Mapping[str, str] | None = None
    ) -> None:
        known = list(known)
        super().__init__(no_child_said(path, known, replicated))
        self.path = path
        # The paths a replicated job's name meant (an HTTP action acts on each, as the CLI).
        self.replicas: list[str] = (
            replicas_of(path, known, replicated) if replicated is not None else []
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message, its path would be that message (a process boundary).
        return (_no_such_child, (self.path, str(self)))


_NAMED: Final = 10  # paths a message names; past that, counted


def no_child_said(
    path: str, known: Iterable[str] = (), replicated: Mapping[str, str] | None = None
) -> str:
    """Why ``path`` names no child, with the spelling meant where it can be told.

    supervisorctl's ``app:web`` and ``app:*`` and its ``all``, and the name of a job that
    runs as replicas (``known``: paths beside where the lookup failed, ``app/worker.0``).
    """
    said = f"no child at path {path!r}: "
    known = list(known)
    if ":" in path:
        group, _, rest = path.partition(":")
        meant = "/".join(p for p in (group, *rest.split(":")) if p not in ("", "*"))
        if not meant:
            return f"{said}check `status` for the paths this tree has"
        if rest.strip(":*"):
            return f"{said}jobvisor writes {meant}"
        return f"{said}jobvisor writes {meant}: a group's path acts on the group"
    replicas = replicas_of(path, known, replicated)
    if replicas:
        return f"{said}{path} runs as replicas, each a path of its own: {_some(replicas)}"
    if path.lower() == "all":
        top = [p for p in known if "/" not in p]
        named = f": {_some(top)}" if top else ""
        return (
            f"{said}jobvisor has no `all` (unless a job is named so): `status` with no path "
            f"shows the whole tree; name the paths, one or more{named} (a group's path acts "
            "on the whole group)"
        )
    return f"{said}check `status` for the paths this tree has"


def replicas_of(
    name: str, paths: Iterable[str], replicated: Mapping[str, str] | None = None
) -> list[str]:
    """The paths of ``name``'s replicas among ``paths`` (``w.0``, ``w.1``, ...), in their order.

    ``replicated``: each replica's path to the path of the job it is one of, as the tree says
    (a status node's ``replica_of``, a spec's); given, only those count, for the name alone
    proves nothing (a person may name jobs ``q.0`` and ``q.1``). Without it (a manifest read
    as text, where ``replicas:`` is not kept), the name pattern.
    """
    if replicated is not None:
        return [p for p in paths if replicated.get(p) == name]
    prefix = f"{name}."
    return [p for p in paths if p.startswith(prefix) and p[len(prefix) :].isdigit()]


def _some(paths: list[str]) -> str:
    named = ", ".join(paths[:_NAMED])
    return f"{named} and {len(paths) - _NAMED} more" if len(paths) > _NAMED else named


class GroupDownError(NoSuchChildError):
    """A path names a child inside a group that is not running: nothing can reach it now.

    The child is in the manifest (``status`` lists it), but its group is
    stopped, given up, stopping or waiting to start again: start the group
    first, which starts its children. A ``NoSuchChildError`` too, for code
    that catches those; the CLI gives exit 1 (not 4: the job exists).
    ``path`` is the child's, ``group`` the group's.
    """

    def __init__(self, path: str, group: str, state: str) -> None:
        NoSuchChildError.__init__(self, path)
        self.args = (f"cannot reach {path}: its group {group} is {state}; start {group} first",)
        self.group = group


# How a dependency's state reads after "which": "which gave up; start db first".
_DEPENDENCY_SAID = {"gave_up": "gave up", "failed": "failed", "stopped": "is stopped"}


class DependencyDownError(JobvisorError):
    """A person's start or restart of a job whose ``depends_on`` names a job down for good.

    Raised by ``Tree.start_child`` and ``Tree.restart`` when a dependency gave up,
    failed finally or is stopped: as systemd's ``Requires=`` would not run a unit
    without its requirement, the job is left as it is (a running one runs on).
    Start the dependency first; the job then starts once it is ready. A
    dependency that is merely not ready yet (starting, in backoff) is no error:
    the job waits for it (``pending``), as at boot. The CLI gives exit 1 and the
    HTTP API 409. ``path`` is the job's, ``dependency`` the dependency's path and
    ``state`` its state (``gave_up``, ``failed``, ``stopped``).
    """

    def __init__(self, verb: str, path: str, dependency: str, state: str) -> None:
        said = _DEPENDENCY_SAID.get(state, f"is {state}")
        super().__init__(
            f"cannot {verb} {path}: it depends on {dependency}, which {said}; "
            f"start {dependency} first"
        )
        self.path = path
        self.dependency = dependency
        self.state = state


class NotAGroupError(NoSuchChildError):
    """``add_child(under=path)`` names a job or an actor: only a group has children."""

    def __init__(self, path: str, kind: str) -> None:
        NoSuchChildError.__init__(self, path)
        self.args = (
            f"{path!r} is not a group ({kind}): add_child(under=...) takes a group's path",
        )
        self.kind = kind


class NotSignalledError(JobvisorError):
    """A person's signal (``Tree.signal``) that was not sent: nothing was done.

    Raised when the child has no process of its own to signal: a group, an
    actor, an http job, a python job run in a thread or placed on Ray, or a
    command (or ``isolation: process`` python job) that is not running now. The
    message says which, and that nothing was sent. The CLI gives exit 1 and the
    HTTP API 409. ``path`` is the child's.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path} {why}")
        self.path = path


class ChildUnavailableError(JobvisorError):
    """A message sent through a stable child reference cannot be delivered.

    Raised to the sender (``tell``) or set on the future (``ask``) when the
    child is stopped, gave up, was removed, or its restart stash is full. It
    is never raised while the child is merely restarting: then the message
    waits for the next incarnation.
    """


class TreeStoppedError(JobvisorError):
    """The tree was asked to act after it had stopped.

    Start a new tree with ``start_tree``; a stopped tree cannot be revived.
    """


class ActionTimeoutError(JobvisorError, TimeoutError):
    """A ``Tree`` call waited its ``timeout`` out; what it asked for goes on.

    The message says what was still going on (a child still stopping, a supervisor that
    has not answered) and what to do: look at ``tree.status()``, or wait longer.
    """


class InHubError(JobvisorError):
    """A ``Tree`` call that waits (for an answer, or for the tree) was made in gevent's hub.

    Under the gevent runtime a plain ``signal.signal`` handler runs in the hub greenlet when
    its signal comes while the main greenlet waits, and nothing may wait there (gevent's own
    ``BlockingSwitchOutError``). Nothing was asked of the tree. Install the handler with
    ``gevent.signal_handler(signum, handler)``, which runs it in a greenlet of its own; or
    call ``tree.stop()``, which in the hub begins the stop and returns False at once.
    """


class ShuttingDownError(TreeStoppedError):
    """A group that is shutting down (or escalating) was asked to start or add a child.

    A state of the running tree, not a bad value: the request may be made
    again once the group runs again (a new tree, or the group's restart).
    """


class JobFailure(JobvisorError):
    """Why an attempt, a child or a supervisor failed.

    Instances travel in exit reports, events and ``last_exit.error``; the
    subclasses say which way it failed. User code never needs to raise one.
    """

    # The process was SIGKILLed by its own stop's grace running out (a command's, or an
    # ``isolation: process`` child's), not by someone else during the stop.
    past_grace: bool = False

    @property
    def timed_out(self) -> bool:
        """Did it run out of its time (outcome ``timeout``, not ``failed``)?"""
        return False


class AttemptTimeout(JobFailure):
    """An attempt ran past its ``timeout`` and its work was stopped."""

    @property
    def timed_out(self) -> bool:
        return True


class ServiceExited(JobFailure):
    """A ``service: true`` job returned although nobody asked it to stop."""


class ChildKilled(JobFailure):
    """A ``BaseException`` (SystemExit, KeyboardInterrupt, GreenletExit) ended a child.

    pykka would answer such an exception by stopping every actor in the
    process; jobvisor turns it into an ordinary failure of that one child.
    """


class EscalationError(JobFailure):
    """A supervisor exhausted its restart budget and escalated to its parent.

    ``path`` is the supervisor that escalated ("" for the root) and
    ``__cause__`` the failure that exhausted it, which may itself be an
    ``EscalationError``: ``chain()`` walks the whole way down.
    """

    def __init__(self, path: str, reason: str, cause: BaseException | None) -> None:
        where = path or "the root supervisor"
        below = f": {describe(cause)}" if cause is not None else ""
        super().__init__(f"{where} escalated ({reason}){below}")
        self.path = path
        self.reason = reason
        self.__cause__ = cause

    def chain(self) -> list[BaseException]:
        """Return this error and every cause below it, outermost first."""
        out: list[BaseException] = []
        err: BaseException | None = self
        while err is not None and err not in out:
            out.append(err)
            err = err.__cause__
        return out


def describe(err: BaseException) -> str:
    """Render ``err`` as ``Type: message`` for logs, status and events.

    A user's exception whose ``__str__`` raises is still a failure to tell, never a
    fault of the supervisor that tells it: ``Type: <unprintable Type>``. A message
    past ``MESSAGE_MAX`` characters is cut there, saying how many more it had. The
    exception a user's raised ``from`` is named too: ``RuntimeError: outer (caused by
    KeyError: 'k')``; where it happened is ``traceback_of``'s.
    """
    if isinstance(err, JobvisorError):
        try:
            text = str(err)
        except Exception:
            name = type(err).__name__
            return f"{name}: <unprintable {name}>"
        # Ours, cut where they are made (a child's message and traceback, ``_raised``); this
        # bound is for a user's own JobFailure, as generous as those two together.
        return clip_head(text, _OURS_MAX)
    return headline(err)


def traceback_of(err: BaseException) -> str | None:
    """Where a python job run in a thread failed: its traceback, as a child's error carries it.

    With its causes and contexts, without jobvisor's frames, cut as a child's is. None for
    every other failure (a command's, an http job's, an ``isolation: process`` child's, whose
    text holds its traceback already, an exit code): they have nothing of the user's to trace.
    The log writes it below the failure's line; status, events and the journal keep the line.
    """
    if isinstance(err, ChildKilled) and err.__cause__ is not None:
        err = err.__cause__  # a BaseException of the job's, told as a failure
    return user_traceback(err) or _actors_traceback(err)


def _actors_traceback(err: BaseException) -> str | None:
    """Where an actor failed: ``err``'s traceback from its first frame that is not jobvisor's
    or pykka's on (its ``__init__``, ``on_start``, ``on_receive`` and what they called, ours
    too), with its causes and contexts as Python prints them.

    None when ``err`` was not raised by an actor's own code (``actor_raised``): a command's
    exit or an http job's error say it all in their message. A failure the log said with no
    line to look at (h244).
    """
    first = _actors_first(err)
    if first is None:
        return None
    import traceback  # noqa: PLC0415 - only when a failure is logged

    shown = traceback.TracebackException.from_exception(err)
    shown.stack = traceback.StackSummary.from_list(list(shown.stack)[first:])
    return clip_tail("".join(shown.format()).rstrip("\n"))


def actor_raised(err: BaseException) -> bool:
    """Whether ``err`` came out of an actor's own code (``__init__``, ``on_start``,
    ``on_receive``...), called by pykka's loop or ``start_supervised``: a walk over its
    traceback's frames, nothing formatted (a failed start asks it on every restart)."""
    return _actors_first(err) is not None


def _actors_first(err: BaseException) -> int | None:
    """The index of ``err``'s first traceback frame that is the actor's own, if an actor's
    loop or start called it; else None."""
    tb = err.__traceback__
    if tb is None:
        return None
    dirs = _our_dirs()
    callers = _actor_callers()
    previous = ""
    index = 0
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(dirs):
            # The machinery that called it leads; the first frame past it must be called by
            # an actor's loop or start (a job's retry goes through tenacity: not an actor's).
            return index if index and previous.startswith(callers) else None
        previous = filename
        index += 1
        tb = tb.tb_next
    return None  # all ours: its message says it all


@functools.cache
def _our_dirs() -> tuple[str, ...]:
    """The directories of jobvisor's packages and pykka's, each ending with a ``/``."""
    import os.path  # noqa: PLC0415 - kept out of the control commands' start

    import pykka  # noqa: PLC0415 - only when a failure is logged

    here = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
    supervision = os.path.join(os.path.dirname(here), "supervision")  # noqa: PTH118, PTH120
    dirs = (here, supervision, os.path.dirname(pykka.__file__))  # noqa: PTH120
    return tuple(os.path.join(d, "") for d in dirs)  # noqa: PTH118


@functools.cache
def _actor_callers() -> tuple[str, ...]:
    """The files whose code calls an actor's own: pykka's loop (``on_start``, ``on_receive``)
    and ``start_supervised`` (its ``__init__``)."""
    import os.path  # noqa: PLC0415 - kept out of the control commands' start

    here = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
    return (_our_dirs()[2], os.path.join(here, "_supervised.py"))  # noqa: PTH118


_OURS_MAX: Final = MESSAGE_MAX + TRACEBACK_MAX + 1024


class NoThreadError(JobFailure, RuntimeError):
    """The OS refused a new thread: the process or its cgroup is at its limit on tasks.

    Raised by ``start_task`` and ``start_thread`` instead of the interpreter's bare
    ``RuntimeError("can't start new thread")``. Not a bug of anyone's: a host out of
    tasks (``RLIMIT_NPROC``, a cgroup's ``pids.max``), or of memory for a stack. An
    attempt that cannot get its thread fails with it, as one whose process cannot
    fork does, and its policy restarts it; raise the limit, or run fewer jobs. Still
    a ``RuntimeError``, for code that caught the interpreter's.
    """

    def __init__(self) -> None:
        super().__init__(
            "could not start: no thread could be started (the process or cgroup limit on "
            "tasks, RLIMIT_NPROC / pids.max, is reached)"
        )


def _no_such_child(path: str, said: str) -> NoSuchChildError:
    """A ``NoSuchChildError`` unpickled: its path and its message as they were."""
    error = NoSuchChildError.__new__(NoSuchChildError)
    Exception.__init__(error, said)
    error.path = path
    error.replicas = []  # not carried: the message names them
    return error
