"""Files jobvisor writes: private whatever the umask, never through a planted symlink.

Run as root (as the issue's attacker scenario assumes), the "other user" is
``nobody`` (uid 65534): files and directories are made as root and given to
it with ``chown``, as that user would have made them in a shared directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faultkit import CLI, ENV, Running, start_daemon, stop_daemon, why_not_as_nobody

from supervision._files import UnsafePathError, open_private, open_private_file, write_atomic
from supervision._history import JournalError, read_history
from supervision._journal import Journal

NOBODY = 65534
MANIFEST = """
version: 1
jobs:
  - name: marker
    command: [sh, -c, "echo ran >> ran"]
"""
SERVICE = """
version: 1
jobs:
  - name: svc
    service: true
    command: [sh, -c, "echo ran >> ran; while true; do sleep 0.05; done"]
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="plays a second user with chown")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def jobvisor(
    cwd: Path, *args: str, umask: int = 0o022, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``timeout``: a jobvisor that should have refused at once is killed after it (it hung)."""
    return subprocess.run(
        ["sh", "-c", f'umask {umask:03o}; exec "$@"', "sh", *CLI, *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_refused(out: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2 with one line (naming each of ``names``), no traceback, no job run."""
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("jobvisor: ")]
    assert len(lines) == 1, out.stderr
    for name in names:
        assert name in lines[0], out.stderr
    return lines[0]


def start(tmp_path: Path, *args: str) -> Running:
    """A real ``jobvisor daemon`` of ``SERVICE`` started under umask 000, once it is ready."""
    # The manifest is the person's, made under their umask (one that others may write is
    # refused); the daemon's umask is 000: what it creates must not depend on it.
    (tmp_path / "jobs.yaml").write_text(SERVICE)
    old = os.umask(0)
    try:
        return start_daemon(tmp_path, SERVICE, *args)
    finally:
        os.umask(old)


@pytest.fixture
def precious(tmp_path: Path) -> Iterator[Path]:
    """A root-owned file that nothing jobvisor does may change or remove."""
    target = tmp_path / "root-only" / "precious"
    target.parent.mkdir(mode=0o700)
    target.write_text("precious")
    yield target
    assert target.read_text() == "precious"


# -- 1. private modes whatever the umask -------------------------------------------------------


def test_a_daemon_under_umask_000_creates_only_private_files(tmp_path: Path) -> None:
    state, logs = tmp_path / "new" / "state", tmp_path / "logs"
    daemon = start(
        tmp_path,
        "--state-dir",
        str(state),
        "--pidfile",
        str(tmp_path / "jv.pid"),
        "--log-file",
        str(logs / "jv.log"),
        "jobs.yaml",
    )
    try:
        db = state / "journal.sqlite3"
        files = [
            db,
            Path(f"{db}-wal"),
            Path(f"{db}-shm"),
            state / "daemon.lock",
            state / "control.sock",
            tmp_path / "jv.pid",
            logs / "jv.log",
        ]
        assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
        dirs = [state, state.parent, logs]
        assert {str(d): mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}
    finally:
        assert stop_daemon(daemon) == 0


def test_a_run_under_umask_000_creates_only_private_files(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    out = jobvisor(tmp_path, "run", "--log-file", "logs/jv.log", "jobs.yaml", umask=0)
    assert out.returncode == 0, out.stderr
    state = tmp_path / ".jobvisor"
    assert [mode(state), mode(tmp_path / "logs")] == [0o700, 0o700]
    assert [mode(f) for f in state.iterdir()] == [0o600] * len(list(state.iterdir()))
    assert mode(tmp_path / "logs" / "jv.log") == 0o600


def test_files_others_could_only_read_are_made_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    Journal(state).close()
    db = state / "journal.sqlite3"
    db.chmod(0o644)
    Journal(state).close()
    assert [mode(state), mode(db)] == [0o700, 0o600]


# -- 1. loose directories and files are refused --------------------------------------------------


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_state_dir_others_can_write_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    line = assert_refused(
        jobvisor(tmp_path, command, "--state-dir", str(state), "jobs.yaml"), str(state)
    )
    assert "writable by group or others (mode 0777)" in line
    assert list(state.iterdir()) == []
    assert not (tmp_path / "ran").exists()


def test_a_log_file_of_ours_others_can_write_is_made_private_and_said_in_it(
    tmp_path: Path,
) -> None:
    """Ours, only too open (logrotate's create 0664): refusing it lost the whole log."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    log = tmp_path / "jv.log"
    log.write_text("")
    log.chmod(0o666)
    out = jobvisor(tmp_path, "run", "--log-file", str(log), "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert mode(log) == 0o600
    first = log.read_text().splitlines()[0]
    assert " WARNING " in first
    assert first.endswith(
        f"{log}: mode 0666 was looser than jobvisor writes (0600); made it 0600 "
        "(logrotate's create: use create 0600)"
    )
    assert (tmp_path / "ran").exists()


@needs_root
@pytest.mark.parametrize("command", ["run", "daemon"])
def test_another_users_log_file_others_can_write_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    log = tmp_path / "jv.log"
    log.write_text("")
    log.chmod(0o666)
    os.chown(log, NOBODY, NOBODY)
    line = assert_refused(
        jobvisor(tmp_path, command, "--log-file", str(log), "jobs.yaml"), str(log)
    )
    assert "owned by nobody" in line
    assert mode(log) == 0o666
    assert log.read_text() == ""
    assert not (tmp_path / "ran").exists()


@needs_root
@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    line = assert_refused(
        jobvisor(tmp_path, command, "--state-dir", str(state), "jobs.yaml"), str(state)
    )
    assert "owned by nobody (uid 65534)" in line
    assert list(state.iterdir()) == []


@needs_root
@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_state_dir_in_a_directory_another_user_owns_is_refused(
    tmp_path: Path, command: str
) -> None:
    """Its owner could rename the state dir away mid-run and put a symlink in its place."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    evil = tmp_path / "evil"
    evil.mkdir(mode=0o755)
    os.chown(evil, NOBODY, NOBODY)
    state = evil / "state"
    line = assert_refused(
        jobvisor(tmp_path, command, "--state-dir", str(state), "jobs.yaml"), str(state)
    )
    assert f"the directory {evil} above it is owned by nobody (uid 65534)" in line
    assert list(evil.iterdir()) == []
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_state_dir_under_a_directory_others_can_write_is_refused_unless_sticky(
    tmp_path: Path, command: str
) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    loose = tmp_path / "loose" / "deeper"
    loose.mkdir(parents=True)
    loose.parent.chmod(0o777)
    state = loose / "state"
    line = assert_refused(
        jobvisor(tmp_path, command, "--state-dir", str(state), "jobs.yaml"), str(state)
    )
    assert (
        f"the directory {loose.parent} above it is writable by group or others (mode 0777)" in line
    )
    assert list(loose.iterdir()) == []
    loose.parent.chmod(0o1777)  # as /tmp: others cannot rename what is ours there
    out = jobvisor(tmp_path, "run", "--state-dir", str(state), "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ran").read_text() == "ran\n"


# -- 2. no file is written through a planted symlink ---------------------------------------------


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_state_dir_that_is_a_symlink_is_refused(tmp_path: Path, command: str) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(real)
    line = assert_refused(jobvisor(tmp_path, command, "--state-dir", "state", "jobs.yaml"), "state")
    assert "symbolic link" in line
    assert list(real.iterdir()) == []


@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_log_file_symlink_is_refused_and_its_target_does_not_grow(
    tmp_path: Path, command: str, precious: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    (tmp_path / "jv.log").symlink_to(precious)
    line = assert_refused(
        jobvisor(tmp_path, command, "--log-file", "jv.log", "jobs.yaml"), "jv.log"
    )
    assert "symbolic link" in line
    assert not (tmp_path / "ran").exists()


JOURNAL_FILES = ["journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"]


@pytest.mark.parametrize(
    ("command", "name"),
    [("run", name) for name in JOURNAL_FILES]
    + [("daemon", name) for name in [*JOURNAL_FILES, "daemon.lock"]],  # run takes no lock
)
def test_a_symlink_planted_in_the_state_dir_is_refused(
    tmp_path: Path, command: str, name: str, precious: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / name).symlink_to(precious)
    line = assert_refused(
        jobvisor(tmp_path, command, "--state-dir", str(state), "jobs.yaml"), str(state / name)
    )
    assert "symbolic link" in line
    assert not (tmp_path / "ran").exists()
    assert sorted(p.name for p in precious.parent.iterdir()) == ["precious"]


def test_the_pidfile_replaces_a_planted_symlink_and_removes_only_itself(
    tmp_path: Path, precious: Path
) -> None:
    pidfile = tmp_path / "jv.pid"
    pidfile.symlink_to(precious)
    daemon = start(tmp_path, "--pidfile", str(pidfile), "jobs.yaml")
    try:
        assert not pidfile.is_symlink()
        assert pidfile.read_text() == f"{daemon.proc.pid}\n"
        assert mode(pidfile) == 0o600
        assert precious.read_text() == "precious"
    finally:
        assert stop_daemon(daemon) == 0
    assert not os.path.lexists(pidfile)


def test_a_pidfile_swapped_for_a_symlink_is_left_alone_at_exit(
    tmp_path: Path, precious: Path
) -> None:
    pidfile = tmp_path / "jv.pid"
    daemon = start(tmp_path, "--pidfile", str(pidfile), "jobs.yaml")
    try:
        pidfile.unlink()
        pidfile.symlink_to(precious)
    finally:
        assert stop_daemon(daemon) == 0
    assert pidfile.is_symlink(), "removed a pidfile that was not its own any more"


def test_history_refuses_a_journal_with_a_planted_shm_symlink(
    tmp_path: Path, precious: Path
) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    assert jobvisor(tmp_path, "run", "jobs.yaml").returncode == 0
    shm = tmp_path / ".jobvisor" / "journal.sqlite3-shm"
    shm.unlink(missing_ok=True)
    shm.symlink_to(precious)
    with pytest.raises(JournalError, match="symbolic link"):
        read_history(tmp_path / ".jobvisor" / "journal.sqlite3")
    assert_refused(jobvisor(tmp_path, "history"), str(shm))


# -- 3. a shared state dir (issue 11, item 7) ----------------------------------------------------


@needs_root
def test_a_shared_state_dir_with_planted_symlinks_changes_nothing(
    tmp_path: Path, precious: Path
) -> None:
    targets = {name: precious.parent / name for name in ("lock", "pid", "journal")}
    for target in targets.values():
        target.write_text("precious")
    shared = tmp_path / "mstate"  # what `mkdir -m777 /tmp/mstate` by nobody makes
    shared.mkdir()
    shared.chmod(0o777)
    os.chown(shared, NOBODY, NOBODY)
    for name, target in (
        ("daemon.lock", targets["lock"]),
        ("jv.pid", targets["pid"]),
        ("journal.sqlite3", targets["journal"]),
    ):
        (shared / name).symlink_to(target)
        os.lchown(shared / name, NOBODY, NOBODY)
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    out = jobvisor(
        tmp_path,
        "daemon",
        "--state-dir",
        str(shared),
        "--pidfile",
        str(shared / "jv.pid"),
        "jobs.yaml",
    )
    assert_refused(out, str(shared))
    assert {t.name: t.read_text() for t in targets.values()} == dict.fromkeys(targets, "precious")
    assert sorted(p.name for p in shared.iterdir()) == ["daemon.lock", "journal.sqlite3", "jv.pid"]
    assert sorted(p.name for p in precious.parent.iterdir()) == [
        "journal",
        "lock",
        "pid",
        "precious",
    ]


@needs_root
def test_the_client_refuses_a_socket_served_by_another_user(tmp_path: Path) -> None:
    """A control.sock whose server runs as someone else is not the daemon's: no request is sent."""
    if (why := why_not_as_nobody()) is not None:
        pytest.skip(why)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(state / "control.sock"))
    # nobody listens on it (SO_PEERCRED names whoever called listen) and logs what it receives.
    server = textwrap.dedent(
        """
        import socket, sys
        s = socket.socket(fileno=int(sys.argv[1]))
        s.setblocking(True)  # gevent's test process hands over a non-blocking one
        s.listen(1)
        print("listening", flush=True)
        conn, _ = s.accept()
        conn.settimeout(5)
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        print(repr(data), flush=True)
        """
    )
    proc = subprocess.Popen(
        [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            sys.executable,
            "-c",
            server,
            str(sock.fileno()),
        ],
        pass_fds=(sock.fileno(),),
        stdout=subprocess.PIPE,
        text=True,
    )
    sock.close()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "listening"
        out = jobvisor(tmp_path, "status", "--state-dir", str(state))
        assert out.returncode == 3, out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        assert str(state / "control.sock") in out.stderr
        assert "nobody (uid 65534)" in out.stderr
        received, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:  # communicate() closed it, unless an assertion came first
            proc.stdout.close()
    assert received.strip() == "b''", "a request reached another user's server"


# -- 4. no FIFO is waited on, no file written through a directory others can swap (issue 18) ---


@contextmanager
def planted_fifo(path: Path, *, reader: bool) -> Iterator[None]:
    """A FIFO at ``path`` as ``mkfifo -m 666`` by nobody (by us unless root) makes it; with
    ``reader``, someone holds it open to read, so an open to write it succeeds at once."""
    os.mkfifo(path)
    path.chmod(0o666)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK) if reader else None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "a-reader"])
@pytest.mark.parametrize("command", ["run", "daemon"])
def test_a_fifo_at_the_log_file_is_refused_at_once(
    tmp_path: Path, command: str, reader: bool
) -> None:
    """An open to write a FIFO waits for a reader for ever (holding the state dir's lock, deaf
    to SIGTERM); with a reader the log would go to whoever reads it."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    log = tmp_path / "x.log"
    with planted_fifo(log, reader=reader):
        out = jobvisor(tmp_path, command, "--log-file", str(log), "jobs.yaml", timeout=20)
    line = assert_refused(out, str(log))
    assert "it is a FIFO, not a regular file" in line
    assert not (tmp_path / "ran").exists()


def test_a_fifo_swapped_in_for_the_log_file_mid_run_is_reported_not_waited_on(
    tmp_path: Path,
) -> None:
    log = tmp_path / "jv.log"
    daemon = start(tmp_path, "--log-file", str(log), "jobs.yaml")
    try:
        log.unlink()  # as logrotate moves it away; someone else is quicker than its reopen
        with planted_fifo(log, reader=False):
            # Logged: the log file is opened again. Not waited on for ever if it hangs.
            out = subprocess.run(
                [*CLI, "restart", "svc"],
                cwd=tmp_path,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            assert out.returncode == 0, out.stderr
            assert daemon.nodes()["svc"]["state"] == "running"
            daemon.proc.send_signal(signal.SIGTERM)
            _, err = daemon.proc.communicate(timeout=30)
    finally:
        code = stop_daemon(daemon)
    assert code == 0, err
    said = [line for line in err.splitlines() if "a FIFO" in line]
    assert len(said) == 1, err
    assert said[0].startswith(f"jobvisor: cannot write the log file {log}: "), said


@pytest.mark.parametrize("opener", [open_private, open_private_file])
@pytest.mark.parametrize("reader", [False, True], ids=["no-reader", "a-reader"])
def test_the_openers_refuse_a_fifo_or_a_socket_at_once(
    tmp_path: Path, opener: Callable[[Path, int, str], object], reader: bool
) -> None:
    """What opens every file jobvisor writes: the log, its rotations, output files, the lock
    and the journal."""
    fifo = tmp_path / "fifo"
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    with planted_fifo(fifo, reader=reader), pytest.raises(UnsafePathError) as info:
        opener(fifo, flags, "output file")
    assert str(info.value) == (
        f"refusing the output file {fifo}: it is a FIFO, not a regular file; "
        "remove it or give another path"
    )
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        with pytest.raises(UnsafePathError, match="it is a socket, not a regular file"):
            opener(tmp_path / "sock", flags, "log file")


def place(tmp_path: Path, command: str, option: str, path: Path) -> list[str]:
    """The arguments that make ``command`` write ``path`` as ``option`` says (``logging.file``:
    the manifest's)."""
    if option == "logging.file":
        (tmp_path / "jobs.yaml").write_text(
            MANIFEST.replace("version: 1\n", f"version: 1\nlogging: {{file: '{path}'}}\n")
        )
        return [command, "jobs.yaml"]
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    return [command, option, str(path), "jobs.yaml"]


FILE_OPTIONS = [
    ("run", "--log-file"),
    ("daemon", "--log-file"),
    ("run", "logging.file"),
    ("daemon", "--pidfile"),
]


@needs_root
@pytest.mark.parametrize(("command", "option"), FILE_OPTIONS)
def test_a_file_in_a_directory_another_user_owns_is_refused(
    tmp_path: Path, command: str, option: str
) -> None:
    """``mkdir -m777 /tmp/d`` by nobody, who swaps ``d/logs`` for a symlink once root wrote in
    it: root's next write (a rotation's reopen) goes where nobody likes."""
    evil = tmp_path / "d"
    evil.mkdir()
    evil.chmod(0o777)
    os.chown(evil, NOBODY, NOBODY)
    path = evil / "logs" / "jv.file"
    out = jobvisor(tmp_path, *place(tmp_path, command, option, path), timeout=20)
    line = assert_refused(out, str(path))
    assert f"the directory {evil} above it is owned by nobody (uid 65534)" in line
    assert list(evil.iterdir()) == []
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(("command", "option"), FILE_OPTIONS)
def test_a_file_under_a_directory_others_can_write_is_refused_unless_sticky(
    tmp_path: Path, command: str, option: str
) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    path = loose / "logs" / "jv.file"
    out = jobvisor(tmp_path, *place(tmp_path, command, option, path), timeout=20)
    line = assert_refused(out, str(path))
    assert f"the directory {loose} above it is writable by group or others (mode 0777)" in line
    wanted = "--log-file" if option == "logging.file" else option
    assert f"or another {wanted})" in line
    assert list(loose.iterdir()) == []
    loose.chmod(0o1777)  # as /tmp: others cannot rename what is ours there
    if command == "run":
        out = jobvisor(tmp_path, *place(tmp_path, command, option, path))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "ran").read_text() == "ran\n"
        assert path.exists()


@pytest.mark.parametrize("option", ["--state-dir", "--log-file"])
def test_a_path_through_a_symlink_in_a_directory_others_can_write_is_refused(
    tmp_path: Path, option: str
) -> None:
    """What the link leads to is safe, but whoever can write its directory can point it
    elsewhere mid-run: each directory on the way as written is checked, not only the
    resolved path's."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    (loose / "link").symlink_to(safe)
    path = loose / "link" / "inside"
    line = assert_refused(jobvisor(tmp_path, "run", option, str(path), "jobs.yaml"), str(path))
    assert f"the directory {loose} above it is writable by group or others (mode 0777)" in line
    assert list(safe.iterdir()) == []
    assert not (tmp_path / "ran").exists()


@needs_root
@pytest.mark.parametrize("option", ["--state-dir", "--log-file"])
def test_a_symlink_another_user_owns_in_a_sticky_directory_is_refused(
    tmp_path: Path, option: str
) -> None:
    """In /tmp a link's owner may replace it (the sticky bit guards an entry from others only);
    a link of ours there is fine."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    link = shared / "link"
    link.symlink_to(safe)
    os.lchown(link, NOBODY, NOBODY)
    path = link / "inside"
    line = assert_refused(jobvisor(tmp_path, "run", option, str(path), "jobs.yaml"), str(path))
    assert (
        f"{link} in the shared directory {shared} is owned by nobody (uid 65534), who could "
        "swap it" in line
    )
    assert list(safe.iterdir()) == []
    os.lchown(link, 0, 0)
    out = jobvisor(tmp_path, "run", option, str(path), "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert (safe / "inside").exists()


MAKE_DIRS_RACE = """
import os, sys
from pathlib import Path
from supervision._files import UnsafePathError, make_dirs

target = Path(sys.argv[1])
planted = str(target.parent)
done = []


def plant(event, args):
    # Just before jobvisor makes it, someone else makes it first, open to all.
    if event == "os.mkdir" and os.fspath(args[0]) == planted and not done:
        done.append(True)
        os.mkdir(planted)
        os.chmod(planted, int(sys.argv[2], 8))


sys.addaudithook(plant)
try:
    make_dirs(target)
except UnsafePathError as exc:
    print(exc)
else:
    print("made", oct(os.stat(target).st_mode & 0o777))
"""


@pytest.mark.parametrize(("planted", "said"), [("777", "refused"), ("700", "made 0o700")])
def test_make_dirs_refuses_a_directory_someone_else_made_meanwhile_open_to_all(
    tmp_path: Path, planted: str, said: str
) -> None:
    """Made between its look and its mkdir (an audit hook is quicker than any attacker):
    another of ours, or root's, 0700 is fine (two of our threads may race), one others can
    write is not."""
    target = tmp_path / "a" / "b" / "c"
    out = subprocess.run(
        [sys.executable, "-c", MAKE_DIRS_RACE, str(target), planted],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    if said == "refused":
        assert out.stdout.strip() == (
            f"refusing the directory {target}: the directory {target.parent} on its way, made "
            "meanwhile by someone else, is writable by group or others (mode 0777)"
        )
        assert not target.exists()
    else:
        assert out.stdout.strip() == said


# -- the helpers themselves ----------------------------------------------------------------------


def test_open_private_and_write_atomic_refuse_or_replace_symlinks(
    tmp_path: Path, precious: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(precious)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_private(link, os.O_WRONLY | os.O_CREAT | os.O_APPEND, "log file")
    write_atomic(link, b"42\n")
    assert (link.read_text(), link.is_symlink()) == ("42\n", False)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_symlink_planted_where_the_log_file_was_moved_away_is_not_followed(
    tmp_path: Path, precious: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logbook

    from supervision._logging import configure_logging
    from supervision._spec import LoggingSpec

    log_file = tmp_path / "jv.log"
    with configure_logging(LoggingSpec(level="information", file=str(log_file))):
        logbook.Logger("supervision").info("one")
        log_file.rename(tmp_path / "jv.log.1")  # as logrotate does, then someone is quicker
        log_file.symlink_to(precious)
        logbook.Logger("supervision").info("two")
    err = capsys.readouterr().err
    assert err.count("symbolic link") == 1, err
    assert (tmp_path / "jv.log.1").read_text().endswith("one\n")


def test_a_group_writable_directory_is_trusted_when_no_other_person_is_in_its_group(
    tmp_path: Path,
) -> None:
    """Refused whole, group-writable directories broke common setups (review): a project made
    0775 under umask 002 (a user's private group), Ubuntu's /var/log (0775 root:syslog). A
    group none but root, the owner, jobvisor's user and system accounts are in can swap
    nothing a person could not; one with another person in it still can."""
    from supervision._files import group_outsiders

    class Group:
        def __init__(self, gid: int, members: list[str]) -> None:
            self.gr_gid, self.gr_mem, self.gr_name = gid, members, f"g{gid}"

    class User:
        def __init__(self, name: str, uid: int, gid: int) -> None:
            self.pw_name, self.pw_uid, self.pw_gid = name, uid, gid

    users = [User("root", 0, 0), User("syslog", 104, 110), User("alice", 1000, 1000)]
    users += [User("bob", 1001, 1001), User("carol", 1002, 100)]
    groups = {110: Group(110, []), 1000: Group(1000, []), 100: Group(100, []),
              4: Group(4, ["syslog", "bob"])}  # fmt: skip

    def outsiders(gid: int, owner: int) -> list[str]:
        return group_outsiders(gid, owner, groups.__getitem__, lambda: users, me=0)

    assert outsiders(110, 0) == []  # /var/log: root:syslog
    assert outsiders(1000, 1000) == []  # alice's project, her private group
    assert outsiders(100, 0) == ["carol"]  # users: a person's primary group
    assert outsiders(4, 0) == ["bob"]  # adm, say, with a person added to it
    assert outsiders(999, 0) == []  # a group the system does not know: nobody is in it


def test_a_log_file_in_a_root_group_writable_directory_is_taken(tmp_path: Path) -> None:
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)  # root:root: nobody but root is in root's group here
    path = shared / "jv.log"
    out = jobvisor(tmp_path, "run", "--log-file", str(path), "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert path.exists()


# -- 5. a shared sticky directory (/tmp): what the kernel denies is named, rotation never
# takes another user's file --------------------------------------------------------------------


@needs_root
def test_a_symlink_planted_at_the_log_file_in_a_sticky_directory_is_called_one(
    tmp_path: Path,
) -> None:
    """The kernel denies an O_CREAT open of another user's link in a sticky world-writable
    directory (EACCES) before O_NOFOLLOW could say ELOOP: the refusal still says it is a link."""
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    target = tmp_path / "target"
    target.write_text("precious\n")
    link = shared / "link.log"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    line = assert_refused(jobvisor(tmp_path, "run", "--log-file", str(link), "jobs.yaml"))
    assert line == (
        f"jobvisor: refusing the log file {link}: it is a symbolic link (to {target}), and "
        "jobvisor never writes through one; give the real path"
    )
    assert target.read_text() == "precious\n"
    assert not (tmp_path / "ran").exists()


@pytest.fixture
def as_nobody(tmp_path: Path) -> Iterator[tuple[tuple[str, ...], Path]]:
    """A command prefix that runs as nobody, and a directory of nobody's it can reach (the
    test's own tmp_path is root's 0700) holding a sticky world-writable ``shared`` (/tmp)."""
    if (why := why_not_as_nobody()) is not None:
        pytest.skip(why)
    top = Path(tempfile.mkdtemp(prefix="jv-nobody-"))
    try:
        top.chmod(0o755)
        home = top / "home"
        home.mkdir(mode=0o700)
        os.chown(home, NOBODY, NOBODY)
        shared = top / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        yield (
            ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"),
            top,
        )
    finally:
        shutil.rmtree(top)


def _run_as(prefix: tuple[str, ...], top: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``jobvisor run ARGS`` as ``as_nobody``'s user, in its home."""
    return subprocess.run(
        [*prefix, *CLI, "run", *args],
        cwd=top / "home",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_log_file_of_another_user_the_kernel_denies_is_called_theirs(
    as_nobody: tuple[tuple[str, ...], Path],
) -> None:
    prefix, top = as_nobody
    (top / "home" / "jobs.yaml").write_text(MANIFEST)
    log = top / "shared" / "x.log"
    log.write_text("root's\n")
    log.chmod(0o600)  # root's, 0600: nobody's open is denied (EACCES)
    out = _run_as(prefix, top, "--log-file", str(log), "jobs.yaml")
    line = assert_refused(out)
    assert line == (
        f"jobvisor: refusing the log file {log}: it is owned by root (uid 0), not by nobody "
        "(uid 65534) who runs jobvisor; use one of your own"
    )


ROTATING = """
version: 1
logging: {file: LOG, rotate: {max_bytes: 2000, backups: 2}}
jobs:
  - name: chatty
    command: [sh, -c, "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done"]
"""


def test_a_backup_planted_in_tmp_keeps_a_non_root_log_written(
    as_nobody: tuple[tuple[str, ...], Path],
) -> None:
    """nobody's jobvisor logs to /tmp/x.log; root planted /tmp/x.log.1: each rename of it is
    denied (sticky), which dropped every record after the first rotation."""
    prefix, top = as_nobody
    log = top / "shared" / "x.log"
    planted = top / "shared" / "x.log.1"
    planted.write_text("root's\n")
    (top / "home" / "jobs.yaml").write_text(ROTATING.replace("LOG", str(log)))
    out = _run_as(prefix, top, "jobs.yaml")
    assert out.returncode == 0, out.stderr
    assert "cannot write the log file" not in out.stderr
    assert out.stderr.count("cannot rotate") == 1, out.stderr
    assert f"its backup {planted} is owned by root (uid 0), not by nobody (uid 65534)" in (
        out.stderr
    )
    text = log.read_text()
    assert all(f"line {n} [" in text for n in range(200)), "a line was dropped"
    assert planted.read_text() == "root's\n"


def _reader_python(prefix: tuple[str, ...]) -> str | None:
    """An interpreter (3.11+) ``prefix``'s user can run, for ``history`` and ``logs``, which
    import only the standard library: ours, else the system's (ours may be under root's 0700
    home, as a pyenv's is); None if there is none."""
    for python in (sys.executable, "/usr/bin/python3"):
        out = subprocess.run(
            [*prefix, python, "-c", "import sys; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if out.returncode == 0:
            return python
    return None


def test_history_and_logs_of_roots_state_dir_are_one_line_for_another_user() -> None:
    """An admin trial: as a user who may not read root's 0700 state dir, history and logs
    printed a PermissionError's traceback, exit 1."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to act as a second user")
    prefix = (setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    if (python := _reader_python(prefix)) is None:
        pytest.skip("no interpreter nobody can run")
    top = Path(tempfile.mkdtemp(prefix="jv-nobody-"))  # tmp_path is root's 0700: out of reach
    try:
        top.chmod(0o755)
        (top / "jobs.yaml").write_text(MANIFEST)
        assert jobvisor(top, "run", "jobs.yaml").returncode == 0
        state = top / ".jobvisor"
        assert mode(state) == 0o700
        manifest = str(top / "jobs.yaml")
        for args in (
            ("history", "--manifest", manifest),
            ("--state-dir", str(state), "history"),
            ("--json", "history", "marker", "--manifest", manifest),
            ("logs", "marker", "--manifest", manifest),
            ("--state-dir", str(state), "logs", "marker"),
        ):
            out = subprocess.run(
                [*prefix, python, str(CLI[1]), *args],
                cwd=top,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            line = assert_refused(out, str(state))
            assert line.endswith(
                "is root's (mode 0700), and nobody (uid 65534) who runs this may not read it; "
                "run it as jobvisor's user, root, or with sudo"
            ), args
            assert out.stdout == "", args
    finally:
        shutil.rmtree(top)
