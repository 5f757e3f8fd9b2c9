"""``jobvisor top``: a live view of the daemon's tree in the terminal, redrawn twice a second.

One row per child (path, state, restarts, last exit, next start), groups
indented, states coloured on a colour terminal; a long path or last exit is
cut so that every column fits the terminal's width. More rows than fit
scroll (arrows, j/k, PgUp/PgDn, Home/End), a footer saying which are shown.
The status comes from the control socket like ``jobvisor status``; while the
daemon cannot be reached, its last status stays, dimmed, its countdowns
stopped, under a line saying why and since when. ``q`` or Ctrl-C quits with 0.
It uses the standard library's ``curses`` (a table redrawn in place needs
nothing more), and imports nothing of the runtime.
"""

from __future__ import annotations

import contextlib
import curses
import itertools
import os
import sys
import time

from actors._errors import LAST_LINE_SAID
from supervision._cells import cells, cut, cut_start
from supervision._client import SOCKET_NAME, NoDaemonError, find_state_dir, request, stopping_pid
from supervision._printable import printable
from supervision._table import MIN_PATH, exit_cell, short_exit, split_room, state_cell, until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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
# LAST EXIT cut narrower than this says little more than ``failed (…``: the columns that are
# wider than their cells for their headers' sake (RESTARTS for "12") take the short one.
_ROOMY_LAST_EXIT: Final = 20
_SHORT: Final = {"RESTARTS": "RST", "NEXT START": "NEXT"}
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
            # A command's last line on stderr, its why, before its argv (``status --json`` has
            # the whole): the argv would fill the cell.
            said = short_exit if LAST_LINE_SAID in _error_of(node) else exit_cell
            last = printable(said(node, str).splitlines()[0])
            cells = (name, state_cell(node), str(node["restarts"]))  # a daemon's word: escaped
            out.append((*map(printable, cells), last, upcoming))
            visit(node.get("children") or [], depth + 1)

    visit(doc.get("children") or [], 0)
    return out


def _error_of(node: dict[str, Any]) -> str:
    last = node.get("last_exit")
    error = last.get("error") if isinstance(last, dict) else None
    return error if isinstance(error, str) else ""


def layout(
    table: list[tuple[str, ...]], width: int, shown: slice = slice(None)
) -> list[list[tuple[int, str]]]:
    """Each row's cells, with the column each starts at, for a screen ``width`` wide.

    ``shown``: of the rows after the first (the header, always laid out), only these are
    cut to fit: a page of a large tree, its widths from every row.

    A column is as wide as its widest cell (in a terminal's cells: an emoji
    takes two), but PATH and LAST EXIT (a name or an error can be a line
    long) share what the other columns leave, each cut with an ellipsis: a
    path keeps its indent and its end. Where that leaves LAST EXIT less than
    ``_ROOMY_LAST_EXIT``, RESTARTS and NEXT START are as wide as their cells,
    under a short header (``RST``, ``NEXT``). On a screen too narrow even for
    that, the screen's edge cuts what does not fit, the first columns staying whole.
    """
    header = table[0]
    widths = _fitted([max(cells(row[i]) for row in table) for i in range(len(HEADER))], width)
    if widths[_LAST_EXIT] < min(_ROOMY_LAST_EXIT, max(cells(row[_LAST_EXIT]) for row in table)):
        short = tuple(_SHORT.get(cell, cell) for cell in header)
        widths = _fitted(
            [max(cells(row[i]) for row in (short, *table[1:])) for i in range(len(HEADER))], width
        )
        header = tuple(
            whole if cells(whole) <= w else brief
            for whole, brief, w in zip(header, short, widths, strict=True)
        )
    starts = list(itertools.accumulate((w + _GAP for w in widths[:-1]), initial=0))
    return [
        [
            (x, _cut_path(cell, w) if i == 0 else cut(cell, w))
            for i, (x, cell, w) in enumerate(zip(starts, row, widths, strict=True))
        ]
        for row in (header, *table[1:][shown])
    ]


def _fitted(widths: list[int], width: int) -> list[int]:
    """``widths`` with PATH's and LAST EXIT's sharing what the others leave of ``width``."""
    fitted = list(widths)
    others = sum(widths) - widths[0] - widths[_LAST_EXIT] + _GAP * (len(widths) - 1)
    fitted[0], fitted[_LAST_EXIT] = split_room(
        width - others, widths[0], widths[_LAST_EXIT], MIN_PATH, _MIN_LAST_EXIT
    )
    return fitted


def _cut_path(cell: str, width: int) -> str:
    name = cell.lstrip(" ")
    indent = len(cell) - len(name)
    if cells(cell) <= width or width - indent < 2:  # no room for "…" and a character
        return cut(cell, width)
    return cell[:indent] + cut_start(name, width - indent)


def _unreachable(directory: str, exc: NoDaemonError) -> str:
    """Why the daemon of ``directory`` cannot be reached, in words: the client's, but for a
    daemon stopping or gone, which it said with the errno's text ``(No such file or
    directory)``."""
    pid = stopping_pid(directory)
    if pid is not None:
        return f"it is stopping (pid {pid}), its jobs given their stop grace, or starting"
    if not os.path.lexists(os.path.join(directory, SOCKET_NAME)):  # noqa: PTH118 - str paths, as the client's
        return "it is not running (its control socket is gone)"
    # The client raises "from None": the refusal is the error's context, not its cause.
    if isinstance(exc.__context__, ConnectionRefusedError):
        return "it is not running (nothing listens on its control socket: was it killed?)"
    return str(exc)


def _ago(seconds: float) -> str:
    """``10s``, ``3 min``, ``2 h``: how long ago, as the web page says it."""
    whole = max(0, round(seconds))
    if whole < 120:
        return f"{whole}s"
    if whole < 7200:
        return f"{round(whole / 60)} min"
    return f"{round(whole / 3600)} h"


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
    why = _cannot_draw(os.environ.get("TERM", ""))
    if why is not None:
        sys.stderr.write(
            f"jobvisor: top cannot draw on this terminal ({printable(why)}): set "
            "TERM=xterm-256color, or use `jobvisor status`\n"
        )
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(_Screen(directory, reply).loop)
    return 0


def _cannot_draw(term: str) -> str | None:
    """Why curses cannot draw top on the terminal ``term`` names; None when it can.

    No terminfo entry (``xterm-kitty`` over ssh to a host without it) was a curses traceback;
    one that cannot move the cursor (``dumb``) drew the title and a cut header, and no row.
    """
    if not term:
        return "TERM is not set"
    try:
        curses.setupterm(term, sys.stdout.fileno())
    except curses.error:
        return f"TERM={term}: no terminfo entry"
    if not curses.tigetstr("cup"):
        return f"TERM={term}: it cannot move the cursor"
    return None


class _Screen:
    """The curses loop: a status request every ``REFRESH`` seconds, keys in between.

    ``clock``: the wall clock (epoch seconds) of the title, the countdowns and since when the
    daemon cannot be reached.
    """

    def __init__(
        self, directory: str, first: dict[str, Any], clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.reply = first
        self.read_at = clock()  # when ``reply`` came: a stale table's countdowns stop there
        self.problem = ""  # why the last request failed; "" when it worked
        self.down_since: float | None = None  # the first of the failures in a row; None: none
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
            self.fetch()

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

    def fetch(self) -> None:
        """Ask the daemon for its status; when it cannot be reached, keep the last reply and
        note why, and since when."""
        try:
            reply = request(self.directory, {"op": "status"}, timeout=2.0)
        except NoDaemonError as exc:
            self.problem = _unreachable(self.directory, exc)
            if self.down_since is None:
                self.down_since = self.clock()
            return
        self.reply, self.read_at = reply, self.clock()
        self.problem, self.down_since = "", None

    def _draw(self, screen: Any) -> None:
        height, width = screen.getmaxyx()
        screen.erase()
        for y, x, text, attr in self.frame(height, width):
            with contextlib.suppress(curses.error):  # the bottom-right cell, or a shrunk terminal
                screen.addstr(y, x, text, attr)
        screen.refresh()

    def frame(self, height: int, width: int) -> list[tuple[int, int, str, int]]:
        """A drawing on a screen ``height`` by ``width``: (line, column, text, curses attributes)
        for each piece, its text cut to the cells left it. Sets ``page`` and brings ``first``
        within the rows there are."""
        out: list[tuple[int, int, str, int]] = []

        def put(y: int, text: str, room: int, attr: int = 0, *, x: int = 0) -> None:
            # Cut to the cells left, not to a count of characters: curses wraps what overflows
            # the line, and an emoji takes two cells.
            if room > 0:
                out.append((y, x, cut(text, room), attr))

        now = self.clock()
        stale = self.down_since is not None
        result = self.reply.get("result") if self.reply.get("ok") else None
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        put(0, f"jobvisor top  {self.directory}  {clock}  (q quits)", width, curses.A_BOLD)
        problem = self._problem(now, result)
        if problem is not None:
            put(1, problem[0], width, problem[1])
        breakers = (result or {}).get("breakers")
        # A stale table's countdowns stop where its reply left them: ticking on to "in 0.0s",
        # they told of restarts that no daemon was there to make.
        table = [HEADER, *rows(result or {}, self.read_at if stale else now)]
        count = len(table) - 1
        self.page = max(1, height - _CHROME - (1 if breakers else 0))
        # Rows come and go with a reload: the last page stays full, the first row shown is kept.
        self.first = max(0, min(self.first, count - self.page))
        # Only the page is cut to fit: 20,000 rows cost 52 ms a redraw (a scroll key's) cut whole.
        header, *shown = layout(table, width, slice(self.first, self.first + self.page))
        # Stale, the daemon's rows are dim, in no state's colour: not read as its state now.
        dim = curses.A_DIM if stale else 0
        for y, row in enumerate([header, *shown], 2):
            for i, (x, cell) in enumerate(row):
                attr = curses.A_BOLD if y == 2 else dim  # the header's line
                if i == 1 and y > 2 and not stale:
                    attr = self.colours.get(cell, 0)
                put(y, cell, width - x, attr, x=x)
        y = 3 + len(shown)
        if count:
            footer = f"rows {self.first + 1}-{self.first + len(shown)} of {count}"
            if len(shown) < count:
                footer += "  (Up/Down, j/k, PgUp/PgDn, Home/End scroll)"
            put(y, footer, width, curses.A_BOLD)
        if breakers:
            said = printable(", ".join(f"{k}={v}" for k, v in breakers.items()))
            put(y + 1, f"breakers: {said}", width, dim)
        return out

    def _problem(self, now: float, result: dict[str, Any] | None) -> tuple[str, int] | None:
        """The line under the title, with its curses attributes: why the daemon cannot be
        reached and since when, or why it gave no status; None when nothing is wrong."""
        if self.down_since is not None:
            since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
            said = (
                f"Cannot reach the daemon since {since} ({_ago(now - self.down_since)}): "
                f"{self.problem}; the rows are its last status, dimmed, until it answers"
            )
            return printable(said), self.colours.get("failed", 0)
        if result is None:
            return printable(str(self.reply.get("error"))), 0
        return None
