"""`jobvisor daemon`: a long-running tree with a control socket, reload by difference, sd_notify.

The control protocol is one JSON object per line, one request per connection (the
client's side, ``request``, is ``supervision._client``):
``{"v": 1, "op": "status" | "start" | "stop" | "restart" | "reload", "job": PATH}``, or
``{"v": 1, "op": "signal", "job": PATH, "signal": NUMBER}``, or ``{"v": 1, "op": "shutdown"}``
(a graceful stop of the daemon, as SIGTERM's); a request with an option,
``{"v": 2, "op": "reload", "dry_run": true}`` (or a start's or restart's ``"no_block": true``:
answered once taken, not once the child is up), is version 2, which a daemon of version 1
refuses (it ignored unknown keys: it would have reloaded), and which refuses an option it
does not know. Each is answered by ``{"ok": true, "result": ...}`` or
``{"ok": false, "code": ..., "error": ...}``.
Malformed, truncated or oversized requests get an error reply; a connection
never stalls the daemon (each has a deadline) and never crashes it.
"""

from __future__ import annotations

import _socket
import contextlib
import functools
import json
import os
import select
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import logbook

from actors import (
    ActionTimeoutError,
    DependencyDownError,
    GroupDownError,
    JobvisorError,
    NoSuchChildError,
    active_runtime,
)
from actors._checks import fmt_duration
from actors._errors import ChildrenChangedError
from actors._runtime import start_or_say
from supervision._app import (
    STOP_SIGNALS,
    forced_stop,
    jobvisor_version,
    killed_run,
    say_killed,
    say_noted,
    take_signals,
)
from supervision._client import (
    OPTIONS_PROTOCOL,
    PROTOCOL,
    SOCKET_NAME,
    NoDaemonError,
    request,
    signal_name,
)
from supervision._events import Commanded, Escalated, GaveUp, Reloaded
from supervision._explain import explain_policy
from supervision._fdlimit import AcceptShortage, fit_open_files
from supervision._files import Ident, check_parents, identity, remove_if_same, write_atomic
from supervision._hangup import off_the_terminal
from supervision._held import lost_line
from supervision._history import JournalError, last_daemon_start
from supervision._hubwatch import HubWatch
from supervision._jobdiff import EnvMemo, changed_fields
from supervision._manifest import ManifestError, load_manifest
from supervision._notifier import notify_changes
from supervision._secrets import SecretMasker
from supervision._spec import ChildSpec, JobSpec, SupervisorSpec, same_child
from supervision._statedir import LOCK_NAME, StateDirLock, StateDirWatch
from supervision._status import Process
from supervision._table import flatten_status
from supervision._until_up import UP, UntilUp, down_again, not_up_yet

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Iterator
    from types import FrameType

    from supervision._app import Composition
    from supervision._events import Event
    from supervision._journal import Journal
    from supervision._listen import HttpSpec
    from supervision._manifest import Manifest
    from supervision._tree import Tree

__all__ = [
    "LOCK_NAME",
    "PROTOCOL",
    "ControlServer",
    "Daemon",
    "DaemonError",
    "NoDaemonError",
    "act",
    "diff_specs",
    "request",
    "sd_notify",
]

log = logbook.Logger("supervision.daemon")

MAX_REQUEST: Final = 64 * 1024
REQUEST_DEADLINE: Final = 5.0  # for a whole request to arrive, however it trickles in
REPLY_DEADLINE: Final = 30.0  # for a reply (a big tree's status) to be taken by its client
MAX_CONNECTIONS: Final = 64  # answered at once; a connection past them is told "busy"
RELOAD_TRIES: Final = 3  # a reload racing a group's stop or start looks again, this often
# What a step meets when a group went down, came up or restarted since the reload looked: it
# changed nothing, and the reload works out the rest again from what the tree runs now.
_RACED: Final = (NoSuchChildError, ChildrenChangedError)
FORCED_EXIT: Final = 1  # a second signal cut the stop short: no clean stop, as run's exit
LOST_EXIT: Final = 1  # its state dir was deleted under it: it stopped, not asked to
ENDED_EXIT: Final = 1  # its tree ended by itself (escalation past the root): nothing to supervise
# The SIGHUPs of one hangup (the shell's, the kernel's as the session's leader exits) come
# within milliseconds of the terminal's loss; one this long after it is a person's.
HANGUP_WINDOW: Final = 2.0
# The least an action waits for the tree, even one that got the lock at its request's deadline.
ACT_FLOOR: Final = 1.0


class DaemonError(JobvisorError):
    """The daemon cannot start: the control socket's path is taken by something else.

    (Another jobvisor holding the state dir is ``StateDirHeldError``.)
    """


# -- sd_notify ---------------------------------------------------------------------------------


# systemd's variables for the daemon itself: taken out of the environment as the daemon starts
# (``take_systemd_env``), so that no job inherits them and speaks for the service.
_SYSTEMD_NAMES: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_systemd_env: dict[str, str] | None = None


def take_systemd_env() -> None:
    """Move ``NOTIFY_SOCKET`` and ``WATCHDOG_*`` from the environment to the daemon's own keep,
    as sd_notify's ``unset_environment`` does: a job that inherited them could say READY=1 or
    STOPPING=1 for the whole service (h271). Once, before any job starts."""
    global _systemd_env  # noqa: PLW0603 - the process's one daemon
    if _systemd_env is None:
        _systemd_env = {k: os.environ.pop(k) for k in _SYSTEMD_NAMES if k in os.environ}


def _systemd() -> Mapping[str, str]:
    return os.environ if _systemd_env is None else _systemd_env


def sd_notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to systemd's ``NOTIFY_SOCKET``, if it asked for one; True if sent."""
    env = _systemd() if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    global _notify_blocked  # noqa: PLW0603 - one warning per burst, whichever thread sends
    # The C socket, never gevent's: a patched socket waits on the hub when the send would
    # block, whatever MSG_DONTWAIT says, and a full socket then held the stop for ever.
    sock = _socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with contextlib.closing(sock):
        try:
            # Never blocking: a socket nobody reads fills after a few datagrams (the watchdog's
            # come often), and a blocking send then waits for ever, STOPPING=1 at exit too.
            sock.sendto(message.encode(), socket.MSG_DONTWAIT, address)
        except BlockingIOError as exc:
            if not _notify_blocked:
                log.warning(
                    "sd_notify to {} failed: {} (nobody reads it; said once until a send "
                    "gets through)",
                    env.get("NOTIFY_SOCKET"),
                    exc,
                )
            _notify_blocked = True
            return False
        except OSError as exc:
            log.warning("sd_notify to {} failed: {}", env.get("NOTIFY_SOCKET"), exc)
            return False
    _notify_blocked = False
    return True


_notify_blocked = False  # the last send found the socket full: said already


# -- reload by difference ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a reload: add, remove, replace or update ``path`` under ``parent``.

    ``update`` gives a group (the root: path "") its new strategy, policy and order, and
    its parent the spec it restarts it from; ``says`` is what it tells a person (nothing
    when only its children changed, which their own steps say). A job's ``update`` gives
    it a new ``autostart``, its only change: nothing is started or stopped.
    """

    op: str
    path: str
    parent: str
    spec: ChildSpec | None = None
    before: str | None = None  # add: the sibling it goes before (None: last), as in the manifest
    says: tuple[str, ...] = ()
    # What ``spec`` follows at ``path``: a replace's old child, a job's old spec, a group's
    # that is down (its jobs change with it). The journal's hashes of its jobs change with the
    # step; None for a running group's update (its jobs' own steps change theirs).
    was: ChildSpec | None = None
    # A replace of a job: the manifest's fields it changes, as ``update`` names its own (none:
    # it changes what no field of a manifest says).
    fields: tuple[str, ...] = ()

    @property
    def named(self) -> str:
        """``op path``, and a replace's fields after a colon."""
        said = f"{self.op} {self.path}"
        return f"{said}: {', '.join(self.fields)}" if self.fields else said

    @property
    def summary(self) -> tuple[str, ...]:
        if self.op == "update":
            return self.says
        held = self.op != "remove" and isinstance(self.spec, JobSpec) and not self.spec.autostart
        return (self.named + (" (not started: autostart: false)" if held else ""),)


def diff_specs(
    old: SupervisorSpec,
    new: SupervisorSpec,
    prefix: str = "",
    down: frozenset[str] = frozenset(),
) -> list[Change]:
    """What turns the running ``old`` tree into ``new``; unchanged children are not named.

    A group is changed in place: its children one by one, then its own policy and order
    (``update``, last). A group in ``down`` (not running) only takes its new spec, to
    start from when it starts again.

    The removes come first, wherever they are (a job moved to another group stops at its
    old path before it starts at its new one, whichever comes first in the manifest), then
    the new specs of the groups down (at once: one that starts while the slow steps run
    starts from its new spec), then the rest in the manifest's order.
    """
    return sorted(_diff(old, new, prefix, down, {}), key=lambda c: _rank(c, down))


def _rank(change: Change, down: frozenset[str]) -> int:
    if change.op == "remove":
        return 0
    return 1 if change.op == "update" and change.path in down else 2


def _diff(
    old: SupervisorSpec, new: SupervisorSpec, prefix: str, down: frozenset[str], memo: EnvMemo
) -> list[Change]:
    changes: list[Change] = []
    old_children = {c.name: c for c in old.children}
    new_names = {c.name for c in new.children}
    for name, child in reversed(old_children.items()):
        if name not in new_names:
            changes.append(Change("remove", _join(prefix, name), prefix, child))
    for child, before in zip(new.children, _anchors(new, old_children), strict=True):
        was = old_children.get(child.name)
        if was != child:
            changes.extend(_changed(was, child, prefix, before, down, memo=memo))
    if old != new and not (prefix and prefix in down):
        parent = prefix.rpartition("/")[0]
        says = _tells(old, new, prefix, _placed(old, changes, prefix))
        changes.append(Change("update", prefix, parent, new, says=says))
    return changes


def _changed(
    was: ChildSpec | None,
    child: ChildSpec,
    prefix: str,
    before: str | None,
    down: frozenset[str],
    *,
    memo: EnvMemo,
) -> list[Change]:
    path = _join(prefix, child.name)
    if was is None:
        return [Change("add", path, prefix, child, before)]
    if isinstance(child, JobSpec) and same_child(was, child):  # only its autostart changed
        flag = "true" if child.autostart else "false"
        said = (
            f"update {path}: autostart: {flag} (applies when its tree or group next starts it; "
            "nothing is started or stopped now)"
        )
        return [Change("update", path, prefix, child, says=(said,), was=was)]
    if not (isinstance(was, SupervisorSpec) and isinstance(child, SupervisorSpec)):
        fields = changed_fields(was, child, memo)
        return [Change("replace", path, prefix, child, before, was=was, fields=fields)]
    if path in down:
        # Its children change only in the spec it starts from next: said, not done.
        inner = (
            c
            for c in _diff(was, child, path, frozenset(), memo)
            if c.op != "update" or isinstance(c.spec, JobSpec)  # a job's: its autostart
        )
        later = [line for c in inner for line in c.summary]
        says = (*_tells(was, child, path), *(f"{line} (at {path}'s next start)" for line in later))
        return [Change("update", path, prefix, child, says=says, was=was)]
    return _diff(was, child, path, down, memo)


def _anchors(new: SupervisorSpec, there: Container[str]) -> list[str | None]:
    """For each child of ``new``, the next sibling after it that is ``there`` already (or None):
    an added child goes in before it, added ones in order."""
    befores: list[str | None] = []
    following: str | None = None
    for child in reversed(new.children):
        befores.append(following)
        if child.name in there:
            following = child.name
    return befores[::-1]


def _placed(old: SupervisorSpec, changes: list[Change], prefix: str) -> list[str]:
    """The order ``changes`` leave a group's children in before its ``update`` (in one pass:
    a reload may add thousands)."""
    gone = {c.path for c in changes if c.op == "remove" and c.parent == prefix}
    added: dict[str | None, list[str]] = {}  # by the sibling each goes before; None: last
    for change in changes:
        if change.op == "add" and change.parent == prefix:
            assert change.spec is not None
            added.setdefault(change.before, []).append(change.spec.name)
    names: list[str] = []
    for child in old.children:
        names.extend(added.get(child.name, ()))
        if _join(prefix, child.name) not in gone:
            names.append(child.name)
    return names + added.get(None, [])


def _tells(
    old: SupervisorSpec, new: SupervisorSpec, path: str, placed: list[str] | None = None
) -> tuple[str, ...]:
    """What an update changes that a person did not see in the other steps of the reload."""
    label = path or "supervisor"
    before = set(_policy_lines(old, nested=bool(path)))
    changed = [line for line in _policy_lines(new, nested=bool(path)) if line not in before]
    says = [f"update {label}: {'; '.join(changed)}"] if changed else []
    order = [c.name for c in new.children]
    if placed is not None and placed != order:
        says.append(f"reorder {label}: {', '.join(order)}")
    return tuple(says)


def _policy_lines(spec: SupervisorSpec, *, nested: bool) -> list[str]:
    lines = [f"restart: {spec.restart.value}"] if nested else []
    lines.append(f"strategy: {spec.strategy.value}")
    explain_policy(spec.policy, lines, "")
    if nested:
        grace = "none (waits for its children)" if spec.grace is None else fmt_duration(spec.grace)
        lines.append(f"grace: {grace}")
    else:
        budget = spec.policy.budget
        lines.append(
            "budget: none"
            if budget is None
            else f"budget: max_restarts={budget.max_restarts} within={fmt_duration(budget.within)}"
        )
    return lines


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


# -- the control socket ------------------------------------------------------------------------


class ControlServer:
    """A Unix stream socket (mode 0600) answering control requests on its own threads.

    A request must arrive whole within ``deadline`` seconds, however it trickles in. At
    most ``most`` connections are open at once: a new one past them takes the place of
    the oldest still sending its request (cut off), so a request sent whole is answered
    however many clients connect and say nothing; when every one is being answered, the
    new one is told ``busy`` at once. A thread per connection, never more than ``most`` (one
    more for each request read whole just as its place was given away, while it is answered).
    A daemon out of file descriptors (or memory) says so and accepts again once it can
    (``AcceptShortage``): the connections wait in the socket's queue meanwhile.
    """

    def __init__(
        self,
        path: Path,
        handle: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        deadline: float = REQUEST_DEADLINE,
        most: int = MAX_CONNECTIONS,
    ) -> None:
        if not deadline > 0:
            raise ValueError(f"deadline: expected a positive number of seconds, got {deadline!r}")
        if type(most) is not int or most < 1:
            raise ValueError(f"most: expected a number of connections of at least 1, got {most!r}")
        self.path = path
        self._handle = handle
        self._deadline = deadline
        self._most = most
        self._lock = threading.Lock()
        self._open = 0  # places taken: connections reading their request or being answered
        # Those still reading their request, oldest first (a dict as an ordered set), and
        # those cut off for a newer one, whose threads are ending.
        self._reading: dict[socket.socket, None] = {}
        self._cut: set[socket.socket] = set()
        self._sock, self._ident = _bind_private(path)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="jv-control", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """How many places are taken now: connections reading their request or answered."""
        return self._open

    def _serve(self) -> None:
        # Out of fds (its jobs' pipes and files too), or the host out of memory: the loop lives
        # through it, or no command would reach the daemon again. Only a close ends it.
        shortage = AcceptShortage(f"control socket {self.path}", self._closed)
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError as exc:
                if shortage.failed(exc):
                    continue
                return
            shortage.accepted()
            if not self._take(conn):
                _busy(conn, self._most)
                continue
            try:
                threading.Thread(
                    target=self._answer, args=(conn,), name="jv-control-conn", daemon=True
                ).start()
            except Exception:  # no thread to be had (RuntimeError): this one is told so
                self._done(conn, keep=True)
                _busy(conn, self._most)

    def _take(self, conn: socket.socket) -> bool:
        """A place for ``conn``: a free one, or that of the oldest connection still reading a
        request it has not sent whole; False if none."""
        with self._lock:
            if self._open < self._most:
                self._open += 1
            else:
                oldest = next((c for c in self._reading if not _sent_whole(c)), None)
                if oldest is None:
                    return False
                # Its place passes to ``conn``; its read ends at once, and its thread with it.
                # Only the reading side is shut: should its request have come whole meanwhile
                # (read by its thread already), it is still answered.
                del self._reading[oldest]
                self._cut.add(oldest)
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RD)
            self._reading[conn] = None
            return True

    def _answer(self, conn: socket.socket) -> None:
        try:
            problem: _BadRequest | None = None
            whole = False
            try:
                data, whole = _read_request(conn, self._deadline)
            except _BadRequest as exc:
                data, problem = b"", exc
            with self._lock:
                cut = conn in self._cut
                if not cut:
                    del self._reading[conn]
                elif whole:
                    # Read whole just as its place went to a newer one (the peek saw its
                    # buffer already emptied): it is answered after all, so it holds a place
                    # again, one past the most for as long as that takes. Uncounted, the newer
                    # one's end freed a place this one still held: the most was passed for good.
                    self._cut.discard(conn)
                    self._open += 1
            if cut and not whole:
                return  # its place went to a newer connection before it said what it wants
            try:
                if problem is not None:
                    raise problem
                reply = self._reply(data)
            except _BadRequest as exc:
                reply = {"ok": False, "code": "bad_request", "error": str(exc)}
            except Exception as exc:  # a bug here must not take the daemon down
                log.exception("control request failed")
                reply = {"ok": False, "code": "internal", "error": str(exc)}
            with contextlib.suppress(OSError):
                conn.settimeout(REPLY_DEADLINE)
                conn.sendall(json.dumps(reply).encode() + b"\n")
        finally:
            self._done(conn)

    def _done(self, conn: socket.socket, *, keep: bool = False) -> None:
        """``conn``'s place is free again (``keep``: it stays open, to be told busy)."""
        if not keep:
            conn.close()
        with self._lock:
            if conn in self._cut:
                self._cut.discard(conn)  # its place was passed on already
            else:
                self._reading.pop(conn, None)  # (there still if its thread never started)
                self._open -= 1

    def _reply(self, data: bytes) -> dict[str, Any]:
        try:
            req = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _BadRequest(f"not JSON: {exc}") from None
        except ValueError:  # int()'s limit on digits (sys.get_int_max_str_digits)
            raise _BadRequest(
                f"not JSON: a number of more than {sys.get_int_max_str_digits()} digits (a "
                "request is one flat JSON object of short values)"
            ) from None
        except RecursionError:  # the decoder recurses per bracket: a client's bad input
            raise _BadRequest(
                "not JSON: too deeply nested (a request is one flat JSON object)"
            ) from None
        if not isinstance(req, dict):
            raise _BadRequest("expected a JSON object")
        version = req.get("v")
        if version not in (PROTOCOL, OPTIONS_PROTOCOL) or type(version) is not int:
            raise _BadRequest(
                f"unsupported protocol version {version!r}: expected {PROTOCOL} or "
                f"{OPTIONS_PROTOCOL}"
            )
        op = req.get("op")
        if op not in _KEYS:
            raise _BadRequest(
                f"unknown op {op!r}: expected status, start, stop, restart, signal, reload or "
                "shutdown"
            )
        _check_options(req, version, op)
        if op in ("start", "stop", "restart", "signal") and not (
            isinstance(req.get("job"), str) and req["job"].strip("/")
        ):
            raise _BadRequest(f"{op} needs a job path such as etl/load")
        if op == "signal":
            number = req.get("signal")
            if type(number) is not int or number not in signal.valid_signals():
                raise _BadRequest(f"signal needs a signal's number, got {number!r}")
        return self._handle(req)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)
        remove_if_same(self.path, self._ident)  # a newer daemon's socket stays


class _BadRequest(Exception):
    pass


def _check_options(req: dict[str, Any], version: int, op: str) -> None:
    """Refuse a version 2 request's option that this daemon does not know (never ignored:
    version 1 ignores unknown keys, so no client sends an option as version 1)."""
    if version == OPTIONS_PROTOCOL:
        unknown = sorted(set(req) - {"v", "op"} - _KEYS[op])
        if unknown:
            raise _BadRequest(
                f"unknown option {unknown[0]!r} for {op}: this daemon knows "
                + (", ".join(sorted(_KEYS[op])) or "none")
            )
    for option in ("dry_run", "no_block"):
        if option in req and type(req[option]) is not bool:
            raise _BadRequest(f"{option} needs true or false, got {req[option]!r}")


# A dependant in one of these states does not run on after its dependency's stop.
_NOT_RUNNING_ON: Final = frozenset({"stopped", "succeeded", "failed", "gave_up", None})

# Each op's keys besides "v" and "op": what a version 2 request may carry.
_KEYS: Final[dict[str, frozenset[str]]] = {
    "status": frozenset(),
    "start": frozenset({"job", "no_block"}),
    "stop": frozenset({"job"}),
    "restart": frozenset({"job", "no_block"}),
    "signal": frozenset({"job", "signal"}),
    "reload": frozenset({"dry_run"}),
    "shutdown": frozenset(),
}


def _busy(conn: socket.socket, most: int) -> None:
    """Tell a connection past the most that the daemon is busy, never waiting on it."""
    with conn, contextlib.suppress(OSError):
        conn.settimeout(0.0)  # never blocks: the accepting thread sends it
        reply = {
            "ok": False,
            "code": "busy",
            "error": f"the daemon has {most} control connections open, its most: try again",
        }
        conn.send(json.dumps(reply).encode() + b"\n")  # a few hundred bytes: the buffer takes it


def _sent_whole(conn: socket.socket) -> bool:
    """Whether ``conn``'s request waits whole in its buffer, read by nobody yet; never waits.

    Through a copy of its fd made non-blocking: ``conn`` itself, with a timeout, would first
    wait up to that timeout for something to read (its reader's fd is non-blocking already:
    a socket with a timeout is, so the copy changes nothing for it).
    """
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as peek:
            peek.settimeout(0.0)
            return b"\n" in peek.recv(MAX_REQUEST, socket.MSG_PEEK)
    except OSError:  # nothing there yet (EAGAIN), or it is gone
        return False


def _read_request(conn: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """The request's line, and whether it came whole (a newline, not the end of the stream)."""
    end = time.monotonic() + deadline
    data = b""
    while b"\n" not in data:
        try:
            conn.settimeout(max(0.0, end - time.monotonic()) or 1e-9)
            chunk = conn.recv(4096)
        except TimeoutError:
            raise _BadRequest(f"no complete request within {deadline:g}s") from None
        except OSError as exc:  # reset by its client, or cut off for a newer one
            raise _BadRequest(f"the connection was lost while reading: {exc}") from None
        if not chunk:
            if data.strip():
                return data, False  # a client that closed without a newline: take what came
            raise _BadRequest("empty request")
        data += chunk
        if len(data) > MAX_REQUEST:
            raise _BadRequest(f"request larger than {MAX_REQUEST} bytes")
    return data.split(b"\n", 1)[0], True


def _bind_private(path: Path) -> tuple[socket.socket, Ident]:
    """Bind a Unix socket at ``path`` (0600) and return it with its file's ``identity``.

    It is bound under a new name, made 0600 and renamed over ``path``, and
    only then listens: nobody can connect before it is private, and a stale
    socket (the lock says no daemon owns it) or a planted symlink at ``path``
    is replaced, never followed. Not ``os.umask``: it is the whole process's.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise DaemonError(f"{path} exists and is not a socket: remove it, or use --state-dir")
    # No longer than the final name: a path that fits a Unix socket must fit while binding.
    temp = path.with_name(f".cs{os.getpid()}")
    temp.unlink(missing_ok=True)  # left by a killed daemon of the same pid: the lock is ours
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(temp))
        try:
            temp.chmod(0o600)
            temp.rename(path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        st = os.lstat(path)
        sock.listen(socket.SOMAXCONN)  # a burst of clients waits here, not refused (EAGAIN)
    except BaseException:
        sock.close()
        raise
    return sock, identity(st)


# -- the daemon --------------------------------------------------------------------------------


class Daemon:
    """Runs a manifest's tree until SIGTERM/SIGINT, reloading on SIGHUP or a request.

    The first SIGTERM or SIGINT stops the tree gracefully; a second one, while it stops,
    kills what still runs at once (``forced``: ``run()`` returns ``FORCED_EXIT`` then, and
    the caller should end the process with ``os._exit``, as after ``run``'s second signal).
    A tree that ends by itself (an escalation past the root, the root giving up on the
    tree's budget) ends the daemon too (``ended`` says why; ``ENDED_EXIT``), and so does the
    hangup of the terminal a foreground daemon runs in (a graceful stop, as SIGTERM's),
    unless SIGHUP was ignored when it started (``hangups_ignored``: ``nohup``).
    ``pinned``: the settings the command line gave (``logging.level`` for ``--log-level``),
    which a reload of the manifest does not change.
    """

    def __init__(
        self,
        manifest_path: Path,
        compose: Callable[[Any], Composition],
        *,
        pidfile: Path | None = None,
        state_dir: Path | None = None,
        http: HttpSpec | None = None,
        on_ready: Callable[[], None] | None = None,
        pinned: Container[str] = (),
        hangups_ignored: bool = False,
    ) -> None:
        self._state_dir = state_dir
        self._pinned = pinned
        self._started: Manifest | None = None  # as read at the start, before the flags
        self._on_ready = on_ready  # --detach: the launcher waits for this
        self._http = http  # --http: the endpoint's address is fixed for the daemon's life
        self.manifest_path = manifest_path
        self._compose = compose
        self._pidfile = pidfile
        # Flags plus a self-pipe, not Events: a signal handler runs in the main thread between
        # two bytecodes and must not take a lock the main thread may hold; writing the pipe
        # wakes the main loop at once, where a timed wait noticed a stop up to 0.2 s late.
        self._stopping = False
        self._again = False  # a signal came while stopping: what still runs is to be killed
        self._stop_by: int | None = None  # the signal that began the stop, if one did
        self._shutdown_via: str | None = None  # or the shutdown request, and through what
        self._noted: list[int] = []  # SIGUSR1s and SIGUSR2s the main loop has yet to say
        self.forced = False  # it was: the stop was cut short
        # Under gevent, a job's call that never yields keeps the main loop from acting on a
        # signal: this says so, and ends the process at the second one (see HubWatch).
        self._hub_watch: HubWatch | None = None
        self.lost: str | None = None  # why it stopped by itself: its state dir went (see _lost)
        self.ended: str | None = None  # why its tree ended by itself (see _follow_end)
        self._root_gave_up: str | None = None  # the root's reason, when it gave up on the tree
        self._root_closing = False  # the root escalated or gave up: the tree is going down
        # A foreground daemon's controlling terminal (see _hung_up): whether it had one at the
        # start, since when it is gone, and a hangup the main loop is still to say.
        self._hangups_ignored = hangups_ignored
        self._terminal = False
        self._terminal_gone_at: float | None = None
        self._off_terminal = False  # a hangup was taken (its stdio went to /dev/null)
        self._went_quietly = False  # the terminal went and no hangup's SIGHUP followed: said
        self._hangup: str | None = None  # "stop" or "ignored", until the main loop says it
        self._reload_asked = False
        self._hangup_stop = False  # the terminal's hangup began the stop
        self._failed: str | None = None  # an error ended the daemon: its daemon_stop row says
        self._wake_r = self._wake_w = -1  # the self-pipe, open while run() runs
        self._pipe_lock = threading.Lock()
        self._lock = threading.Lock()  # one reload or control action on the tree at a time
        self._doing: str | None = None  # what holds _lock: named to a request that waits on it
        # One signal to a job at a time (a signal never waits for _lock's stop), so that...
        self._signal_lock = threading.Lock()
        # ...the channel of the action under way, by action and path (each one's lock is held
        # meanwhile), tells its Commanded row through what the person asked (see _noting).
        self._via: dict[tuple[str, str], str] = {}
        # The stop row is the daemon's last: server.close() joins only the accept thread, so a
        # reload under way (a control or HTTP thread) may end after it; its row is then left
        # out (its log line says it), else the next start would take this daemon for killed.
        self._rows_lock = threading.Lock()
        self._rows_closed = False
        self.composition: Composition | None = None
        self.tree: Tree | None = None
        self.process: Process | None = None  # what its status says of it, from run()

    def _fixed(self, manifest: Manifest) -> Manifest:
        """``manifest`` as this daemon runs it: in the state dir given at start
        (``--state-dir``), with the endpoint of ``--http``, if any."""
        if self._state_dir is not None:
            manifest = replace(manifest, state_dir=self._state_dir)
        if self._http is not None:
            manifest = replace(manifest, http=self._http)
        return manifest

    def _reloading(self, read: Manifest) -> Manifest:
        """A reload's manifest as this daemon runs it; the open-file limit raised for the jobs
        it adds (the start raised it for the first manifest's, ``supervision._app``)."""
        manifest = self._fixed(read)
        fit_open_files(manifest.root)
        return manifest

    def run(self) -> int:
        """Serve until stopped; 0 after a clean stop, ``FORCED_EXIT`` after a forced one."""
        self._started = load_manifest(self.manifest_path)
        manifest = self._fixed(self._started)
        state_dir = manifest.state_dir
        self.process = Process("daemon", self.manifest_path, state_dir)
        self._terminal = _has_terminal()
        if self._pidfile is not None:
            # Written beside its path and renamed over it: whoever could swap its directory
            # would choose what it replaces (and what is removed at exit).
            check_parents(self._pidfile, "pidfile", "--pidfile")
        lock = StateDirLock(state_dir, "daemon")
        watch: StateDirWatch | None = None
        try:
            with self._pipe_lock:
                self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            # Its terminal is looked at as often as its state dir, on the same thread.
            watch = StateDirWatch(lock, self._lost, each=self._look_at_terminal)
            code = self._serve(manifest, state_dir)
        finally:
            if watch is not None:
                watch.close()
            self._close_pipe()
            lock.close()
        return code

    def _lost(self, why: str, holder: str | None) -> None:
        """Stop the daemon: its state dir or lock file was deleted or replaced while it ran.

        Without its lock another daemon would start there and run every job a second time,
        and without its socket no command reaches this one: two must not run, and this one
        can no longer be told to stop, so it stops (exit ``LOST_EXIT``) and says why. Under
        systemd a ``Restart=on-failure`` starts it again in a new state dir. (The watch's
        thread; ``run`` does the same, ``supervision._app``.)
        """
        self.lost = why
        log.error("{}", lost_line(why, holder, "daemon", LOST_EXIT))
        self.stop()

    def _serve(self, manifest: Any, state_dir: Path) -> int:
        take_systemd_env()
        restore_signals, server, written = self._listen(state_dir)
        watchdog = _Watchdog.start_if_asked()
        began: float | None = None  # when the stop began: the log's last line says how long
        try:
            self.composition = self._compose(manifest)
            if self.composition.endpoint is not None:  # HTTP actions wait for a reload, like ours
                self.composition.endpoint.act = lambda op, job, signum, up: self.handle(
                    {"op": op, "job": job, "signal": signum, "no_block": not up}, via="http"
                )
                self.composition.endpoint.process = self.process
            journal = self.composition.journal
            if journal is not None:
                journal.daemon("daemon_start", _start_detail(self.manifest_path, journal.path))
            self.tree = self.composition.start(sink=_noting(journal, self._on_root_end, self._via))
            tree = self.tree
            follower = start_or_say(
                lambda: threading.Thread(
                    target=self._follow_end, args=(tree,), name="jv-treeend", daemon=True
                ),
                "the main loop looks every second whether the tree ended by itself instead",
            )
            if self._await_start(self.tree):
                self._announce_ready(state_dir)
            self._until_stopped(tree, follower is None)
            began = time.monotonic()
            sd_notify("STOPPING=1")
            log.info("daemon stopping")
        except BaseException as exc:
            self._failed = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            server.close()
            stopping = time.monotonic() if began is None else began  # an error's stop too
            if self.tree is not None:
                self._stop_tree(self.tree)
            code = self._exit_code()
            if self.composition is not None and self.composition.journal is not None:
                took = time.monotonic() - stopping
                with self._rows_lock:  # its last row: a reload still under way writes none
                    self._rows_closed = True
                    self.composition.journal.daemon("daemon_stop", self._stop_detail(code, took))
            if self.composition is not None:
                # Its last line once the journal is flushed: the log ends with how it ended.
                said = None if began is None else functools.partial(self._farewell, code, began)
                self.composition.close(then=said)
            restore_signals()
            if self._pidfile is not None and written is not None:
                # By its own path, and only while it is still the file written above.
                remove_if_same(self._pidfile, written)
        return code

    def _until_stopped(self, tree: Tree, look: bool) -> None:
        """The main loop: say what the signal handlers noted, reload when asked, until a stop.
        ``look``: no thread follows the tree's end (``_follow_end``), so this loop looks every
        second whether it ended by itself."""
        while not self._stopping:
            select.select([self._wake_r], [], [], 1.0 if look else None)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
            self._say_hangup()
            say_noted(self._noted)
            if look and tree.ended:
                self._follow_end(tree)  # returns at once: it ended
            if self._reload_asked and not self._stopping:
                self._reload_asked = False
                self.reload(via="signal")  # a refusal is logged there
        self._say_hangup()
        say_noted(self._noted)
        stop_by = self._stop_by
        if stop_by is not None and stop_by in STOP_SIGNALS:
            name = signal.Signals(stop_by).name
            log.warning("{}: taken as SIGTERM: stopping every job gracefully", name)

    def _stop_detail(self, code: int, took: float) -> dict[str, Any]:
        """How the daemon stopped, for its ``daemon_stop`` row: its pid, ``how`` (the signal's name,
        ``hangup``, ``shutdown``, ``state dir lost``, ``tree ended``, ``error``), ``via`` when a
        signal or a request asked, the exit code and how long the stop took; the reason where
        there is one."""
        detail: dict[str, Any] = {}
        if self._failed is not None:
            detail = {"how": "error", "error": self._failed}
        elif self.lost is not None:
            detail = {"how": "state dir lost", "error": self.lost}
        elif self.ended is not None:
            detail = {"how": "tree ended", "error": self.ended}
        elif self._hangup_stop:
            detail = {"how": "hangup", "via": "signal"}
        elif self._stop_by is not None:
            detail = {"how": signal.Signals(self._stop_by).name, "via": "signal"}
        elif self._shutdown_via is not None:
            detail = {"how": "shutdown", "via": self._shutdown_via}
        else:
            detail = {"how": "asked"}  # Daemon.stop() by the program that embeds it
        if self.forced:
            detail["forced"] = True  # a second signal killed what still ran
        detail.update(code=code, took=round(took, 3))
        if self.composition is not None and "error" in detail:
            detail["error"] = self.composition.masker.mask(str(detail["error"]))
        # Its pid: a daemon that lost its lock may stop after the next one started (see
        # _start_detail), and whose stop this is must not be guessed from the order.
        return {"pid": os.getpid(), **detail}

    def _exit_code(self) -> int:
        if self.forced:
            return FORCED_EXIT
        if self.lost is not None:
            return LOST_EXIT
        return ENDED_EXIT if self.ended is not None else 0

    def _follow_end(self, tree: Tree) -> None:
        """Stop the daemon when its tree ends by itself (its own thread, until the tree ends).

        An escalation past the root ends the run (SPEC §2), and a root that gave up on the
        tree's budget stopped every job: nothing is left to supervise, and no command can
        start a job again. A daemon that ran on would hide that from systemd, whose
        ``Restart=on-failure`` starts it again once it has exited 1.
        """
        tree.wait_ended()
        if self._stopping:
            return  # its own stop ended the tree
        result = tree.result()
        if result.escalation is not None:
            self.ended = "escalation reached the root"
            detail = f"{self.ended}: {result.escalation}"
        elif self._root_gave_up is not None:
            self.ended = "the root gave up"
            detail = f"{self.ended}: {self._root_gave_up}"
        elif tree.status()["state"] == "failed":
            self.ended = "the root supervisor failed"
            detail = f"{self.ended} (its error is logged above)"
        else:
            self.ended = detail = "the root supervisor stopped by itself"
        composition = self.composition
        if composition is not None:
            detail = composition.masker.mask(detail)
        log.error(
            "the tree ended by itself: {}; no job runs and no command can start one again; "
            "stopping (exit {})",
            detail,
            ENDED_EXIT,
        )
        self.stop()

    def _on_root_end(self, event: Event) -> None:
        """The root escalated or gave up (its thread, before it says its start is over)."""
        self._root_closing = True
        if isinstance(event, GaveUp):
            self._root_gave_up = event.reason

    def _listen(self, state_dir: Path) -> tuple[Callable[[], None], ControlServer, Ident | None]:
        """Take the signals, then open the control socket and write the pidfile: what restores
        the signals, the server, and the pidfile as written (None without one).

        The signals first: a SIGTERM sent as soon as the socket or the pidfile appears (what a
        launcher or a test waits for) must stop the daemon, not kill it by the default action.
        """
        restore_signals = self._handle_signals()
        server = None
        try:
            server = ControlServer(state_dir / SOCKET_NAME, self.handle)
            written = None
            if self._pidfile is not None:
                written = write_atomic(self._pidfile, f"{os.getpid()}\n".encode())
        except BaseException:
            if server is not None:
                server.close()
            restore_signals()
            raise
        return restore_signals, server, written

    def _stop_tree(self, tree: Tree) -> None:
        """Stop ``tree`` gracefully; a signal meanwhile (the second) kills what still runs now.

        The stop runs on a thread of its own while this one waits on the self-pipe, which
        the stop's end and a signal both write: a second signal is acted on at once, where
        a stop in this thread heard it only once every job had had its grace.
        """
        done = threading.Event()

        def stop() -> None:
            try:
                # As long as the jobs' graces take, one after another (a bound gave up with
                # jobs not yet signalled, and a clean exit said); a second signal cuts it short.
                tree.stop(None)
            finally:
                done.set()
                with self._pipe_lock:  # never a write to a closed pipe's fd number
                    self._wake()

        # A daemon thread: a stop cut short must not hold the process's exit.
        stopper = start_or_say(
            lambda: threading.Thread(target=stop, name="jv-stopper", daemon=True),
            "stopping every job on the main thread instead (a second signal is heard once "
            "that stop is done)",
        )
        if stopper is None:
            stop()
        while not (done.is_set() or self._again):
            select.select([self._wake_r], [], [])
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 512)
            say_noted(self._noted)
        if not done.is_set():
            self.forced = True
            forced_stop(tree)  # says so; waits for no thread

    def _farewell(self, code: int, began: float) -> None:
        took = time.monotonic() - began
        if self.composition is not None:
            self.composition.logging.sum_up()  # the loops' summaries before the last line
        if self.forced:
            how = f"exit {code}: a second signal killed what still ran"
            log.warning("daemon stopped ({}); the stop took {:.3f}s", how, took)
        elif self.lost is not None:
            how = f"exit {code}: {self.lost}"
            log.error("daemon stopped ({}); the stop took {:.3f}s", how, took)
        elif self.ended is not None:
            how = f"exit {code}: the tree ended by itself: {self.ended}"
            log.error("daemon stopped ({}); the stop took {:.3f}s", how, took)
        else:
            log.info("daemon stopped (exit {}); the stop took {:.3f}s", code, took)

    def _await_start(self, tree: Tree, timeout: float = 60.0) -> bool:
        """Until the tree started (at most ``timeout``); False if a stop came first.

        In slices: a SIGTERM while a slow readiness probe holds the start stops it now.
        """
        deadline = time.monotonic() + timeout
        while not (self._stopping or tree.started(0.1)) and time.monotonic() < deadline:
            pass
        # A root that escalates or gives up ends the start too (noted before it says so): a
        # tree going down is never said ready.
        return not (self._stopping or self._root_closing)

    def _announce_ready(self, state_dir: Path) -> None:
        sd_notify("READY=1")
        log.info("daemon ready: {} (pid {})", state_dir / SOCKET_NAME, os.getpid())
        if self._on_ready is not None:
            self._on_ready()

    def _handle_signals(self) -> Callable[[], None]:
        """Take SIGTERM, SIGINT and SIGHUP, the other signals that would end the process at
        once (``STOP_SIGNALS``: as SIGTERM) and logrotate's (SIGUSR1, SIGUSR2: said, nothing
        done); return what puts the previous handlers back."""
        previous = take_signals(self._on_signal, self._on_noted)
        previous.update(
            (signum, signal.signal(signum, self._on_signal))
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        )
        # Under threads a signal may land in any thread, and the handler then waits for the
        # main thread's next bytecode, which never comes while it sleeps in select: Python's
        # own wake-up fd makes the signal itself wake it. (gevent's libev wakes its hub.)
        wakeup = None
        if active_runtime() == "threads":
            wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

        watch = self._hub_watch = HubWatch("daemon", FORCED_EXIT)

        def restore() -> None:
            watch.close()
            if wakeup is not None:
                signal.set_wakeup_fd(wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            if self._hung_up():
                self._on_hangup()
            else:
                self._reload_asked = True
        elif self._stopping:
            self._again = True  # the second: as run's, it kills what still runs
        else:
            self._stopping = True
            self._stop_by = signum
        self._wake()
        if signum != signal.SIGHUP and self._hub_watch is not None:
            self._hub_watch.signalled(signum, 2 if self._again else 1, frame)

    def _on_noted(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        self._noted.append(signum)  # said by the main loop: no lock in a handler
        self._wake()

    def _hung_up(self) -> bool:
        """Whether a SIGHUP comes of the terminal hanging up, not from a person or systemd.

        Closing a terminal takes it away from every process of its session at once, and
        SIGHUP follows (the kernel's to the session's leader, the leader's shell to its jobs,
        the kernel's again as the leader exits). A SIGHUP is the hangup's when the daemon had
        a controlling terminal at the start, has none now, and lost it just now: a ``kill
        -HUP`` while the terminal is there, or long after it went quietly (the shell of a
        background ``jobvisor daemon &`` exited), reloads, as every SIGHUP of a daemon
        without a terminal does (detached, under systemd). In the signal handler: no lock.
        """
        if not self._terminal or _has_terminal():
            return False
        now = time.monotonic()
        if self._terminal_gone_at is None:
            self._terminal_gone_at = now
        return now - self._terminal_gone_at < HANGUP_WINDOW

    def _on_hangup(self) -> None:
        """The terminal hung up: a graceful stop, as SIGTERM's (once: the hangup's next SIGHUP
        is no second signal), or nothing under ``nohup``. Its stdio, the dead terminal, goes
        to /dev/null either way. In the signal handler: flags only, the main loop says it."""
        if not self._off_terminal:
            self._off_terminal = True
            off_the_terminal()
            self._hangup = "ignored" if self._hangups_ignored else "stop"
        if not self._hangups_ignored:
            self._hangup_stop = not self._stopping
            self._stopping = True

    def _look_at_terminal(self) -> None:
        """The watch thread's look: a terminal gone with no SIGHUP (the session's leader, the
        shell of a background ``jobvisor daemon &``, exited) is known as gone from then on,
        so that a later SIGHUP reloads, and said once the hangup's SIGHUPs would have come.
        Its stdio, once the terminal hangs up (then, or when its window closes later), goes
        to /dev/null: writing it fails, a job's print too."""
        if not self._terminal:
            return
        gone = self._terminal_gone_at
        if gone is None:
            if _has_terminal():
                return
            self._terminal_gone_at = gone = time.monotonic()
        off_the_terminal()
        said = self._off_terminal or self._went_quietly
        if not said and time.monotonic() - gone >= HANGUP_WINDOW:
            self._went_quietly = True
            log.info(
                "the daemon's controlling terminal is gone, and no SIGHUP came with it (its "
                "session's leader exited): running on; a SIGHUP reloads, as for a daemon "
                "without a terminal"
            )

    def _say_hangup(self) -> None:
        how, self._hangup = self._hangup, None
        if how == "stop":
            log.warning(
                "the terminal hung up (SIGHUP, and the daemon's controlling terminal is gone): "
                "stopping every job gracefully, as for SIGTERM (a SIGHUP while the terminal is "
                "there reloads)"
            )
        elif how == "ignored":
            log.info(
                "the terminal hung up (SIGHUP, and the daemon's controlling terminal is gone); "
                "SIGHUP was ignored when the daemon started (nohup): running on, its stdout and "
                "stderr now /dev/null; a later SIGHUP reloads"
            )

    def stop(self) -> None:
        """End ``run()`` (any thread): the tree is stopped, then ``run()`` returns."""
        self._stopping = True
        with self._pipe_lock:  # never a write to a closed pipe's fd number, reused since
            self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending already
                os.write(self._wake_w, b"!")

    def _close_pipe(self) -> None:
        # Run's thread, after the signal handlers are restored: only stop() can race with it.
        with self._pipe_lock:
            fds, (self._wake_r, self._wake_w) = (self._wake_r, self._wake_w), (-1, -1)
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    # -- control requests (control threads) ------------------------------------------------------

    def handle(self, req: dict[str, Any], via: str = "control") -> dict[str, Any]:
        """Answer a control request; ``via``: through what it came (``control``, the socket;
        ``http``, the endpoint), which the journal's row of what it did says."""
        if req["op"] == "shutdown":  # a starting daemon's too: its start is cut short
            return self._shut_down(via)
        return self._on_tree(req, via)

    def _on_tree(self, req: dict[str, Any], via: str) -> dict[str, Any]:
        """A request about the tree: its status, a reload, an action on a child."""
        from supervision._tree import COMMAND_TIMEOUT  # noqa: PLC0415 - avoids an import cycle

        # From the request's arrival: its wait for another action's lock counts, so that its
        # answer comes within COMMAND_TIMEOUT however long that action takes (the client waits
        # a little longer: ACTION_TIMEOUT).
        asked = time.monotonic()
        deadline = asked + COMMAND_TIMEOUT
        tree = self.tree
        if tree is None:
            return {"ok": False, "code": "starting", "error": "the daemon is still starting"}
        op = req["op"]
        if op == "status":
            process = {} if self.process is None else {"process": self.process.as_dict()}
            return {"ok": True, "result": {**tree.status(), **process}}
        if op == "reload":
            # Which manifest it read: the daemon's own, whatever file the client named.
            if req.get("dry_run") is True:
                preview = self.preview(deadline)
                return {**preview, "manifest": str(self.manifest_path), "dry_run": True}
            return {**self.reload(via=via, deadline=deadline), "manifest": str(self.manifest_path)}
        if op == "signal":
            # Not under the lock: a signal never waits, nor for a stop that waits out a grace.
            with self._signal_lock, self._acting("signal", req["job"], via):
                return send_signal(tree, req["job"], req["signal"])
        return self._act(tree, op, req["job"], via, asked, up=req.get("no_block") is not True)

    def _shut_down(self, via: str) -> dict[str, Any]:
        """``jobvisor shutdown``: the graceful stop SIGTERM begins, answered at once (the
        client waits for the process's end, which outlasts the socket)."""
        already = self._stopping
        if not already:
            self._shutdown_via = via
            log.info("shutdown asked (via {}): stopping every job gracefully", via)
            self.stop()
        return {"ok": True, "result": {"pid": os.getpid(), "already": already}}

    def _act(
        self, tree: Tree, op: str, job: str, via: str, asked: float, *, up: bool = True
    ) -> dict[str, Any]:
        """A start, stop or restart ``asked`` then, in its turn; ``busy`` when none came
        within the wait (``COMMAND_TIMEOUT``). ``up``: a start is answered once its child is
        up (``act``)."""
        from supervision._tree import COMMAND_TIMEOUT  # noqa: PLC0415 - avoids an import cycle

        with self._turn(f"{op} {job.strip('/')}", asked + COMMAND_TIMEOUT) as busy:
            if busy is not None:
                return busy
            # The manifest's tree as the daemon runs it: the tree's own spec is its start's,
            # and a reload's groups and jobs are not in it.
            root = None if self.composition is None else self.composition.manifest.root
            with self._acting(op, job, via):
                reply, until = begin_act(tree, op, job, asked, up=up, root=root)
        # Not under the lock: a start waiting for its job's ready check keeps no other
        # action waiting (a stop of another job, a reload).
        return until_up(tree, op, job, reply, until, asked=asked)

    @contextlib.contextmanager
    def _turn(self, doing: str, deadline: float | None) -> Iterator[dict[str, Any] | None]:
        """The lock of the tree's actions, held for ``doing`` (``stop web``, ``reload``): None
        once taken; out of time at ``deadline`` (None: never), the ``busy`` reply, which names
        the action that holds it, and nothing is done."""
        timeout = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._lock.acquire(timeout=timeout):
            other = self._doing
            under_way = "another action" if other is None else f"another action ({other})"
            yield {
                "ok": False,
                "code": "busy",
                "error": f"busy: {under_way} is under way; {doing} was not done: try again "
                "when it ends",
            }
            return
        self._doing = doing
        try:
            yield None
        finally:
            self._doing = None
            self._lock.release()

    @contextlib.contextmanager
    def _acting(self, action: str, job: str, via: str) -> Iterator[None]:
        """While ``action`` on ``job`` is done (its lock held): its Commanded row says ``via``.

        Only meanwhile: a tree command gives up after ``COMMAND_TIMEOUT`` (60 s), and a
        restart's Commanded comes once the job's stop ended (its grace may be longer). Keyed by
        the path too, so that such a late row has no ``via`` rather than the next request's."""
        key = (action, "/".join(part for part in job.split("/") if part))
        self._via[key] = via
        try:
            yield
        finally:
            self._via.pop(key, None)

    def reload(self, via: str = "control", deadline: float | None = None) -> dict[str, Any]:
        """Re-read the manifest and apply only the difference; a bad manifest changes nothing.

        The log's level and format are applied too; what is fixed at the start (the state
        dir, the runtime, the log's file, the endpoint) is said, one line each, not applied.
        Subscribers of the tree's events get a ``Reloaded``; the journal a ``daemon_reload``
        row, saying ``via`` what it was asked (``signal``: SIGHUP; ``control``: the socket).
        Behind another action past ``deadline`` (None: it waits as long as that takes), the
        ``busy`` reply: nothing is done.
        """
        read = self._read()
        if isinstance(read, dict):
            # Logged however it was asked (SIGHUP, the socket, HTTP): the log is where it shows.
            log.error("reload refused, nothing changed: {}", read["error"])
            self._journal_reload(via, None, read["error"])
            return read
        new = self._reloading(read)
        composition, tree = self.composition, self.tree
        assert composition is not None
        assert tree is not None
        from supervision._tree import budget_change  # noqa: PLC0415 - avoids an import cycle

        steps: list[Change] = []  # the tree's, as they were made
        with self._turn("reload", deadline) as busy:
            if busy is not None:
                log.warning("reload not done: {}", busy["error"])
                return busy
            # Before any step: a job added now may print its secrets at once. (One masker for
            # the log, the endpoint, the status and the output files.)
            composition.masker.add_all(read.secrets)  # one build: a build each was quadratic
            try:
                budget_change(composition.manifest.root, new.root)
                # Added and changed before the steps (a new job may name one); removed after.
                summary = _reload_breakers(new, composition, tree)
            except JobvisorError as exc:
                log.error("reload of {} refused: {}", self.manifest_path, exc)  # noqa: TRY400
                self._journal_reload(via, None, str(exc))
                return {"ok": False, "code": "failed", "error": str(exc)}
            cut = self._step(tree, composition, new.root, steps, summary)
            if cut is not None:
                log.error("reload of {} refused: {}", self.manifest_path, cut)
                event = _reloaded(steps, summary, cut)
                tree.announce(event)
                self._journal_reload(via, event, cut)
                return {"ok": False, "code": "failed", "error": cut}
            old = composition.manifest
            composition.manifest = new
            summary += _remove_breakers(new, composition)
            composition.renotify(tree)
            summary += _notify_lines(old, new, composition)
            summary += self._relog(read, composition)
            fixed = self._not_applied(read, new, composition)
        summary += fixed
        # A warning when something is not applied: said at the level a person keeps on.
        said = log.warning if fixed else log.info
        said("reloaded {}: {}", self.manifest_path, ", ".join(summary) or "no change")
        event = _reloaded(steps, summary)
        tree.announce(event)
        self._journal_reload(via, event, None)
        return {"ok": True, "result": summary}

    def _journal_reload(self, via: str, event: Reloaded | None, error: str | None) -> None:
        """The journal's row of a reload: what it changed (counts; none when it was refused
        before any step) and the error that stopped it, if one did."""
        composition = self.composition
        if composition is None or composition.journal is None:
            return
        detail: dict[str, Any] = {"pid": os.getpid(), "via": via}
        for name in ("added", "removed", "replaced", "updated"):
            detail[name] = 0 if event is None else len(getattr(event, name))
        if error is not None:
            detail["error"] = composition.masker.mask(error)
        with self._rows_lock:
            if not self._rows_closed:
                composition.journal.daemon("daemon_reload", detail)

    def _read(self) -> Manifest | dict[str, Any]:
        """The manifest as a reload reads it now, or the reply that refuses it (``bad_manifest``,
        naming the variables unset in the daemon's environment)."""
        environ = _Looked(os.environ)
        try:
            return load_manifest(self.manifest_path, env=environ)
        except ManifestError as exc:
            error, unset = str(exc), environ.unset_in(str(exc))
            if unset:
                error += "\n" + _started_without(unset)
            return {"ok": False, "code": "bad_manifest", "error": error, "unset": unset}

    def preview(self, deadline: float | None = None) -> dict[str, Any]:
        """What ``reload`` would say now, one line each, changing nothing (``reload --dry-run``,
        supervisorctl's ``reread``): no step made, no breaker, secret, log or open-file limit
        touched, no ``Reloaded`` told (nor journaled). A bad manifest is refused as by
        ``reload``, in the same words.

        One look at the tree: a reload made later, or racing a group that starts or stops
        meanwhile, works out its steps again then.
        """
        read = self._read()
        if isinstance(read, dict):
            log.info("dry run of a reload: the manifest is refused: {}", read["error"])
            return read
        new = self._fixed(read)  # not _reloading: it raises the open-file limit
        composition, tree = self.composition, self.tree
        assert composition is not None
        assert tree is not None
        from supervision._tree import budget_change  # noqa: PLC0415 - avoids an import cycle

        with self._turn("reload --dry-run", deadline) as busy:  # never halfway through a reload
            if busy is not None:
                return busy
            try:
                budget_change(composition.manifest.root, new.root)
            except JobvisorError as exc:
                return {"ok": False, "code": "failed", "error": str(exc)}
            summary = _reload_breakers(new, composition, tree, apply=False)
            status = tree.status()
            ended = _ended_jobs(status)
            down = _groups_down(status["children"])
            for change in diff_specs(composition.manifest.root, new.root, down=down):
                summary.extend(_says(change, ended))
            summary += _remove_breakers(new, composition, apply=False)
            # Masked with the new manifest's secrets too, which a dry run does not take
            # (a notification it adds may hold one: it showed in clear, review r51).
            also = read.secrets - composition.manifest.secrets
            summary += _notify_lines(composition.manifest, new, composition, also=also)
            summary += self._relog(read, composition, apply=False)
            summary += self._not_applied(read, new, composition)
        log.info(
            "dry run of a reload of {} (nothing changed): {}",
            self.manifest_path,
            ", ".join(summary) or "no change",
        )
        return {"ok": True, "result": summary}

    def _step(
        self,
        tree: Tree,
        composition: Composition,
        new: SupervisorSpec,
        steps: list[Change],
        summary: list[str],
    ) -> str | None:
        """Make the steps from what the tree runs to ``new``, adding each to ``steps`` and what
        it says to ``summary``; None once all are made, else why the reload stopped short."""
        endpoint = composition.endpoint
        follow = endpoint.metrics.follow if endpoint is not None else _unfollowed
        journal = composition.journal
        rehash = journal.rehash if journal is not None else _unhashed
        tries_left = RELOAD_TRIES - 1
        while True:
            running = composition.manifest.root
            changes: list[Change] = []
            done = 0
            try:
                status = tree.status()
                down = _groups_down(status["children"])
                ended = _ended_jobs(status)
                changes = diff_specs(running, new, down=down)
                for change in changes:
                    self._apply(tree, change, follow, rehash)
                    done += 1
                    steps.append(change)
                    summary.extend(_says(change, ended))
            # A group changed meanwhile, a spec refused; after a replace's remove, maybe.
            except (JobvisorError, _HalfMade) as caught:
                exc = caught.cause if isinstance(caught, _HalfMade) else caught
                # What the tree runs now, every step that succeeded made: the next diff's
                # base. Worked out only here (a step at a time, over the whole tree).
                running = functools.reduce(applied, changes[:done], running)
                if isinstance(caught, _HalfMade):  # the next look adds the new child
                    failed = changes[done]
                    running = applied(running, replace(failed, op="remove", spec=None))
                composition.manifest = replace(composition.manifest, root=running)
                if not (tries_left and isinstance(exc, _RACED)):
                    return _cut_short(exc, steps)
                # A group went down, came up or restarted: look again.
                log.debug("reload of {}: {}; looking again", self.manifest_path, exc)
                tries_left -= 1
            else:
                return None

    def _relog(self, read: Manifest, composition: Composition, *, apply: bool = True) -> list[str]:
        """Give the log the manifest's level and format, unless a flag gave them; what changed
        (``apply`` False: only what would)."""
        setup, spec = composition.logging, read.logging
        changed: dict[str, str] = {}
        if "logging.level" not in self._pinned and spec.level != setup.level:
            changed["level"] = spec.level
        if spec.format != setup.format:
            changed["format"] = spec.format
        if not changed or not setup.retunable:
            return []
        if apply:
            setup.retune(**changed)
        return [f"update logging: {', '.join(f'{k}={v}' for k, v in changed.items())}"]

    def _not_applied(self, read: Manifest, new: Manifest, composition: Composition) -> list[str]:
        """What the manifest changed since the start that only a restart applies, a line each
        (``new``: ``read`` as this daemon runs it)."""
        started = self._started
        assert started is not None
        setup = composition.logging
        restart = "restart the daemon"
        lines: list[str] = []
        here = new.state_dir
        if read.state_dir not in (started.state_dir, here):  # said once it differs from both
            lines.append(
                f"state_dir {read.state_dir}: the state dir is fixed at the start (this "
                f"daemon's is {here}): {restart}"
            )
        if read.runtime not in (started.runtime, composition.runtime):
            lines.append(
                f"runtime {read.runtime}: the runtime is fixed at the start (this daemon runs "
                f"{composition.runtime}): {restart}"
            )
        level = read.logging.level
        if "logging.level" in self._pinned:
            if level not in (started.logging.level, setup.level):
                lines.append(
                    f"logging.level {level}: the daemon was started with --log-level {setup.level}"
                )
        elif level != setup.level and not setup.retunable:
            lines.append(
                f"logging.level {level}: the log was off (level {setup.level}) at the start, so "
                f"it writes nowhere: {restart}"
            )
        file, writing = read.logging.file, None if setup.path is None else str(setup.path)
        if file not in (started.logging.file, writing):
            where = writing or ("stderr" if setup.retunable else "nowhere")
            lines.append(
                f"logging.file {file or 'none'}: the log's file is fixed at the start"
                f" (this daemon's log goes to {where}): {restart}"
            )
        if read.logging.rotate != started.logging.rotate:
            lines.append(f"logging.rotate: the log's rotation is fixed at the start: {restart}")
        if read.http != started.http:
            endpoint = composition.endpoint
            has = "has none" if endpoint is None else f"listens on {endpoint.url}"
            lines.append(
                f"http{_http_keys(read.http, started.http)}: the endpoint is fixed at the start "
                f"(this daemon {has}): {restart}"
            )
        cluster = (read.cluster_address, read.cluster_namespace)
        if cluster != (started.cluster_address, started.cluster_namespace):
            lines.append(f"cluster: the Ray cluster is fixed at the start: {restart}")
        return [f"not applied: {line}" for line in lines]

    @staticmethod
    def _apply(
        tree: Tree,
        change: Change,
        follow: Callable[[str, ChildSpec | None], None],
        rehash: Callable[[str, ChildSpec | None, ChildSpec | None], None],
    ) -> None:
        """Make one step on ``tree``, and tell ``follow`` (the metrics) what the path is now and
        ``rehash`` (the journal's hashes) which spec its jobs' attempts are of; ``_HalfMade``
        when a replace's add failed after its remove was made."""
        if change.op == "update" and change.was is None:  # a running group's: see Change.was
            _update(tree, change, follow)
            return
        if change.op == "update":
            # Before the step: a job, or a group that is down, may start from the new spec
            # at once; undone if the step is refused (a group came up meanwhile).
            rehash(change.path, change.was, change.spec)
            try:
                _update(tree, change, follow)
            except BaseException:
                rehash(change.path, change.spec, change.was)
                raise
            return
        if change.op in ("remove", "replace"):
            # Its last attempt is journaled before the remove returns (the sink is inline),
            # under the old spec's hash; forgotten only then.
            tree.remove_child(change.path)
        if change.op == "remove":
            follow(change.path, None)
            rehash(change.path, change.spec, None)
            return
        assert change.spec is not None
        # Before the add: the new child's first events name its kind, its attempts its spec.
        follow(change.path, change.spec)
        rehash(change.path, change.was, change.spec)
        try:
            tree.add_child(change.spec, under=change.parent, before=change.before)
        except BaseException as exc:
            follow(change.path, None)  # not added after all
            rehash(change.path, change.spec, None)
            if change.op == "replace" and isinstance(exc, JobvisorError):
                raise _HalfMade(exc) from exc
            raise


def _update(tree: Tree, change: Change, follow: Callable[[str, ChildSpec | None], None]) -> None:
    """A reload's ``update`` step: a job's new ``autostart``, a group's new spec."""
    if isinstance(change.spec, JobSpec):
        tree.set_autostart(change.path, autostart=change.spec.autostart)
        return
    assert isinstance(change.spec, SupervisorSpec)
    tree.update_group(change.spec, change.path)
    follow(change.path, change.spec)


def _http_keys(read: HttpSpec | None, started: HttpSpec | None) -> str:
    """The keys of ``http:`` that differ, `` (reads)``, or "" when the whole block came or went.
    Not their values: the token is a secret."""
    if read is None or started is None:
        return ""
    keys = [
        key
        for key, fields in _HTTP_KEYS.items()
        if any(getattr(read, f) != getattr(started, f) for f in fields)
    ]
    return f" ({', '.join(keys)})" if keys else ""


_HTTP_KEYS: Final = {
    "listen": ("host", "port"),
    "token": ("token",),
    "heartbeat": ("heartbeat",),
    "reads": ("reads",),
}


class _HalfMade(Exception):
    """A reload's replace cut short between its remove and its add: the old child is gone and
    the new one was not added, for ``cause`` (a group changed meanwhile, the spec refused)."""

    def __init__(self, cause: JobvisorError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _cut_short(exc: JobvisorError, made: list[Change]) -> str:
    """What a reload that ``exc`` cut short says, after the steps it ``made``."""
    if not isinstance(exc, _RACED):
        return str(exc)
    return (
        f"{exc} (groups went down or came up {RELOAD_TRIES} times while the reload ran: the "
        f"{len(made)} steps it made stay made; reload again to apply the rest)"
    )


def _unfollowed(path: str, spec: ChildSpec | None) -> None:
    """No metrics to tell of a reload's step."""


def _unhashed(path: str, old: ChildSpec | None, new: ChildSpec | None) -> None:
    """No journal to tell of a reload's step."""


def _notify_lines(
    old: Manifest, new: Manifest, composition: Composition, also: Iterable[str] = ()
) -> list[str]:
    """A reload's lines of the notifications it changes (kept jobs' and the manifest's own),
    masked by the composition's masker and, if given, by secrets it does not know (``also``)."""
    known = composition.masker.mask
    extra = SecretMasker()
    if not extra.add_all(also):
        return notify_changes(old.notify, old.root, new.notify, new.root, mask=known)
    return notify_changes(
        old.notify, old.root, new.notify, new.root, mask=lambda text: extra.mask(known(text))
    )


def _reloaded(steps: list[Change], lines: list[str], error: str | None = None) -> Reloaded:
    """The event of a reload that made ``steps`` and said ``lines``."""
    paths: dict[str, list[str]] = {"add": [], "remove": [], "replace": [], "update": []}
    for step in steps:
        if step.op != "update" or step.says:  # an update that said nothing only placed children
            paths[step.op].append(step.path)
    return Reloaded(
        path="",
        at=time.time(),
        added=tuple(paths["add"]),
        removed=tuple(paths["remove"]),
        replaced=tuple(paths["replace"]),
        updated=tuple(paths["update"]),
        lines=tuple(lines),
        error=error,
    )


def act(
    tree: Tree,
    op: str,
    job: str,
    asked: float | None = None,
    *,
    wait: float | None = None,
    daemon: bool = True,
    up: bool = True,
) -> dict[str, Any]:
    """Start, stop or restart the child at ``job``; the reply of the control protocol.

    It waits for the tree until ``wait`` (None: ``COMMAND_TIMEOUT``) after ``asked`` (a
    ``time.monotonic()``; None: now), when the request came, which may have waited for another
    action since. ``daemon``: asked through a daemon (whose ``status`` command shows an action
    that goes on), not an HTTP endpoint of ``run --http`` or of an embedded tree. ``up``: a
    start or restart is answered once the child is up (running, its ready check passed),
    or failed before (``failed``), or is still on its way at the end of the wait
    (``under_way``); ``up=False`` (``--no-block``) once its supervisor took it.
    """
    reply, until = begin_act(tree, op, job, asked, wait=wait, daemon=daemon, up=up)
    return until_up(tree, op, job, reply, until, asked=asked, wait=wait, daemon=daemon)


def begin_act(
    tree: Tree,
    op: str,
    job: str,
    asked: float | None = None,
    *,
    wait: float | None = None,
    daemon: bool = True,
    up: bool = True,
    root: SupervisorSpec | None = None,
) -> tuple[dict[str, Any], UntilUp | None]:
    """``act``'s action, done (a daemon holds its actions' lock for this part only); and,
    for a start to follow until the child is up, what follows it, for ``until_up``.
    ``root``: the tree's spec as it runs now (a daemon's, reloaded), else the tree's own."""
    follow = UntilUp(tree, job.strip("/")) if up and op in ("start", "restart") else None
    try:
        reply = _act(tree, op, job, asked, wait=wait, daemon=daemon, root=root)
    except BaseException:
        if follow is not None:
            follow.cancel()
        raise
    if follow is not None:
        try:
            taken = reply.get("ok") and (reply.get("result") is None or follow.join(tree))
        except BaseException:
            follow.cancel()
            raise
        if not taken:
            follow.cancel()  # refused, or nothing to do (already running): answered as it is
            follow = None
    return reply, follow


def until_up(
    tree: Tree,
    op: str,
    job: str,
    reply: dict[str, Any],
    until: UntilUp | None,
    *,
    asked: float | None = None,
    wait: float | None = None,
    daemon: bool = True,
) -> dict[str, Any]:
    """``reply`` once the child ``until`` follows is up (None: at once); else why not."""
    if until is None:
        return reply
    from supervision._tree import COMMAND_TIMEOUT  # noqa: PLC0415 - avoids an import cycle

    asked = time.monotonic() if asked is None else asked
    path = job.strip("/")
    try:
        deadline = asked + (COMMAND_TIMEOUT if wait is None else wait)
        if not until.done.wait(max(0.0, deadline - time.monotonic())):
            see = f"`jobvisor status {path}` (or GET /api/status)" if daemon else "GET /api/status"
            waited = round(time.monotonic() - asked)
            return {
                "ok": False,
                "code": "under_way",
                "error": not_up_yet(tree, op, path, waited, now=until.now, see=see),
            }
    finally:
        until.cancel()
    if until.state in UP:
        return reply
    return {"ok": False, "code": "failed", "error": down_again(tree, op, path, until.state)}


def _act(
    tree: Tree,
    op: str,
    job: str,
    asked: float | None,
    *,
    wait: float | None,
    daemon: bool,
    root: SupervisorSpec | None = None,
) -> dict[str, Any]:
    from supervision._tree import COMMAND_TIMEOUT  # noqa: PLC0415 - avoids an import cycle

    asked = time.monotonic() if asked is None else asked
    deadline = asked + (COMMAND_TIMEOUT if wait is None else wait)
    # Never 0, which the tree takes as "return once taken" (a reply of done for a stop only
    # begun): one that got the lock at its deadline waits this long, what a quick stop takes.
    left = max(ACT_FLOOR, deadline - time.monotonic())
    path = job.strip("/")
    began = time.time()  # the wall time a kill of this stop's is journaled and shown at
    try:
        if op == "start":
            said = tree.start_child(path, timeout=left)
        else:  # a stop of what is not running says so; a stop's reply waits for its end
            said = (tree.stop_child if op == "stop" else tree.restart)(path, timeout=left)
    except GroupDownError as exc:  # it exists: not "no such job" (exit 4)
        return {"ok": False, "code": "group_down", "error": str(exc)}
    except DependencyDownError as exc:  # exit 1, HTTP 409
        return {"ok": False, "code": "dependency_down", "error": str(exc)}
    except NoSuchChildError as exc:
        refused = {"ok": False, "code": "no_such_job", "error": str(exc)}
        return {**refused, "replicas": exc.replicas} if exc.replicas else refused
    except ActionTimeoutError:
        # Said as the request's whole wait, its wait for another action's turn too.
        error = _still_going(op, path, round(time.monotonic() - asked), daemon=daemon)
        # Not a failure: a stop or restart goes on (the page says it so); a start that got
        # no answer may not have been taken at all.
        return {"ok": False, "code": "failed" if op == "start" else "under_way", "error": error}
    except JobvisorError as exc:
        return {"ok": False, "code": "failed", "error": str(exc)}
    reply: dict[str, Any] = {"ok": True, "result": said}
    if op != "start" and said is None:
        reply.update(_what_a_stop_left(tree, op, path, began, root))
    return reply


def _what_a_stop_left(
    tree: Tree, op: str, path: str, began: float, root: SupervisorSpec | None
) -> dict[str, Any]:
    """What a stop or restart done at ``path`` had to kill, and (a stop) what depends on it
    and runs on: from one look at the status."""
    try:
        nodes = {node["path"]: node for node in flatten_status(tree.status())}
    except JobvisorError:
        return {}  # said as done: what it ended is a detail
    said: dict[str, Any] = dict(_killed_since(nodes, path, began))
    if op == "stop":
        said.update(_dependants_running(nodes, tree.spec if root is None else root, path))
    return said


def _spec_at(root: SupervisorSpec, path: str) -> ChildSpec | None:
    """The child spec at ``path``, found by its names from ``root`` down (a stop's, not a walk
    of the whole tree: 10,000 jobs are not looked at for one)."""
    spec: ChildSpec | None = root
    for name in filter(None, path.split("/")):
        if not isinstance(spec, SupervisorSpec):
            return None
        spec = next((child for child in spec.children if child.name == name), None)
    return spec


def _dependants_running(
    nodes: Mapping[str, dict[str, Any]], root: SupervisorSpec, path: str
) -> dict[str, Any]:
    """``dependants_running``: the jobs that depend on ``path``, or on a group it is in, and
    still run (a stop leaves them running: depends_on orders starts and stops, it does not
    tie lives), which a person stopping a dependency should hear (h254); ``dependants_on``:
    what each depends on, where that is a group ``path`` is in."""
    found: dict[str, str] = {}
    at = path
    while at:  # the stopped child, then each group it is in
        parent, _, name = at.rpartition("/")
        group = _spec_at(root, parent)
        if isinstance(group, SupervisorSpec):
            names = {name, str((nodes.get(at) or {}).get("replica_of") or name)}
            prefix = f"{parent}/" if parent else ""
            for child in group.children:
                sibling = f"{prefix}{child.name}"
                if (
                    isinstance(child, JobSpec)
                    and names.intersection(child.depends_on)
                    and (nodes.get(sibling) or {}).get("state") not in _NOT_RUNNING_ON
                ):
                    found.setdefault(sibling, at)
        at = parent
    if not found:
        return {}
    groups = {dep: on for dep, on in found.items() if on != path}
    return {"dependants_running": list(found), **({"dependants_on": groups} if groups else {})}


def _killed_since(
    nodes: Mapping[str, dict[str, Any]], path: str, since: float
) -> dict[str, list[str]]:
    """The children at or under ``path`` whose last exit, at or after ``since``, was a kill: what
    a stop or restart had to end once its stop grace ran out (a person tuning ``stop.grace``
    needs to know it). ``killed``: a process SIGKILLed; ``threads_killed``: a thread (a python
    job's in the daemon, an actor's) killed by the exception thrown into it, which one blocked
    in a call outlives (the log says it abandoned, a moment later)."""
    below = f"{path}/"
    found: dict[str, list[str]] = {}
    for node in nodes.values():
        last = node.get("last_exit")
        if not (
            (node["path"] == path or node["path"].startswith(below))
            and isinstance(last, dict)
            and isinstance(last.get("at"), int | float)
            and last["at"] >= since
        ):
            continue
        if last.get("outcome") == "killed":
            # Whichever deadline sent the SIGKILL, the command's own thread or the supervisor,
            # it is `killed` with its -9; a thread has no process to signal, no code.
            sigkill = last.get("code") == -signal.SIGKILL
            found.setdefault("killed" if sigkill else "threads_killed", []).append(node["path"])
    return found


def _still_going(op: str, path: str, waited: float, *, daemon: bool = True) -> str:
    """What a CLI or HTTP user is told of an action that outlasted the daemon's wait.

    The tree's own message is for the embedded API (``tree.status()``, "pass a longer
    timeout"), which someone at a shell or a script over HTTP cannot do. Without a daemon
    (``run --http``, an embedded tree's endpoint) ``jobvisor status`` has none to ask.
    """
    see = f"`jobvisor status {path}` (or GET /api/status)" if daemon else "GET /api/status"
    where = " in the daemon" if daemon else ""
    tree = "the daemon's tree" if daemon else "the tree"
    logged = "the daemon's log" if daemon else "the log"
    if op == "stop":
        return (
            f"{path}: still stopping after {waited:g}s (a stop waits up to its stop.grace, then "
            f"kills what still runs); the stop goes on{where}: {see} shows when it is stopped"
        )
    if op == "restart":
        return (
            f"{path}: still restarting after {waited:g}s (its stop waits up to its stop.grace, "
            f"then kills what still runs; then it starts again); the restart goes on{where}: "
            f"{see} shows when it runs again"
        )
    return (
        f"{path}: {tree} did not answer within {waited:g}s (busy, or stuck: see {logged}); the "
        f"{op} may still be done: {see} shows it"
    )


def send_signal(tree: Tree, job: str, signum: int) -> dict[str, Any]:
    """Signal the job at ``job``; the reply of the control protocol, its result the signal's
    name (``SIGHUP``)."""
    try:
        tree.signal(job.strip("/"), signum)
    except GroupDownError as exc:
        return {"ok": False, "code": "group_down", "error": str(exc)}
    except NoSuchChildError as exc:
        return {"ok": False, "code": "no_such_job", "error": str(exc)}
    except JobvisorError as exc:  # NotSignalledError: exit 1, HTTP 409
        return {"ok": False, "code": "not_signalled", "error": str(exc)}
    return {"ok": True, "result": signal_name(signum)}


def applied(root: SupervisorSpec, change: Change) -> SupervisorSpec:
    """``root`` with ``change`` made: what the tree runs once it has taken it."""
    if change.op == "update" and not change.path:
        assert isinstance(change.spec, SupervisorSpec)
        return change.spec
    return _edit(root, [p for p in change.parent.split("/") if p], change)


def _edit(group: SupervisorSpec, parts: list[str], change: Change) -> SupervisorSpec:
    if parts:
        return replace(
            group,
            children=tuple(
                _edit(c, parts[1:], change)
                if c.name == parts[0] and isinstance(c, SupervisorSpec)
                else c
                for c in group.children
            ),
        )
    name = change.path.rpartition("/")[2]
    spec = change.spec
    if change.op == "update":  # a group down: its new spec, where it is
        assert spec is not None
        return replace(group, children=tuple(spec if c.name == name else c for c in group.children))
    # As the tree does it: a replaced child is removed, then added where an added one goes.
    children: list[ChildSpec] = [c for c in group.children if c.name != name]
    if change.op in ("add", "replace"):
        names = [c.name for c in children]
        at = names.index(change.before) if change.before in names else len(children)
        assert spec is not None
        children.insert(at, spec)
    return replace(group, children=tuple(children))


# A job down for good, as its state says it, that a replace starts again; "never": one that
# never ran (``autostart: false``, never started since), which it starts for the first time.
_ENDED: Final = {
    "stopped": "it was stopped",
    "failed": "it had failed",
    "gave_up": "it had given up",
    "succeeded": "it had succeeded",
    "never": "it never ran",
}


def _ended_jobs(status: dict[str, Any]) -> dict[str, str]:
    """{path: its state} of the jobs in a status that are down for good (``_ENDED``), "never"
    for those that never started."""
    return {
        # Only a stopped one: a job whose dependency failed is failed without a start of its own.
        node["path"]: "never"
        if node["state"] == "stopped" and node.get("starts") == 0
        else node["state"]
        for node in flatten_status(status)
        if "children" not in node and node["state"] in _ENDED
    }


def _says(change: Change, ended: dict[str, str]) -> tuple[str, ...]:
    """What a reload's step tells a person: a replace that starts a job down for good (a
    person's stop, a give-up, a once job's end) says so, as supervisord's update does it; one
    that never ran (``autostart: false`` until this reload) starts now, not "again"."""
    state = ended.get(change.path)
    spec = change.spec
    if change.op != "replace" or state is None or not isinstance(spec, JobSpec):
        return change.summary
    if not spec.autostart:
        return change.summary  # "not started" says it
    again = "now" if state == "never" else "again"
    return (f"{change.named} ({_ENDED[state]}: it starts {again}, with its new spec)",)


def _groups_down(nodes: list[dict[str, Any]]) -> frozenset[str]:
    """The paths of the groups in a status that run no supervisor now (stopped, backing off...)."""
    down: set[str] = set()
    for node in nodes:
        children = node.get("children")
        if children is None:
            continue
        if node["state"] in _DOWN:
            down.add(node["path"])
        else:
            down |= _groups_down(children)
    return frozenset(down)


_DOWN: Final = frozenset(
    {"pending", "stopping", "stopped", "backoff", "cooldown", "failed", "gave_up", "succeeded"}
)


def _reload_breakers(
    new: Any, composition: Composition, tree: Tree, *, apply: bool = True
) -> list[str]:
    """Add the breakers the new manifest declares, retune the changed ones; what it did
    (``apply`` False: only what it would do).

    A changed breaker keeps its state and counts (an open one stays open): only its
    thresholds change, as a changed group keeps its jobs running.
    """
    from supervision._tree import build_breakers  # noqa: PLC0415 - avoids an import cycle

    said: list[str] = []
    old_specs = composition.manifest.breakers
    added = {k: v for k, v in new.breakers.items() if k not in composition.breakers}
    for name, breaker in (build_breakers(added) if apply else dict.fromkeys(added)).items():
        if breaker is not None:
            composition.breakers[name] = breaker
            tree.follow_breaker(breaker)
            if composition.endpoint is not None:
                composition.endpoint.metrics.add_breaker(name, breaker)
        said.append(f"add breaker {name}")
    for name, spec in new.breakers.items():
        before = old_specs.get(name)
        if before is None or before == spec or name not in composition.breakers:
            continue
        if apply:
            composition.breakers[name].retune(
                failure_threshold=spec.failure_threshold,
                reset_timeout=spec.reset_timeout,
                half_open_max_calls=spec.half_open_max_calls,
            )
        changed = [
            f"{key}={_shown_field(getattr(spec, key))}"
            for key in ("failure_threshold", "reset_timeout", "half_open_max_calls")
            if getattr(spec, key) != getattr(before, key)
        ]
        said.append(f"update breaker {name}: {', '.join(changed)}")
    return said


def _remove_breakers(new: Any, composition: Composition, *, apply: bool = True) -> list[str]:
    """Drop the breakers the new manifest no longer declares (no job of it names them)
    (``apply`` False: only say which it would drop)."""
    said: list[str] = []
    for name in sorted(set(composition.breakers) - set(new.breakers)):
        if apply:
            del composition.breakers[name]
            if composition.endpoint is not None:
                composition.endpoint.metrics.remove_breaker(name)
        said.append(f"remove breaker {name}")
    return said


def _start_detail(manifest: Path, journal: Path) -> dict[str, Any]:
    """A ``daemon_start`` row's detail: pid, version, manifest; ``previous`` when the daemon
    before journaled no stop (killed, or its machine went down: nothing else says so; or
    still stopping, having lost its state dir's lock), or the ``run`` after it no end."""
    detail: dict[str, Any] = {
        "pid": os.getpid(),
        "version": jobvisor_version(),
        "manifest": str(manifest),
    }
    run = killed_run(journal)
    if run is not None:  # a run killed since the daemon before: the newer news of the two
        detail["previous"] = run
        return detail
    try:
        last = last_daemon_start(journal)
    except JournalError:  # the start goes on: its row is what matters now
        last = None
    if last is None:
        return detail
    start, stops = last
    pid = start.get("pid")
    # A stop row without a pid is an older jobvisor's: then only one daemon wrote at a time.
    if any(stop.get("pid", pid) == pid for stop in stops):
        return detail
    said = "" if pid is None else f" (pid {pid})"
    at = start.get("at")
    if (
        isinstance(pid, int)
        and pid != os.getpid()
        and _alive(pid)
        and not (isinstance(at, int | float) and _started_after(pid, at))
    ):
        detail["previous"] = (
            f"the daemon before{said} has journaled no stop yet: it is still running "
            "(stopping, as one that lost its state dir's lock does)"
        )
    else:
        detail["previous"] = (
            f"the daemon before{said} journaled no stop: it was killed, or its machine went down"
        )
        say_killed(detail["previous"], journal, at if isinstance(at, int | float) else 0, log)
    return detail


def _alive(pid: int) -> bool:
    """Whether a process has ``pid`` (one of another user's too)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def _started_after(pid: int, at: float) -> bool:
    """Whether process ``pid`` started after wall time ``at``: then it is not the daemon that
    journaled its start then, but a process its pid went to (a container's small pids are
    soon reused). False when /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        with Path("/proc/stat").open("rb") as system:
            boot = next(int(line.split()[1]) for line in system if line.startswith(b"btime "))
        ticks = int(stat[stat.rfind(b")") + 2 :].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    # btime is whole seconds: a second of slack either way.
    return boot + ticks / os.sysconf("SC_CLK_TCK") > at + 1.0


def _shown_field(value: object) -> str:
    return fmt_duration(value) if isinstance(value, float) else str(value)


def _noting(
    journal: Journal | None,
    note: Callable[[Event], None],
    via: Mapping[tuple[str, str], str],
) -> Callable[[Event], None]:
    """The tree's sink: the journal's record, with the root's escalation or giving up told to
    ``note`` first, and a person's action journaled with the channel ``via`` names for it.
    Inline, in the root's thread: no event is built for a subscriber (a daemon's restarts
    cost no more), and it is noted before the root says its start is over."""
    sink = None if journal is None else journal.record
    kinds: frozenset[type[Event]] | None = (
        frozenset() if sink is None else getattr(sink, "event_types", None)
    )

    def noted(event: Event) -> None:
        if not event.path and isinstance(event, Escalated | GaveUp):
            note(event)
        if sink is not None and (kinds is None or type(event) in kinds):
            # One get, never `in` then [...]: the control thread may drop the entry in between.
            if via and journal is not None and type(event) is Commanded:
                channel = via.get((event.action, event.path))
                if channel is not None:
                    journal.commanded(event, channel)
                    return
            sink(event)

    if kinds is not None:  # None: the sink takes every kind, and so does this one
        noted.event_types = kinds | {Escalated, GaveUp}  # type: ignore[attr-defined]
    for hook in ("on_state", "on_failure", "on_restart", "on_tick"):
        if hasattr(sink, hook):
            setattr(noted, hook, getattr(sink, hook))
    return noted


class _Looked(Mapping[str, str]):
    """The environment a reload reads, remembering the names it asked for and found unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._missed: dict[str, None] = {}  # in the order asked

    def __getitem__(self, name: str) -> str:
        try:
            return self._environ[name]
        except KeyError:
            self._missed[name] = None
            raise

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def unset_in(self, error: str) -> list[str]:
        """The names found unset that ``error`` (a ``ManifestError``'s) says are missing; a
        ``${NAME:-fallback}`` that took its fallback is no problem, nor named."""
        return [name for name in self._missed if f"environment variable {name} " in error]


def _started_without(names: list[str]) -> str:
    """What a reload that found ``names`` unset says: where it read them, and what to do."""
    these = " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"
    are, them = ("is", "it") if len(names) == 1 else ("are", "them")
    return (
        "a reload reads ${NAME} from the daemon's own environment, fixed when it started "
        f"(pid {os.getpid()}), not from the shell that asks for the reload: {these} {are} "
        f"unset there; restart the daemon with {them} set, or use a secret file "
        "({secret: {file: PATH}}) or a value written in the manifest"
    )


def _has_terminal() -> bool:
    """Whether this process has a controlling terminal now (one it can open as /dev/tty).

    ENXIO when it has none: never had one (detached, a service), or it hung up. Any other
    error (no /dev/tty in a container) says no too: such a daemon reloads on every SIGHUP.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


class _Watchdog:
    """Sends WATCHDOG=1 at half the interval systemd asked for in WATCHDOG_USEC."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jv-watchdog", daemon=True)
        self._thread.start()

    @classmethod
    def start_if_asked(cls) -> _Watchdog | None:
        usec = _systemd().get("WATCHDOG_USEC")
        pid = _systemd().get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            interval = int(usec) / 1e6 / 2
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC={!r}: not a number", usec)
            return None
        return cls(interval)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            sd_notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
