"""Speed and quality of every stack x format x technique on the default model (SmolLM2-135M):
batch 1, prompt 64, 32 new tokens, each measured with `quality` on (lib.measure.quality).

It prints one row per configuration: time per output token (median, with its p25-p75), the
speed-up against transformers float32 (its TPOT / the row's), agreement with the original model
on next words and perplexity (the original's in the header). Configurations a stack can't run
here (not installed) are listed as skipped. Rows run one after another, so the machine's drift
falls on them unevenly: read speed-ups under 1.15x as "about the same".

    .venv/bin/python benchmarks/quality.py [--repetitions 5] [--only transformers,llama.cpp]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.core import stats  # noqa: E402
from lib.core.errors import ExplorerError  # noqa: E402
from lib.core.results import format_perplexity  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402
from lib.measure import runner  # noqa: E402
from lib.measure.cache import ModelCache  # noqa: E402

CONFIGURATIONS = [          # (label, RunSpec changes)
    ("transformers float32", {}),
    ("transformers bfloat16", {"dtype": "bfloat16"}),
    ("transformers int8", {"dtype": "int8"}),
    ("llama.cpp F32", {"stack": "llama.cpp", "dtype": "float32"}),
    ("llama.cpp Q8_0", {"stack": "llama.cpp", "dtype": "q8_0"}),
    ("llama.cpp Q4_K_M", {"stack": "llama.cpp", "dtype": "q4_k_m"}),
    ("llama.cpp Q4_1", {"stack": "llama.cpp", "dtype": "q4_1"}),
    ("ONNX Runtime float32", {"stack": "onnxruntime", "dtype": "float32"}),
    ("ONNX Runtime int4", {"stack": "onnxruntime", "dtype": "int4"}),
    ("prune magnitude:0.5", {"prune": "magnitude:0.5"}),
    ("prune layers:10", {"prune": "layers:10"}),
    ("prune mlp:0.25", {"prune": "mlp:0.25"}),
    ("early exit after layer 15", {"exit_layer": 15}),
    ("speculative prompt-lookup (chat)", {"speculative": "prompt-lookup"}),
    ("speculative early-exit draft (chat)", {"speculative": "early-exit"}),
    # A student distilled here (python -m lib distill: skipped until there is one), alone, as
    # the teacher's draft, and the same-size model pruned without training.
    ("distilled student, 10 layers", {"model_id": "smollm2-135m-instruct-distilled-10"}),
    ("prune layers:20 (the student's size)", {"prune": "layers:20"}),
    ("speculative draft: the student (chat)", {"speculative": "draft"}),
    # The quote prompt repeats its passage: at 160 tokens it holds it twice, so the model copies.
    ("plain decoding (quote, prompt 160)", {"prompt_kind": "quote", "prompt_tokens": 160}),
    ("speculative prompt-lookup (quote, 160)", {"speculative": "prompt-lookup",
                                                "prompt_kind": "quote", "prompt_tokens": 160}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--only", default="", help="stacks to keep, comma-separated")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    base = RunSpec(prompt_tokens=64, new_tokens=32, repetitions=args.repetitions,
                   min_duration_s=0.0, warmup_runs=1, quality="on")
    keep = {name for name in args.only.split(",") if name}
    cache = ModelCache(max_entries=2)
    rows, reference_tpot = [], None
    try:
        for label, changes in CONFIGURATIONS:
            spec = base.replace(**changes)
            if keep and spec.stack not in keep:
                continue
            try:
                measurement = runner.run(spec, cache)
            except ExplorerError as exc:
                rows.append((label, None, None, str(exc).split(". ")[0]))
                continue
            tpot = stats.summarize(measurement).metrics["tpot_s"]
            if reference_tpot is None and not changes:
                reference_tpot = tpot.median
            rows.append((label, tpot, measurement, ""))
            print(f"  measured {label}", file=sys.stderr, flush=True)
    finally:
        cache.close()
    print(f"{'configuration':<40}{'TPOT':>9}{'p25-p75':>16}{'speed-up':>10}{'agrees':>8}"
          f"{'perplexity':>14}")
    for label, tpot, measurement, why in rows:
        if tpot is None:
            print(f"{label:<40}skipped: {why}")
            continue
        spread = tpot.to_dict()
        quality = measurement.quality
        speed = f"{reference_tpot / tpot.median:.2f}x" if reference_tpot else "-"
        agrees = f"{quality.agreement:.0%}" if quality and quality.measured else "-"
        perplexity = format_perplexity(quality.perplexity) if quality and quality.measured \
            else "-"
        extra = ""
        if measurement.speculative:
            report = measurement.speculative
            extra = (f"  {report['tokens_per_step']:.1f} tokens/step, identical: "
                     f"{report['tokens_identical']}")
        print(f"{label:<40}{tpot.median * 1000:>7.1f}ms"
              f"{spread['p25'] * 1000:>8.1f}-{spread['p75'] * 1000:<5.1f}ms{speed:>9}"
              f"{agrees:>8}{perplexity:>14}{extra}")
    reference = next((m.quality for _, t, m, _ in rows if m is not None and m.quality
                      and m.quality.measured), None)
    if reference is not None:
        print(f"\nOriginal model (transformers, float32) perplexity: "
              f"{format_perplexity(reference.reference_perplexity)} over {reference.tokens} "
              f"tokens of {reference.text}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
