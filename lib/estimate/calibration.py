"""What real software stacks achieve of a hardware's figures: the estimator's calibration.

Every constant here says where it comes from: measured decode overheads per layer (eager,
compiled, native engines), the achieved share of a datasheet's or a measured bandwidth and
matmul rate, CPU attention's own rate, and the cost of an all-reduce between devices. The
functions turn them into the numbers one estimate uses (`lib.estimate.estimator`): how a stack
runs a forward pass (`engine_of`), the share of bandwidth and FLOP/s it reaches, its fixed
overhead per layer, and a CPU's attention rate. `FLOAT8` is the estimator-only number format
(weights in 1 byte, as DeepSeek publishes R1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lib.core.spec import RunSpec
    from lib.estimate.hardware import Hardware

FLOAT8 = "float8"

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
# Speculative decoding's check of k guesses is one pass over k + 1 tokens: few rows, where a CPU
# kernel's time grows far slower than its arithmetic. Measured (benchmarks/quality.py, prompt
# lookup on the quote prompt, SmolLM2-135M float32, 10 guesses a step): 126 ms a step against
# 68 ms for a plain one, so each guess checked adds 8.5% of a plain step.
CPU_VERIFY_EXTRA_PER_GUESS = 0.085
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

SOURCES = {
    "eager_gpu": "decode measured with eager transformers on one H200 (docs/MEASURING.md)",
    "datasheet_fractions": "Databricks, 'LLM Inference Performance Engineering: Best "
                           "Practices' (2023): 55-60% at batch 1; gpt-fast README: 1,397 of "
                           "2,039 GB/s on A100-80GB; H200 bf16 matmul ~750 of 989 TFLOP/s "
                           "(docs/MEASURING.md)",
    "all_reduce": "github.com/pytorch-labs/gpt-fast, tensor-parallel benchmark table",
    "headroom": "vLLM's default gpu_memory_utilization=0.9",
}


def engine_of(spec: "RunSpec") -> str:
    """How the stack runs a forward pass: "eager" or "compiled" transformers, or "native"."""
    if spec.stack in NATIVE_STACKS:
        return "native"
    return "compiled" if spec.compile == "on" else "eager"


def bandwidth_fraction(profile: "Hardware", engine: str) -> float:
    """The share of the profile's bandwidth figure that weights and cache stream at."""
    if profile.kind == "cpu":
        sustained = 1.0 if profile.measured else CPU_DATASHEET_SUSTAINED_FRACTION
        return sustained * CPU_BANDWIDTH_FRACTION[engine]
    return MEASURED_GPU_BANDWIDTH_FRACTION if profile.measured else DATASHEET_BANDWIDTH_FRACTION


def compute_fraction(profile: "Hardware", rows: int, dtype: str, engine: str) -> float:
    """The share of the matmul figure that products with `rows` tokens reach in `dtype`."""
    if profile.kind == "cpu":
        return max(rows / (rows + CPU_HALF_PEAK_ROWS), least_compute_fraction(dtype, engine))
    return MEASURED_GPU_COMPUTE_FRACTION if profile.measured else DATASHEET_COMPUTE_FRACTION


def least_compute_fraction(dtype: str, engine: str) -> float:
    if engine == "native":
        return NATIVE_CPU_MIN_COMPUTE_FRACTION
    return CPU_MIN_COMPUTE_FRACTION.get(dtype, CPU_MIN_COMPUTE_FRACTION["other"])


def decode_attention_fraction(dtype: str) -> float:
    # int8 runs its attention in float32 (only the Linear layers are quantized).
    return CPU_DECODE_ATTENTION_FRACTION.get(dtype, CPU_DECODE_ATTENTION_FRACTION["float32"])


def layer_overhead(profile: "Hardware", model_type: str | None,
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


def attention_rate(profile: "Hardware", spec: "RunSpec", dtype: str, phase: str) -> float | None:
    """FLOP/s of the attention kernel on a CPU (see CPU_PREFILL_ATTENTION_FRACTION), a share
    of the float32 matmul figure, for products in `dtype`; None elsewhere: accelerators'
    attention runs at their matmul rate here."""
    if profile.kind != "cpu":
        return None
    float32 = profile.peak_flops("float32")
    if phase == "prefill":
        rows = spec.prompt_tokens
        return CPU_PREFILL_ATTENTION_FRACTION * rows / (rows + CPU_HALF_PEAK_ROWS) * float32
    return decode_attention_fraction(dtype) * float32
