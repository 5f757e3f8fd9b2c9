"""Python jobs of the demo."""

from __future__ import annotations

_calls: dict[str, int] = {}


def flaky(name: str = "flaky", failures: int = 2) -> None:
    """Fail the first ``failures`` calls in this process, then succeed."""
    _calls[name] = _calls.get(name, 0) + 1
    if _calls[name] <= failures:
        raise RuntimeError(f"{name}: transient failure {_calls[name]} of {failures}")


def tick() -> None:
    """A periodic job's work: nothing to do but be counted."""
