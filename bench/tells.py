"""Tells per second through a stable ``ChildRef`` vs a bare pykka ``ActorRef``.

Both sides send ``--messages`` tells to an equivalent counting actor, then one
``ask`` that returns the count; the clock stops when that answer arrives, so
every message was processed, not just queued. Ours goes through
``Tree.ref(path).tell`` to an ``ActorSpec`` child; the baseline through the
``ActorRef`` that ``Counter.start()`` returned.

    python bench/tells.py [--runtime threads|gevent] [--messages 50000] [--rounds 20]
"""

from __future__ import annotations

import sys

from _common import (
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

from supervision import ActorSpec, SupervisorSpec, start_tree  # noqa: E402

TARGET = 0.9  # ours at least 0.9x the baseline's tells per second


class Counter(pykka.ThreadingActor):
    """Counts every message; ``"count?"`` (an ask) returns the count so far."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message):
        if message == "count?":
            return self.count
        self.count += 1
        return None


def run(ref, n: int, expected: int) -> tuple[float, float]:
    """Send ``n`` tells then one ask; return tells per second and process CPU us per tell."""
    tell = ref.tell
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(n):
        tell(i)
    got = ref.ask("count?")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if got != expected:
        raise AssertionError(f"counted {got} messages, expected {expected}")
    return n / elapsed, cpu / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_runtime_arg(parser)
    add_log_arg(parser)
    parser.add_argument(
        "--messages", type=int, default=50_000, help="tells per round (default 50000)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="rounds per side (default 20)")
    args = parser.parse_args()
    silence_logs(args.logging)

    bare_ref = Counter.start()
    tree = start_tree(
        SupervisorSpec(name="bench", children=(ActorSpec(name="counter", actor_class=Counter),)),
        RUNTIME,
    )
    rates: dict[str, list[float]] = {"bare pykka": [], "jobvisor": []}
    cpu: dict[str, list[float]] = {"bare pykka": [], "jobvisor": []}
    try:
        if not tree.started(timeout=30):
            raise RuntimeError("tree did not start")
        child_ref = tree.ref("counter")
        sides = (("bare pykka", bare_ref), ("jobvisor", child_ref))
        sent = {name: 0 for name, _ in sides}
        warmup = max(1, args.messages // 10)
        for name, ref in sides:
            sent[name] += warmup
            run(ref, warmup, sent[name])
        for _ in range(args.rounds):
            # Interleaved so that drift (CPU frequency, other load) hits both sides alike.
            for name, ref in sides:
                sent[name] += args.messages
                rate, cpu_per_tell = run(ref, args.messages, sent[name])
                rates[name].append(rate)
                cpu[name].append(cpu_per_tell)
    finally:
        tree.stop(timeout=30)
        bare_ref.stop()
        for thread in threading.enumerate():
            if thread.name.startswith("Counter-"):
                thread.join(30)

    base, mine = median(rates["bare pykka"]), median(rates["jobvisor"])
    ratio = mine / base
    print(
        f"tells, runtime={RUNTIME}, logging={args.logging}, "
        f"{args.messages} tells + 1 ask x {args.rounds} rounds"
    )
    print(f"  ({machine()})")
    for name, values in rates.items():
        rounds = " ".join(f"{v / 1000:.0f}k" for v in values)
        print(
            f"  {name:<11} median {median(values) / 1000:8.1f}k tells/s "
            f"(process cpu {median(cpu[name]):.2f} us/tell)   rounds: {rounds}"
        )
    paired = median([m / b for m, b in zip(rates["jobvisor"], rates["bare pykka"], strict=True)])
    # CPU per tell, inverted so that it reads like the rate ratio (higher is better).
    cpu_ratio = median(cpu["bare pykka"]) / median(cpu["jobvisor"])
    print(f"  ratio jobvisor/bare = {ratio:.2f}x ({verdict(ratio, TARGET, higher_is_better=True)})")
    print(
        f"  (median of the per-round ratios: {paired:.2f}x; "
        f"process cpu ratio bare/jobvisor {cpu_ratio:.2f}x)"
    )
    left = jv_threads_alive()
    if left:
        print(f"  threads left behind: {left}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
