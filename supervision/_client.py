"""The control client: find a manifest's state dir and talk to its daemon over the socket.

``jobvisor status``, ``start``, ``stop``, ``restart``, ``signal``, ``reload`` and
``shutdown`` run this and nothing else, so it imports only the standard library (no pykka, gevent,
logbook, requests; YAML only when the manifest declares a ``state_dir``): a
control command costs little more than the interpreter's own start. The
daemon's side of the protocol is ``supervision._daemon``.
"""

# ruff: noqa: PTH110, PTH111, PTH112, PTH116, PTH118, PTH120, PTH123 - os.path, not pathlib: see find_state_dir

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

from actors._errors import JobvisorError
from actors._signals import signal_text
from supervision._files import check_server

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Iterator, Mapping
    from typing import Any, Final

__all__ = [
    "ACTION_TIMEOUT",
    "DEFAULT_STATE_DIR",
    "OPTIONS_PROTOCOL",
    "PROTOCOL",
    "SHUTDOWN_TIMEOUT",
    "SOCKET_NAME",
    "NoAnswerError",
    "NoDaemonError",
    "StateDirError",
    "connected",
    "elsewhere",
    "exchange",
    "find_state_dir",
    "held_by_run",
    "holder",
    "no_working_directory",
    "peer_pid",
    "request",
    "signal_name",
    "signal_number",
    "stopping_daemon",
    "stopping_pid",
]

PROTOCOL: Final = 1
# A request with an option (reload's dry_run) is sent as version 2. A daemon of version 1
# ignores keys it does not know, so it would have reloaded for real: it refuses version 2
# instead, and a daemon of version 2 refuses an option it does not know. Plain requests stay
# version 1, which every daemon takes.
OPTIONS_PROTOCOL: Final = 2
_PLAIN_KEYS: Final = frozenset({"op", "job", "signal"})
SOCKET_NAME: Final = "control.sock"
# How long start, stop, restart and reload wait for the daemon's reply: longer than the
# daemon's own wait (COMMAND_TIMEOUT, 60 s from a request's arrival, its wait behind another
# action included), so that a stop still going on, or a daemon busy with another, is said by
# the daemon, which knows it, and not as a daemon that did not answer.
ACTION_TIMEOUT: Final = 75.0
# How long shutdown waits for the daemon's reply: it is answered at once, before any job is
# stopped and behind no action (each connection has its thread), so a daemon silent this long is
# stuck or SIGSTOPped, and is said so instead of a minute's wait (the 60 s of status).
SHUTDOWN_TIMEOUT: Final = 10.0
_ACTIONS: Final = frozenset({"start", "stop", "restart", "reload"})
DEFAULT_STATE_DIR: Final = ".jobvisor"


class NoDaemonError(JobvisorError):
    """No daemon can be reached on the control socket (the CLI maps it to exit 3).

    Raised when nothing listens there (no socket, a refused connection), and
    also when the socket cannot be used at all: permission denied (another
    user's daemon), a path through a file, a path too long for a Unix socket,
    a daemon that closes without a reply. The message names the socket's path
    and the reason.
    """


class NoAnswerError(NoDaemonError):
    """A daemon took the request and gave no answer in time (stuck, SIGSTOPped): there is one,
    its ``pid`` the connection's peer (None where none is told)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class StateDirError(JobvisorError):
    """The manifest does not say where its daemon's state dir is (the CLI maps it to exit 2)."""


def find_state_dir(
    manifest: str | os.PathLike[str],
    override: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The state dir of the daemon that runs ``manifest``: ``override``, else the manifest's own.

    The manifest's own is its ``state_dir:`` (relative to the manifest's
    folder, ``~`` expanded, ``${NAME}`` from ``env``, default ``os.environ``),
    else ``.jobvisor`` beside it, as the loader has it. The manifest is only
    peeked at, not validated: a daemon must stay reachable while its manifest
    is being edited into shape, so a YAML error elsewhere leaves a top-level
    ``state_dir:`` line readable. YAML is parsed only when the text mentions
    ``state_dir`` at all, since otherwise it cannot declare one (short of
    spelling the key with escapes). Paths are strings here, not ``pathlib``
    objects: importing pathlib is a tenth of the command.

    Raises ``StateDirError`` when it cannot tell: no manifest there (and no
    ``.jobvisor`` beside where it would be), or a variable that is not set.
    """
    if override:
        return os.fspath(override)
    try:
        path = os.path.realpath(manifest)
    except FileNotFoundError:  # a relative path, and the working directory is deleted
        raise StateDirError(
            no_working_directory(os.fspath(manifest), "--manifest /path/to/jobs.yaml")
        ) from None
    default = os.path.join(os.path.dirname(path), DEFAULT_STATE_DIR)
    try:
        if not _regular(path):  # a FIFO would block the read, /dev/zero never end it
            return default
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        if not isinstance(exc, FileNotFoundError | IsADirectoryError) or os.path.isdir(default):
            return default  # a daemon whose manifest went away stays reachable where it was
        raise StateDirError(
            f"no manifest at {os.fspath(manifest)}, so no state dir to look in: pass the "
            "daemon's manifest (--manifest) or its state dir (--state-dir)"
        ) from None
    declared = _declared_state_dir(text) if "state_dir" in text else None
    if not declared:
        return default
    declared = _interpolate(declared, os.environ if env is None else env, path)
    return os.path.normpath(os.path.join(os.path.dirname(path), os.path.expanduser(declared)))


def _regular(path: str) -> bool:
    """False for what ``open`` must not read: a FIFO, a device, a socket. (A missing file or a
    directory: True, as its ``open`` says what it is.)"""
    import stat  # noqa: PLC0415 - loaded by os already: free

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return True
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def elsewhere(manifest: str | os.PathLike[str], found: str) -> str:
    """Why no daemon may be found in ``found``, the state dir ``find_state_dir`` gave for
    ``manifest``, when the manifest names its state dir: a daemon started before that
    line was written uses the one it started with. A hint to add to the error (in
    parentheses), "" when the manifest names none or ``found`` has a socket."""
    if os.path.exists(os.path.join(found, SOCKET_NAME)):
        return ""  # someone is there: not the question
    path = os.path.realpath(manifest)
    try:
        if not _regular(path):
            return ""
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return ""
    if "state_dir" not in text or not _declared_state_dir(text):
        return ""
    hint = (
        f" (the manifest names state_dir {found}; a daemon started before that edit uses the "
        "state dir it started with: pass --state-dir"
    )
    default = os.path.join(os.path.dirname(path), DEFAULT_STATE_DIR)
    if default != found and os.path.exists(os.path.join(default, SOCKET_NAME)):
        hint += f", such as {default}, where a daemon's socket is"
    return hint + ")"


def held_by_run(found: str) -> str:
    """Why no daemon answers in ``found`` when a ``jobvisor run`` holds it (its lock file,
    ``PID run``, is held, and names a live one): a run has no control socket. A hint to add
    to the error (in parentheses) naming what has one (a daemon) or an HTTP API (``run
    --http``: its address when it has one); "" when no run holds it.

    Only files of this user are read (the hint is printed: another's text could say
    anything). The lock is tried for an instant, shared, never kept: a lock file keeps its
    ``PID run`` after its run ended, and the pid may be another's since (``npm run``).
    """
    held = holder(found, "run")
    if held is None:
        return ""
    pid, written = held
    said = f" (a `jobvisor run` (pid {pid}) holds this state dir, and a run has no control socket"
    url = _http_url(found, written)
    if url:
        return f"{said}: its HTTP API is at {url} (try {url}api/status); `jobvisor daemon` has one)"
    return (
        f"{said}: `run --http HOST:PORT` serves its status and actions over HTTP, and a manifest "
        "run by `jobvisor daemon` has one)"
    )


def stopping_daemon(found: str) -> str:
    """What to say instead of "no daemon is running" when a live daemon holds ``found`` with no
    control socket: it is stopping (its socket goes first, its lock last, after its jobs'
    stop grace), or still starting; "" otherwise. A second daemon is refused as another
    holds the dir, which "no daemon is running" contradicted (operator trial h232).
    """
    pid = stopping_pid(found)
    if pid is None:
        return ""
    return (
        f"the daemon (pid {pid}) that holds {found} takes no command: it is stopping, its "
        "jobs given their stop grace, or still starting; ask again once a daemon runs"
    )


def stopping_pid(found: str) -> int | None:
    """The pid of the live daemon that holds ``found`` with no control socket (stopping, or
    still starting), which ``stopping_daemon`` names; None when there is none."""
    if os.path.lexists(os.path.join(found, SOCKET_NAME)):
        return None  # there is one to ask: it did not answer (busy), which the error says
    held = holder(found, "daemon")
    return None if held is None else held[0]


def holder(found: str, kind: str) -> tuple[int, int] | None:
    """(pid, mtime ns of the lock file) of the live ``jobvisor KIND`` (``run``, ``daemon``)
    holding ``found``'s lock now, if that is what holds it."""
    lock = _own(os.path.join(found, "daemon.lock"), held=True)
    if lock is None:
        return None
    text, written = lock
    pid_text, _, held_by = text.strip().partition(" ")
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    if held_by != kind or not _runs(pid, kind):
        return None
    return pid, written


def _own(path: str, *, held: bool = False) -> tuple[str, int] | None:
    """The text of ``path`` (its first 4 KiB) and its mtime (ns), if it is a regular file of
    this user, in UTF-8; with ``held``, only while another process holds its flock."""
    import fcntl  # noqa: PLC0415 - this hint only
    import stat  # noqa: PLC0415

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
            return None
        if held:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # held: a jobvisor runs there
            else:
                return None  # nobody holds it: what it says is of a jobvisor that ended
        return os.read(fd, 4096).decode("utf-8"), found.st_mtime_ns
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)  # and with it the shared lock, if it was taken


def _runs(pid: int, kind: str = "run") -> bool:
    """Whether ``pid`` is a running ``jobvisor run`` (``kind``: ``daemon``, a daemon; asked
    besides the lock: an older jobvisor's lock file may be held by a daemon it started)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's: running
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return kind.encode() in file.read().split(b"\0")
    except OSError:
        return True  # no /proc to ask: the signal said it runs


def _http_url(found: str, since: int) -> str:
    """The address a ``run --http`` wrote to ``found``'s ``http.json``, "" if none, or if it
    was written before the lock file was (``since``, ns): a SIGKILLed ``run --http`` or
    daemon left it, and the run holding the lock now serves no HTTP. Only a plain
    ``http://`` URL of printable ASCII is taken: it is printed as it is."""
    import re  # noqa: PLC0415 - this hint only

    address = _own(os.path.join(found, "http.json"))
    if address is None or address[1] < since:
        return ""
    try:
        url = json.loads(address[0]).get("url")
    except (ValueError, AttributeError):
        return ""
    return url if isinstance(url, str) and re.fullmatch(r"http://[!-~]+", url) else ""


def no_working_directory(path: str, absolute: str) -> str:
    """What to say when the relative ``path`` cannot be looked for: the working directory was
    deleted under the command (``absolute``: how to pass an absolute path instead)."""
    return (
        f"the working directory no longer exists (deleted?), so {path} cannot be found in it: "
        f"cd to a directory that exists, or pass an absolute path ({absolute})"
    )


def _declared_state_dir(text: str) -> str | None:
    import yaml  # noqa: PLC0415 - about 20 ms, paid only by manifests that need it

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # Being edited: the top-level line as written, when it is a plain one.
        import re  # noqa: PLC0415

        line = re.search(r"^state_dir[ \t]*:[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
        if line is None:
            return None
        value = line.group(1)
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            return value[1:end] if end > 0 else None
        plain = re.split(r"[ \t]#", value, maxsplit=1)[0].strip()
        return None if plain in ("", "~", "null", "Null", "NULL") else plain  # YAML's nulls
    declared = data.get("state_dir") if isinstance(data, dict) else None
    return declared if isinstance(declared, str) else None


def _interpolate(value: str, env: Mapping[str, str], manifest: str) -> str:
    """``value`` with ``${...}`` read as the loader reads it (SPEC §3), from ``env``."""
    if "${" not in value:
        return value
    from supervision._interpolation import INTERPOLATION, SECRET_VARIABLE, VARIABLE  # noqa: PLC0415

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        inner, closed = match.group(1), match.group(2)
        secret = SECRET_VARIABLE.fullmatch(inner) if closed else None
        variable = VARIABLE.fullmatch(inner) if closed and secret is None else None
        name = secret.group(1) if secret else variable.group(1) if variable else None
        if name is None:
            raise StateDirError(
                f"{manifest}: state_dir is {value!r}, which the loader refuses: fix it, or pass "
                "the daemon's state dir (--state-dir)"
            )
        if name in env:
            return env[name]
        if variable is not None and variable.group(2) is not None:
            return variable.group(2)
        raise StateDirError(
            f"{manifest}: state_dir is {value!r} and {name} is not set here: set it as the "
            "daemon had it, or pass the daemon's state dir (--state-dir)"
        )

    return INTERPOLATION.sub(one, value)


def signal_number(text: str) -> int:
    """The signal ``text`` names: ``HUP``, ``SIGHUP``, ``hup`` or its number (``1``).

    Raises ``ValueError`` with a message for a person when it names none (``0`` neither:
    it sends nothing, it only checks).
    """
    import signal  # noqa: PLC0415 - only the signal command pays for it

    name = text.strip().upper()
    if name.isascii() and name.isdigit():
        # Few digits: int() refuses 4,300 and more, with a message of Python's (trial h252).
        if len(name) < 10 and int(name) in signal.valid_signals():  # the real-time ones too
            return int(name)
    else:
        with contextlib.suppress(KeyError):
            return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    shown = text if len(text) <= 40 else f"{text[:37]}..."
    raise ValueError(
        f"unknown signal {shown!r}: give a name such as HUP, USR1 or TERM, or a number"
    )


def signal_name(number: int) -> str:
    """``SIGHUP`` for 1, ``SIGRTMIN+2`` for a real-time one: how a signal sent is said."""
    return signal_text(number)


def request(
    state_dir: str | os.PathLike[str], req: dict[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """Send one control request to the daemon of ``state_dir`` and return its reply.

    ``timeout``: how long to wait for it; None: ``ACTION_TIMEOUT`` for an action on the tree
    (start, stop, restart, reload), 60 s for the rest.

    Raises ``NoDaemonError`` naming the socket and the reason when no daemon
    can be reached or it answers with something that is not a reply.
    """
    if timeout is None:
        timeout = ACTION_TIMEOUT if req.get("op") in _ACTIONS else 60.0
    with connected(state_dir, timeout) as (sock, path):
        return exchange(sock, path, req, timeout)


@contextlib.contextmanager
def connected(
    state_dir: str | os.PathLike[str], timeout: float
) -> Iterator[tuple[socket.socket, str]]:
    """A connection to the daemon of ``state_dir`` (checked to be this user's own server) and
    its socket's path; ``NoDaemonError`` when none can be reached."""
    path = os.path.join(state_dir, SOCKET_NAME)
    with _connect(path, timeout) as sock:
        problem = check_server(sock, state_dir)
        if problem is not None:
            raise NoDaemonError(problem)
        yield sock, path


def exchange(sock: socket.socket, path: str, req: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send ``req`` on a ``connected`` socket and read the daemon's reply (see ``request``)."""
    try:
        # A daemon that is busy answers and closes at once: its answer is still to read.
        with contextlib.suppress(BrokenPipeError):
            version = PROTOCOL if _PLAIN_KEYS.issuperset(req) else OPTIONS_PROTOCOL
            sock.sendall(json.dumps({"v": version, **req}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise NoAnswerError(_no_answer(sock, path, timeout, req), peer_pid(sock)) from None
    except OSError as exc:
        raise NoDaemonError(f"lost the daemon at {path}: {_reason(exc)}") from None
    try:
        reply = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict):
        what = "closed the connection without a reply" if not data else "sent no JSON object"
        raise NoDaemonError(f"the daemon at {path} {what}")
    error = reply.get("error")
    if reply.get("code") == "bad_request" and isinstance(error, str):
        reply["error"] = _older(error, req)
    return reply


def _older(error: str, req: dict[str, Any]) -> str:
    """A refusal's ``error``, saying why when the daemon is older than this client.

    Ops and options only grow: one this client sends and the daemon does not know is a daemon
    that an older jobvisor started and that was never restarted after the upgrade.
    """
    if error.startswith("unknown op "):
        return (
            f"{error} (the daemon may be from an older jobvisor than this command: restart "
            "it with this jobvisor to use the command)"
        )
    if error.startswith(("unsupported protocol version 2", "unknown option ")):
        options = ", ".join(sorted(set(req) - _PLAIN_KEYS))
        return (
            f"{error} (the daemon is from an older jobvisor than this command and does not "
            f"know {options}: nothing was done; restart it with this jobvisor to use it)"
        )
    return error


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end of a unix socket; None where none is told."""
    peer_cred = getattr(socket, "SO_PEERCRED", None)
    if peer_cred is None:
        return None
    import struct  # noqa: PLC0415 - control commands stay light

    ucred = struct.Struct("3i")  # pid, uid, gid
    try:
        pid: int = ucred.unpack(sock.getsockopt(socket.SOL_SOCKET, peer_cred, ucred.size))[0]
    except OSError:
        return None
    return pid if pid > 0 else None  # 0: a process of another pid namespace, not seen here


def _no_answer(sock: socket.socket, path: str, timeout: float, req: dict[str, Any]) -> str:
    """A daemon that took a request and did not answer (stopped, stuck) may still act on it
    later: said, so that exit 3 ("no daemon") is not read as "nothing will happen"."""
    peer = peer_pid(sock)
    pid = "" if peer is None else f" (pid {peer})"
    said = f"the daemon{pid} at {path} gave no answer in {timeout:g}s"
    if req.get("op") == "status":
        return said
    return f"{said}; the command was sent and may still be carried out when it answers"


def _connect(path: str, timeout: float) -> socket.socket:
    """A connected socket to ``path``; every way of failing is one ``NoDaemonError``.

    A daemon whose listen backlog is full (a burst of clients) refuses a connect with
    EAGAIN: tried again, a little later each time, within ``timeout``; it is there.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _connect_when_heard(sock, path, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise NoDaemonError(
            f"no daemon is running for {os.path.dirname(path)} ({exc.strerror})"
        ) from None
    except OSError as exc:
        sock.close()
        raise NoDaemonError(f"cannot reach the daemon at {path}: {_reason(exc)}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def _connect_when_heard(sock: socket.socket, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            sock.connect(path)
        except BlockingIOError:
            if time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        else:
            return


def _reason(exc: OSError) -> str:
    if exc.errno is None and "too long" in str(exc):
        # A Unix socket's path holds at most 107 bytes (sun_path); the kernel gives no errno.
        return "the path is too long for a Unix socket (107 bytes at most): use a shorter one"
    return exc.strerror or str(exc)
