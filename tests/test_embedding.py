"""The embedded API picks the runtime the process already installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: installing gevent patches the whole process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))},
        check=False,
    )


@pytest.mark.parametrize("installed", ["gevent", "threads"])
def test_start_tree_defaults_to_the_installed_runtime(installed: str) -> None:
    out = python(f"""
        import actors
        actors.install_runtime({installed!r})
        from supervision import SupervisorSpec, python_job, start_tree

        spec = SupervisorSpec(children=(python_job("j", "jobfuncs:ok"),))
        with start_tree(spec) as tree:
            assert tree.wait(10)
            print(tree.runtime, tree.result().ok)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [installed, "True"]


def test_an_explicit_runtime_that_conflicts_stays_an_error() -> None:
    out = python("""
        import actors
        actors.install_runtime("gevent")
        from supervision import RuntimeSetupError, SupervisorSpec, start_tree

        try:
            start_tree(SupervisorSpec(children=()), "threads")
        except RuntimeSetupError as exc:
            print("refused:", exc)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused: runtime 'threads' was asked for")


IGNORE_SIGCHLD = """
    import json, os, signal, sys, tempfile
    import actors
    actors.install_runtime({installed!r})
    from supervision import RuntimeSetupError, load_manifest, start_tree

    def tree_of(jobs):
        return load_manifest("version: 1\\nsupervisor: {{intensity: {{max_restarts: 0}}}}\\n" + jobs)

    COMMAND = "jobs:\\n  - name: c\\n    command: 'sleep 0.1; exit 3'\\n"
"""


def test_under_threads_a_tree_of_commands_refuses_a_process_that_ignores_sigchld() -> None:
    # The system reaps the children of such a process unread: no command's end could be known.
    out = python(
        IGNORE_SIGCHLD.format(installed="threads")
        + """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    with start_tree(tree_of("jobs:\\n  - name: p\\n    python: 'jobfuncs:ok'\\n")) as tree:
        print("python jobs run:", tree.wait(10) and tree.result().ok)
        try:
            tree.add_child(tree_of(COMMAND).root.children[0])
        except RuntimeSetupError as exc:
            print("add_child refused:", exc)
        print("children:", [c["name"] for c in tree.status()["children"]])
    import threading
    before = threading.active_count()
    try:
        start_tree(tree_of(COMMAND), on_event=lambda event: None)
    except RuntimeSetupError as exc:
        print("refused:", exc)
    print("threads left:", threading.active_count() - before)
    """
    )
    assert out.returncode == 0, out.stderr
    first, added, children, second, third = out.stdout.splitlines()
    assert first == "python jobs run: True"
    assert added.startswith("add_child refused: SIGCHLD is ignored in this process")
    assert children == "children: ['p']"
    assert second.startswith("refused: SIGCHLD is ignored in this process")
    assert second.endswith("restore it with signal.signal(signal.SIGCHLD, signal.SIG_DFL)")
    assert third == "threads left: 0"  # the refusal came before the event bus's thread


def test_under_threads_a_sigchld_ignored_after_the_start_fails_the_attempt_saying_so() -> None:
    out = python(
        IGNORE_SIGCHLD.format(installed="threads")
        + """
    go = os.path.join(tempfile.mkdtemp(), "go")
    jobs = f"jobs:\\n  - name: c\\n    command: 'while [ ! -e {go} ]; do sleep 0.01; done; exit 3'\\n"
    with start_tree(tree_of(jobs)) as tree:
        tree.started(10)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        open(go, "w").close()
        assert tree.wait(10)
        print(json.dumps(tree.status()["children"][0]["last_exit"]))
    """
    )
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout)
    assert last["code"] is None
    assert last["error"].startswith("command while [ ! -e ")
    assert "its exit status was lost: SIGCHLD is ignored in this process" in last["error"]


def test_under_threads_a_readiness_check_whose_status_was_lost_does_not_pass() -> None:
    # subprocess reads a lost status as 0: a check that failed would have passed.
    out = python(
        IGNORE_SIGCHLD.format(installed="threads")
        + """
    import threading
    from supervision import StateChanged
    never = os.path.join(tempfile.mkdtemp(), "never")
    jobs = (
        "jobs:\\n  - name: s\\n    service: true\\n    command: [sleep, '100']\\n"
        f"    ready: {{command: [test, -e, {never}], timeout: 1s, interval: 10ms}}\\n"
    )
    settled = threading.Event()

    def seen(event):
        if isinstance(event, StateChanged) and event.new.value not in ("pending", "starting"):
            settled.set()

    with start_tree(tree_of(jobs), on_event=seen) as tree:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        assert settled.wait(20)
        print(json.dumps(tree.status()["children"][0]))
    """
    )
    assert out.returncode == 0, out.stderr
    node = json.loads(out.stdout)
    assert node["state"] != "running", node
    assert "exit status was lost: SIGCHLD is ignored" in node["last_exit"]["error"], node


def test_under_gevent_an_ignored_sigchld_changes_nothing() -> None:
    # gevent's signal.signal keeps SIGCHLD for libev, which reads every exit itself.
    out = python(
        IGNORE_SIGCHLD.format(installed="gevent")
        + """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    with start_tree(tree_of(COMMAND)) as tree:
        assert tree.wait(10)
        print(tree.status()["children"][0]["last_exit"]["code"])
    ready = "jobs:\\n  - {name: s, service: true, command: [sleep, '100'], ready: {command: ['true']}}\\n"
    with start_tree(tree_of(ready)) as tree:
        assert tree.started(10)
        print(tree.status()["children"][0]["state"])
    """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "running"]
