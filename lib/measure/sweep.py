"""Sweeps: a base RunSpec + one or two factors with values -> every point measured, in rounds.

The factors and the grid they span are `lib.measure.factors`; a stack that isn't installed, has
no backend, or doesn't run a point's weight format makes that point a skipped one with the
reason, like any other point that cannot run. `run_sweep` measures every point of the grid
through a `PointMeasurer` (`lib.measure.runner.SweepPoints`: the queue, the model cache and the
memory guard apply to each point) in interleaved rounds, so points measured "one after the
other" never meet different conditions: each round visits every point once, in a rotating
order. It keeps going when a point cannot run (recorded as skipped, with the reason), and stops
between repetitions when `should_stop()` says so, keeping the points that were finished. Given
a `lib.measure.budget.SweepPlan`, it keeps to its time budget (`lib.measure.pace.Pace`): the
repetitions still to come shrink when measured rounds say they would overrun, and the time left
is the plan's estimate until measured durations replace it (`lib.measure.sweep_points` keeps
each point's state and the progress reports). `lib.records.table` turns the results into the
tidy table.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from lib.core import stats
from lib.core.errors import ExplorerError, MemoryGuardError
from lib.core.spec import RunSpec
from lib.measure.budget import SweepPlan
from lib.measure.pace import Pace
from lib.measure.factors import Factor, check_grid, grid, point_spec, point_words
from lib.measure.sweep_points import (EXTRA_REPETITIONS_FACTOR, MeasuringPoint, PointMeasurer,
                                      PointResult, Progress, ProgressTracker, SweepResult)


def run_sweep(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
              points: PointMeasurer, on_progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None,
              on_point: Callable[[PointResult], None] | None = None,
              plan: SweepPlan | None = None,
              clock: Callable[[], float] = time.monotonic) -> SweepResult:
    """Measure every point in interleaved rounds: each round visits every point being measured
    once, starting one place later each time, so slow drift and other programs' load fall on
    all points alike. A point is done at its minimum count and duration, or later while its
    spread is too wide (see `EXTRA_REPETITIONS_FACTOR`). Points whose models don't fit in memory
    together with the others' are measured in a later group (and the sweep says so). With a
    `plan`, the budget counts from here, loading included (`clock`: a fake one in tests)."""
    check_grid(factor_values)
    by_name = {factor.name: factor for factor, _ in factor_values}
    result = SweepResult(base, list(by_name), planned=len(grid(factor_values)), plan=plan)
    pace = Pace(plan, clock) if plan is not None else None
    pending = [PointResult(values, index=index) for index, values in enumerate(grid(factor_values))]
    stop = should_stop or (lambda: False)
    listeners = [f for f in (getattr(points, "progress", None), on_progress) if f is not None]
    tracker = ProgressTracker(result, listeners, pace)
    groups = 0

    def finish_point(point: PointResult) -> None:
        result.points.append(point)
        result.points.sort(key=lambda p: p.index)
        if on_point is not None:
            on_point(point)

    while pending and not result.stopped:
        groups += 1
        active: list[MeasuringPoint] = []
        for point in list(pending):
            if stop():
                result.stopped = True
                break
            started = time.perf_counter()
            try:
                point.spec = point_spec(base, factor_values, point.values)
                tracker.show("loading", point, active, pending)
                points.start(point.spec, lambda stage, done, total, eta_s=None, p=point:
                             tracker.show("warm-up", p, active, pending))
            except MemoryGuardError as exc:
                if active and point.spec.hardware is None:
                    continue          # fits once the points being measured are done
                # (an estimate's hardware is not this machine: waiting frees nothing there)
                point.skipped_reason = str(exc)
            except ExplorerError as exc:
                point.skipped_reason = str(exc)
            point.seconds += time.perf_counter() - started
            point.start_s = point.seconds
            pending.remove(point)
            if point.skipped_reason is not None:
                finish_point(point)
            else:
                active.append(MeasuringPoint(point, pace=pace))
                tracker.loaded += 1
                if pace is not None:
                    pace.point_ready()
        if pending and active and groups == 1:
            result.notes.append(
                "Some points were measured in a later group, after the others finished, "
                "because their models don't fit in memory together: slow changes in the "
                "machine's speed could favour one group.")
        if pace is not None and groups == 1:
            pace.before_rounds()
        try:
            _rounds(active, points, tracker, stop, result, finish_point, pending)
        except BaseException:
            # Streamlit's Stop (a rerun) or Ctrl-C: keep what the active points measured.
            _keep_what_was_measured(active, points, result, finish_point)
            raise
    tracker.done()
    target = pace.repetitions if pace is not None else base.repetitions
    extra = [p for p in result.points if p.measurement is not None and p.spec is not None
             and len(p.measurement.repetitions) > min(p.spec.repetitions, target)]
    if extra:
        result.notes.append(
            "Points whose repetitions varied a lot were measured again (up to "
            f"{EXTRA_REPETITIONS_FACTOR}x as often) to see if they settle: "
            + ", ".join(f"{point_words(p.values)} ({len(p.measurement.repetitions)} times)"
                        for p in extra) + ".")
    note = pace.note() if pace is not None else None
    if note:
        result.notes.insert(0, note)
    return result


def _rounds(active: list[MeasuringPoint], points: PointMeasurer, tracker: ProgressTracker,
            stop: Callable[[], bool], result: SweepResult,
            finish_point: Callable[[PointResult], None], pending: list[PointResult]) -> None:
    round_number = 0
    while active:
        tracker.round = round_number + 1
        shift = round_number % len(active)
        # Timed on the pace's clock: the budget's (a fake backend's in tests).
        round_started = tracker.pace.clock() if tracker.pace is not None else 0.0
        for item in active[shift:] + active[:shift]:
            if stop():
                _keep_what_was_measured(active, points, result, finish_point)
                return
            tracker.show("measuring", item.point, active, pending, item)
            started = time.perf_counter()
            try:
                repetition = points.repeat(item.point.spec)
            except ExplorerError as exc:
                item.point.skipped_reason = str(exc)
                points.forget(item.point.spec)
                item.call_s.append(time.perf_counter() - started)
                continue
            item.call_s.append(time.perf_counter() - started)
            item.repetitions.append(repetition)
            finished = repetition.token_times_s[-1] if repetition.token_times_s else repetition.end_s
            item.measured_s += finished - repetition.start_s
        round_number += 1
        if tracker.pace is not None:
            round_s = tracker.pace.clock() - round_started
            measuring = [len(a.repetitions) for a in active if a.point.skipped_reason is None
                         and a.point.spec.hardware is None]
            if measuring:
                tracker.pace.after_round(round_s, min(measuring))
            for item in active:
                item.extra_ok = tracker.pace.extra_allowed(round_s)
        for item in list(active):
            point = item.point
            if point.skipped_reason is None and not item.complete():
                continue
            active.remove(item)
            point.seconds += sum(item.call_s)
            if point.skipped_reason is None:
                point.measurement = points.finish(point.spec)
                point.summary = stats.summarize(point.measurement)
            tracker.finished += 1
            finish_point(point)


def _keep_what_was_measured(active: list[MeasuringPoint], points: PointMeasurer,
                            result: SweepResult,
                            finish_point: Callable[[PointResult], None]) -> None:
    """Stop: with interleaved rounds every point is part-way, so keep each point's repetitions
    (marked as stopped early, with their count) rather than throw the whole sweep away."""
    result.stopped = True
    for item in list(active):
        active.remove(item)
        point = item.point
        point.seconds += sum(item.call_s)
        if point.skipped_reason is not None or not item.repetitions:
            points.forget(point.spec)
            continue
        try:
            point.measurement = points.finish(point.spec)
        except ExplorerError:
            continue
        point.summary = stats.summarize(point.measurement)
        point.stopped_early = not item.minimum_met()
        finish_point(point)


def make_plan(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
              budget_s: float | None,
              loaded: Callable[[RunSpec], bool] = lambda spec: False,
              busy_now: Callable[[RunSpec], Any] | None = None) -> SweepPlan:
    """The time promise before running this grid (`lib.measure.budget.plan_sweep`), with how busy
    other programs keep the machine read now through the backend that will run it (a fake
    declares it; `busy_now(spec)` instead: a page's recent reading, a `lib.machine.activity.Load`).
    Points that cannot run are left out: they are skipped in a moment."""
    from lib.measure import backends
    from lib.measure.budget import plan_sweep

    specs = []
    for values in grid(factor_values):
        try:
            specs.append(point_spec(base, factor_values, values))
        except ExplorerError:
            continue
    busy = None
    measured = [spec for spec in specs if spec.hardware is None]
    if measured:
        try:
            busy = (busy_now(measured[0]) if busy_now is not None
                    else backends.for_spec(measured[0]).busy_now())
        except ExplorerError:
            busy = None
    return plan_sweep(base, specs, budget_s, busy.other_cpu_percent if busy else None, loaded,
                      other_threads=busy.other_threads if busy else None)
