"""Ray placement: a python-job attempt on Ray against a bare Ray actor call, and a lost node.

One local cluster (``ray.cluster_utils.Cluster`` on 127.0.0.1: a head without
CPUs and two workers, health checks every 200 ms, a node declared dead after 3
missed checks of 500 ms each). Rounds alternate the sides, in the same process:

- first attempt: a once-job ``placement: ray`` calling ``math:sqrt``, from
  ``start_tree`` to the tree's end (its runner is created, called, killed),
  against a bare ``Bare.remote()`` + one call + ``ray.kill`` in this script;
- steady attempts: a periodic job (``every`` 50 ms) whose runner lives on,
  each attempt's own time (``AttemptFinished.at - started_at``), against a
  bare call on a live actor (``ray.get(actor.f.remote())``) made every 50 ms
  too (back to back, a call is faster: the worker never sleeps);
- node loss: a placed service; its node is removed (``allow_graceful=False``);
  the time until the status shows it running on the other node, beside the
  detection time Ray was configured with.

    python bench/ray_placement.py [--rounds 5] [--steady 200]
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse
import math
import threading
import time
from typing import Any

from _common import install, machine, median, silence_logs, verdict

install("threads")  # Ray does not run under gevent

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from actors import PythonWork, Schedule  # noqa: E402
from supervision import AttemptFinished, JobSpec, SupervisorSpec, start_tree  # noqa: E402

EVERY = 0.05  # seconds between steady attempts, and between the bare calls
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 200,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@ray.remote(max_restarts=0, max_task_retries=0)
class Bare:
    def f(self) -> float:
        return math.sqrt(4)


def bare_first() -> float:
    start = time.perf_counter()
    actor = Bare.remote()  # type: ignore[attr-defined]
    ray.get(actor.f.remote())
    ray.kill(actor)
    return time.perf_counter() - start


def placed_first() -> float:
    job = JobSpec(name="sqrt", work=PythonWork(target="math:sqrt", args=(4,)), placement="ray")
    start = time.perf_counter()
    tree = start_tree(SupervisorSpec(children=(job,)))
    assert tree.wait(60)
    took = time.perf_counter() - start
    tree.stop()
    return took


def bare_steady(n: int) -> list[float]:
    actor = Bare.remote()  # type: ignore[attr-defined]
    ray.get(actor.f.remote())
    out = []
    for _ in range(n):
        time.sleep(EVERY)  # at the placed job's rate: an idle worker wakes slower than a busy one
        start = time.perf_counter()
        ray.get(actor.f.remote())
        out.append(time.perf_counter() - start)
    ray.kill(actor)
    return out


def placed_steady(n: int) -> list[float]:
    took: list[float] = []
    done = threading.Event()

    def seen(event: Any) -> None:
        if isinstance(event, AttemptFinished) and event.attempt > 1:  # the first one places
            took.append(event.at - event.started_at)
            if len(took) >= n:
                done.set()

    job = JobSpec(
        name="tick",
        work=PythonWork(target="math:sqrt", args=(4,)),
        schedule=Schedule(every=EVERY),
        placement="ray",
    )
    tree = start_tree(SupervisorSpec(children=(job,)), on_event=seen)
    assert done.wait(120)
    tree.stop()
    return took[:n]


def node_loss(cluster: Cluster) -> float:
    job = JobSpec(
        name="svc",
        work=PythonWork(target="time:sleep", args=(3600,)),
        schedule=Schedule(service=True),
        placement="ray",
        grace=0.5,
    )
    tree = start_tree(SupervisorSpec(children=(job,)))

    def where() -> str | None:
        child = tree.status()["children"][0]
        node = child.get("node")
        return node["id"] if child["state"] == "running" and node else None

    first = _until(where)
    (doomed,) = [n for n in cluster.list_all_nodes() if n.node_id == first]
    lost_at = time.perf_counter()
    cluster.remove_node(doomed, allow_graceful=False)
    _until(lambda: (w := where()) is not None and w != first)
    took = time.perf_counter() - lost_at
    tree.stop()
    cluster.add_node(num_cpus=2)  # back to two workers for the next round
    cluster.wait_for_nodes()
    return took


def _until(condition: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("not within the timeout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steady", type=int, default=200)
    args = parser.parse_args()
    silence_logs()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "_system_config": HEALTH, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        bare_first()  # warm: the first actor of a job pays for the job's set-up
        placed_first()
        firsts: dict[str, list[float]] = {"bare": [], "placed": []}
        steadies: dict[str, list[float]] = {"bare": [], "placed": []}
        losses: list[float] = []
        for _ in range(args.rounds):
            firsts["bare"].append(bare_first())
            firsts["placed"].append(placed_first())
            steadies["bare"].append(median(bare_steady(args.steady)))
            steadies["placed"].append(median(placed_steady(args.steady)))
            losses.append(node_loss(cluster))
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(machine(), f"ray {ray.__version__}, {args.rounds} rounds")
    fb, fp = median(firsts["bare"]) * 1e3, median(firsts["placed"]) * 1e3
    print(
        f"first attempt  bare actor+call+kill {fb:8.1f} ms   placed once-job {fp:8.1f} ms", end=""
    )
    print(f"   ratio {fp / fb:.2f}x  ({verdict(fp / fb, 1.3)})")
    sb, sp = median(steadies["bare"]) * 1e3, median(steadies["placed"]) * 1e3
    print(
        f"steady attempt bare call            {sb:8.2f} ms   placed attempt  {sp:8.2f} ms", end=""
    )
    print(f"   ratio {sp / sb:.2f}x  ({verdict(sp / sb, 1.3)})")
    detection = HEALTH["health_check_period_ms"] * HEALTH["health_check_failure_threshold"]
    print(
        f"node loss -> running on the other node: median {median(losses):.2f} s "
        f"(min {min(losses):.2f}, max {max(losses):.2f}); Ray's configured detection: "
        f"{HEALTH['health_check_failure_threshold']} missed checks every "
        f"{HEALTH['health_check_period_ms']} ms, each timing out after "
        f"{HEALTH['health_check_timeout_ms']} ms: {detection / 1e3:.1f} to "
        f"{(detection + HEALTH['health_check_timeout_ms']) / 1e3:.1f} s"
    )


if __name__ == "__main__":
    main()
