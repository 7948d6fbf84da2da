"""Time promises for a sweep: how long it will take on this machine now, and a budget it keeps.

Before a sweep, `plan_sweep` adds up each point's cost on this machine (loading, warm-up, the
timed calls) from its measured ceilings through `lib.estimate.estimator` (else the settings' rough
guess, `lib.measure.runner.rough_duration_s`), corrected by how the last sweep here compared with its
own plan (`remember`, kept beside the history in `speed.json`, per device and stack, so an
estimator that is off for this machine is off only once), and stretches it by how busy the
machine is right now: other programs' CPU share and threads waiting for a core, read for a
moment through the backend (`Backend.busy_now`), turned into a slowdown by `slowdown()`. When
that does not fit the time budget, the plan cuts the minimum time per point first, then
repetitions, never below `MIN_REPETITIONS` (the fewest that still show a spread), and says so.
While the sweep runs, `lib.measure.pace.Pace` keeps to the budget with the durations actually
measured. Every figure here is an estimate, and the texts say so.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lib.core.paths import data_dir
from lib.core.spec import RunSpec

DEFAULT_BUDGET_S = 120.0       # a sweep sized for a lesson: about two minutes
MIN_BUDGET_S = 10.0
MIN_REPETITIONS = 2            # fewer timed repetitions show no spread at all
# Starting a worker process and reading the weights (the first load of a catalog model that is
# converted once is slower: `lib.models.loading` says so while it happens).
LOAD_S = 12.0
# Our threads share the cores with other programs' work; each step of a multi-threaded matmul
# waits for its slowest thread, so a busy core costs more than its share (measured here: with one other
# busy core, two threads ran 1.5-2.5x slower than one).
SYNC_PENALTY = 1.3
MAX_SLOWDOWN = 8.0
SPEED_FILE = "speed.json"
# Making a pruned copy, per parameter of the model, on this 2-core PC (SmolLM2-135M float32,
# quiet): magnitude:S copies the model and finds each matrix's threshold (kthvalue), 2.2-2.5 s;
# mlp:S runs the calibration text and builds smaller matrices, 0.9-1.1 s.
TECHNIQUE_SETUP_S_PER_PARAMETER = {"magnitude": 1.8e-8, "mlp": 0.8e-8}
RATIO_LIMITS = (0.2, 5.0)   # beyond these a correction is a busy moment, not a speed


def slowdown(other_cpu_percent: float | None, threads: int, cores: int | None = None,
             other_threads: float | None = None) -> float:
    """How many times longer a run of `threads` threads takes while other programs use
    `other_cpu_percent` of the machine's `cores` (and have `other_threads` ready to run), against
    a quiet machine: a fair scheduler gives our threads threads/(threads + others' threads) of
    the cores once they are all taken."""
    cores = cores or os.cpu_count() or 1
    if not other_cpu_percent:
        return 1.0
    busy_cores = min(max(other_cpu_percent, 0.0), 100.0) / 100 * cores
    if other_threads is not None and other_cpu_percent >= 50:
        busy_cores = max(busy_cores, other_threads)     # more wanting the cores than they hold
    wanted = min(threads, cores)
    if wanted + busy_cores <= cores:
        return 1.0
    share = (wanted + busy_cores) / cores
    return min(share * (SYNC_PENALTY if wanted > 1 else 1.0), MAX_SLOWDOWN)


@dataclass(frozen=True)
class PointCost:
    """One point's seconds on this machine when quiet: its model's load (0 when loaded, or for
    an estimate), its warm-up, and one timed call."""
    load_s: float
    warmup_s: float
    call_s: float

    def seconds(self, repetitions: int, min_duration_s: float) -> float:
        return self.load_s + self.warmup_s + max(repetitions * self.call_s,
                                                 min_duration_s if self.call_s else 0.0)


@dataclass(frozen=True)
class SweepPlan:
    """The promise made before a sweep: `estimated_s` for the repetitions and minimum time per
    point it will use, which are the settings' own unless the budget cut them."""
    estimated_s: float
    budget_s: float | None
    repetitions: int
    min_duration_s: float
    requested_repetitions: int
    requested_min_duration_s: float
    other_cpu_percent: float | None
    slowdown: float
    basis: str                           # where the quiet speed came from, in words
    fits: bool = True
    other_threads: float | None = None   # other programs' threads ready to run
    # Per point, in grid order, as planned (slowdown included): loading and warm-up, one call.
    starts_s: tuple[float, ...] = ()
    calls_s: tuple[float, ...] = ()

    @property
    def cut(self) -> bool:
        return (self.repetitions < self.requested_repetitions
                or self.min_duration_s < self.requested_min_duration_s)

    def promise(self) -> str:
        """'about 1 min 40 s on this machine right now: other programs are using 60% of the
        CPU'."""
        if self.estimated_s < 1:
            return "a moment: nothing in it is timed on this machine"
        line = f"about {clock_words(self.estimated_s)} on this machine right now"
        if self.other_cpu_percent is not None and self.slowdown > 1.05:
            crowd = (f" ({self.other_threads:.0f} of their threads waiting for a core)"
                     if self.other_threads and self.other_threads > 1 else "")
            line += (f": other programs are using {self.other_cpu_percent:.0f}% of the CPU"
                     f"{crowd}, which makes it about {self.slowdown:.1f}x slower than when quiet")
        elif self.other_cpu_percent is not None:
            line += " (the machine is quiet)"
        return line

    def cut_note(self) -> str | None:
        """What the budget changed, in words; None when it changed nothing."""
        if not self.cut and self.fits:
            return None
        parts = []
        if self.repetitions < self.requested_repetitions:
            parts.append(f"{self.repetitions} timed repetitions per point instead of "
                         f"{self.requested_repetitions}")
        if self.min_duration_s < self.requested_min_duration_s:
            parts.append("no minimum time per point" if not self.min_duration_s else
                         f"at least {self.min_duration_s:g} s per point instead of "
                         f"{self.requested_min_duration_s:g} s")
        budget = clock_words(self.budget_s or 0)
        note = (f"To fit the {budget} budget: " + "; ".join(parts)
                + " (fewer samples: the spreads are rougher).") if parts else ""
        if not self.fits:
            note += (f" {'Even so it' if parts else 'It'} needs about "
                     f"{clock_words(self.estimated_s)}, more than the {budget} budget: fewer "
                     "values, or a larger budget, would fit.")
        return note.strip()

    def to_dict(self) -> dict[str, Any]:
        return {"estimated_s": round(self.estimated_s, 1), "budget_s": self.budget_s,
                "repetitions": self.repetitions, "min_duration_s": self.min_duration_s,
                "requested_repetitions": self.requested_repetitions,
                "requested_min_duration_s": self.requested_min_duration_s,
                "other_cpu_percent": (None if self.other_cpu_percent is None
                                      else round(self.other_cpu_percent, 1)),
                "other_threads": self.other_threads,
                "slowdown": round(self.slowdown, 2), "basis": self.basis, "fits": self.fits,
                "cut": self.cut}


def clock_words(seconds: float) -> str:
    """'45 s', '1 min 40 s', '2 min'."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def fit(costs: Sequence[PointCost], repetitions: int, min_duration_s: float,
        budget_s: float | None, factor: float) -> tuple[int, float, float, bool]:
    """The most repetitions and minimum time per point whose total (times `factor`, the
    slowdown) fits `budget_s`: (repetitions, min_duration_s, seconds, fits). Minimum time goes
    first (it only adds samples to fast points), then repetitions, down to MIN_REPETITIONS."""
    def total(reps: int, minimum: float) -> float:
        return factor * sum(cost.seconds(reps, minimum) for cost in costs)

    floor = min(MIN_REPETITIONS, repetitions)
    if budget_s is None:
        return repetitions, min_duration_s, total(repetitions, min_duration_s), True
    for reps in range(repetitions, floor - 1, -1):
        for minimum in (min_duration_s, 0.0) if min_duration_s else (0.0,):
            if total(reps, minimum) <= budget_s:
                return reps, minimum, total(reps, minimum), True
    return floor, 0.0, total(floor, 0.0), False


def point_cost(spec: RunSpec, loaded: bool = False) -> tuple[PointCost, str]:
    """`spec`'s quiet cost and where it came from: this machine's measured ceilings
    (`lib.estimate.estimator`), else the settings' rough guess. An estimate costs nothing."""
    from lib.measure import runner
    from lib.core.errors import ExplorerError

    if spec.hardware is not None:
        return PointCost(0.0, 0.0, 0.0), "nothing runs for an estimate"
    load_s = 0.0 if loaded else LOAD_S
    try:
        from lib.estimate import estimator

        call_s = float(estimator.estimate(spec.replace(hardware=None)).summary["e2e_s"])
        extra_s = _quality_s(spec) + technique_setup_s(spec)
        if spec.speculative != "none":     # one untimed plain call checks the tokens
            extra_s += float(estimator.estimate(spec.replace(
                hardware=None, speculative="none")).summary["e2e_s"])
        basis = "this machine's measured speed (its ceilings)"
    except (ExplorerError, KeyError, TypeError, ValueError):
        rough = runner.rough_duration_s(spec, weights_loaded=True)
        if rough is None:
            return PointCost(load_s, 0.0, 1.0), "a rough guess"
        call_s = max(rough - spec.min_duration_s, 0.0) / max(spec.warmup_runs + spec.repetitions, 1)
        extra_s = technique_setup_s(spec)            # the rough guess counts quality already
        basis = "the settings (this machine's speed is not measured yet)"
    compile_s = runner.ASSUMED_COMPILE_S if spec.compile == "on" else 0.0
    return PointCost(load_s, compile_s + spec.warmup_runs * call_s + extra_s, call_s), basis


def _quality_s(spec: RunSpec) -> float:
    """Measuring quality: teacher-forced passes over the evaluation text, window by window,
    each a prompt's pass of that length (lib.measure.quality)."""
    from lib.estimate import estimator
    from lib.measure.quality import EVALUATION_TOKENS, WINDOW_TOKENS

    if spec.quality != "on" or spec.hardware is not None:
        return 0.0
    window = spec.replace(batch_size=1, prompt_tokens=WINDOW_TOKENS, new_tokens=2,
                          prompt_text=None, speculative="none")
    return EVALUATION_TOKENS / WINDOW_TOKENS * \
        float(estimator.estimate(window).summary.get("ttft_s", 0.0))


def technique_setup_s(spec: RunSpec) -> float:
    """Making a pruned copy before the first call: per parameter, as measured here (module
    constants); layer removal and early exit share the weights, so they cost nothing."""
    from lib.models.shapes import shapes

    method = (spec.prune or "").split(":")[0]
    if method not in TECHNIQUE_SETUP_S_PER_PARAMETER or spec.hardware is not None:
        return 0.0
    return TECHNIQUE_SETUP_S_PER_PARAMETER[method] * shapes(spec.model_id).parameters


def plan_sweep(base: RunSpec, specs: Sequence[RunSpec], budget_s: float | None,
               other_cpu_percent: float | None,
               loaded: Callable[[RunSpec], bool] = lambda spec: False,
               other_threads: float | None = None) -> SweepPlan:
    """The promise before a sweep of the points `specs` (those that will run) within
    `budget_s` (None: no budget), with other programs on `other_cpu_percent` of the CPU now.
    Points sharing a model load it once (the cache keeps it)."""
    costs, bases, seen = [], [], set()
    for spec in specs:
        key = (spec.model_id, spec.device, spec.dtype, spec.stack)
        cost, basis = point_cost(spec, loaded=loaded(spec) or key in seen)
        seen.add(key)
        costs.append(cost)
        bases.append(basis)
    factor = slowdown(other_cpu_percent, base.threads, other_threads=other_threads)
    # What the measured points' costs come from (an estimated point's "nothing runs" is no
    # basis for the time of the others).
    ran = [basis for spec, basis in zip(specs, bases) if spec.hardware is None] or bases
    basis = min(ran, key=len) if ran else "nothing to run"
    learned = _learned(specs[0]) if specs else None
    if learned is not None:
        costs = [PointCost(c.load_s * learned["starts"], c.warmup_s * learned["calls"],
                           c.call_s * learned["calls"]) for c in costs]
        basis = f"this machine's speed in its last sweep ({learned['at']}) and {basis}"
    reps, minimum, seconds, fits = fit(costs, base.repetitions, base.min_duration_s, budget_s,
                                       factor)
    return SweepPlan(seconds, budget_s, reps, minimum, base.repetitions, base.min_duration_s,
                     other_cpu_percent, factor, basis, fits, other_threads,
                     tuple(factor * (c.load_s + c.warmup_s) for c in costs),
                     tuple(factor * c.call_s for c in costs))


def _speed_path() -> Path:
    return data_dir() / SPEED_FILE       # beside the run history


def _speed_key(spec: RunSpec) -> str:
    return f"{spec.device}/{spec.stack}"


def _learned(spec: RunSpec) -> dict[str, Any] | None:
    """The corrections the last sweep on `spec`'s device and stack measured, if any."""
    try:
        found = json.loads(_speed_path().read_text()).get(_speed_key(spec))
        low, high = RATIO_LIMITS
        if all(low <= float(found[name]) <= high for name in ("calls", "starts")):
            return {"calls": float(found["calls"]), "starts": float(found["starts"]),
                    "at": str(found.get("at", "earlier"))}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return None


def remember(result: Any) -> None:
    """After a sweep (`lib.measure.sweep_points.SweepResult` with its plan): how long its timed calls and its
    loading took against the plan's quiet costs (both divided by the plan's slowdown), kept as
    the corrections for the next plan on this device and stack. Nothing when it measured
    nothing or had no plan; a file that can't be written only loses the correction."""
    plan = getattr(result, "plan", None)
    points = [p for p in result.points if p.measurement is not None and p.spec is not None
              and p.spec.hardware is None and p.measurement.repetitions]
    if plan is None or not points:
        return
    calls_actual = calls_planned = starts_actual = warmups = loads = 0.0
    seen: set = set()
    previous = _learned(points[0].spec) or {"calls": 1.0, "starts": 1.0}
    for point in points:
        key = (point.spec.model_id, point.spec.device, point.spec.dtype, point.spec.stack)
        cost, _ = point_cost(point.spec, loaded=key in seen)
        seen.add(key)
        calls_actual += (point.seconds - point.start_s) / plan.slowdown
        calls_planned += len(point.measurement.repetitions) * cost.call_s
        starts_actual += point.start_s / plan.slowdown
        warmups += cost.warmup_s
        loads += cost.load_s
    if calls_planned <= 0:
        return
    low, high = RATIO_LIMITS
    calls = min(max(calls_actual / calls_planned, low), high)
    starts = previous["starts"]
    if loads > 0:
        starts = min(max((starts_actual - warmups * calls) / loads, low), high)
    path = _speed_path()
    try:
        kept = json.loads(path.read_text()) if path.exists() else {}
        kept = kept if isinstance(kept, dict) else {}
    except (OSError, ValueError):
        kept = {}
    kept[_speed_key(points[0].spec)] = {
        "calls": round(calls, 4), "starts": round(starts, 4),
        "at": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(kept, indent=1))
    except OSError:
        pass
