"""The commands that look things up: `models`, `hardware`, `estimate` and `machine`.

`estimate` takes the run flags with `--hardware` (default `this`, this machine's measured
ceilings) and `--gpus`, and prints one prediction, never saved (`run --hardware ID` saves one
to the history, marked estimated); its `--dtype` also takes float8 (1-byte weights, bfloat16
activations), the number format DeepSeek-R1 is published in, which nothing here runs live; left
out, it is the model's published one (float8 for DeepSeek-R1), else float32 as for `run`. A
model that doesn't fit on the devices asked for is refused with how many it needs; with
`--json` it is printed all the same (status 0), with `fits: false` and `min_gpus`.
`hardware` lists the profiles with their figures and sources.
"""

from __future__ import annotations

import argparse

from lib.cli.output import out, print_json, say
from lib.core import spec as run_spec
from lib.core import spec_text
from lib.core.errors import InvalidSpecError


def models(as_json: bool) -> int:
    from lib.measure import backends
    from lib.estimate.modelcard import format_count
    from lib.models.catalog import CATALOG
    from lib.models.shapes import shapes

    rows = []
    for model_id, entry in CATALOG.items():
        shape = shapes(model_id)
        row = {"id": model_id, "display_name": entry.display_name, "kind": entry.kind,
               "weights": entry.weights, "parameters": shape.parameters,
               "layers": shape.layers, "hidden_size": shape.hidden_size,
               "attention_heads": shape.attention_heads, "kv_heads": shape.kv_heads,
               "head_dim": shape.head_dim, "vocab_size": shape.vocab_size,
               "context_length": shape.context_length,
               "kv_cache_bytes_per_token_bfloat16": shape.kv_bytes_per_token("bfloat16"),
               "weight_bytes": {d: shape.weight_bytes(d) for d in run_spec.DTYPES},
               "stacks": list(backends.stacks_for(entry))}
        if shape.active_parameters != shape.parameters:
            row["active_parameters"] = shape.active_parameters
        if entry.estimate_only:
            row["estimate_only"] = True
        rows.append(row)
    if as_json:
        return print_json(rows)
    out(f"{'id':<32}{'params':>9}{'active':>9}{'layers':>7}{'hidden':>7}{'heads':>6}"
        f"{'kv':>4}{'vocab':>8}{'context':>9}  {'kind/weights':<18}stacks")
    for r in rows:
        active = format_count(r["active_parameters"]) if "active_parameters" in r else "-"
        out(f"{r['id']:<32}{format_count(r['parameters']):>9}{active:>9}{r['layers']:>7}"
            f"{r['hidden_size']:>7}{r['attention_heads']:>6}{r['kv_heads']:>4}"
            f"{r['vocab_size']:>8}{r['context_length']:>9}  "
            f"{r['kind'] + '/' + r['weights']:<18}{', '.join(r['stacks'])}")
    return 0


def hardware(as_json: bool) -> int:
    from lib.estimate import hardware
    from lib.core.metrics import format_bytes

    profiles = hardware.profiles()
    if as_json:
        return print_json([profile.to_dict() for profile in profiles.values()])
    out(f"{'id':<14}{'bandwidth':>12}{'bf16 FLOP/s':>13}{'memory':>10}{'link':>13}  name")
    for profile in profiles.values():
        link = profile.interconnect_bytes_per_s
        out(f"{profile.id:<14}{format_bytes(profile.memory_bandwidth_bytes_per_s) + '/s':>12}"
            f"{profile.peak_flops('bfloat16') / 1e12:>9,.1f} T/s"
            f"{format_bytes(profile.memory_bytes):>10}"
            f"{format_bytes(link) + '/s' if link else '-':>13}  {profile.name}")
    out("sources: python -m lib hardware --json")
    return 0


def estimate(args: argparse.Namespace) -> int:
    """One estimate, printed, never saved: as text, refused (status 2) when the model doesn't
    fit on the devices asked for, with how many it needs; as JSON, printed with `fits` false
    and `min_gpus`, so a program can ask again with that many."""
    from lib.estimate import estimator
    from lib.models.catalog import get_entry

    requested = args.dtype
    args.dtype = run_spec.field_info("dtype")["default"]      # checked below, once known
    spec = spec_text.from_arguments(args)
    dtype = requested or get_entry(spec.model_id).published_dtype or spec.dtype
    spec_dtype, weights = estimator.split_dtype(dtype)
    spec = spec.replace(dtype=spec_dtype)
    if args.acceptance_rate is not None and spec.speculative == "none":
        raise InvalidSpecError("--acceptance-rate is speculative decoding's: add --speculative "
                               "prompt-lookup, early-exit or draft.")
    result = estimator.estimate(spec, spec.hardware, spec.gpus, weights, args.acceptance_rate)
    if args.json:
        return print_json({**result.to_dict(), "cost": result.cost(args.price_per_hour)})
    out(estimate_text(result.enforce(), args.price_per_hour))
    return 0


def estimate_text(result, price_per_hour: float | None = None) -> str:
    from lib.estimate import device_memory
    from lib.core.metrics import METRICS

    spec = result.spec
    # A native stack has no compile setting: it is named instead.
    engine = f"compile {spec.compile}" if spec.stack == "transformers" else spec.stack
    lines = [f"ESTIMATE (not measured): {spec.model_id} on "
             f"{device_memory.devices_words(result.hardware, result.gpus)}, "
             f"{result.weights_dtype}, batch {spec.batch_size}, prompt "
             f"{spec.prompt_tokens} tokens, output {spec.new_tokens} tokens, {engine}", ""]
    for name, value in result.summary.items():
        lines.append(f"{METRICS[name].label:<30}{METRICS[name].format(value):>14}")
    lines.append("")
    lines += [f"{phase}: limited by {term}" for phase, term in result.bound.items()]
    lines += ["", f"why: {result.why()['text']}", ""]
    lines += [f"memory: {result.memory_verdict}", ""]
    if result.spec.new_tokens:
        from lib.estimate import cost
        lines += [f"cost: {cost.words(result.cost(price_per_hour), result.gpus)}", ""]
    lines += ["assumptions:"]
    lines += [f"- {sentence}" for sentence in result.assumptions]
    return "\n".join(lines)


def machine(refresh: bool, as_json: bool) -> int:
    from lib.machine import ceilings

    def progress(what: str, fraction: float) -> None:
        say(f"measuring: {what} ({fraction:.0%})")

    found = ceilings.available(refresh=refresh, on_progress=progress, on_wait=say)
    if as_json:
        return print_json({device: c.to_dict() for device, c in found.items()})
    for c in found.values():
        for line in ceilings.describe(c):
            out(line)
    return 0
