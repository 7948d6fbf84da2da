"""Measurements as JSON (everything, raw timestamps included) and as a readable text table.

The JSON is the output contract of `python -m lib run --json`: `spec`, `environment`, `load`,
`summary` (metric name with unit -> median, spread, percentiles, n), `repetitions` (each with its
raw token offsets from the request start and its own metrics), `warnings` and the generated text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lib.engine import Measurement
from lib.memory import format_bytes
from lib.stats import MIN_SAMPLES, Summary, inter_token_latencies

# name -> (label, plain meaning); shared by the CLI table and the web page.
METRIC_LABELS = {
    "ttft_s": ("Time to first token (TTFT)",
               "How long until the first word appears: reading the prompt (prefill) plus one step."),
    "tpot_s": ("Time per output token (TPOT)",
               "Average time for each following token: the writing speed a reader sees."),
    "e2e_s": ("End-to-end latency",
              "From sending the request to the last token: the whole wait."),
    "decode_tokens_per_s": ("Decode throughput",
                            "Tokens written per second across the whole batch, after the first."),
    "total_tokens_per_s": ("Total throughput",
                           "Prompt and output tokens handled per second, across the batch."),
    "requests_per_s": ("Requests per second", "How many whole requests finish per second."),
    "peak_memory_bytes": ("Peak memory",
                          "The most memory in use during a repetition: on CPU the whole app, "
                          "with the model's weights and any other model kept loaded."),
    "run_memory_bytes": ("Memory added by the run",
                         "What the request itself added on the GPU: KV cache and working memory."),
    "itl_s": ("Inter-token latency (ITL)", "Each gap between two consecutive tokens."),
}


def to_dict(measurement: Measurement, summary: Summary) -> dict[str, Any]:
    return {
        "spec": measurement.spec.to_dict(),
        "environment": measurement.environment,
        "load": {"load_s": measurement.load_s, "source": measurement.load_source,
                 "quantize_s": measurement.quantize_s},
        "model": {"kind": measurement.model_kind, "weights": measurement.weights},
        "warmup_s": list(measurement.warmup_s),
        "prompt": {"note": measurement.prompt_note,
                   "used_chat_template": measurement.used_chat_template},
        "generated_text": measurement.generated_text,
        "memory_method": measurement.memory_method,
        "kv_cache_bytes_estimate": measurement.kv_cache_bytes_estimate,
        "summary": summary.to_dict(),
        "warnings": [dataclasses.asdict(w) for w in summary.warnings],
        "repetitions": [
            {"token_offsets_s": [t - rep.start_s for t in rep.token_times_s],
             "end_offset_s": None if rep.end_s is None else rep.end_s - rep.start_s,
             "start_memory_bytes": rep.start_memory_bytes,
             "itl_s": inter_token_latencies(rep),
             "peak_memory_bytes": rep.peak_memory_bytes,
             "metrics": metrics}
            for rep, metrics in zip(measurement.repetitions, summary.per_repetition)
        ],
    }


def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name.endswith("_bytes"):
        return format_bytes(value)
    if name.endswith("_per_s"):
        return f"{value:,.1f}/s"
    if name.endswith("_s"):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:,.1f}"


def to_text(measurement: Measurement, summary: Summary) -> str:
    spec = measurement.spec
    lines = [
        f"{spec.model_id} on {spec.device} ({measurement.environment.get('cpu_model', '')}), "
        f"{spec.dtype}, batch {spec.batch_size}, prompt {spec.prompt_tokens} tokens, "
        f"output {spec.new_tokens} tokens, {spec.threads} threads",
        f"model load: {measurement.load_s or 0:.2f} s ({measurement.load_source}); "
        + (f"int8 quantization: {measurement.quantize_s:.2f} s; "
           if measurement.quantize_s is not None else "") +
        f"warm-up: {', '.join(f'{w:.2f} s' for w in measurement.warmup_s) or 'none'}",
        "",
        f"{'metric':<30}{'median':>12}{'p25':>12}{'p75':>12}{'p90':>12}{'p99':>12}{'n':>6}",
    ]
    for name, dist in summary.metrics.items():
        row = [format_value(name, v) for v in
               (dist.median, dist.to_dict()["p25"], dist.to_dict()["p75"],
                dist.percentile(90), dist.percentile(99))]
        lines.append(f"{METRIC_LABELS[name][0]:<30}" + "".join(f"{v:>12}" for v in row)
                     + f"{dist.n:>6}")
    for warning in summary.warnings:
        lines.append(f"{warning.severity}: {warning.message} {warning.hint}")
    if measurement.prompt_note:
        lines.append(f"note: {measurement.prompt_note}")
    lines += ["", "generated text (first sequence):", measurement.generated_text]
    return "\n".join(lines)


def token_latency_rows(measurement: Measurement) -> list[dict[str, Any]]:
    """Tidy rows for the per-token chart: one row per generated token per repetition.

    Token 1's latency is its TTFT (the wait includes reading the prompt); every later token's is
    the gap since the token before it (inter-token latency).
    """
    rows = []
    for index, rep in enumerate(measurement.repetitions, start=1):
        previous = rep.start_s
        for token, time_s in enumerate(rep.token_times_s, start=1):
            rows.append({"repetition": index, "token_index": token,
                         "latency_s": time_s - previous,
                         "kind": "first token (TTFT)" if token == 1 else "inter-token"})
            previous = time_s
    return rows


def percentile_rows(summary: Summary) -> list[dict[str, Any]]:
    """Tail-latency table rows: p50/p90/p95/p99 with n, and why a cell is empty."""
    rows = []
    for name in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
        dist = summary.metrics.get(name)
        if dist is None:
            continue
        row = {"metric": METRIC_LABELS[name][0], "n": dist.n,
               "p50": format_value(name, dist.median)}
        for q in (90, 95, 99):
            value = dist.percentile(q)
            row[f"p{q}"] = format_value(name, value) if value is not None else \
                f"needs n ≥ {MIN_SAMPLES[q]}"
        rows.append(row)
    return rows


def metric_cards(measurement: Measurement, summary: Summary) -> list[dict[str, str]]:
    """One card per metric: label, median, spread (middle half, n) and plain meaning."""
    cards = []
    for name, (label, meaning) in METRIC_LABELS.items():
        dist = summary.metrics.get(name)
        if dist is None or name == "itl_s":
            continue
        quartiles = dist.to_dict()
        cards.append({
            "label": label, "value": format_value(name, dist.median), "meaning": meaning,
            "spread": f"{format_value(name, quartiles['p25'])} – "
                      f"{format_value(name, quartiles['p75'])} (n={dist.n})"})
    kv = measurement.kv_cache_bytes_estimate
    if kv is not None:
        spec = measurement.spec
        cards.append({
            "label": "KV cache (estimate)", "value": format_bytes(kv),
            "spread": f"{format_bytes(kv / (spec.batch_size * spec.total_tokens))} per token x "
                      f"batch {spec.batch_size} x {spec.total_tokens} tokens",
            "meaning": "Estimated from the model's shape, not measured: the keys and values the "
                       "model remembers for every token so it doesn't re-read the prompt."})
    return cards


def request_latency_rows(measurement: Measurement) -> list[dict[str, Any]]:
    """Tidy rows for encoders: one row per timed request (repetition)."""
    return [{"repetition": index, "latency_s": rep.end_s - rep.start_s}
            for index, rep in enumerate(measurement.repetitions, start=1)]
