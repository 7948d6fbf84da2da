"""ONNX Runtime through the backend seam: refusals and the memory estimate (fast, no export), the
export's staging and failure handling (fast, the builder replaced), then real exports of the
default model in float32 and int4 and of a random-weight preset, through the engine and the CLI.

The real tests are skipped where onnxruntime-genai is not installed (`scripts/setup.sh` installs
it); the app itself must refuse cleanly without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from lib.measure import backends
from lib.estimate import memory
from lib.core import stacks
from lib.core.errors import MemoryGuardError, ModelLoadError, StoppedError, UnsupportedError
from lib.models import onnx_build
from lib.models.catalog import get_entry
from lib.models.shapes import shapes
from lib.core.spec import RunSpec

DEFAULT = "smollm2-135m-instruct"
PRESET = "smollm2-360m"                # the smallest random-weight Llama-family preset


def onnx_spec(**settings) -> RunSpec:
    return RunSpec(**{"stack": "onnxruntime", "dtype": "int4", "threads": 1, **settings})


@pytest.fixture
def installed(monkeypatch):
    """The stack counts as installed, so its own refusals are reached on any machine."""
    monkeypatch.setattr(stacks, "_found", lambda module: True)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def no_export(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("the model builder was started")
    monkeypatch.setattr(onnx_build, "_run_builder", refuse)
    monkeypatch.setattr(onnx_build, "_source_folder", refuse)


def backend():
    return backends.get("onnxruntime")


def test_backend_is_the_stacks_and_never_the_default():
    found = backend()
    assert found.name == stacks.STACKS["onnxruntime"].backend == "onnxruntime"
    assert found.label == "ONNX Runtime" and found.stack == "onnxruntime"
    assert found.dtypes == ("float32", "int4") and found.devices == ("cpu",)
    assert found.factors == () and found.default_for == ()
    assert backends.for_model(DEFAULT).name == "transformers"
    assert backends.for_spec(onnx_spec()) is found


def test_other_architectures_name_the_stack_that_runs_them(installed):
    with pytest.raises(UnsupportedError, match="ONNX Runtime here runs the Llama, Qwen2 and "
                       "SmolLM2 families; choose the transformers stack for GPT-2"):
        backend().check(get_entry("gpt2"), onnx_spec(model_id="gpt2"))


def test_a_llama_cpp_format_names_llama_cpp(installed):
    with pytest.raises(UnsupportedError, match=r"does not run weights in Q4_K_M\. It is a format "
                       r"of llama\.cpp"):
        backend().check(get_entry(DEFAULT), onnx_spec(dtype="q4_k_m"))


def test_without_the_stack_the_run_says_how_to_install(monkeypatch, empty_cache, no_export):
    from lib.measure import runner

    monkeypatch.setattr(stacks, "_found", lambda module: False)
    with pytest.raises(UnsupportedError, match=r"ONNX Runtime is not installed on this machine") \
            as raised:
        runner.preflight(onnx_spec())
    assert "setup.sh" not in str(raised.value) and "scripts/setup.sh" in raised.value.cli_hint
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", None)      # import raises ImportError
    with pytest.raises(UnsupportedError, match=r"ONNX Runtime is not installed on this machine") \
            as raised:
        backend().load(DEFAULT, "cpu", "int4")
    assert "scripts/setup.sh" in raised.value.cli_hint
    assert not (empty_cache / "onnx").exists()


def test_memory_guard_refuses_before_exporting(monkeypatch, installed, empty_cache, no_export):
    from lib.measure import runner
    from lib.measure.cache import ModelCache

    monkeypatch.setattr(memory, "free_bytes", lambda device: 300 * 2**20)
    message = "Exporting it for ONNX Runtime first loads the whole model in float32"
    with pytest.raises(MemoryGuardError, match=message):
        runner.prepare(onnx_spec(), ModelCache())
    monkeypatch.setitem(sys.modules, "onnxruntime_genai", object())   # past the install check
    with pytest.raises(MemoryGuardError, match=message):
        backend().load(DEFAULT, "cpu", "int4")
    assert not (empty_cache / "onnx" / DEFAULT / "int4").exists()


def test_memory_advice_offers_the_format_that_fits(monkeypatch, installed, empty_cache,
                                                  no_export):
    from lib.measure import runner
    from lib.measure.cache import ModelCache

    _fake_export(DEFAULT, "int4")
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2**30)
    with pytest.raises(MemoryGuardError, match=r"first loads the whole model in float32, which "
                       r"doesn't fit\. Choose int4 \(weights about"):
        runner.prepare(onnx_spec(dtype="float32"), ModelCache())


def _fake_export(model_id: str, dtype: str) -> None:
    """An export's files in the cache: 51,000 bytes of graph and weights."""
    folder = onnx_build.onnx_folder(model_id, dtype)
    folder.mkdir(parents=True)
    (folder / "genai_config.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"x" * 1000)
    (folder / "model.onnx.data").write_bytes(b"x" * 50_000)


def test_memory_need_before_and_after_the_export(empty_cache):
    spec = onnx_spec(batch_size=2, prompt_tokens=100, new_tokens=20)
    shape = shapes(DEFAULT)
    before = backend().run_need(spec, weights_loaded=False)
    assert before.weights_bytes == shape.weight_bytes("int4")
    # GenAI allocates float32 keys and values for the whole length up front.
    assert before.kv_cache_bytes == shape.kv_bytes_per_token("float32") * 2 * 120
    export = onnx_build.build_need_bytes(get_entry(DEFAULT))
    assert before.weights_bytes + before.kv_cache_bytes + before.activations_bytes >= export

    _fake_export(DEFAULT, "int4")
    after = backend().run_need(spec, weights_loaded=False)
    assert after.weights_bytes == 51_000
    assert after.kv_cache_bytes == before.kv_cache_bytes
    # The prefill's logits, for every prompt position, are part of its working memory.
    assert after.activations_bytes > 2 * 100 * shape.vocab_size * 4
    assert after.activations_bytes < before.activations_bytes
    assert backend().run_need(spec, weights_loaded=True).weights_bytes == 0


def _fake_builder(write_target_first=False):
    def run(entry, dtype, source, staging, timeout_s):
        output = staging / "model"
        output.mkdir()
        (output / "model.onnx").write_text("ours")
        (output / "genai_config.json").write_text("{}")
        if write_target_first:          # another process finished the same export meanwhile
            target = onnx_build.onnx_folder(entry.model_id, dtype)
            target.mkdir()
            (target / "model.onnx").write_text("theirs")
            (target / "genai_config.json").write_text("{}")
        return 1.5
    return run


@pytest.mark.parametrize("race", [False, True])
def test_export_goes_through_staging_and_a_race_keeps_one_good_copy(monkeypatch, empty_cache,
                                                                    tmp_path, race):
    monkeypatch.setattr(onnx_build, "_source_folder", lambda entry, say: tmp_path)
    monkeypatch.setattr(onnx_build, "_run_builder", _fake_builder(write_target_first=race))
    said = []
    folder, build_s = onnx_build.built(get_entry(DEFAULT), "int4", said.append)
    assert folder == onnx_build.onnx_folder(DEFAULT, "int4") and build_s == 1.5
    assert (folder / "model.onnx").read_text() == ("theirs" if race else "ours")
    assert said == ["First use of int4 for SmolLM2-135M-Instruct on ONNX Runtime: exporting it "
                    "once with the model builder (about 10 s)…"]
    assert [path.name for path in folder.parent.iterdir()] == ["int4"]     # no staging left
    assert onnx_build.built(get_entry(DEFAULT), "int4", said.append) == (folder, None)


def test_a_failed_export_shows_the_builders_last_lines(monkeypatch, empty_cache, tmp_path):
    monkeypatch.setattr(onnx_build, "_source_folder", lambda entry, say: tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, stdout="", stderr="loading\nValueError: unsupported rope scaling\n"))
    with pytest.raises(ModelLoadError, match=r"(?s)could not export SmolLM2-135M-Instruct in "
                       r"float32 \(exit code 1\).*unsupported rope scaling"):
        onnx_build.built(get_entry(DEFAULT), "float32", lambda message: None)
    assert list((empty_cache / "onnx" / DEFAULT).iterdir()) == []


# --- real exports (slow) ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded_models():
    pytest.importorskip("onnxruntime_genai")
    return {}


@pytest.fixture
def load(loaded_models):
    """Each (model, dtype) loaded once per module, exported into the test cache if needed."""
    def get(model_id: str, dtype: str):
        if (model_id, dtype) not in loaded_models:
            loaded_models[model_id, dtype] = backend().load(model_id, "cpu", dtype)
        return loaded_models[model_id, dtype]
    return get


@pytest.mark.slow
def test_export_once_then_reuse(loaded_models):
    """The int4 export built afresh (an earlier copy in the test cache removed first), with its
    message and build time; the next load reuses the folder untouched. First of the real
    exports, in the session's cache: the tests after it load this copy."""
    folder = onnx_build.onnx_folder(DEFAULT, "int4")
    shutil.rmtree(folder, ignore_errors=True)
    said = []
    first = backend().load(DEFAULT, "cpu", "int4", on_progress=said.append)
    assert first.build_s > 0 and first.load_s > 0
    assert any(message.startswith("First use of int4 for SmolLM2-135M-Instruct on ONNX Runtime")
               for message in said)
    modified = folder.stat().st_mtime_ns, (folder / "model.onnx.data").stat().st_mtime_ns
    said.clear()
    second = backend().load(DEFAULT, "cpu", "int4", on_progress=said.append)
    assert second.build_s is None and "cached copy" in second.source
    assert not any("First use" in message for message in said)
    assert (folder.stat().st_mtime_ns, (folder / "model.onnx.data").stat().st_mtime_ns) == \
        modified
    loaded_models[DEFAULT, "int4"] = second


@pytest.mark.slow
# int4 only (the export the other tests reuse): float32's quality against the reference is
# benchmarks/quality.py's, and its exact lengths are the same code path.
@pytest.mark.parametrize("dtype, batch", [("int4", 2)])
def test_engine_measures_exact_lengths(load, dtype, batch):
    from lib.measure.engine import measure
    from lib.core.stats import summarize

    loaded = load(DEFAULT, dtype)
    spec = onnx_spec(dtype=dtype, batch_size=batch, prompt_tokens=64, new_tokens=16, threads=2,
                     warmup_runs=1, repetitions=2, min_duration_s=0.0, quality="on")
    measurement = measure(backend(), loaded, spec)
    # Quality from ONNX Runtime's own logits: int4 drifts from the reference.
    measured = measurement.quality
    assert measured.agreement < 0.99 and measured.perplexity > measured.reference_perplexity
    assert measurement.provenance.backend == "onnxruntime"
    assert set(measurement.provenance.versions) == {"onnxruntime-genai", "onnxruntime"}
    assert measurement.weights_bytes == onnx_build.model_bytes(loaded.model.folder) > 0
    assert len(measurement.warmup_s) == 1 and len(measurement.repetitions) == 2
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == spec.new_tokens
        assert list(rep.token_times_s) == sorted(rep.token_times_s)
    for metrics in summarize(measurement).per_repetition:
        assert 0 < metrics["ttft_s"] < 30 and 0 < metrics["tpot_s"] < 5
        assert metrics["e2e_s"] == pytest.approx(
            metrics["ttft_s"] + (spec.new_tokens - 1) * metrics["tpot_s"], rel=1e-12)
    assert measurement.generated_text.strip()          # real words from the trained model


@pytest.mark.slow
def test_int4_export_is_far_smaller_than_float32(load):
    float32 = onnx_build.model_bytes(load(DEFAULT, "float32").model.folder)
    int4 = onnx_build.model_bytes(load(DEFAULT, "int4").model.folder)
    assert float32 > 4 * shapes(DEFAULT).parameters
    assert int4 < float32 / 4


@pytest.mark.slow
def test_prompt_ids_are_the_transformers_stacks(load):
    from transformers import AutoTokenizer

    from lib.models import saved
    from lib.core.prompts import fit_prompt

    ours = fit_prompt(load(DEFAULT, "int4").tokenizer, 64)
    reference = AutoTokenizer.from_pretrained(
        saved.converted(get_entry(DEFAULT), lambda message: None), local_files_only=True)
    assert ours.token_ids == fit_prompt(reference, 64).token_ids
    assert ours.used_chat_template and len(ours.token_ids) == 64


@pytest.mark.slow
def test_threads_reopen_the_graph_and_stop_ends_the_call(load):
    from lib.core.timing import DeviceClock

    loaded = load(DEFAULT, "int4")
    session = backend().session(loaded, onnx_spec(prompt_tokens=16, new_tokens=8, threads=1))
    assert loaded.model.threads == 1
    assert len(session.run(DeviceClock("cpu"), timed=True).token_times_s) == 8
    session.should_stop = lambda: True
    with pytest.raises(StoppedError):
        session.run(DeviceClock("cpu"), timed=True)


@pytest.mark.slow
def test_a_random_weight_preset_runs(load):
    from lib.measure.engine import measure

    loaded = load(PRESET, "int4")
    assert "random weights" in loaded.source
    spec = onnx_spec(model_id=PRESET, prompt_tokens=16, new_tokens=4, threads=2, warmup_runs=1,
                     repetitions=1, min_duration_s=0.0)
    measurement = measure(backend(), loaded, spec)
    assert len(measurement.repetitions[0].token_times_s) == 4
    assert "meaningless" in measurement.generated_text


@pytest.mark.slow
def test_cli_run_on_onnx_runtime(capsys):
    pytest.importorskip("onnxruntime_genai")
    from lib.cli import main

    status = main.main(["run", "--stack", "onnxruntime", "--dtype", "int4", "--new-tokens", "8",
                       "--repetitions", "2", "--min-duration", "0", "--json"])
    assert status == 0
    data = json.loads(capsys.readouterr().out)
    assert data["provenance"]["backend"] == "onnxruntime"
    assert data["spec"]["stack"] == "onnxruntime" and data["spec"]["dtype"] == "int4"
    assert data["memory"]["peak_bytes"] <= data["memory"]["estimate_bytes"]
    for rep in data["repetitions"]:
        metrics = rep["metrics"]
        assert len(rep["token_offsets_s"]) == 8
        assert 0 < metrics["ttft_s"] < 30 and 0 < metrics["tpot_s"] < 5
        assert metrics["e2e_s"] == pytest.approx(metrics["ttft_s"] + 7 * metrics["tpot_s"],
                                                 rel=1e-9)
