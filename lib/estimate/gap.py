"""A live run beside the estimate for the same settings on the same machine, and why they differ.

The estimator (`lib.estimate.estimator`, profile `this`: this machine's measured ceilings) predicts each
phase as memory, arithmetic, per-layer overhead and communication terms. After a run, `compare`
puts the measured medians next to the predicted numbers with their ratio, and names the biggest
reason for the gap in plain words: the machine being busy when it was (`stats.point_noise`), or
else the estimate's largest term for the phase that missed most, and what that term leaves
out. The ratios are the error ledger's raw material (History).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib.core import stats
from lib.core.metrics import METRICS, format_value
from lib.core.results import Measurement

WITHIN = 0.15                      # |ratio - 1| at most this: "close"
PHASE_OF = {"ttft_s": "prefill", "tpot_s": "decode"}
COMPARED = ("ttft_s", "tpot_s", "e2e_s")
SLOWER_BECAUSE = {
    "memory": "the weights are read at less than the measured bandwidth (the copy that "
              "measured it moves one long block; a model reads many smaller ones)",
    "compute": "matrix products of this size run below the machine's peak arithmetic rate",
    "overhead": "Python and per-operation costs vary between layers and models more than one "
                "calibration per layer can say",
    "communication": "the link between devices is busier than its datasheet rate",
}
FASTER_BECAUSE = {
    "memory": "part of the weights stayed in the processor's caches, faster than main memory",
    "compute": "the library used faster kernels than those that measured the peak",
    "overhead": "this model's layers launch fewer operations than the calibration model's",
    "communication": "the devices overlap talking with computing",
}


@dataclass(frozen=True)
class Row:
    metric: str
    measured_s: float
    estimated_s: float

    @property
    def ratio(self) -> float:
        """Measured over estimated: 1.3 means the run took 30% longer than predicted."""
        return self.measured_s / self.estimated_s


@dataclass(frozen=True)
class Gap:
    rows: tuple[Row, ...]
    reason: str

    def table(self) -> list[dict[str, str]]:
        return [{"metric": METRICS[row.metric].short_label,
                 "measured": format_value(row.metric, row.measured_s),
                 "estimated": format_value(row.metric, row.estimated_s),
                 "measured ÷ estimated": f"{row.ratio:.2f}×"} for row in self.rows]


def compare(measurement: Measurement, summary: stats.Summary, estimate) -> Gap | None:
    """The measured medians beside `estimate` (a `lib.estimate.estimator.Estimate` of the same spec on
    this machine); None when they share no metric."""
    rows = tuple(Row(metric, summary.metrics[metric].median, estimate.summary[metric])
                 for metric in COMPARED
                 if metric in summary.metrics and estimate.summary.get(metric))
    if not rows:
        return None
    return Gap(rows, _reason(measurement, summary, estimate, rows))


def _reason(measurement: Measurement, summary: stats.Summary, estimate,
            rows: tuple[Row, ...]) -> str:
    noise = stats.point_noise(measurement, summary)
    worst = max((row for row in rows if row.metric in PHASE_OF),
                key=lambda row: abs(math.log(row.ratio)), default=rows[0])
    label = METRICS[worst.metric].short_label
    if abs(worst.ratio - 1) <= WITHIN:
        return (f"The estimate is within {WITHIN:.0%} of what was measured: the model of this "
                "machine (its measured memory speed, arithmetic and per-layer cost) explains "
                "these numbers.")
    if worst.ratio > 1 and noise.other_cpu_percent is not None and \
            noise.other_cpu_percent > stats.BUSY_OTHER_CPU_PERCENT:
        return (f"{label} took {worst.ratio:.1f}× the estimate, and other programs used "
                f"{noise.other_cpu_percent:.0f}% of the CPU meanwhile: the estimate assumes a "
                "quiet machine, so that is the biggest reason. Rerun when it is quiet.")
    terms = estimate.breakdown.get(PHASE_OF.get(worst.metric, "decode"), {})
    parts = {name: terms.get(f"{name}_s", 0.0) for name in SLOWER_BECAUSE}
    largest = max(parts, key=parts.get)
    share = format_value(worst.metric, parts[largest])
    if worst.ratio > 1:
        return (f"{label} took {worst.ratio:.1f}× the estimate. The estimate's largest part "
                f"is {largest} ({share}); most likely {SLOWER_BECAUSE[largest]}.")
    return (f"{label} took {1 / worst.ratio:.1f}× less than the estimate. The estimate's "
            f"largest part is {largest} ({share}), probably overstated here: "
            f"{FASTER_BECAUSE[largest]}.")
