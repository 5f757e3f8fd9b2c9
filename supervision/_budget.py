"""The tree-wide restart budget: one window that every supervisor of a tree charges.

Each supervisor decides its children's restarts from its own intensity
(``_policy.decide``); before a restart is made it also charges the tree's
budget here. The budget is shared by supervisors on different threads (or
greenlets), so it holds a lock; what it decides comes from the pure
``_policy.decide_budget``. When a charge trips it, the root is told once
(``BudgetExhausted``) and applies its ``on_exhausted`` to the whole tree;
until the root has acted, every further charge gets the same decision.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supervision._policy import Cooldown, Decision, Escalate, GiveUp, Restart, decide_budget

if TYPE_CHECKING:
    from collections.abc import Callable

    from supervision._policy import RestartPolicy

__all__ = ["BudgetExhausted", "TreeBudget"]


@dataclass(frozen=True, slots=True)
class BudgetExhausted:
    """To the root: a restart of ``path`` would exceed the tree's budget; ``decision`` applies."""

    decision: GiveUp | Escalate | Cooldown
    path: str


class TreeBudget:
    """The tree's restarts in one sliding window, charged from any supervisor's thread.

    ``monotonic`` is the tree's clock (a test's manual clock makes it exact).
    ``tell_root`` is attached by the root supervisor when it starts.
    """

    def __init__(self, policy: RestartPolicy, monotonic: Callable[[], float]) -> None:
        assert policy.budget is not None
        self.policy = policy
        self._monotonic = monotonic
        self._window = policy.budget.window()
        self._lock = threading.Lock()
        # Invariant: set from the charge that tripped the budget until the root's answer to
        # it has run its course (a tree-wide probe started); every charge meanwhile is refused.
        self._tripped: Decision | None = None
        self.tell_root: Callable[[BudgetExhausted], None] | None = None

    def __repr__(self) -> str:
        return f"TreeBudget({self._window!r}, tripped={self._tripped!r})"

    @property
    def tripped(self) -> bool:
        return self._tripped is not None

    def charge(self, path: str) -> tuple[Decision | None, BudgetExhausted | None]:
        """Spend one restart of ``path``: (None, None) if the budget allows it, else the tree's
        decision, with the root's word when this charge is the one that spent the budget.

        The caller gives the root that word (``tell``) once it has said the failure that spent
        it: told at once, the root's answer could be written before its cause.
        """
        with self._lock:
            if self._tripped is not None:
                return self._tripped, None
            now = self._monotonic()
            decision = decide_budget(self.policy, self._window, now)
            self._window.apply(decision, now)
            if isinstance(decision, Restart):
                return None, None
            self._tripped = decision
        return decision, BudgetExhausted(decision, path)

    def tell(self, word: BudgetExhausted) -> None:
        """Give the root ``charge``'s word that the budget is spent."""
        tell = self.tell_root
        if tell is not None:
            tell(word)

    def retune(self, policy: RestartPolicy) -> None:
        """Count against ``policy``'s budget from now on (a reload); past restarts still count."""
        assert policy.budget is not None
        with self._lock:
            self.policy = policy
            self._window = self._window.resized(policy.budget.intensity)

    def probe(self) -> None:
        """The tree's cooldown is over and its children start again: the tree is on probation."""
        with self._lock:
            self._tripped = None
            self._window.probe()

    def probation_passed(self) -> None:
        """The tree survived its probation: forget its restarts and its cooldown cycles."""
        with self._lock:
            self._window.reset()

    @property
    def probing(self) -> bool:
        return self._window.probing
