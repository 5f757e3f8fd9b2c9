"""The journal: every attempt and every supervisor decision, in SQLite (WAL).

Supervisors never write it themselves: the tree calls ``Journal.record``
inline as its sink for the events the journal keeps (``start_tree(sink=...)``);
``record`` only queues a row, and a writer thread commits them in batches (at
most ``max_delay`` after they happened), so a slow disk never slows a restart.
A process killed with SIGKILL loses no committed row; it can lose the rows of
the last ``max_delay`` that were not committed yet. Reading it lives in
``supervision._history``, which ``jobvisor history`` loads alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import logbook

from supervision import _events as ev
from supervision._files import (
    UnsafePathError,
    check_private_file,
    ensure_private_dir,
    open_private,
)
from supervision._history import (
    JournalError,
    companions,
    journal_path,
    last_breaker_states,
    open_cooldowns,
    read_history,
    read_succeeded,
    read_successes,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from supervision._spec import SupervisorSpec

__all__ = [
    "Journal",
    "JournalError",
    "job_hashes",
    "last_breaker_states",
    "open_cooldowns",
    "read_history",
    "read_succeeded",
    "read_successes",
    "spec_hash",
    "succeeded_before",
]

log = logbook.Logger("supervision.journal")

# Each entry migrates the schema from version i to i+1; PRAGMA user_version holds i.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        code INTEGER,
        error TEXT,
        spec_hash TEXT
    );
    CREATE INDEX attempts_path ON attempts (path, id);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX decisions_path ON decisions (path, id);
    """,
    # The Ray node a placed job's attempt ran on ("ID (IP)"); NULL for local attempts.
    "ALTER TABLE attempts ADD COLUMN node TEXT;",
)


def spec_hash(spec: object) -> str:
    """A stable digest of a frozen spec (its repr), to recognise an identical job later."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:16]


# Rows are queued as ready-made parameter tuples behind a tag: the writer only inserts.
_ATTEMPT: Final = (
    "attempt"  # (path, attempt, started_at, ended_at, outcome, code, error, hash, node)
)
_DECISION: Final = "decision"  # (at, path, kind, detail as JSON)


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


class Journal:
    """Open (and migrate) ``STATE_DIR/journal.sqlite3`` and write to it from one thread.

    ``attach(tree)`` subscribes it to a tree's events; ``close()`` commits
    what is queued and stops the writer. Reading (``history``,
    ``succeeded_hashes``) uses its own connection and works while writing.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        hashes: dict[str, str] | None = None,
        max_delay: float = 0.05,
        batch: int = 500,
    ) -> None:
        self.path = journal_path(state_dir)
        self._hashes = hashes or {}
        self._max_delay = max_delay
        self._batch = batch
        try:
            self._prepare()
            self._migrate()
        except UnsafePathError as exc:
            raise JournalError(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot open the journal {self.path}: {exc}; "
                "check that the state dir is writable (or pass --state-dir)"
            ) from exc
        # A deque and two bells, not a queue of rows: a row costs an append, and the writer
        # wakes once per batch instead of once per row (per row was most of the journal's
        # cost). The bells are SimpleQueues of tokens, not Events: an Event's wait is a
        # Condition's in Python, a new lock per wait, and the writer's two waits per batch were
        # 7% of a crash loop's GIL time in the daemon (issue 15, fifth pass).
        self._pending: deque[object] = deque()
        self._rung = False  # a token is in _wake for what is pending
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token: rows are pending
        self._hurry: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token: skip the delay
        self._stopping = False
        self._failed = False
        self._thread = threading.Thread(target=self._write_loop, name="jv-journal", daemon=True)
        self._thread.start()

    # -- schema ----------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """A private state dir, and a journal file of ours that SQLite opens without a symlink.

        SQLite opens its files by path, following symlinks: so each of them is
        checked first, and the database is created here (0600, ``O_NOFOLLOW``).
        SQLite gives ``-wal`` and ``-shm`` the database's mode. Nobody else can
        plant a file between this check and SQLite's open: the dir is private.
        """
        ensure_private_dir(self.path.parent)
        for path in companions(self.path)[1:]:
            check_private_file(path, "journal file")
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT, "journal"))

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _migrate(self) -> None:
        conn = self._connect()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise JournalError(
                    f"{self.path} has schema version {version}, newer than this jobvisor "
                    f"knows ({len(MIGRATIONS)}): upgrade jobvisor"
                )
            for number in range(version, len(MIGRATIONS)):
                conn.executescript(
                    f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;"
                )
            # A journal that opens but cannot be written would drop every row: refuse it now.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
            finally:
                conn.execute("ROLLBACK")
        finally:
            conn.close()

    # -- writing (any thread in, the writer thread out) ------------------------------------------

    def attach(self, subscribe: Callable[[Callable[[ev.Event], Any]], Any]) -> Any:
        """Subscribe to a tree's events (``tree.subscribe`` or ``start_tree(on_event=...)``)."""
        return subscribe(self.record)

    def record(self, event: ev.Event) -> None:
        """Queue what ``event`` means for the journal; never blocks, never raises."""
        row = self._row(event)
        if row is not None:
            self._put(row)

    # What the journal keeps: a tree builds no other event for it (see ``start_tree``).
    record.event_types = frozenset(  # type: ignore[attr-defined]
        {
            ev.AttemptFinished,
            ev.RestartScheduled,
            ev.RestartCancelled,
            ev.GaveUp,
            ev.NotStarted,
            ev.Escalated,
            ev.CooldownStarted,
            ev.ProbationPassed,
            ev.BreakerChanged,
            ev.ThreadAbandoned,
        }
    )

    def notified(self, at: float, path: str, detail: dict[str, Any]) -> None:
        """Queue a ``notify`` row: a notification's delivery ended (delivered or not, tries)."""
        self._put((_DECISION, (at, path, "notify", json.dumps(detail))))

    def _put(self, item: object) -> None:
        self._pending.append(item)
        if not self._rung:
            # Two threads may both ring: the writer then wakes once more for nothing.
            self._rung = True
            self._wake.put(None)

    def _row(self, event: ev.Event) -> tuple[str, tuple[Any, ...]] | None:
        if (
            type(event) is ev.RestartScheduled
            and type(event.delay) is float
            and math.isfinite(event.delay)
        ):
            # The one row of every restart: _decision's detail with its JSON made by hand, as
            # json.dumps cost more than the insert (a finite float's repr is valid JSON).
            restart = f'{{"delay": {event.delay!r}, "number": {int(event.number)}}}'
            return _DECISION, (event.at, event.path, "restart", restart)
        if isinstance(event, ev.AttemptFinished):
            return _ATTEMPT, (
                event.path,
                event.attempt,
                event.started_at,
                event.at,
                event.outcome.value,
                event.code,
                event.error,
                self._hashes.get(event.path),
                event.node,
            )
        found = _decision(event)
        if found is None:
            return None
        path, kind, detail = found
        return _DECISION, (event.at, path, kind, json.dumps(detail))

    def _write_loop(self) -> None:
        conn = self._connect()
        pending, wake, hurry = self._pending, self._wake, self._hurry
        try:
            while True:
                wake.get()
                # Let rows gather for up to max_delay; a flush or close cuts it short.
                with contextlib.suppress(queue.Empty):
                    hurry.get(timeout=self._max_delay)
                    while True:  # more flushes meanwhile: this batch serves them all
                        hurry.get_nowait()
                # Unrung before draining: a row appended after this rings again.
                self._rung = False
                stopping = self._stopping
                rows = [pending.popleft() for _ in range(len(pending))]
                for start in range(0, len(rows), self._batch):
                    self._commit(conn, rows[start : start + self._batch])
                for row in rows:
                    if isinstance(row, _Flush):
                        row.done.set()
                if stopping:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, rows: Iterable[object]) -> None:
        attempts: list[tuple[Any, ...]] = []
        decisions: list[tuple[Any, ...]] = []
        for row in rows:
            if isinstance(row, tuple):
                (attempts if row[0] is _ATTEMPT else decisions).append(row[1])
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome, code, error,"
                " spec_hash, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempts,
            )
            conn.executemany(
                "INSERT INTO decisions (at, path, kind, detail) VALUES (?, ?, ?, ?)", decisions
            )
            conn.execute("COMMIT")
            self._failed = False
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if not self._failed:  # say it once, keep supervising
                self._failed = True
                log.error("journal {}: could not write a batch: {}", self.path, exc)  # noqa: TRY400

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued so far is committed; False on timeout."""
        marker = _Flush(threading.Event())
        self._put(marker)
        self._hurry.put(None)
        return marker.done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then stop the writer."""
        self._stopping = True
        self._hurry.put(None)
        self._wake.put(None)
        self._thread.join(timeout)

    # -- reading ---------------------------------------------------------------------------------

    def history(self, path: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return read_history(self.path, path, limit)

    def succeeded_hashes(self) -> dict[str, set[str]]:
        return read_succeeded(self.path)


def succeeded_before(
    spec: SupervisorSpec, successes: Mapping[str, Mapping[str, tuple[int | None, float]]]
) -> dict[str, tuple[int | None, float]]:
    """For ``run --resume``: the once-jobs of ``spec`` whose identical spec already succeeded.

    ``successes`` is ``read_successes``'s; each path found maps to ``(code, at)`` of
    that success, in start order (``start_tree(succeeded=...)`` takes it).
    """
    from supervision._spec import JobSpec, walk  # noqa: PLC0415 - avoids an import cycle

    found: dict[str, tuple[int | None, float]] = {}
    for path, child in walk(spec):
        if isinstance(child, JobSpec) and child.schedule.finite and not child.schedule.periodic:
            success = successes.get(path, {}).get(spec_hash(child))
            if success is not None:
                found[path] = success
    return found


def _decision(event: ev.Event) -> tuple[str, str, dict[str, object]] | None:
    """(path, kind, detail) of a supervisor decision event, None for other events."""
    found: tuple[str, str, dict[str, object]] | None = None
    match event:
        case ev.RestartScheduled():
            found = (event.path, "restart", {"delay": event.delay, "number": event.number})
        case ev.RestartCancelled():
            found = (event.path, "restart_cancelled", {})
        case ev.GaveUp():
            found = (event.path, "give_up", {"reason": event.reason})
        case ev.NotStarted():
            found = (event.path, "not_started", {"reason": event.reason})
        case ev.Escalated():
            found = (event.path, "escalate", {"reason": event.reason, "error": event.error})
        case ev.CooldownStarted():
            found = (event.path, "cooldown", {"duration": event.duration, "cycle": event.cycle})
        case ev.ProbationPassed():
            found = (event.path, "probation_passed", {})
        case ev.BreakerChanged():
            detail: dict[str, object] = {"breaker": event.name, "old": event.old, "new": event.new}
            found = (f"breaker:{event.name}", "breaker", detail)
        case ev.ThreadAbandoned():
            found = (event.path, "abandoned", {"thread": event.thread})
    return found


def job_hashes(spec: SupervisorSpec) -> dict[str, str]:
    """The spec hash of every job in a tree, by path."""
    from supervision._spec import JobSpec, walk  # noqa: PLC0415 - avoids an import cycle

    return {path: spec_hash(child) for path, child in walk(spec) if isinstance(child, JobSpec)}
