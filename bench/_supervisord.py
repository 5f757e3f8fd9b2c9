"""supervisord for ``bench/vs_supervisord.py``: its own virtualenv, a config in a temp dir, XML-RPC.

supervisord is installed from PyPI into ``bench/.venv-supervisord/`` (created
once, then reused), never into the project's environment. Each run writes a
config into a fresh temp dir: the unix socket, the pidfile and every log live
there, and supervisord runs in the foreground (``nodaemon``) as our child, so
the benchmark can signal it by PID and wait for it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import re
import socket
import subprocess
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any, cast

VERSION = "4.3.0"
VENV = Path(__file__).resolve().parent / ".venv-supervisord"
_STAMP = VENV / "installed-supervisor"


class SetupError(Exception):
    """supervisord could not be installed or did not come up; the message says which and why."""


def ensure_installed() -> Path:
    """The ``supervisord`` executable of the cached venv, creating the venv on first use."""
    binary = VENV / "bin" / "supervisord"
    if binary.is_file() and _STAMP.is_file() and _STAMP.read_text().strip() == VERSION:
        return binary
    print(f"installing supervisor=={VERSION} into {VENV} (once) ...", file=sys.stderr)
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"supervisor=={VERSION}",
        ],
    )
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SetupError(f"{' '.join(argv[:4])} failed (exit {done.returncode}): {last[0]}")
    _STAMP.write_text(VERSION + "\n")
    return binary


def write_config(directory: Path, programs: dict[str, dict[str, str]]) -> Path:
    """A config with everything inside ``directory``; ``programs`` maps names to their options."""
    lines = [
        "[unix_http_server]",
        f"file={directory / 'supervisor.sock'}",
        "chmod=0700",
        "",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={directory / 'supervisord.log'}",
        "logfile_maxbytes=0",  # no rotation: the log is where the restart timestamps come from
        "loglevel=info",
        f"pidfile={directory / 'supervisord.pid'}",
        f"childlogdir={directory / 'childlogs'}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{directory / 'supervisor.sock'}",
    ]
    for name, options in programs.items():
        lines += ["", f"[program:{name}]"]
        lines += [f"{key}={value}" for key, value in options.items()]
    (directory / "childlogs").mkdir(exist_ok=True)
    path = directory / "supervisord.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def argv(binary: Path, config: Path) -> list[str]:
    return [str(binary), "--nodaemon", "--configuration", str(config)]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        del host
        return _UnixConnection(self._path, self._timeout)


def rpc(directory: Path, timeout: float = 10.0) -> xmlrpc.client.ServerProxy:
    """supervisord's XML-RPC interface over the unix socket in ``directory``."""
    transport = _UnixTransport(directory / "supervisor.sock", timeout)
    return xmlrpc.client.ServerProxy("http://localhost", transport=transport)


def running_count(directory: Path) -> int | None:
    """How many programs are RUNNING, or None while supervisord does not answer yet."""
    try:
        infos = cast("list[dict[str, Any]]", rpc(directory).supervisor.getAllProcessInfo())
    except (OSError, xmlrpc.client.Error, http.client.HTTPException):
        return None
    return sum(1 for info in infos if info["statename"] == "RUNNING")


# 2026-11-29 01:27:25,409 INFO spawned: 'fast' with pid 123
# 2026-11-29 01:27:25,411 INFO exited: fast (exit status 0; expected)
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (spawned|exited): '?([^' ]+)")


def attempts(directory: Path, program: str) -> list[tuple[float, float | None]]:
    """(spawned, exited) epoch seconds per start of ``program``, from supervisord's log.

    The log's timestamps are local time with millisecond resolution; an
    attempt still running when the log ends has ``None`` as its exit.
    """
    out: list[tuple[float, float | None]] = []
    for line in (directory / "supervisord.log").read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None or match[3] != program:
            continue
        # The log is local time; a naive datetime's timestamp() reads it as local time too.
        at = dt.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007
        if match[2] == "spawned":
            out.append((at, None))
        elif out and out[-1][1] is None:
            out[-1] = (out[-1][0], at)
    return out
