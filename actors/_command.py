"""The ``command`` job kind: run an argv or a ``/bin/sh -c`` line in its own process group.

Its output is logged line by line, and none of its processes outlives its
attempt, nor jobvisor itself (see ``actors._warden``). Linux only (pidfd: kernel 5.3+).

One attempt (``CommandWork.run``, in the job actor's thread)::

    spawn (vfork+exec, new session) -> register the group with the warden
      -> wait for output, the leader's exit or a stop: log lines, SIGKILL at the stop deadline
      -> the leader exited: stop_signal to the rest of its group, read to EOF (at most `grace`);
         the pipes already at their end: SIGKILL to the rest at once (said at INFO when
         anybody was left), nothing to wait for
      -> finally: SIGKILL the group, reap the leader, close the fds, unregister the group

Its parts live beside it: ``_spawn`` starts the process (the standard
library's vfork+exec, recording each pid the moment it exists), ``_waiters``
waits for output and exit (``PollWaiter`` under threads, ``HubWaiter``
under gevent) and ``_warden`` is the helper process that kills what is left
when jobvisor dies. libev's SIGCHLD handler, once anybody installs it
(gevent.subprocess does), reaps every child of the process, so under gevent
we install it before the first spawn and never miss an exit.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import logbook

from actors._checks import (
    EXIT_CODES,
    a_kind,
    fmt_duration,
    need,
    need_duration,
    need_int_in,
)
from actors._confine import Confinement, Limits, RunAs, check_umask
from actors._env import JobEnv, check_env
from actors._errors import LAST_LINE_SAID, JobFailure, RuntimeSetupError, SpecError
from actors._printable import printable
from actors._runtime import active_runtime, os_lock_type
from actors._signals import signal_text
from actors._spawn import close_all, pipe_into, spawn, why_status_lost
from actors._waiters import HubWaiter, PollWaiter, gevent_hub
from actors._warden import WARDEN

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._attempt import Attempt, LineCut, OutputSink

__all__ = ["CommandFailed", "CommandWork", "leader_of", "signal_attempt"]

log = logbook.Logger("actors.command")

_CHUNK: Final = 65536  # bytes per read(); the default pipe buffer size on Linux
_READ_ON_MOST: Final = 16  # reads of a pipe once its leader exited, before it counts as held
# How long a pipe its exited leader left open may take to end, once an attempt, before it
# counts as held by another member: another thread's fork holds a copy of it until its exec.
_HELD_WAIT: Final = 0.05
_MAX_LINE: Final = 65536  # a longer run of bytes without a newline is logged in pieces
_SHELL: Final = "/bin/sh"
_VALID_SIGNALS: Final = frozenset(signal.valid_signals())  # a set built per call: slow
_SHOWN_MAX: Final = 200  # characters of the command shown in error messages
_NO_NUL: Final = "a string without a NUL character (exec cannot pass one)"
# A failed command's error ends with its last line on stderr (systemctl status shows the last
# lines too): kept up to this many bytes, said up to _LAST_SAID (a secret's bytes past it kept
# in view, so that the cut never splits one).
_LAST_KEPT: Final = 8192
_LAST_SAID: Final = 200
# A terminal's control sequences that show no text: CSI (colour, cursor, erase) and OSC (a
# title, a link; to its BEL or ST, or the line's end).
_INVISIBLE: Final = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
# pidfd_send_signal's flag (linux/pidfd.h, 6.9) for the group the pidfd's process led, even
# once it was reaped: the group itself, not its id, which may be another process's by then.
_PIDFD_SIGNAL_GROUP: Final = 4
_NOT_OURS: Final = "(not sent by jobvisor: the kernel's out-of-memory killer, or another process)"
# The thread waiting on a command waits at SCHED_BATCH, which on waking does not preempt a
# running task (but one at SCHED_IDLE): at SCHED_OTHER a child's exit woke it ahead of the
# exiting child on the same CPU once for each pipe the exit closed, then for the pidfd: 3.8
# context switches a /bin/true restart, 1.9 at SCHED_BATCH, and 3-8% of its CPU less, the
# switches' own cost counted (bench/README.md, issue 15, stop 45). Only around the wait: what
# the thread starts inherits its policy (a batch policy is not one reset-on-fork resets), and
# the spawn, the readiness probe's thread and everything else run as before. Only from
# SCHED_OTHER, read each time (`chrt` may change a running daemon's; a thread of an embedding
# program has its own), and only under threads: under gevent this thread is the hub's.
_ZERO_PRIORITY: Final = os.sched_param(0)  # the only one SCHED_OTHER and SCHED_BATCH take
# Why a start could not get an fd, beside the system's words (a pipe's error has no filename).
_FD_LIMITS: Final = {
    errno.EMFILE: "the open-file limit, ulimit -n, is reached",
    errno.ENFILE: "the system's open-file limit, fs.file-max, is reached",
}


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

    With a ``user``, on top of that user's login environment, its locale and PATH instead
    (see ``RunAs.confinement``), as sudo gives one.

    Exit 0 succeeds (the attempt's code is 0); anything else raises
    ``CommandFailed``. The command gets a session and process group of its
    own, stdin from ``/dev/null``, and its stdout and stderr logged line by
    line on the ``actors.command`` logger (stdout at INFO, stderr at
    WARNING). ``user``, ``umask`` and ``limits`` are set up in the child
    before exec (see ``actors._confine``); a command its cpu limit ended
    fails with an error that says so. The attempt owns the group: a stop (``cancel``, also on a
    timeout) sends it ``stop_signal`` (then SIGCONT, for a paused member to handle it) and
    SIGKILL ``grace`` seconds later;
    ``kill`` and an exception thrown into ``run`` SIGKILL it at once; when
    the leader exits by itself, the rest of the group gets ``stop_signal``
    while it holds the output pipes (at most ``grace``), then SIGKILL as the
    attempt ends; at once when the pipes are already at their end.
    """

    kind: ClassVar[str] = "command"
    # An attempt runs none of the user's Python in the job's thread, so that thread may run the
    # next incarnation too (``actors._runtime.start_task``'s ``reuse``).
    pooled_thread: ClassVar[bool] = True
    argv: tuple[str, ...] = ()  # exactly one of argv / shell
    shell: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stop_signal: int = signal.SIGTERM
    grace: float = 5.0  # SIGKILL to the whole group this long after stop_signal
    user: RunAs | None = None  # None: jobvisor's own user
    umask: int | None = None  # None: jobvisor's own umask
    limits: Limits | None = None  # None: jobvisor's own limits
    # Exit codes that mean success, like systemd's SuccessExitStatus= (SPEC §10).
    success_exit_codes: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if not isinstance(self.argv, tuple):
            if not isinstance(self.argv, list):
                raise _wrong_type("argv", "a list of strings", self.argv)
            object.__setattr__(self, "argv", tuple(self.argv))
        if not isinstance(self.env, Mapping):
            raise _wrong_type("env", "a mapping of names to strings", self.env)
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
        # exec cannot pass a NUL: one failed every attempt ("embedded null byte"), as a
        # manifest's is refused when it is loaded
        for i, arg in enumerate(self.argv):
            need("\0" not in arg, f"command argv[{i}]", _NO_NUL, arg)
        for name in ("shell", "cwd"):
            text = getattr(self, name)
            need(text is None or "\0" not in text, f"command {name}", _NO_NUL, text)
        # A shared part (an env file's) was checked once, when it was made.
        check_env(self.env.own if isinstance(self.env, JobEnv) else self.env)
        need(
            isinstance(self.stop_signal, int)
            and not isinstance(self.stop_signal, bool)
            and self.stop_signal in _VALID_SIGNALS,
            "stop.signal",
            "a signal name like TERM, INT, HUP or KILL, or its number",
            self.stop_signal,
        )
        need_duration(self.grace, "stop.grace")
        self._check_confinement()

    def _check_confinement(self) -> None:
        if isinstance(self.user, str):  # the user's name alone, as code may give it
            try:
                object.__setattr__(self, "user", RunAs(name=self.user))
            except SpecError as exc:
                raise _wrong_type(
                    "user",
                    "a RunAs, the name of a user, or None",
                    self.user,
                    f" ({exc}: write RunAs(name=...) naming a user of this system)",
                ) from None
        if self.user is not None and not isinstance(self.user, RunAs):
            raise _wrong_type("user", "a RunAs, the name of a user, or None", self.user)
        if self.umask is not None:
            check_umask(self.umask)
        need(
            self.limits is None or isinstance(self.limits, Limits),
            "limits",
            "resource limits",
            self.limits,
        )
        codes = self.success_exit_codes
        need(
            isinstance(codes, tuple | list) and bool(codes),
            "success_exit_codes",
            "a non-empty list of exit codes",
            codes,
        )
        object.__setattr__(self, "success_exit_codes", tuple(codes))
        for i, code in enumerate(self.success_exit_codes):
            need_int_in(code, f"success_exit_codes[{i}]", "an exit code", *EXIT_CODES)

    def confinement(self) -> tuple[Confinement | None, dict[str, str] | None]:
        """What the child sets up before exec, None for nothing; and the environment its
        ``env`` goes on top of: the user's clean one (``RunAs.confinement``), None for ours.

        Raises ``LookupError`` when the user or group is no longer known.
        """
        if self.user is None and self.umask is None and self.limits is None:
            return None, None
        credentials, base = (None, None) if self.user is None else self.user.confinement()
        rlimits = () if self.limits is None else self.limits.rlimits()
        return Confinement(credentials, self.umask, rlimits), base

    # -- the Work protocol -------------------------------------------------------------------------

    def run(self, attempt: Attempt) -> int | None:
        """Run the command to its end in the calling thread; return 0 or raise ``CommandFailed``.

        Runs in the job actor's thread. Whatever is thrown into that thread
        meanwhile (the job actor's ``Kill`` once a stop's grace ran out)
        SIGKILLs the whole group and reaps the leader before it propagates.
        """
        key = id(attempt)
        cut = attempt.cut  # what its errors, cut short, must not split (a secret)
        child = _Child(self, attempt)  # no process and no fd yet: nothing that could leak
        _LIVE[key] = child
        try:
            child.start(self)
            if attempt.cancelled.is_set():  # a cancel() that came before the start
                child.stop(self.stop_signal, self.grace)
            code = child.supervise()
        except (ChildProcessError, ProcessLookupError):
            # The leader was reaped by someone else before we could read its status (its
            # pidfd could not open, or waitid found no such child).
            lost = f"command {self.shown(cut)}: its exit status was lost: {why_status_lost()}"
            raise RuntimeSetupError(lost) from None
        finally:
            try:
                child.close()
            except BaseException:
                # A Kill can land in close()'s own lines, before or between its steps (which
                # it retries itself): then this finishes them. Nothing if close() ended.
                child.close()
                raise
            finally:
                _LIVE.pop(key, None)
        if code >= 0 and code in self.success_exit_codes:
            return code
        if code > 0:
            last = child.stderr.last if child.stderr is not None else None
            said = _last_said(last, cut) if last else ""
            raise CommandFailed(f"command {self.shown(cut)} exited with {code}{said}", code)
        cpu = None if self.limits is None else self.limits.cpu
        if isinstance(cpu, int | float) and _cpu_limit_ended(code, signalled=child.signalled):
            raise CommandFailed(
                f"command {self.shown(cut)} killed by {signal_text(-code)}: "
                f"the cpu limit of {fmt_duration(cpu)} ended it",
                code,
            )
        if code == -signal.SIGKILL and not child.signalled:
            # Not our stop: killed as if by jobvisor, its error named nobody. A memory limit
            # (RLIMIT_AS) is not named: reaching it fails allocations, it sends no signal.
            raise CommandFailed(f"command {self.shown(cut)} killed by SIGKILL {_NOT_OURS}", code)
        failed = CommandFailed(f"command {self.shown(cut)} killed by {signal_text(-code)}", code)
        failed.past_grace = child.past_grace and code == -signal.SIGKILL
        raise failed

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
        return _joined(self.argv)

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

    def shown(self, cut: LineCut | None = None) -> str:
        """``describe()`` cut to a length that suits an error message.

        ``cut``: the tree's masker (``Attempt.cut``) when it knows a secret. The message is
        masked whole later, and a secret cut short is no longer the one it knows: the cut then
        goes before the secret it would split, or after it when the secret starts the text.
        """
        # Every failure of a crash loop says it: no call of ours when it is short (the common)
        text = self.shell if self.shell is not None else _joined(self.argv)
        if len(text) <= _SHOWN_MAX:
            return text
        if cut is None or not cut.longest:
            return _shown(self.shell, self.argv)
        return _cut_off_secrets(text, cut)

    def args(self) -> list[str]:
        """The argv to execute: ``argv``, or ``/bin/sh -c shell``."""
        return [_SHELL, "-c", self.shell] if self.shell is not None else list(self.argv)


@functools.lru_cache(maxsize=1024)
def _joined(argv: tuple[str, ...]) -> str:
    # Every failure of a crash loop says its command: quoted once, not on every restart.
    return shlex.join(argv)


@functools.lru_cache(maxsize=1024)
def _shown(shell: str | None, argv: tuple[str, ...]) -> str:
    """``CommandWork.shown``'s text with no secret to keep whole, made once per command (every
    failure of a crash loop says it)."""
    text = shell if shell is not None else _joined(argv)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 1] + "…"


def _cut_off_secrets(text: str, cut: LineCut) -> str:
    """``text`` cut near ``_SHOWN_MAX`` characters where no secret ``cut`` knows straddles it.

    Not cached: a reload may teach the masker a secret this command already held.
    """
    data = text.encode("utf-8", "surrogatepass")
    at = len(text[: _SHOWN_MAX - 1].encode("utf-8", "surrogatepass"))
    safe = cut.safe_cut(data, at)
    head = data[:safe].decode("utf-8", "surrogatepass")  # a secret begins and ends on a char
    return head if safe >= len(data) else head + "…"


def _cpu_limit_ended(code: int, *, signalled: bool) -> bool:
    """Whether exit ``code`` of a command with a cpu limit is that limit's doing.

    The kernel sends SIGXCPU at the soft limit, SIGKILL at the hard one (a
    process that survived SIGXCPU); a SIGKILL we sent ourselves is a stop.
    """
    return code == -signal.SIGXCPU or (code == -signal.SIGKILL and not signalled)


class _Stream:
    """One output pipe of a child: splits what it reads into lines and logs each of them.

    A line longer than ``_MAX_LINE`` bytes is logged in parts (of ``_MAX_LINE``
    bytes at most), so memory stays bounded whatever
    the child writes; each part's record says so with ``part`` (1, 2, ... in
    order, the line's last part included). Each part is masked on its own (by
    the log, by the output file), so in a tree with secrets a cut never splits
    one (``Attempt.cut``): it waits for the bytes that could end a secret begun
    before it, and goes before that secret (a part is that much shorter).
    """

    __slots__ = (
        "attempt",
        "cut",
        "emit",
        "extra",
        "fd",
        "last",
        "name",
        "parts",
        "pending",
        "prefix",
        "sink",
    )

    def __init__(
        self,
        fd: int,
        name: str,
        attempt: Attempt,
        emit: Callable[..., Any],
        sink: OutputSink | None = None,
    ) -> None:
        self.fd = fd
        self.emit = emit
        self.name = name
        self.sink = sink  # the job's output file: the same lines, as bytes
        self.cut = attempt.cut
        self.attempt = attempt
        # Made at the first line logged (_named): a crash loop's attempts mostly log none.
        self.extra: dict[str, Any] | None = None
        self.prefix = ""
        self.pending = b""  # the bytes after the last newline; invariant: no b"\n" in it
        self.parts = 0  # parts of the current line logged already; pending is its next part
        # stderr's last line that is not blank, for a failure's error; None: not kept (stdout)
        self.last: bytes | None = b"" if name == "stderr" else None

    def feed(self, data: bytes) -> None:
        pending = self.pending
        if pending:
            data = pending + data
            if len(data) > _MAX_LINE:
                # The line begun in a read before may end in this one past the most a part
                # takes (a read is 64 KiB at most, so only that first line can): its parts now.
                end = data.find(b"\n", len(pending))
                if end > _MAX_LINE:
                    data = self._parts(data[:end], ending=True) + data[end:]
        head, newline, rest = data.rpartition(b"\n")
        sink = self.sink
        if newline:
            # Not for a stream whose lines go to its file only (output: {log: false}): its
            # last line would reach the log, the journal and notifications in the error.
            if self.last is not None and (sink is None or sink.logged):
                self._note_last(head)
            if sink is not None:
                sink.write(self.name, head)
            if sink is None or sink.logged:  # else its file has them, only it (log: false)
                # A newline byte never occurs inside a UTF-8 sequence: whole lines decode alone.
                lines = head.decode("utf-8", "replace").split("\n")
                if self.parts:
                    self._log_part(lines.pop(0))
                for line in lines:
                    self._log(line)
            self.parts = 0  # the line a part began is over
        # Every read of a job's output comes here: a line that fits goes on without a call.
        self.pending = self._parts(rest, ending=False) if len(rest) > _MAX_LINE else rest

    def _parts(self, rest: bytes, *, ending: bool) -> bytes:
        """Log (and write) the parts of ``rest``, a line begun and not ended; what is left.

        ``ending``: the pipe is at its end, no more bytes come to end a secret.
        """
        cut = self.cut
        keep = 0 if cut is None else cut.longest - 1  # read each time: a reload adds secrets
        if keep <= 0:  # no secret (a tree's cut with none has longest 0): cut anywhere
            cut, keep = None, 0
        elif ending:
            keep = 0
        sink = self.sink
        while len(rest) > _MAX_LINE + keep:
            at = _MAX_LINE if cut is None else cut.safe_cut(rest, _MAX_LINE)
            at = _char_start(rest, at)
            if sink is not None:
                sink.write(self.name, rest[:at])
            self._log_part(rest[:at].decode("utf-8", "replace"))
            rest = rest[at:]
        return rest

    def _note_last(self, lines: bytes) -> None:
        tail = lines.rstrip()
        if tail:
            start = tail.rfind(b"\n") + 1
            # Enough past the cut for its look at a secret there (``safe_cut``): a secret's
            # longest form may be longer than what is kept otherwise.
            cut = self.cut
            kept = _LAST_KEPT if cut is None else max(_LAST_KEPT, _LAST_SAID + cut.longest)
            line = tail[start:]
            if b"\r" in line or b"\x1b" in line:
                line = _terminal_view(line)
                # A line that shows nothing (a cursor shown again, a colour reset): the line
                # before it, or what was said before this read (r57).
                while not line and start > 0:
                    end = start - 1
                    start = tail.rfind(b"\n", 0, end) + 1
                    line = _terminal_view(tail[start:end])
                if not line:
                    return
            self.last = line[:kept]

    def finish(self) -> None:
        """The pipe is done: log a last line that had no newline."""
        if self.pending and self.last is not None and (self.sink is None or self.sink.logged):
            self._note_last(self.pending)
        if self.pending:
            # What the cuts kept in view for a secret, at most 64 KiB more: its own parts.
            rest = self._parts(self.pending, ending=True)
            if rest:  # none when the last cut went after a secret that ended the output
                if self.sink is not None:
                    self.sink.write(self.name, rest)
                text = rest.decode("utf-8", "replace")
                if self.parts:
                    self._log_part(text)
                else:
                    self._log(text)
            self.pending = b""
            self.parts = 0

    def _log(self, line: str) -> None:
        if self.sink is not None and not self.sink.logged:
            return  # its file has it, and only it (output: {log: false})
        extra = self.extra or self._named()
        # The line is an argument, never the format string: braces in it stay as they are.
        self.emit("{} {}", self.prefix, line.removesuffix("\r"), extra=extra)

    def _log_part(self, text: str) -> None:
        self.parts += 1
        if self.sink is not None and not self.sink.logged:
            return
        extra = {**(self.extra or self._named()), "part": self.parts}
        self.emit("{} {}", self.prefix, text.removesuffix("\r"), extra=extra)

    def _named(self) -> dict[str, Any]:
        """The records' ``extra`` and prefix, made once per stream (``extra`` is shared)."""
        attempt = self.attempt
        self.prefix = f"{attempt.path}[{attempt.number}]"
        extra = self.extra = {"path": attempt.path, "attempt": attempt.number, "stream": self.name}
        return extra


def _last_said(last: bytes, cut: LineCut | None) -> str:
    """``; its last line on stderr: ...``, cut at ``_LAST_SAID`` bytes (never inside a secret,
    which the error's masking must find whole), its control characters escaped; "" for none."""
    line = last.lstrip()
    if not line:
        return ""
    if len(line) > _LAST_SAID:
        at = _LAST_SAID - 1  # and an ellipsis
        if cut is not None and cut.longest > 0:
            at = cut.safe_cut(line, at)
        line = line[: _char_start(line, at)] + "…".encode()
    text = printable(line.decode("utf-8", "replace"))
    return f"{LAST_LINE_SAID}{text}"


def _terminal_view(line: bytes) -> bytes:
    """What a terminal shows of ``line`` as its why: the last of its parts between carriage
    returns that says something (a progress bar's updates are overwritten by the error that
    ended it), without colour, cursor and title sequences (no text; they hid the error past
    the cut, h268). Other control characters stay, escaped when said."""
    for part in reversed(line.split(b"\r")):
        text = _INVISIBLE.sub(b"", part).strip() if b"\x1b" in part else part.strip()
        if text:
            return text
    return b""


def _char_start(data: bytes, at: int) -> int:
    """``at``, or the start of the UTF-8 character it falls inside: each part decodes whole.

    At most three bytes back (a character's longest tail): output that is not UTF-8 is cut
    where it is. A secret's edges (``safe_cut``) are characters' starts, never moved.
    """
    if at >= len(data):
        return at  # the cut is the end: nothing is split
    for back in range(min(3, at) + 1):
        if data[at - back] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return at - back
    return at


class _Child:
    """The process group of one attempt: started, watched and ended by ``CommandWork.run``.

    ``run()``'s thread does everything but ``stop()``, which other threads
    call too; ``lock`` orders signals against the end of the group
    (``_ended``), after which the group's id may belong to somebody else.
    """

    __slots__ = (
        "_closed",
        "_code",
        "_ended",
        "_gone",
        "_grace",
        "_hub",
        "_kill_at",
        "_kill_sent",
        "_killed",
        "_reaped",
        "_recall_at",
        "_stop_signal",
        "_stopping",
        "_waiter",
        "attempt",
        "ends",
        "fds",
        "lock",
        "past_grace",
        "pids",
        "signalled",
        "sink",
        "stderr",
        "streams",
    )

    def __init__(self, work: CommandWork, attempt: Attempt) -> None:
        self.attempt = attempt
        # The leader's pid, stored by fork_exec itself (see actors._spawn.spawn): the one
        # record of the process that no Kill can lose. Empty until it exists.
        self.pids: list[int] = []
        # Every fd the attempt owns, recorded as pids are (see actors._spawn.pipe_into): the
        # read ends, the waiter's, spawn's while it runs; and the ends the child gets, closed
        # once it has them. close() closes whatever these hold, whenever a Kill came.
        self.fds: list[int] = []
        self.ends: list[int] = []
        self.streams: dict[int, _Stream] = {}  # by the read end's fd
        self.stderr: _Stream | None = None  # its last line ends a failure's error
        self.sink: OutputSink | None = None  # the job's output file, closed with the fds
        self._waiter: PollWaiter | HubWaiter | None = None
        self._hub: Any = None  # the gevent hub under the gevent runtime
        self._stop_signal = work.stop_signal
        self._grace = work.grace
        self.lock = os_lock_type()()  # functools.cache's wrapper is C: no frame of ours
        self._kill_at: float | None = None  # monotonic time of the SIGKILL that follows a stop
        self.past_grace = False  # that SIGKILL was sent
        self._stopping = False  # stop_signal was sent to the group
        self._killed = False  # SIGKILL was sent to the group
        self._kill_sent = False  # ... by _kill_locked, and killpg returned
        # A signal found no process in the group: it is gone for good (a group never gets a
        # member back), and its id may be a new process's before long: no more signals to it.
        self._gone = False
        self._ended = False  # no more signals: the leader is (about to be) reaped
        self._closed = False
        self._reaped = False
        self._code: int | None = None  # the leader's exit code once it exited
        self._recall_at: float | None = None  # when to call the attempt's started again
        self.signalled = False  # we had signalled the group when the leader exited

    # -- start -------------------------------------------------------------------------------------

    def start(self, work: CommandWork) -> None:
        """Start the command; raise ``CommandFailed`` if it cannot start.

        Whatever this leaves behind when it raises (also when a ``Kill``
        interrupts it) is ``close()``'s to kill and release.
        """
        self._hub = hub = gevent_hub() if _under_gevent() else None
        if hub is not None:
            # Before the spawn, so libev never misses the SIGCHLD of a child that exits at once.
            hub.loop.install_sigchld()
        output = self.attempt.output
        self.sink = sink = output(self.attempt) if output is not None else None
        try:
            out_r, out_w = pipe_into(self.fds, self.ends)
            err_r, err_w = pipe_into(self.fds, self.ends)
            if work.user is None and work.umask is None and work.limits is None:
                confine, base = None, None  # the common case, without two calls a start
            else:
                confine, base = self._confinement(work, self.attempt.cut)
            spawn(
                work.args(),
                cwd=work.cwd,
                env=work.env,  # the job's own env wins over the user's HOME, ...
                stdout=out_w,
                stderr=err_w,
                record=self,
                confine=confine,
                base=base,
            )
        except OSError as exc:
            raise _could_not_start(work, exc, self.attempt.cut) from exc
        finally:
            close_all(self.ends)
        self.streams[out_r] = _Stream(out_r, "stdout", self.attempt, log.info, sink)
        self.stderr = self.streams[err_r] = _Stream(
            err_r, "stderr", self.attempt, log.warning, sink
        )
        # Under gevent nothing may yield to the hub before the child watcher has started,
        # or libev could reap the leader unseen.
        fds = [out_r, err_r]
        pid = self.pids[0]  # the spawn returned: it exists
        if hub is None:
            try:  # its pidfd and eventfd: the process, not watched, is close()'s to kill
                self._waiter = PollWaiter(pid, fds, self.fds)
            except ProcessLookupError:
                raise  # reaped unread already (SIGCHLD ignored): run() says its status was lost
            except OSError as exc:
                raise _could_not_start(work, exc, self.attempt.cut) from exc
        else:
            for fd in fds:
                os.set_blocking(fd, False)  # see HubWaiter.wait
            self._waiter = HubWaiter(hub, pid, fds)
        WARDEN.add(pid)  # the group's id too: a new session's leader leads its group

    @staticmethod
    def _confinement(
        work: CommandWork, cut: LineCut | None
    ) -> tuple[Confinement | None, dict[str, str] | None]:
        try:
            return work.confinement()
        except LookupError as exc:  # the user or group went away since the manifest was read
            reason = f"its user or group is gone ({exc})"
            raise CommandFailed(
                f"command {work.shown(cut)} could not start: {reason}", 126
            ) from None

    # -- any thread --------------------------------------------------------------------------------

    def stop(self, signum: int, grace: float, *, wake: bool = True) -> None:
        """Send ``signum`` to the group, SIGKILL it ``grace`` seconds later; never blocks.

        The earliest SIGKILL deadline asked for holds; ``signum`` is sent once
        (SIGKILL at once). Before the start there is nothing to signal: the
        deadline is kept and ``run()`` stops the process once it exists.
        ``wake`` makes a waiting ``supervise()`` heed the new deadline.
        """
        with self.lock:
            if self._ended:
                return
            kill_at = time.monotonic() + grace
            if self._kill_at is None or kill_at < self._kill_at:
                self._kill_at = kill_at
            # Read once (spawn empties the list after a failed exec, under this lock).
            head = self.pids[:1]
            if not head:
                return
            if signum == signal.SIGKILL or grace <= 0:
                self._kill_locked()
            elif not self._stopping:
                self._stopping = True
                if not self._gone:  # head[0]: a new session's leader leads its group too
                    self._gone = not _signal_group(head[0], signum)
                    if not self._gone and signum != signal.SIGCONT:
                        # A paused (SIGSTOPped) member cannot handle the stop signal until
                        # it runs again: it would get SIGKILL at the grace's end, its
                        # cleanup never run. systemd sends SIGCONT after it too.
                        _signal_group(head[0], signal.SIGCONT)
            if wake and self._waiter is not None:
                self._waiter.wake()

    # -- run()'s thread ----------------------------------------------------------------------------

    def supervise(self) -> int:
        """Log the output until the leader has exited and the pipes are closed; return its code.

        The attempt's ``started`` is called first; when it returns seconds, it is called
        again that much later if the attempt still runs, and so on.

        When the leader exits, the rest of its group gets ``stop_signal`` and
        the pipes are read to their end, or until the SIGKILL deadline, after
        which only what they hold already is read. When the pipes are at
        their end already, the rest gets SIGKILL at once (as ``close()``
        would give it a moment later); under threads the leader is reaped
        here (under gevent by libev or ``HubWaiter.close``).
        """
        waiter = self._waiter
        assert waiter is not None
        # Decided before the switch: a Kill landing right after it still finds it to undo.
        quiet = self._hub is None and _policy() == os.SCHED_OTHER
        try:
            if quiet:
                _set_policy(os.SCHED_BATCH)
            return self._supervise(waiter)
        finally:
            if quiet:
                # Here, not in a helper: a Kill can land at a function's first instruction,
                # before its try. What the thread starts next must not inherit BATCH.
                try:
                    _set_policy(os.SCHED_OTHER)
                except BaseException:
                    _twice(_set_policy, os.SCHED_OTHER)  # a Kill cut it short: again, then up
                    raise

    def _supervise(self, waiter: PollWaiter | HubWaiter) -> int:
        open_streams = self.streams.copy()  # those not at their end yet
        self._recall_at = _recall_at(self.attempt.started)
        while self._code is None or open_streams:
            for fd in waiter.wait(self._wait_limit()):
                stream = open_streams.get(fd)
                if stream is not None and not self._read(stream):
                    waiter.forget(fd)
                    del open_streams[fd]
            if (
                self._code is None
                # exited: a pidfd's wake-up said so (both waiters' check_exit say it at once)
                and (waiter.exited or waiter.check_exit(pipes_closed=not open_streams))
                and self._leader_exited(
                    waiter, pipes_open=bool(open_streams) and self._read_on(open_streams, waiter)
                )
            ):
                break
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self.past_grace = True  # its own SIGKILL, as the grace ran out
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
        # The leader's end may have killed and reaped already (_leader_exited): one call less.
        done = self._ended and self._kill_sent and (self._reaped or self._hub is not None)
        for step in (self._release,) if done else (self._kill_and_reap, self._release):
            cut = _twice(step)
            interrupted = interrupted or cut
        self._closed = True
        if interrupted is not None:
            raise interrupted

    # -- internals ---------------------------------------------------------------------------------

    def _wait_limit(self) -> float | None:
        """Seconds until the SIGKILL deadline (None: no deadline, wait for an event only), or
        less to call the attempt's ``started`` again when it is due."""
        kill_at = self._kill_at
        timeout = None if kill_at is None or self._killed else max(0.0, kill_at - time.monotonic())
        at = self._recall_at
        if at is None:
            return timeout
        now = time.monotonic()
        if now >= at:
            at = self._recall_at = _recall_at(self.attempt.started, now)
            if at is None:
                return timeout
        left = max(0.0, at - now)
        return left if timeout is None else min(timeout, left)

    def _read(self, stream: _Stream) -> bool:
        """Read what the pipe holds and log its lines; False at its end."""
        try:
            data = os.read(stream.fd, _CHUNK)
        except BlockingIOError:
            return True  # gevent: a pipe read on the off chance, with nothing in it
        if data:
            stream.feed(data)
            return True
        if stream.pending:  # a last line without its newline (most end with one, or none)
            stream.finish()
        return False

    def _read_on(self, open_streams: dict[int, _Stream], waiter: PollWaiter | HubWaiter) -> bool:
        """The leader exited: read what the pipes hold, to their end unless someone else holds
        them; whether any is still open. Never waits.

        Its last output and its exit usually come in one wake-up, its pipes' ends not read
        yet: taken for pipes held by another member, they sent every attempt through
        ``_nobody_left``'s listing of /proc (1.8 s an ``echo`` with 3,000 processes on the host).
        """
        if self._hub is not None:
            # Under gevent their watchers bring the ends in the next turn of the loop, which
            # lists nothing (see _leader_exited): ending here, inside libev's callback of the
            # exit, would stop watchers and close fds under it.
            return bool(open_streams)
        waited = False
        for fd, stream in list(open_streams.items()):
            os.set_blocking(fd, False)
            for _ in range(_READ_ON_MOST):  # a writer left behind may never let it run dry
                try:
                    data = os.read(fd, _CHUNK)
                except BlockingIOError:
                    # Another thread's child, between its fork and its exec, holds a copy of
                    # every fd for a moment: that moment is waited out (once an attempt)
                    # before the pipe counts as held by a member that lives on, whose look is
                    # a listing of /proc (with 2,000 processes on the host, 50 ms an attempt
                    # and a core's worth of CPU for a daemon of many short commands, h248).
                    if waited:
                        break  # held open by someone else: what they write later is waited for
                    waited = True
                    if not _readable(fd, _HELD_WAIT):
                        break
                    continue
                if not data:
                    stream.finish()
                    waiter.forget(fd)
                    del open_streams[fd]
                    break
                stream.feed(data)
        return bool(open_streams)

    def _drain(self, stream: _Stream) -> None:
        """Log what a pipe holds now, without waiting for a writer that may never close it."""
        os.set_blocking(stream.fd, False)
        with contextlib.suppress(BlockingIOError):
            while data := os.read(stream.fd, _CHUNK):
                stream.feed(data)
        stream.finish()

    def _leader_exited(self, waiter: PollWaiter | HubWaiter, *, pipes_open: bool) -> bool:
        """Take the leader's exit; True when nothing is left to wait for but what the pipes hold."""
        self.signalled = self._stopping or self._killed
        if not pipes_open:
            # Nothing left to read: what is left of the group gets close()'s SIGKILL now, not
            # a stop_signal it would overtake, and under threads the status comes with the
            # reaping (two system calls less on every restart).
            if self._hub is None and _PIDFD_GROUPS:
                # After a stop the group got its signal: what is left is dying of it (a shell is
                # reaped before its child), not left behind unsignalled (h271).
                if self._reap_then_kill() and not self.signalled:
                    self._say_killed_leftovers()
            else:
                self._kill_and_reap()
            if self._code is None:  # gevent: the waiter has it (libev's, or WNOWAIT)
                self._code = waiter.exit_code()
            return True
        self._code = waiter.exit_code()
        # What is left of the group gets the stop signal (we are not waiting: no wake).
        self.stop(self._stop_signal, self._grace, wake=False)
        # Under gevent this runs inside libev's callback of the exit, which the hub finishes
        # later: ending the attempt here, its pipes' watchers stopped and their fds closed
        # before that, made libev find a closed fd (an abort). It waits as before there.
        return self._hub is None and self._nobody_left()

    def _reap_then_kill(self) -> bool:
        """Threads, the leader exited, its pipes at their end: reap it, then SIGKILL the rest of
        its group; whether anybody was left (ESRCH: nobody).

        Before its reaping the leader's zombie is a member, and a kill always finds somebody;
        after it, the group's id may be a new process's, and the kill goes through the leader's
        pidfd, which names the group itself (``_kill_reaped``). The two calls every restart
        took. A Kill landing between them leaves close() to kill (``_kill_and_reap``).
        """
        with self.lock:
            self._ended = True  # no other thread's signal from here: the id is about to be freed
            try:  # not contextlib.suppress: on every restart
                _, status = os.waitpid(self.pids[0], 0)
            except ChildProcessError:
                pass
            else:
                self._code = os.waitstatus_to_exitcode(status)
            self._reaped = True
            return self._kill_reaped()

    def _kill_reaped(self) -> bool:
        """SIGKILL the group of a leader we reaped, through its pidfd (with the lock held);
        whether anybody was in it. Never by the id, which may be another process's now."""
        waiter = self._waiter
        if self._kill_sent or self._gone or not isinstance(waiter, PollWaiter) or waiter.pidfd < 0:
            return False
        self._killed = True
        try:  # not contextlib.suppress: on every restart
            signal.pidfd_send_signal(waiter.pidfd, signal.SIGKILL, None, _PIDFD_SIGNAL_GROUP)
        except ProcessLookupError:
            self._gone = True
        except PermissionError:  # a member that switched to another user: somebody was there
            pass
        self._kill_sent = True
        return not self._gone

    def _say_killed_leftovers(self) -> None:
        # At DEBUG: the kill also finds a group whose only member left is a zombie nobody
        # reaped yet (a leader that started a child and did not wait for it), which no cheap
        # check tells from one still running (r57).
        attempt = self.attempt
        log.debug(
            "{}[{}]: its command exited and left processes in its process group that did not "
            "hold its output (or their zombies): SIGKILLed at once, with no stop signal; a "
            "command that wants them to end cleanly waits for them (the shell's wait)",
            attempt.path,
            attempt.number,
            extra={"path": attempt.path, "attempt": attempt.number},
        )

    def _nobody_left(self) -> bool:
        """Whether the group, its leader exited, has no other living member (then it is gone):
        one who left it (``setsid``) holds the pipes, and nothing of ours is left to wait for.
        What the pipes hold now is read; what such a one writes later is its own.
        """
        with self.lock:
            if not self._gone:
                leader = self.pids[0]
                self._gone = not _group_has_others(leader, leader)
            return self._gone

    def _kill(self) -> None:
        with self.lock:
            self._kill_locked()

    def _kill_locked(self) -> None:
        head = self.pids[:1]  # read once, as in stop()
        if head and not self._ended and not self._kill_sent:
            self._killed = True  # before it is sent: the wait may see the exit first
            if not self._gone:
                self._gone = not _signal_group(head[0], signal.SIGKILL)
            # After: a Kill landing before killpg returned leaves it unsent, and close()'s
            # kill-and-reap sends it then (else the group's others lived on, and the leader's
            # reap could block for good). A person's SIGKILL sent first is sent again, harmless.
            self._kill_sent = True

    def _kill_and_reap(self) -> None:
        if self._ended and self._kill_sent and (self._reaped or self._hub is not None):
            return  # done before the leader's pipes ended (close() comes by again)
        with self.lock:
            self._kill_locked()  # what kept away from the pipes, or everything on a Kill
            self._ended = True
        if not self.pids:
            return  # it never started
        if self._hub is None and not self._reaped:
            # Prompt: the leader exited or just got SIGKILL. A try cut short by a Kill may
            # have reaped it already. (Under gevent libev reaps every child by itself.)
            try:  # not contextlib.suppress: this runs on every restart
                _, status = os.waitpid(self.pids[0], 0)
            except ChildProcessError:
                pass
            else:
                if self._code is None:
                    self._code = os.waitstatus_to_exitcode(status)
            self._reaped = True
        if not self._kill_sent and self._reaped:
            # A Kill cut _reap_then_kill short between its reaping and its kill.
            with self.lock:
                self._kill_reaped()

    def _release(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()  # stops its watchers before their fds close
        if self.ends:
            close_all(self.ends)  # a start cut short before it closed them
        close_all(self.fds)
        if self.pids:
            WARDEN.discard(self.pids[0])
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.close()


def _readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` has something to read, or is at its end, within ``timeout`` seconds."""
    import select  # noqa: PLC0415 - only when a pipe outlived its leader

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _policy() -> int:
    """The calling thread's scheduling policy; -1 if the kernel will not say (a seccomp
    filter): then it is left alone."""
    try:
        return os.sched_getscheduler(0)
    except OSError:
        return -1


def _set_policy(policy: int) -> None:
    """The calling thread's scheduling policy, its nice kept. One the kernel refuses (a seccomp
    filter) leaves the thread as it was: only a few wake-ups are at stake."""
    try:  # noqa: SIM105 - not contextlib.suppress: twice on every restart (three calls each)
        os.sched_setscheduler(0, policy, _ZERO_PRIORITY)
    except OSError:
        pass


def _twice(step: Callable[..., object], *args: Any) -> BaseException | None:
    """Run ``step(*args)``, and again if something (a Kill thrown into the thread) cut it
    short; return the first such interruption, for the caller to raise once it is done.
    Each step it runs must be safe to run twice."""
    interrupted: BaseException | None = None
    for _ in range(2):
        try:
            step(*args)
            break
        except BaseException as exc:
            interrupted = interrupted or exc
    return interrupted


def leader_of(attempt: Attempt) -> int | None:
    """The pid of the process leading ``attempt``'s group while it runs, else None.

    Any thread; never blocks and reads no ``/proc``: the pid ``spawn`` recorded.
    """
    child = _LIVE.get(id(attempt))
    if child is None or child.attempt is not attempt:
        return None
    head = child.pids[:1]
    return head[0] if head and not child._ended and not child._gone else None


def signal_attempt(attempt: Attempt, signum: int) -> bool:
    """Send ``signum`` to ``attempt``'s whole process group; False when it has none (any more).

    A person's signal: nothing else is done (no stop, no deadline), and what the group does
    on it is its own exit, if any. Any thread; never blocks. A group's id is safe to signal
    while its leader is unreaped (a zombie too keeps the id from being reused): under the
    lock, as a stop's signals are, ``_ended`` says whether ``run()``'s thread is about to
    reap it; under gevent libev reaps a leader by itself, as soon as it exits, so it is
    asked too, and nothing yields to the hub between that and the signal.
    """
    child = _LIVE.get(id(attempt))
    if child is None or child.attempt is not attempt:
        return False
    with child.lock:
        head = child.pids[:1]  # read once, as in stop()
        if not head or child._ended or child._gone or not _unreaped(head[0]):
            return False
        if signum == signal.SIGKILL:
            # Ours, not the cpu limit's nor another's: its exit says so. Set before it is sent:
            # run()'s thread may see the exit before killpg returns here.
            child._killed = True
        child._gone = not _signal_group(head[0], signum)
        return not child._gone


def _unreaped(pid: int) -> bool:
    """Whether our child ``pid`` runs, or exited but is not reaped yet (WNOWAIT keeps it so)."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _recall_at(
    started: Callable[[], float | None] | None, now: float | None = None
) -> float | None:
    """Call ``started`` (``Attempt.started``); when to call it again (monotonic), or None."""
    if started is None:
        return None
    again = started()
    if again is None:
        return None
    return (time.monotonic() if now is None else now) + again


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a group (with its ``_Child``'s lock held); False if it has no process left."""
    try:  # not contextlib.suppress: on every restart
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member that switched to another user: the group is there
        pass
    return True


def _pidfd_signals_groups() -> bool:
    """Whether ``pidfd_send_signal`` takes PIDFD_SIGNAL_PROCESS_GROUP (Linux 6.9+): asked once,
    of the group our own pid names, with signal 0 (nothing is sent)."""
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    try:
        signal.pidfd_send_signal(fd, 0, None, _PIDFD_SIGNAL_GROUP)
    except ProcessLookupError:
        pass  # taken: we lead no group
    except OSError:  # EINVAL: an older kernel; EPERM or ENOSYS: a seccomp filter
        return False
    finally:
        os.close(fd)
    return True


_PIDFD_GROUPS: Final = _pidfd_signals_groups()


def _group_has_others(pgid: int, leader: int) -> bool:
    """Whether a living process other than ``leader`` is in process group ``pgid``.

    Read from /proc, only when a leader exits while its pipes are still open (a background
    child, or one that escaped with them): a zombie holds no pipe, and a group never gains a
    member once all of them are dead.
    """
    try:
        names = os.listdir("/proc")  # noqa: PTH208 - a list: nothing for a Kill to leave open
    except OSError:
        return True  # cannot tell: wait as for a member
    for name in names:
        if not name.isdigit() or int(name) == leader:
            continue
        try:  # one call: no point of ours between its open and its close for a Kill
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue  # gone meanwhile
        # The name in parentheses may hold anything: the fields after the last ")" do not.
        fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            return True
    return False


@functools.cache
def _under_gevent() -> bool:
    """Whether this process runs under gevent: asked once (the cache is C, no frame of ours on
    a start), as ``os_lock_type`` does: a process is patched before anything starts, or never."""
    return active_runtime() == "gevent"


# The running child of each attempt, keyed by id(attempt). run() adds and removes its entry, so
# an id is only looked up while its attempt is alive; single dict operations need no lock.
_LIVE: dict[int, _Child] = {}


def _could_not_start(work: CommandWork, exc: OSError, cut: LineCut | None) -> CommandFailed:
    missing = exc.errno == errno.ENOENT and exc.filename != work.cwd
    reason = exc.strerror or str(exc)
    where = f": {exc.filename}" if exc.filename else ""
    limit = None if exc.errno is None else _FD_LIMITS.get(exc.errno)
    if limit is not None:
        where += f" ({limit})"
    return CommandFailed(
        f"command {work.shown(cut)} could not start: {reason}{where}", 127 if missing else 126
    )


def _wrong_type(field: str, expected: str, got: object, hint: str = "") -> SpecError:
    """As ``supervision._policy.wrong_type`` (which actors cannot import): class, field, value
    and its kind; built only once a check has failed."""
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return SpecError(
        f"CommandWork.{field}: expected {expected}, got {shown}{hint or f' ({a_kind(got)})'}",
        field=field,
        expected=expected,
        got=got,
    )
