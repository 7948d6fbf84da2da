import math
import re

import pytest

from lib.estimate import memory
from lib.measure import runner
from lib.core.errors import MemoryGuardError
from lib.estimate.memory import Shapes
from lib.measure.backends.base import load_advice
from lib.core.spec import RunSpec

SMOL = Shapes(parameters=134_515_008, layers=30, hidden_size=576, intermediate_size=1536,
              attention_heads=9, kv_heads=3, head_dim=64, vocab_size=49152)


@pytest.fixture
def free(monkeypatch):
    """Pretend `free.bytes` are free: every verdict reads them through `memory.free_bytes`."""
    class Free:
        bytes = 10**9
    monkeypatch.setattr(memory, "free_bytes", lambda device: Free.bytes)
    return Free


def test_kv_cache_per_token():
    # 2 (keys and values) x 30 layers x 3 KV heads x 64 dims x 4 bytes
    assert SMOL.kv_bytes_per_token("float32") == 46_080
    assert SMOL.kv_bytes_per_token("bfloat16") == 23_040


def test_kv_cache_width_is_the_stacks():
    # llama.cpp keeps float16 whatever the weights, ONNX Runtime float32, transformers the dtype.
    assert SMOL.kv_bytes_per_token("q4_k_m", "llama.cpp") == 23_040
    assert SMOL.kv_bytes_per_token("float32", "llama.cpp") == 23_040
    assert SMOL.kv_bytes_per_token("int4", "onnxruntime") == 46_080
    assert SMOL.kv_bytes_per_token("int8") == 46_080
    gguf = memory.estimate(SMOL, "q4_k_m", 2, 100, 28, stack="llama.cpp")
    assert gguf.kv_cache_bytes == 23_040 * 2 * 128
    assert gguf.weights_bytes == math.ceil(134_515_008 * 4.9 / 8)


def test_estimate_parts():
    est = memory.estimate(SMOL, "float32", batch_size=2, prompt_tokens=100, new_tokens=28)
    assert est.weights_bytes == 134_515_008 * 4
    assert est.kv_cache_bytes == 46_080 * 2 * 128
    assert est.total_bytes > est.weights_bytes + est.kv_cache_bytes + memory.MARGIN_BYTES
    loaded = memory.estimate(SMOL, "float32", 2, 100, 28, weights_loaded=True)
    assert loaded.weights_bytes == 0


def test_eager_attention_counts_every_copy_of_its_scores():
    # batch 8 x 9 heads x 2048 x 2048 scores: float32 holds two copies at once; bfloat16 its
    # masked scores (2 bytes), softmax's float32 copy and float32 output (4 + 4).
    scores = 8 * 9 * 2048 * 2048
    for dtype, per_score in (("float32", 8), ("bfloat16", 10)):
        eager = memory.estimate(SMOL, dtype, 8, 2048, 8, attention="eager")
        sdpa = memory.estimate(SMOL, dtype, 8, 2048, 8, attention="sdpa")
        assert eager.activations_bytes >= scores * per_score > sdpa.activations_bytes
    # An unknown kernel is assumed to materialize them too.
    assert memory.estimate(SMOL, "float32", 8, 2048, 8, attention="flex") == \
        memory.estimate(SMOL, "float32", 8, 2048, 8, attention="eager")


def test_static_cache_has_a_mask_over_prompt_and_output():
    dynamic = memory.estimate(SMOL, "float32", 4, 1024, 64, attention="sdpa")
    static = memory.estimate(SMOL, "float32", 4, 1024, 64, attention="sdpa", kv_cache="static")
    assert static.kv_cache_bytes == dynamic.kv_cache_bytes
    assert static.activations_bytes > dynamic.activations_bytes - dynamic.kv_cache_bytes // 30


@pytest.mark.parametrize("field", ["batch_size", "prompt_tokens", "new_tokens"])
def test_estimate_grows_with_each_size(field):
    # The advice finds the largest size that fits by bisection: it relies on this.
    base = {"batch_size": 4, "prompt_tokens": 512, "new_tokens": 32}
    totals = [memory.estimate(SMOL, "bfloat16", **{**base, field: value}).total_bytes
              for value in (1, 2, 3, 8, 64, 65)]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)


def test_verdict_message_carries_the_numbers(free):
    need = memory.estimate(SMOL, "float32", 64, 8000, 100)
    verdict = memory.assess(need, "cpu", "batch 64 x 8100 tokens", advice="Use batch 2.")
    assert not verdict.fits and verdict.free_bytes == 10**9
    assert verdict.message.startswith("Not enough memory for batch 64 x 8100 tokens: it needs "
                                      f"about {memory.format_bytes(need.total_bytes)}")
    assert "only 1.0 GB is free on cpu" in verdict.message
    assert verdict.message.endswith("Use batch 2.")
    with pytest.raises(MemoryGuardError) as caught:
        verdict.enforce()
    assert str(caught.value) == verdict.message
    memory.guard(memory.estimate(SMOL, "float32", 1, 8, 1, weights_loaded=True), "cpu", "tiny")


def test_releasable_memory_counts_and_is_said(free):
    need = memory.estimate(SMOL, "float32", 1, 64, 8)
    free.bytes = need.total_bytes - 100
    assert not memory.assess(need, "cpu", "it").fits
    verdict = memory.assess(need, "cpu", "it", releasable_bytes=200)
    assert verdict.fits and "that other loaded models would give back" in verdict.message


def test_card_and_guard_give_the_same_verdict(fake_backend, free):
    spec = RunSpec(batch_size=64, prompt_tokens=4096, new_tokens=4)
    card = fake_backend.assess_memory(spec, weights_loaded=False)
    with pytest.raises(MemoryGuardError) as caught:
        fake_backend.guard_memory(spec, weights_loaded=False)
    assert str(caught.value) == card.message
    # Same function as the low-level estimate, so the numbers match it too.
    assert card.need == fake_backend.run_need(spec, weights_loaded=False)
    free.bytes = 10**12
    assert fake_backend.guard_memory(spec, weights_loaded=False).fits


def test_the_cli_command_of_the_issue_is_refused_before_loading(fake_backend, free):
    free.bytes = 24 * 10**9
    spec = RunSpec(model_id="smollm2-1.7b", batch_size=64, prompt_tokens=4096, new_tokens=4)
    with pytest.raises(MemoryGuardError, match="batch 64 x 4100 tokens of SmolLM2-1.7B"):
        runner.run(spec)
    assert fake_backend.loads == []


def _options(advice: str) -> list[str]:
    match = re.match(r"Any one of these fits: (.*); or choose a smaller model\.", advice)
    return match.group(1).split(", ") if match else []


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int8"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_advice_never_proposes_what_is_selected(fake_backend, free, dtype, attention):
    spec = RunSpec(batch_size=1, prompt_tokens=8192 - 64, new_tokens=64, dtype=dtype,
                   attention=attention)
    free.bytes = int(0.9 * fake_backend.run_need(spec, weights_loaded=False).total_bytes)
    verdict = fake_backend.assess_memory(spec, weights_loaded=False)
    assert not verdict.fits
    options = _options(verdict.advice)
    assert dtype not in options and not any(o.startswith("batch") for o in options)
    if attention == "sdpa":
        assert "the sdpa attention kernel" not in options
    if dtype in ("bfloat16", "float16"):
        assert "bfloat16" not in options and "float16" not in options   # same size


def test_every_option_offered_fits(fake_backend, free):
    free.bytes = 6 * 10**9
    spec = RunSpec(batch_size=16, prompt_tokens=2048, new_tokens=64, attention="eager")
    verdict = fake_backend.assess_memory(spec, weights_loaded=False)
    options = _options(verdict.advice)
    assert options, verdict.advice
    changes = {"the sdpa attention kernel": {"attention": "sdpa"},
               "bfloat16": {"dtype": "bfloat16"}, "int8": {"dtype": "int8"}}
    for option in options:
        if option.startswith("batch "):
            change = {"batch_size": int(option.split()[1])}
            bigger = {"batch_size": change["batch_size"] + 1}
        elif option.startswith("a prompt of at most"):
            change = {"prompt_tokens": int(option.split()[5].replace(",", ""))}
            bigger = {"prompt_tokens": change["prompt_tokens"] + 8}
        else:
            change, bigger = changes[option], None
        assert fake_backend.assess_memory(spec.replace(**change), False).fits, option
        if bigger:       # the largest that fits, not just one that does
            assert not fake_backend.assess_memory(spec.replace(**bigger), False).fits, option


def test_weights_that_alone_do_not_fit_get_load_advice(fake_backend, free):
    free.bytes = 20 * 10**9
    spec = RunSpec(model_id="deepseek-r1-distill-llama-8b", dtype="bfloat16")
    free.bytes = 10 * 10**9
    verdict = fake_backend.assess_memory(spec, weights_loaded=False)
    assert "The weights alone don't fit. Choose a smaller model." == verdict.advice
    with pytest.raises(MemoryGuardError, match="loading DeepSeek-R1-Distill-Llama-8B in bfloat16"):
        fake_backend.guard_load(spec.model_id, "cpu", "bfloat16")


def test_load_advice_offers_only_smaller_dtypes_the_device_has():
    assert "bfloat16" in load_advice("smollm2-1.7b", "float32")
    assert "Choose bfloat16" not in load_advice("smollm2-1.7b", "bfloat16")
    assert "int8" not in load_advice("smollm2-1.7b", "bfloat16")        # int8 loads float32
    assert "bfloat16" not in load_advice("smollm2-1.7b", "float16")     # same size
    assert "int8" not in load_advice("smollm2-1.7b", "float32", device="cuda")
    # With the memory known, only what fits is offered.
    assert load_advice("smollm2-1.7b", "float32", available_bytes=10**9) == \
        "The weights alone don't fit. Choose a smaller model."


def test_peak_tracking_sees_an_allocation():
    import mmap

    import psutil
    with memory.track_peak("cpu") as peak:
        # Read inside the block: other threads may free memory before the peak's reset.
        before = psutil.Process().memory_info().rss
        # Fresh anonymous pages, touched: malloc could instead reuse memory already resident.
        block = mmap.mmap(-1, 64 * 2**20)
        block.write(b"x" * (64 * 2**20))
        block.close()
    assert peak.peak_bytes >= before + 60 * 2**20
    assert peak.method


def test_format_bytes():
    from lib.core.metrics import format_bytes
    assert format_bytes(512) == "512 B"
    assert format_bytes(46_080) == "46.1 KB"
    assert format_bytes(3 * 10**9) == "3.0 GB"
