"""The status document as text: the table ``jobvisor run`` ends with and ``status`` prints.

Standard library only, so that ``jobvisor status`` loads no runtime.
"""

from __future__ import annotations

import os
import sys
import textwrap

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Literal, TextIO

__all__ = ["columns", "flatten_status", "summary_table"]


def flatten_status(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a status document, depth first (groups before their children)."""
    for node in doc.get("children", []):
        yield node
        if node.get("children"):
            yield from flatten_status(node)


def summary_table(
    doc: dict[str, Any],
    mask: Callable[[str], str] = str,
    width: int | Literal["auto"] | None = "auto",
    now: float | None = None,
) -> str:
    """The status as a table: one row per child with state, counters and last exit.

    When a child waits to start (a backoff, a cooldown, a periodic job's next
    tick), a NEXT START column says in how long, from ``now`` (epoch seconds,
    default the clock's). The last column wraps so that no line is wider
    than ``width`` (by default the terminal's, when stdout is one; None:
    never wrap). When the other columns leave it less than ``_MIN_LAST``
    characters, it goes on indented lines below its row instead. Errors are
    masked with ``mask``, and their control characters escaped.
    """
    import time  # noqa: PLC0415 - with the table only: a control command's start stays light

    from supervision._printable import printable  # noqa: PLC0415

    if width == "auto":
        width = columns(sys.stdout)
    nodes = list(flatten_status(doc))
    upcoming = any(isinstance(n.get("next_start_at"), int | float) for n in nodes)
    clock = time.time() if now is None else now
    header: tuple[str, ...] = ("PATH", "KIND", "STATE", "STARTS", "RESTARTS", "FAILURES")
    header += ("NEXT START", "LAST EXIT") if upcoming else ("LAST EXIT",)
    rows = [header]
    for node in nodes:
        row: tuple[str, ...] = (
            node["path"],
            node["kind"],
            node["state"],
            str(node["starts"]),
            str(node["restarts"]),
            str(node["failures"]),
        )
        if upcoming:
            row += (_until(node.get("next_start_at"), clock),)
        rows.append((*row, printable(_exit_text(node.get("last_exit"), mask))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    start = sum(widths) + 2 * len(widths)
    room = None if width is None else width - start
    below = room is not None and room < _MIN_LAST
    lines: list[str] = []
    for row in rows:
        lead = "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  "
        if room is None:
            lines.append(lead + row[-1])
        elif below:
            assert width is not None
            lines.append(lead.rstrip())
            lines += ["    " + part for part in _wrap(row[-1], max(width - 4, _MIN_LAST))]
        else:
            first, *rest = _wrap(row[-1], room)
            lines.append(lead + first)
            lines += [" " * start + part for part in rest]
    return "\n".join(line.rstrip() for line in lines)


_MIN_LAST = 20  # the narrowest the last column of the table is wrapped to beside its row


def _exit_text(last: dict[str, Any] | None, mask: Callable[[str], str]) -> str:
    if last is None:
        return "-"
    text = str(last["outcome"])
    if last.get("code") is not None:
        text += f" ({last['code']})"
    if last.get("error"):
        # The first line only: an isolated job's error goes on with its traceback.
        text += ": " + (mask(last["error"]).splitlines() or [""])[0]
    return text


def _until(at: object, now: float) -> str:
    """How long until ``at`` (epoch seconds), as a person reads it; "-" when nothing waits."""
    if not isinstance(at, int | float):
        return "-"
    left = max(0.0, at - now)
    if left < 60:
        return f"in {left:.1f}s"
    minutes, seconds = divmod(int(left), 60)
    if minutes < 60:
        return f"in {minutes}m{seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"in {hours}h{minutes}m"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def columns(stream: TextIO) -> int | None:
    """The width of the terminal ``stream`` is, or None when it is not one."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no fileno, not a terminal, closed
        return None
