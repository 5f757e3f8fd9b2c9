"""`jobvisor unit`: a systemd service unit that runs a manifest's daemon.

The daemon already speaks sd_notify (``READY=1`` once the tree started,
``WATCHDOG=1`` at half of ``WATCHDOG_USEC``, ``STOPPING=1``), so the unit is
``Type=notify`` with a watchdog; a reload goes through the control socket
(``jobvisor reload``), and ``KillMode=mixed`` lets the daemon stop its jobs
in order before systemd kills what is left. Paths are absolute, since systemd
runs the unit from ``/``. Standard library only: this is a light command.
"""

# ruff: noqa: PTH100, PTH120 - os.path: the command imports no pathlib (see _client)

from __future__ import annotations

import math
import os
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["WATCHDOG_SEC", "jobvisor_command", "render_unit", "stop_timeout"]

WATCHDOG_SEC: Final = 30
TIMEOUT_STOP_SEC: Final = 90  # systemd's own default: a unit's never asks for less
_REAP: Final = 1.0  # after a job's grace: SIGKILL, then its end (a python thread's abandoning)
_SPARE: Final = 30.0  # the daemon's own end: the journal's last writes, its threads' joins


def stop_timeout(graces: Iterable[float]) -> int:
    """``TimeoutStopSec`` for a daemon whose jobs have these stop graces (seconds).

    It stops them one after another (in reverse order, group by group), each for
    up to its grace: their sum, a moment each to reap what was killed, and some
    to spare; never less than systemd's default.
    """
    total = sum(grace + _REAP for grace in graces) + _SPARE
    return max(TIMEOUT_STOP_SEC, math.ceil(total))


def jobvisor_command(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """How to run this jobvisor again from anywhere: its script, or the interpreter and cli.py.

    ``argv0`` is what started us (``sys.argv[0]``): an installed ``jobvisor``
    script runs as is; a ``cli.py`` of a checkout needs its interpreter.
    """
    script = os.path.realpath(argv0 if argv0 is not None else sys.argv[0])
    if script.endswith(".py") or not os.access(script, os.X_OK):
        # Not realpath: a venv's python is a symlink whose target would leave the venv.
        return [os.path.abspath(executable or sys.executable), script]
    return [script]


def _specifiers(text: str) -> str:
    """``text`` in a setting that expands ``%`` specifiers: each ``%`` doubled."""
    return text.replace("%", "%%")


def _quote(word: str) -> str:
    """One word of an Exec line: ``%`` doubled (a specifier otherwise), quoted if it must be."""
    word = word.replace("%", "%%")
    if word and not any(c.isspace() or c in "\"'\\;$" for c in word):
        return word
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{escaped}"'


def _exec(words: list[str]) -> str:
    return " ".join(_quote(word) for word in words)


def render_unit(
    manifest: str,
    *,
    user_unit: bool = False,
    state_dir: str | None = None,
    command: list[str] | None = None,
    user: str | None = None,
    timeout_stop: int = TIMEOUT_STOP_SEC,
) -> str:
    """The unit's text for the daemon of ``manifest`` (any path: it is made absolute).

    A system unit runs as ``user`` (default: whoever runs ``jobvisor unit``);
    a user unit (``user_unit``) runs in that person's systemd and names no user.
    ``timeout_stop``: how long systemd lets it stop (``stop_timeout``).
    """
    manifest = os.path.abspath(manifest)
    base = command if command is not None else jobvisor_command()
    extra = ["--state-dir", os.path.abspath(state_dir)] if state_dir else []
    start = [*base, "daemon", manifest, *extra]
    reload = [*base, "reload", "--manifest", manifest, *extra]
    lines = [
        "[Unit]",
        f"Description=jobvisor daemon for {_specifiers(manifest)}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={WATCHDOG_SEC}s",
        f"ExecStart={_exec(start)}",
        f"ExecReload={_exec(reload)}",
        # A path, not words: quotes would be part of it.
        f"WorkingDirectory={_specifiers(os.path.dirname(manifest))}",
        "KillMode=mixed",
        f"TimeoutStopSec={timeout_stop}s",
        "Restart=on-failure",
        # Exit 2 is a manifest or state dir the daemon refuses: a restart cannot mend it.
        "RestartPreventExitStatus=2",
        "RestartSec=2s",
        "Environment=PYTHONUNBUFFERED=1",
        "# Secrets the manifest reads from the environment (${secret:NAME}, {secret: {env:",
        "# NAME}}) come from here: a file of NAME=value lines, owned by the service's user,",
        "# mode 0600 (systemd reads it before it starts the daemon):",
        "# EnvironmentFile=/etc/jobvisor/secrets.env",
    ]
    if not user_unit:
        lines.append(f"User={user or _current_user()}")
    lines += ["", "[Install]", f"WantedBy={'default' if user_unit else 'multi-user'}.target", ""]
    return "\n".join(lines)


def _current_user() -> str:
    import pwd  # noqa: PLC0415 - only system units name a user

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())
