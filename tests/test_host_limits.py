"""A host that runs out of things: tasks (threads) and disk space, through real processes.

A thread limit is made real with a cgroup's ``pids.max`` (as root, where the pids
controller is writable) and with ``RLIMIT_NPROC`` for a second user (the kernel never
applies it to root); a full disk with a small tmpfs (as root). Each test skips with
its reason where it cannot make the limit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RUNTIME
from faultkit import ENV, ROOT, Jobvisor, wait_until, why_not_as_nobody

NO_THREAD = (
    "could not start: no thread could be started (the process or cgroup limit on tasks, "
    "RLIMIT_NPROC / pids.max, is reached)"
)
GLUED = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:")  # a stamp's start, past a line's own
STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (stdout|stderr) \d+ ")

# Thirty services, each a thread (threads runtime) and a process: far more tasks than the
# limits below let the daemon have.
SERVICES = "version: 1\nsupervisor:\n  backoff: {initial: 100ms, max: 300ms}\n" + (
    "  intensity: {max_restarts: 100000, within: 10s}\njobs:\n"
    + "".join(
        f"  - {{name: s{n}, command: [sleep, '3600'], service: true, restart: permanent}}\n"
        for n in range(30)
    )
)


# -- a real limit on tasks ------------------------------------------------------------------------

_names = itertools.count()


def _pids_root() -> Path | None:
    """Where a pids cgroup can be made: cgroup v1's pids hierarchy, or v2 with pids on."""
    v1 = Path("/sys/fs/cgroup/pids")
    if (v1 / "cgroup.procs").exists():
        return v1
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.subtree_control"
    if controllers.exists() and "pids" in controllers.read_text().split():
        return v2
    return None


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A fresh pids cgroup (its limit is the test's to write); removed after, its processes
    killed by pid first."""
    if os.geteuid() != 0:
        pytest.skip("making a pids cgroup needs root")
    root = _pids_root()
    if root is None:
        pytest.skip("no pids cgroup controller (v1 pids hierarchy, or v2 with pids enabled)")
    group = root / f"jv-test-{os.getpid()}-{next(_names)}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a pids cgroup at {group}: {exc.strerror}")
    try:
        yield group
    finally:
        (group / "pids.max").write_text("max")
        deadline = time.monotonic() + 10
        while True:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:  # what the test started and left: a job's sleep
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(0.05)
        group.rmdir()


def _in_cgroup(group: Path) -> tuple[str, ...]:
    return ("sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh")


def _assert_survives_the_limit(jv: Jobvisor, log: Path, lift: Callable[[], None]) -> None:
    """The tree runs on while jobs cannot get a thread (or a process); SIGTERM ends it, 0.

    ``lift`` lifts the limit before the stop, so that the stop is the usual one (a stop
    under the limit: ``test_a_stop_with_no_thread_left_is_done_inline_and_said_in_one_line``).
    """

    def said(text: str) -> bool:
        return log.exists() and text in log.read_text()

    try:
        # Some jobs failed to start, and were restarted by policy, and failed again.
        # (a start that got no thread failed before its attempt: its start is numbered)
        wait_until(
            lambda: said("failed (attempt 2)") or said("failed (start 2)"),
            "restarts under the limit",
            proc=jv.proc,
        )
        if RUNTIME == "threads":  # under gevent a job's task is a greenlet: no thread to refuse
            wait_until(lambda: said(NO_THREAD), "a start without a thread", proc=jv.proc)
        time.sleep(1)  # the limit holds a while: the tree must not fail meanwhile
        assert jv.proc.poll() is None, jv.stderr
        assert "root supervisor failed" not in log.read_text()
        lift()
        assert jv.terminate() == 0, jv.stderr + log.read_text()
    finally:
        jv.close()
    text = log.read_text() + jv.stderr
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    assert "can't start new thread" not in text, text
    assert "root supervisor failed" not in text, text


@pytest.mark.timeout(120)
def test_a_daemon_in_a_cgroup_out_of_tasks_fails_the_starts_and_runs_on(
    tmp_path: Path, pids_cgroup: Path
) -> None:
    """pids.max reached: the attempts that get no thread fail in one line, as a process that
    cannot fork does, and are restarted by policy; the log's own threads never take a
    supervisor down, and the daemon stops cleanly (it failed the root, exit 1, tracebacks)."""
    (tmp_path / "jobs.yaml").write_text(SERVICES)
    (pids_cgroup / "pids.max").write_text("30")
    log = tmp_path / "d.log"
    jv = Jobvisor(
        tmp_path,
        "daemon",
        "--runtime",
        RUNTIME,
        "--log-file",
        str(log),
        prefix=_in_cgroup(pids_cgroup),
    )
    _assert_survives_the_limit(jv, log, lambda: (pids_cgroup / "pids.max").write_text("max"))


@pytest.mark.timeout(120)
def test_a_daemon_under_rlimit_nproc_fails_the_starts_and_runs_on() -> None:
    """RLIMIT_NPROC binds a user other than root (the kernel exempts uid 0): a daemon as
    nobody, with room for a few tasks only. Nobody's limit cannot be raised from outside
    here (no CAP_SYS_RESOURCE): processes of nobody's, started first, hold room that
    their end gives back for the stop."""
    why = why_not_as_nobody()
    if why is not None:
        pytest.skip(why)
    if subprocess.run(["ps", "-u", "65534"], capture_output=True, check=False).returncode == 0:
        pytest.skip("nobody runs processes here: its RLIMIT_NPROC count is not ours alone")
    setpriv = shutil.which("setpriv") or "setpriv"
    nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    where = Path(tempfile.mkdtemp(prefix="jv-nproc-"))
    held = [subprocess.Popen([*nobody, "sleep", "600"]) for _ in range(20)]
    try:
        os.chown(where, 65534, 65534)
        (where / "jobs.yaml").write_text(SERVICES)
        limit = 30 + len(held)
        # Set as root, kept through setpriv's change of user and its exec of jobvisor.
        prefix = (
            sys.executable,
            "-c",
            (
                "import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_NPROC, ({limit}, {limit})); "
                "os.execv(sys.argv[1], sys.argv[1:])"
            ),
            *nobody,
        )
        log = where / "d.log"
        # The daemon: ``run``'s stop under the limit is the test further down's.
        jv = Jobvisor(where, "daemon", "--runtime", RUNTIME, "--log-file", str(log), prefix=prefix)
        _assert_survives_the_limit(jv, log, lambda: _end(held))
    finally:
        _end(held)
        _kill_left_in(where)
        shutil.rmtree(where, ignore_errors=True)


def _end(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _kill_left_in(where: Path) -> None:
    """Kill, by pid, the processes left running in ``where`` (a killed run's jobs)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cwd").readlink() == where:
                    os.kill(int(entry.name), 9)


# The log's own helper thread (the teller of a crash loop's summaries) cannot start: a
# process in a cgroup whose limit is the tasks it has now.
# The scripts' process joins the cgroup ``group`` at the limit of the tasks it has now: no
# thread can start (checked, or the script ends saying the limit does not hold).
_AT_ITS_LIMIT = """
with open(group + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
with open(group + "/pids.max", "w") as f:
    f.write(str(len(os.listdir("/proc/self/task"))))
try:
    threading.Thread(target=lambda: None).start()
except RuntimeError:
    pass
else:
    sys.exit("a thread started: the limit does not hold")
"""


_TELLER_CANNOT_START = """
import logbook, os, sys, threading
from supervision._logging import configure_logging, held_back
from supervision._spec import LoggingSpec

setup = configure_logging(LoggingSpec(level="information", file=sys.argv[1]))
log = logbook.Logger("supervision")
group = sys.argv[2]
#AT_ITS_LIMIT
for n in range(12):
    if not held_back(log, logbook.ERROR, "crash", "{}: failed: {}", ("crash", "boom"), "boom"):
        log.error("{}: failed: {}", "crash", "boom", extra={"path": "crash", "failure": "boom"})
log.info("after the loop")
setup.close()
print("closed")
""".replace("#AT_ITS_LIMIT\n", _AT_ITS_LIMIT)


def test_a_crash_loops_summary_without_a_thread_to_tell_it_comes_inline(
    tmp_path: Path, pids_cgroup: Path
) -> None:
    """No thread for the teller: held_back (on a supervisor's turn) does not raise, the
    loop's lines are held all the same, its summary is written later (at the end here), and
    closing the log does not fail joining a thread that never started."""
    log = tmp_path / "l.log"
    out = subprocess.run(
        [sys.executable, "-c", _TELLER_CANNOT_START, str(log), str(pids_cgroup)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "closed\n"
    assert "Traceback" not in out.stderr, out.stderr
    text = log.read_text()
    assert text.count("crash: failed: boom") == 3, text
    assert "crash: failed 9 more times in the last" in text, text
    assert "after the loop" in text


# An http job's attempt and an http readiness check whose deadline watch cannot start (the
# first request of a process starts the timer thread): a process in a cgroup whose limit is
# the tasks it has now, then the limit lifted.
_HTTP_WATCH_CANNOT_START = """
import os, sys, threading, time
from actors import Attempt
from actors._errors import NoThreadError
from actors._http import HttpWork, _current
from actors._ready import ReadyProbe

url, group = sys.argv[1], sys.argv[2]
work = HttpWork(url=url, timeout=5)
probe = ReadyProbe(http=url, timeout=5)
#AT_ITS_LIMIT
tries = {
    "attempt": lambda: work.run(Attempt("h", 1, time.time())),
    "ready": lambda: probe.wait_ready(threading.Event()),
}
for name, call in tries.items():
    try:
        call()
    except NoThreadError as exc:
        print(name, "failed:", exc)
    else:
        print(name, "passed under the limit")
    print(name, "left in flight:", _current.get())
with open(group + "/pids.max", "w") as f:
    f.write("max")
for name, call in tries.items():
    print(name, "then:", call(), _current.get())
work.close()
""".replace("#AT_ITS_LIMIT\n", _AT_ITS_LIMIT)


def test_an_http_request_whose_deadline_watch_cannot_start_fails_once_and_leaves_nothing(
    pids_cgroup: Path,
) -> None:
    """No thread for the timer that bounds a request: the attempt and the readiness check
    each fail at once with the one-line reason, send nothing, and leave no request context
    set on their thread (it was left set, the next request's on that thread taken as the
    failed one's); once the limit is lifted both pass."""
    from httpkit import HttpKit

    with HttpKit() as kit:
        out = subprocess.run(
            [sys.executable, "-c", _HTTP_WATCH_CANNOT_START, kit.url, str(pids_cgroup)],
            cwd=ROOT,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"attempt failed: {NO_THREAD}",
            "attempt left in flight: None",
            f"ready failed: {NO_THREAD}",
            "ready left in flight: None",
            "attempt then: 200 None",
            "ready then: None None",
        ], out.stdout
        assert "Traceback" not in out.stderr, out.stderr
        assert kit.count == 2, "nothing was sent under the limit"


# The state dir's watch cannot get its thread: a process at its cgroup's limit on tasks, one of
# them a child's that an alarm gives back ("lift") a quarter of a second into the watch's tries.
_WATCH_CANNOT_START = """
import logbook, os, shutil, signal, subprocess, sys, threading
from pathlib import Path
from supervision._statedir import StateDirLock, StateDirWatch

logbook.StderrHandler(format_string="{record.level_name}: {record.message}").push_application()
state, group, lift = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "lift"
lock = StateDirLock(state, "daemon")
with open(group + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
child = subprocess.Popen(["sleep", "600"])
with open(group + "/pids.max", "w") as f:
    f.write(str(len(os.listdir("/proc/self/task")) + 1))
try:
    threading.Thread(target=lambda: None).start()
except RuntimeError:
    pass
else:
    sys.exit("a thread started: the limit does not hold")

def give_back(signum, frame):
    child.kill()
    child.wait()

if lift:  # on this thread, in the sleep between two tries
    signal.signal(signal.SIGALRM, give_back)
    signal.setitimer(signal.ITIMER_REAL, 0.25)
lost = threading.Event()
watch = StateDirWatch(lock, lambda why, holder: (print(why), lost.set()), every=0.01)
if lift:
    shutil.rmtree(state)
    if not lost.wait(30):
        sys.exit("the watch did not see its state dir go")
watch.close()
give_back(None, None)
lock.close()
print("closed")
"""


@pytest.mark.parametrize("lift", [False, True], ids=["held", "lifted"])
def test_a_state_dir_watch_without_a_thread_tries_again_then_says_once_it_is_not_watched(
    tmp_path: Path, pids_cgroup: Path, lift: bool
) -> None:
    """No thread for the watch at the start of a run or a daemon: it tried once and gave up.
    Now it tries for a second, as the stopper does: a task given back meanwhile gives it its
    thread, which sees the state dir go; otherwise one plain line says it is not watched."""
    state = tmp_path / ".jobvisor"
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _WATCH_CANNOT_START,
            str(state),
            str(pids_cgroup),
            "lift" if lift else "hold",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    if lift:
        assert out.stderr == ""
        assert out.stdout == f"the state dir {state} was deleted\nclosed\n"
    else:
        said = (
            f"WARNING: jv-statewatch: {NO_THREAD}; the daemon's state dir is not watched: "
            "should it be moved or deleted, the daemon runs on unaware of it"
        )
        assert out.stderr.splitlines() == [said]
        assert out.stdout == "closed\n"


# -- a full disk, a read-only output directory ---------------------------------------------------


def _tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills) needs root")
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def _umount(where: Path) -> None:
    subprocess.run(["umount", str(where)], capture_output=True, check=False)


FLOOD = """\
version: 1
jobs:
  - name: flood
    command: [sh, -c, 'yes "flood line with some padding to make it longer 0123456789"']
    service: true
    restart: permanent
    output: {max_bytes: 300KiB, backups: 3, log: LOG}
"""


@pytest.mark.parametrize("logged", ["true", "false"])
@pytest.mark.timeout(120)
def test_an_output_flood_on_a_disk_that_fills_says_so_once_and_never_glues_lines(
    tmp_path: Path, logged: str
) -> None:
    """A 512 KiB disk under the output files, a flood rotating at 300 KiB: each rotation frees
    space and the next fills it. The log says once, as a WARNING record, that the file cannot
    be written (strerror, what to do), not once per rotation; a write the disk cut off
    leaves the next line on a line of its own; ``log: false`` keeps its lines out of the
    log even then (dropped, and said so)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    out = state / "output"
    _tmpfs(out, "512k")
    try:
        (tmp_path / "jobs.yaml").write_text(FLOOD.replace("LOG", logged))
        log = tmp_path / "d.log"
        jv = Jobvisor(
            tmp_path,
            "daemon",
            "--runtime",
            RUNTIME,
            "--state-dir",
            str(state),
            "--log-file",
            str(log),
            "--log-level",
            "information",
        )
        try:
            wait_until(
                lambda: log.exists() and "cannot write the output file" in log.read_text(),
                "the disk full",
                proc=jv.proc,
            )
            time.sleep(3)  # the flood goes on: rotations free space and fill it again
            assert jv.terminate() == 0, jv.stderr
        finally:
            jv.close()
        text = log.read_text()
        said = [line for line in text.splitlines() if "cannot write the output file" in line]
        assert len(said) == 1, said
        assert " WARNING " in said[0], said
        assert ": No space left on device (" in said[0], said
        assert "Errno" not in said[0], said
        assert text.count("writable again") <= 1, text
        assert "cannot write the output file" not in jv.stderr
        if logged == "false":
            assert "flood line" not in text, "log: false: the lines never go to the log"
            assert "output lines are dropped" in said[0], said
        else:
            assert "output lines go to the log only" in said[0], said
        # A write the disk cut off leaves its start as a line of its own (the next write begins
        # a new line), whole lines around it: never a second line glued onto it.
        for path in sorted(out.iterdir()):
            for line in path.read_bytes().splitlines():
                torn = STAMP.match(line) is None
                assert not GLUED.search(line, 1), (path, line[:120])
                assert not torn or line.startswith(b"20"), (path, line[:120])
    finally:
        _umount(out)


CRASH = """\
version: 1
supervisor:
  backoff: {initial: 50ms, max: 50ms}
  intensity: {max_restarts: 100000, within: 10s}
jobs:
  - name: crash
    command: [sh, -c, 'echo out; exit 3']
    restart: permanent
"""


@pytest.mark.timeout(120)
def test_an_output_directory_replaced_by_a_file_is_said_once_per_episode(tmp_path: Path) -> None:
    """Each attempt opens the job's file again: an output directory that cannot be used is
    said once for the job, not at every attempt (it was, 14 times in 30 s), and again only
    after it could be written in between."""
    state = tmp_path / "state"
    log = tmp_path / "d.log"
    (tmp_path / "jobs.yaml").write_text(CRASH)
    jv = Jobvisor(
        tmp_path,
        "daemon",
        "--runtime",
        RUNTIME,
        "--state-dir",
        str(state),
        "--log-file",
        str(log),
        "--log-level",
        "verbose",  # no crash-loop damping: the count is the output code's alone
    )
    out = state / "output"

    def attempts() -> int:
        return log.read_text().count("crash: failed") if log.exists() else 0

    try:
        wait_until((out / "crash.log").exists, "the first output", proc=jv.proc)
        shutil.rmtree(out)
        out.write_text("in the way\n")
        now = attempts()
        wait_until(lambda: attempts() >= now + 10, "ten attempts more", proc=jv.proc)
        assert jv.terminate() == 0, jv.stderr
    finally:
        jv.close()
    text = log.read_text()
    said = [line for line in text.splitlines() if "output" in line and "crash: failed" not in line]
    said = [line for line in said if "cannot write" in line or "goes to the log only" in line]
    assert len(said) == 1, said
    assert "Errno" not in said[0], said


# -- the stop of a daemon or a run whose host has no task left ---------------------------------


def _sleeping_in(group: Path) -> bool:
    """Whether the cgroup holds svc's ``sleep 3600``."""
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"3600"]:
                return True
    return False


@pytest.mark.parametrize("command", ["daemon", "run"])
@pytest.mark.timeout(120)
def test_a_stop_with_no_thread_left_is_done_inline_and_said_in_one_line(
    tmp_path: Path, pids_cgroup: Path, command: str
) -> None:
    """The daemon's and run's stop start a thread of their own (``jv-stopper``), which a host
    at its limit on tasks refused: a traceback, and ``run`` crashed. Now, after a second of
    tries, the stop is done on the main thread, said in one line, and exits as a stop does."""
    (tmp_path / "jobs.yaml").write_text(
        "version: 1\njobs:\n  - {name: svc, command: [sleep, '3600'], service: true}\n"
    )
    log = tmp_path / "d.log"
    jv = Jobvisor(
        tmp_path,
        "--runtime",
        RUNTIME,
        command,
        "--log-file",
        str(log),
        prefix=_in_cgroup(pids_cgroup),
    )
    try:
        wait_until(lambda: log.exists() and "svc: started" in log.read_text(), "svc", proc=jv.proc)
        if command == "daemon":
            wait_until(lambda: "daemon ready" in log.read_text(), "ready", proc=jv.proc)
        # "svc: started" is said before its command's spawn: its process, or the limit below
        # failed that spawn (the CI saw "could not start", and no "svc: stopped").
        wait_until(lambda: _sleeping_in(pids_cgroup), "svc's process", proc=jv.proc)
        # Below what it has now: no thread can start, even once the daemon's server ended.
        (pids_cgroup / "pids.max").write_text("1")
        assert jv.terminate() == 0, jv.stderr + log.read_text()
    finally:
        jv.close()
    text = log.read_text() + jv.stderr
    assert "Traceback" not in text, text
    assert "svc: stopped" in text, text
    if RUNTIME == "threads":  # under gevent the stopper is a greenlet: no thread to refuse
        said = [line for line in text.splitlines() if "jv-stopper: " in line]
        assert len(said) == 1, said
        assert "stopping every job on the main thread instead" in said[0], said
