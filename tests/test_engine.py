"""The engine with a fake model whose latencies are declared: exact numbers."""

import pytest

from fakes import fake_loaded
from lib import engine
from lib.errors import InvalidSpecError, MemoryGuardError
from lib.memory import Shapes
from lib.spec import RunSpec
from lib.stats import summarize


def spec(**changes):
    base = dict(batch_size=2, prompt_tokens=16, new_tokens=11, repetitions=3, min_duration_s=0.0,
                warmup_runs=1, threads=1)
    base.update(changes)
    return RunSpec(**base)


def test_exact_metrics_from_declared_latencies():
    loaded, clock = fake_loaded(prefill_s=0.2, decode_s=0.05)
    measurement = engine.measure(loaded, spec(), clock=clock)
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


def test_warmup_uses_the_same_shapes_and_fixed_output_length():
    loaded, clock = fake_loaded()
    engine.measure(loaded, spec(warmup_runs=2), clock=clock)
    calls = loaded.model.calls
    assert len(calls) == 2 + 3
    assert [c["streamed"] for c in calls] == [False, False, True, True, True]
    assert {c["shape"] for c in calls} == {(2, 16)}
    assert all(c["max_new_tokens"] == c["min_new_tokens"] == 11 for c in calls)
    assert all(c["do_sample"] is False for c in calls)


def test_repeats_until_minimum_duration():
    loaded, clock = fake_loaded(prefill_s=0.2, decode_s=0.05)   # 0.7 s per repetition
    measurement = engine.measure(loaded, spec(repetitions=1, min_duration_s=2.0), clock=clock)
    assert len(measurement.repetitions) == 3                    # 0.7, 1.4, 2.1 s


def test_noisy_run_is_flagged():
    loaded, clock = fake_loaded(prefill_s=[0.1, 0.1, 0.4, 0.2, 0.6, 0.3], decode_s=0.05)
    summary = summarize(engine.measure(loaded, spec(repetitions=5), clock=clock))
    assert "noisy" in {w.code for w in summary.warnings}


def test_progress_is_reported():
    loaded, clock = fake_loaded()
    seen = []
    engine.measure(loaded, spec(), clock=clock, on_progress=lambda *event: seen.append(event))
    assert seen[0] == ("warm-up", 0, 1)
    assert ("measuring", 2, 3) in seen
    assert seen[-1] == ("done", 3, 3)


def test_prompt_longer_than_context_is_refused_before_running():
    loaded, clock = fake_loaded()
    with pytest.raises(InvalidSpecError, match="reads at most 8192 tokens"):
        engine.measure(loaded, spec(prompt_tokens=8190, new_tokens=10), clock=clock)
    assert loaded.model.calls == []


def test_batch_that_cannot_fit_is_refused_before_running():
    loaded, clock = fake_loaded()
    loaded.shapes = Shapes(parameters=135_000_000, layers=30, hidden_size=576,
                           intermediate_size=1536, attention_heads=9, kv_heads=3, head_dim=64,
                           vocab_size=49152)
    with pytest.raises(MemoryGuardError, match="Not enough memory.*smaller batch"):
        engine.measure(loaded, spec(batch_size=64, prompt_tokens=8000, new_tokens=100),
                       clock=clock)
    assert loaded.model.calls == []


def test_streamer_skips_the_prompt():
    from lib.timing import ManualClock
    clock = ManualClock(5.0)
    streamer = engine.TokenTimestamps(clock)
    streamer.put("prompt")
    clock.advance(1.0)
    streamer.put("token")
    assert streamer.times_s == [6.0]


def test_software_stack_reaches_generate():
    loaded, clock = fake_loaded()
    engine.measure(loaded, spec(kv_cache="static"), clock=clock)
    call = loaded.model.calls[-1]
    assert call["cache_implementation"] == "static" and call["disable_compile"] is True
    loaded, clock = fake_loaded()
    engine.measure(loaded, spec(compile="on", warmup_runs=1), clock=clock)
    calls = loaded.model.calls
    assert len(calls) == 2 + 3                  # compiling may take two warm-ups
    assert calls[-1]["cache_implementation"] == "static"      # compile implies a static cache
    assert calls[-1]["compile_config"]._compile_all_devices is True
    assert "disable_compile" not in calls[-1]


def test_attention_kernel_is_set_on_the_shared_model():
    loaded, clock = fake_loaded()
    seen = []
    loaded.model.set_attn_implementation = seen.append
    engine.measure(loaded, spec(attention="eager"), clock=clock)
    engine.measure(loaded, spec(attention="sdpa"), clock=clock)
    assert seen == ["eager", "sdpa"]
