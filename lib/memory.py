"""Memory: what a run will need (estimated before it starts) and what it used (measured).

The estimate is deliberately pessimistic: weights, the KV cache for batch x (prompt + output)
tokens, the largest activations of the prefill (assuming attention scores are materialized, as
torch's fallback path does) and a fixed margin. `guard()` compares it with memory free right now
and raises `MemoryGuardError` with the numbers and a suggestion, before anything is allocated:
being refused is better than having the operating system kill the app.

Measured peak memory is defined as in DESIGN.md: process RSS high-water mark on CPU (reset before
the run through /proc/self/clear_refs, so earlier runs don't count), and
`torch.cuda.max_memory_allocated` after a reset on CUDA.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import psutil

from lib.errors import MemoryGuardError
from lib.metrics import format_bytes

MARGIN_BYTES = 512 * 2**20          # the Python process, allocator slack, tokenizer, streamer
MARGIN_FRACTION = 0.10              # plus 10% of everything estimated
# Bytes per number of activations and KV cache. int8 (dynamic quantization) keeps activations
# and the KV cache in float32; only Linear weights are int8.
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 4}


@dataclass(frozen=True)
class Shapes:
    """The architecture numbers the estimate needs (from a meta-device build of the config)."""
    parameters: int
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    active_parameters: int | None = None       # used per token (mixtures of experts); else all
    linear_parameters: int = 0                 # weights in nn.Linear layers (int8 quantizes these)
    untied_linear_parameters: int = 0          # ... not shared with an embedding
    context_length: int = 0
    kv_elements_per_token: int | None = None   # keys + values over all layers, one token
    latent_kv_elements_per_token: int | None = None   # MLA: what a latent-caching engine keeps

    def kv_bytes_per_token(self, dtype: str) -> int:
        """Keys and values, for every layer, for one token of one sequence."""
        elements = self.kv_elements_per_token
        if elements is None:
            elements = 2 * self.layers * self.kv_heads * self.head_dim
        return elements * DTYPE_BYTES[dtype]

    def weight_bytes(self, dtype: str) -> int:
        """Resident weights once loaded (int8: quantized Linear weights, the rest float32)."""
        if dtype == "int8":
            return (self.parameters - self.untied_linear_parameters) * 4 + self.linear_parameters
        return self.parameters * DTYPE_BYTES[dtype]

    def load_peak_bytes(self, dtype: str) -> int:
        """Most memory while loading: int8 first loads float32, then quantizes a copy."""
        if dtype == "int8":
            return self.parameters * 4 + self.linear_parameters
        return self.weight_bytes(dtype)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    margin_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.margin_bytes


def estimate(shapes: Shapes, dtype: str, batch_size: int, prompt_tokens: int, new_tokens: int,
             weights_loaded: bool = False) -> MemoryEstimate:
    """Upper estimate of the memory one run adds. `weights_loaded`: weights are already resident."""
    width = DTYPE_BYTES[dtype]
    weights = 0 if weights_loaded else shapes.load_peak_bytes(dtype)
    kv = shapes.kv_bytes_per_token(dtype) * batch_size * (prompt_tokens + new_tokens)
    tokens = batch_size * prompt_tokens
    attention_scores = batch_size * shapes.attention_heads * prompt_tokens * prompt_tokens * width
    mlp = 3 * tokens * shapes.intermediate_size * width
    hidden = 6 * tokens * shapes.hidden_size * width
    logits = batch_size * shapes.vocab_size * 4 * 4   # float32 scores, a few copies per step
    activations = attention_scores + mlp + hidden + logits
    margin = MARGIN_BYTES + int(MARGIN_FRACTION * (weights + kv + activations))
    return MemoryEstimate(weights, kv, activations, margin)


def free_bytes(device: str) -> int:
    """Memory that can be allocated on `device` right now without pushing anything out."""
    if device == "cuda":
        import torch
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    # MPS shares the system memory.
    return int(psutil.virtual_memory().available)


RUN_ADVICE = "Try a smaller batch, a shorter prompt or output, bfloat16, or a smaller model."


def guard(need: MemoryEstimate, device: str, what: str, advice: str = RUN_ADVICE) -> None:
    """Refuse `what` (a phrase like 'batch 64 x 8192 tokens') when it would not fit."""
    available = free_bytes(device)
    if need.total_bytes <= available:
        return
    raise MemoryGuardError(
        f"Not enough memory for {what}: it needs about {format_bytes(need.total_bytes)} "
        f"(weights {format_bytes(need.weights_bytes)}, KV cache {format_bytes(need.kv_cache_bytes)}, "
        f"working memory {format_bytes(need.activations_bytes + need.margin_bytes)}) but only "
        f"{format_bytes(available)} is free on {device}. {advice}")


# --- measured peak -----------------------------------------------------------------------------

class PeakMemory:
    """Result holder filled when the `track_peak` block ends.

    `start_bytes` is only set where "peak - start" means what the block added: on CUDA (the
    allocator counts live tensors). On CPU the C allocator keeps freed memory for reuse, so after
    a warm-up the RSS barely moves and the difference would read as ~0.
    """
    peak_bytes: int | None = None
    start_bytes: int | None = None
    method: str = ""


@contextlib.contextmanager
def track_peak(device: str):
    """Measure peak memory of the block. Yields a `PeakMemory` filled on exit."""
    result = PeakMemory()
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result.start_bytes = torch.cuda.memory_allocated()
        result.method = "GPU memory held by tensors (torch.cuda.max_memory_allocated)"
        yield result
        torch.cuda.synchronize()
        result.peak_bytes = torch.cuda.max_memory_allocated()
        return
    resettable = _reset_rss_peak()
    result.method = ("whole process memory (RSS), highest point" if resettable
                     else "whole process memory (RSS), at the end")
    yield result
    hwm = _read_vm_hwm() if resettable else None
    result.peak_bytes = hwm if hwm is not None else psutil.Process().memory_info().rss


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_vm_hwm() is not None
    except OSError:
        return False


def _read_vm_hwm() -> int | None:
    if not os.path.exists("/proc/self/status"):
        return None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None
