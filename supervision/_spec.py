"""Frozen specs: what a tree is made of. Runtime facts live in the supervisor's records."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors import PythonWork, Schedule, SpecError, Work
from supervision._policy import RestartPolicy, RestartType, Strategy

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ActorSpec", "ChildSpec", "JobSpec", "SupervisorSpec", "python_job"]

NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_GRACE: Final = 5.0


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"name: expected letters, digits, '_', '.' or '-', got {name!r}")


def _check_grace(grace: float | None) -> None:
    if grace is not None and grace < 0:
        raise SpecError(f"stop grace: expected a duration >= 0, got {grace!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job: ``work`` (python, command or http) run in a ``schedule``.

    ``grace`` is how long a stop waits for the work to end before it is killed.
    """

    name: str
    work: Work
    schedule: Schedule = Schedule()
    restart: RestartType = RestartType.TRANSIENT
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_grace(self.grace)

    @property
    def kind(self) -> str:
        return self.work.kind

    @property
    def finite(self) -> bool:
        return self.schedule.finite


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorSpec:
    """Any pykka ``ThreadingActor`` class, started with ``args``/``kwargs`` on every incarnation.

    Reach it through ``Tree.ref(path)``, a stable reference that survives its
    restarts. It runs until stopped; stopping itself is a normal exit.
    """

    name: str
    actor_class: type[pykka.ThreadingActor]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: RestartType = RestartType.PERMANENT
    grace: float = DEFAULT_GRACE

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_grace(self.grace)
        if not (
            isinstance(self.actor_class, type)
            and issubclass(self.actor_class, pykka.ThreadingActor)
        ):
            raise SpecError(
                f"actor_class: expected a pykka.ThreadingActor subclass, got {self.actor_class!r}"
            )

    kind = "actor"
    finite = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorSpec:
    """A supervisor (the root, or a ``group``) with its policy and ordered children.

    As a child of another supervisor a group is ``permanent`` by default and
    waits for its own children to stop (``grace=None``) rather than being killed.
    """

    name: str = "root"
    strategy: Strategy = Strategy.ONE_FOR_ONE
    policy: RestartPolicy = RestartPolicy()
    children: tuple[ChildSpec, ...] = ()
    restart: RestartType = RestartType.PERMANENT
    grace: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_grace(self.grace)
        seen: set[str] = set()
        for child in self.children:
            if not isinstance(child, JobSpec | ActorSpec | SupervisorSpec):
                raise SpecError(f"{self.name}: a child must be a spec, got {child!r}")
            if child.name in seen:
                raise SpecError(f"{self.name}: duplicate child name {child.name!r}")
            seen.add(child.name)

    kind = "group"

    @property
    def finite(self) -> bool:
        return any(child.finite for child in self.children)


ChildSpec = JobSpec | ActorSpec | SupervisorSpec


def python_job(
    name: str,
    target: str,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    restart: RestartType = RestartType.TRANSIENT,
    grace: float = DEFAULT_GRACE,
) -> JobSpec:
    """Shorthand for a ``python`` job calling ``target`` (``"module:function"``)."""
    return JobSpec(
        name=name,
        work=PythonWork(target=target, args=args, kwargs=dict(kwargs or {})),
        schedule=schedule or Schedule(),
        restart=restart,
        grace=grace,
    )
