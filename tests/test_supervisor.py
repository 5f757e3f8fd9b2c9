"""Integration tests: real actors, real threads (or greenlets), one real supervisor tree."""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from typing import Any, ClassVar

import jobfuncs
import logbook
import pytest
from actorkit import FailingInit, FailingStop, Journal, Recorder, SlowCrash, SlowStop
from clockkit import ManualClock
from faultkit import wait_until
from treekit import FAST

from actors import CommandWork
from actors._errors import (
    ChildrenChangedError,
    GroupDownError,
    NotAGroupError,
    ShuttingDownError,
)
from actors._ready import ReadyProbe
from supervision import (
    ActorSpec,
    Backoff,
    Budget,
    ChildExited,
    ChildUnavailableError,
    Commanded,
    CooldownPolicy,
    Escalated,
    EscalationError,
    GaveUp,
    Intensity,
    JobSpec,
    NoSuchChildError,
    OnExhausted,
    Outcome,
    ProbationPassed,
    RestartPolicy,
    RestartScheduled,
    RestartType,
    Schedule,
    SpecError,
    StateChanged,
    Strategy,
    SupervisorSpec,
    TreeStoppedError,
    python_job,
)
from supervision._daemon import act
from supervision._table import flatten_status


def actor(
    name: str, journal: Journal, restart: RestartType = RestartType.PERMANENT, **kw: Any
) -> ActorSpec:
    return ActorSpec(
        name=name, actor_class=Recorder, args=(name, journal), kwargs=kw, restart=restart
    )


@pytest.fixture
def journal() -> Journal:
    Recorder.incarnations.clear()
    return Journal()


class TestRestartTypes:
    def test_permanent_restarts_after_a_normal_exit(self, make_tree, events, journal) -> None:
        tree = make_tree(
            SupervisorSpec(policy=FAST, children=(actor("p", journal),)), on_event=events
        )
        events.reached("p", "running")
        tree.ref("p").tell("stop-self")
        events.reached("p", "running", times=2)
        exits = events.of(ChildExited, "p")
        assert [e.outcome for e in exits] == [Outcome.SUCCEEDED]
        assert tree.ref("p").ask("ping", timeout=5) == ("pong", "p", 2)

    def test_transient_stays_down_after_success_and_restarts_after_failure(
        self, make_tree, events, journal
    ) -> None:
        children = (
            actor("t1", journal, RestartType.TRANSIENT),
            actor("t2", journal, RestartType.TRANSIENT),
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=children), on_event=events)
        events.reached("t2", "running")
        tree.ref("t1").tell("stop-self")
        tree.ref("t2").tell("crash")
        events.reached("t1", "succeeded")
        events.reached("t2", "running", times=2)
        status = {n["path"]: n for n in tree.status()["children"]}
        assert (status["t1"]["state"], status["t1"]["starts"]) == ("succeeded", 1)
        assert (status["t2"]["state"], status["t2"]["starts"], status["t2"]["restarts"]) == (
            "running",
            2,
            1,
        )

    def test_temporary_never_restarts(self, make_tree, events, journal) -> None:
        tree = make_tree(
            SupervisorSpec(policy=FAST, children=(actor("tmp", journal, RestartType.TEMPORARY),)),
            on_event=events,
        )
        events.reached("tmp", "running")
        tree.ref("tmp").tell("crash")
        events.reached("tmp", "failed")
        node = tree.status()["children"][0]
        assert (node["state"], node["starts"], node["failures"]) == ("failed", 1, 1)
        with pytest.raises(ChildUnavailableError, match="tmp is failed"):
            tree.ref("tmp").tell("hello")


class TestIntensityAndBackoff:
    def test_always_failing_child_starts_exactly_four_times_then_gives_up(
        self, make_tree, events
    ) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=0.001, max=0.004, jitter=0), intensity=Intensity(max_restarts=3)
        )
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(python_job("f", "jobfuncs:fail", "f"),)),
            on_event=events,
        )
        events.reached("f", "gave_up")
        assert jobfuncs.CALLS["f"] == 4
        delays = [e.delay for e in events.of(RestartScheduled, "f")]
        assert delays == [0.001, 0.002, 0.004]
        assert len(events.of(GaveUp, "f")) == 1
        node = tree.status()["children"][0]
        assert (node["starts"], node["restarts"], node["failures"]) == (4, 3, 4)
        assert tree.wait(5)
        assert tree.result().failed == ("f",)

    def test_next_start_at_is_shown_during_backoff(self, make_tree, events, journal) -> None:
        policy = RestartPolicy(backoff=Backoff(initial=30, max=30, jitter=0))
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(actor("slow", journal),)), on_event=events
        )
        events.reached("slow", "running")
        tree.ref("slow").tell("crash")
        events.reached("slow", "backoff")
        node = tree.status()["children"][0]
        exit_ = node["last_exit"]
        assert node["state"] == "backoff"
        assert node["next_start_at"] == pytest.approx(exit_["at"] + 30, abs=1)
        assert exit_["outcome"] == "failed"
        assert "slow crashed" in exit_["error"]


class TestStrategies:
    def spec(self, strategy: Strategy, journal: Journal) -> SupervisorSpec:
        return SupervisorSpec(
            strategy=strategy,
            policy=FAST,
            children=tuple(actor(n, journal) for n in ("a", "b", "c", "d")),
        )

    def test_one_for_one_restarts_only_the_failed_child(self, make_tree, events, journal) -> None:
        tree = make_tree(self.spec(Strategy.ONE_FOR_ONE, journal), on_event=events)
        events.reached("d", "running")
        tree.ref("b").tell("crash")
        events.reached("b", "running", times=2)
        assert journal.of("start") == ["a", "b", "c", "d", "b"]
        assert journal.of("stop") == []

    def test_one_for_all_stops_the_rest_in_reverse_and_starts_all_in_order(
        self, make_tree, events, journal
    ) -> None:
        tree = make_tree(self.spec(Strategy.ONE_FOR_ALL, journal), on_event=events)
        events.reached("d", "running")
        tree.ref("b").tell("crash")
        events.reached("d", "running", times=2)
        assert journal.of("stop") == ["d", "c", "a"]
        assert journal.of("start") == ["a", "b", "c", "d", "a", "b", "c", "d"]
        status = {n["path"]: n for n in tree.status()["children"]}
        assert all(status[n]["restarts"] == 1 for n in "abcd")
        assert status["b"]["failures"] == 1
        assert status["a"]["failures"] == 0, "a sibling stopped by the strategy did not fail"

    def test_rest_for_one_restarts_the_failed_child_and_those_after_it(
        self, make_tree, events, journal
    ) -> None:
        tree = make_tree(self.spec(Strategy.REST_FOR_ONE, journal), on_event=events)
        events.reached("d", "running")
        tree.ref("b").tell("crash")
        events.reached("d", "running", times=2)
        assert journal.of("stop") == ["d", "c"]
        assert journal.of("start") == ["a", "b", "c", "d", "b", "c", "d"]

    @pytest.mark.parametrize(
        "case", [(Strategy.ONE_FOR_ALL, "a, b, c, d"), (Strategy.REST_FOR_ONE, "b, c, d")]
    )
    def test_a_group_restart_is_one_info_line_naming_every_child_it_restarts(
        self, make_tree, events, journal, logs, case: tuple[Strategy, str]
    ) -> None:
        """Trial 30: at the demo's level (information) a group restart seemed to show only the
        failure (its children's starts are DEBUG). One INFO line says it and names them all."""
        strategy, restarted = case
        tree = make_tree(self.spec(strategy, journal), on_event=events)
        events.reached("d", "running")
        tree.ref("b").tell("crash")
        events.reached("d", "running", times=2)
        said = [r.message for r in logs.records if r.level == logbook.INFO]
        group = [m for m in said if "restart of" in m]
        assert len(group) == 1, said
        assert group[0].startswith(f"root: {strategy.value} restart of {restarted} in "), group
        assert " after b failed (restart 1 of " in group[0], group

    def test_group_strategies_back_off_and_count_per_group(
        self, make_tree, events, journal
    ) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=10, max=100, jitter=0), intensity=Intensity(max_restarts=2)
        )
        spec = SupervisorSpec(
            strategy=Strategy.ONE_FOR_ALL,
            policy=policy,
            children=(actor("x", journal), actor("y", journal)),
        )
        clock = ManualClock()
        tree = make_tree(spec, on_event=events, monotonic=clock)
        for round_, backoff in ((1, 10), (2, 20)):
            events.reached("y", "running", times=round_)
            tree.ref("x" if round_ == 1 else "y").tell("crash")
            events.reached("x", "backoff", times=round_)  # the group backs off as one
            events.reached("y", "backoff", times=round_)
            clock.advance(backoff - 0.001)
            assert not tree.wait(0.02)
            assert events.states("y")[-1] == "backoff", "not a moment early"
            clock.advance(0.001)
        events.reached("y", "running", times=3)
        tree.ref("x").tell("crash")  # third failure of the group within the window
        events.reached("x", "gave_up")
        delays = [e.delay for e in events.of(RestartScheduled, "")]
        assert delays == [10, 20]
        assert tree.status()["children"][1]["state"] == "running", "give-up leaves siblings running"


class TestShutdown:
    def test_children_stop_in_reverse_order(self, runtime, journal) -> None:
        from supervision import start_tree

        spec = SupervisorSpec(children=tuple(actor(n, journal) for n in ("a", "b", "c")))
        tree = start_tree(spec, runtime)
        assert tree.started(10)
        assert tree.stop(10)
        assert journal.of("start") == ["a", "b", "c"]
        assert journal.of("stop") == ["c", "b", "a"]
        assert tree.status()["state"] == "stopped"
        with pytest.raises(TreeStoppedError):
            tree.restart("a")
        # The child's path, not the group it goes under (the root: '').
        with pytest.raises(TreeStoppedError, match=r"^the tree has stopped; cannot add 'z'$"):
            tree.add_child(actor("z", journal))
        with pytest.raises(TreeStoppedError, match=r"^the tree has stopped; cannot add 'g/z'$"):
            tree.add_child(actor("z", journal), under="g")

    def test_a_child_that_ignores_its_stop_is_killed_after_grace_and_the_rest_go_on(
        self, runtime, journal, events
    ) -> None:
        from supervision import start_tree

        SlowStop.release.clear()
        spec = SupervisorSpec(
            children=(
                actor("first", journal),
                ActorSpec(name="slow", actor_class=SlowStop, args=("slow", journal), grace=0.05),
            )
        )
        tree = start_tree(spec, runtime, on_event=events)
        assert tree.started(10)
        try:
            assert tree.stop(10)
            assert journal.of("stopping") == ["slow"]
            assert journal.of("stop") == ["first"], "first still stops after slow was killed"
            exits = {e.path: e.outcome for e in events.of(ChildExited)}
            assert exits == {"slow": Outcome.KILLED, "first": Outcome.STOPPED}
        finally:
            SlowStop.release.set()


def logging_service(name: str, log: Any, tmp_path: Any, **kw: Any) -> JobSpec:
    """A command service that appends its name to ``log`` when it gets SIGTERM; it is ready
    once its trap is set (so no stop reaches it before it can say so)."""
    up = tmp_path / f"{name}.up"
    shell = (
        f"trap 'echo {name} >> {log}; rm -f {up}; exit 0' TERM; touch {up}; "
        "while :; do sleep 0.02; done"
    )
    return JobSpec(
        name=name,
        work=CommandWork(shell=shell),
        schedule=Schedule(service=True),
        ready=ReadyProbe(command=("test", "-e", str(up)), timeout=30, interval=0.01),
        **kw,
    )


class TestStopOrderFollowsDependencies:
    """A dependant stops before what it depends on, whatever the list order (systemd stops
    an ``After=`` dependant first); siblings otherwise stop last first."""

    def test_a_shutdown_stops_dependants_first(self, make_tree, events, tmp_path) -> None:
        log = tmp_path / "terms"
        children = (
            logging_service("web", log, tmp_path, depends_on=("api",)),
            logging_service("api", log, tmp_path, depends_on=("db",)),
            logging_service("db", log, tmp_path),
            logging_service("z", log, tmp_path),
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=children), on_event=events)
        assert tree.started(20)
        events.reached("web", "running", timeout=20)
        started = [e.path for e in events.of(StateChanged) if e.new.value == "running"]
        assert [p for p in started if p != "z"] == ["db", "api", "web"]
        assert tree.stop(20)
        assert log.read_text().split() == ["z", "web", "api", "db"]

    def test_a_group_stop_stops_dependants_first(self, make_tree, events, tmp_path) -> None:
        log = tmp_path / "terms"
        group = SupervisorSpec(
            name="g",
            policy=FAST,
            children=(
                logging_service("app", log, tmp_path, depends_on=("db",)),
                logging_service("db", log, tmp_path),
            ),
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)), on_event=events)
        events.reached("g/app", "running", timeout=20)
        tree.stop_child("g")
        assert log.read_text().split() == ["app", "db"]

    def test_a_one_for_all_restart_stops_dependants_first(
        self, make_tree, events, tmp_path
    ) -> None:
        log = tmp_path / "terms"
        crash = tmp_path / "crash"
        x = JobSpec(
            name="x",
            work=CommandWork(
                shell=f"while [ ! -e {crash} ]; do sleep 0.02; done; rm -f {crash}; exit 3"
            ),
            schedule=Schedule(service=True),
        )
        group = SupervisorSpec(
            name="g",
            strategy=Strategy.ONE_FOR_ALL,
            policy=FAST,
            children=(
                logging_service("app", log, tmp_path, depends_on=("db",)),
                logging_service("db", log, tmp_path),
                x,
            ),
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)), on_event=events)
        events.reached("g/app", "running", timeout=20)
        crash.touch()
        events.reached("g/app", "running", times=2, timeout=20)
        assert log.read_text().split() == ["app", "db"]
        assert tree.status()["children"][0]["children"][2]["failures"] == 1


class TestNestingAndEscalation:
    def test_escalation_through_two_levels_carries_the_cause_chain(self, make_tree, events) -> None:
        escalate = RestartPolicy(
            backoff=Backoff(initial=0.001, max=0.001),
            intensity=Intensity(max_restarts=1),
            on_exhausted=OnExhausted.ESCALATE,
        )
        inner = SupervisorSpec(
            name="inner", policy=escalate, children=(python_job("job", "jobfuncs:fail", "job"),)
        )
        outer = SupervisorSpec(name="outer", policy=escalate, children=(inner,))
        root = SupervisorSpec(policy=escalate, children=(outer,))
        tree = make_tree(root, on_event=events)
        assert tree.wait(20)
        result = tree.result()
        assert not result.ok
        assert isinstance(result.escalation, EscalationError)
        chain = result.escalation.chain()
        assert [getattr(e, "path", None) for e in chain[:3]] == ["", "outer", "outer/inner"]
        assert isinstance(chain[-1], RuntimeError)
        assert "job failed" in str(result.escalation)
        # Each level restarted its child once before escalating: 2 x 2 x 2 job starts.
        assert jobfuncs.CALLS["job"] == 8
        assert [e.path for e in events.of(Escalated)][-1] == ""
        assert tree.status()["state"] == "failed"

    @pytest.mark.parametrize("kind", ["command", "python"])
    def test_an_escalated_failure_keeps_a_traceback_only_of_the_users_code(
        self, make_tree, kind
    ) -> None:
        # A command's failure is raised in jobvisor's own frames: nobody reads them, and
        # kept they would make a reference cycle of every failed attempt (a crash loop fed
        # the garbage collector). A python job's traceback is the user's: it stays.
        escalate = RestartPolicy(
            backoff=Backoff(initial=0, max=0, jitter=0),
            intensity=Intensity(max_restarts=2),
            on_exhausted=OnExhausted.ESCALATE,
        )
        job = (
            JobSpec(name="job", work=CommandWork(argv=("false",)))
            if kind == "command"
            else python_job("job", "jobfuncs:fail", "job")
        )
        tree = make_tree(SupervisorSpec(policy=escalate, children=(job,)))
        assert tree.wait(20)
        escalation = tree.result().escalation
        assert isinstance(escalation, EscalationError)
        cause = escalation.chain()[-1]
        if kind == "command":
            assert "exited with 1" in str(cause)
            assert cause.__traceback__ is None
        else:
            assert isinstance(cause, RuntimeError)
            assert cause.__traceback__ is not None

    def test_group_status_nests_and_paths_are_joined(self, make_tree, events, journal) -> None:
        group = SupervisorSpec(
            name="etl", children=(actor("load", journal), actor("clean", journal))
        )
        tree = make_tree(SupervisorSpec(children=(group, actor("w", journal))), on_event=events)
        assert tree.started(10)
        doc = tree.status()
        assert doc["name"] == "root"
        etl = doc["children"][0]
        assert (etl["kind"], etl["state"], etl["path"]) == ("group", "running", "etl")
        assert [c["path"] for c in etl["children"]] == ["etl/load", "etl/clean"]
        assert set(etl["children"][0]) == {
            "name",
            "path",
            "kind",
            "state",
            "starts",
            "restarts",
            "failures",
            "last_exit",
            "next_start_at",
            "pid",  # beyond SPEC's fields: a running command's leader, null here
            "since",  # when its state last changed
        }
        assert tree.ref("etl/clean").ask("ping", timeout=5) == (
            "pong",
            ["etl", "clean"][-1],
            1,
        )


class TestCooldown:
    """Cooldowns and probations of real length: the tree's clock jumps instead of waiting."""

    def test_full_cooldown_cycle_with_real_actors(self, make_tree, events) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=0, max=0),
            intensity=Intensity(max_restarts=1),
            on_exhausted=OnExhausted.COOLDOWN,
            cooldown=CooldownPolicy(duration=30, probation=10, multiplier=2, max=600, max_cycles=2),
        )
        # Fails its first 3 calls: start, restart, probe 1 fail; probe 2 succeeds.
        job = python_job("c", "jobfuncs:fail_times", "c", 3)
        clock = ManualClock()
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(job,)), on_event=events, monotonic=clock
        )
        events.reached("c", "cooldown")
        clock.advance(29.9)
        assert not tree.wait(0.02), "the cooldown is not over yet"
        clock.advance(0.1)
        events.reached("c", "cooldown", times=2)
        clock.advance(60)  # the second cycle cools down twice as long
        assert tree.wait(10)
        states = events.states("c")
        assert states == [
            "starting",
            "running",
            "backoff",
            "starting",
            "running",
            "cooldown",
            "starting",
            "probation",
            "cooldown",
            "starting",
            "probation",
            "succeeded",
        ]
        assert len(events.of(ProbationPassed, "c")) == 1
        assert tree.result().ok

    def test_max_cycles_ends_in_give_up(self, make_tree, events) -> None:
        policy = RestartPolicy(
            intensity=Intensity(max_restarts=0),
            on_exhausted=OnExhausted.COOLDOWN,
            cooldown=CooldownPolicy(duration=5, probation=10, max_cycles=2),
        )
        clock = ManualClock()
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(python_job("c", "jobfuncs:fail", "c"),)),
            on_event=events,
            monotonic=clock,
        )
        for cycle, duration in ((1, 5), (2, 10)):
            events.reached("c", "cooldown", times=cycle)
            clock.advance(duration)
        events.reached("c", "gave_up")
        assert jobfuncs.CALLS["c"] == 3  # the first start and two probes
        assert tree.status()["children"][0]["state"] == "gave_up"

    def test_surviving_probation_returns_to_running(self, make_tree, events, journal) -> None:
        policy = RestartPolicy(
            intensity=Intensity(max_restarts=0),
            on_exhausted=OnExhausted.COOLDOWN,
            cooldown=CooldownPolicy(duration=5, probation=10),
        )
        clock = ManualClock()
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(actor("svc", journal),)),
            on_event=events,
            monotonic=clock,
        )
        events.reached("svc", "running")
        tree.ref("svc").tell("crash")
        events.reached("svc", "cooldown")
        clock.advance(5)
        events.reached("svc", "probation")
        clock.advance(9.9)
        assert tree.ref("svc").ask("ping", timeout=5) == ("pong", "svc", 2)
        assert events.states("svc")[-1] == "probation", "probation is not over yet"
        clock.advance(0.1)
        events.reached("svc", "running", times=2)
        assert events.states("svc")[-4:] == ["cooldown", "starting", "probation", "running"]
        assert len(events.of(ProbationPassed, "svc")) == 1


class TestDynamicChildren:
    def test_add_stop_start_restart_remove(self, make_tree, events, journal) -> None:
        group = SupervisorSpec(name="g", children=(actor("a", journal),))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)), on_event=events)
        assert tree.started(10)
        ref = tree.add_child(actor("b", journal), under="g")
        assert ref.ask("ping", timeout=5) == ("pong", "b", 1)
        tree.stop_child("g/b")
        assert journal.of("stop") == ["b"]
        with pytest.raises(ChildUnavailableError):
            ref.ask("ping", timeout=5)
        assert tree.stop_child("g/b") == "g/b: not running (stopped); nothing to stop"
        tree.start_child("g/b")
        assert ref.ask("ping", timeout=5) == ("pong", "b", 2)
        tree.restart("g/b")
        assert ref.ask("ping", timeout=5) == ("pong", "b", 3)
        node = tree.status()["children"][0]["children"][1]
        assert (node["starts"], node["failures"], node["restarts"]) == (3, 0, 0)
        tree.remove_child("g/b")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == ["a"]
        # What was done from outside, for the journal (a restore must know of a person's
        # start after a cooldown); nothing for the stop that found nothing to stop. The events
        # are told on the bus's thread: the remove's may come after remove_child returned.
        events.wait_for(
            lambda items: any(isinstance(e, Commanded) and e.action == "remove" for e in items)
        )
        acted = [(e.path, e.action, e.signal) for e in events.of(Commanded)]
        assert acted == [
            ("g/b", "add", None),
            ("g/b", "stop", None),
            ("g/b", "start", None),
            ("g/b", "restart", None),
            ("g/b", "remove", None),
        ]
        with pytest.raises(ChildUnavailableError) as refused:
            ref.tell("x")
        assert str(refused.value) == (
            "child g/b is removed: it is no longer in the tree (add it again for a new reference)"
        )

    def test_a_child_is_added_last_or_before_a_sibling(self, make_tree, journal) -> None:
        group = SupervisorSpec(name="g", children=(actor("a", journal), actor("c", journal)))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.add_child(actor("b", journal), under="g", before="c")
        tree.add_child(actor("d", journal), under="g")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == list("abcd")
        with pytest.raises(NoSuchChildError, match="g/nope"):
            tree.add_child(actor("e", journal), under="g", before="nope")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == list("abcd")

    def test_a_group_takes_a_new_strategy_and_order_in_place(
        self, make_tree, events, journal
    ) -> None:
        group = SupervisorSpec(
            name="g", policy=FAST, children=(actor("a", journal), actor("b", journal))
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)), on_event=events)
        assert tree.started(10)
        a, b = group.children
        tree.update_group(replace(group, strategy=Strategy.ONE_FOR_ALL, children=(b, a)), "g")
        nodes = tree.status()["children"][0]["children"]
        assert [(n["name"], n["starts"]) for n in nodes] == [("b", 1), ("a", 1)], (
            "nothing restarted"
        )
        tree.ref("g/a").tell("crash")
        events.reached("g/b", "running", times=2)  # one_for_all now: a's failure restarts b
        events.reached("g/a", "running", times=2)
        assert journal.of("start") == ["a", "b", "b", "a"], "in the new order"

    def test_a_smaller_intensity_counts_the_restarts_made_before_it(
        self, make_tree, events, journal
    ) -> None:
        roomy = RestartPolicy(
            backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=5)
        )
        tree = make_tree(
            SupervisorSpec(policy=roomy, children=(actor("a", journal),)), on_event=events
        )
        assert tree.started(10)
        tree.ref("a").tell("crash")
        events.reached("a", "running", times=2)
        tight = SupervisorSpec(
            policy=replace(roomy, intensity=Intensity(max_restarts=1)),
            children=(actor("a", journal),),
        )
        tree.update_group(tight)
        tree.ref("a").tell("crash")
        events.reached("a", "gave_up")  # the second restart in the window is one too many
        assert tree.status()["children"][0]["starts"] == 2

    def test_an_update_that_cannot_apply_is_refused_and_changes_nothing(
        self, make_tree, journal
    ) -> None:
        spec = SupervisorSpec(policy=FAST, children=(actor("a", journal),))
        tree = make_tree(spec)
        assert tree.started(10)
        with pytest.raises(SpecError, match=r"same children \(a\), got a, b"):
            tree.update_group(replace(spec, children=(actor("a", journal), actor("b", journal))))
        with pytest.raises(SpecError, match=r"budget \(supervisor.budget\) is added"):
            tree.update_group(replace(spec, policy=replace(FAST, budget=Budget())))
        with pytest.raises(NotAGroupError):
            tree.update_group(spec, "a")
        assert [c["name"] for c in tree.status()["children"]] == ["a"]
        assert tree.ref("a").ask("ping", timeout=5) == ("pong", "a", 1)

    def test_a_group_restarted_comes_back_with_the_children_it_had(
        self, make_tree, journal
    ) -> None:
        """Children added to and removed from a running group stay so when it restarts (it came
        back with the ones it started with: a reload's half, or a move between groups, undone)."""
        group = SupervisorSpec(
            name="g", policy=FAST, children=(actor("a", journal), actor("b", journal))
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.remove_child("g/a")
        tree.add_child(actor("c", journal), under="g")
        tree.restart("g")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == ["b", "c"]
        assert tree.ref("g/c").ask("ping", timeout=5) == ("pong", "c", 2)
        # and the new order and policy an update gives it, as before
        tree.update_group(replace(group, children=(actor("c", journal), actor("b", journal))), "g")
        tree.restart("g")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == ["c", "b"]

    def test_a_running_groups_own_grace_applies_at_once(self, make_tree, tmp_path) -> None:
        """Its parent stops it by the grace an update gave it, not only after it restarted:
        with its old one, 50 ms, it was killed before its job's own grace ran out."""
        trapped = tmp_path / "trapped"
        stubborn = JobSpec(
            name="stubborn",
            work=CommandWork(shell=f"trap '' TERM; touch {trapped}; while :; do sleep 0.02; done"),
            schedule=Schedule(service=True),
            grace=0.3,
        )
        group = SupervisorSpec(name="g", policy=FAST, children=(stubborn,), grace=0.05)
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        wait_until(trapped.exists, "its TERM ignored")  # a stop before that ended it at once
        tree.update_group(replace(group, grace=30), "g")
        with logbook.TestHandler(level=logbook.WARNING, bubble=True) as said:
            said.push_application()
            try:
                tree.stop_child("g")
            finally:
                said.pop_application()
        assert said.has_warning("g/stubborn: did not stop within 0.3s; killing it")
        assert not said.has_warning(
            "g: did not stop within 0.05s (its grace); killing every job still running under it"
        )

    def test_an_update_made_for_other_children_changes_nothing_not_even_the_next_start(
        self, make_tree, journal
    ) -> None:
        """A reload's update made while the group was down (its new children for its next
        start) that meets it running with others is refused whole, as ChildrenChangedError: the
        reload looks again. (The group's next start had taken the refused spec.)"""
        group = SupervisorSpec(
            name="g", policy=FAST, children=(actor("a", journal), actor("b", journal))
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        with pytest.raises(ChildrenChangedError, match=r"g: an update keeps the same children"):
            tree.update_group(replace(group, children=(actor("a", journal),)), "g")
        assert isinstance(ChildrenChangedError("x"), SpecError), "as it was"
        tree.restart("g")
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == ["a", "b"]

    def test_a_down_groups_new_children_are_listed_in_their_place_before_it_starts(
        self, make_tree, journal
    ) -> None:
        """Its status listed the nodes of its last incarnation only: a child an update added
        while it was down showed only once it started. Listed at once, ``stopped``, where the
        spec puts it, inner groups' too; the others keep their last node till the start."""
        inner = SupervisorSpec(name="h", policy=FAST, children=(actor("c", journal),))
        group = SupervisorSpec(name="g", policy=FAST, children=(actor("a", journal), inner))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.stop_child("g")
        grown = replace(
            group,
            children=(
                actor("x", journal),
                actor("a", journal),
                actor("b", journal),
                replace(inner, children=(actor("c", journal), actor("d", journal))),
            ),
        )
        tree.update_group(grown, "g")

        def listed() -> list[tuple[str, str, int]]:
            nodes = flatten_status(tree.status())
            return [(n["path"], n["state"], n["starts"]) for n in nodes if n["path"] != "g"]

        assert listed() == [
            ("g/x", "stopped", 0),
            ("g/a", "stopped", 1),
            ("g/b", "stopped", 0),
            ("g/h", "stopped", 1),
            ("g/h/c", "stopped", 1),
            ("g/h/d", "stopped", 0),
        ]
        tree.start_child("g")
        wait_until(lambda: all(state == "running" for _, state, _ in listed()), "g started")
        assert [(path, starts) for path, _, starts in listed()] == [
            ("g/x", 1),
            ("g/a", 2),
            ("g/b", 1),
            ("g/h", 2),
            ("g/h/c", 2),
            ("g/h/d", 1),
        ]

    def test_a_down_groups_children_are_listed_in_a_reloads_new_order(
        self, make_tree, journal
    ) -> None:
        """A reload that reorders a down group's children and adds one: the new one was put
        after its predecessor's old place (last run a, b; new spec b, a, c: listed a, c, b).
        Listed in the new spec's order; one it removed, still shown till the start, after."""
        group = SupervisorSpec(
            name="g",
            policy=FAST,
            children=(actor("a", journal), actor("b", journal), actor("e", journal)),
        )
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.stop_child("g")
        tree.update_group(
            replace(
                group,
                children=(actor("b", journal), actor("a", journal), actor("c", journal)),
            ),
            "g",
        )
        nodes = flatten_status(tree.status())
        listed = [(n["path"], n["starts"]) for n in nodes if n["path"] != "g"]
        shown = [path for path, _ in listed]
        assert shown[:3] == ["g/b", "g/a", "g/c"]
        assert shown[3:] in ([], ["g/e"])
        assert dict(listed)["g/c"] == 0
        assert dict(listed)["g/a"] == dict(listed)["g/b"] == 1

    def test_a_down_groups_thousands_of_children_are_listed_in_order_once_each(self) -> None:
        """Listed in one pass (a scan per child made a 10,000-job group's read 9.6 s): each
        child once, in the spec's order, its last node kept, a new one stopped, a removed one
        after."""
        from supervision._status import stopped_children

        n = 2000
        kids = tuple(JobSpec(name=f"j{i}", work=CommandWork(argv=("true",))) for i in range(n + 1))
        spec = SupervisorSpec(name="g", children=kids[::-1][:n])  # reversed, j0 removed
        last = [{"name": f"j{i}", "path": f"g/j{i}", "starts": 1} for i in range(n)]
        out = stopped_children(spec, "g", last)
        assert [x["name"] for x in out] == [f"j{i}" for i in range(n, 0, -1)] + ["j0"]
        assert [x["starts"] for x in out] == [0] + [1] * n
        assert out[0]["state"] == "stopped"
        assert out[1] is last[n - 1]

    def test_a_group_that_is_down_starts_from_its_new_spec(self, make_tree, journal) -> None:
        group = SupervisorSpec(name="g", policy=FAST, children=(actor("a", journal),))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.stop_child("g")
        tree.update_group(replace(group, children=(actor("b", journal),)), "g")
        tree.start_child("g")
        assert tree.ref("g/b").ask("ping", timeout=5) == ("pong", "b", 1)
        assert [c["name"] for c in tree.status()["children"][0]["children"]] == ["b"]

    def test_a_group_that_is_stopping_takes_its_new_spec_for_its_next_start(
        self, make_tree, events, journal
    ) -> None:
        SlowStop.release.clear()
        slow = ActorSpec(name="slow", actor_class=SlowStop, args=("slow", journal), grace=30)
        group = SupervisorSpec(name="g", policy=FAST, children=(slow,))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)), on_event=events)
        assert tree.started(10)
        stopping = threading.Thread(target=tree.stop_child, args=("g",))
        stopping.start()
        try:
            events.reached("g", "stopping")
            tree.update_group(replace(group, children=(actor("b", journal),)), "g")
        finally:
            SlowStop.release.set()
            stopping.join(10)
        tree.start_child("g")
        assert tree.ref("g/b").ask("ping", timeout=5) == ("pong", "b", 1)

    def test_a_child_removed_while_it_waits_on_a_dependency_stays_gone(
        self, make_tree, events, tmp_path
    ) -> None:
        """It went back in the start queue once its dependency was met (and an update of the
        group then failed on it), while a slow sibling held the queue."""
        first = python_job("first", "jobfuncs:block", "dep")
        later = replace(python_job("later", "jobfuncs:ok", "later"), depends_on=("first",))
        ready = ReadyProbe(command=("test", "-e", str(tmp_path / "up")), timeout=60, interval=0.02)
        slow = JobSpec(
            name="slow",
            work=CommandWork(argv=("sleep", "100")),
            schedule=Schedule(service=True),
            ready=ready,
        )
        spec = SupervisorSpec(policy=FAST, children=(first, later, slow))
        tree = make_tree(spec, on_event=events)
        assert jobfuncs.EVENTS["dep.running"].wait(10)
        events.reached("slow", "starting")  # not ready: the queue waits on it
        tree.remove_child("later")
        jobfuncs.EVENTS["dep.release"].set()
        events.reached("first", "succeeded")
        tree.update_group(replace(spec, children=(first, slow)))
        (tmp_path / "up").touch()
        events.reached("slow", "running")
        assert [c["name"] for c in tree.status()["children"]] == ["first", "slow"]
        assert "later" not in jobfuncs.CALLS

    def test_a_crash_loop_restarting_in_place_takes_a_new_strategy_cleanly(
        self, make_tree, events
    ) -> None:
        """Reports of restarts made in place before the update are one_for_one's (they were
        taken as the new strategy's, and the incarnation killed "against its policy")."""
        loop = RestartPolicy(
            backoff=Backoff(initial=0, max=0, jitter=0), intensity=Intensity(max_restarts=10**9)
        )
        crash = JobSpec(
            name="crash", work=CommandWork(shell="exit 1"), restart=RestartType.PERMANENT
        )
        spec = SupervisorSpec(policy=loop, children=(crash,))
        errors: list[str] = []

        class Errors(logbook.Handler):  # type: ignore[misc]
            def emit(self, record: logbook.LogRecord) -> None:
                errors.append(record.message)

        with Errors(level=logbook.ERROR, bubble=True).applicationbound():
            tree = make_tree(spec, on_event=events)
            events.reached("crash", "running", times=50)
            tree.update_group(replace(spec, strategy=Strategy.ONE_FOR_ALL))
            restarts = tree.status()["children"][0]["restarts"]
            while tree.status()["children"][0]["restarts"] < restarts + 100:
                events.reached("crash", "running", times=1)
            tree.stop(10)
        assert not [e for e in errors if "against its policy" in e]

    def test_bad_paths_and_duplicates(self, make_tree, journal) -> None:
        tree = make_tree(SupervisorSpec(children=(actor("a", journal),)))
        assert tree.started(10)
        with pytest.raises(NoSuchChildError, match="'nope'"):
            tree.restart("nope")
        with pytest.raises(NoSuchChildError, match="a/deeper"):
            tree.stop_child("a/deeper")
        with pytest.raises(SpecError, match="exists already"):
            tree.add_child(actor("a", journal))
        with pytest.raises(SpecError, match="child path"):
            tree.stop_child("")

    def test_a_job_inside_a_stopped_group_is_not_said_to_be_missing(
        self, make_tree, journal
    ) -> None:
        group = SupervisorSpec(name="g", policy=FAST, children=(actor("a", journal),))
        tree = make_tree(SupervisorSpec(policy=FAST, children=(group,)))
        assert tree.started(10)
        tree.stop_child("g")
        for action in (tree.start_child, tree.restart, tree.stop_child):
            with pytest.raises(GroupDownError) as raised:
                action("g/a")
            assert str(raised.value) == "cannot reach g/a: its group g is stopped; start g first"
            assert (raised.value.path, raised.value.group) == ("g/a", "g")
        # still a NoSuchChildError for code that catches those, as before
        assert isinstance(raised.value, NoSuchChildError)
        reply = act(tree, "start", "g/a")
        assert reply == {"ok": False, "code": "group_down", "error": str(raised.value)}
        tree.start_child("g")
        assert tree.ref("g/a").ask("ping", timeout=5)[:2] == ("pong", "a")


class _ChainedCrash(Recorder):
    def on_receive(self, message: Any) -> Any:
        try:
            return {}[message]
        except KeyError as exc:
            raise RuntimeError("db down") from exc


class TestFailuresLogged:
    """An actor's failure line had no traceback (on_start, on_receive), or one of jobvisor's
    frames, said twice a start (__init__) (h244): its own frames, once, as a python job's."""

    CASES: ClassVar[dict[str, tuple[type, dict[str, Any]]]] = {
        "on_receive": (Recorder, {}),
        "on_start": (Recorder, {"fail_start": True}),
        "__init__": (FailingInit, {}),
    }

    @pytest.mark.parametrize("where", list(CASES))
    def test_an_actors_failure_is_logged_once_with_its_own_frames_only(
        self, make_tree, events, journal, logs, where: str
    ) -> None:
        cls, kwargs = self.CASES[where]
        policy = RestartPolicy(intensity=Intensity(max_restarts=0))
        spec = ActorSpec(name="w", actor_class=cls, args=("w", journal), kwargs=kwargs)
        tree = make_tree(SupervisorSpec(policy=policy, children=(spec,)), on_event=events)
        if cls is Recorder and not kwargs:
            assert tree.started(10)
            tree.ref("w").tell("crash")
        events.reached("w", "gave_up")
        said = [r.message for r in logs.records if r.message.startswith("w: ")]
        [failed] = [m for m in said if m.startswith("w: failed (start 1)")]  # an actor: its starts
        lines = failed.splitlines()
        assert lines[1] == "Traceback (most recent call last):", failed
        assert "actorkit.py" in lines[2], failed
        assert lines[2].endswith(f"in {where}"), failed
        assert not [m for m in said if "could not start" in m], said
        for ours in ("/actors/", "/supervision/", "/pykka/"):
            assert ours not in failed, failed

    def test_an_actors_chained_failure_shows_its_cause_as_python_does(
        self, make_tree, events, journal, logs
    ) -> None:
        policy = RestartPolicy(intensity=Intensity(max_restarts=0))
        spec = ActorSpec(name="w", actor_class=_ChainedCrash, args=("w", journal))
        tree = make_tree(SupervisorSpec(policy=policy, children=(spec,)), on_event=events)
        assert tree.started(10)
        tree.ref("w").tell("k")
        events.reached("w", "gave_up")
        [failed] = [r.message for r in logs.records if r.message.startswith("w: failed")]
        assert "KeyError: 'k'" in failed
        assert "The above exception was the direct cause of the following exception:" in failed
        assert failed.rstrip().endswith("RuntimeError: db down"), failed


class TestStableRef:
    def test_messages_sent_during_restart_reach_the_next_incarnation(
        self, make_tree, events, journal
    ) -> None:
        policy = RestartPolicy(backoff=Backoff(initial=60, max=60, jitter=0))
        clock = ManualClock()
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(actor("w", journal),)),
            on_event=events,
            monotonic=clock,
        )
        ref = tree.ref("w")
        ref.tell("before")
        ref.tell("crash")
        events.reached("w", "backoff")
        for i in range(5):
            ref.tell(i)
        answer = ref.ask("ping", block=False)
        clock.advance(60)
        assert answer.get(timeout=5) == ("pong", "w", 2)
        assert ref.ask("seen", timeout=5) == [0, 1, 2, 3, 4]

    def test_an_ask_that_waits_its_timeout_out_is_a_jobvisor_error_and_pykkas_timeout(
        self, make_tree, events, journal
    ) -> None:
        # It was a bare pykka.Timeout, "Timeout 2 seconds": missed by `except JobvisorError`,
        # and no word of the child (h244).
        import pykka

        from supervision import JobvisorError, ReplyTimeoutError

        policy = RestartPolicy(backoff=Backoff(initial=60, max=60, jitter=0))
        clock = ManualClock()
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(actor("w", journal),)),
            on_event=events,
            monotonic=clock,
        )
        ref = tree.ref("w")
        ref.tell("crash")
        events.reached("w", "backoff")
        with pytest.raises(ReplyTimeoutError, match=r"^child w did not answer within 0.05 s;") as e:
            ref.ask("late", timeout=0.05)
        assert isinstance(e.value, JobvisorError)
        assert isinstance(e.value, pykka.Timeout)
        clock.advance(60)
        assert ref.ask("seen", timeout=5) == ["late"]  # the message stayed sent

    def test_asks_to_a_child_that_gave_up_fail_at_once(self, make_tree, events, journal) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=0.05, max=0.05), intensity=Intensity(max_restarts=0)
        )
        tree = make_tree(
            SupervisorSpec(policy=policy, children=(actor("w", journal),)), on_event=events
        )
        ref = tree.ref("w")
        future = None
        ref.tell("crash")
        future = ref.ask("ping", block=False)
        events.reached("w", "gave_up")
        with pytest.raises(ChildUnavailableError, match="given up"):
            future.get(timeout=5)
        with pytest.raises(ChildUnavailableError):
            ref.ask("ping", timeout=5)

    def test_a_job_or_a_group_has_no_stable_reference_to_send_to(self, make_tree) -> None:
        # It had one: a tell was taken and never handled, and an ask waited for as long as the
        # service ran (embedded-API trial h233); a group's said "ignored" and answered None.
        service = python_job("svc", "jobfuncs:block", "ref-job", schedule=Schedule(service=True))
        group = SupervisorSpec(name="g", children=(python_job("in", "jobfuncs:ok", "in"),))
        tree = make_tree(SupervisorSpec(children=(service, group)))
        assert tree.started(10)
        for path, kind in (("svc", "a python job"), ("g", "a group"), ("g/in", "a python job")):
            with pytest.raises(ChildUnavailableError) as refused:
                tree.ref(path)
            said = str(refused.value)
            assert said.startswith(f"{path!r} is {kind}: only an actor (ActorSpec) "), said
            assert "takes messages" in said, said
        # Nor does add_child give one (review r48): an actor's, None for a job or a group.
        assert tree.add_child(python_job("more", "jobfuncs:ok", "more")) is None
        assert tree.add_child(SupervisorSpec(name="h", children=())) is None


def test_a_stable_ref_after_its_trees_stop_says_the_tree_stopped(make_tree, journal) -> None:
    """It said "start it first", which a stopped tree cannot do (embedded-API trial h233)."""
    tree = make_tree(SupervisorSpec(children=(actor("a", journal),)))
    assert tree.started(10)
    ref = tree.ref("a")
    # A path removed and added again has a new reference; the old one keeps saying removed.
    added = tree.add_child(actor("b", journal))
    tree.remove_child("b", timeout=10)
    again = tree.add_child(actor("b", journal))
    assert added is not None
    assert again is not None
    assert again is not added
    assert tree.stop(10)
    for each, name in ((ref, "a"), (again, "b")):
        with pytest.raises(ChildUnavailableError) as refused:
            each.tell("x")
        said = str(refused.value)
        assert said == (
            f"child {name} is stopped with its tree: a tree that has stopped does not start again"
        ), said
    with pytest.raises(ChildUnavailableError, match="child b is removed: it is no longer"):
        added.tell("x")


def test_messages_queued_past_the_stash_limit_at_a_crash_all_reach_the_next_incarnation(
    make_tree, journal
) -> None:
    """1,500 tells queued behind a crash: each was taken (its tell returned), so each is
    carried over to the next incarnation. The 500 past the restart stash's 1,000 had been
    failed as dead letters, said "the child stopped for good" while it ran again (trial
    h240)."""
    spec = ActorSpec(name="a", actor_class=SlowCrash, args=("a", journal))
    tree = make_tree(SupervisorSpec(policy=FAST, children=(spec,)))
    assert tree.started(10)
    ref = tree.ref("a")
    gate = threading.Event()
    ref.tell(("crash", gate))
    journal.wait_count("crashing", "a", 1)
    for number in range(1500):
        ref.tell(number)  # all queued behind the held crash
    gate.set()
    assert ref.ask("seen", timeout=30) == list(range(1500))
    assert journal.count("start", "a") == 2
    # The stash's bound counts what is sent during a restart, not what was carried over.
    gate = threading.Event()
    ref.tell(("crash", gate))
    journal.wait_count("crashing", "a", 2)
    for number in range(1500):
        ref.tell(number)  # queued behind the crash: carried over
    gate.set()
    journal.wait_count("start", "a", 3)
    assert ref.ask("ping", timeout=30)[2] == 3


def test_an_actor_whose_on_stop_raises_as_it_is_stopped_is_stopped_not_failed(
    make_tree, journal
) -> None:
    """A stop commanded is never a failure (SPEC §2): an actor's on_stop that raised during a
    restart or a stop counted a failure each time, where a job's is told as stopped with
    its error (trial h240)."""
    spec = ActorSpec(name="bs", actor_class=FailingStop, args=("bs", journal))
    tree = make_tree(SupervisorSpec(policy=FAST, children=(spec,)))
    assert tree.started(10)
    tree.restart("bs", timeout=10)
    tree.stop_child("bs", timeout=10)
    node = tree.status()["children"][0]
    assert (node["state"], node["failures"], node["last_exit"]["outcome"]) == (
        "stopped",
        0,
        "stopped",
    )
    assert "on_stop fails" in node["last_exit"]["error"]


def test_a_crash_on_a_message_handled_ahead_of_a_stop_is_still_a_failure(
    make_tree, journal
) -> None:
    """The stop waits behind the messages queued before it: a crash on one of those is the
    actor's own failure, counted and told as one, not the stop's (review r50)."""
    spec = ActorSpec(name="a", actor_class=SlowCrash, args=("a", journal))
    tree = make_tree(SupervisorSpec(policy=FAST, children=(spec,)))
    assert tree.started(10)
    gate = threading.Event()
    tree.ref("a").tell(("crash", gate))
    journal.wait_count("crashing", "a", 1)
    # The stop, asked while the crash is held, waits behind it in the actor's inbox.
    stopping = threading.Thread(target=tree.stop_child, args=("a",), kwargs={"timeout": 10})
    stopping.start()
    wait_until(lambda: tree.status()["children"][0]["state"] == "stopping", "a stopping")
    gate.set()
    stopping.join(30)
    assert not stopping.is_alive()
    node = tree.status()["children"][0]
    assert (node["state"], node["failures"], node["last_exit"]["outcome"]) == (
        "stopped",
        1,
        "failed",
    )


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_stop_called_from_an_event_callback_returns_at_the_roots_end(make_tree, how) -> None:
    """From a subscriber: the events thread is the caller, so stop() cannot wait for it. It
    waited for itself 10 s, holding every other subscriber's events, and said True; now it
    returns False once the root has ended, and the tree's release goes on once it returns."""
    said: list[tuple[bool, bool]] = []
    done = threading.Event()
    job = python_job("once", "jobfuncs:ok", "once", autostart=False)
    tree = make_tree(SupervisorSpec(children=(job,)))

    def on_event(event: object) -> None:
        if isinstance(event, StateChanged) and event.new == "succeeded" and not said:
            said.append((getattr(tree, how)(30), tree.ended))
            done.set()

    tree.subscribe(on_event)
    tree.start_child("once")
    assert done.wait(30)
    assert said == [(False, True)]
    assert tree.stop(30)  # from elsewhere: the whole release


def _states(items: list[object], path: str) -> list[str]:
    return [e.new.value for e in items if isinstance(e, StateChanged) and e.path == path]


def test_commanded_stops_never_count_as_failures(make_tree, events, journal) -> None:
    policy = RestartPolicy(intensity=Intensity(max_restarts=0))
    tree = make_tree(
        SupervisorSpec(policy=policy, children=(actor("a", journal),)), on_event=events
    )
    assert tree.started(10)
    for _ in range(3):
        tree.restart("a")

    # A restart returns once begun, not once running; one may also stop a start not yet done.
    def settled(items: list[object]) -> bool:
        states = _states(items, "a")
        return states.count("starting") == 4 and states[-1] == "running"

    events.wait_for(settled)
    node = tree.status()["children"][0]
    assert (node["state"], node["starts"], node["failures"], node["restarts"]) == (
        "running",
        4,
        0,
        0,
    )


def test_a_failing_on_start_is_a_failed_start_and_the_sequence_goes_on(
    make_tree, events, journal
) -> None:
    policy = RestartPolicy(
        backoff=Backoff(initial=0.001, max=0.001), intensity=Intensity(max_restarts=1)
    )
    spec = SupervisorSpec(
        policy=policy, children=(actor("bad", journal, fail_start=True), actor("good", journal))
    )
    tree = make_tree(spec, on_event=events)
    events.reached("bad", "gave_up")
    events.reached("good", "running")
    assert journal.count("start", "bad") == 2
    assert tree.status()["children"][1]["state"] == "running"


def test_periodic_schedule_is_finite_only_with_times() -> None:
    assert Schedule(every=1, times=2).finite
    assert not Schedule(every=1).finite
    assert not Schedule(service=True).finite


class TestOverlappingOperations:
    """Failures and person commands that arrive while a group restart is under way."""

    def test_second_failure_during_a_take_down_restarts_everyone_once(
        self, make_tree, events, journal
    ) -> None:
        SlowStop.release.clear()
        spec = SupervisorSpec(
            strategy=Strategy.REST_FOR_ONE,
            policy=FAST,
            children=(
                actor("a", journal),
                actor("b", journal),
                ActorSpec(name="c", actor_class=SlowStop, args=("c", journal)),
            ),
        )
        tree = make_tree(spec, on_event=events)
        events.reached("c", "running")
        tree.ref("b").tell("crash")
        journal.wait_count("stopping", "c", 1)  # c is slow to stop: the take-down is under way
        tree.ref("a").tell("crash")
        events.reached("a", "backoff")
        SlowStop.release.set()
        for name in "abc":
            events.reached(name, "running", times=2)
        assert [n["state"] for n in tree.status()["children"]] == ["running"] * 3

    def test_a_person_stop_during_a_group_restart_sticks(self, make_tree, events, journal) -> None:
        SlowStop.release.clear()
        spec = SupervisorSpec(
            strategy=Strategy.ONE_FOR_ALL,
            policy=FAST,
            children=(
                ActorSpec(name="a", actor_class=SlowStop, args=("a", journal)),
                actor("b", journal),
                actor("c", journal),
            ),
        )
        tree = make_tree(spec, on_event=events)
        events.reached("c", "running")
        tree.ref("c").tell("crash")
        journal.wait_count("stopping", "a", 1)
        tree.stop_child("b")
        SlowStop.release.set()
        events.reached("a", "running", times=2)
        events.reached("c", "running", times=2)
        states = {n["name"]: n["state"] for n in tree.status()["children"]}
        assert states == {"a": "running", "b": "stopped", "c": "running"}

    def test_a_member_that_dies_waiting_its_turn_in_a_take_down_can_be_started(
        self, make_tree, events, journal, logs
    ) -> None:
        """Found by a storm: a one_for_all take-down was stopping a slow member while another,
        still waiting its turn, died of a person's SIGHUP. It was left ``running`` with no
        process, so a person's start logged "refused transition running -> starting (a jobvisor
        bug)", and the group's stop queue then stopped the incarnation that start made: the
        member stayed stopped after its group came back."""
        SlowStop.release.clear()
        tree = make_tree(_slow_to_stop_group(journal), on_event=events)
        try:
            events.reached("g/c", "running")
            wait_until(lambda: _pids(tree, "g/a", "g/b"), "their processes run")
            tree.signal("g/a", signal.SIGKILL)
            journal.wait_count("stopping", "c", 1)  # last first: b waits its turn behind c
            tree.signal("g/b", signal.SIGHUP)  # sleep dies of it, before its stop began
            events.wait_for(lambda items: any(_exit_of(e, "g/b") for e in items))
            assert _nodes(tree)["g/b"]["state"] == "stopping", "down with its group"
            assert tree.start_child("g/b") is None
        finally:
            SlowStop.release.set()
        events.reached("g/a", "running", times=2)
        events.reached("g/c", "running", times=2)
        nodes = _nodes(tree)
        assert {p: nodes[p]["state"] for p in ("g/a", "g/b", "g/c")} == dict.fromkeys(
            ("g/a", "g/b", "g/c"), "running"
        )
        wait_until(lambda: _pids(tree, "g/b"), "its process runs")
        assert events.states("g/b")[-2:] == ["starting", "running"], "not stopped again"
        assert not [r for r in logs.records if "refused transition" in r.message]

    def test_a_person_restart_of_a_member_waiting_its_turn_in_a_take_down_sticks(
        self, make_tree, events, journal, logs
    ) -> None:
        """The restarted incarnation was still in the group's stop queue: stopped for good."""
        SlowStop.release.clear()
        tree = make_tree(_slow_to_stop_group(journal), on_event=events)
        try:
            events.reached("g/c", "running")
            wait_until(lambda: _pids(tree, "g/a", "g/b"), "their processes run")
            tree.signal("g/a", signal.SIGKILL)
            journal.wait_count("stopping", "c", 1)
            tree.restart("g/b")
        finally:
            SlowStop.release.set()
        events.reached("g/a", "running", times=2)
        events.reached("g/c", "running", times=2)
        nodes = _nodes(tree)
        assert nodes["g/b"]["state"] == "running"
        wait_until(lambda: _pids(tree, "g/b"), "its process runs")
        assert events.states("g/b")[-2:] == ["starting", "running"], "not stopped again"
        assert not [r for r in logs.records if "refused transition" in r.message]

    def test_start_child_while_shutting_down_is_refused_not_left_running(
        self, runtime, journal
    ) -> None:
        from supervision import start_tree

        SlowStop.release.clear()
        spec = SupervisorSpec(
            children=(
                ActorSpec(name="a", actor_class=SlowStop, args=("a", journal)),
                actor("b", journal),
            )
        )
        tree = start_tree(spec, runtime)
        assert tree.started(10)
        tree.stop_child("b")
        assert not tree.stop(timeout=0.2)  # a blocks in on_stop: the shutdown is under way
        with pytest.raises(ShuttingDownError, match="b: not started, root is shutting down"):
            tree.start_child("b")
        # A state of the tree, not a bad spec: adding is refused the same way.
        with pytest.raises(ShuttingDownError, match="c: not added") as refused:
            tree.add_child(actor("c", journal))
        assert isinstance(refused.value, TreeStoppedError)
        assert not isinstance(refused.value, SpecError)
        SlowStop.release.set()
        assert tree.stop(10)
        assert journal.count("start", "b") == 1


def _slow_to_stop_group(journal: Journal) -> SupervisorSpec:
    """A root with the one_for_all group ``g``: services ``a`` and ``b``, then ``c``, whose
    stop blocks until ``SlowStop.release``; a take-down stops it first and ``b`` waits."""
    sleepers = (_sleeper("a"), _sleeper("b"))
    slow = ActorSpec(name="c", actor_class=SlowStop, args=("c", journal))
    group = SupervisorSpec(
        name="g", strategy=Strategy.ONE_FOR_ALL, policy=FAST, children=(*sleepers, slow)
    )
    return SupervisorSpec(policy=FAST, children=(group,))


def _sleeper(name: str) -> JobSpec:
    """A service whose process dies of any signal it gets (sleep handles none)."""
    return JobSpec(
        name=name,
        work=CommandWork(argv=("sleep", "100000")),
        schedule=Schedule(service=True),
        restart=RestartType.PERMANENT,
    )


def _exit_of(event: Any, path: str) -> bool:
    return isinstance(event, ChildExited) and event.path == path


def _pids(tree: Any, *paths: str) -> bool:
    """Whether each job at ``paths`` has its process (it is ``running`` a moment before)."""
    nodes = _nodes(tree)
    return all(nodes[path]["pid"] is not None for path in paths)


def _nodes(tree: Any) -> dict[str, dict[str, Any]]:
    """Every node of the tree's status by its path."""
    return {node["path"]: node for node in flatten_status(tree.status())}
