"""What /metrics of a real daemon says, set against its status (SPEC §9; README's endpoint table).

Real `jobvisor daemon` processes with ``--http 127.0.0.1:0``, scraped with a real GET
and read with prometheus_client's own parser (``Served`` of test_http_api).
"""

from __future__ import annotations

import json
import platform
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jobfuncs
import pytest
from clockkit import ManualClock
from conftest import RUNTIME, Events
from faultkit import Running, http_daemon, wait_until
from httpkit import HttpKit, Reply, Stall
from prometheus_client.parser import text_string_to_metric_families
from test_http_api import Served

from supervision import AttemptFinished, Schedule, python_job
from supervision._events import GaveUp
from supervision._metrics import TreeMetrics
from supervision._notifier import QUEUE_SIZE, Notifier
from supervision._notify import HttpTarget, NotifyEvent, NotifySpec
from supervision._spec import SupervisorSpec

if TYPE_CHECKING:
    from collections.abc import Callable


def _nodes(running: Running) -> dict[str, dict[str, Any]]:
    """Every node of the daemon's status, by path."""
    out = running.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    found: dict[str, dict[str, Any]] = {}
    todo = list(json.loads(out.stdout)["children"])
    while todo:
        node = todo.pop()
        found[node["path"]] = node
        todo.extend(node.get("children") or ())
    return found


def _series(served: Served, path: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The ``jobvisor_*`` samples of ``path``."""
    return {
        key: value
        for key, value in served.metrics().items()
        if key[0].startswith("jobvisor_") and ("path", path) in key[1]
    }


def _agrees(running: Running, served: Served, path: str, starts: int) -> None:
    """``path`` has started ``starts`` times, and /metrics counts what its status counts."""
    node = _nodes(running)[path]
    assert node["starts"] == starts
    assert _counts(served, path) == (node["starts"], node["restarts"], node["failures"])


def _reloaded(running: Running, manifest: str) -> None:
    """The daemon reloads ``manifest`` (written over its own) and says it did."""
    (running.dir / "jobs.yaml").write_text(textwrap.dedent(manifest))
    out = running.cli("reload")
    assert out.returncode == 0, out.stderr


def _counts(served: Served, path: str, kind: str = "command") -> tuple[float, float, float]:
    """(starts, restarts, failures of any outcome) of ``path`` in /metrics."""
    labels = {"path": path, "kind": kind}
    failures = sum(
        value
        for (name, keys), value in served.metrics().items()
        if name == "jobvisor_job_failures_total" and ("path", path) in keys
    )
    starts = served.metric("jobvisor_job_starts_total", **labels)
    return starts, served.metric("jobvisor_job_restarts_total", **labels), failures


# `flappy` fails 4 times (3 restarts) and gives up; a reload changing its command replaces it.
REPLACED = """
version: 1
http: {heartbeat: 5s}
supervisor: {backoff: {initial: 1ms, max: 1ms}, intensity: {max_restarts: 3, within: 60s}}
jobs:
  - name: calm
    service: true
    command: [sh, -c, "while true; do sleep 0.05; done"]
  - name: flappy
    service: true
    command: [sh, -c, "exit CODE"]
"""


def test_a_job_a_reload_replaces_counts_from_zero_as_its_status_does(tmp_path: Path) -> None:
    """README: a replaced job starts from zero, an unchanged one keeps its counts; /metrics
    "counts what the status counts" (it went on from the old job's: starts 8 against 4)."""
    with http_daemon(tmp_path, REPLACED.replace("CODE", "3"), "--runtime", RUNTIME) as running:
        served = Served(running.http)
        wait_until(lambda: _nodes(running)["flappy"]["state"] == "gave_up", "flappy gave up", timeout=30)  # fmt: skip
        assert _counts(served, "flappy") == (4, 3, 4)
        wait_until(lambda: _nodes(running)["calm"]["state"] == "running", "calm running", timeout=30)  # fmt: skip
        calm = _series(served, "calm")
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(REPLACED.replace("CODE", "4")))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert "replace flappy" in out.stdout
        wait_until(lambda: (n := _nodes(running)["flappy"])["state"] == "gave_up" and n["starts"] == 4, "the new flappy gave up", timeout=30)  # fmt: skip
        node = _nodes(running)["flappy"]
        assert (node["starts"], node["restarts"], node["failures"]) == (4, 3, 4)
        assert _counts(served, "flappy") == (4, 3, 4)
        assert served.metric("jobvisor_gave_up_total", path="flappy", kind="command") == 1
        assert served.metric("jobvisor_job_failures_total", path="flappy", kind="command", outcome="failed") == 4  # fmt: skip
        # Its attempts' histogram starts again too: the new job's 4, not 8.
        assert served.metric("jobvisor_attempt_duration_seconds_count", path="flappy", kind="command", outcome="failed") == 4  # fmt: skip
        # The sibling the reload left alone keeps every series as it was.
        assert _series(served, "calm") == calm
        # The histogram has no _created gauge family (one a path and outcome, which no
        # counter has), and give_up_on's give-ups are said in gave_up's HELP too.
        text = served.get("/metrics").text
        assert "_created" not in text
        assert (
            "# HELP jobvisor_gave_up_total Children given up on (intensity exhausted, or a "
            "give_up_on match at once)\n"
        ) in text
        node = _nodes(running)["calm"]
        assert _counts(served, "calm") == (node["starts"], node["restarts"], node["failures"])


def _failure_series(served: Served, path: str) -> dict[str, float]:
    """``jobvisor_job_failures_total`` of ``path``, by outcome, as the scrape has them."""
    return {
        dict(keys)["outcome"]: value
        for (name, keys), value in served.metrics().items()
        if name == "jobvisor_job_failures_total" and ("path", path) in keys
    }


def test_failure_series_are_there_at_zero_before_the_first_failure(tmp_path: Path) -> None:
    """A series that appears at its first failure makes ``increase()`` miss that failure:
    each child's are made at 0 for every outcome when it is added (at the start, by a
    reload), and again at 0 when a reload replaces it."""
    first = """
    version: 1
    http: {heartbeat: 5s}
    jobs:
      - name: calm
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
      - name: swap
        service: true
        command: [sh, -c, "exit 3"]
        restart: temporary
    """
    late = """
      - name: late
        service: true
        command: [sh, -c, "while true; do sleep 0.05; done"]
    """
    second = first.replace("exit 3", "exit 4").rstrip() + late
    zero = {"failed": 0.0, "timeout": 0.0, "killed": 0.0}
    with http_daemon(tmp_path, first, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        assert _failure_series(served, "calm") == zero
        wait_until(lambda: _failure_series(served, "swap")["failed"] == 1, "swap failed", timeout=30)  # fmt: skip
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(second))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert "replace swap" in out.stdout
        assert "add late" in out.stdout
        assert _failure_series(served, "late") == zero
        assert _failure_series(served, "calm") == zero
        wait_until(lambda: _nodes(running)["swap"]["failures"] == 1, "the new swap failed", timeout=30)  # fmt: skip
        assert _failure_series(served, "swap") == {**zero, "failed": 1.0}


def _deliveries(served: Served) -> dict[tuple[str, str], float]:
    """``jobvisor_notify_deliveries_total`` by (notification, result)."""
    return {
        (dict(keys)["notification"], dict(keys)["result"]): value
        for (name, keys), value in served.metrics().items()
        if name == "jobvisor_notify_deliveries_total"
    }


def test_notification_deliveries_are_counted_by_how_they_ended(tmp_path: Path) -> None:
    """A broken pager can be alerted on: each delivery counts as delivered or failed (after
    its retries), under the notification's name, or for one without a name its URL's scheme
    and host alone (its userinfo, path and query may be secrets)."""
    with HttpKit(Reply(500), Reply(204)) as hook:
        secret_url = (
            hook.url.replace("//", "//us3rNAME:tok3nPART@") + "/hook/T0K3NPATH?key=QU3RYKEY"
        )
        manifest = f"""
        version: 1
        http: {{heartbeat: 5s}}
        supervisor: {{backoff: {{initial: 1ms, max: 1ms}}, intensity: {{max_restarts: 1}}}}
        notify:
          - {{on: [restarted, gave_up], retry: 0, http: {{url: "{secret_url}"}}}}
          - {{name: pager, on: [gave_up], command: [sh, -c, "cat >/dev/null"]}}
        jobs:
          - name: flappy
            service: true
            command: [sh, -c, "exit 3"]
        """
        with http_daemon(tmp_path, manifest, "--runtime", RUNTIME) as running:
            served = Served(running.http)
            hook.wait_requests(2, timeout=30)
            host = f"http://127.0.0.1:{hook.port}"
            want = {
                (host, "delivered"): 1.0,
                (host, "failed"): 1.0,
                (host, "dropped"): 0.0,
                ("pager", "delivered"): 1.0,
                ("pager", "failed"): 0.0,
                ("pager", "dropped"): 0.0,
            }
            wait_until(lambda: _deliveries(served) == want, f"{want} counted", timeout=30)
            text = served.get("/metrics").text
            assert not [s for s in ("tok3nPART", "T0K3NPATH", "QU3RYKEY", "us3rNAME") if s in text]


def test_a_delivery_its_full_queue_drops_is_counted_as_dropped() -> None:
    """In process: one delivery held by its receiver, QUEUE_SIZE waiting behind it, and the
    next one dropped; at the stop, what was not delivered counts as failed."""
    with HttpKit(Stall()) as hook:
        spec = NotifySpec(
            on=(NotifyEvent.GAVE_UP,),
            http=HttpTarget(url=hook.url + "/"),
            timeout=30,
            retry=0,
            name="pager",
        )
        root = SupervisorSpec(children=())
        notifier = Notifier((spec,), root)
        metrics = TreeMetrics(root)
        metrics.notifier = lambda: notifier

        def counted() -> dict[str, float]:
            return {
                sample.labels["result"]: sample.value
                for family in text_string_to_metric_families(metrics.text().decode())
                for sample in family.samples
                if sample.name == "jobvisor_notify_deliveries_total"
                and sample.labels["notification"] == "pager"
            }

        try:
            assert counted() == {"delivered": 0, "failed": 0, "dropped": 0}
            notifier.handle(GaveUp(path="j", at=time.time(), reason="r"))
            hook.wait_requests(1)
            for _ in range(QUEUE_SIZE + 1):
                notifier.handle(GaveUp(path="j", at=time.time(), reason="r"))
            assert counted() == {"delivered": 0, "failed": 0, "dropped": 1}
        finally:
            notifier.close(0.1)
        assert counted() == {"delivered": 0, "failed": QUEUE_SIZE + 1, "dropped": 1}


def test_each_jobs_state_since_is_its_status_since_and_the_build_is_told(tmp_path: Path) -> None:
    """``jobvisor_job_state_since_seconds`` is the status's ``since`` (unix time of the last
    change of state), at the start and after a change; ``jobvisor_build_info`` is 1 with the
    version ``--version`` prints, the Python and the runtime."""
    with http_daemon(tmp_path, REPLACED.replace("CODE", "3"), "--runtime", RUNTIME) as running:
        served = Served(running.http)
        calm = {"path": "calm", "kind": "command"}
        wait_until(lambda: served.metric("jobvisor_job_state", **calm, state="running") == 1, "calm running", timeout=30)  # fmt: skip
        since = served.metric("jobvisor_job_state_since_seconds", **calm)
        assert since == pytest.approx(_nodes(running)["calm"]["since"], abs=0.05)
        out = running.cli("stop", "calm")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: _nodes(running)["calm"]["state"] == "stopped", "calm stopped", timeout=30)  # fmt: skip
        stopped = served.metric("jobvisor_job_state_since_seconds", **calm)
        assert stopped > since
        assert stopped == pytest.approx(_nodes(running)["calm"]["since"], abs=0.05)
        build = [
            dict(keys)
            for (name, keys), value in served.metrics().items()
            if name == "jobvisor_build_info" and value == 1
        ]
        version = running.cli("--version").stdout.split()[1]
        assert build == [
            {"version": version, "python": platform.python_version(), "runtime": RUNTIME}
        ]
        # Bounded: one series per child, none per attempt.
        per_path = [k for k in served.metrics() if k[0] == "jobvisor_job_state_since_seconds"]
        assert sorted(dict(k[1])["path"] for k in per_path) == ["calm", "flappy"]


DOWN_GROUP = """
version: 1
http: {heartbeat: 5s}
jobs:
  - group: g
    jobs:
      - name: x
        service: true
        command: [sleep, 'SECS']
"""


def test_a_job_changed_while_its_group_is_down_resets_when_its_status_does(
    tmp_path: Path,
) -> None:
    """A reload changing a job of a stopped group resets its status only when the group
    next starts, compared with the spec it was counted under: /metrics went to 0 at the
    reload (status 2), and stayed 1 behind for good once a second reload put the command
    back (status 3)."""
    with http_daemon(tmp_path, DOWN_GROUP.replace("SECS", "100"), "--runtime", RUNTIME) as running:
        served = Served(running.http)

        def agree(starts: int) -> None:
            _agrees(running, served, "g/x", starts)

        def reload(secs: str) -> None:
            _reloaded(running, DOWN_GROUP.replace("SECS", secs))

        def start_g() -> None:
            out = running.cli("start", "g")
            assert out.returncode == 0, out.stderr
            wait_until(lambda: _nodes(running)["g/x"]["state"] == "running", "x running", timeout=30)  # fmt: skip

        wait_until(lambda: _nodes(running).get("g/x", {}).get("state") == "running", "x running", timeout=30)  # fmt: skip
        out = running.cli("restart", "g/x")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: (n := _nodes(running)["g/x"])["state"] == "running" and n["starts"] == 2, "x restarted", timeout=30)  # fmt: skip
        agree(2)
        assert running.cli("stop", "g").returncode == 0
        reload("200")
        agree(2)  # down: counted under its old spec until g starts
        reload("100")
        start_g()
        agree(3)  # the spec it was counted under after all: it counts on
        assert running.cli("stop", "g").returncode == 0
        reload("300")
        agree(3)
        start_g()
        agree(1)  # a new job at g's start, as its status says


def test_a_notification_a_reload_removes_loses_its_delivery_series(tmp_path: Path) -> None:
    """As a removed job's series go: a removed notification's counts are not kept for good."""
    manifest = """
    version: 1
    http: {heartbeat: 5s}
    notify:
      - {name: pager, on: [gave_up], command: [sh, -c, "cat >/dev/null"]}
    NOTIFY
    jobs:
      - name: calm
        service: true
        command: [sleep, '100']
    """
    other = "  - {name: mailer, on: [gave_up], command: [sh, -c, 'cat >/dev/null']}"
    with http_daemon(tmp_path, manifest.replace("NOTIFY", other), "--runtime", RUNTIME) as running:
        served = Served(running.http)
        assert {name for name, _ in _deliveries(served)} == {"pager", "mailer"}
        (tmp_path / "jobs.yaml").write_text(textwrap.dedent(manifest.replace("NOTIFY", "")))
        out = running.cli("reload")
        assert out.returncode == 0, out.stderr
        assert {name for name, _ in _deliveries(served)} == {"pager"}


def test_a_job_removed_while_its_group_is_down_goes_when_its_status_does(
    tmp_path: Path,
) -> None:
    """A down group's removed job stays in its status till the group starts, and counts on
    if a reload puts it back meanwhile: its series did neither (gone at the reload, 1 at
    the start against the status's 3)."""
    manifest = """
    version: 1
    http: {heartbeat: 5s}
    jobs:
      - group: g
        jobs:
          - name: y
            service: true
            command: [sleep, '100']
    X
    """
    x = "      - {name: x, service: true, command: [sleep, '100']}"
    with http_daemon(tmp_path, manifest.replace("X", x), "--runtime", RUNTIME) as running:
        served = Served(running.http)

        def agree(starts: int) -> None:
            _agrees(running, served, "g/x", starts)

        def reload(with_x: bool) -> None:
            _reloaded(running, manifest.replace("X", x if with_x else ""))

        def start_g() -> None:
            out = running.cli("start", "g")
            assert out.returncode == 0, out.stderr
            wait_until(lambda: _nodes(running)["g/y"]["state"] == "running", "g running", timeout=30)  # fmt: skip

        wait_until(lambda: _nodes(running).get("g/x", {}).get("state") == "running", "x running", timeout=30)  # fmt: skip
        assert running.cli("restart", "g/x").returncode == 0
        wait_until(lambda: (n := _nodes(running)["g/x"])["state"] == "running" and n["starts"] == 2, "x restarted", timeout=30)  # fmt: skip
        assert running.cli("stop", "g").returncode == 0
        reload(with_x=False)
        agree(2)
        reload(with_x=True)
        start_g()
        wait_until(lambda: _nodes(running)["g/x"]["state"] == "running", "x running", timeout=30)  # fmt: skip
        agree(3)
        assert running.cli("stop", "g").returncode == 0
        reload(with_x=False)
        agree(3)
        start_g()
        assert "g/x" not in _nodes(running)
        assert _series(served, "g/x") == {}


def test_a_scrape_under_gevent_lets_the_hub_run_while_it_writes_its_text() -> None:
    # Written out in the hub, 2,000 jobs' metrics held supervision and the control socket for
    # half a second a scrape (h248). Under threads the endpoint's thread is the OS's own.
    if RUNTIME != "gevent":
        pytest.skip("under threads a scrape runs on a thread of its own already")
    import gevent

    from supervision import python_job

    jobs = tuple(python_job(f"j{n}", "jobfuncs:ok", f"m{n}") for n in range(2000))
    metrics = TreeMetrics(SupervisorSpec(children=jobs))
    turns = [0]
    done = [False]

    def beside() -> None:
        while not done[0]:
            turns[0] += 1
            gevent.sleep(0)

    other = gevent.spawn(beside)
    gevent.sleep(0)  # it runs once, then waits for its next turn
    before = turns[0]
    text = metrics.text()
    during = turns[0] - before
    done[0] = True
    other.join(5)
    assert b'jobvisor_job_state{kind="python",path="j1999",state="running"} 0.0' in text
    assert during > 0, "nothing else ran in the hub while the scrape's text was written"


def _scraped(metrics: TreeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape of ``metrics``, read by prometheus_client's parser, as ``Served.metrics``."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for sample in family.samples
    }


def _ticks(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """``jobvisor_job_between_ticks`` by path: only the jobs that have the series."""
    return {
        dict(keys)["path"]: value
        for (name, keys), value in samples.items()
        if name == "jobvisor_job_between_ticks"
    }


def _running(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], path: str) -> float:
    """``jobvisor_job_state{state="running"}`` of the python job at ``path``."""
    key = ("jobvisor_job_state", (("kind", "python"), ("path", path), ("state", "running")))
    return samples[key]


def test_a_periodic_job_between_its_ticks_is_told_from_one_whose_tick_runs(
    make_tree: Callable[..., Any], events: Events
) -> None:
    """``jobvisor_job_state`` says ``running`` from a periodic job's start on (SPEC's state:
    its dependants count on it), and nothing said that no tick ran, where ``status`` and the
    page say ``idle``: ``jobvisor_job_between_ticks`` is 1 while none runs (before the first
    too), 0 while one does, as the status's ``between_ticks``. A service has no such series.
    The clock is the test's: a tick comes only when it moves."""
    clock = ManualClock()
    tick = python_job("tick", "jobfuncs:block", "tick", schedule=Schedule(every=30))
    svc = python_job("svc", "jobfuncs:block", "svc", schedule=Schedule(service=True))
    spec = SupervisorSpec(children=(tick, svc))
    metrics = TreeMetrics(spec)
    tree = make_tree(spec, sink=metrics.sink(), on_event=events, monotonic=clock)
    events.reached("tick", "running")
    events.reached("svc", "running")
    # Armed before the clock moves: a tick armed after it would never come.
    wait_until(lambda: tree.status()["children"][0]["next_start_at"], "the first tick armed")
    assert tree.status()["children"][0].get("between_ticks") is True
    samples = _scraped(metrics)
    assert _ticks(samples) == {"tick": 1}
    assert _running(samples, "tick") == 1
    clock.advance(30)
    assert jobfuncs.EVENTS["tick.running"].wait(10)
    assert "between_ticks" not in tree.status()["children"][0]
    samples = _scraped(metrics)
    assert _ticks(samples) == {"tick": 0}
    assert _running(samples, "tick") == 1
    jobfuncs.EVENTS["tick.release"].set()
    events.wait_for(lambda _: bool(events.of(AttemptFinished, "tick")))
    samples = _scraped(metrics)
    assert _ticks(samples) == {"tick": 1}
    assert _running(samples, "tick") == 1
    # Its ticks are attempts of its one start: the histogram counts them, starts does not.
    assert samples[("jobvisor_job_starts_total", (("kind", "python"), ("path", "tick")))] == 1
    count = (("kind", "python"), ("outcome", "succeeded"), ("path", "tick"))
    assert samples[("jobvisor_attempt_duration_seconds_count", count)] == 1


def test_the_late_end_of_a_tick_left_behind_does_not_end_the_next_incarnations() -> None:
    """A tick whose thread was abandoned (it ignored its stop) and ends after its job started
    again ended the new incarnation's tick too: between_ticks read 1 while it ran (r54)."""
    from supervision._state import State

    spec = SupervisorSpec(
        children=(python_job("tick", "jobfuncs:ok", "t", schedule=Schedule(every=30)),)
    )
    metrics = TreeMetrics(spec)
    sink: Any = metrics.sink()
    old, new = object(), object()
    sink.on_state("tick", State.PENDING, State.STARTING)
    sink.on_state("tick", State.STARTING, State.RUNNING)
    sink.on_tick("tick", True, old)  # noqa: FBT003 - the hook's argument
    sink.on_state("tick", State.RUNNING, State.STARTING)  # replaced: its thread left behind
    sink.on_state("tick", State.STARTING, State.RUNNING)
    assert _ticks(_scraped(metrics)) == {"tick": 1}
    sink.on_tick("tick", True, new)  # noqa: FBT003
    sink.on_tick("tick", False, old)  # noqa: FBT003 - the old tick ends at last
    assert _ticks(_scraped(metrics)) == {"tick": 0}, "the new tick runs on"
    sink.on_tick("tick", False, new)  # noqa: FBT003
    assert _ticks(_scraped(metrics)) == {"tick": 1}


TICKERS = """
version: 1
http: {heartbeat: 5s}
jobs:
  - name: calm
    service: true
    command: [sleep, '100']
  - name: busy
    every: 100ms
    command: [sh, -c, "touch ticking; exec sleep 100"]
HOURLY
"""
HOURLY = """
  - name: hourly
    every: 1h
    command: ['true']
"""


def test_between_ticks_is_scraped_for_each_periodic_job_and_goes_with_it(tmp_path: Path) -> None:
    """A daemon's scrape: a periodic job waiting for its next tick reads ``between_ticks`` 1
    with its state ``running``, one whose tick runs 0; a service has no such series (nothing
    to say, a series a job). A reload removing the job removes its series; one replacing a job
    gives it a new series, from the new job's own state. Starts' HELP says what a tick is."""
    manifest = TICKERS.replace("HOURLY", HOURLY)
    with http_daemon(tmp_path, manifest, "--runtime", RUNTIME) as running:
        served = Served(running.http)
        wait_until((tmp_path / "ticking").exists, "busy's first tick", proc=running.proc)
        wait_until(lambda: _nodes(running)["hourly"]["state"] == "running", "hourly running", timeout=30)  # fmt: skip
        nodes = _nodes(running)
        assert nodes["hourly"].get("between_ticks") is True
        assert "between_ticks" not in nodes["busy"]
        samples = served.metrics()
        assert _ticks(samples) == {"hourly": 1, "busy": 0}
        for path in ("hourly", "busy"):
            assert served.metric("jobvisor_job_state", path=path, kind="command", state="running") == 1  # fmt: skip
        text = served.get("/metrics").text
        assert (
            "# HELP jobvisor_job_between_ticks 1 while a periodic job (every, cron) waits for its"
            " next tick, its state running; 0 while a tick runs, or in any other state\n"
        ) in text
        assert (
            "# HELP jobvisor_job_starts_total Starts of a child (first start included); a"
            " periodic job's ticks are attempts of one start: count them with"
            " jobvisor_attempt_duration_seconds_count\n"
        ) in text
        assert (
            "# HELP jobvisor_attempt_duration_seconds How long each attempt of a job ran (a"
            " periodic job's ticks are attempts of one start: _count counts them)\n"
        ) in text
        # busy replaced by one that waits an hour; hourly removed.
        _reloaded(running, TICKERS.replace("100ms", "1h").replace("HOURLY", ""))
        wait_until(lambda: _ticks(served.metrics()) == {"busy": 1}, "the new busy between ticks", timeout=30)  # fmt: skip
        assert _series(served, "hourly") == {}
        assert served.metric("jobvisor_job_starts_total", path="busy", kind="command") == 1
