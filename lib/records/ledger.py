"""How good the estimates are: every saved live run beside what the estimator predicted for it.

For each measured run in the history, and each measured point of a saved sweep, `build` asks
`lib.estimate.estimator.estimate_on` what that run should have taken on the machine it ran on (the
ceilings recorded with it, `environment["ceilings"]`: a run imported from another machine is
judged against that machine, never against this one) and compares it with the measured medians:

    error = estimate / measured - 1        (below 0: the estimate was too fast, too optimistic)

for TTFT, TPOT and the end-to-end latency. `Ledger.overall(metric)` and
`Ledger.by_factor(name)` summarize the errors as the median |error| (the typical miss), the
median signed error (the bias) and their count: over everything, or grouped by each value of a
factor of `lib.measure.factors.FACTORS`. Each also carries the measurements' own run-to-run spread, so a
miss no larger than the noise is said to be so, and fewer than MIN_RUNS_TO_JUDGE runs are said
to be too few to judge. Estimates in the history are never counted (they are what is judged,
not a measurement); runs saved without ceilings, entries that can't be opened and models the
estimator can no longer read are left out and counted, each with its reason (`SKIPPED`).

Judging an entry means reading its raw data, so each entry's verdict is kept for the life of the
process, keyed by what a saved entry can change (its id, time, status and number of points): a
History of hundreds of entries pays once per new entry, not on every click. No Streamlit here.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from lib.records import documents
from lib.machine.capability import Ceilings
from lib.core.errors import ExplorerError
from lib.core.metrics import METRICS
from lib.core.results import Measurement
from lib.core.spec import RunSpec
from lib.core.stats import Summary, summarize
from lib.records.store import DamagedEntryError, Store
from lib.measure.factors import FACTORS

JUDGED_METRICS = ("ttft_s", "tpot_s", "e2e_s")
# Below this many runs a median error says more about the runs picked than about the estimator.
MIN_RUNS_TO_JUDGE = 5
# A bias this small (either way) is no lean at all.
NO_BIAS = 0.005
# Verdicts kept per process; past this many the cache starts again (a History never holds
# that many, but a long-lived server with many databases must not grow without end).
MAX_CACHED_ENTRIES = 20_000

NO_CEILINGS, DAMAGED, NOT_MODELLED = "no_ceilings", "damaged", "not_modelled"
SKIPPED = {
    NO_CEILINGS: "saved without the ceilings of the machine they ran on (saved before ceilings "
                 "were recorded with every run, or by an older version): run them again to "
                 "include them",
    DAMAGED: "can't be opened (edited by hand, or saved by another version)",
    NOT_MODELLED: "the estimator can't model them (their model's configuration can no longer "
                  "be read here)",
}
# How the page names each metric in a sentence: the registry's words, but the time per output
# token is "the time per token", as the run pages' findings say it (lib.views.insights).
METRIC_WORDS = {"ttft_s": f"the {METRICS['ttft_s'].words}", "tpot_s": "the time per token",
                "e2e_s": f"the {METRICS['e2e_s'].words}"}


@dataclass(frozen=True)
class Judged:
    """One measured run (or sweep point) beside the estimate for the same spec on its machine."""
    entry_id: int
    spec: RunSpec
    measured: dict[str, float] = field(hash=False)     # metric -> measured median
    estimated: dict[str, float] = field(hash=False)    # metric -> the estimate
    spread: dict[str, float] = field(hash=False)       # metric -> the run's relative half-spread

    @property
    def errors(self) -> dict[str, float]:
        """metric -> estimate / measured - 1, for the metrics both have."""
        return {name: self.estimated[name] / self.measured[name] - 1 for name in JUDGED_METRICS
                if name in self.estimated and self.measured.get(name)}


@dataclass(frozen=True)
class EntryVerdict:
    """What one saved entry adds to the ledger."""
    judged: tuple[Judged, ...] = ()
    skipped: tuple[str, ...] = ()        # one SKIPPED reason per run or point left out
    estimates: int = 0                   # estimated runs and points: never judged


@dataclass(frozen=True)
class ErrorStats:
    """The errors of one metric over some runs."""
    metric: str
    count: int
    median_abs_error: float              # the typical miss, as a fraction (0.14: 14%)
    bias: float                          # median signed error: below 0, the estimate too fast
    spread: float                        # the runs' own median relative half-spread

    @property
    def too_few(self) -> bool:
        return self.count < MIN_RUNS_TO_JUDGE

    @property
    def within_noise(self) -> bool:
        """The typical miss is no larger than the measurements' own run-to-run spread."""
        return self.median_abs_error <= self.spread

    def bias_words(self) -> str:
        """'6% too fast', '3.5x too slow' (latencies: too fast = shorter than measured)."""
        if abs(self.bias) < NO_BIAS:
            return "no lean either way"
        if self.bias >= 1:
            return f"{1 + self.bias:.1f}x too slow"
        return f"{abs(self.bias):.0%} too {'fast' if self.bias < 0 else 'slow'}"


def error_stats(metric: str, judged: list[Judged]) -> ErrorStats | None:
    """`metric`'s errors over these runs; None when none of them has it."""
    having = [j for j in judged if metric in j.errors]
    if not having:
        return None
    errors = [j.errors[metric] for j in having]
    return ErrorStats(metric, len(errors), statistics.median(abs(e) for e in errors),
                      statistics.median(errors),
                      statistics.median(j.spread.get(metric, 0.0) for j in having))


@dataclass(frozen=True)
class Ledger:
    judged: tuple[Judged, ...]
    skipped: dict[str, int]               # SKIPPED reason -> runs and points left out
    estimates: int                        # estimated runs and points, never judged

    def overall(self, metric: str) -> ErrorStats | None:
        return error_stats(metric, list(self.judged))

    def by_factor(self, factor: str) -> list[tuple[Any, dict[str, ErrorStats]]]:
        """(value, metric -> ErrorStats) for each value the runs had of the factor, in order
        (numbers ascending, words alphabetically)."""
        spec_field = FACTORS[factor].field
        groups: dict[Any, list[Judged]] = {}
        for judged in self.judged:
            groups.setdefault(getattr(judged.spec, spec_field), []).append(judged)
        values = sorted(groups, key=None if FACTORS[factor].numeric else str)
        return [(value, {metric: stats for metric in JUDGED_METRICS
                         if (stats := error_stats(metric, groups[value])) is not None})
                for value in values]

    def factor_rows(self, factor: str) -> list[dict[str, Any]]:
        """The per-factor table as shown: one row per value of the factor."""
        rows = []
        for value, per_metric in self.by_factor(factor):
            count = max((s.count for s in per_metric.values()), default=0)
            row: dict[str, Any] = {FACTORS[factor].title: str(value), "runs": count}
            for metric in JUDGED_METRICS:
                stats = per_metric.get(metric)
                short = METRICS[metric].short_label
                row[f"{short} off by (median)"] = \
                    f"{stats.median_abs_error:.0%}" if stats else "–"
                row[f"{short} tends to be"] = stats.bias_words() if stats else "–"
            row["verdict"] = "too few to judge" if count < MIN_RUNS_TO_JUDGE else (
                "within the noise" if all(s.within_noise for s in per_metric.values())
                else "")
            rows.append(row)
        return rows

    def sentences(self) -> list[str]:
        """The overall figures in plain words, one sentence per metric, then what is left out."""
        said = [sentence(stats) for metric in JUDGED_METRICS
                if (stats := self.overall(metric)) is not None]
        if not self.judged:
            said.append("No saved live run can be judged yet: measure a run on the Playground "
                        "(or a sweep on Explore factors), and its estimate is compared here.")
        said += [f"{count} {'run or sweep point' if count == 1 else 'runs and sweep points'} "
                 f"left out: {words}." for reason, words in SKIPPED.items()
                 if (count := self.skipped.get(reason))]
        if self.estimates:
            said.append(f"{self.estimates} estimate{'s are' if self.estimates != 1 else ' is'} "
                        "never in it: an estimate is a prediction, not a measurement.")
        return said


def sentence(stats: ErrorStats) -> str:
    """E.g. 'Over 37 saved runs, the estimate of the time per token was off by 14% in the
    middle case (it tends to be 6% too fast).'"""
    runs = f"{stats.count} saved run{'s' if stats.count != 1 else ''}"
    miss = f"off by {stats.median_abs_error:.0%} in the middle case"
    lean = ("with no lean either way" if abs(stats.bias) < NO_BIAS
            else f"it tends to be {stats.bias_words()}")
    what = f"the estimate of {METRIC_WORDS[stats.metric]}"
    if stats.too_few:
        return (f"Only {runs}: too few to judge {what} ({MIN_RUNS_TO_JUDGE} or more are "
                f"needed). So far it was {miss} ({lean}).")
    said = f"Over {runs}, {what} was {miss} ({lean})."
    if stats.within_noise:
        said += (f" That is within the measurements' own run-to-run spread (±{stats.spread:.0%}):"
                 " these runs can't tell a better estimate from this one.")
    return said


# --- judging the saved entries ----------------------------------------------------------------

_VERDICTS: dict[tuple, EntryVerdict] = {}


def build(store: Store, entries: list[dict[str, Any]]) -> Ledger:
    """The ledger over these entries (`Store.list`'s, so a classroom visitor's ledger holds what
    they can see). StoreError when the history can't be read; a damaged entry is only left
    out."""
    judged: list[Judged] = []
    skipped: dict[str, int] = {}
    estimates = 0
    for entry in entries:
        verdict = _entry_verdict(store, entry)
        judged += verdict.judged
        for reason in verdict.skipped:
            skipped[reason] = skipped.get(reason, 0) + 1
        estimates += verdict.estimates
    return Ledger(tuple(judged), skipped, estimates)


def _entry_verdict(store: Store, entry: dict[str, Any]) -> EntryVerdict:
    key = (str(store.path), entry["id"], entry["created_at"], entry["status"], entry["points"])
    if key not in _VERDICTS:
        if len(_VERDICTS) >= MAX_CACHED_ENTRIES:
            _VERDICTS.clear()
        _VERDICTS[key] = judge_entry(store, entry["id"])
    return _VERDICTS[key]


def judge_entry(store: Store, entry_id: int) -> EntryVerdict:
    """One saved entry: its measured runs (or points) judged, the others counted."""
    try:
        opened = documents.open_entry(store.export(entry_id), entry_id)
    except DamagedEntryError:
        return EntryVerdict(skipped=(DAMAGED,))
    if opened.kind == "load":
        return EntryVerdict()        # a server under load: the estimator predicts no queue
    runs = [(opened.measurement, opened.summary)] if opened.kind == "run" else \
        [(point.measurement, point.summary) for point in opened.sweep.points if point.measured]
    judged, skipped, estimates = [], [], 0
    for measurement, summary in runs:
        if not measurement.measured:
            estimates += 1
            continue
        outcome = judge(measurement, summary, entry_id)
        if isinstance(outcome, Judged):
            judged.append(outcome)
        else:
            skipped.append(outcome)
    return EntryVerdict(tuple(judged), tuple(skipped), estimates)


def judge(measurement: Measurement, summary: Summary | None = None,
          entry_id: int = 0) -> Judged | str:
    """A measured run beside its estimate, or the SKIPPED reason it can't be. `summary`:
    the measurement's (`lib.core.stats.summarize`), when already at hand."""
    from lib.estimate import estimator

    environment = measurement.environment or {}
    try:
        ceilings = Ceilings.from_dict(environment.get("ceilings"))
    except ValueError:
        return NO_CEILINGS
    memory_bytes = environment.get("gpu_memory_bytes") if ceilings.device == "cuda" \
        else environment.get("total_memory_bytes")
    try:
        estimate = estimator.estimate_on(
            measurement.spec, ceilings,
            float(memory_bytes) if isinstance(memory_bytes, (int, float)) else 0.0)
    except (ExplorerError, OSError, ValueError):
        return NOT_MODELLED
    summary = summary or summarize(measurement)
    measured, spread = {}, {}
    for metric in JUDGED_METRICS:
        dist = summary.metrics.get(metric)
        if dist is None or not dist.median:
            continue
        band = dist.band()
        measured[metric] = dist.median
        spread[metric] = (band.high - band.low) / (2 * dist.median)
    estimated = {m: estimate.summary[m] for m in JUDGED_METRICS if m in estimate.summary}
    return Judged(entry_id, measurement.spec, measured, estimated, spread)
