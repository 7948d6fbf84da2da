"""Sweeps: a base RunSpec + one or two factors with values -> one tidy table of results.

A factor is a RunSpec field a user may vary (batch size, prompt length, dtype, model, ...).
`run_sweep` measures every point of the grid through `lib.runner` (so the queue, the model cache
and the memory guard apply to each point), keeps going when a point cannot run (it is recorded
as skipped, with the reason), and stops between points when `should_stop()` says so, keeping
what was finished. `rows()` turns the results into tidy rows: one per point, the factor values,
the spec, and every metric's median, p10 and p90 with n, named as in DESIGN.md.
No pandas here: the CLI writes CSV with the standard library; the web app builds a DataFrame.
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from lib import stats
from lib.engine import Measurement
from lib.errors import ExplorerError, InvalidSpecError
from lib.spec import RunSpec, default_threads

# Metrics in the tidy table: median under the metric's own name, spread as _p10 / _p90.
TABLE_METRICS = ("ttft_s", "tpot_s", "e2e_s", "itl_s", "decode_tokens_per_s",
                 "total_tokens_per_s", "requests_per_s", "peak_memory_bytes")
SPEC_COLUMNS = ("model_id", "device", "dtype", "batch_size", "prompt_tokens", "new_tokens",
                "threads", "attention", "kv_cache", "compile", "repetitions", "min_duration_s",
                "warmup_runs")


@dataclass(frozen=True)
class Factor:
    name: str                    # as typed on the command line
    field: str                   # the RunSpec field it sets
    label: str                   # as shown on axes and in sentences
    default_values: Callable[[], tuple]
    parse: Callable[[str], Any] = str
    doubling: bool = False       # values grow by doubling: draw on a log axis


def _devices() -> tuple:
    from lib.devices import available_devices
    return tuple(available_devices())


FACTORS: dict[str, Factor] = {f.name: f for f in [
    Factor("model", "model_id", "model",
           lambda: ("smollm2-135m-instruct", "gpt2", "smollm2-360m", "qwen2.5-0.5b")),
    Factor("device", "device", "device", _devices),
    Factor("dtype", "dtype", "number format", lambda: ("float32", "bfloat16", "float16", "int8")),
    Factor("batch", "batch_size", "batch size", lambda: (1, 2, 4, 8, 16), int, True),
    Factor("prompt", "prompt_tokens", "prompt length (tokens)",
           lambda: (16, 32, 64, 128, 256, 512, 1024), int, True),
    Factor("output", "new_tokens", "output length (tokens)", lambda: (8, 16, 32, 64, 128), int,
           True),
    Factor("threads", "threads", "CPU threads",
           lambda: tuple(range(1, default_threads() + 1)), int),
    Factor("attention", "attention", "attention kernel", lambda: ("sdpa", "eager")),
    Factor("kv_cache", "kv_cache", "KV cache", lambda: ("dynamic", "static")),
    Factor("compile", "compile", "torch.compile", lambda: ("off", "on")),
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
        raise InvalidSpecError(f"No values given for {factor.label}: list them like 1,2,4.")
    try:
        values = [factor.parse(part) for part in parts]
    except ValueError:
        raise InvalidSpecError(
            f"Values for {factor.label} must be whole numbers separated by commas "
            f"(got {text!r}).") from None
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


def run_sweep(base: RunSpec, factor_values: Sequence[tuple[Factor, Sequence[Any]]],
              run_point: PointRunner, on_progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None,
              on_point: Callable[[PointResult], None] | None = None) -> SweepResult:
    if not 1 <= len(factor_values) <= 2:
        raise InvalidSpecError("A sweep varies one factor, or two for a heatmap.")
    if len(factor_values) == 2 and factor_values[0][0].name == factor_values[1][0].name:
        raise InvalidSpecError("Pick two different factors for a two-factor sweep.")
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


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """The tidy table: one row per point (measured or skipped)."""
    table = []
    for point in result.points:
        spec = point.spec or result.base
        row: dict[str, Any] = {f"factor_{name}": point.values[name] for name in result.factors}
        row["status"] = "measured" if point.measured else "skipped"
        row["skipped_reason"] = point.skipped_reason or ""
        row.update({column: getattr(spec, column) for column in SPEC_COLUMNS})
        for name in result.factors:          # the spec may be missing if the value was invalid
            row[FACTORS[name].field] = point.values[name]
        for metric in TABLE_METRICS:
            dist = point.summary.metrics.get(metric) if point.summary else None
            row[metric] = dist.median if dist else None
            row[f"{metric}_p10"] = stats.percentile(dist.values, 10) if dist else None
            row[f"{metric}_p90"] = stats.percentile(dist.values, 90) if dist else None
            row[f"{metric}_n"] = dist.n if dist else 0
        warmups = point.measurement.warmup_s if point.measurement else ()
        # The first warm-up holds one-off costs such as compiling: shown, never in a latency.
        row["first_warmup_s"] = warmups[0] if warmups else None
        row["seconds_spent"] = point.seconds
        table.append(row)
    return table


def to_csv(table: list[dict[str, Any]]) -> str:
    if not table:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows(table)
    return out.getvalue()


def display_rows(table: list[dict[str, Any]], factors: Sequence[str]) -> list[dict[str, Any]]:
    """The tidy table for people: factor values, readable medians with n, and why a point was
    skipped. (The CSV keeps the raw numbers.)"""
    from lib.report import METRIC_LABELS, format_value

    shown = ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "requests_per_s",
             "peak_memory_bytes")
    rows = []
    for row in table:
        out = {FACTORS[name].label: row[f"factor_{name}"] for name in factors}
        out["status"] = row["status"] if row["status"] == "measured" else \
            f"skipped: {row['skipped_reason']}"
        for metric in shown:
            out[METRIC_LABELS[metric][0]] = format_value(metric, row[metric])
        out["n"] = row["e2e_s_n"]
        out["First warm-up (untimed)"] = format_value("first_warmup_s", row["first_warmup_s"])
        rows.append(out)
    return rows
