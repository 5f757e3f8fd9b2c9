"""``env_file:``: dotenv files read into a command's environment, their secrets masked.

Real files throughout: the syntax as systemd's EnvironmentFile= and docker's
env files write it, the layering with ``env:`` and ``defaults:``, bad lines
named by file and line without their value, files that are missing, optional
or unsafe; then a real ``jobvisor run`` and a real daemon (whose ``reload``
reads the file again), under the runtime the suite runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import RUNTIME
from faultkit import start_daemon, stop_daemon, wait_until
from test_cli import jobvisor, write

from supervision import ManifestError, load_manifest
from supervision._journal import job_hash

TOKEN = "tok-3f9a-very-secret"  # a value that must never show


def env_of(manifest_dir: Path, text: str, job: int = 0) -> dict[str, str]:
    manifest = write(manifest_dir, text)
    loaded = load_manifest(manifest, env={"PATH": os.environ["PATH"]})
    return dict(loaded.root.children[job].work.env)  # type: ignore[union-attr]


def env_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    path.chmod(mode)
    return path


JOB = """
version: 1
jobs:
  - name: web
    command: [sh, -c, "true"]
    env_file: app.env
"""


def test_the_dotenv_syntax_systemd_and_docker_read(tmp_path: Path) -> None:
    env_file(
        tmp_path / "app.env",
        "\ufeff# a comment\n"
        "\n"
        "PLAIN=value\n"
        "  SPACED = around the equals  \n"
        "export EXPORTED=yes\n"
        "EMPTY=\n"
        "INLINE=kept # a comment after a space\n"
        "HASH=a#b\n"
        "SINGLE='literal $HOME \\n \"q\" # not a comment'\n"
        'DOUBLE="line1\\nline2 \\"quoted\\" back\\\\slash \\$x tab\\t"\n'
        'MULTI="first\n'
        'second" # after\n'
        "SQMULTI='a\n"
        "b'\n"
        "NOEXPAND=$HOME/${USER}\n"
        "CRLF=windows\r\n"
        'JOINED="one \\\ntwo"\n'
        'UNKNOWN="C:\\dir \\d"\n'
        "TWICE=first\n"
        "TWICE=second\n",
    )
    assert env_of(tmp_path, JOB) == {
        "PLAIN": "value",
        "SPACED": "around the equals",
        "EXPORTED": "yes",
        "EMPTY": "",
        "INLINE": "kept",
        "HASH": "a#b",
        "SINGLE": 'literal $HOME \\n "q" # not a comment',
        "DOUBLE": 'line1\nline2 "quoted" back\\slash $x tab\t',
        "MULTI": "first\nsecond",
        "SQMULTI": "a\nb",
        "NOEXPAND": "$HOME/${USER}",
        "CRLF": "windows",
        "JOINED": "one two",
        "UNKNOWN": "C:\\dir \\d",  # an escape it does not know keeps its backslash
        "TWICE": "second",
    }


def test_later_files_win_and_env_wins_over_files_closest_first(tmp_path: Path) -> None:
    env_file(tmp_path / "common.env", "A=common\nB=common\nC=common\nD=common\nE=common\n")
    env_file(tmp_path / "one.env", "B=one\nC=one\nD=one\nE=one\n")
    (tmp_path / "conf").mkdir()
    env_file(tmp_path / "conf" / "two.env", "C=two\nD=two\nE=two\n")
    text = """
    version: 1
    defaults:
      env_file: common.env
      env: {D: defaults-env, F: defaults-env}
    jobs:
      - name: web
        command: [sh, -c, "true"]
        env_file: [one.env, conf/two.env]
        env: {E: own-env}
      - name: plain
        command: [sh, -c, "true"]
    """
    # defaults' files < defaults' env < the job's files (in order) < the job's env
    assert env_of(tmp_path, text) == {
        "A": "common",
        "B": "one",
        "C": "two",
        "D": "two",
        "E": "own-env",
        "F": "defaults-env",
    }
    assert env_of(tmp_path, text, job=1) == {
        "A": "common",
        "B": "common",
        "C": "common",
        "D": "defaults-env",
        "E": "common",
        "F": "defaults-env",
    }


def test_jobs_naming_one_env_file_share_its_entries_not_copies(tmp_path: Path) -> None:
    """Before: each job had a dict of the file's entries of its own, each made, checked, hashed
    and kept again (one file of 10,000 variables on 10,000 jobs: 165 s and 12 GB to load);
    now the file's entries are one mapping every job that names it points at, only a job's
    own ``env`` its own, and its env and spec hash are what a dict of them gives."""
    big = {f"V{i}": f"value-{i}" for i in range(300)}
    env_file(tmp_path / "big.env", "".join(f"{k}={v}\n" for k, v in big.items()))
    text = """
    version: 1
    jobs:
      - {name: a, command: "true", env_file: big.env}
      - {name: b, command: "true", env_file: [big.env], env: {V7: own, OWN: x}}
      - {name: c, command: "true", env_file: big.env, replicas: 2}
    """
    write(tmp_path, text)
    loaded = load_manifest(tmp_path / "jobs.yaml", env={"PATH": os.environ["PATH"]})
    a, b, c0, c1 = (child.work.env for child in loaded.root.children)  # type: ignore[union-attr]
    assert a.shared is b.shared is c0.shared is c1.shared  # type: ignore[attr-defined]
    assert (a.own, b.own) == ({}, {"V7": "own", "OWN": "x"})  # type: ignore[attr-defined]
    assert (a, dict(a)) == (big, big)
    assert dict(b) == {**big, "V7": "own", "OWN": "x"}
    assert len(b) == len(big) + 1
    for job in loaded.root.children:
        as_dict = dataclasses.replace(job.work, env=dict(job.work.env))  # type: ignore[union-attr]
        assert job_hash(job) == job_hash(dataclasses.replace(job, work=as_dict))  # type: ignore[arg-type]


def test_a_bad_env_entry_beside_env_files_is_said_with_every_other(tmp_path: Path) -> None:
    env_file(tmp_path / "app.env", "A=1\n")
    text = """
    version: 1
    defaults: {env: {"X=Y": d}}
    jobs:
      - {name: web, command: "true", env_file: app.env, env: {"A=B": own}}
    """
    said = [e.removeprefix(f"{tmp_path / 'jobs.yaml'}:") for e in errors_of(tmp_path, text)]
    assert said == [
        "3: defaults.env['X=Y']: expected a name like FOO_BAR, got 'X=Y'",
        "5: jobs[0].env['A=B']: expected a name like FOO_BAR, got 'A=B'",
    ]


def errors_of(tmp_path: Path, text: str = JOB) -> list[str]:
    write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "jobs.yaml", env={"PATH": os.environ["PATH"]})
    return [str(issue) for issue in caught.value.issues]


def test_an_env_file_path_with_an_unset_variable_is_said_once(tmp_path: Path) -> None:
    """The unset ${NEWVAR} was said, then its stand-in path too: 'expected a readable env file
    '.../unresolved/web.env'' (trial 25)."""
    errors = errors_of(tmp_path, JOB.replace("env_file: app.env", "env_file: ${NEWVAR}/web.env"))
    assert len(errors) == 1, errors
    assert "expected environment variable NEWVAR to be set" in errors[0]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        (f"OK=1\n\n{TOKEN}\n", 3, "expected NAME=VALUE, got a line without '='"),
        (f"OK=1\n9{TOKEN}=x\n", 2, "expected a variable name of letters, digits and '_'"),
        (f'OK=1\nAPI_TOKEN="{TOKEN}\nMORE=x\n', 2, "a double-quoted value that is never closed"),
        (f"API_TOKEN='{TOKEN}' {TOKEN}\n", 1, "expected nothing but a '# comment' after the"),
        (f"API_TOKEN={TOKEN}\0\n", 1, "a NUL byte"),
        (b"OK=1\nAPI_TOKEN=\xff" + TOKEN.encode() + b"\n", 2, "expected UTF-8 text"),
        (f"export\n{TOKEN}\n", 1, "expected NAME=VALUE, got a line without '='"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line_and_never_shown(
    tmp_path: Path, content: str | bytes, line: int, reason: str
) -> None:
    path = tmp_path / "app.env"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(0o600)
    [error] = errors_of(tmp_path)
    assert f"{path}:{line}: " in error, error
    assert reason in error, error
    assert TOKEN not in error
    assert error.startswith(f"{tmp_path / 'jobs.yaml'}:6: jobs[0].env_file: ")
    # the CLI: one line, exit 2, at validate and at run alike
    for verb in ("validate", "run"):
        out = jobvisor(verb, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert f"{path}:{line}: " in out.stderr
        assert TOKEN not in out.stderr + out.stdout
        assert "Traceback" not in out.stderr


def test_a_missing_file_is_an_error_and_a_dash_makes_it_optional(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path)
    missing = tmp_path / "app.env"
    assert f"jobs[0].env_file: expected a readable env file '{missing}', got: No such file" in error
    assert "-app.env" in error  # says how to make it optional
    text = JOB.replace("env_file: app.env", "env_file: [-app.env, -/nonexistent/x.env]")
    assert env_of(tmp_path, text) == {}
    env_file(missing, "HERE=1\n")
    assert env_of(tmp_path, text) == {"HERE": "1"}  # optional, read when it is there


def test_an_env_file_others_can_write_or_that_is_no_regular_file_is_refused(
    tmp_path: Path,
) -> None:
    path = env_file(tmp_path / "app.env", "A=1\n", mode=0o666)
    [error] = errors_of(tmp_path)
    assert f"refusing the env file {path}: it is writable by others (mode 0666)" in error
    path.chmod(0o600)
    path.unlink()
    os.mkfifo(path)  # a reader of a FIFO would wait for a writer for ever
    [error] = errors_of(tmp_path)
    assert f"expected a readable env file '{path}', got: a FIFO, not a regular file" in error
    path.unlink()
    path.symlink_to("/dev/zero")
    [error] = errors_of(tmp_path)
    assert "a character device, not a regular file" in error
    path.unlink()
    path.write_bytes(b"A=" + b"x" * (1 << 20) + b"\n")
    [error] = errors_of(tmp_path)
    assert "expected an env file up to 1MiB" in error


@pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")
def test_an_env_file_through_another_users_symbolic_link_is_refused(tmp_path: Path) -> None:
    """An env file had no link check: ``env_file: planted.env``, another user's link to a root
    file, was read, its values a command's environment (review 40); secret files had one."""
    known = env_file(tmp_path / "root.env", "LD_PRELOAD=/tmp/evil.so\n")
    planted = tmp_path / "planted.env"
    planted.symlink_to(known)
    os.lchown(planted, 65534, 65534)
    text = JOB.replace("env_file: app.env", "env_file: planted.env")
    [error] = errors_of(tmp_path, text)
    assert error == (
        f"{tmp_path / 'jobs.yaml'}:6: jobs[0].env_file: refusing the env file {planted}: it is a symbolic link "
        "owned by uid 65534, who chose the file it points to; name the file itself"
    )
    os.lchown(planted, os.geteuid(), os.getegid())  # our own link is followed
    assert env_of(tmp_path, text) == {"LD_PRELOAD": "/tmp/evil.so"}


def test_env_file_only_on_jobs_with_an_environment_of_their_own(tmp_path: Path) -> None:
    env_file(tmp_path / "app.env", "A=1\n")
    text = """
    version: 1
    jobs:
      - name: hook
        http: {url: "http://127.0.0.1:9/"}
        env_file: app.env
    """
    [error] = errors_of(tmp_path, text)
    assert "jobs[0].env_file: expected env_file only on command jobs, got it on an http job" in (
        error
    )


def test_a_python_job_in_a_process_of_its_own_reads_env_files_too(tmp_path: Path) -> None:
    env_file(tmp_path / "app.env", "A=1\n")
    text = """
    version: 1
    defaults:
      env_file: app.env  # commands only, as defaults' env
    jobs:
      - name: p
        python: "os:getcwd"
        isolation: process
        env_file: app.env
        env: {B: "2"}
      - name: q
        python: "os:getcwd"
        isolation: process
    """
    assert env_of(tmp_path, text) == {"A": "1", "B": "2"}
    assert env_of(tmp_path, text, job=1) == {}


def test_a_default_env_file_no_job_takes_is_still_checked(tmp_path: Path) -> None:
    path = env_file(tmp_path / "app.env", f"{TOKEN}\n")
    text = """
    version: 1
    defaults:
      env_file: app.env
    jobs:
      - name: hook
        http: {url: "http://127.0.0.1:9/"}
    """
    [error] = errors_of(tmp_path, text)
    assert f"defaults.env_file: {path}:1: expected NAME=VALUE" in error
    assert TOKEN not in error


def test_secret_looking_names_are_secrets_and_short_ones_are_warned_of(tmp_path: Path) -> None:
    env_file(
        tmp_path / "app.env",
        f"API_TOKEN={TOKEN}\nDB_PASSWORD=abc\nEMPTY_SECRET=\nWORKERS=4\nMODE=true\n",
    )
    write(tmp_path, JOB)
    loaded = load_manifest(tmp_path / "jobs.yaml", env={"PATH": os.environ["PATH"]})
    assert loaded.secrets == {TOKEN}  # neither "4" nor "true": their names are plain
    [warning] = [str(w) for w in loaded.warnings]
    assert f"{tmp_path / 'app.env'}:2: DB_PASSWORD" in warning
    assert "fewer than 4 characters" in warning
    assert "abc" not in warning
    explained = loaded.explain()
    assert "env=API_TOKEN,DB_PASSWORD,EMPTY_SECRET,MODE,WORKERS" in explained
    assert TOKEN not in explained
    out = jobvisor("validate", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "DB_PASSWORD" in out.stderr
    assert "abc" not in out.stderr


def test_a_secret_looking_name_set_to_a_boolean_or_a_number_is_a_setting_not_masked(
    tmp_path: Path,
) -> None:
    """Masked, ``ENABLE_TOKEN_AUTH=true`` hid every ``true`` in every job's lines (review)."""
    env_file(
        tmp_path / "app.env",
        f"ENABLE_TOKEN_AUTH=true\nKEY_TTL=3600\nSECRET_RATIO=0.25\nAPI_TOKEN={TOKEN}\n",
    )
    write(tmp_path, JOB)
    loaded = load_manifest(tmp_path / "jobs.yaml", env={"PATH": os.environ["PATH"]})
    assert loaded.secrets == {TOKEN}
    warnings = [str(w) for w in loaded.warnings]
    assert len(warnings) == 3, warnings
    for line, name in ((1, "ENABLE_TOKEN_AUTH"), (2, "KEY_TTL"), (3, "SECRET_RATIO")):
        [said] = [w for w in warnings if f"app.env:{line}: {name} looks like a secret" in w]
        assert "a boolean or a number, a setting: not masked" in said
    assert not any(v in w for w in warnings for v in ("true", "3600", "0.25"))


def test_a_secret_from_an_env_file_is_masked_in_the_run_log_and_json(tmp_path: Path) -> None:
    env_file(tmp_path / "app.env", f"API_TOKEN={TOKEN}\nGREETING=hello-plain\n")
    write(
        tmp_path,
        f"""
        version: 1
        runtime: {RUNTIME}
        supervisor: {{intensity: {{max_restarts: 0}}}}
        jobs:
          - name: leak
            command: [sh, -c, 'echo "out $API_TOKEN $GREETING"; echo "err $API_TOKEN" >&2; exit 3',
                      sh, {TOKEN}]
            env_file: app.env
        """,
    )
    out = jobvisor("run", "--json", "--log-file", "-", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "leak[1] out *** hello-plain" in out.stderr
    assert "leak[1] err ***" in out.stderr
    node = json.loads(out.stdout)["children"][0]
    # Its last line on stderr, masked as the rest (h254).
    assert node["last_exit"]["error"].endswith(
        "sh *** exited with 3; its last line on stderr: err ***"
    )
    history = jobvisor("history", "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    output = (tmp_path / ".jobvisor" / "output" / "leak.log").read_text()
    for where, text in (
        ("the log", out.stderr),
        ("run --json", out.stdout),
        ("history", history.stdout),
        ("the output file", output),
    ):
        assert TOKEN not in text, where


def daemon_manifest(tmp_path: Path) -> str:
    return f"""
    version: 1
    runtime: {RUNTIME}
    supervisor: {{backoff: {{initial: 1ms, max: 5ms}}}}
    jobs:
      - name: web
        service: true
        command: [sh, -c, 'echo "greeting=$GREETING token=$API_TOKEN"; exec sleep 600', {TOKEN}]
        env_file: {tmp_path / "app.env"}
      - name: other
        service: true
        command: [sh, -c, "exec sleep 600"]
    """


def output_lines(tmp_path: Path) -> list[str]:
    try:
        return (tmp_path / ".jobvisor" / "output" / "web.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def test_a_reload_reads_the_env_file_again_and_replaces_the_job(tmp_path: Path) -> None:
    path = env_file(tmp_path / "app.env", f"GREETING=first\nAPI_TOKEN={TOKEN}\n")
    running = start_daemon(tmp_path, textwrap.dedent(daemon_manifest(tmp_path)))
    try:
        wait_until(
            lambda: any("greeting=first token=***" in line for line in output_lines(tmp_path)),
            "the first greeting",
            proc=running.proc,
        )
        status = running.cli("status", "--json")
        assert status.returncode == 0, status.stderr
        assert TOKEN not in status.stdout
        before: dict[str, Any] = {n["path"]: n for n in json.loads(status.stdout)["children"]}
        # unchanged: nothing to do
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert "replace web" not in out.stdout
        # a bad line: nothing changes, the error names the file and line, not the value
        env_file(path, f"GREETING=second\n{TOKEN}\n")
        out = running.cli("reload")
        assert out.returncode == 2, out.stdout
        assert f"{path}:2: expected NAME=VALUE" in out.stderr
        assert TOKEN not in out.stderr + out.stdout
        # a changed value replaces the job, as a changed env: does
        env_file(path, f"GREETING=second\nAPI_TOKEN={TOKEN}\n")
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == ["replace web: env_file (GREETING)"]  # no value
        wait_until(
            lambda: any("greeting=second token=***" in line for line in output_lines(tmp_path)),
            "the second greeting",
            proc=running.proc,
        )
        after = running.nodes()
        assert after["other"]["starts"] == before["other"]["starts"]
        assert after["other"]["pid"] == before["other"]["pid"]
        assert after["web"]["pid"] != before["web"]["pid"]
        assert TOKEN not in json.dumps(after)
    finally:
        assert stop_daemon(running) == 0
    assert TOKEN not in (tmp_path / ".jobvisor" / "output" / "web.log").read_text()
