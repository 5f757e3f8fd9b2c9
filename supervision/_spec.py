"""Frozen specs: what a tree is made of. Runtime facts live in the supervisor's records."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import pykka

from actors import PythonWork, RetrySpec, Schedule, SpecError, Work
from actors._checks import a_kind, need, need_count, need_duration
from actors._placement import RayPlacement, placement_of
from supervision._depgraph import cycles, sibling_expected
from supervision._policy import (
    RestartPolicy,
    RestartType,
    Strategy,
    as_enum,
    kept,
    wrong_type,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

    from supervision._exits import GiveUpOn
    from supervision._notify import NotifySpec

__all__ = [
    "ActorSpec",
    "BreakerSpec",
    "ChildSpec",
    "JobSpec",
    "LoggingSpec",
    "OutputSpec",
    "RotateSpec",
    "SupervisorSpec",
    "check_added_dependencies",
    "check_known_dependencies",
    "child_path",
    "python_job",
    "same_child",
    "walk",
    "with_autostart",
]

NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
DEFAULT_GRACE: Final = 5.0
PLACEMENTS: Final = ("local", "ray")  # as words; {ray: {...}} places with settings


def _check_name(name: str) -> None:
    ok = isinstance(name, str) and bool(NAME.fullmatch(name))
    need(ok, "name", "a name made of letters, digits, '_', '.' or '-'", name)


def _check_grace(grace: float | None) -> None:
    if grace is not None:
        need_duration(grace, "stop.grace")


def _check_work(work: object, name: str) -> None:
    """``work`` is a job kind's work (the ``Work`` protocol: a str ``kind`` and a ``run``).

    A string there ran every attempt into "'str' object has no attribute 'run'", and the
    status then failed too: so it is refused here, with the call that was meant. The kind is
    read on the object, as the tree reads it: a slots dataclass's field or a property is a
    descriptor on the class. A class is refused: its ``run`` is a function, not a bound one.
    """
    if (
        isinstance(getattr(work, "kind", None), str)
        and callable(getattr(work, "run", None))
        and not isinstance(work, type)
    ):
        return
    expected = (
        "a job's work: a PythonWork, CommandWork, HttpWork or a Work (an object with a str "
        "kind and a run())"
    )
    hint = ""
    if isinstance(work, str):
        hint = (
            f" (a string: a python function is python_job({name!r}, {work!r}) or "
            f"work=PythonWork(target={work!r}); a command CommandWork(argv=[...]) or "
            "CommandWork(shell='...'); a URL HttpWork(url='...'))"
        )
    raise wrong_type("JobSpec", "work", expected, work, hint)


def _check_give_up_on(rule: object) -> None:
    from supervision._exits import GiveUpOn  # noqa: PLC0415 - only a job that has a rule pays

    if not isinstance(rule, GiveUpOn):
        raise wrong_type("JobSpec", "give_up_on", "a GiveUpOn or None", rule, build=GiveUpOn)


def _notify_of(owner: str, notify: object) -> tuple[NotifySpec, ...]:
    """``notify`` as the tuple of ``NotifySpec`` it must be (a list is taken)."""
    # Imported here: _notify reads manifests through _reader, which imports this module.
    from supervision._notify import NotifySpec  # noqa: PLC0415

    ok = isinstance(notify, tuple | list) and all(isinstance(n, NotifySpec) for n in notify)
    if not ok:
        raise wrong_type(owner, "notify", "a tuple of NotifySpec", notify)
    return tuple(notify)  # type: ignore[arg-type]


def child_path(
    path: object, method: str, *, param: str = "path", empty: bool = False
) -> tuple[str, ...]:
    """The names in ``path``, a ``Tree`` method's child path (``etl/load``), root's children down.

    ``method`` (``restart``) and ``param`` name the argument in the ``SpecError`` refusing a
    path that is not a string (``tree.restart(5)`` raised AttributeError 'strip'), or an
    empty one unless ``empty`` (the root: ``add_child``'s ``under``, ``update_group``'s path).
    """
    if not isinstance(path, str):
        expected = "a child path like 'etl/load' (a string)"
        shown = repr(path)
        kind = "" if path is None else f" ({a_kind(path)})"
        raise SpecError(
            f"Tree.{method}: {param}: expected {expected}, got {shown}{kind}",
            field=param,
            expected=expected,
            got=kept(path, shown),
        )
    parts = tuple(p for p in path.strip("/").split("/") if p)
    if not parts and not empty:
        expected = "a child path like 'etl/load'"
        raise SpecError(
            f"Tree.{method}: {param}: expected {expected}, got {path!r}",
            field=param,
            expected=expected,
            got=path,
        )
    return parts


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputSpec:
    """``output:`` of a job: its command output also goes to ``STATE_DIR/output/PATH.log``.

    The file is rotated once it would pass ``max_bytes`` (``PATH.log.1`` ...
    ``PATH.log.N``, ``backups`` of them kept); a job's ``output: false`` is
    ``JobSpec.output=None``. ``log=False`` keeps the lines out of the log (the file
    only, as supervisord keeps a program's output out of its own log), unless the
    file cannot be written.
    """

    max_bytes: int = 10 * 1024 * 1024
    backups: int = 3
    log: bool = True

    def __post_init__(self) -> None:
        ok = isinstance(self.max_bytes, int) and not isinstance(self.max_bytes, bool)
        need(ok and self.max_bytes >= 1, "output.max_bytes", "a size >= 1", self.max_bytes)
        need_count(self.backups, "output.backups", 0)
        need(isinstance(self.log, bool), "output.log", "true or false", self.log)


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
    retry: RetrySpec | None = None
    breaker: str | None = None  # the name of a breaker in the tree's breakers
    depends_on: tuple[str, ...] = ()  # sibling names that must be ready/succeeded first
    ready: Any = None  # an actors.ReadyProbe for services
    # "local", or where on Ray: "ray", {"ray": {...}} or a RayPlacement (kept as a RayPlacement).
    placement: str | RayPlacement = "local"
    # Where its output is kept says nothing of what the job does: out of the repr, so the
    # journal's spec hash (--resume) does not change with it.
    output: OutputSpec | None = field(default=OutputSpec(), repr=False)
    # Who hears of this job's events besides the manifest's own notify: not what the job
    # does, so not part of its identity (a reload or --resume does not see it as changed).
    notify: tuple[NotifySpec, ...] = field(default=(), repr=False, compare=False)
    # Failures no restart can mend: the child gives up at once (SPEC §10).
    give_up_on: GiveUpOn | None = None
    # False: not started with its tree, nor with its group's start, until a person starts it
    # (supervisord's autostart=false). Compared, so a reload sees it change (and applies it in
    # place), but out of the repr: the journal's spec hash (--resume) is the job's, not this.
    autostart: bool = field(default=True, repr=False)
    # The name of the job whose replica this is (``replicas: N`` makes NAME.0 .. NAME.N-1);
    # None for any other, a person's own ``q.0`` too. Compared (a reload that makes replicas
    # plain jobs replaces them), but out of the repr: the journal's spec hash stays the job's.
    replica_of: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_work(self.work, self.name)
        # Each an isinstance test inline: this runs for every job of a 10,000-job manifest.
        if not isinstance(self.schedule, Schedule):
            raise wrong_type("JobSpec", "schedule", "a Schedule", self.schedule, build=Schedule)
        _check_grace(self.grace)
        object.__setattr__(self, "restart", as_enum(RestartType, self.restart, "restart"))
        if self.retry is not None and not isinstance(self.retry, RetrySpec):
            raise wrong_type("JobSpec", "retry", "a RetrySpec or None", self.retry, build=RetrySpec)
        if self.breaker is not None and not isinstance(self.breaker, str):
            expected = "the name of a breaker in start_tree(breakers=...), or None"
            raise wrong_type("JobSpec", "breaker", expected, self.breaker)
        if self.ready is not None and not callable(getattr(self.ready, "wait_ready", None)):
            from actors import ReadyProbe  # noqa: PLC0415 - loaded lazily; only a refusal needs it

            raise wrong_type(
                "JobSpec", "ready", "a ReadyProbe or None", self.ready, build=ReadyProbe
            )
        if self.give_up_on is not None:
            _check_give_up_on(self.give_up_on)
        if self.notify:
            object.__setattr__(self, "notify", _notify_of("JobSpec", self.notify))
        need(isinstance(self.autostart, bool), "autostart", "true or false", self.autostart)
        need(
            self.output is None or isinstance(self.output, OutputSpec),
            "output",
            "false or a mapping with max_bytes, backups and log",
            self.output,
        )
        deps = self.depends_on
        ok = isinstance(deps, tuple | list) and all(isinstance(name, str) for name in deps)
        need(ok, "depends_on", "a list of sibling names", deps)
        if not isinstance(deps, tuple):
            object.__setattr__(self, "depends_on", tuple(deps))
        if self.name in deps:
            expected = "the name of another sibling, not the job's own"
            raise SpecError(
                f"{self.name}: depends_on: expected {expected}, got {self.name!r}",
                field="depends_on",
                expected=expected,
                got=self.name,
            )
        object.__setattr__(self, "placement", placement_of(self.placement))

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
    placement: str | RayPlacement = "local"  # as a job's: the class then runs as a Ray actor

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_grace(self.grace)
        object.__setattr__(self, "restart", as_enum(RestartType, self.restart, "restart"))
        object.__setattr__(self, "placement", placement_of(self.placement))
        if not isinstance(self.args, tuple):
            if not isinstance(self.args, list):
                raise wrong_type("ActorSpec", "args", "a tuple of arguments", self.args)
            object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping):
            raise wrong_type("ActorSpec", "kwargs", "a mapping of keyword arguments", self.kwargs)
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
    # Who hears of the group's events and of every job's in it, besides the manifest's
    # own notify: like a job's, not part of its identity.
    notify: tuple[NotifySpec, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_grace(self.grace)
        object.__setattr__(self, "strategy", as_enum(Strategy, self.strategy, "strategy"))
        object.__setattr__(self, "restart", as_enum(RestartType, self.restart, "restart"))
        if not isinstance(self.policy, RestartPolicy):
            raise wrong_type(
                "SupervisorSpec", "policy", "a RestartPolicy", self.policy, build=RestartPolicy
            )
        if self.notify:
            object.__setattr__(self, "notify", _notify_of("SupervisorSpec", self.notify))
        children = self.children
        need(isinstance(children, tuple | list), "children", "a list of specs", children)
        if not isinstance(children, tuple):
            object.__setattr__(self, "children", children := tuple(children))
        seen: set[str] = set()
        dependants = False
        for child in children:
            if not isinstance(child, JobSpec | ActorSpec | SupervisorSpec):
                raise SpecError(f"{self.name}: a child must be a spec, got {child!r}")
            if child.name in seen:
                raise SpecError(f"{self.name}: duplicate child name {child.name!r}")
            seen.add(child.name)
            dependants = dependants or (isinstance(child, JobSpec) and bool(child.depends_on))
        if dependants:  # a name no sibling has is no edge: start_tree refuses it (known_deps)
            _check_no_cycle(children)

    kind = "group"

    @property
    def finite(self) -> bool:
        return any(child.finite for child in self.children)


ChildSpec = JobSpec | ActorSpec | SupervisorSpec


def check_known_dependencies(spec: SupervisorSpec) -> None:
    """Every ``depends_on`` in ``spec``'s tree names a sibling (the manifest's rule), for a tree
    about to start. Not checked as a spec is built: jobvisor rebuilds a running group's spec
    from what it runs, which may name a sibling removed since (``Tree.remove_child``)."""
    names = {child.name for child in spec.children}
    for child in spec.children:
        _check_known(child, names)
        if isinstance(child, SupervisorSpec):
            check_known_dependencies(child)


def check_added_dependencies(spec: ChildSpec, siblings: Sequence[ChildSpec]) -> None:
    """What ``SupervisorSpec`` checks of its children, for ``spec`` joining ``siblings`` in a
    running group (``Tree.add_child``): its ``depends_on`` names one of them, and makes no
    cycle with theirs. A ``SpecError`` when not."""
    _check_known(spec, {child.name for child in siblings} | {spec.name})
    _check_no_cycle((*siblings, spec))


def _check_known(child: ChildSpec, names: Collection[str]) -> None:
    """Each of ``child``'s dependencies is one of its siblings' ``names`` (the manifest's rule)."""
    if not isinstance(child, JobSpec):
        return
    for dep in child.depends_on:
        if dep not in names:
            expected, hint = sibling_expected(dep, names)
            raise SpecError(
                f"{child.name}: depends_on: expected {expected}, got {dep!r}{hint}",
                field="depends_on",
                expected=expected,
                got=dep,
            )


def _check_no_cycle(children: Sequence[ChildSpec]) -> None:
    """No dependency cycle among ``children``, told as the manifest tells it. A dependency on a
    name no child has is no edge: a running group's children may name one removed since."""
    at = {child.name: i for i, child in enumerate(children)}
    edges = [
        [at[dep] for dep in child.depends_on if dep in at] if isinstance(child, JobSpec) else []
        for child in children
    ]
    found = cycles(edges) if any(edges) else []
    if found:
        cycle = found[0]
        text = " -> ".join(children[i].name for i in (*cycle, cycle[0]))
        raise SpecError(
            f"{children[cycle[0]].name}: depends_on: expected no dependency cycle, got {text}",
            field="depends_on",
            expected="no dependency cycle",
            got=text,
            shown=text,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSpec:
    """A named circuit breaker shared by every job that names it.

    Opens after ``failure_threshold`` consecutive failures, stays open
    ``reset_timeout`` seconds, then lets ``half_open_max_calls`` calls through:
    a success closes it, a failure opens it again.
    """

    failure_threshold: int = 5
    reset_timeout: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        need_count(self.failure_threshold, "failure_threshold", 1)
        need_duration(self.reset_timeout, "reset_timeout", positive=True)
        need_count(self.half_open_max_calls, "half_open_max_calls", 1)


LEVELS: Final = ("none", "error", "warning", "information", "debug", "verbose")
LOG_FORMATS: Final = ("text", "json")
ROTATE_WHEN: Final = ("hourly", "daily")


@dataclass(frozen=True, slots=True, kw_only=True)
class RotateSpec:
    """Rotate the log file by size (``max_bytes``) and/or time (``when``), keeping ``backups``."""

    max_bytes: int | None = None
    backups: int = 5
    when: str | None = None  # "hourly" | "daily"

    def __post_init__(self) -> None:
        if self.max_bytes is not None:
            ok = isinstance(self.max_bytes, int) and not isinstance(self.max_bytes, bool)
            need(ok and self.max_bytes >= 1, "rotate.max_bytes", "a size >= 1", self.max_bytes)
        need_count(self.backups, "rotate.backups", 0)
        need(self.when in (None, *ROTATE_WHEN), "rotate.when", "one of hourly, daily", self.when)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSpec:
    """``logging:`` of the manifest; ``--log-level``/``--log-file`` override it."""

    level: str = "information"
    file: str | None = None
    rotate: RotateSpec | None = None
    format: str = "text"  # "text" | "json"

    def __post_init__(self) -> None:
        need(self.level in LEVELS, "logging.level", "one of " + ", ".join(LEVELS), self.level)
        need(self.format in LOG_FORMATS, "logging.format", "one of text, json", self.format)
        if self.file is not None and not isinstance(self.file, str | os.PathLike):
            raise wrong_type("LoggingSpec", "file", "a file name or None", self.file)
        if self.rotate is not None and not isinstance(self.rotate, RotateSpec):
            raise wrong_type(
                "LoggingSpec", "rotate", "a RotateSpec or None", self.rotate, build=RotateSpec
            )


def same_child(a: ChildSpec, b: ChildSpec) -> bool:
    """Whether ``a`` and ``b`` are one child, ``autostart`` aside: it only says whether the
    child starts with its tree, which a reload changes in place (nothing restarts)."""
    if isinstance(a, JobSpec) and isinstance(b, JobSpec) and a.autostart != b.autostart:
        return replace(a, autostart=b.autostart) == b
    return a == b


def with_autostart(spec: ChildSpec, path: Sequence[str], autostart: bool) -> ChildSpec:
    """``spec`` with the job at ``path`` below it (names from its children down; empty: the
    job ``spec`` itself) given ``autostart``; as it is when no job is there."""
    if not path:
        return replace(spec, autostart=autostart) if isinstance(spec, JobSpec) else spec
    if not isinstance(spec, SupervisorSpec):
        return spec
    children = tuple(
        with_autostart(child, path[1:], autostart) if child.name == path[0] else child
        for child in spec.children
    )
    return replace(spec, children=children)


def walk(spec: SupervisorSpec, prefix: str = "") -> Iterator[tuple[str, ChildSpec]]:
    """Every child spec under ``spec`` with its path, depth first, in start order."""
    for child in spec.children:
        path = f"{prefix}/{child.name}" if prefix else child.name
        yield path, child
        if isinstance(child, SupervisorSpec):
            yield from walk(child, path)


def python_job(
    name: str,
    target: str,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    schedule: Schedule | None = None,
    restart: RestartType = RestartType.TRANSIENT,
    grace: float = DEFAULT_GRACE,
    isolation: str = "thread",
    autostart: bool = True,
) -> JobSpec:
    """Shorthand for a ``python`` job calling ``target`` (``"module:function"``).

    ``isolation="process"`` runs each try in a child process (see ``PythonWork``);
    ``autostart=False`` leaves it stopped when its tree starts, until ``start_child``.
    A bad value is a ``SpecError`` that starts with the job's name.
    """
    try:
        expected = "a mapping of keyword arguments"
        need(kwargs is None or isinstance(kwargs, Mapping), "kwargs", expected, kwargs)
        work = PythonWork(
            target=target, args=args, kwargs=dict(kwargs or {}), isolation=isolation, grace=grace
        )
        return JobSpec(
            name=name,
            work=work,
            schedule=schedule or Schedule(),
            restart=restart,
            grace=grace,
            autostart=autostart,
        )
    except SpecError as exc:
        raise SpecError(
            f"{name}: {exc}",
            field=exc.field,
            expected=exc.expected,
            got=exc.got,
            shown=exc.shown,
            about=exc.about,
            other=exc.other,
        ) from None
