"""The ``command`` job kind: run an argv or a ``/bin/sh -c`` line in its own process group.

Its output is logged line by line, and none of its processes outlives its
attempt, nor jobvisor itself (see ``_Warden``). Linux only (pidfd: kernel 5.3+).

One attempt (``CommandWork.run``, in the job actor's thread)::

    spawn (vfork+exec, new session) -> register the group with the warden
      -> wait for output, the leader's exit or a stop: log lines, SIGKILL at the stop deadline
      -> the leader exited: stop_signal to the rest of its group, read to EOF (at most `grace`)
      -> finally: SIGKILL the group, reap the leader, close the fds, unregister the group

Processes are started by the standard library's ``Popen`` (vfork+exec in C),
from a private instance of its module that records each pid the moment it
exists and that gevent has not patched (``_private_subprocess``). Only the
waiting differs between the runtimes: threads ``poll`` the pipes, a pidfd
and an eventfd (``_PollWaiter``); gevent keeps libev watchers on the pipes
and on the leader (``_HubWaiter``). libev's SIGCHLD handler, once anybody
installs it (gevent.subprocess does), reaps every child of the process, so
under gevent we install it before the first spawn and never miss an exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import importlib.util
import itertools
import os
import re
import select
import shlex
import signal
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

import logbook

from actors._checks import key_field, need, need_duration, need_key
from actors._errors import JobFailure, SpecError
from actors._runtime import active_runtime

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping

    from actors._job import Attempt

__all__ = ["CommandFailed", "CommandWork"]

log = logbook.Logger("actors.command")

_CHUNK: Final = 65536  # bytes per read(); the default pipe buffer size on Linux
_MAX_LINE: Final = 65536  # a longer run of bytes without a newline is logged in pieces
_SHELL: Final = "/bin/sh"
_VALID_SIGNALS: Final = frozenset(signal.valid_signals())  # a set built per call: slow
_ENV_NAME: Final = re.compile(r"[^=\0]+")  # what execve takes as an environment name
_SHOWN_MAX: Final = 200  # characters of the command shown in error messages


class CommandFailed(JobFailure):
    """A command exited with a non-zero status, was killed by a signal, or could not start.

    Raised by ``CommandWork.run``; the job actor turns it into a failed
    attempt, or a stopped one when the signal was our own stop. ``code`` is
    the exit status, or ``-N`` when signal ``N`` killed the process (as in
    ``subprocess``); a command that could not start gets 127 (not found) or
    126 (any other reason), as a shell reports them. Any ``CommandFailed`` is
    retried by default; the ``retry.on`` tokens ``exit:N`` and ``signal``
    narrow that.
    """

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.code))


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandWork:
    """Run ``argv``, or ``shell`` through ``/bin/sh -c``, in ``cwd`` with ``env`` on top of ours.

    Exit 0 succeeds (the attempt's code is 0); anything else raises
    ``CommandFailed``. The command gets a session and process group of its
    own, stdin from ``/dev/null``, and its stdout and stderr logged line by
    line on the ``actors.command`` logger (stdout at INFO, stderr at
    WARNING). The attempt owns the group: a stop (``cancel``, also on a
    timeout) sends it ``stop_signal`` and SIGKILL ``grace`` seconds later;
    ``kill`` and an exception thrown into ``run`` SIGKILL it at once; when
    the leader exits by itself, the rest of the group gets ``stop_signal``
    and, if it still holds the output pipes after ``grace``, SIGKILL.
    """

    kind: ClassVar[str] = "command"
    argv: tuple[str, ...] = ()  # exactly one of argv / shell
    shell: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    grace: float = 5.0  # SIGKILL to the whole group this long after stop_signal

    def __post_init__(self) -> None:
        if not isinstance(self.argv, tuple):
            if isinstance(self.argv, str | bytes):
                raise SpecError(f"command argv: expected a list of strings, got {self.argv!r}")
            object.__setattr__(self, "argv", tuple(self.argv))
        if bool(self.argv) == (self.shell is not None):
            raise SpecError(
                "command: expected exactly one of argv (a list of strings) or shell (a string), "
                f"got argv={list(self.argv)!r} shell={self.shell!r}"
            )
        if not all(isinstance(a, str) for a in self.argv):
            raise SpecError(f"command argv: expected strings only, got {list(self.argv)!r}")
        if self.shell is not None and (not isinstance(self.shell, str) or not self.shell.strip()):
            raise SpecError(f"command shell: expected a non-empty string, got {self.shell!r}")
        if self.cwd is not None and not isinstance(self.cwd, str):
            raise SpecError(f"command cwd: expected a path string, got {self.cwd!r}")
        for key, value in self.env.items():
            need_key(
                isinstance(key, str) and bool(_ENV_NAME.fullmatch(key)),
                key_field("env", key),
                "a name like FOO_BAR",
                key,
            )
            # Never echo the value: it may be a secret.
            need(
                isinstance(value, str),
                key_field("env", key),
                "a string",
                value,
                shown=type(value).__name__,
            )
        need(
            isinstance(self.stop_signal, int)
            and not isinstance(self.stop_signal, bool)
            and self.stop_signal in _VALID_SIGNALS,
            "stop.signal",
            "a signal name like TERM, INT, HUP or KILL, or its number",
            self.stop_signal,
        )
        need_duration(self.grace, "stop.grace")

    # -- the Work protocol -------------------------------------------------------------------------

    def run(self, attempt: Attempt) -> int | None:
        """Run the command to its end in the calling thread; return 0 or raise ``CommandFailed``.

        Runs in the job actor's thread. Whatever is thrown into that thread
        meanwhile (the job actor's ``Kill`` once a stop's grace ran out)
        SIGKILLs the whole group and reaps the leader before it propagates.
        """
        key = id(attempt)
        child = _Child(self, attempt)  # no process and no fd yet: nothing that could leak
        _LIVE[key] = child
        try:
            child.start(self)
            if attempt.cancelled.is_set():  # a cancel() that came before the start
                child.stop(self.stop_signal, self.grace)
            code = child.supervise()
        finally:
            try:
                child.close()
            finally:
                _LIVE.pop(key, None)
        if code == 0:
            return 0
        if code > 0:
            raise CommandFailed(f"command {self.shown()} exited with {code}", code)
        raise CommandFailed(f"command {self.shown()} killed by {_signame(-code)}", code)

    def cancel(self, attempt: Attempt) -> None:
        """Send ``stop_signal`` to the attempt's process group; SIGKILL follows after ``grace``.

        Called from another thread (the supervisor's or the scheduler's). It
        never blocks: the attempt's own thread enforces the SIGKILL deadline.
        """
        attempt.cancelled.set()
        child = _LIVE.get(id(attempt))
        if child is not None and child.attempt is attempt:
            child.stop(self.stop_signal, self.grace)

    def kill(self, attempt: Attempt) -> None:
        """SIGKILL the attempt's whole process group now; ``run()`` then fails with -9.

        Called from another thread when a stop's grace has run out (the job
        actor's kill hook); it never blocks. Under the threads runtime the
        actor's ``Kill`` cannot interrupt ``run()`` blocked in ``poll``: this is
        what ends it at once.
        """
        attempt.cancelled.set()
        child = _LIVE.get(id(attempt))
        if child is not None and child.attempt is attempt:
            child.stop(signal.SIGKILL, 0.0)

    def describe(self) -> str:
        if self.shell is not None:
            return self.shell  # as the user wrote it: re-quoting it as sh -c '...' hides it
        return shlex.join(self.argv)

    def retryable(self, exc: BaseException, on: tuple[str, ...]) -> bool:
        """Any ``CommandFailed`` by default; ``on`` narrows it to ``exit:N`` and ``signal``."""
        if not isinstance(exc, CommandFailed):
            return False
        if not on:
            return True
        code = exc.code
        return any((want == "signal" and code < 0) or want == f"exit:{code}" for want in on)

    def retry_after(self, exc: BaseException) -> float | None:
        del exc
        return None

    # -- helpers -----------------------------------------------------------------------------------

    def shown(self) -> str:
        """``describe()`` cut to a length that suits an error message."""
        text = self.describe()
        return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"

    def args(self) -> list[str]:
        """The argv to execute: ``argv``, or ``/bin/sh -c shell``."""
        return [_SHELL, "-c", self.shell] if self.shell is not None else list(self.argv)


def _signame(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Stream:
    """One output pipe of a child: splits what it reads into lines and logs each of them.

    A line longer than ``_MAX_LINE`` bytes is logged in parts (of ``_MAX_LINE``
    bytes, the last one up to a read longer), so memory stays bounded whatever
    the child writes; each part's record says so with ``part`` (1, 2, ... in
    order, the line's last part included).
    """

    __slots__ = ("emit", "extra", "fd", "parts", "pending", "prefix")

    def __init__(self, fd: int, name: str, attempt: Attempt, emit: Callable[..., Any]) -> None:
        self.fd = fd
        self.emit = emit
        self.extra = {"path": attempt.path, "attempt": attempt.number, "stream": name}
        self.prefix = f"{attempt.path}[{attempt.number}]"
        self.pending = b""  # the bytes after the last newline; invariant: no b"\n" in it
        self.parts = 0  # parts of the current line logged already; pending is its next part

    def feed(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
        head, newline, rest = data.rpartition(b"\n")
        if newline:
            # A newline byte never occurs inside a UTF-8 sequence, so whole lines decode alone.
            lines = head.decode("utf-8", "replace").split("\n")
            if self.parts:
                self._log_part(lines.pop(0))
                self.parts = 0
            for line in lines:
                self._log(line)
        while len(rest) > _MAX_LINE:
            self._log_part(rest[:_MAX_LINE].decode("utf-8", "replace"))
            rest = rest[_MAX_LINE:]
        self.pending = rest

    def finish(self) -> None:
        """The pipe is done: log a last line that had no newline."""
        if self.pending:
            text = self.pending.decode("utf-8", "replace")
            if self.parts:
                self._log_part(text)
            else:
                self._log(text)
            self.pending = b""
            self.parts = 0

    def _log(self, line: str) -> None:
        # The line is an argument, never the format string: braces in it stay as they are.
        self.emit("{} {}", self.prefix, line.removesuffix("\r"), extra=self.extra)

    def _log_part(self, text: str) -> None:
        self.parts += 1
        extra = {**self.extra, "part": self.parts}
        self.emit("{} {}", self.prefix, text.removesuffix("\r"), extra=extra)


class _Child:
    """The process group of one attempt: started, watched and ended by ``CommandWork.run``.

    ``run()``'s thread does everything but ``stop()``, which other threads
    call too; ``_lock`` orders signals against the end of the group
    (``_ended``), after which the group's id may belong to somebody else.
    """

    __slots__ = (
        "_closed",
        "_code",
        "_ended",
        "_grace",
        "_hub",
        "_kill_at",
        "_killed",
        "_lock",
        "_process",
        "_reaped",
        "_stop_signal",
        "_stopping",
        "_waiter",
        "attempt",
        "pids",
        "streams",
    )

    def __init__(self, work: CommandWork, attempt: Attempt) -> None:
        self.attempt = attempt
        # The leader's pid, stored by fork_exec itself (see _recording_fork_exec): the one
        # record of the process that no Kill can lose. Empty until it exists.
        self.pids: list[int] = []
        self.streams: list[_Stream] = []
        self._waiter: _PollWaiter | _HubWaiter | None = None
        self._hub: Any = None  # the gevent hub under the gevent runtime
        self._process: subprocess.Popen[bytes] | None = None
        self._stop_signal = work.stop_signal
        self._grace = work.grace
        self._lock = threading.Lock()
        self._kill_at: float | None = None  # monotonic time of the SIGKILL that follows a stop
        self._stopping = False  # stop_signal was sent to the group
        self._killed = False  # SIGKILL was sent to the group
        self._ended = False  # no more signals: the leader is (about to be) reaped
        self._closed = False
        self._reaped = False
        self._code: int | None = None  # the leader's exit code once it exited

    @property
    def pid(self) -> int:
        """The leader's pid; 0 before it exists."""
        return self.pids[0] if self.pids else 0

    @property
    def pgid(self) -> int:
        """The group's id: a new session's leader leads its group too."""
        return self.pid

    # -- start -------------------------------------------------------------------------------------

    def start(self, work: CommandWork) -> None:
        """Start the command; raise ``CommandFailed`` if it cannot start.

        Whatever this leaves behind when it raises (also when a ``Kill``
        interrupts it) is ``close()``'s to kill and release.
        """
        self._hub = hub = _gevent_hub()
        if hub is not None:
            # Before the spawn, so libev never misses the SIGCHLD of a child that exits at once.
            hub.loop.install_sigchld()
        out_r, out_w = os.pipe()
        self.streams.append(_Stream(out_r, "stdout", self.attempt, log.info))
        err_r, err_w = os.pipe()
        self.streams.append(_Stream(err_r, "stderr", self.attempt, log.warning))
        try:
            _spawn(work, out_w, err_w, self)
        except OSError as exc:
            raise _could_not_start(work, exc) from exc
        finally:
            _close(out_w)
            _close(err_w)
        # Under gevent nothing may yield to the hub before the child watcher has started,
        # or libev could reap the leader unseen.
        fds = [s.fd for s in self.streams]
        if hub is None:
            self._waiter = _PollWaiter(self.pid, fds)
        else:
            for fd in fds:
                os.set_blocking(fd, False)  # see _HubWaiter.wait
            self._waiter = _HubWaiter(hub, self.pid, fds)
        _WARDEN.add(self.pgid)

    # -- any thread --------------------------------------------------------------------------------

    def stop(self, signum: int, grace: float, *, wake: bool = True) -> None:
        """Send ``signum`` to the group, SIGKILL it ``grace`` seconds later; never blocks.

        The earliest SIGKILL deadline asked for holds; ``signum`` is sent once
        (SIGKILL at once). Before the start there is nothing to signal: the
        deadline is kept and ``run()`` stops the process once it exists.
        ``wake`` makes a waiting ``supervise()`` heed the new deadline.
        """
        with self._lock:
            if self._ended:
                return
            kill_at = time.monotonic() + grace
            if self._kill_at is None or kill_at < self._kill_at:
                self._kill_at = kill_at
            pgid = self.pgid
            if not pgid:
                return
            if signum == signal.SIGKILL or grace <= 0:
                self._kill_locked()
            elif not self._stopping:
                self._stopping = True
                _signal_group(pgid, signum)
            if wake and self._waiter is not None:
                self._waiter.wake()

    # -- run()'s thread ----------------------------------------------------------------------------

    def supervise(self) -> int:
        """Log the output until the leader has exited and the pipes are closed; return its code.

        When the leader exits, the rest of its group gets ``stop_signal`` and
        the pipes are read to their end, or until the SIGKILL deadline, after
        which only what they hold already is read.
        """
        waiter = self._waiter
        assert waiter is not None
        open_streams = {s.fd: s for s in self.streams}
        while self._code is None or open_streams:
            for fd in waiter.wait(self._timeout()):
                stream = open_streams.get(fd)
                if stream is not None and not self._read(stream):
                    waiter.forget(fd)
                    del open_streams[fd]
            if self._code is None and waiter.check_exit(pipes_closed=not open_streams):
                self._code = waiter.exit_code()
                # What is left of the group gets the stop signal (we are not waiting: no wake).
                self.stop(self._stop_signal, self._grace, wake=False)
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self._kill()
                if self._code is not None:
                    break  # the leader is gone and the group killed: take what is buffered
        for stream in open_streams.values():
            self._drain(stream)
        assert self._code is not None
        return self._code

    def close(self) -> None:
        """SIGKILL the group, reap the leader, release every fd (idempotent).

        Runs in ``run()``'s ``finally``. A ``Kill`` thrown into the thread
        meanwhile must not leave a process or an fd behind, so each step is
        tried again past an interruption, which is re-raised at the end.
        """
        if self._closed:
            return
        interrupted: BaseException | None = None
        for step in (self._kill_and_reap, self._release):
            for _ in range(2):
                try:
                    step()
                    break
                except BaseException as exc:
                    interrupted = interrupted or exc
        self._closed = True
        if interrupted is not None:
            raise interrupted

    # -- internals ---------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        """Seconds until the SIGKILL deadline, or None to wait for an event only."""
        kill_at = self._kill_at
        if kill_at is None or self._killed:
            return None
        return max(0.0, kill_at - time.monotonic())

    def _read(self, stream: _Stream) -> bool:
        """Read what the pipe holds and log its lines; False at its end."""
        try:
            data = os.read(stream.fd, _CHUNK)
        except BlockingIOError:
            return True  # gevent: a pipe read on the off chance, with nothing in it
        if data:
            stream.feed(data)
            return True
        stream.finish()
        return False

    def _drain(self, stream: _Stream) -> None:
        """Log what a pipe holds now, without waiting for a writer that may never close it."""
        os.set_blocking(stream.fd, False)
        with contextlib.suppress(BlockingIOError):
            while data := os.read(stream.fd, _CHUNK):
                stream.feed(data)
        stream.finish()

    def _kill(self) -> None:
        with self._lock:
            self._kill_locked()

    def _kill_locked(self) -> None:
        pgid = self.pgid
        if pgid and not self._ended and not self._killed:
            self._killed = True
            _signal_group(pgid, signal.SIGKILL)

    def _kill_and_reap(self) -> None:
        self._kill()  # what kept away from the pipes, or everything on a Kill; once only
        with self._lock:
            self._ended = True
        if not self.pids:
            return  # it never started
        if self._hub is None and not self._reaped:
            # Prompt: the leader exited or just got SIGKILL. A try cut short by a Kill may
            # have reaped it already. (Under gevent libev reaps every child by itself.)
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.pid, 0)
                if self._code is None:
                    self._code = os.waitstatus_to_exitcode(status)
            self._reaped = True
        if self._process is not None:
            # Popen must not believe its child still runs: it would warn and poll it later.
            self._process.returncode = -signal.SIGKILL if self._code is None else self._code

    def _release(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()  # stops its watchers before their fds close
        for stream in self.streams:
            if stream.fd >= 0:
                fd, stream.fd = stream.fd, -1
                _close(fd)
        if self.pgid:
            _WARDEN.discard(self.pgid)


class _PollWaiter:
    """Threads: waits in ``poll`` on the pipes, a pidfd (the leader's exit) and a wake-up eventfd.

    ``wake()`` may be called from any thread. The leader stays unreaped
    (``exit_code`` reads its status with WNOWAIT), so the group's id cannot
    be reused before ``_Child`` reaps it last.
    """

    __slots__ = ("_pid", "_poll", "_wake", "exited", "pidfd")

    def __init__(self, pid: int, fds: list[int]) -> None:
        self._pid = pid
        self.exited = False
        self.pidfd = os.pidfd_open(pid)
        try:
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except BaseException:
            os.close(self.pidfd)
            raise
        self._poll = select.poll()
        for fd in (*fds, self.pidfd, self._wake):
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[int]:
        """Block until a pipe is readable, the leader exited, a wake-up or the timeout."""
        ms = None if timeout is None else int(timeout * 1000) + 1
        ready = []
        for fd, _ in self._poll.poll(ms):
            if fd == self.pidfd:
                self._poll.unregister(fd)
                self.exited = True
            elif fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(fd)
            else:
                ready.append(fd)
        return ready

    def check_exit(self, *, pipes_closed: bool) -> bool:
        """True once the leader has exited (its pidfd said so)."""
        del pipes_closed
        return self.exited

    def exit_code(self) -> int:
        info = os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOWAIT)
        assert info is not None
        return _exit_code(info)

    def wake(self) -> None:
        if self._wake >= 0:
            os.eventfd_write(self._wake, 1)

    def forget(self, fd: int) -> None:
        self._poll.unregister(fd)

    def close(self) -> None:
        for name in ("pidfd", "_wake"):
            fd = getattr(self, name)
            if fd >= 0:
                setattr(self, name, -1)
                os.close(fd)


class _HubWaiter:
    """gevent: libev watchers for the attempt's whole life, switching straight to its greenlet.

    One io watcher per pipe and the child watcher of the leader (libev's
    SIGCHLD handler reaps every child, so the status comes from it). Cheaper
    than gevent's ``select.poll``, which makes and drops a watcher per fd on
    every call. ``wake()`` is for any greenlet of the same hub.
    """

    __slots__ = (
        "_child",
        "_code",
        "_current",
        "_hub",
        "_io",
        "_owner",
        "_pid",
        "_ready",
        "_waiter",
        "_woken",
        "exited",
        "exited_by_watcher",
    )

    def __init__(self, hub: Any, pid: int, fds: list[int]) -> None:
        getcurrent, waiter_class = _gevent_parts()
        loop = hub.loop
        self.exited = False
        self.exited_by_watcher = False  # libev saw the exit (and reaped the leader)
        self._pid = pid
        self._code: int | None = None
        self._hub = hub
        self._current = getcurrent
        self._owner = getcurrent()  # the greenlet that runs the attempt and waits here
        # A Waiter switches into the greenlet waiting in get() from the watcher's callback;
        # when nobody waits, it keeps the wake-up for the next get().
        self._waiter = waiter_class(hub)
        self._woken = False  # a wake-up is pending in the waiter
        self._ready = False  # a pipe's watcher fired since the last wait()
        self._io: dict[int, Any] = {}
        self._child = loop.child(pid, trace=False)  # its ref keeps the loop waiting for the exit
        self._child.start(self._on_exit)
        for fd in fds:
            watcher = loop.io(fd, 1)  # 1: EV_READ
            watcher.start(self._on_ready)
            self._io[fd] = watcher

    def _on_ready(self) -> None:
        self._ready = True
        self.wake()

    def _on_exit(self) -> None:
        self.exited = self.exited_by_watcher = True
        self.wake()

    def wait(self, timeout: float | None) -> list[int]:
        """Wait cooperatively for a readable pipe, the leader's exit, a wake-up or the timeout.

        Returns every open pipe (they are non-blocking): a watcher's callback
        switches to us at once, so the next pipe's callback would otherwise
        cost a wake-up of its own; an exiting command closes both together.
        """
        if not self._woken:
            timer = None
            if timeout is not None:
                timer = self._hub.loop.timer(timeout)
                timer.start(self.wake)
            try:
                self._waiter.get()
            finally:
                if timer is not None:
                    timer.close()
        self._waiter.clear()
        self._woken = False
        ready, self._ready = self._ready, False
        return list(self._io) if ready else []

    def check_exit(self, *, pipes_closed: bool) -> bool:
        """True once the leader has exited.

        Once the pipes are closed the leader has usually exited already: a
        zombie that libev has not reaped yet. Its status is read then at
        once (WNOWAIT leaves the reaping to libev) instead of waiting for the
        loop to handle its SIGCHLD.
        """
        if self.exited or not pipes_closed:
            return self.exited
        try:
            info = os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False  # libev has reaped it: the watcher's callback is on its way
        if info is None:
            return False  # still running
        self._code = _exit_code(info)
        self.exited = True
        return True

    def exit_code(self) -> int:
        if self._code is None:
            self._code = os.waitstatus_to_exitcode(self._child.rstatus)
        return self._code

    def wake(self) -> None:
        if self._woken:
            return
        self._woken = True
        current = self._current()
        if current is self._hub:  # a watcher's callback: straight into the waiting greenlet
            self._waiter.switch(None)
        elif current is not self._owner:  # another greenlet: Waiter.switch is the hub's only
            self._hub.loop.run_callback(self._waiter.switch, None)
        # else the owner itself, not waiting now: its next wait() returns at once

    def forget(self, fd: int) -> None:
        watcher = self._io.pop(fd)
        watcher.stop()
        watcher.close()

    def close(self) -> None:
        for fd in list(self._io):
            self.forget(fd)
        self._child.stop()
        self._child.close()
        if self._code is not None and not self.exited_by_watcher:
            # The status was read with WNOWAIT: reap the zombie now rather than whenever
            # the hub handles its SIGCHLD, so a stopped job leaves no zombie behind. The
            # unpatched waitpid: gevent's would wait for libev's record of the exit.
            with contextlib.suppress(ChildProcessError):
                _real_waitpid(self._pid, os.WNOHANG)


def _exit_code(info: os.waitid_result) -> int:
    """An exit code as ``subprocess`` gives it: the status, or -N when signal N killed it."""
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _signal_group(pgid: int, signum: int) -> None:
    """Signal a group (with its ``_Child``'s lock held); a group that is gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _close(fd: int) -> None:
    """Close ``fd`` now, also under gevent (whose ``os.close`` closes later).

    Only for fds that no libev watcher watches any more: ``_HubWaiter`` stops
    its watchers first, and libev treats a new watcher's fd as possibly new.
    """
    _private_subprocess().os.close(fd)


# The running child of each attempt, keyed by id(attempt). run() adds and removes its entry, so
# an id is only looked up while its attempt is alive; single dict operations need no lock.
_LIVE: dict[int, _Child] = {}


def _could_not_start(work: CommandWork, exc: OSError) -> CommandFailed:
    missing = exc.errno == errno.ENOENT and exc.filename != work.cwd
    reason = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    return CommandFailed(
        f"command {work.shown()} could not start: {reason}{where}", 127 if missing else 126
    )


def _env(work: CommandWork) -> dict[str, str] | None:
    if not work.env:
        return None  # inherit ours as it is: cheaper than a copy
    env = dict(os.environ)
    env.update(work.env)
    return env


def _spawn(work: CommandWork, out_w: int, err_w: int, child: _Child) -> None:
    """Start the command with the standard library's ``Popen`` (vfork+exec in C)."""
    popen = _binding_popen(_private_subprocess().Popen)
    popen(
        work.args(),
        stdin=_devnull(),
        stdout=out_w,
        stderr=err_w,
        cwd=work.cwd,
        env=_env(work),
        start_new_session=True,
        jv_child=child,
    )


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
    """Mixed into ``Popen``: records the new process in its ``_Child`` as it starts.

    ``close()`` then kills and reaps it, whatever interrupts the start: the
    pid through ``_recording_fork_exec``, the ``Popen`` (whose ``returncode``
    must be set so that it does not warn) as soon as ``_execute_child`` ends.
    """

    _jv_child: _Child
    returncode: int | None

    def __init__(self, *args: Any, jv_child: _Child, **kwargs: Any) -> None:
        self._jv_child = jv_child
        super().__init__(*args, **kwargs)

    def _execute_child(self, *args: Any, **kwargs: Any) -> None:
        child = self._jv_child
        _spawning.pids = child.pids
        try:
            super()._execute_child(*args, **kwargs)  # type: ignore[misc]
        finally:
            # Only stores here, no call: a call is where a pending Kill would be raised.
            _spawning.pids = None
            if self.returncode is None:
                child._process = self  # type: ignore[assignment]
            else:
                child.pids[:] = ()  # the exec failed and Popen reaped the child


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


@functools.cache
def _gevent_parts() -> tuple[Any, Any]:
    from gevent import getcurrent  # noqa: PLC0415 - only under the gevent runtime
    from gevent.hub import Waiter  # noqa: PLC0415

    return getcurrent, Waiter


def _real_waitpid(pid: int, options: int) -> tuple[int, int]:
    from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

    waitpid: Any = monkey.get_original("os", "waitpid")
    return waitpid(pid, options)  # type: ignore[no-any-return]


def _gevent_hub() -> Any:
    """The gevent hub of this thread if the process runs under gevent, else None."""
    if active_runtime() != "gevent":
        return None
    import gevent  # noqa: PLC0415 - loaded whenever the gevent runtime is active

    return gevent.get_hub()


# -- the warden ------------------------------------------------------------------------------------

_WARDEN_CODE: Final = """
import os, signal, time
groups = set()
pending = b""
while True:
    data = os.read(0, 1 << 20)
    if not data:
        break
    pending += data
    *lines, pending = pending.split(b"\\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
    # Read in batches: a write then finds no reader waiting, so registering wakes nobody up.
    time.sleep(0.2)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_F_SETPIPE_SZ: Final = 1031  # fcntl.F_SETPIPE_SZ on Linux


class _Warden:
    """A helper process that SIGKILLs every command group still running when jobvisor dies.

    The usual tool, ``prctl(PR_SET_PDEATHSIG)``, must run in the child
    between fork and exec: a ``preexec_fn``, which makes ``subprocess`` fork
    instead of vfork and run Python in the child. Measured here, that tripled
    the cost of starting a command (and it is unsafe with threads); it also
    reaches only the direct child, never its grandchildren. Instead, one
    small Python process per jobvisor process (started with the first
    command, in a session of its own) reads ``+PGID``/``-PGID`` lines from a
    pipe, in batches every 0.2s, so that registering is one non-blocking
    write that wakes nobody. When the pipe closes -- jobvisor exited, crashed
    or was SIGKILLed -- it SIGKILLs every group still registered,
    grandchildren included, within 0.2s.

    Limits: a process that leaves its group (``setsid``) escapes, as it does
    any group kill; jobvisor dying in the microseconds between a spawn and
    its ``add`` leaves that command running. If the warden dies, the next
    registration starts a new one, which learns every live group; if none
    can be started, commands run without this safety net (logged once).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._fd = -1  # the write end of the warden's stdin; -1 until the first command
        self._pid = 0
        self._groups: set[int] = set()  # the live groups; the warden knows them or will
        self._backlog = b""  # lines the pipe had no room for yet, sent before any other
        self._broken = False  # no warden could be started: stop trying

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._send(b"+%d\n" % pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._send(b"-%d\n" % pgid)

    def forget(self) -> None:
        """In a forked child: drop the inherited pipe, so that only jobvisor holds it open."""
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._reset()  # a new lock too: another thread may have held the old one at the fork

    def _send(self, line: bytes) -> None:
        if self._broken:
            return
        self._backlog += line
        try:
            try:
                if self._fd < 0:
                    self._start()
                self._flush()
            except BrokenPipeError:
                self._start()  # the warden died: a new one learns every live group
                self._flush()
        except OSError as exc:
            self._broken, self._backlog = True, b""
            log.warning("no command warden, commands may outlive a crash of jobvisor: {}", exc)

    def _flush(self) -> None:
        while self._backlog:
            try:
                sent = os.write(self._fd, self._backlog)
            except BlockingIOError:
                return  # the warden is behind: the rest goes with the next line
            self._backlog = self._backlog[sent:]

    def _start(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, os.WNOHANG)  # reap the old warden (threads runtime)
        read_end, write_end = os.pipe()
        try:
            self._pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", "-c", _WARDEN_CODE],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_end, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                ],
                setsid=True,  # no terminal signals: it must outlive a ^C to jobvisor
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        os.set_blocking(write_end, False)  # a stuck warden must never block a job
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, 1 << 20)  # room for many 0.2s batches
        self._fd = write_end
        self._backlog = b"".join(b"+%d\n" % g for g in self._groups)


_WARDEN: Final = _Warden()
os.register_at_fork(after_in_child=_WARDEN.forget)
