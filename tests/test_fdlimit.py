"""The open-file limit against a tree's commands: raised when short, said when it cannot be.

A daemon with 1,000 command jobs under the usual soft limit of 1,024 had most of them
crash-loop on "Too many open files", with nothing at its start naming the limit.
"""

from __future__ import annotations

import resource
import subprocess
import textwrap
from pathlib import Path

import pytest
from faultkit import CLI, ENV

from supervision._fdlimit import BASE, PER_PROCESS_JOB, needed, plan
from supervision._manifest import load_manifest

INF = resource.RLIM_INFINITY


def test_a_limit_that_covers_the_need_is_left_alone() -> None:
    assert plan(500, 1024, 4096) == (None, None)
    assert plan(500, INF, INF) == (None, None)


def test_a_short_soft_limit_is_raised_to_the_need_within_the_hard_one() -> None:
    assert plan(3000, 1024, 524288) == (3000, None)
    assert plan(3000, 1024, INF) == (3000, None)


def test_a_short_hard_limit_is_raised_to_and_said() -> None:
    raised, said = plan(3000, 1024, 2048)
    assert raised == 2048
    assert said is not None
    assert "the open-file limit (hard 2048) is short of the 3000 this manifest needs" in said
    assert "LimitNOFILE=" in said
    assert "ulimit -n" in said
    raised, said = plan(3000, 1024, 1024)
    assert raised is None
    assert said is not None
    assert "hard 1024" in said


def test_the_need_counts_what_holds_files_while_it_runs() -> None:
    m = load_manifest(
        textwrap.dedent("""\
        version: 1
        jobs:
          - {name: a, command: "sleep 1"}
          - {name: b, python: "os:getcwd"}
          - {name: c, python: "os:getcwd", isolation: process}
          - group: g
            jobs:
              - {name: d, command: "sleep 1"}
        """),
        env={},
    )
    assert needed(m.root) == BASE + 3 * PER_PROCESS_JOB  # a, c, g/d


def _run(tmp_path: Path, jobs: int, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    lines = ["version: 1", "jobs:"]
    lines += [f'  - {{name: j{i}, command: "sleep 1"}}' for i in range(jobs)]
    (tmp_path / "jobs.yaml").write_text("\n".join(lines) + "\n")

    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return subprocess.run(
        [*CLI, "run", "jobs.yaml"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=low,
        check=False,
    )


def test_a_run_under_a_short_soft_limit_raises_it_and_every_job_runs(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != INF and hard < 2048:
        pytest.skip(f"this machine's hard limit ({hard}) leaves no room to raise into")
    done = _run(tmp_path, 150, 256, 2048)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Too many open files" not in done.stderr
    assert "open-file limit raised from 256 to" in done.stderr, done.stderr[-3000:]


def test_a_run_under_a_short_hard_limit_says_so_at_its_start(tmp_path: Path) -> None:
    done = _run(tmp_path, 150, 256, 256)
    head = done.stderr.splitlines()[:5]
    assert any("is short of the" in line and "LimitNOFILE=" in line for line in head), head
