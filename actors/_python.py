"""The ``python`` job kind: call ``module:function`` with ``args`` and ``kwargs``.

In the job actor's thread (``isolation: "thread"``, the default), or in a
child process per try (``"process"``, see ``actors._isolated``).
"""

from __future__ import annotations

import operator
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

import logbook

from actors._checks import key_field, need, need_duration, need_key
from actors._env import JobEnv
from actors._errors import JobFailure
from actors._python_call import (
    call_target,
    cancel_coroutine,
    clip_head,
    coroutine_running,
    exit_code,
    resolve_target,
)
from actors._supervised import Kill

log = logbook.Logger("actors.python")

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._attempt import Attempt

__all__ = [
    "ISOLATIONS",
    "PythonExit",
    "PythonWork",
    "resolve_target",
    "sys_exit_failure",
    "warn_left_running",
]

_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
ISOLATIONS: Final = ("thread", "process")


class PythonExit(JobFailure):
    """A python job ended with a non-zero code; ``code`` is that code.

    It called ``sys.exit`` with it, or (``isolation: process``) its process
    ended without a result: ``os._exit(n)`` gives ``n``, and a signal ``N``
    gives ``-N``, as for a command.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.code))


def sys_exit_failure(target: str, shown: str, code: int) -> PythonExit:
    """The failure of a call that ran ``sys.exit`` with a non-zero code (``shown``: its repr,
    cut as ``clip_head`` cuts it)."""
    return PythonExit(f"{target} called sys.exit({shown})", code)


def result_code(target: str, code: int | None) -> int | None:
    """The attempt's exit code from a call's int result (None: no int); non-zero fails it.

    An int result is the exit code, as ``sys.exit(main())`` makes it: 0 is
    a success, and any other is the failure ``sys.exit`` with it would be.
    """
    if not code:
        return code
    # As a process's exit code (never a negative "signal"); beyond a C long, 255, as
    # sys.exit(2**70) makes it (the low byte made 2**70 a success).
    status = exit_code(code)
    shown = f"{code}" if status == code else f"{code} (exit code {status})"
    if status:
        raise PythonExit(
            f"{target} returned {shown}: a non-zero int result is a failed exit code "
            "(return 0 or None for a success)",
            status,
        )
    return status


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonWork:
    """Call ``target`` (``"module:function"``); a coroutine function runs in its own event loop.

    The call's return value is dropped unless it is an int, which becomes the
    attempt's exit code: non-zero fails it, as ``sys.exit`` with it would
    (``False`` is no int here: a success). An exception fails the attempt. A
    coroutine function's task is cancelled by a stop or a timeout (in a thread; in a
    child, SIGTERM is the stop), and refused under the gevent runtime in a thread.
    Threads the call leaves running are waited for in a child, as Python's exit
    waits for them, and named in a warning in a thread, which does not wait.

    ``isolation``: ``"thread"`` calls it in the job actor's thread;
    ``"process"`` in a new child process per try, which a timeout or a stop
    ends like a command (SIGTERM to its process group, SIGKILL ``grace``
    seconds later), whatever the call does. ``grace``, ``cwd`` (the child's
    working directory; None: ours) and ``env`` (added to ours) apply to
    ``process`` only: a thread cannot be signalled, and shares our directory
    and environment.
    """

    kind: ClassVar[str] = "python"
    target: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    isolation: str = "thread"
    grace: float = 5.0
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ok = isinstance(self.target, str) and bool(_TARGET.fullmatch(self.target))
        need(ok, "python", "a target like 'package.module:function'", self.target)
        need(isinstance(self.args, list | tuple), "args", "a list of arguments", self.args)
        object.__setattr__(self, "args", tuple(self.args))
        need(
            isinstance(self.kwargs, Mapping),
            "kwargs",
            "a mapping of keyword arguments",
            self.kwargs,
        )
        for key in self.kwargs:
            ok = isinstance(key, str) and key.isidentifier()
            need_key(ok, key_field("kwargs", key), "a keyword argument name", key)
        need(self.isolation in ISOLATIONS, "isolation", "thread or process", self.isolation)
        need_duration(self.grace, "stop.grace")
        need(self.cwd is None or isinstance(self.cwd, str), "cwd", "a directory path", self.cwd)
        # A shared part (an env file's) was checked once, when it was made.
        own = self.env.own if isinstance(self.env, JobEnv) else self.env
        ok = isinstance(own, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in own.items()
        )
        need(ok, "env", "a mapping of environment variable names to strings", self.env)
        for key, value in (("cwd", self.cwd), ("env", self.env)):
            need(
                not value or self.isolation == "process",
                key,
                f"{key} only with isolation process (a thread shares this process's)",
                value,
            )

    def run(self, attempt: Attempt) -> int | None:
        if self.isolation == "process":
            from actors._isolated import run_isolated  # noqa: PLC0415 - loads the command kind

            return run_isolated(self, attempt)
        before = _alive_now()
        try:
            code = call_target(self.target, self.args, dict(self.kwargs), attempt.cancelled)
        except SystemExit as exc:
            warn_left_running(attempt, before)
            # As for a process: sys.exit(n) ends the attempt with code n, None is 0 and
            # anything else is 1. Never let it through: it would end the actor unreported.
            code = exit_code(exc.code)
            if code == 0:
                return 0
            raise sys_exit_failure(self.target, clip_head(repr(exc.code)), code) from None
        except Kill:
            raise  # ended from outside: what it left is the least of it
        except BaseException:
            warn_left_running(attempt, before)
            raise
        warn_left_running(attempt, before)
        return result_code(self.target, code)

    def cancel(self, attempt: Attempt) -> None:
        # A thread cannot be stopped from outside but by the kill at the end of the grace
        # period; cooperative code watches attempt.cancelled instead, and a coroutine's task
        # is cancelled (asyncio's own stop: CancelledError at its await, its finally runs).
        # A process gets SIGTERM.
        if self.isolation == "process":
            from actors._isolated import cancel_child  # noqa: PLC0415

            cancel_child(self, attempt)
        else:
            cancel_coroutine(attempt.cancelled)

    def ends_on_cancel(self, attempt: Attempt) -> bool:
        """Whether the attempt's call ends by itself once cancelled: a coroutine's in a thread
        (its task cancelled; a child's process ends on SIGTERM anyway, see ``kill``).

        The job actor reports such a call's timeout once it has ended (or at the kill its
        grace ends with), not at once as for plain code, whose thread may not come back.
        """
        return self.isolation == "thread" and coroutine_running(attempt.cancelled)

    @property
    def kill(self) -> Callable[[Attempt], None] | None:
        """SIGKILL the attempt's child at once (``process``); None for a thread, which cannot.

        The job actor reads a work's ``kill`` as "stops itself on cancel": a
        process keeps its grace and is reported once it has ended.
        """
        return self._kill_child if self.isolation == "process" else None

    def _kill_child(self, attempt: Attempt) -> None:
        from actors._isolated import kill_child  # noqa: PLC0415

        kill_child(self, attempt)

    def describe(self) -> str:
        return self.target

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        """Any exception by default; with ``on``, only exceptions of those classes.

        ``on`` names them as ``give_up_on.exceptions`` does (``module.Class``,
        a builtin by its bare name; a bare name matches any class of that
        name), and matches alike: subclasses, the cause chain, and an
        exception group when each of its exceptions matches (see
        ``actors._failnames``). A child process's exception (``PythonError``)
        and a Ray node's (``RemoteError``) match by the names they carry.
        """
        if not on:
            return True
        from actors._failnames import every_part  # noqa: PLC0415 - only with retry.on

        return every_part(exc, on)

    def retry_after(self, exc: BaseException) -> float | None:
        del exc
        return None


# Threads already named as left running: each is told of once, by the first attempt that saw it.
_told: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
# Where jobvisor's own threads run: never a job's to leave behind.
_OURS: Final = ("actors.", "supervision.", "pykka")
_OUR_NAMES: Final = ("jv-", "jobvisor-", "ray-")


def _alive_now() -> list[threading.Thread]:
    """The process's threads as a call begins, for ``warn_left_running``."""
    # A walk over every thread on each attempt, a copy in C (9 µs with 1,000 threads, where
    # a set of them costs 26): what is looked up in it is only built when there are more.
    return threading.enumerate()


def warn_left_running(attempt: Attempt, before: list[threading.Thread]) -> None:
    """Warn of the threads a python job run in a thread started and left running.

    ``before``: the threads alive as the call began (``_alive_now``). Only when they are not
    the same ones now are the threads looked at (a count would miss a thread started while
    another ended; a look costs a walk over every thread of the process, one per job
    actor), and those alive before the call (the program's own: a
    pool it started, the thread that started the tree) and jobvisor's own left out. A
    thread that is no daemon is warned of too (a job's inherits its thread's daemon flag,
    so it asked for it): Python's exit waits for it, and a `run` would hang at its end.
    asyncio's own workers (``asyncio_N``: the program's ``await asyncio.to_thread(...)``
    while the job runs) are left out. Said once per thread; another job running at the
    same moment may be the one that started it, which the warning cannot tell.
    """
    now = threading.enumerate()
    # The same threads, by identity (a Thread's own __eq__ never asked), in C: nothing new.
    if len(now) == len(before) and all(map(operator.is_, now, before)):
        return
    earlier = set(before)
    main = threading.main_thread()
    left = [
        thread
        for thread in now
        if thread is not main
        and (thread.daemon or not thread.name.startswith("asyncio_"))
        and thread not in earlier
        and thread.is_alive()
        and not isinstance(thread, threading._DummyThread)  # a foreign thread, seen by us
        and not thread.name.startswith(_OUR_NAMES)
        and not _runs_ours(thread)
        and thread not in _told
    ]
    if not left:
        return
    _told.update(left)
    count = f"{len(left)} thread{'s' if len(left) > 1 else ''} it started"
    log.warning(
        "{}: attempt {} ended with {} still running: {}; jobvisor does not wait for threads "
        "of a job run in its own thread (isolation: thread): they run on beside it, and end, "
        "unfinished, when its process exits (at the end of `run` too); join them before the "
        "job returns, or use isolation: process, whose child waits for them as Python's exit does",
        attempt.path,
        attempt.number,
        count,
        ", ".join(thread.name for thread in left),
        extra={"path": attempt.path, "attempt": attempt.number},
    )


def _runs_ours(thread: threading.Thread) -> bool:
    target = getattr(thread, "_target", None)
    owner = getattr(target, "__self__", None)
    modules = (
        type(thread).__module__,
        getattr(target, "__module__", None) or "",
        type(owner).__module__ if owner is not None else "",
    )
    return any(module.startswith(_OURS) for module in modules)
