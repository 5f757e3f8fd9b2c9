"""How a command attempt waits for output, its leader's exit and wake-ups: a waiter per runtime.

Threads ``poll`` the pipes, a pidfd and an eventfd (``PollWaiter``); gevent
keeps libev watchers on the pipes and on the leader (``HubWaiter``). Both
leave the reaping of the leader to their caller (``actors._command``), so a
group's id cannot be reused while it may still be signalled.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import select
from typing import Any, Final

from actors._runtime import active_runtime
from actors._spawn import real_os

__all__ = ["HubWaiter", "PollWaiter", "gevent_hub"]

_POLL_MAX_MS: Final = 2**31 - 1  # poll(2)'s timeout is an int of milliseconds


class PollWaiter:
    """Threads: waits in ``poll`` on the pipes, a pidfd (the leader's exit) and a wake-up eventfd.

    ``wake()`` may be called from any thread. The leader stays unreaped
    (``exit_code`` reads its status with WNOWAIT), so the group's id cannot
    be reused before ``_Child`` reaps it last. The pidfd and the eventfd are
    appended to ``owned`` as they open (from C, see ``actors._spawn.pipe_into``):
    their owner closes them, after ``close()``.
    """

    __slots__ = ("_pid", "_poll", "_wake", "exited", "pidfd")

    def __init__(self, pid: int, fds: list[int], owned: list[int]) -> None:
        self._pid = pid
        self.exited = False
        self._wake = -1
        owned.extend(itertools.starmap(os.pidfd_open, ((pid,),)))
        self.pidfd = owned[-1]
        owned.extend(itertools.starmap(os.eventfd, ((0, os.EFD_CLOEXEC | os.EFD_NONBLOCK),)))
        self._wake = owned[-1]
        self._poll = select.poll()
        for fd in (*fds, self.pidfd, self._wake):
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout: float | None) -> list[int]:
        """Block until a pipe is readable, the leader exited, a wake-up or the timeout.

        A timeout longer than poll(2) takes (24.8 days) returns early, with nothing:
        the caller's loop looks at its deadline and waits again.
        """
        ms = None if timeout is None else min(int(timeout * 1000) + 1, _POLL_MAX_MS)
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
        """Forget the fds (their owner closes them next): no later ``wake()`` writes to one."""
        self.pidfd = self._wake = -1


class HubWaiter:
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
                real_os().waitpid(self._pid, os.WNOHANG)


def _exit_code(info: os.waitid_result) -> int:
    """An exit code as ``subprocess`` gives it: the status, or -N when signal N killed it."""
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


@functools.cache
def _gevent_parts() -> tuple[Any, Any]:
    from gevent import getcurrent  # noqa: PLC0415 - only under the gevent runtime
    from gevent.hub import Waiter  # noqa: PLC0415

    return getcurrent, Waiter


def gevent_hub() -> Any:
    """The gevent hub of this thread if the process runs under gevent, else None."""
    if active_runtime() != "gevent":
        return None
    import gevent  # noqa: PLC0415 - loaded whenever the gevent runtime is active

    return gevent.get_hub()
