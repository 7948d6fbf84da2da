"""Metrics, percentiles and quality warnings, all derived from a Measurement's raw timestamps.

Metric names follow docs/MEASURING.md everywhere (engine, tables, charts, exports), with the unit in the
name. Per timed repetition (a batch of `batch_size` identical requests that run together):
    ttft_s               first token time - start (includes prefill)
    e2e_s                last token time - start
    tpot_s               (e2e - ttft) / (new_tokens - 1)          [absent when new_tokens == 1]
    decode_tokens_per_s  batch * (new_tokens - 1) / (e2e - ttft)  [absent when new_tokens == 1]
    total_tokens_per_s   batch * (prompt_tokens + new_tokens) / e2e
    requests_per_s       batch / e2e
    peak_memory_bytes    peak memory of the process (CPU) or device (CUDA) during the repetition
    run_memory_bytes     how much of that peak the repetition added to what was in use before
Inter-token latencies (`itl_s`) are every gap between consecutive tokens of every repetition.
An encoder writes no tokens: its e2e_s is one forward pass, total_tokens_per_s counts the prompt
tokens only, and TTFT/TPOT/decode throughput don't apply.

Percentiles use linear interpolation between closest ranks (numpy's default). A percentile is
only reported when there are enough samples for it to mean something (`MIN_SAMPLES`). An
estimate (Provenance.kind "estimated") is one computed repetition, not a sample: its
distributions report the value and n = 1, never a percentile, a quartile or a spread.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

from lib.core.metrics import METRICS
from lib.core.results import Measurement, Repetition

# The percentile gate, the same for every page, chart and export: the p-th percentile needs about
# 1/(1-p) samples before even one sample lies above it (and p10 as many as p90, its mirror).
# Below that, a spread is shown as the range of the samples (min to max), labelled as such.
MIN_SAMPLES = {10: 10, 90: 10, 95: 20, 99: 100}
# Samples pooled from a few requests (every gap between tokens of 10 requests) are not that many
# independent samples: a slow request makes all its gaps slow together. So a distribution that
# knows its `requests` gates its percentiles by them too, with the same numbers: a p99 of the
# gaps needs 100 requests, as a p99 of the requests' own latencies does.
TAIL_PERCENTILES = (90, 95, 99)
# Interquartile range over median above this: the run was noisy (hyperfine and
# torch.utils.benchmark use the same kind of threshold).
NOISY_RELATIVE_IQR = 0.10
# Other processes used more than this share of the machine's CPU while a run was timed: its
# numbers are doubtful however tight they look (they are slow together).
BUSY_OTHER_CPU_PERCENT = 25.0
# With fewer repetitions than this the median itself is shaky.
FEW_REPETITIONS = 3

REPETITION_METRICS = ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "total_tokens_per_s",
                      "requests_per_s", "peak_memory_bytes", "run_memory_bytes")


def percentile(values: Sequence[float], q: float) -> float:
    """q in [0, 100], linear interpolation (numpy.percentile's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Distribution:
    values: tuple[float, ...]
    estimated: bool = False          # computed by a model of the hardware, not measured
    requests: int | None = None      # the requests the values are pooled from (ITL); None: each
                                     # value is its own request

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property
    def ordered(self) -> tuple[float, ...]:
        """Sorted once: each percentile sorts its input, and an already sorted one takes linear
        time (a 1000 x 512-token run has half a million inter-token latencies)."""
        return tuple(sorted(self.values))

    @cached_property
    def median(self) -> float:
        return percentile(self.ordered, 50)

    @cached_property
    def iqr(self) -> float:
        return percentile(self.ordered, 75) - percentile(self.ordered, 25)

    @property
    def relative_iqr(self) -> float:
        return self.iqr / self.median if self.median else 0.0

    def percentile(self, q: float) -> float | None:
        """None when there are too few samples for `q` to mean anything (or none at all:
        an estimate)."""
        if self.needs(q) is not None:
            return None
        return percentile(self.ordered, q)

    def needs(self, q: float) -> str | None:
        """Why the q-th percentile is not given ("n ≥ 100", "100 requests (has 10)"), or None
        when it is."""
        least = MIN_SAMPLES.get(int(q), 1)
        if self.estimated:
            return "a measurement"
        if self.n < least:
            return f"n ≥ {least}"
        if self.requests is not None and self.requests < least:
            return f"{least} requests (has {self.requests})"
        return None

    def band(self) -> "Band":
        """The spread to draw around the median: p10-p90 with enough samples, else the range."""
        if self.estimated:
            return Band(self.median, self.median, "estimate")
        low, high = self.percentile(10), self.percentile(90)
        if low is not None and high is not None:
            return Band(low, high, "p10–p90")
        return Band(min(self.values), max(self.values), "range")

    def to_dict(self) -> dict[str, Any]:
        if self.estimated:
            return {"median": self.median, "mean": self.median, "min": self.median,
                    "max": self.median, "p10": None, "p25": None, "p75": None, "p90": None,
                    "p95": None, "p99": None, "iqr": None, "n": self.n}
        return {
            "median": self.median, "mean": statistics.fmean(self.values),
            "min": min(self.values), "max": max(self.values),
            "p10": self.percentile(10), "p25": percentile(self.ordered, 25),
            "p75": percentile(self.ordered, 75),
            "p90": self.percentile(90), "p95": self.percentile(95), "p99": self.percentile(99),
            "iqr": self.iqr, "n": self.n,
            **({"requests": self.requests} if self.requests is not None else {}),
        }


@dataclass(frozen=True)
class Band:
    """A spread around a median: `kind` is "p10–p90", or "range" (min-max) with few samples,
    or "estimate" (no spread: low = high = the estimate)."""
    low: float
    high: float
    kind: str


@dataclass(frozen=True)
class QualityWarning:
    code: str        # stable identifier, e.g. "noisy"
    message: str     # what is wrong, with the numbers
    hint: str        # what to do about it
    severity: str = "warning"   # "warning": results are doubtful; "note": a limit worth knowing


def repetition_metrics(rep: Repetition, batch_size: int, prompt_tokens: int) -> dict[str, float]:
    if not rep.token_times_s:          # an encoder: one forward pass, no generated tokens
        e2e = rep.end_s - rep.start_s
        metrics = {"e2e_s": e2e, "total_tokens_per_s": batch_size * prompt_tokens / e2e,
                   "requests_per_s": batch_size / e2e}
        if rep.peak_memory_bytes is not None:
            metrics["peak_memory_bytes"] = rep.peak_memory_bytes
        return metrics
    new_tokens = len(rep.token_times_s)
    ttft = rep.token_times_s[0] - rep.start_s
    e2e = rep.token_times_s[-1] - rep.start_s
    metrics = {
        "ttft_s": ttft, "e2e_s": e2e,
        "total_tokens_per_s": batch_size * (prompt_tokens + new_tokens) / e2e,
        "requests_per_s": batch_size / e2e,
    }
    if new_tokens > 1:
        metrics["tpot_s"] = (e2e - ttft) / (new_tokens - 1)
        metrics["decode_tokens_per_s"] = batch_size * (new_tokens - 1) / (e2e - ttft)
    if rep.peak_memory_bytes is not None:
        metrics["peak_memory_bytes"] = rep.peak_memory_bytes
        if rep.start_memory_bytes is not None:
            metrics["run_memory_bytes"] = max(rep.peak_memory_bytes - rep.start_memory_bytes, 0)
    return metrics


def inter_token_latencies(rep: Repetition) -> list[float]:
    times = rep.token_times_s
    return [b - a for a, b in zip(times, times[1:])]


@dataclass(frozen=True)
class Summary:
    per_repetition: tuple[dict[str, float], ...]
    metrics: dict[str, Distribution]       # REPETITION_METRICS present in the data, plus itl_s
    warnings: tuple[QualityWarning, ...]

    def to_dict(self) -> dict[str, Any]:
        return {name: dist.to_dict() for name, dist in self.metrics.items()}


def summarize(measurement: Measurement) -> Summary:
    spec = measurement.spec
    per_rep = tuple(repetition_metrics(rep, spec.batch_size, spec.prompt_tokens)
                    for rep in measurement.repetitions)
    estimated = not measurement.measured
    metrics = {name: Distribution(tuple(r[name] for r in per_rep), estimated)
               for name in REPETITION_METRICS if per_rep and name in per_rep[0]}
    itl = [gap for rep in measurement.repetitions for gap in inter_token_latencies(rep)]
    if itl:
        # An estimate's gaps are all one TPOT: its one value, not a distribution of them.
        # The sequences of one batch share every step, so its independent requests are the
        # repetitions, not repetitions x batch.
        metrics["itl_s"] = Distribution(tuple(itl[:1]) if estimated else tuple(itl), estimated,
                                        requests=len(measurement.repetitions))
    return Summary(per_rep, metrics, tuple(quality_warnings(metrics, measurement)))


NOISE_METRICS = {name: METRICS[name].short_label for name in ("ttft_s", "tpot_s", "e2e_s")}


@dataclass(frozen=True)
class Noise:
    """Whether a result is doubtful, and why: its spread, or other programs using the CPU."""
    noisy: bool
    reasons: tuple[str, ...]
    other_cpu_percent: float | None        # median over the repetitions; None if not recorded
    load_average: float | None


def point_noise(measurement: Measurement, summary: "Summary") -> Noise:
    """The one noise rule, for the Playground's warning and every sweep point and chart."""
    return noise(measurement.repetitions, summary.metrics)


def repetitions_noise(repetitions: Sequence[Repetition], batch_size: int,
                      prompt_tokens: int) -> Noise:
    """`point_noise` for repetitions still being collected (a sweep deciding whether to go on)."""
    per_rep = [repetition_metrics(rep, batch_size, prompt_tokens) for rep in repetitions]
    metrics = {name: Distribution(tuple(r[name] for r in per_rep))
               for name in NOISE_METRICS if per_rep and name in per_rep[0]}
    return noise(repetitions, metrics)


def noise(repetitions: Sequence[Repetition], metrics: dict[str, Distribution]) -> Noise:
    spread = [f"{label} {metrics[name].relative_iqr:.1%}" for name, label in NOISE_METRICS.items()
              if name in metrics and metrics[name].n >= 2
              and metrics[name].relative_iqr > NOISY_RELATIVE_IQR]
    reasons = []
    if spread:
        reasons.append(f"the middle half of the repetitions spans more than "
                       f"{NOISY_RELATIVE_IQR:.0%} of the median ({', '.join(spread)})")
    other = [rep.other_cpu_percent for rep in repetitions if rep.other_cpu_percent is not None]
    loads = [rep.load_average for rep in repetitions if rep.load_average is not None]
    other_cpu = percentile(other, 50) if other else None
    if other_cpu is not None and other_cpu > BUSY_OTHER_CPU_PERCENT:
        reasons.append(f"other programs used {other_cpu:.0f}% of this machine's CPU while it "
                       "was measured")
    return Noise(bool(reasons), tuple(reasons), other_cpu,
                 percentile(loads, 50) if loads else None)


@dataclass(frozen=True)
class MemoryBreakdown:
    """The peak memory of a run, split: weights (summed over the model's tensors), the KV cache
    (summed over the cache's tensors at the end of a call), and the rest (the Python
    interpreter and libraries, activations, allocator slack). On CPU the peak is the worker
    process's own high-water mark, so other models and the web server are not in it."""
    peak_bytes: int
    weights_bytes: int | None
    kv_cache_bytes: int | None
    other_bytes: int | None
    estimate_bytes: int | None        # the guard's estimate before the run (an upper bound)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def memory_breakdown(measurement: Measurement) -> MemoryBreakdown | None:
    peaks = [rep.peak_memory_bytes for rep in measurement.repetitions
             if rep.peak_memory_bytes is not None]
    if not peaks:
        return None
    peak = int(percentile(peaks, 50))          # the summary's median, so the two agree
    kv = [rep.kv_cache_bytes for rep in measurement.repetitions if rep.kv_cache_bytes is not None]
    weights = measurement.weights_bytes
    kv_bytes = max(kv) if kv else None
    other = None
    if weights is not None:
        other = max(peak - weights - (kv_bytes or 0), 0)
    return MemoryBreakdown(peak, weights, kv_bytes, other, measurement.memory_estimate_bytes)


def quality_warnings(metrics: dict[str, Distribution], measurement: Measurement) -> list[QualityWarning]:
    if not measurement.measured:
        # Repetitions, noise, warm-up and percentiles are about measuring: an estimate has one
        # note instead, saying what it is.
        return [QualityWarning(
            "estimated", "Estimated, not measured: these numbers come from a model of the "
            "hardware (its bandwidth, compute and the software stack's overheads), not a clock.",
            "Treat them as a prediction; measure on the real hardware to check.",
            severity="note")]
    warnings = []
    n = len(measurement.repetitions)
    if n < FEW_REPETITIONS:
        warnings.append(QualityWarning(
            "few_repetitions", f"Only {n} repetition{'s' if n != 1 else ''} were timed.",
            f"Use at least {FEW_REPETITIONS} repetitions (5 or more is better) so one slow run "
            "cannot move the median."))
    doubt = noise(measurement.repetitions, metrics)
    if doubt.noisy:
        warnings.append(QualityWarning(
            "noisy", f"Noisy run: {'; and '.join(doubt.reasons)} (n={n}).",
            "Something else is probably using the machine. Close other programs, use fewer CPU "
            "threads than cores, or add repetitions; then run again."))
    for label, dist in (("Per-request metrics (TTFT, TPOT, e2e)", metrics.get("e2e_s")),
                        (METRICS["itl_s"].plain_label, metrics.get("itl_s"))):
        hidden = [f"p{q}" for q in TAIL_PERCENTILES if dist and dist.percentile(q) is None]
        if hidden:
            pooled = dist.requests is not None and dist.requests < dist.n
            needs = ", ".join(f"p{q} needs {MIN_SAMPLES[q]}" for q in TAIL_PERCENTILES)
            counted = f"{dist.n} samples"
            if pooled:
                counted += f" pooled from {dist.requests} requests"
                needs += (" samples and as many requests: the gaps of one request are slow or "
                          "fast together")
            warnings.append(QualityWarning(
                "too_few_for_percentile", f"{label}: {counted}, so "
                f"{' and '.join(hidden)} {'is' if len(hidden) == 1 else 'are'} not shown "
                f"({needs}).",
                "For tail latency, raise repetitions or the minimum measuring time.",
                severity="note"))
    if measurement.spec.warmup_runs == 0:
        warnings.append(QualityWarning(
            "no_warmup", "No warm-up run: the first repetition includes one-off start-up costs.",
            "Use at least one warm-up run."))
    if measurement.spec.device == "mps":
        warnings.append(QualityWarning(
            "mps_deferred_tokens", "On Apple MPS, transformers hands out each token one step "
            "late, so TTFT includes one decode step.", "Compare TPOT rather than TTFT on MPS."))
    return warnings
