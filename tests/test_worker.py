"""lib.measure.worker: a model in its own spawned process gives the same exact numbers as in-process,
a killed worker becomes a clear message (and is replaced), Stop leaves the worker ready.

Each worker imports transformers to read the model's shapes (seconds on 2 busy cores), so the
tests that spawn one are in the slow lane; real models in workers are tested in test_models."""

import os
import signal

import pytest

from fakes import FakeBackend
from lib.measure import engine
from lib.core import stats
from lib.core.errors import InvalidSpecError, WorkerDiedError
from lib.measure.cache import ModelCache
from lib.core.spec import RunSpec
from lib.measure.worker import LocalModel, WorkerModel

SPEC = RunSpec(batch_size=2, prompt_tokens=16, new_tokens=5, repetitions=3, min_duration_s=0.0,
               threads=1)


def isolated_fake(**declared) -> FakeBackend:
    backend = FakeBackend(**declared)
    backend.isolate = True            # the fake, but in a worker process like a real model
    return backend


spawns = pytest.mark.slow


@pytest.fixture
def worker():
    handle = WorkerModel(isolated_fake(prefill_s=0.2, decode_s=0.05), SPEC.model_id, "cpu",
                         "float32")
    yield handle
    handle.close()


@spawns
def test_a_worker_measures_the_same_exact_numbers_as_in_process(worker):
    assert worker.process.pid != os.getpid() and worker.alive
    assert worker.loaded.model is None and worker.loaded.load_s == 1.5   # only the facts came
    progress = []
    measurement = worker.measure(SPEC, on_progress=lambda *event: progress.append(event))
    local = LocalModel(FakeBackend(prefill_s=0.2, decode_s=0.05), SPEC.model_id, "cpu",
                       "float32").measure(SPEC)
    assert stats.summarize(measurement).to_dict() == stats.summarize(local).to_dict()
    first = measurement.repetitions[0]
    assert [t - first.start_s for t in first.token_times_s] == \
        pytest.approx([0.2, 0.25, 0.3, 0.35, 0.4])
    assert progress[0] == ("warm-up", 0, 1, None) and progress[-1] == ("done", 3, 3, 0.0)


@spawns
def test_interleaved_points_in_one_worker(worker):
    small, large = SPEC, SPEC.replace(batch_size=4)
    worker.start(small)
    worker.start(large)
    for _ in range(3):
        worker.repeat(small)
        worker.repeat(large)
    assert len(worker.finish(small).repetitions) == 3
    assert len(worker.finish(large).repetitions) == 3


@spawns
def test_errors_in_the_worker_arrive_as_the_same_message(worker):
    with pytest.raises(InvalidSpecError, match="reads at most 8192 tokens"):
        worker.measure(SPEC.replace(prompt_tokens=8190, new_tokens=10))
    assert worker.measure(SPEC).repetitions        # and it still works


@spawns
def test_a_killed_worker_is_a_clear_message_and_is_replaced():
    cache = ModelCache(max_entries=2)
    backend = isolated_fake()
    try:
        handle = cache.get(backend, SPEC.model_id, "cpu", "float32")
        os.kill(handle.process.pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError, match="signal 9.*memory ran out.*saved results "
                                                  "are fine"):
            handle.measure(SPEC)
        fresh = cache.get(backend, SPEC.model_id, "cpu", "float32")
        assert fresh is not handle and fresh.measure(SPEC).repetitions
    finally:
        cache.close()


@spawns
def test_stop_interrupts_the_wait_and_leaves_the_worker_ready():
    # Slow declared latencies are still instant (a manual clock); Stop is what the page does:
    # an exception raised in a progress callback (Streamlit's StopException).
    handle = WorkerModel(isolated_fake(), SPEC.model_id, "cpu", "float32")
    try:
        def stop_at_first_repetition(stage, done, total, eta_s):
            if stage == "measuring":
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            handle.measure(SPEC.replace(repetitions=50), on_progress=stop_at_first_repetition)
        assert handle.alive
        assert len(handle.measure(SPEC).repetitions) == 3      # the pipe is in step again
    finally:
        handle.close()


@spawns
def test_closing_ends_the_process(worker):
    process = worker.process
    worker.close()
    assert not process.is_alive()


def test_the_engine_stops_between_calls_when_told():
    from lib.core.errors import StoppedError
    backend = FakeBackend()
    loaded = backend.load(SPEC.model_id, "cpu", "float32")
    calls = []
    with pytest.raises(StoppedError, match="Stopped"):
        engine.measure(backend, loaded, SPEC.replace(repetitions=10),
                       should_stop=lambda: len(backend.calls) >= 3)
    assert len(backend.calls) == 3 and calls == []
