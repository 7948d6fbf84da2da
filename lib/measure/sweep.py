"""Sweeps: a base RunSpec + one or two factors with values -> one tidy table of results.

A factor is a RunSpec field a user may vary (batch size, prompt length, dtype, model, ...).
The device factor also takes hardware profile ids (`lib.estimate.hardware`): a device of this machine is
measured, a profile is estimated (`lib.measure.backends.estimated`), so one sweep can set this laptop's
measurements beside an H200's and a TPU's estimates. `Factor.spec_fields` says which RunSpec
fields a value sets (for a profile: `hardware`), and `Factor.estimated` whether its points are
estimates; a saved sweep's device values (plain device names) mean what they always meant.
The stack factor (`lib.core.stacks`) sets the engine that runs the model: a stack that isn't
installed, has no backend, or doesn't run a point's weight format makes that point a skipped
one with the reason, like any other point that cannot run.
`run_sweep` measures every point of the grid through a `PointMeasurer` (`lib.measure.runner.SweepPoints`:
the queue, the model cache and the memory guard apply to each point) in interleaved rounds, so
points measured "one after the other" never meet different conditions: each round visits every
point once, in a rotating order. It keeps going when a point cannot run (recorded as skipped,
with the reason), and stops between repetitions when `should_stop()` says so, keeping the points
that were finished. Given a `lib.measure.budget.SweepPlan`, it keeps to its time budget (`Pace`): the
repetitions still to come shrink when measured rounds say they would overrun, and the time left
is the plan's estimate until measured durations replace it. `lib.records.table` turns the results into
the tidy table.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from lib.core import stats
from lib.measure.budget import Pace, SweepPlan
from lib.core.results import Measurement, Repetition
from lib.core.errors import ExplorerError, InvalidSpecError, MemoryGuardError
from lib.core.spec import (ATTENTIONS, COMPILES, DEFAULT_MODEL_ID, DEVICES, DTYPES, KV_CACHES,
                           RunSpec, default_threads, field_info)
from lib.core.stacks import STACK_NAMES, STACK_SETTINGS, TRANSFORMERS, format_name, stack_name



@dataclass(frozen=True)
class Factor:
    name: str                    # as typed on the command line
    field: str                   # the RunSpec field it sets
    label: str                   # as shown on axes and in sentences
    default_values: Callable[[], tuple]
    numeric: bool = False        # whole numbers, typed with commas; else picked from a list
    doubling: bool = False       # values grow by doubling: draw on a log axis
    # When a value sets more than `field` (the device factor: a profile id sets `hardware`),
    # the RunSpec fields it sets; its accepted values beyond the field's choices; its words.
    settings: Callable[[Any], dict[str, Any]] | None = None
    more_choices: Callable[[], tuple] | None = None
    words: Callable[[Any], str] | None = None

    @property
    def column(self) -> str:
        """Its column in the tidy table (lib.records.table)."""
        from lib.records.table import factor_column
        return factor_column(self.name)

    @property
    def title(self) -> str:
        """The label starting a sentence: 'KV cache', 'CPU threads' (not 'Kv cache')."""
        return self.label[:1].upper() + self.label[1:]

    def parse(self, text: str) -> Any:
        return int(text) if self.numeric else text

    def spec_fields(self, value: Any) -> dict[str, Any]:
        """The RunSpec fields that `value` sets at a point: {field: value} for most factors."""
        return self.settings(value) if self.settings else {self.field: value}

    def choices(self) -> tuple | None:
        """Every value it accepts, or None for any value of the right type (numbers)."""
        choices = field_info(self.field)["choices"]
        if not choices:
            return None
        return tuple(choices) + (self.more_choices() if self.more_choices else ())

    def estimated(self, value: Any) -> bool:
        """Whether its points at `value` are estimated (a hardware profile), not measured."""
        return self.spec_fields(value).get("hardware") is not None

    def value_label(self, value: Any) -> str:
        """A value in words, for charts and sentences ('NVIDIA H200 SXM 141GB' for h200)."""
        return self.words(value) if self.words else str(value)


def _devices() -> tuple:
    from lib.machine.devices import available_devices
    return tuple(available_devices())


def device_values() -> list[str]:
    """What the device factor offers: this machine's devices (measured), then every hardware
    profile (estimated)."""
    return list(_devices()) + list(_profile_ids())


def _device_settings(value: str) -> dict[str, Any]:
    """A device of this machine is measured on it (no hardware profile, one device); any other
    value names a hardware profile, estimated (`lib.estimate.estimator` ignores the device then, except
    for `this`, this machine's own device modelled from its measured ceilings)."""
    if value in DEVICES:
        return {"device": value, "hardware": None, "gpus": 1}
    return {"hardware": value}


def _profile_ids() -> tuple:
    from lib.estimate import hardware
    return hardware.ids()


def _device_words(value: str) -> str:
    """'cpu' stays 'cpu'; a profile id becomes its name without the parenthesis ('NVIDIA H200
    SXM 141GB'); `this` is this machine as the estimator models it."""
    from lib.estimate import hardware

    if value in DEVICES:
        return value
    if value == hardware.THIS:
        return "This machine, modelled"
    profile = hardware.table().get(value)
    return profile.name.split(" (")[0] if profile is not None else str(value)


def _stack_settings(value: str) -> dict[str, Any]:
    """Attention kernel, KV cache and torch.compile are transformers' own settings: another
    stack's point runs with their defaults (its own kernels and cache) instead of being
    refused for a setting it doesn't have."""
    if value == TRANSFORMERS:
        return {"stack": value}
    return {"stack": value, **{name: field_info(name)["default"] for name in STACK_SETTINGS}}


FACTORS: dict[str, Factor] = {f.name: f for f in [
    Factor("model", "model_id", "model",
           lambda: (DEFAULT_MODEL_ID, "gpt2", "smollm2-360m", "qwen2.5-0.5b")),
    Factor("device", "device", "device", _devices, settings=_device_settings,
           more_choices=_profile_ids, words=_device_words),
    Factor("dtype", "dtype", "number format", lambda: DTYPES,
           words=lambda value: format_name(value)),
    Factor("stack", "stack", "software stack", lambda: STACK_NAMES, settings=_stack_settings,
           words=stack_name),
    Factor("batch", "batch_size", "batch size", lambda: (1, 2, 4, 8, 16), True, True),
    Factor("prompt", "prompt_tokens", "prompt length (tokens)",
           lambda: (16, 32, 64, 128, 256, 512, 1024), True, True),
    Factor("output", "new_tokens", "output length (tokens)", lambda: (8, 16, 32, 64, 128), True,
           True),
    Factor("threads", "threads", "CPU threads",
           lambda: tuple(range(1, default_threads() + 1)), True),
    Factor("attention", "attention", "attention kernel", lambda: ATTENTIONS),
    Factor("kv_cache", "kv_cache", "KV cache", lambda: KV_CACHES),
    Factor("compile", "compile", "torch.compile", lambda: COMPILES),
]}


def get_factor(name: str) -> Factor:
    try:
        return FACTORS[name]
    except KeyError:
        raise InvalidSpecError(
            f"Unknown factor {name!r}: choose one of {', '.join(FACTORS)}.") from None


def parse_values(factor: Factor, text: str) -> list[Any]:
    """'1,2,4' -> [1, 2, 4] for that factor, with a clear message on bad input."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        example = "1,2,4" if factor.numeric else ",".join(factor.default_values()[:2])
        raise InvalidSpecError(f"No values given for {factor.label}: list them like {example}.")
    try:
        values = [factor.parse(part) for part in parts]
    except ValueError:
        raise InvalidSpecError(
            f"Values for {factor.label} must be whole numbers separated by commas "
            f"(got {text!r}).") from None
    choices = factor.choices()
    unknown = [value for value in values if choices and value not in choices]
    if unknown:
        raise InvalidSpecError(f"{', '.join(map(str, unknown))} is not a {factor.label}: choose "
                               f"from {', '.join(choices)}.")
    if len(set(values)) != len(values):
        raise InvalidSpecError(f"A value for {factor.label} is listed twice in {text!r}.")
    return values


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


def grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> list[dict[str, Any]]:
    names = [factor.name for factor, _ in factor_values]
    return [dict(zip(names, combo))
            for combo in itertools.product(*[values for _, values in factor_values])]


def check_grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> None:
    if not 1 <= len(factor_values) <= 2:
        raise InvalidSpecError("A sweep varies one factor, or two for a heatmap.")
    if len(factor_values) == 2 and factor_values[0][0].name == factor_values[1][0].name:
        raise InvalidSpecError("Pick two different factors for a two-factor sweep.")


def point_spec(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
               values: dict[str, Any]) -> RunSpec:
    """The settings of the grid point at `values` (InvalidSpecError for an impossible value,
    such as a batch of 0)."""
    by_name = {factor.name: factor for factor, _ in factor_values}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        changes.update(by_name[name].spec_fields(value))
    return base.replace(**changes)


def estimated_points(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> int:
    """How many of the grid's points are estimates (on a hardware profile), not measured."""
    count = 0
    for values in grid(factor_values):
        try:
            count += point_spec(base, factor_values, values).hardware is not None
        except ExplorerError:
            continue                 # skipped when the sweep runs, with its reason
    return count


@dataclass
class _Active:
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
    tracker = _Tracker(result, listeners, pace)
    groups = 0

    def finish_point(point: PointResult) -> None:
        result.points.append(point)
        result.points.sort(key=lambda p: p.index)
        if on_point is not None:
            on_point(point)

    while pending and not result.stopped:
        groups += 1
        active: list[_Active] = []
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
                active.append(_Active(point, pace=pace))
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
            + ", ".join(f"{_where(p.values)} ({len(p.measurement.repetitions)} times)"
                        for p in extra) + ".")
    note = pace.note() if pace is not None else None
    if note:
        result.notes.insert(0, note)
    return result


def _rounds(active: list[_Active], points: PointMeasurer, tracker: "_Tracker",
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


def _keep_what_was_measured(active: list[_Active], points: PointMeasurer, result: SweepResult,
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


class _Tracker:
    """Turns the sweep's state into `SweepProgress` reports, with an ETA from measured times."""

    def __init__(self, result: SweepResult, listeners: list[Progress],
                 pace: Pace | None = None) -> None:
        self.result, self.listeners, self.pace = result, listeners, pace
        self.finished = 0
        self.loaded = 0
        self.round = 0
        self.point_s: list[float] = []         # wall time of each finished point

    def show(self, phase: str, point: PointResult, active: list[_Active],
             pending: list[PointResult], item: _Active | None = None) -> None:
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

    def _eta(self, active: list[_Active], pending: list[PointResult]) -> float | None:
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


def _where(values: dict[str, Any]) -> str:
    """A point in words: 'software stack ONNX Runtime, number format Q4_K_M'."""
    return ", ".join(f"{FACTORS[name].label} {FACTORS[name].value_label(value)}"
                     for name, value in values.items())


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
