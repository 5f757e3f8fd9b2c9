"""`jobvisor run --resume` in real processes: what it skips, and what it must run again."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from faultkit import CLI, ENV, Jobvisor, wait_until

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


def test_resume_skips_a_job_whose_identical_spec_succeeded_whatever_came_after(
    tmp_path: Path,
) -> None:
    """SPEC §6: `run --resume` skips once-jobs whose identical spec already succeeded in the
    journal. A later plain run's failure does not undo that success, and a job that runs
    again (its spec changed) does not make its dependants run: --resume finishes an
    interrupted run; a plain run runs everything (README says so)."""
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
    assert "skipped: load, transform" in out.stderr
    assert (tmp_path / "runs.txt").read_text().split() == ["extract-v2"]
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
