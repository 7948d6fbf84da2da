"""lib.runner: checks before the queue, and a crash inside PyTorch becomes a clear message."""

import pytest

from fakes import fake_loaded
from lib import runner
from lib.errors import InvalidSpecError, RunFailedError
from lib.spec import RunSpec

SPEC = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)


def test_context_is_checked_before_loading_anything():
    def never(*args):
        raise AssertionError("must not load")
    with pytest.raises(InvalidSpecError, match="reads at most"):
        runner.run(SPEC.replace(prompt_tokens=8190, new_tokens=10), get_model=never)


def test_runtime_error_in_the_model_becomes_run_failed():
    loaded, _clock = fake_loaded()

    def explode(**kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore details")
    loaded.model.generate = explode
    with pytest.raises(RunFailedError, match="out of memory. Tried to allocate 2.00 GiB\\). Nothing"):
        runner.run(SPEC, get_model=lambda *args: loaded)


def test_statuses_are_reported_in_order():
    loaded, _clock = fake_loaded()
    seen = []
    measurement = runner.run(SPEC, get_model=lambda *args: loaded, on_status=seen.append)
    assert seen and seen[-1].startswith("Measuring: smollm2-135m-instruct on cpu")
    assert len(measurement.repetitions) == 1
