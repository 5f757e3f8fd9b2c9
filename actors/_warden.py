"""The command warden: a helper process that SIGKILLs every command group left when jobvisor dies.

Part of the ``command`` job kind (``actors._command``): each attempt's group
is registered as it starts and unregistered once it is reaped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from typing import Final

import logbook

from actors._runtime import os_lock_type

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


class Warden:
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
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
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
        if self._pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, os.WNOHANG)  # reap the old warden (threads runtime)
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


def _no_warden(exc: OSError) -> None:
    log.warning("no command warden, commands may outlive a crash of jobvisor: {}", exc)


WARDEN: Final = Warden()
os.register_at_fork(after_in_child=WARDEN.forget)
