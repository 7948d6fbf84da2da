"""lib.measure.runner on the fake backend: checks and memory before loading, crashes become messages."""

import pytest

from fakes import FakeBackend
from lib.measure import backends, runner, sweep
from lib.measure.factors import get_factor
from lib.estimate import memory
from lib.machine import runlock
from lib.core.errors import InvalidSpecError, MemoryGuardError, RunFailedError
from lib.measure.cache import ModelCache
from lib.core.spec import RunSpec

SPEC = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)


@pytest.fixture
def fake():
    with backends.use(FakeBackend()) as backend:
        yield backend


def test_context_is_checked_before_loading_anything(fake):
    with pytest.raises(InvalidSpecError, match="reads at most"):
        runner.run(SPEC.replace(prompt_tokens=8190, new_tokens=10))
    assert fake.loads == []


def test_a_run_that_cannot_fit_is_refused_before_loading(fake, monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 3 * 10**9)
    with pytest.raises(MemoryGuardError, match="Not enough memory for batch 64 x 8100 tokens of "
                                               "SmolLM2-135M-Instruct in float32"):
        runner.run(SPEC.replace(batch_size=64, prompt_tokens=8000, new_tokens=100))
    assert fake.loads == []


def test_weights_that_cannot_fit_are_refused_with_a_smaller_dtype(fake, monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 21 * 10**9)
    with pytest.raises(MemoryGuardError, match="DeepSeek-R1-Distill-Llama-8B in float32.*"
                                               "weights alone don't fit. Choose bfloat16"):
        runner.run(SPEC.replace(model_id="deepseek-r1-distill-llama-8b"))
    assert fake.loads == []


@pytest.mark.slow
def test_runtime_error_in_the_model_becomes_run_failed(fake):
    def explode(spec):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
    fake.prefill_s = explode
    with pytest.raises(RunFailedError, match="out of memory. Tried to allocate 2.00 GiB\\). Nothing"):
        runner.run(SPEC)


def test_statuses_are_reported_and_the_cache_is_reused(fake):
    seen = []
    cache = ModelCache(max_entries=2)
    measurement = runner.run(SPEC, cache=cache, on_status=seen.append)
    runner.run(SPEC.replace(batch_size=2), cache=cache)
    assert seen and seen[-1].startswith("Measuring: smollm2-135m-instruct on cpu")
    assert len(measurement.repetitions) == 1
    assert fake.loads == ["smollm2-135m-instruct"]                # loaded once
    assert ("fake", "smollm2-135m-instruct", "cpu", "float32") in cache


def test_models_nobody_uses_count_as_room_and_a_refused_model_is_never_cached(fake, monkeypatch):
    cache = ModelCache(max_entries=3)
    runner.run(SPEC.replace(model_id="qwen2.5-0.5b"), cache=cache)      # ~2 GB of weights
    # 2 GB free: SmolLM2-1.7B (~6.8 GB in float32) fits only if the cached model goes; even
    # then it does not, so it is refused before loading, and the cached model stays.
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * 10**9)
    verdict = runner.memory_verdict(SPEC.replace(model_id="smollm2-1.7b"), cache)
    assert not verdict.fits and verdict.releasable_bytes > 1.9e9
    with pytest.raises(MemoryGuardError) as refused:
        runner.run(SPEC.replace(model_id="smollm2-1.7b"), cache=cache)
    assert str(refused.value).startswith(verdict.message[:60])    # the card's very words
    assert fake.loads == ["qwen2.5-0.5b"]
    assert list(cache._models) == [("fake", "qwen2.5-0.5b", "cpu", "float32")]
    # With room once the cached model goes, the smaller one runs and takes its place.
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1 * 10**9)
    small = SPEC.replace(model_id="smollm2-360m")
    assert runner.memory_verdict(small, cache).fits


def test_the_queue_sees_an_estimate_from_the_settings_then_from_measured_repetitions(fake):
    seen = []

    def progress(stage, done, total, eta_s=None):
        seen.append((stage, eta_s, runlock.current_holder()))
    runner.run(SPEC.replace(repetitions=3, warmup_runs=1), on_progress=progress)
    stage, _, holder = seen[0]
    assert stage == "warm-up" and holder["eta_from"] == "settings" and holder["eta_s"] > 0
    measured = next((eta, holder) for stage, eta, holder in seen
                    if stage == "measuring" and eta is not None)
    assert measured[1]["eta_from"] == "measured" and measured[1]["eta_s"] == measured[0]
    assert runlock.current_holder() is None


def test_rough_duration_counts_loading_warm_up_and_the_minimum_time():
    spec = SPEC.replace(repetitions=2, warmup_runs=1, min_duration_s=0.0)
    loaded = runner.rough_duration_s(spec, weights_loaded=True)
    assert 0 < loaded < runner.rough_duration_s(spec, weights_loaded=False)
    assert runner.rough_duration_s(spec.replace(min_duration_s=60.0), True) >= 60.0
    assert runner.rough_duration_s(spec.replace(repetitions=20), True) > loaded


def test_a_sweep_tells_the_queue_its_estimate(fake):
    seen = []
    with runner.SweepPoints(ModelCache(max_entries=2), "sweep of batch size") as points:
        sweep.run_sweep(SPEC.replace(repetitions=2), [(get_factor("batch"), [1, 2])],
                        points, on_progress=lambda event: seen.append(
                            (event, runlock.current_holder())))
    # The slot is taken when the first point starts, just after its "loading" is announced.
    assert seen[0][0].phase == "loading" and seen[0][1] is None
    sources = [holder.get("eta_from") for _, holder in seen[1:]]
    assert "settings" in sources and sources[-1] == "measured"
    assert all(holder["description"] == "sweep of batch size" for _, holder in seen[1:])


def _never_wait(message):
    raise AssertionError(f"an estimate waited for the measurement slot: {message}")


@pytest.mark.slow
def test_an_estimate_never_waits_for_the_measurement_slot(fake):
    """A long measurement holds the slot: an estimate for a hardware profile (or this machine,
    whose ceilings are known) is computed at once, never queued (`on_wait` would hear it)."""
    with runlock.measurement_slot("a long measurement"):
        for hardware in ("h100-sxm", "this"):
            measurement = runner.run(SPEC.replace(hardware=hardware), on_wait=_never_wait)
            assert not measurement.measured and measurement.spec.hardware == hardware
        assert runlock.current_holder()["description"] == "a long measurement"


def test_a_sweep_of_estimates_never_waits_and_a_mixed_one_queues_only_its_measured_points(fake):
    devices = get_factor("device")
    with runlock.measurement_slot("a long measurement"):
        with runner.SweepPoints(ModelCache(max_entries=2), "sweep of device",
                                on_wait=_never_wait) as points:
            result = sweep.run_sweep(SPEC, [(devices, ["h100-sxm", "h200"])], points)
        assert [p.measured for p in result.points] == [True, True]
    waits = []
    with runner.SweepPoints(ModelCache(max_entries=2), "sweep of device",
                            on_wait=waits.append) as points:
        result = sweep.run_sweep(SPEC, [(devices, ["h100-sxm", "cpu"])], points)
        assert runlock.current_holder()["description"] == "sweep of device"
    assert [p.measurement.measured for p in result.points] == [False, True] and not waits
    assert runlock.current_holder() is None


def test_an_estimate_is_described_on_its_hardware_not_this_machines_device():
    assert runner.describe(SPEC).startswith("smollm2-135m-instruct on cpu in float32")
    assert runner.describe(SPEC.replace(hardware="h100-sxm", gpus=8)).startswith(
        "smollm2-135m-instruct on h100-sxm x 8 in float32")
