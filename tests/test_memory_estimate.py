"""The memory estimate is an upper bound of real runs: measured peaks against it over a grid.

Each point runs `python -m lib run --json` in a fresh process, with no warm-up, so the first
call's allocations are measured, and compares the whole process's peak RSS (Python, torch,
loading and the run: `ru_maxrss` of the command and its worker, through a small launcher, as
a process started straight from this big one would inherit its peak) and the run's own peak
(`summary.peak_memory_bytes`) with what the guard estimates before loading. With no swap, a peak above the estimate is a run
the guard lets through into an OOM kill. The grid covers what moves the estimate: eager and
sdpa attention, float32, bfloat16 and int8, a static cache, a trained model and a random-weight
preset; shapes are small enough for the whole file to take a few minutes on 2 cores
(benchmarks/memory_grid.py runs the larger grid, up to batch 8 x 2048).
"""

import pytest

from benchmarks.memory_grid import Point, measure

pytestmark = pytest.mark.slow

SMOL = "smollm2-135m-instruct"
# Three points, each a fresh process (15-20 s): int8 runs the eager scores (in float32) and
# the quantizing copy; the random-weight preset carries the static cache.
# benchmarks/memory_grid.py runs the rest (bfloat16's softmax copy among them).
GRID = [
    Point(SMOL, "float32", "sdpa", 4, 512, 16),    # fused kernel, KV cache growing by copies
    Point(SMOL, "int8", "eager", 1, 1024),         # float32 twice while quantizing
    Point("smollm2-360m", "bfloat16", "sdpa", 2, 512, 8, "static"),   # random weights, built
]
# Pessimism allowed: beyond this the guard refuses runs that would have fitted.
MAX_RATIO = 2.0


@pytest.mark.parametrize("point", GRID, ids=str)
def test_real_peak_stays_under_the_estimate(point, model_cache_dir, default_model):
    """`default_model`: converted from its GGUF file before, as the guard's estimate assumes
    (the one-off conversion is not a run's)."""
    import os
    outcome = measure(point, env={**os.environ, "ILE_CACHE_DIR": str(model_cache_dir)})
    peak = max(outcome.process_peak_bytes, outcome.run_peak_bytes)
    assert peak <= outcome.estimate_bytes, (
        f"{point}: the run used {peak / 1e9:.2f} GB, more than the "
        f"{outcome.estimate_bytes / 1e9:.2f} GB estimated")
    assert outcome.estimate_bytes <= MAX_RATIO * peak, (
        f"{point}: estimated {outcome.estimate_bytes / 1e9:.2f} GB for a peak of "
        f"{peak / 1e9:.2f} GB")
