"""The open-file limit against what a tree's jobs hold open while they run.

A command (or an ``isolation: process`` python job) holds its two pipes' read ends,
the waiter's pidfd and eventfd under threads, and its output file while it runs:
``PER_PROCESS_JOB`` fds. Under the usual soft limit of 1,024 that covers about 250
of them; past it attempts fail with "Too many open files" and crash-loop, and
nothing said why. At the start (and at a reload) the soft limit is raised to what
the manifest needs, within the hard limit, as supervisord's ``minfds`` does; a hard
limit that is short is said, with how to raise it. Jobs inherit the raised soft
limit.
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Final

import logbook

from actors import CommandWork, PythonWork
from supervision._spec import JobSpec, walk

if TYPE_CHECKING:
    from supervision._spec import SupervisorSpec

__all__ = ["BASE", "PER_PROCESS_JOB", "fit_open_files", "needed", "plan"]

log = logbook.Logger("supervision.limits")

PER_PROCESS_JOB: Final = 5
# jobvisor's own: its log and journal, 64 control connections, the HTTP endpoint's, python's
# modules and libraries, a job's output file being rotated.
BASE: Final = 256


def needed(root: SupervisorSpec) -> int:
    """The fds a tree of ``root`` may hold at once, every job running."""
    count = 0
    for _, spec in walk(root):
        if not isinstance(spec, JobSpec):
            continue
        work = spec.work
        if isinstance(work, CommandWork) or (
            isinstance(work, PythonWork) and work.isolation == "process"
        ):
            count += 1
    return BASE + PER_PROCESS_JOB * count


def plan(need: int, soft: int, hard: int) -> tuple[int | None, str | None]:
    """The soft limit to set (None: leave it) and what to say of a hard limit that is short."""
    infinite = resource.RLIM_INFINITY
    if soft == infinite or soft >= need:
        return None, None
    if hard == infinite or hard >= need:
        return need, None
    said = (
        f"the open-file limit (hard {hard}) is short of the {need} this manifest needs "
        f"(about {PER_PROCESS_JOB} for each command job while it runs): past it, attempts fail "
        '"Too many open files"; raise it where jobvisor starts (LimitNOFILE= in its systemd '
        "unit, ulimit -n in its shell, nofile in limits.conf)"
    )
    return (hard if hard > soft else None), said


def fit_open_files(root: SupervisorSpec) -> None:
    """Raise this process's soft open-file limit to what ``root`` needs, or say it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised, said = plan(needed(root), soft, hard)
    if raised is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "the open-file limit could not be raised from {} to {}: {}", soft, raised, exc
            )
        else:
            log.info(
                "open-file limit raised from {} to {} (hard {}) for this manifest's jobs",
                soft,
                raised,
                "unlimited" if hard == resource.RLIM_INFINITY else hard,
            )
    if said is not None:
        log.warning("{}", said)
