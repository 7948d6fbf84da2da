"""The timed kernels behind `lib.machine.ceilings`: memory bandwidth, matmul throughput per dtype and
the per-layer overhead of an eager decode step, each timed through a clock that waits for the
device (`lib.core.timing.DeviceClock`, or a `ManualClock` in tests).

Every figure is the best of a few samples (`best_rate`): a rate can only be slowed by
interference, never sped up, so the best is the closest to the ceiling. Imports torch; only
`lib.machine.ceilings.measure` imports this module.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import statistics
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from lib.core.errors import RunFailedError
from lib.machine.devices import torch_dtype

MATMUL_DTYPES = ("float32", "bfloat16", "float16", "int8")
# Bandwidth buffers: this many times the last-level cache, and at least BUFFER_MIN_BYTES, so the
# cache holds a sliver of them; never more than 1/BUFFER_MEMORY_SHARE of the free memory each.
LLC_MULTIPLE = 8
BUFFER_MIN_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30, "mps": 256 * 2**20}
BUFFER_MEMORY_SHARE = 8
FALLBACK_LLC_BYTES = 32 * 2**20
# Matmul size: doubled from the device's smallest until the best of two products takes
# GROW_UNTIL_S (big enough for the kernel to reach its speed, and for a thread that waits for
# a busy core not to dominate; small enough to stay quick), at most the device's largest.
MATMUL_SIZES = (256, 512, 1024, 2048, 4096, 8192)
MATMUL_SIZE_RANGE = {"cpu": (512, 2048), "cuda": (1024, 8192), "mps": (512, 4096)}
GROW_UNTIL_S = 0.005
GROW_TIMINGS = 2
# Every figure is the best of at least MIN_REPEATS samples, more while within KERNEL_BUDGET_S.
# A sample repeats its kernel until it lasts SAMPLE_S, so a GPU's launch latency doesn't count.
MIN_REPEATS, MAX_REPEATS = 3, 10
KERNEL_BUDGET_S = 0.15
SAMPLE_S = 0.005
MAX_CALLS_PER_SAMPLE = 1000
# Layer overhead: decode steps of two models that differ only in layer count, interleaved in
# rounds (the best median of each model) so a burst of load elsewhere hits both alike.
OVERHEAD_LAYERS = (2, 10)
OVERHEAD_PROMPT_TOKENS = 8
OVERHEAD_WARMUP_STEPS = 3
OVERHEAD_STEPS = 16
OVERHEAD_ROUNDS = 3

Progress = Callable[[str, float], None]     # (what is being measured, fraction done)


def measure_all(device: str, clock, tell: Progress, notes: list[str],
                details: dict) -> tuple[float, dict[str, float], float]:
    """Bandwidth, FLOP/s per dtype and per-layer overhead, in that order; a dtype the device
    can't multiply in is left out with the reason in `notes`."""
    steps = len(MATMUL_DTYPES) + 2
    flops: dict[str, float] = {}
    with torch.inference_mode():
        tell("memory bandwidth", 0.0)
        bandwidth = memory_bandwidth(device, clock, details)
        for done, dtype in enumerate(MATMUL_DTYPES, start=1):
            tell(f"{dtype} matrix products", done / steps)
            try:
                flops[dtype] = matmul_flops(device, dtype, clock, details)
            except (RuntimeError, NotImplementedError, TypeError, AttributeError) as exc:
                if dtype == "float32":
                    raise
                notes.append(f"{dtype}: not measured ({first_line(exc)}).")
    if "int8" in flops:
        notes.append("int8: " + ("dynamic-quantized Linear (what --dtype int8 runs)"
                                 if device == "cpu" else "torch._int_mm"))
    tell("per-layer overhead of a decode step", (steps - 1) / steps)
    overhead = layer_overhead(device, clock, details)
    return bandwidth, flops, overhead


@contextlib.contextmanager
def failures_explained(device: str):
    """A kernel that fails (out of memory, a driver error) ends measuring with a message that
    says what to do, never a traceback."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        error = RunFailedError(
            f"Measuring the {device}'s ceilings failed ({first_line(exc)}). Close programs "
            "that use it and measure again.")
        error.cli_hint = "`python -m lib machine --refresh` measures again."
        raise error from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def best_rate(work: float, call: Callable[[], Any], clock) -> float:
    """`work` per second of `call` at its best: at least MIN_REPEATS samples, more while within
    KERNEL_BUDGET_S; the first call is never timed (allocation, kernel selection)."""
    call()
    start = clock.now()
    call()
    single_s = max(clock.now() - start, 1e-7)
    calls = max(1, min(MAX_CALLS_PER_SAMPLE, math.ceil(SAMPLE_S / single_s)))
    best_s, samples, began = math.inf, 0, clock.now()
    while samples < MIN_REPEATS or (samples < MAX_REPEATS
                                    and clock.now() - began < KERNEL_BUDGET_S):
        start = clock.now()
        for _ in range(calls):
            call()
        best_s = min(best_s, (clock.now() - start) / calls)
        samples += 1
    return work / best_s


def memory_bandwidth(device: str, clock, details: dict) -> float:
    """Bytes read + written per second: the better of a copy and a triad at their best."""
    size = buffer_bytes(device)
    elements = size // 4
    a, b, c = (torch.empty(elements, dtype=torch.float32, device=device) for _ in range(3))
    # Touch every page first: the first write to a page is a page fault, not bandwidth.
    a.zero_()
    b.fill_(1.0)
    c.fill_(2.0)
    copy = best_rate(2 * elements * 4, lambda: a.copy_(b), clock)
    triad = best_rate(3 * elements * 4, lambda: torch.add(b, c, alpha=3.0, out=a), clock)
    details.update(buffer_bytes=elements * 4, copy_bytes_per_s=copy, triad_bytes_per_s=triad)
    return max(copy, triad)


def buffer_bytes(device: str) -> int:
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        cache = torch.cuda.get_device_properties(0).L2_cache_size
    else:
        import psutil

        free, cache = psutil.virtual_memory().available, last_level_cache_bytes()
    wanted = max(LLC_MULTIPLE * cache, BUFFER_MIN_BYTES[device])
    return int(min(wanted, free // BUFFER_MEMORY_SHARE))


def last_level_cache_bytes() -> int:
    """The CPU's largest cache (Linux sysfs), else FALLBACK_LLC_BYTES."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    largest = 0
    try:
        for index in root.glob("index*"):
            text = (index / "size").read_text().strip().upper()
            units = {"K": 2**10, "M": 2**20, "G": 2**30}
            number = int(text.rstrip("KMG")) * units.get(text[-1:], 1)
            largest = max(largest, number)
    except (OSError, ValueError):
        return FALLBACK_LLC_BYTES
    return largest or FALLBACK_LLC_BYTES


def matmul_flops(device: str, dtype: str, clock, details: dict) -> float:
    """Dense FLOP/s of one square product in `dtype`, at the size `grown_size` picks."""
    def product_of(size: int) -> Callable[[], Any]:
        if dtype != "int8":
            x = torch.randn(size, size, device=device).to(torch_dtype(dtype))
            w = torch.randn(size, size, device=device).to(torch_dtype(dtype))
            return lambda: F.linear(x, w)
        if device == "cuda":
            x = torch.randint(-128, 128, (size, size), dtype=torch.int8, device=device)
            w = torch.randint(-128, 128, (size, size), dtype=torch.int8, device=device)
            return lambda: torch._int_mm(x, w)
        if device != "cpu":
            raise NotImplementedError(f"torch has no int8 matrix product on {device}")
        return quantized_linear(size)

    size = grown_size(device, product_of, clock)
    details.setdefault("matmul_sizes", {})[dtype] = size
    return best_rate(2 * size**3, product_of(size), clock)


def quantized_linear(size: int) -> Callable[[], Any]:
    """The int8 kernel the app's int8 runs use: torch.ao's dynamic-quantized Linear."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    if not {"x86", "fbgemm", "qnnpack", "onednn"} & set(torch.backends.quantized.supported_engines):
        raise NotImplementedError("this torch build has no int8 CPU kernels")
    with warnings.catch_warnings():          # torch.ao announces its deprecation on every call
        warnings.simplefilter("ignore")
        layer = DynamicLinear(size, size)
    x = torch.randn(size, size)

    def product():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return layer(x)
    return product


def grown_size(device: str, product_of: Callable[[int], Callable[[], Any]], clock) -> int:
    """The first size whose product takes GROW_UNTIL_S (best of GROW_TIMINGS), or the
    device's largest."""
    smallest, largest = MATMUL_SIZE_RANGE.get(device, MATMUL_SIZE_RANGE["cpu"])
    size = smallest
    for size in (s for s in MATMUL_SIZES if smallest <= s <= largest):
        product = product_of(size)
        product()
        best_s = math.inf
        for _ in range(GROW_TIMINGS):
            start = clock.now()
            product()
            best_s = min(best_s, clock.now() - start)
        if best_s >= GROW_UNTIL_S:
            break
    return size


def layer_overhead(device: str, clock, details: dict) -> float:
    """Seconds per decoder layer of an eager decode step: the slope between two tiny models."""
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    dtype = torch.bfloat16 if device == "cuda" else torch.float32   # MPS: bf16 not everywhere
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = {layers: LlamaForCausalLM(LlamaConfig(
                hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                max_position_embeddings=512, attn_implementation="sdpa")).to(device, dtype).eval()
                for layers in OVERHEAD_LAYERS}
    finally:
        hf_logging.set_verbosity(verbosity)
    step_s = {layers: math.inf for layers in OVERHEAD_LAYERS}
    for _round in range(OVERHEAD_ROUNDS):
        for layers, model in models.items():
            step_s[layers] = min(step_s[layers],
                                 decode_step_s(model, device, clock, DynamicCache))
    few, many = OVERHEAD_LAYERS
    details["layer_step_s"] = {str(layers): seconds for layers, seconds in step_s.items()}
    return max(0.0, (step_s[many] - step_s[few]) / (many - few))


def decode_step_s(model, device: str, clock, cache_class) -> float:
    """Median seconds of one-token decode steps after a short prompt, as the app's loop runs
    them (a DynamicCache, the argmax fed back)."""
    params = inspect.signature(model.forward).parameters
    # transformers 5 renamed `past_key_values` to `cache`; the old name goes through a
    # deprecation shim on every call, which would be timed.
    cache_arg = "cache" if "cache" in params else "past_key_values"
    cache = cache_class(config=model.config)
    tokens = torch.zeros(1, OVERHEAD_PROMPT_TOKENS, dtype=torch.long, device=device)
    times = []
    with torch.inference_mode():
        for step in range(OVERHEAD_WARMUP_STEPS + OVERHEAD_STEPS + 1):
            start = clock.now()
            logits = model(input_ids=tokens, use_cache=True, **{cache_arg: cache}).logits
            tokens = logits[:, -1:].argmax(dim=-1)
            end = clock.now()
            if step > OVERHEAD_WARMUP_STEPS:          # step 0 is the prefill
                times.append(end - start)
    return statistics.median(times)

