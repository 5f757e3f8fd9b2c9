"""``--json`` where it applies (SPEC §4): a document on stdout, or one clear refusal and exit 2.

Every command accepts the flag; those it does not apply to refuse it instead of printing
text a script would try to parse. Real ``jobvisor`` processes throughout.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import RUNTIME
from faultkit import (
    CLI,
    DAEMON,
    ENV,
    Watched,
    read_pids,
    run_jobvisor,
    start_daemon,
    stop_daemon,
    wait_until,
)

SECRET = "hush-9f3a-value"


def jobvisor(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(cwd: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = cwd / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def document(out: subprocess.CompletedProcess[str]) -> Any:
    assert "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout)


# -- validate --json ------------------------------------------------------------------------------

ISSUE = {
    "type": "object",
    "required": ["where", "file", "line", "column", "message"],
    "additionalProperties": False,
    "properties": {
        "where": {"type": ["string", "null"]},
        "file": {"type": ["string", "null"]},
        "line": {"type": ["integer", "null"], "minimum": 1},
        "column": {"type": ["integer", "null"], "minimum": 1},
        "message": {"type": "string", "minLength": 1},
    },
}
VALIDATED = jsonschema.Draft202012Validator(
    {
        "type": "object",
        "required": ["ok", "manifest", "errors", "warnings", "children", "jobs"],
        "additionalProperties": False,
        "properties": {
            "ok": {"type": "boolean"},
            "manifest": {"type": "string"},
            "errors": {"type": "array", "items": ISSUE},
            "warnings": {"type": "array", "items": ISSUE},
            "children": {"type": ["integer", "null"], "minimum": 0},
            "jobs": {"type": ["integer", "null"], "minimum": 0},
        },
    }
)


def validated(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    doc: dict[str, Any] = document(out)
    VALIDATED.validate(doc)
    return doc


def test_validate_json_of_a_good_manifest_counts_and_warns_in_the_document(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        """\
        version: 1
        jobs:
          - name: a
            command: [sh, -c, "curl -H ${API_TOKEN} x"]
          - group: g
            jobs:
              - name: b
                command: [echo, "${secret:SEC}"]
        """,
    )
    out = jobvisor(tmp_path, "validate", "--json", env={"API_TOKEN": "abc", "SEC": SECRET})
    assert out.returncode == 0, out.stderr
    doc = validated(out)
    assert doc["ok"] is True
    assert doc["manifest"] == "jobs.yaml"
    assert doc["errors"] == []
    assert (doc["children"], doc["jobs"]) == (3, 2)  # a, g and g/b; a and g/b are jobs
    plain, in_argv = doc["warnings"]
    assert plain["where"] == "jobs[0].command[2]"
    assert (plain["file"], plain["line"]) == ("jobs.yaml", 4)
    assert "${API_TOKEN} looks like a secret" in plain["message"]
    assert plain["message"] == plain["message"].strip()
    assert in_argv["line"] == 8
    assert "argv" in in_argv["message"]
    assert SECRET not in out.stdout
    assert out.stderr == ""  # all of it is in the document


def test_validate_json_lists_every_schema_error_with_its_place(tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        version: 1
        jobs:
          - name: a
            comand: ["true"]
          - name: b
            command: ["true"]
            retry: {attempts: "${secret:SEC}"}
          - name: c
            command: [echo, "${NOT_SET_ANYWHERE}"]
        """,
    )
    out = jobvisor(tmp_path, "validate", "--json", env={"SEC": SECRET})
    assert out.returncode == 2
    doc = validated(out)
    assert doc["ok"] is False
    assert (doc["children"], doc["jobs"]) == (None, None)
    where = {(e["where"], e["line"]): e["message"] for e in doc["errors"]}
    assert "did you mean 'command'" in where["jobs[0].comand", 4]
    assert "***" in where["jobs[1].retry.attempts", 7]
    assert "NOT_SET_ANYWHERE" in where["jobs[2].command[1]", 9]
    assert SECRET not in out.stdout
    assert out.stderr == ""


def test_validate_json_of_invalid_yaml_gives_its_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\njobs: [\n")
    out = jobvisor(tmp_path, "validate", "--json")
    assert out.returncode == 2
    (error,) = validated(out)["errors"]
    assert (error["where"], error["file"], error["line"], error["column"]) == (
        None,
        "jobs.yaml",
        3,
        1,
    )
    assert error["message"].startswith("invalid YAML: ")


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_validate_json_of_no_manifest_is_a_document_too(tmp_path: Path, what: str) -> None:
    if what == "directory":
        (tmp_path / "jobs.yaml").mkdir()
    out = jobvisor(tmp_path, "validate", "--json")
    assert out.returncode == 2
    doc = validated(out)
    (error,) = doc["errors"]
    assert (doc["ok"], error["file"], error["line"], error["where"]) == (
        False,
        "jobs.yaml",
        None,
        None,
    )
    assert ("no manifest at" if what == "missing" else "is a directory") in error["message"]
    assert out.stderr == ""


EXPLAINED = """\
version: 1
breakers:
  api: {failure_threshold: 3}
supervisor:
  backoff: {initial: 250ms, max: 4s}
  intensity: {max_restarts: 2, within: 60s}
jobs:
  - name: web
    command: [sh, -c, "exec sleep 100"]
    env: {TOKEN: "${secret:SEC}", MODE: fast}
    service: true
    ready: {command: [test, -e, up], interval: 50ms, timeout: 5s}
    stop: {signal: INT, grace: 2s}
  - group: etl
    on_exhausted: cooldown
    intensity: {max_restarts: 5, within: 30s}
    jobs:
      - name: load
        http: {url: "http://127.0.0.1:9/load?key=${secret:SEC}", timeout: 3s}
        every: 1m
        breaker: api
        retry: {attempts: 4, wait: {initial: 100ms}}
        depends_on: []
"""


def test_validate_explain_json_is_the_resolved_tree_as_data(tmp_path: Path) -> None:
    """Before: refused (exit 2, nothing on stdout); now validate --json's document with an
    ``explain`` key: every job's resolved settings, in seconds and bytes, the policy its
    restarts follow and the group it comes from, secrets masked."""
    write(tmp_path, EXPLAINED)
    out = jobvisor(tmp_path, "validate", "--explain", "--json", env={"SEC": SECRET})
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout
    doc = document(out)
    assert {k: doc[k] for k in ("ok", "errors", "children", "jobs")} == {
        "ok": True,
        "errors": [],
        "children": 3,
        "jobs": 2,
    }
    tree = doc["explain"]
    assert (tree["manifest"], tree["version"], tree["runtime"]) == (
        str(tmp_path / "jobs.yaml"),
        1,
        "threads",
    )
    assert tree["state_dir"] == str(tmp_path / ".jobvisor")
    assert tree["breakers"]["api"]["failure_threshold"] == 3
    root = tree["root"]
    assert (root["type"], root["path"], root["strategy"]) == ("supervisor", "", "one_for_one")
    assert root["policy"]["backoff"]["initial"] == 0.25
    assert root["policy"]["intensity"] == {"max_restarts": 2, "within": 60.0}
    web, etl = root["children"]
    assert (web["type"], web["path"], web["autostart"]) == ("job", "web", True)
    assert web["work"]["kind"] == "command"
    assert web["work"]["env"] == ["MODE", "TOKEN"]  # names only
    assert web["run"]["mode"] == "service"
    assert web["stop"] == {"signal": "SIGINT", "grace": 2.0}
    assert (web["ready"]["timeout"], web["ready"]["interval"]) == (5.0, 0.05)
    assert web["policy"]["from"] == ""  # the root's: its restarts follow the root's policy
    assert web["policy"]["backoff"]["max"] == 4.0
    assert web["output"]["max_bytes"] == 10 * 1024 * 1024
    assert (etl["type"], etl["path"]) == ("group", "etl")
    assert etl["policy"]["on_exhausted"] == "cooldown"
    assert etl["policy"]["cooldown"]["duration"] == 30.0
    (load,) = etl["children"]
    assert load["path"] == "etl/load"
    assert load["policy"]["from"] == "etl"
    assert load["policy"]["intensity"] == {"max_restarts": 5, "within": 30.0}
    assert load["run"]["mode"] == "every"
    assert load["run"]["every"] == 60.0
    assert load["breaker"] == {
        "name": "api",
        "failure_threshold": 3,
        "reset_timeout": 30.0,
        "half_open_max_calls": 1,
    }
    assert load["retry"]["attempts"] == 4
    assert load["retry"]["wait"]["initial"] == 0.1
    assert "***" in load["work"]["describe"]
    assert out.stderr == ""  # warnings, if any, are in the document, as validate --json's


def test_validate_explain_json_gives_limits_give_up_on_and_placement_as_data(
    tmp_path: Path,
) -> None:
    """Before: each was its text (``"nofile=1024 memory=512MiB ..."``, ``"exit_codes=[3]"``,
    ``"ray {num_cpus: 0.5}"``), for a script to parse again; now objects of their fields,
    sizes in bytes and durations in seconds as the rest of the document. The text form is
    kept as it was."""
    write(
        tmp_path,
        """\
        version: 1
        jobs:
          - name: web
            command: [sleep, "1"]
            limits: {nofile: 1024, memory: 512MiB, cpu: 1m30s, core: unlimited}
            give_up_on: {exit_codes: [3, 4], exceptions: [ValueError]}
          - name: plain
            command: "true"
          - name: away
            python: "m:f"
            placement: {ray: {num_cpus: 0.5, memory: 1GiB, resources: {tpu: 2}, node: 10.0.0.2}}
            give_up_on: {exceptions: [KeyError]}
        """,
    )
    out = jobvisor(tmp_path, "validate", "--explain", "--json")
    web, plain, away = document(out)["explain"]["root"]["children"]
    assert web["work"]["limits"] == {
        "nofile": 1024,
        "nproc": None,  # None: jobvisor's own
        "memory": 512 << 20,
        "cpu": 90.0,
        "core": "unlimited",
    }
    assert web["give_up_on"] == {
        "exit_codes": [3, 4],
        "exceptions": ["builtins.ValueError"],
        "http_status": [],
    }
    assert web["placement"] == {"type": "local"}
    assert (plain["work"]["limits"], plain["give_up_on"]) == (None, None)
    assert away["placement"] == {
        "type": "ray",
        "num_cpus": 0.5,
        "num_gpus": None,  # None: Ray's default
        "memory": 1 << 30,
        "resources": {"tpu": 2.0},
        "node": "10.0.0.2",
    }
    assert away["give_up_on"]["exceptions"] == ["builtins.KeyError"]
    text = jobvisor(tmp_path, "validate", "--explain").stdout
    assert "limits=(nofile=1024 memory=512MiB cpu=90s core=unlimited)" in text
    assert "give_up_on=(exit_codes=[3, 4] exceptions=[builtins.ValueError])" in text
    assert "placement: local\n" in text
    assert (
        "placement: ray {num_cpus: 0.5, memory: 1GiB, resources: {tpu: 2}, node: 10.0.0.2}" in text
    )


def test_validate_explain_json_of_a_bad_manifest_has_its_errors_and_no_tree(
    tmp_path: Path,
) -> None:
    write(tmp_path, 'version: 1\njobs: [{name: a, comand: ["true"]}]\n')
    out = jobvisor(tmp_path, "validate", "--explain", "--json")
    assert out.returncode == 2
    doc = document(out)
    assert (doc["ok"], doc["explain"]) == (False, None)
    assert any(e["where"] == "jobs[0].comand" for e in doc["errors"])
    assert out.stderr == ""


# -- commands --json does not apply to ------------------------------------------------------------


@pytest.mark.parametrize("command", ["unit", "daemon", "top"])
def test_json_is_refused_where_it_does_not_apply(tmp_path: Path, command: str) -> None:
    write(tmp_path, 'version: 1\njobs: [{name: a, command: ["true"]}]\n')
    out = jobvisor(tmp_path, command, "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"jobvisor: --json does not apply to {command}: ")
    assert not (tmp_path / ".jobvisor").exists()  # refused before anything started


def test_schema_json_is_the_schema_document(tmp_path: Path) -> None:
    out = jobvisor(tmp_path, "schema", "--json")
    assert out.returncode == 0
    assert document(out)["$schema"].endswith("2020-12/schema")


# -- logs --json ----------------------------------------------------------------------------------


def test_logs_json_gives_one_object_a_line_with_its_fields_and_secrets_masked(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text(SECRET)
    write(
        tmp_path,
        r"""
        version: 1
        jobs:
          - group: etl
            jobs:
              - name: leak
                command: 'echo "token=$TOKEN"; printf "red \033[31mX\n" >&2'
                env: {TOKEN: {secret: {file: token}}}
        """,
    )
    done = run_jobvisor(tmp_path, "run", "--runtime", RUNTIME, "--log-level", "none")
    assert done.proc.returncode == 0, done.stderr
    out = jobvisor(tmp_path, "logs", "etl/leak", "--json")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted((r["stream"], r["message"]) for r in records) == [
        ("stderr", "red \x1b[31mX"),
        ("stdout", "token=***"),
    ]
    for record in records:
        assert set(record) == {"time", "job", "stream", "attempt", "message"}
        assert (record["job"], record["attempt"]) == ("etl/leak", 1)
        assert record["time"][:2] == "20"
        assert "T" in record["time"]
    assert SECRET not in out.stdout
    assert "\x1b" not in out.stdout  # escaped by JSON: nothing drives a terminal


def test_logs_follow_json_goes_on_in_json_lines_until_ctrl_c(tmp_path: Path) -> None:
    daemon = start_daemon(
        tmp_path,
        """
        version: 1
        jobs:
          - name: ticker
            service: true
            command: "i=0; while true; do i=$((i+1)); echo n $i; sleep 0.02; done"
        """,
        "--runtime",
        RUNTIME,
    )
    follower = None
    try:
        file = daemon.state / "output" / "ticker.log"
        wait_until(file.exists, "the output file")
        follower = subprocess.Popen(
            [*CLI, "logs", "ticker", "-f", "-n", "1", "--json"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        numbers = []
        while len(numbers) < 10:  # past the one tailed: the rest came while following
            line = follower.stdout.readline()
            assert line, "logs -f --json ended early"
            record = json.loads(line)
            assert (record["job"], record["stream"]) == ("ticker", "stdout")
            numbers.append(int(record["message"].split()[1]))
        assert numbers == list(range(numbers[0], numbers[0] + 10))
        follower.send_signal(signal.SIGINT)
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 0
        assert "Traceback" not in err
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.communicate()  # reaped, its pipes closed
        assert stop_daemon(daemon) == 0


# -- the control commands --json ------------------------------------------------------------------


def test_control_commands_json_give_a_document_of_each_path_and_the_worst_exit(
    tmp_path: Path,
) -> None:
    daemon = start_daemon(tmp_path, DAEMON, "--runtime", RUNTIME)
    try:
        out = daemon.cli("restart", "svc", "--json")
        assert out.returncode == 0, out.stderr
        assert document(out) == {
            "ok": True,
            "results": [{"ok": True, "job": "svc", "action": "restart"}],
        }
        out = daemon.cli("stop", "svc", "nope", "--json")
        assert out.returncode == 4
        doc = document(out)
        assert doc["ok"] is False
        done, missing = doc["results"]
        assert done == {"ok": True, "job": "svc", "action": "stop"}
        assert (missing["ok"], missing["job"], missing["code"]) == (False, "nope", "no_such_job")
        assert "nope" in missing["error"]
        out = daemon.cli("stop", "svc", "--json")
        assert out.returncode == 0
        (again,) = document(out)["results"]
        assert "nothing to stop" in again["note"]
        assert daemon.cli("start", "svc", "--json").returncode == 0
        out = daemon.cli("signal", "CONT", "svc", "--json")
        assert out.returncode == 0, out.stderr
        assert document(out)["results"] == [
            {"ok": True, "job": "svc", "action": "signal", "signal": "SIGCONT"}
        ]
        out = daemon.cli("reload", "--json")
        assert out.returncode == 0, out.stderr
        assert document(out) == {"ok": True, "changes": [], "manifest": str(tmp_path / "jobs.yaml")}
        write(tmp_path, DAEMON.replace("every: 10s", "every: soon"))
        out = daemon.cli("reload", "--json")
        assert out.returncode == 2
        doc = document(out)
        assert (doc["ok"], doc["code"]) == (False, "bad_manifest")
        assert "every" in doc["error"]
    finally:
        assert stop_daemon(daemon) == 0


# A restart of b outlasts the daemon: b takes its TERM (said in b.term) and runs on, its grace
# long, while the request waits for the stop. Every job writes its pid, to be killed at the end.
LOSABLE = """
version: 1
jobs:
  - {name: a, service: true, command: [sh, -c, "echo $$ >> pids; exec sleep 600"]}
  - name: b
    service: true
    stop: {grace: 60s}
    command: [sh, -c, "echo $$ >> pids; trap 'echo b > b.term' TERM; while :; do sleep 0.1; done"]
  - {name: c, service: true, command: [sh, -c, "echo $$ >> pids; exec sleep 600"]}
"""


def test_control_json_says_what_was_not_done_when_the_daemon_is_lost_midway(
    tmp_path: Path,
) -> None:
    """Before: the document held only the answers received (``ok: true`` with exit 3), with
    neither b, whose restart the daemon took with it, nor c, never asked; now b is ``no_daemon``
    and c ``not_asked``."""
    daemon = start_daemon(tmp_path, LOSABLE, "--runtime", RUNTIME)
    watched = Watched()
    try:
        wait_until(lambda: len(read_pids(tmp_path / "pids")) == 3, "the jobs started")
        cli = subprocess.Popen(
            [*CLI, "restart", "--json", "a", "b", "c"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until((tmp_path / "b.term").exists, "b asked to stop", proc=cli)
        daemon.proc.kill()
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 3, err
        assert "Traceback" not in err
        doc = json.loads(out)
        assert doc["ok"] is False
        done, lost, unasked = doc["results"]
        assert done == {"ok": True, "job": "a", "action": "restart"}
        assert {k: lost[k] for k in ("ok", "job", "action", "code")} == {
            "ok": False,
            "job": "b",
            "action": "restart",
            "code": "no_daemon",
        }
        assert lost["error"] in err  # said on stderr too
        assert {k: unasked[k] for k in ("ok", "job", "action", "code")} == {
            "ok": False,
            "job": "c",
            "action": "restart",
            "code": "not_asked",
        }
    finally:
        stop_daemon(daemon)
        watched.add(*read_pids(tmp_path / "pids"))
        watched.close()


@pytest.mark.parametrize(
    "verb",
    [["start", "a", "b"], ["stop", "a", "b"], ["restart", "a", "b"], ["signal", "HUP", "a", "b"]],
)
def test_control_json_with_no_daemon_is_a_document_of_each_path(
    tmp_path: Path, verb: list[str]
) -> None:
    write(tmp_path, DAEMON)
    out = jobvisor(tmp_path, *verb, "--json")
    assert out.returncode == 3
    doc = document(out)
    action = verb[0]
    assert doc["ok"] is False
    first, second = doc["results"]
    assert (first["ok"], first["job"], first["action"], first["code"]) == (
        False,
        "a",
        action,
        "no_daemon",
    )
    assert "no daemon" in first["error"]
    assert first["error"] in out.stderr
    assert (second["ok"], second["job"], second["action"], second["code"]) == (
        False,
        "b",
        action,
        "not_asked",
    )


@pytest.mark.parametrize("verb", ["reload", "status"])
def test_reload_and_status_json_with_no_daemon_are_a_document(tmp_path: Path, verb: str) -> None:
    write(tmp_path, DAEMON)
    out = jobvisor(tmp_path, verb, "--json")
    assert out.returncode == 3
    doc = document(out)
    assert (doc["ok"], doc["code"]) == (False, "no_daemon")
    assert "no daemon" in doc["error"]
    assert doc["error"] in out.stderr
    assert set(doc) == {"ok", "code", "error"}


# A stop of b waits out its grace (b ignores TERM): every stop request of b sent meanwhile is
# being answered, each holding one of the daemon's 64 control connections.
HOLDING = """
version: 1
jobs:
  - name: b
    service: true
    stop: {grace: 60s}
    command: [sh, -c, "trap 'echo b > b.term' TERM; echo $$ >> pids; while :; do sleep 0.1; done"]
"""


def test_status_json_of_a_daemon_that_refuses_to_answer_is_a_document(tmp_path: Path) -> None:
    """Before: a daemon that answered ``busy`` (or ``starting``: no tree yet) left stdout
    empty under --json, the reason on stderr alone; now ``{ok: false, code, error}``, with the
    exit code of the text form (1)."""

    daemon = start_daemon(tmp_path, HOLDING, "--runtime", RUNTIME)
    watched = Watched()
    held: list[socket.socket] = []
    try:
        wait_until(lambda: read_pids(tmp_path / "pids"), "b started", proc=daemon.proc)
        for _ in range(64):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(conn)
            conn.connect(str(daemon.state / "control.sock"))
            conn.sendall(b'{"v": 1, "op": "stop", "job": "b"}\n')
        # The daemon takes the 64 connections as its accept loop gets to them: until it holds
        # all, a status is still answered (as it was under load in the full suite).
        answers: list[subprocess.CompletedProcess[str]] = []
        wait_until(
            lambda: answers.append(daemon.cli("status", "--json")) or answers[-1].returncode != 0,
            "the daemon busy",
            proc=daemon.proc,
        )
        out = answers[-1]
        assert out.returncode == 1, out.stderr
        doc = document(out)
        assert (doc["ok"], doc["code"]) == (False, "busy")
        assert set(doc) == {"ok", "code", "error"}
        assert f"jobvisor: {doc['error']}\n" == out.stderr  # said on stderr too, as before
        text = daemon.cli("status")
        assert (text.returncode, text.stdout, text.stderr) == (1, "", out.stderr)
    finally:
        watched.add(*read_pids(tmp_path / "pids"))
        watched.close()  # b killed: the stops it held end
        for conn in held:
            conn.close()
        stop_daemon(daemon)


def test_reload_json_naming_another_manifest_says_so_in_the_document(tmp_path: Path) -> None:
    """Before: ``the daemon reads its own manifest, X, not OTHER`` on stderr alone; now the
    document has it too (``warning``), and ``manifest``, the one the daemon read, whether the
    reload was done or refused."""
    daemon = start_daemon(tmp_path, DAEMON, "--runtime", RUNTIME)
    try:
        own = tmp_path / "jobs.yaml"
        other = write(tmp_path, DAEMON, name="other.yaml")
        said = f"the daemon reads its own manifest, {own}, not {other}"
        out = daemon.cli("reload", "--json", "--manifest", str(other), "--state-dir", ".jobvisor")
        assert out.returncode == 0, out.stderr
        assert document(out) == {"ok": True, "changes": [], "manifest": str(own), "warning": said}
        assert out.stderr == f"jobvisor: {said}\n"
        write(tmp_path, DAEMON.replace("every: 10s", "every: soon"))
        out = daemon.cli("reload", "--json", "--manifest", str(other), "--state-dir", ".jobvisor")
        assert out.returncode == 2
        doc = document(out)
        assert (doc["ok"], doc["code"], doc["manifest"], doc["warning"]) == (
            False,
            "bad_manifest",
            str(own),
            said,
        )
        out = daemon.cli("reload", "--json")  # its own: no warning
        assert out.returncode == 2
        assert "warning" not in document(out)
    finally:
        assert stop_daemon(daemon) == 0
