"""The composition root: build logging, breakers and the runtime from a manifest and flags.

This is the one place that wires the pieces together, for the CLI and for
embedded users alike; nothing here is a module-level singleton. ``run``
is the batch mode of ``jobvisor run``: start the tree, wait for the finite
jobs, stop the endless ones, and say how it went.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TextIO

import logbook

from actors import BreakerState, BreakerStatus, JobvisorError, check_runtime, live_tasks
from actors._runtime import start_or_say
from supervision._envfile import loose_dir
from supervision._fdlimit import fit_open_files
from supervision._hangup import off_the_terminal
from supervision._held import lost_line
from supervision._history import JournalError, journal_path, last_row_at, last_run_start, last_ticks
from supervision._hubwatch import HubWatch
from supervision._journal import (
    Journal,
    job_hashes,
    last_breaker_states,
    older_successes,
    once_jobs,
    open_cooldowns,
    read_successes,
    succeeded_before,
)
from supervision._logging import CLEAR_LINE, LoggingSetup, SecretMasker, configure_logging
from supervision._notifier import Notifier
from supervision._output import output_dir
from supervision._spec import ActorSpec, ChildSpec, JobSpec, SupervisorSpec, walk
from supervision._statedir import StateDirLock, StateDirWatch
from supervision._table import columns, flatten_status, summary_table
from supervision._tree import RunResult, Tree, build_breakers, start_tree

log = logbook.Logger("supervision.app")

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from actors import Breaker
    from supervision._httpapi import Endpoint
    from supervision._manifest import Manifest

__all__ = [
    "Composition",
    "RunReport",
    "compose",
    "flatten_status",
    "forced_stop",
    "run_batch",
    "summary_table",
]


@dataclass
class Composition:
    """Everything a run needs, built once from the manifest and the flags."""

    manifest: Manifest
    runtime: str
    logging: LoggingSetup
    masker: SecretMasker
    breakers: dict[str, Breaker] = field(default_factory=dict)
    journal: Journal | None = None
    # `--resume`: once-jobs that succeeded in an earlier run, {path: (code, at)}; they stay
    # in the tree and its status, settled as succeeded, and are not run again.
    succeeded: dict[str, tuple[int | None, float]] = field(default_factory=dict)
    cooldowns: dict[str, tuple[float, int]] = field(default_factory=dict)  # restored ones
    # The persistent jobs' last ticks in the journal, {path: started_at}: see start_tree.
    last_ticks: dict[str, float] = field(default_factory=dict)
    endpoint: Endpoint | None = None  # the HTTP endpoint, when the manifest or --http asks
    notifier: Notifier | None = None
    lock: StateDirLock | None = None  # the state dir's, when it holds it (run): released last
    # `--resume`: once-jobs run again as their successes were journaled by an older jobvisor,
    # whose job identities cannot be matched (``older_successes``), in start order.
    older: list[str] = field(default_factory=list)
    # `--resume`: once-jobs run again as their spec changed since they succeeded in the run it
    # finishes (a success under another hash of this jobvisor's), in start order.
    changed: list[str] = field(default_factory=list)

    def start(self, **kwargs: Any) -> Tree:
        """Start the manifest's tree with this composition's runtime, breakers and journal."""
        if self.journal is not None and "sink" not in kwargs:
            kwargs["sink"] = self.journal.record
        if self.notifier is not None and "on_event" not in kwargs:
            kwargs["on_event"] = self.notifier.handle
        if self.cooldowns and "cooldowns" not in kwargs:
            kwargs["cooldowns"] = self.cooldowns
        if self.succeeded and "succeeded" not in kwargs:
            kwargs["succeeded"] = self.succeeded
        if self.last_ticks and "last_ticks" not in kwargs:
            kwargs["last_ticks"] = self.last_ticks
        kwargs.setdefault("output_dir", output_dir(self.manifest.state_dir))
        # The composition's masker, which a daemon's reload adds a new manifest's secrets to:
        # a job a reload brings must not print them in clear in its output file or the status.
        kwargs.setdefault("mask", self.masker.mask)
        endpoint = self.endpoint
        if endpoint is not None:
            kwargs["sink"] = endpoint.sink(kwargs.get("sink"))
        tree = start_tree(self.manifest, self.runtime, breakers=self.breakers, **kwargs)
        if endpoint is not None:
            endpoint.attach(tree)
        return tree

    @property
    def skipped(self) -> list[str]:
        """The once-jobs `--resume` does not run again (they succeeded before), in start order."""
        return list(self.succeeded)

    def renotify(self, tree: Tree) -> None:
        """After a reload: the new manifest's notifications apply from now on."""
        manifest = self.manifest
        if self.notifier is not None:
            self.notifier.update(manifest.notify, manifest.root)
        elif Notifier.wanted(manifest.notify, manifest.root):
            record = self.journal.notified if self.journal is not None else None
            self.notifier = Notifier(
                manifest.notify, manifest.root, mask=self.masker.mask, record=record
            )
            tree.subscribe(self.notifier.handle)

    def close(self, *, then: Callable[[], None] | None = None) -> None:
        """Close the endpoint, the notifier, the journal (its rows flushed) and the log.

        ``then`` runs once the rest is closed, before the log is: a daemon's last line.
        """
        try:
            if self.endpoint is not None:
                self.endpoint.close()
            # Before the journal: what is still being delivered gets its row.
            if self.notifier is not None:
                self.notifier.close()
        finally:
            try:
                if self.journal is not None:
                    self.journal.close()
            finally:
                try:
                    if then is not None:
                        then()
                finally:
                    try:
                        self.logging.close()
                    finally:
                        if self.lock is not None:
                            self.lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compose(
    manifest: Manifest,
    *,
    runtime: str | None = None,
    log_level: str | None = None,
    log_file: str | None = None,
    stream: TextIO | None = None,
    journal: bool = True,
    resume: bool = False,
    restore: bool = False,
    hold: str | None = None,
) -> Composition:
    """Build logging (with secret masking), breakers and the runtime choice for ``manifest``.

    The manifest's directory goes on ``sys.path`` so ``python:`` jobs can name
    modules that live beside it.

    ``runtime``, ``log_level`` and ``log_file`` override the manifest (the
    CLI's global flags). Raises ``RuntimeSetupError`` if the process was not
    prepared for the runtime, and ``LoggingSetupError`` if the log file
    cannot be opened. With ``manifest.http`` it listens there (``HttpError``
    if it cannot) and serves the tree once started. With ``journal`` it opens
    ``STATE_DIR/journal.sqlite3``
    (``JournalError`` if it cannot); ``resume`` does not run the once-jobs
    whose identical spec already succeeded there: they show as succeeded, with
    the exit the journal kept (``Composition.skipped``); ``restore`` (the daemon) reopens
    the breakers the journal last saw open. With ``journal``, each ``persistent`` job's last
    tick is read from it (``Composition.last_ticks``). ``hold`` (``"run"``) takes the state
    dir's lock first, as the daemon does (``StateDirHeldError`` while another jobvisor holds
    it), and keeps it until the composition closes: one jobvisor per state dir.
    """
    lock = StateDirLock(manifest.state_dir, hold) if hold is not None else None
    try:
        composition = _compose(
            manifest,
            runtime=runtime,
            log_level=log_level,
            log_file=log_file,
            stream=stream,
            journal=journal,
            resume=resume,
            restore=restore,
        )
    except ImportError as exc:
        # A module of jobvisor's own (prometheus_client for --http) found beside the manifest,
        # first on sys.path, and broken: said in one line, not as a traceback.
        if lock is not None:
            lock.close()
        raise ImportSetupError(_import_failed(exc, manifest)) from None
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    composition.lock = lock
    return composition


class ImportSetupError(JobvisorError):
    """A module jobvisor needs to set the tree up could not be imported (one beside the
    manifest has its name, say); the message names it and what to do."""


def _import_failed(exc: ImportError, manifest: Manifest) -> str:
    base = manifest.path.parent if manifest.path is not None else Path.cwd()
    beside: Path | None = None
    frame = exc.__traceback__
    while frame is not None:  # the last of its frames in a file beside the manifest
        where = Path(frame.tb_frame.f_code.co_filename)
        if where.parent == base:
            beside = where
        frame = frame.tb_next
    top = (exc.name or "").split(".")[0]
    if beside is None and top:
        beside = next((p for p in (base / f"{top}.py", base / top) if p.exists()), None)
    name = exc.name or (beside.stem if beside is not None else "a module")
    said = f"could not import {name}: {exc}"
    if beside is None:
        return said
    return (
        f"{said} ({beside} beside the manifest has its name, and the manifest's directory "
        "comes first on sys.path, as python -m's does: rename it)"
    )


def _modules_beside(base_dir: Path) -> str | None:
    """Put ``base_dir`` first on ``sys.path``, where ``python:`` jobs find the modules beside
    their manifest (as `python -m` from there: a job's ``statistics.py`` is its own, not the
    standard library's); why not, if another user could plant one there."""
    text = str(base_dir)
    if text in sys.path:
        return None
    unsafe = loose_dir(base_dir)
    if unsafe is None:
        sys.path.insert(0, text)
    return unsafe


def _is_python(child: ChildSpec) -> bool:
    return isinstance(child, JobSpec) and child.work.kind == "python"


def _compose(
    manifest: Manifest,
    *,
    runtime: str | None,
    log_level: str | None,
    log_file: str | None,
    stream: TextIO | None,
    journal: bool,
    resume: bool,
    restore: bool,
) -> Composition:
    chosen = runtime or manifest.runtime
    check_runtime(chosen)
    masker = SecretMasker(manifest.secrets)
    base_dir = manifest.path.parent if manifest.path is not None else Path.cwd()
    unsafe = _modules_beside(base_dir)
    if manifest.cluster_address or manifest.cluster_namespace:
        from actors._ray import configure_cluster  # noqa: PLC0415 - light; Ray loads on first use

        configure_cluster(
            manifest.cluster_address,
            manifest.cluster_namespace,
            str(base_dir),
            str(manifest.state_dir),  # never shipped with the folder: its journal, its logs
        )
    setup = configure_logging(
        manifest.logging,
        level=log_level,
        file=log_file,
        masker=masker,
        stream=stream,
        base_dir=base_dir,
    )
    if unsafe is not None and any(_is_python(child) for _, child in walk(manifest.root)):
        log.warning(
            "python jobs' modules are not looked for beside the manifest, in {}: {} (or keep "
            "the manifest and its modules in a directory only you can write)",
            base_dir,
            unsafe,
        )
    fit_open_files(manifest.root)
    succeeded: dict[str, tuple[int | None, float]] = {}
    older: list[str] = []
    changed: list[str] = []
    opened: Journal | None = None
    try:
        # A python job's module comes from base_dir: part of its identity (job_hash).
        base = str(base_dir)
        if resume:
            paths = [path for path, _ in once_jobs(manifest.root)]
            successes = read_successes(
                journal_path(manifest.state_dir),
                paths,
                resumed=True,
                # Whose run it finishes: `run` journals this in its run_start row.
                manifest=None if manifest.path is None else str(manifest.path),
            )
            succeeded = succeeded_before(manifest.root, successes, base)
            older = older_successes(manifest.root, successes)
            changed = [
                path
                for path in paths
                if successes.get(path) and path not in succeeded and path not in older
            ]
        ticks: dict[str, float] = {}
        if journal:
            persistent = _persistent_jobs(manifest)
            ticks = last_ticks(journal_path(manifest.state_dir), persistent) if persistent else {}
            opened = Journal(manifest.state_dir, hashes=job_hashes(manifest.root, base), base=base)
        breakers = build_breakers(manifest.breakers)
        cooldowns: dict[str, tuple[float, int]] = {}
        if restore:
            _restore_breakers(breakers, journal_path(manifest.state_dir))
            cooldowns = open_cooldowns(journal_path(manifest.state_dir), time.time())
    except BaseException:
        setup.close()
        raise
    notifier = None
    if Notifier.wanted(manifest.notify, manifest.root):
        record = opened.notified if opened is not None else None
        notifier = Notifier(manifest.notify, manifest.root, mask=masker.mask, record=record)
    composition = Composition(
        manifest,
        chosen,
        setup,
        masker,
        breakers,
        opened,
        succeeded,
        cooldowns,
        ticks,
        notifier=notifier,
        older=older,
        changed=changed,
    )
    if manifest.http is not None:
        from supervision._httpapi import open_endpoint  # noqa: PLC0415 - only when asked for

        try:
            composition.endpoint = open_endpoint(composition)
            composition.endpoint.metrics.notifier = lambda: composition.notifier
        except BaseException:
            composition.close()
            raise
    return composition


def _persistent_jobs(manifest: Manifest) -> list[str]:
    """The paths of the manifest's persistent periodic jobs (most manifests have none)."""
    return [
        path
        for path, child in walk(manifest.root)
        if isinstance(child, JobSpec) and child.schedule.persistent
    ]


def _restore_breakers(breakers: dict[str, Breaker], db: Path) -> None:
    """A daemon starts with its breakers as the journal last saw them (open stays open)."""
    now_wall, now_mono = time.time(), time.monotonic()
    for name, (state, at) in last_breaker_states(db).items():
        breaker = breakers.get(name)
        if breaker is None or state == "closed":
            continue
        # An open breaker keeps the rest of its reset timeout; half-open restarts its trial.
        opened_at = now_mono - max(0.0, now_wall - at) if state == "open" else now_mono
        breaker.restore(BreakerStatus(BreakerState.OPEN, 0, opened_at, 0))
        log.warning("breaker {} restored from the journal: {}", name, state)


@dataclass(frozen=True, slots=True)
class RunReport:
    """How ``jobvisor run`` ended: its exit code, the last status document and why.

    ``forced``: a second signal cut the stop short. ``leftover``: threads of
    ours still running at the end (abandoned: stuck where a kill cannot reach).
    Either way the caller should end the process with ``os._exit`` once its
    output and journal are flushed: a stuck thread could hold the interpreter's exit.
    """

    exit_code: int
    status: dict[str, Any]
    result: RunResult
    interrupted: bool
    forced: bool = False
    leftover: tuple[str, ...] = ()
    # The signal that ended the wait for the finite jobs ("SIGTERM"), None when they all
    # settled first; and those that had not, when it came: (path, "running" | "not started" |
    # "waiting"), in start order.
    stopped_by: str | None = None
    unfinished: tuple[tuple[str, str], ...] = ()
    # Why the state dir was lost while it ran (``the state dir P was deleted``), or None: the
    # run stopped every job then (or was stopping), and exits 1.
    lost: str | None = None

    def stop_line(self) -> str | None:
        """What a signal cut short, in one line for stderr (SPEC §4 says exit 0: a CI log
        must still show that the run did not finish); None when no signal did."""
        if self.stopped_by is None:
            return None
        if not self.unfinished:
            return f"stopped by {self.stopped_by}; no finite job was left to finish"
        return (
            f"stopped by {self.stopped_by} before every job finished (exit "
            f"{self.exit_code}); not finished: {self._not_finished()}"
        )

    def lost_line(self) -> str | None:
        """How the loss of the state dir ended the run, in one line for stderr; None if it
        was not lost."""
        if self.lost is None:
            return None
        unfinished = f"; not finished: {self._not_finished()}" if self.unfinished else ""
        return (
            f"{self.lost} while run ran: every job was stopped, and this run's journal rows, "
            f"its lock and its output files went with the state dir (exit {self.exit_code})"
            f"{unfinished}"
        )

    def _not_finished(self) -> str:
        said: dict[str, list[str]] = {}
        for path, how in self.unfinished:
            said.setdefault(how, []).append(path)
        return "; ".join(f"{how}: {', '.join(paths)}" for how, paths in said.items())


FORCED_WAIT = 2.0  # after a second signal: how long the kills may take to reach the root

# Signals a person or a tool sends by habit, whose default action ended jobvisor at once
# without a word: its jobs SIGKILLed by the warden, no journal row, its socket left behind.
# logrotate's usual postrotate (nginx's reopen) and its sibling change nothing: jobvisor
# reopens a log or output file that was moved at the file's next write.
NOTED_SIGNALS: Final = (signal.SIGUSR1, signal.SIGUSR2)
NOTED_TEXT: Final = (
    "{}: jobvisor reopens its log and output files by itself at their next write; nothing to do"
)
# The others stop it gracefully, as SIGTERM does (and a second one kills what still runs):
# SIGQUIT (nginx's and gunicorn's graceful stop), the timers' SIGALRM, SIGVTALRM and SIGPROF,
# SIGIO (SIGPOLL), SIGPWR, SIGXCPU (a CPU limit's warning, before its SIGKILL) and the
# real-time ones. A fault's (SIGSEGV, SIGABRT, ...) and SIGKILL still end it at once.
STOP_SIGNALS: Final = (
    signal.SIGQUIT,
    signal.SIGALRM,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGIO,
    signal.SIGPWR,
    signal.SIGSTKFLT,
    signal.SIGXCPU,
    *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
)


def jobvisor_version() -> str:
    """This jobvisor's version, as ``jobvisor --version`` says it."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - at start only

    try:
        return version("jobvisor")
    except PackageNotFoundError:
        return "0+checkout"


def killed_run(journal: Path) -> str | None:
    """A start row's ``previous`` when the ``run`` before journaled no end (``RUN_END``): it
    was killed, or its machine went down; nothing else says so. Said at WARNING in the log
    too, with the time of its last journal row. None when it ended, or a daemon started
    since (which said it). For a ``run`` or a daemon that holds the state dir's lock: that
    run holds it no more."""
    try:
        last = last_run_start(journal)
    except JournalError:  # the start goes on: its own row is what matters now
        return None
    if last is None:
        return None
    start, ends = last
    pid = start.get("pid")
    if any(end.get("pid") == pid for end in ends):
        return None
    said = "" if pid is None else f" (pid {pid})"
    previous = f"the run before{said} journaled no end: it was killed, or its machine went down"
    say_killed(previous, journal, math.inf)
    return previous


def say_killed(previous: str, journal: Path, since: float, said_by: Any = None) -> None:
    """Say at WARNING that the ``run`` or daemon before ended unjournaled (``previous``), with
    the time of the journal's last row (of one that started before ``since``): the start row
    alone was read only by who thought to run ``history``. ``said_by``: the logger (the
    daemon's own says a daemon's; this module's by default)."""
    try:
        newest = last_row_at(journal, unless_run_since=since)
    except JournalError:
        newest = None
    when = (
        f", after {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(newest))} "
        "(its last journal row)"
        if newest is not None
        else ""
    )
    (said_by or log).warning(
        "{}{}; what it had running then has no row (the journal has each attempt once it ends)",
        previous,
        when,
    )


def take_signals(
    stop: Callable[[int, FrameType | None], Any], note: Callable[[int, FrameType | None], Any]
) -> dict[int, Any]:
    """Handle ``STOP_SIGNALS`` with ``stop`` and ``NOTED_SIGNALS`` with ``note``; the previous
    handlers, to put back. Only those left to their default (the noted ones ignored too, as
    the CLI ignores them from its start): a handler an embedder set, or an inherited
    ignore of a stop signal, stays. Main thread only."""
    previous: dict[int, Any] = {}
    for signums, handler, free in (
        (STOP_SIGNALS, stop, (signal.SIG_DFL,)),
        (NOTED_SIGNALS, note, (signal.SIG_DFL, signal.SIG_IGN)),
    ):
        for signum in signums:
            if signal.getsignal(signum) in free:
                previous[signum] = signal.signal(signum, handler)
    return previous


def say_noted(noted: list[int]) -> None:
    """Log the noted signals that came (taken from ``noted``, which a handler appends to)."""
    while noted:
        log.info(NOTED_TEXT, signal.Signals(noted.pop(0)).name)


UNFINISHED_WAIT = 2.0  # at the first signal: how long the root may take to say who is unfinished


class _Signals:
    """SIGINT/SIGTERM/SIGHUP: the first stops gracefully, the second stops forcibly.

    SIGHUP is the terminal's hangup (closing the terminal `run` runs in): a graceful stop, as
    for foreman and honcho, where by default it killed `run` and left its jobs to the warden.
    A hangup is heard once (a shell's SIGHUP after the kernel's is the same hangup, no second
    signal), and not at all when it was ignored at the start (``nohup``).

    The handler only sets events: it runs in the main thread between two
    bytecodes, maybe inside a lock the main thread holds, so acting there
    could deadlock. The main thread waits on these events in short slices.
    Under gevent a job's call that never yields keeps that main loop from running at all:
    ``HubWatch`` then says so at the first signal and ends the process at the second.
    """

    def __init__(self) -> None:
        self.count = 0
        self.watch = HubWatch("run", 1)  # 1: as a forced stop's exit
        self.first = threading.Event()
        self.second = threading.Event()
        self.name = ""  # the first one's: "SIGTERM"
        self.hung_up = False
        self.noted: list[int] = []  # SIGUSR1s and SIGUSR2s not yet said (see say_noted)
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._previous.update(take_signals(self._handle, self._note))
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: it stays ignored
            self._previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._handle)

    def restore(self) -> None:
        self.watch.close()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            off_the_terminal()  # nobody reads it any more, and writing it fails
            if self.hung_up:
                return
            self.hung_up = True
        self.count += 1
        if self.count == 1:
            self.name = signal.Signals(signum).name
        (self.first if self.count == 1 else self.second).set()
        self.watch.signalled(signum, self.count, frame)

    def _note(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002 - a handler's
        self.noted.append(signum)  # said by the main loop: no lock in a handler


def run_batch(
    composition: Composition,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every: float = 0.5,
    stop_timeout: float | None = None,
) -> RunReport:
    """Batch mode: run until every finite job settled, then stop the endless ones gracefully.

    A manifest with no finite job runs until SIGINT/SIGTERM; one whose every job has
    ``autostart: false`` starts none and ends at once, saying so. The first
    signal stops every child gracefully (stop signal, then kill after its
    grace); a second one kills what is still running and returns at once
    with ``forced`` set, without waiting for any thread: the caller flushes
    what it must and ends the process.

    With the state dir's lock (``compose(hold="run")``), a state dir deleted or replaced
    while it runs stops every job gracefully too, as the daemon does, and the run exits 1
    (``lost``): its journal rows went with the dir, and another jobvisor could start there.
    """
    signals = _Signals()
    signals.install()
    tree = composition.start()
    lock = composition.lock
    watch = None if lock is None else StateDirWatch(lock, _lost)
    forced = False
    stopped_by: str | None = None
    unfinished: tuple[tuple[str, str], ...] = ()
    try:
        if not _nothing_to_start(tree.spec):
            stopped_by, unfinished = _wait(tree, signals, watch, on_progress, progress_every)
        # A daemon thread: a stop stuck past the end of run must not hold the interpreter.
        stopper = start_or_say(
            lambda: threading.Thread(
                target=tree.stop, args=(stop_timeout,), name="jv-stopper", daemon=True
            ),
            "stopping every job on the main thread instead (a second signal is heard once "
            "that stop is done)",
        )
        if stopper is None:
            tree.stop(stop_timeout)
        shown = time.monotonic()
        while stopper is not None and stopper.is_alive():
            say_noted(signals.noted)
            if signals.second.wait(0.05):
                forced = True
                break
            if on_progress is not None and time.monotonic() - shown >= progress_every:
                shown = time.monotonic()
                _show_stopping(tree, on_progress, progress_every)
        # The last snapshot, as the root left it.
        status = forced_stop(tree) if forced else tree.status()
    finally:
        signals.restore()
        if watch is not None:
            watch.close()  # a loss during the stop counts too: its rows went all the same
        if not tree.ended and not forced:
            tree.kill()
            tree.stop(5)
    result = tree.result()
    interrupted = signals.first.is_set()
    lost = None if watch is None else watch.lost
    # A second signal is no clean stop (SPEC §4's 0): what still ran was killed. A lost state
    # dir is none either: the run's record went with it.
    code = 0 if result.ok and not forced and lost is None else 1
    # The journal's writer and the HTTP endpoint's server run until the composition closes.
    ours = ("jv-stopper", "jv-journal", "jv-http")
    leftover = tuple(task.name for task in live_tasks("jv-") if task.name not in ours)
    return RunReport(
        code, status, result, interrupted, forced, leftover, stopped_by, unfinished, lost
    )


def _wait(
    tree: Tree,
    signals: _Signals,
    watch: StateDirWatch | None,
    on_progress: Callable[[dict[str, Any]], None] | None,
    progress_every: float,
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Until every finite job settled, a signal came or the state dir was lost: the signal's
    name (None if none came) and the finite jobs that had not settled then."""
    said_dead = False
    while not tree.wait(progress_every):
        say_noted(signals.noted)
        if signals.first.is_set():
            stopped_by = signals.name or "a signal"
            log.warning(
                "run: {}: stopping every job (a second signal kills what still runs)",
                stopped_by,
            )
            return stopped_by, _unfinished(tree)
        if watch is not None and watch.lost is not None:  # said at ERROR, by the watch
            return None, _unfinished(tree)
        if on_progress is not None:
            on_progress(tree.status())
        dead = tree.all_dead()
        if dead and not said_dead:
            log.warning(
                "nothing is left running: every job gave up or failed, and none restarts "
                "by itself; run waits for Ctrl-C (SIGINT or SIGTERM), as for a manifest "
                "with no finite job (a job started again through the HTTP API would run)"
            )
        said_dead = dead
    return None, ()


def _lost(why: str, holder: str | None) -> None:
    """Say that ``run``'s state dir was lost (the watch's thread); its main loop stops the jobs.

    As the daemon does (``Daemon._lost``): going on would journal into a deleted file, and a
    second jobvisor, started there meanwhile and not refused, would run every job twice.
    """
    log.error("{}", lost_line(why, holder, "run", 1))


def _nothing_to_start(spec: SupervisorSpec) -> bool:
    """Whether no job of ``spec`` starts by itself (said, then): each has ``autostart: false``
    or waits for one that has; a run of them would wait for a signal with nothing running,
    and a run has nobody to start one."""
    if not _all_wait_for_a_person(spec):
        return False
    log.warning(
        "run: nothing to start: every job has autostart: false or waits for one that has (a "
        "person starts one: run the tree with jobvisor daemon, then jobvisor start PATH)"
    )
    return True


def _all_wait_for_a_person(group: SupervisorSpec) -> bool:
    """Whether every child of ``group`` waits for a person: a job with ``autostart: false``, a
    group whose children all do, or a job whose ``depends_on`` names such a sibling. Answered
    as soon as it is known: no group is walked into past a child that starts by itself."""
    children = group.children
    # An actor, or a job that starts and waits for no sibling, answers at once.
    if not children or any(_starts_by_itself(child) for child in children):
        return False
    held: list[str] = []
    dependants: dict[str, list[str]] = {}  # a sibling's name: the started jobs that wait for it
    for child in children:
        if isinstance(child, SupervisorSpec) and not _all_wait_for_a_person(child):
            return False  # a group waits for no sibling: it starts
        if isinstance(child, JobSpec) and child.autostart:
            for name in child.depends_on:
                dependants.setdefault(name, []).append(child.name)
        else:  # a job with autostart: false, or a group whose children all wait
            held.append(child.name)
    return _all_reached(held, dependants, len(children))


def _all_reached(held: list[str], dependants: dict[str, list[str]], count: int) -> bool:
    """Whether ``count`` names are the ``held`` ones and those that wait for one of them,
    through ``dependants``; stops once all are found. Each name once: a chain of ten thousand
    is ten thousand steps."""
    seen = set(held)
    left = count - len(seen)
    while held and left:
        for name in dependants.get(held.pop(), ()):
            if name not in seen:
                seen.add(name)
                held.append(name)
                left -= 1
    return not left


def _starts_by_itself(child: ChildSpec) -> bool:
    """Whether ``child`` starts with its tree and waits for no sibling: an actor, or a job
    with ``autostart`` (the default) and no ``depends_on``."""
    if isinstance(child, JobSpec):
        return child.autostart and not child.depends_on
    return isinstance(child, ActorSpec)


# What a finite job's state at a signal says of it, for ``RunReport.stop_line``: the rest
# (succeeded, failed, gave up, stopped) had settled.
_UNFINISHED: dict[str, str] = {
    "pending": "not started",
    "starting": "running",
    "running": "running",
    "probation": "running",
    "stopping": "running",
    "waiting": "waiting",  # its breaker is open
    "backoff": "waiting",  # to start again
    "cooldown": "waiting",
}


def _unfinished(tree: Tree) -> tuple[tuple[str, str], ...]:
    """The finite jobs that had not settled when the signal came, with how far each got."""
    try:
        # Briefly: a second signal is only heard once this returns.
        doc = tree.status(timeout=UNFINISHED_WAIT)
        states = {node["path"]: node["state"] for node in flatten_status(doc)}
    except Exception as exc:  # the root did not answer: the stop goes on, unnamed
        log.error("run: no status from the tree at the signal: {}", exc)  # noqa: TRY400
        return ()
    found = []
    for path, child in walk(tree.spec):
        if isinstance(child, JobSpec) and child.schedule.finite:
            how = _UNFINISHED.get(states.get(path, ""))
            if how is not None:
                found.append((path, how))
    return tuple(found)


def _show_stopping(
    tree: Tree, on_progress: Callable[[dict[str, Any]], None], timeout: float
) -> None:
    """The progress line while the stop runs: it moves on, and says a second signal kills."""
    try:
        doc = tree.status(timeout=timeout)
    except Exception:  # the root is busy stopping: the next slice asks again
        return
    on_progress(doc)


def forced_stop(tree: Tree) -> dict[str, Any]:
    """Kill every child now (commands get SIGKILL); the last status, waiting for no thread.

    After a second signal (``run``'s and the daemon's): it says so in one line.
    """
    log.warning("second signal: killing every child now, then exiting")
    tree.kill()
    deadline = time.monotonic() + FORCED_WAIT
    while not tree.ended and time.monotonic() < deadline:
        time.sleep(0.01)  # the root's end has no event to wait on from here
    try:
        return tree.status(timeout=max(0.1, deadline - time.monotonic()))
    except Exception as exc:  # the root did not answer in time: say so, no traceback
        log.error("forced stop: no status from the tree: {}", exc)  # noqa: TRY400
        return {"name": tree.spec.name, "state": "stopping", "children": []}


def progress_line(doc: dict[str, Any]) -> str:
    """One line counting children per state, for the live progress on a terminal."""
    counts: dict[str, int] = {}
    for node in flatten_status(doc):
        if node["kind"] != "group":
            counts[node["state"]] = counts.get(node["state"], 0) + 1
    parts = [f"{n} {state}" for state, n in sorted(counts.items())]
    line = f"[{time.strftime('%H:%M:%S')}] " + ", ".join(parts)
    if doc.get("state") == "stopping":
        line += " (stopping: a second Ctrl-C kills what still runs)"
    return line


class _ShowsStatus(Protocol):
    """What draws the status line: a ``LoggingSetup``, or ``run``'s stderr around it."""

    def show_status(self, text: str, stream: TextIO) -> None: ...


def write_progress(
    stream: TextIO = sys.stderr, *, logging: _ShowsStatus | None = None
) -> Callable[[dict[str, Any]], None]:
    """A progress callback that redraws ``progress_line`` as the last line of the terminal.

    With the run's ``logging`` setup, log records written to the same
    terminal clear the line and draw it again below themselves, so a record
    never starts in the middle of it; clear it at the end with
    ``logging.show_status("", stream)``. The line is cut to the terminal's
    width, since a wrapped line could not be cleared.
    """

    def show(doc: dict[str, Any]) -> None:
        width = columns(stream)
        line = progress_line(doc)
        if width is not None and len(line) >= width:
            line = line[: max(width - 2, 0)] + "…"
        if logging is not None:
            logging.show_status(line, stream)
        else:
            stream.write(CLEAR_LINE + line)
            stream.flush()

    return show
