"""The CPU kernels behind the estimator's CPU constants, each timed alone against this machine's
ceilings (`python -m lib machine`), so the fractions in lib/estimate/estimator.py can be checked here:

1. Matrix products with few rows: every Linear (and GPT-2 Conv1D) of a catalog model, run in
   turn on 1 and on 4 rows (a decode step at batch 1 and 4), as the share of the dtype's matmul
   ceiling its FLOPs reach (CPU_MIN_COMPUTE_FRACTION) and the GB/s its weights stream at
   (CPU_BANDWIDTH_FRACTION, of the measured bandwidth).
2. Attention (`scaled_dot_product_attention`, the model's heads and head width): a causal
   prefill of P tokens and one decode step over a cached context, as GFLOP/s (FLOPs counted as
   lib.estimate.roofline counts them) and their share of the float32 matmul ceiling
   (CPU_PREFILL_ATTENTION_FRACTION, with its P / (P + 64), and CPU_DECODE_ATTENTION_FRACTION).

    .venv/bin/python benchmarks/cpu_kernels.py [--models gpt2 smollm2-360m] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.measure import backends
from lib.machine import ceilings, activity
from lib.estimate import calibration, estimator
from lib.core.spec import default_threads  # noqa: E402

DEFAULT_MODELS = ("smollm2-135m-instruct", "gpt2", "smollm2-360m")
DTYPES = ("float32", "bfloat16")
ROWS = (1, 4)
PREFILL_SHAPES = ((1, 64), (4, 64), (1, 256), (4, 256))     # (batch, prompt tokens)
DECODE_SHAPES = ((1, 72), (4, 72), (1, 264), (4, 264))      # (batch, cached context)


def median_s(call, repeats: int) -> float:
    call()                                     # warm-up with the timed shapes
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def products(model) -> list:
    """The model's matrix products: its Linear layers and transformers' Conv1D (GPT-2)."""
    import torch
    from transformers.pytorch_utils import Conv1D
    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D))]


def product_rows(model_id: str, dtype: str, found, repeats: int) -> None:
    import torch

    loaded = backends.for_model(model_id).load(model_id, "cpu", dtype)
    layers = products(loaded.model)
    weights = sum(layer.weight.numel() for layer in layers)
    weight_bytes = sum(layer.weight.numel() * layer.weight.element_size() for layer in layers)
    width = {id(layer): layer.weight.shape[1] if isinstance(layer, torch.nn.Linear)
             else layer.weight.shape[0] for layer in layers}
    peak = found.matmul_flops_per_s[dtype]
    for rows in ROWS:
        inputs = {w: torch.randn(rows, w).to(getattr(torch, dtype)) for w in set(width.values())}

        def run_all() -> None:
            for layer in layers:
                layer(inputs[width[id(layer)]])
        with torch.inference_mode():
            seconds = median_s(run_all, repeats)
        flops = 2 * weights * rows
        print(f"  {model_id:<22} {dtype:<9} {rows} row(s): {seconds * 1e3:7.1f} ms, weights at "
              f"{weight_bytes / seconds / 1e9:5.1f} GB/s "
              f"({weight_bytes / seconds / found.memory_bandwidth_bytes_per_s:4.0%} of the "
              f"measured bandwidth), {flops / seconds / 1e9:6.1f} GFLOP/s "
              f"({flops / seconds / peak:5.1%} of the {dtype} ceiling)")
    del loaded


def attention_rates(model_id: str, found, repeats: int) -> None:
    import torch
    import torch.nn.functional as F

    from lib.models.shapes import shapes

    shape = shapes(model_id)
    heads, kv_heads, head_dim = shape.attention_heads, shape.kv_heads, shape.head_dim
    float32 = found.matmul_flops_per_s["float32"]
    per_pair = 2 * 2 * heads * head_dim          # one layer: QK^T and AV, all heads
    for dtype in DTYPES:
        kind = getattr(torch, dtype)
        for batch, prompt in PREFILL_SHAPES:
            q = torch.randn(batch, heads, prompt, head_dim).to(kind)
            k = torch.randn(batch, kv_heads, prompt, head_dim).to(kind)
            seconds = median_s(lambda: F.scaled_dot_product_attention(
                q, k, k, is_causal=True, enable_gqa=heads != kv_heads), repeats)
            rate = batch * per_pair * prompt * (prompt + 1) / 2 / seconds
            model = calibration.CPU_PREFILL_ATTENTION_FRACTION * prompt / (
                prompt + calibration.CPU_HALF_PEAK_ROWS)
            print(f"  {model_id:<22} {dtype:<9} prefill b{batch} P{prompt:<4} "
                  f"{seconds * 1e3:7.2f} ms per layer, {rate / 1e9:5.1f} GFLOP/s = "
                  f"{rate / float32:5.1%} of float32's (estimator: {model:5.1%})")
        for batch, context in DECODE_SHAPES:
            q = torch.randn(batch, heads, 1, head_dim).to(kind)
            k = torch.randn(batch, kv_heads, context, head_dim).to(kind)
            seconds = median_s(lambda: F.scaled_dot_product_attention(
                q, k, k, enable_gqa=heads != kv_heads), repeats * 10)
            rate = batch * per_pair * context / seconds
            model = calibration.CPU_DECODE_ATTENTION_FRACTION[dtype]
            print(f"  {model_id:<22} {dtype:<9} decode  b{batch} ctx{context:<4} "
                  f"{seconds * 1e6:7.1f} us per layer, {rate / 1e9:5.1f} GFLOP/s = "
                  f"{rate / float32:5.1%} of float32's (estimator: {model:5.1%})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(default_threads())
    found = ceilings.machine_ceilings("cpu")
    for line in ceilings.describe(found):
        print(line)
    with activity.watch() as load:
        least = calibration.CPU_MIN_COMPUTE_FRACTION
        floors = ", ".join(f"{dtype} {least.get(dtype, least['other']):.0%}" for dtype in DTYPES)
        print(f"products of 1 and 4 rows (estimator: at least {floors} of the ceiling; a "
              f"whole step's weights at {calibration.CPU_BANDWIDTH_FRACTION['eager']:.0%} of the "
              "bandwidth)")
        for model_id in args.models:
            for dtype in DTYPES:
                product_rows(model_id, dtype, found, args.repeats)
        print("attention, one layer")
        for model_id in args.models:
            attention_rates(model_id, found, args.repeats)
    busy = load.other_cpu_percent
    print(f"other programs' CPU share meanwhile: {'?' if busy is None else f'{busy:.0f}%'}"
          + (" -- too busy, the figures are low: rerun when it is quiet" if busy and busy > 25
             else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
