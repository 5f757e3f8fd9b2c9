"""Control characters written as escapes: ``actors._printable``'s, where a command's error
(its last line on stderr) is made printable too."""

from __future__ import annotations

from actors._printable import printable, printable_json

__all__ = ["printable", "printable_json"]
