"""The real `jobvisor` command in a real process: exit codes, output, signals, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]


def jobvisor(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [*CLI, *args],
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
        _wait_for_file(marker, proc)
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with errfile.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "run"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
        try:
            _wait_for(marker.exists, proc)
            proc.send_signal(signal.SIGTERM)
            _wait_for(lambda: "stubborn: stopping" in errfile.read_text(), proc)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, errfile.read_text()
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "killed" in out


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    _wait_for(path.exists, proc, timeout)


def _wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 20
) -> None:
    """Wait for another process to make ``condition`` true (files are its only signal to us)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"jobvisor exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


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


def test_history_and_resume(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\n" + FAST + """
jobs:
  - name: once
    command: [sh, -c, "echo once >> runs.txt"]
  - name: bad
    command: "exit 4"
""")
    assert jobvisor("run", cwd=tmp_path).returncode == 1
    out = jobvisor("history", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "once  attempt 1 succeeded (0)" in out.stdout
    assert "bad  give_up" in out.stdout
    rows = json.loads(jobvisor("history", "bad", "--json", "--limit", "1", cwd=tmp_path).stdout)
    assert [(r["path"], r["kind"]) for r in rows] == [("bad", "give_up")]
    out = jobvisor("run", "--resume", cwd=tmp_path)
    assert out.returncode == 1
    assert "skipped: once" in out.stderr
    assert (tmp_path / "runs.txt").read_text() == "once\n"
    assert jobvisor("history", "--limit", "0", cwd=tmp_path).returncode == 2


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
