"""Child states and the one table of transitions between them."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["FINAL", "TRANSITIONS", "State", "can_transition"]


class State(enum.StrEnum):
    """The state of a child as ``status`` shows it (SPEC §4)."""

    PENDING = "pending"  # declared, not started yet
    STARTING = "starting"  # started, on_start (or the group's children) not done yet
    RUNNING = "running"
    WAITING = "waiting"  # its breaker is open: no calls, no failures counted
    BACKOFF = "backoff"  # failed; a restart is scheduled
    COOLDOWN = "cooldown"  # intensity exhausted; a probe start is scheduled
    PROBATION = "probation"  # the probe runs; failing now reopens the cooldown
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # failed and will not be restarted (temporary, or a finite run's end)
    GAVE_UP = "gave_up"
    STOPPING = "stopping"
    STOPPED = "stopped"


S = State
_ENDED: Final = {S.SUCCEEDED, S.FAILED, S.GAVE_UP, S.BACKOFF, S.COOLDOWN, S.STOPPED}

# Why each edge exists, in supervisord's style:
TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    # PENDING -> FAILED: a dependency failed finally, so it never starts.
    # PENDING -> SUCCEEDED: `run --resume`: it succeeded in an earlier run, so it never starts.
    S.PENDING: frozenset({S.STARTING, S.STOPPED, S.BACKOFF, S.COOLDOWN, S.FAILED, S.SUCCEEDED}),
    # STARTING ends in RUNNING/PROBATION, WAITING (breaker open), or an end (died in on_start).
    S.STARTING: frozenset({S.RUNNING, S.PROBATION, S.STOPPING, S.WAITING} | _ENDED),
    S.RUNNING: frozenset({S.STOPPING, S.WAITING} | _ENDED),
    # WAITING -> PROBATION: a probe resumed; its probation starts over.
    S.WAITING: frozenset({S.RUNNING, S.PROBATION, S.STARTING, S.STOPPING} | _ENDED),
    S.PROBATION: frozenset({S.RUNNING, S.STOPPING, S.WAITING} | _ENDED),  # RUNNING: passed
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.COOLDOWN, S.BACKOFF, S.PENDING}),
    S.COOLDOWN: frozenset({S.STARTING, S.STOPPED, S.PENDING}),  # STARTING: the probe
    S.SUCCEEDED: frozenset({S.STARTING, S.BACKOFF, S.STOPPED, S.PENDING, S.COOLDOWN}),
    S.FAILED: frozenset({S.STARTING, S.STOPPED, S.PENDING, S.BACKOFF, S.COOLDOWN}),
    S.GAVE_UP: frozenset({S.STARTING, S.STOPPED, S.PENDING}),  # a person starts it again
    # STARTING: restart(path); PENDING: restart(path) of a job whose dependency is not ready.
    S.STOPPING: frozenset({S.STOPPED, S.STARTING, S.BACKOFF, S.COOLDOWN, S.PENDING}),
    S.STOPPED: frozenset({S.STARTING, S.PENDING, S.BACKOFF, S.COOLDOWN, S.STOPPED}),
}

FINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.GAVE_UP, S.STOPPED})
"""States a finite run settles in: a batch run is done when every finite job is in one."""


def can_transition(old: State, new: State) -> bool:
    return new in TRANSITIONS[old]
