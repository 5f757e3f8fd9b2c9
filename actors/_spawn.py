"""Starting a command's process so that no interruption can lose it.

Processes are started by the standard library's ``Popen`` (vfork+exec in C),
from a private instance of its module that records each pid the moment it
exists and that gevent has not patched (``_private_subprocess``). Part of
the ``command`` job kind (``actors._command``). A command with a user, umask
or limits gets its argv and options from ``_confined``.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import itertools
import os
import sys
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from actors._runtime import active_runtime

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping

    from actors._confine import Confinement

__all__ = ["Spawned", "close_fd", "spawn"]


class Spawned(Protocol):
    """Where ``spawn`` records the new process before any bytecode runs after its creation.

    ``pids`` gets the leader's pid (emptied again if the exec failed and
    ``Popen`` reaped it); ``process`` the ``Popen``, once it exists.
    """

    pids: list[int]
    process: subprocess.Popen[bytes] | None


def _env(overrides: Mapping[str, str]) -> dict[str, str] | None:
    if not overrides:
        return None  # inherit ours as it is: cheaper than a copy
    env = dict(os.environ)
    env.update(overrides)
    return env


def spawn(
    args: list[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    stdout: int,
    stderr: int,
    record: Spawned,
    confine: Confinement | None = None,
) -> None:
    """Start ``args`` in a new session with the standard library's ``Popen`` (vfork+exec in C).

    The new process is recorded in ``record`` as it starts (see ``Spawned``);
    raises ``OSError`` if it cannot start. ``confine`` (user, umask, limits)
    is set up in the child before exec, see ``_confined``.
    """
    options: dict[str, Any] = {}
    if confine is not None:
        args, options = _confined(args, cwd=cwd, env=env, confine=confine)
    popen = _binding_popen(_private_subprocess().Popen)
    popen(
        args,
        stdin=_devnull(),
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=_env(env),
        start_new_session=True,
        jv_record=record,
        **options,
    )


# -- confined commands: user, umask, limits -------------------------------------------------------

# Run by the interpreter that runs jobvisor, in the child, before the command: sets the limits
# (argv[1]: "name:resource:soft:hard,..."), drops to the user (argv[2]: "uid:gid:g1.g2" or ""),
# then execs the command (argv[3:]). Exit 126/127 and a line on stderr when that fails, as a
# shell does; the line is logged with the command's stderr.
_CONFINE: Final = """\
import os, resource, sys
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
    args: list[str], *, cwd: str | None, env: Mapping[str, str], confine: Confinement
) -> tuple[list[str], dict[str, Any]]:
    """The argv and ``Popen`` options of a command with a user, umask or limits.

    They are set up in the child, never in us.

    User, groups and umask are ``Popen``'s own (``user=``, ``group=``,
    ``extra_groups=``, ``umask=``), done in C between fork and exec. Resource
    limits have no such option. ``preexec_fn`` could set them, but it runs
    Python in a forked copy of a threaded process (a lock held by another
    thread at the fork, the allocator's or logging's, is held forever: a
    deadlock) and it turns off vfork for every such command; so the child
    execs a tiny Python helper (``_CONFINE``) that sets the limits and execs
    the command: a fresh single-threaded process, for ~17 ms more per start,
    paid only by commands with limits. (A user switch alone costs a real
    fork: ``Popen`` does not vfork when it must change credentials.) With
    limits the helper switches the user too, after the limits: only root may
    raise a hard limit above its current value (``nofile: 65536`` for a
    server), so the user switch must come after them, which ``Popen``'s
    switch before exec cannot give.
    """
    options: dict[str, Any] = {}
    if confine.umask is not None:
        options["umask"] = confine.umask
    credentials = confine.credentials
    if confine.rlimits:
        limits = ",".join(":".join(map(str, limit)) for limit in confine.rlimits)
        user = ""
        if credentials is not None:
            uid, gid, groups = credentials
            user = f"{uid}:{gid}:" + ".".join(map(str, groups))
        _check_exists(args[0], cwd, env)
        args = [sys.executable, "-I", "-S", "-c", _CONFINE, limits, user, *args]
    elif credentials is not None:
        uid, gid, groups = credentials
        options.update(user=uid, group=gid, extra_groups=list(groups))
    return args, options


def _check_exists(command: str, cwd: str | None, env: Mapping[str, str]) -> None:
    """Raise ``FileNotFoundError`` for a command that is not there, as ``Popen`` would.

    The helper execs the command itself, so a missing one would be its exit
    127 and a line on stderr; this keeps the usual "could not start" for the
    most common mistake. (Other exec errors are the helper's to report.)
    """
    if "/" in command:
        found = (Path(cwd or ".") / command).exists()
    else:
        path = env.get("PATH", os.environ.get("PATH", os.defpath))
        found = any((Path(d or ".") / command).exists() for d in path.split(":"))
    if not found:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


def close_fd(fd: int) -> None:
    """Close ``fd`` now, also under gevent (whose ``os.close`` closes later).

    Only for fds that no libev watcher watches any more: ``HubWaiter`` stops
    its watchers first, and libev treats a new watcher's fd as possibly new.
    """
    _private_subprocess().os.close(fd)


_devnull_fd = -1
_devnull_lock = threading.Lock()


def _devnull() -> int:
    """One read-only ``/dev/null`` for the stdin of every command (not inherited by itself)."""
    global _devnull_fd  # noqa: PLW0603 - opened once per process
    if _devnull_fd < 0:
        with _devnull_lock:  # commands starting at once in several threads open it once
            if _devnull_fd < 0:
                _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


# Where the fork_exec of this thread (or greenlet) records the pid: the starting child's pids.
_spawning = threading.local()


def _recording_fork_exec(real: Callable[..., int]) -> Callable[..., int]:
    """Wrap ``_posixsubprocess.fork_exec`` so that the pid is stored before Python sees it.

    Under the threads runtime the job actor's ``Kill`` is an asynchronous
    exception, raised at the next bytecode boundary; one that
    arrives while ``fork_exec`` runs is raised right after it returns, and
    the pid, about to be stored by ``Popen``, would be lost with a live
    process. ``list.extend`` drives ``starmap`` in C, so the pid is in the
    list before any bytecode runs. (Under gevent a Kill only lands in a
    cooperative wait; there is none here.)
    """

    def fork_exec(*args: Any) -> int:
        pids: list[int] | None = getattr(_spawning, "pids", None)
        if pids is None:
            return real(*args)
        pids.extend(itertools.starmap(real, (args,)))
        return pids[-1]

    return fork_exec


class _Binding:
    """Mixed into ``Popen``: records the new process in its ``Spawned`` record as it starts.

    The record's owner then kills and reaps it, whatever interrupts the start:
    the pid through ``_recording_fork_exec``, the ``Popen`` (whose ``returncode``
    must be set so that it does not warn) as soon as ``_execute_child`` ends.
    """

    _jv_record: Spawned
    returncode: int | None

    def __init__(self, *args: Any, jv_record: Spawned, **kwargs: Any) -> None:
        self._jv_record = jv_record
        super().__init__(*args, **kwargs)

    def _execute_child(self, *args: Any, **kwargs: Any) -> None:
        record = self._jv_record
        _spawning.pids = record.pids
        try:
            super()._execute_child(*args, **kwargs)  # type: ignore[misc]
        finally:
            # Only stores here, no call: a call is where a pending Kill would be raised.
            _spawning.pids = None
            if self.returncode is None:
                record.process = self  # type: ignore[assignment]
            else:
                record.pids[:] = ()  # the exec failed and Popen reaped the child


@functools.cache
def _binding_popen(base: type[Any]) -> Any:
    return type("Popen", (_Binding, base), {"__module__": __name__})


@functools.cache
def _private_subprocess() -> types.ModuleType:
    """Our own instance of the standard library's subprocess module, loaded from its source.

    Its ``fork_exec`` records each pid (see ``_recording_fork_exec``), and it
    runs on the unpatched ``os`` also under gevent. gevent's ``Popen`` forks
    and sets the child up in Python, several times slower than the C vfork of
    the standard library's; and that one, once gevent (>= 25.8) has patched
    ``os.close`` to close pipes later, waits forever on the pipe that reports
    exec errors. We only start processes with it, never wait for them: its
    exec blocks the gevent hub no longer than vfork blocks any caller.
    """
    spec = importlib.util.find_spec("subprocess")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        names = [name for name in dir(os) if not name.startswith("__")]
        real_os = types.ModuleType("os")
        real_os.__dict__.update(vars(os))
        real_os.__dict__.update(zip(names, monkey.get_original("os", names), strict=True))
        module.os = real_os  # type: ignore[attr-defined]
    real = getattr(module, "_fork_exec", None)  # CPython 3.11+; without it, no recording
    if real is not None:
        module._fork_exec = _recording_fork_exec(real)  # type: ignore[attr-defined]
    return module
