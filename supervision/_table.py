"""The status document as text: the table ``jobvisor run`` ends with and ``status`` prints.

Standard library only, so that ``jobvisor status`` loads no runtime.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing is a tenth of a control command's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

__all__ = ["flatten_status", "summary_table"]


def flatten_status(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a status document, depth first (groups before their children)."""
    for node in doc.get("children", []):
        yield node
        if node.get("children"):
            yield from flatten_status(node)


def summary_table(doc: dict[str, Any], mask: Callable[[str], str] = str) -> str:
    """The end-of-run table: one row per child with state, counters and last exit."""
    header = ("PATH", "KIND", "STATE", "STARTS", "RESTARTS", "FAILURES", "LAST EXIT")
    rows = [header]
    for node in flatten_status(doc):
        last = node.get("last_exit")
        if last is None:
            exit_text = "-"
        else:
            exit_text = last["outcome"]
            if last.get("code") is not None:
                exit_text += f" ({last['code']})"
            if last.get("error"):
                exit_text += f": {mask(last['error'])}"
        rows.append(
            (
                node["path"],
                node["kind"],
                node["state"],
                str(node["starts"]),
                str(node["restarts"]),
                str(node["failures"]),
                exit_text[:80],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
