"""What our timing costs, measured in one run: per-token timestamps, and the worker process.

1. Streamed `generate` vs plain `generate`:
The transformers backend times every token through a tiny streamer
(lib.measure.backends.transformers_lm.TokenTimestamps). docs/MEASURING.md's
rule: that must add under 2% to plain `generate`. This script alternates plain and streamed calls
with identical shapes (so drift on a shared machine hits both alike) and prints the ratio of
medians, plus the model's first (converting) and cached load times.
2. The model in a worker process (lib.measure.worker, how the app runs it) vs the same model in this
process: alternating one timed repetition on each, it prints the ratio of median TTFT and of
median TPOT. Rule (issue 9): the worker adds under 2% to both.

    .venv/bin/python benchmarks/timing_overhead.py [--pairs 15] [--new-tokens 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.measure import backends
from lib.core import paths
from lib.measure.backends.transformers_lm import TokenTimestamps  # noqa: E402
from lib.core.spec import RunSpec  # noqa: E402
from lib.core.timing import DeviceClock  # noqa: E402

MAX_OVERHEAD = 0.02


def load_times(model_id: str) -> tuple[float, float]:
    """First load (conversion into an empty cache) and cached load, in seconds."""
    import os
    previous = os.environ.get(paths.CACHE_ENV)
    with tempfile.TemporaryDirectory() as fresh:
        os.environ[paths.CACHE_ENV] = fresh
        backend = backends.for_model(model_id)
        first = backend.load(model_id, "cpu", "float32").load_s
        cached = backend.load(model_id, "cpu", "float32").load_s
    if previous is None:
        del os.environ[paths.CACHE_ENV]
    else:
        os.environ[paths.CACHE_ENV] = previous
    return first, cached


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-load-times", action="store_true")
    parser.add_argument("--skip-worker", action="store_true")
    args = parser.parse_args()

    import torch

    if not args.skip_load_times:
        first, cached = load_times(args.model)
        print(f"load time: first (GGUF conversion) {first:.1f} s, cached {cached:.2f} s, "
              f"ratio {first / cached:.0f}x")

    spec = RunSpec(model_id=args.model, device=args.device, dtype=args.dtype,
                   prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens,
                   threads=args.threads)
    torch.set_num_threads(spec.threads)
    backend = backends.for_model(spec.model_id)
    loaded = backend.load(spec.model_id, spec.device, spec.dtype)
    kwargs = backend.session(loaded, spec).kwargs          # the exact arguments a run uses
    clock = DeviceClock(spec.device)
    plain, streamed = [], []

    def timed(streamer=None) -> float:
        start = clock.now()
        if streamer is None:
            loaded.model.generate(**kwargs)
        else:
            loaded.model.generate(**kwargs, streamer=streamer)
        return clock.now() - start

    with torch.inference_mode():
        timed(), timed(TokenTimestamps(clock))        # warm-up, both paths
        for index in range(args.pairs):
            order = (False, True) if index % 2 == 0 else (True, False)
            for with_streamer in order:
                if with_streamer:
                    streamed.append(timed(TokenTimestamps(clock)))
                else:
                    plain.append(timed())
    ratio = statistics.median(streamed) / statistics.median(plain)
    print(f"{spec.model_id} {spec.device} {spec.dtype}, prompt {spec.prompt_tokens}, "
          f"{spec.new_tokens} new tokens, {spec.threads} thread(s), {args.pairs} pairs")
    print(f"plain generate:    median {statistics.median(plain) * 1000:.1f} ms")
    print(f"with timestamps:   median {statistics.median(streamed) * 1000:.1f} ms")
    verdict = "OK" if ratio - 1 < MAX_OVERHEAD else "OVER BUDGET"
    print(f"overhead ratio: {ratio:.4f} ({(ratio - 1) * 100:+.2f}%, budget "
          f"{MAX_OVERHEAD:.0%}) {verdict}")
    if not args.skip_worker:
        worker_overhead(backend, loaded, spec, args.pairs)
    return 0


def worker_overhead(backend, loaded, spec: RunSpec, pairs: int) -> None:
    """Alternate one timed repetition in this process and one in the worker, same spec."""
    from lib.measure import engine
    from lib.core.stats import repetition_metrics
    from lib.measure.worker import WorkerModel

    local = engine.Measurer(backend, loaded, spec)
    local.warm_up()
    worker = WorkerModel(backend, spec.model_id, spec.device, spec.dtype)
    try:
        worker.start(spec)
        here, there = [], []
        calls = ((here, local.repeat), (there, lambda: worker.repeat(spec)))
        for index in range(pairs):
            for samples, call in (calls if index % 2 == 0 else calls[::-1]):
                samples.append(repetition_metrics(call(), spec.batch_size, spec.prompt_tokens))
    finally:
        worker.close()
    print(f"worker process vs in-process, {pairs} alternating repetitions each:")
    for metric in ("ttft_s", "tpot_s"):
        inside = statistics.median(r[metric] for r in here)
        outside = statistics.median(r[metric] for r in there)
        ratio = outside / inside
        verdict = "OK" if ratio - 1 < MAX_OVERHEAD else "OVER BUDGET"
        print(f"  {metric}: in-process {inside * 1000:.2f} ms, worker {outside * 1000:.2f} ms, "
              f"ratio {ratio:.4f} ({(ratio - 1) * 100:+.2f}%, budget {MAX_OVERHEAD:.0%}) "
              f"{verdict}")


if __name__ == "__main__":
    sys.exit(main())
