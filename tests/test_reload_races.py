"""Reloads that race a group's start or escalation (review 37c): nothing a reload changes is lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import RUNTIME
from faultkit import Jobvisor, wait_until
from test_daemon import _children_running, _jv, _tree_nodes


def _manifest(go: Path, version: int) -> str:
    slowstop = {
        "name": "slowstop",
        "service": True,
        "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.02; done"],
        "stop": {"grace": "600ms"},
    }
    touch = f"trap 'touch {go}; exit 0' TERM; while :; do sleep 0.02; done"
    opener = {"name": "opener", "service": True, "command": ["sh", "-c", touch]}
    gate = {
        "name": "gate",
        "service": True,
        "command": ["sleep", "1004"],
        "ready": {"command": ["test", "-e", str(go)], "interval": "20ms", "timeout": "30s"},
    }
    a_cmd = ["sleep", "1001"] if version == 1 else ["sleep", "2001"]
    members = [
        {"name": "a", "service": True, "command": a_cmd},
        {"name": "b", "service": True, "command": ["sleep", "1002"]},
    ]
    jobs: list[dict[str, Any]] = [slowstop, opener] if version == 1 else []
    jobs += [gate, {"group": "g", "jobs": members}]
    return json.dumps({"version": 1, "runtime": RUNTIME, "jobs": jobs})


def test_changed_job_in_group_that_starts_during_reload(tmp_path: Path) -> None:
    go, manifest, state = tmp_path / "go", tmp_path / "jobs.yaml", tmp_path / ".jobvisor"
    manifest.write_text(_manifest(go, 1))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        nodes = wait_until(lambda: _tree_nodes(state), "the daemon answers", proc=jv.proc)
        assert nodes["g"]["state"] == "pending"
        manifest.write_text(_manifest(go, 2))
        r = _jv(tmp_path, "reload")
        assert r.returncode == 0, r.stderr
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/a", {}).get("state") == "running",
            "g/a runs",
            proc=jv.proc,
        )
        # The changed command runs (it was lost for good: the group took the old one).
        wait_until(
            lambda: ("sleep", "2001") in _children_running(jv.pid),
            "g/a's new command",
            proc=jv.proc,
        )
        assert _jv(tmp_path, "reload").stdout == "no change\n"
        assert _jv(tmp_path, "restart", "g").returncode == 0
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/a", {}).get("state") == "running",
            "g/a runs",
            proc=jv.proc,
        )
        found = sorted(k for k in _children_running(jv.pid) if k[0] == "sleep")
        assert ("sleep", "2001") in found, found
    finally:
        jv.terminate()
        jv.close()


def _esc_manifest(trig: Path, a_cmd: str = "3002") -> str:
    crasher = {
        "name": "crasher",
        "service": True,
        "command": ["sh", "-c", f"while [ ! -e {trig} ]; do sleep 0.02; done; rm {trig}; exit 1"],
    }
    slowstop = {
        "name": "slowstop",
        "service": True,
        "command": ["sh", "-c", "trap '' TERM; while :; do sleep 0.02; done"],
        "stop": {"grace": "3s"},
    }
    members = [crasher, slowstop, {"name": "a", "service": True, "command": ["sleep", a_cmd]}]
    group = {
        "group": "g",
        "on_exhausted": "escalate",
        "intensity": {"max_restarts": 0, "within": "60s"},
        "jobs": members,
    }
    return json.dumps({"version": 1, "runtime": RUNTIME, "jobs": [group]})


def test_replace_while_group_escalates(tmp_path: Path) -> None:
    trig, manifest, state = tmp_path / "trig", tmp_path / "jobs.yaml", tmp_path / ".jobvisor"
    manifest.write_text(_esc_manifest(trig))
    jv = Jobvisor(tmp_path, "daemon", "--runtime", RUNTIME)
    try:
        wait_until(
            lambda: (n := _tree_nodes(state)) and n.get("g/slowstop", {}).get("state") == "running",
            "running",
            proc=jv.proc,
        )
        trig.touch()
        wait_until(
            lambda: (n := _tree_nodes(state)) and n["g/slowstop"]["state"] == "stopping",
            "g escalates, slowstop stopping",
            proc=jv.proc,
        )
        manifest.write_text(_esc_manifest(trig, "3003"))
        # g/a's replace: removed, then not added (g escalates): refused, as before.
        r = _jv(tmp_path, "reload")
        assert r.returncode == 1
        assert "g/a: not added, g is escalating" in r.stderr
        wait_until(
            lambda: (
                (n := _tree_nodes(state))
                and n.get("g", {}).get("state") == "running"
                and n.get("g/slowstop", {}).get("state") == "running"
            ),
            "g back",
            proc=jv.proc,
            timeout=15,
        )
        # The next reload adds it (every later one failed: the daemon still counted it in g).
        r = _jv(tmp_path, "reload")
        assert (r.returncode, r.stdout) == (0, "add g/a\n"), r.stderr
        assert _jv(tmp_path, "reload").stdout == "no change\n"
        wait_until(lambda: ("sleep", "3003") in _children_running(jv.pid), "g/a", proc=jv.proc)
    finally:
        jv.terminate()
        jv.close()
