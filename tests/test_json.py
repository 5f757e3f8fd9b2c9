"""``--json`` where it applies (SPEC §4): a document on stdout, or one clear refusal and exit 2.

Every command accepts the flag; those it does not apply to refuse it instead of printing
text a script would try to parse. Real ``jobvisor`` processes throughout.
"""

from __future__ import annotations

import json
import signal
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


def test_validate_explain_json_is_refused_in_one_line(tmp_path: Path) -> None:
    write(tmp_path, 'version: 1\njobs: [{name: a, command: ["true"]}]\n')
    out = jobvisor(tmp_path, "validate", "--explain", "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == (
        "jobvisor: --json does not apply to validate --explain: the explanation is text for "
        "people; validate --json gives the manifest's errors and warnings as data\n"
    )


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
        assert document(out) == {"ok": True, "changes": []}
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
