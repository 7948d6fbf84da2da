"""Whether two points of a sweep can be told apart, and by how much: the rule every finding
keeps to (`lib.views.insights`, `lib.views.stack_insights`) and every chart marks (noisy points).

A ratio within NEGLIGIBLE of 1 is "about the same". A ratio is a finding only when the data can
carry it: if the two points' spreads overlap (p10–p90, or the range of their samples below the
percentile gate: `table.band_columns`) or either point is noisy (`stats.point_noise`), `ratio`
is None and `doubt` says why. An estimate (`table.is_estimated`) is one computed value, not
samples: no spread or noise verdict applies to it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from lib.core.metrics import format_number
from lib.core.stats import BUSY_OTHER_CPU_PERCENT, NOISY_RELATIVE_IQR
from lib.measure.sweep import Factor
from lib.records.table import band_columns, is_estimated

NEGLIGIBLE = 0.10      # ratios between 0.9x and 1.1x are "about the same"
RERUN = "rerun on a quieter machine or with more repetitions to tell"


def cell(row: dict[str, Any], key: str) -> float | None:
    """A tidy row's number, None where it is missing or empty (NaN)."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def is_noisy(row: dict[str, Any]) -> bool:
    """The row's `noisy` flag; absent or empty (a skipped point, an old table) is not noisy."""
    return bool(cell(row, "noisy"))


def noise_reason(row: dict[str, Any]) -> str:
    """Why a noisy point is doubtful, in a few words. The table keeps the other programs' CPU
    share; the other cause of `stats.point_noise` is the spread of the repetitions."""
    other = cell(row, "other_cpu_percent")
    if other is not None and other > BUSY_OTHER_CPU_PERCENT:
        return f"other programs used {other:.0f}% of the CPU while it was measured"
    return (f"its repetitions disagreed: their middle half spans more than "
            f"{NOISY_RELATIVE_IQR:.0%} of the median")


def spreads_overlap(a: dict[str, Any], b: dict[str, Any], key: str) -> bool | None:
    """Whether the two points' spreads of `key` overlap (None if a spread is missing)."""
    bands = []
    for row in (a, b):
        low, high, _ = band_columns(row, key)
        bands.append((cell(row, low), cell(row, high)))
    if any(edge is None for band in bands for edge in band):
        return None
    (low_a, high_a), (low_b, high_b) = bands
    return low_a <= high_b and low_b <= high_a


def samples_apart(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    """Whether the lowest-to-highest ranges of the two points' samples of `key` don't touch."""
    edges = [(cell(row, f"{key}_min"), cell(row, f"{key}_max")) for row in (a, b)]
    if any(edge is None for pair in edges for edge in pair):
        return False
    (low_a, high_a), (low_b, high_b) = edges
    return high_a < low_b or high_b < low_a


def doubt(a: dict[str, Any], b: dict[str, Any], key: str, factor: Factor | None,
          named: Callable[[dict[str, Any]], str] | None = None) -> str | None:
    """Why comparing `key` between two points would sell noise as a finding, or None. An
    estimate has no samples: its distance from another point is never noise. `named`: how a
    point is named (default: the factor's label and value, 'batch size 16')."""
    noisy = [row for row in (a, b) if is_noisy(row)]
    if noisy and samples_apart(a, b, key):
        # Every sample of one point beats every sample of the other, measured in the same
        # interleaved rounds: whatever disturbed them, the order is not the noise's doing.
        noisy = []
    if len(noisy) == 2:
        return "both points are noisy"
    if noisy:
        name = named(noisy[0]) if named else f"{factor.label} {noisy[0][factor.column]}"
        return f"{name} is a noisy point"
    if is_estimated(a) or is_estimated(b):
        return None
    if spreads_overlap(a, b, key):
        kinds = {band_columns(row, key)[2] for row in (a, b)}
        return ("their p10–p90 spreads overlap" if kinds == {"p10–p90"}
                else "the spreads of their samples overlap")
    return None


def finding_ratio(a: dict[str, Any], b: dict[str, Any], key: str,
                  factor: Factor | None) -> float | None:
    """b / a when that ratio is a finding ("about the same" included), None when it is noise.
    A noisy point can't even show that nothing changed, only a difference larger than all of
    its samples' scatter (`samples_apart`); a change under NEGLIGIBLE is "about the same" even
    where the spreads overlap. Against an estimate the ratio is always stated: it compares a
    prediction with a measurement, and a noisy measurement is named apart."""
    ratio = b[key] / a[key]
    if is_estimated(a) or is_estimated(b):
        return ratio
    if any(is_noisy(row) for row in (a, b)):
        return ratio if samples_apart(a, b, key) else None
    if abs(ratio - 1) <= NEGLIGIBLE:
        return ratio
    return None if doubt(a, b, key, factor) else ratio


def ms(seconds: float) -> str:
    """A duration as findings write it: '1.25 s', '37 ms', '4.2 ms' (whole ms from 10 up)."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    millis = seconds * 1000
    return f"{millis:.0f} ms" if millis >= 10 else f"{format_number(millis)} ms"
