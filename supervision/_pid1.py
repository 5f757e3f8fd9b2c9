"""jobvisor as a container's first process (PID 1): a small init in front of it, as tini's.

PID 1 has two duties no other process has. Every process whose parent dies is handed to
it, and only its ``wait`` frees their entries: a job's ``sh -c 'worker &'`` left one
zombie per run, until the container ran out of process ids. And the kernel drops every
signal PID 1 has no handler for: a ``docker stop`` that came while Python was still
importing was lost, and SIGQUIT or SIGUSR1 did nothing in a container while they end the
process outside one.

So jobvisor started as PID 1 forks first. The parent stays PID 1 and does only an init's
work: it reaps every child handed to it and passes every signal on to jobvisor, which runs
as its child exactly as it does outside a container; when jobvisor ends, the init ends
with its exit code (128 + N for a signal N). The signals are blocked from the first line
of ``cli.main`` on, so the kernel queues them instead of dropping them (it drops only
what PID 1 neither handles nor blocks), and the init waits for them with
``sigwaitinfo``: no handler, no race with the fork. A signal from the terminal
(Ctrl-C: ``si_code`` ``SI_KERNEL``) reached jobvisor already, as the foreground process
group shares it: it is not passed on again, where it would count as a second one. A
terminal's hangup (SIGHUP, SIGCONT) is sent to the session's leader alone: passed on.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Final, NoReturn

__all__ = ["FORWARDED", "UNDER_INIT", "become_init", "exit_code_of"]

# tini's choice: every signal but those that only the kernel sends to a faulting process,
# the job-control ones a terminal sends a background group, SIGPIPE (a write's own), and
# SIGCHLD, the init's own. SIGKILL and SIGSTOP cannot be caught anyway.
_KEPT: Final = frozenset(
    {
        signal.SIGKILL,
        signal.SIGSTOP,
        signal.SIGCHLD,
        signal.SIGPIPE,
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
        signal.SIGTTIN,
        signal.SIGTTOU,
    }
)
FORWARDED: Final = frozenset(signal.valid_signals()) - _KEPT
_SI_KERNEL: Final = 0x80  # si_code of a signal the kernel sent (a terminal's ^C, ^\, ^Z)
# A terminal's hangup goes to its session's leader alone, the init: passed on all the same.
_HANGUP: Final = frozenset({signal.SIGHUP, signal.SIGCONT})

# True in jobvisor itself when the init above it is ours (``become_init``'s child).
UNDER_INIT = False


def become_init() -> None:
    """Fork when this process is PID 1: return in the child, which is jobvisor; never return
    in the parent, which is the init until the child ends."""
    global UNDER_INIT  # noqa: PLW0603 - set once, in the child, before anything reads it
    before = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})
    child = os.fork()
    if child == 0:
        # The child's pending set starts empty: what came before the fork waits for the init.
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
        UNDER_INIT = True
        return
    _serve(child)


def _serve(child: int) -> NoReturn:
    """The init's loop: reap whatever ends, pass signals on, end with ``child``."""
    waited = FORWARDED | {signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo == signal.SIGCHLD:
            code = _reap(child)
            if code is not None:
                os._exit(code)
        elif info.si_code != _SI_KERNEL or info.si_signo in _HANGUP:
            with contextlib.suppress(ProcessLookupError):  # it ended: its SIGCHLD is on the way
                os.kill(child, info.si_signo)


def _reap(child: int) -> int | None:
    """Free every child that ended; ``child``'s exit code if it was one of them."""
    code = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return code
        if pid == 0:
            return code
        if pid == child:
            code = exit_code_of(status)


def exit_code_of(status: int) -> int:
    """A wait status as a shell's ``$?``: the exit code, or 128 + the signal that ended it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
