"""Findings about the software stack (alone, or against the number format in a heatmap).

Each point's trade-off against a reference point (transformers float32 when it was measured,
else the first point), because a stack often writes tokens faster but reads the prompt slower,
e.g. "llama.cpp Q4_K_M writes tokens 3.1x faster than transformers float32 (12 ms vs 37 ms per
token), but reads the prompt 2.2x slower (440 ms vs 200 ms to the first token)"; then which
point had the lowest time per token and time to first token, and the peak memory of each
against the reference. Differences within the noise are said to be (`lib.views.comparable`).
"""

from __future__ import annotations

from typing import Any

from lib.core.metrics import METRICS, format_bytes
from lib.core.stacks import TRANSFORMERS, format_name, stack_name
from lib.views.comparable import NEGLIGIBLE, RERUN, doubt, finding_ratio, ms


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
_PREFILL = ("ttft_s", "reads the prompt", METRICS["ttft_s"].words, "to the first token")
_REQUEST = ("e2e_s", "answers each request", "request latency", "per request")


def _trade_off(row: dict[str, Any], reference: dict[str, Any]) -> str:
    """'llama.cpp Q4_K_M writes tokens 3.1x faster than transformers float32 (12 ms vs 37 ms
    per token), but reads the prompt 2.2x slower (440 ms vs 200 ms to the first token).'"""
    name, against = point_name(row), point_name(reference)
    aspects = [_DECODE, _PREFILL] if row["tpot_s"] and reference["tpot_s"] else [_REQUEST]
    said, unsaid, directions = [], [], []
    for key, verb, what, unit in aspects:
        numbers = f"{ms(row[key])} vs {ms(reference[key])}"
        ratio = finding_ratio(reference, row, key, None)
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
                         f"({doubt(reference, row, key, None, point_name)})")
        return sentence + "."
    differences = " and ".join(f"{what} ({numbers})" for what, numbers, _ in unsaid)
    plural = len(unsaid) > 1
    return (f"{name} vs {against}: the difference{'s' if plural else ''} in {differences} "
            f"{'are' if plural else 'is'} within the noise "
            f"({doubt(reference, row, unsaid[0][2], None, point_name)}); {RERUN}.")


def _lowest(rows: list[dict[str, Any]], key: str) -> tuple[dict[str, Any], str]:
    """The point with the lowest `key`, and ', within the noise of X (13 ms)' when the
    runner-up can't be told apart from it."""
    ordered = sorted((row for row in rows if row.get(key)), key=lambda row: row[key])
    best = ordered[0]
    if len(ordered) > 1 and doubt(best, ordered[1], key, None, point_name):
        return best, f", within the noise of {point_name(ordered[1])} ({ms(ordered[1][key])})"
    return best, ""


def _lowest_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """'Lowest time per token: llama.cpp Q4_K_M (12 ms); lowest time to first token:
    transformers bfloat16 (150 ms).'"""
    if not all(row.get("tpot_s") for row in rows):
        best, caveat = _lowest(rows, "e2e_s")
        return [f"Lowest request latency: {point_name(best)} ({ms(best['e2e_s'])}{caveat})."]
    decode, decode_caveat = _lowest(rows, "tpot_s")
    prefill, prefill_caveat = _lowest(rows, "ttft_s")
    first_token = METRICS["ttft_s"].words
    if decode is prefill and not decode_caveat and not prefill_caveat:
        return [f"{point_name(decode)} had both the lowest time per token "
                f"({ms(decode['tpot_s'])}) and the lowest {first_token} "
                f"({ms(prefill['ttft_s'])})."]
    return [f"Lowest time per token: {point_name(decode)} ({ms(decode['tpot_s'])}"
            f"{decode_caveat}); lowest {first_token}: {point_name(prefill)} "
            f"({ms(prefill['ttft_s'])}{prefill_caveat})."]


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
