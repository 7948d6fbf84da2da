"""Why an estimate takes as long as it does: the resource that limits it on that hardware.

`why(estimate)` answers the question a live run's explanation answers ("Why it takes this
long"), for a `lib.estimate.estimator.Estimate`: `{"limit": ..., "text": ...}`, where `limit` is one of
`LIMITS` and `text` says, in plain words, what the step does on that hardware, which resource
limits it, its floor (the hardware's own figures, nothing lost) and the estimate beside it.
The phase explained is a decode step (time per output token) when the run has one, else the
prompt's pass. The limit is the estimator's own largest term for that phase
(`Estimate.breakdown`), so the words and the numbers never disagree.
"""

from __future__ import annotations

from typing import Any

from lib.core.metrics import format_bytes, format_operations, format_seconds
from lib.estimate.roofline_words import format_flops_rate

MEMORY_BANDWIDTH, COMPUTE, OVERHEAD = "memory bandwidth", "compute", "overhead"
BUSY_MACHINE, INTERCONNECT = "busy machine", "interconnect"
# The one vocabulary of `why.limit`, estimates and live runs alike; an estimate is never on a
# busy machine (nothing runs), a live run can be.
LIMITS = (MEMORY_BANDWIDTH, COMPUTE, OVERHEAD, BUSY_MACHINE, INTERCONNECT)
# The estimator's terms (lib.estimate.estimator._phase) in that vocabulary.
TERM_LIMITS = {"memory": MEMORY_BANDWIDTH, "compute": COMPUTE, "overhead": OVERHEAD,
               "communication": INTERCONNECT}


def why(estimate) -> dict[str, Any]:
    """`{"limit": one of LIMITS, "text": plain words}` for `estimate` (see the module)."""
    decode = "decode" in estimate.breakdown
    phase = estimate.breakdown["decode" if decode else "prefill"]
    limit = TERM_LIMITS[phase["limited_by"]]
    text = _text(estimate, decode, phase, limit)
    speculated = estimate.speculative
    if decode and speculated:
        text += (f" That is one plain step. With speculative decoding ({speculated['method']}) "
                 f"a step checks {speculated['guesses_per_step']:g} guesses in one pass "
                 f"({format_seconds(speculated['verify_s'])}) and yields "
                 f"{speculated['tokens_per_step']:.2f} tokens on average, so a token costs "
                 f"{format_seconds(speculated['per_token_s'])}.")
    return {"limit": limit, "text": text}


def _text(estimate, decode: bool, phase: dict[str, Any], limit: str) -> str:
    profile, gpus, spec = estimate.hardware, estimate.gpus, estimate.spec
    floor = estimate.floor
    from lib.estimate.hardware import THIS
    on = "On this machine" if profile.id == THIS else \
        f"On {'one' if gpus == 1 else gpus} {profile.name}"
    figures = "measured here" if profile.measured else "its datasheet figure"
    step = "each new token" if decode else f"the {spec.prompt_tokens}-token prompt's pass"
    each = "" if gpus == 1 else " (each device its share)"
    took = (phase["total_s"] if estimate.speculative else estimate.summary["tpot_s"]) \
        if decode else estimate.summary.get("ttft_s", estimate.summary["e2e_s"])
    per = " per token" if decode else ""
    floor_s = floor["tpot_s"] if decode else floor["ttft_s"]
    said = f"estimated {format_seconds(took)}{per}"
    if phase["communication_s"] and limit != INTERCONNECT:
        said += (f", of which {format_seconds(phase['communication_s'])} passes activations "
                 "between the devices")
    if limit == MEMORY_BANDWIDTH:
        moved = floor["decode_bytes"] if decode else floor["prefill_bytes"]
        return (f"{on}, {step} reads {format_bytes(moved)} of weights and KV cache from "
                f"memory{each}: memory bandwidth limits it. At "
                f"{format_bytes(profile.memory_bandwidth_bytes_per_s)}/s ({figures}) that takes "
                "at least "
                f"{format_seconds(floor_s)}{per} (the floor); real engines reach "
                f"{floor_s / phase['memory_s']:.0%} of that speed, so {said}.")
    if limit == COMPUTE:
        flops = floor["decode_flops"] if decode else floor["prefill_flops"]
        return (f"{on}, {step} of a batch of {spec.batch_size} does "
                f"{format_operations(flops)} arithmetic operations{each}: compute limits it, "
                f"not memory. At {format_flops_rate(floor['matmul_flops_per_s'])} ({figures}) "
                f"that takes at least {format_seconds(floor_s)}{per} (the floor); real kernels "
                f"reach only part of that rate, so {said}.")
    if limit == OVERHEAD:
        from lib.models.shapes import shapes
        return (f"{on}, {step} runs {shapes(spec.model_id).layers} layers of small "
                "steps, each launched one after another by the software: that fixed cost, "
                f"about {format_seconds(phase['overhead_s'])}, is longer than the "
                f"{format_seconds(phase['memory_s'])} reading the weights takes, so overhead "
                f"limits it, not the hardware (its floor is {format_seconds(floor_s)}{per}); "
                f"{said}." + ("" if spec.compile == "on" or spec.stack != "transformers" else
                               " Compiling the model (torch.compile) or a native engine cuts "
                               "most of it."))
    return (f"Split over {gpus} x {profile.name}, {step} passes its activations between the "
            f"devices twice per layer over {profile.interconnect or 'their link'}: "
            f"{format_seconds(phase['communication_s'])}, more than each device's "
            f"{format_seconds(phase['memory_s'])} reading its share of the weights, so the "
            f"interconnect limits it; {said}. Fewer devices, where the model fits, pass less.")
