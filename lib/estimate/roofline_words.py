"""The roofline in plain words: what bounds each phase of a run, with the numbers.

`sentences(costs, floor, ...)` says for each phase (`lib.estimate.roofline`'s costs and floors)
whether memory traffic or arithmetic bounds it, the least time that takes at the device's
figures, how far a measured time is from it, and where the rest went when overhead bounds it.
"""

from __future__ import annotations

from lib.core.metrics import format_bytes, format_operations, format_seconds
from lib.core.stacks import STACKS, TRANSFORMERS
from lib.estimate.roofline import MEMORY, OVERHEAD, Costs, Floor, PhaseCost, bound


def format_bandwidth(bytes_per_s: float) -> str:
    return f"{format_bytes(bytes_per_s)}/s"


def format_flops_rate(flops_per_s: float) -> str:
    return f"{format_operations(flops_per_s)} operations a second"


def sentences(costs: Costs, floor: Floor, measured_ttft_s: float | None,
              measured_tpot_s: float | None, bandwidth: float, flops: float,
              busy: bool = False) -> list[str]:
    """What bounds each phase, in plain words with the numbers, e.g. "Each new token reads all
    538.0 MB of weights: at 20.0 GB/s that takes at least 26.9 ms; this run took 40.0 ms, 67%
    of the way to the floor." An overhead-bound phase gets a second sentence saying where the
    rest of the time went; `busy` (other programs took the CPU meanwhile): that the rest can't
    be put down to overhead."""
    said = _phase_sentences(
        "prefill", costs, costs.prefill, floor.prefill_memory_s, floor.prefill_compute_s,
        measured_ttft_s, bandwidth, flops, busy)
    if costs.has_decode:
        said += _phase_sentences(
            "decode", costs, costs.decode, floor.decode_memory_s, floor.decode_compute_s,
            measured_tpot_s, bandwidth, flops, busy)
    return said


def _phase_sentences(phase: str, costs: Costs, cost: PhaseCost, memory_s: float,
                     compute_s: float, measured_s: float | None, bandwidth: float,
                     flops: float, busy: bool = False) -> list[str]:
    physical = max(memory_s, compute_s)
    limit = bound(memory_s, compute_s, None)
    requests = f" for each of the {costs.batch_size} requests" if costs.batch_size > 1 else ""
    per_device = f" on each of the {costs.devices} devices" if costs.devices > 1 else ""
    if phase == "prefill":
        subject = f"Reading the {costs.prompt_tokens:,}-token prompt{requests}"
        result = "the first token came after" if costs.has_decode else "this run took"
    else:
        subject = "Each new token" if costs.batch_size == 1 else \
            f"Each decode step (one new token{requests})"
        result = "this run took"
    if limit == MEMORY:
        what = f"{format_bytes(cost.weight_bytes)} of weights (only the experts it uses)" \
            if costs.moe else f"all {format_bytes(cost.weight_bytes)} of weights"
        if cost.kv_bytes >= 0.005 * cost.weight_bytes:
            what += f" and {format_bytes(cost.kv_bytes)} of KV cache (what it remembers)"
        verb = "reads" if phase == "decode" else "has to read"
        sentence = (f"{subject} {verb} {what}{per_device}: at {format_bandwidth(bandwidth)} "
                    f"that takes at least {format_seconds(physical)}")
    else:
        sentence = (f"{subject} takes {format_operations(cost.flops)} arithmetic operations"
                    f"{per_device}: at {format_flops_rate(flops)} that takes at least "
                    f"{format_seconds(physical)}")
    if measured_s is None:
        return [sentence + "."]
    if measured_s < physical:
        return [sentence + f"; {result} {format_seconds(measured_s)}, faster than this floor, "
                "so the ceilings it comes from are too low for this case: measure them again."]
    sentence += (f"; {result} {format_seconds(measured_s)}, {physical / measured_s:.0%} of the "
                 "way to the floor.")
    if bound(memory_s, compute_s, measured_s) != OVERHEAD:
        return [sentence]
    rest = measured_s - physical
    per_layer = rest / costs.layers if costs.layers else 0.0
    step = "for the prompt" if phase == "prefill" else \
        "per token" if costs.batch_size == 1 else "per step"
    if busy:
        # Other programs' turns on the CPU look exactly like overhead from here: don't blame it.
        return [sentence,
                f"The arithmetic and memory traffic would allow {format_seconds(physical)} "
                f"{step}. Other programs were using the CPU meanwhile, so the other "
                f"{format_seconds(rest)} can't be put down to "
                f"{_overhead_words(costs.stack)}: run again on a quiet machine to see how much "
                "of it is."]
    return [sentence,
            f"That is overhead-bound: the arithmetic and memory traffic would allow "
            f"{format_seconds(physical)} {step}; the other {format_seconds(rest)} is mostly "
            f"{_overhead_words(costs.stack)}, about {format_seconds(per_layer)} for each of "
            f"the {costs.layers} layers."]


def _overhead_words(stack: str) -> str:
    """What a stack's fixed cost per layer is made of, in words."""
    if stack == TRANSFORMERS:
        return "Python and kernel-launch overhead"
    return (f"{STACKS[stack].label}'s own fixed work per operation (waking and synchronizing its "
            "threads, dequantizing, small steps between the big products)")
