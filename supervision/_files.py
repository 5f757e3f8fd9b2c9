"""Files jobvisor writes: private modes, no planted symlinks, no loose state dir; and files
it reads that someone else wrote (a secret): regular files of a bounded size only.

Everything jobvisor creates is for its user only (directories 0700, files
0600), whatever the process umask, because the journal and the logs hold
every job's errors and output. Nothing is written through a symlink at the
last component of a path: files open with ``O_NOFOLLOW``, and the pidfile is
written beside its path and renamed over it; nor at a directory on the way,
for a directory another user could swap is refused (``check_parents``). A
file opened to write must be a regular file (or a character device such as
/dev/null): ``O_NONBLOCK`` makes a planted FIFO fail at once, where its open
would wait for a reader for ever. A state dir that another user
could have prepared (a symlink, owned by someone else, writable by group or
others) is refused as ssh refuses a loose key: whatever is inside it could
have been planted. An existing file that others can write is refused too; one
that others can only read is made private. A log or output file of ours that is
only too open (logrotate's ``create 0664``) is made 0600 instead, and the opener
is told (``tighten``): refusing it dropped every line until someone chmodded it.

A file read for its whole content (``read_regular``: a secret) must be a
regular file of at most a given size: a FIFO would block the reader for ever,
and a device such as /dev/zero would fill its memory. A job's output file is
read (``jobvisor logs``) never through a symlink (``open_output``).
"""

# ruff: noqa: PTH101, PTH102, PTH104, PTH108, PTH109, PTH114, PTH115, PTH116, PTH118, PTH119, PTH120
# (file descriptors, O_NOFOLLOW and lstat, which pathlib does not offer; and no pathlib
# at run time, see below)

from __future__ import annotations

import contextlib
import errno
import functools
import io
import itertools
import os
import socket
import stat

from actors._errors import JobvisorError  # not `actors`: control commands import this
from supervision._held import gone_dir

# Neither typing nor pathlib at run time: the control client imports this module (check_server).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from pathlib import Path
    from typing import Any, Final, TypeAlias

__all__ = [
    "FileTooLargeError",
    "NotRegularFileError",
    "UnsafePathError",
    "check_dirs_to_read",
    "check_not_loose",
    "check_parents",
    "check_private_file",
    "check_server",
    "ensure_private_dir",
    "file_kind",
    "group_outsiders",
    "identity",
    "loosened",
    "make_dirs",
    "open_private",
    "open_private_file",
    "open_to_read",
    "owned_by_another",
    "read_regular",
    "refuse_symlinks",
    "refused_owner",
    "remove_if_same",
    "write_atomic",
]

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_OTHERS_WRITE: Final = stat.S_IWGRP | stat.S_IWOTH
_OTHERS_ANY: Final = 0o077


class UnsafePathError(JobvisorError, OSError):
    """A path jobvisor refuses to write: a symlink, another user's, or writable by others.

    An ``OSError`` too, so code that already copes with a file it cannot
    open (a log file reopened after rotation) copes with this one; ``path``
    is the refused path. The message is one line that says how to fix it.
    """

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.path = path


class NotRegularFileError(JobvisorError, ValueError):
    """A file read whole is not a regular file: ``kind`` says what it is (``a FIFO``)."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(f"{os.fspath(path)} is {kind}, not a regular file")
        self.path = path
        self.kind = kind


class FileTooLargeError(JobvisorError, ValueError):
    """A file read whole holds more than ``limit`` bytes; ``size`` is its size (None: unknown,
    it grew as it was read)."""

    def __init__(self, path: str | os.PathLike[str], size: int | None, limit: int) -> None:
        said = "more" if size is None else f"{size} bytes"
        super().__init__(f"{os.fspath(path)} holds {said}: expected {limit} bytes at most")
        self.path = path
        self.size = size
        self.limit = limit


_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a file of ``mode`` is, in words: ``a regular file``, ``a FIFO``, ``a directory``."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((kind for test, kind in _KINDS if test(mode)), "not a file")


def read_regular(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file at ``path``, at most ``limit`` of them, and its stat.

    A symlink is followed (a Kubernetes secret is one, through two more), but
    what it leads to must be a regular file: anything else raises
    ``NotRegularFileError`` without being opened (a device's open may act), or
    once opened if it was swapped in meanwhile (``O_NONBLOCK``: a FIFO's open
    returns at once). More than ``limit`` bytes raise ``FileTooLargeError``;
    what cannot be read raises ``OSError``.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, file_kind(st.st_mode))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, file_kind(st.st_mode))
        if st.st_size > limit:
            raise FileTooLargeError(path, st.st_size, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew as it was read
            raise FileTooLargeError(path, None, limit)
    finally:
        os.close(fd)
    return b"".join(chunks), st


def _owner(uid: int) -> str:
    try:
        import pwd  # noqa: PLC0415 - only a refusal needs a user's name

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def not_readable(path: str | os.PathLike[str], what: str) -> UnsafePathError:
    """The refusal of ``path``, which this user was denied (``EACCES``): the first directory
    on its way it may not enter (a root daemon's state dir, 0700), else ``path`` itself, with
    whose it is: a traceback was all another user got."""
    whole = os.path.abspath(path)  # noqa: PTH100 - the path as given: no link followed
    parts = whole.split("/")
    barrier = next(
        (
            way
            for way in ("/".join(parts[:n]) for n in range(2, len(parts)))
            if not os.access(way, os.X_OK, effective_ids=True)
        ),
        whole,
    )
    try:
        st = os.stat(barrier)
    except OSError:
        return UnsafePathError(f"cannot read the {what} {path}: permission denied", path)
    try:
        import pwd  # noqa: PLC0415 - only a refusal needs a user's name

        owner = login = pwd.getpwuid(st.st_uid).pw_name
    except (ImportError, KeyError):
        owner, login = f"uid {st.st_uid}", f"'#{st.st_uid}'"
    it = "it" if barrier == whole else f"the directory {barrier}"
    how = "or with sudo" if st.st_uid == 0 else f"or with sudo -u {login}"
    return UnsafePathError(
        f"cannot read the {what} {path}: {it} is {owner}'s (mode {stat.S_IMODE(st.st_mode):04o}), "
        f"and {_owner(os.geteuid())} who runs this may not read it; run it as jobvisor's user, "
        f"{owner}, {how}",
        path,
    )


def _symlink(
    path: str | os.PathLike[str], what: str, *, reading: bool = False, chosen: bool = False
) -> UnsafePathError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    # A file jobvisor reads is one it wrote itself: a link there was planted, not chosen
    # (a state dir is chosen: its real path is the fix).
    if reading:
        fix = "never reads through one; " + ("give the real path" if chosen else "remove it")
    else:
        fix = "never writes through one; give the real path"
    return UnsafePathError(
        f"refusing the {what} {path}: it is a symbolic link{target}, and jobvisor {fix}", path
    )


def check_not_loose(
    path: str | os.PathLike[str], st: os.stat_result, what: str, *, root_too: bool = False
) -> None:
    """Refuse ``path`` (whose stat is ``st``) if another user owns it or may write to it.

    ``root_too``: one of root's is taken as well (a reader's check: root could read it anyway).
    """
    if stat.S_ISLNK(st.st_mode):
        raise _symlink(path, what)
    me = os.geteuid()
    if st.st_uid != me and not (root_too and st.st_uid == 0):
        raise UnsafePathError(
            f"refusing the {what} {path}: it is owned by {_owner(st.st_uid)}, not by "
            f"{_owner(me)} who runs jobvisor; use one of your own",
            path,
        )
    if st.st_mode & _OTHERS_WRITE:
        mode = stat.S_IMODE(st.st_mode)
        raise UnsafePathError(
            f"refusing the {what} {path}: it is writable by group or others (mode {mode:04o}); "
            f"make it private (chmod go-w {path}) or use another",
            path,
        )


def make_dirs(path: Path, what: str = "directory") -> None:
    """Create ``path`` and its missing parents, each 0700 whatever the umask.

    One made meanwhile by someone else (between the look and the ``mkdir``) is
    taken only if ``check_parents`` would take it: a real directory of root's
    or ours that others cannot write unless it is sticky; otherwise
    ``UnsafePathError``, for its owner could swap what is made in it. Nothing is made in
    or as a state dir this process held and lost (``supervision._held``): ``FileNotFoundError``.
    """
    if (held := gone_dir(path)) is not None:  # another jobvisor may hold a new one there
        raise FileNotFoundError(
            errno.ENOENT, f"its state dir {held} was moved or deleted: not made again", str(path)
        )
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            st = os.lstat(directory)
            if stat.S_ISLNK(st.st_mode):
                raise _symlink(directory, what) from None
            if stat.S_ISDIR(st.st_mode) and (why := _loose_dir(st)) is not None:
                raise UnsafePathError(
                    f"refusing the {what} {path}: the directory {directory} on its way, made "
                    f"meanwhile by someone else, {why}",
                    path,
                ) from None
            continue  # ours (another of our threads made it), or not a directory: mkdir says so
        os.chmod(directory, DIR_MODE)  # the umask may have taken bits the owner needs


def _loose_dir(st: os.stat_result) -> str | None:
    """Why another user could rename what is in the directory of ``st``; None if none can."""
    if st.st_uid not in (0, os.geteuid()):
        return f"is owned by {_owner(st.st_uid)}"
    mode = st.st_mode
    if not mode & _OTHERS_WRITE or mode & stat.S_ISVTX:
        return None
    if not mode & stat.S_IWOTH:
        # Group-writable only: as Debian's OpenSSH takes it, harmless when nobody but root,
        # the owner and system accounts is in the group (a project 0775 under umask 002 in
        # its owner's private group; Ubuntu's /var/log, 0775 root:syslog).
        import grp  # noqa: PLC0415 - only for a group-writable directory
        import pwd  # noqa: PLC0415

        outsiders = group_outsiders(st.st_gid, st.st_uid, grp.getgrgid, pwd.getpwall)
        if not outsiders:
            return None
        return (
            f"is writable by its group (mode {stat.S_IMODE(mode):04o}), which has "
            f"{', '.join(outsiders[:3])} in it"
        )
    return f"is writable by group or others (mode {stat.S_IMODE(mode):04o})"


_SYSTEM_UID_MAX: Final = 999  # Debian's and Fedora's: accounts below 1000 are the system's


def group_outsiders(
    gid: int,
    owner: int,
    group_of: Callable[[int], Any],
    users: Callable[[], Iterable[Any]],
    *,
    me: int | None = None,
) -> list[str]:
    """The people, besides root, ``owner`` and jobvisor's user (``me``, default ours), in group
    ``gid``: named in it or having it as their own; system accounts are not people here."""
    trusted = {0, owner, os.geteuid() if me is None else me}
    try:
        named = set(group_of(gid).gr_mem)
    except KeyError:
        named = set()
    return sorted(
        user.pw_name
        for user in users()
        if (user.pw_gid == gid or user.pw_name in named)
        and user.pw_uid not in trusted
        and user.pw_uid > _SYSTEM_UID_MAX
    )


_MAX_LINKS: Final = 40  # as the kernel's: beyond it its own open fails (ELOOP)


def check_parents(
    path: str | os.PathLike[str], what: str = "state dir", option: str = "--state-dir"
) -> None:
    """Refuse ``path`` if a directory on its way lets another user swap it (as ssh's StrictModes).

    Whoever can write a parent can rename ``path`` away and put a symlink there,
    and jobvisor reopens files by path (a log at each rotation, a job's output
    at each attempt): its writes would go where they point. The path is walked
    as the kernel walks it, each symlink on the way followed from where it is,
    so a symlink's own directory is judged too, not only where it leads: each
    directory must be owned by root or by us, and not writable by group or
    others unless it is sticky (``/tmp``: there others cannot rename our
    entries); an entry of a sticky directory others can write must then be
    root's or ours (its owner may replace it). What does not exist yet is made
    later by us (``make_dirs``, 0700). The last component is the opener's to
    judge (``O_NOFOLLOW``). ``option`` is what gives another path
    (``--log-file``).
    """
    for entry, holder, holder_st, st in _way(path):
        if holder_st.st_mode & _OTHERS_WRITE and st.st_uid not in (0, os.geteuid()):
            kind = "symbolic link" if stat.S_ISLNK(st.st_mode) else "directory"
            why = f"the {kind} {entry} in the shared directory {holder} is owned by "
            why += _owner(st.st_uid)
            fix = f"another {option}"
        elif stat.S_ISDIR(st.st_mode) and (loose := _loose_dir(st)) is not None:
            why = f"the directory {entry} above it {loose}"
            change = "chown" if loose.startswith("is owned") else "chmod go-w"
            fix = f"{change} {entry}, or another {option}"
        else:
            continue
        raise UnsafePathError(
            f"refusing the {what} {path}: {why}, who could swap it for a symbolic link and "
            f"redirect jobvisor's writes; use a {what} whose parents only you (or root) can "
            f"write ({fix})",
            path,
        )


def _way(
    path: str | os.PathLike[str],
) -> Iterator[tuple[str, str, os.stat_result, os.stat_result]]:
    """What the kernel passes on its way to ``path``'s directory, in order: each directory
    and symlink, with the directory that holds it, that one's stat, and its own ``lstat``
    (``/`` first, held by itself). It ends where one is missing (made later, by us) or is
    neither (the open then fails and says so)."""
    text = os.fspath(path)
    # An absolute path needs no working directory (one deleted under us has none).
    full = text if text.startswith("/") else os.path.join(os.getcwd(), text)
    pending = os.path.dirname(full).split("/")
    pending.reverse()  # a stack: a symlink's target is pushed in front of the rest
    current = "/"
    current_st = os.stat(current)
    yield current, current, current_st, current_st
    links = 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            # current holds no symlink, so its parent is the kernel's, judged on the way here
            current = os.path.dirname(current)
            current_st = os.stat(current)
            continue
        entry = os.path.join(current, name)
        try:
            st = os.lstat(entry)
        except (FileNotFoundError, NotADirectoryError):
            return
        yield entry, current, current_st, st
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                return
            target = os.readlink(entry)
            if target.startswith("/"):
                current = "/"
                current_st = os.stat(current)
            pending.extend(reversed(target.split("/")))
        elif stat.S_ISDIR(st.st_mode):
            current, current_st = entry, st
        else:
            return


def ensure_private_dir(path: Path, what: str = "state dir") -> None:
    """Make ``path`` (0700) or check it: a real directory of ours that no one else can write.

    A directory others can only read is made 0700. Raises ``UnsafePathError``
    for a symlink, another user's directory or a loose one, and an
    ``OSError`` naming the path when it cannot be made or is not a directory.
    """
    make_dirs(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        _refuse_symlink(exc, path, what, errno.ELOOP, errno.ENOTDIR)
        raise
    try:
        st = os.fstat(fd)
        check_not_loose(path, st, what)
        if st.st_mode & _OTHERS_ANY:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & DIR_MODE)
    finally:
        os.close(fd)


def check_state_dir(path: Path, what: str = "state dir") -> None:
    """Refuse ``path`` as ``ensure_private_dir`` after ``check_parents`` would, making and
    changing nothing (``jobvisor unit``: the daemon it writes for would refuse it)."""
    check_parents(path, what)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # the daemon makes it, 0700
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        return  # not a directory: the daemon's OSError, said at its start
    check_not_loose(path, st, what)


# O_NONBLOCK: an open to write a FIFO would wait for a reader for ever (jobvisor deaf to
# SIGTERM, holding its lock); so it fails at once (ENXIO), or opens and is refused. Cleared
# once the file is judged: a character device (a terminal) is then written as usual.
_OPEN_FLAGS: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_private(
    path: Path, flags: int, what: str, *, tighten: Callable[[int], None] | None = None
) -> int:
    """``os.open`` for writing a file of ours: created 0600, never through a symlink.

    An existing regular file must be ours and not writable by others; one
    that others can read is made 0600. With ``tighten``, one of ours that
    others can write is made 0600 too, not refused, and ``tighten(mode)`` is
    called with the mode it had (say so: ``loosened``); another user's is
    refused all the same. A character device (``/dev/null``) is taken as it
    is: no other user can plant one. Anything else (a FIFO, a socket) is
    refused at once, never waited on.
    """
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, FILE_MODE)
    except OSError as exc:
        _refuse_unopened(exc, path, what)
        raise
    try:
        _checked(path, fd, what, tighten)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private_file(
    path: Path, flags: int, what: str, *, tighten: Callable[[int], None] | None = None
) -> io.FileIO:
    """``open_private`` as an unbuffered binary file (``mode``: ``"ab"`` for append, ...).

    The file object owns the fd from the moment it exists: ``os.open`` hands
    it to ``FileIO`` from C. A job's thread may get a ``Kill`` (an
    asynchronous exception) at any bytecode, also right after ``os.open``
    returned; an fd held by nothing but a local would then leak for good.
    The object is closed when the last reference goes, whatever interrupts.
    """
    mode = "ab" if flags & os.O_APPEND else "wb"
    opening = ((path, flags | _OPEN_FLAGS, FILE_MODE),)
    try:
        file = next(
            map(functools.partial(io.FileIO, mode=mode), itertools.starmap(os.open, opening))
        )
    except OSError as exc:
        _refuse_unopened(exc, path, what)
        raise
    try:
        _checked(path, file.fileno(), what, tighten)
    except BaseException:
        file.close()
        raise
    return file


_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir_to_read(name: str, dir_fd: int | None, shown: str, what: str) -> int:
    """Open the directory ``name`` (in ``dir_fd``; ``shown`` is its whole path) to read from:
    not a symlink, root's or ours, not writable by others; ``UnsafePathError`` otherwise."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, dir_fd):
            raise _symlink(shown, what, reading=True, chosen=dir_fd is None) from None
        if exc.errno == errno.EACCES:
            raise not_readable(shown, what) from None
        raise
    try:
        check_not_loose(shown, os.fstat(fd), what, root_too=True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(name: str, dir_fd: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _walk_to_read(directory: str, within: str, what: str) -> int:
    """The fd of ``directory``, opened from ``within`` (a state dir) one component at a time,
    each judged by ``_open_dir_to_read``: ``O_NOFOLLOW`` alone guards the last component only,
    and a directory on the way swapped for a symlink (``output -> /var/log``) would lead
    the reader anywhere. ``what`` names the directories below ``within``."""
    within = os.path.normpath(within)  # a trailing slash would have a link followed
    relative = os.path.relpath(directory, within)
    parts = [] if relative == "." else relative.split("/")
    if ".." in parts:
        raise ValueError(f"{directory} is not inside {within}")
    fd = _open_dir_to_read(within, None, within, "state dir")
    shown = within
    try:
        for part in parts:
            shown = os.path.join(shown, part)
            inner = _open_dir_to_read(part, fd, shown, what)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_dirs_to_read(directory: str, within: str, what: str = "output directory") -> None:
    """Refuse ``within`` (a state dir) and each directory from it down to ``directory`` if one
    is a symlink, another user's (root's is taken) or writable by others: ``UnsafePathError``
    (its ``path`` the one refused). One missing raises ``FileNotFoundError``."""
    os.close(_walk_to_read(directory, within, what))


def open_to_read(
    path: str | os.PathLike[str], what: str, *, within: str | None = None
) -> io.BufferedReader:
    """Open a file jobvisor wrote (a job's output file) to read it: never through a symlink,
    and a regular file only (a FIFO planted there would block the reader for ever).

    ``within``: the state dir ``path`` lies in; it and every directory on the way from it
    are opened as ``check_dirs_to_read`` judges them, so none can be a symlink either.
    Raises ``UnsafePathError`` for any of that, and ``OSError`` (``FileNotFoundError``...)
    as ``open`` would.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    name: str | os.PathLike[str] = path
    dir_fd = None
    if within is not None:
        dir_fd = _walk_to_read(os.path.dirname(os.fspath(path)), within, "output directory")
        name = os.path.basename(os.fspath(path))
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise _symlink(path, what, reading=True) from None
        if exc.errno == errno.EACCES:
            raise not_readable(path, what) from None
        raise
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafePathError(
                f"refusing the {what} {path}: it is {file_kind(mode)}, not a regular file", path
            )
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _refuse_symlink(exc: OSError, path: Path, what: str, *errnos: int) -> None:
    """Raise the planted-symlink error if ``exc``, from an ``O_NOFOLLOW`` open, means one."""
    if exc.errno in errnos and os.path.islink(path):
        raise _symlink(path, what) from None


def _not_regular(path: Path, mode: int, what: str) -> UnsafePathError:
    return UnsafePathError(
        f"refusing the {what} {path}: it is {file_kind(mode)}, not a regular file; "
        "remove it or give another path",
        path,
    )


def _refuse_unopened(exc: OSError, path: Path, what: str) -> None:
    """Raise the error that says what is at ``path`` if ``exc``, from an open by
    ``open_private``, means a symlink (``ELOOP``) or a FIFO with no reader or a socket
    (``ENXIO``); or, denied (``EACCES``, ``EPERM``), a symlink or another user's file: in
    a sticky directory such as /tmp the kernel refuses to open either (``O_CREAT`` on an
    entry someone else owns, ``protected_regular``), before ``O_NOFOLLOW`` could say ELOOP."""
    _refuse_symlink(exc, path, what, errno.ELOOP)
    if exc.errno in (errno.EACCES, errno.EPERM):
        try:
            st = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            check_not_loose(path, st, what)
        return
    if exc.errno == errno.ENXIO:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return
        if not stat.S_ISREG(mode) and not stat.S_ISCHR(mode):
            raise _not_regular(path, mode, what) from None


def _checked(path: Path, fd: int, what: str, tighten: Callable[[int], None] | None = None) -> None:
    """Refuse an opened file that is not a regular file of ours (see ``open_private``), then
    clear ``O_NONBLOCK``; its caller closes it."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        if tighten is not None and st.st_uid == os.geteuid() and st.st_mode & _OTHERS_WRITE:
            # Ours (O_NOFOLLOW: this very file, not a link's target), only too open: what a
            # rotation made (logrotate's create 0664). The fd is judged, so nothing can be
            # swapped in between; the chmod is on it.
            os.fchmod(fd, FILE_MODE)
            tighten(stat.S_IMODE(st.st_mode))
        else:
            check_not_loose(path, st, what)
            if st.st_mode & _OTHERS_ANY:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & DIR_MODE)
    elif not stat.S_ISCHR(st.st_mode):
        raise _not_regular(path, st.st_mode, what)  # a FIFO someone reads from
    os.set_blocking(fd, True)


def loosened(path: str | os.PathLike[str], mode: int) -> str:
    """What to say of the file at ``path`` that had ``mode`` and was made 0600 (``tighten``)."""
    return (
        f"{os.fspath(path)}: mode {mode:04o} was looser than jobvisor writes ({FILE_MODE:04o}); "
        f"made it {FILE_MODE:04o} (logrotate's create: use create {FILE_MODE:04o})"
    )


def refused_owner(st: os.stat_result, owner: int) -> str | None:
    """Why a writer running as ``owner`` refuses the file of ``st`` for good, or None:
    another user's file is never written (a loose one of its own it makes private)."""
    if stat.S_ISREG(st.st_mode) and st.st_uid != owner:
        return f"it is owned by {_owner(st.st_uid)}, not by {_owner(owner)} who runs jobvisor"
    return None


def owned_by_another(st: os.stat_result) -> str | None:
    """Why the file of ``st`` (a symlink's own ``lstat`` too) is not ours to remove, move or
    replace: another user owns it; None when we do."""
    me = os.geteuid()
    if st.st_uid == me:
        return None
    return f"it is owned by {_owner(st.st_uid)}, not by {_owner(me)} who runs jobvisor"


def check_private_file(path: Path, what: str) -> None:
    """For a file another program opens by path (SQLite's): refuse it as ``open_private`` would.

    A missing file is fine. Safe from races only inside a private directory,
    which is where jobvisor keeps such files.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"refusing the {what} {path}: it is not a regular file", path)
    check_not_loose(path, st, what)
    if st.st_mode & _OTHERS_ANY:
        os.chmod(path, stat.S_IMODE(st.st_mode) & DIR_MODE)


Ident: TypeAlias = tuple[int, int, int, int]


def identity(st: os.stat_result) -> Ident:
    """What tells one file from a later one at the same path: an inode number alone is reused."""
    return st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode), st.st_ctime_ns


def write_atomic(path: Path, data: bytes) -> Ident:
    """Replace ``path`` by a 0600 file holding ``data``; returns its ``identity``.

    The data goes to a new file beside ``path`` (``O_EXCL``: never an existing
    one), which is then renamed over it, so a symlink planted at ``path`` is
    replaced, never followed. An error names ``path``.
    """
    name = f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    temp = os.path.join(os.path.dirname(path), name)
    try:
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE
        )
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.rename(temp, path)
            st = os.fstat(fd)  # after the rename, which may change its ctime
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    return identity(st)


def remove_if_same(path: Path, ident: Ident) -> None:
    """Unlink ``path`` itself (never what a symlink there points to) if it is still our file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if identity(st) == ident:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def refuse_symlinks(paths: Iterable[Path], what: str) -> None:
    """For a reader: no symlink among ``paths`` (SQLite writes ``-shm`` even read-only)."""
    for path in paths:
        if os.path.islink(path):
            raise _symlink(path, what)


def check_server(sock: socket.socket, state_dir: str | os.PathLike[str]) -> str | None:
    """Why the server at the other end of ``sock`` is not ``state_dir``'s daemon; None if it is.

    The daemon runs as the owner of its state dir (it refuses any other), so
    a control socket served by another user was put there by someone else:
    a client must not send it a request nor believe its answer.
    """
    peer_cred = getattr(socket, "SO_PEERCRED", None)
    if peer_cred is None:
        return None  # not Linux: the state dir's own checks are all there is
    import struct  # noqa: PLC0415 - control commands stay light

    ucred = struct.Struct("3i")  # pid, uid, gid
    _, uid, _ = ucred.unpack(sock.getsockopt(socket.SOL_SOCKET, peer_cred, ucred.size))
    try:
        owner = os.stat(state_dir).st_uid
    except OSError as exc:
        return f"cannot tell who owns {state_dir}: {exc.strerror}; nothing was sent"
    if uid == owner:
        return None
    return (
        f"{os.path.join(state_dir, 'control.sock')} is served by {_owner(uid)}, but "
        f"{state_dir} belongs to {_owner(owner)}: not its daemon, so nothing was sent"
    )
