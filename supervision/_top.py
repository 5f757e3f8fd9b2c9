"""``jobvisor top``: a live view of the daemon's tree in the terminal, redrawn twice a second.

One row per child (path, state, restarts, last exit, next start), groups
indented, states coloured on a colour terminal; a long path or last exit is
cut so that every column fits the terminal's width. More rows than fit
scroll (arrows, j/k, PgUp/PgDn, Home/End), a footer saying which are shown.
The status comes from the control socket like ``jobvisor status``; ``q`` or
Ctrl-C quits with 0. It uses the standard library's ``curses`` (a table
redrawn in place needs nothing more), and imports nothing of the runtime.
"""

from __future__ import annotations

import contextlib
import curses
import itertools
import os
import sys
import time

from supervision._cells import cells, cut, cut_start
from supervision._client import NoDaemonError, find_state_dir, request
from supervision._printable import printable
from supervision._table import MIN_PATH, exit_cell, split_room, state_cell, until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["HEADER", "layout", "rows", "run_top"]

REFRESH: Final = 0.5  # seconds between two status requests
_KEY_WAIT_MS: Final = 100  # how long one wait for a key lasts: q is heeded at once
# State -> colour; the others (stopped, succeeded, pending) keep the terminal's own.
_COLOURS: Final = {
    "running": curses.COLOR_GREEN,
    "probation": curses.COLOR_CYAN,
    "starting": curses.COLOR_CYAN,
    "stopping": curses.COLOR_CYAN,
    "backoff": curses.COLOR_YELLOW,
    "cooldown": curses.COLOR_YELLOW,
    "waiting": curses.COLOR_YELLOW,
    "failed": curses.COLOR_RED,
    "gave_up": curses.COLOR_RED,
}
HEADER: Final = ("PATH", "STATE", "RESTARTS", "LAST EXIT", "NEXT START")
_LAST_EXIT: Final = HEADER.index("LAST EXIT")
_MIN_LAST_EXIT: Final = len("LAST EXIT")  # the narrowest it is cut to: its header stays whole
_GAP: Final = 2  # spaces between two columns
_CHROME: Final = 4  # lines that are not rows: the title, a problem, the header, the footer
# Key -> how far it moves the rows shown: rows, pages, or (Home, End) as far as there are rows.
_KEYS: Final = {
    curses.KEY_DOWN: (1, "row"),
    ord("j"): (1, "row"),
    curses.KEY_UP: (-1, "row"),
    ord("k"): (-1, "row"),
    curses.KEY_NPAGE: (1, "page"),
    curses.KEY_PPAGE: (-1, "page"),
    curses.KEY_END: (1, "all"),
    curses.KEY_HOME: (-1, "all"),
}
_ALL: Final = 1 << 30  # more rows than a tree has: _draw brings the first one shown back in


def rows(doc: dict[str, Any], now: float) -> list[tuple[str, ...]]:
    """The table's rows for a status document: indented names, and ``now`` for countdowns."""
    out: list[tuple[str, ...]] = []

    def visit(nodes: list[dict[str, Any]], depth: int) -> None:
        for node in nodes:
            group = node.get("kind") == "group"
            name = "  " * depth + str(node.get("name", node.get("path"))) + ("/" if group else "")
            upcoming = until(node.get("next_start_at"), now)
            last = printable(exit_cell(node, str).splitlines()[0])
            out.append((name, state_cell(node), str(node["restarts"]), last, upcoming))
            visit(node.get("children") or [], depth + 1)

    visit(doc.get("children") or [], 0)
    return out


def layout(
    table: list[tuple[str, ...]], width: int, shown: slice = slice(None)
) -> list[list[tuple[int, str]]]:
    """Each row's cells, with the column each starts at, for a screen ``width`` wide.

    ``shown``: of the rows after the first (the header, always laid out), only these are
    cut to fit: a page of a large tree, its widths from every row.

    A column is as wide as its widest cell (in a terminal's cells: an emoji
    takes two), but PATH and LAST EXIT (a name or an error can be a line
    long) share what the other columns leave, each cut with an ellipsis: a
    path keeps its indent and its end. On a screen too narrow even for that,
    the screen's edge cuts what does not fit, the first columns staying whole.
    """
    widths = [max(cells(row[i]) for row in table) for i in range(len(HEADER))]
    others = sum(widths) - widths[0] - widths[_LAST_EXIT] + _GAP * (len(widths) - 1)
    widths[0], widths[_LAST_EXIT] = split_room(
        width - others, widths[0], widths[_LAST_EXIT], MIN_PATH, _MIN_LAST_EXIT
    )
    starts = list(itertools.accumulate((w + _GAP for w in widths[:-1]), initial=0))
    return [
        [
            (x, _cut_path(cell, w) if i == 0 else cut(cell, w))
            for i, (x, cell, w) in enumerate(zip(starts, row, widths, strict=True))
        ]
        for row in (table[0], *table[1:][shown])
    ]


def _cut_path(cell: str, width: int) -> str:
    name = cell.lstrip(" ")
    indent = len(cell) - len(name)
    if cells(cell) <= width or width - indent < 2:  # no room for "…" and a character
        return cut(cell, width)
    return cell[:indent] + cut_start(name, width - indent)


def run_top(manifest: str, state_dir: str | None) -> int:
    """The ``top`` command: 0 when quit, 3 with no daemon, 2 without a terminal."""
    directory = find_state_dir(manifest, state_dir)
    try:
        reply = request(directory, {"op": "status"}, timeout=5.0)
    except NoDaemonError as exc:
        sys.stderr.write(f"jobvisor: {exc}\n")
        return 3
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("jobvisor: top needs a terminal; use `jobvisor status` in scripts\n")
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(_Screen(directory, reply).loop)
    return 0


class _Screen:
    """The curses loop: a status request every ``REFRESH`` seconds, keys in between."""

    def __init__(self, directory: str, first: dict[str, Any]) -> None:
        self.directory = directory
        self.reply = first
        self.problem = ""  # why the last request failed; "" when it worked
        self.colours: dict[str, int] = {}
        self.first = 0  # the index of the first row shown: what the scroll keys move
        self.page = 1  # how many rows the last drawing had room for: what a page key moves by

    def loop(self, screen: Any) -> None:
        self._setup(screen)
        fetched = time.monotonic()
        while True:
            self._draw(screen)
            deadline = fetched + REFRESH
            while (left := deadline - time.monotonic()) > 0:
                screen.timeout(max(1, min(_KEY_WAIT_MS, int(left * 1000))))
                key = screen.getch()
                if key in (ord("q"), ord("Q")):
                    return
                if key in _KEYS:
                    count, unit = _KEYS[key]
                    by = {"row": 1, "page": self.page, "all": _ALL}[unit]
                    self.first = max(0, self.first + count * by)  # _draw knows where the end is
                    self._draw(screen)
                elif key == curses.KEY_RESIZE:
                    self._draw(screen)
            fetched = time.monotonic()
            self._fetch()

    def _setup(self, screen: Any) -> None:
        with contextlib.suppress(curses.error):  # a terminal that cannot hide it shows it
            curses.curs_set(0)
        if curses.has_colors():
            curses.use_default_colors()
            # NO_COLOR (no-color.org): every state in the terminal's own colours.
            coloured = {} if os.environ.get("NO_COLOR") else _COLOURS
            for n, (state, colour) in enumerate(coloured.items(), 1):
                curses.init_pair(n, colour, -1)
                self.colours[state] = curses.color_pair(n)
        screen.keypad(True)  # noqa: FBT003 - curses' own signature

    def _fetch(self) -> None:
        try:
            self.reply = request(self.directory, {"op": "status"}, timeout=2.0)
            self.problem = ""
        except NoDaemonError as exc:
            self.problem = str(exc)

    def _draw(self, screen: Any) -> None:
        height, width = screen.getmaxyx()
        screen.erase()
        result = self.reply.get("result") if self.reply.get("ok") else None
        title = f"jobvisor top  {self.directory}  {time.strftime('%H:%M:%S')}  (q quits)"
        self._put(screen, 0, title, width, curses.A_BOLD)
        if self.problem:
            self._put(screen, 1, printable(self.problem), width, self.colours.get("failed", 0))
        elif result is None:
            self._put(screen, 1, printable(str(self.reply.get("error"))), width)
        breakers = (result or {}).get("breakers")
        table = [HEADER, *rows(result or {}, time.time())]
        count = len(table) - 1
        self.page = max(1, height - _CHROME - (1 if breakers else 0))
        # Rows come and go with a reload: the last page stays full, the first row shown is kept.
        self.first = max(0, min(self.first, count - self.page))
        # Only the page is cut to fit: 20,000 rows cost 52 ms a redraw (a scroll key's) cut whole.
        header, *shown = layout(table, width, slice(self.first, self.first + self.page))
        for y, row in enumerate([header, *shown], 2):
            for i, (x, cell) in enumerate(row):
                attr = curses.A_BOLD if y == 2 else 0  # the header's line
                if i == 1 and y > 2:
                    attr = self.colours.get(cell, 0)
                self._put(screen, y, cell, width - x, attr, x=x)
        y = 3 + len(shown)
        if count:
            footer = f"rows {self.first + 1}-{self.first + len(shown)} of {count}"
            if len(shown) < count:
                footer += "  (Up/Down, j/k, PgUp/PgDn, Home/End scroll)"
            self._put(screen, y, footer, width, curses.A_BOLD)
        if breakers:
            said = ", ".join(f"{k}={v}" for k, v in breakers.items())
            self._put(screen, y + 1, f"breakers: {said}", width)
        screen.refresh()

    @staticmethod
    def _put(screen: Any, y: int, text: str, room: int, attr: int = 0, *, x: int = 0) -> None:
        if room <= 0:
            return
        # Cut to the cells left, not to a count of characters: curses wraps what overflows
        # the line, and an emoji takes two cells.
        with contextlib.suppress(curses.error):  # the bottom-right cell, or a shrunk terminal
            screen.addstr(y, x, cut(text, room), attr)
