"""llama.cpp through the backend seam: every format on the default model, presets, refusals.

The tests that run llama.cpp are skipped where llama-cpp-python is not installed
(`scripts/setup.sh --stacks` installs it; CI does); the app itself must import and refuse
cleanly without it, and the refusals below (which need no model) run everywhere.
"""

import json
import os

import pytest

from lib.measure import backends, runner
from lib.estimate import memory
from lib.core import stacks
from lib.core.errors import MemoryGuardError, UnsupportedError
from lib.models import catalog, gguf_formats
from lib.measure.cache import ModelCache
from lib.models.catalog import OWN, RANDOM, CatalogEntry, get_entry, package_file
from lib.core.spec import RunSpec

DEFAULT = "smollm2-135m-instruct"
FORMATS = ("float32", "float16", "q8_0", "q4_k_m", "q4_1")


def llama_spec(**changes) -> RunSpec:
    return RunSpec(stack="llama.cpp", **changes)


@pytest.fixture
def installed(monkeypatch):
    """llama.cpp counts as installed, so the checks after the install check are reached."""
    monkeypatch.setattr(stacks, "_found", lambda module: True)


@pytest.fixture
def tiny_presets(monkeypatch):
    """Two small random-weight presets: Qwen2 (biases, tied output, 152k vocabulary) and
    Llama 3 (rope scaling, untied output, head_dim unlike hidden / heads)."""
    entries = {
        "tiny-qwen2": CatalogEntry("tiny-qwen2", "Tiny Qwen2", "test", RANDOM,
                                   catalog._qwen2(64, 128, 2, 4, 2, 4096, 1e6, True)),
        "tiny-llama3": CatalogEntry("tiny-llama3", "Tiny Llama 3", "test", RANDOM, {
            **catalog._llama(64, 128, 2, 4, 2, 50000, 16384, 5e5, False, head_dim=32),
            "rope_parameters": catalog.LLAMA3_ROPE}),
    }
    for model_id, entry in entries.items():
        monkeypatch.setitem(catalog.CATALOG, model_id, entry)
    return entries


# --- without running llama.cpp -----------------------------------------------------------------

def test_backend_is_found_and_never_the_default():
    backend = backends.get("llama.cpp")
    assert backend.name == "llama.cpp" and backend.label == "llama.cpp"
    assert backend.default_for == ()
    assert backends.for_model(DEFAULT).name == "transformers"


def test_a_missing_stack_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(stacks, "_found", lambda module: False)
    with pytest.raises(UnsupportedError, match=r"llama.cpp is not installed on this machine") \
            as raised:
        runner.preflight(llama_spec(dtype="q4_k_m"))
    assert "setup.sh" not in str(raised.value)            # the message suits a browser
    assert "scripts/setup.sh --stacks" in raised.value.cli_hint      # the CLI adds the command


def test_without_llama_cpp_loading_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "llama_cpp", None)       # import raises ImportError
    with pytest.raises(UnsupportedError, match=r"llama.cpp is not installed on this machine") \
            as raised:
        backends.get("llama.cpp").load(DEFAULT, "cpu", "float32")
    assert "scripts/setup.sh --stacks" in raised.value.cli_hint


@pytest.mark.parametrize("dtype, stack", [("int8", "transformers"), ("bfloat16", "transformers"),
                                          ("int4", "ONNX Runtime")])
def test_a_format_it_lacks_names_the_stack_that_runs_it(installed, dtype, stack):
    with pytest.raises(UnsupportedError, match=f"format of {stack}.*q4_k_m"):
        runner.preflight(llama_spec(dtype=dtype))


@pytest.mark.parametrize("model_id, family", [
    ("gpt2", "GPT-2"), ("deepseek-v3-mini-moe", "DeepSeek-V3-style mixture of experts")])
def test_other_architectures_are_sent_to_transformers(installed, model_id, family):
    with pytest.raises(UnsupportedError, match="runs the Llama, Qwen2 and SmolLM2 families; "
                                               f"choose the transformers stack for {family}"):
        runner.preflight(llama_spec(model_id=model_id, dtype="q8_0"))


def test_an_encoder_is_sent_to_transformers(installed):
    with pytest.raises(UnsupportedError, match="choose the transformers stack"):
        runner.preflight(llama_spec(model_id="all-minilm-l6-v2", dtype="float32"))


def test_batch_above_one_is_refused(installed):
    with pytest.raises(UnsupportedError, match=r"one request at a time here \(batch 1\); use "
                                               "the transformers stack to vary batch size"):
        runner.preflight(llama_spec(dtype="q4_1", batch_size=2))


def test_refuses_stack_settings_it_does_not_have(installed):
    with pytest.raises(UnsupportedError, match="no such setting"):
        backends.get("llama.cpp").check(get_entry(DEFAULT), llama_spec(kv_cache="static"))


def test_your_gguf_file_runs_only_in_the_format_it_is_stored_in():
    path = package_file(get_entry(DEFAULT))
    entry = CatalogEntry(str(path), path.name, "yours", OWN, catalog.SMOLLM2_135M,
                         local_path=str(path))
    assert gguf_formats.file_type(path) == "q4_1"
    gguf_formats.check_supported(entry, "q4_1")
    with pytest.raises(UnsupportedError, match="stored in q4_1.*choose q4_1"):
        gguf_formats.check_supported(entry, "float16")
    folder = CatalogEntry("/models/mine", "mine", "yours", OWN, catalog.SMOLLM2_135M,
                          local_path="/models/mine")
    with pytest.raises(UnsupportedError, match="convert_hf_to_gguf"):
        gguf_formats.check_supported(folder, "q4_1")


@pytest.mark.slow      # imports transformers' model code: seconds
def test_a_file_that_would_not_fit_on_disk_is_never_started(tiny_presets, tmp_path,
                                                           monkeypatch):
    import shutil
    from collections import namedtuple

    from lib.models.shapes import shapes

    shapes("tiny-qwen2")        # read from the session's cache (kept between runs), not rebuilt
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30, 10 * 2**20))
    with pytest.raises(UnsupportedError, match=r"\(q4_k_m, float16\) need about .* of disk, but "
                                               r"only 10\.5 MB is free"):
        gguf_formats.gguf_file(tiny_presets["tiny-qwen2"], "q4_k_m")
    assert not any((tmp_path / "gguf").rglob("*.gguf"))


def test_a_failed_build_leaves_neither_the_file_nor_its_staging_copy(tmp_path):
    def fails(staging):
        staging.write_bytes(b"half a file")
        raise OSError("disk went away")
    with pytest.raises(OSError, match="disk went away"):
        gguf_formats._atomic_write(tmp_path / "q8_0.gguf", fails)
    assert list(tmp_path.iterdir()) == []
    gguf_formats._atomic_write(tmp_path / "q8_0.gguf", lambda staging: staging.write_bytes(b"x"))
    assert [p.name for p in tmp_path.iterdir()] == ["q8_0.gguf"]


def test_context_is_what_llama_cpp_allocates():
    from lib.measure.backends.llama_cpp import context_size
    assert context_size(llama_spec(prompt_tokens=64, new_tokens=32)) == 512   # never below load's
    assert context_size(llama_spec(prompt_tokens=500, new_tokens=12)) == 512
    assert context_size(llama_spec(prompt_tokens=500, new_tokens=13)) == 768
    assert context_size(llama_spec(prompt_tokens=1000, new_tokens=24)) == 1024


def test_memory_need_counts_the_gguf_file_and_the_float16_kv_cache(installed):
    backend = backends.get("llama.cpp")
    spec = llama_spec(dtype="q4_1", prompt_tokens=1000, new_tokens=24)
    need = backend.run_need(spec, weights_loaded=False)
    # The packaged file is what llama.cpp maps; 1,024 cells x 30 layers x 3 KV heads x 64 x
    # keys and values x 2 bytes (llama.cpp's log: "KV buffer size = 22.50 MiB").
    assert need.weights_bytes == package_file(get_entry(DEFAULT)).stat().st_size
    assert need.kv_cache_bytes == 1024 * 30 * 3 * 64 * 2 * 2 == round(22.5 * 2**20)
    assert need.activations_bytes > 512 * 49152 * 4            # a full batch's logits at least
    assert backend.run_need(spec, weights_loaded=True).weights_bytes == 0


def test_the_guard_refuses_with_the_formats_that_would_fit(installed, monkeypatch):
    backend = backends.get("llama.cpp")
    model_id = "smollm2-1.7b"
    sizes = {d: backend.load_need(model_id, d).total_bytes for d in ("float32", "q4_k_m")}
    monkeypatch.setattr(memory, "free_bytes", lambda device: (sizes["q4_k_m"] + 2**20))
    verdict = backend.assess_memory(llama_spec(model_id=model_id, dtype="float32"), False)
    assert not verdict.fits
    assert "weights alone don't fit" in verdict.message
    assert "Q4_K_M (weights about" in verdict.message and "F16" not in verdict.advice
    with pytest.raises(MemoryGuardError, match="Q4_K_M"):
        runner.prepare(llama_spec(model_id=model_id, dtype="float32"), ModelCache())


@pytest.mark.slow           # imports torch (the tiny presets' shapes): 4 s of a fast lane
def test_loading_refuses_before_any_file_is_built(llama_cpp, tiny_presets, tmp_path,
                                                  monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(memory, "free_bytes", lambda device: 100 * 2**20)
    with pytest.raises(MemoryGuardError, match="Not enough memory for loading Tiny Qwen2"):
        backends.get("llama.cpp").load("tiny-qwen2", "cpu", "q8_0")
    assert not (tmp_path / "gguf").exists()


def test_the_run_guard_offers_shorter_runs_and_smaller_formats(installed, monkeypatch):
    backend = backends.get("llama.cpp")
    spec = llama_spec(model_id="smollm2-1.7b", dtype="float16", prompt_tokens=8000,
                      new_tokens=100)
    loaded_need = backend.run_need(spec, weights_loaded=True).total_bytes
    monkeypatch.setattr(memory, "free_bytes", lambda device: loaded_need - 2**20)
    verdict = backend.assess_memory(spec, weights_loaded=True)
    assert not verdict.fits and "a prompt of at most" in verdict.advice
    assert "batch" not in verdict.advice and "sdpa" not in verdict.advice


def test_every_format_has_a_weight_size_for_the_cache():
    from lib.models.shapes import shapes
    shape = shapes(DEFAULT)
    sizes = {d: shape.weight_bytes(d) for d in FORMATS}
    assert sizes["float32"] > sizes["float16"] > sizes["q8_0"] > sizes["q4_1"] > \
        sizes["q4_k_m"] > 0


# --- running llama.cpp -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp")


def _measure(model_id: str, dtype: str, **changes):
    from lib.measure.engine import measure

    backend = backends.get("llama.cpp")
    spec = llama_spec(model_id=model_id, dtype=dtype, **{
        "prompt_tokens": 32, "new_tokens": 4, "threads": 2, "warmup_runs": 1,
        "repetitions": 1, "min_duration_s": 0.0, **changes})
    backend.check(get_entry(model_id), spec)
    loaded = backend.load(model_id, "cpu", dtype)
    return loaded, measure(backend, loaded, spec), spec


def _assert_exact_timing(measurement, spec):
    from lib.core.stats import summarize

    assert measurement.provenance.backend == "llama.cpp"
    assert "llama-cpp-python" in measurement.provenance.versions
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == spec.new_tokens
        assert list(rep.token_times_s) == sorted(rep.token_times_s)
    for metrics in summarize(measurement).per_repetition:
        assert metrics["ttft_s"] > 0 and metrics["tpot_s"] > 0
        assert metrics["e2e_s"] == pytest.approx(
            metrics["ttft_s"] + (spec.new_tokens - 1) * metrics["tpot_s"], rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", FORMATS)
def test_each_format_runs_the_default_model(llama_cpp, dtype):
    # Quality from llama.cpp's own logits: its float32 is the reference's weights (perplexity
    # within 1%), Q4_K_M's 4 bits cost agreement and perplexity.
    asked = "on" if dtype in ("float32", "q4_k_m") else "off"
    loaded, measurement, spec = _measure(DEFAULT, dtype, quality=asked)
    _assert_exact_timing(measurement, spec)
    measured = measurement.quality
    if dtype == "float32":
        assert measured.perplexity == pytest.approx(measured.reference_perplexity, rel=0.01)
        assert measured.agreement > 0.99
    elif dtype == "q4_k_m":
        assert measured.agreement < 1 and measured.perplexity > measured.reference_perplexity
    path = loaded.model.path
    assert gguf_formats.file_type(path) == dtype
    assert measurement.weights_bytes == path.stat().st_size
    assert measurement.generated_text.strip()            # trained weights: real words
    # The whole KV cache llama.cpp allocated when it opened the file, in float16.
    assert measurement.repetitions[0].kv_cache_bytes == 512 * 30 * 3 * 64 * 2 * 2
    if dtype == "q4_1":
        assert path == package_file(get_entry(DEFAULT)) and loaded.build_s is None
    else:
        assert path == gguf_formats.cached_path(get_entry(DEFAULT), dtype)


@pytest.mark.slow
def test_smaller_formats_make_smaller_files(llama_cpp):
    entry = get_entry(DEFAULT)
    size = {d: gguf_formats.gguf_file(entry, d).path.stat().st_size for d in FORMATS}
    assert size["q4_k_m"] < size["q8_0"] < size["float16"] < size["float32"]
    # F32 holds the dequantized weights of the packaged file: 4 bytes each, tied output.
    assert size["float32"] == pytest.approx(134_515_008 * 4, rel=0.01)


@pytest.mark.slow
def test_a_file_is_built_once_then_reused(llama_cpp, tiny_presets, tmp_path, monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    backend = backends.get("llama.cpp")
    said = []
    first = backend.load("tiny-qwen2", "cpu", "q8_0", on_progress=said.append)
    path = gguf_formats.cached_path(tiny_presets["tiny-qwen2"], "q8_0")
    assert first.build_s is not None and first.build_s > 0 and first.model.path == path
    assert "First use of Q8_0 for Tiny Qwen2: building its llama.cpp file once" in said[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["float16.gguf", "q8_0.gguf"]
    mtime = path.stat().st_mtime_ns
    again = backend.load("tiny-qwen2", "cpu", "q8_0", on_progress=said.append)
    assert again.build_s is None and path.stat().st_mtime_ns == mtime
    assert not any("First use" in message for message in said[1:])
    assert "from the local cache" in again.source


@pytest.mark.slow
@pytest.mark.parametrize("model_id, dtype", [("tiny-qwen2", "q4_k_m"),
                                             ("tiny-llama3", "float32")])
def test_random_presets_of_both_families_run(llama_cpp, tiny_presets, model_id, dtype):
    loaded, measurement, spec = _measure(model_id, dtype)
    _assert_exact_timing(measurement, spec)
    assert loaded.model.llm.n_vocab() == tiny_presets[model_id].config["vocab_size"]
    assert gguf_formats.file_type(loaded.model.path) == dtype


@pytest.mark.slow
def test_a_catalog_preset_runs(llama_cpp):
    loaded, measurement, spec = _measure("smollm2-360m", "float16")
    _assert_exact_timing(measurement, spec)
    assert "random weights" in loaded.source
    assert loaded.model.llm.n_vocab() == 49152


@pytest.mark.slow
def test_a_longer_run_reopens_larger_and_earlier_sessions_follow(llama_cpp):
    from lib.measure.backends.llama_cpp import DEFAULT_CONTEXT
    from lib.core.timing import DeviceClock

    backend = backends.get("llama.cpp")
    loaded = backend.load(DEFAULT, "cpu", "q4_1")
    short = backend.session(loaded, llama_spec(dtype="q4_1", prompt_tokens=16, new_tokens=2,
                                               threads=1))
    long = backend.session(loaded, llama_spec(dtype="q4_1", prompt_tokens=DEFAULT_CONTEXT,
                                              new_tokens=4, threads=2))
    assert loaded.model.llm.n_ctx() == DEFAULT_CONTEXT + 256
    # The interleaved points of a sweep take turns on the one open model.
    for session, tokens, threads in ((short, 2, 1), (long, 4, 2), (short, 2, 1)):
        timing = session.run(DeviceClock("cpu"), timed=True)
        assert len(timing.token_times_s) == tokens
        assert loaded.model.llm.n_threads == threads
        assert timing.kv_cache_bytes == (DEFAULT_CONTEXT + 256) * 30 * 3 * 64 * 2 * 2


@pytest.mark.slow
def test_the_cli_runs_llama_cpp(llama_cpp, capsys):
    from lib.cli import main

    status = main.main(["run", "--stack", "llama.cpp", "--dtype", "q4_k_m", "--new-tokens", "8",
                       "--repetitions", "2", "--prompt-tokens", "32", "--min-duration", "0",
                       "--threads", "2", "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    data = json.loads(out)
    assert data["spec"]["stack"] == "llama.cpp" and data["spec"]["dtype"] == "q4_k_m"
    assert data["provenance"]["backend"] == "llama.cpp"
    assert data["provenance"]["versions"]["llama-cpp-python"]
    assert len(data["repetitions"]) == 2
    for rep in data["repetitions"]:
        m = rep["metrics"]
        assert m["ttft_s"] > 0 and m["tpot_s"] > 0
        assert m["e2e_s"] == pytest.approx(m["ttft_s"] + 7 * m["tpot_s"], rel=1e-9)
    assert data["memory"]["weights_bytes"] == os.path.getsize(
        gguf_formats.cached_path(get_entry(DEFAULT), "q4_k_m"))
