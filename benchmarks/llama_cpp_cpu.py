"""llama.cpp on this CPU, behind the estimator's "native" constants (lib/estimate/estimator.py):
SmolLM2-135M's shipped Q4_1 GGUF, requantized once into F32, F16, Q8_0 and Q4_K_M (the
weights' values don't matter to the time, only their format), each decoding 32 tokens after a
64-token prompt at batch 1, interleaved over rounds. For each format it prints the file size,
the median prefill and decode step, the GB/s the decode step streams its file at and its share
of this machine's measured bandwidth (CPU_BANDWIDTH_FRACTION["native"], from the F32 and F16
steps), the share of the float32 matmul ceiling its arithmetic reaches
(NATIVE_CPU_MIN_COMPUTE_FRACTION, from the block formats), and the estimate (profile `this`)
beside it. Needs llama-cpp-python (`scripts/setup.sh --stacks`).

    .venv/bin/python benchmarks/llama_cpp_cpu.py [--rounds 2] [--folder /tmp/llama-cpp-formats]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.machine import ceilings, activity
from lib.estimate import estimator, roofline
from lib.models.catalog import get_entry, package_file  # noqa: E402
from lib.models.shapes import shapes  # noqa: E402
from lib.core.spec import RunSpec, default_threads  # noqa: E402

MODEL = "smollm2-135m-instruct"
PROMPT_TOKENS, NEW_TOKENS = 64, 32
FORMATS = {"float32": "ALL_F32", "float16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0",
           "q4_k_m": "MOSTLY_Q4_K_M", "q4_1": None}        # None: the shipped file


def gguf_files(folder: Path) -> dict[str, Path]:
    import llama_cpp

    shipped = package_file(get_entry(MODEL))
    files = {}
    for dtype, ftype in FORMATS.items():
        if ftype is None:
            files[dtype] = shipped
            continue
        path = folder / f"{MODEL}-{dtype}.gguf"
        if not path.exists():
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{ftype}")
            params.allow_requantize = True
            if llama_cpp.llama_model_quantize(str(shipped).encode(), str(path).encode(),
                                              ctypes.byref(params)):
                raise SystemExit(f"llama.cpp could not write {path}")
        files[dtype] = path
    return files


def time_file(path: Path, threads: int) -> tuple[float, list[float]]:
    """(prefill seconds, decode step seconds) of one call with exact lengths."""
    import numpy as np
    from lib.measure.backends.llama_cpp import open_gguf

    llm = open_gguf(path, 256, threads)
    prompt = [1 + index % 1000 for index in range(PROMPT_TOKENS)]
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - started
    token, steps = int(np.argmax(llm.scores[llm.n_tokens - 1])), []
    for _ in range(NEW_TOKENS - 1):
        started = time.perf_counter()
        llm.eval([token])
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        steps.append(time.perf_counter() - started)
    return prefill_s, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir())
                        / "llama-cpp-formats")
    args = parser.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise SystemExit("llama-cpp-python is not installed: run scripts/setup.sh --stacks")
    args.folder.mkdir(parents=True, exist_ok=True)
    threads = default_threads()
    limits = ceilings.available()["cpu"]
    files = gguf_files(args.folder)
    prefills = {dtype: [] for dtype in files}
    steps = {dtype: [] for dtype in files}
    with activity.watch() as load:      # llama.cpp's threads spin: sharing cores hurts
        for _ in range(args.rounds):
            for dtype, path in files.items():
                prefill_s, step_s = time_file(path, threads)
                prefills[dtype].append(prefill_s)
                steps[dtype] += step_s
    bandwidth = limits.memory_bandwidth_bytes_per_s
    float32 = limits.peak_flops("float32")
    print(f"{threads} threads; measured bandwidth {bandwidth / 1e9:.1f} GB/s, float32 matmul "
          f"{float32 / 1e9:.0f} GFLOP/s")
    print(f"{'format':<9}{'file MB':>9}{'prefill ms':>12}{'decode ms':>11}{'GB/s':>7}"
          f"{'of bw':>7}{'of f32':>8}{'est. prefill':>14}{'est. decode':>13}")
    for dtype, path in files.items():
        spec = RunSpec(model_id=MODEL, stack="llama.cpp", dtype=dtype, threads=threads,
                       prompt_tokens=PROMPT_TOKENS, new_tokens=NEW_TOKENS)
        flops = roofline.costs(shapes(MODEL), spec).decode.flops
        step_s = statistics.median(steps[dtype])
        streamed = path.stat().st_size / step_s
        predicted = estimator.estimate(spec, "this").summary
        print(f"{dtype:<9}{path.stat().st_size / 1e6:>9.1f}"
              f"{statistics.median(prefills[dtype]) * 1e3:>12.1f}{step_s * 1e3:>11.2f}"
              f"{streamed / 1e9:>7.1f}{streamed / bandwidth:>7.0%}"
              f"{flops / step_s / float32:>8.0%}{predicted['ttft_s'] * 1e3:>11.1f} ms"
              f"{predicted['tpot_s'] * 1e3:>10.2f} ms")
    busy = load.other_cpu_percent
    print(f"other programs' CPU share meanwhile: {'?' if busy is None else f'{busy:.0f}%'}"
          + (" -- too busy, the figures are low: rerun when it is quiet" if busy and busy > 25
             else ""))


if __name__ == "__main__":
    main()
