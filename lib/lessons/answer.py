"""A lesson's answer, computed from the measured points (a sweep's tidy rows).

The measured number is the lesson's ratio or value (`lib.lessons.book`); its choice is the
range it falls in. The answer is trusted only when the data carries it, by the rule every
finding keeps to (`lib.views.comparable.finding_ratio`): two points whose spreads overlap, or a
noisy point, give no ratio, and the answer says why and asks for another measurement instead
of stating one. A lone value (a quality share, a percentile over a median) has no such
doubt but a noisy point, and a busy machine is named first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lib.core.metrics import METRICS, format_number, format_value
from lib.lessons.book import Lesson
from lib.measure.factors import FACTORS
from lib.views.comparable import cell, doubt, finding_ratio, is_noisy, ms, noise_reason


BORDER = 0.05      # a measured number within 5% of a threshold is too close to call


@dataclass(frozen=True)
class Answer:
    text: str                          # the answer in plain words, numbers from the data
    choice: int | None                 # the index of the choice the data says; None: untold
    measured: float | None             # the ratio or value the choice comes from
    trusted: bool                      # False: measure again (the reason is in `text`)
    points: list[dict[str, Any]] = field(default_factory=list)
    estimated: bool = False            # a point is an estimate: "found", never "measured"

    def verdict(self, lesson: Lesson, predicted: int | None) -> str:
        """'You predicted X; measured: Y.' (and whether they agree)."""
        if predicted is None:
            return ""
        said = f"You predicted: {lesson.choices[predicted]}."
        if self.choice is None:
            return said + " The measurement can't tell yet (see why below)."
        found = "With the estimate" if self.estimated else "Measured"
        if self.choice == predicted:
            return said + f" {found}: {lesson.choices[self.choice]}. Right."
        return said + f" {found}: {lesson.choices[self.choice]}."

    def to_dict(self, lesson: Lesson) -> dict[str, Any]:
        return {"text": self.text, "trusted": self.trusted, "measured": self.measured,
                "choice": None if self.choice is None else lesson.choices[self.choice],
                "choice_index": self.choice}


def answer(lesson: Lesson, rows: list[dict[str, Any]]) -> Answer:
    """The answer `rows` (the lesson's points, in its values' order) give."""
    ran = [row for row in rows if cell(row, lesson.metric) is not None]
    if len(ran) < (2 if lesson.compare == "values" else 1):
        reasons = [row.get("skipped_reason") for row in rows if row.get("skipped_reason")]
        why = f": {reasons[0]}" if reasons else ""
        return Answer(f"Not enough points were measured to answer{why}", None, None, False,
                      rows)
    from lib.records.table import is_estimated

    factor = FACTORS[lesson.factor]
    first, last = ran[0], ran[-1]
    estimated = any(is_estimated(row) for row in (first, last))
    also = _also(lesson, first, last)

    def untold(words: str, measured: float | None) -> Answer:
        return Answer(f"{words} {also}".strip(), None, measured, False, rows, estimated)

    if lesson.compare == "values":
        measured = finding_ratio(first, last, lesson.metric, factor)
        told = _values_words(lesson, first, last)
        if measured is None:
            reason = doubt(first, last, lesson.metric, factor) or "the points are noisy"
            return untold(f"{told} That difference is within the noise ({reason}): measure "
                          "again, on a quieter machine, to tell.", None)
    elif lesson.compare == "metrics":
        measured = last[lesson.metric] / last[lesson.versus]
        told = (f"Measured at {_point(factor, last)}: {_metric_words(lesson.metric)} "
                f"{_value(lesson.metric, last[lesson.metric])} against "
                f"{_metric_words(lesson.versus)} {_value(lesson.versus, last[lesson.versus])} "
                f"({_ratio(measured)}).")
    else:
        measured = float(last[lesson.metric])
        told = (f"Measured at {_point(factor, last)}: {_metric_words(lesson.metric)} "
                f"{_value(lesson.metric, measured)}.")
    # Noise is the timings' (and memory's): quality is computed once, exactly.
    timed = lesson.metric.rsplit("_p", 1)[0] in METRICS or lesson.metric in METRICS
    if lesson.compare != "values" and is_noisy(last) and timed and not lesson.measures_spread:
        low, high = _spread(lesson, last)
        if low is None or lesson.choice_for(low) != lesson.choice_for(high):
            return untold(f"{told} But that point is noisy ({noise_reason(last)}) and its "
                          "spread reaches into another answer: measure again to trust it.",
                          measured)
        told += (f" (That point is noisy: {noise_reason(last)}; but all of its spread gives "
                 "the same answer.)")
    border = next((t for t in lesson.thresholds if abs(measured / t - 1) < BORDER), None)
    if border is not None:
        below, above = lesson.choice_for(border * 0.999), lesson.choice_for(border)
        return untold(f"{told} That is on the border between \"{lesson.choices[below]}\" and "
                      f"\"{lesson.choices[above]}\" (within {BORDER:.0%} of "
                      f"{format_number(border)}): too close to call. Measure again, with more "
                      "repetitions or on a quieter machine, to tell.", measured)
    choice = lesson.choice_for(measured)
    return Answer(f"{told} {also} So: {lesson.choices[choice]}.".replace("  ", " "), choice,
                  measured, True, rows, estimated)


def _spread(lesson: Lesson, row: dict[str, Any]) -> tuple[float | None, float | None]:
    """The measured quantity's lowest and highest over the point's spread (p10-p90, or the
    samples' range): (None, None) where the table keeps no spread for it."""
    from lib.records.table import band_columns

    def band(key: str) -> tuple[float | None, float | None]:
        if key not in METRICS:
            return None, None
        low, high, _ = band_columns(row, key)
        return cell(row, low), cell(row, high)
    low, high = band(lesson.metric)
    if lesson.compare == "metrics":
        v_low, v_high = band(lesson.versus)
        if None in (low, high, v_low, v_high) or not v_low:
            return None, None
        return low / v_high, high / v_low
    return low, high


def _point(factor: Any, row: dict[str, Any]) -> str:
    """'batch size 8', 'prompt length 512 tokens' (a unit in the label goes after)."""
    value = factor.value_label(row[factor.column])
    if factor.name == "model":
        from lib.models.catalog import listed_entry
        entry = listed_entry(row[factor.column])
        value = entry.display_name if entry else value
    named, unit = re.match(r"^(.*?)(?: \((\w+)\))?$", factor.label).groups()
    return f"{named} {value} {unit}" if unit else f"{named} {value}"


def _values_words(lesson: Lesson, first: dict[str, Any], last: dict[str, Any]) -> str:
    from lib.records.table import is_estimated

    factor = FACTORS[lesson.factor]
    a, b = first[lesson.metric], last[lesson.metric]
    kinds = ["estimated" if is_estimated(row) else "measured" for row in (first, last)]
    lead = "Measured" if kinds == ["measured"] * 2 else \
        f"{kinds[0].capitalize()} and {kinds[1]} (an estimate is a model of the hardware, " \
        "not a measurement)"
    return (f"{lead}: {_metric_words(lesson.metric)} went from {_value(lesson.metric, a)} "
            f"({_point(factor, first)}) to {_value(lesson.metric, b)} "
            f"({_point(factor, last)}), {_ratio(b / a)}.")


def _ratio(value: float) -> str:
    """'1.15x', '8.6x', '0.31x': two decimals where a border may be near."""
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _also(lesson: Lesson, first: dict[str, Any], last: dict[str, Any]) -> str:
    said = []
    for key in lesson.also:
        a, b = cell(first, key), cell(last, key)
        if a is None or b is None:
            continue
        words = _metric_words(key).replace("the typical ", "")
        if lesson.compare == "values" and first is not last:
            said.append(f"{words} went from {_value(key, a)} to {_value(key, b)}")
        else:
            said.append(f"{words} was {_value(key, b)}")
    return f"Meanwhile {'; '.join(said)}." if said else ""


def _metric_words(key: str) -> str:
    base, _, percentile = key.rpartition("_p") if key.endswith(("_p10", "_p90")) \
        else (key, "", "")
    if key == "quality_agreement":
        return "agreement with the original model on next words"
    if key == "quality_perplexity":
        return "perplexity"
    if key == "speculative_tokens_per_step":
        return "tokens per step"
    name = METRICS[base].words if base in METRICS else base
    return f"the slowest tenth of runs' {name} (p{percentile})" if percentile == "90" \
        else f"the fastest tenth of runs' {name} (p{percentile})" if percentile else \
        f"the typical {name}"


def _value(key: str, value: float) -> str:
    base = key.rsplit("_p", 1)[0] if key.endswith(("_p10", "_p90")) else key
    if key == "quality_agreement":
        return f"{value:.0%}"
    if base.endswith("_s") and not base.endswith("_per_s"):
        return ms(value)
    if base in METRICS:
        return format_value(base, value)
    return format_number(value)


def chart(lesson: Lesson, rows: list[dict[str, Any]], large: bool = False):
    """The lesson's one chart: its metric at each point (or its two metrics at the point)."""
    from lib.records.table import band_columns, is_estimated
    from lib.views.lesson_charts import Bar, lesson_figure

    factor = FACTORS[lesson.factor]
    ran = [row for row in rows if cell(row, lesson.metric) is not None]
    keys = [lesson.metric, lesson.versus] if lesson.compare == "metrics" else [lesson.metric]
    scale, unit = _display(lesson.metric)
    bars = []
    for row in ran:
        for key in keys:
            value = row[key]
            low = high = None
            if not key.endswith(("_p10", "_p90")) and key in METRICS:
                low_key, high_key, _ = band_columns(row, key)
                low, high = cell(row, low_key), cell(row, high_key)
            label = _metric_words(key).replace("the typical ", "") if len(keys) > 1 \
                else _point(factor, row)
            bars.append(Bar(label, value * scale, None if low is None else low * scale,
                            None if high is None else high * scale, is_estimated(row),
                            _value(key, value)))
    title = lesson.title
    axis = f"{_metric_words(lesson.metric).replace('the typical ', '')} ({unit})" \
        if len(keys) == 1 else f"time ({unit})"
    return lesson_figure(bars, title, axis, large)


def _display(key: str) -> tuple[float, str]:
    base = key.rsplit("_p", 1)[0] if key.endswith(("_p10", "_p90")) else key
    if key == "quality_agreement":
        return 100.0, "%"
    if base in METRICS:
        return METRICS[base].display_scale, METRICS[base].display_unit
    return 1.0, ""
