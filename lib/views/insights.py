"""Plain-language findings computed from a sweep's tidy rows, never canned text.

Each sentence compares measured points and states ratios with the numbers behind them, e.g.
"From batch size 1 to 16, decode throughput grew 4.4x while each token took 3.6x longer". A
ratio within NEGLIGIBLE of 1 is called "about the same". A ratio is only stated when the data can
carry it: if the two points' spreads overlap (p10–p90, or the range of their samples below the
percentile gate: `table.band_columns`) or either point is noisy (`stats.point_noise`), the
sentence says the difference is within the noise instead, and a last sentence names the noisy
points and why. Noise is never sold as a finding, and when other programs took a material
share of the CPU during measured points, the first sentence says the differences can't be
trusted for *why* (`busy_caution`).

The software stack (alone, or against the number format in a heatmap) gets its own findings
(`stack_findings`): each point's trade-off against a reference point (transformers float32
when it was measured, else the first point), because a stack often writes tokens faster but
reads the prompt slower, e.g. "llama.cpp Q4_K_M writes tokens 3.1x faster than transformers
float32 (12 ms vs 37 ms per token), but reads the prompt 2.2x slower (440 ms vs 200 ms to the
first token)"; then which point had the lowest time per token and time to first token, and
the peak memory of each against the reference.

Estimated points (a hardware profile: `table.is_estimated`) are one computed value each, not
samples: no spread or noise verdict is applied to them, and every sentence that names one
says "estimated" (and "measured" for the point it is compared with), e.g. "NVIDIA H200 SXM
141GB (estimated) would write tokens 25x faster than this machine's cpu (measured)".
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from lib.core.metrics import format_bytes, format_number
from lib.core.stacks import STACKS, TRANSFORMERS
from lib.core.stats import BUSY_OTHER_CPU_PERCENT, NOISY_RELATIVE_IQR
from lib.measure.factors import Factor
from lib.core.stacks import format_name, stack_name
from lib.records.table import band_columns, is_estimated, is_measured

NEGLIGIBLE = 0.10      # ratios between 0.9x and 1.1x are "about the same"
ESTIMATES_ARE_NOT_SAMPLES = (
    "Estimated points come from a model of their hardware (its published figures and the "
    "software stack's overheads), not from a clock: they have no spread, and a ratio against a "
    "measured point compares a prediction with a measurement.")
RERUN = "rerun on a quieter machine or with more repetitions to tell"


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
    points were measured (`lib.estimate.why.BUSY_PERCENT`): differences between such points may be the
    other programs' doing, so no finding can say *why* one setting is faster."""
    shares = [_value(row, "other_cpu_percent") for row in rows if not is_estimated(row)]
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


# --- whether two points can be compared ----------------------------------------------------------

def _value(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def is_noisy(row: dict[str, Any]) -> bool:
    """The row's `noisy` flag; absent or empty (a skipped point, an old table) is not noisy."""
    return bool(_value(row, "noisy"))


def noise_reason(row: dict[str, Any]) -> str:
    """Why a noisy point is doubtful, in a few words. The table keeps the other programs' CPU
    share; the other cause of `stats.point_noise` is the spread of the repetitions."""
    other = _value(row, "other_cpu_percent")
    if other is not None and other > BUSY_OTHER_CPU_PERCENT:
        return f"other programs used {other:.0f}% of the CPU while it was measured"
    return (f"its repetitions disagreed: their middle half spans more than "
            f"{NOISY_RELATIVE_IQR:.0%} of the median")


def spreads_overlap(a: dict[str, Any], b: dict[str, Any], key: str) -> bool | None:
    """Whether the two points' spreads of `key` overlap (None if a spread is missing)."""
    bands = []
    for row in (a, b):
        low, high, _ = band_columns(row, key)
        bands.append((_value(row, low), _value(row, high)))
    if any(edge is None for band in bands for edge in band):
        return None
    (low_a, high_a), (low_b, high_b) = bands
    return low_a <= high_b and low_b <= high_a


def samples_apart(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    """Whether the lowest-to-highest ranges of the two points' samples of `key` don't touch."""
    edges = [(_value(row, f"{key}_min"), _value(row, f"{key}_max")) for row in (a, b)]
    if any(edge is None for pair in edges for edge in pair):
        return False
    (low_a, high_a), (low_b, high_b) = edges
    return high_a < low_b or high_b < low_a


def _doubt(a: dict[str, Any], b: dict[str, Any], key: str, factor: Factor | None,
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


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str, factor: Factor | None) -> float | None:
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
    return None if _doubt(a, b, key, factor) else ratio


def _within_noise(a: dict[str, Any], b: dict[str, Any], parts: list[tuple[str, str, str]],
                  key: str, factor: Factor) -> str:
    """'Batch size 1 vs 16: the difference in time per token (20 ms vs 22 ms) is within the
    noise (their p10–p90 spreads overlap); rerun ...'. parts: (what, value a, value b)."""
    differences = " and ".join(f"{what} ({first} vs {second})" for what, first, second in parts)
    verb = "differences in" if len(parts) > 1 else "difference in"
    are = "are" if len(parts) > 1 else "is"
    return (f"{factor.title} {a[factor.column]} vs {b[factor.column]}: the {verb} {differences} "
            f"{are} within the noise ({_doubt(a, b, key, factor)}); {RERUN}.")


# --- words ------------------------------------------------------------------------------------

def _ratio_words(ratio: float, up: str, down: str) -> str:
    if abs(ratio - 1) <= NEGLIGIBLE:
        return "stayed about the same"
    if ratio > 1:
        return f"{up} {ratio:.1f}x"
    return f"{down} {1 / ratio:.1f}x"


def _ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{format_number(ms)} ms"


def _unsteady(rows: list[dict[str, Any]], key: str, column: str, label: str) -> str:
    """', not steadily: ...' when the metric went up and down along the factor, else ''."""
    values = [row[key] for row in rows]
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(s >= 0 for s in steps) or all(s <= 0 for s in steps) or len(values) < 3:
        return ""
    peak = max(rows, key=lambda row: row[key])
    return (f", not steadily: it peaked at {_ms(peak[key])} at {label} "
            f"{peak[column]}")


# --- the two kinds of factor ---------------------------------------------------------------------

def _numeric(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    column, label = factor.column, factor.label
    rows = sorted(rows, key=lambda row: row[column])
    first, last = rows[0], rows[-1]
    span = f"From {label} {first[column]} to {last[column]}"
    sentences = []
    if first["tpot_s"] and last["tpot_s"]:
        throughput = _ratio(first, last, "decode_tokens_per_s", factor)
        per_token = _ratio(first, last, "tpot_s", factor)
        rates = (format_number(first["decode_tokens_per_s"]),
                 format_number(last["decode_tokens_per_s"]))
        said = []
        if throughput is not None:
            said.append(f"decode throughput {_ratio_words(throughput, 'grew', 'fell')} "
                        f"({rates[0]} to {rates[1]} tokens/s)")
        if per_token is not None:
            said.append(f"the time per token {_ratio_words(per_token, 'grew', 'shrank')} "
                        f"({_ms(first['tpot_s'])} to {_ms(last['tpot_s'])}"
                        f"{_unsteady(rows, 'tpot_s', column, label)})")
        if said:
            sentences.append(f"{span}, {' while '.join(said)}.")
        unsaid = []
        if throughput is None:
            unsaid.append(("decode throughput", f"{rates[0]} tokens/s", f"{rates[1]} tokens/s"))
        if per_token is None:
            unsaid.append(("time per token", _ms(first["tpot_s"]), _ms(last["tpot_s"])))
        if unsaid:
            key = "tpot_s" if per_token is None else "decode_tokens_per_s"
            sentences.append(_within_noise(first, last, unsaid, key, factor))
    if first["ttft_s"] and last["ttft_s"]:
        sentences.append(_change(first, last, rows, "ttft_s", "the time to first token", factor))
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
    ratio = _ratio(first, last, key, factor)
    if ratio is None:
        return _within_noise(first, last, [(what.removeprefix("the "), _ms(first[key]),
                                            _ms(last[key]))], key, factor)
    unsteady = _unsteady(rows, key, factor.column, factor.label) if key == "ttft_s" else ""
    return (f"From {factor.label} {first[factor.column]} to {last[factor.column]}, {what} "
            f"{_ratio_words(ratio, 'grew', 'shrank')} ({_ms(first[key])} to {_ms(last[key])}"
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
                         f"{_named(best, factor, rows)}: {_ms(row[key])} vs {_ms(best[key])} "
                         f"{unit}{doubtful}.")
    return sentences


def _categorical(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    label = factor.label
    key = "tpot_s" if all(row["tpot_s"] for row in rows) else "e2e_s"
    what = "time per output token" if key == "tpot_s" else "request latency"
    ordered = sorted(rows, key=lambda row: row[key])
    fastest, slowest = ordered[0], ordered[-1]
    ratio = _ratio(fastest, slowest, key, factor)
    memory = _categorical_memory(rows, factor)
    if ratio is None:
        return [_within_noise(fastest, slowest,
                              [(what, _ms(fastest[key]), _ms(slowest[key]))], key, factor)] + memory
    if ratio - 1 <= NEGLIGIBLE:
        return [f"Every {label} gave about the same {what} ({_ms(fastest[key])} to "
                f"{_ms(slowest[key])}): here, this factor barely matters."] + memory
    sentences = [
        f"Fastest {what}: {_named(fastest, factor, rows, _ms(fastest[key]))}; slowest: "
        f"{_named(slowest, factor, rows, _ms(slowest[key]))}, {ratio:.1f}x slower."]
    if key == "tpot_s":
        ttft = sorted(rows, key=lambda row: row["ttft_s"])
        if (ttft[0] is not fastest and ttft[-1]["ttft_s"] / ttft[0]["ttft_s"] - 1 > NEGLIGIBLE
                and not _doubt(ttft[0], fastest, "ttft_s", factor)):
            sentences.append(
                f"But the first token came soonest with "
                f"{_named(ttft[0], factor, rows, _ms(ttft[0]['ttft_s']))}: reading the prompt "
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


# --- the software stack ------------------------------------------------------------------------

def point_name(row: dict[str, Any]) -> str:
    """A point of a stack sweep as sentences name it: its stack and its weight format,
    'llama.cpp Q4_K_M', 'transformers float32'."""
    return f"{stack_name(row.get('stack') or TRANSFORMERS)} {format_name(row['dtype'])}"


def reference_point(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the other stacks are compared with: transformers float32 (the app's reference
    way to run a model) when it was measured, else the first point."""
    return next((row for row in rows if (row.get("stack") or TRANSFORMERS) == TRANSFORMERS
                 and row["dtype"] == "float32"), rows[0])


def stack_findings(rows: list[dict[str, Any]]) -> list[str]:
    """From the measured rows of a stack sweep (or a stack x number format grid): each point
    against the reference, decoding (time per token) and prefill (time to first token) apart;
    which point had the lowest of each; and peak memory against the reference's."""
    if len(rows) < 2:
        return []
    reference = reference_point(rows)
    sentences = [_trade_off(row, reference) for row in rows if row is not reference]
    sentences += _lowest_sentences(rows)
    memory = _memory_against(rows, reference)
    return sentences + ([memory] if memory else [])


# (key, verb phrase, what the difference is in, what its numbers are)
_DECODE = ("tpot_s", "writes tokens", "time per token", "per token")
_PREFILL = ("ttft_s", "reads the prompt", "time to first token", "to the first token")
_REQUEST = ("e2e_s", "answers each request", "request latency", "per request")


def _trade_off(row: dict[str, Any], reference: dict[str, Any]) -> str:
    """'llama.cpp Q4_K_M writes tokens 3.1x faster than transformers float32 (12 ms vs 37 ms
    per token), but reads the prompt 2.2x slower (440 ms vs 200 ms to the first token).'"""
    name, against = point_name(row), point_name(reference)
    aspects = [_DECODE, _PREFILL] if row["tpot_s"] and reference["tpot_s"] else [_REQUEST]
    said, unsaid, directions = [], [], []
    for key, verb, what, unit in aspects:
        numbers = f"{_ms(row[key])} vs {_ms(reference[key])}"
        ratio = _ratio(reference, row, key, None)
        if ratio is None:
            unsaid.append((what, numbers, key))
            continue
        if abs(ratio - 1) <= NEGLIGIBLE:
            how, direction = "about as fast", 0
        else:
            how, direction = (f"{ratio:.1f}x slower", -1) if ratio > 1 else \
                (f"{1 / ratio:.1f}x faster", 1)
        directions.append(direction)
        than = f" {'as' if direction == 0 else 'than'} {against}" if not said else ""
        said.append(f"{verb} {how}{than} ({numbers} {unit})")
    if said:
        link = ", but " if len(set(directions)) == 2 and 0 not in directions else ", and "
        sentence = f"{name} {link.join(said)}"
        if unsaid:
            what, numbers, key = unsaid[0]
            sentence += (f"; the difference in {what} ({numbers}) is within the noise "
                         f"({_doubt(reference, row, key, None, point_name)})")
        return sentence + "."
    differences = " and ".join(f"{what} ({numbers})" for what, numbers, _ in unsaid)
    plural = len(unsaid) > 1
    return (f"{name} vs {against}: the difference{'s' if plural else ''} in {differences} "
            f"{'are' if plural else 'is'} within the noise "
            f"({_doubt(reference, row, unsaid[0][2], None, point_name)}); {RERUN}.")


def _lowest(rows: list[dict[str, Any]], key: str) -> tuple[dict[str, Any], str]:
    """The point with the lowest `key`, and ', within the noise of X (13 ms)' when the
    runner-up can't be told apart from it."""
    ordered = sorted((row for row in rows if row.get(key)), key=lambda row: row[key])
    best = ordered[0]
    if len(ordered) > 1 and _doubt(best, ordered[1], key, None, point_name):
        return best, f", within the noise of {point_name(ordered[1])} ({_ms(ordered[1][key])})"
    return best, ""


def _lowest_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """'Lowest time per token: llama.cpp Q4_K_M (12 ms); lowest time to first token:
    transformers bfloat16 (150 ms).'"""
    if not all(row.get("tpot_s") for row in rows):
        best, caveat = _lowest(rows, "e2e_s")
        return [f"Lowest request latency: {point_name(best)} ({_ms(best['e2e_s'])}{caveat})."]
    decode, decode_caveat = _lowest(rows, "tpot_s")
    prefill, prefill_caveat = _lowest(rows, "ttft_s")
    if decode is prefill and not decode_caveat and not prefill_caveat:
        return [f"{point_name(decode)} had both the lowest time per token "
                f"({_ms(decode['tpot_s'])}) and the lowest time to first token "
                f"({_ms(prefill['ttft_s'])})."]
    return [f"Lowest time per token: {point_name(decode)} ({_ms(decode['tpot_s'])}"
            f"{decode_caveat}); lowest time to first token: {point_name(prefill)} "
            f"({_ms(prefill['ttft_s'])}{prefill_caveat})."]


def _memory_against(rows: list[dict[str, Any]], reference: dict[str, Any]) -> str | None:
    """'Peak memory against transformers float32 (560.0 MB): llama.cpp Q4_K_M 210.0 MB
    (0.4x).' A difference under 5% is 'about the same'."""
    base = reference.get("peak_memory_bytes")
    others = [row for row in rows if row is not reference and row.get("peak_memory_bytes")]
    if not base or not others:
        return None
    if all(abs(row["peak_memory_bytes"] / base - 1) < 0.05 for row in others):
        return f"Peak memory was about the same everywhere ({format_bytes(base)})."
    parts = []
    for row in others:
        ratio = row["peak_memory_bytes"] / base
        how = "about the same" if abs(ratio - 1) < 0.05 else f"{ratio:.1f}x"
        parts.append(f"{point_name(row)} {format_bytes(row['peak_memory_bytes'])} ({how})")
    return (f"Peak memory against {point_name(reference)} ({format_bytes(base)}): "
            f"{', '.join(parts)}.")
