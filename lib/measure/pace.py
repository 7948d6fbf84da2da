"""Keeping a running sweep within its time budget, from the durations actually measured.

`Pace` starts from the plan (`lib.measure.budget.SweepPlan`): once every point is loaded (by how
the loading went against the plan) and after each round, it lowers the repetitions still to
come when the rounds left would overrun (never below `MIN_REPETITIONS`), drops the minimum
time per point when the budget is short, and allows extra repetitions for noisy points only
while time is left. `note` says what keeping the budget changed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from lib.measure.budget import MIN_REPETITIONS, SweepPlan, clock_words


@dataclass
class Pace:
    """Keeps a running sweep within its plan's budget, from measured durations. `clock` is
    `time.monotonic` (tests pass a fake one). `repetitions` and `min_duration_s` are the targets
    for every point now; they only go down."""
    plan: SweepPlan
    clock: Callable[[], float] = time.monotonic
    started_s: float = field(default=0.0)
    repetitions: int = 0
    min_duration_s: float = 0.0
    cut_by_pace: bool = False
    loaded_at: list[float] = field(default_factory=list)   # elapsed when each point was ready

    def __post_init__(self) -> None:
        self.started_s = self.clock()
        self.repetitions = self.plan.repetitions
        self.min_duration_s = self.plan.min_duration_s

    def elapsed_s(self) -> float:
        return self.clock() - self.started_s

    def left_s(self) -> float | None:
        """Seconds of budget left (None without a budget)."""
        if self.plan.budget_s is None:
            return None
        return self.plan.budget_s - self.elapsed_s()

    def point_ready(self) -> None:
        """A point is loaded and warmed up: a measured milestone of the plan."""
        self.loaded_at.append(self.elapsed_s())

    def pace_ratio(self) -> float | None:
        """How much slower than planned the loading went (measured at the last point ready)."""
        expected = sum(self.plan.starts_s[:len(self.loaded_at)])
        if not self.loaded_at or expected <= 0:
            return None
        return self.loaded_at[-1] / expected

    def planned_left_s(self) -> float:
        """The time left before any repetition is timed: the plan's, revised by how its
        loading went so far; shown until measured repetitions replace it."""
        ratio = self.pace_ratio()
        if ratio is None:
            return max(self.plan.estimated_s - self.elapsed_s(), 1.0)
        expected = sum(self.plan.starts_s[:len(self.loaded_at)])
        since = self.elapsed_s() - self.loaded_at[-1]
        return max((self.plan.estimated_s - expected) * ratio - since, 1.0)

    def before_rounds(self) -> None:
        """Every point is ready: cut the repetitions to the rounds that fit the budget left,
        each round costing the plan's calls revised by how the loading went."""
        left, ratio = self.left_s(), self.pace_ratio() or 1.0
        round_s = sum(self.plan.calls_s) * ratio
        if left is not None and round_s > 0:
            self.after_round(round_s, 0)

    def after_round(self, round_s: float, fewest_done: int) -> None:
        """A round took `round_s`; the least measured point has `fewest_done` repetitions.
        Lower the target so the rounds still to come fit the budget (never below the floor),
        and drop the minimum time per point when the budget is short."""
        left = self.left_s()
        if left is None or round_s <= 0:
            return
        affordable = fewest_done + max(math.floor(left / round_s + 1e-6), 0)   # not 3.9999 -> 3
        floor = min(MIN_REPETITIONS, self.plan.requested_repetitions)
        target = max(min(self.repetitions, affordable), floor)
        if target < self.repetitions or (self.min_duration_s and left < 2 * round_s):
            self.cut_by_pace = True
            self.repetitions = target
            self.min_duration_s = 0.0

    def extra_allowed(self, round_s: float) -> bool:
        """Whether one more round for noisy points still fits the budget."""
        left = self.left_s()
        return left is None or left >= round_s

    def note(self) -> str | None:
        """What keeping the budget changed, in words (None: nothing)."""
        if not self.cut_by_pace:
            return self.plan.cut_note()
        budget = clock_words(self.plan.budget_s or 0)
        return (f"To end within the {budget} budget on this machine as it ran, each point was "
                f"timed at least {self.repetitions} times instead of "
                f"{self.plan.requested_repetitions}, with no minimum time per point (fewer "
                "samples: the spreads are rougher).")
