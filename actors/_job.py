"""The job actor: runs attempts of one job's work in a run mode (once, service, periodic)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import logbook
from pykka._envelope import Envelope

from actors._attempt import Attempt, current_attempt_var
from actors._checks import MAX_DURATION, fmt_duration, need, need_count, need_duration
from actors._command import leader_of, signal_attempt
from actors._errors import AttemptTimeout, ChildKilled, JobvisorError, SpecError, describe
from actors._messages import AttemptDone, ChildExit, ChildStarted, Resumed, Waiting
from actors._ref import OwnMessage
from actors._retry import RetrySpec, run_with_retry
from actors._runtime import (
    DueKill,
    Scheduler,
    TimerHandle,
    active_runtime,
    interrupt_later,
    interrupt_task,
)
from actors._supervised import Kill, OwnActor
from actors._taken import taken_before

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors._attempt import LineCut, OutputOpener, ReadyCheck, Work
    from actors._breaker import Breaker, Permit

__all__ = [
    "JobActor",
    "Schedule",
    "close_work",
    "cron_delay",
    "first_tick",
    "missed_tick",
    "no_process",
    "tick_delay",
]

log = logbook.Logger("actors.job")


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When a job's attempts run and how long each may take.

    Exactly one mode holds: once (the default), ``service`` (runs until
    stopped; returning is a failure) or periodic (``every`` seconds, ``times``
    attempts if set). A periodic job may be ``persistent`` (systemd's
    ``Persistent=``: a tick missed while jobvisor was not running is run once
    at the next start, see ``missed_tick``) and have a ``jitter`` (systemd's
    ``RandomizedDelaySec=``: each tick waits a random part of it, see
    ``tick_delay``).
    """

    service: bool = False
    every: float | None = None
    times: int | None = None
    cron: str | None = None  # "m h dom mon dow", local time
    timeout: float | None = None
    # Out of the repr, which is a job's spec hash in the journal (``run --resume``): a field
    # added to it made every journaled hash stale, and each once job ran again.
    persistent: bool = field(default=False, repr=False)
    jitter: float | None = field(default=None, repr=False)  # seconds; None: none set

    def __post_init__(self) -> None:
        modes = [
            m
            for m, on in (
                ("service", self.service),
                ("every", self.every is not None),
                ("cron", self.cron is not None),
            )
            if on
        ]
        need(isinstance(self.service, bool), "service", "true or false", self.service)
        if len(modes) > 1:
            both = f"both {modes[0]} and {modes[1]}"
            raise SpecError(field=modes[1], expected="one run mode", got=modes, about=both)
        if self.cron is not None:
            _check_cron(self.cron)
        if self.every is not None:
            need_duration(self.every, "every", positive=True)
        if self.times is not None:
            self._need_periodic("times", self.times)
            need_count(self.times, "times", 1)
        if self.timeout is not None:
            need_duration(self.timeout, "timeout", positive=True)
        if self.persistent is not False:
            need(isinstance(self.persistent, bool), "persistent", "true or false", self.persistent)
            self._need_periodic("persistent", self.persistent)
        if self.jitter is not None:
            self._need_periodic("jitter", self.jitter)
            need_duration(self.jitter, "jitter")
            if self.every is not None and self.jitter >= self.every:
                raise SpecError(
                    field="jitter",
                    expected=f"a jitter shorter than every ({fmt_duration(self.every)}): each "
                    "tick's delay must end before the next tick is due",
                    got=self.jitter,
                )

    def _need_periodic(self, key: str, value: object) -> None:
        if not self.periodic:
            mode = "service" if self.service else "once"
            raise SpecError(
                field=key,
                expected=f"{key} only on a periodic job (every or cron)",
                got=value,
                about=f"it on a {mode} job",
            )

    @property
    def periodic(self) -> bool:
        return self.every is not None or self.cron is not None

    @property
    def finite(self) -> bool:
        """Once-jobs and periodic jobs with ``times`` end by themselves."""
        return not self.service and (not self.periodic or self.times is not None)


def first_tick(schedule: Schedule, now: float, last: float | None = None) -> float:
    """When a periodic job started at wall time ``now`` ticks first, as ``JobActor`` does:
    one ``every`` later, or at the cron expression's next time.

    ``last``: a persistent job's last tick (its start) before this start, from the journal.
    An ``every`` job's ticks then go on from it (anacron's rule: one interval after the last
    run), never more than an interval ahead of ``now``; one that missed its tick catches up
    at ``now`` (``missed_tick``), and its ticks go on from there.
    """
    if schedule.cron is not None:
        return now + cron_delay(schedule.cron, now)
    every = schedule.every
    assert every is not None
    if schedule.persistent and last is not None and last + every > now:
        return min(last, now) + every
    return now + every


def missed_tick(schedule: Schedule, last: float | None, now: float) -> float | None:
    """The wall time of the tick a persistent job missed while jobvisor was not running, to
    run once at its start at ``now``; None when there is none to run.

    ``last`` is its last tick's start (the newest attempt the journal has of it). Missed:
    its schedule says it should have fired after ``last`` and by ``now``: for ``every``,
    ``every`` after ``last`` (the last of such times is returned: one catch-up, never one per
    tick missed, as systemd); for ``cron``, its previous time at or before ``now``. A job
    that never ticked (``last`` None: a first start, or a journal that lost its rows) has nothing
    to catch up, as a systemd timer without a stamp; nor has one that is not persistent.
    """
    if not schedule.persistent or last is None or last > now:
        return None
    if schedule.cron is not None:
        fired = _next_fire(schedule.cron, now, back=True)
        # A tick woken a little before its time (_CRON_EARLY) started before the time it was.
        return fired if fired is not None and fired > last + _CRON_EARLY else None
    every = schedule.every
    assert every is not None
    if now - last < every:
        return None
    return last + every * ((now - last) // every)


def tick_delay(schedule: Schedule, rand: Callable[[], float]) -> float:
    """How long one tick waits after its time: ``jitter`` times a draw of ``rand`` in [0, 1).

    Drawn anew for each tick; ``rand`` is not called without a jitter (it may be a tree's
    one source, whose backoff draws must not move).
    """
    jitter = schedule.jitter
    return jitter * rand() if jitter else 0.0


def upcoming_tick(schedule: Schedule, tick: float, now: float) -> float:
    """The first tick after wall time ``now``, given one due at wall time ``tick``, as
    ``JobActor`` schedules them: at a fixed rate from it, or at the cron expression's times."""
    if tick > now:
        return tick
    if schedule.cron is not None:
        return now + cron_delay(schedule.cron, now)
    assert schedule.every is not None
    return fixed_rate(tick, schedule.every, now)


def fixed_rate(first: float, every: float, now: float) -> float:
    """The first tick after ``now`` of those every ``every`` from ``first`` (or ``first`` itself,
    still to come); missed ticks are not replayed."""
    return first + every * (int((now - first) // every) + 1) if now >= first else first


def cron_delay(expr: str, now: float) -> float:
    """Seconds from wall time ``now`` to the next time ``expr`` fires, in local time.

    ``MAX_DURATION`` when croniter finds no next time: a spec refuses such an
    expression (``_check_cron``), so this is a defence only, and a job's thread
    (or the scheduler's) must not fail on it at every tick.
    """
    upcoming = _next_fire(expr, now)
    if upcoming is None:
        if expr not in _NEVER_FIRES:
            _NEVER_FIRES.add(expr)
            log.error(
                "cron expression {!r} has no next time: its next tick waits {}",
                expr,
                fmt_duration(MAX_DURATION),
            )
        return MAX_DURATION
    return min(MAX_DURATION, max(0.0, upcoming - now))


_NEVER_FIRES: set[str] = set()  # expressions already said to have no next time
_CRON_PIECE: Final = (
    10.0  # seconds: a cron tick's wait comes in pieces, the wall clock read at each
)
_CRON_EARLY: Final = 0.05  # a wake this close before a cron tick's wall time is the tick


def _next_fire(expr: str, now: float, *, back: bool = False) -> float | None:
    """The wall time after ``now`` when ``expr`` fires next (local time); None if never.
    ``back``: the one at or before ``now`` when it fired last instead.

    Reckoned on the local wall clock (naive times), each candidate turned into a moment by
    the C library's rules of the process's zone (``mktime``, ``TZ`` or /etc/localtime), not
    with the UTC offset of ``now``: across a DST change that ran a job an hour off, or twice.
    A time that comes twice (autumn) fires at its first coming only; one that never comes
    (spring) fires as the C library reads it, an hour on (02:30 -> 03:30).
    """
    from datetime import datetime, timedelta  # noqa: PLC0415 - only cron jobs need these

    from croniter import CroniterBadDateError, croniter  # noqa: PLC0415

    start = datetime.fromtimestamp(now)  # noqa: DTZ006 - local wall time
    if back:  # from a second on: a time of ``now`` itself is at or before it
        start = (start + timedelta(seconds=1)).replace(microsecond=0)
    try:
        times = croniter(_CRON_NICKNAMES.get(expr.strip().lower(), expr), start)
        step = times.get_prev if back else times.get_next
        for _ in range(_DST_CANDIDATES):
            at = time.mktime((*step(datetime).timetuple()[:8], -1))
            if (at <= now) if back else (at > now):
                return at
    except (CroniterBadDateError, OverflowError, ValueError):
        return None
    return None


_DST_CANDIDATES: Final = 4  # candidates a repeated hour can put at or before ``now``


_CRON_FIELDS: Final = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat"),
)


# crontab(5)'s nicknames (its @reboot aside: a job without cron already runs at every start).
_CRON_NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _check_cron(expr: object) -> None:
    """Refuse a cron expression that is not 5 valid fields, naming the field that is not."""
    from croniter import croniter  # noqa: PLC0415 - only manifests with cron pay for the import

    if isinstance(expr, str) and expr.strip().startswith("@"):
        nickname = expr.strip().lower()
        if nickname in _CRON_NICKNAMES:
            return
        if nickname == "@reboot":
            raise SpecError(
                field="cron",
                expected="a time to run at (a job without cron runs once at every start: "
                "leave cron out)",
                got=expr,
            )
        raise SpecError(
            field="cron",
            expected=f"one of {', '.join(_CRON_NICKNAMES)} or 5 fields 'm h dom mon dow'",
            got=expr,
        )
    shape = "a cron expression of 5 fields 'm h dom mon dow' (or @daily, @hourly, ...)"
    need(isinstance(expr, str) and len(expr.split()) == 5, "cron", shape, expr)
    assert isinstance(expr, str)
    if croniter.is_valid(expr):
        # Valid fields may still name a date that never comes (31 February): croniter looks
        # 50 years ahead, more than any cron expression's cycle (28 years).
        if _next_fire(expr, time.time()) is None:
            raise SpecError(
                field="cron",
                expected="a cron expression that fires",
                got=expr,
                about=f"{expr!r}, which never does",
            )
        return  # one check for a good one: a manifest may hold thousands
    fields = expr.split()
    for i, (name, values) in enumerate(_CRON_FIELDS):
        alone = " ".join(fields[i] if j == i else "*" for j in range(5))
        what = f"a cron {name} of {values} (field {i + 1} of 'm h dom mon dow', here {fields[i]!r})"
        need(bool(croniter.is_valid(alone)), "cron", what, fields[i])
    need(bool(croniter.is_valid(expr)), "cron", shape, expr)  # each field alone was fine


_RUN = OwnMessage("run")
_TICK = OwnMessage("tick")


# How long an attempt may leave alone the output file the attempt before it kept open (a
# restart in place) before it is closed: a crash loop's next attempt writes within it.
OUTPUT_LINGER: Final = 1.0


class InPlacePermit(Protocol):
    """A supervisor's permit to restart a job's incarnation in place (``supervision._inplace``)."""

    def __call__(self, report: ChildExit, actor: JobActor) -> bool:
        """Go on as the next incarnation? True: ``report`` is the supervisor's, to tell."""

    def tell_due(self) -> float | None:
        """The next command started: tell what is due, or say in how many seconds to ask again."""

    def flush(self) -> None:
        """Tell the supervisor every report kept back, now."""


class JobActor(OwnActor):
    """Runs the attempts of one job incarnation and reports each of them.

    Once: one attempt, then exit with its outcome. Service: one attempt that
    must not return; with a ``ready`` probe it reports started only once the
    probe passes. Periodic (``every`` or ``cron``): an attempt per tick; a
    tick that comes while the previous attempt still runs is skipped and
    logged; a failed attempt ends the incarnation so the supervisor's policy
    applies; the ``times``-th attempt ends it with success.

    With a ``breaker``: while it is open no attempt runs, the job tells its
    supervisor it is waiting, and a failure that opens it does not end the
    incarnation (so it burns no restart). A waiting job asks again when the
    breaker says (a periodic one's tick moves there), in the breaker's queue
    for the trial call, and tells its supervisor each time when that is.
    """

    def __init__(
        self,
        work: Work,
        schedule: Schedule,
        *,
        path: str,
        scheduler: Scheduler,
        attempts_done: int = 0,
        wall_clock: Callable[[], float] = time.time,
        retry: RetrySpec | None = None,
        breaker: Breaker | None = None,
        ready: ReadyCheck | None = None,
        output: OutputOpener | None = None,
        cut: LineCut | None = None,
        again: InPlacePermit | None = None,
        grace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        catch_up: bool = False,
        last_tick: float | None = None,
        on_tick: Callable[[bool], None] | None = None,
    ) -> None:
        super().__init__()
        # Called in this thread as each tick starts (True) and ends; it never raises. The
        # status reads a tick in flight from ``_attempt`` when asked; the metrics, which never
        # ask, are told.
        self._ticked = on_tick
        # A periodic job's timers: ``clock`` is the scheduler's (a test's manual clock moves
        # both), ``rand`` draws each tick's delay in its ``jitter`` (``tick_delay``).
        self._clock = clock
        self._rand = rand
        # A persistent job's first start, as its supervisor read the journal: run a tick it
        # missed now (``catch_up``), or go on from its last tick (wall time), an every job's
        # ticks an interval after it (``first_tick``).
        self._catch_up = catch_up
        self._last_tick = last_tick
        # How long work that cannot be stopped from outside (a python thread) has to end by
        # itself after its timeout asked it to (attempt.cancelled), before it is killed: its
        # stop grace, as a stop gives it. 0: killed at once.
        self._grace = grace
        self._due_kill: DueKill | None = None  # that kill, while it is to come
        # The exit report of a timed-out call that ends on its cancel, due with that kill.
        self._due_report: TimerHandle | None = None
        # Asked when the incarnation would end: may it go on as the next one at once (its
        # supervisor's permit, ``supervision._inplace``)? None: every end is reported.
        self._again = again
        self._started = self._work_started if again is not None else None
        self._spawned = False  # the attempt's command started (its ``Attempt.started`` came)
        # Work that runs none of the user's Python (a command) fails with our frames only.
        self._own_frames = bool(getattr(work, "pooled_thread", False))
        self.output = output  # where a command's output also goes: see Attempt.output
        self.cut = cut  # where a long line of it may be cut: see Attempt.cut
        self.work = work
        self.schedule = schedule
        self.path = path
        self.retry = retry if retry is not None and retry.attempts > 1 else None
        self.breaker = breaker
        self.ready = ready
        if ready is not None:
            self._jv_auto_started = False  # started is reported by the probe
        else:
            # on_start only queues the first run or arms the first tick: an immediate restart
            # is counted started in the supervisor's own turn (no ChildStarted message).
            self._jv_trivial_on_start = True
        self._scheduler = scheduler
        self._wall = wall_clock
        self._jv_attempts = attempts_done
        self._attempt: Attempt | None = None  # set while an attempt runs, read by other threads
        # The one tick timer: the scheduler's thread re-arms it after each tick, the actor's
        # moves it to when its breaker says to ask again; under the lock, so never two.
        self._tick_lock = threading.RLock()
        self._tick_timer: TimerHandle | None = None
        self._tick_seq = 0  # which arming is the live one: a tick that fires for another is void
        self._tick_due = 0.0  # monotonic time of the grid's next tick, that later ones follow
        self._next_tick_at: float | None = None  # wall time of the next tick, for the status
        self._grid_at: float | None = None  # a cron job's: wall time of that tick, undelayed
        self._skipped = 0  # ticks skipped behind the attempt running (under the tick lock)
        self._recheck: TimerHandle | None = None
        self._deadline: TimerHandle | None = None
        self._waiting = False
        self._trial_failed = False  # the last attempt was a half-open breaker's trial, and failed
        # The breaker's permit for the call under way: one token, taken by whichever thread
        # ends the call first (its own, a timeout's, a kill's), so it is counted or given back
        # exactly once. Empty: no call holds one.
        self._permit: list[Permit] = []
        # The permit is a half-open breaker's trial: the attempt makes one call, no retries
        # (pybreaker and Polly let one call through; every retry was a call to a service the
        # breaker holds to be down).
        self._trial = False
        # Only a probe needs it: an Event made and set on every restart is 4 µs for nothing.
        self._probe_cancel = threading.Event() if ready is not None else None

    def _jv_pool(self) -> str | None:
        # A command's incarnations may share their tree's pool of threads (see CommandWork).
        if not getattr(self.work, "pooled_thread", False):
            return None
        # Thread names are jv-TREE-PATH (start_incarnation): the pool is the tree's prefix, the
        # one its stop joins (supervision._abandon), so that stop retires the pool too.
        tree = self._jv_thread_name.split("-", 1)[0]
        return f"jv-{tree}-"

    # -- pykka hooks (actor thread) --------------------------------------------------------------

    def on_start(self) -> None:
        if self.ready is not None:
            taken = taken_before(self.ready)
            if taken is not None:
                log.warning(
                    "{}: something already answers at {}, where its readiness probe looks, "
                    "before it started: another process (a copy of it left running?) may hold "
                    "that address, and the probe pass without it",
                    self.path,
                    taken,
                    extra={"path": self.path},
                )
            probe = threading.Thread(
                target=self._probe, name=f"jv-{self._jv_thread_name}-ready", daemon=True
            )
            probe.start()
        if self.schedule.periodic:
            first = self._clock()
            if self._catch_up:
                self.actor_inbox.put(_envelope(_TICK))  # its ticks go on from this one
            elif self._last_tick is not None and self.schedule.every is not None:
                first -= max(0.0, self._wall() - self._last_tick)
            self._next_tick(first)
        else:
            self.actor_inbox.put(_envelope(_RUN))

    def on_stop(self) -> None:
        if self._probe_cancel is not None:
            self._probe_cancel.set()
        with self._tick_lock:  # the scheduler's thread may be re-arming the tick right now
            timers = (self._tick_timer, self._recheck)
        for timer in timers:
            if timer is not None:
                timer.cancel()
        if self._jv_stop_requested:
            # Stopped (by a person, a shutdown or a group restart): let go of what the work
            # keeps between attempts (an http job's pooled connections); a start reopens them.
            close_work(self.work, self.path)

    def _actor_loop_teardown(self) -> None:
        # However the incarnation ended, what it holds elsewhere (a Ray actor) goes with it,
        # its output file (a Kill between its attempts), and its place in its breaker's queue
        # (it would hold up the next trial a turn).
        try:
            self._output_done()
            _release(self.work)
            if self.breaker is not None:
                self.breaker.dequeue(self)
        finally:
            super()._actor_loop_teardown()

    def on_receive(self, message: Any) -> Any:
        if message is _RUN:
            # A restart in place queues its run; a stop asked meanwhile is queued too, and wins.
            if not self._jv_stop_requested and self._gate():
                self._run_once_or_service()
        elif message is _TICK and self._gate():
            self._run_tick()
        return None

    # -- modes -----------------------------------------------------------------------------------

    # What ends an incarnation, as facts: a stop asked, or the attempt's error; a service
    # that returns and every other meaning is for the supervisor's classification.

    def _output_done(self) -> None:
        """The attempts no longer follow each other at once: the output file they kept open
        goes (the next attempt opens it again)."""
        if self.output is not None:
            self.output.close()

    def _run_once_or_service(self) -> None:
        while True:
            # The attempt's end is the child's: its report goes with the exit report.
            error, code = self._run_attempt(with_exit=True)
            if self._jv_stop_requested:
                # The work ended because we cancelled it: the stop's own error is gone already
                # (``_run_attempt``); one of its own stays, as in its attempt's report.
                self._output_done()  # before the exit report, as the attempt's own end did
                self._jv_finish(error, code)
            elif self.breaker is not None and self._waits_for_breaker(error):  # most have none
                self._output_done()
                self._send_attempt_report()  # the child lives on, waiting for its breaker
                self._wait_for_breaker(error, code)
            elif not self._restarted_in_place(error, code):
                self._output_done()
                self._jv_finish(error, code)
            elif self._jv_stop_requested:
                # Restarted in place, and a stop came: it ends the next incarnation unrun.
                self._output_done()
            elif not self.actor_inbox.empty():
                self._output_done()
                self.actor_inbox.put(_envelope(_RUN))  # the next run goes behind what waits
            else:
                # The next incarnation's run, now (a permit means no breaker to ask), its
                # output file still open.
                continue
            return

    def _restarted_in_place(self, error: BaseException | None, code: int | None) -> bool:
        """Go on as the next incarnation if the supervisor's permit says it would restart now.

        The exit report goes to the supervisor all the same (with its decision), once the
        next command has started: the supervisor's turn then runs while the command does,
        not before it. A stop asked meanwhile still ends the next one: ``_run_attempt``
        cancels an attempt made after it, and a queued run never starts after it.
        """
        again = self._again
        if again is None or not self._spawned or self._jv_error is not None or self._jv_killed:
            # A command that could not start goes through the supervisor: it restarts without
            # waiting for anything, and under gevent a loop of them would never yield.
            return False
        link = self._jv_link
        report = ChildExit(
            link.key,
            link.incarnation,
            error,
            code,
            attempts=self._jv_attempts,
            attempt=self._jv_attempt_report,
        )
        if not again(report, self):
            return False
        self._jv_attempt_report = None
        return True

    def _run_tick(self) -> None:
        # A tick that ends the incarnation (it failed, it was the last, a stop came) is told
        # with the exit, one report as a once-job's: its failure is then said once, by the exit.
        ticked = self._ticked
        if ticked is None:
            error, code = self._run_attempt(with_exit=True)
        else:
            ticked(True)  # noqa: FBT003 - the hook's one argument: a tick runs
            try:
                error, code = self._run_attempt(with_exit=True)
            finally:
                # Before its report: whoever hears of its end finds it over.
                ticked(False)  # noqa: FBT003 - as above
        self._output_done()  # a job between its ticks holds no file
        if self._jv_stop_requested:
            self._jv_finish(error)
        elif self._waits_for_breaker(error):
            self._send_attempt_report()  # it lives on, waiting for its breaker
            self._wait_for_breaker(error, code)
        elif error is not None:
            self._jv_finish(error, code)
        elif self.schedule.times is not None and self._jv_attempts >= self.schedule.times:
            self._jv_finish(None, code)
        else:
            self._send_attempt_report()  # it ticks on

    def _next_tick(self, first: float) -> None:
        now = self._clock()
        # Each tick waits its own draw after its time; the times themselves do not move.
        drawn = tick_delay(self.schedule, self._rand)
        if self.schedule.cron is not None:
            # A cron time is a wall time: waited for in pieces, the wall clock read after each
            # (a clock set back ran the tick early, then again; one set forward, late).
            wall = self._wall()
            grid = self._cron_next(wall)
            self._grid_at = grid
            wait = max(0.0, grid + drawn - wall)
            self._arm_tick(min(wait, _CRON_PIECE), now + max(0.0, grid - wall), at=grid + drawn)
            return
        every = self.schedule.every
        assert every is not None
        # Fixed rate from the first tick; the first comes one interval after the start.
        due = fixed_rate(first, every, now)
        self._arm_tick(due - now + drawn, due)

    def _arm_tick(self, delay: float, due: float, *, at: float | None = None) -> None:
        """The next tick in ``delay`` seconds (for a cron job: at wall time ``at``, looked at
        again then), and the ones after it from ``due`` on."""
        with self._tick_lock:
            if self._tick_timer is not None:
                self._tick_timer.cancel()
            self._tick_seq += 1
            seq = self._tick_seq
            self._tick_due = due
            self._next_tick_at = self._wall() + delay if at is None else at
            self._tick_timer = self._scheduler.call_later(delay, lambda: self._on_tick(due, seq))

    def _cron_next(self, now: float) -> float:
        """The wall time of the cron expression's next tick after wall time ``now``.

        After a tick its jitter delayed, the next time is the one after that tick's own (the
        grid does not move: a jitter longer than a gap of the expression's delays the next
        tick, never drops it), but none that even the longest delay would have run by now.
        """
        cron = self.schedule.cron
        assert cron is not None
        jitter, grid = self.schedule.jitter, self._grid_at
        after = now
        if grid is not None:
            # Never the tick just run again: its wake may come up to _CRON_EARLY before it.
            after = max(grid, now - jitter if jitter else now)
        return after + cron_delay(cron, after)

    def _on_tick(self, due: float, seq: int) -> None:
        """Scheduler thread: queue a tick unless the previous attempt still runs."""
        with self._tick_lock:
            if self.actor_stopped.is_set() or seq != self._tick_seq:
                return  # moved meanwhile: the tick it became is the live one
            at = self._next_tick_at
            if self.schedule.cron is not None and at is not None:
                left = at - self._wall()
                if left > _CRON_EARLY:  # a piece of the wait, or the wall clock was set back
                    self._arm_tick(min(left, _CRON_PIECE), due, at=at)
                    return
            running = self._attempt
            times = self.schedule.times
            if running is not None and times is not None and running.number >= times:
                pass  # the last attempt: no tick would run after it, none is skipped (h267)
            elif running is not None:
                # Said once an attempt, then counted: a job every 10 ms behind a one-second
                # attempt wrote a hundred lines a second.
                self._skipped += 1
                said = log.info if self._skipped == 1 else log.debug
                said(
                    "{}: tick skipped, attempt {} still running{}",
                    self.path,
                    running.number,
                    " (the next are counted, said once a tick runs)"
                    if self._skipped == 1
                    else f" ({self._skipped} so far)",
                    extra={"path": self.path, "attempt": running.number},
                )
            else:
                if self._skipped > 1:
                    log.info(
                        "{}: {} ticks skipped while attempt {} ran",
                        self.path,
                        self._skipped,
                        self._jv_attempts,
                        extra={"path": self.path},
                    )
                self._skipped = 0
                self.actor_inbox.put(_envelope(_TICK))
            self._next_tick(due)

    # -- breaker ---------------------------------------------------------------------------------

    def _gate(self) -> bool:
        """May an attempt run now? If the breaker says no, wait (and ask again later)."""
        breaker = self.breaker
        permit = breaker.allow(self) if breaker is not None else None
        if breaker is None or permit is not None:
            if permit is not None:
                self._permit = [permit]
                # The permit's own word: the breaker read now may have been reopened since.
                self._trial = permit.trial
            if self._waiting:
                self._waiting = False
                link = self._jv_link
                link.parent.tell(Resumed(link.key, link.incarnation))
            return True
        self._wait_for_breaker()
        return False

    def _breaker_opened(self) -> bool:
        return self.breaker is not None and self.breaker.status.state.value != "closed"

    def _waits_for_breaker(self, error: BaseException | None) -> bool:
        """Does the child live on, waiting, after this attempt: did its failure open the breaker?

        Not after a half-open breaker's trial (a failure like any other), nor after an attempt
        ended from outside: a timeout reported the incarnation's end already (waiting, it lived
        on unseen, and its next call took the trial's permit and kept it).
        """
        return (
            error is not None
            and self._jv_error is None
            and not self._jv_killed
            and not self._trial_failed
            and self._breaker_opened()
        )

    def _settle(self, ok: bool | None) -> bool:
        """End the call the breaker let through: ``ok``, or None for one we cancelled.

        A cancelled call has no outcome to count, but it is no longer in flight: its permit
        goes back. Returns True for a half-open breaker's trial that failed, whether its
        failure reopened the breaker or another trial's did first. Any thread.
        """
        breaker = self.breaker
        if breaker is None:
            return False  # most jobs: no exception raised and caught on every attempt
        try:
            permit = self._permit.pop()
        except IndexError:
            return False  # no call, or ended already by another thread
        if ok is None:
            breaker.release(permit)
            return False
        breaker.record(permit, ok=ok)
        return permit.trial and not ok

    def _wait_for_breaker(
        self, error: BaseException | None = None, code: int | None = None
    ) -> None:
        """Wait in the breaker's queue until it lets a call through, asking when it says.

        ``error``: the failure that opened it. The supervisor hears when the job asks next each
        time it is refused, since that moves (the breaker reopened, or refused it for now): its
        status says when, never a time gone by.
        """
        breaker = self.breaker
        assert breaker is not None
        delay = breaker.queue(self)
        if self.schedule.periodic:
            # Its next tick asks, then: at once when the breaker half-opens, in the queue with
            # the others; the ticks after it keep their times.
            with self._tick_lock:
                self._arm_tick(delay, self._tick_due)
        else:
            inbox = self.actor_inbox
            self._recheck = self._scheduler.call_later(
                delay, lambda: None if self.actor_stopped.is_set() else inbox.put(_envelope(_RUN))
            )
        link = self._jv_link
        still, self._waiting = self._waiting, True
        link.parent.tell(
            Waiting(
                link.key, link.incarnation, breaker.name, self._wall() + delay, error, code, still
            )
        )

    # -- readiness -------------------------------------------------------------------------------

    def _probe(self) -> None:
        """Probe thread: report started once ready, or fail the incarnation."""
        ready, cancel = self.ready, self._probe_cancel
        assert ready is not None
        assert cancel is not None
        try:
            ready.wait_ready(cancel)
        except Exception as exc:
            if not cancel.is_set() and not self.actor_stopped.is_set():
                self._fail_from_outside(exc, self._attempt)
            return
        link = self._jv_link
        link.parent.tell(ChildStarted(link.key, link.incarnation))

    # -- one attempt -----------------------------------------------------------------------------

    def _run_attempt(self, *, with_exit: bool = False) -> tuple[BaseException | None, int | None]:
        """Run one attempt; return what ended it (error, exit code) and report it.

        ``with_exit``: its report is kept for the exit report that follows (or
        sent by ``_send_attempt_report`` if the child lives on).
        """
        number = self._jv_attempts + 1
        attempt = Attempt(
            self.path,
            number,
            self._wall(),
            output=self.output,
            started=self._started,
            cut=self.cut,
        )
        self._spawned = False
        self._trial_failed = False
        self._unreported = [attempt]  # whoever pops it reports the attempt: once, from any thread
        timeout = self.schedule.timeout
        if timeout is not None:
            self._deadline = self._scheduler.call_later(timeout, lambda: self._on_deadline(attempt))
        self._attempt = attempt
        if self._jv_stop_requested:
            # The stop read no attempt to cancel (it came as this one was made): cancel it here.
            attempt.cancelled.set()
        token = current_attempt_var.set(attempt)
        error: BaseException | None = None
        code: int | None = None
        trial, self._trial = self._trial, False
        try:
            if self.retry is None or trial:
                code = self.work.run(attempt)
            else:
                code = run_with_retry(
                    self.retry,
                    self.work,
                    lambda: self.work.run(attempt),
                    attempt.cancelled,
                    on_retry=self._log_retry,
                )
        except Kill:
            error = AttemptTimeout(f"{self.path} attempt {number} was killed")
        except BaseException as exc:
            # Any other BaseException (a user's own, KeyboardInterrupt, GeneratorExit) is the
            # work's failure, as in a child process: its attempt is reported and the policy
            # applies. Only our Kill, caught above, is an end from outside. Told as itself
            # ("Type: message"), it comes as a ChildKilled the supervisor takes as an ordinary
            # failure (give_up_on still finds it: it is the cause).
            error = exc if isinstance(exc, Exception) else _killed_by(exc)
            code = getattr(exc, "code", None)
            code = code if isinstance(code, int) else None
            if self._own_frames:
                # Only our frames, which nobody reads; kept, they would hold this attempt's
                # frames in a reference cycle until the collector's next pass (a crash loop:
                # a collection every 40 restarts, about 5 µs a restart).
                exc.__traceback__ = None
        finally:
            current_attempt_var.reset(token)
            self._attempt = None
            # Most attempts have no timer to end: no call for them (a crash loop's restarts).
            overran = (
                0.0
                if self._due_kill is None and self._due_report is None and self._deadline is None
                else self._end_timers()
            )
        self._jv_attempts = number
        if self._jv_error is not None:
            # Ended from outside (timeout, readiness): reported there already, with no code. An
            # exit code now is our own stop's (a start never ready read `failed (-15)`, as if
            # someone had killed it, where its attempt, journaled, had none).
            return self._jv_error, None
        if self._jv_killed:
            return None, code  # killed from the supervisor's thread: reported there already
        if overran and not self._jv_stop_requested:
            # Its deadline came while it ran, and its timer could not: a call that never yields
            # (gevent) returns late. It timed out all the same, whatever it returned.
            return self._overran(attempt, overran, with_exit=with_exit), None
        # A stop we asked for is nothing for a breaker to count (its permit goes back). A trial
        # call that failed is a failure of the job's like any other (its restarts are counted
        # and end), where one that opened a closed breaker only makes it wait.
        # Most jobs have no breaker: nothing to settle, and no call.
        self._trial_failed = self.breaker is not None and self._settle(
            None if self._jv_stop_requested else error is None
        )
        error = self._not_the_stops(error, attempt) if self._jv_stop_requested else error
        self._report_attempt(attempt, error, code, with_exit=with_exit)
        return error, code

    def _not_the_stops(self, error: BaseException | None, attempt: Attempt) -> BaseException | None:
        """``error``, unless a stop asked ended the attempt with it (its own signal or
        cancellation, no error of the job's); what else it raised or exited with as it stopped
        (a flush that failed) is one, and is told. The SIGKILL at its grace's end is a kill."""
        if not _the_stops_own(error, self.work):
            return error
        if not _killed_past_grace(error, self.work):
            return None
        # Its own thread's SIGKILL at the grace's end came before the supervisor's kill, due at
        # the same time: told as that kill tells it (a Kill, -9), or the one event was `stopped
        # (-9)` or `killed` by which thread woke first.
        grace = getattr(self.work, "grace", None)
        log.warning(
            "{}: did not stop within {}s; killed",
            self.path,
            grace,
            extra={"path": self.path, "attempt": attempt.number},
        )
        self._jv_code = -signal.SIGKILL
        return Kill(f"{self.path} attempt {attempt.number} was killed")

    def _end_timers(self) -> float:
        """The attempt's call is over: its deadline and a kill its timeout left are off.

        Returns how many seconds past its deadline it returned without the deadline's timer
        having run (0.0 if none was).
        """
        due, self._due_kill = self._due_kill, None
        if due is not None:
            due.cancel()  # it ended within the grace its timeout gave it
        report, self._due_report = self._due_report, None
        if report is not None:
            report.cancel()  # it ended: its actor's end reports it
        deadline, self._deadline = self._deadline, None
        if deadline is None:
            return 0.0
        overran = deadline.overdue
        deadline.cancel()
        return overran

    def _report_attempt(
        self,
        attempt: Attempt,
        error: BaseException | None,
        code: int | None,
        *,
        with_exit: bool = False,
    ) -> None:
        """The one place an attempt's facts are made for the supervisor; told, or kept."""
        try:
            self._unreported.pop()
        except IndexError:
            return  # told already (killed from the supervisor's thread as it ended)
        link = self._jv_link
        report = AttemptDone(
            link.key,
            link.incarnation,
            attempt.number,
            error,
            attempt.started_at,
            self._wall(),
            code,
            self._jv_stop_requested,
            getattr(self.work, "placed_on", None),
            self._next_tick_at,
        )
        if with_exit:
            self._jv_attempt_report = report
        else:
            link.parent.tell(report)

    # -- its process, for status and signals (any thread; never blocks) ---------------------------

    @property
    def next_tick_at(self) -> float | None:
        """Wall time of the next tick as armed, its jitter's draw included (None until armed)."""
        return self._next_tick_at

    def _own_group(self) -> bool:
        """Whether an attempt runs in a process group of its own here: a command, or a python
        job with ``isolation: process`` (not one placed on Ray: its process is on a node)."""
        return no_process(self.work) is None

    def leader_pid(self) -> int | None:
        """The pid leading the running attempt's process group; None when none runs (or the
        work has no process of its own)."""
        attempt = self._attempt
        return leader_of(attempt) if attempt is not None and self._own_group() else None

    def send_signal(self, signum: int) -> bool:
        """Send ``signum`` to the running attempt's whole process group, as a person asked;
        False when none runs now (or the work has no process of its own: ``no_process``).

        Nothing else changes: no stop, nothing counted; what the group does on it is its own.
        """
        attempt = self._attempt
        return attempt is not None and self._own_group() and signal_attempt(attempt, signum)

    def _send_attempt_report(self) -> None:
        report, self._jv_attempt_report = self._jv_attempt_report, None
        if report is not None:
            self._jv_link.parent.tell(report)

    def _log_retry(self, number: int, exc: BaseException, delay: float) -> None:
        if delay > 0:
            self._output_done()  # a job waiting for its retry holds no file
        attempt = self._attempt
        log.info(
            "{}: try {} failed ({}); retrying in {:.3f}s",
            self.path,
            number,
            _with_class(exc),
            delay,
            extra={"path": self.path, "attempt": attempt.number if attempt else None},
        )

    def _on_deadline(self, attempt: Attempt) -> None:
        """Scheduler thread: the attempt ran out of time; fail it now, then stop its work.

        Not when a stop was asked before: it is ending the attempt already, with its grace
        and its kill, and a stop is never a failure (a shutdown's was a ``timeout``).
        """
        if self._attempt is not attempt or self._jv_stop_requested:
            return
        self._fail_from_outside(self._timed_out(attempt), attempt, grace=self._grace)

    def _timed_out(self, attempt: Attempt, why: str = "") -> AttemptTimeout:
        """The error of ``attempt`` ended by its timeout, told as a manifest writes it: 700ms
        was ``timed out after 0.7000000000000001s`` in the log, the status and the journal."""
        timeout = self.schedule.timeout
        assert timeout is not None  # only an attempt with a deadline times out
        told = f"{self.path} attempt {attempt.number} timed out after {fmt_duration(timeout)}"
        return AttemptTimeout(f"{told}: {why}" if why else told)

    def _overran(self, attempt: Attempt, overran: float, *, with_exit: bool) -> AttemptTimeout:
        """Actor's thread: ``attempt`` returned ``overran`` seconds after its deadline, which
        nothing could act on meanwhile; it is failed as the deadline would have failed it."""
        how = (
            "and never yielded to gevent (a loop, or a C call gevent does not make "
            "cooperative), so its timeout could not fire before it returned"
            if active_runtime() == "gevent"
            else "and returned before its timeout was acted on"
        )
        error = self._timed_out(attempt, f"it overran it by {overran:.1f}s {how}")
        self._jv_error = error
        self._settle(ok=False)
        self._report_attempt(attempt, error, None, with_exit=with_exit)
        return error

    def _fail_from_outside(
        self, error: BaseException, attempt: Attempt | None, *, grace: float = 0.0
    ) -> None:
        """Another thread ends this incarnation at once; the running work is stopped after.

        ``grace``: how long work that cannot be stopped from outside has, once asked to end
        (``attempt.cancelled``), before it is killed, as a stop gives it (0: killed now). Its
        end is reported at once either way.
        """
        if self._jv_error is not None or self._jv_killed:
            return
        self._jv_error = error
        self._settle(ok=False)
        if attempt is not None:
            self._jv_attempts = attempt.number
            self._report_attempt(attempt, error, None)
        # Work that stops itself on cancel (a command: stop signal, then SIGKILL after its
        # grace) keeps that grace, and the exit is reported once it has really ended, so a
        # restart never runs beside the old process. Anything else (python code) is
        # interrupted and reported now: its thread may not come back. A coroutine call ends
        # on its cancel (its finally, asyncio.run's cleanup): reported once it has, or at
        # the kill its grace ends with, so no restart's loop runs beside that cleanup.
        stops_itself = getattr(self.work, "kill", None) is not None
        ends_on_cancel = getattr(self.work, "ends_on_cancel", None)
        waits = (
            grace > 0 and attempt is not None and bool(ends_on_cancel and ends_on_cancel(attempt))
        )
        if not stops_itself and not waits:
            self._jv_report()
        task = self._jv_task if not stops_itself and self._jv_running else None
        if task is not None and grace > 0 and attempt is not None:
            # Armed before the cancel: work that ends at once on it finds the kill to call off
            # (``_end_timers``).
            self._due_kill = interrupt_later(self._scheduler, grace, task, Kill, self._jv_slot)
            if waits:
                self._due_report = self._scheduler.call_later(grace, self._jv_report)
            task = None
        if attempt is not None:
            attempt.cancelled.set()
            self._cancel_work(attempt)
        if task is not None:
            interrupt_task(task, Kill, self._jv_slot)

    def _cancel_work(self, attempt: Attempt) -> None:
        try:
            self.work.cancel(attempt)
        except Exception as exc:
            log.warning("{}: cancelling attempt {} failed: {}", self.path, attempt.number, exc)

    def _work_started(self) -> float | None:
        """The attempt's command has started (or still runs): restarts in place may be told.

        Returns when to be called again if their reports are kept a while (``InPlace.tell_due``),
        or to let go of the output file the attempt before kept open (``OUTPUT_LINGER``).
        """
        self._spawned = True
        again = self._again
        assert again is not None
        due = again.tell_due()
        output = self.output
        if output is None:
            return due
        since = output.idle_since
        if since is None:
            return due
        # A file an attempt before kept open, and this one has not written to it: let it go
        # once no attempt has begun writing to it for OUTPUT_LINGER (a service that runs on
        # quietly, or quiet attempts in a row), or a file logrotate moved away and deleted
        # stays held, its space not freed.
        left = since + OUTPUT_LINGER - time.monotonic()
        if left <= 0:
            output.close()
            return due
        return left if due is None or left < due else due

    def _jv_report(self) -> None:
        # An exit report kept back by a restart in place goes first: reports stay in order.
        if self._again is not None:
            self._again.flush()
        super()._jv_report()

    # -- supervisor's thread ---------------------------------------------------------------------

    def _jv_kill(self) -> None:
        # Work blocked in a system call only sees the thrown Kill once the call returns:
        # let it end its own work at once first (a command SIGKILLs its process group).
        attempt = self._attempt
        kill = getattr(self.work, "kill", None)
        if attempt is not None:
            # Its own thread never reports it now (killed, or abandoned): it is journaled
            # (SPEC §6: every attempt) as killed, here. A process group of its own gets SIGKILL
            # just below: its code says so, in the history and the status, as a stop's signal.
            self._jv_killed = True
            code = -signal.SIGKILL if kill is not None and self._own_group() else None
            if code is not None:
                self._jv_code = code
            killed = Kill(f"{self.path} attempt {attempt.number} was killed")
            self._report_attempt(attempt, killed, code)
        if attempt is not None and kill is not None:
            attempt.cancelled.set()
            try:
                kill(attempt)
            except Exception as exc:
                log.warning("{}: killing attempt {} failed: {}", self.path, attempt.number, exc)
        _release(self.work)
        self._settle(None)  # killed after a stop: its call, if any, is over uncounted
        super()._jv_kill()

    def _jv_request_stop(self) -> None:
        super()._jv_request_stop()
        if self._probe_cancel is not None:
            self._probe_cancel.set()
        attempt = self._attempt
        if attempt is not None:
            attempt.cancelled.set()
            self._cancel_work(attempt)


def no_process(work: Work) -> str | None:
    """Why ``work``'s attempts have no process of their own here to signal (``is an http job:
    ...``, after the job's path); None when each runs in a process group of its own: a command,
    or a python job with ``isolation: process`` (not one placed on Ray: its process is on a node).
    """
    kind = work.kind
    if getattr(work, "placed_on", False) is not False:  # RayWork has it, None or a node
        return "is placed on Ray: its process runs on a node, not signalled from here"
    if kind == "command" or getattr(work, "isolation", None) == "process":
        return None
    if kind == "python":
        return (
            "is a python job run in a thread (isolation: thread): it has no process of its own "
            "to signal"
        )
    article = "an" if kind[:1] in "aeiouh" else "a"  # an http job
    return f"is {article} {kind} job: it has no process of its own to signal"


def _with_class(exc: BaseException) -> str:
    """``describe``'s text (cut as it cuts it), always after its class: ``HttpRequestError: ..``.

    A python job's exception from its child process or a Ray node is told as it was raised
    there, its first line: its text is ``Type: message`` and the traceback (a retry's line
    said ``PythonError: ConnectionError: refused`` and the whole traceback, h249).
    """
    if getattr(exc, "failure_names", None) is not None:  # PythonError, RemoteError
        return describe(exc).split("\n", 1)[0]
    text = describe(exc)
    return f"{type(exc).__name__}: {text}" if isinstance(exc, JobvisorError) else text


_CANCELLED: Final = (asyncio.CancelledError, concurrent.futures.CancelledError, Kill)
_GIVEN_UP: Final = {("actors._ray", "PlacementCancelled"), ("actors._ready", "NotReady")}


def _the_stops_own(error: BaseException | None, work: object) -> bool:
    """Did a stop's own doing end the attempt with ``error``: its signal (``stop_signal``, or
    SIGKILL after the grace: as ``-N`` or a shell's ``128+N``), a cancellation, or one of our
    own works' ends on cancel (an aborted request, a placement or readiness wait given up)?

    A user's exception, or an exit status of its own, is not: a failure while stopping.
    """
    if error is None:
        return True
    seen = error.__cause__ if isinstance(error, ChildKilled) else error
    if isinstance(seen, _CANCELLED):
        return True
    # Our works' own ends on cancel; by their modules as loaded (one not loaded raised none):
    # a stopped command does not load the http and Ray kinds.
    kind = type(error)
    if (kind.__module__, kind.__name__) in _GIVEN_UP:
        return True
    if (kind.__module__, kind.__name__) == ("actors._http", "HttpRequestError"):
        return getattr(error, "reason", None) in ("cancelled", "connection")
    code = getattr(error, "code", None)
    if not isinstance(error, JobvisorError) or not isinstance(code, int):
        return False
    signals = {int(getattr(work, "stop_signal", signal.SIGTERM)), int(signal.SIGKILL)}
    return -code in signals or code - 128 in signals


def _killed_past_grace(error: BaseException | None, work: object) -> bool:
    """Did the SIGKILL that follows a stop's grace end the attempt? ``error`` is one
    ``_the_stops_own`` took; a job whose ``stop.signal`` is KILL was only stopped by it, and
    one SIGKILLed by someone else during its stop (a person's kill -9) was not killed past
    its grace (r57)."""
    return (
        getattr(error, "past_grace", False)
        and getattr(error, "code", None) == -signal.SIGKILL
        and int(getattr(work, "stop_signal", signal.SIGTERM)) != int(signal.SIGKILL)
    )


def _killed_by(exc: BaseException) -> ChildKilled:
    """The failure a ``BaseException`` of the work's own makes, said as ``describe`` says it."""
    killed = ChildKilled(describe(exc))
    killed.__cause__ = exc
    return killed


def _envelope(message: object) -> Any:
    # Not imported inside: an import statement costs a microsecond on every start.
    return Envelope(message)


def _release(work: object) -> None:
    """Call the work's optional ``release()``: its incarnation is over (a placed job's runner)."""
    release = getattr(work, "release", None)
    if release is not None:
        try:
            release()
        except Exception as exc:  # a runner that cannot be killed is gone with its node
            log.warning("releasing placed work failed: {}", exc)


def close_work(work: object, path: str) -> None:
    """Call the work's optional ``close()``; a failure there is logged, never a failed stop."""
    close = getattr(work, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:  # any error of a hook is reported, not raised
        log.warning("{}: closing its work failed: {}", path, exc, extra={"path": path})
