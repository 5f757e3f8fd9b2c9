"""`jobvisor reload --dry-run` against a real daemon: it says what a reload would, changes nothing.

And against a daemon of an older jobvisor (a control socket that answers as protocol version 1
does: it ignores keys it does not know): the dry run must be refused there, never applied.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from faultkit import CLI, ENV, Running, start_daemon, stop_daemon, wait_until
from faultkit import DAEMON as BASE

from supervision._history import read_history

# svc changed (replaced), tick removed, extra added.
CHANGED = (
    textwrap.dedent(BASE)
    .replace("sleep 0.05", "sleep 0.06")
    .replace('  - name: tick\n    python: "math:sqrt"\n    args: [4]\n    every: 10s\n', "")
    + '  - name: extra\n    service: true\n    command: [sh, -c, "exec sleep 600"]\n'
)
DRY_RUN = "dry run: nothing was changed; a reload now would say:"
SAID = ["remove tick", "replace svc: command", "add extra"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Running]:
    running = start_daemon(tmp_path, BASE)
    yield running
    assert stop_daemon(running) == 0


def _tree(daemon: Running) -> dict[str, tuple[Any, ...]]:
    """Each job's own process and start, which any step of a reload would change."""
    return {
        path: (node["kind"], node["starts"], node["pid"], node["since"])
        for path, node in daemon.nodes().items()
    }


def _reload_rows(daemon: Running) -> list[dict[str, Any]]:
    """The journal's rows of a reload's steps (a job added or removed by it)."""
    rows = read_history(daemon.state / "journal.sqlite3", limit=10_000)
    return [row for row in rows if row.get("kind") in ("added", "removed")]


def test_a_dry_run_says_what_a_reload_would_and_changes_nothing(daemon: Running) -> None:
    wait_until(lambda: daemon.nodes()["svc"]["pid"], "svc's process", proc=daemon.proc)
    before = _tree(daemon)
    (daemon.dir / "jobs.yaml").write_text(CHANGED)
    out = daemon.cli("reload", "--dry-run")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert out.stdout.splitlines() == [DRY_RUN, *SAID]
    assert _tree(daemon) == before, "same jobs, same processes, same starts"
    assert _reload_rows(daemon) == []
    # The reload says what the dry run said, and does it: the rows come (the check above
    # looked where they would have been).
    real = daemon.cli("reload")
    assert (real.returncode, real.stdout.splitlines()) == (0, SAID), real.stderr
    wait_until(
        lambda: (
            [(r["path"], r["kind"]) for r in _reload_rows(daemon)]
            == [("tick", "removed"), ("svc", "removed"), ("svc", "added"), ("extra", "added")]
        ),
        "the reload's rows",
        proc=daemon.proc,
    )
    again = daemon.cli("reload", "--dry-run")
    assert again.stdout.splitlines() == [DRY_RUN, "no change"], again.stdout


def test_a_dry_run_of_a_bad_manifest_is_refused_as_a_reload_is(daemon: Running) -> None:
    before = _tree(daemon)
    (daemon.dir / "jobs.yaml").write_text("version: 1\njobs: [{name: x}]\n")
    dry = daemon.cli("reload", "--dry-run")
    real = daemon.cli("reload")
    assert (dry.returncode, dry.stdout) == (2, "")
    assert dry.stderr == real.stderr
    assert "jobs[0]" in dry.stderr
    assert real.returncode == 2
    assert _tree(daemon) == before


def test_a_dry_run_json_is_the_reload_document_with_dry_run(daemon: Running) -> None:
    manifest = str(daemon.dir / "jobs.yaml")
    (daemon.dir / "jobs.yaml").write_text(CHANGED)
    out = daemon.cli("reload", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "ok": True,
        "changes": SAID,
        "manifest": manifest,
        "dry_run": True,
    }
    (daemon.dir / "jobs.yaml").write_text("version: 1\njobs: [{name: x}]\n")
    out = daemon.cli("reload", "--dry-run", "--json")
    assert out.returncode == 2
    doc = json.loads(out.stdout)
    assert (doc["ok"], doc["code"], doc["manifest"], doc["dry_run"]) == (
        False,
        "bad_manifest",
        manifest,
        True,
    )
    assert "tick" in daemon.nodes(), "nothing removed"


def test_a_dry_run_with_no_daemon_is_exit_3(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    for extra in ((), ("--json",)):
        out = _jv(tmp_path, "reload", "--dry-run", *extra)
        assert out.returncode == 3, out.stderr
        assert "no daemon" in out.stderr
    doc = json.loads(out.stdout)
    assert (doc["ok"], doc["code"], doc["dry_run"]) == (False, "no_daemon", True)


def test_a_daemon_refuses_an_option_it_does_not_know(daemon: Running) -> None:
    """Version 2 requests carry options; an unknown one is refused, never ignored."""
    for req, error in (
        ({"v": 2, "op": "reload", "dry_runn": True}, "unknown option 'dry_runn' for reload"),
        ({"v": 2, "op": "status", "dry_run": True}, "unknown option 'dry_run' for status"),
        ({"v": 2, "op": "reload", "dry_run": "yes"}, "dry_run needs true or false, got 'yes'"),
        ({"v": 3, "op": "status"}, "unsupported protocol version 3: expected 1 or 2"),
    ):
        reply = _ask(daemon.state / "control.sock", req)
        assert (reply["ok"], reply["code"]) == (False, "bad_request"), reply
        assert reply["error"].startswith(error), reply
    assert _ask(daemon.state / "control.sock", {"v": 2, "op": "reload", "dry_run": True})["ok"]
    assert _ask(daemon.state / "control.sock", {"v": 1, "op": "status"})["ok"]


def test_a_dry_run_to_an_older_daemon_is_refused_not_applied(tmp_path: Path) -> None:
    """A daemon of protocol version 1 (before --dry-run) ignores keys it does not know: sent
    as version 1, the dry run would have reloaded for real. Played here by a socket that
    answers as it does (a real older jobvisor is not at hand)."""
    (tmp_path / "jobs.yaml").write_text(textwrap.dedent(BASE))
    state = tmp_path / ".jobvisor"
    state.mkdir(mode=0o700)
    asked: list[dict[str, Any]] = []
    with _Older(state / "control.sock", asked):
        out = _jv(tmp_path, "reload", "--dry-run")
        assert out.returncode == 1, out.stderr
        assert out.stdout == ""
        assert out.stderr == (
            "jobvisor: unsupported protocol version 2: expected 1 (the daemon is from an older "
            "jobvisor than this command and does not know dry_run: nothing was done; restart "
            "it with this jobvisor to use it)\n"
        )
        plain = _jv(tmp_path, "reload")  # a plain reload is still version 1: it is applied
        assert (plain.returncode, plain.stdout) == (0, "add extra\n"), plain.stderr
    assert asked == [{"v": 2, "op": "reload", "dry_run": True}, {"v": 1, "op": "reload"}]


class _Older:
    """A control socket answering as a daemon of protocol version 1 did (its `_reply`)."""

    def __init__(self, path: Path, asked: list[dict[str, Any]]) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(4)
        self._asked = asked
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(10)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                req = json.loads(conn.makefile().readline())
                self._asked.append(req)
                if req.get("v") != 1:
                    error = f"unsupported protocol version {req.get('v')!r}: expected 1"
                    reply = {"ok": False, "code": "bad_request", "error": error}
                else:
                    reply = {"ok": True, "result": ["add extra"]}  # a reload, applied
                conn.sendall(json.dumps(reply).encode() + b"\n")


def _ask(path: Path, req: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall(json.dumps(req).encode() + b"\n")
        reply: dict[str, Any] = json.loads(sock.makefile().readline())
    return reply


def _jv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60, check=False
    )


# Two jobs whose fields the test edits one at a time; their secrets must never be printed.
FIELDS = """
version: 1
logging: {file: daemon.log}
jobs:
  - name: web
    service: true
    command: [sh, -c, "exec sleep 601"]
    stop: {grace: 2s}
    env: {MODE: blue, API_KEY: {secret: {file: key.txt}}}
  - name: envjob
    service: true
    command: [sh, -c, "exec sleep 602"]
    env_file: envjob.env
"""
SECRETS = ("key-old-7f3a9c1e", "key-new-0b8d2e4f", "tok-old-5e6f7a8b", "tok-new-9c0d1e2f")


def _private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)  # a secret file or an env file others may read is refused


def test_a_replace_names_the_fields_that_changed_never_a_value(tmp_path: Path) -> None:
    """`replace web` alone did not say why web restarts: an operator who edited one field or an
    env file could not tell. The line names the fields as the manifest spells them, and of an
    env the variables, never their values (secrets among them)."""
    key_old, key_new, token_old, token_new = SECRETS
    _private(tmp_path / "key.txt", key_old)
    _private(tmp_path / "envjob.env", f"GREETING=hi\nAPI_TOKEN={token_old}\n")
    running = start_daemon(tmp_path, FIELDS)
    said: list[str] = []
    try:
        manifest = textwrap.dedent(FIELDS)
        # (the manifest's edits, a file's new text, the line a reload says)
        steps: list[tuple[dict[str, str], tuple[str, str] | None, str]] = [
            ({"sleep 601": "sleep 611"}, None, "replace web: command"),
            (
                {"sleep 611": "sleep 612", "grace: 2s": "grace: 3s"},
                None,
                "replace web: command, stop.grace",
            ),
            ({"grace: 3s": "grace: 4s"}, None, "replace web: stop.grace"),
            ({"MODE: blue": "MODE: green"}, None, "replace web: env (MODE)"),
            ({}, ("key.txt", key_new), "replace web: env (API_KEY)"),
            (
                {},
                ("envjob.env", f"GREETING=hello\nAPI_TOKEN={token_new}\n"),
                "replace envjob: env_file (GREETING, API_TOKEN)",
            ),
        ]
        for edits, file, line in steps:
            for old, new in edits.items():
                assert old in manifest, old
                manifest = manifest.replace(old, new)
            (tmp_path / "jobs.yaml").write_text(manifest)
            if file is not None:
                _private(tmp_path / file[0], file[1])
            dry = running.cli("reload", "--dry-run")
            assert (dry.returncode, dry.stdout.splitlines()) == (0, [DRY_RUN, line]), dry.stderr
            doc = running.cli("reload", "--dry-run", "--json")
            assert json.loads(doc.stdout)["changes"] == [line], doc.stderr  # strings, as before
            real = running.cli("reload")
            assert (real.returncode, real.stdout.splitlines()) == (0, [line]), real.stderr
            said += [dry.stdout, dry.stderr, doc.stdout, doc.stderr, real.stdout, real.stderr]
        # A SIGHUP's reload says it in the log.
        _private(tmp_path / "envjob.env", f"GREETING=hello\nAPI_TOKEN={token_old}\n")
        running.proc.send_signal(signal.SIGHUP)
        log = tmp_path / "daemon.log"
        wait_until(
            lambda: (
                f"reloaded {tmp_path / 'jobs.yaml'}: replace envjob: env_file (API_TOKEN)"
                in log.read_text()
            ),
            "the SIGHUP reload's line",
            proc=running.proc,
        )

        # The journal counts each reload's steps as before: one job replaced.
        def counts() -> list[tuple[int, int, int]]:
            rows = read_history(running.state / "journal.sqlite3", None, 500)
            return [
                (row["detail"]["replaced"], row["detail"]["added"], row["detail"]["removed"])
                for row in rows
                if row.get("kind") == "daemon_reload"
            ]

        wait_until(lambda: len(counts()) == len(steps) + 1, "the reloads' rows", proc=running.proc)
        assert counts() == [(1, 0, 0)] * (len(steps) + 1)
        history = running.cli("history", "--json")
        assert history.returncode == 0, history.stderr
        said += [log.read_text(), history.stdout]
    finally:
        assert stop_daemon(running) == 0
    for text in said:
        for secret in SECRETS:
            assert secret not in text
