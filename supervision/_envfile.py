"""Env files (``env_file:``): the dotenv text that systemd's ``EnvironmentFile=`` and docker's
``--env-file`` read, parsed into ``NAME=VALUE`` pairs, and the rules for reading one safely.

The syntax, line by line: blank lines and lines starting with ``#`` are skipped;
``NAME=VALUE`` or ``export NAME=VALUE`` assigns (spaces around the name and the
``=`` are dropped); NAME is letters, digits and ``_``, not starting with a digit.
A VALUE is unquoted (its surrounding spaces dropped, and from a space or tab
followed by ``#`` on, a comment), single-quoted (taken literally) or
double-quoted (``\\n``, ``\\t``, ``\\r``, ``\\"``, ``\\\\``, ``\\$`` and a
backquote escape are read, any other backslash is kept, and a backslash before
the line's end joins the next line); a quoted value may span lines, and after
its closing quote only a comment may follow. Nothing is expanded: ``$HOME`` and
``${USER}`` stay as written. A later assignment of a name replaces an earlier one.

A bad line raises ``EnvFileSyntaxError`` with its line number and what is wrong
with it, never its text: the line may hold a secret.

A file is read only if it is a regular file (a symlink to one is followed) of at
most ``MAX_ENV_FILE`` bytes, owned by root or by jobvisor's user, and writable by
no other user: its values become a command's environment, and whoever can write
it can set ``LD_PRELOAD`` for that command (sudo refuses a sudoers file, and ssh
an ``authorized_keys``, on the same grounds). A group-writable file is taken when
nobody but root, the owner and system accounts is in the group, as for the state
dir's parents (``_files``). Nor is it read through another user's symbolic link
anywhere on its path (``planted_link``): that user chose where it leads.
"""

# ruff: noqa: PTH109, PTH115, PTH118, PTH120 - os.path: the walk goes by strings, as _files'

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from supervision._files import (
    FileTooLargeError,
    NotRegularFileError,
    group_outsiders,
    read_regular,
)
from supervision._issues import Merged
from supervision._units import fmt_size

if TYPE_CHECKING:
    from pathlib import Path

    from actors._env import SharedEnv

__all__ = [
    "MAX_ENV_FILE",
    "TRUSTED_OWNERS",
    "Assignment",
    "EnvFileError",
    "EnvFileSyntaxError",
    "OverShared",
    "loose",
    "loose_dir",
    "parse_env_file",
    "planted_link",
    "read_env_file",
]

MAX_ENV_FILE: Final = 1 << 20  # bytes: as a secret file's bound, so no device fills memory
_MAX_LINKS: Final = 40  # links followed in one path, as Linux's ELOOP bound

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXPORT: Final = re.compile(r"export[ \t]+")
_COMMENT: Final = re.compile(r"[ \t]#")  # starts a comment after an unquoted value
_SPECIAL: Final = re.compile(r'["\\]')  # what ends a double-quoted stretch
_DOUBLE_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$", "`": "`"}


@dataclass(frozen=True, slots=True)
class Assignment:
    """``name=value`` as line ``line`` of an env file sets it (the line it starts on)."""

    name: str
    value: str
    line: int


class EnvFileSyntaxError(ValueError):
    """Line ``line`` of an env file is not an assignment, a comment or blank.

    ``reason`` says what is wrong without quoting the line, which may hold a secret.
    """

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class EnvFileError(ValueError):
    """An env file cannot be used: ``str()`` says why, naming the file (and a bad line by its
    number), never a value. ``missing``: it does not exist (fine for an optional one)."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class OverShared(Merged):
    """A job's ``env`` in the manifest reader: what its env files set, ``shared`` with every
    job that names the same files, under ``entries``, the entries of its own (and of
    ``defaults``' ``env``), each with its place: those alone are read, checked and kept for
    the job (a ``JobEnv``), not the files' thousands again for each job."""

    __slots__ = ("shared",)

    def __init__(self, entries: dict[Any, Any], shared: SharedEnv) -> None:
        super().__init__(entries)
        self.shared = shared


def read_env_file(path: Path) -> tuple[list[Assignment], os.stat_result]:
    """The assignments of the env file at ``path``, and its stat; ``EnvFileError`` if it cannot
    be used.

    Nothing but a regular file is opened (``_files.read_regular``), so a FIFO or a
    device can neither block nor flood the reader; a file others may write is
    refused; a bad line, or bytes that are not UTF-8, are named by their line.
    """
    shown = repr(str(path))
    try:
        data, st = read_regular(path, MAX_ENV_FILE)
    except FileNotFoundError:
        # Said by the caller, who knows how the path was written (its hint: -PATH).
        message = f"expected a readable env file {shown}, got: No such file or directory"
        raise EnvFileError(message, missing=True) from None
    except NotRegularFileError as exc:
        message = f"expected a readable env file {shown}, got: {exc.kind}, not a regular file"
        raise EnvFileError(message) from None
    except FileTooLargeError as exc:
        size = "more" if exc.size is None else fmt_size(exc.size)
        message = f"expected an env file up to {fmt_size(MAX_ENV_FILE)}, got {shown} of {size}"
        raise EnvFileError(message) from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EnvFileError(f"expected a readable env file {shown}, got: {reason}") from None
    why = loose(st, "set what jobvisor's commands run with (LD_PRELOAD...)") or planted_link(path)
    if why is not None:
        raise EnvFileError(f"refusing the env file {path}: {why}")
    try:
        return parse_env_file(data.decode("utf-8")), st
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise EnvFileError(f"{path}:{line}: expected UTF-8 text, got bytes that are not") from None
    except EnvFileSyntaxError as exc:
        raise EnvFileError(f"{path}:{exc.line}: {exc.reason}") from None


def loose(st: os.stat_result, stake: str) -> str | None:
    """Why another user could change the file of stat ``st`` (the opened file's), and so
    ``stake``; None if none. The rule for every file whose text jobvisor trusts: an env file,
    a secret file (``_resolve``)."""
    mode = stat.S_IMODE(st.st_mode)
    trusted = trusted_owners()
    if trusted is None:
        return None
    if st.st_uid not in (0, os.geteuid(), *trusted):
        return (
            f"it is owned by uid {st.st_uid}, who could {stake}; chown it to root or to the "
            "user that runs jobvisor"
        )
    if mode & stat.S_IWOTH:
        return f"it is writable by others (mode {mode:04o}), who could {stake}; chmod o-w it"
    if mode & stat.S_IWGRP:
        import grp  # noqa: PLC0415 - only a group-writable file needs them
        import pwd  # noqa: PLC0415

        outsiders = group_outsiders(st.st_gid, st.st_uid, grp.getgrgid, pwd.getpwall)
        if outsiders:
            return (
                f"it is writable by its group (mode {mode:04o}), which has "
                f"{', '.join(outsiders[:3])} in it, who could {stake}; chmod g-w it"
            )
    return None


TRUSTED_OWNERS: Final = "JOBVISOR_TRUSTED_OWNERS"


def trusted_owners() -> frozenset[int] | None:
    """The users, besides root and jobvisor's own, whose files ``loose`` trusts, from
    ``JOBVISOR_TRUSTED_OWNERS`` (uids or names, by commas: a container's root running
    sources mounted from uid 1000, as git's ``safe.directory``); None for ``*``: every file,
    writable by others too (a WSL ``/mnt/c``, all 0777). A name no user has is no one."""
    text = os.environ.get(TRUSTED_OWNERS, "")
    if text.strip() == "*":
        return None
    found: set[int] = set()
    for word in filter(None, (part.strip() for part in text.split(","))):
        if word.isdigit():
            found.add(int(word))
            continue
        import pwd  # noqa: PLC0415 - only a name needs it

        try:
            found.add(pwd.getpwnam(word).pw_uid)
        except KeyError:
            continue
    return frozenset(found)


def loose_dir(path: Path | str) -> str | None:
    """Why another user could put a module in directory ``path`` that a ``python:`` job's
    import would run as jobvisor's user (it is theirs, or they can write in it: ``/tmp``,
    sticky bit or not); None if none, or if it cannot be read (an import finds nothing
    there either)."""
    try:
        st = os.stat(path)  # noqa: PTH116 - pathlib stays out of control commands
    except (OSError, ValueError):
        return None
    return loose(st, "put a module there that a python job's import runs as jobvisor's user")


def planted_link(path: Path | str) -> str | None:
    """Why the file at ``path`` is not to be read for its text: a symbolic link on the way to
    it, the last component or any before it, is another user's, who chose where it leads (a
    root file whose text they know, as the HTTP token); None if none.

    The path is walked as the kernel walks it, a component at a time, a link's target taking
    its place; a path that cannot be walked is left to the open, which says why.
    """
    trusted = trusted_owners()
    return None if trusted is None else _planted(path, {0, os.geteuid(), *trusted})


def _from_root(path: Path | str) -> str:
    """``path`` from ``/``, not normalised: '..' after a link is physical. An absolute one
    needs no working directory (it may have been deleted under us)."""
    text = os.fspath(path)
    return text if text.startswith("/") else os.path.join(os.getcwd(), text)


def _planted(path: Path | str, owners: set[int]) -> str | None:
    start = _from_root(path)
    todo = start.split("/")[::-1]  # the components still to walk, the next one last
    here, links = "/", 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            here = os.path.dirname(here)
            continue
        step = os.path.join(here, part)
        try:
            st = os.lstat(step)
            if not stat.S_ISLNK(st.st_mode):
                here = step
                continue
            if st.st_uid not in owners:
                if step == os.path.normpath(start) and not todo:
                    return (
                        f"it is a symbolic link owned by uid {st.st_uid}, who chose the file it "
                        "points to; name the file itself"
                    )
                return (
                    f"the symbolic link {step!r} on its path is owned by uid {st.st_uid}, who "
                    "chose where it points; name the file itself"
                )
            links += 1
            if links > _MAX_LINKS:
                return None
            target = os.readlink(step)
        except OSError:
            return None
        if target.startswith("/"):
            here = "/"
        todo.extend(target.split("/")[::-1])
    return None


def parse_env_file(text: str) -> list[Assignment]:
    """The assignments of env file ``text`` in order (see the module docstring for the syntax)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise EnvFileSyntaxError(line, "a NUL byte, which no environment value can hold")
    found: list[Assignment] = []
    pos, line, end_of_text = 0, 1, len(text)
    while pos < end_of_text:
        end = text.find("\n", pos)
        end = end_of_text if end < 0 else end
        stripped = text[pos:end].strip()
        if not stripped or stripped.startswith("#"):
            pos, line = end + 1, line + 1
            continue
        start = pos + len(text[pos:end]) - len(text[pos:end].lstrip())
        export = _EXPORT.match(text, start, end)
        if export is not None:
            start = export.end()
        name, equals, rest = text[start:end].partition("=")
        if not equals:
            raise EnvFileSyntaxError(
                line, "expected NAME=VALUE, got a line without '=' (not shown: it may be a secret)"
            )
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise EnvFileSyntaxError(
                line,
                "expected a variable name of letters, digits and '_' (not starting with a "
                "digit) before '=', got another (not shown: it may be a secret)",
            )
        value_at = end - len(rest.lstrip(" \t"))
        quote = text[value_at] if value_at < end else ""
        if quote in ("'", '"'):
            value, after = _quoted(text, value_at + 1, quote, line)
            closing_line = line + text.count("\n", value_at, after)
            end = text.find("\n", after)
            end = end_of_text if end < 0 else end
            tail = text[after:end].strip()
            if tail and not tail.startswith("#"):
                raise EnvFileSyntaxError(
                    closing_line,
                    "expected nothing but a '# comment' after the closing quote of a value, got "
                    "more text (not shown: it may be a secret)",
                )
            found.append(Assignment(name, value, line))
            pos, line = end + 1, closing_line + 1
            continue
        value = text[value_at:end]
        comment = _COMMENT.search(value)
        if comment is not None:
            value = value[: comment.start()]
        found.append(Assignment(name, value.strip(), line))
        pos, line = end + 1, line + 1
    return found


def _quoted(text: str, start: int, quote: str, line: int) -> tuple[str, int]:
    """The value of a quoted string whose text starts at ``start``, and where it ends (past its
    closing quote)."""
    kind = "single" if quote == "'" else "double"
    unclosed = f"a {kind}-quoted value that is never closed (it opens here)"
    if quote == "'":
        close = text.find("'", start)
        if close < 0:
            raise EnvFileSyntaxError(line, unclosed)
        return text[start:close], close + 1
    pieces: list[str] = []
    at = start
    while True:
        stop = _next_special(text, at)
        if stop < 0:
            raise EnvFileSyntaxError(line, unclosed)
        pieces.append(text[at:stop])
        if text[stop] == '"':
            return "".join(pieces), stop + 1
        escaped = text[stop + 1 : stop + 2]
        if escaped == "\n":
            at = stop + 2  # a line continued: neither the backslash nor the newline
        elif escaped in _DOUBLE_ESCAPES:
            pieces.append(_DOUBLE_ESCAPES[escaped])
            at = stop + 2
        else:
            pieces.append("\\")  # kept, as a shell keeps it inside double quotes
            at = stop + 1


def _next_special(text: str, at: int) -> int:
    """Where the next ``"`` or backslash is from ``at``; -1 if neither comes.

    One scan: two ``find``s looked for the far closing quote again at every escape (a 1 MiB
    value of escapes took 2.5 s)."""
    found = _SPECIAL.search(text, at)
    return -1 if found is None else found.start()
