"""Under gevent, a stop signal that a job's call keeps from being acted on: heard, and the second
one ends the process all the same (SPEC §4: "whatever a job's thread is doing").

A greenlet in a call gevent does not make cooperative (``os.read`` on a pipe, a C extension,
a loop that never yields) holds the whole process there: the hub cannot run, so no timer
fires, no lock or event wakes anyone, and the main loop that acts on a signal never runs.
Python's own signal handler still runs, in that greenlet, when the call returns EINTR and
before it is retried (PEP 475), or between two bytecodes of a loop. So the handler starts a
real OS thread (gevent's patching does not reach it), which asks the hub to answer; a hub
that does not within ``HUB_WAIT`` is blocked. The first signal is then said in a line naming
the job, and a second one ends the process at once, without the hub. Under threads none of
this is needed: the main thread runs beside any job's thread.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from actors import active_runtime
from actors._attempt import current_attempt_var
from supervision._logging import CLEAR_LINE

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["HUB_WAIT", "HubWatch"]

HUB_WAIT: Final = 1.0  # seconds the hub may take to answer before it is taken for blocked
_LOOK: Final = 0.01  # how often the watch thread looks for the hub's answer


class HubWatch:
    """Watches gevent's hub from the first stop signal on; does nothing under threads.

    ``who``: ``"run"`` or ``"daemon"``, for its lines; ``exit_code``: what a second signal
    ends the process with, as the forced stop it stands in for does.
    """

    def __init__(self, who: str, exit_code: int) -> None:
        self._who = who
        self._exit_code = exit_code
        self._hub: Any = None
        if active_runtime() == "gevent":
            import gevent  # noqa: PLC0415 - loaded whenever the runtime is gevent

            # The main thread's hub, taken here: asked from the watch thread, get_hub() would
            # make that thread a hub of its own.
            self._hub = gevent.get_hub()
        # Plain fields, no lock: written by the signal handler (the main thread, between two
        # bytecodes of whatever greenlet runs) and read by the watch thread.
        self._count = 0  # stop signals so far
        self._name = ""  # the last one's: "SIGTERM"
        self._blocker = ""  # what ran when a signal came, if it was a job: "blk (attempt 1, ...)"
        self._answers = 0  # the hub's answers to the watch thread's questions
        self._stuck = False  # the hub did not answer the last question in time
        self._watching = False
        self._closed = False

    def signalled(self, signum: int, count: int, frame: FrameType | None) -> None:
        """The signal handler's: stop signal number ``count`` (1, 2, ...) came; ``frame`` is
        the one it interrupted. A second one while the hub is known blocked ends the process
        here and now."""
        if self._hub is None or self._closed:
            return
        self._count = count
        self._name = signal.Signals(signum).name
        blocker = _running_job(frame)
        if blocker:
            self._blocker = blocker
        if count >= 2 and self._stuck:
            self._end()
        if not self._watching:
            try:
                _start_os_thread(self._watch)
            except RuntimeError:  # a host out of tasks: unwatched (tried again at the next)
                return
            self._watching = True

    def close(self) -> None:
        """Stop watching (the run or the daemon is ending by its own path)."""
        self._closed = True

    def _answer(self) -> None:
        self._answers += 1  # in the hub: it runs

    def _watch(self) -> None:
        """A real thread's, until ``close``: ask the hub every ``HUB_WAIT``; say once that it
        is blocked, and end the process when it is after a second signal."""
        sleep = _original_sleep()
        said = False
        while not self._closed:
            asked = self._answers
            self._hub.loop.run_callback_threadsafe(self._answer)
            deadline = time.monotonic() + HUB_WAIT
            while self._answers == asked and time.monotonic() < deadline and not self._closed:
                sleep(_LOOK)
            if self._closed:
                return
            if self._answers != asked:
                self._stuck = False
                sleep(HUB_WAIT)  # it runs: the main loop acts on the signals
                continue
            self._stuck = True
            if self._count >= 2:
                self._end()
            if not said:
                said = True
                self._say(
                    f"{self._name}: {self._blocker or 'a job'} blocks gevent's hub: it is in a "
                    "call that never yields to gevent (a C call such as os.read on a pipe, or a "
                    "loop), so nothing else runs until it returns, neither its timeout nor the "
                    "stop; a second SIGINT or SIGTERM ends the process at once (isolation: "
                    "process runs such a call where a timeout and a stop reach it)"
                )

    def _end(self) -> None:
        self._say(
            f"second signal ({self._name}): {self._blocker or 'a job'} blocks gevent's hub, "
            "so nothing can be stopped nor flushed: ending the process now "
            f"(exit {self._exit_code}); journal rows not written yet are lost"
        )
        os._exit(self._exit_code)

    def _say(self, text: str) -> None:
        # Straight to the file descriptor: the log's handlers and sys.stderr's lock may be held
        # by the blocked greenlet, and gevent's locks wait for the hub.
        line = f"jobvisor {self._who}: {text}\n"
        try:
            if os.isatty(2):
                line = CLEAR_LINE + line  # over the live progress line
            os.write(2, line.encode(errors="replace"))
        except OSError:
            pass  # no stderr to tell (a hung-up terminal): the exit still comes


def _running_job(frame: FrameType | None) -> str:
    """The job whose code the signal interrupted, with where it was; "" if none was running."""
    attempt = current_attempt_var.get()
    if attempt is None:
        return ""
    where = ""
    if frame is not None:
        code = frame.f_code
        where = f", in {code.co_name} at {Path(code.co_filename).name}:{frame.f_lineno}"
    return f"{attempt.path} (attempt {attempt.number}{where})"


def _original_sleep() -> Any:
    from gevent import monkey  # noqa: PLC0415 - only under gevent

    return monkey.get_original("time", "sleep")


def _start_os_thread(target: Any) -> None:
    """Start ``target`` in a real OS thread, one the hub's being blocked does not hold."""
    from gevent import monkey  # noqa: PLC0415 - only under gevent

    monkey.get_original("_thread", "start_new_thread")(target, ())
