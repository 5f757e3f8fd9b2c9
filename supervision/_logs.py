"""``jobvisor logs JOB [-f] [-n N]``: the tail of a job's output file, and following it.

It reads the files the daemon or ``run`` writes (``supervision._output``),
so it works whether a daemon runs or not. Like the control commands it
imports only the standard library; YAML is parsed only to tell a job with
no output yet from no such job, or when the manifest declares a ``state_dir``.
On a terminal each line's control characters are escaped (a job's output
must not drive the reader's terminal); into a pipe its bytes go as they are.
An output file, or a rotated one, is never read through a symlink nor as
anything but a regular file: a link planted there could make ``logs`` print
another file to whoever runs it (root's /etc/shadow), and a FIFO would hang it.
Nor through a directory that is a symlink, another user's or writable by others,
from the state dir down (``output -> /var/log`` would print /var/log/dpkg.log as
``dpkg``'s output): each is opened from the one above it, as run and daemon judge
the state dir.
"""

# ruff: noqa: PTH110, PTH116, PTH118, PTH119, PTH120, PTH123 - os.path: pathlib costs a control command

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass

from actors._errors import replicas_of
from supervision._client import NoDaemonError, find_state_dir, request
from supervision._files import UnsafePathError, check_dirs_to_read, open_to_read, refused_owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, BinaryIO, Final

__all__ = ["follow", "known_paths", "output_file", "show_logs", "tail_lines"]

POLL: Final = 0.1  # seconds between looks at a followed file (no inotify in the stdlib)
_BLOCK: Final = 65536
WHAT: Final = "output file"  # as refusals name it
_MOST_BACKUPS: Final = 1000  # backups looked at after a rotation (the scan ends at a gap)
_CATCH_UP_TRIES: Final = 3  # scans of them, when the files move on while they are read


def output_file(directory: str, path: str) -> str:
    """The output file of the job at ``path`` (``etl/load`` -> ``DIRECTORY/etl/load.log``).

    A name made of dots only (``..``, which names allow) is written with
    ``%2E`` for each dot, which no name holds, so no job's file lies outside
    ``directory`` or collides with another's. So is the dot before ``log`` of a group's
    name that ends in ``.log`` or ``.log.N`` (``a.log/b`` -> ``DIRECTORY/a%2Elog/b.log``):
    its directory would be the file, or a backup, of a job ``a`` beside it.
    """
    *groups, name = path.split("/")
    return os.path.join(directory, *map(_group_part, groups), _dots(name)) + ".log"


def _dots(part: str) -> str:
    return part.replace(".", "%2E") if not part.strip(".") else part


def _group_part(part: str) -> str:
    return _ROTATED_NAME.sub(r"%2E\1", _dots(part))


# A group's name that would be a job's output file or one of its backups (``a.log``,
# ``a.log.1``): its last such dot is written %2E.
_ROTATED_NAME: Final = re.compile(r"\.(log(?:\.[0-9]+)?)$")


def tail_lines(
    path: str, count: int, *, first: int = 0, backups: int = 9, within: str | None = None
) -> list[bytes]:
    """The last ``count`` lines of ``path``, and of ``path.1``... when it holds fewer.

    ``first``: the first of them to read (1 skips ``path`` itself). Raises
    ``UnsafePathError`` for one that is a symlink or not a regular file, or (``within``:
    the state dir) lies below a directory ``check_dirs_to_read`` refuses.
    """
    lines: list[bytes] = []
    for n in range(first, backups + 1):
        if len(lines) >= count:
            break
        try:
            with open_to_read(path if n == 0 else f"{path}.{n}", WHAT, within=within) as file:
                lines = _last_lines(file, count - len(lines)) + lines
        except FileNotFoundError:
            if n > 0:
                break
    return lines


def _last_lines(file: BinaryIO, count: int) -> list[bytes]:
    """The last ``count`` lines of ``file``, which is left at its end."""
    end = file.seek(0, os.SEEK_END)
    data = b""
    at = end
    while at > 0 and data.count(b"\n") <= count:
        step = min(_BLOCK, at)
        at -= step
        file.seek(at)
        data = file.read(step) + data
    file.seek(end)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the text after the last newline: nothing
    return lines[-count:] if count > 0 else []


def follow(
    path: str,
    write: Callable[[bytes], None],
    file: BinaryIO | None = None,
    *,
    within: str | None = None,
    gap: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Follow ``path`` like ``tail -F``: give ``write`` each new whole line (newline included).

    ``file`` is ``path`` opened already, at the place to go on from; a file
    opened here (none was given, or a new one) is read from its start. A rotation
    (a new file at ``path``) is noticed by its inode: what the old file still
    held is read first, then the new one from its start; a file cut shorter
    than what was read (truncated) is read again from its start. Yields after
    each look, so the caller decides how long to go on and how long to pause.
    A new file that is a symlink or not a regular file raises ``UnsafePathError``, and so
    does one below a directory refused (``within``: see ``tail_lines``). ``gap`` is told
    where files may have rotated away unread: more rotations than backups kept came
    between two looks (how much went is not known: the files keep no offset or count).
    """
    follower = _Follower(path, write, file, within, gap)
    try:
        while True:
            follower.look()
            yield
    finally:
        follower.close()


class _Follower:
    def __init__(
        self,
        path: str,
        write: Callable[[bytes], None],
        file: BinaryIO | None,
        within: str | None = None,
        gap: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.within = within
        self.gap = gap
        self.write = write
        self.file = file
        self.ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
        if file is not None:
            st = os.fstat(file.fileno())
            self.ident = (st.st_dev, st.st_ino)
        self.pending = b""  # bytes after the last newline read; invariant: no b"\n" in it

    def look(self) -> None:
        if self.file is None and not self._open():
            return
        assert self.file is not None
        self.pending = _pump(self.file, self.pending, self.write)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._rotated()
            return
        if (st.st_dev, st.st_ino) != self.ident:
            self._rotated()
            if self._open():
                self.look()  # the new file at once, not after a pause
        elif st.st_size < self.file.tell():
            self.file.seek(0)  # truncated in place
            self.pending = b""

    def _open(self) -> bool:
        try:
            self.file = open_to_read(self.path, WHAT, within=self.within)
        except FileNotFoundError:
            return False
        st = os.fstat(self.file.fileno())
        self.ident = (st.st_dev, st.st_ino)
        return True

    def _rotated(self) -> None:
        """The file moved away: read what it still holds (the writer may have added some),
        then the files rotated after it that are still kept (``path.1``...), oldest first:
        a flood can rotate more than once between two looks."""
        assert self.file is not None
        self.pending = _pump(self.file, self.pending, self.write)
        self._end_line()
        last = os.fstat(self.file.fileno())
        self.close()
        read = {(last.st_dev, last.st_ino)}
        for tries in range(_CATCH_UP_TRIES):
            newer, kept = _rotated_after(self.path, (last.st_dev, last.st_ino), last.st_mtime_ns)
            if kept and not tries and self.gap is not None:
                # The file read last went past the backups: those rotated after it went too,
                # unless exactly one rotation more than kept came (the oldest kept follows it).
                # Without backups every rotation deletes: one between two reads is the rule.
                self.gap(
                    f"output may have rotated away unread here: {os.path.basename(self.path)} "
                    f"rotated more times than its {kept} backup{'s' if kept != 1 else ''} kept "
                    "between two reads"
                )
            newer = [(name, ident) for name, ident in newer if ident not in read]
            if not newer:
                return
            for name, ident in newer:
                try:
                    file = open_to_read(name, WHAT, within=self.within)
                except FileNotFoundError:
                    continue  # rotated away meanwhile: the next scan finds it, if it is kept
                with file:
                    st = os.fstat(file.fileno())
                    if (st.st_dev, st.st_ino) != ident:
                        break  # the files moved on meanwhile: look at them again
                    self.pending = _pump(file, self.pending, self.write)
                    self._end_line()
                    read.add(ident)
                    last = st

    def _end_line(self) -> None:
        if self.pending:
            self.write(self.pending + b"\n")
            self.pending = b""

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            file.close()


def _rotated_after(
    path: str, ident: tuple[int, int], mtime_ns: int
) -> tuple[list[tuple[str, tuple[int, int]]], int | None]:
    """The backups of ``path`` (``path.1``... as jobvisor rotates) made after the file
    ``ident``, oldest first, with their identities: those before it in the chain when it is
    still there; when it is gone (more rotations than backups kept), every one written since
    it was last written, and how many backups there are (None: it is still there)."""
    chain: list[tuple[str, tuple[int, int], int]] = []
    for n in range(1, _MOST_BACKUPS + 1):
        name = f"{path}.{n}"
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            break
        chain.append((name, (st.st_dev, st.st_ino), st.st_mtime_ns))
    idents = [found for _, found, _ in chain]
    kept: int | None = None
    if ident in idents:
        newer = chain[: idents.index(ident)]
    else:
        newer = [entry for entry in chain if entry[2] >= mtime_ns]
        kept = len(chain)
    return [(name, found) for name, found, _ in reversed(newer)], kept


def _pump(file: BinaryIO, pending: bytes, write: Callable[[bytes], None]) -> bytes:
    while data := file.read(_BLOCK):
        head, newline, pending = (pending + data).rpartition(b"\n")
        if newline:
            write(head + b"\n")
    return pending


@dataclass(frozen=True)
class Known:
    """A tree's paths with their kind (``group``, ``command``, ``http``, ``python``; ``""`` when
    a manifest does not say), and each replica's path to its job's (``replicated``). None:
    the tree does not say which are replicas (a daemon older than ``replica_of``): told by
    their names, ``w.0``, ``w.1``, ..."""

    paths: dict[str, str]
    replicated: dict[str, str] | None

    def replicas(self, name: str) -> list[str]:
        return replicas_of(name, self.paths, self.replicated)


def known_paths(manifest: str, state_dir: str) -> Known:
    """Every path of the running daemon's tree, or else of the manifest (none if neither)."""
    known = tree_paths(manifest, state_dir)
    return Known({}, {}) if known is None else known


def tree_paths(manifest: str, state_dir: str) -> Known | None:
    """``known_paths``, or None when no tree could be read: no daemon and no manifest that
    parses, or a daemon that answered without its tree (busy, starting)."""
    paths: dict[str, str] = {}
    replicated: dict[str, str] = {}
    try:
        reply = request(state_dir, {"op": "status"}, timeout=5.0)
    except NoDaemonError:
        return Known(paths, replicated) if _manifest_paths(manifest, paths, replicated) else None
    result = reply.get("result")
    if not isinstance(result, dict):
        return None
    _collect(result, paths)
    return Known(paths, replicas_in_status(result))


def _collect(node: dict[str, Any], paths: dict[str, str]) -> None:
    for child in node.get("children") or ():
        paths[str(child.get("path"))] = str(child.get("kind") or "")
        _collect(child, paths)


def replicas_in_status(status: object) -> dict[str, str] | None:
    """Each replica of a status document, by path, to the path of its job, as its nodes'
    ``replica_of`` say; None when no node has one and its ``process`` does not say
    ``marks_replicas``: a daemon older than the field may have replicas all the same (a name
    is then told by its pattern alone)."""
    replicated: dict[str, str] = {}
    _replicas_in(status, replicated)
    process = status.get("process") if isinstance(status, dict) else None
    marks = isinstance(process, dict) and process.get("marks_replicas") is True
    return replicated if replicated or marks else None


def _replicas_in(node: object, replicated: dict[str, str]) -> None:
    children = node.get("children") if isinstance(node, dict) else None
    for child in children if isinstance(children, list) else ():
        if not isinstance(child, dict):
            continue
        path, of = child.get("path"), child.get("replica_of")
        if isinstance(path, str) and isinstance(of, str):
            replicated[path] = f"{path.rpartition('/')[0]}/{of}".lstrip("/")
        _replicas_in(child, replicated)


def _manifest_paths(manifest: str, paths: dict[str, str], replicated: dict[str, str]) -> bool:
    """Every job and group path a manifest declares, read without validating it; whether it
    could be read."""
    import yaml  # noqa: PLC0415 - only when there is no output file to read

    try:
        with open(manifest, encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except (OSError, ValueError, yaml.YAMLError):  # UnicodeDecodeError is a ValueError
        return False
    if not isinstance(data, dict):
        return False
    _walk(data.get("jobs"), "", paths, replicated)
    return True


def _walk(entries: object, prefix: str, paths: dict[str, str], replicated: dict[str, str]) -> None:
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        name = entry.get("group", entry.get("name"))
        if not isinstance(name, str):
            continue
        path = f"{prefix}/{name}" if prefix else name
        replicas = entry.get("replicas")
        if "group" in entry:
            paths[path] = "group"
            _walk(entry.get("jobs"), path, paths, replicated)
            continue
        kind = next((k for k in ("command", "http", "python") if k in entry), "")
        if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas > 0:
            paths.update((f"{path}.{i}", kind) for i in range(replicas))
            replicated.update((f"{path}.{i}", path) for i in range(replicas))
        else:
            paths[path] = kind


def _not_a_job(job: str, path: str, known: Known) -> str | None:
    """Why ``job``, which has no output file at ``path``, is no job of ``known`` (``known_paths``);
    None when it is one."""
    name = job.strip("/")
    paths = known.paths
    if name not in paths:
        # A job with replicas is its replicas, each with its own file (w.0, w.1, ...).
        replicas = known.replicas(name)
        if replicas:
            return f"{name} runs as replicas, each with its own output: {_some(replicas)}"
        return f"no such job: {job} (and no output file {path})"
    if paths[name] != "group":
        return None
    # A group is no job either, but naming its jobs says where its output is.
    jobs = [p for p, kind in paths.items() if kind != "group" and p.startswith(f"{name}/")]
    return f"{name} is a group: it has no output of its own; its jobs: {_some(jobs) or 'none'}"


_NAMED: Final = 10  # a group's jobs named when asked for its output; past that, counted


def _some(paths: list[str]) -> str:
    """The first ``_NAMED`` of ``paths``, and how many more: "a, b and 3 more"."""
    named = ", ".join(paths[:_NAMED])
    return f"{named} and {len(paths) - _NAMED} more" if len(paths) > _NAMED else named


def show_logs(
    job: str,
    *,
    manifest: str,
    state_dir: str | None,
    lines: int,
    keep_following: bool,
    as_json: bool = False,
) -> int:
    """The ``logs`` command: 0, or 4 for no such job (a group's path too: its jobs are named),
    or 1 for an output file that is a symlink or not a regular file, or a directory on its
    way in the state dir that is a symlink, another user's or writable by others (refused,
    unread), or 2 for a state dir so (as run and daemon refuse it).

    ``as_json``: each line as a JSON object on a line of its own (``record``). Returns 0 on
    Ctrl-C while following.
    """
    # normpath: a trailing slash would make the kernel follow a state dir that is a link.
    state = os.path.normpath(find_state_dir(manifest, state_dir))
    directory = os.path.join(state, "output")
    path = output_file(directory, job.strip("/"))
    try:
        # Before any look by path: os.path.exists would follow a planted directory link.
        check_dirs_to_read(os.path.dirname(path), state)
    except FileNotFoundError:
        pass  # nothing written there yet: said below, as for no file
    except UnsafePathError as exc:
        _say(str(exc))
        return 2 if exc.path == state else 1
    known = os.path.exists(path) or os.path.exists(f"{path}.1")
    tree = Known({}, {}) if known else known_paths(manifest, os.path.dirname(directory))
    paths = tree.paths
    if not known and (problem := _not_a_job(job, path, tree)):
        _say(problem)
        return 4
    if not known and paths.get(job.strip("/")) == "http":
        # Said, not "it has written nothing yet": an http job never writes one (trial 30).
        _say(
            f"{job} is an http job: it has no output file; each request's outcome is "
            f"in jobvisor's log and in `jobvisor history {job}`"
        )
        return 0  # nothing to follow either: none will come
    if not known and not keep_following:
        # A job of ours with nothing to show: said, not an empty screen and exit 0 alone.
        _say(
            f"{job} has no output file ({path}): it has written nothing yet, or its "
            "output is not kept (output: false; a python job in a thread prints to "
            "jobvisor's own stdout)"
        )
    if known and (stale := _not_written(path, os.path.dirname(directory))):
        _say(stale)
    write = _json_writer(job.strip("/")) if as_json else _writer()
    try:
        _show(path, lines, write, keep_following=keep_following, within=state)
    except UnsafePathError as exc:  # the file, a rotated one or the next one followed
        _say(str(exc))
        return 1
    return 0


def _say(text: str) -> None:
    """``text`` on stderr, escaped: it names the job as typed, control characters and all
    (``logs $'\\e[31mred'`` recoloured the terminal; status and history escape theirs)."""
    from supervision._printable import printable  # noqa: PLC0415 - as _writer's

    sys.stderr.write(f"jobvisor: {printable(text)}\n")


def _not_written(path: str, state_dir: str) -> str | None:
    """Why the writer refuses the file at ``path`` (another user's: a rotation made it so),
    and so it lacks the job's latest lines; None when it takes it. The writer runs as the
    state dir's owner (it refuses any other)."""
    try:
        st = os.lstat(path)
        owner = os.stat(state_dir).st_uid
    except OSError:
        return None
    why = refused_owner(st, owner)
    if why is None:
        return None
    return (
        f"{path} is not written by jobvisor: {why}, so it refuses the file and the job's "
        "output since it was made is not in it (it is in jobvisor's log, unless the job has "
        f"output: {{log: false}}); remove the file or chown it to jobvisor's user"
    )


def _show(
    path: str,
    lines: int,
    write: Callable[[bytes], None],
    *,
    keep_following: bool,
    within: str | None = None,
) -> None:
    """Give ``write`` the last ``lines`` lines of ``path`` (and its backups) and, when
    ``keep_following``, every line after them until Ctrl-C (``within``: see ``tail_lines``)."""
    try:
        file: BinaryIO | None = open_to_read(path, WHAT, within=within)
    except FileNotFoundError:
        file = None
    try:
        # The lines shown and the place following starts from come from one open file, so
        # no line written (or rotated away) in between is lost or shown twice.
        shown = _last_lines(file, lines) if file is not None else []
        for line in tail_lines(path, lines - len(shown), first=1, within=within) + shown:
            write(line + b"\n")
        if keep_following:
            for _ in follow(path, write, file, within=within, gap=_say_gap):
                time.sleep(POLL)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `logs JOB | head`: the reader has all it wanted
        _quiet_stdout()
    finally:
        if file is not None:
            file.close()


def _say_gap(text: str) -> None:
    # On stderr, so that stdout stays the job's lines (and --json's objects) alone.
    sys.stderr.write(f"[jobvisor: {text}]\n")
    sys.stderr.flush()


def _out(data: bytes) -> None:
    """To stdout with no buffer of Python's: Ctrl-C in a buffered flush that had written
    left the bytes in the buffer, and the exit's flush wrote the last line a second time.

    Through the raw file under ``sys.stdout`` where it has one: the CLI's tells a full disk
    from other errors (one line, exit 1), where an ``os.write`` was a traceback.
    """
    sys.stdout.flush()  # anything printed before
    raw = getattr(getattr(sys.stdout, "buffer", None), "raw", None)
    fd = sys.stdout.fileno()

    def write(view: memoryview) -> int:
        return (raw.write(view) or 0) if raw is not None else os.write(fd, view)

    view = memoryview(data)
    while view:
        view = view[write(view) :]


def _writer() -> Callable[[bytes], None]:
    if not sys.stdout.isatty():
        return _out
    from supervision._printable import printable  # noqa: PLC0415 - only for a terminal

    def escaped(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        lines = text.removesuffix("\n").split("\n")  # not splitlines: \x1c, \u2028 get escaped
        _out("".join(printable(line) + "\n" for line in lines).encode())

    return escaped


_STREAMS: Final = (b"stdout", b"stderr")


def _record(job: str, line: bytes) -> dict[str, Any]:
    """One output line as data: its stamp's ``time``, ``stream`` and ``attempt``, and the
    job's ``message``; a line without a stamp (none jobvisor writes) is all message.

    The message is the file's text, secrets masked already; bytes that are not UTF-8 become
    U+FFFD.
    """
    stamp = line.split(b" ", 3)
    if len(stamp) == 4 and stamp[1] in _STREAMS and stamp[2].isdigit():
        at, stream, attempt, message = stamp
        return {
            "time": at.decode("ascii", "replace"),
            "job": job,
            "stream": stream.decode(),
            "attempt": int(attempt),
            "message": message.decode("utf-8", "replace"),
        }
    text = line.decode("utf-8", "replace")
    return {"time": None, "job": job, "stream": None, "attempt": None, "message": text}


def _json_writer(job: str) -> Callable[[bytes], None]:
    """``logs --json``: one JSON object a line. ASCII only, control characters escaped, so
    it is as safe on a terminal as in a pipe."""

    def write(data: bytes) -> None:
        lines = data.removesuffix(b"\n").split(b"\n")
        _out("".join(json.dumps(_record(job, line)) + "\n" for line in lines).encode())

    return write


def _quiet_stdout() -> None:
    # Python would report the broken pipe again when it flushes stdout at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
