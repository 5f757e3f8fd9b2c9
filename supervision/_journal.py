"""The journal: every attempt and every supervisor decision, in SQLite (WAL).

Supervisors never write it themselves: the tree calls ``Journal.record``
inline as its sink for the events the journal keeps (``start_tree(sink=...)``);
``record`` only queues a row, and a writer thread commits them in batches (at
most ``max_delay`` after they happened), so a slow disk never slows a restart.
A batch that cannot be written (a locked database, a full disk) is kept and
retried, with the rows after it queued behind, in order; the log says once
that writing failed and once that it works again. A process killed with
SIGKILL loses no committed row; it can lose the rows of the last
``max_delay`` that were not committed yet, and the kept ones. Reading it lives
in ``supervision._history``, which ``jobvisor history`` loads alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import hashlib
import itertools
import json
import math
import os
import queue
import resource
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import logbook

from actors._env import JobEnv
from actors._runtime import active_runtime
from supervision import _events as ev
from supervision._files import (
    UnsafePathError,
    check_private_file,
    ensure_private_dir,
    open_private,
)
from supervision._history import (
    RUN_START,
    STATE_KINDS_SQL,
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
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path

    from supervision._spec import ChildSpec, JobSpec, SupervisorSpec

__all__ = [
    "Journal",
    "JournalError",
    "job_hash",
    "job_hashes",
    "last_breaker_states",
    "older_successes",
    "open_cooldowns",
    "read_history",
    "read_succeeded",
    "read_successes",
    "spec_hash",
    "succeeded_before",
]

log = logbook.Logger("supervision.journal")

LOCK_WAIT: Final = 2.0  # how long a locked journal is waited for before it counts as failing
# Under gevent SQLite's busy wait (a sleep in C) stalls every greenlet: SQLite waits this
# long at a time, and the writer retries until LOCK_WAIT has passed before it says anything.
GEVENT_BUSY: Final = 0.05
RETRY_FIRST: Final = 0.1  # the first wait before a failed batch is tried again; it doubles...
RETRY_MAX: Final = 5.0  # ...up to this
MAX_KEPT: Final = 100_000  # rows kept while writing fails; past it the oldest attempts go first
CLOSE_WAIT: Final = 10.0  # how long close() retries rows it could not write yet
# Retention: the newest rows of each path the journal keeps in each table (a job's attempts,
# its decisions). A crash loop wrote 1M of each in 14 minutes (165 MB); 10,000 are days of
# an hourly job's history, and what a person reads of a loop. The writer prunes the rest.
KEEP: Final = 10_000
PRUNE_BATCH: Final = 500  # rows one prune step deletes at most: one short transaction
PRUNE_IDLE: Final = 0.05  # with pruning left and no row coming, the writer prunes this often
PRUNE_SLICE: Final = 0.005  # after a batch, prune steps go on for at most this long (seconds)

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
    # The order rows were journaled in, across both tables (each table's id orders its own):
    # what "newest" means, as a row's wall time jumps with the clock. NULL in rows from
    # before it, which come first, by their time (see _history.read_history).
    "ALTER TABLE attempts ADD COLUMN seq INTEGER; ALTER TABLE decisions ADD COLUMN seq INTEGER;",
)


# What a spec hash this jobvisor journals begins with. Older ones wrote 16 hex digits of
# sha256(repr(spec)), which every field a version adds to a spec changes (the repr shows its
# default): their successes cannot be matched to a job, and ``run --resume`` says so
# (``older_successes``). The next change of how a job's identity is computed takes "v3:",
# unless, as when an http job's headers, params and body joined it, a job's hash changes only
# where it had to (a field at its default is out of the form): the others keep theirs.
HASH_MARK: Final = "v2:"


def spec_hash(spec: object) -> str:
    """A stable digest of a frozen spec, to recognise an identical job later (``HASH_MARK``).

    Of its canonical form (``_canonical``): a dataclass field equal to its default is left
    out, so a field a later version adds with a default keeps every hash journaled before.
    The same in every process: nothing of ``id()``, ``hash()`` or a set's order goes in.
    """
    form = _form(spec).encode("utf-8", "surrogatepass")  # a lone surrogate in a text too
    return HASH_MARK + hashlib.sha256(form).hexdigest()[:16]


def _canonical(value: object, out: list[str]) -> None:
    """Append ``value``'s canonical form to ``out``: one text per value, whatever its origin.

    Dataclasses by their class name and the fields shown in their repr (the job's identity
    the journal always kept: ``output``, ``autostart``... are out of it) or marked as part of
    the identity though hidden (an http job's headers, params and body), sorted by name and
    without those equal to their default; mappings and sets sorted by their items' forms; a
    tuple and a list alike; enums by value; floats exactly (``float.hex``); classes (an
    exception in ``give_up_on``) by module and name. Each text is length-prefixed and each
    container counted, so two values never share a form. Anything else by its type and
    repr, as before. A mapping of ``str`` to ``str`` (an env) and a sequence of ``str`` (an
    argv) take a shortcut to the same bytes (``_text_items``).
    """
    if isinstance(value, enum.Enum):
        value = value.value
    scalar = _scalar(value)
    if scalar is not None:
        out.append(scalar)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        shown = [
            (name, field_value)
            for name, default, via in _identity_fields(type(value))
            if not _is_default(
                field_value := getattr(value, name) if via is None else getattr(value, via)(),
                default,
            )
        ]
        out.append(_text("d", type(value).__qualname__) + f"{len(shown)}(")
        for name, field_value in shown:
            out.append(_text("", name))
            _canonical(field_value, out)
        out.append(")")
    elif isinstance(value, JobEnv):
        _job_env(value, out)
    elif isinstance(value, Mapping):
        forms = _text_items(value)
        if forms is None:
            forms = [_form(k) + _form(v) for k, v in value.items()]
        _sorted("m", forms, out)
    elif isinstance(value, (set, frozenset)):
        _sorted("S", [_form(item) for item in value], out)
    elif isinstance(value, (tuple, list)):
        _sequence(value, out)
    else:
        out.append(_text("r", f"{type(value).__qualname__}:{value!r}"))


def _scalar(value: object) -> str | None:
    """The canonical form of a value that holds no other, None for any other value."""
    found: str | None = None
    if value is None:
        found = "N"
    elif value is True or value is False:
        found = "T" if value else "F"
    elif isinstance(value, int):
        found = f"i{int(value)};"
    elif isinstance(value, float):
        found = f"f{float(value).hex()};"
    elif isinstance(value, str):
        found = _text("s", value)
    elif isinstance(value, bytes):
        found = _text("b", value.hex())
    elif isinstance(value, type):
        found = _text("c", f"{value.__module__}.{value.__qualname__}")
    return found


def _sequence(value: tuple[Any, ...] | list[Any], out: list[str]) -> None:
    out.append(f"l{len(value)}(")
    if all(type(item) is str for item in value):  # an argv: as _text_items says
        out.extend([f"s{len(item)}:{item}" for item in value])  # _text("s", item)
    else:
        for item in value:
            _canonical(item, out)
    out.append(")")


def _job_env(env: JobEnv, out: list[str]) -> None:
    """A ``JobEnv``'s form, the same bytes as a dict of its entries: the forms of its shared
    part (an env file's) sorted once for every job that shares it, not again for each (10,000
    jobs sharing 10,000 variables were 10^8 forms made and sorted)."""
    shared, own = env.shared, env.own
    memo = shared.memo.get("journal")
    if memo is None:
        forms = {key: f"s{len(key)}:{key}s{len(item)}:{item}" for key, item in shared.items()}
        ordered = sorted(forms.values())
        whole = f"m{len(ordered)}(" + "".join(ordered) + ")"  # the form with nothing over it
        memo = shared.memo["journal"] = (forms, ordered, whole)
    forms, ordered, whole = memo
    if not own:
        out.append(whole)
        return
    mine = _text_items(own)
    if mine is None:  # not all plain str (code's own): the generic walk, as for a dict
        _sorted("m", [_form(k) + _form(v) for k, v in env.items()], out)
        return
    hidden = {forms[key] for key in own if key in forms}
    kept = [form for form in ordered if form not in hidden] if hidden else ordered
    _sorted("m", kept + mine, out)


def _text_items(mapping: Mapping[Any, Any]) -> list[str] | None:
    """The forms of a mapping's items when each key and value is a plain ``str`` (an env, a
    header map), None for any other: the generic walk's bytes without its calls per text,
    which were most of the hash of 10,000 jobs' envs. Exactly ``str``: a subclass (an enum's
    member) may format otherwise, so it takes the generic walk."""
    forms = []
    for key, item in mapping.items():
        if type(key) is not str or type(item) is not str:
            return None
        forms.append(f"s{len(key)}:{key}s{len(item)}:{item}")  # _form(key) + _form(item)
    return forms


def _form(value: object) -> str:
    out: list[str] = []
    _canonical(value, out)
    return "".join(out)


def _text(tag: str, text: str) -> str:
    return f"{tag}{len(text)}:{text}"


def _sorted(tag: str, forms: list[str], out: list[str]) -> None:
    out.append(f"{tag}{len(forms)}(")
    out.extend(sorted(forms))
    out.append(")")


_NO_DEFAULT: Final = object()
# Each spec class's identity fields, (name, default or _NO_DEFAULT), found once per class.
_IDENTITY_FIELDS: dict[type, tuple[tuple[str, object, str | None], ...]] = {}


def _identity_fields(cls: type) -> tuple[tuple[str, object, str | None], ...]:
    found = _IDENTITY_FIELDS.get(cls)
    if found is None:
        fields = sorted(dataclasses.fields(cls), key=lambda field: field.name)
        # A field out of the repr (``output``, ``autostart``) is out of the identity, unless
        # it is out of the repr only to hide a secret (an http job's headers, params and body:
        # ``actors._http.IDENTITY``). Left out at their defaults, as any field: a job without
        # them keeps the hash it was journaled under. An identity that names a method reads
        # the field through it (an http job's headers, a secret's value out).
        found = tuple(
            (field.name, _default(field), _via(field))
            for field in fields
            if field.repr or field.metadata.get("identity", False)
        )
        _IDENTITY_FIELDS[cls] = found
    return found


def _via(field: dataclasses.Field[Any]) -> str | None:
    via = field.metadata.get("identity")
    return via if isinstance(via, str) else None


def _default(field: dataclasses.Field[Any]) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _NO_DEFAULT


def _is_default(value: object, default: object) -> bool:
    if default is _NO_DEFAULT:
        return False
    try:
        return bool(value == default)
    except Exception:  # a value that cannot say (an array's ==): it is not the default
        return False


# Rows are queued as ready-made parameter tuples behind a tag: the writer only inserts.
_ATTEMPT: Final = (
    "attempt"  # (path, attempt, started_at, ended_at, outcome, code, error, hash, node, seq)
)
_DECISION: Final = "decision"  # (at, path, kind, detail as JSON, seq)
_INSERT_ATTEMPT: Final = (
    "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome, code, error, spec_hash,"
    " node, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DECISION: Final = (
    "INSERT INTO decisions (at, path, kind, detail, seq) VALUES (?, ?, ?, ?, ?)"
)
# Where a journal opened again goes on: the seq of each table's newest row (by id: one index
# step; pruning never deletes it). Rows are written in seq order but for two threads' rows
# queued a moment apart, whose seqs may then repeat once: they tie, and go by their time.
_LAST_SEQ: Final = (
    "SELECT MAX(seq) FROM (SELECT (SELECT seq FROM attempts ORDER BY id DESC LIMIT 1) AS seq"
    " UNION ALL SELECT (SELECT seq FROM decisions ORDER BY id DESC LIMIT 1))"
)
# Retention (Journal._prune), every query through the path index.
_PAST_KEPT: Final = {
    "attempts": "SELECT id FROM attempts WHERE path = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
    "decisions": "SELECT id FROM decisions WHERE path = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
}
_PRUNE: Final = {
    "attempts": "DELETE FROM attempts WHERE id IN (SELECT id FROM attempts WHERE path = ?"
    " AND id <= ? AND id != ? ORDER BY id LIMIT ?)",
    "decisions": "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE path = ?"
    " AND id <= ? AND id != ? ORDER BY id LIMIT ?)",
}
_PRUNE_TREE: Final = (
    "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE path = ?"
    " AND id <= ? AND id != ? AND id NOT IN (SELECT MAX(id) FROM decisions WHERE path = ''"
    " AND kind = 'run_start' AND NOT coalesce(json_extract(detail, '$.resume'), 0)"  # RUN_START
    " GROUP BY json_extract(detail, '$.manifest')) ORDER BY id LIMIT ?)"
)
# The decision open_cooldowns reads of a path: its latest about the child's state.
_LAST_STATE: Final = (
    f"SELECT id FROM decisions WHERE path = ? AND kind IN {STATE_KINDS_SQL}"  # noqa: S608 - constants
    " ORDER BY id DESC LIMIT 1"
)
# What SQLite raises for a row it cannot take (a lone surrogate in a text, an int past 64
# bits): the row's fault, not the database's, so trying it again would never help.
_ROW_ERRORS: Final = (
    ValueError,
    OverflowError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


class _Opened(NamedTuple):
    """What ``Journal._migrate`` opened: the writer's connection, and its last row's seq."""

    conn: sqlite3.Connection
    last: int  # 0: no row yet


@dataclass(slots=True)
class _Outage:
    """A time the journal could not write: from the first failed batch to the next empty backlog."""

    since: float  # monotonic, when the first failed try began
    cause: str = ""  # the last failure's, in words
    announced: bool = False  # the log said it cannot write
    written: int = 0  # rows written since it began
    dropped: int = 0  # rows dropped since it began


class Journal:
    """Open (and migrate) ``STATE_DIR/journal.sqlite3`` and write to it from one thread.

    ``attach(tree)`` subscribes it to a tree's events; ``close()`` commits
    what is queued and stops the writer. Reading (``history``,
    ``succeeded_hashes``) uses its own connection and works while writing.

    ``lock_wait``: how long a journal locked by another process is waited
    for, at the start (then ``JournalError``) and at each write (then the
    batch is kept and retried). ``max_kept``: how many rows it keeps while it
    cannot write; past that the oldest attempts are dropped first (then the
    oldest decisions), each counted and reported.

    ``keep``: the newest rows of each path it keeps in each table (None: all).
    Its writer prunes older ones between batches, ``PRUNE_BATCH`` at a time: a
    path is looked at when it is first written, then every ``keep // 10`` of its
    rows. Never pruned: what ``run --resume`` and a daemon's restore read (each
    path's latest attempt, each breaker's latest state, the latest decision a
    cooldown is restored from and each manifest's latest ``run_start`` that was no
    resume are among the newest, or kept besides).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        hashes: dict[str, str] | None = None,
        base: str | None = None,
        max_delay: float = 0.05,
        batch: int = 500,
        lock_wait: float = LOCK_WAIT,
        max_kept: int = MAX_KEPT,
        keep: int | None = KEEP,
    ) -> None:
        if keep is not None and (type(keep) is not int or keep < 1):
            raise ValueError(f"keep: expected a number of rows of at least 1 or None, got {keep!r}")
        self.path = journal_path(state_dir)
        self._hashes = hashes or {}
        self._base = base  # what ``hashes`` were made with: a reload's are too (``rehash``)
        self._max_delay = max_delay
        self._batch = batch
        self._lock_wait = lock_wait
        self._max_kept = max_kept
        # The writer's busy wait: all of lock_wait in one go, where that stalls no one else.
        self._busy = lock_wait if active_runtime() == "threads" else min(lock_wait, GEVENT_BUSY)
        try:
            self._prepare()
            opened = self._migrate()
        except UnsafePathError as exc:
            raise JournalError(str(exc)) from exc
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot open the journal {self.path}: {_cause(exc, self.path)}; {_hint(exc)}"
            ) from exc
        self._conn: sqlite3.Connection | None = opened.conn  # the writer's, taken at its start
        # A deque and two bells, not a queue of rows: a row costs an append, and the writer
        # wakes once per batch instead of once per row (per row was most of the journal's
        # cost). The bells are SimpleQueues of tokens, not Events: an Event's wait is a
        # Condition's in Python, a new lock per wait, and the writer's two waits per batch were
        # 7% of a crash loop's GIL time in the daemon (issue 15, fifth pass).
        self._pending: deque[object] = deque()
        # Each row's seq, taken as it is queued: the order of ``record`` calls. A count's
        # next() is one C call, atomic under the GIL, so any thread may take one.
        self._seq = itertools.count(opened.last + 1).__next__
        self._rung = False  # a token is in _wake for what is pending
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token: rows are pending
        self._hurry: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token: skip the delay
        self._stopping = False
        # The writer's own (no other thread touches them until it ended): rows it could not
        # write yet, oldest first, before any in _pending; the outage they belong to, if any.
        self._kept: deque[object] = deque()
        self._outage: _Outage | None = None
        self._dropped = 0  # rows dropped, ever: kept past max_kept, or refused by SQLite
        self._cause = ""  # why writing last failed, in words
        self._unwritten = 0  # rows the writer still held when close() gave up on them
        self._deadline: float | None = None  # set by close(): retry until then
        self._lost: int | None = None  # close()'s answer, once closed
        # The writer's retention bookkeeping: rows written of each (table, path) since it was
        # last looked at, and the (table, path)s to look at, in turn (a dict as an ordered set).
        self._keep = keep
        self._check_every = max(1, keep // 10) if keep is not None else 0
        self._since: dict[tuple[str, str], int] = {}
        self._to_prune: dict[tuple[str, str], None] = {}
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
        fd = open_private(self.path, os.O_RDWR | os.O_CREAT, "journal")
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        self._ident = (st.st_dev, st.st_ino)  # the file a new connection must find at the path
        st = self.path.parent.stat()
        self._dir_ident = (st.st_dev, st.st_ino)  # and the dir it is in (``_lost_alone``)

    def _connect(self, busy: float) -> sqlite3.Connection:
        if self._moved():  # by path, SQLite would make an empty journal (0644) in its place
            gone = self._lost_alone()
            if gone == "deleted":
                return self._renewed()
            if gone == "replaced":
                raise sqlite3.OperationalError(
                    "its file was replaced by another while jobvisor ran; remove that file "
                    "and a new journal is started at its path"
                )
            raise sqlite3.OperationalError("its file was moved or deleted (its state dir too?)")
        conn = sqlite3.connect(
            self.path, timeout=busy, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _lost_alone(self) -> str | None:
        """``deleted`` or ``replaced`` when the journal's file alone went from its path, its
        dir still the one it was made in (a person's ``rm``, a cleanup script); None while it
        is there, or when its dir went with it (moved: it is written on through its open
        connection, and the state dir's watch stops the daemon).

        Two ``stat`` calls, before each batch written: rows written to a deleted file were
        lost without a word (h245).
        """
        try:
            st = self.path.parent.stat()
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._dir_ident:
            return None
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError:
            return None
        return None if (st.st_dev, st.st_ino) == self._ident else "replaced"

    def _still_ours(self, conn: sqlite3.Connection | None, rows: int) -> sqlite3.Connection | None:
        """``conn``, unless its file alone was deleted or replaced: None, and a new connection
        finds out which (``_connect``). Looked at only when ``rows`` are to be written."""
        if conn is None or not rows or self._lost_alone() is None:
            return conn
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        return None

    def _renewed(self) -> sqlite3.Connection:
        """A new journal at the path of one deleted under us, said at ERROR; its connection.

        The rows the deleted one held are gone with it; the rows not written yet go to the
        new one (its ``-wal`` and ``-shm``, if left, were the deleted one's: removed first,
        or SQLite would replay them into the new file).
        """
        made = None
        try:
            for path in companions(self.path)[1:]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            self._prepare()
            made = self._ident
            # The writer's busy wait, not the start's: under gevent a long one holds the hub.
            opened = self._migrate(self._busy)
        except (OSError, sqlite3.Error, UnsafePathError, JournalError) as exc:
            if made is not None:
                # Half made (a full disk): gone again, so that the next try makes it anew,
                # where an empty file without tables would fail every batch for good.
                self._unmake(made)
            # Kept, and tried again, as a batch that failed (the writer only knows SQLite's).
            raise sqlite3.OperationalError(f"a new journal could not be made: {exc}") from exc
        log.error(
            "journal {}: its file was deleted while jobvisor ran; a new journal is started "
            "at that path, and the rows not written yet go to it (what the deleted one held "
            "is gone: history starts again from here)",
            self.path,
        )
        return opened.conn

    def _unmake(self, made: tuple[int, int]) -> None:
        """Remove the journal file ``_renewed`` made (``made``: its identity) and its
        companions, if it is still the one at the path."""
        with contextlib.suppress(OSError):
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == made:
                for path in companions(self.path):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    def _moved(self) -> bool:
        try:
            st = self.path.stat()
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def _migrate(self, busy: float | None = None) -> _Opened:
        """Bring the schema up to date; the connection, kept for the writer (a journal moved
        or deleted with its state dir is written on through it, where a new one could not
        find it), and the seq of the journal's last row (0: none yet)."""
        conn = self._connect(self._lock_wait if busy is None else busy)
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
            last = int(conn.execute(_LAST_SEQ).fetchone()[0] or 0)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
        except BaseException:
            conn.close()
            raise
        return _Opened(conn, last)

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
            ev.FailedFinally,
            ev.Escalated,
            ev.CooldownStarted,
            ev.ProbationPassed,
            ev.BreakerChanged,
            ev.ThreadAbandoned,
            ev.Commanded,
        }
    )

    def rehash(self, path: str, old: ChildSpec | None, new: ChildSpec | None) -> None:
        """A daemon's reload changed the child at ``path`` from ``old`` to ``new`` (None: none
        there): the attempts of ``new``'s jobs are journaled from now under their own spec's
        hash (``job_hash``), and ``old``'s jobs that ``new`` has not are forgotten.

        Called where the reload makes the step: after its remove, before its add, so that
        ``run --resume`` never takes one spec's attempt for another's. Only the jobs whose
        spec differs are hashed: a reload of one job in 10,000 hashes one.
        """
        before, after = dict(_jobs(path, old)), dict(_jobs(path, new))
        hashes = self._hashes
        for gone in before.keys() - after.keys():
            hashes.pop(gone, None)  # one dict operation: atomic for the threads that read it
        for at, job in after.items():
            if before.get(at) != job or at not in hashes:
                hashes[at] = job_hash(job, self._base)

    def notified(self, at: float, path: str, detail: dict[str, Any]) -> None:
        """Queue a ``notify`` row: a notification's delivery ended (delivered or not, tries)."""
        self._put((_DECISION, (at, path, "notify", json.dumps(detail), self._seq())))

    def daemon(self, kind: str, detail: dict[str, Any]) -> None:
        """Queue a row of the daemon's own life (``daemon_start``, ``daemon_reload``,
        ``daemon_stop``) or a run's (``run_end``), path "" (the tree itself): a person reading
        ``history`` after an incident sees that the daemon restarted, or was reloaded, in
        between."""
        self._put((_DECISION, (time.time(), "", kind, json.dumps(detail), self._seq())))

    def run_start(self, detail: dict[str, Any], timeout: float = 5.0) -> bool:
        """Write a ``run``'s ``run_start`` row (path ""; ``manifest`` and ``resume`` in
        ``detail``) and wait until it is committed, before its first attempt: ``run --resume``
        counts the successes since the last one of its manifest that was no resume
        (``read_successes``), so a run killed in its first 50 ms must not leave none (the
        resume would count from the night before). False as ``flush``."""
        self.daemon(RUN_START, detail)
        return self.flush(timeout)

    def commanded(self, event: ev.Commanded, via: str) -> None:
        """Queue ``event``'s row as ``record`` does, saying through what the person asked
        (``via``: ``control``, the control socket; ``http``, the endpoint): never who, nor
        any token. A reload's ``added``/``removed`` take none: their reload row has it."""
        path, kind, detail = _commanded(event)
        if kind.startswith("person_"):
            detail["via"] = via
        self._put((_DECISION, (event.at, path, kind, json.dumps(detail), self._seq())))

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
            return _DECISION, (event.at, event.path, "restart", restart, self._seq())
        if isinstance(event, ev.AttemptFinished):
            return _ATTEMPT, (
                event.path,
                event.attempt,
                event.started_at,
                event.at,
                event.outcome._value_,  # not ``value``: an enum's property is two Python calls
                event.code,
                event.error,
                self._hashes.get(event.path),
                event.node,
                self._seq(),
            )
        found = _commanded(event) if type(event) is ev.Commanded else _decision(event)
        if found is None:
            return None
        path, kind, detail = found
        return _DECISION, (event.at, path, kind, json.dumps(detail), self._seq())

    def _write_loop(self) -> None:
        """The writer thread: commit what is queued, batch by batch, until close() is done."""
        wake, hurry = self._wake, self._hurry
        conn, self._conn = self._conn, None
        retry = RETRY_FIRST
        try:
            while True:
                if self._outage is None:
                    conn = self._idle(wake, conn)
                    # Let rows gather for up to max_delay; a flush or close cuts it short.
                    timeout = self._max_delay
                else:
                    # Rows queue behind the kept ones meanwhile; a flush or close tries at once.
                    timeout = self._until_retry(retry)
                    retry = min(retry * 2, RETRY_MAX)
                with contextlib.suppress(queue.Empty):
                    hurry.get(timeout=timeout)
                    while True:  # more flushes meanwhile: this batch serves them all
                        hurry.get_nowait()
                if self._outage is not None:
                    with contextlib.suppress(queue.Empty):
                        while True:  # rung while failing: what they rang for is taken now
                            wake.get_nowait()
                # Unrung before draining: a row appended after this rings again.
                self._rung = False
                stopping = self._stopping
                conn = self._between(self._write(conn))
                if self._outage is None:
                    retry = RETRY_FIRST
                elif (
                    stopping
                    and self._deadline is not None
                    and (time.monotonic() >= self._deadline or self._moved())
                ):
                    self._unwritten = self._count(self._kept) + self._count(self._pending)
                    return
                if stopping and self._outage is None:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _idle(
        self, wake: queue.SimpleQueue[None], conn: sqlite3.Connection | None
    ) -> sqlite3.Connection | None:
        """Wait for rows; old rows left to prune are pruned meanwhile, every PRUNE_IDLE.

        Returns the connection to use next (None: connect again).
        """
        while self._to_prune:
            try:
                wake.get(timeout=PRUNE_IDLE)
            except queue.Empty:
                conn = self._prune_slice(conn)
            else:
                return conn
        wake.get()
        return conn

    def _until_retry(self, retry: float) -> float:
        if self._deadline is None:
            return retry
        return max(0.0, min(retry, self._deadline - time.monotonic()))

    def _write(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Commit the kept rows, then what was pending; at the first failure keep the rest.

        Returns the connection to use next (None: connect again).
        """
        pending, kept = self._pending, self._kept
        if kept:
            # Behind the kept rows, in order. Only now: appending goes on meanwhile.
            kept.extend([pending.popleft() for _ in range(len(pending))])
            self._trim()
        source = kept or pending
        count = len(source)
        conn = self._still_ours(conn, count)
        while count > 0:
            rows = [source.popleft() for _ in range(min(count, self._batch))]
            count -= len(rows)
            began = time.monotonic()
            try:
                if conn is None:
                    conn = self._connect(self._busy)
                written = self._commit(conn, rows)
            except sqlite3.Error as exc:
                if source is kept:
                    kept.extendleft(reversed(rows))
                else:
                    kept.extend(rows)  # the rest of the pending rows follow at the next try
                self._failed(exc, began, conn)
                return None
            for row in rows:
                if isinstance(row, _Flush):
                    row.done.set()
            if self._outage is not None:
                self._outage.written += written
        if self._outage is not None and not kept:
            self._recovered()
        return conn

    def _commit(self, conn: sqlite3.Connection, rows: Iterable[object]) -> int:
        """Insert ``rows`` in one transaction; how many. A failure rolls back and raises."""
        attempts: list[tuple[Any, ...]] = []
        decisions: list[tuple[Any, ...]] = []
        for row in rows:
            if isinstance(row, tuple):
                (attempts if row[0] is _ATTEMPT else decisions).append(row[1])
        try:
            conn.execute("BEGIN")
            conn.executemany(_INSERT_ATTEMPT, attempts)
            conn.executemany(_INSERT_DECISION, decisions)
            conn.execute("COMMIT")
        except _ROW_ERRORS:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return self._salvage(conn, attempts, decisions)
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if self._keep is not None:
            self._tally("attempts", attempts, 0)
            self._tally("decisions", decisions, 1)
        return len(attempts) + len(decisions)

    def _tally(self, table: str, rows: list[tuple[Any, ...]], at: int) -> None:
        """Count the rows written of each path; one first written, or every ``keep // 10``
        rows, is to be looked at for pruning."""
        since, every, to_prune = self._since, self._check_every, self._to_prune
        for row in rows:
            key = (table, row[at])
            count = since.get(key)
            if count is None or count >= every:
                since[key] = 0
                to_prune[key] = None
            else:
                since[key] = count + 1

    def _between(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """After a write: a few ms of pruning, if any is left and the journal writes well."""
        if not self._to_prune or self._outage is not None or self._stopping or conn is None:
            return conn
        return self._prune_slice(conn)

    def _prune_slice(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Prune steps between two batches, for PRUNE_SLICE at most: a tight loop's rows are
        pruned as fast as they come, and the next batch waits a few milliseconds at most."""
        end = time.monotonic() + PRUNE_SLICE
        while True:
            conn = self._prune(conn)
            if conn is None or not self._to_prune or time.monotonic() >= end:
                return conn

    def _prune(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """One step of retention: delete up to PRUNE_BATCH rows of one (table, path) older
        than its newest ``keep``. Returns the connection to use next (None: connect again).

        A failure only postpones it: the rows stay, and the path is looked at again after its
        next ``keep // 10`` rows.
        """
        keep = self._keep
        key = next(iter(self._to_prune))
        del self._to_prune[key]
        if keep is None:
            return conn
        table, path = key
        try:
            if conn is None:
                conn = self._connect(self._busy)
            # The newest row past the kept ones (an index walk of `keep` steps); it and all
            # before it go, but for the one a cooldown's restore reads.
            found = conn.execute(_PAST_KEPT[table], (path, keep)).fetchone()
            if found is None:
                return conn
            spared = -1
            if table == "decisions":
                last = conn.execute(_LAST_STATE, (path,)).fetchone()
                spared = -1 if last is None else int(last[0])
            # The tree's rows: each manifest's latest plain run_start is what a --resume
            # counts from, however many resumes and daemon starts came after it.
            prune = _PRUNE_TREE if table == "decisions" and path == "" else _PRUNE[table]
            conn.execute("BEGIN")
            deleted = conn.execute(prune, (path, found[0], spared, PRUNE_BATCH)).rowcount
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            log.debug("journal {}: pruning {} of {} postponed: {}", self.path, table, path, exc)
            return None
        if deleted >= PRUNE_BATCH:
            self._to_prune[key] = None  # more to delete: after the others' turn
        return conn

    def _salvage(
        self,
        conn: sqlite3.Connection,
        attempts: list[tuple[Any, ...]],
        decisions: list[tuple[Any, ...]],
    ) -> int:
        """Row by row: a row SQLite refuses goes in with its values made storable, else is dropped.

        One such row must not hold back the rows after it, as a retry never helps it.
        """
        written = 0
        refused: list[str] = []
        conn.execute("BEGIN")
        try:
            for sql, rows in ((_INSERT_ATTEMPT, attempts), (_INSERT_DECISION, decisions)):
                for row in rows:
                    try:
                        conn.execute(sql, row)
                    except _ROW_ERRORS:
                        try:
                            conn.execute(sql, tuple(_storable(value) for value in row))
                        except _ROW_ERRORS as exc:
                            refused.append(str(exc))
                            continue
                    written += 1
            conn.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        if refused:  # counted once committed: a batch that failed is tried again whole
            self._dropped += len(refused)
            if self._outage is not None:
                self._outage.dropped += len(refused)
            log.error(
                "journal {}: {} could not be stored ({}); dropped",
                self.path,
                _rows(len(refused)),
                refused[0],
            )
        return written

    def _failed(self, exc: sqlite3.Error, began: float, conn: sqlite3.Connection | None) -> None:
        """A batch was not written: start (or go on with) an outage; say so once."""
        if conn is not None:
            # A fresh connection for the next try: one that failed may be left unusable.
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(began)
        outage.cause = self._cause = _cause(exc, self.path)
        # SQLite waited all of lock_wait for a lock only where it may (threads); else the
        # writer's tries did, and it says nothing of a lock until lock_wait has passed.
        patience = 0.0 if self._busy >= self._lock_wait else self._lock_wait
        if not outage.announced and (
            not _locked(exc) or time.monotonic() - outage.since >= patience
        ):
            outage.announced = True
            log.warning(
                "journal {}: cannot write ({}); keeping {} and retrying",
                self.path,
                outage.cause,
                _rows(self._count(self._kept)),
            )
        self._trim()

    def _recovered(self) -> None:
        outage, self._outage = self._outage, None
        if outage is None or not (outage.announced or outage.dropped):
            return  # a lock waited out in silence
        if outage.dropped:
            log.error(
                "journal {}: written again; {} kept meanwhile were written, {} dropped",
                self.path,
                _rows(outage.written),
                outage.dropped,
            )
        else:
            log.warning(
                "journal {}: written again; {} kept meanwhile were written",
                self.path,
                _rows(outage.written),
            )

    def _trim(self) -> None:
        """Keep at most max_kept rows: drop the oldest attempts first, then the oldest rows."""
        kept = self._kept
        if len(kept) <= self._max_kept:
            return
        excess = self._count(kept) - self._max_kept  # a flush's marker takes no room
        if excess <= 0:
            return
        dropped = 0
        for droppable in (_ATTEMPT, None):  # None: any row (never a flush's marker)
            rest: deque[object] = deque()
            for item in kept:
                if (
                    dropped < excess
                    and type(item) is tuple
                    and (droppable is None or item[0] is droppable)
                ):
                    dropped += 1
                else:
                    rest.append(item)
            kept = rest
        self._kept.clear()
        self._kept.extend(kept)
        self._dropped += dropped
        outage = self._outage
        if outage is not None:
            if not outage.dropped and dropped:
                log.error(
                    "journal {}: more than {} rows wait to be written ({}); dropping the oldest"
                    " attempts first, each counted",
                    self.path,
                    self._max_kept,
                    outage.cause,
                )
            outage.dropped += dropped

    @staticmethod
    def _count(rows: Iterable[object]) -> int:
        return sum(1 for row in rows if type(row) is tuple)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until what was queued so far is committed; False on timeout or rows dropped."""
        dropped = self._dropped
        marker = _Flush(threading.Event())
        self._put(marker)
        self._hurry.put(None)
        return marker.done.wait(timeout) and self._dropped == dropped

    def close(self, timeout: float = CLOSE_WAIT) -> int:
        """Commit what is queued, retrying for up to ``timeout`` seconds, then stop the writer.

        Returns how many rows were lost (dropped while it could not write, or
        still unwritten now); any loss is logged at ERROR with its cause.
        """
        if self._lost is not None:
            return self._lost
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._hurry.put(None)
        self._wake.put(None)
        # A try that began just before the deadline may wait out a lock (busy) on top.
        self._thread.join(timeout + self._busy + 1.0)
        dropped = self._dropped
        if self._thread.is_alive():  # stuck in SQLite (a hung disk): what it holds is lost
            unwritten = self._count(list(self._kept)) + self._count(list(self._pending))
            log.error(
                "journal {}: still writing after {:g}s; {} may be lost",
                self.path,
                timeout,
                _rows(unwritten + dropped),
            )
        else:
            unwritten = self._unwritten
            also = f", and {dropped} were dropped before" if dropped else ""
            if unwritten:
                log.error(
                    "journal {}: {} could not be written ({}); they are lost{}",
                    self.path,
                    _rows(unwritten),
                    self._cause,
                    also,
                )
            elif dropped:
                log.error(
                    "journal {}: {} dropped while it could not write ({})",
                    self.path,
                    _rows(dropped),
                    self._cause,
                )
        self._lost = unwritten + dropped
        return self._lost

    # -- reading ---------------------------------------------------------------------------------

    def history(self, path: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return read_history(self.path, path, limit)

    def succeeded_hashes(self) -> dict[str, set[str]]:
        return read_succeeded(self.path)


def succeeded_before(
    spec: SupervisorSpec,
    successes: Mapping[str, Mapping[str, tuple[int | None, float]]],
    base: str | None = None,
) -> dict[str, tuple[int | None, float]]:
    """For ``run --resume``: the once-jobs of ``spec`` whose identical spec already succeeded
    (SPEC §6), ``{path: (code, at)}`` of that success, in start order
    (``start_tree(succeeded=...)`` takes it).

    ``successes`` is ``read_successes``'s, ``base`` the manifest's directory (see
    ``job_hash``). A success counts whatever came after it (a later run's failure too), and a
    job that runs again does not make its dependants run: ``--resume`` finishes an
    interrupted run; a plain ``run`` runs everything.
    """
    found: dict[str, tuple[int | None, float]] = {}
    for path, child in once_jobs(spec):
        success = successes.get(path, {}).get(job_hash(child, base))
        if success is not None:
            found[path] = success
    return found


def older_successes(
    spec: SupervisorSpec,
    successes: Mapping[str, Mapping[str, tuple[int | None, float]]],
) -> list[str]:
    """For ``run --resume``: the once-jobs of ``spec`` whose only journaled successes an older
    jobvisor wrote, in start order. Their hashes (see ``HASH_MARK``) cannot be computed
    again: such a job runs again, which ``run`` says rather than leave it to be noticed.

    A job with a success of this jobvisor's is left out: that one is what it goes by (a
    success of its spec, or a spec changed since). So is an http job's success under the
    identity before its headers, params, json and body counted (``_before_request``): no
    change of its spec is told by it, so it runs again, and is listed.
    """
    found = []
    for path, child in once_jobs(spec):
        digests = successes.get(path)
        if not digests:
            continue
        if not any(digest.startswith(HASH_MARK) for digest in digests) or (
            _before_request(child) in digests and spec_hash(child) not in digests
        ):
            found.append(path)
    return found


def _before_request(job: JobSpec) -> str | None:
    """An http job's hash as a jobvisor journaled it before its headers, params, json and body
    were part of its identity (None for any other job, or one that has none of them: its
    hash is what it was). An http job's hash has no manifest directory (``job_hash``)."""
    work: Any = job.work
    if work.kind != "http":
        return None
    bare: dict[str, Any] = {
        "headers": {},
        "params": {},
        "json": None,
        "body": None,
        "secret_headers": (),
    }
    if all(getattr(work, key) == value for key, value in bare.items()):
        return None
    return spec_hash(dataclasses.replace(job, work=dataclasses.replace(work, **bare)))


def once_jobs(spec: SupervisorSpec) -> list[tuple[str, JobSpec]]:
    """The once-jobs of ``spec`` with their paths, in start order: what ``--resume`` may skip
    (one with ``autostart: false`` is not run anyway: nothing to skip)."""
    from supervision._spec import JobSpec, walk  # noqa: PLC0415 - avoids an import cycle

    return [
        (path, child)
        for path, child in walk(spec)
        if isinstance(child, JobSpec)
        and child.schedule.finite
        and not child.schedule.periodic
        and child.autostart
    ]


# The decisions that a child is down for good, each with its reason.
_ENDS: Final[dict[type[ev.Event], str]] = {
    ev.GaveUp: "give_up",
    ev.NotStarted: "not_started",
    ev.FailedFinally: "failed_finally",
}


def _decision(event: ev.Event) -> tuple[str, str, dict[str, object]] | None:
    """(path, kind, detail) of a supervisor decision event, None for other events."""
    found: tuple[str, str, dict[str, object]] | None = None
    match event:
        case ev.RestartScheduled():
            found = (event.path, "restart", {"delay": event.delay, "number": event.number})
        case ev.RestartCancelled():
            found = (event.path, "restart_cancelled", {})
        case ev.GaveUp() | ev.NotStarted() | ev.FailedFinally():
            found = (event.path, _ENDS[type(event)], {"reason": event.reason})
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


def _commanded(event: ev.Commanded) -> tuple[str, str, dict[str, object]]:
    """A ``Commanded``'s (path, kind, detail): ``added``/``removed`` (a reload's, or the
    embedded API's), else a person's action, ``person_stop`` ... (``person_signal`` with its
    signal)."""
    if event.action in ("add", "remove"):
        return event.path, f"{event.action.removesuffix('e')}ed", {}
    detail: dict[str, object] = {} if event.signal is None else {"signal": event.signal}
    return event.path, f"person_{event.action}", detail


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _locked(exc: BaseException) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def _cause(exc: BaseException, db: Path) -> str:
    """Why the journal could not be opened or written, in words (SQLite's own terse)."""
    name = getattr(exc, "sqlite_errorname", "")
    if _locked(exc):
        return "the database is locked by another process"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return f"it is not an SQLite database, or a damaged one ({exc})"
    if name.startswith("SQLITE_READONLY"):
        return f"it is read-only here ({exc})"
    if _full(exc) or name.startswith("SQLITE_IOERR"):
        return _why_no_room(exc, db)
    return str(exc)


def _full(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_FULL") or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    )


def _why_no_room(exc: BaseException, db: Path) -> str:
    """A full disk, or a file size limit: SQLite says only "disk I/O error" for EFBIG."""
    try:
        space = os.statvfs(db.parent)
        no_space = space.f_bavail * space.f_frsize < 64 * 1024
    except OSError:
        no_space = False
    if _full(exc) or no_space:
        return f"the disk is full ({exc})"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"{exc}; the file size limit of this process is {limit} bytes"
    return str(exc)


def _hint(exc: BaseException) -> str:
    """What to do about a journal that cannot be opened."""
    name = getattr(exc, "sqlite_errorname", "")
    if _locked(exc):
        return "stop the process that holds it, or pass --state-dir"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return "move it aside (jobvisor then starts a new one), or pass --state-dir"
    if _full(exc) or name.startswith("SQLITE_IOERR"):
        return "free some space (or raise the limit), or pass --state-dir"
    return "check that the state dir is writable (or pass --state-dir)"


def _storable(value: object) -> object:
    """A value SQLite takes in place of one it refused, saying the same."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return str(value)
    if value is None or isinstance(value, (int, float, bytes)):
        return value
    return repr(value)


def job_hash(job: JobSpec, base: str | None = None) -> str:
    """A job's spec hash in the journal; ``base``: the directory of its manifest.

    A python job's module is found on ``sys.path``, where the manifest's directory is put:
    the same ``mod:f`` beside two manifests is two jobs, so the directory is part of its
    hash (a command's cwd is part of its spec already). Hashes journaled before this was so
    do not match: such a job runs once more under ``--resume``, as does every job whose
    success an older jobvisor journaled (``older_successes``).
    """
    if base is not None and job.work.kind == "python":
        return spec_hash((job, base))
    return spec_hash(job)


def _jobs(path: str, child: ChildSpec | None) -> Iterator[tuple[str, JobSpec]]:
    """The jobs of a child at ``path`` (itself, or those under a group), with their paths."""
    from supervision._spec import JobSpec, SupervisorSpec, walk  # noqa: PLC0415 - import cycle

    if isinstance(child, JobSpec):
        yield path, child
    elif isinstance(child, SupervisorSpec):
        for at, under in walk(child, path):
            if isinstance(under, JobSpec):
                yield at, under


def job_hashes(spec: SupervisorSpec, base: str | None = None) -> dict[str, str]:
    """The spec hash of every job in a tree, by path (``job_hash``)."""
    from supervision._spec import JobSpec, walk  # noqa: PLC0415 - avoids an import cycle

    return {path: job_hash(child, base) for path, child in walk(spec) if isinstance(child, JobSpec)}
