"""`jobvisor shutdown`: ask the daemon to stop as SIGTERM does, and wait until it has ended.

The daemon's pid is the control connection's peer (``SO_PEERCRED``), and a pidfd of it is
opened as soon as it is connected, before the request is sent: once the pidfd is readable
that process has ended, whatever process takes its pid next. A daemon that is stopping
already has closed its socket; its lock file names it. The daemon answers at once, before it
stops a job: one that does not within ``SHUTDOWN_TIMEOUT`` is said stuck, with what ends it.

Standard library only, as the rest of the control client (``supervision._client``).
"""

from __future__ import annotations

import contextlib
import os
import select
import time

from actors._errors import JobvisorError
from supervision._client import (
    SHUTDOWN_TIMEOUT,
    NoAnswerError,
    NoDaemonError,
    connected,
    exchange,
    holder,
    peer_pid,
    stopping_pid,
)

TYPE_CHECKING = False  # as _client: importing typing is a tenth of a control command's start
if TYPE_CHECKING:
    from typing import Any, Self

__all__ = ["ShutdownRefusedError", "Stopping", "ask_shutdown", "shutdown_refused"]

# Polled for a daemon's end where no pidfd can be opened (Linux before 5.3, other systems).
_POLL = 0.05
# A daemon that closed the connection with no answer is looked at this long for its end: its
# socket closes as its process exits, a moment before the process has.
_GONE_WAIT = 1.0


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
                return True  # another user's now: ours ended and its pid was taken
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

    ``NoDaemonError`` when none runs there; ``NoAnswerError`` when one took the request and
    gave no answer within ``SHUTDOWN_TIMEOUT``; ``ShutdownRefusedError`` when it refused.
    """
    try:
        stopping, reply, pid = _asked(state_dir)
    except NoDaemonError:
        # Only a daemon stopping already (its socket gone first, its lock held to the end) is
        # waited for; one that did not answer (stuck) is said as such.
        held = stopping_pid(state_dir)
        if held is None:
            raise
        return Stopping(held, already=True)
    if reply is None:  # it ended before its answer was sent: a quick stop
        assert stopping is not None
        return stopping
    result = reply.get("result")
    if not reply.get("ok") or not isinstance(result, dict):
        if stopping is not None:
            stopping.close()
        raise ShutdownRefusedError(shutdown_refused(reply, pid))
    if stopping is None:  # no peer credentials: the daemon's own word
        stopping = Stopping(int(result["pid"]), already=False)
    stopping.already = bool(result.get("already"))
    return stopping


def _asked(state_dir: str) -> tuple[Stopping | None, dict[str, Any] | None, int | None]:
    """The shutdown request sent: what to wait for (None: no pid known), the daemon's reply
    (None: it ended without one), its pid."""
    with connected(state_dir, SHUTDOWN_TIMEOUT) as (sock, path):
        pid = peer_pid(sock)
        # Opened before the request: the daemon was there to connect to just now.
        stopping = None if pid is None else Stopping(pid, already=False)
        try:
            return stopping, exchange(sock, path, {"op": "shutdown"}, SHUTDOWN_TIMEOUT), pid
        except NoAnswerError as exc:
            if stopping is not None:
                stopping.close()
            known = exc.pid
            if known is None:  # no peer credentials here: the lock file names the daemon
                held = holder(state_dir, "daemon")
                known = None if held is None else held[0]
            raise NoAnswerError(_no_answer(state_dir, path, known), known) from None
        except NoDaemonError:
            # No answer, and the daemon has ended: a stop quicker than its reply's send.
            if stopping is not None and stopping.wait(_GONE_WAIT):
                return stopping, None, pid
            if stopping is not None:
                stopping.close()
            raise
        except BaseException:
            if stopping is not None:
                stopping.close()
            raise


def _no_answer(state_dir: str, path: str, pid: int | None) -> str:
    """What to say of a daemon that took the shutdown request and did not answer: what ends
    it, by its pid."""
    who = "" if pid is None else f" (pid {pid})"
    pid_text = "PID" if pid is None else str(pid)
    if pid is not None and _paused(pid):
        # A SIGTERM waits for it to run again as well: SIGCONT alone lets it take the
        # request it holds (r57).
        return (
            f"the daemon{who} at {path} gave no answer to the shutdown request in "
            f"{SHUTDOWN_TIMEOUT:g}s: it is stopped (SIGSTOP, Ctrl-Z); kill -CONT {pid} lets it "
            "run again and take the request it holds (it then stops gracefully)"
        )
    said = (
        f"the daemon{who} at {path} gave no answer to the shutdown request in "
        f"{SHUTDOWN_TIMEOUT:g}s: it is stuck, or stopped (SIGSTOP, Ctrl-Z), and may still stop "
        f"once it answers; stop it with kill -TERM {pid_text}, or kill -KILL {pid_text} if it "
        "has not ended a few seconds later"
    )
    if pid is None:
        said += f" (PID: the first word of {state_dir}/daemon.lock)"
    return said


def _paused(pid: int) -> bool:
    """Whether process ``pid`` is stopped (its /proc state ``T``); False where it cannot be
    read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:  # noqa: PTH123 - no pathlib here
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return False
    return bool(fields) and fields[0] == b"T"


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
