"""`jobvisor run --resume` in real processes: what it skips, and what it must run again."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from faultkit import CLI, ENV

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


def test_resume_runs_again_a_job_whose_last_run_failed_though_it_succeeded_once(
    tmp_path: Path,
) -> None:
    """Day 1 load succeeded, day 2 it failed (a plain run), day 3 `run --resume` skipped it
    (rc 0, last_exit day 1's success): any past success of the spec counted. Only the latest
    finished attempt counts: it failed, so load runs again."""
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + 'jobs:\n  - {name: load, command: [sh, -c, "echo run >> runs.txt; test ! -e broken"]}\n',
    )
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    (tmp_path / "broken").touch()
    assert jobvisor("run", cwd=tmp_path).returncode == 1
    failed_runs = len((tmp_path / "runs.txt").read_text().split())
    (tmp_path / "broken").unlink()
    out = jobvisor("run", "--resume", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped" not in out.stderr
    assert len((tmp_path / "runs.txt").read_text().split()) == failed_runs + 1, "load ran again"
    load = nodes(out)["load"]
    assert (load["state"], load["starts"]) == ("succeeded", 1)
    # Now its latest attempt succeeded: the next resume skips it.
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert (out.returncode, "skipped: load" in out.stderr) == (0, True), out.stderr
    assert len((tmp_path / "runs.txt").read_text().split()) == failed_runs + 1


def test_resume_runs_again_what_depends_on_a_job_that_runs_again(tmp_path: Path) -> None:
    """extract -> transform -> load: extract's command changed, `run --resume` ran extract
    again but kept transform's (and load's) old results. As make does, a job that runs again
    makes everything that depends on it, transitively, run again; an unrelated job and a job
    depending on a skipped one stay skipped. A group counts as run again when a job in it is."""
    manifest = write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: extract, command: [sh, -c, "echo v1 > raw.txt; echo extract >> runs.txt"]}
          - {name: transform, depends_on: [extract],
             command: [sh, -c, "cp raw.txt clean.txt; echo transform >> runs.txt"]}
          - {name: load, depends_on: [transform], command: [sh, -c, "echo load >> runs.txt"]}
          - {name: other, command: [sh, -c, "echo other >> runs.txt"]}
          - {name: after_other, depends_on: [other],
             command: [sh, -c, "echo after_other >> runs.txt"]}
          - group: g
            jobs:
              - {name: x, command: [sh, -c, "echo x1 >> runs.txt"]}
          - {name: report, depends_on: [g], command: [sh, -c, "echo report >> runs.txt"]}
        """,
    )
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    (tmp_path / "runs.txt").unlink()
    text = manifest.read_text().replace("echo v1", "echo v2").replace("echo x1", "echo x2")
    manifest.write_text(text)
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: other, after_other" in out.stderr
    ran = sorted((tmp_path / "runs.txt").read_text().split())
    assert ran == ["extract", "load", "report", "transform", "x2"]
    assert (tmp_path / "clean.txt").read_text() == "v2\n"


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
