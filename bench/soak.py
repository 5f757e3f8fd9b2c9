"""Soak: run a chaos manifest for a while; watch restarts, their latency, memory, fds and threads.

The manifest (``bench/chaos.yaml`` by default) goes through the composition
root ``jobvisor run`` uses (``supervision.compose``: logging to a file,
breakers, the journal), in this process, with an ``on_event`` subscriber that
reads the supervisors' typed events. A local HTTP fault server runs in its own
process (``bench/_chaos.py serve``) so its sockets and threads stay out of the
figures; its port reaches the manifest as ``${CHAOS_PORT}``.

Every ``--interval`` seconds one line: restarts and restarts per second,
failures, p50/p99 restart latency (from the end of a child's failed attempt to
its replacement ``running``) and its overhead (that latency minus the backoff
the supervisor chose), RSS, open fds, threads (OS/Python, or OS/greenlets under
gevent), live descendant processes, this process's CPU and the latency of
``Tree.status()``. At the end a summary: totals, whole-run percentiles (also
per job), RSS/fd/thread first/last/max and whether each grew steadily after
the warm-up, how the stop went and what it left behind, the journal's rows
against the events, and the log's warnings and errors by kind.

Exit code 1 when the run shows a defect: a process, thread or fd left behind,
steady growth, a failure never followed by a restart, a journal that lost
attempts, or a log record that should not happen (a traceback, a refused
transition); else 0.

    python bench/soak.py [--runtime threads|gevent] [--duration 60] [--interval 5]
                         [--seed 1] [--manifest bench/chaos.yaml]
                         [--log-level information] [--no-journal] [--keep] [--tracemalloc]
"""

from __future__ import annotations

from _common import install, machine, runtime_from_argv

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import logbook  # noqa: E402

from supervision import (  # noqa: E402
    AttemptFinished,
    BreakerChanged,
    ChildExited,
    CooldownStarted,
    Escalated,
    GaveUp,
    JobvisorError,
    ManifestError,
    ProbationPassed,
    RestartScheduled,
    State,
    StateChanged,
    Tree,
    load_manifest,
)
from supervision._app import Composition, compose  # noqa: E402
from supervision._table import flatten_status  # noqa: E402

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024
STUCK_AFTER = 5.0  # a failure with no replacement running after this long is a lost restart
_RELAUNCH_FROM = frozenset({State.BACKOFF, State.COOLDOWN})
_UP = frozenset({State.RUNNING, State.PROBATION})


# -- percentiles -------------------------------------------------------------------------------


class LogHistogram:
    """Whole-run percentiles in constant memory: buckets 2% wide from 1 µs up.

    A soak must not grow by itself; a list of every sample would.
    """

    FLOOR = 1e-6
    STEP = math.log(1.02)

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.n = 0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= self.FLOOR else int(math.log(seconds / self.FLOOR) / self.STEP)
        self.counts[index] += 1
        self.n += 1

    def quantile(self, q: float) -> float:
        if not self.n:
            return math.nan
        rank = q * (self.n - 1)
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen > rank:
                return self.FLOOR * math.exp((index + 0.5) * self.STEP)
        return math.nan


def quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- what the events say -----------------------------------------------------------------------


@dataclasses.dataclass
class _Pending:
    failed_at: float  # wall time the failed attempt ended (or the exit, without an attempt)
    delay: float | None = None  # the backoff the supervisor chose for it
    group: bool = False  # brought back by a group restart (one_for_all, escalation)


_REPLICA = re.compile(r"\.\d+$")


def _under(path: str, group: str) -> bool:
    return not group or path.startswith(f"{group}/")


class Collector:
    """The ``on_event`` subscriber: counts and restart latencies from the typed events.

    Runs on the tree's event thread; the sampler reads it under ``lock``.
    Event times are the supervisors' wall clock, so the event thread's own
    delay does not enter the latencies (it is reported apart, as ``lag``).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.totals: Counter[str] = Counter()
        self.failed_attempt_at: dict[str, float] = {}
        self.pending: dict[str, _Pending] = {}
        self.latencies: list[float] = []  # this interval's, exact
        self.overheads: list[float] = []
        self.restarts = 0  # this interval's
        self.failures = 0
        self.all_latency = LogHistogram()
        self.all_overhead = LogHistogram()
        self.own_overhead = LogHistogram()  # one-for-one restarts only
        self.group_overhead = LogHistogram()  # includes stopping the siblings first
        # Per job (replicas together): (latency, overhead); as many as the manifest has jobs.
        self.by_job: dict[str, tuple[LogHistogram, LogHistogram]] = {}
        self.lag_max = 0.0

    def on_event(self, event: object) -> None:
        now = time.time()
        with self.lock:
            self.lag_max = max(self.lag_max, now - getattr(event, "at", now))
            self._take(event)

    def _take(self, event: object) -> None:
        t = self.totals
        match event:
            case AttemptFinished(path=path, outcome=outcome, at=at):
                t[f"attempt {outcome.value}"] += 1
                t["attempts"] += 1
                if outcome.is_failure:
                    self.failed_attempt_at[path] = at
            case ChildExited(path=path, outcome=outcome, at=at):
                attempt_end = self.failed_attempt_at.pop(path, None)
                t[f"exit {outcome.value}"] += 1
                if outcome.is_failure:
                    self.failures += 1
                    self.pending[path] = _Pending(attempt_end if attempt_end is not None else at)
            case RestartScheduled(path=path, delay=delay):
                t["restarts scheduled"] += 1
                # One-for-one names the failed child; a group restart (one_for_all, or the
                # root restarting an escalated group) names the group: it covers its members.
                for key, pending in self.pending.items():
                    if pending.delay is None and (key == path or _under(key, path)):
                        pending.delay, pending.group = delay, key != path
            case StateChanged(path=path, old=old, new=new, at=at):
                if new is State.STARTING and old in _RELAUNCH_FROM:
                    t["restarts"] += 1
                    self.restarts += 1
                elif new in _UP:
                    pending = self.pending.pop(path, None)
                    if pending is not None:
                        latency = max(0.0, at - pending.failed_at)
                        overhead = max(0.0, latency - (pending.delay or 0.0))
                        self.latencies.append(latency)
                        self.overheads.append(overhead)
                        self.all_latency.add(latency)
                        self.all_overhead.add(overhead)
                        (self.group_overhead if pending.group else self.own_overhead).add(overhead)
                        job = _REPLICA.sub("", path)
                        if job not in self.by_job:
                            self.by_job[job] = (LogHistogram(), LogHistogram())
                        self.by_job[job][0].add(latency)
                        self.by_job[job][1].add(overhead)
                elif new is State.WAITING:
                    # The failure opened its breaker: the job waits instead of exiting.
                    self.failed_attempt_at.pop(path, None)
                    t["waiting (breaker)"] += 1
            case CooldownStarted(path=path):
                t["cooldowns"] += 1
                self._drop(path)  # its next start is a probe after a cooldown, not a restart
            case GaveUp(path=path):
                t["gave up"] += 1
                self._drop(path)
            case Escalated():
                t["escalations"] += 1
            case ProbationPassed():
                t["probations passed"] += 1
            case BreakerChanged(new=new):
                t[f"breaker {new}"] += 1

    def _drop(self, path: str) -> None:
        for key in [k for k in self.pending if k == path or _under(k, path)]:
            del self.pending[key]

    def take_interval(self) -> tuple[int, int, list[float], list[float]]:
        with self.lock:
            out = (self.restarts, self.failures, self.latencies, self.overheads)
            self.restarts = self.failures = 0
            self.latencies, self.overheads = [], []
            return out

    def stuck(self, now: float) -> list[str]:
        with self.lock:
            return sorted(k for k, p in self.pending.items() if now - p.failed_at > STUCK_AFTER)


# -- what the log says -------------------------------------------------------------------------

# Lines that mean a defect, whatever their level.
_ODD = re.compile(
    r"jobvisor bug|timer callback failed|raised on|could not start|not delivered|Traceback"
    r"|Unhandled",
    re.IGNORECASE,
)
_NUMBERS = re.compile(r"\d+(\.\d+)?")
# Kinds of warning and error that are the chaos itself: failed attempts and exits, and what
# the commands print on stderr.
_CHAOS = re.compile(
    r": attempt N (failed|timeout)|: (failed|timeout) \(start N\)|actors\.command: "
)


class LogWatch(logbook.Handler):
    """Counts warnings and errors by kind; keeps the odd ones (tracebacks, bugs) to show."""

    def __init__(self) -> None:
        super().__init__(level=logbook.WARNING, bubble=True)
        self._lock = threading.Lock()
        self.levels: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.odd: list[str] = []
        self.odd_count = 0

    def emit(self, record: logbook.LogRecord) -> None:
        message = record.message or ""
        # "path: what happened": the kind is what happened, with its numbers blurred.
        what = message.split(": ", 1)[1] if ": " in message else message
        kind = f"{record.level_name} {record.channel}: {_NUMBERS.sub('N', what)[:60]}"
        odd = (
            bool(record.exc_info)
            or bool(_ODD.search(message))
            or record.channel in ("pykka", "supervision.journal")  # neither should ever warn
        )
        with self._lock:
            self.levels[record.level_name] += 1
            if kind in self.kinds or len(self.kinds) < 200:
                self.kinds[kind] += 1
            else:
                self.kinds["(other kinds)"] += 1
            if odd:
                self.odd_count += 1
                if len(self.odd) < 10:
                    self.odd.append(f"{record.channel}: {message[:300]}")


# -- what the process looks like -----------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    t: float
    cpu: float  # process CPU seconds (user + system) so far
    rss_mib: float
    fds: int
    os_threads: int
    tasks: int | None  # Python threads, or live greenlets under gevent (counted per line only)


def trimmed_rss() -> float | None:
    """RSS once glibc has handed its free pages back (None elsewhere).

    Memory freed by Python but kept by the allocator (per-thread arenas,
    fragmentation) counts in RSS; what survives ``malloc_trim`` is held.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return sample(math.nan, tasks=False).rss_mib


def open_fds() -> dict[int, str]:
    """{fd: what it points to} for this process."""
    out = {}
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            out[int(entry.name)] = str(entry.readlink())
    return out


def sample(t: float, *, tasks: bool = True) -> Sample:
    rss_pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    times = os.times()
    return Sample(
        t,
        times.user + times.system,
        rss_pages * PAGE / MIB,
        sum(1 for _ in Path("/proc/self/fd").iterdir()) - 1,  # less the one the listing holds
        sum(1 for _ in Path("/proc/self/task").iterdir()),
        count_tasks() if tasks or RUNTIME == "threads" else None,
    )


def count_tasks() -> int:
    """Python threads; under gevent the actors are bare greenlets, which only the heap knows.

    Walking the heap costs tens of milliseconds, so under gevent it is done once a line.
    """
    if RUNTIME == "threads":
        return threading.active_count()
    import greenlet  # noqa: PLC0415 - only under gevent

    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and o)


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (ppid, state)} of every process we may read."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
            fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
            table[int(entry.name)] = (int(fields[1]), fields[0])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or caught half-way through its exit
    return table


def warden_pid() -> int | None:
    """The command jobs' warden: one helper process per jobvisor process, by design.

    It lives until this process exits (then it SIGKILLs what commands are left),
    so it is no leftover of the tree.
    """
    warden = getattr(sys.modules.get("actors._warden"), "WARDEN", None)
    return getattr(warden, "_pid", None) or None


def by_design_fds() -> dict[int, str]:
    """Fds jobvisor keeps for the life of the process: the warden's pipe, the commands' stdin."""
    kept = {}
    warden_fd = getattr(getattr(sys.modules.get("actors._warden"), "WARDEN", None), "_fd", -1)
    if warden_fd >= 0:
        kept[warden_fd] = "the command warden's pipe"
    devnull_fd = getattr(sys.modules.get("actors._spawn"), "_devnull_fd", [])
    if devnull_fd:  # opened at the first command's start
        kept[devnull_fd[0]] = "the commands' shared stdin"
    return kept


def descendants(root: int, exclude: set[int]) -> list[tuple[int, str]]:
    """Live descendants of ``root`` (pid, state), leaving out ``exclude`` and their own."""
    table = process_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found: list[tuple[int, str]] = []
    todo = [p for p in kids.get(root, []) if p not in exclude]
    while todo:
        pid = todo.pop()
        found.append((pid, table[pid][1]))
        todo.extend(kids.get(pid, []))
    return found


def warm_up(duration: float) -> float:
    """Seconds left out of the trends: caches, pools and the journal's pages fill at first."""
    return max(5.0, 0.2 * duration)


def trend(samples: list[Sample], field: str, tolerance: float) -> str:
    """Slope per minute after the warm-up, and whether the value grew steadily.

    Steadily means each third of the run sits higher than the one before (by
    medians), the whole rise exceeds ``tolerance`` and the last third rose at
    least half as much as the second: a plateau, a sawtooth, noise or a fill-up
    that slows down does not count, a leak does.
    """
    points = [(s.t, float(v)) for s in samples if (v := getattr(s, field)) is not None]
    if len(points) < 6:
        return "too few samples"
    ts, ys = [t for t, _ in points], [y for _, y in points]
    slope = statistics.linear_regression(ts, ys).slope * 60
    third = len(ys) // 3
    m1, m2, m3 = (statistics.median(ys[i * third : (i + 1) * third]) for i in range(3))
    if not (m1 < m2 < m3 and m3 - m1 > tolerance):
        return f"{slope:+.2f}/min, no steady growth"
    # A leak grows about linearly; a cache or an allocator filling up slows down as it fills.
    if m3 - m2 < 0.5 * (m2 - m1):
        return f"{slope:+.2f}/min, grew but levelling off (run longer to be sure)"
    return f"{slope:+.2f}/min, GREW STEADILY"


# -- the fault server --------------------------------------------------------------------------


class FaultServer:
    """``bench/_chaos.py serve`` in its own process; stopped by its pid."""

    def __init__(self, seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_chaos.py"), "serve", "--seed", str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = self._read_port(deadline=time.monotonic() + 15)
        self.result = ""

    def _read_port(self, deadline: float) -> int:
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("port "):
                    return int(line.split()[1])
                if not line:
                    break
        self.stop()
        raise SystemExit("soak: the fault server did not say its port")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate(timeout=10)
        self.result = (out or "").strip().splitlines()[-1] if (out or "").strip() else ""
        return self.proc.returncode


# -- the run -----------------------------------------------------------------------------------

HEADER = (
    f"{'t(s)':>6} {'restarts':>8} {'r/s':>6} {'fails':>6} {'lat p50':>8} {'p99':>7} "
    f"{'ovh p50':>8} {'p99':>7} {'RSS MiB':>8} {'fds':>5} "
    f"{'thr os/py' if RUNTIME == 'threads' else 'os/greenl':>10} "
    f"{'procs':>5} {'cpu%':>5} {'status':>8}"
)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("threads", "gevent"), default="threads")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--manifest", type=Path, default=HERE / "chaos.yaml")
    parser.add_argument(
        "--log-level",
        default="information",
        choices=("none", "error", "warning", "information", "debug", "verbose"),
        help="of jobvisor's log file in the soak's state dir (default information)",
    )
    parser.add_argument("--no-journal", action="store_true", help="run without the journal")
    parser.add_argument("--keep", action="store_true", help="keep the state dir and log")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="after the warm-up, trace allocations; at the end show where the memory that "
        "stayed was allocated (slows the run down)",
    )
    args = parser.parse_args()
    if args.duration <= 0 or args.interval <= 0:
        parser.error("--duration and --interval must be positive")
    return args


@dataclasses.dataclass
class Run:
    """One soak: its settings, what it started, and what it measured."""

    args: argparse.Namespace
    work: Path  # the state dir (journal) and the log live here
    server: FaultServer
    threads_before: set[str]
    collector: Collector = dataclasses.field(default_factory=Collector)
    watch: LogWatch = dataclasses.field(default_factory=LogWatch)
    samples: list[Sample] = dataclasses.field(default_factory=list)
    status_ms: list[float] = dataclasses.field(default_factory=list)
    last_status: dict[str, Any] = dataclasses.field(default_factory=dict)
    stuck: list[str] = dataclasses.field(default_factory=list)
    before: Sample | None = None  # just before the tree started
    fds_before: dict[int, str] = dataclasses.field(default_factory=dict)
    fds_after: dict[int, str] = dataclasses.field(default_factory=dict)
    fds_released: dict[int, str] = dataclasses.field(default_factory=dict)  # manifest dropped
    after: Sample | None = None  # once the tree stopped and the composition closed
    stopped: bool = False
    stop_s: float = math.nan
    line_cpu: float = 0.0  # CPU seconds at the last line
    interrupted: threading.Event = dataclasses.field(default_factory=threading.Event)
    rss_end_trimmed: float | None = None  # at the end, once malloc_trim returned free pages
    rss_trimmed: float | None = None  # the same once the tree and its manifest are gone
    traced: tracemalloc.Snapshot | None = None  # --tracemalloc: what stayed since the warm-up

    def excluded(self) -> set[int]:
        """Processes that are not the tree's: the fault server and the command warden."""
        return {self.server.proc.pid, warden_pid() or 0}


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="jobvisor-soak-"))
    threads_before = {t.name for t in threading.enumerate()}
    server = FaultServer(args.seed)
    os.environ["CHAOS_PORT"] = str(server.port)
    os.environ["CHAOS_SEED"] = str(args.seed)
    try:
        composition = prepare(args, work)
        if composition is None:
            return 2
        run = Run(args, work, server, threads_before)
        # SIGINT or SIGTERM ends the soak early, but still stops, checks and reports.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: run.interrupted.set())
        soak(run, composition)
        # What the specs hold (the http jobs' pooled connections) goes with them.
        del composition
        gc.collect()
        run.fds_released = open_fds()
        run.rss_trimmed = trimmed_rss()
        return report(run)
    finally:
        code = server.stop()
        print(f"fault server (pid {server.proc.pid}) exited {code}: {server.result}")
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def prepare(args: argparse.Namespace, work: Path) -> Composition | None:
    """Load the manifest and compose it as ``jobvisor run`` does, with the state in ``work``."""
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return None
    manifest = dataclasses.replace(manifest, state_dir=work / "state")
    try:
        return compose(
            manifest,
            runtime=RUNTIME,
            log_level=args.log_level,
            log_file=str(work / "soak.log"),
            journal=not args.no_journal,
        )
    except JobvisorError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return None


def soak(run: Run, composition: Composition) -> None:
    """Start the tree, print a line every interval, stop it; everything lands in ``run``."""
    args = run.args
    run.watch.push_application()
    print(
        f"soak: {args.manifest.name}, runtime {RUNTIME}, {args.duration:g}s, seed {args.seed}, "
        f"journal {'off' if args.no_journal else 'on'}, log {args.log_level}; {machine()}"
    )
    try:
        run.before = sample(0.0)
        run.fds_before = open_fds()
        start = time.monotonic()
        tree = composition.start(on_event=run.collector.on_event)
        try:
            run.samples.append(sample(0.0))
            run.line_cpu = run.samples[0].cpu
            print(HEADER, flush=True)
            _watch(run, tree, start)
            run.stuck = run.collector.stuck(time.time())
        finally:
            t0 = time.perf_counter()
            run.stopped = tree.stop(timeout=30)
            if not run.stopped:
                tree.kill()
                tree.stop(10)
            run.stop_s = time.perf_counter() - t0
    finally:
        run.watch.pop_application()  # before the composition's handlers: it was pushed last
        composition.close()
    run.after = sample(math.nan)
    run.fds_after = open_fds()


def _watch(run: Run, tree: Tree, start: float) -> None:
    """Sample every second and print a line every interval until the duration is over."""
    end = start + run.args.duration
    next_line = start + run.args.interval
    next_sample = start + 1.0
    last_line = start
    trace_at = start + warm_up(run.args.duration) if run.args.tracemalloc else math.inf
    while (now := time.monotonic()) < end and not run.interrupted.is_set():
        if now >= trace_at and not tracemalloc.is_tracing():
            tracemalloc.start(12)
        interrupted = run.interrupted.wait(max(0.0, min(next_sample, next_line, end) - now))
        now = time.monotonic()
        if interrupted:
            print("interrupted: stopping", flush=True)
            end = now
        if now >= next_sample or now >= end:
            run.samples.append(sample(now - start, tasks=False))
            next_sample += 1.0
        if now >= next_line or now >= end:
            if run.samples[-1].tasks is None:
                run.samples[-1].tasks = count_tasks()
            t0 = time.perf_counter()
            run.last_status = tree.status()
            run.status_ms.append((time.perf_counter() - t0) * 1e3)
            print(_line(run, now - last_line), flush=True)
            last_line = now
            next_line += run.args.interval
    run.rss_end_trimmed = trimmed_rss()
    if tracemalloc.is_tracing():
        gc.collect()  # dead incarnations in reference cycles are garbage, not growth
        run.traced = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__),)
        )
        tracemalloc.stop()


def _line(run: Run, span: float) -> str:
    restarts, failures, lat, ovh = run.collector.take_interval()
    now = run.samples[-1]
    span = max(span, 1e-3)
    cpu, run.line_cpu = (now.cpu - run.line_cpu) / span, now.cpu
    procs = len(descendants(os.getpid(), exclude=run.excluded()))
    return (
        f"{now.t:6.1f} {restarts:8d} {restarts / span:6.1f} {failures:6d} "
        f"{_ms(quantile(lat, 0.5)):>8} {_ms(quantile(lat, 0.99)):>7} "
        f"{_ms(quantile(ovh, 0.5)):>8} {_ms(quantile(ovh, 0.99)):>7} "
        f"{now.rss_mib:8.1f} {now.fds:5d} {f'{now.os_threads}/{now.tasks}':>10} "
        f"{procs:5d} {cpu * 100:5.0f} {f'{run.status_ms[-1]:.1f}ms':>8}"
    )


def report(run: Run) -> int:
    """Print the summary; 1 if the run shows a defect (see the module docstring), else 0."""
    problems: list[str] = []
    elapsed = run.samples[-1].t
    leaves = [n for n in flatten_status(run.last_status) if n["kind"] != "group"]
    print(f"\nsummary ({RUNTIME}, {elapsed:.0f}s, {len(leaves)} children, seed {run.args.seed}):")
    _report_events(run.collector, elapsed)
    states = Counter(n["state"] for n in leaves)
    print(f"  states at the end: {', '.join(f'{k} {v}' for k, v in sorted(states.items()))}")
    if run.status_ms:
        print(
            f"  Tree.status(): median {statistics.median(run.status_ms):.1f} ms, "
            f"max {max(run.status_ms):.1f} ms"
        )
    cpu = run.samples[-1].cpu - run.samples[0].cpu
    print(
        f"  CPU of this process: {cpu:.1f}s in {elapsed:.0f}s ({cpu / elapsed:.0%} of one core; "
        "the commands' own CPU not included)"
    )
    if run.stuck:
        problems.append(f"failures with no restart after {STUCK_AFTER:g}s: {', '.join(run.stuck)}")
    problems += _report_resources(run, elapsed)
    problems += _report_stop(run)
    problems += _report_records(run)
    if run.traced is not None:
        _report_traced(run.traced)
    print("  verdict: " + ("; ".join(problems) if problems else "clean"))
    return 1 if problems else 0


def _report_events(collector: Collector, elapsed: float) -> None:
    t = collector.totals
    failures = t["exit failed"] + t["exit timeout"]
    print(
        f"  restarts {t['restarts']} ({t['restarts'] / elapsed:.1f}/s, "
        f"{t['restarts'] * 60 / elapsed:.0f}/min); failures {failures} (failed "
        f"{t['exit failed']}, timeout {t['exit timeout']}); attempts {t['attempts']} "
        f"(succeeded {t['attempt succeeded']})"
    )
    lat, ovh = collector.all_latency, collector.all_overhead
    own, group = collector.own_overhead, collector.group_overhead
    print(
        f"  restart latency p50 {_ms(lat.quantile(0.5))} ms, p99 {_ms(lat.quantile(0.99))} ms "
        f"(n={lat.n}); overhead over the backoff p50 {_ms(ovh.quantile(0.5))} ms, "
        f"p99 {_ms(ovh.quantile(0.99))} ms"
    )
    print(
        f"    one-for-one restarts: overhead p50 {_ms(own.quantile(0.5))} ms, "
        f"p99 {_ms(own.quantile(0.99))} ms (n={own.n}); group restarts (siblings stopped "
        f"first): p50 {_ms(group.quantile(0.5))} ms, p99 {_ms(group.quantile(0.99))} ms "
        f"(n={group.n}); event delivery lag max {collector.lag_max * 1e3:.0f} ms"
    )
    print("    per job:  restarts measured, latency p50/p99 ms, overhead p50/p99 ms")
    for job, (jl, jo) in sorted(collector.by_job.items()):
        print(
            f"      {job:<22} {jl.n:6d}  {_ms(jl.quantile(0.5)):>7} {_ms(jl.quantile(0.99)):>7}"
            f"  {_ms(jo.quantile(0.5)):>7} {_ms(jo.quantile(0.99)):>7}"
        )
    print(
        f"  cooldowns {t['cooldowns']}, probations passed {t['probations passed']}, "
        f"escalations {t['escalations']}, gave up {t['gave up']}; breaker opened "
        f"{t['breaker open']}, half-opened {t['breaker half_open']}, closed "
        f"{t['breaker closed']}; jobs set waiting {t['waiting (breaker)']}"
    )


def _report_resources(run: Run, elapsed: float) -> list[str]:
    problems = []
    samples = run.samples
    assert run.before is not None
    warm = [s for s in samples if s.t >= warm_up(elapsed)]
    for label, field, unit, tolerance in (
        ("RSS", "rss_mib", " MiB", 2.0),
        ("fds", "fds", "", 3),
        ("OS threads", "os_threads", "", 3),
        ("Python threads" if RUNTIME == "threads" else "greenlets", "tasks", "", 3),
    ):
        ys = [v for s in samples if (v := getattr(s, field)) is not None]
        fmt = "{:.1f}" if isinstance(ys[0], float) else "{}"
        first, last, top = (fmt.format(v) for v in (ys[0], ys[-1], max(ys)))
        verdict = trend(warm, field, tolerance)
        print(f"  {label}: first {first}{unit}, last {last}{unit}, max {top}{unit}; {verdict}")
        if field == "rss_mib" and run.rss_end_trimmed is not None:
            print(
                f"    after malloc_trim at the end: {run.rss_end_trimmed:.1f} MiB; once the "
                f"tree and its manifest are gone: {run.rss_trimmed:.1f} MiB (before the start: "
                f"{run.before.rss_mib:.1f} MiB)"
            )
        if "GREW" in verdict:
            problems.append(f"{label} grew steadily")
    return problems


def _report_stop(run: Run) -> list[str]:
    problems = []
    warden = warden_pid()
    procs = descendants(os.getpid(), exclude=run.excluded())
    me = threading.current_thread()
    threads = sorted(
        th.name
        for th in threading.enumerate()
        if th.is_alive() and th.name not in run.threads_before and th is not me
    )
    how = "clean" if run.stopped else "TIMED OUT, killed"
    print(
        f"  stop: {how} in {run.stop_s:.2f}s; left behind: {len(procs)} processes "
        f"{procs or ''}, {len(threads)} threads {threads or ''}"
    )
    before, after = run.before, run.after
    assert before is not None
    assert after is not None
    print(
        f"  after the stop: {after.fds} fds, {after.os_threads} OS threads, RSS "
        f"{after.rss_mib:.1f} MiB (before the start: {before.rss_mib:.1f} MiB, {before.fds} fds, "
        f"{before.os_threads} threads); the command warden "
        f"{f'(pid {warden}) stays by design until exit' if warden else 'never started'}"
    )
    held = _new_fds(run.fds_before, run.fds_after)
    released = _new_fds(run.fds_before, run.fds_released)
    print(
        f"    fds opened since the start and still open: {held or 'none'}; once the manifest "
        f"is dropped (gc): {released or 'none'}"
    )
    kept = by_design_fds()
    leaked = {fd: target for fd, target in released.items() if fd not in kept}
    print(f"    kept by design: {kept or 'none'}")
    if leaked:
        problems.append(f"fds still open once the tree and its manifest are gone: {leaked}")
    # A stopped tree lets go of its fds by itself (pooled connections included): one that
    # only the garbage collector closes is a defect too, if a milder one.
    lingering = {fd: target for fd, target in held.items() if fd not in kept and fd not in leaked}
    if lingering:
        problems.append(f"fds open after the stop until the garbage collector ran: {lingering}")
    if not run.stopped:
        problems.append("the tree did not stop within 30 s")
    if procs:
        problems.append(f"processes left behind: {procs}")
    if threads:
        problems.append(f"threads left behind: {threads}")
    return problems


def _report_traced(snapshot: tracemalloc.Snapshot) -> None:
    stats = snapshot.statistics("traceback")
    total = sum(stat.size for stat in stats) / MIB
    print(f"  allocated after the warm-up and still alive: {total:.2f} MiB; the largest:")
    for stat in stats[:6]:
        frames = [
            f"{Path(f.filename).name}:{f.lineno}"
            for f in stat.traceback
            if "threading.py" not in f.filename
        ]
        print(f"    {stat.size / 1024:8.0f} KiB {stat.count:7d} blocks  {' > '.join(frames[-5:])}")


def _new_fds(before: dict[int, str], after: dict[int, str]) -> dict[int, str]:
    return {fd: target for fd, target in sorted(after.items()) if before.get(fd) != target}


def _report_records(run: Run) -> list[str]:
    """What the journal and the log kept."""
    problems = []
    seen = run.collector.totals["attempts"]
    db = run.work / "state" / "journal.sqlite3"
    if db.exists():
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
            decisions = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
        size = sum(p.stat().st_size for p in db.parent.iterdir()) / MIB
        print(
            f"  journal: {attempts} attempts (the events saw {seen}), {decisions} decisions, "
            f"{size:.1f} MiB"
        )
        if attempts != seen:
            problems.append(f"the journal has {attempts} attempts, the events {seen}")
    watch = run.watch
    log_file = run.work / "soak.log"
    size = log_file.stat().st_size / MIB if log_file.exists() else 0.0
    levels = ", ".join(f"{k} {v}" for k, v in sorted(watch.levels.items()))
    chaos = sum(n for kind, n in watch.kinds.items() if _CHAOS.search(kind))
    print(f"  log: {size:.1f} MiB; {levels}; {chaos} of them the chaos's own failures; the rest:")
    for kind, n in watch.kinds.most_common():
        if not _CHAOS.search(kind):
            print(f"    {n:6d}  {kind}")
    if watch.odd_count:
        problems.append(f"{watch.odd_count} log records that should not happen")
        for line in watch.odd:
            print(f"    odd: {line}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
