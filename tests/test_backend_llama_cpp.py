"""llama.cpp through the backend seam, on the GGUF file the default model ships.

Skipped where llama-cpp-python is not installed (`scripts/setup.sh --stacks` installs it); the
app itself must import and refuse cleanly without it.
"""

import pytest

from lib import backends
from lib.errors import UnsupportedError
from lib.spec import RunSpec


def test_backend_is_found_and_never_the_default():
    backend = backends.get("llama.cpp")
    assert backend.name == "llama.cpp" and backend.default_for == ()
    assert backends.for_model("smollm2-135m-instruct").name == "transformers"


def test_without_llama_cpp_loading_says_how_to_install(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "llama_cpp", None)       # import raises ImportError
    with pytest.raises(UnsupportedError, match="scripts/setup.sh --stacks"):
        backends.get("llama.cpp").load("smollm2-135m-instruct", "cpu", "float32")


def test_refuses_stack_settings_it_does_not_have():
    from lib.models.catalog import get_entry
    with pytest.raises(UnsupportedError, match="no such setting"):
        backends.get("llama.cpp").check(get_entry("smollm2-135m-instruct"),
                                        RunSpec(kv_cache="static"))


@pytest.fixture(scope="module")
def loaded():
    pytest.importorskip("llama_cpp")
    return backends.get("llama.cpp").load("smollm2-135m-instruct", "cpu", "float32")


def test_engine_measures_exact_lengths_on_the_gguf_file(loaded):
    from lib.engine import measure
    from lib.stats import summarize

    backend = backends.get("llama.cpp")
    spec = RunSpec(prompt_tokens=64, new_tokens=32, threads=2, warmup_runs=1, repetitions=2,
                   min_duration_s=0.0)
    measurement = measure(backend, loaded, spec)
    assert len(measurement.warmup_s) == 1 and len(measurement.repetitions) == 2
    assert measurement.provenance.backend == "llama.cpp"
    assert measurement.weights_bytes == loaded.weights_bytes > 0
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == spec.new_tokens
        assert list(rep.token_times_s) == sorted(rep.token_times_s)
    summary = summarize(measurement)
    for metrics in summary.per_repetition:
        assert metrics["ttft_s"] > 0
        assert metrics["e2e_s"] == pytest.approx(
            metrics["ttft_s"] + (spec.new_tokens - 1) * metrics["tpot_s"], rel=1e-12)
    assert measurement.generated_text.strip()
    print(f"\nllama.cpp Q4_1, 2 threads: median TTFT "
          f"{summary.metrics['ttft_s'].median * 1000:.2f} ms, median TPOT "
          f"{summary.metrics['tpot_s'].median * 1000:.2f} ms")


def test_a_longer_run_reopens_with_a_larger_context(loaded):
    from lib.backends.llama_cpp import DEFAULT_CONTEXT
    from lib.timing import DeviceClock

    spec = RunSpec(prompt_tokens=DEFAULT_CONTEXT, new_tokens=4, threads=2)
    session = backends.get("llama.cpp").session(loaded, spec)
    assert loaded.model.n_ctx() >= DEFAULT_CONTEXT + 4
    assert len(session.run(DeviceClock("cpu"), timed=True).token_times_s) == 4
