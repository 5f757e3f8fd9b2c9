"""A journal an older jobvisor wrote, read and resumed by this one (an operator's day 2).

The job identities in the journal must survive an upgrade that adds a spec field, and
what an older schema holds must be readable as it is, without writing to it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from faultkit import CLI, ENV

from supervision import Journal
from supervision._history import (
    FILENAME,
    last_breaker_states,
    last_ticks,
    open_cooldowns,
    read_history,
    read_recent_attempts,
)
from supervision._journal import job_hashes, spec_hash
from supervision._manifest import load_manifest

# The first schema, as jobvisor b82dc62 (schema version 1) created it, copied from its code.
SCHEMA_1 = """
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
"""

ONCE = """
    version: 1
    jobs:
      - name: migrate
        command: "echo migrating >> ran.txt; echo done"
      - name: after
        command: "test -f go || exit 4"
        depends_on: [migrate]
"""


def jobvisor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV, check=False
    )


def _two_versions() -> tuple[type, type]:
    """One spec class as one version wrote it, and as the next, with a field added (and
    defaulted), its fields in another order: each in its own module namespace, same names."""
    common = textwrap.dedent(
        """
        import enum
        from dataclasses import dataclass, field
        from types import MappingProxyType

        class Mode(enum.Enum):
            FAST = "fast"
            SLOW = "slow"

        @dataclass(frozen=True, slots=True, kw_only=True)
        class Inner:
            limit: float = 1.5
            tags: frozenset = frozenset()
        """
    )
    first = common + textwrap.dedent(
        """
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Job:
            name: str
            mode: Mode = Mode.FAST
            inner: Inner = Inner()
            env: object = field(default_factory=dict)
            argv: tuple = ()
        """
    )
    second = common.replace(
        "    tags: frozenset = frozenset()\n",
        "    tags: frozenset = frozenset()\n    jitter: float | None = None\n",
    ) + textwrap.dedent(
        """
        @dataclass(frozen=True, slots=True, kw_only=True)
        class Job:
            argv: tuple = ()
            name: str
            retries: int = 3
            mode: Mode = Mode.FAST
            inner: Inner = Inner()
            env: object = field(default_factory=dict)
            labels: object = field(default_factory=lambda: MappingProxyType({}))
        """
    )
    old: dict[str, object] = {"__name__": "specs"}
    new: dict[str, object] = {"__name__": "specs"}
    # Compiled without this file's `from __future__ import annotations`: real annotations.
    for source, namespace in ((first, old), (second, new)):
        code = compile(source, "specs.py", "exec", dont_inherit=True)
        exec(code, namespace)
    return old["Job"], new["Job"]  # type: ignore[return-value]


def test_a_field_added_with_its_default_keeps_every_hash() -> None:
    """The journal's identity of a job was sha256(repr(spec)): every field a version adds to
    a spec changed it, so `run --resume` after an upgrade ran succeeded once-jobs again."""
    old_job, new_job = _two_versions()
    old_inner = type(old_job.__dataclass_fields__["inner"].default)  # type: ignore[attr-defined]
    new_inner = type(new_job.__dataclass_fields__["inner"].default)  # type: ignore[attr-defined]
    old_mode = type(old_job.__dataclass_fields__["mode"].default)  # type: ignore[attr-defined]
    new_mode = type(new_job.__dataclass_fields__["mode"].default)  # type: ignore[attr-defined]

    def old(**extra: object) -> object:
        return old_job(
            name="migrate",
            mode=old_mode.SLOW,
            inner=old_inner(limit=0.1 + 0.2, tags=frozenset({"b", "a", "c"})),
            env={"B": "2", "A": "1"},
            argv=("sh", "-c", "true"),
            **extra,
        )

    def new(**extra: object) -> object:
        return new_job(
            name="migrate",
            mode=new_mode.SLOW,
            inner=new_inner(limit=0.1 + 0.2, tags=frozenset({"c", "a", "b"})),
            env={"A": "1", "B": "2"},
            argv=("sh", "-c", "true"),
            **extra,
        )

    assert repr(old()) != repr(new()), "the old digest's input changes with the new field"
    assert spec_hash(old()) == spec_hash(new())
    assert spec_hash(old_job(name="x")) == spec_hash(new_job(name="x"))
    # What a job is still tells jobs apart: a value set, a float to its last bit, an enum.
    assert spec_hash(new(retries=4)) != spec_hash(new())
    assert spec_hash(new(labels={"a": "1"})) != spec_hash(new())
    assert spec_hash(old_job(name="x", inner=old_inner(limit=0.3))) != spec_hash(old())
    assert spec_hash(old_job(name="x", inner=old_inner(limit=0.1 + 0.2))) != spec_hash(
        old_job(name="x", inner=old_inner(limit=0.3))
    )
    assert spec_hash(old_job(name="x", mode=old_mode.SLOW)) != spec_hash(old_job(name="x"))
    assert spec_hash(old_job(name="x", argv=("a", "b"))) != spec_hash(
        old_job(name="x", argv=("ab",))
    )


def test_a_jobs_hash_is_the_same_in_every_process(tmp_path: Path) -> None:
    """No id(), no set order, no hash randomisation: another process with another
    PYTHONHASHSEED finds the same identity for the same manifest."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            version: 1
            jobs:
              - name: migrate
                command: [sh, -c, "true"]
                env: {B: "2", A: "1", C: "3"}
                retry: {attempts: 3, on: [exit:3, signal]}
              - {name: y, python: "mod:f", kwargs: {b: [1, 2.5], a: {x: null}}}
            """
        ),
        encoding="utf-8",
    )
    script = (
        "import sys\n"
        "from supervision._manifest import load_manifest\n"
        "from supervision._journal import job_hashes, spec_hash\n"
        "m = load_manifest(sys.argv[1])\n"
        "print(sorted(job_hashes(m.root, '/base').items()))\n"
        "print(spec_hash(frozenset(str(n) for n in range(50))))\n"
    )
    seen = set()
    for seed in ("0", "1", "4242"):
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "jobs.yaml")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**ENV, "PYTHONHASHSEED": seed},
            check=True,
        )
        seen.add(out.stdout)
    assert len(seen) == 1, seen
    manifest = load_manifest(tmp_path / "jobs.yaml")
    here = f"{sorted(job_hashes(manifest.root, '/base').items())}\n"
    assert seen == {here + f"{spec_hash(frozenset(str(n) for n in range(50)))}\n"}


def test_resume_skips_what_succeeded_run_after_run(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(ONCE), encoding="utf-8")
    assert jobvisor("run", cwd=tmp_path).returncode == 1
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "already succeeded, skipped: migrate" in out.stderr, out.stderr
    (tmp_path / "go").touch()
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "already succeeded, skipped: migrate" in out.stderr, out.stderr
    assert "older jobvisor" not in out.stderr, out.stderr
    assert (tmp_path / "ran.txt").read_text().split() == ["migrating"]


def _legacy_digest(text: str) -> str:
    """What an older jobvisor journaled as a spec hash: 16 hex digits of a repr's sha256."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _old_journal(where: Path, *, schema: int) -> Path:
    """The state dir an older jobvisor left: dir 0755, journal 0644 in WAL mode, the first
    run's rows (migrate succeeded, after failed) with hashes this jobvisor cannot recompute."""
    state = where / ".jobvisor"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    db = state / FILENAME
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA_1)
        if schema >= 2:
            conn.execute("ALTER TABLE attempts ADD COLUMN node TEXT")
        if schema >= 3:
            conn.execute("ALTER TABLE attempts ADD COLUMN seq INTEGER")
            conn.execute("ALTER TABLE decisions ADD COLUMN seq INTEGER")
        conn.execute(f"PRAGMA user_version = {schema}")
        rows = (
            ("migrate", 1, 100.0, 101.0, "succeeded", 0, None, _legacy_digest("migrate")),
            ("after", 1, 101.0, 102.0, "failed", 4, "exit 4", _legacy_digest("after")),
        )
        conn.executemany(
            "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome, code, error,"
            " spec_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute(
            "INSERT INTO decisions (at, path, kind, detail) VALUES"
            " (102.5, 'after', 'give_up', '{\"reason\": \"exit 4\"}')"
        )
        conn.commit()
    finally:
        conn.close()  # the last connection: SQLite checkpoints and removes -wal and -shm
    db.chmod(0o644)
    return db


@pytest.mark.parametrize("schema", [1, 3])
def test_resume_says_which_successes_an_older_jobvisor_journaled(
    tmp_path: Path, schema: int
) -> None:
    """After an upgrade `run --resume` ran migrate again, silently: the older jobvisor's
    hashes cannot be matched (recomputed) by this one. It runs again, and says so."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(ONCE), encoding="utf-8")
    _old_journal(tmp_path, schema=schema)
    (tmp_path / "go").touch()
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "jobvisor: --resume: the journal's successes of migrate were written by an older"
        " jobvisor, whose job identities this one cannot match: they run again"
    ) in out.stderr, out.stderr
    assert "skipped" not in out.stderr, out.stderr
    assert (tmp_path / "ran.txt").read_text().split() == ["migrating"]
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert "already succeeded, skipped: migrate, after" in out.stderr, out.stderr
    assert "older jobvisor" not in out.stderr, out.stderr
    assert (tmp_path / "ran.txt").read_text().split() == ["migrating"]


def _untouched(db: Path) -> tuple[bytes, int, list[str]]:
    return db.read_bytes(), db.stat().st_mtime_ns, sorted(p.name for p in db.parent.iterdir())


@pytest.mark.parametrize("schema", [1, 2])
def test_history_reads_an_older_schema_as_it_is_and_writes_nothing(
    tmp_path: Path, schema: int
) -> None:
    """`history` failed on a schema-1 journal (`no such column: node`, exit 2) until a daemon
    or `run` had migrated it, and its read left -wal and -shm beside it, 0644."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(ONCE), encoding="utf-8")
    db = _old_journal(tmp_path, schema=schema)
    before = _untouched(db)
    out = jobvisor("history", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == [
        "migrate  attempt 1 succeeded (0)",
        "after  attempt 1 failed (4): exit 4",
        "after  give_up (reason=exit 4)",
    ], out.stdout
    out = jobvisor("history", "after", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {
            "at": 102.0,
            "path": "after",
            "type": "attempt",
            "attempt": 1,
            "outcome": "failed",
            "code": 4,
            "error": "exit 4",
            "started_at": 101.0,
        },
        {
            "at": 102.5,
            "path": "after",
            "type": "decision",
            "kind": "give_up",
            "detail": {"reason": "exit 4"},
        },
    ]
    # Neither migrated nor written, and no file of SQLite's left beside it.
    assert _untouched(db) == before
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema
    conn.close()


def test_every_read_of_a_schema_1_journal_writes_nothing(tmp_path: Path) -> None:
    """/api/history's two reads (its page's timelines too) on a journal no jobvisor of this
    version opened yet give nulls for what it lacks; the other readers need nothing newer."""
    db = _old_journal(tmp_path, schema=1)
    before = _untouched(db)
    rows = read_history(db, None, 10)
    assert [(r["path"], r["type"]) for r in rows] == [
        ("migrate", "attempt"),
        ("after", "attempt"),
        ("after", "decision"),
    ]
    assert all("node" not in r for r in rows)
    recent = read_recent_attempts(db, None, 5)
    assert {path: [r["outcome"] for r in rs] for path, rs in recent.items()} == {
        "after": ["failed"],
        "migrate": ["succeeded"],
    }
    # What a start reads before it opens (and migrates) the journal, and a daemon's restore.
    assert last_ticks(db, ["after", "migrate"]) == {"after": 101.0, "migrate": 100.0}
    assert last_breaker_states(db) == {}
    assert open_cooldowns(db, 103.0) == {}
    assert _untouched(db) == before


def test_history_beside_a_running_writer_still_sees_its_rows(tmp_path: Path) -> None:
    """A journal with a writer on it has its -wal: history reads through it, as before."""
    journal = Journal(tmp_path)
    try:
        conn = sqlite3.connect(tmp_path / FILENAME)
        conn.execute(
            "INSERT INTO attempts (path, attempt, started_at, ended_at, outcome, seq)"
            " VALUES ('w', 1, 1.0, 2.0, 'succeeded', 1)"
        )
        conn.commit()
        assert Path(f"{tmp_path / FILENAME}-wal").exists()
        assert [r["path"] for r in read_history(tmp_path / FILENAME)] == ["w"]
        conn.close()
    finally:
        journal.close()
    assert (tmp_path / FILENAME).stat().st_mode & 0o777 == 0o600
