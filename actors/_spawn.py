"""Starting a command's process so that no interruption can lose it.

Processes are started by the C ``fork_exec`` that the standard library's
``Popen`` uses (vfork+exec, closing every other fd, changing directory and
session in the child), called directly: ``Popen``'s own Python around it
costs more than the call. Each pid and fd is recorded the moment it exists
(a ``Kill`` thrown into the thread must not lose one). Part of
the ``command`` job kind (``actors._command``). A command with resource
limits execs a small helper first (``_CONFINE``).
"""

from __future__ import annotations

import _posixsubprocess
import builtins
import contextlib
import errno
import functools
import itertools
import os
import signal
import sys
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from actors._env import JobEnv
from actors._runtime import active_runtime

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actors._confine import Confinement

__all__ = [
    "REAPED_UNREAD",
    "Spawned",
    "child_env",
    "close_all",
    "close_at",
    "pipe_into",
    "real_os",
    "reaped_unread",
    "spawn",
    "why_status_lost",
]


class Spawned(Protocol):
    """Where ``spawn`` records the new process before any bytecode runs after its creation.

    ``pids`` gets the leader's pid, emptied again if the exec failed: ``spawn``
    reaps that child and empties the list holding ``lock``, the lock under
    which others signal the pid, so none signals it once its id is free.
    ``fds`` holds spawn's own exec-error pipe while it runs (appended at its
    end, closed before it returns): a spawn cut short by a ``Kill`` leaves
    them to the owner, who closes whatever the list holds (``close_all``).
    """

    pids: list[int]
    lock: threading.Lock
    fds: list[int]


REAPED_UNREAD: Final = (
    "SIGCHLD is ignored in this process (signal.SIG_IGN), so the system reaps its children "
    "before anyone can read how they ended; restore it with "
    "signal.signal(signal.SIGCHLD, signal.SIG_DFL)"
)


def reaped_unread() -> bool:
    """True where the system reaps this process's children unread: SIGCHLD ignored.

    Python's own view: an ignore set from C is not seen. Only the threads runtime
    asks it before a start: under gevent each command's spawn installs libev's
    SIGCHLD handler again (``install_sigchld``), whatever the program set before.
    """
    return signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN


def why_status_lost() -> str:
    """Why a child of ours was gone before its exit status could be read."""
    if reaped_unread():
        return REAPED_UNREAD
    return (
        "something else in this process reaped it (os.wait() or os.waitpid(-1, ...)); "
        "wait for your own children by their pids"
    )


# A Kill (an asynchronous exception under threads) lands between two bytecodes, so also right
# after a C call that returned an fd and before anything stores it. These keep every fd in
# exactly one list at every bytecode: the C call that makes or closes it is driven from C by
# the list operation that records or forgets it, with no bytecode in between.


def pipe_into(readers: list[int], writers: list[int]) -> tuple[int, int]:
    """A new pipe: its read end appended to ``readers``, its write end to ``writers``."""
    writers.extend(itertools.chain.from_iterable(itertools.starmap(os.pipe, ((),))))
    readers.extend(map(writers.pop, (-2,)))  # moved, never in both lists nor in none
    return readers[-1], writers[-1]


def close_at(fds: list[int], index: int = -1) -> None:
    """Close ``fds[index]`` now and forget it, also under gevent (whose ``os.close`` closes later).

    Only for fds that no libev watcher watches any more: ``HubWaiter`` stops
    its watchers first, and libev treats a new watcher's fd as possibly new.
    """
    for _ in map(real_os().close, map(fds.pop, (index,))):  # pop, then close, both in C
        pass


def close_all(fds: list[int], keep: int = 0) -> None:
    """Close the fds of ``fds`` past its first ``keep``, last first; what a Kill spares stays."""
    for _ in map(real_os().close, map(fds.pop, itertools.repeat(-1, len(fds) - keep))):
        pass


# -- the environment a command gets ---------------------------------------------------------------


def child_env(
    own: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The whole environment of a command whose own ``env`` is ``own``; None: ours, unchanged.

    ``base`` is what it starts from instead of our environment (a command with a ``user``
    gets its login's, see ``RunAs.confinement``); ``own`` goes on top and wins. Without
    either, the child inherits ours as it is (``execv``): no copy, the common case.
    """
    if base is None:
        if not own:
            return None
        env = dict(os.environ)
    else:
        env = dict(base)
    if isinstance(own, JobEnv):
        own.update_into(env)
    else:
        env.update(own)
    return env


def _env_list(env: Mapping[str, str]) -> list[bytes]:
    """The child's environment as ``fork_exec`` takes it."""
    fsencode = os.fsencode
    return [fsencode(k) + b"=" + fsencode(v) for k, v in env.items()]


# fork_exec's last argument, allow_vfork, is gone in 3.14 (vfork is its own choice there).
_VFORK: Final = (True,) if sys.version_info < (3, 14) else ()


def spawn(
    args: list[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    stdout: int,
    stderr: int,
    record: Spawned,
    confine: Confinement | None = None,
    base: Mapping[str, str] | None = None,
) -> None:
    """Start ``args`` in a new session: vfork+exec in C, every fd but 0-2 closed in the child.

    The new process is recorded in ``record`` as it starts (see ``Spawned``);
    raises ``OSError`` if it cannot start, as ``Popen`` would (``filename``
    the command, or ``cwd`` when that is what failed). ``confine`` (user,
    umask, limits) is set up in the child before exec, see ``_confined``.
    Its environment is ``env`` on top of ``base`` (default: ours), see ``child_env``.

    ``os.posix_spawn`` was measured as the alternative and is no cheaper
    (``bench/spawn_paths.py``); in 3.11 it cannot change directory (every
    manifest command has a ``cwd``) nor close the fds that a library opened
    without ``O_CLOEXEC``, which this does. Under gevent a ``Kill`` only lands
    in a cooperative wait, and there is none here.
    """
    uid = gid = groups = None
    umask = -1
    full_env = child_env(env, base)
    if confine is not None:
        args, (uid, gid, groups), umask = _confined(
            args, cwd, os.environ if full_env is None else full_env, confine
        )
    env_list = None if full_env is None else _env_list(full_env)  # None: inherits ours
    command = args[0]
    if "/" in command:  # what os.path.dirname tells, without its call (nor fsencode's)
        executables = _path_given(command)
    else:  # as Popen and os.execvp search, in the PATH the child gets
        executables = _candidates(
            (os.environ if full_env is None else full_env).get("PATH"), os.fsencode(command)
        )
    sys.audit("subprocess.Popen", command, args, cwd, full_env)  # as Popen reports a start
    real = real_os()
    fds = record.fds
    mine = len(fds)  # spawn's own are what it appends: [..., errpipe read end, write end]
    fds.extend(itertools.chain.from_iterable(itertools.starmap(os.pipe, ((),))))
    try:
        while fds[-1] < 3:  # the child dups over 0-2 (ours may have been closed)
            fds.extend(itertools.starmap(os.dup, ((fds[-1],),)))
        while len(fds) > mine + 2:  # the low copies, kept open until a dup went past them
            close_at(fds, -2)
        errpipe_read, errpipe_write = fds[-2:]
        pids = record.pids
        call = (
            args,
            executables,
            True,  # close_fds
            (errpipe_write,),
            cwd,
            env_list,
            _devnull_fd[0] if _devnull_fd else _devnull(),
            -1,
            -1,
            stdout,
            -1,
            stderr,
            errpipe_read,
            errpipe_write,
            True,  # restore_signals
            True,  # call_setsid
            -1,  # pgid_to_set
            gid,
            groups,
            uid,
            umask,
            None,  # preexec_fn
            *_VFORK,
        )
        try:
            # A Kill (an asynchronous exception under threads) that lands right after the call
            # must not lose the pid of a live process: list.extend drives starmap in C, so the
            # pid is in the list before any bytecode runs.
            pids.extend(itertools.starmap(_posixsubprocess.fork_exec, (call,)))
        finally:
            close_at(fds)  # the write end: the read below ends once the child exec'd
        failure = _read_all(real, errpipe_read)
    finally:
        close_all(fds, mine)
    if failure:
        # The child wrote its errno and is exiting: a short wait, while no stop may signal it.
        # (ChildProcessError: libev, under gevent, may have reaped it.)
        with record.lock, contextlib.suppress(ChildProcessError):
            # Forgotten, then reaped, both in C: a Kill cannot leave a freed id listed.
            for _ in map(real.waitpid, map(pids.pop, (-1,)), (0,)):
                pass
        raise _exec_error(failure, command, cwd)


@functools.lru_cache(maxsize=256)
def _path_given(command: str) -> tuple[bytes, ...]:
    """The one file exec runs for a command named with a ``/``: encoded once per name (the
    cache is C, no frame of ours on a restart)."""
    return (os.fsencode(command),)


@functools.lru_cache(maxsize=256)
def _candidates(search: str | None, executable: bytes) -> tuple[bytes, ...]:
    """Where exec looks for a bare command name: in each ``PATH`` entry (``os.defpath``
    without one), in order. Built once per ``PATH`` and name: a crash loop of ``[python3,
    ...]`` built it on every restart, a join and two encodings per entry.
    """
    dirs = os.get_exec_path({} if search is None else {"PATH": search})
    return tuple(os.path.join(os.fsencode(d), executable) for d in dirs)  # noqa: PTH118 - bytes


def _read_all(real: Any, fd: int) -> bytes:
    """What the child wrote to the exec-error pipe: nothing once it exec'd (the pipe closes)."""
    data = b""
    while part := real.read(fd, 50000):
        data += part
        if len(data) > 50000:
            break
    return data


def _chdir_marked(version: tuple[int, ...]) -> bool:
    """Whether the child of this Python says "noexec:chdir" when its chdir failed.

    Since CPython gh-104522 (3.11.8 and 3.12.2) it does, and "noexec" is then any other
    failure before the exec (a user switch); before, "noexec" could only be the chdir's.
    """
    return (3, 11, 8) <= version < (3, 12) or version >= (3, 12, 2)


_CHDIR_MARKED: Final = _chdir_marked(sys.version_info[:3])


def _exec_error(data: bytes, command: str, cwd: str | None) -> OSError:
    """The error ``fork_exec``'s child reported, as ``Popen`` raises it."""
    try:
        name, hex_errno, text = data.split(b":", 2)
        message = text.decode()
        number = int(hex_errno, 16)
    except ValueError:
        return OSError(0, f"bad exec error from the child: {data!r}")
    kind = getattr(builtins, name.decode("ascii", "replace"), None)
    if not (isinstance(kind, type) and issubclass(kind, OSError)):
        return OSError(0, message)
    filename: str | None = command
    if message == "noexec:chdir" or (message == "noexec" and not _CHDIR_MARKED):
        filename = cwd  # without the mark, a failure before the exec can only be the chdir's
    elif message.startswith("noexec"):
        filename = None
    return kind(number, os.strerror(number) if number else message, filename)


# -- confined commands: user, umask, limits -------------------------------------------------------

# Run by the interpreter that runs jobvisor, in the child, before the command: sets the limits
# (argv[1]: "name:resource:soft:hard,..."), drops to the user (argv[2]: "uid:gid:g1.g2" or ""),
# then execs the command (argv[3:]). Exit 126/127 and a line on stderr when that fails, as a
# shell does; the line is logged with the command's stderr.
_CONFINE: Final = """\
import os, resource, sys, warnings  # warnings: execvp's PATH search imports it, once switched
a = sys.argv
def fail(what, e, code=126):
    sys.stderr.write(f"jobvisor: {a[3]!r} could not start: {what}{getattr(e, 'strerror', e)}\\n")
    os._exit(code)
for x in filter(None, a[1].split(",")):
    n, k, s, h = x.split(":")
    try:
        resource.setrlimit(int(k), (int(s), int(h)))
    except (OSError, ValueError) as e:
        fail(f"cannot set limits.{n} to {s}: ", e)
if a[2]:
    u, g, gs = a[2].split(":")
    try:
        os.setgroups([int(x) for x in gs.split(".") if x])
        os.setgid(int(g))
        os.setuid(int(u))
    except OSError as e:
        fail(f"cannot switch to uid {u}: ", e)
try:
    os.execvp(a[3], a[3:])
except OSError as e:
    fail("", e, 127 if isinstance(e, FileNotFoundError) else 126)
"""


def _confined(
    args: list[str], cwd: str | None, env: Mapping[str, str], confine: Confinement
) -> tuple[list[str], tuple[int | None, int | None, list[int] | None], int]:
    """Args, ``(uid, gid, groups)`` and umask for a command with a user, umask or limits.

    User, groups and umask are ``fork_exec``'s own, done in C between fork
    and exec. Resource limits have no such option. A ``preexec_fn`` could
    set them, but it runs Python in a forked copy of a threaded process (a
    lock held by another thread at the fork, the allocator's or logging's,
    is held forever: a deadlock) and it turns off vfork; so the child execs a
    tiny Python helper (``_CONFINE``) that sets the limits and execs the
    command: a fresh single-threaded process, for ~17 ms more per start,
    paid only by commands with limits. (A user switch alone costs a real
    fork: ``fork_exec`` does not vfork when it must change credentials.) With
    limits the helper switches the user too, after the limits: only root may
    raise a hard limit above its current value (``nofile: 65536`` for a
    server), so the user switch must come after them, which ``fork_exec``'s
    switch before exec cannot give.
    """
    umask = -1 if confine.umask is None else confine.umask
    credentials = confine.credentials
    if confine.rlimits:
        limits = ",".join(":".join(map(str, limit)) for limit in confine.rlimits)
        user = ""
        if credentials is not None:
            uid, gid, groups = credentials
            user = f"{uid}:{gid}:" + ".".join(map(str, groups))
        _check_exists(args[0], cwd, env)
        return (
            [sys.executable, "-I", "-S", "-c", _CONFINE, limits, user, *args],
            (None, None, None),
            umask,
        )
    if credentials is not None:
        uid, gid, groups = credentials
        return args, (uid, gid, list(groups)), umask
    return args, (None, None, None), umask


def _check_exists(command: str, cwd: str | None, env: Mapping[str, str]) -> None:
    """Raise ``FileNotFoundError`` for a command that is not there, as ``Popen`` would.

    The helper execs the command itself, so a missing one would be its exit
    127 and a line on stderr; this keeps the usual "could not start" for the
    most common mistake. (Other exec errors are the helper's to report.)
    """
    if "/" in command:
        found = (Path(cwd or ".") / command).exists()
    else:
        path = env.get("PATH", os.defpath)
        found = any((Path(d or ".") / command).exists() for d in path.split(":"))
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


_devnull_fd: list[int] = []  # filled from C, as pipe_into does: a Kill cannot lose it
_devnull_lock = threading.Lock()


def _devnull() -> int:
    """One read-only ``/dev/null`` for the stdin of every command (not inherited by itself)."""
    if not _devnull_fd:
        with _devnull_lock:  # commands starting at once in several threads open it once
            if not _devnull_fd:
                opening = ((os.devnull, os.O_RDONLY | os.O_CLOEXEC),)
                _devnull_fd.extend(itertools.starmap(os.open, opening))
    return _devnull_fd[0]


@functools.cache
def real_os() -> types.SimpleNamespace:
    """``close``, ``read`` and ``waitpid`` as the os module has them, unpatched also under gevent.

    Looked up once (every start and every attempt's end asks); ``actors._waiters``
    reaps with this ``waitpid`` too.

    gevent (>= 25.8) patches ``os.close`` to close later, and its ``waitpid``
    waits for libev's record of the exit; a start needs neither: the
    exec-error pipe is read once ``fork_exec`` returned (after the exec,
    vfork) and a failed child is reaped at once.
    """
    names = ("close", "read", "waitpid")
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        return types.SimpleNamespace(
            **dict(zip(names, monkey.get_original("os", names), strict=True))
        )
    return types.SimpleNamespace(**{name: getattr(os, name) for name in names})
