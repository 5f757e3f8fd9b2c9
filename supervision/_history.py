"""Reading the journal: ``jobvisor history``, ``run --resume`` and a daemon's restore.

Standard library only (sqlite3, json), so that ``jobvisor history`` loads
neither the runtime nor logging. ``supervision._journal`` writes the file.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from actors._errors import JobvisorError
from supervision._files import UnsafePathError, not_readable, refuse_symlinks

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

__all__ = [
    "DAEMON_KINDS",
    "FILENAME",
    "MAX_RECENT_ROWS",
    "RUN_END",
    "RUN_KINDS",
    "RUN_START",
    "STATE_KINDS",
    "JournalError",
    "journal_path",
    "last_breaker_states",
    "last_daemon_row",
    "last_daemon_start",
    "last_row_at",
    "last_run_start",
    "last_ticks",
    "open_cooldowns",
    "read_history",
    "read_recent_attempts",
    "read_succeeded",
    "read_successes",
    "run_start_seq",
    "since_time",
]

FILENAME: Final = "journal.sqlite3"

# The decisions that say what became of a child: the latest of them is what a daemon's restore
# goes by (a cooldown still running is taken up again). Not among them, as they change nothing
# of its state: a breaker's change, an abandoned thread, a notification's delivery (one comes
# just after the cooldown it tells of), a person's signal.
STATE_KINDS: Final = (
    "restart",
    "restart_cancelled",
    "give_up",
    "not_started",
    "failed_finally",
    "escalate",
    "cooldown",
    "probation_passed",
    "person_start",
    "person_stop",
    "person_restart",
    "added",
    "removed",
)
STATE_KINDS_SQL: Final = "(" + ", ".join(f"'{kind}'" for kind in STATE_KINDS) + ")"


class JournalError(JobvisorError):
    """The journal cannot be opened or read (a read-only state dir, a corrupt file).

    Raised at start, naming the file, so a run never starts without the
    journal it was asked to keep.
    """


_SQLITE_MAX: Final = 2**63 - 1  # the largest INTEGER SQLite takes


def journal_path(state_dir: Path) -> Path:
    """Where the journal of ``state_dir`` lives."""
    return Path(state_dir) / FILENAME


def companions(db: Path) -> tuple[Path, Path, Path]:
    """The journal and the two files SQLite keeps beside it in WAL mode."""
    return db, Path(f"{db}-wal"), Path(f"{db}-shm")


def _query(db: Path, sql: str, args: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
    """Run one read-only query; a missing or unreadable journal is a ``JournalError``.

    Nothing is written, nor created: a journal no process has open (no ``-wal`` beside it)
    is read as an immutable file, as SQLite otherwise creates ``-wal`` and ``-shm`` for a
    WAL database even to read it, and gives them the database's own mode whatever the umask
    (it chmods them to it): 0644 beside a journal an older jobvisor made 0644, and left there
    (a read-only connection cannot remove them). Should a writer come meanwhile (the file
    changed, or a ``-wal`` appeared), what was read may be torn: it is read again, as the
    writer's readers do, through its ``-wal`` (there ``-shm`` exists already, the writer's).
    """
    try:
        present = db.exists()
    except PermissionError:  # a root daemon's 0700 state dir, read by another user
        raise JournalError(str(not_readable(db, "journal"))) from None
    if not present:
        raise JournalError(f"no journal at {db}: run a manifest first (or pass --state-dir)")
    try:
        # SQLite writes -shm even when reading: a planted link there would be followed.
        refuse_symlinks(companions(db), "journal file")
    except UnsafePathError as exc:
        raise JournalError(str(exc)) from None
    try:
        rows = _fetch_idle(db, sql, args)
        if rows is not None:
            return rows
        try:
            return _fetch(db, "mode=ro", sql, args)
        except sqlite3.OperationalError:
            # A read-only state dir, where SQLite cannot make its -shm: with nothing in the
            # -wal, the file alone holds every row.
            wal = Path(f"{db}-wal")
            if wal.exists() and wal.stat().st_size:
                raise
            return _fetch(db, "mode=ro&immutable=1", sql, args)
    except (OSError, sqlite3.Error) as exc:
        if not os.access(db, os.R_OK, effective_ids=True):  # SQLite says "unable to open"
            raise JournalError(str(not_readable(db, "journal"))) from None
        raise JournalError(f"cannot read the journal {db}: {exc}") from exc


def _fetch_idle(db: Path, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> list[Any] | None:
    """The rows of ``sql`` read from a journal no process has open, as an immutable file; None
    when one has it open, or opened it meanwhile (then read it through its ``-wal``)."""
    idle = _idle(db)
    if idle is None:
        return None
    try:
        rows = _fetch(db, "mode=ro&immutable=1", sql, args)
    except sqlite3.Error:
        if _idle(db) == idle:
            raise
        return None  # torn by a writer, maybe
    return rows if _idle(db) == idle else None


def _idle(db: Path) -> tuple[int, ...] | None:
    """The journal file's identity and change times when no ``-wal`` is beside it (no process
    has it open: every row is in the file); None when one is."""
    if os.path.lexists(f"{db}-wal"):
        return None
    st = db.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fetch(db: Path, mode: str, sql: str, args: tuple[Any, ...] | dict[str, Any]) -> list[Any]:
    # Quoted: in a URI a '#' begins a fragment (mode=ro dropped with it), '?' the query, and
    # '%41' is 'A' (trial h252: a state dir named so had SQLite make another file).
    conn = sqlite3.connect(f"file:{quote(str(db), safe='/')}?{mode}", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


# The columns of both tables: what a journal of an older schema lacks reads as null (it is
# read as it is: migrating is a writer's, and `history` writes nothing).
_COLUMNS: Final = (
    "SELECT 'attempts', name FROM pragma_table_info('attempts')"
    " UNION ALL SELECT 'decisions', name FROM pragma_table_info('decisions')"
)


def _columns(db: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"attempts": set(), "decisions": set()}
    for table, name in _query(db, _COLUMNS):
        found[str(table)].add(str(name))
    return found


def _column(columns: dict[str, set[str]], table: str, name: str, alias: str = "") -> str:
    """``alias.name`` if ``table`` has it (schema 2 added ``node``, 3 ``seq``), else a null."""
    if name in columns[table]:
        return f"{alias}{name}"
    return f"NULL AS {name}"


def read_history(
    db: Path,
    path: str | Sequence[str] | None = None,
    limit: int = 50,
    *,
    since: float | None = None,
) -> list[dict[str, Any]]:
    """The latest attempts and decisions (of ``path`` and below, if given; of each of several
    job paths), oldest first.

    Latest by when they were written (``seq``), not by their wall time, which jumps with
    the clock: after it went back an hour the newest rows have the oldest times. Rows an
    older jobvisor wrote have no seq: they come before the others, by their time.
    ``since``: only rows at or after this wall time (an attempt by its end): the latest
    ``limit`` of those. Without ``path``, the daemon's own rows (path "") are in too.
    """
    # "etl" is etl and what starts with etl/, the range [etl/, etl0) ('/' sorts just before
    # '0'): a LIKE would take '_' and '%' in a path as wildcards, and ignore case.
    where, args = (
        ("", ())
        if path is None
        else ("(path = ? OR (path >= ? AND path < ?))", (path, f"{path}/", f"{path}0"))
        if isinstance(path, str)
        # Several (a replicated job's replicas, up to 10,000): one argument, not three a path,
        # which would pass SQLite's limit on them. Replicas are jobs: nothing is below them.
        else ("path IN (SELECT value FROM json_each(?))", (json.dumps(list(path)),))
    )
    where_a = where_d = where
    if since is not None:
        where_a = " AND ".join(filter(None, (where, "ended_at >= ?")))
        where_d = " AND ".join(filter(None, (where, "at >= ?")))
        args = (*args, since)
    where_a = f"WHERE {where_a}" if where_a else ""
    where_d = f"WHERE {where_d}" if where_d else ""
    # A journal no jobvisor of this version has opened yet (an older one's) lacks columns.
    columns = _columns(db)
    node = _column(columns, "attempts", "node")
    seq_a, seq_d = _column(columns, "attempts", "seq"), _column(columns, "decisions", "seq")
    rows = _query(
        db,
        "SELECT * FROM ("  # noqa: S608 - only the fixed WHERE and columns above are formatted in
        " SELECT ended_at AS at, path, 'attempt' AS type, attempt, outcome, code, error,"
        f" NULL AS kind, NULL AS detail, {node}, started_at, {seq_a} FROM attempts {where_a}"
        " UNION ALL SELECT at, path, 'decision', NULL, NULL, NULL, NULL, kind, detail, NULL,"
        f" NULL, {seq_d} FROM decisions {where_d})"
        " ORDER BY seq IS NULL, seq DESC, at DESC LIMIT ?",
        # More rows than SQLite can count are all of them (it refused 10**20 with a traceback).
        (*args, *args, min(limit, _SQLITE_MAX)),
    )
    keys = (
        "at",
        "path",
        "type",
        "attempt",
        "outcome",
        "code",
        "error",
        "kind",
        "detail",
        "node",
        "started_at",
    )
    out = []
    for row in reversed(rows):
        item = {k: v for k, v in zip(keys, row[:-1], strict=True) if v is not None}
        if "detail" in item:
            raw = item["detail"]
            item["detail"] = _decoded(raw)
            if item["detail"] is None:  # a row someone edited: shown as it is, not a traceback
                item["detail"] = {"unreadable": str(raw)[:_UNREADABLE]}
        out.append(item)
    return out


_UNREADABLE: Final = 200  # characters of a detail that is no JSON object, shown as they are


def _decoded(detail: object) -> dict[str, Any] | None:
    """A decision's ``detail``: the JSON object jobvisor wrote, or None for anything else (a
    journal edited by hand, or damaged), which each reader skips or shows as it is."""
    if not isinstance(detail, str | bytes):
        return None
    try:
        data = json.loads(detail)
    except (ValueError, RecursionError):  # JSONDecodeError, a number past int's digits limit
        return None
    return data if isinstance(data, dict) else None


_ATTEMPT_KEYS: Final = ("at", "path", "attempt", "outcome", "code", "error", "node", "started_at")
# Each path with attempts in [low, high), one index seek per path (SQLite's skip-scan by hand:
# a DISTINCT would read every row), then that path's newest rows, again from the index: as
# many of each as fit :total in all, at least one.
_RECENT: Final = """
    WITH RECURSIVE paths(p) AS (
        SELECT MIN(path) FROM attempts WHERE path >= :low AND path < :high
        UNION ALL
        SELECT (SELECT MIN(path) FROM attempts WHERE path > p AND path < :high)
        FROM paths WHERE p IS NOT NULL
    )
    SELECT a.ended_at, a.path, a.attempt, a.outcome, a.code, a.error, {node}, a.started_at
    FROM paths JOIN attempts AS a ON a.id IN (
        SELECT id FROM attempts WHERE path = paths.p ORDER BY id DESC
        LIMIT max(1, min(:per_job, :total / max(1, (SELECT COUNT(p) FROM paths))))
    )
    ORDER BY a.path, a.id
"""
MAX_RECENT_ROWS: Final = 20_000  # rows in all of one read_recent_attempts answer (~3 MB)


def read_recent_attempts(
    db: Path, path: str | None, per_job: int, *, total: int = MAX_RECENT_ROWS
) -> dict[str, list[dict[str, Any]]]:
    """The newest ``per_job`` attempts of each path (``path`` and below, if given), oldest first.

    One read for a page's every timeline: each path's rows come from its own, so a
    chatty job cannot crowd another's out as it would in one window of the journal.
    With so many paths that the answer would pass ``total`` rows, each gets fewer
    (at least one). A row is an attempt as ``read_history`` gives it.
    """
    # "etl" is etl and etl/...: the range [etl, etl0) holds those ('/' sorts just before '0')
    # and etl-x, etl.x, dropped below.
    low, high = ("", "\U0010ffff") if path is None else (path, path + "0")
    node = _column(_columns(db), "attempts", "node", "a.")
    rows = _query(
        db,
        _RECENT.format(node=node),
        {"low": low, "high": high, "per_job": per_job, "total": total},
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        item = {k: v for k, v in zip(_ATTEMPT_KEYS, row, strict=True) if v is not None}
        name = str(item["path"])
        if path is not None and name != path and not name.startswith(path + "/"):
            continue
        item["type"] = "attempt"
        out.setdefault(name, []).append(item)
    return out


DAEMON_KINDS: Final = ("daemon_start", "daemon_reload", "daemon_stop")


def last_daemon_row(db: Path, *kinds: str) -> tuple[str, dict[str, Any]] | None:
    """The kind and detail of the latest row of a daemon's own life (of ``kinds``, else any
    of ``DAEMON_KINDS``), None if none (or no journal): a start after one that is no
    ``daemon_stop`` follows a daemon that was killed, or whose machine went down."""
    if not db.exists():
        return None
    marks = ", ".join("?" * len(kinds or DAEMON_KINDS))
    rows = _query(
        db,
        f"SELECT kind, detail FROM decisions WHERE path = '' AND kind IN ({marks})"  # noqa: S608 - marks
        " ORDER BY id DESC LIMIT 1",
        tuple(kinds or DAEMON_KINDS),
    )
    if not rows:
        return None
    return str(rows[0][0]), _decoded(rows[0][1]) or {}


def last_daemon_start(db: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The detail of the latest ``daemon_start`` row and those of the ``daemon_stop`` rows
    after it, None if none (or no journal). Two daemons may have written in turn (one that
    lost its state dir's lock stops while the next starts): its stop is the one of its pid."""
    if not db.exists():
        return None
    rows = _query(
        db,
        "SELECT kind, detail, at FROM decisions WHERE path = '' AND kind IN (?, ?) AND id >= "
        "(SELECT coalesce(max(id), 0) FROM decisions WHERE path = '' AND kind = ?) ORDER BY id",
        ("daemon_start", "daemon_stop", "daemon_start"),
    )
    if not rows or rows[0][0] != "daemon_start":
        return None
    start = _decoded(rows[0][1]) or {}
    start.setdefault("at", rows[0][2])  # when it was journaled: a pid's reuse is told by it
    return start, [_decoded(detail) or {} for _, detail, _ in rows[1:]]


def last_row_at(db: Path, *, unless_run_since: float) -> float | None:
    """When the journal's newest row (an attempt's end, a decision) was written; None if it
    has none, or a ``run`` started there since ``unless_run_since`` (its rows would be
    taken for those of the daemon before it). Three lookups by id: no journal is read whole
    at a daemon's start."""
    if not db.exists():
        return None
    rows = _query(
        db,
        "SELECT (SELECT 1 FROM decisions WHERE path = '' AND kind = ? AND at > ? LIMIT 1),"
        " max(coalesce((SELECT ended_at FROM attempts ORDER BY id DESC LIMIT 1), 0),"
        " coalesce((SELECT at FROM decisions ORDER BY id DESC LIMIT 1), 0))",
        (RUN_START, unless_run_since),
    )
    ran, at = rows[0] if rows else (None, 0)
    return None if ran or not at else float(at)


def since_time(text: str, now: float) -> float:
    """The wall time ``text`` names, for ``history --since`` and ``/api/history?since=``: a
    duration before ``now`` as a manifest writes one (``10m``, ``2h``, ``1h30m``) or an
    ISO-8601 time (``2026-12-06T19:00``, ``...Z``, ``...+01:00``; without an offset, local).

    Raises ``ValueError`` naming what it expected.
    """
    from datetime import datetime  # noqa: PLC0415 - history --since only

    from actors import SpecError  # noqa: PLC0415
    from supervision._units import DURATION_HINT, parse_duration  # noqa: PLC0415

    text = text.strip()
    try:
        return now - parse_duration(text)
    except SpecError:
        pass
    try:
        return datetime.fromisoformat(text.replace("z", "Z")).timestamp()
    except ValueError:
        raise ValueError(
            f"expected a duration ({DURATION_HINT}) or an ISO-8601 time such as "
            f"2026-12-06T19:00:00Z, got {text!r}"
        ) from None


def journal_paths(db: Path) -> list[str]:
    """Every job and group path the journal has a row of, sorted."""
    rows = _query(db, "SELECT path FROM attempts UNION SELECT path FROM decisions ORDER BY path")
    return [str(row[0]) for row in rows if row[0]]


def read_succeeded(db: Path) -> dict[str, set[str]]:
    """The spec hashes each path has succeeded with (none if no journal)."""
    return {path: set(by_hash) for path, by_hash in read_successes(db).items()}


def read_successes(
    db: Path,
    paths: Collection[str] | None = None,
    *,
    resumed: bool = False,
    manifest: str | None = None,
) -> dict[str, dict[str, tuple[int | None, float]]]:
    """For ``run --resume``: each path's last success per spec hash, ``(code, ended_at)``.

    ``paths``: only these (the once-jobs, read through the path index: a journal full of a
    periodic job's successes is not read whole at every resume); None: every path.
    ``resumed``: only the successes of the run a ``--resume`` finishes, those since the
    start of the last ``run`` of ``manifest`` that was no ``--resume`` (``run_start_seq``);
    every one in a journal no ``run`` marked so (an older jobvisor's, a daemon's alone).
    """
    if not db.exists():
        return {}
    select = (
        "SELECT path, spec_hash, code, ended_at FROM attempts"
        " WHERE outcome = 'succeeded' AND spec_hash IS NOT NULL"
    )
    since = run_start_seq(db, manifest) if resumed else None
    if since is not None:
        select += f" AND seq > {since:d}"
    if paths is None:
        rows = _query(db, select + " ORDER BY id")
    else:
        # Each path's rows in one chunk, by id.
        rows = _for_paths(db, f"{select} AND path IN ({{}}) ORDER BY id", paths)
    found: dict[str, dict[str, tuple[int | None, float]]] = {}
    for path, digest, code, at in rows:
        found.setdefault(path, {})[digest] = (code, float(at))
    return found


RUN_START: Final = "run_start"  # a `run`'s row at its start, path "" (shown as `(run)`)
RUN_END: Final = "run_end"  # and at its end: a run_start with none after it was killed
RUN_KINDS: Final = (RUN_START, RUN_END)


def last_run_start(db: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The detail of the latest ``run_start`` row and those of the ``run_end`` rows after it,
    None if a ``daemon_start`` came after it (that daemon told of it), or none (or no
    journal). A ``run_start`` without ``version`` is an older jobvisor's, which wrote no end."""
    if not db.exists():
        return None
    rows = _query(
        db,
        "SELECT kind, detail, at FROM decisions WHERE path = '' AND kind IN (?, ?) AND id >= "
        "(SELECT coalesce(max(id), 0) FROM decisions WHERE path = '' AND kind IN (?, ?))"
        " ORDER BY id",
        (RUN_START, RUN_END, RUN_START, "daemon_start"),
    )
    if not rows or rows[0][0] != RUN_START:
        return None
    start = _decoded(rows[0][1]) or {}
    if "version" not in start:
        return None
    start.setdefault("at", rows[0][2])
    return start, [_decoded(detail) or {} for _, detail, _ in rows[1:]]


def run_start_seq(db: Path, manifest: str | None = None) -> int | None:
    """The seq of the latest ``run_start`` row of a ``run`` of ``manifest`` (its resolved
    path, as ``run`` writes it) that was no ``--resume``: the start of the run a ``--resume``
    finishes (a resume of a resume goes on with the same one). Two manifests in one
    directory share a state dir, so another manifest's run in between is no new start of
    this one's; ``manifest`` None: the latest of any. None without one: a manifest no ``run``
    of this jobvisor marked (its successes all count, even when another manifest's runs in
    the same state dir were marked), or a journal not yet migrated to seq."""
    if "seq" not in _columns(db)["decisions"]:
        return None
    select = (
        "SELECT seq FROM decisions WHERE path = '' AND kind = ?"
        " AND NOT coalesce(json_extract(detail, '$.resume'), 0)"
    )
    if manifest is None:
        rows = _query(db, select + " ORDER BY id DESC LIMIT 1", (RUN_START,))
    else:
        rows = _query(
            db,
            select + " AND json_extract(detail, '$.manifest') = ? ORDER BY id DESC LIMIT 1",
            (RUN_START, manifest),
        )
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


_IN_MOST: Final = 500  # values in one IN (...): far below any SQLite's limit on parameters


def _for_paths(db: Path, sql: str, paths: Collection[str]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (whose ``{}`` takes the marks of an IN list) for ``paths``, asked
    ``_IN_MOST`` paths at a time."""
    names = sorted(paths)
    rows: list[tuple[Any, ...]] = []
    for at in range(0, len(names), _IN_MOST):
        chunk = names[at : at + _IN_MOST]
        rows += _query(db, sql.format(", ".join("?" * len(chunk))), tuple(chunk))
    return rows


def last_ticks(db: Path, paths: Collection[str]) -> dict[str, float]:
    """For a start with persistent jobs: the start (wall time) of each path's newest attempt.

    Only ``paths`` (each one's newest row found through the path index); a path with no
    attempt in the journal, or no journal at all, is left out.
    """
    if not paths or not db.exists():
        return {}
    rows = _for_paths(
        db,
        "SELECT path, started_at FROM attempts WHERE id IN"
        " (SELECT MAX(id) FROM attempts WHERE path IN ({}) GROUP BY path)",
        paths,
    )
    return {str(path): float(started) for path, started in rows}


def last_breaker_states(db: Path) -> dict[str, tuple[str, float]]:
    """For a daemon's start: each breaker's last journaled state and when (wall time)."""
    if not db.exists():
        return {}
    rows = _query(
        db,
        "SELECT path, detail, at FROM decisions WHERE kind = 'breaker' AND id IN"
        " (SELECT MAX(id) FROM decisions WHERE kind = 'breaker' GROUP BY path)",
    )
    found: dict[str, tuple[str, float]] = {}
    for _path, detail, at in rows:
        data = _decoded(detail)
        if data is not None and "breaker" in data and "new" in data:  # else not ours: skipped
            found[str(data["breaker"])] = (str(data["new"]), float(at))
    return found


def open_cooldowns(db: Path, now: float) -> dict[str, tuple[float, int]]:
    """For a daemon's start: children whose last decision is a cooldown still running at ``now``.

    A later decision about a group above the child (a person's restart, stop or start of it,
    a reload removing it, its own restart or cooldown) ended the child's too: its supervisor
    was stopped or started anew. Returns ``{path: (seconds left, cycle)}``.
    """
    if not db.exists():
        return {}
    rows = _query(
        db,
        f"SELECT id, path, kind, detail, at FROM decisions WHERE id IN (SELECT MAX(id)"  # noqa: S608 - constants
        f" FROM decisions WHERE kind IN {STATE_KINDS_SQL} GROUP BY path)",
    )
    latest = {str(path): int(row_id) for row_id, path, _kind, _detail, _at in rows}
    found: dict[str, tuple[float, int]] = {}
    for row_id, path, kind, detail, at in rows:
        if kind != "cooldown" or _ended_above(str(path), int(row_id), latest):
            continue
        data = _decoded(detail)
        try:
            duration, cycle = float(data["duration"]), int(data["cycle"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError, OverflowError):
            continue  # not a row jobvisor wrote: no cooldown is restored from it
        if not math.isfinite(duration):
            continue  # nor from one that never ends
        # Never more than its length: a cooldown journaled before the clock went back began
        # in what is now the future.
        left = min(duration, float(at) + duration - now)
        if left > 0:
            found[str(path)] = (left, cycle)
    return found


def _ended_above(path: str, row_id: int, latest: dict[str, int]) -> bool:
    """Whether a group above ``path`` has a decision later than ``path``'s row ``row_id``."""
    parts = path.split("/")
    return any(latest.get("/".join(parts[:n]), -1) > row_id for n in range(1, len(parts)))
