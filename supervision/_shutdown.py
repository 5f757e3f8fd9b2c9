"""`jobvisor shutdown`: ask the daemon to stop as SIGTERM does, and wait until it has ended.

The daemon's pid is the control connection's peer (``SO_PEERCRED``), and a pidfd of it is
opened while the connection keeps it alive, before the request is sent: once the pidfd is
readable that process has ended, whatever process takes its pid next. A daemon that is
stopping already has closed its socket; its lock file names it.

Standard library only, as the rest of the control client (``supervision._client``).
"""

from __future__ import annotations

import contextlib
import os
import select
import time

from actors._errors import JobvisorError
from supervision._client import NoDaemonError, connected, exchange, holder, peer_pid

TYPE_CHECKING = False  # as _client: importing typing is a tenth of a control command's start
if TYPE_CHECKING:
    from typing import Any, Self

__all__ = ["ShutdownRefusedError", "Stopping", "ask_shutdown", "shutdown_refused"]

# Polled for a daemon's end where no pidfd can be opened (Linux before 5.3, other systems).
_POLL = 0.05


class ShutdownRefusedError(JobvisorError):
    """The daemon answered the shutdown request with a refusal (an older daemon's)."""


class Stopping:
    """A daemon that was asked to stop (or was stopping already), to wait for."""

    def __init__(self, pid: int, *, already: bool) -> None:
        self.pid = pid
        self.already = already  # it was stopping before this command asked
        self._fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # gone already; no pidfd here
            self._fd = os.pidfd_open(pid)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the daemon has ended, waiting up to ``timeout`` s (None: until it has)."""
        if self._fd is not None:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            return bool(ready)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass  # another user's now: ours ended and its pid was taken
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ask_shutdown(state_dir: str) -> Stopping:
    """Ask the daemon of ``state_dir`` to stop gracefully; what to wait for.

    ``NoDaemonError`` when none runs there; ``ShutdownRefusedError`` when it refused.
    """
    try:
        with connected(state_dir, 60.0) as (sock, path):
            pid = peer_pid(sock)
            # Opened before the request: the connection keeps the daemon, and so its pid, alive.
            stopping = None if pid is None else Stopping(pid, already=False)
            try:
                reply = exchange(sock, path, {"op": "shutdown"}, 60.0)
            except BaseException:
                if stopping is not None:
                    stopping.close()
                raise
    except NoDaemonError:
        held = holder(state_dir, "daemon")  # stopping: its socket is gone, its lock still held
        if held is None:
            raise
        return Stopping(held[0], already=True)
    result = reply.get("result")
    if not reply.get("ok") or not isinstance(result, dict):
        if stopping is not None:
            stopping.close()
        raise ShutdownRefusedError(shutdown_refused(reply, pid))
    if stopping is None:  # no peer credentials: the daemon's own word
        stopping = Stopping(int(result["pid"]), already=False)
    stopping.already = bool(result.get("already"))
    return stopping


def shutdown_refused(reply: dict[str, Any], pid: int | None) -> str:
    """What to say of a refused shutdown: an older daemon does not know it, and SIGTERM is
    the same graceful stop."""
    error = str(reply.get("error"))
    if not error.startswith("unknown op "):
        return error
    error = error.partition(" (the daemon may be")[0]  # _older's hint, replaced by this one
    who = "" if pid is None else f", pid {pid},"
    how = "kill -TERM " + ("PID" if pid is None else str(pid))
    return (
        f"{error} (the daemon{who} is from an older jobvisor than this command: stop it with "
        f"{how}, which stops it gracefully too)"
    )
