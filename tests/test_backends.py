"""The backend seam: discovery, default choice, the fake override, and transformers' arguments."""

import pytest
import torch

from fakes import FakeBackend, TINY_SHAPES  # noqa: F401
from lib.measure import backends
from lib.measure.backends.transformers_lm import TokenTimestamps, generate_arguments
from lib.core.errors import UnsupportedError
from lib.models.catalog import get_entry
from lib.core.spec import RunSpec
from lib.core.timing import ManualClock


def test_every_backend_module_is_found_by_its_name():
    found = backends.registry()
    assert {"transformers", "encoder"} <= set(found)
    assert all(name == backend.name for name, backend in found.items())
    assert "fake" not in found                  # never offered to a user


def test_default_backend_follows_the_model_kind():
    assert backends.for_model("smollm2-135m-instruct").name == "transformers"
    assert backends.for_model("all-minilm-l6-v2").name == "encoder"
    with pytest.raises(UnsupportedError, match="No backend called 'vllm'"):
        backends.get("vllm")


def test_use_swaps_every_choice_for_the_fake():
    fake = FakeBackend()
    with backends.use(fake):
        assert backends.for_model("gpt2") is fake and backends.get("transformers") is fake
    assert backends.for_model("gpt2").name == "transformers"


@pytest.mark.slow
def test_generate_arguments_fix_the_output_length():
    ids = torch.ones(2, 16, dtype=torch.long)
    kwargs = generate_arguments(RunSpec(new_tokens=11), ids, tokenizer=None)
    assert kwargs["max_new_tokens"] == kwargs["min_new_tokens"] == 11
    assert kwargs["do_sample"] is False and kwargs["disable_compile"] is True
    assert "cache_implementation" not in kwargs
    static = generate_arguments(RunSpec(kv_cache="static"), ids, tokenizer=None)
    assert static["cache_implementation"] == "static" and static["disable_compile"] is True
    compiled = generate_arguments(RunSpec(compile="on"), ids, tokenizer=None)
    assert compiled["cache_implementation"] == "static"      # compile implies a static cache
    assert compiled["compile_config"]._compile_all_devices is True
    assert "disable_compile" not in compiled


def test_streamer_skips_the_prompt():
    clock = ManualClock(5.0)
    streamer = TokenTimestamps(clock)
    streamer.put("prompt")
    clock.advance(1.0)
    streamer.put("token")
    assert streamer.times_s == [6.0]


def test_attention_kernel_is_set_on_the_shared_model():
    from lib.measure.backends.transformers_lm import set_attention

    class Model:
        def __init__(self):
            self.seen = []

        def set_attn_implementation(self, name):
            self.seen.append(name)
    model = Model()
    set_attention(model, "eager")
    set_attention(model, "sdpa")
    assert model.seen == ["eager", "sdpa"]


def test_check_refuses_a_model_kind_the_backend_cannot_run():
    with pytest.raises(UnsupportedError, match="can't run all-MiniLM-L6-v2"):
        backends.get("transformers").check(get_entry("all-minilm-l6-v2"), RunSpec())


@pytest.mark.slow
def test_memory_need_counts_output_tokens_only_for_generating_models():
    spec = RunSpec(model_id="all-minilm-l6-v2", batch_size=2, prompt_tokens=64, new_tokens=500)
    need = backends.get("encoder").run_need(spec, weights_loaded=True)
    assert need.kv_cache_bytes == 0
    lm = backends.get("transformers").run_need(RunSpec(batch_size=2, prompt_tokens=64,
                                                       new_tokens=36), weights_loaded=True)
    assert lm.kv_cache_bytes == 46_080 * 2 * 100 and lm.weights_bytes == 0
