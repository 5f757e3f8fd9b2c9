"""Python jobs of the demo."""

from __future__ import annotations

from actors import current_attempt

_calls: dict[str, int] = {}


def flaky(name: str = "flaky", failures: int = 2) -> None:
    """Fail the job's first ``failures`` attempts, then succeed.

    Counted by the attempt's number, which jobvisor gives each attempt of a job (1 at its
    start, as after a reload that replaces it), not in this process's memory: a count kept
    here outlived a reload, and an edited demo then showed no retry.
    """
    attempt = current_attempt()
    if attempt is not None:
        number = attempt.number
    else:  # called outside a job (an ``isolation: process`` child): this process's count
        number = _calls[name] = _calls.get(name, 0) + 1
    if number <= failures:
        raise RuntimeError(f"{name}: transient failure {number} of {failures}")


def tick() -> None:
    """A periodic job's work: nothing to do but be counted."""
