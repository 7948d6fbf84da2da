"""The backend-neutral loop on the fake backend, whose latencies are declared: exact numbers."""

import pytest

from fakes import FakeBackend, TINY_SHAPES, measure
from lib.measure import engine
from lib.core.errors import InvalidSpecError, MemoryGuardError, UnsupportedError
from lib.models.shapes import Shapes
from lib.core.results import MEASURED
from lib.core.spec import RunSpec
from lib.core.stats import summarize


def spec(**changes):
    base = dict(batch_size=2, prompt_tokens=16, new_tokens=11, repetitions=3, min_duration_s=0.0,
                warmup_runs=1, threads=1)
    base.update(changes)
    return RunSpec(**base)


def test_exact_metrics_from_declared_latencies():
    measurement = measure(spec(), prefill_s=0.2, decode_s=0.05)
    summary = summarize(measurement)
    assert len(measurement.repetitions) == 3
    assert summary.metrics["ttft_s"].median == pytest.approx(0.2)
    assert summary.metrics["tpot_s"].median == pytest.approx(0.05)
    assert summary.metrics["e2e_s"].median == pytest.approx(0.2 + 10 * 0.05)
    assert summary.metrics["decode_tokens_per_s"].median == pytest.approx(2 * 10 / 0.5)
    assert summary.metrics["total_tokens_per_s"].median == pytest.approx(2 * 27 / 0.7)
    assert summary.metrics["requests_per_s"].median == pytest.approx(2 / 0.7)
    assert summary.metrics["itl_s"].n == 3 * 10
    assert measurement.warmup_s == pytest.approx((0.7,))


def test_provenance_and_load_time_come_from_the_backend():
    measurement = measure(spec(), load_s=2.5)
    assert measurement.provenance.backend == "fake" and measurement.provenance.kind == MEASURED
    assert measurement.provenance.versions == {"fake": "1"}
    assert measurement.load_s == 2.5 and measurement.measured


def test_warmups_are_untimed_calls_with_the_same_shapes():
    backend = FakeBackend()
    measure(spec(warmup_runs=2), backend)
    assert [c["timed"] for c in backend.calls] == [False, False, True, True, True]
    assert {c["shape"] for c in backend.calls} == {(2, 16)}


def test_compile_gets_a_second_warmup():
    backend = FakeBackend()
    measure(spec(compile="on", warmup_runs=1), backend)
    assert [c["timed"] for c in backend.calls] == [False, False, True, True, True]


def test_repeats_until_minimum_duration():
    measurement = measure(spec(repetitions=1, min_duration_s=2.0), prefill_s=0.2, decode_s=0.05)
    assert len(measurement.repetitions) == 3                    # 0.7, 1.4, 2.1 s


def test_noisy_run_is_flagged():
    measurement = measure(spec(repetitions=5), prefill_s=[0.1, 0.1, 0.4, 0.2, 0.6, 0.3])
    assert "noisy" in {w.code for w in summarize(measurement).warnings}


def test_progress_is_reported():
    backend = FakeBackend()
    loaded = backend.load("smollm2-135m-instruct", "cpu", "float32")
    seen = []
    engine.measure(backend, loaded, spec(), on_progress=lambda *event: seen.append(event))
    assert seen[0] == ("warm-up", 0, 1, None)
    assert seen[1] == ("measuring", 0, 3, None)          # no pace known yet
    assert seen[3] == ("measuring", 2, 3, pytest.approx(0.7))   # one more of 0.7 s each
    assert seen[-1] == ("done", 3, 3, 0.0)


def test_progress_counts_the_repetitions_the_minimum_time_needs():
    backend = FakeBackend()
    loaded = backend.load("smollm2-135m-instruct", "cpu", "float32")
    seen = []
    engine.measure(backend, loaded, spec(repetitions=1, min_duration_s=2.0),
                   on_progress=lambda *event: seen.append(event))
    # 0.7 s per repetition: after the first, 2 more reach 2 s, so "repetition 2 of 3".
    assert [event[1:3] for event in seen if event[0] == "measuring"] == [(0, 1), (1, 3), (2, 3)]


def test_prompt_longer_than_context_is_refused_before_running():
    backend = FakeBackend()
    with pytest.raises(InvalidSpecError, match="reads at most 8192 tokens"):
        measure(spec(prompt_tokens=8190, new_tokens=10), backend)
    assert backend.calls == []


def test_batch_that_cannot_fit_is_refused_before_running(monkeypatch):
    from lib.estimate import memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * 10**9)
    backend = FakeBackend()
    with pytest.raises(MemoryGuardError, match="Not enough memory.*smaller"):
        measure(spec(batch_size=64, prompt_tokens=8000, new_tokens=100), backend)
    assert backend.calls == []


def test_a_spec_for_another_model_is_refused():
    backend = FakeBackend()
    loaded = backend.load("gpt2", "cpu", "float32")
    with pytest.raises(InvalidSpecError, match="load that first"):
        engine.measure(backend, loaded, spec())


def test_a_stack_setting_the_backend_lacks_is_refused():
    from lib.measure.backends.encoder import BACKEND as encoder
    from lib.models.catalog import get_entry
    with pytest.raises(UnsupportedError, match="can't use KV cache = 'static'.*Set KV cache back "
                                               "to 'dynamic'"):
        encoder.check(get_entry("all-minilm-l6-v2"), spec(kv_cache="static"))


def test_declared_memory_is_reported():
    measurement = measure(spec(), memory_bytes=123_456)
    assert {rep.peak_memory_bytes for rep in measurement.repetitions} == {123_456}
    assert measurement.memory_method == "declared by the backend"


def test_tiny_shapes_give_a_tiny_estimate():
    from lib.estimate import memory
    estimate = memory.estimate(TINY_SHAPES, "float32", 1, 8, 1)
    assert estimate.weights_bytes == 4000
    assert isinstance(TINY_SHAPES, Shapes)
