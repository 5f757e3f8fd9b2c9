"""The open-file limit against a tree's commands: raised when short, said when it cannot be.

A daemon with 1,000 command jobs under the usual soft limit of 1,024 had most of them
crash-loop on "Too many open files", with nothing at its start naming the limit.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import subprocess
import textwrap
import threading
from pathlib import Path

import logbook
import pytest
from faultkit import CLI, ENV, start_daemon, stop_daemon, wait_until

from actors import CommandFailed
from supervision._fdlimit import BASE, PER_PROCESS_JOB, AcceptShortage, needed, plan
from supervision._manifest import load_manifest
from supervision._shortage import host_shortage

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


STOPPED = 16
SHORT_OF_FDS = 110  # the daemon's own ~25 and its clients', and about 17 of 30 services' 5 each


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)")
def test_starts_that_fail_for_the_daemons_own_want_of_fds_wait_for_them_and_never_give_up(
    tmp_path: Path,
) -> None:
    # `ulimit -n 64` and 40 services: 31 gave up for good in 0.7 s, "could not start: Too many
    # open files" counted against each one's max_restarts, each to be started by hand.
    services = "".join(
        f"  - {{name: s{n}, service: true, command: [sleep, '3600']}}\n" for n in range(30)
    )
    manifest = (
        "version: 1\nsupervisor:\n  backoff: {initial: 0s}\n"
        "  intensity: {max_restarts: 3, within: 60s}\njobs:\n" + services
    )
    log_file = tmp_path / "daemon.log"
    limit = ("prlimit", f"--nofile={SHORT_OF_FDS}:{SHORT_OF_FDS}")
    running = start_daemon(tmp_path, manifest, "--log-file", str(log_file), prefix=limit)
    try:
        wait_until(
            lambda: "starts fail for want of" in log_file.read_text(),
            "the shortage said",
            proc=running.proc,
        )
        # Descriptors freed: 16 jobs stopped as they run (some only once an earlier stop let
        # them start), so the other 14 fit; they start unaided.
        stopped: list[str] = []
        while len(stopped) < STOPPED:
            up = wait_until(
                lambda: sorted(
                    path
                    for path, node in running.nodes().items()
                    if node["state"] == "running" and path not in stopped
                ),
                "a job running to stop",
                proc=running.proc,
            )
            for path in up[: STOPPED - len(stopped)]:
                assert running.cli("stop", path).returncode == 0
                stopped.append(path)
        wait_until(
            lambda: all(
                node["state"] == ("stopped" if path in stopped else "running")
                for path, node in running.nodes().items()
            ),
            "every job not stopped running",
            proc=running.proc,
            timeout=60,
        )
        wait_until(lambda: "starts work again" in log_file.read_text(), "its end said")
    finally:
        stop_daemon(running)
    log = log_file.read_text()
    assert "gave up" not in log, log
    shortage = [line for line in log.splitlines() if "starts fail for want of" in line]
    assert len(shortage) == 1, shortage  # once, not per job per try
    assert " WARNING " in shortage[0]
    assert "file descriptors" in shortage[0]
    assert "Too many open files" in shortage[0]
    assert "max_restarts" in shortage[0]
    ended = [line for line in log.splitlines() if "starts work again" in line]
    assert len(ended) == 1, ended
    assert " INFO " in ended[0]
    assert not [line for line in log.splitlines() if "could not start" in line and "ERROR" in line]


def test_only_a_commands_start_that_failed_for_jobvisors_own_want_is_a_shortage() -> None:
    def could_not_start(code: int) -> CommandFailed:
        try:
            try:
                raise OSError(code, os.strerror(code))
            except OSError as exc:
                raise CommandFailed("command x could not start", 126) from exc
        except CommandFailed as failed:
            return failed

    for code in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM):
        assert host_shortage(could_not_start(code)) == code
    assert host_shortage(could_not_start(errno.ENOENT)) is None  # the job's: no such program
    assert host_shortage(could_not_start(errno.EACCES)) is None
    assert host_shortage(OSError(errno.EMFILE, "Too many open files")) is None  # a job's own
    assert host_shortage(CommandFailed("command x exited with 1", 1)) is None
    assert host_shortage(None) is None
