"""Per-job output files and ``jobvisor logs``, through real ``jobvisor run`` / ``daemon`` processes."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import logbook
import pytest
from conftest import RUNTIME
from faultkit import CLI, ENV, Jobvisor, run_jobvisor, start_daemon, stop_daemon, wait_until
from prockit import fds

from actors import Attempt, CommandWork
from supervision._output import OutputFiles
from supervision._spec import OutputSpec

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (stdout|stderr) (\d+) ")


def run(cwd: Path, manifest: str, *args: str) -> subprocess.CompletedProcess[str]:
    (cwd / "jobs.yaml").write_text(textwrap.dedent(manifest))
    jv = run_jobvisor(cwd, "run", "--runtime", RUNTIME, "--log-level", "none", *args)
    return subprocess.CompletedProcess(jv.proc.args, jv.proc.returncode, jv.stdout, jv.stderr)


def logs(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, "logs", *args], cwd=cwd, env=ENV, capture_output=True, timeout=60, check=False
    )


def body(line: bytes) -> bytes:
    """A file line without its stamp."""
    match = STAMP.match(line)
    assert match is not None, line
    return line[match.end() :]


def test_command_and_process_output_go_to_private_files_stamped_as_written(
    tmp_path: Path,
) -> None:
    done = run(
        tmp_path,
        r"""
        version: 1
        jobs:
          - group: etl
            jobs:
              - name: load
                command: 'printf "out \033[31mred\033[0m\n"; echo err >&2; printf "no newline"'
              - name: w
                replicas: 2
                command: "echo replica"
          - name: iso
            python: "builtins:print"
            args: ["from the child"]
            isolation: process
        """,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / ".jobvisor" / "output"
    load = (out / "etl" / "load.log").read_bytes().splitlines()
    assert sorted(body(line) for line in load) == [
        b"err",
        b"no newline",
        b"out \x1b[31mred\x1b[0m",  # the job's own bytes: no escaping in the file
    ]
    streams = {body(line): STAMP.match(line).groups() for line in load}  # type: ignore[union-attr]
    assert streams[b"err"] == (b"stderr", b"1")
    assert streams[b"no newline"] == (b"stdout", b"1")
    for name in ("w.0", "w.1"):
        assert [body(x) for x in (out / "etl" / f"{name}.log").read_bytes().splitlines()] == [
            b"replica"
        ]
    assert [body(x) for x in (out / "iso.log").read_bytes().splitlines()] == [b"from the child"]
    for directory in (out, out / "etl"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for file in (out / "etl" / "load.log", out / "iso.log"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_rotation_keeps_backups_each_at_most_max_bytes(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        """
        version: 1
        jobs:
          - name: many
            command: "i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo line $i; done"
            output: {max_bytes: 1KiB, backups: 2}
        """,
    )
    assert done.returncode == 0, done.stderr
    base = tmp_path / ".jobvisor" / "output" / "many.log"
    files = [base.with_name(f"many.log.{n}") for n in (2, 1)] + [base]
    assert not base.with_name("many.log.3").exists()
    numbers: list[int] = []
    for file in files:
        assert 0 < file.stat().st_size <= 1024
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        numbers += [int(body(x).split()[1]) for x in file.read_bytes().splitlines()]
    assert numbers == list(range(numbers[0], 401))  # the newest lines, in order, none lost

    shown = logs(tmp_path, "many", "-n", "3")
    assert shown.returncode == 0
    assert [body(x) for x in shown.stdout.splitlines()] == [b"line 398", b"line 399", b"line 400"]
    # More lines than the current file holds come from its backups, oldest first.
    shown = logs(tmp_path, "many", "-n", str(len(numbers)))
    assert [int(body(x).split()[1]) for x in shown.stdout.splitlines()] == numbers


def test_output_false_writes_no_file_and_logs_knows_the_job(tmp_path: Path) -> None:
    done = run(
        tmp_path,
        """
        version: 1
        defaults: {output: false}
        jobs:
          - name: quiet
            command: "echo hidden"
        """,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".jobvisor" / "output" / "quiet.log").exists()
    shown = logs(tmp_path, "quiet")
    assert (shown.returncode, shown.stdout) == (0, b"")
    # Said, not an empty screen alone.
    assert shown.stderr.decode().startswith("jobvisor: quiet has no output file (")
    assert "output: false" in shown.stderr.decode()


def test_logs_of_an_http_job_says_it_has_no_output_file(tmp_path: Path) -> None:
    """Trial 30: ``logs report`` of an http job said it "has written nothing yet" (and -f
    waited for a file that never comes): an http job writes none."""
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs: [{name: report, http: {url: 'http://127.0.0.1:9/'}}]\n"
    )
    said = (
        "jobvisor: report is an http job: it has no output file; each request's outcome is in "
        "jobvisor's log and in `jobvisor history report`\n"
    )
    for args in (("report",), ("report", "-f")):
        shown = logs(tmp_path, *args)
        assert (shown.returncode, shown.stdout, shown.stderr.decode()) == (0, b"", said)


def test_no_such_job_is_exit_4(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: a, command: 'true'}]\n")
    shown = logs(tmp_path, "nope")
    assert shown.returncode == 4
    assert shown.stderr.decode().startswith("jobvisor: no such job: nope")
    assert b"Traceback" not in shown.stderr


GROUPS = """
version: 1
jobs:
  - group: etl
    jobs:
      - name: a
        service: true
        command: "sleep 1000"
      - group: inner
        jobs:
          - {name: b, service: true, command: "sleep 1000"}
          - {name: w, replicas: 2, service: true, command: "sleep 1000"}
"""


def test_logs_of_a_group_says_it_is_one_and_names_its_jobs(tmp_path: Path) -> None:
    said = (
        "jobvisor: etl is a group: it has no output of its own; its jobs: "
        "etl/a, etl/inner/b, etl/inner/w.0, etl/inner/w.1\n"
    )
    (tmp_path / "jobs.yaml").write_text(GROUPS)
    for args in (("etl",), ("etl/", "-f")):  # from the manifest, with no daemon
        shown = logs(tmp_path, *args)
        assert (shown.returncode, shown.stdout, shown.stderr.decode()) == (4, b"", said)
    shown = logs(tmp_path, "etl/inner/w")
    assert shown.stderr.decode().startswith("jobvisor: etl/inner/w runs as replicas,")
    running = start_daemon(tmp_path, GROUPS, "--runtime", RUNTIME)
    try:  # from the daemon's status
        shown = logs(tmp_path, "etl/inner")
        assert shown.returncode == 4
        assert shown.stderr.decode() == (
            "jobvisor: etl/inner is a group: it has no output of its own; its jobs: "
            "etl/inner/b, etl/inner/w.0, etl/inner/w.1\n"
        )
        # A job with replicas is named by its replicas too ("no such job" before).
        shown = logs(tmp_path, "etl/inner/w")
        assert shown.returncode == 4
        assert shown.stderr.decode() == (
            "jobvisor: etl/inner/w runs as replicas, each with its own output: "
            "etl/inner/w.0, etl/inner/w.1\n"
        )
    finally:
        assert stop_daemon(running) == 0


def test_a_planted_symlink_at_an_output_file_is_not_followed(tmp_path: Path) -> None:
    out = tmp_path / ".jobvisor" / "output"
    out.mkdir(parents=True, mode=0o700)
    tmp_path.joinpath(".jobvisor").chmod(0o700)
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    (out / "a.log").symlink_to(target)
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: a, command: 'echo planted'}]\n")
    jv = run_jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--log-level", "warning")
    assert jv.proc.returncode == 0, jv.stderr
    assert target.read_text() == "untouched\n"
    assert (out / "a.log").is_symlink()
    assert "a: cannot write the output file" in jv.stderr
    # Its stdout line is below the log's level (warning): not said to be in the log.
    assert "output lines are dropped (the log does not take them either)" in jv.stderr
    assert "symbolic link" in jv.stderr
    assert f"refusing the output file {out / 'a.log'}" in jv.stderr


def test_secrets_are_masked_in_output_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-value-123")
    done = run(
        tmp_path,
        """
        version: 1
        jobs:
          - name: leak
            command: 'echo "token=$TOKEN"'
            env: {TOKEN: {secret: {file: token}}}
        """,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / ".jobvisor" / "output" / "leak.log").read_bytes()
    assert b"s3cret" not in text
    assert body(text.splitlines()[0]) == b"token=***"


def test_logs_follows_a_daemon_job_across_rotations_and_exits_0_on_ctrl_c(
    tmp_path: Path,
) -> None:
    daemon = start_daemon(
        tmp_path,
        """
        version: 1
        jobs:
          - name: ticker
            service: true
            command: "i=0; while true; do i=$((i+1)); echo n $i; sleep 0.005; done"
            output: {max_bytes: 2KiB, backups: 3}
        """,
        "--runtime",
        RUNTIME,
    )
    follower = None
    try:
        file = daemon.state / "output" / "ticker.log"
        wait_until(file.exists, "the output file")
        follower = subprocess.Popen(
            [*CLI, "logs", "ticker", "-f", "-n", "5"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert follower.stdout is not None
        first_inode = None
        numbers: list[int] = []
        rotations = 0
        while rotations < 3 or len(numbers) < 200:
            line = follower.stdout.readline()
            assert line, "logs -f ended early"
            numbers.append(int(body(line).split()[1]))
            try:
                inode = file.stat().st_ino
            except FileNotFoundError:
                continue  # between a rotation's rename and the new file: look at the next line

            if first_inode is None:
                first_inode = inode
            elif inode != first_inode:
                rotations += 1
                first_inode = inode
        # Every line once and in order, across the rotations, from the tail on.
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 0
        assert b"Traceback" not in err
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.wait()
        assert stop_daemon(daemon) == 0


def test_bad_output_values_are_reported_with_path_and_line(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - name: a
                command: "true"
                output: {max_bytes: 0, backups: -1}
              - name: b
                command: "true"
                output: loud
              - name: c
                http: {url: "http://127.0.0.1:1/"}
                output: false
            """
        )
    )
    jv = run_jobvisor(tmp_path, "validate")
    assert jv.proc.returncode == 2
    assert jv.stderr.splitlines() == [
        "jobs.yaml:5: jobs[0].output.max_bytes: expected a size >= 1, got 0",
        "jobs.yaml:5: jobs[0].output.backups: expected a count >= 0, got -1",
        (
            "jobs.yaml:8: jobs[1].output: expected false, true or a mapping with max_bytes, "
            "backups and log, got 'loud'"
        ),
        (
            "jobs.yaml:11: jobs[2].output: expected output only on command or python jobs, "
            "got it on an http job"
        ),
    ]


def test_explain_shows_the_effective_output(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            defaults: {output: {backups: 1}}
            jobs:
              - {name: a, command: "true"}
              - {name: b, command: "true", output: false}
              - {name: c, python: "m:f"}
            """
        )
    )
    jv = run_jobvisor(tmp_path, "validate", "--explain")
    assert jv.proc.returncode == 0, jv.stderr
    shown = [line.strip() for line in jv.stdout.splitlines() if "output:" in line]
    assert shown == [
        "output: STATE_DIR/output/PATH.log max_bytes=10MiB backups=1",
        "output: off",
        "output: none (isolation thread: a python job's prints are not captured)",
    ]


@pytest.mark.parametrize("name", ["..", "."])
def test_a_job_named_with_dots_only_keeps_its_file_inside_the_output_dir(
    tmp_path: Path, name: str
) -> None:
    from supervision._logs import output_file

    assert output_file("/s/output", f"g/{name}") == "/s/output/g/" + "%2E" * len(name) + ".log"
    assert output_file("/s/output", f"{name}/x") == "/s/output/" + "%2E" * len(name) + "/x.log"
    assert output_file("/s/output", "a.log/b.log") == "/s/output/a%2Elog/b.log.log"
    assert output_file("/s/output", "a.log.1/b") == "/s/output/a%2Elog.1/b.log"  # a backup's
    assert output_file("/s/output", "a.logs/b") == "/s/output/a.logs/b.log"
    assert output_file("/s/output", "x/.log/b") == "/s/output/x/%2Elog/b.log"


def test_a_group_named_like_a_jobs_file_keeps_both_outputs_apart(tmp_path: Path) -> None:
    # The group a.log's directory was the file of the job a beside it: validate said OK, a's
    # output was lost ("Is a directory") and logs a refused (operator trial h232).
    done = run(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: a, command: "echo from-a"}
          - group: a.log
            jobs:
              - {name: b, command: "echo from-b"}
        """,
        "--log-level",
        "warning",
    )
    assert done.returncode == 0, done.stderr
    assert "cannot write the output file" not in done.stderr, done.stderr
    out = tmp_path / ".jobvisor" / "output"
    assert [body(x) for x in (out / "a.log").read_bytes().splitlines()] == [b"from-a"]
    assert [body(x) for x in (out / "a%2Elog" / "b.log").read_bytes().splitlines()] == [b"from-b"]
    for path, line in (("a", b"from-a"), ("a.log/b", b"from-b")):
        shown = logs(tmp_path, path)
        assert shown.returncode == 0, shown.stderr
        assert [body(x) for x in shown.stdout.splitlines()] == [line], shown.stdout


def test_output_log_false_keeps_a_jobs_lines_out_of_the_log(tmp_path: Path) -> None:
    """supervisord keeps program output out of its own log: ``output: {log: false}`` writes a
    chatty job's lines to its file only, so they cannot push the supervisor's decisions out
    of a rotated log. A file that cannot be written drops them (they never reach the log: a
    planted symlink, refused, must not turn the promise over), said once, and ``--explain``
    says where they go."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - {name: quiet, command: "echo chatter-a", output: {log: false}}
              - {name: loud, command: "echo chatter-b"}
              - {name: planted, command: "echo chatter-c", output: {log: false}}
            """
        )
    )
    out = tmp_path / ".jobvisor" / "output"
    out.mkdir(parents=True, mode=0o700)
    tmp_path.joinpath(".jobvisor").chmod(0o700)
    (out / "planted.log").symlink_to(tmp_path / "victim")
    jv = run_jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--log-level", "information")
    assert jv.proc.returncode == 0, jv.stderr
    assert "chatter-a" not in jv.stderr
    assert "chatter-b" in jv.stderr
    assert "chatter-c" not in jv.stderr, "its file was refused: its lines are dropped"
    refused = [line for line in jv.stderr.splitlines() if "planted.log" in line]
    assert len(refused) == 1, jv.stderr
    assert "refusing the output file" in refused[0]
    assert refused[0].endswith("output lines are dropped until it is writable again [path=planted]")
    assert [body(x) for x in (out / "quiet.log").read_bytes().splitlines()] == [b"chatter-a"]
    explained = run_jobvisor(tmp_path, "validate", "--explain")
    shown = [line.strip() for line in explained.stdout.splitlines() if "output:" in line]
    assert shown[0] == "output: STATE_DIR/output/PATH.log max_bytes=10MiB backups=3 log=false"
    assert shown[1] == "output: STATE_DIR/output/PATH.log max_bytes=10MiB backups=3"


def test_output_log_false_keeps_a_failed_jobs_last_line_out_of_its_error(tmp_path: Path) -> None:
    """A failed command's error ends with its last line on stderr, which reaches the log, the
    journal and notifications: not one of a job whose lines go to its file only (r54)."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - {name: quiet, command: "echo chatter-z >&2; exit 3", output: {log: false}}
              - {name: loud, command: "echo said-y >&2; exit 3"}
            """
        )
    )
    jv = run_jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--json")
    assert jv.proc.returncode == 1, jv.stderr
    errors = {n["name"]: n["last_exit"]["error"] for n in json.loads(jv.stdout)["children"]}
    assert errors == {
        "quiet": "command echo chatter-z >&2; exit 3 exited with 3",
        "loud": "command echo said-y >&2; exit 3 exited with 3; its last line on stderr: said-y",
    }
    assert "stderr: chatter-z" not in jv.stderr


def test_output_log_false_drops_the_lines_its_file_fails_to_take(tmp_path: Path) -> None:
    """A file that opened but then cannot be written (here: its path became a directory, as
    a full disk would fail a write) drops the lines it could not take: ``log: false`` keeps
    them out of the log even then (a flood whose disk is full sent 10 MB to it in 20 s);
    a WARNING in the log says so, once (README)."""
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            jobs:
              - name: quiet
                command: "echo chatter-1; while [ ! -e go ]; do sleep 0.02; done; echo chatter-2"
                output: {log: false}
            """
        )
    )
    out = tmp_path / ".jobvisor" / "output"
    jv = Jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--log-level", "information")
    try:
        wait_until(
            lambda: (
                (out / "quiet.log").exists() and b"chatter-1" in (out / "quiet.log").read_bytes()
            ),
            "the first line in its file",
        )
        (out / "quiet.log").unlink()
        (out / "quiet.log").mkdir()  # the file cannot be opened again: its writes fail
        (tmp_path / "go").touch()
        assert jv.wait(30) == 0, jv.stderr
    finally:
        jv.close()
    assert "chatter-1" not in jv.stderr, "its file took it"
    assert "chatter-2" not in jv.stderr, "its file could not take it: dropped"
    said = [line for line in jv.stderr.splitlines() if "quiet.log" in line]
    assert len(said) == 1, jv.stderr
    assert " WARNING " in said[0]
    assert "output lines are dropped until it is writable again" in said[0]


def _rotate(path: Path, backups: int) -> None:
    """As the output file's own rotation does: ``path`` -> ``path.1`` -> ... -> ``path.N``."""
    for n in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if n == backups:
            older.unlink(missing_ok=True)
        newer = path if n == 1 else path.with_name(f"{path.name}.{n - 1}")
        if newer.exists():
            newer.rename(older)
    if backups == 0:
        path.unlink()


@pytest.mark.parametrize("backups", [1, 2, 3])
def test_following_reads_every_file_rotated_between_two_looks(tmp_path: Path, backups: int) -> None:
    """`logs -f` of a flood: two rotations between two looks skipped the file in between
    (a whole file of lines) while it was still on disk as `.1`."""
    from supervision._logs import follow

    path = tmp_path / "web.log"
    seen: list[bytes] = []
    path.write_bytes(b"a1\na2\n")
    lines = follow(str(path), seen.append)
    try:
        next(lines)
        assert b"".join(seen) == b"a1\na2\n"
        with path.open("ab") as file:
            file.write(b"a3\n")
        wrote = [b"a3\n"]
        for name in ("b", "c", "d")[: backups + 1]:
            _rotate(path, backups)
            path.write_bytes(f"{name}1\n{name}2\n".encode())
            wrote.append(f"{name}1\n{name}2\n".encode())
        next(lines)
    finally:
        lines.close()
    # The first file was open; the ones rotated after it are still among the backups when
    # no more rotations came than backups are kept; the newest is at the path.
    assert b"".join(seen) == b"a1\na2\n" + b"".join(wrote)


def test_following_past_more_rotations_than_backups_reads_what_is_left_in_order(
    tmp_path: Path,
) -> None:
    from supervision._logs import follow

    path = tmp_path / "web.log"
    seen: list[bytes] = []
    path.write_bytes(b"a\n")
    lines = follow(str(path), seen.append)
    try:
        next(lines)
        for name in (b"b", b"c", b"d", b"e"):  # four rotations, one backup kept
            _rotate(path, 1)
            path.write_bytes(name + b"\n")
        next(lines)
    finally:
        lines.close()
    assert seen == [b"a\n", b"d\n", b"e\n"]  # b and c went before anyone could read them


def test_logs_f_says_on_stderr_where_output_rotated_away_unread(tmp_path: Path) -> None:
    """`logs -f` dropped the lines of files rotated past the backups kept between two of its
    reads without a word (trial 33): it says so on stderr, where they went missing."""
    (tmp_path / "jobs.yaml").write_text("version: 1\njobs:\n  - {name: web, command: [true]}\n")
    path = tmp_path / ".jobvisor" / "output" / "web.log"
    path.parent.mkdir(parents=True, mode=0o700)
    tmp_path.joinpath(".jobvisor").chmod(0o700)
    path.write_bytes(b"a\n")
    path.chmod(0o600)
    follower = subprocess.Popen(
        [*CLI, "logs", "web", "-f"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert follower.stdout is not None
        assert follower.stderr is not None
        assert follower.stdout.readline() == b"a\n"
        follower.send_signal(signal.SIGSTOP)  # between two of its reads, for as long as it takes
        for name in (b"b", b"c", b"d"):  # three rotations, one backup kept: b went unread
            _rotate(path, 1)
            path.write_bytes(name + b"\n")
        follower.send_signal(signal.SIGCONT)
        assert follower.stderr.readline() == (
            b"[jobvisor: output may have rotated away unread here: web.log rotated more "
            b"times than its 1 backup kept between two reads]\n"
        )
        assert [follower.stdout.readline() for _ in range(2)] == [b"c\n", b"d\n"]
        _rotate(path, 1)  # one rotation: its backup is read, and nothing is said
        path.write_bytes(b"e\n")
        assert follower.stdout.readline() == b"e\n"
        follower.send_signal(signal.SIGINT)
        out, err = follower.communicate(timeout=30)
        assert (follower.returncode, out, err) == (0, b"", b"")
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


@pytest.mark.parametrize(
    ("before", "end"),
    [(65530, "\\n"), (65536 - 4, "\\n"), (65536 + 65536 - 7, "\\n"), (65530, "")],
)
def test_a_secret_where_a_long_line_is_cut_is_masked_whole_in_the_log_and_the_file(
    tmp_path: Path, before: int, end: str
) -> None:
    # A line longer than 64 KiB is logged (and written) in parts; a cut in the middle of a
    # secret left each half to be masked on its own, which neither matches: both in clear.
    (tmp_path / "pw").write_text("hunter2-XyZ-secret")
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent(f"""
        version: 1
        jobs:
          - name: leak
            command:
              - python3
              - -c
              - |
                import os, sys, time
                sys.stdout.write("A" * {before} + os.environ["PW"]); sys.stdout.flush()
                time.sleep(0.3)
                sys.stdout.write("B" * 10 + "{end}")
            env: {{PW: {{secret: {{file: pw}}}}}}
        """)
    )
    log_file = tmp_path / "jv.log"
    args = ("--runtime", RUNTIME, "--log-level", "information", "--log-file", str(log_file))
    jv = run_jobvisor(tmp_path, "run", *args)
    assert jv.proc.returncode == 0, jv.stderr
    text = (tmp_path / ".jobvisor" / "output" / "leak.log").read_bytes()
    logged = log_file.read_text()
    for where in (text.decode(), logged):
        for piece in ("hunter", "XyZ", "secret\n", "2-X"):
            assert piece not in where
    # Nothing else is lost: the parts joined are the line, the secret masked once.
    parts = b"".join(body(line) for line in text.splitlines())
    assert parts == b"A" * before + b"***" + b"B" * 10
    shown = [
        line.split(" leak[1] ", 1)[1].rsplit(" [path=", 1)[0]
        for line in logged.splitlines()
        if " leak[1] " in line
    ]
    assert "".join(shown) == "A" * before + "***" + "B" * 10


def test_a_long_line_is_cut_between_characters_never_inside_one(tmp_path: Path) -> None:
    # A line past 64 KiB is logged (and written) in 64 KiB parts; a cut at the 65,536th byte
    # split a two-byte character, and each part showed a replacement character for its half.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        jobs:
          - name: wide
            command:
              - python3
              - -c
              - |
                import sys, time
                sys.stdout.write("a" + "\\u00e9" * 40000); sys.stdout.flush()
                time.sleep(0.3)  # the line's end comes later: it is cut as it grows
                sys.stdout.write("\\n")
            restart: temporary
        """)
    )
    log_file = tmp_path / "jv.log"
    args = ("--runtime", RUNTIME, "--log-level", "information", "--log-file", str(log_file))
    jv = run_jobvisor(tmp_path, "run", *args)
    assert jv.proc.returncode == 0, jv.stderr
    logged = log_file.read_text(encoding="utf-8")
    shown = [
        line.split(" wide[1] ", 1)[1].rsplit(" [path=", 1)[0]
        for line in logged.splitlines()
        if " wide[1] " in line
    ]
    assert len(shown) == 2  # cut once: the line is 80,001 bytes
    assert "\ufffd" not in logged
    assert "".join(shown) == "a" + "\u00e9" * 40000
    written = (tmp_path / ".jobvisor" / "output" / "wide.log").read_bytes().splitlines()
    parts = [body(line) for line in written]
    for part in parts:
        part.decode("utf-8")  # each part whole characters: no UnicodeDecodeError
    assert b"".join(parts) == ("a" + "\u00e9" * 40000).encode()


def test_a_long_line_in_whole_64_kib_reads_is_cut_without_failing_the_job(tmp_path: Path) -> None:
    # A part that ended exactly at the bytes read so far made the cut look one byte past them
    # (IndexError), which failed the command's attempt: a 16 MiB line did so at once.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        jobs:
          - name: long
            command:
              - python3
              - -c
              - |
                import os, time
                for _ in range(3):
                    os.write(1, b"y" * 65536)
                    time.sleep(0.05)  # each read a whole 64 KiB
                os.write(1, b"\\n")
            restart: temporary
        """)
    )
    log_file = tmp_path / "jv.log"
    args = ("--runtime", RUNTIME, "--log-level", "information", "--log-file", str(log_file))
    jv = run_jobvisor(tmp_path, "run", *args)
    assert jv.proc.returncode == 0, log_file.read_text()
    written = (tmp_path / ".jobvisor" / "output" / "long.log").read_bytes().splitlines()
    assert b"".join(body(line) for line in written) == b"y" * 3 * 65536


def test_a_directory_on_the_way_swapped_for_a_symlink_between_attempts_is_not_followed(
    tmp_path: Path,
) -> None:
    # What each attempt's open works out once per job (the file's path, its directories) is
    # kept; the checks of the directories on the way are made again at every open (the file
    # let go between the two, as a job does unless it restarts in place).
    files = OutputFiles(tmp_path / "output")
    opener = files.opener(OutputSpec())
    work = CommandWork(shell="echo line")
    with logbook.TestHandler() as said:
        assert work.run(Attempt("g/a", 1, time.time(), output=opener)) == 0
        opener.close()
        group = tmp_path / "output" / "g"
        assert body((group / "a.log").read_bytes()) == b"line\n"
        elsewhere = tmp_path / "elsewhere"
        group.rename(elsewhere)
        group.symlink_to(elsewhere)
        assert work.run(Attempt("g/a", 2, time.time(), output=opener)) == 0
        opener.close()
    assert body((elsewhere / "a.log").read_bytes()) == b"line\n"  # attempt 1's line alone
    assert any("symbolic link" in r.message for r in said.records), said.formatted_records


def _open_on(file: Path) -> list[int]:
    """This process's fds open on ``file``."""
    return [fd for fd, target in fds().items() if target == str(file)]


def test_a_reopen_of_a_file_moved_mid_attempt_checks_each_directory_on_the_way(
    tmp_path: Path,
) -> None:
    # The file is kept open by the attempts that follow each other at once, so a move is seen
    # at a write (the path no longer names the open file) and the file opened again: every
    # directory on the way is checked then too, not only the file's own name.
    files = OutputFiles(tmp_path / "output")
    opener = files.opener(OutputSpec())
    out = opener(Attempt("g/a", 1, time.time()))
    group = tmp_path / "output" / "g"
    trap = tmp_path / "trap"
    trap.mkdir(mode=0o700)
    with logbook.TestHandler() as said:
        out.write("stdout", b"one")
        group.rename(tmp_path / "elsewhere")
        group.symlink_to(trap)
        out.write("stdout", b"two")
        out.close()
        opener.close()
    assert not (trap / "a.log").exists()
    assert body((tmp_path / "elsewhere" / "a.log").read_bytes()) == b"one\n"
    assert any("symbolic link" in r.message for r in said.records), said.formatted_records


def test_attempts_that_follow_at_once_share_the_open_file_until_it_is_let_go(
    tmp_path: Path,
) -> None:
    files = OutputFiles(tmp_path / "output")
    opener = files.opener(OutputSpec())
    work = CommandWork(shell="echo line")
    file = tmp_path / "output" / "a.log"
    assert work.run(Attempt("a", 1, time.time(), output=opener)) == 0
    kept = _open_on(file)
    assert len(kept) == 1, "kept open for the next attempt"
    assert work.run(Attempt("a", 2, time.time(), output=opener)) == 0
    assert _open_on(file) == kept, "the same open file, not another"
    opener.close()
    assert _open_on(file) == []
    assert [STAMP.match(x).group(2) for x in file.read_bytes().splitlines()] == [b"1", b"2"]  # type: ignore[union-attr]


LOOP = """
version: 1
supervisor:
  strategy: one_for_one
  backoff: {{initial: 0, max: 0, jitter: 0}}
  intensity: {{max_restarts: {most}, within: 60s}}
jobs:
  - {{name: loop, command: "echo line; exit 1", restart: permanent}}
"""


def test_a_crash_loop_restarted_in_place_holds_its_file_no_longer_than_it_runs(
    tmp_path: Path,
) -> None:
    # Its attempts share the open file; the give-up, and a stop of the tree mid-loop, let it go.
    from supervision import load_manifest, start_tree

    file = tmp_path / "output" / "loop.log"
    with start_tree(
        load_manifest(LOOP.format(most=5)), RUNTIME, output_dir=tmp_path / "output"
    ) as tree:
        assert tree.wait(30)
        assert tree.status()["children"][0]["state"] == "gave_up"
        assert _open_on(file) == []
    assert [STAMP.match(x).group(2) for x in file.read_bytes().splitlines()] == [  # type: ignore[union-attr]
        str(n).encode() for n in range(1, 7)
    ]
    file.unlink()
    with start_tree(
        load_manifest(LOOP.format(most=10**9)), RUNTIME, output_dir=tmp_path / "output"
    ) as tree:
        wait_until(lambda: file.exists() and file.read_bytes().count(b"\n") >= 20, "20 restarts")
        assert tree.stop(30)
        assert _open_on(file) == []


DEAF_SECOND = """
version: 1
supervisor:
  strategy: one_for_one
  backoff: {{initial: 0, max: 0, jitter: 0}}
  intensity: {{max_restarts: 1000, within: 60s}}
jobs:
  - name: deaf
    command: "echo line; [ -e {mark} ] && {{ trap '' TERM; echo deaf; exec sleep 60; }}; touch {mark}; exit 1"
    restart: permanent
    stop: {{grace: 0.2s}}
"""


def test_a_stop_that_kills_an_attempt_restarted_in_place_lets_go_of_the_file_it_kept(
    tmp_path: Path,
) -> None:
    # The job actor's own end, not one attempt's: attempt 2, restarted in place, writes to the
    # file attempt 1 kept open and ignores the stop's SIGTERM, so the grace runs out and the
    # actor is killed (its group SIGKILLed, a Kill thrown into its thread) holding the file.
    from supervision import load_manifest, start_tree

    file = tmp_path / "output" / "deaf.log"
    mark = tmp_path / "mark"
    manifest = load_manifest(DEAF_SECOND.format(mark=mark))
    with start_tree(manifest, RUNTIME, output_dir=tmp_path / "output") as tree:
        wait_until(lambda: file.exists() and b"deaf" in file.read_bytes(), "attempt 2 runs")
        assert len(_open_on(file)) == 1, "attempt 1's file, kept for attempt 2"
        assert tree.stop(30)
        node = tree.status()["children"][0]
        assert (node["starts"], node["state"]) == (2, "stopped"), node
        assert _open_on(file) == []
    assert [body(x) for x in file.read_bytes().splitlines()] == [b"line", b"line", b"deaf"]


QUIET_AFTER = """
version: 1
supervisor:
  strategy: one_for_one
  backoff: {{initial: 0, max: 0, jitter: 0}}
  intensity: {{max_restarts: 1000, within: 1s}}
jobs:
  - name: svc
    command: "[ -e {mark} ] && {quiet}; touch {mark}; echo boom; exit 1"
    restart: permanent
"""


@pytest.mark.parametrize(
    "quiet",
    ["exec sleep 60", "{ sleep 0.3; exit 0; }"],
    ids=["one runs on", "many in a row, each shorter than the linger"],
)
def test_quiet_attempts_let_go_of_the_file_an_attempt_before_them_kept(
    tmp_path: Path, quiet: str
) -> None:
    # Attempt 1 prints and crashes; the attempts restarted in place after it say nothing. One
    # that runs on held attempt 1's file for as long as it ran: one that logrotate moved away
    # and deleted kept its space (review r45a); so did quiet attempts in a row, each shorter
    # than the linger, which each counted it anew (review r45b).
    from supervision import load_manifest, start_tree

    file = tmp_path / "output" / "svc.log"
    mark = tmp_path / "mark"
    manifest = load_manifest(QUIET_AFTER.format(mark=mark, quiet=quiet))
    with start_tree(manifest, RUNTIME, output_dir=tmp_path / "output") as tree:
        wait_until(lambda: tree.status()["children"][0]["starts"] >= 2, "attempt 2 started")
        wait_until(lambda: not _open_on(file), "quiet attempts let go of the file", timeout=10)
        assert tree.stop(30)
    assert [body(x) for x in file.read_bytes().splitlines()] == [b"boom"]


def test_a_job_waiting_for_its_retry_holds_no_output_file(tmp_path: Path) -> None:
    from supervision import load_manifest, start_tree

    file = tmp_path / "output" / "r.log"
    manifest = load_manifest(
        textwrap.dedent(
            """
            version: 1
            jobs:
              - name: r
                command: "echo try; exit 1"
                retry: {attempts: 2, wait: {initial: 30s, max: 30s, jitter: 0}}
            """
        )
    )
    said = logbook.TestHandler(level=logbook.INFO)
    with (
        said.applicationbound(),
        start_tree(manifest, RUNTIME, output_dir=tmp_path / "output") as tree,
    ):
        wait_until(lambda: any("retrying in" in r.message for r in said.records), "the wait")
        assert _open_on(file) == []
        assert tree.stop(30)
