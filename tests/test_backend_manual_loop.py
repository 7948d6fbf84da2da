"""The bare decode-loop backend: found by name, never the default, and token for token the same
greedy answer as transformers `generate` on the same weights."""

import pytest

from lib.measure import backends, engine
from lib.core.errors import UnsupportedError
from lib.models.catalog import get_entry
from lib.core.spec import RunSpec

DEFAULT = "smollm2-135m-instruct"


def test_discovered_by_name_and_never_chosen_by_default():
    backend = backends.registry()["manual-loop"]
    assert backend is backends.get("manual-loop")
    assert backend.label == "transformers (bare decode loop)"
    assert backends.for_model(DEFAULT).name == "transformers"


@pytest.mark.parametrize("setting", [{"kv_cache": "static"}, {"compile": "on"}])
def test_refuses_stack_settings_it_does_not_have(setting):
    backend = backends.get("manual-loop")
    with pytest.raises(UnsupportedError, match="bare decode loop"):
        backend.check(get_entry(DEFAULT), RunSpec(**setting))
    backend.check(get_entry(DEFAULT), RunSpec(attention="eager"))   # the one it honours


@pytest.fixture
def loaded(default_model):
    # Both backends run the same weights, so the session's one load serves both.
    return default_model


def _spec(**changes):
    values = dict(batch_size=2, prompt_tokens=24, new_tokens=6, repetitions=2,
                  min_duration_s=0.0, threads=1)
    values.update(changes)
    return RunSpec(**values)


@pytest.mark.slow
def test_times_every_token_and_matches_generate(loaded):
    loop, generate = backends.get("manual-loop"), backends.get("transformers")
    measurement = engine.measure(loop, loaded, _spec())
    assert measurement.provenance.backend == "manual-loop"
    assert len(measurement.repetitions) == 2
    for rep in measurement.repetitions:
        assert len(rep.token_times_s) == 6
        assert rep.start_s < rep.token_times_s[0]
        assert all(a < b for a, b in zip(rep.token_times_s, rep.token_times_s[1:]))
    reference = engine.measure(generate, loaded, _spec())
    assert measurement.generated_text
    assert measurement.generated_text == reference.generated_text


@pytest.mark.slow
@pytest.mark.parametrize("prompt_tokens", [24, 48])   # 24: raw text, the model wants to stop
def test_every_sequence_of_the_batch_matches_generate(loaded, prompt_tokens):
    from lib.core.timing import ManualClock

    spec = _spec(prompt_tokens=prompt_tokens)
    loop = backends.get("manual-loop").session(loaded, spec)
    generate = backends.get("transformers").session(loaded, spec)
    loop.run(ManualClock(), timed=False)
    generate.run(ManualClock(), timed=False)
    assert loop.generated.tolist() == generate.output[:, spec.prompt_tokens:].tolist()


@pytest.mark.slow
def test_random_weights_preset_runs(model_cache_dir):
    backend = backends.get("manual-loop")
    gpt2 = backend.load("gpt2", "cpu", "bfloat16")
    spec = _spec(model_id="gpt2", dtype="bfloat16", prompt_tokens=16, new_tokens=4)
    measurement = engine.measure(backend, gpt2, spec)
    assert measurement.provenance.backend == "manual-loop"
    assert "meaningless" in measurement.generated_text
    assert all(len(rep.token_times_s) == 4 for rep in measurement.repetitions)
