"""The embedded API in a program of its own: its runtime, what start_tree takes, its logging."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervision import SpecError, SupervisorSpec, Tree, python_job, start_tree

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


# -- what start_tree takes -------------------------------------------------------------------------

TEXT = "version: 1\njobs:\n  - {name: a, command: 'true'}\n"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (TEXT, "got a string: load it with load_manifest(path_or_text) first"),
        (Path("jobs.yaml"), "got a PosixPath: load it with load_manifest(path_or_text) first"),
        (None, "got None"),
        (
            {"version": 1, "jobs": []},
            "got a mapping: load it with load_manifest(mapping) first, which takes a parsed one",
        ),
        (5, "got an integer"),
        (2.5, "got a number"),
        (object(), "got an object"),
        (SupervisorSpec, "got the class SupervisorSpec"),
        (
            python_job("a", "jobfuncs:ok"),
            "got a JobSpec: put it in one, SupervisorSpec(children=(spec,))",
        ),
    ],
)
def test_start_tree_refuses_what_is_not_a_tree_saying_what_to_do(given: object, said: str) -> None:
    with pytest.raises(SpecError) as caught:
        start_tree(given)  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        f"start_tree takes a Manifest or a SupervisorSpec; {said}"
    ), caught.value


# -- the manifest's runtime ------------------------------------------------------------------------

GEVENT_MANIFEST = """
    import actors
    actors.install_runtime({installed!r})
    from supervision import RuntimeSetupError, load_manifest, start_tree

    manifest = load_manifest("version: 1\\nruntime: gevent\\njobs:\\n  - {{name: a, command: 'true'}}\\n")
"""


def test_a_manifests_gevent_is_refused_saying_what_to_do_where_the_process_runs_threads() -> None:
    out = python(
        GEVENT_MANIFEST.format(installed="threads")
        + """
    try:
        start_tree(manifest)
    except RuntimeSetupError as exc:
        print(exc)
    with start_tree(manifest, "threads") as tree:  # named: it wins, as --runtime does
        assert tree.wait(10)
        print(tree.runtime, tree.result().ok)
    """
    )
    assert out.returncode == 0, out.stderr
    refusal, named = out.stdout.splitlines()
    assert refusal.startswith("the manifest says runtime: gevent, but this process runs threads")
    assert "actors.install_runtime('gevent')" in refusal
    assert "or remove runtime: from the manifest" in refusal
    assert named == "threads True"


def test_a_manifests_gevent_is_honoured_where_the_process_runs_gevent() -> None:
    out = python(
        GEVENT_MANIFEST.format(installed="gevent")
        + """
    with start_tree(manifest) as tree:
        assert tree.wait(10)
        print(tree.runtime, tree.result().ok)
    """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gevent", "True"]


# -- logging ---------------------------------------------------------------------------------------

GIVES_UP = """
    import logging, os, sys
    from supervision import load_manifest, start_tree

    os.environ["TOKEN"] = "s3cr3t-t0ken"
    manifest = load_manifest(
        "version: 1\\nsupervisor: {intensity: {max_restarts: 0}}\\n{logging}jobs:\\n"
        "  - name: bad\\n"
        "    command: 'echo token is $T; exit 3'\\n"
        "    env: {T: {secret: {env: TOKEN}}}\\n"
    )
"""


def gives_up(block: str = "", before: str = "", around: str = "") -> str:
    """A program whose tree's one job gives up: manifest ``block``, after ``before``, in ``around``."""
    body = "with start_tree(manifest) as tree:\n    assert tree.wait(20)\n"
    if around:
        body = f"{around}\n" + textwrap.indent(body, "    ")
    return (
        GIVES_UP.replace("{logging}", block)
        + textwrap.indent(textwrap.dedent(before), "    ")
        + textwrap.indent(body, "    ")
    )


def test_a_give_up_reaches_the_standard_librarys_logging_the_program_set_up() -> None:
    out = python(
        gives_up(
            before="""
                logging.basicConfig(
                    level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s"
                )
            """
        )
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    gave_up = [line for line in lines if "gave up" in line]
    assert len(gave_up) == 1, out.stdout
    assert gave_up[0].startswith("ERROR supervision bad: gave up"), gave_up
    output = [line for line in lines if line.startswith("INFO actors.command bad[1] ")]
    assert output == ["INFO actors.command bad[1] token is *** [path=bad attempt=1 stream=stdout]"]
    assert "s3cr3t-t0ken" not in out.stdout + out.stderr


def test_a_crash_loop_reaching_the_standard_library_is_summed_up() -> None:
    """Without a setup, a fast crash loop wrote one ERROR line per failure to the program's
    logging (a flood on stderr); its repeats are held and summed up, as in jobvisor's log."""
    out = python(
        """
        import logging, sys
        from supervision import load_manifest, start_tree

        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
        manifest = load_manifest(
            "version: 1\\n"
            "supervisor: {backoff: {initial: 0, max: 0}, intensity: {max_restarts: 60, within: 1m}}\\n"
            "jobs:\\n  - {name: loop, command: 'exit 3', restart: permanent}\\n"
        )
        with start_tree(manifest) as tree:
            assert tree.wait(30)
        """
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    failed = [line for line in lines if "loop: failed (attempt" in line]
    # the damper's keep, and the 61st, the give-up's cause, written in full right before it
    assert len(failed) == 4, out.stdout
    assert "loop: failed (attempt 61)" in failed[-1]
    summaries = [line for line in lines if "loop: failed" in line and "more times" in line]
    assert summaries, out.stdout
    assert sum(int(line.split("failed ")[1].split()[0]) for line in summaries) == 61 - 4
    assert "loop: gave up" in lines[-1] or any("loop: gave up" in line for line in lines)


def test_with_no_logging_set_up_a_give_up_still_shows_on_stderr() -> None:
    out = python(gives_up())
    assert out.returncode == 0, out.stderr
    assert "bad: gave up" in out.stderr, out.stderr
    assert "s3cr3t-t0ken" not in out.stderr


def test_configure_logging_applies_a_manifests_logging_block_and_owns_jobvisors_records(
    tmp_path: Path,
) -> None:
    log = tmp_path / "jobs.log"
    out = python(
        gives_up(
            block=f"logging: {{level: information, file: {log}}}\\n",
            before="""
                from supervision import configure_logging
                logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="stdlib %(message)s")
            """,
            around="with configure_logging(manifest):",
        )
    )
    assert out.returncode == 0, out.stderr
    written = log.read_text()
    assert written.count("bad: gave up") == 1, written
    assert "token is ***" in written
    assert "s3cr3t-t0ken" not in written + out.stdout + out.stderr
    # Not also handed to the program's own logging: that would print each line twice.
    assert "gave up" not in out.stdout, out.stdout


def test_a_manifests_logging_block_left_unapplied_is_said() -> None:
    out = python(gives_up(block="logging: {level: debug}\\n"))
    assert out.returncode == 0, out.stderr
    assert (
        "the manifest's logging: block (level: debug) is not applied by start_tree: to apply it, "
        "call supervision.configure_logging(manifest) before start_tree"
    ) in out.stderr, out.stderr


def test_a_program_that_set_up_logbook_gets_the_records_there_and_not_twice() -> None:
    out = python(
        gives_up(
            before="""
                import logbook
                logging.basicConfig(level=logging.INFO, stream=sys.stdout)
                logbook.StderrHandler(format_string="logbook {record.message}").push_application()
            """
        )
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("logbook bad: gave up") == 1, out.stderr
    assert "gave up" not in out.stdout, out.stdout


def test_records_sent_back_into_logbook_by_the_program_do_not_go_round() -> None:
    # redirect_logging sends the standard library's records to logbook, which has no handler:
    # they must not come back through jobvisor's Loggers.
    out = python(
        gives_up(
            before="""
                from logbook.compat import redirect_logging
                redirect_logging()
            """
        )
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr


def test_both_packages_say_they_are_typed_and_the_wheel_ships_it() -> None:
    """PEP 561: without py.typed a user's mypy --strict calls every import of ours untyped."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in ("actors", "supervision"):
        assert (ROOT / package / "py.typed").is_file(), package
        assert package in config["packages"]
        assert "py.typed" in config["package-data"].get(package, []), package


# -- leaving a with block ------------------------------------------------------------------------

CTRL_C = """
    import logging, sys, time
    import actors
    actors.install_runtime({runtime!r})
    from supervision import SupervisorSpec, python_job, start_tree

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    # A thread job that ignores its stop, with a grace no one waits out.
    spec = SupervisorSpec(children=(python_job("j", "jobfuncs:stubborn", "j", grace=45.0),))
    try:
        with start_tree(spec) as tree:
            assert tree.started(10)
            # Started is not yet running: a stop that comes before the job's thread took up
            # its run skips the run, and stops at once, with nothing to kill (a loaded machine).
            import jobfuncs
            assert jobfuncs.EVENTS["j.running"].wait(10)
            print("ready", flush=True)
            while True:  # the program's own work, until Ctrl-C
                time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted", tree.ended, flush=True)
"""


@dataclass(frozen=True)
class _TwoCtrlCs:
    """How a program took two Ctrl-Cs: its exit code, the seconds from the second to its end,
    and what it printed to stdout and stderr."""

    code: int
    took: float
    out: str
    said: str


def _two_ctrl_cs(
    program: str, tmp_path: Path, stopping: str, pid_file: Path | None = None
) -> _TwoCtrlCs:
    """Run ``program`` until it prints ``ready`` (and writes ``pid_file``, its command's pid),
    Ctrl-C it, and once its log says ``stopping``, Ctrl-C it again. A TERM-deaf command the
    program left (its pid in ``pid_file``) is killed whatever happened: one was found looping
    from an interrupted run."""
    from faultkit import gone, wait_until

    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(program)],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))},
        )
    pid = None
    try:
        # The whole line: a Ctrl-C between print's "ready" and its newline printed
        # "readyinterrupted" (seen once in a full run under gevent).
        wait_until(lambda: "ready\n" in out.read_text(), "the program runs", proc=proc)
        if pid_file is not None:
            pid = int(
                wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), "its pid")
            )
        proc.send_signal(signal.SIGINT)  # the first: a stop begins, with a grace no one waits
        wait_until(lambda: stopping in err.read_text(), "the stop began", proc=proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)  # the second: no waiting out that grace
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if pid is not None and not gone(pid):
            # It leads a session of its own, so its group is its pid.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    return _TwoCtrlCs(code, took, out.read_text(), err.read_text())


@pytest.mark.parametrize("installed", ["threads", "gevent"])
def test_a_second_ctrl_c_while_a_with_block_stops_kills_at_once(
    installed: str, tmp_path: Path
) -> None:
    ran = _two_ctrl_cs(CTRL_C.format(runtime=installed), tmp_path, "j: stopping")
    said = ran.said
    assert ran.took < 5, f"the second Ctrl-C took {ran.took:.1f}s to end the program: {said}"
    assert ran.code == 0, said
    assert ran.out.split() == ["ready", "interrupted", "True"], said
    assert "interrupted while the tree stopped: killing every child now" in said
    assert "j: killed" in said, said


# -- a stop out of time, then a kill ---------------------------------------------------------------


def _stubborn_command_tree(key: str) -> SupervisorSpec:
    """A command that ignores SIGTERM, with a grace of 30 s: only a kill ends it soon."""
    from actors import CommandWork
    from supervision import JobSpec

    up = f"/tmp/jv-{os.getpid()}-{key}"
    job = JobSpec(
        name="deaf",
        work=CommandWork(shell=f"trap '' TERM; touch {up}; while :; do sleep 0.05; done", grace=30),
        grace=30.0,
    )
    return SupervisorSpec(name=key, children=(job,))


def _tree_threads() -> Counter[str]:
    """How many threads of each name a tree has (every tree's scheduler has the same name)."""
    import threading

    return Counter(
        t.name
        for t in threading.enumerate()
        if t.is_alive() and t.name.startswith(("jobvisor-scheduler", "jv-events", "jv-t"))
    )


def test_a_tree_ended_by_its_kill_leaves_no_thread_behind() -> None:
    """stop(timeout) out of time, kill(), wait_ended(): the scheduler and the event thread go
    with the root, as after a stop that ended it (they stayed until exit)."""
    import threading

    from faultkit import wait_until

    before = _tree_threads()
    trees = [start_tree(_stubborn_command_tree(f"k{i}")) for i in range(5)]
    ups = [Path(f"/tmp/jv-{os.getpid()}-k{i}") for i in range(5)]
    try:
        wait_until(lambda: all(up.exists() for up in ups), "every command runs")
        assert not any(tree.stop(0.2) for tree in trees), "a command ignoring SIGTERM ended"
        assert all(isinstance(tree.kill(), bool) for tree in trees)  # at once by default
        assert all(tree.wait_ended(10) for tree in trees)
        # What the ended trees still had goes by itself: wait on those threads' ends.
        for thread in threading.enumerate():
            if thread.name in _tree_threads() - before:
                thread.join(10)
        left = _tree_threads() - before
        assert not left, f"threads left behind by killed trees: {dict(left)}"
    finally:
        for tree in trees:
            tree.kill()
            tree.stop(10)
        for up in ups:
            up.unlink(missing_ok=True)


def test_kill_with_a_timeout_waits_for_the_tree_and_its_threads() -> None:
    from faultkit import wait_until

    before = _tree_threads()
    tree = start_tree(_stubborn_command_tree("kt"))
    up = Path(f"/tmp/jv-{os.getpid()}-kt")
    try:
        wait_until(up.exists, "the command runs")
        assert tree.stop(0.2) is False
        assert tree.kill(10) is True
        assert tree.ended
        assert not _tree_threads() - before, dict(_tree_threads() - before)
        assert tree.kill(1) is True  # once ended, at once
    finally:
        tree.kill()
        tree.stop(10)
        up.unlink(missing_ok=True)


# -- acting on a child does not wait out its stop --------------------------------------------------


def _slow_stopping_tree(key: str) -> SupervisorSpec:
    """Two thread jobs that ignore their stop, with a grace of 70 s: only a kill ends them."""
    return SupervisorSpec(
        children=(
            python_job("slow", "jobfuncs:stubborn", f"{key}-slow", grace=70.0),
            python_job("other", "jobfuncs:stubborn", f"{key}-other", grace=70.0),
        )
    )


def _state(tree: Tree, path: str) -> str:
    [node] = [c for c in tree.status()["children"] if c["name"] == path]
    return str(node["state"])


@pytest.mark.parametrize("action", ["stop_child", "restart", "remove_child"])
def test_acting_on_a_child_with_timeout_0_returns_once_the_supervisor_took_it(action: str) -> None:
    """With ``timeout=0`` the stop goes on after the call returns; out of a timeout, the
    call says so with a JobvisorError (a raw pykka Timeout came after 60 s)."""
    from actors import ActionTimeoutError

    tree = start_tree(_slow_stopping_tree(action))
    try:
        assert tree.started(10)
        sent = time.monotonic()
        assert getattr(tree, action)("slow", timeout=0) is None
        assert time.monotonic() - sent < 5
        assert _state(tree, "slow") == "stopping"  # a removed child goes once it has stopped
        with pytest.raises(ActionTimeoutError) as caught:
            getattr(tree, action)("other", timeout=0.3)
        said = str(caught.value)
        assert said.startswith(f"{action}('other'): ")
        assert "goes on" in said, said
        assert "longer timeout" in said, said
        assert _state(tree, "other") == "stopping"
    finally:
        assert tree.kill(15)


def test_status_while_another_thread_stops_the_tree_answers_and_never_says_it_stopped_early() -> (
    None
):
    """Between the root's end and the tree's noting it, ``status`` raised ``TreeStoppedError``
    ("the tree has stopped") while ``ended`` was False; under gevent a loop polling it until
    ``ended`` spun for good, never yielding (embedded-API trial h233). It now answers: the
    final document, once the end is noted."""
    import threading

    from supervision import Schedule

    states = Counter()
    for n in range(20):
        job = python_job("s", "jobfuncs:block", f"status-stop-{n}", schedule=Schedule(service=True))
        tree = start_tree(SupervisorSpec(children=(job,)))
        assert tree.started(10)
        stopper = threading.Thread(target=tree.stop, args=(10,))
        stopper.start()
        try:
            while not tree.ended:
                states[tree.status(timeout=10)["state"]] += 1  # no sleep: it must yield itself
            states[tree.status()["state"]] += 1
        finally:
            stopper.join(15)
    assert set(states) <= {"running", "stopping", "stopped"}, states
    assert states["stopped"] >= 20, states


def test_a_timeout_or_a_subscriber_of_the_wrong_kind_is_refused_before_anything_is_done() -> None:
    """A string or None where a method takes seconds failed inside with a bare TypeError, and
    ``stop_child`` had stopped the child first; a subscriber that is no callable was taken,
    then logged at every event; a list of breakers failed with an AttributeError (embedded-API
    trial h233)."""
    from supervision import Schedule

    job = python_job("s", "jobfuncs:block", "wrong-kinds", schedule=Schedule(service=True))
    spec = SupervisorSpec(children=(job,))
    with pytest.raises(SpecError, match=r"^start_tree: on_event: expected a callable"):
        start_tree(spec, on_event="print")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"^start_tree: breakers: expected a mapping of names"):
        start_tree(spec, breakers=[1, 2])  # type: ignore[arg-type]
    tree = start_tree(spec)
    try:
        assert tree.started(10)
        calls = {
            "stop_child": lambda t: tree.stop_child("s", timeout=t),
            "restart": lambda t: tree.restart("s", timeout=t),
            "remove_child": lambda t: tree.remove_child("s", timeout=t),
            "start_child": lambda t: tree.start_child("s", timeout=t),
            "status": lambda t: tree.status(timeout=t),
            "wait": tree.wait,
            "started": tree.started,
            "wait_ended": tree.wait_ended,
            "stop": tree.stop,
            "kill": tree.kill,
        }
        for method, call in calls.items():
            for wrong in ("5", -1, float("nan"), True):
                with pytest.raises(SpecError, match=rf"^Tree.{method}: timeout: expected seconds"):
                    call(wrong)
        with pytest.raises(
            SpecError, match=r"^Tree.status: timeout: expected seconds >= 0, got None"
        ):
            tree.status(timeout=None)  # type: ignore[arg-type]
        assert _state(tree, "s") == "running", "nothing was done"
        assert tree.status(timeout=1e300)["state"] == "running"  # past any wait: the longest
        with pytest.raises(SpecError, match=r"^Tree.subscribe: callback: expected a callable"):
            tree.subscribe(5)  # type: ignore[arg-type]
        # One that takes no event was taken, then failed in the log at every event (h244).
        with pytest.raises(SpecError, match=r"cannot be called with one event"):
            tree.subscribe(lambda: None)  # type: ignore[arg-type,misc]
        tree.subscribe(print).cancel()  # no signature Python can tell: taken
        # Taken and handed to subscribers, who read an event's fields (h244).
        with pytest.raises(SpecError, match=r"^announce: expected an event .*, got 'hello'"):
            tree.announce("hello")  # type: ignore[arg-type]
    finally:
        assert tree.stop(15)
    with pytest.raises(SpecError, match=r"^start_tree: sink: expected a callable"):
        start_tree(spec, sink=5)  # type: ignore[arg-type]


class _BrokenSink:
    """A sink that raises on every event, and from its hooks (metrics-like)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: object) -> None:
        self.calls += 1
        raise RuntimeError("sink broke")

    def on_state(self, path: str, old: object, new: object) -> None:
        raise RuntimeError("on_state broke")


def test_a_sink_that_raises_is_logged_and_the_tree_goes_on(logs: Any) -> None:
    """Called inline in a supervisor's turn, its exception was taken for a bug of jobvisor's:
    the root killed every child and failed, and ``stop`` raised it once (h244)."""
    from faultkit import wait_until

    from supervision import Schedule

    sink = _BrokenSink()
    spec = SupervisorSpec(
        children=(
            python_job("x", "jobfuncs:ok", "sink-x"),
            python_job("svc", "jobfuncs:block", "sink-svc", schedule=Schedule(service=True)),
        )
    )
    tree = start_tree(spec, sink=sink)
    try:
        assert tree.started(10)
        assert _state(tree, "svc") == "running"
        wait_until(lambda: _state(tree, "x") == "succeeded", "x succeeded")
    finally:
        assert tree.stop(15)
    status = tree.status()
    assert status["state"] == "stopped", status
    assert {c["path"]: c["state"] for c in status["children"]}["x"] == "succeeded"
    assert sink.calls > 2
    said = [r for r in logs.records if "the tree's sink" in r.message]
    assert {r.level_name for r in said} == {"ERROR"}
    first = [r for r in said if r.exc_info]
    # One in full for each kind (the call's and the hook's), the repeats summed up later.
    assert len(first) == 2, [r.message for r in said]
    assert sorted(r.message.split(" raised on ")[0] for r in first) == [
        "the tree's sink test_embedding._BrokenSink",
        "the tree's sink test_embedding._BrokenSink.on_state",
    ]
    assert not [r for r in logs.records if "internal error" in r.message]


def test_a_stop_of_what_is_not_running_still_answers_at_once() -> None:
    from supervision import NoSuchChildError

    tree = start_tree(_slow_stopping_tree("answers"))
    try:
        assert tree.started(10)
        with pytest.raises(NoSuchChildError):
            tree.stop_child("nosuch", timeout=0)
        with pytest.raises(NoSuchChildError):
            tree.restart("nosuch", timeout=0)
    finally:
        assert tree.kill(15)


# -- a tree left running at exit -------------------------------------------------------------------

LEFT_RUNNING = """
    import logging, sys, time
    import actors
    actors.install_runtime({runtime!r})
    from supervision import CommandWork, JobSpec, SupervisorSpec, start_tree

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    # A command that ignores SIGTERM, with a grace no one waits out; the program never stops
    # its tree: the exit does.
    work = CommandWork(shell="trap '' TERM; echo $$ > {pid}; while :; do sleep 0.05; done", grace=60)
    tree = start_tree(SupervisorSpec(children=(JobSpec(name="deaf", work=work, grace=60.0),)))
    assert tree.started(10)
    print("ready", flush=True)
    try:
        while True:  # the program's own work, until Ctrl-C
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


@pytest.mark.parametrize("installed", ["threads", "gevent"])
def test_a_ctrl_c_while_the_exit_stops_a_tree_kills_at_once_saying_so(
    installed: str, tmp_path: Path
) -> None:
    from faultkit import gone, wait_until

    pid_file = tmp_path / "pid"
    program = LEFT_RUNNING.format(runtime=installed, pid=pid_file)
    # The first Ctrl-C ends the program, leaving its tree running; its exit stops the tree:
    # the command gets its SIGTERM, which it ignores.
    ran = _two_ctrl_cs(program, tmp_path, "deaf: stopping", pid_file)
    said = ran.said
    assert ran.took < 5, f"the second Ctrl-C took {ran.took:.1f}s to end the program: {said}"
    assert "Exception ignored" not in said, said
    assert "Traceback" not in said, said  # (gevent's hub prints the bare name of what it saw)
    assert (
        "interrupted while the exit stopped the trees left running: killing every child now" in said
    )
    assert "deaf: killed" in said, said
    pid = int(pid_file.read_text())
    wait_until(lambda: gone(pid), "the command ended")


# -- a plain signal handler under gevent -----------------------------------------------------------

# Under gevent Python runs a signal.signal handler in the hub greenlet when the signal comes
# while the main greenlet waits, and nothing may wait there: tree.stop() in it raised gevent's
# BlockingSwitchOutError, in the handler and again out of the main wait, and left the tree half
# stopped (svc running, the root stopping, never ended).
SIGTERMED = """
    import actors; actors.install_runtime("gevent")
    import signal, time
    from supervision import CommandWork, JobSpec, Schedule, SupervisorSpec, start_tree

    svc = JobSpec(name="svc", work=CommandWork(argv=("sleep", "100")), schedule=Schedule(service=True))
    tree = start_tree(SupervisorSpec(children=(svc,)))
    said = []
    signal.signal(signal.SIGTERM, lambda *_: said.append(tree.stop(10)))
    assert tree.started(10)
    print("ready", flush=True)
{wait}
    print("ended", said, tree.ended, tree.status()["state"], flush=True)
    print([child["state"] for child in tree.status()["children"]], tree.stop(10), flush=True)
"""

DUMPED = """
    import actors; actors.install_runtime("gevent")
    import signal, time
    from supervision import CommandWork, JobSpec, JobvisorError, Schedule, SupervisorSpec, start_tree

    svc = JobSpec(name="svc", work=CommandWork(argv=("sleep", "100")), schedule=Schedule(service=True))
    tree = start_tree(SupervisorSpec(children=(svc,)))
    said = []

    def dump(*_):  # a "dump the status on SIGUSR1" handler, and other calls that wait
        for name, call in (
            ("status", lambda: tree.status()["state"]),
            ("restart", lambda: tree.restart("svc")),
            ("wait_ended", lambda: tree.wait_ended(5)),
            ("started", tree.started),
        ):
            try:
                said.append(f"{name} {call()}")
            except JobvisorError as exc:
                said.append(f"{name} {type(exc).__name__}: {exc}")
            print(said[-1], flush=True)

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGTERM, lambda *_: tree.stop())
    assert tree.started(10)
    print("ready", flush=True)
    tree.wait(60)
    print("ended", tree.ended, flush=True)
    while len(said) < 8:  # the dump once the tree has ended
        time.sleep(0.05)
    print([(child["state"], child["restarts"]) for child in tree.status()["children"]], flush=True)
"""


@dataclass(frozen=True)
class _Signalled:
    """What a program that was sent signals printed to stdout and stderr, and its exit code."""

    code: int
    out: str
    err: str


def _signalled(program: str, tmp_path: Path, steps: list[tuple[int, str]]) -> _Signalled:
    """Run ``program`` until it prints ``ready``; send each signal of ``steps`` in turn, each
    once the program has printed what its step waits for; then wait for the program's end."""
    from faultkit import proc_state, wait_until

    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(program)],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "tests")))},
        )
    try:
        wait_until(lambda: "ready\n" in out.read_text(), "the program runs", proc=proc)
        for signum, then in steps:
            # Blocked in its wait (in gevent's hub), not just past its print: a signal before
            # that runs its handler in the main greenlet, not the hub (review r56).
            wait_until(lambda: proc_state(proc.pid) == "S", "it waits", proc=proc)
            proc.send_signal(signum)
            # Or its end: what it said on the way out is what the test then shows.
            wait_until(lambda then=then: then in out.read_text() or proc.poll() is not None, then)
            if proc.poll() is not None:
                break
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _Signalled(code, out.read_text(), err.read_text())


@pytest.mark.parametrize(
    "wait",
    [
        "tree.wait(30)",
        "with tree:  # leaving it stops the tree again: it has ended\n    tree.wait_ended(30)",
        "while not tree.ended:  # an idle program, its main greenlet asleep\n    time.sleep(0.05)",
    ],
    ids=["wait", "with", "idle"],
)
def test_a_plain_sigterm_handler_under_gevent_stops_the_tree(wait: str, tmp_path: Path) -> None:
    """The stop begins in the hub and says False at once, as from a subscriber; the main
    greenlet's wait returns once the tree has ended, stopped whole, and no traceback is shown."""
    program = SIGTERMED.format(wait=textwrap.indent(wait, "    "))
    ran = _signalled(program, tmp_path, [(signal.SIGTERM, "ended")])
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[1:] == ["ended [False] True stopped", "['stopped'] True"], ran
    assert ran.err == ""


def test_a_plain_sigusr1_handler_under_gevent_is_told_what_cannot_wait_there(
    tmp_path: Path,
) -> None:
    """status() and the other calls that wait for an answer say why they cannot in the hub and
    what to do, and do nothing; what needs no wait is answered (started(), and every answer
    once the tree has ended). The tree runs on, and a SIGTERM's stop ends it whole."""
    ran = _signalled(
        DUMPED,
        tmp_path,
        [
            (signal.SIGUSR1, "started True"),
            (signal.SIGTERM, "ended True"),
            (signal.SIGUSR1, "wait_ended True"),
        ],
    )
    assert ran.code == 0, ran.err
    assert ran.err == ""
    hub = (
        "was called in gevent's hub, where nothing may wait (a signal.signal handler runs "
        "there under the gevent runtime): install the handler with "
        "gevent.signal_handler(signum, handler), which runs it in a greenlet of its own; "
        "tree.stop() works in either (in the hub it begins the stop and returns False)"
    )
    assert ran.out.splitlines()[1:] == [
        f"status InHubError: Tree.status() {hub}",
        f"restart InHubError: Tree.restart('svc') {hub}",
        f"wait_ended InHubError: Tree.wait_ended() {hub}",
        "started True",
        "ended True",
        "status stopped",
        "restart TreeStoppedError: the tree has stopped; cannot restart 'svc'",
        "wait_ended True",
        "started True",
        "[('stopped', 0)]",
    ], ran


# -- two trees in one process ----------------------------------------------------------------------

TWO_TREES = """
    import logging, sys
    from supervision import Backoff, Intensity, RestartPolicy, SupervisorSpec, python_job, start_tree

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    once = RestartPolicy(backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=0))
    trees = [
        start_tree(SupervisorSpec(name=name, policy=once, children=(python_job("ingest", "jobfuncs:fail"),)))
        for name in {names!r}
    ]
    for tree in trees:
        assert tree.wait(20)
    for tree in trees:
        assert tree.stop(20)
"""


def test_two_trees_records_say_which_tree_each_is_of() -> None:
    out = python(TWO_TREES.format(names=("orders", "users")))
    assert out.returncode == 0, out.stderr
    started = sorted(line for line in out.stdout.splitlines() if "ingest: started" in line)
    assert len(started) == 2, out.stdout
    assert "[tree=orders path=ingest" in started[0], started
    assert "[tree=users path=ingest" in started[1], started


def test_one_tree_of_the_default_name_logs_as_it_did() -> None:
    out = python(TWO_TREES.format(names=("root",)))
    assert out.returncode == 0, out.stderr
    assert "ingest: started (start 1) [path=ingest]" in out.stdout, out.stdout
    assert "tree=" not in out.stdout, out.stdout
    named = python(TWO_TREES.format(names=("orders",)))
    assert "[tree=orders path=ingest" in named.stdout, named.stdout
