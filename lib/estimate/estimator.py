"""What a run would take on hardware that is not here: roofline floors plus what real stacks add.

`estimate(spec, hardware_id, gpus)` predicts one request batch of `spec` on `gpus` devices of a
hardware profile (`lib.estimate.hardware`; `estimate_on(spec, ceilings)` on the machine whose measured
ceilings a saved run recorded) and returns an `Estimate`: the run's summary metrics as single
numbers (`ttft_s`, `tpot_s`, `e2e_s`, throughputs, `peak_memory_bytes` per device), the roofline
`floor` judged against them, which term bounds each phase, every assumption in plain words with
its source, and a memory verdict (fits, or how many devices it needs). The model, per phase:

    work      = max(bytes moved / achieved bandwidth, FLOPs / achieved FLOP/s)   (lib.estimate.roofline)
                (on a CPU the attention's FLOPs run at its own kernel's lower rate)
    overhead  = layers x a fixed cost per layer (eager kernel launches; far less compiled, or
                in a native engine: llama.cpp, ONNX Runtime)
    phase     = max(overhead, work) on an accelerator (the host launches while it computes),
                overhead + work on a CPU (one thread does both)
              + communication (2 all-reduces per layer) when the model is split over devices

Bytes and FLOPs are per device: tensor parallelism divides weights and KV cache, and a mixture
of experts spreads its experts (expert parallelism). Achieved bandwidth and FLOP/s are
published fractions of a datasheet's peak for accelerators, and for CPUs fractions of the
measured (sustained) ceilings, calibrated against runs and single kernels here (on a CPU,
attention runs at a rate of its own; benchmarks/estimator_accuracy.py measures the error over
16 runs). Every constant below says where it comes from; MoE and multi-device figures have no
calibration of their own. Float8 weights (DeepSeek-R1 as published) are an
estimator-only number format: `split_dtype` maps it to a bfloat16 run with 1-byte weights.
The software stack (`spec.stack`) sets how weights, cache and arithmetic are counted: a block
format (Q8_0, Q4_K_M, Q4_1, int4) is read at its bits per weight and multiplied in the
activations' format (`lib.estimate.roofline.matmul_dtype`), the KV cache has the stack's width
(`lib.core.stacks.kv_bytes_per_number`), and an estimate refuses a format its stack does not run.

An Estimate is never a measurement: `lib.measure.backends.estimated` turns it into one repetition
marked "estimated", and nothing derives percentiles from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lib.estimate import memory
from lib.machine.ceilings import Ceilings
from lib.core.errors import InvalidSpecError, MemoryGuardError, UnsupportedError
from lib.estimate.hardware import THIS, Hardware
from lib.core.metrics import format_bytes
from lib.models.catalog import ENCODER, get_entry
from lib.core.results import ESTIMATED
from lib.core.spec import (DTYPES, MAX_DEVICES, STACK_SETTINGS, RunSpec, field_info,
                           from_saved)
from lib.core.stacks import FORMATS, STACKS, TRANSFORMERS, check_format, kv_bytes_per_number

FLOAT8 = "float8"
ESTIMATE_DTYPES = DTYPES + (FLOAT8,)     # float8: weights only, 1 byte; never run live here

# --- the software stack ------------------------------------------------------------------------
# Eager transformers (compile off, dynamic KV cache) on a GPU: decode measured on one H200
# (docs/MEASURING.md) took ~18-20 ms per step for SmolLM2-135M (30 layers), Qwen2.5-1.5B (28)
# and Llama-3.1-8B (32) at batch 1-8, ~15 ms for SmolLM2-1.7B (24), ~5 ms for GPT-2 (12): the
# same time for 135M and 8B parameters, so launches, not bandwidth. Per layer: 19/30, 19/28,
# 19/32, 15/24 -> 0.63 ms for Llama-style layers (RMSNorm and rotary embeddings spelled out in
# small kernels, a gated MLP); 5/12 -> 0.42 ms for GPT-2-style ones (fused LayerNorm, no rotary).
EAGER_GPU_LAYER_OVERHEAD_S = 0.63e-3
EAGER_GPU_SIMPLE_LAYER_OVERHEAD_S = 0.42e-3
SIMPLE_LAYER_MODEL_TYPES = ("gpt2", "bert", "roberta", "distilbert", "xlm-roberta", "mpnet")
# A CPU profile from the table (no measured overhead of its own): the per-layer overhead
# lib.machine.ceilings measured on the development machine (2 cores of an AMD EPYC, torch 2.13).
EAGER_CPU_LAYER_OVERHEAD_S = 0.21e-3
# torch.compile with a static cache fuses a layer's dozens of small kernels into a few and (on
# CUDA) replays them as one graph. Assumed to leave a tenth of the eager overhead: no
# measurement of it is at hand, and the H200 calibration run can replace it.
COMPILED_OVERHEAD_FRACTION = 0.10
# llama.cpp and ONNX Runtime are native engines: a forward pass is one C/C++ graph of fused
# kernels with no Python between operations (and CUDA graphs on GPUs), so their fixed cost per
# layer is taken as compiled code's: COMPILED_OVERHEAD_FRACTION of eager's, assumed as there
# (the llama.cpp steps below leave no room to measure it apart). Their other figures on a CPU
# come from llama.cpp (llama-cpp-python 0.3.36 on the development machine's 2 cores) decoding
# SmolLM2-135M at batch 1 after a 64-token prompt, from GGUF files requantized from the shipped
# Q4_1 one (benchmarks/llama_cpp_cpu.py, on a quiet machine). ONNX Runtime was not measured: it
# is assumed to behave like llama.cpp.
NATIVE_STACKS = ("llama.cpp", "onnxruntime")

# --- achieved fractions of the hardware's figures -----------------------------------------------
# Datasheet peaks are never reached. Decode: 65% of peak bandwidth, between the 55-60% that
# Databricks measured at batch 1 with an optimized engine ("LLM Inference Performance
# Engineering: Best Practices", databricks.com/blog, 2023) and gpt-fast's 68% (Llama-2-7B bf16
# on A100-80GB: 1,397 of 2,039 GB/s, github.com/pytorch-labs/gpt-fast). Prefill: 75% of the
# dense matmul peak (bf16 matmul measured at ~750 of 989 TFLOP/s on one H200, docs/MEASURING.md).
DATASHEET_BANDWIDTH_FRACTION = 0.65
DATASHEET_COMPUTE_FRACTION = 0.75
# CPUs, calibrated on the development machine (2 cores of an AMD EPYC, torch 2.13) against
# eager runs of SmolLM2-135M (float32, bfloat16, batch 1-8, prompt 64-256), GPT-2,
# SmolLM2-360M and Qwen2.5-0.5B: decode streamed the weights at 10-14 GB/s, 18-27% of the
# 51 GB/s triad lib.machine.ceilings measured (matrix-vector products on 2 threads are far from a
# streaming copy), so 22%; compiled code gained ~1.4x, so 30%. Matrix products
# reach a share of the measured matmul rate that grows with their rows (tokens): a 64-token
# prefill reached ~48%, a 256-token one ~80%, as rows / (rows + 64) gives. A table CPU's
# theoretical bandwidth is reached at most ~75% by a streaming copy (assumed), so its fraction
# is that share of this machine's.
# llama.cpp streamed weights far better than torch: F32 at 18.7-19.4 ms per step (540 MB,
# 28-29 GB/s, 0.65-0.67 of the 42.9 GB/s triad), F16 at 10.6-11.2 ms (271 MB, 24-26 GB/s,
# 0.57-0.60), over three quiet runs: "native", 0.65.
CPU_BANDWIDTH_FRACTION = {"eager": 0.22, "compiled": 0.30, "native": 0.65}
CPU_HALF_PEAK_ROWS = 64
CPU_DATASHEET_SUSTAINED_FRACTION = 0.75
# A decode step's products have batch-size rows, too few for rows / (rows + 64): their share
# has a floor. Every Linear of SmolLM2-135M, GPT-2 and SmolLM2-360M run on 4 rows
# (benchmarks/cpu_kernels.py) reached 7.5-9.5% of the float32 ceiling in float32 (2.7x the
# arithmetic of 1 row took 1.6x its time: the few-row float32 kernel is compute-limited), and
# 10.6-13% of the bfloat16 ceiling in bfloat16, where 4 rows took barely longer than 1 (still
# bound by the weight stream, so 10% stays a safe floor). The old 10% for every dtype made
# float32 decode at batch 4 ~25% too fast (benchmarks/estimator_accuracy.py).
CPU_MIN_COMPUTE_FRACTION = {"float32": 0.08, "other": 0.10}
# llama.cpp's block formats were no faster for fewer bytes: Q8_0, Q4_K_M and Q4_1 (145, 105 and
# 98 MB) all took 7.6-8.5 ms per step, bound by widening and multiplying the blocks: 0.27 GFLOP
# in ~7.5 ms (less the overhead), 0.2 of the 183 GFLOP/s float32 figure. Its 64-token prefill
# (115-127 ms for F32 to 190-199 ms for Q4_1) fits the rows / (rows + 64) rule above (153 ms).
NATIVE_CPU_MIN_COMPUTE_FRACTION = 0.20
# Attention on a CPU is no product of the weights: torch's scaled_dot_product_attention runs
# its own kernel (flash attention for CPU), far below the matmul rate, accumulating in float32
# whatever the number format. Timed alone (benchmarks/cpu_kernels.py, the three models' heads,
# head_dim 64, against a float32 ceiling of 183 GFLOP/s), FLOPs counted as lib.estimate.roofline does:
# - a causal prefill of P tokens: 41-47 GFLOP/s at P = 64, 67-74 at P = 256, ~100 at P = 1024,
#   float32 and bfloat16 alike, at every batch size: 0.5 of the float32 rate x P / (P + 64)
#   gives 46, 73 and 86. SmolLM2-135M at batch 4 x 256 tokens spends 4.5 ms per layer on it,
#   16% of its TTFT; at the products' rate it would have been 0.8 ms. (float16 reached only
#   23-35 GFLOP/s at P = 128-256, but its products are slower still on this CPU.)
# - a decode step (one query per sequence): float32 12-39 GFLOP/s, 0.15 of the float32 rate;
#   16-bit formats take a slow path: bfloat16 3.2-4.6 GFLOP/s (55-80 ns per head and cached
#   key), 0.022 of it; float16 2.2-2.9 GFLOP/s, 0.015. That is 16 ms of SmolLM2-135M's
#   bfloat16 step at batch 4 and a 264-token context, which its TPOT showed (64 ms, against
#   47 ms at a 72-token context).
# On a CPU they add to the products' arithmetic (kernels run one after another); the weight
# stream still bounds the step from below (lib.estimate.estimator._phase).
CPU_PREFILL_ATTENTION_FRACTION = 0.5
CPU_DECODE_ATTENTION_FRACTION = {"float32": 0.15, "bfloat16": 0.022, "float16": 0.015}
# A GPU measured here (this machine's CUDA): its copy bandwidth is already sustained, and the
# H200's datasheet fraction over its measured copy fraction (0.65 / 0.85) is about 0.75.
MEASURED_GPU_BANDWIDTH_FRACTION = 0.75
MEASURED_GPU_COMPUTE_FRACTION = 0.8

# --- several devices ----------------------------------------------------------------------------
# Tensor parallelism: two all-reduces per layer (after attention, after the MLP) of the
# batch x tokens x hidden activations. A ring all-reduce sends 2(n-1)/n of the data from each
# device, one way, plus a fixed latency per all-reduce: 25 us, from gpt-fast's tensor-parallel
# table (Llama-2-7B on 8 A100s: 3.0 ms per token against 1.2 ms of memory time at its own
# bandwidth, over 64 all-reduces of 8 KB; 17-29 us on 2-8 GPUs).
ALL_REDUCES_PER_LAYER = 2
ALL_REDUCE_LATENCY_S = 25e-6

# --- memory ---------------------------------------------------------------------------------------
# What each device keeps free for its runtime, allocator and fragmentation: vLLM's default
# gpu_memory_utilization is 0.9 (docs.vllm.ai, engine arguments).
MEMORY_HEADROOM_FRACTION = 0.10

SOURCES = {
    "eager_gpu": "decode measured with eager transformers on one H200 (docs/MEASURING.md)",
    "datasheet_fractions": "Databricks, 'LLM Inference Performance Engineering: Best "
                           "Practices' (2023): 55-60% at batch 1; gpt-fast README: 1,397 of "
                           "2,039 GB/s on A100-80GB; H200 bf16 matmul ~750 of 989 TFLOP/s "
                           "(docs/MEASURING.md)",
    "all_reduce": "github.com/pytorch-labs/gpt-fast, tensor-parallel benchmark table",
    "headroom": "vLLM's default gpu_memory_utilization=0.9",
}


@dataclass(frozen=True)
class Estimate:
    spec: RunSpec                         # with `hardware` and `gpus` set
    hardware: Hardware
    gpus: int
    summary: dict[str, float]             # the run summary's keys, single numbers
    floor: dict[str, Any]                 # roofline.judge against the estimated times
    assumptions: list[str] = field(hash=False)
    memory_verdict: str = ""
    weights_dtype: str = ""               # spec.dtype, or "float8"
    fits: bool = True
    devices_needed: int | None = 1        # None: no number of these devices can hold it
    bound: dict[str, str] = field(default_factory=dict, hash=False)   # phase -> limiting term
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict, hash=False)
    memory_need: "MemoryNeed | None" = None    # the whole model's and run's, all devices
    app_verdict: str = ""                 # memory_verdict, its advice in a page's words

    def enforce(self) -> "Estimate":
        """Raise MemoryGuardError (the verdict) when the model doesn't fit on `gpus` devices."""
        if not self.fits:
            raise MemoryGuardError(self.memory_verdict)
        return self

    @property
    def min_gpus(self) -> int | None:
        """The fewest devices of this hardware the run fits on (None: no number of them)."""
        return self.devices_needed

    def why(self) -> dict[str, str]:
        """What limits it on this hardware: `{"limit": ..., "text": ...}` (lib.estimate.explain)."""
        from lib.estimate.explain import why
        return why(self)

    def to_dict(self) -> dict[str, Any]:
        """`python -m lib estimate --json`: one object, its summary keyed like a run's, with
        `fits` and `min_gpus` (also for a run that does not fit) and `why`."""
        return {"spec": self.spec.to_dict(), "hardware": self.hardware.to_dict(),
                "gpus": self.gpus, "fits": self.fits, "min_gpus": self.min_gpus,
                "why": self.why(), "weights_dtype": self.weights_dtype,
                "summary": dict(self.summary), "bound": dict(self.bound),
                "breakdown": {phase: dict(terms) for phase, terms in self.breakdown.items()},
                "floor": dict(self.floor), "assumptions": list(self.assumptions),
                "memory_verdict": self.memory_verdict,
                "memory": {"fits": self.fits, "devices_needed": self.devices_needed},
                "provenance": {"kind": ESTIMATED, "backend": "estimator",
                               "hardware": self.hardware.id, "gpus": self.gpus}}


def split_dtype(dtype: str) -> tuple[str, str | None]:
    """An estimate's number format as (RunSpec dtype, weights dtype or None): float8 weights
    run with bfloat16 activations and KV cache, as fp8 engines do; the rest are the spec's."""
    if dtype == FLOAT8:
        return "bfloat16", FLOAT8
    if dtype not in DTYPES:
        raise InvalidSpecError(f"dtype must be one of {', '.join(ESTIMATE_DTYPES)} for an "
                               f"estimate (got {dtype!r}).")
    return dtype, None


def check(spec: RunSpec, hardware_id: str, gpus: int, weights: str | None = None) -> None:
    """Everything an estimate refuses, before any arithmetic: the profile id (`this`: this
    machine's device, measured now if it never was), the device count, the number format and
    the context."""
    from lib.estimate import hardware

    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_DEVICES:
        raise InvalidSpecError(f"gpus must be a whole number between 1 and {MAX_DEVICES} (got "
                               f"{gpus!r}): how many devices share the model.")
    if hardware_id == THIS:
        # Built (measured, if never before) here, before any run takes the measurement slot.
        name, linked = hardware.this(spec.device).name, False     # estimated as one device
    else:
        profile = hardware.get(hardware_id)
        name, linked = profile.name, profile.interconnect_bytes_per_s is not None
    if gpus > 1 and not linked:
        raise UnsupportedError(
            f"{name} is a single device with no link to others: estimate it with --gpus 1, "
            "or pick a data-centre profile (h200, mi300x, tpu-v6e, ...).")
    if weights not in (None, FLOAT8):
        raise InvalidSpecError(f"weights must be float8 or None (got {weights!r}).")
    if weights == FLOAT8 and spec.dtype not in ("bfloat16", "float16"):
        raise InvalidSpecError("float8 weights run with 16-bit activations: use dtype "
                               "bfloat16 with them.")
    _check_stack(spec, weights)
    get_entry(spec.model_id).check_context(spec.prompt_tokens, spec.new_tokens)


def _check_stack(spec: RunSpec, weights: str | None) -> None:
    """A stack estimates only the formats it runs (float8, an estimate-only format, only with
    transformers' settings) and only the settings it has, as a live run refuses them."""
    stack = STACKS[spec.stack]
    if weights == FLOAT8 and spec.stack != TRANSFORMERS:
        raise UnsupportedError(f"{stack.label} has no float8 format: estimate float8 weights "
                               "with --stack transformers, or choose one of its own formats: "
                               f"{', '.join(stack.dtypes)}.")
    check_format(spec.stack, spec.dtype)
    if spec.stack == TRANSFORMERS:
        return
    for name in STACK_SETTINGS:
        default = field_info(name)["default"]
        if getattr(spec, name) != default:
            label = field_info(name)["label"]
            raise UnsupportedError(f"{stack.label} has no {label} setting (it is "
                                   f"{getattr(spec, name)!r} here): set it back to "
                                   f"{default!r} to estimate {stack.label}.")


def estimate(spec: RunSpec, hardware_id: str = THIS, gpus: int = 1,
             weights: str | None = None) -> Estimate:
    """Predict `spec` on `gpus` devices of the profile `hardware_id` (`this`: this machine's
    measured ceilings, on spec.device). `weights="float8"` stores weights in 1 byte."""
    from lib.estimate import hardware

    check(spec, hardware_id, gpus, weights)
    return _estimate(spec, hardware.get(hardware_id, spec.device), gpus, weights)


def estimate_on(spec: RunSpec, ceilings: Ceilings, memory_bytes: float = 0.0,
                name: str | None = None) -> Estimate:
    """Predict `spec` on one device of the machine whose `lib.machine.ceilings.Ceilings` these are
    (those recorded with a saved run, `environment["ceilings"]`), as `estimate(spec, "this")`
    does with this machine's: how History's error ledger judges a run measured anywhere.
    `memory_bytes` (that machine's memory) only feeds the memory verdict."""
    from lib.estimate import hardware

    get_entry(spec.model_id).check_context(spec.prompt_tokens, spec.new_tokens)
    label = name or f"{ceilings.device_name or ceilings.device}, measured"
    return _estimate(spec, hardware.from_ceilings(ceilings, label, memory_bytes), 1, None)


def _estimate(spec: RunSpec, profile: Hardware, gpus: int, weights: str | None) -> Estimate:
    from lib.estimate import roofline
    from lib.models.shapes import shapes

    # As a saved spec is read: a run measured with more threads than this machine has is
    # estimated all the same.
    spec = from_saved({**spec.to_dict(), "hardware": profile.id, "gpus": gpus})
    entry = get_entry(spec.model_id)
    shape = shapes(spec.model_id)
    encoder = entry.kind == ENCODER
    weights_dtype = weights or spec.dtype
    engine = _engine(spec)
    # The format the products run in (a block format's weights are widened to it); float8
    # weights run at the float8 figure, with bfloat16 activations.
    products = roofline.matmul_dtype(spec.stack, spec.dtype, profile.kind != "cpu")
    costs = roofline.costs(shape, spec, devices=gpus,
                           weight_bytes_per_param=1.0 if weights == FLOAT8 else None)
    peak_flops = profile.peak_flops(weights or products)
    bandwidth_fraction = _bandwidth_fraction(profile, engine)
    bandwidth = bandwidth_fraction * profile.memory_bandwidth_bytes_per_s
    layer_overhead_s, overhead_words = _layer_overhead(profile, entry.config.get("model_type"),
                                                       engine != "eager")
    overlap = profile.kind != "cpu"
    activation_bytes = memory.DTYPE_BYTES[products]

    prefill_tokens = spec.batch_size * spec.prompt_tokens
    attention_flops = _attention_flops(shape, costs)
    prefill = _phase(costs.prefill, bandwidth,
                     _compute_fraction(profile, prefill_tokens, products, engine) * peak_flops,
                     shape.layers * layer_overhead_s,
                     _communication_s(profile, gpus, shape, prefill_tokens * activation_bytes),
                     overlap, attention_flops["prefill"],
                     _attention_rate(profile, spec, products, "prefill"))
    breakdown = {"prefill": prefill}
    summary: dict[str, float] = {}
    if encoder or spec.new_tokens == 1:
        tpot = None
        e2e = prefill["total_s"]
    else:
        decode = _phase(costs.decode, bandwidth,
                        _compute_fraction(profile, spec.batch_size, products, engine)
                        * peak_flops,
                        shape.layers * layer_overhead_s,
                        _communication_s(profile, gpus, shape,
                                         spec.batch_size * activation_bytes), overlap,
                        attention_flops["decode"],
                        _attention_rate(profile, spec, products, "decode"))
        breakdown["decode"] = decode
        tpot = decode["total_s"]
        e2e = prefill["total_s"] + (spec.new_tokens - 1) * tpot
    if not encoder:
        summary["ttft_s"] = prefill["total_s"]
    if tpot is not None:
        summary["tpot_s"] = tpot
    summary["e2e_s"] = e2e
    if tpot is not None:
        summary["decode_tokens_per_s"] = spec.batch_size / tpot
    counted = spec.prompt_tokens + (0 if encoder else spec.new_tokens)
    summary["total_tokens_per_s"] = spec.batch_size * counted / e2e
    summary["requests_per_s"] = spec.batch_size / e2e

    need = _memory_need(shape, spec, weights == FLOAT8, encoder)
    usable = (1 - MEMORY_HEADROOM_FRACTION) * profile.memory_bytes
    per_device = need.per_device(gpus)
    summary["peak_memory_bytes"] = float(per_device)
    needed = need.devices_needed(usable)
    fits = per_device <= usable
    verdict, app_verdict = (_verdict(entry.display_name, spec, weights_dtype, profile, gpus,
                                     need, usable, needed, app) for app in (False, True))

    floor = roofline.floor(costs, profile.memory_bandwidth_bytes_per_s, peak_flops,
                           source=f"{profile.name}: {profile.source}")
    judged = roofline.judge(costs, floor, None if encoder else summary["ttft_s"], tpot)
    if encoder:
        judged = {**judged, "prefill_bound": roofline.bound(
            floor.prefill_memory_s, floor.prefill_compute_s, e2e)}
    bound = {phase: terms["limited_by"] for phase, terms in breakdown.items()}
    assumptions = _assumptions(profile, spec, gpus, engine, weights_dtype, products,
                               peak_flops, bandwidth_fraction, layer_overhead_s,
                               overhead_words, overlap, shape, encoder)
    return Estimate(spec=spec, hardware=profile, gpus=gpus, summary=summary, floor=judged,
                    assumptions=assumptions, memory_verdict=verdict,
                    weights_dtype=weights_dtype, fits=fits,
                    devices_needed=_min_devices(profile, needed), app_verdict=app_verdict,
                    bound=bound, breakdown=breakdown, memory_need=need)


# --- the pieces -----------------------------------------------------------------------------------

def _engine(spec: RunSpec) -> str:
    """How the stack runs a forward pass: "eager" or "compiled" transformers, or "native"."""
    if spec.stack in NATIVE_STACKS:
        return "native"
    return "compiled" if spec.compile == "on" else "eager"


def _bandwidth_fraction(profile: Hardware, engine: str) -> float:
    """The share of the profile's bandwidth figure that weights and cache stream at."""
    if profile.kind == "cpu":
        sustained = 1.0 if profile.measured else CPU_DATASHEET_SUSTAINED_FRACTION
        return sustained * CPU_BANDWIDTH_FRACTION[engine]
    return MEASURED_GPU_BANDWIDTH_FRACTION if profile.measured else DATASHEET_BANDWIDTH_FRACTION


def _compute_fraction(profile: Hardware, rows: int, dtype: str, engine: str) -> float:
    """The share of the matmul figure that products with `rows` tokens reach in `dtype`."""
    if profile.kind == "cpu":
        return max(rows / (rows + CPU_HALF_PEAK_ROWS), _least_compute_fraction(dtype, engine))
    return MEASURED_GPU_COMPUTE_FRACTION if profile.measured else DATASHEET_COMPUTE_FRACTION


def _least_compute_fraction(dtype: str, engine: str) -> float:
    if engine == "native":
        return NATIVE_CPU_MIN_COMPUTE_FRACTION
    return CPU_MIN_COMPUTE_FRACTION.get(dtype, CPU_MIN_COMPUTE_FRACTION["other"])


def _decode_attention_fraction(dtype: str) -> float:
    # int8 runs its attention in float32 (only the Linear layers are quantized).
    return CPU_DECODE_ATTENTION_FRACTION.get(dtype, CPU_DECODE_ATTENTION_FRACTION["float32"])


def _layer_overhead(profile: Hardware, model_type: str | None,
                    compiled: bool) -> tuple[float, str]:
    """Fixed cost per decoder layer per forward pass, and where it comes from."""
    simple = model_type in SIMPLE_LAYER_MODEL_TYPES
    gpu_figure = EAGER_GPU_SIMPLE_LAYER_OVERHEAD_S if simple else EAGER_GPU_LAYER_OVERHEAD_S
    # GPT-2-style layers launch about two thirds of a Llama-style layer's kernels.
    family = gpu_figure / EAGER_GPU_LAYER_OVERHEAD_S
    layer_kind = "GPT-2-style" if simple else "Llama-style"
    if profile.measured and profile.layer_overhead_s is not None:
        eager_s = profile.layer_overhead_s * family
        words = (f"{eager_s * 1e3:.2f} ms per {layer_kind} layer, measured on this machine "
                 "(lib.machine.ceilings)")
    elif profile.kind == "cpu":
        eager_s = EAGER_CPU_LAYER_OVERHEAD_S * family
        words = (f"{eager_s * 1e3:.2f} ms per {layer_kind} layer, as lib.machine.ceilings measured "
                 "it on 2 cores of an AMD EPYC (no figure for this CPU)")
    else:
        eager_s = gpu_figure
        words = (f"{eager_s * 1e3:.2f} ms per {layer_kind} layer on an accelerator, from "
                 f"{SOURCES['eager_gpu']}: 18-20 ms per step for 28-32 Llama-style layers at "
                 "batch 1-8, 5 ms for GPT-2's 12")
    if compiled:
        return eager_s * COMPILED_OVERHEAD_FRACTION, (
            f"{COMPILED_OVERHEAD_FRACTION:.0%} of eager's {words} (assumed: compiled kernels "
            "are fused and, on CUDA, replayed as one graph; not measured)")
    return eager_s, words


def _attention_flops(shape: memory.Shapes, costs: Any) -> dict[str, float]:
    """The attention part of each phase's FLOPs, as lib.estimate.roofline counts it inside them: QK^T
    and AV, 2 FLOPs x (key + value width) per (query, key) pair over all heads and layers; a
    causal prefill has P(P+1)/2 pairs per sequence (an encoder P^2), a decode step its context."""
    if shape.kv_elements_per_token:
        per_pair = 2 * shape.kv_elements_per_token * shape.attention_heads / shape.kv_heads
    else:
        per_pair = 2 * 2 * shape.layers * shape.attention_heads * shape.head_dim
    prompt = costs.prompt_tokens
    pairs = prompt * (prompt + 1) / 2 if costs.has_decode else prompt * prompt
    per_sequence = costs.batch_size * per_pair / costs.devices
    return {"prefill": per_sequence * pairs, "decode": per_sequence * costs.decode_context_tokens}


def _attention_rate(profile: Hardware, spec: RunSpec, dtype: str, phase: str) -> float | None:
    """FLOP/s of the attention kernel on a CPU (see CPU_PREFILL_ATTENTION_FRACTION), a share
    of the float32 matmul figure, for products in `dtype`; None elsewhere: accelerators'
    attention runs at their matmul rate here."""
    if profile.kind != "cpu":
        return None
    float32 = profile.peak_flops("float32")
    if phase == "prefill":
        rows = spec.prompt_tokens
        return CPU_PREFILL_ATTENTION_FRACTION * rows / (rows + CPU_HALF_PEAK_ROWS) * float32
    return _decode_attention_fraction(dtype) * float32


def _phase(cost: Any, bandwidth: float, flops: float, overhead_s: float,
           communication_s: float, overlap: bool, attention_flops: float = 0.0,
           attention_flops_per_s: float | None = None) -> dict[str, Any]:
    """One phase's terms. With `attention_flops_per_s` (CPUs), the attention part of the
    FLOPs runs at that rate after the products, and `compute_s` is both together."""
    memory_s = cost.bytes_moved / bandwidth
    attention_s = 0.0
    if attention_flops_per_s:
        attention_s = attention_flops / attention_flops_per_s
        compute_s = (cost.flops - attention_flops) / flops + attention_s
    else:
        compute_s = cost.flops / flops
    work_s = max(memory_s, compute_s)
    busy_s = max(overhead_s, work_s) if overlap else overhead_s + work_s
    terms = {"memory": memory_s, "compute": compute_s, "overhead": overhead_s,
             "communication": communication_s}
    return {"memory_s": memory_s, "compute_s": compute_s, "attention_s": attention_s,
            "overhead_s": overhead_s, "communication_s": communication_s,
            "total_s": busy_s + communication_s, "limited_by": max(terms, key=terms.get)}


def _communication_s(profile: Hardware, gpus: int, shape: memory.Shapes,
                     bytes_per_hidden: float) -> float:
    """Two ring all-reduces per layer of `bytes_per_hidden` x hidden_size bytes."""
    if gpus == 1:
        return 0.0
    payload = bytes_per_hidden * shape.hidden_size
    one_way = profile.interconnect_one_way_bytes_per_s
    per_all_reduce = ALL_REDUCE_LATENCY_S + 2 * (gpus - 1) / gpus * payload / one_way
    return ALL_REDUCES_PER_LAYER * shape.layers * per_all_reduce


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


def _memory_need(shape: memory.Shapes, spec: RunSpec, float8: bool, encoder: bool) -> MemoryNeed:
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


def _format_words(spec: RunSpec, products: str) -> list[str]:
    """What the stack's weight format and cache mean for the bytes and the arithmetic."""
    said = []
    if spec.dtype in memory.BLOCK_FORMATS:
        weight_format = FORMATS[spec.dtype]
        said.append(f"{weight_format.label} weights are read at {weight_format.weight_bits:g} "
                    f"bits each and multiplied in {products} (the estimate assumes the engine "
                    "dequantizes on the fly).")
    if spec.stack != TRANSFORMERS:
        width = kv_bytes_per_number(spec.stack, spec.dtype)
        said.append(f"{STACKS[spec.stack].label} keeps its KV cache in "
                    f"{'float16' if width == 2 else 'float32'} ({width} bytes a number), "
                    "whatever the weights.")
    return said


def devices_words(profile: Hardware, gpus: int) -> str:
    """'8 x NVIDIA H200 SXM 141GB', or the profile's name alone for one device."""
    return profile.name if gpus == 1 else f"{gpus} x {profile.name}"


def _verdict(model: str, spec: RunSpec, weights_dtype: str, profile: Hardware, gpus: int,
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


def _min_devices(profile: Hardware, needed: int | None) -> int | None:
    """The fewest devices that hold the run, of a profile that can be several (`min_gpus`)."""
    if needed is not None and needed > 1 and profile.interconnect_bytes_per_s is None:
        return None
    return needed


def _assumptions(profile: Hardware, spec: RunSpec, gpus: int, engine: str, weights_dtype: str,
                 products: str, peak_flops: float, bandwidth_fraction: float,
                 layer_overhead_s: float, overhead_words: str, overlap: bool,
                 shape: memory.Shapes, encoder: bool) -> list[str]:
    bandwidth = profile.memory_bandwidth_bytes_per_s
    rate = f"{peak_flops / 1e12:,.1f} TFLOP/s" if peak_flops >= 1e12 else \
        f"{peak_flops / 1e9:,.0f} GFLOP/s"
    multiplied = weights_dtype if weights_dtype == FLOAT8 else products
    figures = (f"{profile.name}: {format_bytes(bandwidth)}/s memory bandwidth, {rate} "
               f"{profile.flops_dtype(multiplied)} matmuls, "
               f"{format_bytes(profile.memory_bytes)} of memory")
    said = [f"{figures} ({'measured here: ' if profile.measured else 'source: '}"
            f"{profile.source})."]
    if profile.flops_dtype(multiplied) != multiplied:
        said.append(f"{profile.name} has no {multiplied} matmul figure; its "
                    f"{profile.flops_dtype(multiplied)} figure is used.")
    said += _format_words(spec, products)
    if profile.kind == "cpu":
        which = "measured" if profile.measured else "datasheet"
        calibrated = (
            "measured with llama.cpp on SmolLM2-135M here; ONNX Runtime assumed alike"
            if engine == "native" else
            "calibrated against eager runs of SmolLM2, GPT-2 and Qwen2.5 on 2 cores of an AMD "
            "EPYC")
        streams = ("llama.cpp streamed F32 and F16 weights at 57-67% of this machine's"
                   if engine == "native" else
                   f"{engine} decode on a CPU streams weights far below")
        said.append(
            f"Achieved: {bandwidth_fraction:.0%} of the {which} "
            f"bandwidth ({streams} a streaming copy), "
            f"and matrix products with m tokens reach m / (m + {CPU_HALF_PEAK_ROWS}) of the "
            f"matmul rate, at least {_least_compute_fraction(products, engine):.0%} "
            f"({calibrated}).")
        said.append(
            "Attention runs in its own kernel, after the products and slower: a prompt of P "
            f"tokens at {CPU_PREFILL_ATTENTION_FRACTION:.0%} x P / (P + {CPU_HALF_PEAK_ROWS}) "
            "of the float32 matmul rate, a decode step at "
            f"{_decode_attention_fraction(products):.1%} of it (measured alone here with "
            "transformers: benchmarks/cpu_kernels.py; 16-bit decode attention takes a slow "
            "path).")
    elif profile.measured:
        said.append(
            f"Achieved: {bandwidth_fraction:.0%} of the measured bandwidth and "
            f"{MEASURED_GPU_COMPUTE_FRACTION:.0%} of the measured matmul rate (the H200's "
            "datasheet share over its measured copy share, 0.65 / 0.85).")
    else:
        said.append(
            f"Achieved: {bandwidth_fraction:.0%} of the datasheet bandwidth and "
            f"{DATASHEET_COMPUTE_FRACTION:.0%} of the dense matmul peak "
            f"({SOURCES['datasheet_fractions']}).")
    stack_words = {
        "compiled": "compiled (torch.compile with a static KV cache)",
        "eager": "eager transformers (torch.compile off, dynamic KV cache)",
        "native": f"{STACKS[spec.stack].label}, a native engine (fused C/C++ kernels, no "
                  "Python between operations: its overhead is taken as compiled code's)"}[engine]
    said.append(f"Software stack: {stack_words}; fixed overhead {overhead_words}: "
                f"{shape.layers} layers x {layer_overhead_s * 1e3:.3f} ms = "
                f"{shape.layers * layer_overhead_s * 1e3:.1f} ms per forward pass.")
    said.append("The device computes while the host launches its kernels, so a step takes "
                "the larger of overhead and work." if overlap else
                "On a CPU one thread both launches and computes, so overhead and work add up.")
    if shape.active_parameters and shape.active_parameters < shape.parameters:
        said.append(f"Mixture of experts: each token reads only its active experts "
                    f"({shape.active_parameters / 1e9:,.1f}B of {shape.parameters / 1e9:,.1f}B "
                    "parameters); layers count as one for overhead, which flatters eager "
                    "transformers (it loops over the experts).")
    if weights_dtype == FLOAT8:
        said.append("Weights in float8 (1 byte each, as DeepSeek publishes R1); activations "
                    "and KV cache in bfloat16; matmuls at the float8 rate.")
    if not encoder:
        said.append("Each decode step reads the whole KV cache at the mean context (prompt + "
                    "half the output).")
    if gpus > 1:
        said.append(
            f"{gpus} devices: weights and KV cache split across them (tensor parallelism; "
            "experts spread over them), plus 2 all-reduces per layer of batch x tokens x "
            f"hidden activations: a ring sends 2(n-1)/n of them over {profile.interconnect} "
            f"at {format_bytes(profile.interconnect_one_way_bytes_per_s)}/s one way (half the "
            f"published {format_bytes(profile.interconnect_bytes_per_s)}/s both ways), plus "
            f"{ALL_REDUCE_LATENCY_S * 1e6:.0f} us each ({SOURCES['all_reduce']}: 17-29 us "
            "per all-reduce on 2-8 A100s).")
    said.append(f"Memory: weights + KV cache for batch x (prompt + output) tokens + working "
                "memory (lib.estimate.memory's estimate)"
                f"{', weights and cache split over the devices' if gpus > 1 else ''}; "
                f"{MEMORY_HEADROOM_FRACTION:.0%} of each device kept free "
                f"({SOURCES['headroom']}).")
    return said
