"""The journal tells the daemon's own life (start, reload, stop), who acted on a job and
through what, and `history --since` / `/api/history?since=`: against a real daemon."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import requests
from conftest import RUNTIME
from faultkit import Running, start_daemon, stop_daemon, wait_until

from supervision._history import journal_path, read_history
from supervision._httpapi import ADDRESS_FILE

TOKEN = "s3cret-token-for-the-journal"
MANIFEST = """
version: 1
http: {token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
"""
RELOADED = """
version: 1
http: {token: {secret: {env: JV_HTTP_TOKEN}}}
jobs:
  - {name: svc, service: true, command: [sleep, "100"]}
  - {name: extra, service: true, command: [sleep, "100"]}
"""


def _daemon(tmp_path: Path, manifest: str = MANIFEST) -> Running:
    return start_daemon(
        tmp_path,
        manifest,
        "--http",
        "127.0.0.1:0",
        "--runtime",
        RUNTIME,
        env_extra={"JV_HTTP_TOKEN": TOKEN},
    )


def _daemon_rows(running: Running) -> list[dict[str, Any]]:
    return [row for row in read_history(journal_path(running.state), None, 500) if not row["path"]]


def _json_history(running: Running, *args: str) -> list[dict[str, Any]]:
    out = running.cli("history", "--json", *args)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def _url(running: Running) -> str:
    address = running.state / ADDRESS_FILE
    wait_until(address.exists, "the endpoint's address file", timeout=30)
    return str(json.loads(address.read_text())["url"]).rstrip("/")


def test_start_reload_and_stop_are_journaled_and_read_by_the_next_daemon(tmp_path: Path) -> None:
    first = _daemon(tmp_path)
    pid = first.proc.pid
    try:
        (tmp_path / "jobs.yaml").write_text(RELOADED)
        assert first.cli("reload").returncode == 0
        (tmp_path / "jobs.yaml").write_text("version: 1\njobs: [{name: x, command: }]\n")
        assert first.cli("reload").returncode == 2
    finally:
        assert stop_daemon(first) == 0
    second = _daemon(tmp_path, RELOADED)
    try:
        wait_until(lambda: len(_daemon_rows(second)) == 5, "its start journaled", proc=second.proc)
        rows = _json_history(second)
        mine = [row for row in rows if row["path"] == ""]
        kinds = [row["kind"] for row in mine]
        assert kinds == [
            "daemon_start",
            "daemon_reload",
            "daemon_reload",
            "daemon_stop",
            "daemon_start",
        ], mine
        start, reload, refused, stop, again = (row["detail"] for row in mine)
        assert start["pid"] == pid
        assert start["manifest"] == str(tmp_path / "jobs.yaml")
        assert start["version"]
        assert "previous" not in start
        assert reload == {
            "via": "control",
            "added": 1,
            "removed": 0,
            "replaced": 0,
            "updated": 0,
        }
        assert refused == {
            "via": "control",
            **dict.fromkeys(("added", "removed", "replaced", "updated"), 0),
            "error": f"{tmp_path / 'jobs.yaml'}:2: jobs[0].command: expected a list of argv "
            "strings or a shell command string, got null",
        }
        assert stop == {"how": "SIGTERM", "via": "signal", "code": 0, "took": stop["took"]}
        assert again["pid"] == second.proc.pid
        assert "previous" not in again  # the first one said how it stopped
        # As a person reads it: the tree's own rows say "(daemon)" where a path would be.
        text = second.cli("history")
        assert text.returncode == 0, text.stderr
        lines = [line for line in text.stdout.splitlines() if "(daemon)" in line]
        assert [line.split("  ")[2].split(" ")[0] for line in lines] == kinds
        assert "via=signal" in lines[3]
        assert "SIGTERM" in lines[3]
        # A job's history has none of them.
        assert all(row["path"] == "svc" for row in _json_history(second, "svc"))
        # Nor does the endpoint's of a job; without job= it has them.
        url = _url(second)
        every = requests.get(url + "/api/history?limit=500", timeout=30).json()
        assert [row["kind"] for row in every if row["path"] == ""] == kinds
    finally:
        assert stop_daemon(second) == 0


def test_a_daemon_killed_without_a_stop_is_said_by_the_next_start(tmp_path: Path) -> None:
    first = _daemon(tmp_path)
    try:
        # Killed once its start row is committed (within the journal's max_delay of the start).
        wait_until(lambda: _daemon_rows(first), "the start journaled", proc=first.proc)
        first.proc.send_signal(signal.SIGKILL)
    finally:
        assert stop_daemon(first) == -signal.SIGKILL
    second = _daemon(tmp_path)
    try:

        def starts() -> list[dict[str, Any]]:
            return [row for row in _daemon_rows(second) if row["kind"] == "daemon_start"]

        wait_until(lambda: len(starts()) == 2, "the second start journaled", proc=second.proc)
        assert [row["detail"]["pid"] for row in starts()] == [first.proc.pid, second.proc.pid]
        assert "previous" not in starts()[0]["detail"]
        assert starts()[1]["detail"]["previous"] == (
            f"the daemon before (pid {first.proc.pid}) journaled no stop: it was killed, "
            "or its machine went down"
        )
    finally:
        assert stop_daemon(second) == 0


def test_each_person_action_says_through_what_it_came(tmp_path: Path) -> None:
    running = _daemon(tmp_path)
    try:
        assert running.cli("restart", "svc").returncode == 0
        url = _url(running)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = requests.post(url + "/api/jobs/svc/restart", headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        assert running.cli("stop", "svc").returncode == 0
        assert running.cli("start", "svc").returncode == 0
        assert running.cli("signal", "HUP", "svc").returncode == 0
        os.kill(running.proc.pid, signal.SIGHUP)  # a reload by signal
        wait_until(
            lambda: any(r["kind"] == "daemon_reload" for r in _daemon_rows(running)),
            "the SIGHUP's reload journaled",
            proc=running.proc,
        )
        rows = _json_history(running, "--limit", "500")
        acted = [
            (row["kind"], row["detail"]["via"])
            for row in rows
            if row.get("kind", "").startswith("person_") or row.get("kind") == "daemon_reload"
        ]
        assert acted == [
            ("person_restart", "control"),
            ("person_restart", "http"),
            ("person_stop", "control"),
            ("person_start", "control"),
            ("person_signal", "control"),
            ("daemon_reload", "signal"),
        ]
        text = running.cli("history", "svc").stdout
        assert "person_restart (via=http)" in text
        assert "person_signal (signal=SIGHUP, via=control)" in text
        everything = json.dumps(rows) + text
        assert TOKEN not in everything  # the channel, never its secret
    finally:
        assert stop_daemon(running) == 0
