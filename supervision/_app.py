"""The composition root: build logging, breakers and the runtime from a manifest and flags.

This is the one place that wires the pieces together, for the CLI and for
embedded users alike; nothing here is a module-level singleton. ``run``
is the batch mode of ``jobvisor run``: start the tree, wait for the finite
jobs, stop the endless ones, and say how it went.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TextIO

import logbook

from actors import BreakerState, BreakerStatus, check_runtime
from supervision._journal import FILENAME as JOURNAL_FILE
from supervision._journal import (
    Journal,
    job_hashes,
    last_breaker_states,
    open_cooldowns,
    read_succeeded,
    skip_succeeded,
)
from supervision._logging import CLEAR_LINE, LoggingSetup, SecretMasker, configure_logging
from supervision._secrets import printable
from supervision._tree import RunResult, Tree, build_breakers, start_tree

log = logbook.Logger("supervision.app")

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from actors import Breaker
    from supervision._manifest import Manifest

__all__ = ["Composition", "RunReport", "compose", "flatten_status", "run_batch", "summary_table"]


@dataclass
class Composition:
    """Everything a run needs, built once from the manifest and the flags."""

    manifest: Manifest
    runtime: str
    logging: LoggingSetup
    masker: SecretMasker
    breakers: dict[str, Breaker] = field(default_factory=dict)
    journal: Journal | None = None
    skipped: list[str] = field(default_factory=list)  # once-jobs `--resume` left out
    cooldowns: dict[str, tuple[float, int]] = field(default_factory=dict)  # restored ones

    def start(self, **kwargs: Any) -> Tree:
        """Start the manifest's tree with this composition's runtime, breakers and journal."""
        if self.journal is not None and "sink" not in kwargs:
            kwargs["sink"] = self.journal.record
        if self.cooldowns and "cooldowns" not in kwargs:
            kwargs["cooldowns"] = self.cooldowns
        return start_tree(self.manifest, self.runtime, breakers=self.breakers, **kwargs)

    def close(self) -> None:
        try:
            if self.journal is not None:
                self.journal.close()
        finally:
            self.logging.close()

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
) -> Composition:
    """Build logging (with secret masking), breakers and the runtime choice for ``manifest``.

    The manifest's directory goes on ``sys.path`` so ``python:`` jobs can name
    modules that live beside it.

    ``runtime``, ``log_level`` and ``log_file`` override the manifest (the
    CLI's global flags). Raises ``RuntimeSetupError`` if the process was not
    prepared for the runtime, and ``LoggingSetupError`` if the log file
    cannot be opened. With ``journal`` it opens ``STATE_DIR/journal.sqlite3``
    (``JournalError`` if it cannot); ``resume`` leaves out the once-jobs whose
    identical spec already succeeded there; ``restore`` (the daemon) reopens
    the breakers the journal last saw open.
    """
    chosen = runtime or manifest.runtime
    check_runtime(chosen)
    masker = SecretMasker(manifest.secrets)
    base_dir = manifest.path.parent if manifest.path is not None else Path.cwd()
    # python jobs name modules that live beside the manifest (like `python -m` from there).
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    setup = configure_logging(
        manifest.logging,
        level=log_level,
        file=log_file,
        masker=masker,
        stream=stream,
        base_dir=base_dir,
    )
    skipped: list[str] = []
    opened: Journal | None = None
    try:
        if resume:
            succeeded = read_succeeded(manifest.state_dir / JOURNAL_FILE)
            root, skipped = skip_succeeded(manifest.root, succeeded)
            manifest = replace(manifest, root=root)
        if journal:
            opened = Journal(manifest.state_dir, hashes=job_hashes(manifest.root))
        breakers = build_breakers(manifest.breakers)
        cooldowns: dict[str, tuple[float, int]] = {}
        if restore:
            _restore_breakers(breakers, manifest.state_dir / JOURNAL_FILE)
            cooldowns = open_cooldowns(manifest.state_dir / JOURNAL_FILE, time.time())
    except BaseException:
        setup.close()
        raise
    return Composition(manifest, chosen, setup, masker, breakers, opened, skipped, cooldowns)


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
    """How ``jobvisor run`` ended: its exit code, the last status document and why."""

    exit_code: int
    status: dict[str, Any]
    result: RunResult
    interrupted: bool


class _Signals:
    """SIGINT/SIGTERM: the first stops gracefully, the second stops forcibly."""

    def __init__(self) -> None:
        self.count = 0
        self.first = threading.Event()
        self.second = threading.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        del signum, frame
        self.count += 1
        (self.first if self.count == 1 else self.second).set()


def run_batch(
    composition: Composition,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_every: float = 0.5,
    stop_timeout: float | None = None,
) -> RunReport:
    """Batch mode: run until every finite job settled, then stop the endless ones gracefully.

    A manifest with no finite job runs until SIGINT/SIGTERM. The first
    signal stops every child gracefully (stop signal, then kill after its
    grace); a second one kills what is still running at once.
    """
    signals = _Signals()
    signals.install()
    tree = composition.start()
    try:
        while not tree.wait(progress_every):
            if signals.first.is_set():
                break
            if on_progress is not None:
                on_progress(tree.status())
        stopper = threading.Thread(target=tree.stop, args=(stop_timeout,), name="jv-stopper")
        stopper.start()
        while stopper.is_alive():
            if signals.second.wait(0.05):
                tree.kill()
                signals.second.clear()
            stopper.join(0.05)
        status = tree.status()  # the last snapshot, as the root left it
    finally:
        signals.restore()
        if not tree.ended:
            tree.kill()
            tree.stop(5)
    result = tree.result()
    interrupted = signals.first.is_set()
    code = 0 if result.ok else 1
    return RunReport(code, status, result, interrupted)


def flatten_status(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a status document, depth first (groups before their children)."""
    for node in doc.get("children", []):
        yield node
        if node.get("children"):
            yield from flatten_status(node)


def summary_table(
    doc: dict[str, Any],
    mask: Callable[[str], str] = str,
    width: int | Literal["auto"] | None = "auto",
) -> str:
    """The end-of-run table: one row per child with state, counters and last exit.

    The last column wraps so that no line is wider than ``width`` (by
    default the terminal's, when stdout is one; None: never wrap). When the
    other columns leave it less than ``_MIN_LAST`` characters, it goes on
    indented lines below its row instead. Errors are masked with ``mask``,
    and their control characters escaped.
    """
    if width == "auto":
        width = _columns(sys.stdout)
    header = ("PATH", "KIND", "STATE", "STARTS", "RESTARTS", "FAILURES", "LAST EXIT")
    rows = [header]
    rows.extend(
        (
            node["path"],
            node["kind"],
            node["state"],
            str(node["starts"]),
            str(node["restarts"]),
            str(node["failures"]),
            printable(_exit_text(node.get("last_exit"), mask)),
        )
        for node in flatten_status(doc)
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    start = sum(widths) + 2 * len(widths)
    room = None if width is None else width - start
    below = room is not None and room < _MIN_LAST
    lines: list[str] = []
    for row in rows:
        lead = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  "
        if room is None:
            lines.append(lead + row[-1])
        elif below:
            assert width is not None
            lines.append(lead.rstrip())
            lines += ["    " + part for part in _wrap(row[-1], max(width - 4, _MIN_LAST))]
        else:
            first, *rest = _wrap(row[-1], room)
            lines.append(lead + first)
            lines += [" " * start + part for part in rest]
    return "\n".join(line.rstrip() for line in lines)


_MIN_LAST = 20  # the narrowest the last column of the table is wrapped to beside its row


def _exit_text(last: dict[str, Any] | None, mask: Callable[[str], str]) -> str:
    if last is None:
        return "-"
    text = str(last["outcome"])
    if last.get("code") is not None:
        text += f" ({last['code']})"
    if last.get("error"):
        text += f": {mask(last['error'])}"
    return text


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def progress_line(doc: dict[str, Any]) -> str:
    """One line counting children per state, for the live progress on a terminal."""
    counts: dict[str, int] = {}
    for node in flatten_status(doc):
        if node["kind"] != "group":
            counts[node["state"]] = counts.get(node["state"], 0) + 1
    parts = [f"{n} {state}" for state, n in sorted(counts.items())]
    return f"[{time.strftime('%H:%M:%S')}] " + ", ".join(parts)


def write_progress(
    stream: TextIO = sys.stderr, *, logging: LoggingSetup | None = None
) -> Callable[[dict[str, Any]], None]:
    """A progress callback that redraws ``progress_line`` as the last line of the terminal.

    With the run's ``logging`` setup, log records written to the same
    terminal clear the line and draw it again below themselves, so a record
    never starts in the middle of it; clear it at the end with
    ``logging.show_status("", stream)``. The line is cut to the terminal's
    width, since a wrapped line could not be cleared.
    """

    def show(doc: dict[str, Any]) -> None:
        width = _columns(stream)
        line = progress_line(doc)
        if width is not None and len(line) >= width:
            line = line[: max(width - 2, 0)] + "…"
        if logging is not None:
            logging.show_status(line, stream)
        else:
            stream.write(CLEAR_LINE + line)
            stream.flush()

    return show


def _columns(stream: TextIO) -> int | None:
    """The width of the terminal ``stream`` is, or None when it is not one."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no fileno, not a terminal, closed
        return None
