"""Prometheus metrics of one tree, kept up to date from its events (SPEC §9).

Every tree gets its own ``CollectorRegistry``: two trees in one process (or
two tests) never share a counter. Nothing here polls: ``observe`` takes the
tree's events and only bumps numbers; the text is made when ``/metrics`` is
scraped. It is fed inline, as the tree's ``sink`` (``TreeMetrics.sink``),
not through the event bus: the bus's thread hop cost a third of a restart
cycle. And what an event changes is a plain number of the path's ``_Series``
(one supervisor owns a path, so one thread writes it), turned into metric
families by a collector when scraped: prometheus_client's labelled children
take a lock and a lookup per change, which showed on the restart cycle.
"""

from __future__ import annotations

import contextlib
import platform
import time
from typing import TYPE_CHECKING, Any, Final

import logbook
from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actors._runtime import active_runtime
from supervision._events import (
    AttemptFinished,
    BreakerChanged,
    GaveUp,
)
from supervision._spec import JobSpec, SupervisorSpec, same_child, walk
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from actors import Breaker, Outcome
    from supervision._events import Event
    from supervision._notifier import Notifier
    from supervision._spec import ChildSpec

__all__ = ["BREAKER_VALUES", "CONTENT_TYPE", "EVENT_TYPES", "TreeMetrics"]

log = logbook.Logger("supervision.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
BREAKER_VALUES: Final = {"closed": 0, "open": 1, "half_open": 2}
# The events the metrics take; state changes, failures, restarts and a periodic job's ticks
# come inline instead (``on_state``, ``on_failure``, ``on_restart``, ``on_tick``), from where
# the status counts them.
EVENT_TYPES: Final = frozenset({AttemptFinished, GaveUp, BreakerChanged})
# Seconds: from a crash at start to a long batch job.
_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class _Collected:
    """Families collected already, as ``generate_latest`` asks a registry for them."""

    __slots__ = ("_families",)

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class TreeMetrics:
    """The ``jobvisor_*`` metrics of one tree; ``observe`` takes its events.

    ``root`` is the tree's spec at start, which names each path's ``kind``; a
    reload tells its changes with ``follow``. ``mask`` hides secrets in
    anything shown; ``wall`` is the tree's wall clock (a state's ``since``).
    """

    def __init__(
        self,
        root: SupervisorSpec,
        breakers: Mapping[str, Breaker] | None = None,
        mask: Callable[[str], str] = str,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._mask = mask
        self._wall = wall
        self._build: tuple[str, str, str] | None = None  # made at the first scrape
        # Every path the tree has, with its spec; only the reload's thread changes it (``follow``).
        self._specs: dict[str, ChildSpec] = {"": root}
        # The children a reload changed while their group was down: {path: (the group, the
        # spec its series was counted under)}, until that group starts (``_settle``).
        self._pending: dict[str, tuple[str, ChildSpec]] = {}
        self.registry = reg = CollectorRegistry()
        # Collected by ``collect``, not the registry: without its ``_created`` series, a
        # gauge family of its own per path and outcome that no counter here has.
        self.duration = Histogram(
            "jobvisor_attempt_duration_seconds",
            "How long each attempt of a job ran (a periodic job's ticks are attempts of one"
            " start: _count counts them)",
            ("path", "kind", "outcome"),
            buckets=_BUCKETS,
            registry=None,
        )
        self.breaker = Gauge(
            "jobvisor_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ("breaker",),
            registry=reg,
        )
        reg.register(self)
        ProcessCollector(registry=reg)
        self._by_path: dict[str, _Series] = {}
        # Where the notification deliveries are counted: the run's notifier, which a
        # reload may make later (None: none yet, or no deliveries to count).
        self.notifier: Callable[[], Notifier | None] = lambda: None
        self.follow("", root)
        for name, breaker in (breakers or {}).items():
            self.add_breaker(name, breaker)
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            AttemptFinished: self._attempt_finished,
            GaveUp: self._gave_up,
            BreakerChanged: self._breaker_changed,
        }

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric, made now.

        Under gevent the families are collected in the hub, from the live counts, and written
        out as text on a thread of gevent's pool: the writing is most of a scrape's time (2,000
        jobs: half a second), which held the hub, supervision and the control socket with it
        (h248).
        """
        if active_runtime() != "gevent":
            return generate_latest(self.registry)
        from gevent import get_hub  # noqa: PLC0415 - loaded whenever this runs (gevent)

        collected = _Collected(list(self.registry.collect()))
        try:
            text: bytes = get_hub().threadpool.apply(generate_latest, (collected,))
        except RuntimeError:  # no thread to be had (a host at its limit): written here
            return generate_latest(collected)
        return text

    def sink(self, then: Callable[[Event], None] | None = None) -> Callable[[Event], None]:
        """A tree ``sink`` feeding these metrics, and ``then`` (a journal's record) its kinds.

        It runs in the supervisors' threads: it never blocks and never raises.
        """
        kinds: frozenset[type[Event]] | None = getattr(then, "event_types", None)
        handlers = self._handlers

        def sink(event: Event) -> None:
            handler = handlers.get(type(event))
            if handler is not None:
                try:
                    handler(event)
                except Exception:
                    log.exception("metrics: {} not counted", type(event).__name__)
            if then is not None and (kinds is None or type(event) in kinds):
                then(event)

        both: Any = sink
        both.event_types = (
            None if then is not None and kinds is None else EVENT_TYPES | (kinds or set())
        )
        both.on_state = self.on_state
        both.on_failure = self.on_failure
        both.on_restart = self.on_restart
        both.on_tick = self.on_tick
        return sink

    def on_state(self, path: str, old: State, new: State) -> None:
        """Account for one state change (a tree calls it inline: see ``sink``)."""
        del old  # a restart is told by on_restart, where the status counts it
        series = self._series(path)
        if new is State.STARTING:
            if self._pending:  # only after a reload changed a down group's children
                self._settle(path)
            series.starts += 1
            # An incarnation before it that never ended its tick (a thread left behind) says
            # nothing of this one's.
            series.ticking = None
        series.current = new
        series.since = self._wall()

    def on_tick(self, path: str, running: bool, incarnation: object = None) -> None:
        """A periodic job's tick starts (``running``) or ends (its actor calls it inline, in
        its own thread: the status reads whether a tick runs from that actor, never told).
        ``incarnation``: whose tick; the late end of one left behind (a thread abandoned, its
        job since replaced) clears nothing of another's."""
        series = self._by_path.get(path)
        if series is None:  # none: a late tick of a job a reload removed makes none
            return
        if running:
            series.ticking = incarnation if incarnation is not None else True
        elif series.ticking is (incarnation if incarnation is not None else True):
            series.ticking = None

    def on_restart(self, path: str) -> None:
        """Account for one restart the status counts (a tree calls it inline: see ``sink``)."""
        self._series(path).restarts += 1

    def on_failure(self, path: str, outcome: Outcome) -> None:
        """Account for one failure the status counts (a tree calls it inline: see ``sink``)."""
        failures = self._series(path).failures
        failures[outcome.value] = failures.get(outcome.value, 0) + 1

    def _attempt_finished(self, event: AttemptFinished) -> None:
        series = self._series(event.path)
        outcome = event.outcome.value
        child = series.durations.get(outcome)
        if child is None:
            child = series.durations[outcome] = self.duration.labels(*series.labels, outcome)
        child.observe(max(0.0, event.at - event.started_at))

    def _gave_up(self, event: GaveUp) -> None:
        self._series(event.path).gave_up += 1

    def _breaker_changed(self, event: BreakerChanged) -> None:
        self.breaker.labels(self._mask(event.name)).set(BREAKER_VALUES.get(event.new, 0))

    def collect(self) -> Iterator[Metric]:
        """The counted families, made at scrape time (the registry calls it)."""
        job = ("path", "kind")
        starts = CounterMetricFamily(
            "jobvisor_job_starts",
            "Starts of a child (first start included); a periodic job's ticks are attempts of"
            " one start: count them with jobvisor_attempt_duration_seconds_count",
            labels=job,
        )
        restarts = CounterMetricFamily(
            "jobvisor_job_restarts",
            "Restarts out of backoff, as the status counts them (a cooldown's probe is a start)",
            labels=job,
        )
        failures = CounterMetricFamily(
            "jobvisor_job_failures",
            "Failures, by outcome (failed, timeout, killed), as the status counts them",
            labels=(*job, "outcome"),
        )
        gave_up = CounterMetricFamily(
            "jobvisor_gave_up",
            "Children given up on (intensity exhausted, or a give_up_on match at once)",
            labels=job,
        )
        state = GaugeMetricFamily(
            "jobvisor_job_state", "1 for the child's current state", labels=(*job, "state")
        )
        since = GaugeMetricFamily(
            "jobvisor_job_state_since_seconds",
            "Unix time of the child's last change of state (the status's since)",
            labels=job,
        )
        # A periodic job's only: any other job's would be one more series a child, always 0.
        between = GaugeMetricFamily(
            "jobvisor_job_between_ticks",
            "1 while a periodic job (every, cron) waits for its next tick, its state running;"
            " 0 while a tick runs, or in any other state",
            labels=job,
        )
        for series in list(self._by_path.values()):
            labels = series.labels
            starts.add_metric(labels, series.starts)
            restarts.add_metric(labels, series.restarts)
            gave_up.add_metric(labels, series.gave_up)
            for outcome, count in list(series.failures.items()):
                failures.add_metric((*labels, outcome), count)
            since.add_metric(labels, series.since)
            current = series.current
            for each in State:
                state.add_metric((*labels, each.value), 1 if each is current else 0)
            if series.periodic:
                idle = current is State.RUNNING and series.ticking is None
                between.add_metric(labels, 1 if idle else 0)
        yield from (starts, restarts, failures, state, since, between, gave_up)
        for family in self.duration.collect():
            family.samples = [one for one in family.samples if not one.name.endswith("_created")]
            yield family
        build = GaugeMetricFamily(
            "jobvisor_build_info",
            "1, labelled with jobvisor's version, the Python and the runtime it runs",
            labels=("version", "python", "runtime"),
        )
        build.add_metric(self._build_labels(), 1)
        yield build
        notifier = self.notifier()
        if notifier is not None:
            deliveries = CounterMetricFamily(
                "jobvisor_notify_deliveries",
                "Notification deliveries by how they ended: delivered, failed (after its"
                " retries), dropped (its queue was full)",
                labels=("notification", "result"),
            )
            for (name, result), count in sorted(notifier.deliveries().items()):
                deliveries.add_metric((name, result), count)
            yield deliveries

    def _build_labels(self) -> tuple[str, str, str]:
        if self._build is None:
            # importlib.metadata takes tens of milliseconds: paid at the first scrape only.
            from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

            try:
                made = version("jobvisor")
            except PackageNotFoundError:
                made = "0+checkout"  # as ``jobvisor --version`` says
            self._build = (made, platform.python_version(), active_runtime())
        return self._build

    def add_breaker(self, name: str, breaker: Breaker) -> None:
        """Show ``breaker`` (one the tree had at start, or a reload added) in its state now."""
        self.breaker.labels(self._mask(name)).set(BREAKER_VALUES[breaker.state.value])

    def remove_breaker(self, name: str) -> None:
        """A reload removed ``breaker``: its series goes, as prometheus_client's ``remove``."""
        with contextlib.suppress(KeyError):
            self.breaker.remove(self._mask(name))

    def follow(self, path: str, spec: ChildSpec | None) -> None:
        """The child at ``path`` is ``spec`` from now on (None: it was removed).

        A reload calls it for each step, in the reload's thread: after a removal (so no
        event of the old child comes later) and before an addition (so the new child's
        first event finds its kind). The series go as the status's counters do: a path
        that is gone, or a job or actor a reload replaced (its spec changed: autostart
        aside), loses its series, as prometheus_client's ``remove`` drops a labelled child,
        and starts again from zero (a counter's reset, which ``rate`` and ``increase`` take
        in their stride). Each new path gets its series at once.

        A group's update (``spec`` a group, as the path was) changes no series of a running
        group's: the reload replaced, added and removed its children one by one before. A
        down group's children, removed ones too, keep theirs until it starts again: only
        then does its status set each against the spec it was counted under (``_settle``).
        """
        now: dict[str, ChildSpec] = {}
        if spec is not None:
            now[path] = spec
            if isinstance(spec, SupervisorSpec):
                now.update(walk(spec, path))
        was = self._specs.get(path)
        under: list[str] = []
        if isinstance(was, SupervisorSpec):  # its children go, or stay, with it
            # Its children a reload removed while it was down too: theirs stay till it starts.
            known = self._specs.keys() | self._pending.keys()
            under = [p for p in known if p and (not path or p.startswith(f"{path}/"))]
        if isinstance(was, SupervisorSpec) and isinstance(spec, SupervisorSpec):
            gone = self._updated(path, under, now)
        elif was is not None and (spec is None or not _same(was, spec)):
            gone = [path, *under]
        else:
            gone = under
        for each in gone:
            self._drop(each)
        for each, child in now.items():
            self._specs[each] = child
            if each:  # the root's own series, as before, only once it has an event
                self._series(each)

    def _updated(self, path: str, under: list[str], now: Mapping[str, ChildSpec]) -> list[str]:
        """The paths ``under`` the group at ``path`` its update removes now."""
        group = self._by_path.get(path)
        if group is None or group.current not in _DOWN:
            # A down group's below it: at that group's start.
            return [each for each in under if each not in now and each not in self._pending]
        self._defer(path, under)
        for each in under:
            if each not in now:  # removed at its start (``_settle``), as in its status
                self._specs.pop(each, None)
        return []

    def _defer(self, group: str, children: list[str]) -> None:
        """``children`` of ``group``, which is down, are compared when it starts, as its
        status does (``Carried.onto``): the first spec each was counted under stays (a
        later reload may undo a change), and one removed since goes then."""
        pending, specs = self._pending, self._specs
        for each in children:
            counted = specs.get(each)
            if each not in pending and counted is not None:
                pending[each] = (group, counted)

    def _drop(self, path: str) -> None:
        self._specs.pop(path, None)
        self._pending.pop(path, None)
        series = self._by_path.pop(path, None)
        if series is not None:
            for outcome in series.durations:
                self.duration.remove(*series.labels, outcome)

    def _settle(self, group: str) -> None:
        """``group`` starts: each child a reload changed while it was down counts on, or
        starts from zero, as its status's record does (``Carried.onto``)."""
        pending = self._pending
        for each, (down, counted) in list(pending.items()):
            if down != group:
                continue
            pending.pop(each, None)
            spec = self._specs.get(each)
            if spec is None:  # removed while its group was down
                self._drop(each)
            elif not _same(counted, spec):
                self._drop(each)
                self._specs[each] = spec
                self._series(each)

    def _series(self, path: str) -> _Series:
        series = self._by_path.get(path)
        if series is None:
            # "unknown": an event of a path no spec named, which ``follow`` never lets happen.
            known = self._specs.get(path)
            kind = "unknown" if known is None else known.kind
            series = self._by_path[path] = _Series((self._mask(path), kind), self._wall())
            series.periodic = isinstance(known, JobSpec) and known.schedule.periodic
        return series


class _Series:
    """What the events said of one path, as plain numbers (its supervisor's thread writes it)."""

    __slots__ = (
        "current",
        "durations",
        "failures",
        "gave_up",
        "labels",
        "periodic",
        "restarts",
        "since",
        "starts",
        "ticking",
    )

    def __init__(self, labels: tuple[str, str], since: float) -> None:
        self.labels = labels
        self.current = State.PENDING
        self.since = since  # pending from its series' making, as its status record's is
        self.starts = 0
        self.restarts = 0
        self.gave_up = 0
        # Every outcome's from 0: a series made at its first failure hides that one from
        # ``increase()``, which needs a sample before it.
        self.failures: dict[str, int] = dict.fromkeys(_FAILED, 0)
        self.durations: dict[str, Any] = {}  # outcome: the histogram's labelled child
        self.periodic = False  # a periodic job's: it has a between_ticks series
        # Whose tick runs (its incarnation's token), None when none: written by its actor's
        # thread (``on_tick``), one reference at a time.
        self.ticking: object = None


def _same(was: ChildSpec, new: ChildSpec) -> bool:
    """Whether ``new`` at a path is the child ``was`` was, to the status's counters."""
    if isinstance(was, SupervisorSpec) or isinstance(new, SupervisorSpec):
        return isinstance(was, SupervisorSpec) and isinstance(new, SupervisorSpec)
    return same_child(was, new)


# A group in one of these states runs no supervisor: a reload only gives it its next spec.
_DOWN: Final = frozenset(
    {
        State.PENDING,
        State.STOPPING,
        State.STOPPED,
        State.BACKOFF,
        State.COOLDOWN,
        State.FAILED,
        State.GAVE_UP,
        State.SUCCEEDED,
    }
)
_FAILED: Final = ("failed", "timeout", "killed")  # the outcomes ``on_failure`` is told of
