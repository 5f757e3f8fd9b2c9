"""The status document as text: the table ``jobvisor run`` ends with and ``status`` prints.

Standard library only, so that ``jobvisor status`` loads no runtime.
"""

from __future__ import annotations

import os
import sys
import textwrap

from actors._errors import LAST_LINE_SAID
from actors._signals import signal_text

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Final, Literal, TextIO

__all__ = [
    "MIN_PATH",
    "columns",
    "exit_cell",
    "exit_text",
    "flatten_status",
    "outcome_text",
    "select_status",
    "short_exit",
    "split_room",
    "summary_table",
    "until",
]


def flatten_status(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a status document, depth first (groups before their children)."""
    for node in doc.get("children", []):
        yield node
        if node.get("children"):
            yield from flatten_status(node)


def select_status(doc: dict[str, Any], paths: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``doc`` with only the nodes at ``paths`` (each group with its whole subtree), and the
    paths that name no node.

    The document keeps its shape: the root's ``children`` are the nodes asked for, in the
    tree's order (depth first), each once; a node inside a group asked for too comes with
    that group only. A path's slashes at either end do not count, as for start and stop.
    """
    wanted = {p.strip("/") for p in paths}
    found: list[dict[str, Any]] = []
    seen: set[str] = set()

    def walk(nodes: list[dict[str, Any]], inside: bool) -> None:
        for node in nodes:
            hit = node["path"] in wanted
            if hit:
                seen.add(node["path"])
                if not inside:
                    found.append(node)
            walk(node.get("children") or [], inside or hit)

    walk(doc.get("children", []), inside=False)
    missing = [p for p in dict.fromkeys(p.strip("/") for p in paths) if p not in seen]
    return {**doc, "children": found}, missing


def summary_table(
    doc: dict[str, Any],
    mask: Callable[[str], str] = str,
    width: int | Literal["auto"] | None = "auto",
    now: float | None = None,
    *,
    fit: Literal["wrap", "cut"] = "wrap",
) -> str:
    """The status as a table: one row per child with state, counters and last exit.

    When a child waits to start (a backoff, a cooldown, a periodic job's next
    tick), a NEXT START column says in how long, from ``now`` (epoch seconds,
    default the clock's). Errors are masked with ``mask``, and their control
    characters escaped.

    ``width`` is the terminal's (by default stdout's, when it is one); the
    table is then made to fit it. A long PATH gives up its start (``…`` and
    the end of the path, which names the job). The last column, with
    ``fit="wrap"`` (the table ``run`` ends with: nothing of an error is
    lost), wraps under itself, or on indented lines below its row when the
    others leave it less than ``_MIN_LAST`` characters; with ``fit="cut"``
    (``status``: one line a row) it is cut with ``…`` too. With ``width``
    None (a pipe: scripts read it) every cell is whole.
    """
    import time  # noqa: PLC0415 - with the table only: a control command's start stays light

    from supervision._cells import cells, cut, cut_start, pad  # noqa: PLC0415

    if width == "auto":
        width = columns(sys.stdout)
    nodes = list(flatten_status(doc))
    upcoming = any(isinstance(n.get("next_start_at"), int | float) for n in nodes)
    running = any(_uptime(n, 0.0) != "-" for n in nodes)
    clock = time.time() if now is None else now
    header: tuple[str, ...] = ("PATH", "KIND", "STATE")
    header += ("UPTIME",) if running else ()
    header += ("STARTS", "RESTARTS", "FAILURES")
    header += ("NEXT START", "LAST EXIT") if upcoming else ("LAST EXIT",)
    rows = [header] + [
        _row(node, mask, clock, running=running, upcoming=upcoming) for node in nodes
    ]
    rows = _narrowed(rows, width if fit == "cut" else None, cells)
    whys: list[str] = []  # a failure's whole text, below the rows that could not show it
    widths = [max(cells(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    # The other columns of a row's first line, and the gap after each column but the last.
    fixed = sum(widths[1:]) + 2 * len(widths)
    last = max(cells(row[-1]) for row in rows)
    if width is not None and fit == "cut":
        _, whole = _cut_widths(width - fixed, widths[0], last, len(header[-1]))
        rows, whys = _shortened(rows, nodes, whole, mask, width=width)
        # Sized again beside the exits as shortened: beside the whole ones, a long PATH was
        # cut to ``…rt-to-warehouse`` with the row's last 10 cells left empty.
        last = max(cells(row[-1]) for row in rows)
        widths[0], last = _cut_widths(width - fixed, widths[0], last, len(header[-1]))
    elif width is not None and width - fixed - widths[0] < _MIN_LAST:
        # Beside a PATH cut no shorter than MIN_PATH, or below a row cut to fit the width.
        beside = width - fixed - _MIN_LAST
        alone = min(widths[0], max(MIN_PATH, width - fixed + 2))  # +2: no gap ends that line
        widths[0] = beside if beside >= MIN_PATH else alone
    start = sum(widths) + 2 * len(widths)
    room = None if width is None else width - start
    below = room is not None and room < _MIN_LAST and fit == "wrap"
    lines: list[str] = []
    for path, *cols, error in rows:
        cut_row = [cut_start(path, widths[0]), *cols]
        lead = "  ".join(pad(cell, w) for cell, w in zip(cut_row, widths, strict=True)) + "  "
        if room is None:
            lines.append(lead + error)
        elif fit == "cut":
            assert width is not None
            # Columns too wide for a narrow terminal even so: its edge cuts the row.
            lines.append(cut((lead + cut(error, last)).rstrip(), width))
        elif below:
            assert width is not None
            lines.append(lead.rstrip())
            lines += ["    " + part for part in _wrap(error, max(width - 4, _MIN_LAST))]
        else:
            first, *rest = _wrap(error, room)
            lines.append(lead + first)
            lines += [" " * start + part for part in rest]
    return "\n".join(line.rstrip() for line in lines + whys)


def _row(
    node: dict[str, Any],
    mask: Callable[[str], str],
    clock: float,
    *,
    running: bool,
    upcoming: bool,
) -> tuple[str, ...]:
    """A node's cells, LAST EXIT whole."""
    from supervision._printable import printable  # noqa: PLC0415

    row: tuple[str, ...] = (node["path"], node["kind"], state_cell(node))
    row += (_uptime(node, clock),) if running else ()
    row += (str(node["starts"]), str(node["restarts"]), str(node["failures"]))
    if upcoming:
        row += (until(node.get("next_start_at"), clock),)
    # Every cell: the document is a daemon's word, and one served by another user is theirs.
    return (*map(printable, row), printable(exit_cell(node, mask)))


def _shortened(
    rows: list[tuple[str, ...]],
    nodes: list[dict[str, Any]],
    last: int,
    mask: Callable[[str], str],
    *,
    width: int,
) -> tuple[list[tuple[str, ...]], list[str]]:
    """``rows`` with each LAST EXIT wider than ``last`` said shortly (``short_exit``), and for
    each of those that failed, its whole error as ``PATH: ERROR`` lines to go below the table
    (80 columns cut the demo's to ``failed (3): command…``: why was nowhere)."""
    from supervision._cells import cells  # noqa: PLC0415
    from supervision._printable import printable  # noqa: PLC0415

    out, whys = rows[:1], []
    for node, (*row, whole) in zip(nodes, rows[1:], strict=True):
        if cells(whole) <= last:
            out.append((*row, whole))
            continue
        why = _failed(node) and _error_text(node["last_exit"], mask)
        if why:
            whys += _wrap_why(printable(f"{node['path']}: {why}"), width)
        out.append((*row, printable(short_exit(node, mask))))
    return out, whys


def _failed(node: dict[str, Any]) -> bool:
    last = node.get("last_exit")
    return isinstance(last, dict) and last.get("outcome") in ("failed", "timeout")


def _wrap_why(text: str, width: int) -> list[str]:
    """A failure's whole line below the table, at most four lines (a job's long message is
    whole in ``status --json``)."""
    return textwrap.wrap(
        text,
        max(width, _MIN_LAST),
        subsequent_indent="    ",
        break_on_hyphens=False,
        max_lines=4,
        placeholder=" …",
    )


def _narrowed(
    rows: list[tuple[str, ...]], width: int | None, cells: Callable[[str], int]
) -> list[tuple[str, ...]]:
    """``rows`` without KIND, then UPTIME, then STARTS, while PATH and LAST EXIT, cut as
    narrow as they go, would not fit ``width`` beside the rest: one line a row that still
    says why. None (no width, or a table that wraps): all of them."""
    if width is None:
        return rows
    for name in _DROPPABLE:
        others = range(1, len(rows[0]) - 1)
        fixed = sum(max(cells(row[i]) for row in rows) for i in others) + 2 * (len(rows[0]) - 1)
        if width - fixed >= MIN_PATH + _MIN_LAST:
            break  # dropping more would only make more room
        if name not in rows[0]:
            continue
        at = rows[0].index(name)
        rows = [row[:at] + row[at + 1 :] for row in rows]
    return rows


_DROPPABLE = ("KIND", "UPTIME", "STARTS")  # what a narrow status does without, in order
_MIN_LAST = 20  # the narrowest the last column of the table is wrapped to beside its row
MIN_PATH = 10  # the narrowest a long PATH is cut to: "…" and 9 characters of its end


def _cut_widths(room: int, path: int, last: int, header: int) -> tuple[int, int]:
    """PATH's and LAST EXIT's widths in ``room`` cells, one line a row: PATH gives way down to
    MIN_PATH before LAST EXIT, which says why, goes under _MIN_LAST (it was cut to
    "failed (3): co…" beside a whole path on 80 columns)."""
    path_w, last_w = split_room(room, path, last, MIN_PATH, header)
    if last_w < min(last, _MIN_LAST):
        last_w = min(last, _MIN_LAST)
        path_w = max(min(path_w, MIN_PATH), room - last_w)
    return path_w, last_w


def split_room(
    room: int, first: int, second: int, min_first: int, min_second: int
) -> tuple[int, int]:
    """Two columns' widths, ``first`` and ``second`` wide, made to share ``room`` cells.

    The narrower keeps its width when it takes no more than half; otherwise
    both get half. Neither is cut below its minimum (or its own width, when
    that is less): on a screen too narrow for that, its edge cuts the row.
    """
    if first + second <= room:
        return first, second
    half = room // 2
    if second <= half:
        wide = (room - second, second)
    elif first <= room - half:
        wide = (first, room - first)
    else:
        wide = (room - half, half)
    return max(min(first, min_first), wide[0]), max(min(second, min_second), wide[1])


def exit_cell(node: dict[str, Any], mask: Callable[[str], str]) -> str:
    """A node's LAST EXIT cell: its last exit, or why a job that never ran is stopped."""
    last = node.get("last_exit")
    if last is None and node.get("autostart") is False and node.get("state") == "stopped":
        return "not started (autostart: false)"
    return exit_text(last, mask)


def exit_text(last: dict[str, Any] | None, mask: Callable[[str], str]) -> str:
    if last is None:
        return "-"
    text = outcome_text(last)
    error = _error_text(last, mask)
    return text if error is None else f"{text}: {error}"


def outcome_text(last: dict[str, Any]) -> str:
    """``failed (3)``, ``stopped (SIGTERM)``: a negative code is a signal (Popen's way, kept by
    ``--json``), said by its name, as the error says it (``killed by SIGTERM``)."""
    code = last.get("code")
    text = str(last["outcome"])
    if code is None:
        return text
    if isinstance(code, int) and code < 0:
        return f"{text} ({signal_text(-code)})"
    return f"{text} ({code})"


def _error_text(last: dict[str, Any], mask: Callable[[str], str]) -> str | None:
    if not last.get("error"):
        return None
    # Without an isolated job's traceback; the rest whole, its newlines shown escaped by
    # the table (a command whose argv holds one lost "killed by SIGTERM", the reason).
    error = mask(last["error"])
    end = error.find(_TRACEBACK)
    return (error if end < 0 else error[:end]).rstrip("\n")


_TRACEBACK: Final = "\nTraceback (most recent call last):"


def short_exit(node: dict[str, Any], mask: Callable[[str], str]) -> str:
    """``exit_cell`` without what the row says already or what is not why: a command's
    ``command ARGV`` before how it ended, and ``exited with N`` when the cell shows ``(N)``,
    its last line on stderr then said in their stead.

    For a cell too narrow for the whole: on 80 columns the demo's mailer read
    ``failed (3): command…``, the argv filling what was left to say why.
    """
    last = node.get("last_exit")
    raw = last.get("error") if isinstance(last, dict) else None
    if not isinstance(raw, str) or not raw.startswith("command "):
        return exit_cell(node, mask)
    assert isinstance(last, dict)
    # A failed command's last line on stderr ends its error: set apart first, so that neither
    # an "exited with" in it nor the line itself is taken for how it ended.
    raw, _, line = raw.partition(LAST_LINE_SAID)
    error = mask(raw)
    # How it ended follows the argv (``actors._command``), which may say the same words: the
    # last "exited with" or "killed by"; but for a command that could not start (126, 127,
    # unless a shell exited so), the first "could not start:" (its reason may say anything;
    # an argv holding "killed by oom" showed that).
    code = last.get("code")
    at = -1
    if code in (126, 127) and not error.endswith(f" exited with {code}"):
        at = error.find(" could not start: ")
    if at < len("command"):
        at = max(error.rfind(" exited with "), error.rfind(" killed by "))
    if at < len("command"):
        at = error.find(" could not start: ")
    if at < len("command"):
        return exit_cell(node, mask)
    how = error[at + 1 :]
    text = outcome_text(last)
    said = text.partition(" (")[2][:-1]  # "3" of "failed (3)", "SIGTERM" of "stopped (SIGTERM)"
    if how in (f"exited with {said}", f"killed by {said}"):
        return f"{text}: {mask(line)}" if line else text
    for said_already in (f"killed by {said}: ", f"killed by {said} "):
        if how.startswith(said_already):  # the signal's why: a cpu limit, not jobvisor's
            how = how[len(said_already) :]
            if how.startswith("(") and how.endswith(")"):
                how = how[1:-1]
            break
    return f"{text}: {how}"


def state_cell(node: dict[str, Any]) -> str:
    """A node's STATE cell: its state, or ``idle`` for a periodic job between ticks (SPEC's
    state is ``running`` then, and nothing runs: NEXT START says when its next tick is)."""
    return IDLE if node.get("between_ticks") is True else str(node["state"])


IDLE: Final = "idle"


def _uptime(node: dict[str, Any], now: float) -> str:
    """How long a running child has been running (``3m12s``); "-" for any other, and for a
    periodic job between ticks (none runs)."""
    since = node.get("since")
    if state_cell(node) != "running" or not isinstance(since, int | float):
        return "-"
    return _span(max(0.0, now - since))


def _span(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, seconds_left = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{seconds_left}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def until(at: object, now: float) -> str:
    """How long until ``at`` (epoch seconds), as a person reads it; "-" when nothing waits."""
    if not isinstance(at, int | float):
        return "-"
    left = max(0.0, at - now)
    return f"in {left:.1f}s" if left < 60 else f"in {_span(left)}"  # a day on: "in 3d2h"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def columns(stream: TextIO) -> int | None:
    """The width of the terminal ``stream`` is, or None when it is not one or does not know it."""
    try:
        # 0: a terminal whose size was never set (some remote shells); cut to 0, rows are empty.
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, OSError, ValueError):  # no fileno, not a terminal, closed
        return None
