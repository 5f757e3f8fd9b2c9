"""Specs the in-process tests share: a restart policy that never makes a test wait, and trees."""

from __future__ import annotations

from typing import Any

from supervision import Backoff, RestartPolicy, SupervisorSpec

# Restarts after 1-5 ms, without jitter: fast and the same on every run.
FAST = RestartPolicy(backoff=Backoff(initial=0.001, max=0.005, jitter=0))


def tree_of(*children: Any, policy: RestartPolicy = FAST) -> SupervisorSpec:
    """A root supervisor of ``children`` under ``policy``."""
    return SupervisorSpec(policy=policy, children=children)
