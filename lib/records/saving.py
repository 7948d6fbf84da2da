"""Saving runs and sweeps to the history as they are measured, and the one run-and-save path.

Saving belongs here, not in the pages or the CLI: `save_run` and `SweepRecorder` save as results
arrive (to the default store unless given one) and turn a store failure into a `problem`
message instead of an error: a measurement is never lost because the history could not be
written. Every save takes an optional `owner` (lib.access.classroom's id of the browser session
that measured it); without one the entry belongs to the host, as before classroom mode existed.
Saves also take an `on_wait`, told when a save waits for a database another program keeps
locked; a result is never called saved unless the store committed it.

`run_and_save` (one run: measure, summarize, save) and `sweep_and_save` (a sweep's points
saved as they finish, then the sweep finished and its speed remembered for the next plan) are
what the CLI and the web app both call, each with its own ways of showing progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from lib.core import stats
from lib.core.results import Measurement
from lib.core.spec import RunSpec
from lib.measure import budget, runner, sweep
from lib.measure.budget import SweepPlan
from lib.measure.cache import ModelCache
from lib.measure.factors import Factor, grid
from lib.measure.sweep_points import PointResult, SweepResult
from lib.records.documents import point_document, run_document, sweep_document
from lib.records.store import Store, StoreError

Say = Callable[[str], None]


def save_run(measurement: Measurement, summary: stats.Summary,
             store: Store | None = None, owner: str | None = None,
             on_wait: Callable[[str], None] | None = None) -> tuple[int | None, str | None]:
    """(entry id, None) when saved; (None, why not) when the history can't be written.
    `owner`: the classroom owner id of whoever ran it (None: the host, the CLI). `on_wait`
    hears that the database is locked by another program and the save waits for it."""
    store = store or Store()
    if on_wait is not None:
        store.on_wait = on_wait
    try:
        return store.save_run(run_document(measurement, summary), owner=owner), None
    except StoreError as exc:
        return None, str(exc)


class SweepRecorder:
    """Saves a sweep point by point; after a store failure it stops trying and says why."""

    def __init__(self, base: RunSpec, factors: list[str], planned: int,
                 store: Store | None = None, owner: str | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.store, self.entry_id, self.problem = store or Store(), None, None
        if on_wait is not None:          # a locked database: said once per save that waits
            self.store.on_wait = on_wait
        try:
            self.entry_id = self.store.start_sweep(sweep_document(base, factors, planned),
                                                   owner=owner)
        except StoreError as exc:
            self.problem = str(exc)
        self.position = 0

    def add(self, point: PointResult) -> None:
        if self.entry_id is None:
            return
        try:
            self.store.add_sweep_point(self.entry_id, self.position, point_document(point))
            self.position += 1
        except StoreError as exc:
            self.problem, self.entry_id = str(exc), None

    def finish(self, stopped: bool) -> None:
        if self.entry_id is None:
            return
        try:
            self.store.finish_sweep(self.entry_id, stopped)
        except StoreError as exc:
            self.problem = str(exc)


@dataclass(frozen=True)
class SavedRun:
    """One run as measured, summarized and saved (or why it was not)."""
    measurement: Measurement
    summary: stats.Summary
    entry_id: int | None
    problem: str | None


def run_and_save(spec: RunSpec, cache: ModelCache | None = None, owner: str | None = None,
                 on_status: Say | None = None, on_progress: Callable[..., None] | None = None,
                 on_wait: Say | None = None, on_tick: Callable[[], None] | None = None,
                 on_measured: Callable[[], None] | None = None,
                 on_save_wait: Say | None = None) -> SavedRun:
    """Measure `spec` (`lib.measure.runner.run`: the queue, memory, the model, the engine; its
    errors go to the caller), summarize it and save it. `on_measured` is told when measuring
    is over, before saving (a page closes its progress panel); `on_save_wait`, that the save
    waits for a locked database."""
    measurement = runner.run(spec, cache=cache, on_status=on_status, on_progress=on_progress,
                             on_wait=on_wait, on_tick=on_tick)
    if on_measured is not None:
        on_measured()
    summary = stats.summarize(measurement)
    entry_id, problem = save_run(measurement, summary, owner=owner, on_wait=on_save_wait)
    return SavedRun(measurement, summary, entry_id, problem)


def sweep_description(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> str:
    """'sweep of batch size (4 points)': what the queue tells others is running."""
    return (f"sweep of {', '.join(f.label for f, _ in factor_values)} "
            f"({len(grid(factor_values))} points)")


def sweep_and_save(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
                   cache: ModelCache, plan: SweepPlan, recorder: SweepRecorder,
                   on_progress: Callable[..., None] | None = None,
                   on_point: Callable[[PointResult], None] | None = None,
                   on_status: Say | None = None, on_wait: Say | None = None,
                   on_tick: Callable[[], None] | None = None,
                   on_start: Callable[[], None] | None = None,
                   on_end: Callable[[], None] | None = None) -> SweepResult:
    """Run the sweep (`lib.measure.sweep.run_sweep` through `lib.measure.runner.SweepPoints`),
    each finished point saved by `recorder` before `on_point` hears of it; then remember its
    speed (`lib.measure.budget.remember`) and finish the saved entry; `result.saved` says
    where. `on_start`: the rounds are about to start (the CLI's budget counts from here);
    `on_end`: the rounds ended, finished or not (called before an interruption goes on up)."""
    def point_done(point: PointResult) -> None:
        recorder.add(point)
        if on_point is not None:
            on_point(point)

    with runner.SweepPoints(cache, sweep_description(factor_values), on_status=on_status,
                            on_wait=on_wait, on_tick=on_tick) as points:
        if on_start is not None:
            on_start()
        try:
            result = sweep.run_sweep(base, factor_values, points, on_progress=on_progress,
                                     on_point=point_done, plan=plan)
        finally:
            if on_end is not None:
                on_end()
    budget.remember(result)              # the next promise starts from this sweep's speed
    recorder.finish(result.stopped)
    result.saved = (recorder.entry_id, recorder.problem)
    return result
