"""A sweep's points: their results, the state of one being measured, the progress read off them.

`PointResult` is one grid point as measured (or skipped, with the reason) and `SweepResult` the
whole sweep; `SweepProgress` is what a progress bar shows. `MeasuringPoint` is a point in the
middle of its rounds: its repetitions so far, the targets its spec and the time budget (`Pace`)
set, and when it is complete (its minimum met, and its spread settled or the extra repetitions
spent). `ProgressTracker` turns the points' state into `SweepProgress` reports with a time left
measured from finished work. `lib.measure.sweep` schedules the rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from lib.core import stats
from lib.core.results import Measurement, Repetition
from lib.core.spec import RunSpec
from lib.measure.budget import SweepPlan
from lib.measure.pace import Pace

@dataclass
class PointResult:
    values: dict[str, Any]                    # factor name -> value at this point
    spec: RunSpec | None = None
    measurement: Measurement | None = None
    summary: stats.Summary | None = None
    skipped_reason: str | None = None
    seconds: float = 0.0                      # wall time spent on the point, loading included
    start_s: float = 0.0                      # of which loading and warm-up
    index: int = 0                            # its place in the grid
    stopped_early: bool = False               # Stop came before its minimum repetitions

    @property
    def measured(self) -> bool:
        return self.summary is not None


@dataclass
class SweepResult:
    base: RunSpec
    factors: list[str]
    points: list[PointResult] = field(default_factory=list)
    stopped: bool = False                     # stopped early by the user
    planned: int = 0
    saved: tuple[int | None, str | None] = (None, None)   # (history id, why not saved)
    notes: list[str] = field(default_factory=list)        # how it was measured, in words
    plan: SweepPlan | None = None                         # the time promise made before it


@dataclass(frozen=True)
class SweepProgress:
    """Where a sweep is, for a progress bar: `fraction` of the minimum work done, the point
    being worked on and what happens to it (`phase`: "loading", "warm-up", "measuring"), the
    timed repetitions done of those planned, the points loaded, and the time left: from the
    durations measured so far (`eta_measured`), else the plan's first estimate (None without
    a plan until something is measured)."""
    phase: str
    values: dict[str, Any]
    round: int
    finished_points: int
    total_points: int
    repetition: int                # of the point being measured, 1-based
    minimum_repetitions: int
    fraction: float
    eta_s: float | None
    repetitions_done: int = 0
    repetitions_planned: int = 0
    points_loaded: int = 0
    eta_measured: bool = True


class PointMeasurer(Protocol):
    """What `run_sweep` needs per point (`lib.measure.runner.SweepPoints`; fakes in tests). One that
    also has a `progress(event)` method hears every `SweepProgress`, as `on_progress` does."""

    def start(self, spec: RunSpec, on_progress: Callable[..., None] | None = None) -> None: ...
    def repeat(self, spec: RunSpec) -> Repetition: ...
    def finish(self, spec: RunSpec) -> Measurement: ...
    def forget(self, spec: RunSpec) -> None: ...


Progress = Callable[[SweepProgress], None]
# A point still noisy after its minimum gets more repetitions, up to this many times its
# minimum count, while the extra measured time stays below what its minimum took: a noisy
# sweep takes at most about twice as long, and says which points it measured again.
EXTRA_REPETITIONS_FACTOR = 2


@dataclass
class MeasuringPoint:
    """A point being measured: its repetitions so far and the wall time they took."""
    point: PointResult
    repetitions: list[Repetition] = field(default_factory=list)
    measured_s: float = 0.0          # clock time of the repetitions (as the engine counts it)
    call_s: list[float] = field(default_factory=list)   # wall time of each repeat call
    minimum_s: float | None = None   # measured time when the minimum was reached
    pace: Pace | None = None         # the budget's targets, below the spec's own
    extra_ok: bool = True            # whether the budget allows another round for noise

    def targets(self) -> tuple[int, float]:
        """The repetitions and measured seconds this point needs: its spec's, or fewer when
        the time budget cut them (an estimate runs once whatever the budget)."""
        spec = self.point.spec
        if self.pace is None or spec.hardware is not None:
            return spec.repetitions, spec.min_duration_s
        return (min(spec.repetitions, self.pace.repetitions),
                min(spec.min_duration_s, self.pace.min_duration_s))

    def minimum_met(self) -> bool:
        repetitions, minimum_s = self.targets()
        return len(self.repetitions) >= repetitions and self.measured_s >= minimum_s

    def complete(self) -> bool:
        if not self.minimum_met():
            return False
        spec = self.point.spec
        if spec.hardware is not None:
            return True              # an estimate is computed once: it has no noise to settle
        if self.minimum_s is None:
            self.minimum_s = self.measured_s
        if len(self.repetitions) >= EXTRA_REPETITIONS_FACTOR * self.targets()[0]:
            return True
        if self.measured_s - self.minimum_s >= self.minimum_s or not self.extra_ok:
            return True
        return not stats.repetitions_noise(self.repetitions, spec.batch_size,
                                           spec.prompt_tokens).noisy

    def remaining_s(self) -> float | None:
        if not self.call_s:
            return None
        repetitions, minimum_s = self.targets()
        per_call = sum(self.call_s) / len(self.call_s)
        per_rep = self.measured_s / len(self.repetitions) if self.repetitions else 0
        by_time = (max(minimum_s - self.measured_s, 0) / per_rep) if per_rep else 0
        return max(repetitions - len(self.repetitions), by_time, 0) * per_call


class ProgressTracker:
    """Turns the sweep's state into `SweepProgress` reports, with an ETA from measured times."""

    def __init__(self, result: SweepResult, listeners: list[Progress],
                 pace: Pace | None = None) -> None:
        self.result, self.listeners, self.pace = result, listeners, pace
        self.finished = 0
        self.loaded = 0
        self.round = 0
        self.point_s: list[float] = []         # wall time of each finished point

    def show(self, phase: str, point: PointResult, active: list[MeasuringPoint],
             pending: list[PointResult], item: MeasuringPoint | None = None) -> None:
        if not self.listeners:
            return
        total = self.result.planned
        minimum = point.spec.repetitions if point.spec else self.result.base.repetitions
        target = self.pace.repetitions if self.pace is not None else self.result.base.repetitions
        done_reps = sum(self._share(len(a.repetitions), a.point.spec, target) for a in active)
        planned_reps = max(total * target, 1)
        finished_reps = sum(self._share(len(p.measurement.repetitions), p.spec, target)
                            for p in self.result.points if p.measurement is not None)
        finished_reps += target * sum(1 for p in self.result.points if p.measurement is None)
        fraction = min((done_reps + finished_reps) / planned_reps, 1.0)
        eta = self._eta(active, pending)
        measured = eta is not None
        if eta is None and self.pace is not None:
            eta = self.pace.planned_left_s()
        timed = [a for a in active if a.point.spec.hardware is None]
        reps_done = sum(len(a.repetitions) for a in timed) + sum(
            len(p.measurement.repetitions) for p in self.result.points
            if p.measurement is not None and p.spec is not None and p.spec.hardware is None)
        finished_timed = sum(1 for p in self.result.points
                             if p.measurement is not None and p.spec.hardware is None)
        reps_planned = max(reps_done, target * (len(timed) + finished_timed + len(pending)))
        if item is not None:
            minimum = item.targets()[0]
        self._tell(SweepProgress(
            phase, dict(point.values), self.round, len(self.result.points), total,
            len(item.repetitions) + 1 if item else 0, minimum, fraction, eta,
            reps_done, reps_planned, self.loaded, measured))

    def _share(self, repetitions: int, spec: RunSpec, target: int) -> float:
        """Repetitions done, in units of `target` (the base's, or the budget's): an estimate's
        one repetition is all of it."""
        needed = spec.repetitions if spec.hardware is not None else min(spec.repetitions, target)
        return min(repetitions, needed) * target / max(needed, 1)

    def _tell(self, event: SweepProgress) -> None:
        for listener in self.listeners:
            listener(event)

    def _eta(self, active: list[MeasuringPoint], pending: list[PointResult]) -> float | None:
        if not active and not pending:
            return 0.0
        remaining = [a.remaining_s() for a in active]
        measured = [p.seconds for p in self.result.points if p.measured]
        if any(r is None for r in remaining) or not (active or measured):
            return None                       # no duration measured yet to go by
        total = sum(remaining)
        started = [sum(a.call_s) + a.point.seconds for a in active]
        per_point = (sum(measured) + sum(started) + total) / max(len(measured) + len(active), 1)
        return total + per_point * len(pending)

    def done(self) -> None:
        if not self.result.stopped:
            total = self.result.planned
            self._tell(SweepProgress("done", {}, self.round, total, total, 0, 0, 1.0, 0.0))
