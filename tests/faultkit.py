"""Helpers of the fault-injection tests: processes watched by pid, a real jobvisor, bystanders.

Functions here double as ``python:`` jobs (``"faultkit:beat"``), also inside a
real ``jobvisor`` process: it finds this module through ``PYTHONPATH`` (see
``ENV``), so the module imports nothing of ours at its top.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import logbook

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CLI = [sys.executable, str(ROOT / "cli.py")]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join((str(ROOT), str(TESTS))),
    "JV_PYTHON": sys.executable,  # the manifests' commands run ${JV_PYTHON}, our interpreter
}
ENV.pop("NOTIFY_SOCKET", None)  # a real daemon under test must not talk to our systemd


# -- processes -------------------------------------------------------------------------------------


def gone(pid: int) -> bool:
    """No process ``pid``, or only a zombie its parent has not reaped (PID 1 may never reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return proc_state(pid) in {None, "Z", "X"}


def proc_state(pid: int) -> str | None:
    """The state letter of ``/proc/PID/stat`` (R, S, T, Z, ...), None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class Watched:
    """Processes held by pidfds (a reused pid cannot fool them); SIGKILLs the survivors at close."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}

    def add(self, *pids: int) -> None:
        for pid in pids:
            if pid in self.fds:
                continue
            try:
                self.fds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                self.fds[pid] = -1  # exited and reaped already

    def dead(self, pid: int, timeout: float = 0.0) -> bool:
        """The process has exited (a zombie counts), waiting at most ``timeout`` seconds."""
        fd = self.fds[pid]
        if fd < 0:
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))

    def all_dead(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        return all(self.dead(pid, max(0.0, deadline - time.monotonic())) for pid in self.fds)

    def close(self) -> None:
        for pid, fd in self.fds.items():
            if fd >= 0:
                if not self.dead(pid):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                os.close(fd)
        self.fds.clear()


def wait_until(
    condition: Callable[[], Any],
    what: str,
    *,
    proc: subprocess.Popen[Any] | None = None,
    timeout: float = 20.0,
) -> Any:
    """Poll another process's traces (files, /proc) until ``condition()`` is truthy; return it.

    Only for facts that no in-process event announces. Fails at once if
    ``proc`` exits meanwhile, and after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: jobvisor exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.01)


def read_pids(path: Path) -> list[int]:
    """The whitespace-separated pids a command wrote to ``path`` (none yet if it does not exist)."""
    try:
        return [int(word) for word in path.read_text().split()]
    except FileNotFoundError:
        return []


class Output(logbook.Handler):  # type: ignore[misc]  # logbook has no stubs
    """The lines commands print, as ``actors.command`` logs them; tests wait on them.

    It bubbles: the ``logs`` fixture still captures every record.
    """

    def __init__(self) -> None:
        super().__init__(
            level=logbook.DEBUG,
            bubble=True,
            filter=lambda record, handler: record.channel == "actors.command",
        )
        self.items: list[tuple[str, int, str, int | None]] = []  # (path, attempt, text, part)
        self._cond = threading.Condition()

    def emit(self, record: logbook.LogRecord) -> None:
        text = record.message.split(" ", 1)[1]
        extra = record.extra
        with self._cond:
            self.items.append((extra["path"], extra["attempt"], text, extra.get("part")))
            self._cond.notify_all()

    def first(self, path: str, attempt: int, timeout: float = 10.0) -> str:
        """Wait for the first line of attempt ``attempt`` of ``path`` and return it."""

        def found() -> list[str]:
            return [t for p, a, t, _ in self.items if (p, a) == (path, attempt)]

        with self._cond:
            assert self._cond.wait_for(found, timeout), f"no output of {path}[{attempt}]"
            return found()[0]


# -- a real jobvisor process -----------------------------------------------------------------------


class Jobvisor:
    """A ``jobvisor`` command run in ``cwd``, its stdout and stderr kept in files there."""

    def __init__(self, cwd: Path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.cwd = cwd
        self.out_path = cwd / "jobvisor.out"
        self.err_path = cwd / "jobvisor.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [*prefix, *CLI, *args], cwd=cwd, env=ENV, stdout=out, stderr=err, text=True
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def peak_rss_kib(self) -> int:
        """The process's own peak resident memory so far (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc/PID/status")

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful stop) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Whatever a test left running is killed (by its pid) and reaped."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run_jobvisor(cwd: Path, *args: str, prefix: tuple[str, ...] = ()) -> Jobvisor:
    """Run ``jobvisor ARGS`` to its end (60s at most)."""
    jv = Jobvisor(cwd, *args, prefix=prefix)
    try:
        jv.wait(60)
    finally:
        jv.close()
    return jv


# A daemon's manifest: a service that runs until stopped and an idle periodic python job.
DAEMON = """
version: 1
supervisor: {backoff: {initial: 1ms, max: 5ms}}
jobs:
  - name: svc
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
  - name: tick
    python: "math:sqrt"
    args: [4]
    every: 10s
"""


@dataclass
class Running:
    """A ``jobvisor daemon`` started in ``dir``, with the socket systemd would notify on."""

    proc: subprocess.Popen[str]
    dir: Path
    notify: socket.socket

    @property
    def state(self) -> Path:
        return self.dir / ".jobvisor"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args],
            cwd=self.dir,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["path"]: n for n in self.status()["children"]}

    def wait_notify(self, text: str) -> None:
        while True:
            message = self.notify.recv(4096).decode()
            if text in message:
                return


def start_daemon(
    cwd: Path,
    manifest: str,
    *extra: str,
    env_extra: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> Running:
    """Write ``manifest`` to ``cwd/jobs.yaml`` and start a daemon on it; return once it is ready.

    Readiness is the daemon's own ``READY=1`` on a notify socket of ours, not a poll.
    ``prefix``: a command the daemon runs under (``prlimit --nofile=48:48``).
    """
    (cwd / "jobs.yaml").write_text(textwrap.dedent(manifest))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = cwd / "notify.sock"
    address.unlink(missing_ok=True)
    notify.bind(str(address))
    notify.settimeout(30)
    env = {**ENV, "NOTIFY_SOCKET": str(address), **(env_extra or {})}
    proc = subprocess.Popen(
        [*prefix, *CLI, "daemon", *extra],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, cwd, notify)
    try:
        running.wait_notify("READY=1")
    except BaseException:
        stop_daemon(running)
        raise
    return running


def stop_daemon(running: Running) -> int:
    """SIGTERM (a graceful stop), then the exit code; one that does not stop fails the test
    (killed, so nothing is left running)."""
    if running.proc.poll() is None:
        running.proc.send_signal(signal.SIGTERM)
    try:
        running.proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the daemon (pid {running.proc.pid}) did not exit within 30s of SIGTERM"
        ) from None
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
        running.notify.close()
    return running.proc.returncode


@dataclass(frozen=True)
class Http:
    """A daemon's HTTP endpoint, where its ``http.json`` says it listens, and the token that
    opens it (kept out of the repr, so no failing test prints it)."""

    address_file: Path
    url: str  # without the trailing slash: ``http.url + "/api/status"``
    token: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def auth(self) -> dict[str, str]:
        """The header that carries the token."""
        assert self.token is not None, "this endpoint was started without a token"
        return {"Authorization": f"Bearer {self.token}"}


def http_of(
    state: Path, token: str | None = None, proc: subprocess.Popen[Any] | None = None
) -> Http:
    """The endpoint a ``jobvisor`` with state dir ``state`` serves, once it wrote it down."""
    address = state / "http.json"
    wait_until(address.exists, "the endpoint's address file", proc=proc, timeout=30)
    url = str(json.loads(address.read_text())["url"]).rstrip("/")
    return Http(address, url, token)


@dataclass
class HttpDaemon(Running):
    """A daemon that serves HTTP: ``http`` is its endpoint."""

    http: Http


@contextmanager
def http_daemon(
    cwd: Path,
    manifest: str,
    *extra: str,
    listen: str = "127.0.0.1:0",
    token: str | None = None,
    token_env: str = "JV_HTTP_TOKEN",
    env_extra: dict[str, str] | None = None,
    prefix: tuple[str, ...] = (),
    code: int = 0,
) -> Iterator[HttpDaemon]:
    """A daemon on ``manifest`` serving HTTP on ``listen``, stopped (by its pid) at the end.

    The token, generated unless given, is in the environment as ``token_env`` (the manifest
    decides whether it reads it: ``token: {secret: {env: JV_HTTP_TOKEN}}``). A block that
    ends normally fails unless the daemon exits ``code``; one that raised keeps its error.
    """
    token = secrets.token_urlsafe(24) if token is None else token
    env = {token_env: token, **(env_extra or {})}
    running = start_daemon(cwd, manifest, "--http", listen, *extra, env_extra=env, prefix=prefix)
    try:
        http = http_of(running.state, token, running.proc)
        yield HttpDaemon(running.proc, running.dir, running.notify, http)
    except BaseException:
        stop_daemon(running)
        raise
    ended = stop_daemon(running)
    assert ended == code, f"the daemon (pid {running.proc.pid}) exited with {ended}, not {code}"


def without_dac_override() -> tuple[str, ...] | None:
    """A command prefix under which permission bits bind us, even as root; None if impossible.

    Root ignores a directory's missing write bit (CAP_DAC_OVERRIDE). Dropping
    that capability (and CAP_DAC_READ_SEARCH) from the bounding set keeps uid
    0, so the checkout and the interpreter stay readable, while a 0o555
    directory owned by root becomes really read-only for the process.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return (setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}")


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` 0o555 for the block, then writable again (so tmp_path can be removed)."""
    mode = directory.stat().st_mode & 0o7777
    directory.chmod(0o555)
    try:
        yield
    finally:
        directory.chmod(mode)


# -- python jobs -----------------------------------------------------------------------------------


def beat(path: str) -> None:
    """A periodic bystander's tick: one line appended to ``path``."""
    with Path(path).open("a") as file:
        file.write("beat\n")


def flood(go: str, done: str, release: str, lines_mib: str, long_mib: str) -> None:
    """A command's body (``python -c "import faultkit; faultkit.flood(...)"``): flood stdout.

    Waits for the file ``go``, writes ``lines_mib`` MiB of 8 KiB lines and then
    ``long_mib`` MiB of one line without a newline, creates ``done`` and exits
    once ``release`` exists. It streams from one small buffer, so its own
    memory stays small.
    """
    wait_for_file(Path(go))
    out = sys.stdout.buffer
    block = (b"x" * 8191 + b"\n") * 128  # 1 MiB
    for _ in range(int(lines_mib)):
        out.write(block)
    piece = b"y" * (1 << 20)
    for _ in range(int(long_mib)):
        out.write(piece)
    out.flush()
    Path(done).touch()
    wait_for_file(Path(release))


def wait_for_file(path: Path) -> None:
    """In a command's process: wait for the test to create ``path`` (its one signal to us)."""
    while not path.exists():
        time.sleep(0.01)


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(1 for _ in file)
    except FileNotFoundError:
        return 0


STORM = threading.Event()  # set by the test: every storm child's first attempt fails at once
_storm_calls: defaultdict[str, int] = defaultdict(int)
_storm_lock = threading.Lock()
_storm_waiting = threading.Condition(_storm_lock)


def storm_reset() -> None:
    STORM.clear()
    with _storm_lock:
        _storm_calls.clear()


def storm_child(name: str) -> None:
    """First call: wait for ``STORM``, then crash. Later calls: run until cancelled."""
    from actors import current_attempt  # the module stays import-light

    with _storm_lock:
        _storm_calls[name] += 1
        first = _storm_calls[name] == 1
        _storm_waiting.notify_all()
    attempt = current_attempt()
    if first:
        STORM.wait()
        raise RuntimeError(f"{name} crashed in the storm")
    if attempt is not None:
        attempt.cancelled.wait()


def storm_wait_calls(total: int, timeout: float) -> bool:
    """Wait until the storm children have been called ``total`` times in all."""
    with _storm_waiting:
        return _storm_waiting.wait_for(lambda: sum(_storm_calls.values()) >= total, timeout)


def storm_calls() -> dict[str, int]:
    with _storm_lock:
        return dict(_storm_calls)


@functools.cache
def why_not_as_nobody() -> str | None:
    """None if this interpreter can run as nobody (uid 65534) through setpriv; else why not.

    Tests that play a second user need root, setpriv, and an interpreter
    that other users may run (one under root's 0700 home is not).
    """
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return "needs root and setpriv to act as a second user"
    nobody = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    out = subprocess.run(
        [*nobody, sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if out.returncode != 0:
        return f"nobody cannot run {sys.executable}: {out.stderr.strip()}"
    return None
