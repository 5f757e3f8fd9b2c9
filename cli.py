"""The ``jobvisor`` command: parses arguments and calls the embedded API, nothing more.

The runtime is chosen before anything else is imported, because gevent must
monkey-patch the process first; everything else lives in ``supervision``.
"""

from __future__ import annotations

import _thread
import argparse
import io
import json
import os
import sys
import time

# Neither typing nor pathlib at the top: together they are a fifth of what a control command
# (status, start, stop, restart, reload, history) costs beyond the interpreter's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from pathlib import Path
    from typing import Any

    from supervision._app import RunReport

# Exit codes of SPEC §4.
OK, FAILED, USAGE, NO_DAEMON, NO_SUCH_JOB = 0, 1, 2, 3, 4
RUNTIMES = ("threads", "gevent")
LEVELS = ("none", "error", "warning", "information", "debug", "verbose")


def _version() -> str:
    # importlib.metadata costs tens of milliseconds: only --version pays for it.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("jobvisor")
    except PackageNotFoundError:
        return "0+checkout"


class _Version(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        sys.stdout.write(f"jobvisor {_version()}\n")
        parser.exit(OK)


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width instead of asking shutil for it.

    argparse builds one for every ``add_argument`` (to check the metavar), and
    importing shutil for its width was a tenth of a control command's cost.
    """

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(1).columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=columns - 2)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:  # one clear line and exit 2, never a traceback
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"jobvisor: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--log-level", choices=LEVELS, default=argparse.SUPPRESS)
    common.add_argument("--log-file", metavar="PATH", type=_given, default=argparse.SUPPRESS)
    common.add_argument("--state-dir", metavar="DIR", type=_given, default=argparse.SUPPRESS)
    common.add_argument("--runtime", choices=RUNTIMES, default=argparse.SUPPRESS)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output (refused where a command has none)",
    )
    parser = _Parser(
        prog="jobvisor",
        description="Run parallel jobs that recover from runtime errors by themselves.",
        parents=[common],
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", parents=[common], help="run the manifest's jobs in the foreground")
    run.add_argument(
        "manifest", nargs="?", type=_given, default="jobs.yaml", help="default: ./jobs.yaml"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip once-jobs whose identical spec already succeeded in the journal",
    )
    http_help = "serve metrics, the API and the page at HOST:PORT (port 0: any free port)"
    run.add_argument("--http", metavar="HOST:PORT", type=_given, help=http_help)
    validate = sub.add_parser("validate", parents=[common], help="check a manifest")
    validate.add_argument(
        "manifest", nargs="?", type=_given, default="jobs.yaml", help="default: ./jobs.yaml"
    )
    validate.add_argument(
        "--explain", action="store_true", help="print the resolved tree with every policy"
    )
    daemon = sub.add_parser("daemon", parents=[common], help="run the manifest as a service")
    daemon.add_argument(
        "manifest", nargs="?", type=_given, default="jobs.yaml", help="default: ./jobs.yaml"
    )
    daemon.add_argument("--detach", action="store_true", help="run in the background")
    daemon.add_argument("--pidfile", metavar="P", type=_given, help="write the daemon's pid to P")
    daemon.add_argument("--http", metavar="HOST:PORT", type=_given, help=http_help)
    status = sub.add_parser(
        "status", parents=[common], help="the daemon's tree, states, restarts, breakers"
    )
    status.add_argument(
        "paths",
        nargs="*",
        type=_child_path,
        metavar="PATH",
        help="only these children (a group: with its own)",
    )
    status.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )
    reload = sub.add_parser(
        "reload", parents=[common], help="re-read the manifest and apply only the difference"
    )
    reload.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )
    reload.add_argument(
        "--dry-run",
        action="store_true",
        help="only say what a reload would do; nothing is changed (supervisorctl's reread)",
    )
    for name in ("start", "stop", "restart"):
        verb = sub.add_parser(name, parents=[common], help=f"{name} children of the daemon")
        verb.add_argument(
            "jobs",
            nargs="+",
            type=_child_path,
            metavar="PATH",
            help="child paths (etl/load ...), acted on in order",
        )
        verb.add_argument(
            "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
        )
        if name != "stop":  # a stop's answer waits for its end, as systemctl's
            verb.add_argument(
                "--no-block",
                action="store_true",
                help="answer once the daemon took it, not once each child is up (its ready "
                "check passed), as systemctl --no-block",
            )
    signal = sub.add_parser(
        "signal",
        parents=[common],
        help="send a signal to jobs' process groups (supervisorctl signal, systemctl kill -s)",
    )
    signal.add_argument(
        "signal", type=_signal_arg, metavar="SIGNAL", help="HUP, SIGHUP, hup or a number"
    )
    signal.add_argument(
        "jobs",
        nargs="+",
        type=_child_path,
        metavar="PATH",
        help="job paths (etl/load ...), signalled in order",
    )
    signal.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )
    _shutdown_arguments(
        sub.add_parser(
            "shutdown",
            parents=[common],
            help="stop the daemon gracefully, as SIGTERM does, and wait until it has ended "
            "(supervisorctl shutdown, systemctl stop)",
        )
    )
    history = sub.add_parser(
        "history", parents=[common], help="attempts and supervisor decisions from the journal"
    )
    _history_arguments(history)
    _logs_arguments(
        sub.add_parser("logs", parents=[common], help="the output of one job (from its file)")
    )
    top = sub.add_parser("top", parents=[common], help="a live view of the daemon's tree")
    top.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )
    unit = sub.add_parser(
        "unit", parents=[common], help="print a systemd service unit for the manifest's daemon"
    )
    unit.add_argument(
        "manifest", nargs="?", type=_given, default="jobs.yaml", help="default: ./jobs.yaml"
    )
    unit.add_argument(
        "--user", action="store_true", help="a user unit (systemctl --user), not a system one"
    )
    sub.add_parser(
        "schema",
        parents=[common],
        help="print the manifest's JSON Schema (for editors: # yaml-language-server: $schema=)",
    )
    return parser


def _logs_arguments(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("job", type=_child_path, help="a job path such as etl/load")
    logs.add_argument("-f", "--follow", action="store_true", help="go on printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, metavar="N", help="default: 50")
    logs.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )


def _shutdown_arguments(shutdown: argparse.ArgumentParser) -> None:
    shutdown.add_argument(
        "--no-block", action="store_true", help="answer once the stop began, not once it ended"
    )
    shutdown.add_argument(
        "--manifest", type=_given, default="jobs.yaml", help="where the state dir is declared"
    )


def _given(text: str) -> str:
    """A path's or an address's value, refused when empty (``--pidfile "$PIDFILE"`` with the
    variable unset): it was taken for not given, and ran with no pidfile, saying nothing."""
    if not text:
        raise argparse.ArgumentTypeError("expected a value, got an empty string")
    return text


def _signal_arg(text: str) -> int:
    """A signal's number from its name or number: a usage error, before anyone is asked."""
    from supervision._client import signal_number  # noqa: PLC0415 - only the signal command

    try:
        return signal_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _peek_runtime(args: argparse.Namespace) -> str:
    """The runtime to prepare: the flag, else the manifest's ``runtime:``, else threads."""
    flag: str | None = getattr(args, "runtime", None)
    if flag:
        return flag
    if not os.path.isfile(args.manifest):  # noqa: PTH113 - a FIFO or a device is never read
        return "threads"  # the real load says what is wrong
    try:
        import yaml  # noqa: PLC0415 - yaml starts no thread; the real load comes later

        with open(args.manifest, encoding="utf-8") as file:  # noqa: PTH123 - no pathlib here
            data = yaml.safe_load(file)
    except Exception:
        return "threads"  # the real load reports whatever is wrong
    runtime = data.get("runtime") if isinstance(data, dict) else None
    return runtime if runtime in RUNTIMES else "threads"


def _prepare_runtime(name: str) -> None:
    if name == "gevent":
        from gevent import monkey  # noqa: PLC0415 - patching must precede every other import

        monkey.patch_all()
    else:
        _logbook_without_gevent()


def _init_if_first() -> None:
    """As a container's first process (PID 1), keep an init in front of us: see ``_pid1``."""
    if os.getpid() == 1:
        from supervision._pid1 import become_init  # noqa: PLC0415 - PID 1 only

        become_init()


def _read_our_childrens_ends() -> None:
    """An ignored SIGCHLD survives exec, and with it the system reaps every child unread: no
    command's exit status could be known. A blocked one survives exec too, and gevent's libev
    waits for it to see a child end: a run could hang. A parent may leave either; this
    process is ours. (First thing, in the main thread: every thread started later has it.)"""
    import signal  # noqa: PLC0415 - only run and daemon start children

    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _ignore_hangups() -> bool:
    """A SIGHUP (a reload) before the daemon can reload would kill it: ignored until then.

    The daemon takes SIGHUP before it starts any job, so no job inherits the ignoring.
    True if it was ignored already (``nohup``): the daemon then outlives its terminal.
    """
    import signal  # noqa: PLC0415 - run and daemon only

    return signal.signal(signal.SIGHUP, signal.SIG_IGN) == signal.SIG_IGN


def _ignore_logrotates_signals() -> None:
    """SIGUSR1 and SIGUSR2 (logrotate's postrotate) before run or the daemon takes them (it
    says them, and does nothing else) would kill it: ignored until then. Taken before any
    job starts, so no job inherits the ignoring."""
    import signal  # noqa: PLC0415 - run and daemon only

    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_IGN)


def _logbook_without_gevent() -> None:
    """Import logbook with gevent hidden: it only probes whether gevent is installed, and
    under threads the probe loaded all of gevent (about 6 MiB) for nothing."""
    if "gevent" in sys.modules or "logbook" in sys.modules:
        return
    sys.modules["gevent"] = None  # type: ignore[assignment] # importing it raises ImportError
    try:
        import logbook  # noqa: F401, PLC0415 - imported here for its side effect only
    finally:
        del sys.modules["gevent"]


def _daemon_detached(args: argparse.Namespace) -> int:
    """``daemon --detach``: in the background, telling the launcher its verdict once."""
    if "supervision._pid1" in sys.modules:
        from supervision._pid1 import UNDER_INIT  # noqa: PLC0415 - PID 1 only

        if UNDER_INIT:
            _error(
                "daemon --detach cannot run as a container's first process (PID 1): when it "
                "exits, the kernel ends every process of the container, the daemon too; run "
                "jobvisor daemon without --detach (as PID 1 it reaps orphans and passes "
                "signals on, as an init does)"
            )
            return USAGE
    detached = _detach()
    _prepare_runtime(_peek_runtime(args))
    code = FAILED
    try:
        code = _daemon(args, on_ready=detached.ready, on_exit=detached.exited)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else FAILED
        raise
    except Exception:
        import traceback  # noqa: PLC0415 - only on the way out

        traceback.print_exc()  # before the verdict, so the launcher shows it
        raise
    finally:
        detached.exited(code)
    return code


def _error(message: str) -> None:
    sys.stderr.write(f"jobvisor: {message}\n")


def _open_standard_streams() -> None:
    """A closed stdin, stdout or stderr becomes /dev/null.

    Else ``sys.stdout`` is None (a traceback at the first print), and the next file we open
    (the log, the journal) takes the number, where jobs would write their output.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, os.fdopen(fd, mode, encoding="utf-8", closefd=False))


class _StdoutError(OSError):
    """Writing our stdout failed (a full disk, an I/O error): one line and exit 1, no traceback.

    Not a reader gone (``BrokenPipeError``, ``| head``): that stays what it is.
    """


class _Stdout(io.FileIO):
    """Our stdout's file: an error writing it is a ``_StdoutError``, told from any other.

    ``forgive``: its reader gone is no error either (``run``'s, see ``_forgive_gone_readers``).
    """

    forgive = False

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            if not self.forgive:
                raise
            return _gone(self, data)
        except OSError as exc:
            raise _StdoutError(exc.errno, exc.strerror) from None


class _Stderr(io.FileIO):
    """Our stderr's file: when its reader goes away (``2>&1 | head``), the rest goes nowhere.

    Else the next message raised ``BrokenPipeError`` where the command's verdict was being
    said, and the exit code was that error's (``run`` exited 0 after a job had failed).
    A write that fails otherwise (a full disk, an I/O error) is dropped: stderr is where it
    would be said, and the exit code must stay the command's (it was the interpreter's 120).
    The next write tries again: a disk may have room by then.
    """

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            return _gone(self, data)
        except OSError:
            return memoryview(data).nbytes


def _gone(raw: io.FileIO, data: Any) -> int:
    """``data`` taken as written: ``raw``'s fd becomes /dev/null, so the rest is dropped too
    (a python job's next print, the buffer flushed at the exit) without an error."""
    _to_null(raw.fileno())
    return memoryview(data).nbytes


_PART_MOST = 65536  # characters of a line without its end held back, at most


class _LineStart:
    """A line's start, in the writes it came in, until its end: joined once there, not at
    each write (no quadratic cost). Its owner locks it."""

    __slots__ = ("_held", "_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._held = 0  # their length

    def __bool__(self) -> bool:
        return bool(self._parts)

    def hold(self, text: str) -> str:
        """Hold ``text``; past ``_PART_MOST`` held, what is held goes as it is (returned)."""
        if text:
            self._parts.append(text)
            self._held += len(text)
        return self.take() if self._held > _PART_MOST else ""

    def add(self, text: str) -> str:
        """Hold what follows ``text``'s last line end (a newline or a carriage return); what
        is ready: the rest, after what was held, or past ``_PART_MOST`` held all of it."""
        if "\n" not in text and "\r" not in text:  # most writes (a print's text): no call more
            self._parts.append(text)
            self._held += len(text)
            return self.take() if self._held > _PART_MOST else ""
        end = max(text.rfind("\n"), text.rfind("\r")) + 1
        return self.take() + text[:end] + self.hold(text[end:])

    def take(self) -> str:
        """What is held, let go."""
        if not self._parts:
            return ""
        held = "".join(self._parts)
        self._parts.clear()
        self._held = 0
        return held


class _Masked(io.TextIOWrapper):
    """Our stdout or stderr: what is written through it has the tree's secrets masked.

    A python job run in a thread prints to it: its secret printed in clear, where a child
    process's print, read as its output, was masked. ``mask`` is set once the manifest's
    secrets are known (``_mask_standard_streams``), and sees a reload's new ones. From then
    on a line's start waits for its end (a newline, or a carriage return, where a line
    buffered stream writes too), a ``flush`` or ``_PART_MOST``: a print is several writes,
    and a secret written in two of them showed in clear, each half masked alone.
    """

    mask: Callable[[str], str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start = _LineStart()
        # Job threads write at once. Held over no write (under gevent no greenlet yields
        # holding it), and reentrant: a signal handler that writes never waits on it.
        self._starting = _thread.RLock()

    def write(self, text: str) -> int:
        mask = self.mask
        if mask is None:
            return super().write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._starting.acquire()  # not `with`: it cost a print twice as much in 3.11
        try:
            ready = self._start.add(text)
        finally:
            self._starting.release()
        if ready:
            super().write(mask(ready))
        return len(text)  # as asked: print and callers count what they gave

    def flush(self) -> None:
        mask = self.mask
        if mask is not None:
            with self._starting:
                held = self._start.take()
            if held:
                super().write(mask(held))
        super().flush()


class _AroundProgress:
    """``sys.stderr`` while ``run`` draws its progress line there: a thread job's stderr
    line landed on the end of it ('[02:42:43] 2 runningjob line 2'). Each whole line clears
    the progress line and draws it again below, as a log record does (through the run's
    ``logging`` when its records go to this stream, in order with them and under their
    bound), masked. A line's start waits for its end, or a ``flush`` (then it is a line of
    its own: a progress bar's ``\r`` update shows). It draws the progress line too
    (``show_status``), so it knows what to draw again. After ``end`` it writes through.
    Anything else is the stream's."""

    def __init__(self, stream: Any, logging: Any) -> None:
        import threading  # noqa: PLC0415 - run's alone

        from supervision._logging import CLEAR_LINE  # noqa: PLC0415

        self._stream = stream
        self._logging = logging
        # The records go to a stream (stderr) when they go to no file, at a level but none.
        self._shared = logging.retunable and logging.path is None
        self._clear = CLEAR_LINE
        self._lock = threading.Lock()  # job threads print at once: each line whole, in order
        self._start = _LineStart()
        self._status = ""
        self._ended = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            if self._ended:  # a thread that outlived the run: no progress line any more
                self._say([text], whole=False)
                return len(text)
            if "\n" not in text:
                over = self._start.hold(text)
                if over:
                    self._say([over])
                return len(text)
            lines = text.split("\n")
            lines[0] = self._start.take() + lines[0]
            over = self._start.hold(lines.pop())
            self._say([*lines, over] if over else lines)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            ended = self._ended
            if self._start and not ended:
                self._say([self._start.take()])
        if ended:  # what a job wrote since may be held below, waiting for its line's end
            import contextlib  # noqa: PLC0415 - run's alone

            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()

    def show_status(self, text: str, stream: Any) -> None:
        with self._lock:
            if not self._ended:
                self._status = text
                self._logging.show_status(text, stream)

    def end(self) -> None:
        """The progress line is gone: what is held is said, and later writes go through."""
        with self._lock:
            if self._start:
                self._say([self._start.take()])
            self._ended = True
            self._status = ""

    def _say(self, lines: list[str], *, whole: bool = True) -> None:
        if not lines:
            return
        mask = getattr(self._stream, "mask", None)
        lines = [mask(line) if mask is not None else line for line in lines]
        import contextlib  # noqa: PLC0415 - run's alone

        if not whole:
            with contextlib.suppress(OSError, ValueError):
                self._stream.write(lines[0])
            return
        if self._shared:
            for line in lines:
                self._logging.say(line, self._stream, bounded=True)
            return
        with contextlib.suppress(OSError, ValueError):  # as the log's own writes
            self._stream.write("".join(self._clear + line + "\n" for line in lines) + self._status)
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Escaped:
    """``sys.stdout`` or ``sys.stderr`` for a run's jobs while it is a terminal: what a thread
    job writes has its control characters escaped, as a command's output is (an OSC title and
    a clear-screen reached the terminal as written). A newline, a tab and a carriage return
    (a progress bar's) stay. jobvisor's own lines (the progress line, the table, the verdict)
    go to the stream itself. Anything else is the stream's."""

    def __init__(self, stream: Any) -> None:
        from supervision._printable import printable  # noqa: PLC0415 - run's alone

        self._stream = stream
        self._printable = printable

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(self._printable(text, keep="\t\n\r"))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _for_jobs(stream: Any) -> Any:
    """What a run's thread jobs write ``stream`` through: escaped on a terminal."""
    return _Escaped(stream) if stream.isatty() else stream


def _mask_standard_streams(mask: Callable[[str], str]) -> None:
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _Masked):
            stream.mask = mask


class _Unbuffered(io.BufferedWriter):
    """A buffer that keeps nothing: each write leaves at once, as under CPython's -u (whose
    text layer writes to the raw file itself); a raw write that took only part is written on.

    A text layer's ``write_through`` alone hands its text to the buffer, not to the file: a
    thread job's stderr line came after ``run``'s verdict through a pipe.
    """

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.flush()
        return written


def _text_out(
    fd: int, *, closefd: bool, like: Any = None, raw_type: type[io.FileIO] = _Stdout
) -> io.TextIOWrapper:
    """A text stream over ``fd`` whose write errors are ``_StdoutError``s (see ``_Stdout``),
    buffered as CPython buffers its own: stderr a line at a time, and with PYTHONUNBUFFERED
    (the unit sets it) or -u, stdout and stderr not at all: what a job prints leaves at once,
    in order with the log and ``run``'s last lines."""
    raw = raw_type(fd, "w", closefd=closefd)
    unbuffered = bool(getattr(like, "write_through", False))
    return _Masked(
        _Unbuffered(raw) if unbuffered else io.BufferedWriter(raw),
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors=getattr(like, "errors", None) or "strict",
        line_buffering=raw_type is _Stderr or bool(getattr(like, "line_buffering", False)),
        write_through=unbuffered,
    )


def _watch_stdout() -> None:
    """``sys.stdout`` and ``sys.stderr`` as ``_text_out`` makes them, unless someone else
    replaced them (a test's)."""
    if sys.stdout is sys.__stdout__ and isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.flush()
        sys.stdout = _text_out(1, closefd=False, like=sys.stdout)
    if sys.stderr is sys.__stderr__ and isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.flush()
        sys.stderr = _text_out(2, closefd=False, like=sys.stderr, raw_type=_Stderr)


def _forgive_gone_readers() -> None:
    """``run``: stdout's reader gone is no error either, for run nor for its python jobs' prints.

    A closed output must not change a run's verdict: the summary, the document and a job's
    print are lost, the exit code is the run's.
    """
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    if isinstance(raw, _Stdout):
        raw.forgive = True


def main(argv: list[str] | None = None) -> int:
    _init_if_first()
    _open_standard_streams()
    _watch_stdout()
    parser = build_parser()
    args = _parsed(parser, argv)
    if isinstance(args, int):
        return args
    if args.command in ("run", "daemon"):
        if args.command == "daemon":
            args.hangups_ignored = _ignore_hangups()
        _ignore_logrotates_signals()
        _read_our_childrens_ends()
        if args.command == "daemon" and args.detach:
            return _daemon_detached(args)
        _prepare_runtime(_peek_runtime(args))
    elif args.command in ("validate", "schema"):
        _logbook_without_gevent()  # validate runs no job: it needs no gevent
    # The control commands and history load neither the runtime nor logging: see _client.
    commands = {
        "validate": _validate,
        "history": _history,
        "daemon": _daemon,
        "run": _run,
        "logs": _logs,
        "top": _top,
        "unit": _unit,
        "schema": _schema,
        "shutdown": _shutdown,
    }
    try:
        return _written(commands.get(args.command, _control), args)
    except KeyboardInterrupt:
        return FAILED
    except BrokenPipeError:
        # Whoever read our stdout went away (`jobvisor history | head`): they had what they
        # wanted. No traceback, nor a second one when Python flushes stdout at the exit.
        _silence_stdout()
        return OK
    except Exception as exc:
        # status, start, stop, restart, signal, reload, history, logs and top find the daemon's
        # state dir the same way; when the manifest cannot tell it, that is the user's to fix.
        from supervision._client import StateDirError  # noqa: PLC0415 - only on the way out

        if not isinstance(exc, StateDirError):
            raise
        _error(_escaped(str(exc)))  # it names the manifest as typed
        return USAGE


def _parsed(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``argv`` parsed; or, where parsing ends the command (``--help``, ``--version``, a usage
    error, ``_refused_at_once``), its exit code once what it wrote is out. A stdout that cannot
    take it is said as a command's: a full disk one line and 1, a reader gone nothing and 0
    (both were a traceback and the interpreter's 120: argparse exits, its text still in the
    buffer)."""
    parsed: list[argparse.Namespace] = []

    def parse(_: argparse.Namespace) -> int:
        try:
            parsed.append(parser.parse_args(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else USAGE
        return OK

    try:
        code = _written(parse, argparse.Namespace())
    except BrokenPipeError:
        _silence_stdout()
        return OK
    if not parsed:
        return code
    return USAGE if _refused_at_once(parser, parsed[0]) else parsed[0]


# Why --json does not apply, for the commands that print no document: refused, so a script
# never parses text it took for one.
_NO_DOCUMENT = {
    "unit": "unit: a unit is a file's text, written as it is "
    "(jobvisor unit > /etc/systemd/system/NAME.service)",
    "daemon": "daemon: it runs until stopped and prints no document; "
    "jobvisor status --json gives its tree",
    "top": "top: it is a live view for a terminal; jobvisor status --json gives the tree once",
}


def _refused_at_once(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """No command, or ``--json`` where it does not apply: said, before anything starts."""
    if args.command is None:
        parser.print_help(sys.stderr)
        return True
    refused = _json_refused(args)
    if refused is not None:
        _error(f"--json does not apply to {refused}")
    return refused is not None


def _json_refused(args: argparse.Namespace) -> str | None:
    """Where ``--json`` was given to a command it does not apply to: what to say; else None."""
    if not getattr(args, "json", False):
        return None
    return _NO_DOCUMENT.get(args.command)


def _written(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``command``'s exit code once its stdout is flushed; 1 if stdout cannot be written.

    What it wrote is lost then: exit 1 whatever its verdict was (run's too), so a script
    sees that it did not get its output.
    """
    try:
        code = command(args)
        sys.stdout.flush()  # here, not at the exit, where an error is a traceback
    except _StdoutError as exc:
        _error(f"cannot write to stdout: {exc.strerror or exc}")
        _silence_stdout()
        return FAILED
    return code


def _silence_stdout() -> None:
    _to_null(1)


def _to_null(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


class _Told:
    """Where loading a manifest tells what it found: stderr, as validate, run and daemon do.

    Escaped: the manifest's path, as typed, may hold control characters (status and history
    escape theirs).
    """

    def refuse(self, file: str, message: str) -> None:
        del file  # the message names it
        _error(_escaped(message))

    def errors(self, exc: Any) -> None:
        for issue in exc.issues:  # one a line, whatever its file's name holds
            sys.stderr.write(_escaped(str(issue)) + "\n")

    def warnings(self, warnings: Any) -> None:
        for warning in warnings:
            sys.stderr.write(_escaped(f"warning: {warning}") + "\n")


def _escaped(text: str, keep: str = "\t") -> str:
    """``text`` with its control characters escaped but those in ``keep``."""
    from supervision._printable import printable  # noqa: PLC0415

    return printable(text, keep=keep)


class _Findings(_Told):
    """What loading a manifest found, kept for ``validate --json``'s document, not said."""

    def __init__(self) -> None:
        self.kept_errors: list[dict[str, Any]] = []
        self.kept_warnings: list[dict[str, Any]] = []

    def refuse(self, file: str, message: str) -> None:
        self.kept_errors.append(
            {"where": None, "file": file, "line": None, "column": None, "message": message}
        )

    def errors(self, exc: Any) -> None:
        self.kept_errors.extend(_found(issue) for issue in exc.issues)

    def warnings(self, warnings: Any) -> None:
        self.kept_warnings.extend(_found(warning) for warning in warnings)


def _found(issue: Any) -> dict[str, Any]:
    """An ``Issue`` in a document: where in the manifest ("" is the whole: null), and the rest."""
    return {
        "where": issue.path or None,
        "file": issue.file,
        "line": issue.line,
        "column": issue.column,
        "message": issue.message,
    }


def _load(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, told: _Told | None = None
) -> Any:
    """The manifest at ``args.manifest``; None when it cannot be used. What is wrong with it,
    and its warnings, are ``told`` (default: said on stderr)."""
    from pathlib import Path  # noqa: PLC0415 - see TYPE_CHECKING above

    from supervision._manifest import ManifestError, load_manifest  # noqa: PLC0415 - after the runtime

    told = told or _Told()
    path = Path(args.manifest)
    unreadable = _unreadable(path)
    if unreadable is not None:
        told.refuse(str(path), unreadable)
        return None
    try:
        manifest = load_manifest(path, env=env)
    except ManifestError as exc:
        told.errors(exc)
        told.warnings(exc.warnings)  # told with the errors, not after they are fixed
        return None
    told.warnings(manifest.warnings)  # validate, run and daemon: once, at start
    state_dir = getattr(args, "state_dir", None)
    if state_dir:
        import dataclasses  # noqa: PLC0415

        manifest = dataclasses.replace(manifest, state_dir=Path(state_dir).absolute())
    if getattr(args, "http", None):
        return _with_http(manifest, args.http)
    return manifest


def _unreadable(path: Path) -> str | None:
    """Why no manifest is read at ``path``; None when it is a regular file."""
    gone = _no_working_directory(path)
    if gone is not None:
        return gone
    if path.is_dir():
        return f"{path} is a directory, not a manifest: pass the path of its YAML file"
    if path.is_file():
        return None
    what = _not_regular(path)
    if what is not None:  # a FIFO would block the read, /dev/zero never end it: not read
        return f"{path} is not a regular file ({what}): pass the path of its YAML file"
    return f"no manifest at {path}: pass its path, or run where jobs.yaml is"


def _no_working_directory(path: Path) -> str | None:
    """What to say when ``path`` is relative and the working directory was deleted under us
    (``cd x; rm -r ../x``): every look at it fails, as if there were no file; else None."""
    if path.is_absolute():
        return None
    try:
        path.cwd()
    except FileNotFoundError:
        from supervision._client import no_working_directory  # noqa: PLC0415

        return no_working_directory(str(path), "/path/to/jobs.yaml")
    return None


def _not_regular(path: Path) -> str | None:
    """What is at ``path`` if it exists and is no regular file (nor a directory); else None."""
    import stat  # noqa: PLC0415

    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), None)


def _with_http(manifest: Any, listen: str) -> Any:
    """``--http`` over the manifest's ``http.listen``; its token (heartbeat, reads) stay."""
    import dataclasses  # noqa: PLC0415

    from actors import SpecError  # noqa: PLC0415
    from supervision._listen import HttpSpec  # noqa: PLC0415

    old = manifest.http or HttpSpec()
    try:
        spec = HttpSpec.of(listen, token=old.token, heartbeat=old.heartbeat, reads=old.reads)
    except SpecError as exc:
        _error(f"--http: expected {exc.expected}, got {listen!r}")
        return None
    return dataclasses.replace(manifest, http=spec)


def _validate(args: argparse.Namespace) -> int:
    if getattr(args, "json", False):
        return _validate_json(args)
    manifest = _load(args)
    if manifest is None:
        return USAGE
    if args.explain:
        sys.stdout.write(_escaped(manifest.explain(), keep="\t\n") + "\n")
    else:
        count, _ = _counted(manifest)
        noun = "child" if count == 1 else "children"
        sys.stdout.write(_escaped(f"{args.manifest}: OK ({count} {noun})") + "\n")
    return OK


def _validate_json(args: argparse.Namespace) -> int:
    """``validate --json``: one document on stdout, every error and warning in it; 0 or 2.

    With ``--explain`` it has ``explain`` too: the resolved tree as data (null when not ok).
    """
    findings = _Findings()
    manifest = _load(args, told=findings)
    children, jobs = _counted(manifest) if manifest is not None else (None, None)
    document: dict[str, Any] = {
        "ok": manifest is not None,
        "manifest": args.manifest,
        "errors": findings.kept_errors,
        "warnings": findings.kept_warnings,
        "children": children,
        "jobs": jobs,
    }
    if args.explain:
        from supervision._explain import explain_data  # noqa: PLC0415 - --explain only

        document["explain"] = explain_data(manifest) if manifest is not None else None
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return OK if manifest is not None else USAGE


def _counted(manifest: Any) -> tuple[int, int]:
    """The manifest's children (groups and jobs, as validate says) and its jobs alone."""
    from supervision._spec import SupervisorSpec, walk  # noqa: PLC0415

    children = [child for _, child in walk(manifest.tree_spec())]
    return len(children), sum(not isinstance(child, SupervisorSpec) for child in children)


def _unit(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415 - see TYPE_CHECKING above

    from supervision._spec import SupervisorSpec, walk  # noqa: PLC0415
    from supervision._unit import render_unit, stop_timeout  # noqa: PLC0415

    path = Path(args.manifest)
    # A working directory deleted under us is _load's to say; else, a unit's words.
    if not path.exists() and _no_working_directory(path) is None:
        _error(_escaped(f"no manifest at {args.manifest}: pass the path of the daemon's YAML file"))
        return USAGE
    # A unit for a manifest its daemon would refuse helps nobody; but the environment's
    # secrets come from systemd (the unit's EnvironmentFile=), not from where this runs.
    manifest = _load(args, env=_StandIns(os.environ))
    if manifest is None:
        return USAGE
    from supervision._files import UnsafePathError, check_state_dir  # noqa: PLC0415

    try:
        # The daemon's own checks at start: a state dir it refuses is exit 2 at every start.
        check_state_dir(manifest.state_dir)
    except UnsafePathError as exc:
        _error(str(exc))
        return USAGE
    jobs = (c for _, c in walk(manifest.tree_spec()) if not isinstance(c, SupervisorSpec))
    timeout = stop_timeout(child.grace for child in jobs)
    state_dir = getattr(args, "state_dir", None)
    sys.stdout.write(
        render_unit(args.manifest, user_unit=args.user, state_dir=state_dir, timeout_stop=timeout)
    )
    return OK


class _StandIns(dict[str, str]):
    """The environment, with a stand-in for every variable it does not set."""

    def get(self, key: str, default: object = None) -> str:
        del default
        return super().get(key, "unset-at-jobvisor-unit")


def _schema(args: argparse.Namespace) -> int:
    del args  # the schema is the loader's, whatever the manifest
    from supervision._fields import json_schema  # noqa: PLC0415 - only this command needs it

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return OK


def _child_path(text: str) -> str:
    """A child path as a person may type it, the way the tree reads it: ``g//a/`` is ``g/a``
    (restart and signal acted on g/a, and status, logs and history found no ``g//a``). One
    with no name in it (``/``) stays as typed, for its error to say."""
    return "/".join(part for part in text.split("/") if part) or text


def _history_arguments(history: argparse.ArgumentParser) -> None:
    history.add_argument(
        "job", nargs="?", type=_child_path, help="a child path such as etl/load (and below)"
    )
    history.add_argument(
        "-n", "--limit", type=int, default=50, metavar="N", help="the last N rows (default: 50)"
    )
    history.add_argument(
        "--since",
        metavar="WHEN",
        help="only rows since then: a duration ago (10m, 2h, 1h30m) or an ISO-8601 time",
    )
    history.add_argument(
        "--manifest",
        type=_given,
        default="jobs.yaml",
        help="where the state dir is declared (./jobs.yaml)",
    )


def _history(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from supervision._client import find_state_dir  # noqa: PLC0415 - control commands stay light
    from supervision._history import (  # noqa: PLC0415
        JournalError,
        journal_path,
        since_time,
    )
    from supervision._printable import printable  # noqa: PLC0415

    if args.limit < 1:
        _error(f"--limit: expected a count >= 1, got {args.limit}")
        return USAGE
    since = None
    if args.since is not None:
        import time  # noqa: PLC0415 - history --since only

        try:
            since = since_time(args.since, time.time())
        except ValueError as exc:
            _error(printable(f"--since: {exc}"))
            return USAGE
    state = find_state_dir(args.manifest, getattr(args, "state_dir", None))
    db = journal_path(Path(state))
    as_json = getattr(args, "json", False)
    try:
        rows, known, had, said = _history_rows(db, args, since, state)
    except JournalError as exc:
        _error(str(exc))
        return USAGE
    verdict = OK
    if said is not None:
        # A typo: no such job, as status and logs say. A path the journal has rows of (a
        # job a reload removed) has its history, and one of the tree its empty one.
        _error(printable(said))
        verdict = NO_SUCH_JOB
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return verdict
    if had and since is not None:  # it has rows, none since then: not "it has: <it>"
        _error(printable(f"the journal has nothing of {args.job} since {_clock(since, 'seconds')}"))
    elif known is not None and verdict == OK:  # a job that has not run yet: said, not an error
        _error(printable(_nothing_of(args.job, known)))
    for row in rows:
        # Errors may hold a job's control characters.
        sys.stdout.write(printable(_history_line(row)) + "\n")
    return verdict


def _history_rows(
    db: Path, args: argparse.Namespace, since: float | None, state: str
) -> tuple[list[dict[str, Any]], list[str] | None, bool, str | None]:
    """The rows ``history`` shows; when there are none of a path, the paths the journal has
    (else None), whether it has rows of that path (before ``--since``), and why the path is
    none of the tree (None if it is, or that is unknown)."""
    from supervision._history import journal_paths, read_history  # noqa: PLC0415

    rows = read_history(db, args.job, args.limit, since=since)
    known = journal_paths(db) if not rows and args.job else None
    # A path with rows before --since is no typo, whatever the tree has now.
    had = known is not None and args.job.strip("/") in known
    said, replicas = (
        (None, []) if known is None or had else _in_tree(args.job, args.manifest, state)
    )
    if replicas:
        # A replicated job's name is its replicas' rows, together, as `restart w` acts on
        # each (it said "the journal has nothing of w; it has: w.0, w.1").
        rows = read_history(db, replicas, args.limit, since=since)
        had = known is not None and any(path in known for path in replicas)
        known = None if rows else known
    return rows, known, had, said


def _history_line(row: dict[str, Any]) -> str:
    when = _clock(row["at"])
    if row["type"] == "attempt":
        from supervision._table import outcome_text  # noqa: PLC0415 - control commands stay light

        # A signal by its name, as status says it: "stopped (SIGTERM)", not "stopped (-15)".
        outcome = outcome_text({"outcome": row["outcome"], "code": row.get("code")})
        error = f": {row['error']}" if "error" in row else ""
        node = f" on node {row['node']}" if "node" in row else ""
        attempt = f"attempt {row['attempt']}{node}"
        return f"{when}  {row['path']}  {attempt} {outcome}{error}"
    details = ", ".join(f"{k}={_shown(k, v)}" for k, v in row.get("detail", {}).items())
    where = row["path"] or _tree_row(row["kind"])
    return f"{when}  {where}  {row['kind']}" + (f" ({details})" if details else "")


def _tree_row(kind: str) -> str:
    """What stands for path "" in a row of ``kind``: a daemon's own life, a run's start and
    end, and else the root supervisor's decisions (a run has no daemon to make them)."""
    from supervision._history import DAEMON_KINDS, RUN_KINDS  # noqa: PLC0415

    if kind in DAEMON_KINDS:
        return "(daemon)"
    return "(run)" if kind in RUN_KINDS else "(root)"


def _nothing_of(job: str, known: list[str]) -> str:
    """What the journal has, said for a job with no rows."""
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    # An attempt is journaled as it ends: "no job yet" was said beside the daemon's rows,
    # and while the job ran.
    return (
        f"the journal has nothing of {job}; it has: {shown}"
        if shown
        else "the journal has no finished attempt of any job yet (an attempt is journaled as it "
        "ends)"
    )


def _in_tree(job: str, manifest: str, state_dir: str) -> tuple[str | None, list[str]]:
    """Why ``job`` is no path of the running daemon's tree (else of the manifest), nor a job
    of replicas (``w``, run as ``w.0``, ``w.1``, ...), as status says it (None if it is one,
    or if no tree could be read: no daemon and no manifest to read, a busy daemon; unknown
    is not "no such job"); and the paths of its replicas, if it has some."""
    from actors._errors import no_child_said  # noqa: PLC0415 - a path with no rows
    from supervision._logs import tree_paths  # noqa: PLC0415

    known = tree_paths(manifest, state_dir)
    name = job.strip("/")
    if known is None or name in known.paths:
        return None, []
    replicas = known.replicas(name)
    if replicas:
        return None, replicas
    return no_child_said(job, known.paths, known.replicated), []


def _shown(key: str, value: Any) -> str:
    """A decision's detail as a person reads it: its delays in seconds to the millisecond."""
    import math  # noqa: PLC0415 - history only

    if key in ("delay", "duration") and isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.3f}".rstrip("0").rstrip(".") + "s"
    return str(value)


def _logs(args: argparse.Namespace) -> int:
    from supervision._logs import show_logs  # noqa: PLC0415 - control commands stay light

    if args.lines < 0:
        _error(f"-n: expected a count >= 0, got {args.lines}")
        return USAGE
    return show_logs(
        args.job,
        manifest=args.manifest,
        state_dir=getattr(args, "state_dir", None),
        lines=args.lines,
        keep_following=args.follow,
        as_json=getattr(args, "json", False),
    )


def _top(args: argparse.Namespace) -> int:
    from supervision._top import run_top  # noqa: PLC0415 - control commands stay light

    return run_top(args.manifest, getattr(args, "state_dir", None))


def _detach() -> _Detached:
    """Become a background process: fork twice, new session, stdio to /dev/null.

    The process that called it stays in the foreground until the daemon is ready or has
    failed: it shows what the daemon wrote to stderr until then and exits with its verdict,
    so ``daemon --detach && jobvisor status`` works and a bad manifest is exit 2 with its
    message, not a silent 0.
    """
    told_r, told_w = os.pipe()  # both close on exec: no command the daemon starts holds them
    first = os.fork()
    if first > 0:
        os.close(told_w)
        os.waitpid(first, 0)  # the session leader exits at once; its child is the daemon
        os._exit(_await_daemon(told_r))
    os.close(told_r)
    os.setsid()
    if os.fork() > 0:
        os._exit(OK)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # Our own lines (errors, logs on stderr) go to the launcher through the pipe; fd 2 stays
    # /dev/null, so a command started before readiness never holds the launcher's pipe.
    os.set_blocking(told_w, False)
    sys.stderr = _ToLauncher(told_w)
    return _Detached(told_w)


_TOLD = b"\0"  # never in text _ToLauncher passes on: what follows it is the verdict


class _ToLauncher(io.TextIOBase):
    """The detached daemon's stderr until its verdict: the launcher's pipe, never in its way.

    Non-blocking: a launcher that stopped reading (suspended) misses lines, and the daemon
    never waits for it. One that went away (killed, its terminal closed) is not written to
    again, and nothing that writes here fails. NUL, the verdict's marker, goes escaped.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._gone = False

    @property
    def encoding(self) -> str:  # type: ignore[override]  # a constant here
        return "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if self._gone:
            return len(text)
        data = text.replace("\0", "\\0").encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except BlockingIOError:
            pass  # the launcher is not reading: the rest of this text is dropped
        except OSError:
            self._gone = True  # the launcher is gone (EPIPE)
        return len(text)


class _Detached:
    """The daemon's side of ``--detach``: tells the waiting launcher once, ready or exited."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._told = False

    def ready(self) -> None:
        self._tell(_TOLD + b"ready\n")

    def exited(self, code: int) -> None:
        self._tell(_TOLD + b"exit %d\n" % code)

    def _tell(self, verdict: bytes) -> None:
        if self._told:
            return
        self._told = True
        import select  # noqa: PLC0415 - only a detached daemon, once

        deadline = time.monotonic() + 5.0  # a launcher that does not read is not waited for
        try:
            while verdict:
                try:
                    verdict = verdict[os.write(self._fd, verdict) :]
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([], [self._fd], [], left)[1]:
                        break
        except OSError:
            pass  # the launcher is gone (killed): nobody to tell
        # From here on the daemon's stderr is /dev/null, as a background process's is; the
        # pipe closes, so the launcher never waits on it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._fd, inheritable=False)
        os.close(devnull)


def _await_daemon(told: int) -> int:
    """In the launcher: copy the daemon's stderr until its verdict; return its exit code."""
    out = sys.stderr.buffer
    verdict: bytes | None = None  # what came after the marker, once it came
    while verdict is None or b"\n" not in verdict:
        try:
            chunk = os.read(told, 65536)
        except KeyboardInterrupt:
            _error("stopped waiting; the daemon goes on starting (see jobvisor status)")
            return FAILED
        if not chunk:
            break
        if verdict is not None:
            verdict += chunk
            continue
        text, marker, rest = chunk.partition(_TOLD)
        out.write(text)
        out.flush()
        if marker:
            verdict = rest
    word, _, code = (verdict or b"").strip().partition(b" ")
    if word == b"ready":
        return OK
    if word == b"exit" and code.isdigit():
        return int(code)
    _error("the daemon stopped before it was ready (see the lines above, or its --log-file)")
    return FAILED


def _daemon(
    args: argparse.Namespace,
    on_ready: Callable[[], None] | None = None,
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """``daemon``: its exit code. ``on_exit`` is told it when the process ends at once."""
    from pathlib import Path  # noqa: PLC0415

    from actors import JobvisorError  # noqa: PLC0415 - after the runtime
    from supervision._app import compose  # noqa: PLC0415
    from supervision._daemon import Daemon  # noqa: PLC0415

    manifest = _load_to_work(args)
    if manifest is None:
        return USAGE

    def build(loaded: Any) -> Any:
        if on_ready is not None:
            loaded = _logged_when_detached(
                loaded, getattr(args, "log_file", None), getattr(args, "log_level", None)
            )
        composition = compose(
            loaded,
            runtime=getattr(args, "runtime", None),
            log_level=getattr(args, "log_level", None),
            log_file=getattr(args, "log_file", None),
            restore=True,
        )
        _mask_standard_streams(composition.masker.mask)
        return composition

    # Absolute already (_load_to_work), not resolved: a symlink there is replaced, and at exit
    # the path is removed, not a target.
    pidfile = Path(args.pidfile) if args.pidfile else None
    manifest_path = Path(args.manifest)
    try:
        # The state dir (lock, socket, journal) is fixed for the daemon's life, --state-dir
        # included: a reload never moves it.
        daemon = Daemon(
            manifest_path,
            build,
            pidfile=pidfile,
            state_dir=manifest.state_dir,
            http=manifest.http if args.http else None,
            on_ready=None if on_ready is None else lambda: _tell_ready(daemon, on_ready),
            # A reload gives the log the manifest's level, unless the command line gave one.
            pinned=frozenset({"logging.level"} if getattr(args, "log_level", None) else ()),
            hangups_ignored=getattr(args, "hangups_ignored", False),
        )
        code: int = daemon.run()
    except JobvisorError as exc:
        _error(str(exc))
        return USAGE
    except OSError as exc:
        # The daemon makes its state dir, lock, socket and pidfile itself; a failure there is
        # the user's to fix, so it gets one line naming the path, never a traceback.
        _error(_unusable(exc, manifest.state_dir, pidfile))
        return USAGE
    if daemon.ended is not None and on_ready is not None:
        # Detached, its log is in a file: the launcher, if it still waits, says why in a line.
        _error(f"the daemon stopped: the tree ended by itself: {daemon.ended} (see its log)")
    if daemon.forced:
        # A second signal cut the stop short; the journal and the log are flushed and closed.
        # End now, as run does: a thread the kill left behind could hold the interpreter's exit.
        if on_exit is not None:
            on_exit(code)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


DETACHED_LOG = "daemon.log"
DETACHED_LOG_BYTES, DETACHED_LOG_BACKUPS = 10 * 1024 * 1024, 3  # rotated: a daemon runs long


def _load_to_work(args: argparse.Namespace) -> Any:
    """The manifest ``run`` or ``daemon`` works on, from its directory (see ``_work_beside``);
    None when it cannot (said already). ``args``' paths are absolute after it."""
    from pathlib import Path  # noqa: PLC0415 - see TYPE_CHECKING above

    manifest = _load(args)
    if manifest is None:
        return None
    args.manifest = str(Path(args.manifest).resolve())
    if getattr(args, "pidfile", None):
        args.pidfile = str(Path(args.pidfile).absolute())
    return manifest if _work_beside(Path(args.manifest), args) else None


def _work_beside(manifest_path: Path, args: argparse.Namespace) -> bool:
    """``run`` and ``daemon`` work from the manifest's directory, where commands run: python
    jobs (their relative files, an ``isolation: process`` child) run beside it too.

    The paths given on the command line were read from where the user was: kept so.
    """
    log_file = getattr(args, "log_file", None)
    if log_file and log_file != "-":
        args.log_file = os.path.abspath(log_file)  # noqa: PTH100 - no pathlib at the top
    where = manifest_path.parent
    try:
        os.chdir(where)
    except OSError as exc:
        _error(f"cannot work in the manifest's directory {where}: {exc.strerror or exc}")
        return False
    return True


def _logged_when_detached(manifest: Any, log_file: str | None, level: str | None) -> Any:
    """A detached daemon's log goes to ``STATE_DIR/daemon.log`` unless told where.

    Its stderr is /dev/null once it is ready: without a file its log would be lost.
    """
    from dataclasses import replace  # noqa: PLC0415

    from supervision._spec import RotateSpec  # noqa: PLC0415

    spec = manifest.logging
    if log_file is not None or spec.file is not None or (level or spec.level) == "none":
        return manifest
    rotate = spec.rotate or RotateSpec(max_bytes=DETACHED_LOG_BYTES, backups=DETACHED_LOG_BACKUPS)
    file = str(manifest.state_dir / DETACHED_LOG)
    return replace(manifest, logging=replace(spec, file=file, rotate=rotate))


def _tell_ready(daemon: Any, tell: Callable[[], None]) -> None:
    """Say where the detached daemon's log goes, then tell the launcher it is ready."""
    composition = daemon.composition
    path = composition.logging.path if composition is not None else None
    where = f"its log: {path}" if path is not None else "no log file: its log is discarded"
    sys.stderr.write(f"jobvisor: daemon ready (pid {os.getpid()}); {where}\n")
    tell()


def _unusable(exc: OSError, state_dir: Path, pidfile: Path | None) -> str:
    from pathlib import Path  # noqa: PLC0415

    where = Path(exc.filename) if exc.filename else state_dir
    reason = exc.strerror or str(exc)
    if pidfile is not None and where == pidfile:
        return f"cannot write the pidfile {where}: {reason}; choose another with --pidfile"
    return (
        f"cannot use the state dir {state_dir} ({where}: {reason}); check that it exists or "
        "can be created and is writable, or choose another one (state_dir in the manifest)"
    )


def _control(args: argparse.Namespace) -> int:
    from supervision._client import find_state_dir  # noqa: PLC0415

    jobs: list[str] = getattr(args, "jobs", [])
    for job in jobs:
        if not job.strip("/"):
            # A usage error, found before asking anyone: exit 2 whether or not a daemon runs.
            _error(f"{args.command} needs a job path such as etl/load, got {job!r}")
            return USAGE
    directory = find_state_dir(args.manifest, getattr(args, "state_dir", None))
    # One request a path, in the order given: each is said as it is done, and a path that
    # fails does not keep the next ones from being tried (as supervisorctl does).
    requests = [{"op": args.command, "job": job} for job in jobs] or [{"op": args.command}]
    if args.command == "signal":
        for req in requests:
            req["signal"] = args.signal
    if getattr(args, "dry_run", False):
        requests[0]["dry_run"] = True  # an option: a daemon that does not know it refuses it
    if getattr(args, "no_block", False):
        for req in requests:
            req["no_block"] = True
    # --json (status has its own document): each answer kept, and one document at the end,
    # of what was done even when the daemon went away meanwhile.
    kept: list[dict[str, Any]] | None = (
        [] if getattr(args, "json", False) and args.command != "status" else None
    )
    code = _ask_each(args, directory, requests, kept)
    if kept:
        _write_answers(args, kept)
    return code


def _shutdown(args: argparse.Namespace) -> int:
    """``jobvisor shutdown``: the daemon's graceful stop, waited for unless ``--no-block``."""
    from supervision._client import (  # noqa: PLC0415
        NoAnswerError,
        NoDaemonError,
        find_state_dir,
    )
    from supervision._shutdown import ShutdownRefusedError, ask_shutdown  # noqa: PLC0415

    as_json = getattr(args, "json", False)
    directory = find_state_dir(args.manifest, getattr(args, "state_dir", None))
    began = time.monotonic()
    try:
        stopping = ask_shutdown(directory)
    except (NoDaemonError, ShutdownRefusedError) as exc:
        said = str(exc)
        failed: dict[str, Any] = {"ok": False, "code": "refused"}
        if isinstance(exc, NoAnswerError):  # one is there, its pid known: not "no daemon"
            failed.update(code="no_answer", pid=exc.pid)
        elif isinstance(exc, NoDaemonError):  # as the other control commands say it
            said += _no_daemon_hint(args, directory)
            failed["code"] = "no_daemon"
        _error(said)
        if as_json:
            sys.stdout.write(json.dumps({**failed, "error": said}, indent=2) + "\n")
        return NO_DAEMON if isinstance(exc, NoDaemonError) else FAILED
    with stopping:
        who = f"daemon (pid {stopping.pid})"
        document: dict[str, Any] = {
            "ok": True,
            "pid": stopping.pid,
            "already_stopping": stopping.already,
            "stopped": False,
        }
        if not as_json:
            sys.stdout.write(f"{who}: stopping{' already' if stopping.already else ''}\n")
            sys.stdout.flush()
        if not args.no_block:
            try:
                stopping.wait()
            except KeyboardInterrupt:
                _error(f"stopped waiting; the {who} goes on stopping")
                return FAILED
            took = time.monotonic() - began
            document.update(stopped=True, took=round(took, 3))
            if not as_json:
                sys.stdout.write(f"{who}: stopped ({took:.1f}s)\n")
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return OK


def _no_daemon_hint(args: argparse.Namespace, directory: str) -> str:
    """What to add to "no daemon": a run holds the state dir, else (found through the
    manifest's state_dir) maybe one written after the daemon started."""
    from supervision._client import elsewhere, held_by_run  # noqa: PLC0415

    hint = held_by_run(directory)
    if not hint and not getattr(args, "state_dir", None):
        hint = elsewhere(args.manifest, directory)
    return hint


def _ask_each(
    args: argparse.Namespace,
    directory: str,
    requests: list[dict[str, Any]],
    kept: list[dict[str, Any]] | None,
) -> int:
    """Send the daemon each request; the worst exit code. Said, or kept for --json.

    A replicated job's name (``w``, run as ``w.0``, ``w.1``, ...) given to ``start``, ``stop``
    or ``restart`` is each of its replicas in turn, one line each, as ``depends_on`` means them.
    """
    from collections import deque  # noqa: PLC0415

    from supervision._client import (  # noqa: PLC0415
        NoDaemonError,
        request,
        stopping_daemon,
    )

    worst = OK
    left = deque(requests)
    first = True
    while left:
        req = left.popleft()
        try:
            reply = request(directory, req)  # its own wait for each op
        except NoDaemonError as exc:
            # A daemon stopping (its socket gone, its lock held) is said as such; a run holds
            # it (no socket); else, found through the manifest's state_dir: maybe one written
            # after the daemon started.
            said = stopping_daemon(directory)
            if not said:
                said = f"{exc}{_no_daemon_hint(args, directory)}"
            _error(said)
            if getattr(args, "json", False):
                _no_daemon_answers(args, [req, *left], said, kept)
            return NO_DAEMON
        other = _other_manifest(args.manifest, reply.get("manifest")) if first else None
        first = False
        if other is not None:
            _error(other)
        replicas = _replicas_meant(args, directory, req, reply)
        if replicas:
            left.extendleft({**req, "job": path} for path in reversed(replicas))
            continue
        # The worst result is the exit code: the highest one, so a path that names no child (4)
        # outranks an action that failed (1).
        code = _said(args, req, reply) if kept is None else _kept(args, req, reply, kept, other)
        worst = max(worst, code)
    return worst


def _replicas_meant(
    args: argparse.Namespace, directory: str, req: dict[str, Any], reply: dict[str, Any]
) -> list[str]:
    """The replicas a ``start``, ``stop`` or ``restart`` of ``req``'s path meant, when the
    daemon found no child there and it names a replicated job; else none (its hint is said).

    Replicas are the nodes the daemon's status marks ``replica_of`` that job (its
    ``replicas: N``): a person's own ``q.0`` and ``q.1`` are not taken for ``q``'s by their
    names, and ``q`` is refused as any unknown name, in a tree with no replicated job too (its
    ``process`` says ``marks_replicas``). A daemon older than the field (no node has it, no
    ``marks_replicas``) is read as before: exactly ``w.0`` to ``w.N-1`` by their names.
    """
    if args.command not in _DONE or reply.get("code") != "no_such_job" or "job" not in req:
        return []
    from actors._errors import replicas_of  # noqa: PLC0415 - a path the daemon did not find
    from supervision._client import NoDaemonError, request  # noqa: PLC0415
    from supervision._logs import replicas_in_status  # noqa: PLC0415

    try:
        status = request(directory, {"op": "status"}, timeout=5.0).get("result")
    except (NoDaemonError, OSError):
        return []  # the daemon's own answer (its hint) is said
    if not isinstance(status, dict):
        return []
    name = req["job"].strip("/")
    replicated = replicas_in_status(status)
    if replicated is not None:
        return replicas_of(name, replicated, replicated)
    replicas = replicas_of(name, _paths_of(status.get("children") or []))
    numbers = sorted(int(path.rpartition(".")[2]) for path in replicas)
    return replicas if numbers == list(range(len(replicas))) else []


def _no_daemon_answers(
    args: argparse.Namespace,
    left: list[dict[str, Any]],
    error: str,
    kept: list[dict[str, Any]] | None,
) -> None:
    """--json with no daemon to answer ``left[0]``: the document still says so, on stdout.

    That path may or may not have been done (a daemon lost in the middle of it); those after
    it were not asked at all. Status has no answers to keep: its document is the error alone.
    """
    if kept is None:
        document = {"ok": False, "code": "no_daemon", "error": error}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    for n, req in enumerate(left):
        answer: dict[str, Any] = {"ok": False}
        if "job" in req:
            answer.update(job=req["job"].strip("/"), action=args.command)
        if n == 0:
            answer.update(code="no_daemon", error=error)
        else:
            answer.update(code="not_asked", error="not asked: no daemon answered before")
        if req.get("dry_run"):
            answer["dry_run"] = True
        kept.append(answer)


def _other_manifest(named: str, read: object) -> str | None:
    """What to say when the manifest ``named`` is not the one the daemon ``read``; else None."""
    if (
        isinstance(read, str)
        and os.path.exists(named)  # noqa: PTH110 - no pathlib in control commands
        and os.path.realpath(named) != os.path.realpath(read)
    ):
        return f"the daemon reads its own manifest, {read}, not {named}"
    return None


_DONE = {"start": "started", "stop": "stopped", "restart": "restarted"}
# reload --dry-run's first line: the lines under it are those a reload would say.
DRY_RUN = "dry run: nothing was changed; a reload now would say:"


def _set_here(unset: object) -> None:
    """Of the variables a reload found unset in the daemon, name those set in this shell."""
    if not isinstance(unset, list):
        return
    here = [name for name in unset if isinstance(name, str) and name in os.environ]
    if here:
        these, are, them = (
            (here[0], "is", "it") if len(here) == 1 else (", ".join(here), "are", "them")
        )
        _error(
            f"{these} {are} set in this shell, but the daemon does not see {them}: a daemon "
            "keeps the environment it started with"
        )


def _refused(reply: dict[str, Any]) -> int:
    """Say why the daemon refused (stderr, with --json too, as status does); the exit code."""
    _error(str(reply.get("error")))
    _set_here(reply.get("unset"))
    codes = {"no_such_job": NO_SUCH_JOB, "bad_manifest": USAGE}
    return codes.get(str(reply.get("code")), FAILED)


def _kept(
    args: argparse.Namespace,
    req: dict[str, Any],
    reply: dict[str, Any],
    kept: list[dict[str, Any]],
    other: str | None = None,
) -> int:
    """``_said`` for --json: the answer to ``req`` kept for the document; its exit code.

    A path's answer has the HTTP API's shape (``POST /api/jobs/PATH/ACTION``). A reload's
    names the manifest the daemon read, and ``other``, the warning that it is not the one
    the command was given.
    """
    ok = bool(reply.get("ok"))
    answer: dict[str, Any] = {"ok": ok}
    if "job" in req:
        answer.update(job=req["job"].strip("/"), action=args.command)
    result: Any = reply.get("result")
    if not ok:
        answer.update(code=reply.get("code"), error=str(reply.get("error")))
        if isinstance(reply.get("unset"), list) and reply["unset"]:
            answer["unset"] = reply["unset"]
    elif args.command == "reload":
        answer["changes"] = result
    elif args.command == "signal":
        answer["signal"] = result
    elif isinstance(result, str):  # nothing was done (a stop of a job that is not running)
        answer["note"] = result
    read = reply.get("manifest")
    after = {
        "killed": reply.get("killed") or None,  # what a stop had to kill past its grace
        "threads_killed": reply.get("threads_killed") or None,
        "dependants_running": reply.get("dependants_running") or None,
        "dependants_on": reply.get("dependants_on") or None,
        "manifest": read if args.command == "reload" and isinstance(read, str) else None,
        "dry_run": True if req.get("dry_run") else None,
        "warning": other,
    }
    answer.update((key, value) for key, value in after.items() if value is not None)
    kept.append(answer)
    return OK if ok else _refused(reply)


def _write_answers(args: argparse.Namespace, kept: list[dict[str, Any]]) -> None:
    """The document of ``--json``: reload's answer, or each path's in the order given.

    ``ok`` only when every path's answer is (the exit code is OK exactly then).
    """
    if args.command == "reload":
        document = kept[0]
    else:
        ok = all(answer["ok"] for answer in kept)
        document = {"ok": ok, "results": kept}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def _said(args: argparse.Namespace, req: dict[str, Any], reply: dict[str, Any]) -> int:
    """Tell what the daemon answered to ``req``; its exit code."""
    if not reply.get("ok"):
        if getattr(args, "json", False):  # status: refused (busy, starting) is a document too
            refusal = {"ok": False, "code": reply.get("code"), "error": str(reply.get("error"))}
            sys.stdout.write(json.dumps(refusal, indent=2) + "\n")
        return _refused(reply)
    result: Any = reply.get("result")
    if args.command == "status":
        return _status(args, result)
    if args.command == "reload":
        if req.get("dry_run"):
            sys.stdout.write(f"{DRY_RUN}\n")
        sys.stdout.write(("\n".join(result) or "no change") + "\n")
    elif args.command == "signal":
        sys.stdout.write(f"{req['job'].strip('/')}: sent {result}\n")
    elif isinstance(result, str):  # a stop of a job that is not running: nothing was done
        sys.stdout.write(result + "\n")
    else:
        path = req["job"].strip("/")
        said = _kills_said(path, reply) + _dependants_said(path, reply)
        sys.stdout.write(f"{path}: {_DONE[args.command]}{said}\n")
    sys.stdout.flush()  # each path's line as it is done
    return OK


def _dependants_said(path: str, reply: dict[str, Any]) -> str:
    """What a stop of a dependency leaves running: the jobs that depend on it (or on a group
    it is in)."""
    running = [str(p) for p in reply.get("dependants_running") or ()]
    if not running:
        return ""
    from supervision._printable import printable  # noqa: PLC0415 - a daemon's word

    via = reply.get("dependants_on")
    via = via if isinstance(via, dict) else {}
    ons = [
        f"{dep} depends on {via[dep]}" if dep in via else f"{dep} depends on it" for dep in running
    ]
    one = len(running) == 1
    them, its = ("it", "its") if one else ("them", "their")
    return printable(
        f"; {', '.join(ons)} and run{'s' if one else ''} on ({its} start or restart is "
        f"refused until {path} runs again: stop {them} too, or first)"
    )


_ENDED_HOW = (
    ("killed", "killed with SIGKILL after its stop grace: it did not end on its stop signal"),
    # No process of its own to SIGKILL: a thread is killed by an exception thrown into it (one
    # blocked in a call, or that swallows it, outlives it, which the log then says: abandoned),
    # a Ray actor by Ray.
    ("threads_killed", "killed after its stop grace: it did not end when asked"),
)


def _kills_said(path: str, reply: dict[str, Any]) -> str:
    """What a stop or restart had to end past its stop grace, said after its "stopped": a
    process killed, a thread (no thread can be killed) left running."""
    from supervision._printable import printable  # noqa: PLC0415 - a daemon's word

    said = []
    for key, how in _ENDED_HOW:
        ended = [str(p) for p in reply.get(key) or ()]
        if ended:
            said.append(how if ended == [path] else f"{', '.join(ended)} {how}")
    return printable(f" ({'; '.join(said)})") if said else ""


def _status(args: argparse.Namespace, result: dict[str, Any]) -> int:
    from supervision._table import select_status, summary_table  # noqa: PLC0415

    code = OK
    if args.paths:
        from actors._errors import no_child_said  # noqa: PLC0415 - a path not found only
        from supervision._logs import replicas_in_status  # noqa: PLC0415
        from supervision._printable import printable  # noqa: PLC0415

        known = list(_paths_of(result.get("children") or []))
        replicated = replicas_in_status(result)
        result, missing = select_status(result, args.paths)
        for path in missing:  # what NoSuchChildError says, as start and stop have it
            # the path is a person's own text
            _error(printable(no_child_said(path, known, replicated)))
            code = NO_SUCH_JOB
    as_json = getattr(args, "json", False)
    if code != OK and not as_json and not result.get("children"):
        return code  # no path named a child: a table's header alone says nothing
    # On a terminal one line a row (the whole of each is in --json); into a pipe, whole.
    text = json.dumps(result, indent=2) if as_json else summary_table(result, fit="cut")
    sys.stdout.write(text + "\n")
    if not as_json and result.get("breakers"):
        from supervision._printable import printable  # noqa: PLC0415 - a daemon's word

        breakers = printable(", ".join(f"{k}={v}" for k, v in result["breakers"].items()))
        sys.stdout.write(f"breakers: {breakers}\n")
    return code


def _paths_of(nodes: list[dict[str, Any]]) -> Iterator[str]:
    """Every path of a status document's tree, depth first: where a hint finds the path meant
    (a replicated job's replicas, the top level for ``all``)."""
    for node in nodes:
        yield node["path"]
        yield from _paths_of(node.get("children") or [])


def _write_out(stream: Any, text: str) -> None:
    """``run``'s result; a reader gone (`| head`) changes nothing: the exit code is the verdict."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except OSError as exc:
        _silence_stdout()
        if stream is not sys.stdout:
            import contextlib  # noqa: PLC0415 - only here

            with contextlib.suppress(OSError):
                stream.close()  # its buffer is dropped, not flushed again at the exit
        if not isinstance(exc, BrokenPipeError):
            raise  # a _StdoutError: main says it


def _stdout_for_the_document() -> Any:
    """Keep stdout for ``run --json``'s document; fd 1 (and ``sys.stdout``) become stderr's."""
    sys.stdout.flush()
    kept = os.dup(1)  # not inheritable: no job's process gets it
    os.dup2(2, 1)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # Its prints now share stderr with the log: written a line at a time, as on a
        # terminal, so a log line lands between two of them, never inside one (block-buffered,
        # a long line went out without its newline, and the next log line joined it).
        sys.stdout.reconfigure(line_buffering=True, write_through=False)
    return _text_out(kept, closefd=True)


def _clock(at: float, timespec: str = "milliseconds") -> str:
    import datetime as dt  # noqa: PLC0415

    return dt.datetime.fromtimestamp(at).astimezone().isoformat(timespec=timespec)


def _compose_run(args: argparse.Namespace, manifest: Any) -> Any:
    """``run``'s composition, holding the state dir; None when it cannot (said already)."""
    from actors import JobvisorError  # noqa: PLC0415 - after the runtime
    from supervision._app import compose  # noqa: PLC0415

    try:
        return compose(
            manifest,
            runtime=getattr(args, "runtime", None),
            log_level=getattr(args, "log_level", None),
            log_file=getattr(args, "log_file", None),
            resume=args.resume,
            hold="run",  # one jobvisor per state dir, as the daemon
        )
    except JobvisorError as exc:
        _error(str(exc))
    except OSError as exc:  # the state dir or its lock file cannot be made: as the daemon says
        _error(_unusable(exc, manifest.state_dir, None))
    return None


def _say_how_it_ended(report: Any, mask: Callable[[str], str], logging: Any) -> None:
    """``run``'s last lines on stderr: what failed, what a signal left unfinished.

    Through the run's ``logging`` setup: after the records, and never waiting for a
    reader of stderr who stopped reading.
    """

    def error(message: str) -> None:
        logging.say(f"jobvisor: {message}", sys.stderr)

    if report.result.escalation is not None:
        error(mask(f"escalation reached the root: {report.result.escalation}"))
    elif report.result.failed:
        error(f"failed or gave up: {', '.join(report.result.failed)}")
    stop_line = report.stop_line()
    if stop_line is not None:
        error(mask(stop_line))
    lost_line = report.lost_line()
    if lost_line is not None:
        error(mask(lost_line))
    if report.forced:
        error("a second signal cut the stop short: what still ran was killed")


def _may_draw() -> bool:
    """Whether ``run`` may keep its progress line on a terminal: not under CI (a log read
    later; ``CI=`` empty is no CI, as a shell clears it for one command), nor on
    ``TERM=dumb``, which takes no escape sequence (the line is redrawn with one).
    ``NO_COLOR`` leaves it: it asks for no colour, and run draws none."""
    return not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def _run_end(composition: Any, code: int) -> None:
    """Journal the run's end: a ``run_start`` with none after it is a run that was killed."""
    if composition.journal is not None:
        composition.journal.daemon("run_end", {"pid": os.getpid(), "code": code})


def _run_start(manifest: Path | None, resume: bool, composition: Any) -> dict[str, Any]:
    """A ``run_start`` row's detail: pid, version, manifest, resume; ``previous`` when the
    run before journaled no end (``killed_run``)."""
    from supervision._app import jobvisor_version, killed_run  # noqa: PLC0415

    detail: dict[str, Any] = {
        "pid": os.getpid(),
        "version": jobvisor_version(),
        "manifest": str(manifest),
        "resume": resume,
    }
    previous = killed_run(composition.journal.path)
    if previous is not None:
        detail["previous"] = previous
    return detail


def _batch(composition: Any, *, live: bool) -> RunReport:
    """``run_batch``, its thread jobs writing to the standard streams as ``_for_jobs`` makes
    them; ``live``: with the progress line drawn on stderr."""
    from supervision._app import run_batch, write_progress  # noqa: PLC0415

    stdout, stderr = sys.stdout, sys.stderr
    around = _AroundProgress(stderr, composition.logging) if live else None
    sys.stdout, sys.stderr = _for_jobs(stdout), _for_jobs(around or stderr)
    try:
        progress = None if around is None else write_progress(stderr, logging=around)
        report = run_batch(composition, on_progress=progress)
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if around is not None:
            around.end()
    if around is not None:
        composition.logging.show_status("", sys.stderr)
    return report


def _run(args: argparse.Namespace) -> int:
    # Imported after the runtime is prepared.
    from supervision._table import summary_table  # noqa: PLC0415

    _forgive_gone_readers()
    manifest = _load_to_work(args)
    if manifest is None:
        return USAGE
    as_json = getattr(args, "json", False)
    # SPEC §4: with --json stdout is the document alone. What a job writes to its stdout (a
    # thread's print, os.write(1, ...)) goes to stderr, with the log.
    document = _stdout_for_the_document() if as_json else sys.stdout
    composition = _compose_run(args, manifest)
    if composition is None:
        return USAGE
    _mask_standard_streams(composition.masker.mask)
    with composition:
        if composition.journal is not None:  # where the next --resume counts from; committed
            composition.journal.run_start(_run_start(manifest.path, args.resume, composition))
        if composition.skipped:
            skipped = ", ".join(composition.skipped)
            composition.logging.say(
                f"jobvisor: --resume: already succeeded, skipped: {skipped}", sys.stderr
            )
        if composition.older:
            composition.logging.say(
                f"jobvisor: --resume: the journal's successes of {', '.join(composition.older)}"
                " were written by an older jobvisor, whose job identities this one cannot"
                " match: they run again",
                sys.stderr,
            )
        if composition.changed:
            composition.logging.say(
                "jobvisor: --resume: run again, their spec changed since they succeeded: "
                + ", ".join(composition.changed),
                sys.stderr,
            )
        report = _batch(composition, live=sys.stderr.isatty() and not as_json and _may_draw())
        _run_end(composition, report.exit_code)
        composition.logging.sum_up()  # the loops' summaries before the table and the verdict
        composition.logging.flush()  # the records first, where stdout shares their terminal
        mask = composition.masker.mask
        if as_json:
            _write_out(document, mask(json.dumps(report.status, indent=2)))
        else:
            _write_out(sys.stdout, summary_table(report.status, mask))
        _say_how_it_ended(report, mask, composition.logging)
    # The journal and the logs are flushed and closed. After a second signal, or with a thread
    # abandoned (stuck in a call), end now: the interpreter's exit could wait on that thread.
    if report.forced or report.leftover:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(report.exit_code)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
