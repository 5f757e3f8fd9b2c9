"""`jobvisor run --resume` in real processes: what it skips, and what it must run again."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import textwrap
from pathlib import Path

from conftest import RUNTIME
from faultkit import CLI, ENV, Jobvisor, start_daemon, stop_daemon, wait_until

from supervision._history import journal_path
from supervision._journal import job_hashes
from supervision._manifest import load_manifest
from supervision._table import flatten_status

FAST = """
supervisor:
  backoff: {initial: 1ms, max: 5ms}
  intensity: {max_restarts: 1, within: 60s}
"""


def jobvisor(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=ENV, check=False
    )


def write(where: Path, text: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "jobs.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def nodes(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    return {n["path"]: n for n in flatten_status(json.loads(out.stdout))}


def test_resume_skips_a_job_whose_identical_spec_succeeded_in_the_run_it_resumes(
    tmp_path: Path,
) -> None:
    """SPEC §6: `run --resume` skips once-jobs whose identical spec already succeeded in the
    journal: in the run it finishes, the last plain run (a job that failed there runs again,
    whatever succeeded before it). A job that runs again (its spec changed) does not make its
    dependants run: --resume finishes an interrupted run; a plain run runs everything (README
    says so)."""
    manifest = write(
        tmp_path,
        "version: 1\n"
        + FAST
        + "jobs:\n"
        + '  - {name: load, command: [sh, -c, "echo load >> runs.txt; test ! -e broken"]}\n'
        + '  - {name: extract, command: [sh, -c, "echo extract-v1 >> runs.txt"]}\n'
        + "  - {name: transform, depends_on: [extract],\n"
        + '     command: [sh, -c, "echo transform >> runs.txt"]}\n',
    )
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    (tmp_path / "broken").touch()
    assert jobvisor("run", cwd=tmp_path).returncode == 1
    (tmp_path / "broken").unlink()
    (tmp_path / "runs.txt").unlink()
    manifest.write_text(manifest.read_text().replace("extract-v1", "extract-v2"))
    out = jobvisor("run", "--resume", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: transform\n" in out.stderr, out.stderr
    # Why extract runs again is said (load failed in the run resumed: nothing to say).
    said = "jobvisor: --resume: run again, their spec changed since they succeeded: extract\n"
    assert said in out.stderr, out.stderr
    assert sorted(_runs(tmp_path)) == ["extract-v2", "load"]
    assert nodes(out)["load"]["state"] == "succeeded"


def test_a_python_jobs_hash_has_the_directory_its_module_comes_from(tmp_path: Path) -> None:
    """Two dirs, each a jobs.yaml `y: python mod:f` and its own mod.py, one --state-dir: the
    second's `run --resume` skipped y, whose module is another file. The manifest's directory
    (put on sys.path for it) is part of a python job's identity, as a command's cwd is."""
    state = tmp_path / "state"
    for name in ("one", "two"):
        where = tmp_path / name
        write(where, "version: 1\njobs:\n  - {name: y, python: 'mod:f'}\n")
        (where / "mod.py").write_text(
            f"def f():\n    open({str(tmp_path / 'ran.txt')!r}, 'a').write({name!r} + '\\n')\n"
        )
    assert jobvisor("--state-dir", str(state), "run", cwd=tmp_path / "one").returncode == 0
    out = jobvisor("--state-dir", str(state), "run", "--resume", cwd=tmp_path / "two")
    assert out.returncode == 0, out.stderr
    assert "skipped" not in out.stderr
    assert (tmp_path / "ran.txt").read_text().split() == ["one", "two"]
    out = jobvisor("--state-dir", str(state), "run", "--resume", cwd=tmp_path / "two")
    assert "skipped: y" in out.stderr, "the same directory's success still counts"


def test_a_once_job_stopped_by_a_signal_is_journaled_stopped_and_resume_runs_it_again(
    tmp_path: Path,
) -> None:
    """A job that trapped SIGTERM and exited 0 showed `stopped (0)` in the status, but the
    journal had `attempt 1 succeeded (0)` (its attempt was classified apart from its exit),
    and `run --resume` skipped it: its work never finished. A stop is no success (SPEC §2),
    so history says `stopped` and --resume runs it again (SPEC §6)."""
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - name: migrate
            command: >-
              trap 'exit 0' TERM; echo begin >> r3.log;
              if [ ! -e go ]; then sleep 100 & wait; fi; echo done >> r3.log
        """,
    )
    log = tmp_path / "r3.log"
    jv = Jobvisor(tmp_path, "run", "--json")
    try:
        wait_until(log.exists, "migrate began", proc=jv.proc)
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
    assert "not finished: running: migrate" in jv.stderr, jv.stderr
    [node] = flatten_status(json.loads(jv.stdout))
    assert (node["state"], node["last_exit"]["outcome"]) == ("stopped", "stopped"), node
    [attempt] = json.loads(jobvisor("history", "migrate", "--json", cwd=tmp_path).stdout)
    assert (attempt["outcome"], attempt.get("code")) == ("stopped", 0), attempt
    assert "attempt 1 stopped (0)" in jobvisor("history", cwd=tmp_path).stdout
    (tmp_path / "go").touch()
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "not run again" not in out.stderr, out.stderr
    assert log.read_text().split() == ["begin", "begin", "done"]


def test_resume_runs_an_http_job_again_whose_headers_params_or_body_changed(
    tmp_path: Path,
) -> None:
    """An http job's headers (and params, json, body: the fields left out of its repr, as
    they may hold secrets) were no part of its identity: ``run --resume`` skipped the job
    after a change of a header's value, and the server never saw the new one."""
    from httpkit import HttpKit

    secret = "hunter2-header-secret"
    manifest = """
    version: 1
    jobs:
      - name: call
        http:
          url: URL/call
          method: POST
          headers: {Authorization: "Bearer ${secret:JV_TOKEN}", X-Plain: VALUE}
          params: {q: PARAM}
          json: {n: BODY}
    """

    def run(value: str, param: str = "p1", body: str = "1", *flags: str) -> str:
        text = manifest.replace("URL", kit.url).replace("VALUE", value)
        write(tmp_path, text.replace("PARAM", param).replace("BODY", body))
        out = subprocess.run(
            [*CLI, "run", *flags],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**ENV, "JV_TOKEN": secret},
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert secret not in out.stderr
        return out.stderr

    with HttpKit() as kit:
        run("first")
        assert "skipped: call" in run("first", "p1", "1", "--resume")  # the same job: done
        assert kit.count == 1
        for value, param, body in [("second", "p1", "1"), ("second", "p2", "1"), ("second", "p2", "2")]:  # fmt: skip
            assert "skipped" not in run(value, param, body, "--resume")
            assert "skipped: call" in run(value, param, body, "--resume")
        sent = kit.wait_requests(4)
    assert [(r.headers["x-plain"], r.query["q"], r.body) for r in sent] == [
        ("first", ["p1"], b'{"n": 1}'),
        ("second", ["p1"], b'{"n": 1}'),
        ("second", ["p2"], b'{"n": 1}'),
        ("second", ["p2"], b'{"n": 2}'),
    ]
    journal = (tmp_path / ".jobvisor" / "journal.sqlite3").read_bytes()
    assert secret.encode() not in journal


def _attempt_hashes(state: Path) -> dict[str, list[str | None]]:
    """Each path's attempts' spec hashes in the journal, oldest first."""
    with contextlib.closing(sqlite3.connect(journal_path(state))) as db:
        rows = db.execute("SELECT path, spec_hash FROM attempts ORDER BY id").fetchall()
    found: dict[str, list[str | None]] = {}
    for path, digest in rows:
        found.setdefault(path, []).append(digest)
    return found


def _reload_to(
    running: Jobvisor, tmp_path: Path, manifest: str
) -> subprocess.CompletedProcess[str]:
    """The daemon's manifest rewritten as ``manifest``, and reloaded: its answer, a success."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest), encoding="utf-8")
    out = running.cli("reload")
    assert out.returncode == 0, out.stderr
    return out


def _hashes_across(
    tmp_path: Path, first: str, second: str
) -> tuple[dict[str, str], dict[str, str], dict[str, list[str | None]]]:
    """Each job's hash under ``first`` and under ``second``, and the journal's attempts'."""
    base = str(tmp_path)
    before = job_hashes(load_manifest(write(tmp_path, first)).root, base)
    after = job_hashes(load_manifest(write(tmp_path, second)).root, base)
    return before, after, _attempt_hashes(tmp_path / ".jobvisor")


def test_a_daemons_reload_journals_each_job_under_its_new_specs_hash(tmp_path: Path) -> None:
    """The daemon hashed its jobs once, at its start: after a reload that replaced a job (its
    command, a python job's args) or added one, their attempts were journaled under the old
    spec's hash (the added one's under none), so `run --resume` with the new manifest ran
    them again, and one with the old manifest took the old job for done whether or not it
    had succeeded. A service the reload replaces ends its last attempt under its old hash."""
    first = """
    version: 1
    jobs:
      - {name: svc, service: true, command: [sleep, "100"]}
      - {name: build, command: [sh, -c, "echo build-v1 >> runs.txt"]}
      - {name: calc, python: "math:sqrt", args: [4]}
      - {name: gone, command: ["true"]}
    """
    second = """
    version: 1
    jobs:
      - {name: svc, service: true, command: [sleep, "101"]}
      - {name: build, command: [sh, -c, "echo build-v2 >> runs.txt"]}
      - {name: calc, python: "math:sqrt", args: [9]}
      - {group: more, jobs: [{name: step, command: [sh, -c, "echo step >> runs.txt"]}]}
    """
    once = ("build", "calc", "more/step")
    running = start_daemon(tmp_path, first, "--runtime", RUNTIME)
    try:

        def settled(*paths: str) -> bool:
            states = {n["path"]: n["state"] for n in flatten_status(running.status())}
            return all(states.get(path) == "succeeded" for path in paths)

        wait_until(lambda: settled("build", "calc", "gone"), "the first jobs succeeded")
        _reload_to(running, tmp_path, second)
        wait_until(lambda: settled(*once), "the reloaded jobs succeeded")
    finally:
        assert stop_daemon(running) == 0
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["build-v1", "build-v2", "step"]
    before, after, journaled = _hashes_across(tmp_path, first, second)
    assert journaled["build"] == [before["build"], after["build"]]
    assert journaled["calc"] == [before["calc"], after["calc"]]
    assert journaled["more/step"] == [after["more/step"]]
    assert journaled["svc"] == [before["svc"], after["svc"]]
    (tmp_path / "runs.txt").unlink()
    # Without the service (a run would never end): the once-jobs' own specs are the same.
    ran = "\n".join(line for line in second.splitlines() if "name: svc" not in line)
    write(tmp_path, ran)
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: build, calc, more/step" in out.stderr
    assert not (tmp_path / "runs.txt").exists()


def test_a_reload_of_a_stopped_group_journals_its_jobs_under_their_new_hashes(
    tmp_path: Path,
) -> None:
    """A group that is down takes its new spec whole, to start from next: its changed and
    added jobs, once it starts again, were journaled under the old hash and none."""
    first = """
    version: 1
    jobs:
      - {name: svc, service: true, command: [sleep, "100"]}
      - group: g
        jobs:
          - {name: a, command: [sh, -c, "echo a-v1 >> runs.txt"]}
    """
    b = '\n          - {name: b, command: [sh, -c, "echo b >> runs.txt"]}'
    second = first.replace('a-v1 >> runs.txt"]}', 'a-v2 >> runs.txt"]}' + b)
    running = start_daemon(tmp_path, first, "--runtime", RUNTIME)
    try:
        wait_until(lambda: running.nodes()["g"]["children"][0]["state"] == "succeeded", "g/a ran")
        assert running.cli("stop", "g").returncode == 0
        out = _reload_to(running, tmp_path, second)
        assert "(at g's next start)" in out.stdout
        assert running.cli("start", "g").returncode == 0

        def settled() -> bool:
            return {n["state"] for n in running.nodes()["g"]["children"]} == {"succeeded"}

        wait_until(settled, "g's jobs ran again")
    finally:
        assert stop_daemon(running) == 0
    assert sorted((tmp_path / "runs.txt").read_text().split()) == ["a-v1", "a-v2", "b"]
    before, after, journaled = _hashes_across(tmp_path, first, second)
    assert journaled["g/a"] == [before["g/a"], after["g/a"]]
    assert journaled["g/b"] == [after["g/b"]]


def test_resume_skips_an_http_job_whose_secret_header_only_was_rotated(tmp_path: Path) -> None:
    """A secret header's value went into the job's hash: a rotated token ran every finished
    http job again under ``--resume``, and the journal held a digest of each token that
    could be checked against guesses. Its name counts, its value not; neither token is in
    the journal."""
    from httpkit import HttpKit

    manifest = """
    version: 1
    jobs:
      - name: call
        http:
          url: URL/call
          headers: {Authorization: "Bearer ${secret:JV_TOKEN}"}
    """

    def run(token: str, *flags: str) -> str:
        write(tmp_path, manifest.replace("URL", kit.url))
        out = subprocess.run(
            [*CLI, "run", *flags],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**ENV, "JV_TOKEN": token},
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return out.stderr

    with HttpKit() as kit:
        run("first-token-1234")
        assert "skipped: call" in run("second-token-5678", "--resume")
        assert kit.count == 1
    journal = (tmp_path / ".jobvisor" / "journal.sqlite3").read_bytes()
    assert b"first-token-1234" not in journal
    assert b"second-token-5678" not in journal


# Five steps in a chain; a step blocks while a file named after it exists (`hold-s3`).
NIGHTLY = (
    "version: 1\n"
    + FAST
    + "jobs:\n"
    + "".join(
        f"  - {{name: s{n},{f' depends_on: [s{n - 1}],' if n > 1 else ''}"
        f' command: [sh, -c, "echo s{n} >> runs.txt; if [ -e hold-s{n} ]; then sleep 100 & wait; fi"]}}\n'
        for n in range(1, 6)
    )
)


def _interrupted(where: Path, step: str, *args: str) -> Jobvisor:
    """A `run ARGS` SIGTERMed while ``step`` runs (held by its file): stopped, exit 0."""
    hold = where / f"hold-{step}"
    hold.touch()
    jv = Jobvisor(where, "run", *args)
    try:
        wait_until(lambda: step in _runs(where), f"{step} began", proc=jv.proc)
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
        hold.unlink()
    assert f"running: {step}" in jv.stderr, jv.stderr
    return jv


def _runs(where: Path) -> list[str]:
    runs = where / "runs.txt"
    return runs.read_text().split() if runs.exists() else []


def test_resume_finishes_the_interrupted_run_not_every_success_ever(tmp_path: Path) -> None:
    """Night 1 succeeds fully; night 2 is SIGTERMed in s3; `run --resume` skipped s4 and s5
    too, as their identical specs succeeded on night 1. It finishes the run it resumes: only
    successes since the start of the last run that was no --resume count, so a resume of an
    interrupted resume still skips what both did (trial 32)."""
    write(tmp_path, NIGHTLY)
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    (tmp_path / "runs.txt").unlink()
    _interrupted(tmp_path, "s3")
    assert _runs(tmp_path) == ["s1", "s2", "s3"]
    (tmp_path / "runs.txt").unlink()
    jv = _interrupted(tmp_path, "s4", "--resume")
    assert "skipped: s1, s2\n" in jv.stderr, jv.stderr
    assert _runs(tmp_path) == ["s3", "s4"]
    (tmp_path / "runs.txt").unlink()
    out = jobvisor("run", "--resume", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: s1, s2, s3\n" in out.stderr, out.stderr
    assert _runs(tmp_path) == ["s4", "s5"]
    assert {path: node["state"] for path, node in nodes(out).items()} == dict.fromkeys(
        ("s1", "s2", "s3", "s4", "s5"), "succeeded"
    )
    # The runs' starts are in history without a job, as the daemon's are.
    lines = jobvisor("history", "-n", "500", cwd=tmp_path).stdout.splitlines()
    starts = [line.split("  ", 1)[1] for line in lines if "(run)  run_start" in line]
    assert len(starts) == 4, lines
    assert ["resume=True" in s for s in starts] == [False, False, True, True], starts
    # And their ends: a SIGTERM's too (a run with none was killed).
    assert len([line for line in lines if "(run)  run_end" in line]) == 4, lines


def test_resume_without_run_rows_counts_every_success_as_before(tmp_path: Path) -> None:
    """A journal whose successes no `run` marked (an older jobvisor's, or a daemon's) keeps
    the rule it had: every success of the identical spec counts."""
    write(tmp_path, NIGHTLY)
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path / ".jobvisor"))) as db, db:
        db.execute("DELETE FROM decisions WHERE path = ''")
    (tmp_path / "runs.txt").unlink()
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: s1, s2, s3, s4, s5" in out.stderr, out.stderr
    assert not (tmp_path / "runs.txt").exists()


def test_resume_finishes_its_own_manifests_run_when_another_shared_the_state_dir(
    tmp_path: Path,
) -> None:
    """Two manifests in one directory share `.jobvisor`: a plain `run b.yaml` between a
    failed `run a.yaml` and its `--resume` does not make the resume forget a.yaml's
    successes (the run it finishes is a.yaml's latest, not the state dir's latest)."""
    a = write(
        tmp_path,
        "version: 1\n" + FAST + "jobs:\n"
        '  - {name: s1, command: [sh, -c, "echo s1 >> runs.txt"]}\n'
        "  - {name: s2, depends_on: [s1], restart: temporary,"
        ' command: [sh, -c, "echo s2 >> runs.txt; test -e ok"]}\n',
    ).rename(tmp_path / "a.yaml")
    b = write(
        tmp_path, "version: 1\njobs:\n  - {name: b, command: [sh, -c, 'echo b >> runs.txt']}\n"
    ).rename(tmp_path / "b.yaml")
    assert jobvisor("run", str(a), cwd=tmp_path).returncode != 0
    assert jobvisor("run", str(b), cwd=tmp_path).returncode == 0
    assert _runs(tmp_path) == ["s1", "s2", "b"]
    (tmp_path / "runs.txt").unlink()
    (tmp_path / "ok").touch()
    out = jobvisor("run", "--resume", "a.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: s1\n" in out.stderr, out.stderr
    assert _runs(tmp_path) == ["s2"]
    # b.yaml's own resume finishes b.yaml's run, whatever a.yaml's resume wrote since.
    out = jobvisor("run", "--resume", str(b), cwd=tmp_path)
    assert "skipped: b\n" in out.stderr, out.stderr


def test_a_manifest_no_run_marked_counts_every_success_though_another_was_marked(
    tmp_path: Path,
) -> None:
    """a.yaml last ran under a jobvisor that marked no runs, b.yaml since under this one: a.yaml's
    --resume counts every success of its own, not those since b.yaml's run (its fallback took
    the state dir's latest run of any manifest)."""
    from supervision._history import run_start_seq
    from supervision._journal import Journal

    journal = Journal(tmp_path)
    try:
        journal.run_start({"pid": 1, "manifest": "/b.yaml", "resume": False})
        assert journal.flush()
    finally:
        journal.close()
    db = journal_path(tmp_path)
    assert run_start_seq(db, "/b.yaml") is not None
    assert run_start_seq(db, "/a.yaml") is None
    assert run_start_seq(db) == run_start_seq(db, "/b.yaml")


def test_the_run_start_is_committed_before_the_first_job_starts(tmp_path: Path) -> None:
    """A run SIGKILLed as its first job starts leaves its run_start row: the next --resume
    counts from this run, not the night before (the row was queued, committed up to 50 ms
    later, so a run killed meanwhile had none)."""
    write(tmp_path, "version: 1\njobs:\n  - {name: kill, command: [sh, -c, 'kill -9 $PPID']}\n")
    assert jobvisor("run", cwd=tmp_path).returncode == -9
    with contextlib.closing(sqlite3.connect(journal_path(tmp_path / ".jobvisor"))) as db:
        rows = db.execute("SELECT detail FROM decisions WHERE kind = 'run_start'").fetchall()
    assert [json.loads(row[0])["resume"] for row in rows] == [False]


def test_pruning_spares_each_manifests_latest_plain_run_start(tmp_path: Path) -> None:
    """The row a --resume counts from is never pruned, however many rows of the tree (resumes,
    a daemon's starts) came after it."""
    from supervision._history import run_start_seq
    from supervision._journal import Journal

    db = journal_path(tmp_path)
    journal = Journal(tmp_path, keep=3)
    try:
        journal.run_start({"pid": 1, "manifest": "/a.yaml", "resume": False})
        journal.run_start({"pid": 2, "manifest": "/b.yaml", "resume": False})
        assert journal.flush()
        a, b = run_start_seq(db, "/a.yaml"), run_start_seq(db, "/b.yaml")
        for pid in range(3, 13):
            journal.run_start({"pid": pid, "manifest": "/a.yaml", "resume": True})
            journal.daemon("daemon_start", {"pid": pid})
        assert journal.flush()

        def pids() -> list[int]:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                rows = conn.execute("SELECT detail FROM decisions WHERE path = ''").fetchall()
            return [json.loads(row[0])["pid"] for row in rows]

        wait_until(lambda: 3 not in pids(), "the tree's older rows pruned")
        assert pids()[:2] == [1, 2]
    finally:
        journal.close()
    assert (run_start_seq(db, "/a.yaml"), run_start_seq(db, "/b.yaml")) == (a, b)
    assert a is not None
    assert b is not None
    assert a < b
