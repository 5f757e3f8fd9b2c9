"""Pure policy tests: every rule of SPEC §2 as plain functions with exact times."""

from __future__ import annotations

import pytest

from actors import Outcome, RetryWait
from actors._exponential import Exponential
from supervision import (
    Backoff,
    Budget,
    CooldownPolicy,
    EscalationError,
    Intensity,
    OnExhausted,
    RestartPolicy,
    RestartType,
    SpecError,
)
from supervision._policy import (
    Cooldown,
    Escalate,
    GiveUp,
    Restart,
    Window,
    decide,
    decide_budget,
    wants_restart,
)

NO_JITTER = Backoff(initial=0.1, max=30.0, multiplier=2.0, jitter=0.0)


def run_always_failing(policy: RestartPolicy, times: list[float]) -> tuple[int, list[object]]:
    """Feed failures at ``times`` until a decision is not a restart; return starts and decisions."""
    window = Window(policy.intensity)
    starts = 1
    decisions: list[object] = []
    for now in times:
        decision = decide(policy, window, now)
        decisions.append(decision)
        window.apply(decision, now)
        if not isinstance(decision, Restart):
            break
        starts += 1
    return starts, decisions


class TestExponential:
    """The one growth formula behind restart backoff, cooldown growth and retry waits."""

    def test_sequence_grows_from_initial_up_to_max(self) -> None:
        delays = [NO_JITTER.delay(n) for n in range(1, 12)]
        assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
        assert NO_JITTER.delay(0) == NO_JITTER.delay(1) == 0.1

    @pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.75, 0.999999])
    def test_jitter_stays_within_fraction(self, rand: float) -> None:
        e = Exponential(initial=1.0, max=100.0, jitter=0.2)
        assert 0.8 <= e.delay(1, rand) <= 1.2
        assert e.delay(1, 0.0) == pytest.approx(0.8)
        assert e.delay(1, 0.5) == pytest.approx(1.0)

    @pytest.mark.parametrize("rand", [0.0, 0.5, 0.9999])
    def test_jitter_never_exceeds_max(self, rand: float) -> None:
        e = Exponential(initial=1.0, max=4.0, jitter=0.5)
        for n in range(1, 40):
            assert e.delay(n, rand) <= 4.0

    @pytest.mark.parametrize("n", [1024, 1025, 5000, 10**9])
    @pytest.mark.parametrize("multiplier", [2, 2.0, 1.0000001])
    def test_huge_numbers_reach_max_without_overflow(self, n: int, multiplier: float) -> None:
        e = Exponential(initial=0.1, max=30.0, multiplier=multiplier, jitter=0.0)
        expected = 30.0 if multiplier >= 2 else min(30.0, 0.1 * multiplier ** (n - 1))
        assert e.delay(n) == pytest.approx(expected)

    def test_zero_initial_and_unit_multiplier_stay_flat(self) -> None:
        assert Exponential(initial=0.0, max=5.0).delay(10**6) == 0.0
        assert Exponential(initial=2.0, max=5.0, multiplier=1.0, jitter=0.0).delay(10**6) == 2.0

    def test_backoff_retry_waits_and_cooldowns_share_it(self) -> None:
        growth = {"initial": 0.5, "max": 20.0, "multiplier": 3.0, "jitter": 0.0}
        base = Exponential(**growth)
        cooldown = CooldownPolicy(duration=0.5, max=20.0, multiplier=3.0)
        for n in range(1, 2000, 7):
            expected = base.delay(n)
            assert Backoff(**growth).delay(n) == RetryWait(**growth).delay(n) == expected
            assert cooldown.duration_of(n) == expected

    @pytest.mark.parametrize(
        ("kwargs", "field", "expected"),
        [
            ({"initial": -1.0}, "exponential.initial", "a duration >= 0"),
            ({"initial": "1s"}, "exponential.initial", "a duration >= 0"),
            ({"initial": 5.0, "max": 1.0}, "exponential.max", "a duration >= initial (5s)"),
            ({"multiplier": 0.5}, "exponential.multiplier", "a number >= 1"),
            ({"multiplier": True}, "exponential.multiplier", "a number >= 1"),
            ({"jitter": 1.5}, "exponential.jitter", "a fraction in [0, 1]"),
            ({"jitter": float("nan")}, "exponential.jitter", "a fraction in [0, 1]"),
        ],
    )
    def test_invalid_values_name_their_field(
        self, kwargs: dict[str, object], field: str, expected: str
    ) -> None:
        with pytest.raises(SpecError) as caught:
            Exponential(**kwargs)  # type: ignore[arg-type]
        assert (caught.value.field, caught.value.expected) == (field, expected)


class TestBackoff:
    def test_defaults_are_the_spec_defaults(self) -> None:
        b = Backoff()
        assert (b.initial, b.max, b.multiplier, b.jitter) == (0.1, 30.0, 2.0, 0.1)
        w = RetryWait()
        assert (w.initial, w.max, w.multiplier, w.jitter) == (0.5, 10.0, 2.0, 0.1)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"initial": -1.0}, "backoff.initial"),
            ({"initial": 5.0, "max": 1.0}, "backoff.max"),
            ({"multiplier": 0.5}, "backoff.multiplier"),
            ({"jitter": 1.5}, "backoff.jitter"),
        ],
    )
    def test_invalid_values_name_their_field(self, kwargs: dict[str, float], field: str) -> None:
        with pytest.raises(SpecError, match=field):
            Backoff(**kwargs)


class TestRestartTypes:
    @pytest.mark.parametrize(
        ("restart", "outcome", "expected"),
        [
            (RestartType.PERMANENT, Outcome.SUCCEEDED, True),
            (RestartType.PERMANENT, Outcome.FAILED, True),
            (RestartType.PERMANENT, Outcome.TIMEOUT, True),
            (RestartType.PERMANENT, Outcome.STOPPED, False),
            (RestartType.PERMANENT, Outcome.KILLED, False),
            (RestartType.TRANSIENT, Outcome.SUCCEEDED, False),
            (RestartType.TRANSIENT, Outcome.FAILED, True),
            (RestartType.TRANSIENT, Outcome.TIMEOUT, True),
            (RestartType.TRANSIENT, Outcome.STOPPED, False),
            (RestartType.TEMPORARY, Outcome.FAILED, False),
            (RestartType.TEMPORARY, Outcome.SUCCEEDED, False),
        ],
    )
    def test_table(self, restart: RestartType, outcome: Outcome, expected: bool) -> None:
        assert wants_restart(restart, outcome) is expected


class TestIntensity:
    def test_always_failing_child_with_three_restarts_starts_exactly_four_times(self) -> None:
        policy = RestartPolicy(intensity=Intensity(max_restarts=3, within=60))
        starts, decisions = run_always_failing(policy, [0.0, 0.1, 0.3, 0.7, 1.5])
        assert starts == 4
        assert [type(d) for d in decisions] == [Restart, Restart, Restart, GiveUp]
        assert [d.number for d in decisions[:3]] == [1, 2, 3]  # type: ignore[attr-defined]

    def test_zero_max_restarts_gives_up_on_first_failure(self) -> None:
        policy = RestartPolicy(intensity=Intensity(max_restarts=0, within=60))
        starts, decisions = run_always_failing(policy, [0.0])
        assert starts == 1
        assert isinstance(decisions[0], GiveUp)

    def test_window_slides(self) -> None:
        policy = RestartPolicy(backoff=NO_JITTER, intensity=Intensity(max_restarts=2, within=10))
        window = Window(policy.intensity)
        first = decide(policy, window, 0.0)
        assert isinstance(first, Restart)
        window.apply(first, 0.0)
        second = decide(policy, window, 5.0)
        assert isinstance(second, Restart)
        assert second.number == 2
        window.apply(second, 5.0)
        # Past t=10.1 (10s of running after the restart at t=0 and its 0.1s backoff), that
        # restart has left the window: the restart at t=5 (0.2s backoff) is the only one in it.
        third = decide(policy, window, 10.5)
        assert isinstance(third, Restart)
        assert third.number == 2
        window.apply(third, 10.5)
        assert len(window.restarts) == 2
        # 4.5s of running later both restarts are inside: exhausted.
        assert isinstance(decide(policy, window, 15.0), GiveUp)

    def test_a_restart_exactly_within_old_still_counts_as_in_otp(self) -> None:
        # OTP keeps a restart whose age is the period itself (its threshold is ``>=``):
        # the window is [now - within, now].
        flat = Backoff(initial=0.5, max=0.5, multiplier=1.0, jitter=0.0)
        policy = RestartPolicy(backoff=flat, intensity=Intensity(max_restarts=1, within=10))
        window = Window(policy.intensity)
        window.apply(decide(policy, window, 0.0), 0.0)
        # Started again at 0.5, it ran exactly 10s: the restart is `within` old, inside.
        assert window.in_window(10.5) == 1
        assert isinstance(decide(policy, window, 10.5), GiveUp)
        window.apply(Restart(0.0, 1), 10.5)  # noting at the edge forgets nothing at the edge
        assert len(window.restarts) == 2
        later = Window(policy.intensity)
        later.apply(decide(policy, later, 0.0), 0.0)
        assert later.in_window(10.75) == 0
        assert decide(policy, later, 10.75) == Restart(0.5, 1)

    def test_backoff_restarts_from_initial_once_the_window_is_empty(self) -> None:
        policy = RestartPolicy(backoff=NO_JITTER, intensity=Intensity(max_restarts=5, within=10))
        window = Window(policy.intensity)
        window.apply(decide(policy, window, 0.0), 0.0)
        d2 = decide(policy, window, 1.0)
        assert isinstance(d2, Restart)
        assert d2.delay == pytest.approx(0.2)
        window.apply(d2, 1.0)
        d3 = decide(policy, window, 100.0)
        assert isinstance(d3, Restart)
        assert d3.delay == pytest.approx(0.1)
        assert d3.number == 1

    @pytest.mark.parametrize(
        ("initial", "within"), [(1.0, 3.0), (0.5, 1.0), (0.1, 60.0), (10.0, 1.0)]
    )
    def test_a_fast_crasher_gives_up_after_max_restarts_whatever_its_backoff(
        self, initial: float, within: float
    ) -> None:
        # Backoff waits are not the child's time: a child that fails as soon as it starts
        # is given up after max_restarts, also when its backoff outgrows ``within``.
        backoff = Backoff(initial=initial, max=30.0, multiplier=2.0, jitter=0.0)
        policy = RestartPolicy(backoff=backoff, intensity=Intensity(max_restarts=3, within=within))
        window = Window(policy.intensity)
        now, delays, starts = 0.0, [], 1
        for _ in range(10):
            d = decide(policy, window, now)
            window.apply(d, now)
            if not isinstance(d, Restart):
                break
            delays.append(d.delay)
            starts += 1
            now += d.delay + 0.001  # it starts after its backoff and fails at once
        assert isinstance(d, GiveUp)
        assert starts == 4
        assert delays == [min(30.0, initial * 2**k) for k in range(3)]

    def test_a_child_that_ran_longer_than_within_after_its_backoff_starts_afresh(self) -> None:
        backoff = Backoff(initial=1.0, max=30.0, multiplier=2.0, jitter=0.0)
        policy = RestartPolicy(backoff=backoff, intensity=Intensity(max_restarts=3, within=3))
        window = Window(policy.intensity)
        window.apply(decide(policy, window, 0.0), 0.0)  # restart 1 in 1s
        # Started at 1.0, it ran 2.9s: still inside, restart 2, 2s.
        d = decide(policy, window, 3.9)
        assert d == Restart(2.0, 2)
        window.apply(d, 3.9)
        # Started at 5.9, it ran 3.1s: the window is empty, the backoff is initial again.
        assert window.in_window(9.0) == 0
        assert decide(policy, window, 9.0) == Restart(1.0, 1)

    def test_a_reload_keeps_the_waits_given(self) -> None:
        backoff = Backoff(initial=4.0, max=30.0, multiplier=2.0, jitter=0.0)
        policy = RestartPolicy(backoff=backoff, intensity=Intensity(max_restarts=3, within=3))
        window = Window(policy.intensity)
        window.apply(decide(policy, window, 0.0), 0.0)
        resized = window.resized(Intensity(max_restarts=5, within=3))
        assert resized.in_window(4.5) == 1  # 0.5s of running after a 4s backoff

    def test_the_tree_budget_counts_on_wall_time(self) -> None:
        # Its restarts are the children's; the delays before them are theirs, per child.
        policy = RestartPolicy(budget=Budget(max_restarts=1, within=10))
        window = policy.budget.window()  # type: ignore[union-attr]
        decision = decide_budget(policy, window, 0.0)
        window.apply(decision, 0.0)
        assert decision == Restart(0.0, 1)
        assert window.in_window(10.0) == 1
        assert window.in_window(10.5) == 0

    def test_exhausted_escalates_when_asked(self) -> None:
        policy = RestartPolicy(
            intensity=Intensity(max_restarts=1, within=60), on_exhausted=OnExhausted.ESCALATE
        )
        starts, decisions = run_always_failing(policy, [0.0, 1.0])
        assert starts == 2
        assert isinstance(decisions[-1], Escalate)
        assert "max_restarts (1) allows" in decisions[-1].reason  # type: ignore[union-attr]

    def test_a_give_up_with_no_restart_allowed_does_not_suggest_a_longer_window(self) -> None:
        policy = RestartPolicy(intensity=Intensity(max_restarts=0, within=60))
        decision = decide(policy, Window(policy.intensity), 0.0)
        assert isinstance(decision, GiveUp)
        assert decision.reason == (
            "restart 1 within 60s is more than max_restarts (0) allows "
            "(raise max_restarts, or fix what makes it exit)"
        )

    @pytest.mark.parametrize("allowed", [1, 2, 7, 10, 20])
    def test_a_give_up_names_the_restart_it_refuses_not_a_count_of_failures(
        self, allowed: int
    ) -> None:
        """The window also counts a permanent job's clean exits and a group's other children's
        restarts, so "it failed N times" (a review's find) was false for both. By its number,
        as the restart lines say it ("a 8th restart" was a review's find too)."""
        policy = RestartPolicy(intensity=Intensity(max_restarts=allowed, within=60))
        starts, decisions = run_always_failing(policy, [float(i) for i in range(allowed + 1)])
        assert starts == allowed + 1
        assert isinstance(decisions[-1], GiveUp)
        assert decisions[-1].reason == (
            f"restart {allowed + 1} within 60s is more than max_restarts ({allowed}) allows "
            "(raise max_restarts or within, or fix what makes it exit)"
        )


class TestLongWindows:
    """The window keeps at most max_restarts + 1 times, however long the child has run."""

    def test_many_restarts_are_counted_exactly_as_the_window_slides(self) -> None:
        at_once = Backoff(initial=0.0, max=0.0, multiplier=1.0, jitter=0.0)
        policy = RestartPolicy(
            backoff=at_once, intensity=Intensity(max_restarts=10**9, within=249.75)
        )
        window = Window(policy.intensity)
        for i in range(5000):
            d = decide(policy, window, i * 0.25)
            assert isinstance(d, Restart)
            window.apply(d, i * 0.25)
        # Times 0.00 .. 1249.75: the window [1000, 1249.75] holds the last 1000.
        assert d.number == 1000
        assert len(window.restarts) == 1000
        assert (window.restarts[0], window.restarts[-1]) == (1000.0, 1249.75)

    def test_a_child_failing_for_ever_keeps_at_most_max_restarts_plus_one_times(self) -> None:
        policy = RestartPolicy(
            backoff=NO_JITTER,
            intensity=Intensity(max_restarts=3, within=10),
            on_exhausted=OnExhausted.COOLDOWN,
        )
        window = Window(policy.intensity, restarts=(0.0, 0.1, 0.2, 0.3, 0.4))
        assert tuple(window.restarts) == (0.1, 0.2, 0.3, 0.4)  # the oldest fell out
        for i in range(10_000):
            now = 100.0 + i * 5.0  # every other failure finds the last one still inside
            window.apply(decide(policy, window, now), now)
            assert len(window.restarts) <= 4
            window.reset(0)

    def test_deciding_does_not_change_the_window(self) -> None:
        policy = RestartPolicy(backoff=NO_JITTER, intensity=Intensity(max_restarts=5, within=10))
        window = Window(policy.intensity, restarts=(1.0, 2.0), cycles=2)
        assert decide(policy, window, 3.0) == decide(policy, window, 3.0)
        assert (tuple(window.restarts), window.cycles, window.probing) == ((1.0, 2.0), 2, False)
        assert "(1.0, 2.0)" in repr(window)


class TestCooldown:
    policy = RestartPolicy(
        backoff=NO_JITTER,
        intensity=Intensity(max_restarts=1, within=60),
        on_exhausted=OnExhausted.COOLDOWN,
        cooldown=CooldownPolicy(duration=10, probation=5, multiplier=3, max=50, max_cycles=3),
    )

    def test_full_cycle(self) -> None:
        window = Window(self.policy.intensity)
        # Restart once, then the budget is spent: cool down 10s (cycle 1).
        d = decide(self.policy, window, 0.0)
        assert isinstance(d, Restart)
        window.apply(d, 0.0)
        d = decide(self.policy, window, 1.0)
        assert isinstance(d, Cooldown)
        assert (d.duration, d.cycle) == (10, 1)
        window.apply(d, 1.0)
        assert (tuple(window.restarts), window.cycles) == ((), 1)
        # The probe starts in probation; failing in probation reopens, 3x longer.
        window.probe()
        d = decide(self.policy, window, 12.0)
        assert isinstance(d, Cooldown)
        assert (d.duration, d.cycle) == (30, 2)
        window.apply(d, 12.0)
        # Third cycle is capped at max.
        window.probe()
        d = decide(self.policy, window, 43.0)
        assert isinstance(d, Cooldown)
        assert (d.duration, d.cycle) == (50, 3)
        window.apply(d, 43.0)
        # A fourth would exceed max_cycles: give up.
        window.probe()
        d = decide(self.policy, window, 94.0)
        assert isinstance(d, GiveUp)
        assert "3 cooldown cycles" in d.reason
        window.apply(d, 94.0)
        assert (window.cycles, window.probing) == (3, False)

    def test_surviving_probation_closes_and_clears_the_window(self) -> None:
        window = Window(self.policy.intensity, restarts=(1.0,), cycles=2, probing=True)
        window.reset()
        assert (tuple(window.restarts), window.cycles, window.probing) == ((), 0, False)
        # Closed: the next failure is an ordinary restart number 1 with the initial delay.
        d = decide(self.policy, window, 100.0)
        assert isinstance(d, Restart)
        assert (d.number, d.delay) == (1, pytest.approx(0.1))

    def test_without_max_cycles_it_cools_down_forever(self) -> None:
        policy = RestartPolicy(
            intensity=Intensity(max_restarts=0, within=1),
            on_exhausted=OnExhausted.COOLDOWN,
            cooldown=CooldownPolicy(duration=1, probation=1, multiplier=2, max=8),
        )
        window = Window(policy.intensity)
        durations = []
        for i in range(8):
            d = decide(policy, window, float(i))
            assert isinstance(d, Cooldown)
            durations.append(d.duration)
            window.apply(d, float(i))
            window.probe()
        assert durations == [1, 2, 4, 8, 8, 8, 8, 8]


class TestEscalationChain:
    def test_two_levels_carry_the_whole_cause_chain(self) -> None:
        root_cause = ValueError("disk full")
        inner = EscalationError(
            "etl/load", "restart 4 within 60s is more than max_restarts (3) allows", root_cause
        )
        outer = EscalationError(
            "etl", "restart 2 within 60s is more than max_restarts (1) allows", inner
        )
        chain = outer.chain()
        assert chain == [outer, inner, root_cause]
        text = str(outer)
        assert text.startswith("etl escalated")
        assert "etl/load escalated" in text
        assert "ValueError: disk full" in text

    def test_root_is_named(self) -> None:
        assert str(EscalationError("", "budget", None)).startswith("the root supervisor escalated")
