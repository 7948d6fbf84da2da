"""The roofline: the least time a run could take on a device, and how far a measurement is from it.

A forward pass must at least move its bytes through memory (the weights it multiplies, the KV
cache it reads and writes) and do its arithmetic; neither can go faster than the device's
sustained memory bandwidth and matmul throughput (`lib.machine.ceilings`). So each phase has a floor,
max(bytes / bandwidth, FLOPs / peak), and the phase is memory- or compute-bound by whichever term
is larger. A measurement far above both floors (more than `OVERHEAD_RATIO` times) is
overhead-bound: Python, kernel launches and framework bookkeeping, not physics, set its speed.

What `costs()` counts, per phase (prefill: the whole prompt of the whole batch; decode: one step
for the whole batch, at the mean context prompt + new_tokens / 2):
- weights read once per forward pass, at the dtype's width (int8: nn.Linear weights one byte,
  everything else float32, as `Shapes.weight_bytes`; a block format of llama.cpp or ONNX
  Runtime: its average bits per weight, scales included, `lib.core.stacks.FORMATS`, since those
  engines read the packed blocks and widen them on the fly). Embedding tables no Linear
  shares are only gathered, a row per token, so they are left out; a tied LM head reads its
  table whole and is counted. Mixtures of experts read the experts their tokens use: one token uses
  `experts_per_token` of `experts`, and a step of T tokens touches the expected share
  1 - (1 - k/E)^T of the routed weights (uniform routing), so batch 1 decode reads only the
  active parameters and a long prefill reads nearly all.
- KV cache: prefill writes one entry per prompt token; a decode step reads every entry of its
  context and writes one. MLA counts the latent cache (what a latent-caching engine keeps).
  Its width is the stack's (`lib.core.stacks.kv_bytes_per_number`): transformers keeps the model's
  dtype (float32 for int8), llama.cpp float16 whatever the weights, ONNX Runtime float32.
- FLOPs, 2 per multiply-add: 2 x (parameters a token multiplies) per token, i.e. the active
  parameters less the gathered embeddings; the prefill runs the LM head for the last token only
  (transformers' `logits_to_keep=1`). Attention: QK^T and AV cost 2 x (key + value width) x
  heads x layers per (query, key) pair, i.e. 2 x 2 x layers x heads x head_dim with plain heads;
  a decode step attends to its whole context, a causal prefill to P(P+1)/2 pairs, an encoder to
  P^2.
- encoders run one pass over the prompt and never decode: their decode costs are zero.
- `devices` > 1 is tensor parallelism (experts spread by expert parallelism): weights, KV cache
  and FLOPs per device divided by `devices`. The communication between devices is not here: it
  is the estimator's term (lib.estimate.estimator).
Activations are not counted: at these sizes they are small next to weights, and a floor may be
lower than the truth, never higher. `lib.estimate.roofline_words` says it all in sentences. The arithmetic runs at the rate of `matmul_dtype`'s figure:
a block format's weights are multiplied in the activations' format. Pure arithmetic, no torch:
fast tests assert exact counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lib.core.errors import InvalidSpecError
from lib.core.stacks import (FLOAT32_BYTES, FORMATS, TRANSFORMERS, kv_bytes_per_number,
                             stored_in_blocks)

if TYPE_CHECKING:
    from lib.models.shapes import Shapes
    from lib.core.spec import RunSpec

OVERHEAD_RATIO = 3.0        # measured more than this many times its floor -> "overhead"
MEMORY, COMPUTE, OVERHEAD = "memory", "compute", "overhead"


@dataclass(frozen=True)
class PhaseCost:
    weight_bytes: float      # weights read in this phase (MoE: experts used; per device under TP)
    kv_bytes: float          # KV cache read + written in this phase
    flops: float             # matmul + attention FLOPs (2 per multiply-add)

    @property
    def bytes_moved(self) -> float:
        return self.weight_bytes + self.kv_bytes


@dataclass(frozen=True)
class Costs:
    prefill: PhaseCost       # the whole prompt, whole batch
    decode: PhaseCost        # ONE decode step, whole batch, at the mean context
    layers: int
    batch_size: int = 1
    prompt_tokens: int = 0
    decode_context_tokens: float = 0.0   # keys each decode step attends to, on average
    devices: int = 1
    has_decode: bool = True              # False for encoders: one pass, no tokens generated
    moe: bool = False                    # weights are those of the experts used
    stack: str = TRANSFORMERS            # the engine: whose fixed costs the overhead is

    def to_dict(self) -> dict[str, Any]:
        return {"prefill_bytes": self.prefill.bytes_moved, "prefill_flops": self.prefill.flops,
                "decode_bytes": self.decode.bytes_moved if self.has_decode else None,
                "decode_flops": self.decode.flops if self.has_decode else None}


def costs(shapes: "Shapes", spec: "RunSpec", devices: int = 1,
          weight_bytes_per_param: float | None = None) -> Costs:
    """Bytes moved and FLOPs of `spec`'s prefill and of one decode step (see the module).

    `weight_bytes_per_param` overrides the weights' width (e.g. 1 for FP8 weights as published);
    the KV cache keeps the width `spec.stack` gives it with weights in `spec.dtype`.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise InvalidSpecError(f"devices must be a whole number of at least 1 (got {devices!r}).")
    if weight_bytes_per_param is not None and not (
            isinstance(weight_bytes_per_param, (int, float))
            and math.isfinite(weight_bytes_per_param) and weight_bytes_per_param > 0):
        raise InvalidSpecError("weight_bytes_per_param must be a positive number "
                               f"(got {weight_bytes_per_param!r}).")
    batch, prompt = spec.batch_size, spec.prompt_tokens
    has_decode = bool(shapes.kv_elements_per_token)      # encoders keep no KV cache
    head = shapes.vocab_size * shapes.hidden_size if has_decode else 0
    per_token = _multiplied_parameters(shapes)

    def weights(tokens: int) -> float:
        return _weight_bytes(shapes, spec.dtype, tokens, weight_bytes_per_param) / devices

    kv_per_token = _kv_bytes_per_token(shapes, spec.stack, spec.dtype)
    pair_flops = _attention_flops_per_pair(shapes)
    causal_pairs = prompt * (prompt + 1) / 2 if has_decode else prompt * prompt
    prefill = PhaseCost(
        weight_bytes=weights(batch * prompt),
        kv_bytes=batch * prompt * kv_per_token / devices,
        flops=(2 * batch * (prompt * (per_token - head) + head)
               + batch * pair_flops * causal_pairs) / devices)
    context = prompt + spec.new_tokens / 2
    decode = PhaseCost(0.0, 0.0, 0.0)
    if has_decode:
        decode = PhaseCost(
            weight_bytes=weights(batch),
            kv_bytes=batch * (context + 1) * kv_per_token / devices,
            flops=(2 * batch * per_token + batch * pair_flops * context) / devices)
    return Costs(prefill, decode, shapes.layers, batch, prompt, context if has_decode else 0.0,
                 devices, has_decode, moe=_multiplied_parameters(shapes) < shapes.parameters
                 - _gathered_parameters(shapes), stack=spec.stack)


def _gathered_parameters(shapes: "Shapes") -> int:
    """Embedding tables only gathered from (a row per token). Unknown: the input embedding,
    unless a Linear shares it (a tied LM head, seen as Linear weights shared with an
    embedding)."""
    if shapes.embedding_parameters is not None:
        return shapes.embedding_parameters
    tied = shapes.linear_parameters > shapes.untied_linear_parameters
    return 0 if tied else shapes.vocab_size * shapes.hidden_size


def _multiplied_parameters(shapes: "Shapes") -> int:
    """Parameters one token multiplies: the active ones less the gathered embeddings."""
    active = shapes.active_parameters if shapes.active_parameters is not None \
        else shapes.parameters
    return active - _gathered_parameters(shapes)


def touched_expert_share(shapes: "Shapes", tokens: int) -> float:
    """Expected share of the routed experts' weights that `tokens` tokens use (uniform routing):
    k/E for one token, nearly 1 for many."""
    if not shapes.experts or not shapes.routed_parameters:
        return 1.0
    unused_by_one = 1 - shapes.experts_per_token / shapes.experts
    return 1 - unused_by_one ** tokens


def _weight_bytes(shapes: "Shapes", dtype: str, tokens: int,
                  weight_bytes_per_param: float | None) -> float:
    """Bytes of the weights a forward pass over `tokens` tokens reads."""
    if shapes.experts and shapes.routed_parameters:
        unused = 1 - touched_expert_share(shapes, tokens)
        read = shapes.parameters - _gathered_parameters(shapes) - shapes.routed_parameters * unused
        linear = shapes.linear_parameters - shapes.routed_linear_parameters * unused
    else:       # dense, or experts not described: the active parameters, whatever the batch
        read = _multiplied_parameters(shapes)
        inactive = shapes.parameters - (shapes.active_parameters or shapes.parameters)
        linear = max(0, shapes.linear_parameters - inactive)
    if weight_bytes_per_param is not None:
        return read * weight_bytes_per_param
    if stored_in_blocks(dtype):
        return read * FORMATS[dtype].weight_bits / 8
    if dtype != "int8":
        return read * FORMATS[dtype].number_bytes
    # Dynamic quantization: Linear weights in one byte, the rest float32.
    return (read - linear) * FLOAT32_BYTES + linear


def _kv_bytes_per_token(shapes: "Shapes", stack: str, dtype: str) -> float:
    if shapes.latent_kv_elements_per_token:
        return shapes.latent_kv_elements_per_token * kv_bytes_per_number(stack, dtype)
    return shapes.kv_bytes_per_token(dtype, stack)


def matmul_dtype(stack: str, dtype: str, accelerator: bool) -> str:
    """The number format `stack`'s matrix products run in with weights in `dtype`: whose
    matmul figure (lib.machine.ceilings, lib.estimate.hardware) bounds its arithmetic.

    A block format is only storage: the engine widens each block as it reads it and multiplies
    in its activations' format, float32 on a CPU (llama.cpp, ONNX Runtime) and float16 on an
    accelerator (their GPU kernels). llama.cpp and ONNX Runtime on a CPU multiply float16 weights
    in float32 too (widened as read, not torch's slow float16 path); transformers multiplies in
    the weights' own dtype (int8: its dynamic-quantized kernels, which the int8 figure measures).
    """
    if stored_in_blocks(dtype):
        return "float16" if accelerator else "float32"
    if stack != TRANSFORMERS and not accelerator:
        return "float32"
    return dtype


def _attention_flops_per_pair(shapes: "Shapes") -> float:
    """QK^T and AV for one (query, key) pair over all heads and layers: 2 FLOPs x (key width +
    value width) per head. The KV cache holds keys and values of the KV heads, so its width
    per token, scaled by heads / kv_heads, is that sum over all query heads (MLA included)."""
    if shapes.kv_elements_per_token:
        return 2 * shapes.kv_elements_per_token * shapes.attention_heads / shapes.kv_heads
    return 2 * 2 * shapes.layers * shapes.attention_heads * shapes.head_dim


# --- floors ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Floor:
    prefill_memory_s: float
    prefill_compute_s: float
    decode_memory_s: float
    decode_compute_s: float
    memory_bandwidth_bytes_per_s: float | None = None
    matmul_flops_per_s: float | None = None
    source: str = ""

    @property
    def ttft_s(self) -> float:
        """The prefill's floor (the first token comes out of the prefill's forward pass)."""
        return max(self.prefill_memory_s, self.prefill_compute_s)

    @property
    def tpot_s(self) -> float:
        """One decode step's floor (0 for an encoder, which has none)."""
        return max(self.decode_memory_s, self.decode_compute_s)


def floor(costs: Costs, bandwidth_bytes_per_s: float, flops_per_s: float,
          source: str = "") -> Floor:
    """The least time of each phase: bytes over bandwidth, FLOPs over peak FLOP/s."""
    for name, value in (("bandwidth", bandwidth_bytes_per_s), ("matmul FLOP/s", flops_per_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InvalidSpecError(f"The {name} of a device must be a positive number "
                                   f"(got {value!r}).")
    return Floor(costs.prefill.bytes_moved / bandwidth_bytes_per_s,
                 costs.prefill.flops / flops_per_s,
                 costs.decode.bytes_moved / bandwidth_bytes_per_s,
                 costs.decode.flops / flops_per_s,
                 float(bandwidth_bytes_per_s), float(flops_per_s), source)


def bound(floor_memory_s: float, floor_compute_s: float, measured_s: float | None) -> str:
    """"overhead" when measured is more than OVERHEAD_RATIO x the floor, else whichever of
    memory and compute sets the floor."""
    physical = max(floor_memory_s, floor_compute_s)
    if measured_s is not None and physical > 0 and measured_s > OVERHEAD_RATIO * physical:
        return OVERHEAD
    return MEMORY if floor_memory_s >= floor_compute_s else COMPUTE


def _share(floor_s: float, measured_s: float | None) -> float | None:
    return floor_s / measured_s if measured_s and measured_s > 0 else None


def judge(costs: Costs, floor: Floor, measured_ttft_s: float | None,
          measured_tpot_s: float | None) -> dict[str, Any]:
    """The run document's `floor` object: the floors, the bounds, the achieved fractions
    (None where nothing was measured, and decode fields None for an encoder)."""
    decode = costs.has_decode
    return {
        "ttft_s": floor.ttft_s,
        "tpot_s": floor.tpot_s if decode else None,
        "prefill_bound": bound(floor.prefill_memory_s, floor.prefill_compute_s, measured_ttft_s),
        "decode_bound": bound(floor.decode_memory_s, floor.decode_compute_s, measured_tpot_s)
        if decode else None,
        # achieved bytes/s over the bandwidth = (bytes / bandwidth) / measured
        "decode_bandwidth_utilisation": _share(floor.decode_memory_s, measured_tpot_s)
        if decode else None,
        "prefill_compute_utilisation": _share(floor.prefill_compute_s, measured_ttft_s),
        **costs.to_dict(),
        "memory_bandwidth_bytes_per_s": floor.memory_bandwidth_bytes_per_s,
        "matmul_flops_per_s": floor.matmul_flops_per_s,
        "source": floor.source,
    }
