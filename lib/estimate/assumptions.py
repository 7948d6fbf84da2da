"""Every assumption an estimate makes, in plain words with its source.

`listed` is what `lib.estimate.estimator.Estimate.assumptions` holds: the hardware's figures and
where they come from, the achieved shares of them (`lib.estimate.calibration`), what the stack's
weight format and KV cache mean for bytes and arithmetic (`format_words`), the fixed overhead,
mixtures of experts, float8, several devices and the memory rule.
"""

from __future__ import annotations

from lib.core.metrics import format_bytes
from lib.core.spec import RunSpec
from lib.core.stacks import FORMATS, STACKS, TRANSFORMERS, kv_bytes_per_number, stored_in_blocks
from lib.estimate import calibration, device_memory
from lib.estimate.hardware import Hardware
from lib.models.shapes import Shapes


def format_words(spec: RunSpec, products: str) -> list[str]:
    """What the stack's weight format and cache mean for the bytes and the arithmetic."""
    said = []
    if stored_in_blocks(spec.dtype):
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


def listed(profile: Hardware, spec: RunSpec, gpus: int, engine: str, weights_dtype: str,
                 products: str, peak_flops: float, bandwidth_fraction: float,
                 layer_overhead_s: float, overhead_words: str, overlap: bool,
                 shape: Shapes, encoder: bool) -> list[str]:
    bandwidth = profile.memory_bandwidth_bytes_per_s
    rate = f"{peak_flops / 1e12:,.1f} TFLOP/s" if peak_flops >= 1e12 else \
        f"{peak_flops / 1e9:,.0f} GFLOP/s"
    multiplied = weights_dtype if weights_dtype == calibration.FLOAT8 else products
    figures = (f"{profile.name}: {format_bytes(bandwidth)}/s memory bandwidth, {rate} "
               f"{profile.flops_dtype(multiplied)} matmuls, "
               f"{format_bytes(profile.memory_bytes)} of memory")
    said = [f"{figures} ({'measured here: ' if profile.measured else 'source: '}"
            f"{profile.source})."]
    if profile.flops_dtype(multiplied) != multiplied:
        said.append(f"{profile.name} has no {multiplied} matmul figure; its "
                    f"{profile.flops_dtype(multiplied)} figure is used.")
    said += format_words(spec, products)
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
            f"and matrix products with m tokens reach m / (m + {calibration.CPU_HALF_PEAK_ROWS}) of the "
            f"matmul rate, at least {calibration.least_compute_fraction(products, engine):.0%} "
            f"({calibrated}).")
        said.append(
            "Attention runs in its own kernel, after the products and slower: a prompt of P "
            f"tokens at {calibration.CPU_PREFILL_ATTENTION_FRACTION:.0%} x P / (P + {calibration.CPU_HALF_PEAK_ROWS}) "
            "of the float32 matmul rate, a decode step at "
            f"{calibration.decode_attention_fraction(products):.1%} of it (measured alone here with "
            "transformers: benchmarks/cpu_kernels.py; 16-bit decode attention takes a slow "
            "path).")
    elif profile.measured:
        said.append(
            f"Achieved: {bandwidth_fraction:.0%} of the measured bandwidth and "
            f"{calibration.MEASURED_GPU_COMPUTE_FRACTION:.0%} of the measured matmul rate (the H200's "
            "datasheet share over its measured copy share, 0.65 / 0.85).")
    else:
        said.append(
            f"Achieved: {bandwidth_fraction:.0%} of the datasheet bandwidth and "
            f"{calibration.DATASHEET_COMPUTE_FRACTION:.0%} of the dense matmul peak "
            f"({calibration.SOURCES['datasheet_fractions']}).")
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
    if weights_dtype == calibration.FLOAT8:
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
            f"{calibration.ALL_REDUCE_LATENCY_S * 1e6:.0f} us each ({calibration.SOURCES['all_reduce']}: 17-29 us "
            "per all-reduce on 2-8 A100s).")
    said.append(f"Memory: weights + KV cache for batch x (prompt + output) tokens + working "
                "memory (lib.estimate.memory's estimate)"
                f"{', weights and cache split over the devices' if gpus > 1 else ''}; "
                f"{device_memory.MEMORY_HEADROOM_FRACTION:.0%} of each device kept free "
                f"({calibration.SOURCES['headroom']}).")
    return said


def technique_words(spec: RunSpec, full: Shapes, shape: Shapes,
                    speculated: dict | None) -> list[str]:
    """What pruning, early exit and speculative decoding change (lib.estimate.techniques)."""
    from lib.core.metrics import format_seconds

    said = []
    if shape.layers != full.layers:
        why = f"early exit after layer {spec.exit_layer}" if spec.exit_layer is not None \
            and spec.prune is None else spec.prune if spec.exit_layer is None else \
            f"{spec.prune} and early exit after layer {spec.exit_layer}"
        said.append(f"{why}: {shape.layers} of {full.layers} decoder layers run, so their "
                    f"weights, FLOPs and KV cache shrink in proportion "
                    f"({shape.parameters / 1e6:,.0f}M of {full.parameters / 1e6:,.0f}M "
                    "parameters); the embeddings and the output head stay whole.")
    if spec.prune is not None and spec.prune.startswith("mlp:"):
        said.append(f"{spec.prune}: each MLP keeps {shape.intermediate_size:,} of "
                    f"{full.intermediate_size:,} channels (three matrices per layer: gate, "
                    "up, down).")
    if spec.prune is not None and spec.prune.startswith("magnitude:"):
        said.append(f"{spec.prune}: the zeroed weights stay in dense matrices, read and "
                    "multiplied like any number, so nothing gets faster (sparse kernels "
                    "would need structured sparsity, which this pruning is not).")
    if speculated:
        draft = {"prompt-lookup": "copied from the prompt (no model runs)",
                 "early-exit": "from the model's own first quarter of layers",
                 "draft": "from a draft model of a third of the layers (a distilled student)"
                 }[speculated["method"]]
        said.append(
            f"Speculative decoding ({speculated['method']}): each step guesses "
            f"{speculated['guesses_per_step']:g} tokens {draft}, then one pass of the model "
            f"checks them together ({format_seconds(speculated['verify_s'])} against "
            f"{format_seconds(speculated['plain_step_s'])} for one token); "
            f"{speculated['acceptance_rate']:.0%} of guesses are accepted "
            f"({speculated['source']}), so a step yields {speculated['tokens_per_step']:.2f} "
            f"tokens: {format_seconds(speculated['per_token_s'])} per token.")
    return said
