"""``isolation: process``: one try of a python job in a child process, stopped like a command.

Each try starts a new interpreter (a spawn: never a fork of the
multi-threaded supervisor) that runs ``actors/_python_call.py`` as a script,
through a ``CommandWork``. So the child gets a session and process group of
its own, its stdout and stderr are logged line by line, a stop sends SIGTERM
to its group and SIGKILL after the grace, ``kill`` SIGKILLs it at once, it is
reaped without blocking the gevent hub, and the command warden kills it
should jobvisor die. Whatever the child does (``os._exit``, C code that holds
its GIL, a crash), the supervisor's own process and GIL are untouched.

The call (the parent's ``sys.path``, the target, its args and kwargs) and the
result travel through two files in a directory of the try's own (0700, with a
random name in the temporary directory), removed when the try ends: args are
never in argv or the environment, where ``ps`` would show them.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from actors import _python_call
from actors._command import CommandFailed, CommandWork
from actors._env import as_dict
from actors._errors import JobFailure
from actors._spawn import close_all

if TYPE_CHECKING:
    from actors._attempt import Attempt
    from actors._python import PythonWork

__all__ = ["PythonError", "cancel_child", "kill_child", "run_isolated"]

_SCRIPT: Final = _python_call.__file__


class PythonError(JobFailure):
    """An exception a python job raised in its child process (``isolation: process``).

    Raised by ``PythonWork.run`` in place of the child's exception, whose
    class may not even import in jobvisor's process. Its text is the child's
    ``Type: message`` followed by the traceback, so logs, status and journal
    show where it failed; ``failure_names`` are the names of the exception's
    classes, its cause chain's and its group's (``_python_call.failure_names``),
    so ``give_up_on`` and ``retry.on`` match exactly as for a thread.
    """

    def __init__(self, message: str, failure_names: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.failure_names = failure_names

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.failure_names))


def run_isolated(work: PythonWork, attempt: Attempt) -> int | None:
    """Run one try of ``work`` in a child process; return or raise as the call did in a thread.

    Runs in the job actor's thread (greenlet). A ``Kill`` thrown into it
    meanwhile (a stop whose grace ran out) leaves no file behind; the child
    and its pipes are ``CommandWork.run``'s to end and close.
    """
    call = _call(work)
    box = _Box()
    failed: CommandFailed | None = None
    try:
        box.open(call)
        try:
            _command(work, box).run(attempt)
        except CommandFailed as exc:
            failed = exc
        record = box.result()
    finally:
        try:
            box.close()
        except BaseException:
            # A Kill in close()'s own lines, not its steps: this finishes them. What this one
            # meets on disk must not replace what is on its way (a Kill, the first error).
            with contextlib.suppress(OSError):
                box.close()
            raise
    return _outcome(work, record, failed)


def cancel_child(work: PythonWork, attempt: Attempt) -> None:
    """SIGTERM the child's group, SIGKILL after ``work.grace``; from any thread, never blocks."""
    _stopper(work).cancel(attempt)


def kill_child(work: PythonWork, attempt: Attempt) -> None:
    """SIGKILL the child's group now; from any thread, never blocks."""
    _stopper(work).kill(attempt)


def _stopper(work: PythonWork) -> CommandWork:
    # Stops find a running child by its attempt alone; only the signal and grace matter here.
    return CommandWork(argv=(sys.executable,), grace=work.grace)


def _command(work: PythonWork, box: _Box) -> CommandWork:
    # -u: the child's prints reach the log line by line as they happen, not at its end.
    return CommandWork(
        argv=(sys.executable, "-u", _SCRIPT, box.call_path, box.result_path),
        grace=work.grace,
        cwd=work.cwd,
        # A copy (a plain dict's own; a JobEnv's made in C, not walked key by key).
        env=dict(work.env) if type(work.env) is dict else as_dict(work.env),
    )


def _call(work: PythonWork) -> bytes:
    """The call file's bytes (see ``actors._python_call``)."""
    call = (work.target, tuple(work.args), dict(work.kwargs))
    # Absolute: the child may work in another directory (its cwd), where "" or "." would not
    # find the modules beside the manifest that this process finds.
    path = [
        os.path.abspath(os.fspath(entry))  # noqa: PTH100 - str or bytes, as sys.path holds
        for entry in sys.path
        if isinstance(entry, str | os.PathLike)
    ]
    try:
        return marshal.dumps((path, "m", call))
    except ValueError:
        pass  # not plain values: pickled, which costs the child the import of pickle
    try:
        return marshal.dumps((path, "p", pickle.dumps(call)))
    except Exception as exc:
        raise TypeError(
            f"{work.target}: its args or kwargs cannot be sent to its child process "
            f"(isolation: process): {type(exc).__name__}: {exc}"
        ) from None


def _outcome(
    work: PythonWork, record: tuple[Any, ...] | None, failed: CommandFailed | None
) -> int | None:
    """The try's code, or the exception that fails it, from the child's record and its exit."""
    from actors._python import PythonExit, result_code, sys_exit_failure  # noqa: PLC0415

    if record is None:  # no word from the child: os._exit, a signal, a crash, or no start
        if failed is None:
            return 0  # os._exit(0): a process that exits 0 succeeded
        code = failed.code
        if isinstance(failed.__cause__, OSError):
            raise PythonExit(f"{work.target}: no child process: {failed.__cause__}", code)
        if code < 0:
            # CommandFailed's text ends with the signal's name: "... killed by SIGTERM".
            killed_by = str(failed).rpartition(" killed by ")[2]
            exit_ = PythonExit(f"{work.target}: its process was killed by {killed_by}", code)
            exit_.past_grace = failed.past_grace
            raise exit_
        raise PythonExit(f"{work.target}: its process ended with exit code {code}", code)
    match record:
        case ("returned", int() | None as returned):
            return result_code(work.target, returned)
        case ("exit", int() as status, str() as shown):
            if status == 0:
                return 0
            raise sys_exit_failure(work.target, shown, status)
        case (
            "raised",
            str() as name,
            tuple() as names,
            str() as message,
            str() as text,
            str() as cause,
        ):
            head = f"{name}: {message}" if message else name
            if cause:
                head = f"{head} (caused by {cause})"
            raise PythonError(f"{head}\n{text}" if text else head, tuple(names))
    raise PythonExit(f"{work.target}: its process reported {record!r}", 1)


class _Box:
    """The try's private directory: the call file in, the result file out.

    A file's fd is recorded as it opens (see ``actors._spawn.pipe_into``) and
    closed by ``close()`` too, whenever a ``Kill`` cut the reading or writing short.
    """

    __slots__ = ("dir", "fds")

    def __init__(self) -> None:
        self.dir = ""
        self.fds: list[int] = []

    @property
    def call_path(self) -> str:
        return f"{self.dir}/call"

    @property
    def result_path(self) -> str:
        return f"{self.dir}/result"

    def open(self, call: bytes) -> None:
        tmp = tempfile.gettempdir()
        if tmp not in SWEPT:
            _sweep(tmp)
        # Not mkdtemp: a Kill landing after its mkdir would lose the name, and the directory.
        # The name is kept first; close() removes whatever of it exists.
        self.dir = f"{tmp}/{_PREFIX}{os.getpid()}-{os.urandom(8).hex()}"
        Path(self.dir).mkdir(mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = self._open(self.call_path, flags)
        view = memoryview(call)
        while view:
            view = view[os.write(fd, view) :]
        close_all(self.fds)

    def result(self) -> tuple[Any, ...] | None:
        """What the child wrote; None if it wrote nothing whole (it ended first)."""
        try:
            fd = self._open(self.result_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            data = b""
            while part := os.read(fd, 1 << 16):
                data += part
            close_all(self.fds)
            record = marshal.loads(data)  # noqa: S302 - our child's, in our 0700 dir
        except Exception:  # missing, cut short or not plain data: no word from the child
            return None
        return record if isinstance(record, tuple) and record else None

    def _open(self, path: str, flags: int) -> int:
        self.fds.extend(itertools.starmap(os.open, ((path, flags, 0o600),)))
        return self.fds[-1]

    def close(self) -> None:
        """Remove the files and the directory; tried again past an interruption (a ``Kill``).

        By name, not ``shutil.rmtree``: that holds the directory open, and under
        gevent its ``os.close`` happens later, in the hub.
        """
        interrupted: BaseException | None = None
        for _ in range(2):
            try:
                close_all(self.fds)
                break
            except BaseException as exc:  # re-raised below
                interrupted = exc
        for remove, path in (
            (os.unlink, self.call_path),
            (os.unlink, self.result_path),
            (os.rmdir, self.dir),
        ):
            if not self.dir:
                break
            for _ in range(2):
                try:
                    with contextlib.suppress(FileNotFoundError):
                        remove(path)
                    break
                except BaseException as exc:  # re-raised below
                    interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted


_PREFIX: Final = "jobvisor-py-"
# The temporary directories this process has swept of the call directories left by jobvisors
# that are gone (a SIGKILL leaves an attempt's: nothing of that process was left to remove it).
SWEPT: set[str] = set()


def _sweep(tmp: str) -> None:
    """Remove from ``tmp`` our user's call directories of processes that no longer run."""
    SWEPT.add(tmp)
    try:
        names = os.listdir(tmp)  # noqa: PTH208 - a list: nothing for a Kill to leave open
    except OSError:
        return
    uid = os.getuid()
    for name in names:
        pid = name.removeprefix(_PREFIX).partition("-")[0]
        if not name.startswith(_PREFIX) or not pid.isdigit() or _runs(int(pid)):
            continue
        path = f"{tmp}/{name}"
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue  # another user's, or not a directory of ours: not ours to remove
        with contextlib.suppress(OSError):
            for file in ("call", "result"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}/{file}")  # noqa: PTH108 - by name, as close() does
            os.rmdir(path)  # noqa: PTH106


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
