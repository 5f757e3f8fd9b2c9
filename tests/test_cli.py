"""The real `jobvisor` command in a real process: exit codes, output, signals, secrets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import (
    DAEMON,
    Jobvisor,
    gone,
    read_pids,
    start_daemon,
    stop_daemon,
    wait_until,
    why_not_as_nobody,
)
from httpkit import HttpKit, Reply

from supervision._table import flatten_status

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]


def jobvisor(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    prefix: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``prefix``: what runs the command (``setpriv ...``), given it as its arguments."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [*prefix, *CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


FAST = """
supervisor:
  backoff: {initial: 1ms, max: 5ms}
  intensity: {max_restarts: 1, within: 60s}
"""


def test_version_and_usage(tmp_path: Path) -> None:
    out = jobvisor("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.startswith("jobvisor ")
    out = jobvisor(cwd=tmp_path)
    assert out.returncode == 2
    out = jobvisor("run", "--log-level", "loud", cwd=tmp_path)
    assert out.returncode == 2
    assert "invalid choice: 'loud'" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_all_succeed_exits_0_with_a_summary(tmp_path: Path) -> None:
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
jobs:
  - name: hello
    command: [sh, -c, "echo hello from the job"]
  - name: calc
    python: "math:sqrt"
    args: [16]
""",
    )
    out = jobvisor("run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "hello from the job" in out.stderr  # command output is logged line by line
    table = out.stdout.splitlines()
    assert table[0].split()[:3] == ["PATH", "KIND", "STATE"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["hello"][1:3] == ["command", "succeeded"]
    assert rows["calc"][1:3] == ["python", "succeeded"]


def test_run_json_prints_the_status_document_and_gave_up_exits_1(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
jobs:
  - name: bad
    command: "exit 3"
""",
    )
    out = jobvisor("run", str(manifest), "--json", cwd=tmp_path)
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    node = doc["children"][0]
    assert (node["path"], node["kind"], node["state"], node["starts"]) == (
        "bad",
        "command",
        "gave_up",
        2,
    )
    assert node["last_exit"]["code"] == 3
    assert "gave up" in out.stderr


@pytest.mark.parametrize(
    ("left", "runtime"),
    [
        ("signal.signal(signal.SIGCHLD, signal.SIG_IGN)", "threads"),
        ("signal.signal(signal.SIGCHLD, signal.SIG_IGN)", "gevent"),
        ("signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})", "threads"),
        ("signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})", "gevent"),
    ],
    ids=["ignored-threads", "ignored-gevent", "blocked-threads", "blocked-gevent"],
)
def test_run_reads_exit_codes_though_its_parent_left_sigchld_ignored_or_blocked(
    tmp_path: Path, left: str, runtime: str
) -> None:
    # An ignored SIGCHLD survives exec, and with it the system reaps every child unread: each
    # command then "failed" with ChildProcessError, `true` too. A blocked one survives exec
    # too, and gevent's libev, which waits for it, never saw a command end: run hung.
    # jobvisor's process is its own.
    manifest = write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
jobs:
  - name: bad
    command: "sleep 0.1; exit 3"
  - name: quick
    command: [sh, -c, "exit 4"]
  - name: fine
    command: ["true"]
""",
    )
    ignoring = f"import os, signal, sys; {left}; os.execv(sys.argv[1], sys.argv[1:])"
    out = jobvisor(
        "run",
        str(manifest),
        "--json",
        "--runtime",
        runtime,
        cwd=tmp_path,
        prefix=(sys.executable, "-c", ignoring),
        timeout=30,
    )
    assert out.returncode == 1, out.stderr
    nodes = {node["path"]: node for node in json.loads(out.stdout)["children"]}
    assert nodes["bad"]["last_exit"]["code"] == 3
    assert nodes["quick"]["last_exit"]["code"] == 4
    assert nodes["fine"]["state"] == "succeeded"
    assert "ChildProcessError" not in out.stderr


def test_bad_manifest_exits_2_with_path_and_line_and_no_traceback(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
version: 1
jobs:
  - name: a
    python: "math:sqrt"
    retry: {attempts: -1}
""",
    )
    out = jobvisor("run", cwd=tmp_path)
    assert out.returncode == 2
    assert "jobs[0].retry.attempts" in out.stderr
    assert ":6" in out.stderr  # the line of the problem
    assert "Traceback" not in out.stderr
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 2
    write(tmp_path, "version: 1\njobs: [\n")
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 2
    assert "jobs.yaml:" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", ["start", "stop", "restart"])
@pytest.mark.parametrize("job", ["", "/", "//"])
def test_a_control_command_without_a_job_path_is_a_usage_error(
    tmp_path: Path, command: str, job: str
) -> None:
    out = jobvisor(command, job, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"jobvisor: {command} needs a job path such as etl/load, got {job!r}\n"


def test_missing_manifest_is_a_usage_error(tmp_path: Path) -> None:
    out = jobvisor("run", "nope.yaml", cwd=tmp_path)
    assert out.returncode == 2
    assert "no manifest at nope.yaml" in out.stderr


def test_validate_and_explain(tmp_path: Path) -> None:
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
jobs:
  - name: a
    python: "math:sqrt"
    args: [1]
""",
    )
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 0
    assert "OK" in out.stdout
    out = jobvisor("validate", "--explain", cwd=tmp_path)
    assert out.returncode == 0
    assert "max_restarts" in out.stdout


def test_validate_reports_each_bad_header_and_warns_of_a_command_strings_program(
    tmp_path: Path,
) -> None:
    """The new-user trial: a second bad header of one mapping went unsaid, and a command string
    or a notifier whose program is not there validated clean (then exit 127 at run time)."""
    write(
        tmp_path,
        r"""
        version: 1
        notify:
          - {on: [failed], command: /usr/local/bin/page-ops-jv}
        jobs:
          - {name: sync, command: "./sync.sh --x"}
          - {name: other, command: nosuchprog-jv --x}
          - {name: fine, command: "cd /tmp && exec sleep 1"}
          - name: ping
            http:
              url: http://127.0.0.1:9/x
              headers: {X-One: "caf€", X-Two: "a\u0001b"}
        """.lstrip("\n"),
    )
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    issues = [line for line in out.stderr.splitlines() if not line.startswith("warning: ")]
    expected = "expected a header value of Latin-1 text"
    assert issues == [
        f"jobs.yaml:11: jobs[3].http.headers.X-One: {expected} {HEADER_WHY}, got 'caf€'",
        f"jobs.yaml:11: jobs[3].http.headers.X-Two: {expected} {HEADER_WHY}, got 'a\\x01b'",
    ]
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    not_a_file = "expected an executable file, got"
    assert [w.partition(", which")[0] for w in warnings] == [
        f"warning: jobs.yaml:3: notify[0].command: {not_a_file} '/usr/local/bin/page-ops-jv'",
        f"warning: jobs.yaml:5: jobs[0].command: {not_a_file} '{tmp_path / 'sync.sh'}'",
        "warning: jobs.yaml:6: jobs[1].command: expected a program on PATH, got 'nosuchprog-jv'",
    ]
    assert "Traceback" not in out.stderr


HEADER_WHY = (
    "without control characters, line breaks or leading/trailing whitespace (percent-encode or "
    "base64 other text)"
)


def test_secrets_never_reach_any_output(tmp_path: Path) -> None:
    secret = "s3cr3t-t0ken-value"
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
logging: {level: verbose}
jobs:
  - name: leak
    command: [sh, -c, "echo token=$TOKEN; echo token=$TOKEN >&2; exit 1"]
    env:
      TOKEN: {secret: {env: API_TOKEN}}
""",
    )
    out = jobvisor("run", "--json", cwd=tmp_path, env={"API_TOKEN": secret})
    assert out.returncode == 1
    assert secret not in out.stdout + out.stderr
    assert "token=***" in out.stderr


def test_missing_secret_is_a_validation_error_naming_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        """
version: 1
jobs:
  - name: a
    command: [sh, -c, "true"]
    env:
      TOKEN: {secret: {env: JV_TEST_SURELY_UNSET}}
""",
    )
    out = jobvisor("validate", cwd=tmp_path, env={})
    assert out.returncode == 2
    assert "JV_TEST_SURELY_UNSET" in out.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_children_gracefully(tmp_path: Path, signum: int) -> None:
    marker = tmp_path / "started"
    stopped = tmp_path / "stopped"
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + f"""
jobs:
  - name: svc
    service: true
    command: [sh, -c, "trap 'echo bye > {stopped}; exit 0' TERM; touch {marker}; while true; do sleep 0.05; done"]
    stop: {{grace: 5s}}
""",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [*CLI, "run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_until(marker.exists, "the service started", proc=proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert stopped.read_text().strip() == "bye"
    assert "svc" in out
    assert "stopped" in out


def test_sigterm_stops_a_dependant_listed_first_before_what_it_depends_on(
    tmp_path: Path, runtime: str
) -> None:
    """app (listed first) waits for db to start; a stop must not take db from under it."""
    log = tmp_path / "terms"

    def service(name: str, extra: str = "") -> str:
        up = tmp_path / f"{name}.up"
        shell = (
            f"trap 'echo {name} >> {log}; exit 0' TERM; touch {up}; while :; do sleep 0.02; done"
        )
        return (
            f"  - {{name: {name}, service: true, command: {json.dumps(shell)}, "
            f"ready: {{command: [test, -e, {up}]}}{extra}}}\n"
        )

    write(
        tmp_path,
        "version: 1\njobs:\n" + service("app", ", depends_on: [db]") + service("db"),
    )
    errfile = tmp_path / "stderr.log"
    with errfile.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "--runtime", runtime, "run"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            wait_until((tmp_path / "app.up").exists, "app started", proc=proc)
            wait_until(
                lambda: "app: started (start 1)" in errfile.read_text(), "app ready", proc=proc
            )
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, errfile.read_text()
    assert log.read_text().split() == ["app", "db"]


def run_stopped_twice(
    tmp_path: Path,
    started: list[Path],
    first: int,
    stopping: str,
    errfile: Path,
    *flags: str,
) -> tuple[int, str]:
    """``run`` in ``tmp_path`` until the ``started`` files exist, then ``first``, then SIGINT once
    ``stopping`` is on its stderr (kept in ``errfile``): its exit code and stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with errfile.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, *flags, "run"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
        try:
            for path in started:
                wait_until(path.exists, f"{path.name} made", proc=proc)
            proc.send_signal(first)
            wait_until(lambda: stopping in errfile.read_text(), "the stop began", proc=proc)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, out


def test_second_signal_kills_what_ignores_the_first(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    pidfile = tmp_path / "pid"
    errfile = tmp_path / "stderr.log"
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + f"""
jobs:
  - name: stubborn
    service: true
    command: [sh, -c, "trap '' TERM; echo $$ > {pidfile}; touch {marker}; while true; do sleep 0.05; done"]
    stop: {{grace: 60s}}
""",
    )
    returncode, out = run_stopped_twice(
        tmp_path, [marker], signal.SIGTERM, "stubborn: stopping", errfile
    )
    # Not a clean stop: what still ran was killed (a `run && next` must not go on), and the
    # log says why, not that a grace ran out (it had 60 s).
    err = errfile.read_text()
    assert returncode == 1, err
    assert "stubborn: killed (forced stop)" in err
    assert "did not stop within" not in err
    assert err.rstrip().endswith(
        "jobvisor: a second signal cut the stop short: what still ran was killed"
    ), err
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "killed" in out


def test_a_second_ctrl_c_kills_a_group_too_and_says_so_once_each(
    tmp_path: Path, runtime: str
) -> None:
    """Two SIGINTs, the second while the first stop waits out a long grace.

    It gave exit 0, and each child was said to have 'not stopped within 60.0s' a moment after
    its stop began; a child whose forced stop its group began was said to be killed twice.
    """
    stubborn = "trap '' TERM; echo $$ >> pids; touch started.{}; while true; do sleep 0.05; done"
    write(
        tmp_path,
        f"""
        version: 1
        defaults:
          stop: {{grace: 60s}}
        jobs:
          - group: g
            jobs:
              - {{name: a, service: true, command: [sh, -c, "{stubborn.format("a")}"]}}
              - {{name: b, service: true, command: [sh, -c, "{stubborn.format("b")}"]}}
          - {{name: last, command: [sh, -c, "{stubborn.format("last")}"]}}
        """,
    )
    errfile = tmp_path / "stderr.log"
    started = [tmp_path / f"started.{name}" for name in ("a", "b", "last")]
    returncode, out = run_stopped_twice(
        tmp_path, started, signal.SIGINT, "last: stopping", errfile, "--runtime", runtime
    )
    err_text = errfile.read_text()
    assert returncode == 1, err_text
    assert "did not stop within" not in err_text
    for path in ("g/a", "g/b", "last"):
        assert err_text.count(f"{path}: killed (forced stop)") == 1, err_text
    assert err_text.rstrip().endswith(
        "jobvisor: a second signal cut the stop short: what still ran was killed"
    ), err_text
    # Killed, each is gone or a zombie of a moment (under gevent libev may not have reaped a
    # leader before the process ended; init reaps it then).
    pids = read_pids(tmp_path / "pids")
    wait_until(lambda: all(gone(pid) for pid in pids), "every killed job gone", timeout=5)
    assert re.search(r"^g/a +command +stopped .* killed \(SIGKILL\)$", out, re.MULTILINE), out


def test_embedded_status_hides_secrets_too(runtime: str) -> None:
    from supervision import load_manifest, start_tree

    secret = "p4ss-w0rd-value"
    manifest = load_manifest(
        textwrap.dedent("""
        version: 1
        supervisor: {intensity: {max_restarts: 0}}
        jobs:
          - name: leak
            python: "jobfuncs:fail"
            args: [{secret: {env: JV_SECRET}}]
        """),
        env={"JV_SECRET": secret},
    )
    with start_tree(manifest, runtime) as tree:
        assert tree.wait(10)
        error = tree.status()["children"][0]["last_exit"]["error"]
    assert secret not in error
    assert "***" in error


def test_run_json_keeps_stdout_for_the_document_alone(tmp_path: Path) -> None:
    """SPEC §4: with --json stdout is the status document; a job's prints go to stderr."""
    (tmp_path / "printer.py").write_text(
        "import os, sys\n"
        "def main():\n"
        "    print('hello from python')\n"
        "    sys.stdout.flush()\n"
        "    os.write(1, b'straight to fd 1\\n')\n"
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: p, python: "printer:main"}
          - {name: c, command: [echo, hello from a command]}
        """,
    )
    out = jobvisor("run", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [n["state"] for n in doc["children"]] == ["succeeded", "succeeded"]
    assert "hello from python" in out.stderr
    assert "straight to fd 1" in out.stderr
    assert "hello from a command" in out.stderr


def test_a_closed_stdout_is_no_traceback_and_no_file_of_ours(tmp_path: Path) -> None:
    """`jobvisor ... >&-`: fd 1 becomes /dev/null. Python left sys.stdout None (a traceback
    at the first print), and the log file would have taken fd 1, a job's prints going there."""
    (tmp_path / "printer.py").write_text("def main():\n    print('hello from python')\n")
    write(
        tmp_path,
        """
        version: 1
        logging: {file: jobvisor.log}
        jobs:
          - {name: p, python: "printer:main"}
        """,
    )
    # (With --json a job's prints go to stderr, as ever.)
    for verb, err in (
        (["validate"], ""),
        (["run"], ""),
        (["run", "--json"], "hello from python\n"),
    ):
        out = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *CLI, *verb],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (out.returncode, out.stderr) == (0, err), verb
    assert "hello from python" not in (tmp_path / "jobvisor.log").read_text()


def test_a_reader_that_goes_away_is_no_traceback(tmp_path: Path) -> None:
    """`jobvisor history | head -1`: a broken pipe ended in a traceback. Now no word, exit 0;
    for run the exit code stays the run's verdict."""
    if os.environ.get("JOBVISOR_RUNTIME", "threads") != "threads":
        pytest.skip(
            "runs once, under threads: the jobvisor it starts is the same process either way, "
            "and gevent's Popen in this one does not let a pipe's reader go first"
        )
    write(tmp_path, "version: 1\n" + FAST + "jobs:\n  - {name: bad, command: 'exit 4'}\n")
    assert jobvisor("run", cwd=tmp_path).returncode == 1  # something in the journal

    def gone(*verb: str) -> tuple[int, str]:
        read, write = os.pipe()
        proc = subprocess.Popen(
            [*CLI, *verb],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(write)
        os.close(read)  # before it writes a byte: its first write breaks the pipe
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err

    for verb in (("history",), ("validate", "--explain"), ("schema",)):
        assert gone(*verb) == (0, ""), verb
    for verb in (("run",), ("run", "--json")):
        code, err = gone(*verb)
        assert code == 1, (verb, err)
        assert "Traceback" not in err
        assert "Exception ignored" not in err


def test_run_json_gives_stderr_a_jobs_prints_whole_lines_beside_the_log(
    tmp_path: Path, runtime: str
) -> None:
    """Under --json a thread's prints share stderr with the log: a log line never cuts one.

    Block-buffered (Python's default for a pipe), a line longer than the buffer went out
    without its newline, which waited in the buffer: the next log line ('p: exited') went
    on the same line.
    """
    (tmp_path / "printer.py").write_text(
        "def main():\n"
        "    for i in range(1000):\n"
        "        print(f'line {i:04d}')\n"
        "    print('x' * 10000)\n"
        "    print('done')\n"
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: p, python: "printer:main"}
          - {name: iso, python: "printer:main", isolation: process}
          - {name: c, command: [echo, hello from a command], depends_on: [p]}
        """,
    )
    # Empty is unset: the default buffering, as most users have it.
    buffered = {"PYTHONUNBUFFERED": ""}
    out = jobvisor("--runtime", runtime, "run", "--json", cwd=tmp_path, env=buffered)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [n["state"] for n in doc["children"]] == ["succeeded"] * 3
    lines = out.stderr.splitlines()
    assert [line for line in lines if line.startswith("line ")] == [
        f"line {i:04d}" for i in range(1000)
    ]
    assert "x" * 10000 in lines
    assert "done" in lines
    # A child process's output is the log's (captured line by line), not a print of ours.
    assert any(line.endswith("iso[1] done [path=iso attempt=1 stream=stdout]") for line in lines)
    assert "c[1] hello from a command" in out.stderr


def test_python_jobs_run_beside_the_manifest_as_commands_do(tmp_path: Path) -> None:
    """Run from elsewhere, a python job wrote its files in the caller's directory while the
    commands after it read theirs beside the manifest (the trial's ETL)."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "extract.py").write_text("def main():\n    open('raw.txt', 'w').write('data\\n')\n")
    write(
        project,
        """
        version: 1
        jobs:
          - {name: extract, python: "extract:main"}
          - {name: iso, python: "extract:main", isolation: process, depends_on: [extract]}
          - {name: load, command: "cat raw.txt > loaded.txt", depends_on: [iso]}
        """,
    )
    out = jobvisor("run", str(project / "jobs.yaml"), "--log-file", "run.log", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert (project / "loaded.txt").read_text() == "data\n"
    assert not (elsewhere / "raw.txt").exists()
    assert (elsewhere / "run.log").exists(), "a path given on the command line is the caller's"


def test_a_process_isolated_python_job_has_its_own_cwd_and_env(tmp_path: Path) -> None:
    """cwd and env, as a command has them, for a python job in a child process; a thread shares
    jobvisor's directory and environment, so there they are refused with the way out."""
    project = tmp_path / "project"
    (project / "out").mkdir(parents=True)
    (project / "etl.py").write_text(
        "import os\n"
        "def main():\n"
        "    text = os.getcwd() + ' ' + os.environ['ETL_MODE'] + '\\n'\n"
        "    open('where.txt', 'w').write(text)\n"
    )
    write(
        project,
        """
        version: 1
        defaults: {cwd: out}
        jobs:
          - {name: etl, python: "etl:main", isolation: process, cwd: out, env: {ETL_MODE: full}}
          - {name: inline, python: "etl:main", isolation: thread}
          - {name: cmd, command: "pwd > pwd.txt"}
        """,
    )
    out = jobvisor("run", str(project / "jobs.yaml"), "--log-level", "none", cwd=tmp_path)
    # inline: defaults' cwd is for commands only; ETL_MODE is not in its environment
    assert out.returncode == 1, out.stderr
    assert (project / "out" / "where.txt").read_text() == f"{project / 'out'} full\n"
    assert (project / "out" / "pwd.txt").read_text() == f"{project / 'out'}\n"
    assert not (project / "where.txt").exists()
    write(
        project,
        """
        version: 1
        jobs:
          - {name: a, python: "etl:main", cwd: out}
          - {name: b, python: "etl:main", env: {ETL_MODE: full}}
        """,
    )
    bad = jobvisor("validate", str(project / "jobs.yaml"), cwd=tmp_path)
    assert bad.returncode == 2
    for line, key in ((4, "cwd"), (5, "env")):
        assert (
            f"jobs.yaml:{line}: jobs[{line - 4}].{key}: expected {key} on a python job only with "
            "isolation: process (a thread shares jobvisor's own working directory and "
            "environment), got it on a python job in a thread"
        ) in bad.stderr, bad.stderr


def test_history_and_resume(tmp_path: Path) -> None:
    write(
        tmp_path,
        "version: 1\n"
        + FAST
        + """
jobs:
  - name: once
    command: [sh, -c, "echo once >> runs.txt"]
  - name: bad
    command: "exit 4"
""",
    )
    assert jobvisor("run", cwd=tmp_path).returncode == 1
    out = jobvisor("history", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "once  attempt 1 succeeded (0)" in out.stdout
    assert "bad  give_up" in out.stdout
    # A delay as a person reads one (it showed 0.0013354 with every digit of the float).
    restart = re.search(r"bad  restart \(delay=(\S+), number=1\)", out.stdout)
    assert restart is not None, out.stdout
    assert re.fullmatch(r"\d+(\.\d{1,3})?s", restart[1]), restart[0]
    rows = json.loads(jobvisor("history", "bad", "--json", "--limit", "1", cwd=tmp_path).stdout)
    assert [(r["path"], r["kind"]) for r in rows] == [("bad", "give_up")]
    # An attempt's row says when it started too (its "at" is its end).
    [attempt] = json.loads(jobvisor("history", "once", "--json", cwd=tmp_path).stdout)
    assert attempt["type"] == "attempt"
    assert 0 <= attempt["at"] - attempt["started_at"] < 30
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 1
    assert "skipped: once" in out.stderr
    assert (tmp_path / "runs.txt").read_text() == "once\n"
    assert jobvisor("history", "--limit", "0", cwd=tmp_path).returncode == 2
    # More than SQLite counts is every row (it was a traceback: OverflowError).
    every = jobvisor("history", "bad", "--json", "--limit", str(10**20), cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert json.loads(every.stdout) == json.loads(
        jobvisor("history", "bad", "--json", "--limit", "10000", cwd=tmp_path).stdout
    )
    # No such job (a typo): 4, as status and logs say it (it was 0, with an empty history).
    nosuch = "jobvisor: no child at path 'onec': check `status` for the paths this tree has"
    out = jobvisor("history", "onec", cwd=tmp_path)
    assert (out.returncode, out.stdout, one_line(out)) == (4, "", nosuch)
    out = jobvisor("history", "onec", "--json", cwd=tmp_path)
    assert (out.returncode, out.stdout, one_line(out)) == (4, "[]\n", nosuch)
    # A job the manifest has that has not run yet: said on stderr, with the jobs it has; 0.
    # One the manifest no longer has (removed, as by a reload) still has its history.
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: once, command: [true]}\n"
        "  - group: later\n    jobs: [{name: x, command: [true]}]\n"
    )
    for path in ("later", "later/x"):
        out = jobvisor("history", path, cwd=tmp_path)
        assert (out.returncode, out.stdout) == (0, ""), out.stderr
        assert one_line(out) == f"jobvisor: the journal has nothing of {path}; it has: bad, once"
        out = jobvisor("history", path, "--json", cwd=tmp_path)
        assert (out.returncode, out.stdout, out.stderr) == (0, "[]\n", "")
    out = jobvisor("history", "bad", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert "bad  give_up" in out.stdout
    # supervisorctl's spelling gets status's hint.
    out = jobvisor("history", "later:x", cwd=tmp_path)
    assert out.returncode == 4
    assert "later/x" in one_line(out), out.stderr
    # No tree to look in (no daemon, no manifest): a job not run yet is not called a typo.
    (tmp_path / "jobs.yaml").unlink()
    out = jobvisor("history", "later", cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, ""), out.stderr
    assert one_line(out) == "jobvisor: the journal has nothing of later; it has: bad, once"


def test_resume_shows_the_skipped_jobs_as_succeeded_before(tmp_path: Path) -> None:
    """``run --resume`` left the jobs it skipped out of the table and the status document,
    and a group it emptied showed as if its jobs had never been. They are there now, as
    they ended: succeeded, with their journaled exit, not started again and not notified
    again; a job waiting on one starts at once, and with every finite job done the run
    ends (the service it started is stopped), as a first run whose jobs were quick would."""
    heard = tmp_path / "heard.txt"
    write(
        tmp_path,
        f"""
        version: 1
        notify:
          - on: [succeeded]
            command: [sh, -c, "cat >> {heard}; echo >> {heard}"]
        jobs:
          - {{name: a, command: [sh, -c, "echo a >> runs.txt"]}}
          - {{name: b, command: [sh, -c, "echo b >> runs.txt"], depends_on: [a]}}
          - group: g
            jobs:
              - {{name: x, command: [sh, -c, "echo x >> runs.txt"]}}
          - {{name: svc, service: true, command: [sleep, "3600"]}}
        """,
    )
    first = jobvisor("run", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {n["path"]: n for n in flatten_status(json.loads(first.stdout))}
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(manifest.read_text().replace("echo b", "echo b2"))
    out = jobvisor("run", "--resume", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "skipped: a, g/x" in out.stderr
    runs = (tmp_path / "runs.txt").read_text().split()
    assert (sorted(runs[:3]), runs[3:]) == (["a", "b", "x"], ["b2"]), "only b ran again"
    nodes = {n["path"]: n for n in flatten_status(json.loads(out.stdout))}
    assert list(nodes) == ["a", "b", "g", "g/x", "svc"]
    for path in ("a", "g/x"):
        node = nodes[path]
        counts = (node["state"], node["starts"], node["restarts"], node["failures"])
        assert counts == ("succeeded", 0, 0, 0), node
        last, then = node["last_exit"], before[path]["last_exit"]
        assert (last["outcome"], last["code"], last["error"]) == ("succeeded", 0, None)
        assert abs(last["at"] - then["at"]) < 0.5, "the exit of the run that had it"
        assert node["next_start_at"] is None
    assert (nodes["b"]["state"], nodes["b"]["starts"]) == ("succeeded", 1)
    # The group looks as it did at the end of the first run, its job in it.
    assert nodes["g"]["state"] == before["g"]["state"]
    assert [c["path"] for c in nodes["g"]["children"]] == ["g/x"]
    told = [json.loads(line)["path"] for line in heard.read_text().split("\n") if line]
    assert sorted(told) == ["a", "b", "b", "g/x"], "a success is told in the run that had it"
    # Nothing finite left to run: the run ends at once, the table saying what was skipped.
    jv = Jobvisor(tmp_path, "run", "--resume")
    try:
        try:
            code = jv.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run --resume waited for a signal: exit {jv.terminate()}")
    finally:
        jv.close()
    assert code == 0, jv.stderr
    assert "skipped: a, b, g/x" in jv.stderr
    rows = {line.split()[0]: line.split()[1:] for line in jv.stdout.splitlines()[1:]}
    for path in ("a", "b", "g/x"):
        assert rows[path][:5] == ["command", "succeeded", "0", "0", "0"], jv.stdout
        assert rows[path][5:] == ["succeeded", "(0)"], jv.stdout
    assert rows["svc"][:3] == ["command", "stopped", "1"], jv.stdout


def test_a_once_http_job_failing_behind_a_breaker_ends_told_and_counted(tmp_path: Path) -> None:
    """A once http job behind a breaker, its server answering 500, ran for ever: the trial
    calls' errors unlogged, FAILURES 1 in the status against every attempt in history. It
    gives up as its intensity says, each failure an error line, status and history agreeing."""
    with HttpKit(default=Reply(500)) as kit:
        write(
            tmp_path,
            f"""
            version: 1
            supervisor:
              backoff: {{initial: 1ms, max: 5ms}}
              intensity: {{max_restarts: 1, within: 60s}}
            breakers:
              api: {{failure_threshold: 1, reset_timeout: 200ms}}
            jobs:
              - name: call
                http: {{url: "{kit.url}/x"}}
                breaker: api
            """,
        )
        out = jobvisor("run", "--json", cwd=tmp_path, timeout=30)
        assert kit.count == 3, "the call that opened it, then two trials"
    assert out.returncode == 1, out.stderr
    (node,) = json.loads(out.stdout)["children"]
    counts = (node["state"], node["starts"], node["restarts"], node["failures"])
    assert counts == ("gave_up", 2, 1, 3)
    failed = [
        re.search(r"\battempt=(\d+)\]", line)
        for line in out.stderr.splitlines()
        if " ERROR " in line and "call: failed" in line and "status 500" in line
    ]
    assert [m[1] for m in failed if m] == ["1", "2", "3"], out.stderr
    rows = json.loads(jobvisor("history", "call", "--json", cwd=tmp_path).stdout)
    attempts = [r for r in rows if r["type"] == "attempt"]
    assert [(r["attempt"], r["outcome"]) for r in attempts] == [(n, "failed") for n in (1, 2, 3)]
    assert len(attempts) == node["failures"]


@pytest.mark.parametrize(("runtime", "loaded"), [("threads", "False"), ("gevent", "True")])
def test_gevent_is_loaded_only_by_the_runtime_that_needs_it(
    tmp_path: Path, runtime: str, loaded: str
) -> None:
    """logbook probes for gevent when imported; under threads that would cost ~6 MiB for nothing."""
    write(
        tmp_path,
        "import sys\nfrom pathlib import Path\n\n"
        "def main():\n    Path('loaded.txt').write_text(str('gevent' in sys.modules))\n",
        "probe.py",
    )
    write(tmp_path, 'version: 1\njobs:\n  - name: probe\n    python: "probe:main"\n')
    out = jobvisor("--runtime", runtime, "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "loaded.txt").read_text() == loaded


# -- control commands: light, and one clear line when the daemon cannot be reached -------------

HEAVY = frozenset({"pykka", "gevent", "logbook", "requests", "yaml"})


# Loaded by site at the start of every process that has its folder on PYTHONPATH: it writes the
# modules the process holds at its exit, whatever the command imported and by which path.
MODULES_HOOK = """import atexit, os, sys

def _dump():
    with open(os.environ["JV_MODULES_OUT"], "w") as out:
        out.write("\\n".join(sorted(sys.modules)))

atexit.register(_dump)
"""


def imports_of(
    *args: str, cwd: Path, full: bool = False
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``jobvisor ARGS``; return it and the top-level packages it held when it exited
    (with ``full``, every module and package by its full name)."""
    hook = cwd / "modules-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(MODULES_HOOK)
    listing = hook / "modules.txt"
    listing.unlink(missing_ok=True)
    out = jobvisor(
        *args,
        cwd=cwd,
        env={"PYTHONPATH": os.pathsep.join((str(hook), str(ROOT))), "JV_MODULES_OUT": str(listing)},
    )
    modules = set(listing.read_text().split())
    assert "json" in modules, "the hook saw no modules"
    packages = {name.split(".")[0] for name in modules}
    return out, (modules | packages) if full else packages


def test_control_commands_import_only_what_talks_to_the_socket_or_the_journal(
    tmp_path: Path,
) -> None:
    running = start_daemon(tmp_path, DAEMON)
    try:
        for verb in (
            ["status"],
            ["status", "--json"],
            ["restart", "svc"],
            ["restart", "svc", "--json"],
            ["signal", "CONT", "svc"],
            ["stop", "svc"],
            ["start", "svc"],
            ["reload"],
            ["reload", "--json"],
            ["history"],
            ["history", "tick", "--json"],
        ):
            out, names = imports_of(*verb, cwd=tmp_path)
            assert out.returncode == 0, (verb, out.stderr[-2000:])
            assert not names & HEAVY, f"jobvisor {' '.join(verb)} imported {names & HEAVY}"
        assert "svc" in running.nodes()
    finally:
        assert stop_daemon(running) == 0
    out, names = imports_of("status", cwd=tmp_path)
    assert out.returncode == 3
    assert not names & HEAVY


def test_a_declared_state_dir_is_found_with_yaml_only_then(tmp_path: Path) -> None:
    running = start_daemon(tmp_path, DAEMON + "state_dir: elsewhere\n")
    try:
        assert (tmp_path / "elsewhere" / "control.sock").exists()
        out, names = imports_of("status", cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "svc" in out.stdout
        assert not names & (HEAVY - {"yaml"})
    finally:
        assert stop_daemon(running) == 0


def test_validate_loads_no_runtime_machinery(tmp_path: Path) -> None:
    jobs = (
        '[{name: a, command: [sh, -c, "true"]}, {name: c, python: "math:sqrt", args: [4]},'
        " {name: h, http: {url: 'http://127.0.0.1:9/'}},"
        " {name: s, command: [sleep, '9'], service: true, ready: {http: 'http://127.0.0.1:9/'}}]"
    )
    write(tmp_path, f"version: 1\njobs: {jobs}\n")
    for args in (
        ["validate"],
        ["validate", "--explain"],
        ["validate", "--json"],
        ["validate", "--explain", "--json"],
    ):
        out, names = imports_of(*args, cwd=tmp_path, full=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "yaml" in names
        assert not {"gevent", "requests", "urllib3"} & names, {
            "gevent",
            "requests",
            "urllib3",
        } & names
        running = {f"supervision.{m}" for m in ("_tree", "_supervisor", "_daemon", "_app")}
        assert not running & names, running & names
        # pykka and logbook still follow the Schedule type, which lives in actors/_job.py.


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_an_unusable_socket_path_is_one_line_and_exit_3(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    long_dir = tmp_path / ("d" * 120)
    cases = [(afile / "x", "not a directory"), (long_dir, "too long")]
    for state_dir, reason in cases:
        for verb in (["status"], ["restart", "svc"], ["reload"]):
            out = jobvisor("--state-dir", str(state_dir), *verb, cwd=tmp_path)
            assert out.returncode == 3, out.stderr
            line = one_line(out)
            assert str(state_dir / "control.sock") in line
            assert reason in line.lower()


def test_a_daemon_of_another_user_is_one_line_and_exit_3(tmp_path: Path) -> None:
    if (why := why_not_as_nobody()) is not None:
        pytest.skip(why)
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    running = start_daemon(tmp_path, DAEMON)
    try:
        nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
        out = jobvisor("--state-dir", str(running.state), "status", cwd=ROOT, prefix=nobody)
        assert out.returncode == 3, out.stderr
        line = one_line(out)
        assert str(running.state / "control.sock") in line
        assert "permission denied" in line.lower()
    finally:
        assert stop_daemon(running) == 0


def test_a_daemon_stays_reachable_while_its_manifest_is_mid_edit(tmp_path: Path) -> None:
    env = {"JV_TEST_STATE": "elsewhere"}
    running = start_daemon(tmp_path, DAEMON + "state_dir: ${JV_TEST_STATE}\n", env_extra=env)
    try:
        assert (tmp_path / "elsewhere" / "control.sock").exists()
        out = jobvisor("status", cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        assert "svc" in out.stdout
        # Without the variable the command cannot know where to look: it says so.
        unset = {k: v for k, v in os.environ.items() if k != "JV_TEST_STATE"}
        out = subprocess.run(
            [*CLI, "status"],
            cwd=tmp_path,
            env={**unset, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 2, out.stderr
        assert "JV_TEST_STATE is not set" in one_line(out)
        # A YAML error while the file is being edited: the daemon is still found.
        with (tmp_path / "jobs.yaml").open("a") as file:
            file.write("  - name: half\n    command: [sh, -c\n")
        for verb in (["status"], ["history", "svc"]):
            out = jobvisor(*verb, cwd=tmp_path, env=env)
            assert out.returncode == 0, (verb, out.stderr)
        out = jobvisor("reload", cwd=tmp_path, env=env)
        assert out.returncode == 2, out.stderr  # the daemon's verdict on the manifest
        assert "no daemon" not in out.stderr
    finally:
        assert stop_daemon(running) == 0


def test_a_control_command_without_a_manifest_says_so_and_exits_2(tmp_path: Path) -> None:
    gone = tmp_path / "nowhere" / "jobs.yaml"
    for verb in (["status"], ["reload"], ["stop", "svc"], ["history"], ["logs", "svc"], ["top"]):
        out = jobvisor(*verb, "--manifest", str(gone), cwd=tmp_path)
        assert out.returncode == 2, (verb, out.stderr)
        assert f"no manifest at {gone}" in one_line(out)
        out = jobvisor(*verb, cwd=tmp_path)  # ./jobs.yaml, not there
        assert out.returncode == 2, (verb, out.stderr)
        assert "no manifest at jobs.yaml" in one_line(out)


@pytest.mark.parametrize(
    "args",
    [("run",), ("run", "--json"), ("validate", "--explain"), ("validate",), ("schema",)],
    ids=" ".join,
)
def test_a_stdout_that_cannot_be_written_is_one_line_and_exit_1(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    write(tmp_path, 'version: 1\njobs:\n  - name: a\n    command: ["true"]\n')
    with open("/dev/full", "w") as full:  # noqa: PTH123
        out = subprocess.run(
            [*CLI, *args],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert out.returncode == 1, out.stderr
    assert "jobvisor: cannot write to stdout: No space left on device\n" in out.stderr
    assert "Traceback" not in out.stderr
    assert "Exception ignored" not in out.stderr


@pytest.mark.parametrize(
    ("manifest", "args", "code"),
    [
        ('version: 1\njobs:\n  - name: a\n    command: ["true"]\n', ("run",), 0),
        ('version: 1\njobs:\n  - name: a\n    command: ["false"]\n', ("run",), 1),
        ("version: 1\njobs: [", ("run",), 2),
        ("version: 1\njobs: [", ("validate",), 2),
        ("version: 1\njobs: []\n", ("history", "--since", "bogus"), 2),
    ],
    ids=["run ok", "run fails", "run bad manifest", "validate bad manifest", "bad argument"],
)
def test_a_stderr_that_cannot_be_written_leaves_the_exit_code_the_commands(
    tmp_path: Path, manifest: str, args: tuple[str, ...], code: int
) -> None:
    # A cron line's `2>>/var/log/etl.err` on a full disk: every command exited 120, the
    # interpreter's code for an error it could not print (h243).
    write(tmp_path, manifest)
    with open("/dev/full", "w") as full:  # noqa: PTH123
        out = subprocess.run(
            [*CLI, *args],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=full,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert out.returncode == code


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_manifest_that_is_not_a_regular_file_is_said_so_and_never_read(
    tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        path = tmp_path / "jobs.yaml"
        os.mkfifo(path)
        said = f"{path} is not a regular file (a FIFO)"
    else:
        path = Path("/dev/zero")
        said = "/dev/zero is not a regular file (a character device)"
    for verb in ("validate", "run"):
        out = jobvisor(verb, str(path), cwd=tmp_path, timeout=30)
        assert out.returncode == 2, out.stderr
        assert said in out.stderr
    # A control command finds the state dir beside it, without reading it (a FIFO would block).
    out = jobvisor("status", "--manifest", str(path), cwd=tmp_path, timeout=30)
    assert out.returncode in (2, 3), out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_the_watched_stdout_keeps_python_unbuffered(unbuffered: str) -> None:
    """The unit sets PYTHONUNBUFFERED: what a daemon's python job prints must leave at once.
    The stdout the CLI wraps (to tell its write errors apart) had dropped write_through."""
    code = "import sys, cli; cli._watch_stdout(); sys.stderr.write(str(sys.stdout.write_through))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.stderr == str(bool(unbuffered)), done.stderr


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_thread_jobs_stderr_line_comes_before_the_verdict_through_a_pipe(
    tmp_path: Path, unbuffered: str
) -> None:
    """`run x.yaml 2>&1 | cat`: a thread python job's `print(..., file=sys.stderr)` came out
    after the verdict, as fd 2 was wrapped in a BufferedWriter (write_through on the text
    layer still left it in the bytes buffer). Stderr is written through as CPython's own is:
    each line, and with PYTHONUNBUFFERED each write, leaves at once; stdout too under
    PYTHONUNBUFFERED. A line's start waits for its end or a flush (a secret in it is masked
    whole): a flushed print without its newline leaves at once."""
    (tmp_path / "talk.py").write_text(
        "import sys\n"
        "def main():\n"
        "    print('the job says on stderr', file=sys.stderr)\n"
        "    print('no newline', end='', file=sys.stderr, flush=True)\n"
        "    print('the job says on stdout')\n"
        "    raise SystemExit(3)\n"
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: p, python: "talk:main", restart: temporary}
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}
    with subprocess.Popen(
        [*CLI, "run"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    # By place in the output, not by whole lines: a print is two writes (its text, then its
    # end), and a log record of another thread may come between them (CI saw "the job says
    # on stderr" run on into the tree's line of p's start).
    verdict = out.index("jobvisor: failed or gave up: p")
    said = out.index("the job says on stderr")
    assert said < verdict, out
    # The log's line of p's end comes after what p wrote before it ended.
    ended = out.index("p: failed (attempt 1)")
    assert said < ended, out
    if unbuffered:
        # Each write as it came: stderr's unfinished line, then stdout's print (one fd here).
        assert said < out.index("no newline") < out.index("the job says on stdout") < ended, out
        assert "no newline\n" not in out, out  # nothing ended the unfinished line


@pytest.mark.parametrize("http", [False, True])
def test_a_control_command_on_a_state_dir_a_run_holds_says_a_run_has_no_socket(
    tmp_path: Path, http: bool
) -> None:
    """`status --manifest M` while a `run` of M held its state dir said that a daemon started
    before an edit of state_dir uses another: the run was not named. It is now, with what
    has a control socket (a daemon) or an HTTP API (`run --http`, whose address it names)."""
    write(
        tmp_path,
        """
        version: 1
        state_dir: .jv
        jobs:
          - {name: wait, command: "touch began; while [ ! -e go ]; do sleep 0.02; done"}
        """,
    )
    flags = ["--http", "127.0.0.1:0"] if http else []
    jv = Jobvisor(tmp_path, "run", *flags)
    try:
        wait_until((tmp_path / "began").exists, "the job began", proc=jv.proc)
        if http:
            address = tmp_path / ".jv" / "http.json"
            text = wait_until(lambda: address.exists() and address.read_text(), "http.json")
            url = json.loads(text)["url"]
        for args in (("status", "--manifest", "jobs.yaml"), ("stop", "wait", "--state-dir", ".jv")):
            out = jobvisor(*args, cwd=tmp_path)
            assert out.returncode == 3, out.stderr
            said = out.stderr
            assert f"a `jobvisor run` (pid {jv.pid}) holds this state dir" in said, said
            assert "a run has no control socket" in said, said
            assert "a daemon started before that edit" not in said, said
            if http:
                assert f"its HTTP API is at {url} (try {url}api/status)" in said, said
            else:
                assert "`run --http HOST:PORT` serves its status and actions over HTTP" in said
            assert "`jobvisor daemon`" in said, said
        (tmp_path / "go").touch()
        assert jv.wait(60) == 0, jv.stderr
    finally:
        jv.close()
    # Once the run ended, its lock file's pid is no one's: no word of it.
    out = jobvisor("status", "--manifest", "jobs.yaml", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert "jobvisor run" not in out.stderr, out.stderr


_HOLDER = (
    "import fcntl, sys\n"
    "f = open(sys.argv[1], 'r+')\n"
    "if sys.argv[2] == 'hold': fcntl.flock(f, fcntl.LOCK_EX)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextlib.contextmanager
def _lock_owner(state: Path, hold: bool) -> Iterator[int]:
    """A live process whose argv has the word `run` (as `npm run` has), named in the state
    dir's lock file as `PID run`; holding the lock (an flock) if ``hold``."""
    lock = state / "daemon.lock"
    lock.touch()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock), "hold" if hold else "no", "run"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        lock.write_text(f"{proc.pid} run\n")
        yield proc.pid
    finally:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


def _http_json(state: Path, url: str, *, stale: bool = False) -> Path:
    address = state / "http.json"
    address.write_text(json.dumps({"url": url}))
    if stale:  # left by an earlier run, before this one wrote the lock file
        before = (state / "daemon.lock").stat().st_mtime - 10
        os.utime(address, (before, before))
    return address


def test_the_run_hint_needs_the_lock_held_and_a_current_http_json(tmp_path: Path) -> None:
    """The hint trusted a lock file's `PID run` whose run had ended (a recycled pid with a
    word `run`: npm run, docker run), and an http.json a SIGKILLed `run --http` left."""
    from supervision._client import held_by_run

    with _lock_owner(tmp_path, hold=False):
        assert held_by_run(str(tmp_path)) == ""
    with _lock_owner(tmp_path, hold=True) as pid:
        said = held_by_run(str(tmp_path))
        assert f"a `jobvisor run` (pid {pid}) holds this state dir" in said, said
        _http_json(tmp_path, "http://127.0.0.1:9/", stale=True)
        assert "HTTP API is at" not in held_by_run(str(tmp_path))
        _http_json(tmp_path, "http://127.0.0.1:9/")
        assert "its HTTP API is at http://127.0.0.1:9/ " in held_by_run(str(tmp_path))


def test_the_run_hint_reads_only_our_own_files_and_prints_no_escape(tmp_path: Path) -> None:
    """The hint printed the text of a state dir's files raw (an ESC to stderr), whoever
    owned them."""
    from supervision._client import held_by_run

    with _lock_owner(tmp_path, hold=True) as pid:
        for url in ("http://127.0.0.1:9/\x1b]0;owned\x07", "file:///etc/passwd", "http://a b/"):
            _http_json(tmp_path, url)
            said = held_by_run(str(tmp_path))
            assert f"(pid {pid})" in said, said
            assert "HTTP API is at" not in said, said
        if os.geteuid() != 0:  # the rest's skip said, not a silent pass
            pytest.skip("giving a file to another user takes root")
        address = _http_json(tmp_path, "http://127.0.0.1:9/")
        os.chown(address, 4242, 4242)
        assert "HTTP API is at" not in held_by_run(str(tmp_path))
        os.chown(tmp_path / "daemon.lock", 4242, 4242)
        assert held_by_run(str(tmp_path)) == ""


WAITS_FOR_GO = "while [ ! -e go ]; do sleep 0.02; done"
TALKER = """\
import os, sys, time


def main():
    while not os.path.exists("go"):
        time.sleep(0.02)
    print("a print to stdout", flush=True)
    sys.stderr.write("a print to stderr\\n")
    sys.stderr.flush()
"""


@pytest.mark.parametrize("code", [1, 0])
@pytest.mark.parametrize("how", ["both", "stderr", "stdout", "json"])
def test_a_reader_gone_mid_run_never_changes_its_verdict(
    tmp_path: Path, how: str, code: int, runtime: str
) -> None:
    """`run 2>&1 | head -1` exited 0 though a job had given up: the last stderr line met the
    closed pipe, and its BrokenPipeError became exit 0. A python job's print there failed it.

    The reader goes away after the first line (stdout alone: before any), and only then do
    the jobs end, so every later write meets a closed pipe.
    """
    (tmp_path / "talker.py").write_text(TALKER)
    write(
        tmp_path,
        f"""
        version: 1
        supervisor: {{intensity: {{max_restarts: 0}}}}
        jobs:
          - {{name: x, command: "{WAITS_FOR_GO}; exit {code}"}}
          - {{name: p, python: "talker:main"}}
        """,
    )
    read, write_end = os.pipe()
    flags = ["--json"] if how == "json" else []
    proc = subprocess.Popen(
        [*CLI, "--runtime", runtime, "run", *flags],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if how == "stderr" else write_end,
        stderr=subprocess.DEVNULL if how == "stdout" else write_end,
    )
    os.close(write_end)
    try:
        if how != "stdout":
            with os.fdopen(read, "rb", closefd=False) as reader:
                assert b"started" in reader.readline()  # the first log line: then away
        os.close(read)
        (tmp_path / "go").touch()
        assert proc.wait(timeout=60) == code, how
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    history = jobvisor("history", "p", cwd=tmp_path)
    assert "attempt 1 succeeded" in history.stdout, history.stdout
    assert "failed" not in history.stdout, history.stdout


def test_a_first_signal_is_said_and_what_it_left_unfinished_is_named(
    tmp_path: Path, runtime: str
) -> None:
    """The first SIGTERM was silent: no log line, no last line. SPEC §4's exit 0 stays."""
    write(
        tmp_path,
        """
        version: 1
        supervisor:
          backoff: {initial: 60s, max: 60s}
          intensity: {max_restarts: 3}
        jobs:
          - {name: slow, command: "touch started; sleep 60"}
          - {name: later, command: "true", depends_on: [slow]}
          - {name: flaky, command: "exit 1"}
          - {name: done, command: "true"}
          - {name: web, service: true, command: "sleep 60"}
        """,
    )
    errfile = tmp_path / "stderr.log"
    with errfile.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "--runtime", runtime, "run", "--json"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            wait_until((tmp_path / "started").exists, "slow started", proc=proc)
            wait_until(lambda: "flaky: restart 1 in" in errfile.read_text(), "a backoff", proc=proc)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = errfile.read_text()
    assert proc.returncode == 0, text
    assert re.search(
        r" WARNING +supervision\.app: run: SIGTERM: stopping every job "
        r"\(a second signal kills what still runs\)$",
        text,
        re.MULTILINE,
    ), text
    assert text.rstrip().splitlines()[-1] == (
        "jobvisor: stopped by SIGTERM before every job finished (exit 0); "
        "not finished: running: slow; not started: later; waiting: flaky"
    ), text
    states = {node["path"]: node["state"] for node in flatten_status(json.loads(out))}
    assert states == {
        "slow": "stopped",
        "later": "stopped",
        "flaky": "stopped",
        "done": "succeeded",
        "web": "stopped",
    }


def test_jobs_a_batch_run_never_settles_are_warned_of_by_name(tmp_path: Path) -> None:
    """A once job under a cooldown without max_cycles, or with restart: permanent, kept run
    going for ever (or gave up with 0 failures), unwarned."""
    write(
        tmp_path,
        """
        version: 1
        supervisor: {intensity: {max_restarts: 0}}
        jobs:
          - {name: again, command: "true", restart: permanent}
          - group: g
            on_exhausted: cooldown
            jobs:
              - {name: flaky, command: "exit 1"}
              - {name: web, service: true, command: "sleep 1"}
              - {name: once, command: "true", restart: temporary}
          - group: h
            on_exhausted: cooldown
            cooldown: {max_cycles: 3}
            jobs: [{name: capped, command: "exit 1"}]
        """,
    )
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, out.stderr
    assert warnings[0].startswith(
        "warning: jobs.yaml:5: jobs[0].restart: again is a once job with restart: permanent, "
        "so it is restarted after it succeeds too and never settles"
    ), warnings[0]
    assert "write restart: transient" in warnings[0]
    assert warnings[1].startswith(
        "warning: jobs.yaml:7: jobs[1].on_exhausted: on_exhausted: cooldown without "
        "cooldown.max_cycles: the finite job flaky never settles while it keeps failing"
    ), warnings[1]
    assert "set cooldown: {max_cycles: N} in group g" in warnings[1]

    # run says so at its start too, and (permanent, intensity 0) gives up on it with exit 1.
    write(tmp_path, "version: 1\njobs:\n  - {name: again, command: 'true', restart: permanent}\n")
    out = jobvisor("run", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith("warning: jobs.yaml:3: jobs[0].restart: again is a once job")


def test_a_value_that_lands_in_a_shell_string_as_shell_text_is_warned_of(
    tmp_path: Path,
) -> None:
    """`command: "tool --key=${secret:K}"` ran the secret's `; echo INJECTED` as shell, and its
    pieces reached the log unmasked, unwarned. The substitution itself is unchanged."""
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: a, command: "echo key=${secret:API_KEY}"}
          - {name: b, command: "echo ${MSG}"}
          - {name: c, command: "echo '${MSG}' \\"${PLAIN}\\" ${PLAIN}"}
          - {name: d, command: "echo \\"${QUOTED}\\""}
          - {name: e, command: [echo, "${MSG}"]}
          - {name: f, command: 'echo "$API_KEY"', env: {API_KEY: "${secret:API_KEY}"}}
          - {name: g, command: [bash, -o, pipefail, -ec, "echo ${MSG}", "${MSG}"]}
          - {name: h, command: [sh, script.sh, "${MSG}"]}
        """,
    )
    env = {
        "API_KEY": "abc; echo INJECTED-$((6*7)) #",
        "MSG": "hi; echo X",
        "PLAIN": "/usr/local/bin",
        "QUOTED": 'say "hi"',
    }
    out = jobvisor("validate", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ")[2] for w in warnings] == [
        "jobs[0].command",
        "jobs[1].command",
        "jobs[3].command",
        "jobs[6].command[4]",  # an sh -c script is a shell string too; its arguments are not
    ], out.stderr
    assert "in a shell command string its value also becomes shell text" in warnings[0]
    assert 'pass it in env: (env: {KEY: "${secret:KEY}"}) and write "$KEY"' in warnings[0]
    assert "the value of ${MSG} holds characters a shell reads as its own" in warnings[1]
    assert 'write "$MSG" in the command instead' in warnings[1]
    assert "${QUOTED}" in warnings[2]
    assert "INJECTED" not in out.stderr
    assert "hi; echo" not in out.stderr


def test_a_thread_jobs_print_of_a_secret_is_masked(tmp_path: Path, runtime: str) -> None:
    """A python job in a thread printed its secret in clear on jobvisor's stdout (and under
    --json on its stderr), where a child process's print, read as its output, was masked."""
    (tmp_path / "talk.py").write_text(
        "import sys\n"
        "def main(token):\n"
        "    print('using', token)\n"
        "    print(f'token={token};')\n"
        "    sys.stderr.write(f'err {token}\\n')\n"
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: p, python: "talk:main", kwargs: {token: {secret: {env: TALK_TOKEN}}}}
        """,
    )
    secret = "s3cret-talk-4242"
    for verb in (["run"], ["run", "--json"]):
        out = jobvisor("--runtime", runtime, *verb, cwd=tmp_path, env={"TALK_TOKEN": secret})
        assert out.returncode == 0, out.stderr
        both = out.stdout + out.stderr
        assert secret not in both, verb
        assert "using ***" in both, verb
        assert "token=***;" in both, verb
        assert "err ***" in both, verb


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_a_thread_jobs_secret_written_in_parts_of_a_line_is_masked(
    tmp_path: Path, unbuffered: str
) -> None:
    """A thread job's secret written in two writes of one line showed in clear on stdout and
    stderr: each write was masked alone. A line's start waits for its end (a print is several
    writes too), and what no end came for is written, masked, at the exit."""
    (tmp_path / "parts.py").write_text(
        "import sys\n"
        "def main(token):\n"
        "    for stream in (sys.stdout, sys.stderr):\n"
        "        stream.write('pre ' + token[:5])\n"
        "        stream.write(token[5:] + ' post\\n')\n"
        "        print('mid', token[:7], end='', file=stream)\n"
        "        print(token[7:], file=stream)\n"
        "        stream.writelines(['list ', token[:9], token[9:], '\\n'])\n"
        "        stream.write('last ' + token[:4])\n"
        "        stream.write(token[4:])\n"  # never ended: the exit's flush writes it
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: p, python: "parts:main", kwargs: {token: {secret: {env: PARTS_TOKEN}}}}
        """,
    )
    secret = "hunter2-verysecret-XYZ"
    env = {"PARTS_TOKEN": secret, "PYTHONUNBUFFERED": unbuffered}
    out = jobvisor("run", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    for said in (out.stdout, out.stderr):
        assert secret[:5] not in said, said
        assert secret[5:] not in said, said
        for line in ("pre *** post\n", "mid ***\n", "list ***\n"):
            assert line in said, said
        assert "last ***" in said, said  # on stdout the table runs on after it, as ever


def test_a_thread_jobs_flushed_line_start_shows_at_once(tmp_path: Path) -> None:
    """A line's start waits for its end, so that a secret in it is masked whole: a flush
    (``print(..., end='', flush=True)``, a progress bar's) still shows it at once."""
    (tmp_path / "bar.py").write_text(
        "import os, sys, time\n"
        "def main():\n"
        "    print('progress 50%', end='', flush=True)\n"
        "    print('progress 50%', end='', flush=True, file=sys.stderr)\n"
        "    deadline = time.monotonic() + 30\n"
        "    while not os.path.exists('seen') and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
        "    print(' done')\n"
    )
    write(
        tmp_path,
        """
        version: 1
        jobs:
          - {name: bar, python: "bar:main"}
          - {name: uses, command: "true", env: {TOKEN: {secret: {env: BAR_TOKEN}}}}
        """,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BAR_TOKEN": "s3cret-bar-4242"}
    with (tmp_path / "out").open("w") as out, (tmp_path / "err").open("w") as err:
        proc = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        wait_until(
            lambda: (
                "progress 50%" in (tmp_path / "out").read_text()
                and "progress 50%" in (tmp_path / "err").read_text()
            ),
            "the flushed line's start",
            proc=proc,
        )
        (tmp_path / "seen").touch()
        assert proc.wait(60) == 0, (tmp_path / "err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "progress 50% done\n" in (tmp_path / "out").read_text()


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_crash_loops_summary_comes_before_the_last_line_not_after_it(
    tmp_path: Path, command: str
) -> None:
    # Stopped while a loop's failures were held back, their summary was written as the log
    # closed: after run's verdict and after `daemon stopped`, which a CI step or a reader of
    # the log's end takes for the last word.
    (tmp_path / "jobs.yaml").write_text(
        textwrap.dedent("""
        version: 1
        supervisor:
          backoff: {initial: 10ms, max: 10ms}
          intensity: {max_restarts: 100000, within: 60s}
        jobs:
          - {name: crash, command: "exit 1", service: true}
          - {name: slow, command: "sleep 60"}
        """)
    )
    jv = Jobvisor(tmp_path, "--runtime", RUNTIME, command)  # the log on stderr, as the verdict
    try:
        wait_until(lambda: _attempts(tmp_path, "crash") >= 12, "a crash loop", proc=jv.proc)
        assert "more times" not in jv.stderr  # held back, to be summed up
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
    lines = jv.stderr.rstrip("\n").splitlines()
    summaries = [
        i for i, line in enumerate(lines) if "crash: failed " in line and " more times " in line
    ]
    assert summaries, jv.stderr
    if command == "daemon":
        assert "daemon stopped (exit 0)" in lines[-1], jv.stderr
    else:
        assert lines[-1].startswith("jobvisor: stopped by SIGTERM before every job finished"), (
            lines[-1]
        )
    assert summaries[-1] < len(lines) - 1


def _attempts(directory: Path, path: str) -> int:
    import sqlite3

    journal = directory / ".jobvisor" / "journal.sqlite3"
    if not journal.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT count(*) FROM attempts WHERE path = ?", (path,)).fetchone()
        except sqlite3.OperationalError:  # no table yet
            return 0
    return int(row[0])


@pytest.mark.parametrize(
    ("prefix", "policy"),
    [
        (("nice", "-n", "4"), os.SCHED_OTHER),
        (("nice", "-n", "-3"), os.SCHED_OTHER),
        # Not --idle: under a loaded CI a SCHED_IDLE jobvisor gets next to no CPU. The code
        # reads "not SCHED_OTHER", so BATCH stands for every other policy.
        (("chrt", "--batch", "0"), os.SCHED_BATCH),
    ],
)
def test_a_commands_process_runs_at_the_policy_and_nice_jobvisor_runs_at(
    tmp_path: Path, runtime: str, prefix: tuple[str, ...], policy: int
) -> None:
    """The thread watching a command waits at SCHED_BATCH (``actors._command``); the command
    itself starts at jobvisor's own policy and nice, as under supervisord or systemd, also
    when it restarts in place (at once, on the same thread)."""
    change = int(prefix[2]) if prefix[0] == "nice" else 0
    if change < 0 and os.geteuid() != 0:
        pytest.skip("a negative nice needs root")
    nice = max(-20, min(19, os.getpriority(os.PRIO_PROCESS, 0) + change))  # nice is relative
    (tmp_path / "marks").mkdir()
    (tmp_path / "shown.py").write_text(
        "import os, sys\n"
        "print('sched', os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))\n"
        "marks = len(os.listdir('marks'))\n"
        "if marks < 2:\n"
        "    open(f'marks/{marks}', 'w').close()\n"
        "    sys.exit(1)\n"
    )
    write(
        tmp_path,
        f"""
        version: 1
        supervisor:
          backoff: {{initial: 0, max: 0, jitter: 0}}
          intensity: {{max_restarts: 5, within: 60s}}
        jobs:
          - {{name: c, command: [{sys.executable}, shown.py]}}
        """,
    )
    out = jobvisor("--runtime", runtime, "run", cwd=tmp_path, prefix=prefix)
    assert out.returncode == 0, out.stderr
    for attempt in (1, 2, 3):
        assert f"c[{attempt}] sched {policy} {nice}" in out.stderr


ONE_JOB = 'version: 1\njobs:\n  - name: a\n    command: ["true"]\n'


def in_a_deleted_directory(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``jobvisor ARGS`` run from a working directory deleted under it (`cd x; rm -r ../x`)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    return subprocess.run(
        ["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone), *CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_a_deleted_working_directory_is_said_and_an_absolute_manifest_still_works(
    tmp_path: Path,
) -> None:
    manifest = str(write(tmp_path, ONE_JOB))
    for verb in (["status"], ["status", "--json"], ["history"], ["logs", "a"], ["top"]):
        out = in_a_deleted_directory(tmp_path, *verb)
        assert out.returncode == 2, (verb, out.stderr)
        assert "the working directory no longer exists" in one_line(out), verb
        assert out.stdout == "", verb
    for verb in (["validate"], ["run"], ["unit"]):
        out = in_a_deleted_directory(tmp_path, *verb)
        assert out.returncode == 2, (verb, out.stderr)
        assert "the working directory no longer exists" in one_line(out), verb
    out = in_a_deleted_directory(tmp_path, "validate", "--json")
    assert out.returncode == 2, out.stderr
    (error,) = json.loads(out.stdout)["errors"]
    assert "the working directory no longer exists" in error["message"]
    # An absolute path needs no working directory.
    for verb in (["validate"], ["validate", "--json"], ["unit"], ["run"]):
        out = in_a_deleted_directory(tmp_path, *verb, manifest)
        assert out.returncode == 0, (verb, out.stderr)
        assert "Traceback" not in out.stderr
    out = in_a_deleted_directory(tmp_path, "status", "--json", "--manifest", manifest)
    assert out.returncode == 3, out.stderr
    assert json.loads(out.stdout)["code"] == "no_daemon"


@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("args", [("--version",), ("--help",), ("run", "--help")], ids=" ".join)
def test_version_and_help_on_a_stdout_that_cannot_take_them(
    tmp_path: Path, args: tuple[str, ...], unbuffered: str
) -> None:
    """A full disk is said as for any command's output, exit 1; a reader gone is no error."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "w") as full:  # noqa: PTH123
        out = subprocess.run(
            [*CLI, *args],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    assert (out.returncode, out.stderr) == (
        1,
        "jobvisor: cannot write to stdout: No space left on device\n",
    )
    read, written = os.pipe()
    os.close(read)  # gone before a byte is written
    try:
        out = subprocess.run(
            [*CLI, *args],
            cwd=tmp_path,
            stdout=written,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    finally:
        os.close(written)
    assert (out.returncode, out.stderr) == (0, "")


@pytest.mark.parametrize("args", [(), ("--json",), ("-f",)], ids=lambda a: " ".join(a) or "plain")
def test_logs_on_a_stdout_that_cannot_be_written_is_one_line_and_exit_1(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    write(tmp_path, 'version: 1\njobs:\n  - name: svc\n    command: ["echo", "hello"]\n')
    assert jobvisor("run", cwd=tmp_path).returncode == 0
    with open("/dev/full", "w") as full:  # noqa: PTH123
        out = subprocess.run(
            [*CLI, "logs", "-n", "3", *args, "svc"],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
        )
    assert (out.returncode, out.stderr) == (
        1,
        "jobvisor: cannot write to stdout: No space left on device\n",
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("run", "--http", ""), "--http"),
        (("daemon", "--http", ""), "--http"),
        (("daemon", "--pidfile", ""), "--pidfile"),
        (("run", "--state-dir", ""), "--state-dir"),
        (("status", "--state-dir", ""), "--state-dir"),
        (("run", "--log-file", ""), "--log-file"),
        (("status", "--manifest", ""), "--manifest"),
        (("validate", ""), "manifest"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else "",
)
def test_an_empty_option_value_is_a_usage_error_naming_it(
    tmp_path: Path, args: tuple[str, ...], option: str
) -> None:
    """``--pidfile "$PIDFILE"`` with the variable unset: it ran with no pidfile, and said nothing."""
    write(tmp_path, ONE_JOB)
    out = jobvisor(*args, cwd=tmp_path, timeout=20)
    assert out.returncode == 2, out.stderr
    assert f"jobvisor: error: argument {option}: expected a value, got an empty string\n" in (
        out.stderr
    )
    assert not (tmp_path / ".jobvisor").exists()  # nothing was run


def test_logs_and_validate_escape_a_paths_control_characters(tmp_path: Path) -> None:
    write(tmp_path, ONE_JOB)
    red = "\x1b[31mred"
    for verb in (["logs", red], ["validate", f"{red}.yaml"], ["run", f"{red}.yaml"]):
        out = jobvisor(*verb, cwd=tmp_path)
        assert out.returncode in (2, 4), out.stderr
        assert "\\x1b[31mred" in one_line(out), verb
        assert "\x1b" not in out.stderr
    out = jobvisor("validate", "new\nline.yaml", cwd=tmp_path)
    assert "new\\x0aline.yaml" in one_line(out)
    # A manifest of that name: what is said of it (its errors, its OK) is escaped too.
    write(tmp_path, ONE_JOB, name=f"{red}.yaml")
    write(tmp_path, "version: 1\njobs: [{name: a}]\n", name=f"{red}-bad.yaml")
    for verb in (["validate", f"{red}.yaml"], ["validate", f"{red}-bad.yaml"]):
        out = jobvisor(*verb, cwd=tmp_path)
        assert "\\x1b[31mred" in out.stdout + out.stderr, verb
        assert "\x1b" not in out.stdout + out.stderr, verb
