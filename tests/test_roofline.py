"""Roofline: byte and FLOP counts against hand computations, floors, bounds and sentences."""

import subprocess
import sys
from pathlib import Path

import pytest

from lib.core import metrics
from lib.estimate import roofline
from lib.core.errors import InvalidSpecError
from lib.models.shapes import shapes
from lib.estimate.roofline import Costs, PhaseCost, bound, costs, floor, judge
from lib.estimate.roofline_words import sentences
from lib.core.spec import RunSpec

ROOT = Path(__file__).resolve().parent.parent

# GPT-2 (124M), counted by hand: 12 layers, hidden 768, MLP 3072, 12 heads of 64, vocabulary
# 50257, 1024 positions, LM head tied to the token embedding.
GPT2_TOKEN_EMBEDDING = 50257 * 768                     # wte, read whole by the tied LM head
GPT2_POSITION_EMBEDDING = 1024 * 768                   # wpe, only gathered: never multiplied
GPT2_LAYER = (2 * 768                                  # ln_1
              + 768 * 2304 + 2304                      # c_attn (q, k, v)
              + 768 * 768 + 768                        # attention c_proj
              + 2 * 768                                # ln_2
              + 768 * 3072 + 3072                      # c_fc
              + 3072 * 768 + 768)                      # mlp c_proj
GPT2_PARAMETERS = GPT2_TOKEN_EMBEDDING + GPT2_POSITION_EMBEDDING + 12 * GPT2_LAYER + 2 * 768
GPT2_MULTIPLIED = GPT2_PARAMETERS - GPT2_POSITION_EMBEDDING
GPT2_KV_PER_TOKEN_FLOAT32 = 2 * 12 * 12 * 64 * 4      # keys + values, layers, heads, dims, bytes
GPT2_ATTENTION_PER_PAIR = 2 * 2 * 12 * 12 * 64        # QK^T + AV, 2 FLOPs each, layers x heads

# Llama-3.2-1B: 16 layers, hidden 2048, MLP 8192, 32 heads and 8 KV heads of 64, vocabulary
# 128256, tied embeddings, no biases.
LLAMA_EMBEDDING = 128256 * 2048
LLAMA_LAYER = (2048 * 2048 + 2 * 2048 * 512 + 2048 * 2048   # q, k, v, o
               + 3 * 2048 * 8192                            # gate, up, down
               + 2 * 2048)                                  # two RMSNorms
LLAMA_PARAMETERS = LLAMA_EMBEDDING + 16 * LLAMA_LAYER + 2048
LLAMA_NORMS = 16 * 2 * 2048 + 2048
LLAMA_KV_PER_TOKEN_BFLOAT16 = 2 * 16 * 8 * 64 * 2
LLAMA_ATTENTION_PER_PAIR = 2 * 2 * 16 * 32 * 64


def test_the_catalog_shapes_are_the_hand_counted_ones():
    assert shapes("gpt2").parameters == GPT2_PARAMETERS == 124_439_808
    assert shapes("gpt2").embedding_parameters == GPT2_POSITION_EMBEDDING
    assert shapes("llama-3.2-1b").parameters == LLAMA_PARAMETERS == 1_235_814_400
    assert shapes("llama-3.2-1b").embedding_parameters == 0          # tied: the head reads it


def test_gpt2_float32_counts_by_hand():
    spec = RunSpec(model_id="gpt2", batch_size=1, prompt_tokens=64, new_tokens=32)
    c = costs(shapes("gpt2"), spec)
    context = 64 + 32 / 2
    assert c.decode_context_tokens == context == 80
    assert c.decode.weight_bytes == GPT2_MULTIPLIED * 4 == 494_613_504
    assert c.decode.kv_bytes == GPT2_KV_PER_TOKEN_FLOAT32 * (context + 1)   # read all, write 1
    assert c.decode.flops == 2 * GPT2_MULTIPLIED + GPT2_ATTENTION_PER_PAIR * context
    assert c.prefill.weight_bytes == GPT2_MULTIPLIED * 4
    assert c.prefill.kv_bytes == GPT2_KV_PER_TOKEN_FLOAT32 * 64                # written once
    # The LM head runs for the last prompt token only; causal attention: 64 x 65 / 2 pairs.
    assert c.prefill.flops == (2 * (64 * (GPT2_MULTIPLIED - GPT2_TOKEN_EMBEDDING)
                                    + GPT2_TOKEN_EMBEDDING)
                               + GPT2_ATTENTION_PER_PAIR * 64 * 65 / 2)
    assert c.layers == 12 and c.has_decode and not c.moe


def test_gpt2_int8_reads_only_linear_weights_as_bytes():
    # GPT-2's blocks are Conv1D, which dynamic quantization leaves in float32: only its (tied)
    # LM head becomes an int8 Linear.
    c = costs(shapes("gpt2"), RunSpec(model_id="gpt2", dtype="int8"))
    assert c.decode.weight_bytes == (GPT2_MULTIPLIED - GPT2_TOKEN_EMBEDDING) * 4 \
        + GPT2_TOKEN_EMBEDDING
    assert c.decode.kv_bytes == GPT2_KV_PER_TOKEN_FLOAT32 * (64 + 16 + 1)   # cache stays float32


def test_llama_bfloat16_batch_counts_by_hand():
    spec = RunSpec(model_id="llama-3.2-1b", dtype="bfloat16", batch_size=4, prompt_tokens=512,
                   new_tokens=128)
    c = costs(shapes("llama-3.2-1b"), spec)
    context = 512 + 64
    assert c.decode.weight_bytes == LLAMA_PARAMETERS * 2          # once per step, whole batch
    assert c.decode.kv_bytes == 4 * LLAMA_KV_PER_TOKEN_BFLOAT16 * (context + 1)
    assert c.decode.flops == 4 * (2 * LLAMA_PARAMETERS + LLAMA_ATTENTION_PER_PAIR * context)
    assert c.prefill.kv_bytes == 4 * 512 * LLAMA_KV_PER_TOKEN_BFLOAT16
    assert c.prefill.flops == 4 * (2 * (512 * (LLAMA_PARAMETERS - LLAMA_EMBEDDING)
                                        + LLAMA_EMBEDDING)
                                   + LLAMA_ATTENTION_PER_PAIR * 512 * 513 / 2)


def test_llama_int8_linear_weights_in_one_byte_the_rest_in_four():
    c = costs(shapes("llama-3.2-1b"), RunSpec(model_id="llama-3.2-1b", dtype="int8"))
    assert c.decode.weight_bytes == LLAMA_NORMS * 4 + (LLAMA_PARAMETERS - LLAMA_NORMS)


def test_weight_width_can_be_given():
    spec = RunSpec(model_id="llama-3.2-1b", dtype="bfloat16")
    fp8 = costs(shapes("llama-3.2-1b"), spec, weight_bytes_per_param=1)
    assert fp8.decode.weight_bytes == LLAMA_PARAMETERS
    assert fp8.decode.kv_bytes == costs(shapes("llama-3.2-1b"), spec).decode.kv_bytes


def test_block_formats_read_their_bits_per_weight_and_the_stacks_cache():
    llama = shapes("llama-3.2-1b")
    base = RunSpec(model_id="llama-3.2-1b", prompt_tokens=64, new_tokens=32)
    float32 = costs(llama, base)
    gguf = costs(llama, base.replace(stack="llama.cpp", dtype="q4_k_m"))
    # Q4_K_M: 4.9 of float32's 32 bits per weight; llama.cpp's cache is float16, half float32's.
    assert gguf.decode.weight_bytes == LLAMA_PARAMETERS * 4.9 / 8
    assert gguf.decode.weight_bytes == pytest.approx(float32.decode.weight_bytes * 4.9 / 32)
    assert gguf.prefill.weight_bytes == gguf.decode.weight_bytes
    assert gguf.decode.kv_bytes == float32.decode.kv_bytes / 2
    assert gguf.prefill.kv_bytes == 64 * LLAMA_KV_PER_TOKEN_BFLOAT16     # float16: 2 bytes
    assert gguf.decode.flops == float32.decode.flops            # the same arithmetic
    f16 = costs(llama, base.replace(stack="llama.cpp", dtype="float16"))
    assert f16.decode.weight_bytes == LLAMA_PARAMETERS * 2 and f16.decode.kv_bytes == \
        gguf.decode.kv_bytes
    for dtype, bits in (("q8_0", 8.5), ("q4_1", 5.0)):
        assert costs(llama, base.replace(stack="llama.cpp", dtype=dtype)).decode.weight_bytes \
            == LLAMA_PARAMETERS * bits / 8
    # ONNX Runtime's int4: 5.1 bits per weight, the cache in float32 like float32's.
    onnx = costs(llama, base.replace(stack="onnxruntime", dtype="int4"))
    assert onnx.decode.weight_bytes == LLAMA_PARAMETERS * 5.1 / 8
    assert onnx.decode.kv_bytes == float32.decode.kv_bytes
    # Tensor parallelism still divides them.
    split = costs(llama, base.replace(stack="llama.cpp", dtype="q4_k_m"), devices=4)
    assert split.decode.bytes_moved == pytest.approx(gguf.decode.bytes_moved / 4)


@pytest.mark.parametrize("stack, dtype, accelerator, products", [
    ("llama.cpp", "q4_k_m", False, "float32"),       # widened to the CPU's activations
    ("llama.cpp", "q4_k_m", True, "float16"),        # ... and to a GPU kernel's
    ("onnxruntime", "int4", True, "float16"),
    ("llama.cpp", "float16", False, "float32"),      # F16 weights multiplied in float32 on a CPU
    ("llama.cpp", "float16", True, "float16"),
    ("transformers", "float16", False, "float16"),   # torch's own float16 kernels
    ("transformers", "int8", False, "int8"),
])
def test_the_products_run_in_the_activations_format(stack, dtype, accelerator, products):
    assert roofline.matmul_dtype(stack, dtype, accelerator) == products


def test_mixture_of_experts_reads_only_the_experts_used():
    moe = shapes("deepseek-v3-mini-moe")
    gathered = moe.embedding_parameters                      # untied: the input embedding
    spec = RunSpec(model_id="deepseek-v3-mini-moe", batch_size=1)
    one = costs(moe, spec)
    assert one.moe
    assert one.decode.weight_bytes == (moe.active_parameters - gathered) * 4
    assert one.decode.weight_bytes < (moe.parameters - gathered) * 4
    assert roofline.touched_expert_share(moe, 1) == 4 / 16
    # A batch's tokens route to different experts: more of them are read, never more than all.
    batch = costs(moe, spec.replace(batch_size=8)).decode.weight_bytes
    assert one.decode.weight_bytes < batch < (moe.parameters - gathered) * 4
    untouched = moe.routed_parameters * (12 / 16) ** 8
    assert batch == pytest.approx((moe.parameters - gathered - untouched) * 4)
    # FLOPs count the active experts per token only.
    assert one.decode.flops < 2 * (moe.parameters - gathered)


def test_multi_head_latent_attention_counts_the_latent_cache():
    moe = shapes("deepseek-v3-mini-moe")
    assert moe.latent_kv_elements_per_token == 4 * (128 + 32)       # layers x (rank + rope)
    c = costs(moe, RunSpec(model_id="deepseek-v3-mini-moe", prompt_tokens=64, new_tokens=32))
    assert c.prefill.kv_bytes == 64 * 640 * 4
    assert c.decode.kv_bytes == (64 + 16 + 1) * 640 * 4
    # Attention arithmetic on the decompressed heads: keys 64 + 32 wide, values 64.
    assert c.decode.flops - 2 * (moe.active_parameters - moe.embedding_parameters) == \
        2 * 4 * 16 * (96 + 64) * 80


def test_encoder_runs_one_pass_and_never_decodes():
    encoder = shapes("all-minilm-l6-v2")
    spec = RunSpec(model_id="all-minilm-l6-v2", prompt_tokens=128)
    c = costs(encoder, spec)
    assert not c.has_decode and c.decode == PhaseCost(0.0, 0.0, 0.0)
    multiplied = encoder.parameters - encoder.embedding_parameters
    assert c.prefill.flops == 2 * 128 * multiplied + 2 * 2 * 6 * 12 * 32 * 128 * 128
    verdict = judge(c, floor(c, 1e10, 1e11), 0.05, None)
    assert verdict["tpot_s"] is None and verdict["decode_bound"] is None
    assert verdict["decode_bandwidth_utilisation"] is None and verdict["decode_bytes"] is None
    said = sentences(c, floor(c, 1e10, 1e11), 0.05, None, 1e10, 1e11)
    assert said and "this run took 50.0 ms" in said[0]
    assert not any("new token" in s or "decode step" in s or "first token" in s for s in said)


def test_tensor_parallelism_divides_per_device_weights_kv_and_flops():
    spec = RunSpec(model_id="llama-3.2-1b", batch_size=2, prompt_tokens=256)
    one = costs(shapes("llama-3.2-1b"), spec)
    four = costs(shapes("llama-3.2-1b"), spec, devices=4)
    for phase in ("prefill", "decode"):
        a, b = getattr(one, phase), getattr(four, phase)
        assert b.weight_bytes == a.weight_bytes / 4
        assert b.kv_bytes == a.kv_bytes / 4
        assert b.flops == a.flops / 4
    assert four.devices == 4


@pytest.mark.parametrize("devices", [0, -1, 1.5, True])
def test_impossible_device_counts_are_refused(devices):
    with pytest.raises(InvalidSpecError, match="devices"):
        costs(shapes("gpt2"), RunSpec(model_id="gpt2"), devices=devices)


@pytest.mark.parametrize("bandwidth, flops", [(0, 1e9), (1e9, -1), (float("nan"), 1e9)])
def test_impossible_ceilings_are_refused(bandwidth, flops):
    c = costs(shapes("gpt2"), RunSpec(model_id="gpt2"))
    with pytest.raises(InvalidSpecError, match="positive number"):
        floor(c, bandwidth, flops)


@pytest.mark.parametrize("model_id", ["gpt2", "llama-3.2-1b", "deepseek-v3-mini-moe"])
def test_floors_grow_with_batch_and_prompt(model_id):
    base = RunSpec(model_id=model_id, dtype="bfloat16", new_tokens=32)

    def floors(spec):
        f = floor(costs(shapes(model_id), spec), 2e10, 2e11)
        return f.ttft_s, f.tpot_s

    for name, values in (("batch_size", [1, 2, 4, 8, 16, 64]),
                         ("prompt_tokens", [8, 64, 256, 1024, 4096])):
        seen = [floors(base.replace(**{name: v})) for v in values]
        assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(seen, seen[1:])), (name, seen)


def test_floor_is_bytes_over_bandwidth_or_flops_over_peak():
    c = Costs(prefill=PhaseCost(1e9, 0.0, 1e12), decode=PhaseCost(2e9, 1e8, 4e9), layers=10)
    f = floor(c, 1e10, 1e11, source="declared")
    assert f.prefill_memory_s == pytest.approx(0.1) and f.prefill_compute_s == pytest.approx(10)
    assert f.decode_memory_s == pytest.approx(0.21) and f.decode_compute_s == pytest.approx(0.04)
    assert f.ttft_s == pytest.approx(10) and f.tpot_s == pytest.approx(0.21)


def test_bound_classifies_memory_compute_and_overhead():
    assert bound(0.2, 0.1, None) == "memory"
    assert bound(0.1, 0.2, None) == "compute"
    assert bound(0.2, 0.1, 0.3) == "memory"
    assert bound(0.2, 0.1, 0.6) == "memory"                 # exactly OVERHEAD_RATIO: not yet
    assert bound(0.2, 0.1, 0.61) == "overhead"
    assert bound(0.1, 0.2, 0.7) == "overhead"


def test_judge_reports_bounds_and_utilisation():
    c = Costs(prefill=PhaseCost(1e9, 0.0, 1e12), decode=PhaseCost(1e9, 0.0, 1e9), layers=10)
    f = floor(c, 1e10, 1e12, source="declared ceilings")   # prefill 1 s compute, decode 0.1 s
    verdict = judge(c, f, measured_ttft_s=2.0, measured_tpot_s=0.2)
    assert verdict["prefill_bound"] == "compute" and verdict["decode_bound"] == "memory"
    assert verdict["prefill_compute_utilisation"] == pytest.approx(0.5)
    assert verdict["decode_bandwidth_utilisation"] == pytest.approx(0.5)
    assert verdict["ttft_s"] == pytest.approx(1.0) and verdict["tpot_s"] == pytest.approx(0.1)
    assert verdict["decode_bytes"] == 1e9 and verdict["prefill_flops"] == 1e12
    assert verdict["memory_bandwidth_bytes_per_s"] == 1e10
    assert verdict["matmul_flops_per_s"] == 1e12 and verdict["source"] == "declared ceilings"
    slow = judge(c, f, measured_ttft_s=3.5, measured_tpot_s=0.5)
    assert slow["prefill_bound"] == "overhead" and slow["decode_bound"] == "overhead"
    estimate = judge(c, f, None, None)
    assert estimate["decode_bound"] == "memory" and estimate["prefill_bound"] == "compute"
    assert estimate["decode_bandwidth_utilisation"] is None
    assert set(verdict) == set(estimate) >= {
        "ttft_s", "tpot_s", "prefill_bound", "decode_bound", "decode_bandwidth_utilisation",
        "prefill_compute_utilisation", "decode_bytes", "decode_flops", "prefill_bytes",
        "prefill_flops", "memory_bandwidth_bytes_per_s", "matmul_flops_per_s", "source"}


def test_sentences_say_the_numbers():
    spec = RunSpec(model_id="gpt2", prompt_tokens=64, new_tokens=32)
    c = costs(shapes("gpt2"), spec)
    f = floor(c, 20e9, 200e9)
    # Decode: (494,613,504 + 5,971,968) bytes / 20 GB/s = 25.0 ms, measured 40 ms: 63%.
    decode = sentences(c, f, 0.05, 0.040, 20e9, 200e9)[-1]
    for words in ("Each new token reads all 494.6 MB of weights", "6.0 MB of KV cache",
                  "at 20.0 GB/s", "at least 25.0 ms", "this run took 40.0 ms",
                  "63% of the way to the floor"):
        assert words in decode, decode
    # Prefill: 2 x (64 x 85,056,000 + 38,597,376) + 36,864 x 2,080 = 11,041,039,872 FLOPs; at
    # 200 billion a second 55.2 ms, measured 60 ms: 92%.
    prefill = sentences(c, f, 0.060, 0.040, 20e9, 200e9)[0]
    assert c.prefill.flops == 11_041_039_872 and f.prefill_compute_s > f.prefill_memory_s
    for words in ("64-token prompt", "11.0 billion arithmetic operations",
                  "200.0 billion operations a second", "at least 55.2 ms",
                  "the first token came after 60.0 ms", "92%"):
        assert words in prefill, prefill
    estimated = sentences(c, f, None, None, 20e9, 200e9)
    assert len(estimated) == 2 and not any("this run" in s for s in estimated)


def test_sentences_name_overhead_in_plain_words():
    c = costs(shapes("gpt2"), RunSpec(model_id="gpt2", prompt_tokens=64, new_tokens=32))
    f = floor(c, 20e9, 200e9)
    said = sentences(c, f, 0.06, 0.100, 20e9, 200e9)     # decode floor 25.0 ms, took 100 ms
    overhead = said[-1]
    assert "overhead-bound" in overhead and "Python and kernel-launch overhead" in overhead
    assert "would allow 25.0 ms" in overhead and "the other 75.0 ms" in overhead
    assert "each of the 12 layers" in overhead and "6.2 ms" in overhead


def test_a_native_stacks_overhead_is_its_engines_not_pythons():
    spec = RunSpec(stack="llama.cpp", dtype="q8_0", prompt_tokens=64, new_tokens=32)
    c = costs(shapes(spec.model_id), spec)
    f = floor(c, 20e9, 200e9)
    overhead = sentences(c, f, 0.5, 0.5, 20e9, 200e9)[-1]
    assert "overhead-bound" in overhead and "llama.cpp's own fixed work" in overhead
    assert "Python" not in overhead


def test_a_run_faster_than_its_floor_says_the_ceilings_are_too_low():
    c = costs(shapes("gpt2"), RunSpec(model_id="gpt2"))
    f = floor(c, 20e9, 200e9)
    said = sentences(c, f, 0.001, 0.001, 20e9, 200e9)
    assert all("faster than this floor" in s for s in said)


def test_batches_mixtures_and_devices_are_worded():
    moe = shapes("deepseek-v3-mini-moe")
    c = costs(moe, RunSpec(model_id="deepseek-v3-mini-moe", batch_size=2), devices=2)
    said = " ".join(sentences(c, floor(c, 1e9, 1e15), None, None, 1e9, 1e15))
    assert "for each of the 2 requests" in said and "only the experts it uses" in said
    assert "on each of the 2 devices" in said


@pytest.mark.parametrize("count, words", [(538e6, "538.0 million"), (35.2e9, "35.2 billion"),
                                          (1.25e12, "1.2 trillion"), (999, "999.0")])
def test_operation_counts_in_words(count, words):
    assert metrics.format_operations(count) == words


def test_roofline_imports_without_torch():
    code = ("import sys\nimport lib.estimate.roofline\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_hand_built_shapes_without_expert_counts_read_the_active_parameters():
    """What an estimator may build for a model never loaded: no embedding or expert details."""
    from lib.models.shapes import Shapes
    r1_like = Shapes(parameters=671_000_000_000, active_parameters=37_000_000_000, layers=61,
                     hidden_size=7168, intermediate_size=18432, attention_heads=128,
                     kv_heads=128, head_dim=128, vocab_size=129280,
                     kv_elements_per_token=61 * 128 * (192 + 128),
                     latent_kv_elements_per_token=61 * (512 + 64))
    spec = RunSpec(model_id="gpt2", dtype="bfloat16", batch_size=8)
    c = costs(r1_like, spec, devices=8, weight_bytes_per_param=1)
    gathered = 129280 * 7168                     # untied unless known otherwise
    assert c.moe
    assert c.decode.weight_bytes == (37_000_000_000 - gathered) / 8
    assert c.decode.kv_bytes == 8 * (64 + 16 + 1) * 61 * 576 * 2 / 8
    routed = Shapes(**{**r1_like.__dict__, "experts": 256, "experts_per_token": 8,
                       "routed_parameters": 650_000_000_000})
    assert costs(routed, spec, devices=8, weight_bytes_per_param=1).decode.weight_bytes > \
        c.decode.weight_bytes                    # 8 tokens touch more experts than one
