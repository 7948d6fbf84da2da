"""Whether an estimated run fits in the memory of n devices of a hardware profile, in words.

`memory_need` is the whole model's and run's memory (`lib.estimate.memory`'s estimate, weights
split over the devices, float8 weights at 1 byte, a latent KV cache where the model has one);
`MemoryNeed.devices_needed` the fewest devices that hold it with MEMORY_HEADROOM_FRACTION of each
kept free; `verdict` says so in a sentence, with the command line's or a page's advice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lib.core.metrics import format_bytes
from lib.core.spec import MAX_DEVICES, RunSpec
from lib.estimate import memory
from lib.estimate.hardware import Hardware
from lib.models.catalog import get_entry
from lib.models.shapes import Shapes

# What each device keeps free for its runtime, allocator and fragmentation: vLLM's default
# gpu_memory_utilization is 0.9 (docs.vllm.ai, engine arguments).
MEMORY_HEADROOM_FRACTION = 0.10


@dataclass(frozen=True)
class MemoryNeed:
    """Memory of the whole model and run, and what each of n devices holds of it."""
    weights_bytes: float
    kv_cache_bytes: float
    working_bytes: float          # activations and runtime margin: every device holds its own

    def per_device(self, devices: int) -> float:
        return (self.weights_bytes + self.kv_cache_bytes) / devices + self.working_bytes

    def devices_needed(self, usable_bytes: float) -> int | None:
        spare = usable_bytes - self.working_bytes
        if spare <= 0:
            return None
        needed = max(1, math.ceil((self.weights_bytes + self.kv_cache_bytes) / spare))
        return needed if needed <= MAX_DEVICES else None


def memory_need(shape: Shapes, spec: RunSpec, float8: bool, encoder: bool) -> MemoryNeed:
    static = spec.kv_cache == "static" or spec.compile == "on"
    run = memory.estimate(shape, spec.dtype, spec.batch_size, spec.prompt_tokens,
                          0 if encoder else spec.new_tokens, weights_loaded=True,
                          attention=spec.attention, kv_cache="static" if static else "dynamic",
                          stack=spec.stack)
    weights = shape.parameters if float8 else shape.weight_bytes(spec.dtype)
    kv_cache = float(run.kv_cache_bytes)
    if shape.latent_kv_elements_per_token and shape.kv_elements_per_token:
        # Multi-head latent attention: serving engines cache the compressed latent, as
        # lib.estimate.roofline counts it, not the decompressed keys and values transformers keeps.
        kv_cache *= shape.latent_kv_elements_per_token / shape.kv_elements_per_token
    return MemoryNeed(float(weights), kv_cache, float(run.working_bytes))


def devices_words(profile: Hardware, gpus: int) -> str:
    """'8 x NVIDIA H200 SXM 141GB', or the profile's name alone for one device."""
    return profile.name if gpus == 1 else f"{gpus} x {profile.name}"


def verdict(model: str, spec: RunSpec, weights_dtype: str, profile: Hardware, gpus: int,
             need: MemoryNeed, usable: float, needed: int | None, app: bool = False) -> str:
    """The memory verdict in words; `app`: its advice for a page, not a command line."""
    what = (f"{model} in {weights_dtype}, batch {spec.batch_size} x {spec.total_tokens:,} "
            "tokens")
    total = need.weights_bytes + need.kv_cache_bytes
    several = gpus > 1 or needed is None or needed > gpus
    split = ", split over the devices," if several else ""
    holds = (f"weights {format_bytes(need.weights_bytes)} + KV cache "
             f"{format_bytes(need.kv_cache_bytes)}{split} + working memory "
             f"{format_bytes(need.working_bytes)}{' on each' if several else ''}")
    room = (f"{format_bytes(usable)} usable{' on each' if several else ''} "
            f"({MEMORY_HEADROOM_FRACTION:.0%} of {format_bytes(profile.memory_bytes)} kept "
            "free)")
    if needed is None:
        return (f"{what} does not fit on any number of {profile.name}: {holds}, and "
                f"{room}. Choose a smaller batch, prompt or model.")
    if needed <= gpus:
        fits = (f"{what} fits on {devices_words(profile, gpus)}: "
                f"{'each holds' if gpus > 1 else 'it needs'} about "
                f"{format_bytes(need.per_device(gpus))} ({holds}; {room})")
        return fits + (f"; {needed} would do." if needed < gpus else ".")
    lacks = (f"{what} does NOT fit on {devices_words(profile, gpus)}: it needs "
             f"{format_bytes(total)} ({holds}), and {room}.")
    if profile.interconnect_bytes_per_s is None:
        return (f"{lacks} {profile.name} is a single device: choose a smaller batch, prompt "
                "or model, or hardware with more memory.")
    float8 = weights_dtype != "float8" and get_entry(spec.model_id).published_dtype == "float8"
    advice = (f"set the number of devices to {needed}" + (
        " (or choose float8 weights, as it is published)" if float8 else "")) if app else \
        (f"use --gpus {needed}" + (" (or --dtype float8, as it is published)" if float8 else ""))
    return f"{lacks} It needs at least {needed} of them: {advice}."


def min_devices(profile: Hardware, needed: int | None) -> int | None:
    """The fewest devices that hold the run, of a profile that can be several (`min_gpus`)."""
    if needed is not None and needed > 1 and profile.interconnect_bytes_per_s is None:
        return None
    return needed
