"""Measurements as JSON (everything, raw timestamps included) and as a readable text table.

The JSON is the output contract of `python -m lib run --json`: `spec`, `environment`,
`provenance` (backend, "measured" or "estimated", library versions), `load`, `summary` (metric
name with unit -> median, spread, percentiles, n; `peak_memory_bytes` is the model's worker
process's peak), `memory` (that peak split into `weights_bytes`, `kv_cache_bytes` and
`other_bytes`, beside `estimate_bytes`, the guard's estimate), `floor` (the physical floor),
`why` (what limited the run: `limit` and `text`, busy machine first), `repetitions` (each with its raw
token offsets from the request start, its own metrics, KV cache size and the CPU share other
programs took meanwhile), `warnings` and the generated text. Labels, units and
meanings come from `lib.core.metrics`. `export_file_name` names a downloaded file after what it
holds (kind, factor, models, date), in characters every file system accepts.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import PurePosixPath
from typing import Any, Sequence

from lib.core import metrics, results
from lib.core.metrics import METRICS, format_bytes, format_value
from lib.core.results import Measurement
from lib.core.spec import LATER_FIELDS
from lib.core.stacks import TRANSFORMERS
from lib.core.stats import Summary, inter_token_latencies, memory_breakdown


def to_dict(measurement: Measurement, summary: Summary) -> dict[str, Any]:
    """`results.to_dict`'s raw document plus what is derived from it: the summary, the
    warnings, and each repetition's own metrics and inter-token latencies."""
    document = results.to_dict(measurement)
    document["summary"] = summary.to_dict()
    document["warnings"] = [dataclasses.asdict(w) for w in summary.warnings]
    breakdown = memory_breakdown(measurement)
    document["memory"] = breakdown.to_dict() if breakdown else None
    document["floor"] = floor_section(measurement, summary)
    document["why"] = why_section(measurement, summary)
    for raw, rep, per_rep in zip(document["repetitions"], measurement.repetitions,
                                 summary.per_repetition):
        raw["itl_s"] = inter_token_latencies(rep)
        raw["metrics"] = per_rep
    return document


def floor_section(measurement: Measurement, summary: Summary) -> dict[str, Any] | None:
    """The run's physical floor and how far from it the medians are (`lib.estimate.floors`), or None
    when the machine's ceilings were not recorded with it."""
    from lib.estimate import floors

    def median(name: str) -> float | None:
        dist = summary.metrics.get(name)
        return dist.median if dist else None
    return floors.judged(measurement, median("ttft_s") or median("e2e_s"), median("tpot_s"))


def why_section(measurement: Measurement, summary: Summary) -> dict[str, Any] | None:
    """What limited the run (`lib.estimate.why`): `limit`, one of "memory bandwidth", "compute",
    "overhead", "busy machine", "interconnect", and `text`; None when nothing can be said."""
    from lib.estimate import why
    found = why.explain(measurement, summary)
    return found.to_dict() if found else None


def summary_row(measurement: Measurement, summary: Summary) -> dict[str, Any]:
    """One flat row for a single run's CSV: the spec, `<metric>_<statistic>` columns, then
    where the numbers came from (new columns go last, so existing columns keep their place)."""
    from lib.records.table import quality_columns, speculative_columns

    spec = measurement.spec.to_dict()
    later = {name: spec.pop(name) for name in LATER_FIELDS}
    return {**spec,
            **{f"{name}_{key}": value for name, dist in summary.metrics.items()
               for key, value in dist.to_dict().items()},
            "backend": measurement.provenance.backend,
            "provenance": measurement.provenance.kind, **later,
            **quality_columns(measurement.quality),
            **speculative_columns(measurement.speculative)}


def quality_sentence(quality: results.Quality | None) -> str | None:
    """What the settings cost in quality, in one sentence (None when not asked for)."""
    if quality is None:
        return None
    if not quality.measured:
        return f"Quality not measured: {quality.unavailable}."
    student = quality.reference.startswith("its teacher ")
    original = "its teacher" if student else "the original model"
    against = quality.reference.removeprefix("its teacher ")
    said = (f"Quality: agrees with {original} ({against}) on "
            f"{quality.agreement:.1%} of next words over {quality.tokens:,} tokens of "
            f"{quality.text}; perplexity {results.format_perplexity(quality.perplexity)}")
    if quality.reference_perplexity and quality.agreement < 1:
        change = quality.perplexity / quality.reference_perplexity - 1
        original = results.format_perplexity(quality.reference_perplexity)
        said += (f" (original {original}, {change + 1:,.0f}x as high)" if change > 9
                 else f" (original {original}, {change:+.1%})")
    if quality.agreement == 1 and quality.perplexity == quality.reference_perplexity:
        said += " (this run is the original model itself: the reference others are judged by)"
    seconds = f", measured in {quality.seconds:.1f} s apart from the timing" \
        if quality.seconds is not None else ""
    return said + seconds + "."


def speculative_sentence(report: dict[str, Any] | None) -> str | None:
    """'Speculative decoding (prompt-lookup): 2.6 tokens per step; 40 of 90 guesses accepted
    (44%); the output is plain greedy decoding's, token for token.'"""
    if not report:
        return None
    method = report['method']
    if isinstance(report.get("draft"), str):
        from lib.core.text import one_line
        from lib.models.catalog import listed_entry
        entry = listed_entry(report["draft"])
        method = f"draft: {entry.display_name if entry else one_line(report['draft'], 80)}"
    said = f"Speculative decoding ({method})"
    if report.get("tokens_per_step") is not None:
        said += f": {report['tokens_per_step']:.2f} tokens per step"
    if report.get("proposed"):
        said += (f"; {report['accepted']} of {report['proposed']} guesses accepted "
                 f"({report['acceptance_rate']:.0%})")
    if report.get("tokens_identical") is True:
        said += "; the output is plain greedy decoding's, token for token"
    elif report.get("tokens_identical") is False:
        said += ("; the output DIFFERS from plain greedy decoding (rounding in a low-precision "
                 "format can tip a close choice)")
    return said + "."


def stack_sentence(measurement: Measurement) -> str | None:
    """Which software stack ran, its versions and the weight format, e.g. 'Ran on llama.cpp
    (llama-cpp-python 0.3.36), weights Q4_K_M.'; None for an estimate (nothing ran)."""
    from lib.core.stacks import STACKS
    from lib.core.stacks import format_name, stack_name

    if not measurement.measured:
        return None
    spec, versions = measurement.spec, measurement.provenance.versions
    packages = STACKS[spec.stack].packages if spec.stack in STACKS else ()
    shown = {name: version for name, version in versions.items() if name in packages} \
        or dict(versions)
    words = ", ".join(f"{name} {version}" for name, version in shown.items())
    return (f"Ran on {stack_name(spec.stack)}" + (f" ({words})" if words else "")
            + f", weights {format_name(spec.dtype)}.")


def to_text(measurement: Measurement, summary: Summary) -> str:
    spec = measurement.spec
    stack = "" if spec.stack == TRANSFORMERS else f" on {spec.stack}"
    lines = [
        f"{spec.model_id} on {spec.device} ({measurement.environment.get('cpu_model', '')}), "
        f"{spec.dtype}{stack}, batch {spec.batch_size}, prompt {spec.prompt_tokens} tokens, "
        f"output {spec.new_tokens} tokens, {spec.threads} threads",
        f"model load: {measurement.load_s or 0:.2f} s ({measurement.load_source}); "
        + (f"int8 quantization: {measurement.quantize_s:.2f} s; "
           if measurement.quantize_s is not None else "")
        + (f"weights converted for {spec.stack} (once): {measurement.build_s:.2f} s; "
           if measurement.build_s is not None else "") +
        f"warm-up: {', '.join(f'{w:.2f} s' for w in measurement.warmup_s) or 'none'}",
        "",
        f"{'metric':<30}{'median':>12}{'p25':>12}{'p75':>12}{'p90':>12}{'p99':>12}{'n':>6}",
    ]
    for name, dist in summary.metrics.items():
        row = [format_value(name, v) for v in
               (dist.median, dist.to_dict()["p25"], dist.to_dict()["p75"],
                dist.percentile(90), dist.percentile(99))]
        lines.append(f"{METRICS[name].label:<30}" + "".join(f"{v:>12}" for v in row)
                     + f"{dist.n:>6}")
    for said in (quality_sentence(measurement.quality),
                 speculative_sentence(measurement.speculative)):
        if said:
            lines.append(said)
    limited = why_section(measurement, summary)
    if limited:
        lines.append(f"why ({limited['limit']}): {limited['text']}")
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
    for name in metrics.TAIL_METRICS:
        dist = summary.metrics.get(name)
        if dist is None:
            continue
        row = {"metric": METRICS[name].label, "n": dist.n,
               "p50": format_value(name, dist.median)}
        for q in (90, 95, 99):
            value = dist.percentile(q)
            row[f"p{q}"] = format_value(name, value) if value is not None else \
                f"needs {dist.needs(q)}"
        rows.append(row)
    return rows


def metric_cards(measurement: Measurement, summary: Summary) -> list[dict[str, str]]:
    """One card per metric: label, median, spread (the percentile gate's: p10-p90 with 10 or
    more samples, else the range of the samples, n; an estimate's says it is one) and plain
    meaning."""
    cards = []
    for name, metric in METRICS.items():
        dist = summary.metrics.get(name)
        if dist is None or name == "itl_s":
            continue
        band = dist.band()
        # An estimate is one computed number: no spread to show, and it says what it is.
        spread = "estimated, not measured" if dist.estimated else \
            f"{format_value(name, band.low)} – {format_value(name, band.high)} " \
            f"({band.kind}, n={dist.n})"
        cards.append({"label": metric.label, "value": format_value(name, dist.median),
                      "meaning": metric.meaning, "spread": spread})
    kv_estimate = measurement.kv_cache_bytes_estimate
    breakdown = memory_breakdown(measurement)
    spec = measurement.spec
    if breakdown is not None and breakdown.kv_cache_bytes:
        read = "read from the cache's tensors" if measurement.measured else \
            "estimated from the model's shapes, not measured"
        cards.append({
            "label": "KV cache", "value": format_bytes(breakdown.kv_cache_bytes),
            "spread": f"{read}; estimated {format_bytes(kv_estimate)}"
                      if kv_estimate and measurement.measured else read,
            "meaning": "The keys and values the model remembers for every token of the batch "
                       "so it doesn't re-read the prompt: it grows with batch x tokens."})
    elif kv_estimate is not None:
        cards.append({
            "label": "KV cache (estimate)", "value": format_bytes(kv_estimate),
            "spread": f"{format_bytes(kv_estimate / (spec.batch_size * spec.total_tokens))} per "
                      f"token x batch {spec.batch_size} x {spec.total_tokens} tokens",
            "meaning": "Estimated from the model's shape, not measured: the keys and values the "
                       "model remembers for every token so it doesn't re-read the prompt."})
    return cards


def cost_sentence(measurement: Measurement, summary) -> str | None:
    """What a million output tokens cost at this run's pace (its requests per second x the
    tokens each writes): an estimate's on its hardware's listed price, a live run's as if this
    machine were a rented cloud machine with its cores (`lib.estimate.cost`). None for an
    encoder (no output tokens) or without a price."""
    from lib.estimate import cost, hardware

    spec = measurement.spec
    requests = summary.metrics.get("requests_per_s")
    if not spec.new_tokens or requests is None or not requests.median:
        return None
    estimated = not measurement.measured and isinstance(spec.hardware, str)
    hardware_id = spec.hardware if estimated else "this"
    devices = spec.gpus if estimated else 1
    power = hardware.table()[hardware_id].board_power_w \
        if hardware_id in hardware.table() else None
    priced = cost.at_throughput(hardware_id, devices, requests.median * spec.new_tokens, power)
    if priced["cost_per_million_tokens"] is None:
        return None
    if estimated:
        return "Estimated cost: " + cost.words(priced, devices) + "."
    return (f"If this machine were rented by the hour: {cost.words(priced, devices)}, at this "
            f"run's pace of {requests.median * spec.new_tokens:,.3g} output tokens/s.")


def memory_sentence(measurement: Measurement) -> str | None:
    """The peak memory split in words, beside the estimate made before the run."""
    breakdown = memory_breakdown(measurement)
    if breakdown is None or breakdown.weights_bytes is None:
        return None
    kv = format_bytes(breakdown.kv_cache_bytes) if breakdown.kv_cache_bytes is not None \
        else "none"
    sentence = (f"Peak memory of the model's own process: {format_bytes(breakdown.peak_bytes)} "
                f"= weights {format_bytes(breakdown.weights_bytes)} + KV cache {kv} + the rest "
                f"{format_bytes(breakdown.other_bytes)} (Python and "
                f"{_engine_words(measurement.spec.stack)} themselves, activations, allocator "
                "slack).")
    if breakdown.estimate_bytes:
        sentence += (f" The memory guard's upper bound for this whole process, weights "
                     f"included: {format_bytes(breakdown.estimate_bytes)}.")
    return sentence


def _engine_words(stack: str) -> str:
    """The libraries a run's process holds besides Python: PyTorch, or the stack's engine."""
    from lib.core.stacks import STACKS, TRANSFORMERS
    return "PyTorch" if stack == TRANSFORMERS else f"{STACKS[stack].label} and the libraries it loads"


def request_latency_rows(measurement: Measurement) -> list[dict[str, Any]]:
    """Tidy rows for encoders: one row per timed request (repetition)."""
    return [{"repetition": index, "latency_s": rep.end_s - rep.start_s}
            for index, rep in enumerate(measurement.repetitions, start=1)]


def sweep_text(table: list[dict[str, Any]], factors: list[str]) -> str:
    """The tidy table as a text table: factor values, median latencies, throughputs, n."""
    from lib.measure.factors import factor_column
    from lib.records.table import is_measured, stat_column

    columns = [factor_column(name) for name in factors]
    widths = {c: max([len(name), 8] + [len(str(row[c])) for row in table])
              for c, name in zip(columns, factors)}
    lines = [" ".join(f"{name:>{widths[c]}}" for c, name in zip(columns, factors))
             + "".join(f"{METRICS[m].short_label:>11}" for m in metrics.LATENCIES)
             + f"{'decode/s':>10}{'req/s':>8}{'n':>4}  status"]
    for row in table:
        cells = " ".join(f"{str(row[c]):>{widths[c]}}" for c in columns)
        if not is_measured(row):
            lines.append(cells + f"  skipped: {row['skipped_reason']}")
            continue
        provenance = row.get("provenance") or "measured"      # or "estimated"
        lines.append(cells + "".join(f"{format_value(m, row[m]):>11}" for m in metrics.LATENCIES)
                     + f"{row['decode_tokens_per_s'] or 0:>10.1f}{row['requests_per_s']:>8.2f}"
                     f"{row[stat_column('e2e_s', 'n')]:>4}  {provenance}")
    return "\n".join(lines)


MAX_MODELS_IN_NAME = 3


def _safe(text: str) -> str:
    """Lower-case letters, digits, '-' and single dots inside a word; nothing else."""
    text = re.sub(r"[^a-z0-9.]+", "-", text.lower())
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"-?\.-?", lambda m: "." if m.group(0) == "." else "-", text)
    return text.strip("-.")


def _model_word(model_id: str) -> str:
    """A catalog id as it is; a path by its last part (not the folders of someone's disk)."""
    if model_id.startswith(("/", ".", "~")) or "\\" in model_id:
        model_id = PurePosixPath(model_id.replace("\\", "/")).name or model_id
    return _safe(model_id)


def export_file_name(kind: str, models: Sequence[str], extension: str,
                     factors: Sequence[str] = (),
                     when: str | datetime.date | None = None) -> str:
    """e.g. `ile-sweep-batch-smollm2-135m-instruct-2026-11-30.csv`, `ile-run-gpt2-2026-11-30.json`.

    `when`: the entry's ISO timestamp or a date (default: today, UTC)."""
    if when is None:
        when = datetime.datetime.now(datetime.timezone.utc).date()
    day = when.isoformat() if isinstance(when, datetime.date) else str(when)[:10]
    words = [_model_word(m) for m in dict.fromkeys(models) if m][:MAX_MODELS_IN_NAME]
    extra = len(dict.fromkeys(models)) - len(words)
    if extra > 0:
        words.append(f"and-{extra}-more")
    parts = ["ile", _safe(kind)] + [_safe(f) for f in factors] + words + [_safe(day)]
    return "-".join(p for p in parts if p) + "." + _safe(extension)
