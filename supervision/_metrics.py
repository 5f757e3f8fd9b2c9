"""Prometheus metrics of one tree, kept up to date from its events (SPEC §9).

Every tree gets its own ``CollectorRegistry``: two trees in one process (or
two tests) never share a counter. Nothing here polls: ``observe`` takes the
tree's events and only bumps numbers; the text is made when ``/metrics`` is
scraped. It is fed inline, as the tree's ``sink`` (``TreeMetrics.sink``),
not through the event bus: the bus's thread hop cost a third of a restart
cycle, bumping a counter in place costs next to nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import logbook
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from supervision._events import (
    AttemptFinished,
    BreakerChanged,
    ChildExited,
    GaveUp,
    StateChanged,
)
from supervision._spec import walk
from supervision._state import State

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from actors import Breaker
    from supervision._events import Event
    from supervision._spec import SupervisorSpec

__all__ = ["BREAKER_VALUES", "CONTENT_TYPE", "EVENT_TYPES", "TreeMetrics"]

log = logbook.Logger("supervision.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
BREAKER_VALUES: Final = {"closed": 0, "open": 1, "half_open": 2}
EVENT_TYPES: Final = frozenset({StateChanged, ChildExited, AttemptFinished, GaveUp, BreakerChanged})
_RESTARTED_FROM: Final = frozenset({State.BACKOFF, State.COOLDOWN})
# Seconds: from a crash at start to a long batch job.
_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class TreeMetrics:
    """The ``jobvisor_*`` metrics of one tree; ``observe`` is its event subscriber.

    ``root`` returns the tree's current spec (it changes on reload) to name
    each path's ``kind``; ``mask`` hides secrets in anything shown.
    """

    def __init__(
        self,
        root: Callable[[], SupervisorSpec],
        breakers: Mapping[str, Breaker] | None = None,
        mask: Callable[[str], str] = str,
    ) -> None:
        self._root = root
        self._mask = mask
        self._kinds: dict[str, str] = {}
        self._kinds_of: object = None
        self.registry = CollectorRegistry(auto_describe=True)
        job = ("path", "kind")
        reg = self.registry
        self.starts = Counter(
            "jobvisor_job_starts_total",
            "Starts of a child (first start included)",
            job,
            registry=reg,
        )
        self.restarts = Counter(
            "jobvisor_job_restarts_total",
            "Starts after a failure (out of backoff or cooldown)",
            job,
            registry=reg,
        )
        self.failures = Counter(
            "jobvisor_job_failures_total",
            "Children that ended in failure, by outcome (failed, timeout, killed)",
            (*job, "outcome"),
            registry=reg,
        )
        self.state = Gauge(
            "jobvisor_job_state", "1 for the child's current state", (*job, "state"), registry=reg
        )
        self.duration = Histogram(
            "jobvisor_attempt_duration_seconds",
            "How long each attempt of a job ran",
            (*job, "outcome"),
            buckets=_BUCKETS,
            registry=reg,
        )
        self.breaker = Gauge(
            "jobvisor_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            ("breaker",),
            registry=reg,
        )
        self.gave_up = Counter(
            "jobvisor_gave_up_total",
            "Children given up on (intensity exhausted)",
            job,
            registry=reg,
        )
        ProcessCollector(registry=reg)
        self._current: dict[str, State] = {}
        for path, _ in walk(root()):
            self._enter(path, State.PENDING)
        for name, breaker in (breakers or {}).items():
            self.breaker.labels(name).set(BREAKER_VALUES[breaker.state.value])

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric, made now."""
        return generate_latest(self.registry)

    def sink(self, then: Callable[[Event], None] | None = None) -> Callable[[Event], None]:
        """A tree ``sink`` feeding these metrics, and ``then`` (a journal's record) its kinds.

        It runs in the supervisors' threads: it never blocks and never raises.
        """
        kinds: frozenset[type[Event]] | None = getattr(then, "event_types", None)
        observe = self.observe

        def sink(event: Event) -> None:
            if type(event) in EVENT_TYPES:
                try:
                    observe(event)
                except Exception:
                    log.exception("metrics: {} not counted", type(event).__name__)
            if then is not None and (kinds is None or type(event) in kinds):
                then(event)

        both: Any = sink
        both.event_types = (
            None if then is not None and kinds is None else EVENT_TYPES | (kinds or set())
        )
        return sink

    def observe(self, event: Event) -> None:
        """Account for one tree event (the tree's event thread calls it)."""
        match event:
            case StateChanged(path=path, old=old, new=new):
                self._enter(path, new)
                if new is State.STARTING:
                    labels = self._labels(path)
                    self.starts.labels(*labels).inc()
                    if old in _RESTARTED_FROM:
                        self.restarts.labels(*labels).inc()
            case ChildExited(path=path, outcome=outcome) if outcome.value in _FAILED:
                self.failures.labels(*self._labels(path), outcome.value).inc()
            case AttemptFinished(path=path, outcome=outcome, at=at, started_at=started):
                seconds = max(0.0, at - started)
                self.duration.labels(*self._labels(path), outcome.value).observe(seconds)
            case GaveUp(path=path):
                self.gave_up.labels(*self._labels(path)).inc()
            case BreakerChanged(name=name, new=new_word):
                self.breaker.labels(self._mask(name)).set(BREAKER_VALUES.get(new_word, 0))
            case _:
                pass

    def _enter(self, path: str, state: State) -> None:
        labels = self._labels(path)
        old = self._current.get(path)
        if old is not None:
            self.state.labels(*labels, old.value).set(0)
        else:  # a new path (first seen, or added by a reload): every state gets its series
            for each in State:
                self.state.labels(*labels, each.value).set(0)
        self.state.labels(*labels, state.value).set(1)
        self._current[path] = state

    def _labels(self, path: str) -> tuple[str, str]:
        kind = self._kinds.get(path)
        if kind is None:
            root = self._root()
            if root is not self._kinds_of:  # a reload changed the tree: learn its paths again
                self._kinds = {p: spec.kind for p, spec in walk(root)}
                self._kinds_of = root
            kind = self._kinds.get(path, "group" if not path else "unknown")
        return self._mask(path), kind


_FAILED: Final = frozenset({"failed", "timeout", "killed"})
