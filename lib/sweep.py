"""Sweeps: a base RunSpec + one or two factors with values -> one tidy table of results.

A factor is a RunSpec field a user may vary (batch size, prompt length, dtype, model, ...).
`run_sweep` measures every point of the grid through `lib.runner` (so the queue, the model cache
and the memory guard apply to each point), keeps going when a point cannot run (it is recorded
as skipped, with the reason), and stops between points when `should_stop()` says so, keeping
what was finished. `lib.table` turns the results into the tidy table.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from lib import stats
from lib.results import Measurement
from lib.errors import ExplorerError, InvalidSpecError
from lib.spec import (ATTENTIONS, COMPILES, DEFAULT_MODEL_ID, DTYPES, KV_CACHES, RunSpec,
                      default_threads, field_info)


@dataclass(frozen=True)
class Factor:
    name: str                    # as typed on the command line
    field: str                   # the RunSpec field it sets
    label: str                   # as shown on axes and in sentences
    default_values: Callable[[], tuple]
    numeric: bool = False        # whole numbers, typed with commas; else picked from a list
    doubling: bool = False       # values grow by doubling: draw on a log axis

    @property
    def column(self) -> str:
        """Its column in the tidy table (lib.table)."""
        from lib.table import factor_column
        return factor_column(self.name)

    @property
    def title(self) -> str:
        """The label starting a sentence: 'KV cache', 'CPU threads' (not 'Kv cache')."""
        return self.label[:1].upper() + self.label[1:]

    def parse(self, text: str) -> Any:
        return int(text) if self.numeric else text


def _devices() -> tuple:
    from lib.devices import available_devices
    return tuple(available_devices())


FACTORS: dict[str, Factor] = {f.name: f for f in [
    Factor("model", "model_id", "model",
           lambda: (DEFAULT_MODEL_ID, "gpt2", "smollm2-360m", "qwen2.5-0.5b")),
    Factor("device", "device", "device", _devices),
    Factor("dtype", "dtype", "number format", lambda: DTYPES),
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
    choices = field_info(factor.field)["choices"]
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


PointRunner = Callable[[RunSpec], Measurement]
Progress = Callable[[int, int, dict[str, Any], float | None], None]  # done, total, next, eta_s


def grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> list[dict[str, Any]]:
    names = [factor.name for factor, _ in factor_values]
    return [dict(zip(names, combo))
            for combo in itertools.product(*[values for _, values in factor_values])]


def check_grid(factor_values: Sequence[tuple[Factor, Sequence[Any]]]) -> None:
    if not 1 <= len(factor_values) <= 2:
        raise InvalidSpecError("A sweep varies one factor, or two for a heatmap.")
    if len(factor_values) == 2 and factor_values[0][0].name == factor_values[1][0].name:
        raise InvalidSpecError("Pick two different factors for a two-factor sweep.")


def run_sweep(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
              run_point: PointRunner, on_progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None,
              on_point: Callable[[PointResult], None] | None = None) -> SweepResult:
    check_grid(factor_values)
    points = grid(factor_values)
    by_name = {factor.name: factor for factor, _ in factor_values}
    result = SweepResult(base, list(by_name), planned=len(points))
    for index, values in enumerate(points):
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        if on_progress is not None:
            on_progress(index, len(points), values, _eta(result.points, len(points) - index))
        point = PointResult(values)
        started = time.perf_counter()
        try:
            point.spec = base.replace(**{by_name[n].field: v for n, v in values.items()})
            point.measurement = run_point(point.spec)
            point.summary = stats.summarize(point.measurement)
        except ExplorerError as exc:
            point.skipped_reason = str(exc)
        point.seconds = time.perf_counter() - started
        result.points.append(point)
        if on_point is not None:
            on_point(point)
    if on_progress is not None and not result.stopped:
        on_progress(len(points), len(points), {}, 0.0)
    return result


def _eta(done: list[PointResult], remaining: int) -> float | None:
    timed = [p.seconds for p in done if p.measured]
    return sum(timed) / len(timed) * remaining if timed else None
