"""Taking a lesson: its measurement as a sweep (planned, run, saved like any sweep), its answer,
and why, for the CLI (`python -m lib lesson ID`) and the Lessons page alike.

The sweep is sized to the lesson's budget (`BUDGET_S`, about a minute) by the same planner as
Explore's (`lib.measure.budget`): fewer repetitions on a slower or busier machine, never more
time. `quiet_estimate_s` is the promise on a quiet machine (what `lessons --json` lists);
`plan` the promise now, with other programs' load read as a sweep reads it. The why is the
lesson's own explanation plus what the estimator says limits its last point on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lib.core.errors import ExplorerError
from lib.core.spec import RunSpec
from lib.lessons.answer import Answer, answer
from lib.lessons.book import Lesson
from lib.measure.factors import FACTORS, grid, point_spec

BUDGET_S = 75.0             # "about a minute": the plan fits its repetitions into this
LATENCIES = ("ttft_s", "tpot_s", "e2e_s")    # what the estimator's why explains

Say = Callable[[str], None]


@dataclass
class Taken:
    lesson: Lesson
    answer: Answer
    why: str
    rows: list[dict[str, Any]]
    entry_id: int | None
    elapsed_s: float
    estimated_s: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.lesson.id, "question": self.lesson.question,
                "prediction": {"choices": list(self.lesson.choices)},
                "answer": self.answer.to_dict(self.lesson), "why": self.why,
                "points": self.rows, "saved_id": self.entry_id,
                "elapsed_s": round(self.elapsed_s, 1), "estimated_s": round(self.estimated_s),
                "notes": self.notes}


def base_spec(lesson: Lesson) -> RunSpec:
    return RunSpec(**lesson.settings)


def factor_values(lesson: Lesson) -> list:
    return [(FACTORS[lesson.factor], list(lesson.values))]


def plan(lesson: Lesson, busy_now: Callable[[RunSpec], Any] | None = None,
         loaded: Callable[[RunSpec], bool] = lambda spec: False):
    """The sweep's plan now, within the lesson's budget."""
    from lib.measure import sweep
    return sweep.make_plan(base_spec(lesson), factor_values(lesson), BUDGET_S, loaded=loaded,
                           busy_now=busy_now)


START_ALLOWANCE_S = 10.0    # a worker process to start, the page to draw: not in the plan


def at_most_s(plan) -> float:
    """The longest it may take: a point whose repetitions disagree gets extra ones, at most as
    much timing again (lib.measure.sweep_points), plus starting up; never past the budget."""
    return min(BUDGET_S, 2 * plan.estimated_s + START_ALLOWANCE_S)


def promise_words(plan) -> str:
    """'about 12 s on this machine right now (...), up to 24 s if its repetitions disagree'."""
    from lib.measure.budget import clock_words
    return (f"{plan.promise()}, up to {clock_words(at_most_s(plan))} if its repetitions "
            "disagree and it measures more")


def quiet_estimate_s(lesson: Lesson) -> float:
    """How long it takes on this machine when nothing else runs (its measured speed)."""
    from lib.measure.budget import plan_sweep

    base, values = base_spec(lesson), factor_values(lesson)
    specs = []
    for point in grid(values):
        try:
            specs.append(point_spec(base, values, point))
        except ExplorerError:
            continue
    return plan_sweep(base, specs, BUDGET_S, None).estimated_s


def take(lesson: Lesson, say: Say, on_wait: Say | None = None, cache: Any = None,
         on_progress: Callable[..., None] | None = None) -> Taken:
    """Measure the lesson (saved in the history as a sweep) and answer it."""
    from lib.measure.cache import ModelCache
    from lib.records import saving, table

    base, values = base_spec(lesson), factor_values(lesson)
    planned = plan(lesson)
    say(f"this lesson's measurement: {promise_words(planned)} (an estimate from "
        f"{planned.basis})")
    own_cache = cache is None
    cache = cache or ModelCache(max_entries=1)
    recorder = saving.SweepRecorder(base, [lesson.factor], len(grid(values)), on_wait=on_wait)
    moments: dict[str, float] = {}
    try:
        result = saving.sweep_and_save(
            base, values, cache, planned, recorder, on_progress=on_progress, on_wait=on_wait,
            on_start=lambda: moments.setdefault("start", time.monotonic()),
            on_end=lambda: moments.setdefault("end", time.monotonic()))
    finally:
        if own_cache:
            cache.close()
    rows = table.rows(result)
    found = answer(lesson, rows)
    return Taken(lesson, found, why(lesson, rows), rows, recorder.entry_id,
                 moments.get("end", 0.0) - moments.get("start", 0.0), planned.estimated_s,
                 list(result.notes))


def why(lesson: Lesson, rows: list[dict[str, Any]]) -> str:
    """The lesson's explanation, then the estimator's for its last point on this machine
    (or on the hardware that point is an estimate for)."""
    from lib.estimate import estimator
    from lib.records.table import is_measured

    said = lesson.why
    measured = [row for row in rows if is_measured(row)]
    if not measured or lesson.metric not in LATENCIES:
        return said
    last = measured[-1]
    factor = FACTORS[lesson.factor]
    spec = point_spec(base_spec(lesson), factor_values(lesson),
                      {lesson.factor: last[factor.column]})
    try:
        estimate = estimator.estimate(spec, spec.hardware or "this", spec.gpus)
    except ExplorerError:
        return said
    where = f"{factor.label} {factor.value_label(last[factor.column])}"
    return (f"{said}\n\nThe estimator (a model of this machine when quiet; where it and the "
            f"measurement differ, the measurement is what happened), for {where}: "
            f"{estimate.why()['text']}")
