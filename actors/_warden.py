"""The command warden: a helper process that SIGKILLs every command group left when jobvisor dies.

Part of the ``command`` job kind (``actors._command``): each attempt's group
is registered as it starts and unregistered once it is reaped.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import sys
import threading
import time
from typing import Any, Final

import logbook

from actors._runtime import NoThreadError, os_lock_type, start_task, start_thread
from actors._waiters import gevent_hub

__all__ = ["WARDEN", "Warden"]

log = logbook.Logger("actors.command")

_WARDEN_CODE: Final = """
import os, signal, sys, time
if sys.argv[1:] == ["detach"] and os.fork():
    os._exit(0)  # its spawner reaps this parent at once: the warden is no child of the spawner's
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
# A warden that dies this soon after the last one was replaced is left to the next registration:
# one that cannot live (its Python broken by an upgrade) must not be restarted in a tight loop.
_REPLACE_EVERY: Final = 10.0


class Warden:
    """A helper process that SIGKILLs every command group still running when jobvisor dies.

    The usual tool, ``prctl(PR_SET_PDEATHSIG)``, must run in the child
    between fork and exec: a ``preexec_fn``, which makes ``subprocess`` fork
    instead of vfork and run Python in the child. Measured here, that tripled
    the cost of starting a command (and it is unsafe with threads); it also
    reaches only the direct child, never its grandchildren. Instead, one
    small Python process per jobvisor process (started as a tree with
    commands starts, else by the first command; in a session of its own)
    reads ``+PGID``/``-PGID`` lines from a pipe, in batches every 0.2s, so
    that registering is one non-blocking write that wakes nobody. When the
    pipe closes -- jobvisor exited, crashed or was SIGKILLed -- it SIGKILLs
    every group still registered, grandchildren included, within 0.2s.

    Its end is watched (a pidfd, or for a detached warden a copy of the
    pipe's write end, which polls POLLERR once the read end is gone): a
    warden that dies (a person's ``kill -9``, the out-of-memory killer) is
    reaped, said at ERROR and replaced at once by one that learns every live
    group. One that dies again within 10s of that is replaced by the next
    registration, as when the watch could not start.

    Limits: a process that leaves its group (``setsid``) escapes, as it does
    any group kill; jobvisor dying during a command's spawn (until the child
    exec'd and jobvisor's thread ran again: a millisecond or more on a busy
    host) or in the microseconds between it and its ``add`` leaves that
    command running. A daemon is ready before its services' first spawns, so
    a kill right after ``daemon --detach`` returned can land there. If no
    warden can be started, commands run without this safety net (logged once).
    """

    def __init__(self) -> None:
        self._detached = False
        self._reset()

    def detach(self) -> None:
        """Start the warden from now on outside this process's children (in a Ray worker).

        As a Ray worker exits (its raylet lost, a ``ray.kill``), Ray SIGKILLs its
        children: a warden among them died before it could kill the commands'
        groups, and what a command had started in its group outlived the worker.
        """
        with self._lock:
            self._detached = True

    def _reset(self) -> None:
        # Held around a write to a pipe that never blocks, or a warden's start: no yield
        # to gevent's hub, so the OS's lock (gevent's is pure Python, twice a restart).
        # Nothing under it may log (a handler may yield): a failure is said after it.
        self._lock = os_lock_type()()
        self._fd = -1  # the write end of the warden's stdin; -1 until the first command
        self._pid = 0
        self._groups: set[int] = set()  # the live groups; the warden knows them or will
        self._backlog = b""  # lines the pipe had no room for yet, sent before any other
        self._broken = False  # no warden could be started: stop trying
        # The fds that tell of a warden's end, each owned by its watch until the watch ends:
        # fd -> (the warden's pid, 0 if detached; its gevent watcher, None if a thread polls
        # it). The current warden's is _watch; an earlier one's watch reaps its warden.
        self._watches: dict[int, tuple[int, Any]] = {}
        self._watch = -1
        self._replaced_at = -_REPLACE_EVERY  # monotonic: when a watch last replaced a warden

    def start(self) -> None:
        """Start the warden now if none runs: once, as a tree with commands starts.

        Started by the first ``add`` instead, the warden's start (a Python's
        spawn, some milliseconds) lay between that command's spawn and its
        registration, and a jobvisor killed then left every command spawned
        meanwhile running.
        """
        with self._lock:
            failed = self._send(b"") if self._fd < 0 else None
        if failed is not None:
            _no_warden(failed)

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            failed = self._send(b"+%d\n" % pgid)
        if failed is not None:
            _no_warden(failed)

    def discard(self, pgid: int) -> None:
        failed = None
        with self._lock:
            if pgid in self._groups:
                # Queued before the group is forgotten: a Kill landing in between makes the
                # caller's retry queue it again (a second "-" the warden ignores), never none.
                failed = self._send(b"-%d\n" % pgid)
                self._groups.discard(pgid)
        if failed is not None:
            _no_warden(failed)

    def forget(self) -> None:
        """In a forked child: drop the inherited pipe, so that only jobvisor holds it open."""
        for fd in (self._fd, *self._watches):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for _, watcher in self._watches.values():
            if watcher is not None:  # the hub's loop came along: it must not poll a closed fd
                watcher.stop()
        self._reset()  # a new lock too: another thread may have held the old one at the fork

    def _send(self, line: bytes) -> OSError | None:
        """Queue ``line`` for the warden and send what the pipe takes; the error that left
        no warden (said by the caller, once the lock is let go), else None."""
        if self._broken:
            return None
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
            return exc
        return None

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
        if self._pid and self._watch < 0:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, os.WNOHANG)  # reap the old warden (threads runtime)
        self._watch = -1  # its watch, if any, reaps the old one
        read_end, write_end = os.pipe()
        detach = ["detach"] if self._detached else []
        try:
            self._pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", "-c", _WARDEN_CODE, *detach],
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
        if detach:
            with contextlib.suppress(ChildProcessError):  # SIGCHLD ignored: reaped already
                os.waitpid(self._pid, 0)  # the parent the warden forked from, gone at once
            self._pid = 0  # reaped: its number may be a command's next
        os.set_blocking(write_end, False)  # a stuck warden must never block a job
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, 1 << 20)  # room for many 0.2s batches
        self._fd = write_end
        self._backlog = b"".join(b"+%d\n" % g for g in self._groups)
        self._watch = self._watch_end(write_end)

    def _watch_end(self, write_end: int) -> int:
        """Start watching for the new warden's end; the fd watched, -1 if no watch started.

        A thread blocks in ``poll`` (gevent: a watcher on the hub's loop that lets the
        loop end without it); either calls ``_ended`` once the fd polls ready.
        """
        try:
            # A pidfd reads readable once it exits; a detached one's pid is unknown, but the
            # pipe's write end polls POLLERR once it exits.
            fd = os.pidfd_open(self._pid) if self._pid else os.dup(write_end)
        except OSError:
            return -1  # out of fds: as before, the next registration finds it dead
        hub = gevent_hub()
        if hub is not None:
            if self._pid and hub.loop.default:  # child watchers live on the default loop only
                # libev's SIGCHLD handler reaps every child: only its watcher learns the status.
                watcher = hub.loop.child(self._pid, ref=False)
            else:
                watcher = hub.loop.io(fd, 1, ref=False)  # 1: EV_READ, which libev sets on POLLERR
            watcher.start(self._on_end, fd)
            self._watches[fd] = (self._pid, watcher)
            return fd
        thread = threading.Thread(
            target=self._wait_for_end, args=(fd,), name="jobvisor-warden-watch", daemon=True
        )
        self._watches[fd] = (self._pid, None)
        try:
            start_thread(thread)
        except NoThreadError:
            del self._watches[fd]  # the host is out of tasks: as before, the next registration
            os.close(fd)
            return -1
        return fd

    def _wait_for_end(self, fd: int) -> None:
        """Threads: the watch's thread, until its warden ends."""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        self._ended(fd)

    def _on_end(self, fd: int) -> None:
        """gevent: the watcher's callback, in the hub, which must not block or log."""
        _, watcher = self._watches.get(fd, (0, None))
        status = None
        if watcher is not None:
            watcher.stop()  # an io watcher is level-triggered: it would fire until the fd closes
            status = getattr(watcher, "rstatus", None)  # a child watcher's
        start_task(functools.partial(self._ended, fd, status), "jobvisor-warden-watch")

    def _ended(self, fd: int, status: int | None = None) -> None:
        """The warden watched by ``fd`` has ended: reap it, start a new one at once, say so.

        ``status``: its wait status, when libev reaped it (gevent)."""
        with self._lock:
            old, _ = self._watches.pop(fd, (-1, None))
            if old < 0:
                return  # dropped by a fork's child, which closed its fds
            code = None if status is None else os.waitstatus_to_exitcode(status)
            if old and status is None:
                # By the pidfd, not the pid: its pid may be a command's by now if someone else
                # reaped it (ECHILD then). Returns at once: it has exited.
                with contextlib.suppress(ChildProcessError):
                    code = _exit_code(os.waitid(os.P_PIDFD, fd, os.WEXITED))
            os.close(fd)
            if fd != self._watch:
                return  # a registration met its broken pipe first and replaced it
            self._pid, self._watch = 0, -1
            os.close(self._fd)
            self._fd = -1
            now = time.monotonic()
            if self._broken:
                then = "commands may outlive a crash of jobvisor (no warden could start before)"
            elif now - self._replaced_at < _REPLACE_EVERY:
                then = (
                    "no new one yet, one was started under 10s ago: the next command's start"
                    " or end starts it"
                )
            else:
                self._replaced_at = now
                failed = self._send(b"")  # a new warden, told every live group
                if failed is None:
                    then = _replaced(self._pid, len(self._groups))
                else:
                    then = f"no new one could start ({failed}), commands may outlive a crash"
        log.error("the command warden{} {}: {}", _pid_of(old), _how_it_ended(code), then)


def _pid_of(pid: int) -> str:
    return f" (pid {pid})" if pid else ""  # a detached warden's pid is not known


def _exit_code(info: os.waitid_result | None) -> int | None:
    """An exit code as ``subprocess`` gives it: the status, or -N when signal N killed it."""
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return "ended"  # detached: no child of ours
    if code >= 0:
        return f"exited with {code}"
    name = signal.Signals(-code).name
    if -code == signal.SIGKILL:
        return (
            f"was killed by {name}, not by jobvisor (the kernel's out-of-memory killer, or"
            " another process)"
        )
    return f"was killed by {name}, not by jobvisor"


def _replaced(pid: int, groups: int) -> str:
    if not groups:
        return f"a new one{_pid_of(pid)} is ready for the next command"
    if groups == 1:
        held = "holds the 1 running command's group, to SIGKILL it if jobvisor dies"
    else:
        held = f"holds the {groups} running commands' groups, to SIGKILL them if jobvisor dies"
    return f"a new one{_pid_of(pid)} {held}"


def _no_warden(exc: OSError) -> None:
    log.warning("no command warden, commands may outlive a crash of jobvisor: {}", exc)


WARDEN: Final = Warden()
os.register_at_fork(after_in_child=WARDEN.forget)
