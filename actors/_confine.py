"""Who a command runs as and what it may use: its ``user``, ``umask`` and resource ``limits``.

Part of the ``command`` job kind (``actors._command``): ``RunAs`` and
``Limits`` are its specs, judged when built; ``Confinement`` is what
``actors._spawn`` applies in the child between fork and exec (never in
jobvisor itself).
"""

from __future__ import annotations

import grp
import math
import os
import pwd
import resource
from dataclasses import dataclass
from typing import Final

from actors._checks import MAX_DURATION, fmt_duration, need

__all__ = ["UNLIMITED", "Confinement", "Limits", "RunAs", "check_umask"]

UNLIMITED: Final = "unlimited"  # a limit lifted (RLIM_INFINITY, which is -1: no sentinel)

# name -> the resource it sets; the order is the order --explain shows them in.
_RESOURCES: Final = {
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "memory": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "core": resource.RLIMIT_CORE,
}
_SIZES: Final = ("memory", "core")
# What a command with a user keeps of jobvisor's environment (LC_* too): not a secret, and its
# output's language and times as jobvisor's own. sudo's env_keep and systemd pass them alike.
_PASSED: Final = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
_DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"  # jobvisor has none: a login's usual one


def _user_named(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        return None


def _group_named(name: str) -> grp.struct_group | None:
    try:
        return grp.getgrnam(name)
    except (KeyError, ValueError):
        return None


def _current_user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAs:
    """Run a command as user ``name``, with ``group`` (default: the user's) as primary group.

    The supplementary groups are the user's (``os.getgrouplist``), as a login
    gives them. Switching needs root: when jobvisor runs as anybody else, only
    its own user (and primary group) is accepted, and nothing is switched.
    Both names are looked up when the spec is built; an unknown one raises
    ``SpecError``.
    """

    name: str
    group: str | None = None

    def __post_init__(self) -> None:
        name, group = self.name, self.group
        text = isinstance(name, str) and bool(name.strip())
        need(text, "name", "a user name", name)
        entry = _user_named(name)
        need(entry is not None, "name", "the name of a user of this system", name)
        assert entry is not None
        if group is not None:
            need(isinstance(group, str) and bool(group.strip()), "group", "a group name", group)
            need(_group_named(group) is not None, "group", "a group of this system", group)
        if os.geteuid() == 0:
            return
        # Only root may switch; the current user "switching" to itself is harmless and allowed.
        me = _current_user()
        need(
            entry.pw_uid == os.geteuid(),
            "name",
            f"the user jobvisor runs as ({me}): switching users needs root",
            name,
        )
        if group is not None:
            gid = _group_named(group).gr_gid  # type: ignore[union-attr]
            need(
                gid == os.getegid(),
                "group",
                "jobvisor's own group: switching groups needs root",
                group,
            )

    def describe(self) -> str:
        """``nobody group=nogroup``: the user and the primary group it will have."""
        entry = _user_named(self.name)
        group = self.group
        if group is None and entry is not None:
            try:
                group = grp.getgrgid(entry.pw_gid).gr_name
            except KeyError:
                group = str(entry.pw_gid)
        return f"{self.name} group={group}"

    def confinement(self) -> tuple[tuple[int, int, tuple[int, ...]] | None, dict[str, str]]:
        """``((uid, gid, groups), env)`` to switch to now, or ``(None, env)`` when not root.

        ``env`` is the whole environment the command starts from, as sudo and
        systemd's ``User=`` give one: nothing of jobvisor's (its HTTP token,
        the variables other jobs' secrets come from: the other user could
        read them in its ``/proc/PID/environ``) but the user's ``HOME``,
        ``USER``, ``LOGNAME`` and ``SHELL`` (its passwd entry's, ``/bin/sh``
        when that is empty), jobvisor's ``PATH`` (where the manifest's programs
        were looked for; ``_DEFAULT_PATH`` without one) and its locale and
        time zone (``LANG``, ``LANGUAGE``, ``LC_*``, ``TZ``). The same whether
        or not jobvisor is root, so that a manifest runs alike under both.
        Raises ``LookupError`` when a name is no longer known.
        """
        entry = pwd.getpwnam(self.name)
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _PASSED or name.startswith("LC_")
        }
        env.setdefault("PATH", _DEFAULT_PATH)
        env.update(
            HOME=entry.pw_dir,
            USER=entry.pw_name,
            LOGNAME=entry.pw_name,
            SHELL=entry.pw_shell or "/bin/sh",
        )
        if os.geteuid() != 0:
            return None, env
        gid = entry.pw_gid if self.group is None else grp.getgrnam(self.group).gr_gid
        groups = tuple(os.getgrouplist(entry.pw_name, gid))
        return (entry.pw_uid, gid, groups), env


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Resource limits of a command's process (soft and hard alike), ``None`` for jobvisor's own.

    ``memory`` (bytes) is ``RLIMIT_AS``; ``cpu`` (seconds, rounded up) is
    ``RLIMIT_CPU``: SIGXCPU when it is used up, SIGKILL a second later if the
    process survives that; ``core`` is in bytes. ``UNLIMITED`` lifts a limit.
    They are inherited by the command's children, and never set in jobvisor.
    """

    nofile: int | str | None = None  # str: UNLIMITED only, as are the others'
    nproc: int | str | None = None
    memory: int | str | None = None
    cpu: float | str | None = None
    core: int | str | None = None

    def __post_init__(self) -> None:
        for name in ("nofile", "nproc", "memory", "core"):
            value = getattr(self, name)
            if value is None or value == UNLIMITED:
                continue
            low = 0 if name == "core" else 1
            unit = "a size" if name in _SIZES else "a count"
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
            need(ok, name, f"{unit} >= {low} or unlimited", value)
        cpu = self.cpu
        if cpu is not None and cpu != UNLIMITED:
            ok = isinstance(cpu, int | float) and not isinstance(cpu, bool)
            ok = ok and cpu > 0  # type: ignore[operator]
            need(ok, "cpu", "a duration > 0 or unlimited", cpu)
            longest = f"a duration > 0 up to {fmt_duration(MAX_DURATION)} or unlimited"
            need(cpu <= MAX_DURATION, "cpu", longest, cpu)  # type: ignore[operator]

    def rlimits(self) -> tuple[tuple[str, int, int, int], ...]:
        """``(name, resource, soft, hard)`` for each limit set."""
        out = []
        for name, res in _RESOURCES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if value == UNLIMITED:
                out.append((name, res, resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            elif name == "cpu":
                # Soft == hard would SIGKILL at once (the kernel checks the hard limit first):
                # a hard limit one second later gives SIGXCPU, which says why, its turn.
                seconds = math.ceil(value)
                out.append((name, res, seconds, seconds + 1))
            else:
                out.append((name, res, int(value), int(value)))
        return tuple(out)

    def describe(self) -> str:
        """``nofile=1024 memory=512MiB cpu=1s`` (the limits set)."""
        parts = []
        for name in _RESOURCES:
            value = getattr(self, name)
            if value is None:
                continue
            if value == UNLIMITED:
                shown = "unlimited"
            elif name == "cpu":
                shown = fmt_duration(value)
            elif name in _SIZES:
                shown = _fmt_size(value)
            else:
                shown = str(value)
            parts.append(f"{name}={shown}")
        return " ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Confinement:
    """What the child sets up before exec: credentials, umask, resource limits (each optional)."""

    credentials: tuple[int, int, tuple[int, ...]] | None = None  # uid, gid, groups
    umask: int | None = None
    rlimits: tuple[tuple[str, int, int, int], ...] = ()  # name, resource, soft, hard


def check_umask(value: object, field: str = "umask") -> None:
    """A umask: an int 0..0o777 (a manifest writes it as an octal string, ``"027"``)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777
    need(ok, field, 'an octal umask between "000" and "777", like "027"', value)


def _fmt_size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"
