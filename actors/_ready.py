"""Readiness probes: when has a service come up (``ready: {tcp | http | command}``)?

A probe polls until its check passes, fails with ``NotReady`` after
``timeout``, and gives up early when the waiter is cancelled. Each check is
bounded like a Kubernetes probe: it may take ``max(1s, interval)`` (never
more than the time left) as a whole, whatever the service sends meanwhile (a
head one byte at a time, a connect never answered), and a cancel ends the
check in progress too, so a hanging service cannot hold a start or a stop.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from actors._checks import SOCKET_MAX_DURATION, need, need_duration
from actors._errors import JobFailure, SpecError
from actors._http import (
    LookupTimedOut,
    bounded,
    check_url,
    error_chain,
    lookup_timed_out,
    redact_url,
    resolve,
)
from actors._runtime import active_runtime
from actors._spawn import REAPED_UNREAD, _confined, child_env, reaped_unread
from actors._taken import split_host_port

if TYPE_CHECKING:
    import threading

    import requests

    from actors._confine import Confinement
    from actors._http import _InFlight

    # A command job's ``confinement()``: what its child sets up, and the env its own goes on.
    _Setup = tuple[Confinement | None, dict[str, str] | None]

__all__ = ["NotReady", "ReadyProbe"]

_CHECK_MIN: Final = 1.0  # seconds one check may take at least (Kubernetes' default)


class NotReady(JobFailure):
    """A service's readiness probe did not pass.

    Raised by ``ReadyProbe.wait_ready`` after ``timeout`` (the message names
    the probe and its last result) or at once when the wait is cancelled (the
    message says ``cancelled``). Unlike ``ServiceExited`` the service may
    still be running; the supervisor treats it as a failed start.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyProbe:
    """Exactly one check: ``tcp`` ("host:port" accepts a connection), ``http`` (a URL
    answers 2xx or 3xx to a GET) or ``command`` (argv that exits 0).

    ``timeout`` bounds the whole wait; ``interval`` is the pause between checks.
    A command check of a command job runs as that job's command would (``beside``).
    """

    tcp: str | None = None
    http: str | None = None
    command: tuple[str, ...] | None = None
    timeout: float = 30.0
    interval: float = 0.1
    # The command job the probe belongs to: its command check runs in the job's cwd, with its
    # env, user, umask and limits. Not the probe's identity (nor in a spec's repr and hash).
    job: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = [n for n in ("tcp", "http", "command") if getattr(self, n) is not None]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise SpecError(
                f"ready: expected exactly one of tcp, http, command; got {got}",
                field="ready",
                expected="exactly one of tcp, http or command",
                got=given,
                about=got,
            )
        if self.tcp is not None:
            split_host_port(self.tcp)
        if self.http is not None:
            check_url(self.http, "ready.http")
        if self.command is not None:
            command = self.command
            need(
                isinstance(command, list | tuple) and bool(command),
                "ready.command",
                "a non-empty list of argv strings",
                command,
            )
            for i, arg in enumerate(command):
                need(isinstance(arg, str), f"ready.command[{i}]", "an argv string", arg)
            object.__setattr__(self, "command", tuple(command))
        need_duration(self.timeout, "ready.timeout", positive=True)
        need_duration(self.interval, "ready.interval", positive=True)

    def beside(self, work: object) -> ReadyProbe:
        """This probe with its command check run as ``work``'s command runs (a command job's)."""
        if self.command is None or getattr(work, "confinement", None) is None:
            return self
        return replace(self, job=work)

    def describe(self) -> str:
        if self.tcp is not None:
            return f"tcp {self.tcp}"
        if self.http is not None:
            return f"http {redact_url(self.http)}"
        return f"command {shlex.join(self.command or ())}"  # as a command job's is shown

    def wait_ready(self, cancelled: threading.Event) -> None:
        """Poll until the check passes; raise ``NotReady`` on timeout or when ``cancelled`` is set.

        Runs in the caller's thread (or greenlet) and blocks it; waits
        between checks happen on ``cancelled``, so setting it ends the wait
        at once, or at the latest when the check in progress ends.
        """
        # Before the clock starts: the first one loads requests, which ready.timeout never meant.
        session = _session() if self.http is not None else None
        deadline = time.monotonic() + self.timeout
        # A check's budget is a socket's timeout too, which poll(2) bounds (SOCKET_MAX_DURATION).
        full = min(max(_CHECK_MIN, self.interval), SOCKET_MAX_DURATION)
        last: _Seen | None = None
        # Once per wait, not per check: it looks the job's user up (NSS, maybe LDAP).
        setup = self._setup()
        try:
            while True:
                if cancelled.is_set():
                    raise NotReady(f"{self.describe()}: readiness wait cancelled")
                budget = max(0.001, min(full, deadline - time.monotonic()))
                seen = self._check(budget, session, setup, cancelled)
                if seen is None:
                    return
                if cancelled.is_set():
                    raise NotReady(f"{self.describe()}: readiness wait cancelled")
                # A check the deadline cut short says less than a full one before it.
                if last is None or not (seen.timed_out and budget < full):
                    last = seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotReady(
                        f"{self.describe()} not ready after {self.timeout:g}s: "
                        f"last check {last.reason}"
                    )
                cancelled.wait(min(self.interval, left))
        finally:
            if session is not None:
                session.close()

    # -- one check each: None when ready, else what was seen -------------------------------------

    def _setup(self) -> _Setup | None:
        """What a command check of a command job sets up in its child (``beside``), else None.

        Raises ``NotReady`` when the job's user or group is no longer known.
        """
        if self.command is None or self.job is None:
            return None
        try:
            return self.job.confinement()  # type: ignore[no-any-return]
        except LookupError as exc:  # the user or group went away since the manifest was read
            raise NotReady(f"{self.describe()}: its user or group is gone ({exc})") from None

    def _check(
        self,
        budget: float,
        session: requests.Session | None,
        setup: _Setup | None,
        cancelled: threading.Event,
    ) -> _Seen | None:
        if self.tcp is not None:
            return _check_tcp(self.tcp, budget, cancelled)
        if self.http is not None:
            assert session is not None
            return _check_http(session, self.http, budget, cancelled)
        assert self.command is not None
        return _check_command(self.command, budget, cancelled, self.job, setup)


@dataclass(frozen=True, slots=True)
class _Seen:
    """What a check that did not pass saw."""

    reason: str
    timed_out: bool = False


def _check_tcp(address: str, budget: float, cancelled: threading.Event) -> _Seen | None:
    host, port = split_host_port(address)
    failed: OSError | None = None
    with bounded(budget, cancelled) as inflight:
        try:
            _connect(host, port, budget, inflight).close()
        except OSError as exc:
            failed = exc
    # First: a socket shut down just before its connect seems to connect (poll says writable).
    # But not a lookup the deadline ended: the deadline expired the check too.
    if isinstance(failed, LookupTimedOut) and inflight.why != "cancelled":
        return _Seen(str(failed), timed_out=True)
    aborted = _aborted(inflight.why, budget)
    if aborted is not None:
        return aborted
    if isinstance(failed, TimeoutError):
        return _Seen(f"timed out after {budget:.3g}s", timed_out=True)
    if failed is None:
        return None
    said = _what_failed(failed)
    # A tcp address holds no secret: an error named by no more than its class keeps its text.
    return _Seen(_describe(failed) if said == type(failed).__name__ else said)


def _connect(host: str, port: int, budget: float, inflight: _InFlight) -> socket.socket:
    """A socket connected to ``host:port``, each address tried with the time left of ``budget``.

    Each socket is in ``inflight`` while it connects, so the deadline and a
    cancel shut it down (``socket.create_connection`` gave each address the
    whole budget, and a connect nobody answers held a cancel for all of it). The
    name's lookup is bounded too (``resolve``).
    """
    deadline = time.monotonic() + budget
    failed: OSError = TimeoutError("timed out")
    found = resolve(host, port, within=budget, aborted=lambda: inflight.aborted)
    for family, kind, proto, _, where in found:
        left = deadline - time.monotonic()
        if left <= 0 or inflight.aborted:
            break
        sock = socket.socket(family, kind, proto)
        inflight.add(sock)
        try:
            sock.settimeout(left)
            sock.connect(where)
        except OSError as exc:
            sock.close()
            failed = exc
            continue
        finally:
            inflight.discard(sock)
        return sock
    raise failed


def _session() -> requests.Session:
    """An http check's session: made at the wait's start, so requests is loaded only then."""
    from actors._transport import tracked_session  # noqa: PLC0415 - validate loads no requests

    return tracked_session()


def _check_http(
    session: requests.Session, url: str, budget: float, cancelled: threading.Event
) -> _Seen | None:
    import requests  # noqa: PLC0415 - loaded with the session: a look-up in sys.modules

    failed: requests.RequestException | None = None
    with bounded(budget, cancelled) as inflight:
        try:
            with session.get(url, timeout=budget, allow_redirects=False, stream=True) as response:
                code = response.status_code
        except requests.RequestException as exc:
            failed = exc
    lookup = lookup_timed_out(failed)
    if lookup is not None and inflight.why != "cancelled":
        return _Seen(str(lookup), timed_out=True)
    # First: a head cut short by the shutdown reads as a whole one (its end looks like EOF).
    aborted = _aborted(inflight.why, budget)
    if aborted is not None:
        return aborted
    if isinstance(failed, requests.Timeout):
        return _Seen(f"timed out after {budget:.3g}s", timed_out=True)
    if failed is not None:
        return _Seen(_what_failed(failed))
    return None if 200 <= code < 400 else _Seen(f"answered {code}")


def _aborted(why: str | None, budget: float) -> _Seen | None:
    """What a check ``bounded`` ended saw: ``why`` is its ``inflight.why``."""
    if why == "cancelled":
        return _Seen("cancelled")
    if why == "timeout":
        return _Seen(f"timed out after {budget:.3g}s", timed_out=True)
    return None


def _check_command(
    argv: tuple[str, ...],
    budget: float,
    cancelled: threading.Event,
    job: Any = None,
    setup: _Setup | None = None,
) -> _Seen | None:
    try:
        proc = subprocess.Popen(  # argv from the manifest, no shell
            **_as_job(list(argv), job, setup),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group, so a hung check is killed whole
        )
    except OSError as exc:
        return _Seen(_describe(exc))
    deadline = time.monotonic() + budget
    step = 0.0005
    try:
        # Like Popen.wait(timeout), which polls too, but cancellable.
        while (code := proc.poll()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return _Seen(f"did not exit within {budget:.3g}s", timed_out=True)
            if cancelled.wait(min(step, left)):
                return _Seen("cancelled")
            step = min(step * 2, 0.05)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if code == 0 and active_runtime() == "threads" and reaped_unread():
        # subprocess reads a status the system threw away as 0: no pass can be told from it.
        # (gevent's libev reads every exit itself, whatever the program set.)
        return _Seen(f"its exit status was lost: {REAPED_UNREAD}")
    return None if code == 0 else _Seen(f"exited with {code}")


def _as_job(args: list[str], job: Any, setup: _Setup | None) -> dict[str, Any]:
    """``Popen``'s arguments to run ``args`` as command job ``job`` runs its command (None: as we).

    Its cwd and env, and (``setup``, its ``confinement()``) its user, umask and limits as
    ``actors._spawn`` sets them up. ``OSError`` if a command with limits is not there.
    """
    if job is None or setup is None:
        return {"args": args}
    confine, base = setup
    env = child_env(job.env, base)
    kwargs: dict[str, Any] = {"args": args, "cwd": job.cwd, "env": env}
    if confine is not None:
        args, (uid, gid, groups), umask = _confined(
            args, job.cwd, os.environ if env is None else env, confine
        )
        kwargs.update(args=args, user=uid, group=gid, extra_groups=groups, umask=umask)
    return kwargs


def _what_failed(exc: BaseException) -> str:
    """A failed connection or request said shortly: ``connection refused``, ``connection reset``.

    From the innermost standard-library error of its chain (urllib3 keeps causes in
    ``reason`` and ``args`` too), never from requests' or urllib3's text, which quotes the
    URL and its secrets; their class's name when there is none (it said only that before:
    ``ConnectionError`` for a refusal, a reset and a DNS failure alike).
    """
    for cause in reversed(error_chain(exc)):
        said = _said(cause)
        if said is not None:
            return said
    return type(exc).__name__


def _said(cause: BaseException) -> str | None:
    # Loaded by requests by then; a tcp check's first failure loads them (validate never).
    import http.client  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    plain = (
        # First: a ConnectionResetError too.
        (http.client.RemoteDisconnected, "connection closed without an answer"),
        (ConnectionRefusedError, "connection refused"),
        (ConnectionResetError, "connection reset"),
    )
    for kind, said in plain:
        if isinstance(cause, kind):
            return said
    if isinstance(cause, socket.gaierror):
        return f"host name not resolved ({cause.strerror or cause})"
    if isinstance(cause, ssl.SSLError):
        why = getattr(cause, "verify_message", None) or cause.reason or type(cause).__name__
        return f"TLS failed ({why})"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]  # "no route to host"
    return None


def _describe(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
