"""A signal by the name a person knows it by: ``SIGTERM``, ``SIGRTMIN+2`` for a real-time one.

One wording for every place that says a signal (a command's error, ``status``,
``history``, ``jobvisor signal``'s answer), as ``jobvisor signal`` takes them.
"""

from __future__ import annotations

__all__ = ["signal_text"]


def signal_text(number: int) -> str:
    """``SIGHUP`` for 1, ``SIGRTMIN+2`` for a real-time one, ``signal 99`` for one this
    system does not have."""
    import signal  # noqa: PLC0415 - its enum is a cost to every control command's start

    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"
