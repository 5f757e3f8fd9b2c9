"""Restart cycle: a supervised child crashes and its replacement answers a ping.

Ours: an ``ActorSpec`` child under a one_for_one root with no backoff and an
intensity that never runs out. One cycle is ``ref.tell("crash")`` then
``ref.ask("ping")`` through the same stable reference (``Tree.ref(path)``):
the ping waits in the reference's stash and is answered by the next incarnation.

Baseline: the least a hand-written pykka restart needs. The actor's
``on_failure`` tells a watcher actor, which starts a new actor and publishes
its ref (sets it and an Event). One cycle is ``tell("crash")``, wait for the
Event, ``ask("ping")`` on the new ref.

    python bench/restart_cycle.py [--runtime threads|gevent] [--cycles 2000] [--rounds 5]
                                  [--logging off|null|information] [--log-share]

``--log-share`` adds a third side: the same tree of ours with ``jobvisor run``'s logging at
information (to /dev/null), turned on for its rounds only, so what logging adds to a cycle is
a ratio inside one process.
"""

from __future__ import annotations

import sys

from _common import (
    LogSwitch,
    add_log_arg,
    add_runtime_arg,
    install,
    jv_threads_alive,
    machine,
    median,
    runtime_from_argv,
    silence_logs,
    verdict,
)

RUNTIME = runtime_from_argv()
install(RUNTIME)  # first thing: under gevent this monkey-patches the process

import argparse  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pykka  # noqa: E402

from supervision import (  # noqa: E402
    ActorSpec,
    Backoff,
    Intensity,
    RestartPolicy,
    SupervisorSpec,
    start_tree,
)

# Issue 15's goals: ours at most this many times the hand-made restart's time per cycle. (The
# first goal, 1.25x on both runtimes, was met long ago; a verdict against it said nothing.)
TARGETS = {"threads": 0.8, "gevent": 1.0}


class Crash(Exception):
    pass


class Crashy(pykka.ThreadingActor):
    """Raises on "crash" (a tell, so the actor dies), answers "pong" to "ping"."""

    def on_receive(self, message):
        if message == "crash":
            raise Crash("asked to crash")
        if message == "ping":
            return "pong"
        return None


# -- baseline: a hand-written pykka restart ---------------------------------------------------


class Slot:
    """Where the watcher publishes the current incarnation's ref."""

    def __init__(self) -> None:
        self.ref: pykka.ActorRef | None = None
        self.ready = threading.Event()

    def publish(self, ref: pykka.ActorRef) -> None:
        self.ref = ref
        self.ready.set()


class BareCrashy(Crashy):
    def __init__(self, watcher: pykka.ActorRef) -> None:
        super().__init__()
        self.watcher = watcher

    def on_failure(self, *exc_info) -> None:
        del exc_info
        self.watcher.tell("restart")


class Watcher(pykka.ThreadingActor):
    def __init__(self, slot: Slot) -> None:
        super().__init__()
        self.slot = slot
        self.restarts = 0

    def on_start(self) -> None:
        self.slot.publish(BareCrashy.start(self.actor_ref))

    def on_receive(self, message):
        if message == "restart":
            self.restarts += 1
            self.slot.publish(BareCrashy.start(self.actor_ref))
        elif message == "restarts?":
            return self.restarts
        return None


class Bare:
    name = "bare pykka"

    def __init__(self) -> None:
        self.slot = Slot()
        self.watcher = Watcher.start(self.slot)
        self.slot.ready.wait()

    def cycles(self, n: int) -> float:
        slot = self.slot
        start = time.perf_counter()
        for _ in range(n):
            ref = slot.ref
            slot.ready.clear()
            ref.tell("crash")
            slot.ready.wait()
            if slot.ref.ask("ping") != "pong":
                raise AssertionError("bad reply")
        return time.perf_counter() - start

    def restarts(self) -> int:
        return self.watcher.ask("restarts?")

    def stop(self) -> None:
        self.watcher.stop()
        if self.slot.ref is not None:
            self.slot.ref.stop()
        for thread in threading.enumerate():
            if thread.name.startswith(("BareCrashy-", "Watcher-")):
                thread.join(30)


# -- ours ------------------------------------------------------------------------------------


class Ours:
    name = "jobvisor"

    def __init__(self, within: float) -> None:
        policy = RestartPolicy(
            backoff=Backoff(initial=0, max=0, jitter=0),
            intensity=Intensity(max_restarts=10**9, within=within),
        )
        spec = SupervisorSpec(
            name="bench", policy=policy, children=(ActorSpec(name="crashy", actor_class=Crashy),)
        )
        self.tree = start_tree(spec, RUNTIME)
        if not self.tree.started(timeout=30):
            raise RuntimeError("tree did not start")
        self.ref = self.tree.ref("crashy")

    def cycles(self, n: int) -> float:
        ref = self.ref
        start = time.perf_counter()
        for _ in range(n):
            ref.tell("crash")
            if ref.ask("ping") != "pong":
                raise AssertionError("bad reply")
        return time.perf_counter() - start

    def restarts(self) -> int:
        return self.tree.status()["children"][0]["restarts"]

    def stop(self) -> None:
        if not self.tree.stop(timeout=30):
            raise RuntimeError("tree did not stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument("--cycles", type=int, default=2000, help="cycles per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up cycles per side")
    parser.add_argument(
        "--within",
        type=float,
        default=60.0,
        help="intensity window in seconds (default 60, the policy default)",
    )
    parser.add_argument(
        "--log-share",
        action="store_true",
        help="also run rounds of ours with logging at information in this same process "
        "(between its rounds with logging off), to measure what logging adds",
    )
    args = parser.parse_args()
    if args.log_share and args.logging != "off":
        parser.error("--log-share needs --logging off (its own rounds turn logging on)")
    silence_logs(args.logging)

    bare, ours = Bare(), Ours(args.within)
    switch = LogSwitch() if args.log_share else None
    logged = "jobvisor+log"
    try:
        bare.cycles(args.warmup)
        ours.cycles(args.warmup)
        times: dict[str, list[float]] = {bare.name: [], ours.name: []}
        cpu: dict[str, list[float]] = {bare.name: [], ours.name: []}
        sides: list[tuple[str, Bare | Ours]] = [(bare.name, bare), (ours.name, ours)]
        if switch is not None:
            times[logged], cpu[logged] = [], []
            sides.append((logged, ours))
        for n in range(args.rounds):
            # Interleaved so that drift (CPU frequency, other load) hits every side alike; the
            # order turns each round.
            for name, side in sides[n % len(sides) :] + sides[: n % len(sides)]:
                if switch is not None and name == logged:
                    switch.on()
                cpu0 = time.process_time()
                times[name].append(side.cycles(args.cycles) / args.cycles * 1e6)
                cpu[name].append((time.process_time() - cpu0) / args.cycles * 1e6)
                if switch is not None and name == logged:
                    switch.off()
        rounds = args.rounds * (2 if switch is not None else 1)
        for side, expected in ((bare, args.rounds), (ours, rounds)):
            if side.restarts() != args.warmup + args.cycles * expected:
                raise AssertionError(
                    f"{side.name}: {side.restarts()} restarts, "
                    f"expected {args.warmup + args.cycles * expected}"
                )
    finally:
        ours.stop()
        bare.stop()
        if switch is not None:
            switch.close()

    base, mine = median(times[bare.name]), median(times[ours.name])
    ratio = mine / base
    print(
        f"restart cycle, runtime={RUNTIME}, logging={args.logging}, within={args.within:g}s, "
        f"{args.cycles} cycles x {args.rounds} rounds"
    )
    print(f"  ({machine()})")
    for name, values in times.items():
        rounds = " ".join(f"{v:.1f}" for v in values)
        print(
            f"  {name:<11} median {median(values):8.1f} us/cycle "
            f"(process cpu {median(cpu[name]):6.1f})   rounds: {rounds}"
        )
    paired = median([m / b for m, b in zip(times[ours.name], times[bare.name], strict=True)])
    cpu_ratio = median(cpu[ours.name]) / median(cpu[bare.name])
    print(f"  ratio jobvisor/bare = {ratio:.2f}x ({verdict(ratio, TARGETS[RUNTIME])})")
    print(f"  (median of the per-round ratios: {paired:.2f}x; process cpu ratio {cpu_ratio:.2f}x)")
    if switch is not None:
        share = median([lg / m - 1 for lg, m in zip(times[logged], times[ours.name], strict=True)])
        cpu_share = median(cpu[logged]) / median(cpu[ours.name]) - 1
        print(
            f"  logging at information adds {share * 100:+.1f}% to ours (median of the per-round "
            f"ratios; process cpu {cpu_share * 100:+.1f}%) ({verdict(1 + share, 1.10)})"
        )
    left = jv_threads_alive()
    if left:
        print(f"  threads left behind: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
