"""Each software stack in each of its weight formats on the default model (SmolLM2-135M), batch 1,
prompt 64, 32 new tokens, measured in one interleaved sweep (stack x dtype, as Explore's heatmap
runs it: each round visits every point once, in a rotating order, so the machine's drift falls on
all of them alike). Pairs a stack doesn't run are skipped by the sweep with its reason.

It prints, against transformers float32 (eager PyTorch: sdpa attention, dynamic cache, no
torch.compile): decode speed-up (its TPOT / the point's TPOT) and prefill ratio (the point's TTFT
/ its TTFT), with each point's spread, peak memory and model file build time. Goal of issue 13:
the fastest stack decodes at least 3x faster than transformers float32 here.

    .venv/bin/python benchmarks/stacks.py [--repetitions 5] [--dtypes float32,q4_k_m,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.measure import runner, sweep
from lib.measure.factors import get_factor, parse_values
from lib.core import stats
from lib.core.metrics import format_bytes  # noqa: E402
from lib.measure.cache import ModelCache  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402
from lib.core.stacks import STACKS  # noqa: E402

GOAL = 3.0
DEFAULT_DTYPES = "float32,float16,int8,q8_0,q4_k_m,q4_1,int4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--dtypes", default=DEFAULT_DTYPES)
    args = parser.parse_args()
    base = RunSpec(prompt_tokens=64, new_tokens=32, repetitions=args.repetitions,
                   min_duration_s=0.0, warmup_runs=1)
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()           # the loading bars would break the table
    stack, dtype = get_factor("stack"), get_factor("dtype")
    grid = [(stack, list(STACKS)), (dtype, parse_values(dtype, args.dtypes))]
    for name, chosen in STACKS.items():
        versions = ", ".join(f"{p} {v}" for p, v in chosen.versions().items())
        print(f"{chosen.label}: {versions or 'NOT INSTALLED (scripts/setup.sh --stacks)'}")
    cache = ModelCache(max_entries=len(STACKS) * len(grid[1][1]))
    try:
        with runner.SweepPoints(cache, "stacks benchmark") as points:
            result = sweep.run_sweep(base, grid, points)
    finally:
        cache.close()

    rows = []
    for point in result.points:
        if point.measurement is None:
            continue
        summary = stats.summarize(point.measurement)
        peaks = [r.peak_memory_bytes for r in point.measurement.repetitions
                 if r.peak_memory_bytes]
        rows.append({"stack": point.values["stack"], "dtype": point.values["dtype"],
                     "ttft": summary.metrics["ttft_s"], "tpot": summary.metrics["tpot_s"],
                     "peak": max(peaks) if peaks else None,
                     "build_s": point.measurement.build_s, "load_s": point.measurement.load_s})
    reference = next((r for r in rows if (r["stack"], r["dtype"]) == ("transformers", "float32")),
                     None)
    if reference is None:
        print("transformers float32 was not measured: no ratios.")
        return 1
    print(f"\n{'stack':<13}{'format':<9}{'TTFT p50':>10}{'(IQR)':>9}{'TPOT p50':>10}{'(IQR)':>9}"
          f"{'decode x':>10}{'prefill x':>11}{'peak mem':>11}{'built':>8}")
    for row in sorted(rows, key=lambda r: r["tpot"].median):
        decode = reference["tpot"].median / row["tpot"].median
        prefill = row["ttft"].median / reference["ttft"].median
        row["decode"] = decode
        built = f"{row['build_s']:.1f}s" if row["build_s"] is not None else "-"
        print(f"{row['stack']:<13}{row['dtype']:<9}"
              f"{row['ttft'].median * 1e3:8.1f}ms{row['ttft'].iqr * 1e3:7.1f}ms"
              f"{row['tpot'].median * 1e3:8.1f}ms{row['tpot'].iqr * 1e3:7.1f}ms"
              f"{decode:9.2f}x{prefill:10.2f}x"
              f"{format_bytes(row['peak']) if row['peak'] else '?':>11}{built:>8}")
    for point in result.points:
        if point.skipped_reason:
            print(f"skipped {point.values['stack']} {point.values['dtype']}: "
                  f"{point.skipped_reason.split('. ')[0]}.")
    for note in result.notes:
        print(note)
    fastest = max(rows, key=lambda r: r["decode"])
    # What other programs took while each repetition ran (the engine records it per
    # repetition, the sweep's own worker processes excluded): the worst point's median.
    busy = max((statistics.median(shares) for shares in (
        [r.other_cpu_percent for r in p.measurement.repetitions if r.other_cpu_percent is not None]
        for p in result.points if p.measurement) if shares), default=None)
    print(f"\nother programs' CPU share meanwhile (noisiest point's median): {'?' if busy is None else f'{busy:.0f}%'}"
          + (" -- too busy: rerun when it is quiet" if busy and busy > 25 else ""))
    met = fastest["decode"] >= GOAL
    print(f"fastest decode: {fastest['stack']} {fastest['dtype']}, {fastest['decode']:.2f}x "
          f"transformers float32 (goal {GOAL:.0f}x): {'GOAL MET' if met else 'BELOW GOAL'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
