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
before it is the highest load the server carries. Findings are sentences computed from the data,
and each says what the spread allows.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from lib.core.metrics import format_seconds
from lib.serving.records import (CANCELLED, FAILED, MEASURED, OK, SHORT, RequestRecord)
from lib.core.stats import Distribution

KNEE_GROWTH = 2.0          # "explodes": p90 TTFT this many times the lightest load's
PLATEAU = 1.10             # throughput that grows less than 10% between levels has levelled off
KEEPS_UP = 0.90            # an open loop achieving less than 90% of its offered rate falls behind
# Achieving less than half the offered rate is past capacity even where the times grew too
# little to show a knee (few requests a level): the window's last answer can't explain that.
FAR_BEHIND = 0.5
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
        return (f"time to first token ≤ {format_seconds(self.ttft_s)} and time per output token "
                f"≤ {format_seconds(self.tpot_s)} ({self.name})")

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
# answer when a continuous-batching server admits them at once and shares its decode instead.
KNEE_METRICS = {"ttft_s": "time to first token", "e2e_s": "end-to-end time"}


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


def findings(summaries: list[dict[str, Any]], mode: str, unit: str,
             slo: Slo | None) -> list[str]:
    """What the levels show, in plain sentences, each only as far as the data carries it."""
    said: list[str] = []
    levels = sorted(summaries, key=lambda s: s["offered"])
    measured_levels = [s for s in levels if s.get("ttft_s")]
    if len(measured_levels) >= 2:
        found = knee(measured_levels)
        said.append(_knee_sentence(found, measured_levels, mode, unit))
        said.extend(_throughput_sentences(measured_levels, unit))
    elif measured_levels:
        said.append("Only one level has numbers: add more levels to see how latency grows with "
                    "load.")
    if slo is not None:
        said.extend(_goodput_sentences(levels, unit, slo))
    for level in levels:
        if level["failed"]:
            reasons = "; ".join(f"{reason} ({count})" for reason, count
                                in level["failure_reasons"].items())
            said.append(f"At {_level(level['offered'], unit)}, {level['failed']} of "
                        f"{level['requests']} requests failed: {reasons}.")
        if level["stopped_early"]:
            count = level["stopped_early"]
            said.append(f"At {_level(level['offered'], unit)}, {count} "
                        f"{'answer' if count == 1 else 'answers'} of {level['requests']} "
                        "stopped before the asked length: the server ended "
                        f"{'it' if count == 1 else 'them'} at an end-of-text token (it ignored "
                        "the fixed length asked, or does not accept one). They are counted "
                        "with the tokens they had.")
    return said


def level_words(offered: float, unit: str) -> str:
    """'4 concurrent requests', '1 concurrent request', '0.5 requests/s', '1 request/s'."""
    if offered == 1:
        unit = unit.replace("requests", "request", 1)
    return f"{offered:g} {unit}"


_level = level_words


def _knee_sentence(found: Knee | None, levels: list[dict[str, Any]], mode: str,
                   unit: str) -> str:
    first, last = levels[0], levels[-1]
    behind = [s for s in levels if mode == "rate" and s["achieved_requests_per_s"] is not None
              and s["achieved_requests_per_s"] < FAR_BEHIND * s["offered"]]
    if found is None and behind:
        # The times did not grow clearly (too few requests for a queue to build up), but the
        # server finished fewer requests than were offered: it did not keep up, and saying it
        # did would contradict the throughput below.
        level = behind[0]
        return (f"No clear knee in the times, but at {_level(level['offered'], unit)} the server "
                f"finished only {level['achieved_requests_per_s']:.2g} requests/s of the "
                f"{level['offered']:g} offered: it was past its capacity there. With "
                f"{level['requests']} requests per level the queue had little time to grow; a "
                "larger time budget (more requests per level) shows the knee more clearly.")
    if found is None:
        low, _ = ttft_tail(first)
        high, statistic = ttft_tail(last)
        change = "did not grow" if high <= low else \
            f"grew {high / low:.1f}x, less than {KNEE_GROWTH:g}x or within the spread"
        return (f"No knee up to {_level(last['offered'], unit)}: the {statistic} time to first "
                f"token went from {format_seconds(low)} at the lightest load to "
                f"{format_seconds(high)} ({change}), so the server kept up. Try higher levels "
                "to find where it saturates.")
    after = next(s for s in levels if s["offered"] == found.saturated)
    before = next(s for s in levels if s["offered"] == found.last_ok)
    grew = f"the {found.statistic} {found.what} grows {found.growth:.1f}x " \
           f"({format_seconds(found.before_s)} at the lightest load → " \
           f"{format_seconds(found.after_s)} at {_level(found.saturated, unit)})" + \
           (" while the first token still came about as fast: the server takes new requests "
            "in at once and shares its work among them, so each whole answer slows down"
            if found.metric == "e2e_s" else "")
    behind = mode == "rate" and after["achieved_requests_per_s"] is not None \
        and after["achieved_requests_per_s"] < KEEPS_UP * after["offered"]
    more = (after["output_tokens_per_s"] or 0) / before["output_tokens_per_s"] \
        if before.get("output_tokens_per_s") else None
    if behind:
        return (f"Above {_level(found.last_ok, unit)} {grew}: the server is saturated. It "
                f"finished only {after['achieved_requests_per_s']:.2g} requests/s of the "
                f"{after['offered']:g} offered, so "
                + ("more and more answers share it, each slower than the last."
                   if found.metric == "e2e_s" else
                   "requests wait in a growing queue before it starts on them."))
    if more is not None and more < PLATEAU:
        change = (f"fell from {before['output_tokens_per_s']:.3g} to "
                  f"{after['output_tokens_per_s']:.3g} tokens/s" if more < 1 else
                  f"grew only {more:.2f}x")
        return (f"Above {_level(found.last_ok, unit)} {grew}, while the total output {change}: "
                "the server is saturated, and extra requests only wait in a queue.")
    growth = f", while the total output still grew {more:.1f}x" if more is not None else ""
    return (f"Above {_level(found.last_ok, unit)} {grew}{growth}: requests now wait for each "
            "other. The server shares its time among them, close to what it can carry; "
            "more load will mostly add waiting.")


def _throughput_sentences(levels: list[dict[str, Any]], unit: str) -> list[str]:
    tokens = [(s["offered"], s["output_tokens_per_s"]) for s in levels
              if s["output_tokens_per_s"] is not None]
    if len(tokens) < 2:
        return []
    best_offered, best = max(tokens, key=lambda item: item[1])
    first_offered, first = tokens[0]
    last_offered, last = tokens[-1]
    if best > first * PLATEAU:
        said = [f"Total output rose from {first:.3g} tokens/s at "
                f"{_level(first_offered, unit)} to {best:.3g} tokens/s at "
                f"{_level(best_offered, unit)} ({best / first:.1f}x)."]
    elif last < first / PLATEAU:
        said = [f"Total output fell from {first:.3g} tokens/s at {_level(first_offered, unit)} "
                f"to {last:.3g} tokens/s at {_level(last_offered, unit)}: more load made this "
                "server produce less, not more."]
    else:
        said = [f"Total output stayed near {first:.3g} tokens/s from "
                f"{_level(first_offered, unit)} on: more load did not make the server produce "
                "more."]
    later = [(offered, value) for offered, value in tokens if offered > best_offered]
    if best > first * PLATEAU and later and best > 0:
        if later[-1][1] < best / PLATEAU:
            said.append(f"Past {_level(best_offered, unit)} the total output fell, to "
                        f"{later[-1][1]:.3g} tokens/s at {_level(later[-1][0], unit)}: beyond "
                        "its capacity the server produced less, and extra requests only wait "
                        "longer.")
        elif all(value < best * PLATEAU for _, value in later):
            said.append(f"Past {_level(best_offered, unit)} the total output stops growing: "
                        "the server is at its capacity, and extra requests only wait longer.")
    users = [(s["offered"], s["output_tokens_per_s_per_user"]) for s in levels
             if s["output_tokens_per_s_per_user"]]
    if len(users) >= 2 and users[-1][1] < users[0][1] / PLATEAU:
        said.append(f"Each user's answer streamed at {users[0][1]:.3g} tokens/s at "
                    f"{_level(users[0][0], unit)} and {users[-1][1]:.3g} tokens/s at "
                    f"{_level(users[-1][0], unit)}: the server shares its speed among the "
                    "requests it runs together (the trade-off curve shows it).")
    return said


def _goodput_sentences(levels: list[dict[str, Any]], unit: str, slo: Slo) -> list[str]:
    rated = [s for s in levels if s["goodput_requests_per_s"] is not None]
    if not rated:
        return []
    best = max(rated, key=lambda s: s["goodput_requests_per_s"])
    if best["goodput_requests_per_s"] == 0:
        return [f"No request met the targets ({slo.words()}) at any level."]
    said = f"Goodput, requests per second that met {slo.words()}, peaks at " \
           f"{best['goodput_requests_per_s']:.2g} at {_level(best['offered'], unit)} " \
           f"({best['good_fraction']:.0%} of its requests met them)"
    worse = [s for s in rated if s["offered"] > best["offered"]]
    if worse:
        said += f"; at {_level(worse[-1]['offered'], unit)} {worse[-1]['good_fraction']:.0%} did"
    return [said + "."]
