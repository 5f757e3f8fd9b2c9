"""How many cells of a terminal a text takes, and texts cut to a number of cells.

A column lined up by ``len`` ends off by one for each wide character (CJK,
most emoji) and each combining mark in it. Standard library only
(``unicodedata``): ``status`` and ``top`` stay light.
"""

from __future__ import annotations

import unicodedata

__all__ = ["cells", "cut", "cut_start", "pad"]

ELLIPSIS = "…"  # one cell: what stands for the part of a text that was cut
# Marks drawn on the character before them and format characters (a zero-width joiner, a
# variation selector) take no cell of their own.
_ZERO: frozenset[str] = frozenset({"Mn", "Me", "Cf"})


def _width(char: str) -> int:
    if unicodedata.category(char) in _ZERO:
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def cells(text: str) -> int:
    """How many cells ``text`` takes on a terminal: 2 a wide character, 0 a combining mark."""
    if text.isascii():  # every row of most tables: no lookup per character
        return len(text)
    return sum(_width(char) for char in text)


def cut(text: str, width: int) -> str:
    """``text``, or as much of its start as fits ``width`` cells with ``…`` after it."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    room, used = width - 1, 0
    for i, char in enumerate(text):
        used += _width(char)
        if used > room:
            return text[:i] + ELLIPSIS
    return text  # not reached: the whole text is wider than width


def cut_start(text: str, width: int) -> str:
    """``text``, or ``…`` and as much of its end as fits ``width`` cells: a path's end names it."""
    if cells(text) <= width:
        return text
    if width <= 0:
        return ""
    room, used = width - 1, 0
    for i in range(len(text) - 1, -1, -1):
        used += _width(text[i])
        if used > room:
            tail = text[i + 1 :]
            while tail and _width(tail[0]) == 0:  # a mark of the character cut away
                tail = tail[1:]
            return ELLIPSIS + tail
    return text  # not reached


def pad(text: str, width: int) -> str:
    """``text`` and the spaces that make it ``width`` cells wide."""
    return text + " " * (width - cells(text))
