"""Where jobvisor's log records go: six levels, text or JSON lines, rotation, secret masking.

``configure_logging(spec)`` pushes the handlers application-wide (every
thread and greenlet), routes standard-library logging (requests, urllib3,
pykka) into them, and returns a ``LoggingSetup`` whose ``close()`` undoes
all of it::

    with configure_logging(manifest.logging, level=args.log_level, base_dir=manifest_dir):
        run()

While a setup is active it owns jobvisor's output: records it does not
write are swallowed, so nothing reaches logbook's default stderr handler or
handlers pushed before it. Setups nest; close them in reverse order.

A program that embeds a tree and sets up no logbook handler at all gets
jobvisor's records through the standard library instead (``tree_started``):
each goes to the stdlib logger named after its channel (``supervision.tree``,
``actors.command``), masked, so a give-up is never silent.
"""

from __future__ import annotations

import _thread
import contextlib
import dataclasses
import errno
import functools
import glob
import json
import logging
import os
import re
import select
import stat
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import logbook
from logbook.compat import RedirectLoggingHandler

from actors import JobvisorError, SpecError, active_runtime, describe
from actors._attempt import current_attempt
from actors._checks import a_kind
from actors._runtime import current_task
from supervision._damper import CLEAN, Summary, TreeDampers
from supervision._files import (
    UnsafePathError,
    check_parents,
    ensure_private_dir,
    loosened,
    make_dirs,
    open_private_file,
    owned_by_another,
)
from supervision._held import gone_dir
from supervision._secrets import SecretMasker, printable, printable_json
from supervision._spec import LoggingSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Self, TextIO

    from supervision._damper import CrashLoopDamper
    from supervision._manifest import Manifest
    from supervision._spec import RotateSpec

__all__ = [
    "LOGGERS",
    "LoggingSetup",
    "LoggingSetupError",
    "SecretMasker",
    "configure_logging",
    "tree_begins",
    "tree_started",
    "tree_stopped",
]

log = logbook.Logger("supervision.logging")

# The ids of the trees started and not yet stopped (``tree_begins``, ``tree_stopped``): only
# they get a damper of their own, which their stop releases. A record of a stopped tree's
# thread that still runs (abandoned) is damped with no tree's instead of leaking a new one.
_running_trees: set[str] = set()
DEFAULT_TREE_NAME: Final = "root"
_tree_names: dict[str, str] = {}  # the running trees' root names, by id

# The threshold each level of the manifest writes from; "none" writes nothing.
THRESHOLDS: Final[dict[str, int | None]] = {
    "none": None,
    "error": logbook.ERROR,
    "warning": logbook.WARNING,
    "information": logbook.INFO,  # INFO and NOTICE
    "debug": logbook.DEBUG,
    "verbose": logbook.TRACE,
}

# The same thresholds for standard-library loggers (which have no TRACE).
_STDLIB_THRESHOLDS: Final[dict[str, int]] = {
    "none": logging.CRITICAL + 1,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "information": logging.INFO,
    "debug": logging.DEBUG,
    "verbose": 1,  # everything: below DEBUG maps to TRACE
}

# Modules whose module-level logbook Loggers are jobvisor's own channels.
_PACKAGES: Final = frozenset({"actors", "supervision", "cli"})

LOGGERS: Final = logbook.LoggerGroup()
"""jobvisor's own logbook Loggers, adopted by ``configure_logging``.

Its level and disabled flag are reflected into every member, so a call
below the configured level returns before any record is created. Members
are the module-level Loggers of ``actors``, ``supervision`` and ``cli``
found when a setup starts; add a Logger created later with
``LOGGERS.add_logger(log)``.
"""

_TRACE: Final[int] = logbook.TRACE

INDENT: Final = "\n    "  # continuation lines of a text record (message, traceback)
# The ``extra`` key of a record that reports a clean exit and its restart (``held_back``):
# the damper counts such exits as a loop; never written out.
CLEAN_EXIT: Final = "clean_exit"
# The ``extra`` key of a record that says what a person or the supervisor did to a child
# (stopping, stopped, start requested): the damper never holds it; never written out.
ACTED: Final = "acted"
# The ``extra`` key of a record that says a child is restarted, its value the delay in seconds:
# a summary counts held ones, and a delay grown twice as long is written.
RESTARTED: Final = "restarted"
# The ``extra`` key of a record that says a group escalates: a summary counts held ones.
ESCALATED: Final = "escalated"
_DAMPER_ONLY: Final = frozenset({CLEAN_EXIT, ACTED, RESTARTED, ESCALATED})
CLEAR_LINE: Final = "\r\x1b[K"  # back to the start of the terminal's line, and erase it


class LoggingSetupError(JobvisorError):
    """The log file cannot be opened (or its directory created) when logging starts.

    Raised by ``configure_logging`` before anything is changed, so logging
    stays as it was. The message names the path and the reason; fix the
    directory's permissions or choose another file (``--log-file``). Unlike
    a later write failure, which only drops records and warns once on
    stderr, this stops the run before any job starts. ``path`` is the file.
    """

    def __init__(self, path: Path, reason: BaseException) -> None:
        super().__init__(
            f"cannot open the log file {path}: {describe(reason)}; check that its directory "
            "exists or can be created and is writable, or choose another file with --log-file"
        )
        self.path = path


class LoggingSetup:
    """What ``configure_logging`` installed; ``close()`` (or leaving ``with``) undoes it.

    ``masker`` is live: secrets added to it later are masked from then on.
    ``level``, ``format`` and ``path`` (None when writing to a stream) are
    the effective settings after the overrides.
    """

    def __init__(
        self,
        *,
        masker: SecretMasker,
        level: str,
        format: str,  # noqa: A002 - the manifest's field name
        path: Path | None,
    ) -> None:
        self.masker = masker
        self.level = level
        self.format = format
        self.path = path
        self._undo: list[Callable[[], None]] = []  # run last-first by close()
        self._closed = False
        self._stream_sink: _StreamSink | None = None  # set when records go to a stream
        self._handler: _LineHandler | None = None  # None at level none: nothing is written
        self._bridge: _StdlibBridge | None = None

    @property
    def retunable(self) -> bool:
        """Whether ``retune`` can change this setup: one made at level ``none`` opened no
        file nor stream, so it has nowhere to write to at another level."""
        return self._handler is not None and not self._closed

    def retune(self, *, level: str | None = None, format: str | None = None) -> None:  # noqa: A002
        """Write from ``level`` and in ``format`` from now on (a daemon's reload); None keeps one.

        The file, its rotation and the stream stay as they are. For the setup made last
        (the level of jobvisor's Loggers is the process's); any thread. Raises ``SpecError``
        for an unknown level or format, or when the setup is not ``retunable``.
        """
        handler, bridge = self._handler, self._bridge
        if level is not None and level not in THRESHOLDS:
            raise SpecError(field="level", expected=f"one of {', '.join(THRESHOLDS)}", got=level)
        if format is not None and format not in _RENDERS:
            raise SpecError(field="format", expected="text or json", got=format)
        if handler is None or bridge is None or not self.retunable:
            raise SpecError(
                f"this log was set up at level {self.level}: it writes nowhere, so it cannot "
                "be retuned; set it up again"
            )
        if format is not None and format != self.format:
            handler.render = _RENDERS[format]
            self.format = format
        if level is not None and level != self.level:
            threshold = THRESHOLDS[level]
            # Before the Loggers let more through: a record they pass finds the handler ready.
            handler.level = _NOTHING if threshold is None else threshold
            handler.damp(level != "verbose")
            _group_level(threshold)
            bridge.setLevel(_STDLIB_THRESHOLDS[level])
            logging.getLogger().setLevel(_STDLIB_THRESHOLDS[level])
            self.level = level

    def show_status(self, text: str, stream: TextIO) -> None:
        """Draw ``text`` as the one status line at the bottom of the terminal ``stream``.

        ``""`` clears it. When the records go to the same stream, each record
        first clears the status line and draws it again below itself, so the
        two never share a line; otherwise the line is simply redrawn.
        """
        sink = self._stream_sink
        if sink is not None and sink.stream is stream:
            sink.show(text)
            return
        with contextlib.suppress(OSError, ValueError):
            stream.write(CLEAR_LINE + text)
            stream.flush()

    def say(self, text: str, stream: TextIO, *, bounded: bool = False) -> None:
        """Write ``text``, a line of the program's own (a verdict), to ``stream``.

        When the records go to the same stream, it goes after those logged before
        it, and never waits for a reader who stopped reading (see ``configure_logging``);
        otherwise it is written at once. A stream that fails is no error here.
        ``bounded``: a line as many as a job may write (its own stderr's), which the
        records' bound applies to as to a record: dropped, and counted, past it.
        """
        sink = self._stream_sink
        if sink is not None and sink.stream is stream and not self._closed:
            if bounded:
                sink.write(text)
            else:
                sink.say(text)
            return
        with contextlib.suppress(OSError, ValueError):
            stream.write(text + "\n")
            stream.flush()

    def sum_up(self) -> None:
        """Write the summaries of the crash loops held back so far, now: before a last line
        (``run``'s verdict, ``daemon stopped``), which they would otherwise follow."""
        if self._handler is not None and not self._closed:
            self._handler.sum_up()

    def flush(self) -> None:
        """Wait until the records logged so far are on the stream, while its reader reads.

        For a line written to the same terminal another way (a summary on stdout): it
        comes after them. A reader who stopped reading is not waited for long (see
        ``configure_logging``). Nothing to do when the records go to a file.
        """
        sink = self._stream_sink
        if sink is not None and not self._closed:
            sink.flush()

    def close(self) -> None:
        """Pop the handlers, close the file and restore stdlib logging and logger levels.

        Idempotent. Call it after the tree has stopped, and close nested
        setups in reverse order; records logged afterwards go where they went
        before. Every step runs even if one fails; the first failure is raised.
        """
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:
                first = first or exc
        if first is not None:
            raise first

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "stream"
        return f"<LoggingSetup level={self.level} format={self.format} to {where}>"


def configure_logging(
    spec: LoggingSpec | Manifest,
    *,
    level: str | None = None,
    file: str | None = None,
    masker: SecretMasker | None = None,
    stream: TextIO | None = None,
    base_dir: Path | None = None,
    now: Callable[[], datetime] = datetime.now,
    monotonic: Callable[[], float] = time.monotonic,
) -> LoggingSetup:
    """Send jobvisor's and the standard library's log records where ``spec`` says.

    ``spec`` is a ``LoggingSpec``, or a ``Manifest`` (``load_manifest``): then
    its ``logging:`` block, with its directory as ``base_dir`` and its secrets
    masked. ``level`` and ``file`` override the spec (``--log-level``,
    ``--log-file``); ``file="-"`` writes to the stream even if the spec names
    a file. A relative ``spec.file`` resolves against ``base_dir`` (the
    manifest's directory; default the working directory), a relative ``file``
    override against the working directory, as a command-line path would.
    Records go to ``stream`` (default ``sys.stderr``) when there is no file.
    A stream whose reader may stop reading (a pipe, a terminal) is written by
    a thread of its own, and never holds a record up: what its reader does
    not take is kept up to a bound, then dropped, and the count said in one
    line once the reader takes writes again. ``close`` waits for what is
    kept while the reader reads (a slow one gets the last line), not longer.
    ``now`` is the wall clock of time rotation, for tests.

    Raises ``SpecError`` for an unknown level or for anything but a spec or a
    manifest, and ``LoggingSetupError`` when the file cannot be opened;
    nothing is changed then. Level ``none`` opens no file. Later write
    failures never raise: see ``LoggingSetupError``.

    Below ``verbose`` a crash loop's repeated lines are summed up (see
    ``supervision._damper``); ``monotonic`` is the clock of its interval, and of
    how often a held rotation is looked at again (``_FileSink._rotate``).
    """
    masker = masker if masker is not None else SecretMasker()
    spec, base_dir = _logging_of(spec, masker, base_dir)
    changes: dict[str, Any] = {}
    if level is not None:
        changes["level"] = level
    if file is not None:
        changes["file"] = None if file == "-" else file
    effective = dataclasses.replace(spec, **changes) if changes else spec
    threshold = THRESHOLDS[effective.level]

    path: Path | None = None
    if effective.file is not None and threshold is not None:
        relative_to = Path.cwd() if file is not None else (base_dir or Path.cwd())
        path = relative_to / Path(effective.file).expanduser()
    setup = LoggingSetup(masker=masker, level=effective.level, format=effective.format, path=path)

    handlers: list[logbook.Handler] = [logbook.NullHandler()]  # swallows what ours do not write
    if threshold is not None:
        sink: _Sink = (
            _FileSink(path, effective.rotate, now, monotonic=monotonic)
            if path is not None
            else _StreamSink(stream if stream is not None else sys.stderr)
        )
        render = _RENDERS[effective.format]
        # verbose shows every line, the whole point of choosing it; the damper is made all the
        # same, for a reload that sets another level (``retune``)
        damper = TreeDampers(running=_running_trees, clock=monotonic)
        line_handler = _LineHandler(
            threshold, render, masker, sink, damper, damping=effective.level != "verbose"
        )
        if isinstance(sink, _StreamSink):
            sink.notice = functools.partial(_dropped_line, line_handler)
        elif isinstance(sink, _FileSink):
            sink.notice = functools.partial(_notice_line, line_handler)
        attach = getattr(monotonic, "attach", None)  # a test's clock, which it moves by hand
        if callable(attach):
            attach(line_handler.wake)
        handlers.append(line_handler)
        setup._stream_sink = sink if isinstance(sink, _StreamSink) else None
        setup._handler = line_handler
        setup._undo.append(_gating(line_handler))

    for handler in handlers:
        handler.push_application()
        setup._undo.append(_closing(handler))
    setup._undo.append(_set_group_level(threshold))
    setup._undo.append(_route_stdlib(_STDLIB_THRESHOLDS[effective.level], setup))
    setup._undo.append(_active(setup))
    return setup


def _logging_of(
    spec: LoggingSpec | Manifest, masker: SecretMasker, base_dir: Path | None
) -> tuple[LoggingSpec, Path | None]:
    """The ``LoggingSpec`` and base directory of ``spec``; a manifest's secrets go to ``masker``."""
    if isinstance(spec, LoggingSpec):
        return spec, base_dir
    block = getattr(spec, "logging", None)
    if not isinstance(block, LoggingSpec):
        raise SpecError(
            f"configure_logging takes a LoggingSpec or a Manifest (load_manifest); got "
            f"{a_kind(spec)}"
        )
    masker.add_all(getattr(spec, "secrets", ()))
    path = getattr(spec, "path", None)
    if base_dir is None and isinstance(path, Path):
        base_dir = path.parent
    return block, base_dir


# The setups active now, oldest first: a tree started meanwhile adds its secrets to them.
_setups: list[LoggingSetup] = []
_setups_lock = threading.Lock()


def _active(setup: LoggingSetup) -> Callable[[], None]:
    with _setups_lock:
        _setups.append(setup)

    def undo() -> None:
        with _setups_lock:
            if setup in _setups:
                _setups.remove(setup)

    return undo


def _module_loggers(skip: set[str] | None = None) -> Iterator[logbook.Logger]:
    """The module-level Loggers of jobvisor's modules (not those named in ``skip``, which grows)."""
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in _PACKAGES or (skip is not None and name in skip):
            continue
        if skip is not None:
            skip.add(name)
        for value in list(getattr(module, "__dict__", {}).values()):
            if isinstance(value, logbook.Logger):
                yield value


# -- without a setup: to the standard library -------------------------------------------------

# logbook's levels as the standard library's; TRACE (verbose) goes below DEBUG.
_TO_STDLIB: Final[dict[int, int]] = {
    logbook.CRITICAL: logging.CRITICAL,
    logbook.ERROR: logging.ERROR,
    logbook.WARNING: logging.WARNING,
    logbook.NOTICE: logging.INFO,
    logbook.INFO: logging.INFO,
    logbook.DEBUG: logging.DEBUG,
}
_STDLIB_TRACE: Final = 5


def _plain_lock() -> Any:
    """A lock of the OS, also under gevent, for a critical section that never blocks nor yields.

    The damper's decisions are pure computations: no greenlet can switch inside one, so
    gevent's cooperative lock (several times the cost, on every crash) buys nothing there.
    """
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        return monkey.get_original("threading", "Lock")()
    return threading.Lock()


class _ToStdlib(logbook.Handler):  # type: ignore[misc]  # logbook has no stubs
    """Hands a jobvisor record to the stdlib logger of its channel while logbook has no handler.

    Attached to each of jobvisor's Loggers, not pushed: pushed by a library, it would sit
    on top of the program's own handlers, and popping theirs would fail. It stands aside
    as soon as any logbook handler is pushed, a setup's or the program's. No record goes
    round: what sends stdlib records into logbook (a setup's bridge, a program's
    ``redirect_logging``) dispatches them through logbook's default dispatcher, which
    does not have it. Messages are masked with the secrets of every tree started
    (``tree_started``).
    """

    def __init__(self) -> None:
        super().__init__(bubble=True)
        self.masker = SecretMasker()
        self._failed = False
        # A crash loop's repeats are held and summed up here too (a program's stderr would
        # take a line per failure). Its summaries come with the next record about anything,
        # a give-up's included: no thread of its own tells them when due.
        self._damper = TreeDampers(running=_running_trees)
        self._damper_lock = _plain_lock()

    def should_handle(self, record: logbook.LogRecord) -> bool:
        for _ in logbook.Handler.stack_manager.iter_context_objects():
            return False  # logbook was set up: the record is for its handlers
        return logging.getLogger(record.channel).isEnabledFor(_stdlib_level(record.level))

    def emit(self, record: logbook.LogRecord) -> None:
        tree = _current_tree()
        _tag_tree(record, tree)
        with self._damper_lock:
            summaries, write = _admitted(self._damper.of(tree), record)
        for summary in summaries:
            self._hand(_summary_record(summary, before=record.time))
        if write:
            self._hand(record)

    def forget(self, tree: str | None, path: str) -> None:
        """``path``'s loop is over (``new_story``): hand on the summary of what it held."""
        with self._damper_lock:
            summaries = self._damper.of(tree).forget(path)
        for summary in summaries:
            self._hand(_summary_record(summary))

    def release(self, tree: str) -> None:
        """``tree`` stopped (``tree_stopped``): hand on what its loops held."""
        with self._damper_lock:
            summaries = self._damper.release(tree)
        for summary in summaries:
            self._hand(_summary_record(summary))

    def _hand(self, record: logbook.LogRecord) -> None:
        logger = logging.getLogger(record.channel)
        message = printable(self.masker.mask(_text_body(record, self.masker)), keep="\t\n")
        logger.handle(
            logger.makeRecord(
                logger.name,
                _stdlib_level(record.level),
                record.filename or "(unknown file)",
                record.lineno or 0,
                message,  # the traceback is in it, masked: no exc_info
                (),
                None,
                func=record.func_name,
            )
        )

    def handle_error(self, record: logbook.LogRecord, exc_info: Any) -> None:
        del record
        if not self._failed:
            self._failed = True
            _warn(f"a log record could not be handed to logging: {describe(exc_info[1])}")


def _stdlib_level(level: int) -> int:
    return _TO_STDLIB.get(level) or (_STDLIB_TRACE if level < logbook.DEBUG else logging.CRITICAL)


_to_stdlib = _ToStdlib()
_attached: set[str] = set()  # the modules whose Loggers have it; under _setups_lock


def tree_started(source: object) -> None:
    """A tree of ``source`` (a manifest or a spec) starts: its records must reach someone.

    Its secrets are masked in the records of every setup active now and of the
    standard library's way, and that way is attached to every jobvisor Logger
    loaded by now. A manifest's ``logging:`` block is only applied by
    ``configure_logging``: when it is not the default and no setup is active, that is said.
    """
    secrets = getattr(source, "secrets", None) or ()
    with _setups_lock:
        for logger in _module_loggers(_attached):
            if _to_stdlib not in logger.handlers:
                logger.handlers.append(_to_stdlib)
        setups = list(_setups)
    secrets = list(secrets)
    _to_stdlib.masker.add_all(secrets)
    for setup in setups:
        setup.masker.add_all(secrets)
    block = getattr(source, "logging", None)
    if not setups and isinstance(block, LoggingSpec) and block != LoggingSpec():
        log.warning(
            "the manifest's logging: block ({}) is not applied by start_tree: to apply it, "
            "call supervision.configure_logging(manifest) before start_tree",
            _block_text(block),
        )


def _block_text(block: LoggingSpec) -> str:
    default = LoggingSpec()
    return ", ".join(
        f"{name}: {getattr(block, name)}"
        for name in ("level", "file", "format", "rotate")
        if getattr(block, name) != getattr(default, name)
    )


def _gating(handler: _LineHandler) -> Callable[[], None]:
    """Make ``handler`` the gate; return the undo, which restores the one before."""
    global _gate
    before, _gate = _gate, handler

    def undo() -> None:
        global _gate  # noqa: PLW0603
        if _gate is handler:
            _gate = before

    return undo


def _closing(handler: logbook.Handler) -> Callable[[], None]:
    def undo() -> None:
        handler.pop_application()
        handler.close()

    return undo


def _set_group_level(threshold: int | None) -> Callable[[], None]:
    """Adopt jobvisor's Loggers into ``LOGGERS`` and set its level; return the undo."""
    adopted: list[logbook.Logger] = []
    for logger in _module_loggers():
        if logger.group is None:
            LOGGERS.add_logger(logger)
            adopted.append(logger)
    before = (LOGGERS.level, LOGGERS.disabled)
    _group_level(threshold)

    def undo() -> None:
        LOGGERS.level, LOGGERS.disabled = before
        _shortcut(None if before[1] else before[0])
        for logger in adopted:
            if logger.group is LOGGERS:
                _unshortcut(logger)
                LOGGERS.remove_logger(logger)

    return undo


def _group_level(threshold: int | None) -> None:
    """Set the level of jobvisor's Loggers (``LOGGERS``): None writes nothing."""
    # "none": disabled makes every Logger method return at once; CRITICAL covers log().
    LOGGERS.level = logbook.CRITICAL if threshold is None else threshold
    LOGGERS.disabled = threshold is None
    _shortcut(threshold)


# Each level method of a Logger and the level it logs at.
_LEVEL_METHODS: Final = (
    ("trace", logbook.TRACE),
    ("debug", logbook.DEBUG),
    ("info", logbook.INFO),
    ("notice", logbook.NOTICE),
    ("warning", logbook.WARNING),
    ("warn", logbook.WARNING),
    ("error", logbook.ERROR),
    ("exception", logbook.ERROR),
    ("critical", logbook.CRITICAL),
)


def _quiet(*args: object, **kwargs: object) -> None:
    """Stands in for a Logger method below the configured level: nothing to check, no record."""
    del args, kwargs


# What a Logger method below the level is: ``log.trace is QUIET`` skips building the record's
# arguments (an ``extra`` dict) and the call, which a crash loop paid five times a restart.
QUIET: Final = _quiet


def _shortcut(threshold: int | None) -> None:
    """Make each member's methods below ``threshold`` (all for None) the no-op ``_quiet``.

    logbook checks ``disabled`` and ``level`` on every call, each a property
    that asks the group: about 1.4 us per disabled call, paid on every
    restart for the trace and debug records. An instance attribute shadows
    the method, so a disabled call costs one call of an empty function.
    ``log(level, ...)`` keeps logbook's own check.
    """
    for logger in LOGGERS.loggers:
        for name, level in _LEVEL_METHODS:
            if threshold is None or level < threshold:
                logger.__dict__[name] = _quiet
            else:
                logger.__dict__.pop(name, None)


def _unshortcut(logger: logbook.Logger) -> None:
    for name, _ in _LEVEL_METHODS:
        logger.__dict__.pop(name, None)


def _route_stdlib(level: int, setup: LoggingSetup | None = None) -> Callable[[], None]:
    """Forward stdlib records at ``level`` and above into logbook; return the undo.

    ``setup`` keeps the bridge, for its ``retune``.

    Other handlers on the root logger stay: an embedding program keeps its
    own. The root level is set so that a call below ``level`` on a logger
    without its own level creates no record.
    """
    root = logging.getLogger()
    bridge = _StdlibBridge()
    bridge.setLevel(level)
    if setup is not None:
        setup._bridge = bridge
    before = root.level
    root.addHandler(bridge)
    root.setLevel(level)

    def undo() -> None:
        root.removeHandler(bridge)
        root.setLevel(before)
        bridge.close()

    return undo


# Attributes every stdlib LogRecord has; the rest came from ``extra=``.
_STDLIB_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime"}
)


class _StdlibBridge(RedirectLoggingHandler):  # type: ignore[misc]  # logbook has no stubs
    """A stdlib handler that dispatches each record to logbook's handlers."""

    def convert_level(self, level: int) -> int:
        if level < logging.DEBUG:
            return _TRACE
        return int(super().convert_level(level))

    def find_extra(self, old_record: logging.LogRecord) -> dict[str, Any]:
        extra = {k: v for k, v in vars(old_record).items() if k not in _STDLIB_ATTRS}
        if "path" not in extra:
            # A python job's own logging, in its thread: about that child, as every record
            # about a child says (SPEC §5); a child process's lines say it already (h249).
            attempt = current_attempt()
            if attempt is not None:
                extra["path"], extra["attempt"] = attempt.path, attempt.number
        return extra


# -- rendering -----------------------------------------------------------------------------------


class _Render(Protocol):
    def __call__(self, record: logbook.LogRecord, masker: SecretMasker) -> str: ...


@dataclasses.dataclass(slots=True)
class _Fields:
    """One record's parts, each already masked."""

    time: str
    level: str
    channel: str
    message: str
    path: Any
    attempt: Any
    exception: str | None
    extra: dict[str, Any]


def _fields(record: logbook.LogRecord, masker: SecretMasker) -> _Fields:
    extra = {
        key: _mask_value(value, masker)
        for key, value in record.extra.items()
        if key not in _DAMPER_ONLY
    }
    return _Fields(
        time=_timestamp(record.time),
        level=str(record.level_name),
        channel=masker.mask(str(record.channel)),
        message=masker.mask(_message_of(record)),
        path=extra.pop("path", None),
        attempt=extra.pop("attempt", None),
        exception=_exception_of(record, masker),
        extra=extra,
    )


def _message_of(record: logbook.LogRecord) -> str:
    try:
        message = record.message
    except Exception as exc:  # a bad format string must not lose the record
        return f"{record.msg} (this log call could not be formatted: {type(exc).__name__})"
    return message if isinstance(message, str) else str(message)


def _exception_of(record: logbook.LogRecord, masker: SecretMasker) -> str | None:
    try:
        exception = record.formatted_exception
    except Exception as exc:
        exception = f"(the exception could not be formatted: {type(exc).__name__})"
    return None if exception is None else masker.mask(str(exception))


def _mask_value(value: Any, masker: SecretMasker) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return masker.mask(value if isinstance(value, str) else str(value))


# The local zone's offset and its "+HH:MM", for the quarter hour of UTC they were found in:
# every zone's offset is a whole number of quarter hours, so it can only change at the
# start of one. A log line's time then costs one addition instead of a zone lookup.
_zone: tuple[tuple[int, ...], timedelta, str] = ((), timedelta(0), "")


def _timestamp(when: datetime) -> str:
    """ISO 8601 local time with offset; logbook's naive times are UTC."""
    global _zone  # noqa: PLW0603 - one cache for the process, replaced whole (no lock needed)
    if when.tzinfo is not None:
        return when.astimezone().isoformat(timespec="milliseconds")
    key = (when.year, when.month, when.day, when.hour, when.minute // 15)
    zone = _zone
    if zone[0] != key:
        local = when.replace(tzinfo=UTC).astimezone()
        offset = local.utcoffset() or timedelta(0)
        zone = _zone = (key, offset, local.isoformat()[-6:])
    return (when + zone[1]).isoformat(timespec="milliseconds") + zone[2]


# Not shown as a text line's ``key=value`` pairs: path and attempt come first, a failure's
# error is already in its message, and CLEAN_EXIT and ACTED are for the damper alone.
_FIRST: Final = ("tree", "path", "attempt")
_NOT_PAIRED: Final = frozenset({"tree", "path", "attempt", "failure", *_DAMPER_ONLY})


def _render_text(record: logbook.LogRecord, masker: SecretMasker) -> str:
    """``TIME LEVEL channel: message [path=P attempt=N key=value]``, traceback indented below."""
    line = f"{_timestamp(record.time)} {record.level_name:<8} {record.channel}: "
    # Masked whole: a secret may itself hold a control character. The newlines left are
    # the record's own continuation lines.
    return printable(masker.mask(line + _text_body(record, masker)), keep="\t\n")


def _text_body(record: logbook.LogRecord, masker: SecretMasker) -> str:
    """``message [path=P attempt=N key=value]`` and the traceback, each part masked."""
    line = masker.mask(_message_of(record)).replace("\n", INDENT)
    extra = record.extra
    if extra:
        items = [(key, extra[key]) for key in _FIRST if key in extra]
        items += [(key, value) for key, value in extra.items() if key not in _NOT_PAIRED]
        pairs = [
            f"{key}={_text_value(shown)}"
            for key, value in items
            if (shown := _mask_value(value, masker)) is not None and shown != ""
        ]
        if pairs:
            line += f" [{' '.join(pairs)}]"
    exception = _exception_of(record, masker)
    if exception:
        line += INDENT + exception.replace("\n", INDENT)
    return line


_NEEDS_QUOTES: Final = re.compile(r'[\s"=\[\]]')


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _render_json(record: logbook.LogRecord, masker: SecretMasker) -> str:
    """One JSON object: time, level, channel, message, path, attempt, exception, then extras."""
    f = _fields(record, masker)
    document = {
        "time": f.time,
        "level": f.level,
        "channel": f.channel,
        "message": f.message,
        "path": f.path,
        "attempt": f.attempt,
        "exception": f.exception,
    }
    document.update((k, v) for k, v in f.extra.items() if k not in document)
    return printable_json(masker.mask(json.dumps(document, ensure_ascii=False, default=str)))


_RENDERS: Final[dict[str, _Render]] = {"text": _render_text, "json": _render_json}
_NOTHING: Final = logbook.CRITICAL + 1  # a handler's level that writes no record: level none


class _LineHandler(logbook.Handler):  # type: ignore[misc]  # logbook has no stubs
    """Renders each record at ``level`` and above as one masked line and hands it to a sink.

    Runs on the logging thread; it never raises into it. ``bubble`` is off:
    what it writes goes nowhere else. With a ``damper``, the repeated lines
    of a crash loop are held back and summed up (see ``supervision._damper``).
    """

    def __init__(
        self,
        level: int,
        render: _Render,
        masker: SecretMasker,
        sink: _Sink,
        damper: TreeDampers | None = None,
        *,
        damping: bool = True,
    ) -> None:
        super().__init__(level=level, bubble=False)
        self.render = render  # replaced whole by a retune: a record renders with one or the other
        self._masker = masker
        self._sink = sink
        self._damper = damper
        # Whether the damper holds a loop's repeats now (not at verbose); read without a lock.
        self.damping = damper is not None and damping
        self._damper_lock = _plain_lock()
        # Held from a record's word from the damper to its last line written, by a record and by
        # the teller alike: a record admitted while a summary is written goes after it (it
        # could go before the summary of what led to it). The gate (``held_back``) writes
        # nothing and never waits on it. Patched under gevent: a writer waits cooperatively.
        self._order = threading.RLock()
        self._failed = False  # handle_error reported once
        # While failures are held, a thread that writes their summary when it falls due, though
        # no record comes to carry it; it ends when nothing is held. Under the damper's lock.
        self._teller: threading.Thread | None = None
        self._wake = threading.Event()  # the clock moved (a test's), or the handler closes
        self._closed = False
        # Until when no teller is tried again (monotonic; 0: none failed): one failed to start.
        self._no_teller_until = 0.0

    def emit(self, record: logbook.LogRecord) -> None:
        tree = _current_tree()
        _tag_tree(record, tree)
        if self._damper is None or not self.damping:
            self._write(record)
            return
        with self._order:
            with self._damper_lock:
                summaries, write = _admitted(self._damper.of(tree), record)
                teller = self._new_teller()
            for summary in summaries:
                # What it sums up came before this record: so does its time.
                self._write(_summary_record(summary, before=record.time))
            if write:
                self._write(record)
        if teller is not None:
            self._start_teller(teller)  # not under a lock: under gevent, a start switches

    def forget(self, tree: str | None, path: str) -> None:
        """``path``'s loop is over (``new_story``): write the summary of what it held."""
        if self._damper is None:
            return
        with self._order:
            with self._damper_lock:
                summaries = self._damper.of(tree).forget(path)
            for summary in summaries:
                self._write(_summary_record(summary))

    def release(self, tree: str) -> None:
        """``tree`` stopped (``tree_stopped``): write what its loops held, and forget them."""
        if self._damper is None:
            return
        with self._order:
            with self._damper_lock:
                summaries = self._damper.release(tree)
            for summary in summaries:
                self._write(_summary_record(summary))

    def _new_teller(self) -> threading.Thread | None:
        """Under the damper's lock: the teller to start, when failures are held and none runs."""
        assert self._damper is not None
        if self._teller is not None or self._closed or not self._damper.holding:
            return None
        if self._no_teller_until and time.monotonic() < self._no_teller_until:
            return None
        self._teller = threading.Thread(
            target=self._tell_when_due, name="jv-log-summaries", daemon=True
        )
        return self._teller

    def _start_teller(self, teller: threading.Thread) -> None:
        """Start ``teller`` (``_new_teller``'s); never raises: it runs on a supervisor's turn.

        Without a thread for it (the host's limit on tasks), what it would tell when due
        comes with the next record instead, or at the end (``sum_up``); a record a while
        later tries again.
        """
        try:
            teller.start()
        except Exception:
            with self._damper_lock:
                if self._teller is teller:
                    self._teller = None
                    self._no_teller_until = time.monotonic() + TELLER_RETRY

    def _tell_when_due(self) -> None:
        damper = self._damper
        assert damper is not None
        while True:
            self._wake.clear()  # before reading the clock: a move after it still wakes us
            with self._order:
                with self._damper_lock:
                    summaries = [] if self._closed else damper.due()
                    due = damper.next_due()
                    if due is None or self._closed:
                        self._teller = None
                for summary in summaries:
                    self._write(_summary_record(summary))
            if due is None or self._closed:
                return
            self._wake.wait(max(0.0, due - damper.now()))

    def takes(self) -> bool:
        """Whether its file or stream would take a record now (see ``log_takes``)."""
        return self._sink.takes()

    def wake(self) -> None:
        """The clock moved: a summary may be due earlier than the teller thought."""
        self._wake.set()

    def damp(self, on: bool) -> None:
        """Hold a crash loop's repeats from now on, or (off: verbose) write every line; what
        was held until now is summed up first."""
        if self._damper is None or on == self.damping:
            return
        with self._order:
            with self._damper_lock:
                self.damping = on
                summaries = [] if on else self._damper.flush()
            for summary in summaries:
                self._write(_summary_record(summary))

    def _write(self, record: logbook.LogRecord) -> None:
        try:
            line = self.render(record, self._masker)
        except Exception as exc:
            channel = self._masker.mask(str(getattr(record, "channel", "?")))
            line = f"(a record on channel {channel} could not be rendered: {type(exc).__name__})"
        self._sink.write(line)

    def handle_error(self, record: logbook.LogRecord, exc_info: Any) -> None:
        """Report an unexpected failure once; logbook's default prints a traceback per record."""
        del record
        if not self._failed:
            self._failed = True
            _warn(f"a log record could not be written: {describe(exc_info[1])}")

    def sum_up(self) -> None:
        """Write the summary of every loop held back, now."""
        if self._damper is None:
            return
        with self._order:
            with self._damper_lock:
                summaries = self._damper.flush()
            for summary in summaries:
                self._write(_summary_record(summary))

    def close(self) -> None:
        if self._damper is not None:
            with self._damper_lock:
                self._closed = True
                teller = self._teller
            self._wake.set()
            # Not one that never started (no thread for it; or made, not started yet: it
            # finds the handler closed and ends).
            if (
                teller is not None
                and teller is not threading.current_thread()
                and teller.ident is not None
            ):
                teller.join(5.0)
            self.sum_up()
        self._sink.close()


# How long after a teller could not start (no thread to be had) the next one is tried.
TELLER_RETRY: Final = 1.0
# Seconds between looks at a held rotation (``_FileSink._held_back``): is it due, can it go on?
HELD_LOOK: Final = 1.0

_DIGITS: Final = re.compile(r"\d+")


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _kind(record: logbook.LogRecord) -> tuple[Any, ...]:
    """What makes two records the same line for the damper: all but their counters.

    Numbers inside text arguments count as counters too: an output line's
    prefix names its attempt (``crash[412]``).
    """
    return (record.channel, record.level, str(record.msg), _text_args(record.args))


# Text arguments known to hold no counter: a crash loop repeats the same path and error on
# every restart, and the gate asks for them twice per restart. A text with a counter changes
# from one record to the next, so it is never kept. Bounded in count and in size: a job's
# output lines pass here too, and one may be long.
_no_counter: set[str] = set()
_NO_COUNTER_MAX: Final = (1024, 256)  # texts kept, characters per text


# A tuple, not ``int | float``: the union was built again for each argument of each record.
_NUMBERS: Final = (int, float)


def _text_args(args: Any) -> tuple[str, ...]:
    out = []
    for arg in args or ():
        if isinstance(arg, _NUMBERS):
            continue
        text = arg if type(arg) is str else str(arg)
        if text not in _no_counter:
            masked = _DIGITS.sub("#", text)
            if masked != text:
                text = masked
            elif len(_no_counter) < _NO_COUNTER_MAX[0] and len(text) <= _NO_COUNTER_MAX[1]:
                _no_counter.add(text)
        out.append(text)
    return tuple(out)


# The active setup's line handler, while it damps crash loops: see ``held_back``.
_gate: _LineHandler | None = None


def held_back(  # noqa: PLR0917 - the parts of the log call it stands in for, in its order
    logger: logbook.Logger,
    level: int,
    path: str,
    msg: str,
    args: tuple[Any, ...],
    failure: str | None = None,
    *,
    clean: bool = False,
    restart: bool = False,
    delay: float = 0.0,
    tree: str | None = None,
) -> bool:
    """Whether the log holds this record back (a crash loop's repeated line): then skip it.

    For the supervisor's lines of every crash: asked before the record is
    made, because making and dispatching a logbook record costs far more than
    the damper's answer, and in a crash loop the answer is "hold" for nearly
    every one. Counted as held when so, exactly as if it had been logged. Only
    while our handler is the first to see records (a handler pushed after the
    setup, such as a test's capture, sees every record). ``tree``: the id of the
    tree whose supervisor asks (else worked out from the thread's name).
    """
    handler = _gate
    if handler is None or not handler.damping or level < handler.level:
        return False
    for top in logbook.Handler.stack_manager.iter_context_objects():
        if top is not handler:
            return False
        break
    damper = handler._damper
    assert damper is not None
    if clean:
        failure = CLEAN
    # A failure held back is counted by its error alone: its kind (which masks the counters of
    # every text argument) is only worked out for the other lines.
    kind = None if failure is not None else (logger.name, level, msg, _text_args(args))
    if tree is None:
        tree = _current_tree()
    with handler._damper_lock:
        if not damper.of(tree).hold(
            path, kind, failure, damper.now(), restart=restart, delay=delay
        ):
            return False
        # the first failure held may come this way; none while one runs (every other time)
        teller = None if handler._teller is not None else handler._new_teller()
    if teller is not None:
        handler._start_teller(teller)
    return True


def new_story(path: str, *, tree: str | None = None) -> None:
    """A person starts the child at ``path`` again: its crash loop, if the log was damping one,
    is over (what was held is summed up now), and its next failures are written in full.

    Told directly, not carried by a record: the "start requested" line may be below the
    configured level, while the failures after it are not. ``tree``: the id of the tree whose
    supervisor tells (else worked out from the thread's name).
    """
    if tree is None:
        tree = _current_tree()  # told by its supervisor, in the tree's own thread
    handler = _gate
    if handler is not None:
        handler.forget(tree, path)
    _to_stdlib.forget(tree, path)


def tree_stopped(tree: str) -> None:
    """The tree ``tree`` (its id) ended, its root's end whatever caused it (a stop, a kill, an
    escalation): what the log held of its loops is summed up now, and its damping state goes
    (a process may start and stop trees all day)."""
    _running_trees.discard(tree)  # first: a late record of it must not make a damper again
    _tree_names.pop(tree, None)
    with _setups_lock:
        handlers = [setup._handler for setup in _setups if setup._handler is not None]
    for handler in handlers:
        handler.release(tree)
    _to_stdlib.release(tree)


def tree_begins(tree: str, name: str = DEFAULT_TREE_NAME) -> None:
    """The tree ``tree`` (its id) starts: its records get a damper of their own, until
    ``tree_stopped``; and, while more than one tree runs or its root is not named
    ``root``, its root's ``name`` as ``tree=`` (two trees' ``ingest`` look alike otherwise)."""
    _running_trees.add(tree)
    _tree_names[tree] = name


def _tag_tree(record: logbook.LogRecord, tree: str | None) -> None:
    """Give ``record`` of ``tree`` its ``tree=`` where the name tells trees apart."""
    if tree is None:
        return
    name = _tree_names.get(tree)
    if name is not None and (name != DEFAULT_TREE_NAME or len(_tree_names) > 1):
        record.extra.setdefault("tree", name)


def _current_tree() -> str | None:
    """The id of the tree whose task runs now, or None: a tree's actors run in tasks named
    ``jv-TREE-PATH`` (``start_incarnation``), and its records are about its own jobs.

    Worked out once per thread (greenlet): a crash loop asks about three times a restart,
    and parsing the name each time cost 1.2-1.9 us. A task's tree never changes: a pooled
    thread serves only its tree's pool (``actors._job``), renamed within it.
    """
    here = _here or _new_here()
    try:
        tree: str | None = here.tree
    except AttributeError:
        tree = here.tree = _tree_of(_task_name())
    return tree


_here: Any = None  # a thread-local (greenlet-local under gevent) of ``_current_tree``'s


def _new_here() -> Any:
    global _here  # noqa: PLW0603 - made once, at the first record, when the runtime is known
    if active_runtime() == "gevent":
        from gevent.local import local  # noqa: PLC0415 - only under the gevent runtime

        _here = local()
    else:
        _here = threading.local()
    return _here


def _task_name() -> object:
    """The name of the running task: under gevent a ``start_task`` greenlet's own, else the
    ``threading.Thread`` it runs (a readiness probe's, a ray watch's: its greenlet is only
    ``Greenlet-N``)."""
    task = current_task()
    name = getattr(task, "name", None)
    if isinstance(task, threading.Thread) or (type(name) is str and name.startswith("jv-t")):
        return name
    # Not threading.current_thread(): for a bare greenlet it would make a dummy Thread.
    active: dict[int, threading.Thread] = getattr(threading, "_active", {})
    thread = active.get(threading.get_ident())
    return name if thread is None else thread.name


def _tree_of(name: object) -> str | None:
    if type(name) is not str or not name.startswith("jv-t"):
        return None
    tree, dash, _ = name[3:].partition("-")
    return tree if dash and tree[1:].isdigit() else None


def _admitted(damper: CrashLoopDamper, record: logbook.LogRecord) -> tuple[list[Summary], bool]:
    """``damper``'s word on ``record`` (its lock held): summaries before it, whether to write it."""
    extra = record.extra
    path, failure = extra.get("path"), extra.get("failure")
    delay = extra.get(RESTARTED)
    restart = type(delay) is float
    return damper.admit(
        path if isinstance(path, str) else None,
        _kind(record),
        CLEAN if extra.get(CLEAN_EXIT) is True else _text_or_none(failure),
        acted=extra.get(ACTED) is True,
        restart=restart,
        delay=delay if restart else 0.0,
        escalation=extra.get(ESCALATED) is True,
    )


def _summary_record(summary: Summary, before: datetime | None = None) -> logbook.LogRecord:
    record = logbook.LogRecord(
        "supervision", logbook.WARNING, summary.text(), extra={"path": summary.path}
    )
    now = datetime.now(UTC)  # logbook stamps a record only when a Logger makes it
    if before is not None:
        now = min(now, before if before.tzinfo is not None else before.replace(tzinfo=UTC))
    record.time = now
    return record


# -- sinks -----------------------------------------------------------------------------------


class _Sink(Protocol):
    def takes(self) -> bool: ...
    def write(self, line: str) -> None: ...
    def close(self) -> None: ...


def _warn(text: str) -> None:
    """Tell the person running jobvisor, on stderr, that logging is in trouble.

    Through the log's writer when records go to stderr that way (``_StreamSink``): in
    order with them, and never waiting for a reader who stopped reading.
    """
    stream = sys.stderr
    if stream is None:
        return
    for sink in _writers:
        if sink.stream is stream:
            sink.say(f"jobvisor: {text}")
            return
    try:
        stream.write(f"jobvisor: {text}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def _on_stderr(level: int, text: str) -> None:
    del level  # stderr has none
    _warn(text)


# What to do about a write that failed, by its errno (``reason``).
_ADVICE: Final[dict[int, str]] = {
    errno.ENOSPC: "free space on its file system",
    errno.EDQUOT: "free space, or raise the disk quota",
    errno.EFBIG: "the file size limit (RLIMIT_FSIZE) is reached: raise it",
    errno.EROFS: "its file system is mounted read-only: remount it read-write",
    errno.EACCES: "check the permissions of the file and its directories",
    errno.EPERM: "check the permissions of the file and its directories",
    errno.ENOTDIR: "something that is not a directory is in its path: remove it",
    errno.EISDIR: "a directory is where the file goes: remove it",
    errno.EIO: "an I/O error: check the disk",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n, LimitNOFILE=)",
    errno.ENFILE: "the system is out of open files",
}


def reason(exc: BaseException) -> str:
    """Why a file could not be written, for a person: ``No space left on device (free space
    on its file system)``, not an exception's repr; ours (``JobvisorError``) say it already."""
    if isinstance(exc, OSError) and exc.strerror:
        advice = _ADVICE.get(exc.errno) if exc.errno is not None else None
        return f"{exc.strerror} ({advice})" if advice else exc.strerror
    return describe(exc)


class _Trouble:
    """Reports a run of write failures once, and the recovery from it once.

    ``target`` names what is written (``the log file PATH``), ``lost`` what a failed
    write loses (``log records``, a job's ``output lines``). ``say(level, text)`` tells
    it (default: stderr, for the log's own trouble). ``settle``: a recovery is told
    only once writes went on succeeding that many seconds (with the next write after
    that, or the next failure): a full disk that a rotation frees, and the next lines
    fill again, is one trouble, not a pair of lines per rotation; the failures between
    are counted in the recovery's line. Any thread; one object may serve several
    writers (a job's attempts).

    ``logged``: what a failed write misses goes to the log instead (a job's output
    lines, unless ``log: false``); each failure may say otherwise (``taken``: the log
    itself failed too, or does not write from their level), and then they are counted
    as dropped: the recovery's line says which went where, never that the log has
    what it does not.
    """

    def __init__(
        self,
        target: str,
        lost: str = "log records",
        *,
        logged: bool = False,
        say: Callable[[int, str], None] = _on_stderr,
        settle: float = 0.0,
    ) -> None:
        self.target = target
        self.lost = lost
        self.logged = logged
        self.say = say
        self.settle = settle
        self._lock = _plain_lock()  # never held while saying (a log call may switch greenlets)
        # Invariants under _lock: ``troubled`` from a failure until its recovery is told;
        # ``dropped`` counts what failed writes lost meanwhile, ``to_log`` what went to the
        # log instead; ``_writable_since`` is when writes last began to succeed again (None:
        # the last one failed); ``_relapses`` counts failures after such a start, before the
        # recovery was told. ``since`` and ``first``: when the trouble began (wall clock) and
        # why; ``gap``: the last trouble told over, in one line, in the past tense.
        self.troubled = False
        self.dropped = 0
        self.to_log = 0
        self._writable_since: float | None = None
        self._relapses = 0
        self.since = ""
        self.first = ""
        self.gap = ""

    def failed(self, exc: BaseException, count: int = 1, *, taken: bool | None = None) -> None:
        """A write (or an open, ``count`` 0) failed, losing ``count`` records or lines
        (``taken``: to the log instead; default ``logged``)."""
        taken = self.logged if taken is None else taken
        now = time.monotonic()
        said: list[tuple[int, str]] = []
        with self._lock:
            if self.troubled and self._settled(now):
                said.append(self._recovery())  # it stayed writable: that was told late
            if not self.troubled:
                self.troubled = True
                self.first = reason(exc)
                self.since = datetime.now().astimezone().isoformat(timespec="seconds")
                if taken:
                    fate = "go to the log only"
                elif self.logged:
                    fate = "are dropped (the log does not take them either)"
                else:
                    fate = "are dropped"
                text = f"cannot write {self.target}: {self.first}; "
                text += f"{self.lost} {fate} until it is writable again"
                said.append((logbook.WARNING, text))
            elif self._writable_since is not None:
                self._relapses += 1
            self._writable_since = None
            self._count(count, taken)
        for level, text in said:
            self.say(level, text)

    def missed(self, count: int, *, taken: bool | None = None) -> None:
        """``count`` more lost while the trouble lasts, without a write (its file is not open)."""
        taken = self.logged if taken is None else taken
        with self._lock:
            if self.troubled:
                self._count(count, taken)

    def _count(self, count: int, taken: bool) -> None:
        if taken:
            self.to_log += count
        else:
            self.dropped += count

    def succeeded(self) -> None:
        if not self.troubled:  # read without the lock: the healthy path costs nothing more
            return
        now = time.monotonic()
        with self._lock:
            if not self.troubled:
                return
            if self._writable_since is None:
                self._writable_since = now
            said = self._recovery() if self._settled(now) else None
        if said is not None:
            self.say(*said)

    def _settled(self, now: float) -> bool:
        since = self._writable_since
        return since is not None and now - since >= self.settle

    def _recovery(self) -> tuple[int, str]:
        """Under the lock: the trouble is over; the line that says so."""
        dropped, to_log, relapses = self.dropped, self.to_log, self._relapses
        self.troubled, self.dropped, self.to_log, self._relapses = False, 0, 0, 0
        self._writable_since = None
        if to_log or (not dropped and self.logged):
            tail = f"{to_log} {self.lost} went to the log only"
            if dropped:
                tail += f" and {dropped} were dropped (the log did not take them either)"
        else:
            tail = f"{dropped} {self.lost} were dropped"
            if self.logged:
                tail += " (the log did not take them either)"
        if relapses:
            times = "time" if relapses == 1 else "times"
            tail += (
                f" (it failed again {relapses} more {times} before it stayed writable "
                f"for {self.settle:g} s)"
            )
        self.gap = f"could not write {self.target} from {self.since}: {self.first}; {tail}"
        return logbook.INFO, f"{self.target} is writable again; {tail}"


class _Status:
    """A status line to draw (``_StreamSink.show``) waiting in a writer's backlog."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# What a stream's writer keeps for a reader who stopped reading, in characters: about two
# thousand records, seconds of a crash storm; a Ctrl-S or a paused `less` of that long loses
# nothing. Beyond it records are dropped and counted: memory stays bounded, however long
# the pause.
BACKLOG: Final = 256 * 1024
# At the end, how long the writer may go without a byte taken before the rest is given up
# on: a reader that reads, however slowly, gets the last line; one that stopped does not
# hold the exit (and had not taken a byte for that long already: then no wait at all).
STALL: Final = 2.0
CLOSE_AT_MOST: Final = 10.0  # and at most this long in all, for a reader that crawls


class _StreamSink:
    """Writes lines to a text stream (stderr by default).

    On a terminal it may also keep a status line (``show``) below the
    records: each record is written over it, and it is drawn again after.

    A stream a person may stop reading (a pipe, a terminal, a socket: what
    has a file descriptor that is not a regular file's) is written by a
    thread of its own from a bounded backlog, so a record never waits for
    the reader (``| less`` paused, Ctrl-S, a slow ``| tee``): the thread
    that makes it, a supervisor's or the control socket's, goes on. When
    the backlog is full, records are dropped and counted, and the count is
    said in one line where they are missing, once the stream takes writes
    again (``notice`` renders it). ``close`` waits for the backlog to be
    written while the reader reads, not longer (``STALL``). The writer is an
    OS thread under gevent too: a greenlet blocked in a write would block
    them all. It writes the descriptor itself, outside the stream's buffer
    (whose lock, held in a blocked write, would stop the interpreter's exit);
    an error there is the stream's to handle (cli's stderr makes a reader
    gone no error).

    A regular file cannot stop taking writes that way, nor can a stream in
    memory: they are written in place, as each record comes.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._trouble = _Trouble(f"the log stream {getattr(stream, 'name', stream)!s}")
        self._status = ""  # the status line now on the terminal (or after the backlog); "" none
        self.notice: Callable[[int], str] = _dropped_text
        self._fd = _blocking_fd(stream)
        if self._fd is None:
            self._lock = threading.Lock()
            return
        with contextlib.suppress(OSError, ValueError):
            stream.flush()  # what went through the stream's buffer before goes first
        self._encoding = getattr(stream, "encoding", None) or "utf-8"
        start, allocate = _os_threads()
        # Invariants under _mutex (an OS lock, held for a few operations, never across a
        # write): _backlog holds what the writer has not taken yet, in order, an int standing
        # for that many records dropped there; _size is the length of its texts; _dropped
        # counts records dropped since the last item, and while it is not 0 every record is
        # dropped (a gap is one gap: what comes after it waits for the writer to catch up);
        # _idle is True while the writer waits on _wakeup (then held) for work; _put_count
        # counts the items ever put in the backlog, _written those of them the writer is done
        # with (written, or refused by the stream).
        self._mutex = allocate()
        self._backlog: list[str | int | _Status] = []
        self._size = 0
        self._dropped = 0
        self._idle = False
        self._put_count = 0
        self._written = 0
        self._closing = False  # no more records; the writer ends once the backlog is written
        self._abandoned = False  # close gave up on the reader: the rest is dropped
        self._ended = False  # the writer's thread returned
        # When the writer last had bytes taken, or was handed work while it waited for some.
        self._progress = time.monotonic()
        self._wakeup = allocate()
        self._wakeup.acquire()
        try:
            start(self._run, ())
        except RuntimeError:
            # No thread to be had (the host's limit on tasks): written in place, as a file
            # is; a reader who stops reading then holds records up, but none is lost.
            self._fd = None
            self._lock = threading.Lock()
            return
        _writers_changed(add=self)

    def takes(self) -> bool:
        return not self._trouble.troubled

    def show(self, status: str) -> None:
        if self._fd is None:
            with self._lock:
                with contextlib.suppress(OSError, ValueError):
                    self.stream.write(CLEAR_LINE + status)
                    self.stream.flush()
                self._status = status
            return
        with self._mutex:
            self._status = status
            last = self._backlog[-1] if self._backlog else None
            if isinstance(last, _Status):
                last.text = status  # a redraw not drawn yet is replaced, never queued after it
            else:
                self._backlog.append(_Status(status))
                self._put_count += 1
            self._wake()

    def write(self, line: str) -> None:
        self._put(line, record=True)

    def say(self, text: str) -> None:
        """A line of jobvisor's own (a verdict, a warning): in order with the records, never
        dropped for the backlog's bound, and never waiting for the reader either."""
        self._put(text, record=False)

    def _put(self, line: str, *, record: bool) -> None:
        if self._fd is None:
            self._write_in_place(line)
            return
        with self._mutex:
            if self._abandoned:
                return
            text = line + "\n"
            if self._status:
                text = CLEAR_LINE + text + self._status  # one write: the two never interleave
            if record and (self._dropped or (self._size and self._size + len(text) > BACKLOG)):
                self._dropped += 1
                return
            if self._dropped:
                self._backlog.append(self._dropped)
                self._dropped = 0
            self._backlog.append(text)
            self._size += len(text)
            self._put_count += 1
            self._wake()

    def _wake(self) -> None:
        """Under _mutex: the writer, if it waits for work."""
        if self._idle:
            self._idle = False
            self._progress = time.monotonic()  # a stall is counted from here, not from idling
            self._wakeup.release()

    def _write_in_place(self, line: str) -> None:
        with self._lock:
            text = line + "\n"
            if self._status:
                text = CLEAR_LINE + text + self._status  # one write: the two never interleave
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                self._trouble.failed(exc)
            else:
                self._trouble.succeeded()

    def flush(self) -> None:
        """Wait until what was written before is on the stream, while the reader reads
        (``STALL``): before a line the program writes to the same terminal another way."""
        if self._fd is None:
            return
        with self._mutex:
            target = self._put_count
        self._wait(lambda: self._written >= target)

    def close(self) -> None:
        """Write what is left while the reader takes it, then end the writer. The stream
        belongs to the caller: it stays open."""
        if self._fd is None:
            return
        with self._mutex:
            if self._closing:
                return
            self._closing = True
            if self._dropped:  # said last, where they are missing
                self._backlog.append(self._dropped)
                self._dropped = 0
            self._wake()
        _writers_changed(remove=self)
        if not self._wait(lambda: self._ended):
            with self._mutex:
                self._abandoned = True  # a write that returns some day drops the rest

    def _wait(self, done: Callable[[], bool]) -> bool:
        """Whether ``done()`` came true before the writer went ``STALL`` seconds without a
        byte taken (or ``CLOSE_AT_MOST`` passed). Short naps: it is asked once or twice in a
        process's life, and a nap lets the other greenlets run under gevent."""
        until = time.monotonic() + CLOSE_AT_MOST
        nap = 0.001
        while not done():
            now = time.monotonic()
            if now - self._progress >= STALL or now >= until:
                return False
            time.sleep(nap)
            nap = min(2 * nap, 0.05)
        return True

    # -- the writer's thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        finally:
            self._ended = True

    def _turn(self) -> bool:
        """Write what the backlog holds, or wait for more; False: the writer ends."""
        with self._mutex:
            items, self._backlog, self._size = self._backlog, [], 0
            taken = self._put_count
            if self._dropped:  # the gap ends here: what comes next has room again
                items.append(self._dropped)
                self._dropped = 0
            if not items:
                if self._closing or self._abandoned:
                    return False
                self._idle = True
        if not items:
            self._wakeup.acquire()
            return True
        # A write at most a pipe's atomic size, cut between records: another writer of the
        # pipe (a job sharing our stderr) never lands inside one, and a reader that reads, if
        # slowly, is seen to (``STALL``).
        chunk: list[bytes] = []
        size = 0
        for item in items:
            if isinstance(item, str):
                text = item
            elif isinstance(item, _Status):
                text = CLEAR_LINE + item.text
            else:
                text = self._notice_line(item)
            data = text.encode(self._encoding, "backslashreplace")
            if size and size + len(data) > select.PIPE_BUF:
                self._send(b"".join(chunk))
                chunk.clear()
                size = 0
            chunk.append(data)
            size += len(data)
        self._send(b"".join(chunk))
        self._written = taken  # one writer: no lock needed to move it on
        return not self._abandoned

    def _notice_line(self, count: int) -> str:
        try:
            line = self.notice(count)
        except Exception:
            line = _dropped_text(count)
        return line + "\n"

    def _send(self, encoded: bytes) -> None:
        data = memoryview(encoded)
        fd = self._fd
        assert fd is not None
        while data and not self._abandoned:
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                # Someone made the descriptor non-blocking (a job, on the stderr it shares):
                # wait until it takes writes, as a blocking write would.
                _os_select()([], [fd], [], 1.0)
                continue
            except OSError as exc:
                if not self._abandoned:  # else the stream may be closed by now: not ours to use
                    self._through_the_stream(data.tobytes().decode(self._encoding, "replace"), exc)
                return
            data = data[written:]
            with self._mutex:
                self._progress = time.monotonic()
        if self._trouble.troubled:
            self._trouble.succeeded()

    def _through_the_stream(self, text: str, error: OSError) -> None:
        """The descriptor refused ``text`` (EPIPE: the reader is gone; EIO): the stream says
        what that means, as when it is written in place (cli's stderr takes a reader gone
        for no error, and is /dev/null from then on)."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._trouble.failed(exc)
        except Exception:
            self._trouble.failed(error)
        else:
            self._trouble.succeeded()


# The stream sinks that have a writer's thread, for ``_warn``: replaced whole (read
# without a lock, from any thread) under _writers_lock.
_writers: tuple[_StreamSink, ...] = ()
_writers_lock = _plain_lock()


def _writers_changed(*, add: _StreamSink | None = None, remove: _StreamSink | None = None) -> None:
    global _writers  # noqa: PLW0603 - one tuple for the process, replaced whole
    with _writers_lock:
        kept = tuple(sink for sink in _writers if sink is not remove)
        _writers = (add, *kept) if add is not None else kept  # the newest first


def _dropped_line(handler: _LineHandler, count: int) -> str:
    """The line that says ``count`` records were dropped, as ``handler`` renders a record."""
    record = logbook.LogRecord(
        "supervision.logging",
        logbook.WARNING,
        "{} log records dropped: the log's reader did not keep up",
        args=(count,),
    )
    record.time = datetime.now(UTC)  # logbook stamps a record only when a Logger makes it
    return handler.render(record, _NO_SECRETS)


_NO_SECRETS: Final = SecretMasker()  # the count's line holds none


def _notice_line(handler: _LineHandler | None, level: int, text: str) -> str:
    """``text``, jobvisor's word about its log file, as ``handler`` renders a record."""
    record = logbook.LogRecord("supervision.logging", level, "{}", args=(text,))
    record.time = datetime.now(UTC)  # logbook stamps a record only when a Logger makes it
    if handler is None:
        return _render_text(record, _NO_SECRETS)
    return handler.render(record, handler._masker)


def log_takes(level: int) -> bool:
    """Whether a record at ``level`` gets into jobvisor's log now: the active setup (the
    newest) writes from that level and its file or stream is not failing. With no setup,
    the program's own logging has it, as far as jobvisor can tell."""
    with _setups_lock:
        setup = _setups[-1] if _setups else None
    if setup is None:
        return True
    handler = setup._handler
    if handler is None or setup._closed:
        return False  # level none
    return level >= handler.level and handler.takes()


def _dropped_text(count: int) -> str:
    return f"jobvisor: {count} log records dropped: the log's reader did not keep up"


def _blocking_fd(stream: TextIO) -> int | None:
    """The descriptor to write ``stream`` through a writer thread; None: write it in place.

    A regular file, a stream without a descriptor (in memory, a test's capture) and a
    non-blocking one (it drops what it cannot write: cli's pipe to a detached daemon's
    launcher) never hold a record up.
    """
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
        blocking = os.get_blocking(fd)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    if stat.S_ISREG(mode) or not blocking:
        return None
    return fd


def _os_threads() -> tuple[Callable[..., object], Callable[[], Any]]:
    """``start_new_thread`` and ``allocate_lock`` of the OS, also under gevent."""
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        return (
            monkey.get_original("_thread", "start_new_thread"),
            monkey.get_original("_thread", "allocate_lock"),
        )
    return _thread.start_new_thread, _thread.allocate_lock


def _os_select() -> Callable[..., Any]:
    """``select.select`` of the OS, for a writer's thread (gevent's is for greenlets)."""
    if active_runtime() == "gevent":
        from gevent import monkey  # noqa: PLC0415 - only under the gevent runtime

        return monkey.get_original("select", "select")  # type: ignore[no-any-return]
    return select.select


class _FileSink:
    """Appends lines to a file; rotates it by size and/or time; reopens it if it is moved.

    Each line is one unbuffered ``write`` (``O_APPEND``), so a crash loses
    nothing written and lines from threads never interleave. Before each
    write the path is checked against the open file: if the file was moved
    or deleted (logrotate, a removed directory) it is reopened, creating
    the directory again. Failures are reported once and the record dropped.

    ``output``: the file is a job's output file (``supervision._output``), and
    every message says so; a file that cannot be opened at first raises the
    ``OSError`` itself, for the caller to report, not ``LoggingSetupError``
    (whose advice is about ``--log-file``). ``trouble`` reports its write
    failures (one for a job's every attempt: ``supervision._output``), and
    ``dirs`` are the directories on its way, each checked at every open.

    A write the disk cut off (ENOSPC after part of it) leaves half a line: the
    next write starts on a new line, never glued onto it.

    A file of ours that another program made too open (logrotate's ``create
    0664``) is made 0600 and that is said once, at WARNING: a job's output
    file's in the log (through ``trouble``), the log file's in the log file
    itself, before the next record (``notice`` renders it), and so is a gap
    the log had (its trouble and what it dropped), once it can be written
    again: a detached daemon's stderr, where the trouble was said, is
    /dev/null.

    A size rotation that is due by the bytes written looks at the file's real
    size first: logrotate's ``copytruncate`` may have emptied it meanwhile.
    """

    def __init__(
        self,
        path: Path,
        rotate: RotateSpec | None,
        now: Callable[[], datetime],
        *,
        output: bool = False,
        trouble: _Trouble | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        dirs: tuple[Path, ...] = (),
    ) -> None:
        self._path = path
        # An output file's directories, from the state dir's down to its own: each checked at
        # every open, a reopen after a move included (O_NOFOLLOW guards the file's name only).
        self._dirs = dirs
        self._max_bytes = rotate.max_bytes if rotate is not None else None
        self._when = rotate.when if rotate is not None else None
        self._backups = rotate.backups if rotate is not None else 0
        self._now = now
        self._lock = threading.Lock()
        self._what = "output file" if output else "log file"
        self._output = output
        lost = "output lines" if output else "log records"
        # What to write into the log file itself, before the next record (see above): each
        # a level and a text, rendered then by ``notice`` (configure_logging's handler).
        self.notice: Callable[[int, str], str] = functools.partial(_notice_line, None)
        self._notices: list[tuple[int, str]] = []
        self._trouble = trouble or _Trouble(
            f"the {self._what} {path}",
            lost,
            logged=output,
            say=_on_stderr if output else self._told,
        )
        # The file (st_dev, st_ino) a write was cut off in, ending inside a line; None: none.
        self._torn: tuple[int, int] | None = None
        # Invariants while _file is open: _ident is (st_dev, st_ino) of _file,
        # _size its length, _period_end the first instant of the next period (time rotation).
        self._file: Any = None
        self._ident: tuple[int, int] = (0, 0)
        self._size = 0
        self._period_end: datetime | None = None
        self._held: _RotationHeld | None = None  # a rotation not done (see _rotate)
        self._monotonic = monotonic
        self._look_again = 0.0  # monotonic: when a held rotation is looked at again
        self._closed = False
        try:
            self._open()
        except UnsafePathError:
            raise  # its own line says what is wrong and how to fix it
        except OSError as exc:
            if output:
                raise
            raise LoggingSetupError(path, exc) from exc

    def write(self, line: str) -> None:
        self.write_bytes((line + "\n").encode("utf-8", "backslashreplace"))

    @property
    def troubled(self) -> bool:
        return self._trouble.troubled

    @property
    def is_open(self) -> bool:
        """Whether the file is open: not after a reopen that failed, until one succeeds."""
        return self._file is not None

    def takes(self) -> bool:
        """Whether a record written now would get in: the file is open, or opens now (what
        a write tries first), and did not fail since (a full disk). Asked only when a job's
        output file fails, for what its lines' fate is (``log_takes``)."""
        with self._lock:
            if self._closed:
                return False
            was = self._file
            try:
                self._check_path()
            except OSError:
                return False
            return not self._trouble.troubled or self._file is not was

    def write_bytes(self, data: bytes, *, taken: Callable[[], bool] | None = None) -> bool:
        """Append ``data`` (whole lines) in one write, rotating first if it is due; whether
        it was written. ``taken``, asked if it was not: whether what it holds gets into the
        log all the same (a job's output lines; default: its trouble's ``logged``)."""
        with self._lock:
            if self._closed:
                return False
            try:
                self._check_path()
                # Not in a state dir that went: a rotation renames by path, there or here.
                if (
                    not self._held_back()
                    and self._rotation_due(len(data))
                    and gone_dir(self._path) is None
                ):
                    self._rotate()
                payload = self._rendered_notices() + data if self._notices else data
                # Cut off in this very file (not rotated away since): a line of its own.
                self._write_all(b"\n" + payload if self._torn == self._ident else payload)
            except OSError as exc:
                # A job's output is counted in lines (each write holds whole ones), a log in
                # records (one a write, though a record may hold several lines).
                count = data.count(b"\n") if self._output else 1
                self._trouble.failed(exc, count, taken=None if taken is None else taken())
                return False
            self._notices.clear()
            self._torn = None
            self._trouble.succeeded()
            if self._notices:  # the recovery, with the gap it ends: after the record that ended it
                self._write_notices()
            return True

    def _told(self, level: int, text: str) -> None:
        """The log file's trouble, or its end: on stderr; its end, with the whole gap, in the
        file too (its writer's lock held)."""
        _on_stderr(level, text)
        if level < logbook.WARNING and self._trouble.gap:
            self._notices.append((logbook.WARNING, self._trouble.gap))

    def _tighten(self, mode: int) -> None:
        """``_open`` made the file 0600 from ``mode`` (its writer's lock held)."""
        text = loosened(self._path, mode)
        if self._output:
            self._trouble.say(logbook.WARNING, text)
        else:
            self._notices.append((logbook.WARNING, text))

    def _rendered_notices(self) -> bytes:
        lines = []
        for level, text in self._notices:
            try:
                lines.append(self.notice(level, text))
            except Exception:
                lines.append(f"jobvisor: {text}")
        return "".join(line + "\n" for line in lines).encode("utf-8", "backslashreplace")

    def _write_notices(self) -> None:
        data = self._rendered_notices()
        count = len(self._notices)
        self._notices.clear()
        try:
            self._write_all(data)
        except OSError as exc:
            self._trouble.failed(exc, count)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._discard()

    def _open(self) -> None:
        # 0600 and never through a symlink (it may sit in a shared directory such as /tmp);
        # a file others can write, a FIFO, or a log file in a directory others could swap
        # is refused (UnsafePathError, an OSError: after a rotation it is reported once like
        # any file that cannot be opened). An output file's directories are the state dir's,
        # checked at the start, and each made private (supervision._output).
        if not self._output:
            check_parents(self._path, self._what, "--log-file")
        if self._dirs:
            for directory in self._dirs:
                ensure_private_dir(directory, "output directory")
        else:
            make_dirs(self._path.parent, f"{self._what}'s directory")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        file = open_private_file(self._path, flags, self._what, tighten=self._tighten)
        try:
            st = os.fstat(file.fileno())
        except OSError:
            file.close()
            raise
        self._file = file
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        if self._when is not None:
            current = self._now()
            if st.st_size > 0:  # a file left from an earlier run belongs to its last write's period
                current = min(current, datetime.fromtimestamp(st.st_mtime, current.tzinfo))
            self._period_end = _next_boundary(current, self._when)

    def _discard(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def _check_path(self) -> None:
        if self._file is not None:
            try:
                st = self._path.stat()
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != self._ident:
                if gone_dir(self._path) is not None:
                    return  # went with its state dir: written on there, nothing made here
                self._discard()
        if self._file is None:
            self._open()

    def _rotation_due(self, incoming: int) -> bool:
        max_bytes = self._max_bytes
        if max_bytes is not None and self._size > 0 and self._size + incoming > max_bytes:
            # Counted, not looked at: logrotate's copytruncate may have emptied the file since
            # (O_APPEND writes then go on at its new end). One fstat, only when it says rotate.
            self._size = os.fstat(self._file.fileno()).st_size
            if self._size > 0 and self._size + incoming > max_bytes:
                return True
        return self._period_end is not None and self._now() >= self._period_end

    def _rotate(self) -> None:
        """``file`` -> ``file.1`` -> ... -> ``file.N``; the oldest beyond ``backups`` is deleted.

        Only files of ours are removed, moved or replaced: a backup another user owns
        (planted in a shared directory such as /tmp, where a non-root rename of it fails
        and root's would destroy it) stops the rotation before any step, and one beyond
        ``backups`` is left alone. A rotation stopped so, or by a step that fails, is said
        once, naming the file that stopped it and what to do, and the file at the path
        goes on being written (past its size or period: nothing is dropped). A directory
        jobvisor cannot write (its mode, a read-only mount, an immutable flag) fails every
        step: it is named then, not the step's file. It is tried again once that file
        changes or goes (the directory: once it can be written), or a whole rotation later
        (another ``max_bytes``, the next period), looked at once a second at most; the one
        that works is said too.
        """
        held = self._held
        if held is not None and not self._retry_due(held):
            return
        blocked = self._foreign_backup()
        fix = "remove it (its owner or root can)"
        directory = self._path.parent
        if blocked is None:
            self._discard()
            try:
                self._shift()
            except _StepFailed as exc:
                # A directory we cannot write fails every step, whatever file it names:
                # the destination a rename blames is not even there.
                if not _writable(directory):
                    blocked = (
                        directory,
                        f"its directory {directory} cannot be written ({exc.strerror})",
                    )
                else:
                    blocked = (exc.path, exc.why)
                    fix = f"move {exc.path} out of the way"
            finally:
                self._open()  # the new file, or the same one when a step failed
        if blocked is None:
            if held is not None:
                self._held = None
                self._say(
                    logbook.INFO,
                    f"the {self._what} {self._path} rotates again: {held.path} no longer stops it",
                )
            return
        path, why = blocked
        self._held = _RotationHeld(
            path,
            _lstat_ident(path),
            self._size,
            _next_boundary(self._now(), self._when) if self._when is not None else None,
            why,
            directory=path == directory,
        )
        self._look_again = self._monotonic() + HELD_LOOK
        if held is None or (held.path, held.why) != (path, why):
            self._say_held(self._held, fix)

    def _say_held(self, held: _RotationHeld, fix: str) -> None:
        """Say that the rotation is held back by ``held``, and what to do (``fix``)."""
        if held.directory:
            fix = (
                f"let the user jobvisor runs as write {held.path} (its mode, owner, a "
                "read-only mount or an immutable flag may stop it)"
            )
            elsewhere = "a directory it can write"
            again = f"{held.path} can be written"
        else:
            elsewhere = "a directory of its own"
            again = f"{held.path} changes"
        if not self._output:
            fix += f", or give the {self._what} {elsewhere}"
        self._say(
            logbook.WARNING,
            f"cannot rotate the {self._what} {self._path}: {held.why}; {fix}; until then "
            f"{self._path} is written on, unrotated (tried again once {again})",
        )

    def _held_back(self) -> bool:
        """Whether a rotation is held and not to be looked at yet: each look (the file's
        size, the state dir, what stopped it) cost three stat calls a write, 14-23 us."""
        if self._held is None:
            return False
        now = self._monotonic()
        if now < self._look_again:
            return True
        self._look_again = now + HELD_LOOK
        return False

    def _retry_due(self, held: _RotationHeld) -> bool:
        if held.directory:
            if _writable(held.path):
                return True
        elif _lstat_ident(held.path) != held.ident:
            return True
        if self._max_bytes is not None and self._size >= held.size + self._max_bytes:
            return True
        return held.period_end is not None and self._now() >= held.period_end

    def _foreign_backup(self) -> tuple[Path, str] | None:
        """The first backup the rotation would move or replace that is not ours, and why."""
        for n in range(1, self._backups + 1):
            backup = self._backup(n)
            try:
                st = os.lstat(backup)
            except FileNotFoundError:
                continue
            except OSError as exc:
                return backup, f"its backup {backup} cannot be looked at: {exc.strerror}"
            if (why := owned_by_another(st)) is not None:
                return backup, (
                    f"its backup {backup} {why.removeprefix('it ')}, and jobvisor never "
                    "removes nor replaces another user's file"
                )
        return None

    def _shift(self) -> None:
        """The rotation's renames and removals; ``_StepFailed`` names the step that failed."""
        for old in self._path.parent.glob(f"{glob.escape(self._path.name)}.*"):
            suffix = old.name.rpartition(".")[2]
            if suffix.isdigit() and int(suffix) > self._backups:
                try:
                    st = os.lstat(old)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    why = f"cannot look at {old}: {exc.strerror}"
                    raise _StepFailed(old, why, exc.strerror or str(exc)) from exc
                if owned_by_another(st) is None:  # another user's is left where it is
                    _step(old, "remove", functools.partial(old.unlink, missing_ok=True))
        for n in range(self._backups - 1, 0, -1):
            older = self._backup(n)
            if os.path.lexists(older):
                _step(older, "move", functools.partial(older.replace, self._backup(n + 1)))
        if self._backups > 0:
            _step(self._path, "move", functools.partial(self._path.replace, self._backup(1)))
        else:
            _step(self._path, "remove", functools.partial(self._path.unlink, missing_ok=True))

    def _say(self, level: int, text: str) -> None:
        """About the file itself, not a write of it (its writer's lock held): a job's output
        file's in the log, the log file's on stderr and in the file, before the next record
        (a detached daemon's stderr is /dev/null)."""
        if self._output:
            self._trouble.say(level, text)
        else:
            _on_stderr(level, text)
            self._notices.append((level, text))

    def _backup(self, n: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{n}")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError(errno.ENOSPC, "the file accepted no bytes")
                view = view[written:]
                self._size += written
        except OSError:
            if len(view) < len(data):  # cut off inside: the file ends inside a line
                self._torn = self._ident
            raise


@dataclasses.dataclass(frozen=True, slots=True)
class _RotationHeld:
    """A rotation not done: the file that stopped it (its ``_lstat_ident`` then), the size of
    the file written on at that moment, the end of the period it fell in, and why."""

    path: Path
    ident: tuple[int, int, int] | None
    size: int
    period_end: datetime | None
    why: str
    directory: bool = False  # ``path`` is the file's directory, which cannot be written


class _StepFailed(Exception):
    """A rotation's step failed: ``path`` is the file it was on, ``why`` says which and why."""

    def __init__(self, path: Path, why: str, strerror: str) -> None:
        super().__init__(why)
        self.path = path
        self.why = why
        self.strerror = strerror


def _step(path: Path, verb: str, do: Callable[[], object]) -> None:
    """Do one step on ``path``; a failure names it, and a rename's destination too, which is
    then taken as what stops it (a directory there, say): the source is ours, checked."""
    try:
        do()
    except OSError as exc:
        strerror = exc.strerror or str(exc)
        if exc.filename2:
            why = f"cannot {verb} {path} to {exc.filename2}: {strerror}"
            raise _StepFailed(Path(exc.filename2), why, strerror) from exc
        raise _StepFailed(path, f"cannot {verb} {path}: {strerror}", strerror) from exc


def _writable(directory: Path) -> bool:
    """Whether jobvisor's user may make and remove names in ``directory``: its mode, and
    for root too a read-only mount or an immutable flag (``access``, as the kernel judges)."""
    return os.access(
        directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    )


def _lstat_ident(path: Path) -> tuple[int, int, int] | None:
    """What tells the file at ``path`` (not what a link there points to) from a later one, or
    from itself given to another owner; None when there is none. Not its times: the file
    written on may be the one watched."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_uid


def _next_boundary(moment: datetime, when: str) -> datetime:
    """The first instant after ``moment`` that starts a new hour (``hourly``) or day (``daily``)."""
    if when == "hourly":
        return moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
