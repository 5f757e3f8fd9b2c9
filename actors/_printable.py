"""Control characters written as escapes, for text shown on a terminal or in a text log.

Only ``re``: ``jobvisor status`` and ``history`` escape what they print, and
they must stay light (see ``supervision._client``).
"""

from __future__ import annotations

import re

__all__ = ["printable", "printable_json"]

# C0, DEL and C1 controls (ESC, BEL, NUL, CSI...); bidi marks and overrides reorder what
# the reader sees; U+2028/U+2029 end a line where the reader does not expect one.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep: str = "\t") -> str:
    """``text`` with each control character written as an escape (``\\x1b``, ``\\u202e``).

    For lines shown on a terminal or written to a text log: a job's output
    may hold ANSI sequences, NUL, BEL or OSC strings that would otherwise
    recolour, retitle or rewrite the reader's terminal. Characters in
    ``keep`` (a tab by default) stay as they are.
    """
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def printable_json(document: str) -> str:
    """A JSON text with the control characters ``json.dumps`` leaves raw written as ``\\uXXXX``.

    ``ensure_ascii=False`` keeps DEL, the C1 controls (``\\x9b`` is a CSI on
    some terminals), bidi overrides and line separators; escaped, the
    document means the same and is safe to show.
    """
    if _CONTROL.search(document) is None:
        return document
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
