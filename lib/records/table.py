"""The tidy table of a sweep: its row schema, written down once.

One row per point, measured or skipped:
- `factor_<name>` for each factor varied (`lib.measure.factors.factor_column`), the point's
  value;
- `status` (`Status.MEASURED` or `Status.SKIPPED`) and `skipped_reason`;
- the spec's fields (`SPEC_COLUMNS`), so a row says everything about how it ran;
- for each metric of `TABLE_METRICS`, its median under the metric's own name, plus `_p10` and
  `_p90` (empty below `stats.MIN_SAMPLES`: the one percentile gate), `_min`, `_max` and `_n`
  (`stat_column`): the metric names of docs/MEASURING.md. Charts draw p10-p90 where present,
  else the labelled min-max range (`band_columns`);
- `noisy` (True/False: the point's spread or the machine's load makes it doubtful, see
  `stats.point_noise`) and `other_cpu_percent` (CPU used by other processes while it ran), and
  `stopped_early` (Stop came before the point had its minimum repetitions);
- `first_warmup_s` (one-off costs such as compiling: shown, never in a latency) and
  `seconds_spent` (the point's wall time, loading included);
- `floor_<metric>` for each metric of `floors.FLOOR_METRICS`: the physical floor of a latency
  (or ceiling of a throughput) that the machine's memory bandwidth and arithmetic allow
  (`lib.estimate.floors`; an estimate, empty when the point's machine ceilings were not recorded; for
  an estimated point, the floor of its hardware profile);
- `provenance` (`measured`, or `estimated` for a point on a hardware profile: one computed
  value, so no p10/p90, a min and max equal to it, n = 1 and no `noisy` verdict; a skipped
  point says which it would have been). Added after the floors;
- `quality_agreement`, `quality_perplexity`, `quality_reference_perplexity` and
  `quality_unavailable` (`quality_columns`, from `lib.measure.quality`: empty unless the spec
  asked for quality); `speculative_acceptance_rate`, `speculative_tokens_per_step` and
  `speculative_tokens_identical` (`lib.measure.speculative`, empty without it). Added last.
The CLI writes it as CSV with the standard library; the web app builds a DataFrame from it, and
charts and findings read it by these names only. No pandas here.
"""

from __future__ import annotations

import csv
import enum
import io
from typing import Any, Sequence

from lib.estimate import floors
from lib.core import stats
from lib.core.metrics import METRICS, format_value
from lib.core.results import ESTIMATED, MEASURED, Quality
from lib.core.spec import LATER_FIELDS, field_names
from lib.measure.factors import FACTORS, Factor, factor_column
from lib.measure.sweep_points import SweepResult

TABLE_METRICS = ("ttft_s", "tpot_s", "e2e_s", "itl_s", "decode_tokens_per_s",
                 "total_tokens_per_s", "requests_per_s", "peak_memory_bytes")
SPREAD = ("p10", "p90")
RANGE = ("min", "max")          # added later: at the end of the row
# How a point was measured comes after what was measured: the column order people's
# spreadsheets have relied on since the first version.
PROCEDURE_FIELDS = ("repetitions", "min_duration_s", "warmup_runs")
SPEC_COLUMNS = tuple(name for name in field_names()
                     if name not in PROCEDURE_FIELDS + ("prompt_text",) + LATER_FIELDS) \
    + PROCEDURE_FIELDS
PROVENANCE_LABEL = "measured / estimated"
QUALITY_FIELDS = ("agreement", "perplexity", "reference_perplexity")
SPECULATIVE_FIELDS = ("acceptance_rate", "tokens_per_step", "tokens_identical")
DISPLAY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "requests_per_s",
                   "peak_memory_bytes")


class Status(enum.StrEnum):
    MEASURED = "measured"
    SKIPPED = "skipped"


def quality_columns(quality: Quality | None) -> dict[str, Any]:
    """`quality_agreement`, `quality_perplexity`, `quality_reference_perplexity` (empty when
    quality was not measured) and `quality_unavailable` (why not, when asked for)."""
    measured = quality is not None and quality.measured
    return {f"quality_{name}": getattr(quality, name) if measured else None
            for name in QUALITY_FIELDS} | \
        {"quality_unavailable": quality.unavailable if quality is not None else None}


def speculative_columns(report: dict[str, Any] | None) -> dict[str, Any]:
    """`speculative_<field>` for SPECULATIVE_FIELDS (empty without speculative decoding)."""
    return {f"speculative_{name}": (report or {}).get(name) for name in SPECULATIVE_FIELDS}


def floor_column(metric: str) -> str:
    """'tpot_s' -> 'floor_tpot_s': the physical floor (an estimate) beside the measurement."""
    return f"floor_{metric}"


def stat_column(metric: str, statistic: str) -> str:
    """'ttft_s', 'p10' -> 'ttft_s_p10'; the median is the metric's own column."""
    return metric if statistic == "median" else f"{metric}_{statistic}"


def band_columns(row: dict[str, Any], metric: str) -> tuple[str, str, str]:
    """The columns of the spread to draw for `metric` in `row`, and its label: p10-p90 when the
    point has enough samples for them (the percentile gate), else the range of its samples;
    "estimate" for an estimated point (its min and max are the estimate: no spread)."""
    if is_estimated(row):
        return stat_column(metric, "min"), stat_column(metric, "max"), "estimate"
    if row.get(stat_column(metric, "p10")) is not None:
        return stat_column(metric, "p10"), stat_column(metric, "p90"), "p10–p90"
    return stat_column(metric, "min"), stat_column(metric, "max"), "range"


def is_measured(row: dict[str, Any]) -> bool:
    """The point has results (measured live, or estimated): not skipped."""
    return row["status"] == Status.MEASURED


def is_estimated(row: dict[str, Any]) -> bool:
    """The point's numbers come from a model of the hardware, not from a clock."""
    return row.get("provenance") == ESTIMATED


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """The tidy table: one row per point (measured or skipped)."""
    table = []
    for point in result.points:
        settings = (point.spec or result.base).to_dict()
        if point.spec is None:               # missing if the value was invalid, or not saved
            for name in result.factors:
                settings.update(FACTORS[name].spec_fields(point.values[name]))
        row: dict[str, Any] = {factor_column(name): point.values[name] for name in result.factors}
        row["status"] = Status.MEASURED if point.measured else Status.SKIPPED
        row["skipped_reason"] = point.skipped_reason or ""
        row.update({column: settings[column] for column in SPEC_COLUMNS})
        for metric in TABLE_METRICS:
            dist = point.summary.metrics.get(metric) if point.summary else None
            row[metric] = dist.median if dist else None
            summary = dist.to_dict() if dist else {}
            for statistic in SPREAD:
                row[stat_column(metric, statistic)] = summary.get(statistic)
            row[stat_column(metric, "n")] = dist.n if dist else 0
        warmups = point.measurement.warmup_s if point.measurement else ()
        row["first_warmup_s"] = warmups[0] if warmups else None
        row["seconds_spent"] = point.seconds
        for metric in TABLE_METRICS:
            dist = point.summary.metrics.get(metric) if point.summary else None
            for statistic in RANGE:
                row[stat_column(metric, statistic)] = dist.to_dict()[statistic] if dist else None
        estimated = point.measurement.provenance.kind == ESTIMATED if point.measurement \
            else settings["hardware"] is not None
        # An estimate is one computed value: there is nothing to be noisy.
        noise = stats.point_noise(point.measurement, point.summary) \
            if point.summary and not estimated else None
        row["noisy"] = noise.noisy if noise else None
        row["other_cpu_percent"] = noise.other_cpu_percent if noise else None
        row["stopped_early"] = point.stopped_early
        row.update({column: settings[column] for column in LATER_FIELDS})
        limits = floors.metric_floors(point.measurement) if point.measurement else {}
        for metric in floors.FLOOR_METRICS:
            row[floor_column(metric)] = limits.get(metric)
        row["provenance"] = ESTIMATED if estimated else MEASURED
        row.update(quality_columns(point.measurement.quality if point.measurement else None))
        row.update(speculative_columns(point.measurement.speculative if point.measurement
                                       else None))
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
    """The tidy table for people: factor values in words ('ONNX Runtime', 'Q4_K_M'), readable
    medians with n, and why a point was skipped. (The CSV keeps the raw names and numbers.)"""
    shown = []
    for row in table:
        out = {FACTORS[name].label: _shown(FACTORS[name], row[factor_column(name)])
               for name in factors}
        out["status"] = (ESTIMATED if is_estimated(row) else str(row["status"])) \
            if is_measured(row) else \
            f"skipped: {row['skipped_reason']}"
        if row.get("stopped_early"):
            out["status"] = "measured, stopped early (fewer repetitions than asked)"
        # A skipped point was neither measured nor estimated (the CSV keeps which it would
        # have been).
        out[PROVENANCE_LABEL] = (row.get("provenance") or MEASURED) if is_measured(row) \
            else "skipped"
        for metric in DISPLAY_METRICS:
            out[METRICS[metric].label] = format_value(metric, row[metric])
        out["n"] = row[stat_column("e2e_s", "n")]
        out["Noisy"] = "⚠ yes" if row.get("noisy") else (
            "" if not is_measured(row) else
            "n/a: an estimate" if is_estimated(row) else "no")
        other = row.get("other_cpu_percent")
        out["Other programs' CPU"] = f"{other:.0f}%" if other is not None else ""
        out["First warm-up (untimed)"] = format_value("first_warmup_s", row["first_warmup_s"])
        shown.append(out)
    return shown


def _shown(factor: Factor, value: Any) -> Any:
    """A factor's value in its words, where it has some; numbers stay numbers (they sort)."""
    return factor.value_label(value) if factor.words else value
