"""Per-level statistics of a load run, goodput against latency targets, and the saturation knee.

Everything is derived from the raw `RequestRecord`s, measured requests only (warm-up and
cool-down left out). The metric names are `run`'s (`ttft_s`, `tpot_s`, `e2e_s`, `itl_s`), each a
distribution whose tail percentiles are given only with enough samples (`lib.core.stats`).

Rates are counted over the measuring window: from the first measured request's send to the last
measured request's end. Goodput (as in DistServe and vLLM's `--goodput`) counts the measured
requests that met both targets: time to first token and time per output token.

The knee is where the server stops keeping up: the first level whose p90 time to first token
(its median while p90 needs more samples) is at least `KNEE_GROWTH` times the lightest level's
and whose median lies above the lightest level's p90 (both clearly apart, not noise); the level
before it is the highest load the server carries. The findings, said in words from these
numbers, are `lib.serving.findings`'.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from lib.core.metrics import METRICS, format_seconds
from lib.serving.records import (CANCELLED, FAILED, MEASURED, OK, SHORT, RequestRecord)
from lib.core.stats import Distribution

KNEE_GROWTH = 2.0          # "explodes": p90 TTFT this many times the lightest load's
LATENCY_METRICS = ("ttft_s", "tpot_s", "itl_s", "e2e_s")


@dataclass(frozen=True)
class Slo:
    """Latency targets a request must meet to count as good."""
    ttft_s: float
    tpot_s: float
    name: str = "your own targets"

    def met(self, record: RequestRecord) -> bool:
        if record.status not in (OK, SHORT) or record.ttft_s is None:
            return False
        tpot = record.tpot_s
        return record.ttft_s <= self.ttft_s and (tpot is None or tpot <= self.tpot_s)

    def words(self) -> str:
        return (f"{METRICS['ttft_s'].words} ≤ {format_seconds(self.ttft_s)} and "
                f"{METRICS['tpot_s'].words} ≤ {format_seconds(self.tpot_s)} ({self.name})")

    def to_dict(self) -> dict[str, Any]:
        return {"ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "name": self.name}


# MLPerf Inference's per-request latency limits for its LLM benchmarks (loadgen mlperf.conf:
# ttft_latency / tpot_latency). MLPerf holds them at the 99th percentile; goodput here counts each
# request against them.
SLO_PRESETS = {
    "mlperf-server": Slo(2.0, 0.200, "MLPerf server, Llama 2 70B: 2 s / 200 ms"),
    "mlperf-interactive": Slo(0.450, 0.040, "MLPerf interactive, Llama 2 70B: 450 ms / 40 ms"),
    "mlperf-8b-server": Slo(2.0, 0.100, "MLPerf server, Llama 3.1 8B: 2 s / 100 ms"),
    "mlperf-8b-interactive": Slo(0.5, 0.030,
                                 "MLPerf interactive, Llama 3.1 8B: 500 ms / 30 ms"),
}
DEFAULT_SLO = "mlperf-server"


def distribution(values: Iterable[float], requests: int | None = None) -> dict[str, Any] | None:
    """`Distribution.to_dict()` plus `p50` (the median), or None for no values. `requests`:
    how many requests the values are pooled from (the gaps between tokens), which gates the
    tail percentiles too."""
    values = tuple(values)
    if not values:
        return None
    summary = Distribution(values, requests=requests).to_dict()
    summary["p50"] = summary["median"]
    return summary


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    return [r for r in records if r.phase == MEASURED]


def window(records: list[RequestRecord]) -> tuple[float, float] | None:
    """(first measured send, last measured end) or None when nothing measured ended."""
    ends = [r.end_s for r in records if r.end_s is not None]
    if not records or not ends:
        return None
    return min(r.sent_s for r in records), max(ends)


def level_summary(offered: float, records: Iterable[RequestRecord],
                  slo: Slo | None) -> dict[str, Any]:
    """One level's metrics, named as `run` names them, plus the load-only ones."""
    mine = measured(records)
    done = [r for r in mine if r.status in (OK, SHORT)]
    span = window(mine)
    seconds = (span[1] - span[0]) if span else 0.0
    summary: dict[str, Any] = {
        "offered": offered,
        "requests": len(mine),
        "completed": len(done),
        "failed": sum(r.status == FAILED for r in mine),
        "stopped_early": sum(r.status == SHORT for r in mine),
        "cancelled": sum(r.status == CANCELLED for r in mine),
        "window_s": seconds,
        "ttft_s": distribution(r.ttft_s for r in done if r.ttft_s is not None),
        "tpot_s": distribution(r.tpot_s for r in done if r.tpot_s is not None),
        "itl_s": distribution((gap for r in done for gap in r.itl_s()), requests=len(done)),
        "e2e_s": distribution(r.e2e_s for r in done if r.e2e_s is not None),
        "queue_s": distribution(r.queue_s for r in mine if r.queue_s is not None),
    }
    rate = (lambda count: count / seconds) if seconds > 0 else (lambda count: None)
    summary["achieved_requests_per_s"] = rate(len(done))
    summary["output_tokens_per_s"] = rate(sum(r.output_tokens for r in done))
    speeds = [1.0 / r.tpot_s for r in done if r.tpot_s]
    summary["output_tokens_per_s_per_user"] = statistics.median(speeds) if speeds else None
    # Little's law: the mean number of requests in flight over the window.
    summary["mean_in_flight"] = (sum(r.e2e_s for r in done if r.e2e_s is not None) / seconds
                                 if seconds > 0 else None)
    if slo is not None:
        good = sum(slo.met(r) for r in mine)
        summary["goodput_requests_per_s"] = rate(good)
        summary["good_fraction"] = good / len(mine) if mine else None
    else:
        summary["goodput_requests_per_s"] = summary["good_fraction"] = None
    summary["failure_reasons"] = _reasons(r for r in mine if r.status in (FAILED, SHORT))
    return summary


def _reasons(records: Iterable[RequestRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.reason or record.status] = counts.get(record.reason or record.status, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:5])


def ttft_tail(summary: dict[str, Any], metric: str = "ttft_s") -> tuple[float, str] | None:
    """The level's p90 time to first token (or `metric`), or its median (with the label) when
    p90 needs more samples than the level has."""
    ttft = summary.get(metric)
    if not ttft:
        return None
    if ttft.get("p90") is not None:
        return ttft["p90"], "p90"
    return ttft["median"], "median"


# What grows past the knee: the wait for the first token when requests queue; the whole
# answer when a continuous-batching server admits them at once and shares its decode instead
# (said "end-to-end time" here: the whole answer's time, as a load test's findings say it).
KNEE_METRICS = {"ttft_s": METRICS["ttft_s"].words, "e2e_s": "end-to-end time"}


@dataclass(frozen=True)
class Knee:
    """Where the server stopped keeping up."""
    last_ok: float             # the highest level it carried
    saturated: float           # the first level past the knee
    growth: float              # its TTFT statistic over the lightest level's
    statistic: str             # "p90" or "median"
    before_s: float
    after_s: float
    metric: str = "ttft_s"     # what grew: "ttft_s", or "e2e_s" where the first token didn't

    @property
    def what(self) -> str:
        return KNEE_METRICS[self.metric]

    def to_dict(self) -> dict[str, Any]:
        return {"last_ok": self.last_ok, "saturated": self.saturated, "growth": self.growth,
                "statistic": self.statistic, "before_s": self.before_s, "after_s": self.after_s,
                "metric": self.metric}


def knee(summaries: list[dict[str, Any]]) -> Knee | None:
    """The first level whose tail time to first token (or, where that stays flat, end-to-end
    time) is `KNEE_GROWTH` times the lightest level's and clearly apart from it (its median
    above the lightest level's p90, or max while p90 needs more samples). None when no level
    is, or fewer than two levels have numbers."""
    levels = sorted((s for s in summaries if s.get("ttft_s")), key=lambda s: s["offered"])
    if len(levels) < 2:
        return None
    previous = levels[0]
    for level in levels[1:]:
        for metric in KNEE_METRICS:
            found = _grown(levels[0], level, metric)
            if found is not None:
                return Knee(previous["offered"], level["offered"], *found, metric=metric)
        previous = level
    return None


def _grown(base: dict[str, Any], level: dict[str, Any],
           metric: str) -> tuple[float, str, float, float] | None:
    """(growth, statistic, before, after) where `level`'s `metric` grew clearly past `base`'s."""
    if not base.get(metric) or not level.get(metric):
        return None
    base_value, statistic = ttft_tail(base, metric)
    value, level_statistic = ttft_tail(level, metric)
    base_top = base[metric]["p90"] if base[metric]["p90"] is not None else base[metric]["max"]
    # Compare like with like: both p90, else both medians.
    ours = value if level_statistic == statistic else level[metric]["median"]
    theirs = base_value if level_statistic == statistic else base[metric]["median"]
    if theirs > 0 and ours / theirs >= KNEE_GROWTH and level[metric]["median"] > base_top:
        return ours / theirs, statistic if level_statistic == statistic else "median", \
            theirs, ours
    return None
