"""Plain-language findings computed from a sweep's tidy rows, never canned text.

Each sentence compares measured points and states ratios with the numbers behind them, e.g.
"From batch size 1 to 16, decode throughput grew 4.4x while each token took 3.6x longer". A
ratio within NEGLIGIBLE of 1 is called "about the same", so noise is not sold as a finding.
"""

from __future__ import annotations

from typing import Any

from lib.sweep import Factor
from lib.table import is_measured

NEGLIGIBLE = 0.10      # ratios between 0.9x and 1.1x are "about the same"


def _ratio_words(ratio: float, up: str, down: str) -> str:
    if abs(ratio - 1) <= NEGLIGIBLE:
        return "stayed about the same"
    if ratio > 1:
        return f"{up} {ratio:.1f}x"
    return f"{down} {1 / ratio:.1f}x"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def findings(table: list[dict[str, Any]], factor: Factor) -> list[str]:
    """Sentences about one factor's effect, from the measured rows of a one-factor sweep."""
    column, label = factor.column, factor.label
    measured = [row for row in table if is_measured(row)]
    sentences = []
    skipped = [row for row in table if not is_measured(row)]
    if len(measured) < 2:
        sentences.append("Fewer than two points were measured, so there is nothing to compare "
                         "yet.")
    elif factor.numeric:
        sentences += _numeric(measured, column, label)
    else:
        sentences += _categorical(measured, column, label)
    for row in skipped:
        reason = row["skipped_reason"].split(". ")[0].rstrip(".")
        sentences.append(f"{factor.title} {row[column]} could not run: {reason}.")
    return sentences


def _unsteady(rows: list[dict[str, Any]], key: str, column: str, label: str) -> str:
    """' (not steadily: ...)' when the metric went up and down along the factor, else ''."""
    values = [row[key] for row in rows]
    steps = [b - a for a, b in zip(values, values[1:])]
    if all(s >= 0 for s in steps) or all(s <= 0 for s in steps) or len(values) < 3:
        return ""
    peak = max(rows, key=lambda row: row[key])
    return (f", not steadily: it peaked at {_ms(peak[key])} at {label} "
            f"{peak[column]}")


def _numeric(rows: list[dict[str, Any]], column: str, label: str) -> list[str]:
    rows = sorted(rows, key=lambda row: row[column])
    first, last = rows[0], rows[-1]
    span = f"From {label} {first[column]} to {last[column]}"
    sentences = []
    if first["tpot_s"] and last["tpot_s"]:
        throughput = last["decode_tokens_per_s"] / first["decode_tokens_per_s"]
        per_token = last["tpot_s"] / first["tpot_s"]
        sentences.append(
            f"{span}, decode throughput {_ratio_words(throughput, 'grew', 'fell')} "
            f"({first['decode_tokens_per_s']:.1f} to {last['decode_tokens_per_s']:.1f} tokens/s) "
            f"while the time per token {_ratio_words(per_token, 'grew', 'shrank')} "
            f"({_ms(first['tpot_s'])} to {_ms(last['tpot_s'])}"
            f"{_unsteady(rows, 'tpot_s', column, label)}).")
    if first["ttft_s"] and last["ttft_s"]:
        ttft = last["ttft_s"] / first["ttft_s"]
        sentences.append(
            f"{span}, the time to first token {_ratio_words(ttft, 'grew', 'shrank')} "
            f"({_ms(first['ttft_s'])} to {_ms(last['ttft_s'])}"
            f"{_unsteady(rows, 'ttft_s', column, label)}).")
    elif first["e2e_s"] and last["e2e_s"]:
        e2e = last["e2e_s"] / first["e2e_s"]
        sentences.append(f"{span}, each request's latency {_ratio_words(e2e, 'grew', 'shrank')} "
                         f"({_ms(first['e2e_s'])} to {_ms(last['e2e_s'])}).")
    if first["peak_memory_bytes"] and last["peak_memory_bytes"]:
        grown = (last["peak_memory_bytes"] - first["peak_memory_bytes"]) / 2**20
        if abs(grown) >= 1:
            sentences.append(f"Peak memory went from {first['peak_memory_bytes'] / 2**20:.0f} MB "
                             f"to {last['peak_memory_bytes'] / 2**20:.0f} MB.")
    return sentences


def _categorical(rows: list[dict[str, Any]], column: str, label: str) -> list[str]:
    key = "tpot_s" if all(row["tpot_s"] for row in rows) else "e2e_s"
    what = "time per output token" if key == "tpot_s" else "request latency"
    ordered = sorted(rows, key=lambda row: row[key])
    fastest, slowest = ordered[0], ordered[-1]
    ratio = slowest[key] / fastest[key]
    if ratio - 1 <= NEGLIGIBLE:
        return [f"Every {label} gave about the same {what} ({_ms(fastest[key])} to "
                f"{_ms(slowest[key])}): here, this factor barely matters."]
    sentences = [
        f"Fastest {what}: {fastest[column]} ({_ms(fastest[key])}); slowest: "
        f"{slowest[column]} ({_ms(slowest[key])}), {ratio:.1f}x slower."]
    if key == "tpot_s":
        ttft = sorted(rows, key=lambda row: row["ttft_s"])
        if ttft[0] is not fastest and ttft[-1]["ttft_s"] / ttft[0]["ttft_s"] - 1 > NEGLIGIBLE:
            sentences.append(
                f"But the first token came soonest with {ttft[0][column]} "
                f"({_ms(ttft[0]['ttft_s'])}): reading the prompt and writing tokens stress the "
                "hardware differently.")
    return sentences
