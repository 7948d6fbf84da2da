"""Plain-language findings computed from a sweep's tidy rows, never canned text.

Each sentence compares measured points and states ratios with the numbers behind them, e.g.
"From batch size 1 to 16, decode throughput grew 4.4x while each token took 3.6x longer". A
ratio is only stated when the data can carry it (`lib.views.comparable`); otherwise the sentence
says the difference is within the noise instead, and a last sentence names the noisy points and
why. Noise is never sold as a finding, and when other programs took a material share of the CPU
during measured points, the first sentence says the differences can't be trusted for *why*
(`busy_caution`). The software stack gets its own findings (`lib.views.stack_insights`).

Estimated points (a hardware profile: `table.is_estimated`) are one computed value each, not
samples: no spread or noise verdict is applied to them, and every sentence that names one
says "estimated" (and "measured" for the point it is compared with), e.g. "NVIDIA H200 SXM
141GB (estimated) would write tokens 25x faster than this machine's cpu (measured)".
"""

from __future__ import annotations

from typing import Any, Sequence

from lib.core.metrics import METRICS, format_bytes, format_number
from lib.core.stacks import STACKS
from lib.core.stats import BUSY_OTHER_CPU_PERCENT
from lib.core.stacks import format_name, stack_name
from lib.measure.factors import Factor
from lib.records.table import is_estimated, is_measured
from lib.views.comparable import (NEGLIGIBLE, RERUN, cell, doubt, finding_ratio, is_noisy, ms,
                                  noise_reason)
from lib.views.stack_insights import stack_findings

ESTIMATES_ARE_NOT_SAMPLES = (
    "Estimated points come from a model of their hardware (its published figures and the "
    "software stack's overheads), not from a clock: they have no spread, and a ratio against a "
    "measured point compares a prediction with a measurement.")


def findings(table: list[dict[str, Any]], factor: Factor) -> list[str]:
    """Sentences about one factor's effect, from the measured rows of a one-factor sweep."""
    column, label = factor.column, factor.label
    measured = [row for row in table if is_measured(row)]
    sentences = []
    skipped = [row for row in table if not is_measured(row)]
    estimated = [row for row in measured if is_estimated(row)]
    caution = busy_caution(measured)
    if caution:
        sentences.append(caution)
    if len(measured) < 2:
        sentences.append(f"Fewer than two points {_have_results(measured)}, so there is "
                         "nothing to compare yet.")
    elif factor.numeric:
        sentences += _numeric(measured, factor)
    elif factor.name == "stack":
        sentences += stack_findings(measured)
    else:
        sentences += _categorical(measured, factor)
        if estimated and len(estimated) < len(measured):
            sentences += _versus(measured, factor)
    if len(measured) >= 2 and len(estimated) == len(measured):
        sentences = estimated_words(sentences)
    if estimated:
        sentences.append(ESTIMATES_ARE_NOT_SAMPLES if len(estimated) < len(measured) else
                         "Every point here is an estimate from a model of the hardware, not a "
                         "measurement: each is one computed value, with no spread and no noise.")
    noisy = [row for row in measured if is_noisy(row)]
    if noisy:
        named = "; ".join(f"{label} {row[column]} ({noise_reason(row)})" for row in noisy)
        sentences.append(f"Noisy point{'s' if len(noisy) > 1 else ''}: {named}. "
                         f"{'Their' if len(noisy) > 1 else 'Its'} numbers are doubtful.")
    for row in skipped:
        sentences.append(f"{factor.title} {factor.value_label(row[column])} could not run: "
                         f"{_first_sentence(row['skipped_reason'])}.")
    return sentences


def heatmap_findings(table: list[dict[str, Any]], factors: Sequence[Factor]) -> list[str]:
    """Sentences about a two-factor sweep: the stack's trade-offs for a stack x number format
    grid, and for any grid the cells that could not run, grouped by why."""
    measured = [row for row in table if is_measured(row)]
    caution = busy_caution(measured)
    sentences = [caution] if caution else []
    if {factor.name for factor in factors} == {"stack", "dtype"} and len(measured) >= 2:
        sentences += stack_findings(measured)
        if all(is_estimated(row) for row in measured):
            sentences = estimated_words(sentences)
    skipped = [row for row in table if not is_measured(row)]
    unrun = [row for row in skipped if {factor.name for factor in factors} >= {"stack", "dtype"}
             and row.get("stack") in STACKS and row.get("dtype") not in STACKS[row["stack"]].dtypes]
    if unrun:
        by_stack: dict[str, list[str]] = {}
        for row in unrun:
            by_stack.setdefault(stack_name(row["stack"]), []).append(format_name(row["dtype"]))
        sentences.append("Not run, since the stack doesn't run that format: " + "; ".join(
            f"{name} {', '.join(formats)}" for name, formats in by_stack.items()) + ".")
    by_reason: dict[str, list[str]] = {}
    for row in skipped:
        if row not in unrun:
            cell = ", ".join(factor.value_label(row[factor.column]) for factor in factors)
            by_reason.setdefault(_first_sentence(row["skipped_reason"]), []).append(cell)
    for reason, cells in by_reason.items():
        sentences.append(f"{'; '.join(cells)}: could not run: {reason}.")
    return sentences


def only_point_words(table: list[dict[str, Any]]) -> str:
    """What a sweep with a single point with results says instead of a curve."""
    rows = [row for row in table if is_measured(row)]
    return (f"Only one point was {_kind(rows)}, so there is no curve to draw: its numbers are "
            "in the table below.")


def _have_results(rows: list[dict[str, Any]]) -> str:
    return f"were {_kind(rows)}"


def _kind(rows: list[dict[str, Any]]) -> str:
    """'measured', or 'estimated' when every point with results is an estimate (nothing
    ran, so none was measured)."""
    return "estimated" if rows and all(is_estimated(row) for row in rows) else "measured"


def estimated_words(sentences: list[str]) -> list[str]:
    """Findings computed from estimates only, each saying so: 'Estimated: from batch size 1
    to 16, ...'. (Mixed sweeps name each point's kind instead: `_named`.)"""
    def lowered(sentence: str) -> str:
        keep = len(sentence) > 1 and sentence[1].isupper()     # 'NVIDIA', 'TTFT'
        return sentence if keep else sentence[:1].lower() + sentence[1:]
    return [f"Estimated: {lowered(sentence)}" for sentence in sentences]


def busy_caution(rows: list[dict[str, Any]]) -> str | None:
    """First of the findings when other programs took a material share of the CPU while some
    points were measured (`lib.estimate.why.BUSY_PERCENT`): differences between such points
    may be the other programs' doing, so no finding can say *why* one setting is faster."""
    shares = [cell(row, "other_cpu_percent") for row in rows if not is_estimated(row)]
    busy = [share for share in shares if share is not None and share > BUSY_OTHER_CPU_PERCENT]
    if not busy:
        return None
    return (f"{len(busy)} of {len(shares)} measured points ran while other programs used up to "
            f"{max(busy):.0f}% of the CPU. Speed differences measured on a busy machine can't be "
            "trusted for why one setting is faster: the other programs slow some points more "
            "than others. Run the sweep again on a quiet machine to learn why.")


def skipped_reason_words(row: dict[str, Any]) -> str:
    """Why a skipped point could not run, in its first sentence."""
    return _first_sentence(row.get("skipped_reason") or "")


def _first_sentence(reason: str) -> str:
    return (reason or "no reason was recorded").split(". ")[0].rstrip(".")


def _within_noise(a: dict[str, Any], b: dict[str, Any], parts: list[tuple[str, str, str]],
                  key: str, factor: Factor) -> str:
    """'Batch size 1 vs 16: the difference in time per token (20 ms vs 22 ms) is within the
    noise (their p10–p90 spreads overlap); rerun ...'. parts: (what, value a, value b)."""
    differences = " and ".join(f"{what} ({first} vs {second})" for what, first, second in parts)
    verb = "differences in" if len(parts) > 1 else "difference in"
    are = "are" if len(parts) > 1 else "is"
    return (f"{factor.title} {a[factor.column]} vs {b[factor.column]}: the {verb} {differences} "
            f"{are} within the noise ({doubt(a, b, key, factor)}); {RERUN}.")


# --- words ------------------------------------------------------------------------------------

def _ratio_words(ratio: float, up: str, down: str) -> str:
    if abs(ratio - 1) <= NEGLIGIBLE:
        return "stayed about the same"
    if ratio > 1:
        return f"{up} {ratio:.1f}x"
    return f"{down} {1 / ratio:.1f}x"


def _unsteady(rows: list[dict[str, Any]], key: str, column: str, label: str) -> str:
    """', not steadily: ...' when the metric went up and down along the factor, else ''."""
    values = [row[key] for row in rows]
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(s >= 0 for s in steps) or all(s <= 0 for s in steps) or len(values) < 3:
        return ""
    peak = max(rows, key=lambda row: row[key])
    return (f", not steadily: it peaked at {ms(peak[key])} at {label} "
            f"{peak[column]}")


# --- the two kinds of factor ---------------------------------------------------------------------

def _numeric(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    column, label = factor.column, factor.label
    rows = sorted(rows, key=lambda row: row[column])
    first, last = rows[0], rows[-1]
    span = f"From {label} {first[column]} to {last[column]}"
    sentences = []
    if first["tpot_s"] and last["tpot_s"]:
        throughput = finding_ratio(first, last, "decode_tokens_per_s", factor)
        per_token = finding_ratio(first, last, "tpot_s", factor)
        rates = (format_number(first["decode_tokens_per_s"]),
                 format_number(last["decode_tokens_per_s"]))
        said, decode = [], METRICS["decode_tokens_per_s"].words
        if throughput is not None:
            said.append(f"{decode} {_ratio_words(throughput, 'grew', 'fell')} "
                        f"({rates[0]} to {rates[1]} tokens/s)")
        if per_token is not None:
            said.append(f"the time per token {_ratio_words(per_token, 'grew', 'shrank')} "
                        f"({ms(first['tpot_s'])} to {ms(last['tpot_s'])}"
                        f"{_unsteady(rows, 'tpot_s', column, label)})")
        if said:
            sentences.append(f"{span}, {' while '.join(said)}.")
        unsaid = []
        if throughput is None:
            unsaid.append((decode, f"{rates[0]} tokens/s", f"{rates[1]} tokens/s"))
        if per_token is None:
            unsaid.append(("time per token", ms(first["tpot_s"]), ms(last["tpot_s"])))
        if unsaid:
            key = "tpot_s" if per_token is None else "decode_tokens_per_s"
            sentences.append(_within_noise(first, last, unsaid, key, factor))
    if first["ttft_s"] and last["ttft_s"]:
        sentences.append(_change(first, last, rows, "ttft_s", f"the {METRICS['ttft_s'].words}",
                                 factor))
    elif first["e2e_s"] and last["e2e_s"]:
        sentences.append(_change(first, last, rows, "e2e_s", "each request's latency", factor))
    if first.get("peak_memory_bytes") and last.get("peak_memory_bytes"):
        grown = last["peak_memory_bytes"] - first["peak_memory_bytes"]
        if abs(grown) >= max(1e6, 0.01 * first["peak_memory_bytes"]):
            sign = "+" if grown > 0 else "-"
            sentences.append(f"Peak memory went from {format_bytes(first['peak_memory_bytes'])} "
                             f"to {format_bytes(last['peak_memory_bytes'])} "
                             f"({sign}{format_bytes(abs(grown))}).")
        else:
            sentences.append(f"Peak memory stayed about the same "
                             f"({format_bytes(first['peak_memory_bytes'])}).")
    return sentences


def _change(first: dict[str, Any], last: dict[str, Any], rows: list[dict[str, Any]], key: str,
            what: str, factor: Factor) -> str:
    ratio = finding_ratio(first, last, key, factor)
    if ratio is None:
        return _within_noise(first, last, [(what.removeprefix("the "), ms(first[key]),
                                            ms(last[key]))], key, factor)
    unsteady = _unsteady(rows, key, factor.column, factor.label) if key == "ttft_s" else ""
    return (f"From {factor.label} {first[factor.column]} to {last[factor.column]}, {what} "
            f"{_ratio_words(ratio, 'grew', 'shrank')} ({ms(first[key])} to {ms(last[key])}"
            f"{unsteady}).")


def _named(row: dict[str, Any], factor: Factor, rows: list[dict[str, Any]],
           amount: str | None = None) -> str:
    """A point as a sentence names it, with an amount if given: as written when every point
    is measured ('gpt2 (20 ms)'), else in words saying which it is ('NVIDIA H200 SXM 141GB
    (5.1 ms, estimated)', "this machine's cpu (measured)")."""
    value = row[factor.column]
    if not any(is_estimated(other) for other in rows):
        return f"{value} ({amount})" if amount else str(value)
    kind = "estimated" if is_estimated(row) else "measured"
    here = "this machine's " if factor.name == "device" and kind == "measured" else ""
    return f"{here}{factor.value_label(value)} ({f'{amount}, ' if amount else ''}{kind})"


def _versus(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    """Each estimated point against the fastest measured one: 'NVIDIA H200 SXM 141GB
    (estimated) would write tokens 25x faster than this machine's cpu (measured): 5.1 ms vs
    128 ms per token.'"""
    key = "tpot_s" if all(row["tpot_s"] for row in rows) else "e2e_s"
    doing, unit = ("write tokens", "per token") if key == "tpot_s" else \
        ("answer each request", "per request")
    measured = [row for row in rows if not is_estimated(row)]
    best = min(measured, key=lambda row: row[key])
    sentences = []
    for row in rows:
        if not is_estimated(row):
            continue
        ratio = best[key] / row[key]
        if abs(ratio - 1) <= NEGLIGIBLE:
            how = "about as fast as"
        else:
            how = f"{ratio:.1f}x faster than" if ratio > 1 else f"{1 / ratio:.1f}x slower than"
        doubtful = (f" (the measurement is noisy: {noise_reason(best)})"
                    if is_noisy(best) else "")
        sentences.append(f"{_named(row, factor, rows)} would {doing} {how} "
                         f"{_named(best, factor, rows)}: {ms(row[key])} vs {ms(best[key])} "
                         f"{unit}{doubtful}.")
    return sentences


def _categorical(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    label = factor.label
    key = "tpot_s" if all(row["tpot_s"] for row in rows) else "e2e_s"
    what = METRICS["tpot_s"].words if key == "tpot_s" else "request latency"
    ordered = sorted(rows, key=lambda row: row[key])
    fastest, slowest = ordered[0], ordered[-1]
    ratio = finding_ratio(fastest, slowest, key, factor)
    memory = _categorical_memory(rows, factor)
    if ratio is None:
        return [_within_noise(fastest, slowest,
                              [(what, ms(fastest[key]), ms(slowest[key]))], key, factor)] + memory
    if ratio - 1 <= NEGLIGIBLE:
        return [f"Every {label} gave about the same {what} ({ms(fastest[key])} to "
                f"{ms(slowest[key])}): here, this factor barely matters."] + memory
    sentences = [
        f"Fastest {what}: {_named(fastest, factor, rows, ms(fastest[key]))}; slowest: "
        f"{_named(slowest, factor, rows, ms(slowest[key]))}, {ratio:.1f}x slower."]
    if key == "tpot_s":
        ttft = sorted(rows, key=lambda row: row["ttft_s"])
        if (ttft[0] is not fastest and ttft[-1]["ttft_s"] / ttft[0]["ttft_s"] - 1 > NEGLIGIBLE
                and not doubt(ttft[0], fastest, "ttft_s", factor)):
            sentences.append(
                f"But the first token came soonest with "
                f"{_named(ttft[0], factor, rows, ms(ttft[0]['ttft_s']))}: reading the prompt "
                "and writing tokens stress the hardware differently.")
    return sentences + memory


def _categorical_memory(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    """Peak memory is not slowed by other programs: a difference is stated even when the
    latencies are noisy. (An estimate's is each of its devices'.)"""
    measured = [row for row in rows if row.get("peak_memory_bytes")]
    if len(measured) < 2:
        return []
    ordered = sorted(measured, key=lambda row: row["peak_memory_bytes"])
    low, high = ordered[0], ordered[-1]
    if high["peak_memory_bytes"] < 1.05 * low["peak_memory_bytes"]:
        return [f"Peak memory stayed about the same ({format_bytes(low['peak_memory_bytes'])})."]
    return [f"Least peak memory: "
            f"{_named(low, factor, rows, format_bytes(low['peak_memory_bytes']))}; most: "
            f"{_named(high, factor, rows, format_bytes(high['peak_memory_bytes']))}, "
            f"{high['peak_memory_bytes'] / low['peak_memory_bytes']:.1f}x as much."]
