"""The open-file limit against a tree's commands: raised when short, said when it cannot be.

A daemon with 1,000 command jobs under the usual soft limit of 1,024 had most of them
crash-loop on "Too many open files", with nothing at its start naming the limit.
"""

from __future__ import annotations

import errno
import resource
import subprocess
import textwrap
import threading
from pathlib import Path

import logbook
import pytest
from faultkit import CLI, ENV

from supervision._fdlimit import BASE, PER_PROCESS_JOB, AcceptShortage, needed, plan
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


def test_an_accept_loops_shortages_are_said_once_each_and_not_every_burst(
    logs: logbook.TestHandler,
) -> None:
    # A daemon that hovers at its limit runs short at every burst of commands: one WARNING a
    # minute at most, the next counting those not said; the end of one said, at INFO.
    now = [0.0]
    shortage = AcceptShortage("control socket S", threading.Event(), pause=0, clock=lambda: now[0])
    emfile = OSError(errno.EMFILE, "Too many open files")
    for _ in range(50):
        assert shortage.failed(emfile)
    now[0] = 2.0
    shortage.accepted()
    for at in (10.0, 20.0):  # two more, within the minute: counted
        now[0] = at
        assert shortage.failed(OSError(errno.ENFILE, "Too many open files in system"))
        shortage.accepted()
    now[0] = 61.0
    assert shortage.failed(OSError(errno.ENOBUFS, "No buffer space available"))
    said = [(r.level_name, r.message) for r in logs.records]
    assert [level for level, _ in said] == ["WARNING", "INFO", "WARNING"], said
    assert said[0][1].startswith("control socket S: cannot accept a connection: Too many open")
    assert "as many files open as its limit allows" in said[0][1]
    assert "ulimit -n" in said[0][1]
    assert (
        said[1][1]
        == "control socket S: accepting connections again, after 2.0s and 50 failed tries"
    )
    assert "short of memory for sockets" in said[2][1]
    assert "it ran short 2 times since the last said" in said[2][1]


def test_an_accept_loop_ends_when_its_socket_is_closed_and_only_then(
    logs: logbook.TestHandler,
) -> None:
    stopped = threading.Event()
    shortage = AcceptShortage("http: U", stopped, pause=0)
    assert not shortage.failed(OSError(errno.EBADF, "Bad file descriptor"))
    assert not shortage.failed(OSError(errno.EINVAL, "Invalid argument"))  # shut down
    # One connection's error, no shortage: tried again, not said.
    assert shortage.failed(OSError(errno.ECONNABORTED, "Software caused connection abort"))
    assert not [r for r in logs.records if r.level >= logbook.INFO]
    stopped.set()  # closed while it ran short: the loop ends
    assert not shortage.failed(OSError(errno.EMFILE, "Too many open files"))
