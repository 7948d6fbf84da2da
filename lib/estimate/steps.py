"""One engine step's time, for a serving simulator: a mixed batch of decode tokens and prefill
chunks on `gpus` devices of a hardware profile.

A continuous-batching engine (vLLM, SGLang) runs one forward pass per step over every token
scheduled in it: one per running request that decodes, plus chunks of prompts being read. Its
time is the estimator's (lib.estimate.estimator), per device:

    weights   read once for all the step's tokens (mixtures of experts: the experts they touch)
    KV cache  every scheduled request's context, read by its attention
    FLOPs     2 x multiplied parameters per token + attention over each token's context
    work      = max(bytes / achieved bandwidth, FLOPs / achieved FLOP/s at that many rows)
    step      = max(launch overhead, work) + tensor-parallel all-reduces   (accelerators)
              = overhead + work                                          (a CPU)

The engine is taken as compiled (CUDA graphs, fused kernels: serving engines' default); on
this machine's own CPU the overhead is the measured eager one when `eager` is asked (what
`transformers serve` runs). `StepCost` computes the constants once, so a step costs a few
arithmetic operations: a simulator calls it tens of thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.core.spec import RunSpec
from lib.estimate import calibration, roofline
from lib.estimate.calibration import FLOAT8
from lib.estimate.hardware import Hardware
from lib.models.shapes import Shapes


@dataclass
class StepCost:
    profile: Hardware
    gpus: int
    shape: Shapes
    spec: RunSpec                    # model, dtype, stack (batch and lengths unused)
    weights: str | None = None       # FLOAT8: weights in 1 byte
    eager: bool = False              # a Python engine's launch overhead (transformers serve)

    def __post_init__(self) -> None:
        spec, shape, profile = self.spec, self.shape, self.profile
        accelerator = profile.kind != "cpu"
        self.products = roofline.matmul_dtype(spec.stack, spec.dtype, accelerator)
        self.engine = "eager" if self.eager else "compiled"
        self.peak_flops = profile.peak_flops(self.weights or self.products)
        self.bandwidth = calibration.bandwidth_fraction(profile, self.engine) * \
            profile.memory_bandwidth_bytes_per_s
        overhead, _words = calibration.layer_overhead(
            profile, None, not self.eager)
        self.overhead_s = shape.layers * overhead
        self.overlap = accelerator
        self.weight_bytes_per_param = 1.0 if self.weights == FLOAT8 else None
        self.kv_per_token = roofline._kv_bytes_per_token(shape, spec.stack, spec.dtype)
        self.per_token_flops = 2 * roofline._multiplied_parameters(shape)
        self.pair_flops = roofline._attention_flops_per_pair(shape)
        self.activation_bytes = 2.0 if accelerator else 4.0
        self._weights_cache: dict[int, float] = {}

    @property
    def kv_bytes_per_token(self) -> float:
        """The KV cache of one token, all layers, over all devices together."""
        return self.kv_per_token

    def _weight_bytes(self, tokens: int) -> float:
        key = min(tokens, 4096)          # past a few thousand tokens every expert is touched
        found = self._weights_cache.get(key)
        if found is None:
            found = roofline._weight_bytes(self.shape, self.spec.dtype, key,
                                           self.weight_bytes_per_param) / self.gpus
            self._weights_cache[key] = found
        return found

    def seconds(self, decode_seqs: int, decode_context: float, prefill_tokens: int,
                prefill_pairs: float) -> float:
        """One step: `decode_seqs` requests writing a token each over `decode_context` tokens of
        context in all; `prefill_tokens` prompt tokens read, with `prefill_pairs` (query, key)
        pairs of attention among them and their earlier context."""
        tokens = decode_seqs + prefill_tokens
        if tokens == 0:
            return 0.0
        memory = (self._weight_bytes(tokens)
                  + (decode_context + prefill_tokens) * self.kv_per_token / self.gpus)
        flops = (self.per_token_flops * tokens
                 + self.pair_flops * (decode_context + prefill_pairs)) / self.gpus
        rate = calibration.compute_fraction(self.profile, tokens, self.products,
                                            self.engine) * self.peak_flops
        work = max(memory / self.bandwidth, flops / rate)
        busy = max(self.overhead_s, work) if self.overlap else self.overhead_s + work
        return busy + self._communication_s(tokens)

    def _communication_s(self, tokens: int) -> float:
        if self.gpus == 1:
            return 0.0
        payload = tokens * self.activation_bytes * self.shape.hidden_size
        one_way = self.profile.interconnect_one_way_bytes_per_s
        per = calibration.ALL_REDUCE_LATENCY_S + 2 * (self.gpus - 1) / self.gpus * payload / one_way
        return calibration.ALL_REDUCES_PER_LAYER * self.shape.layers * per
