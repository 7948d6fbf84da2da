import pytest

from lib.errors import InvalidSpecError
from lib.spec import RunSpec, field_info


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=0), "batch_size must be between 1 and 64"),
    (dict(batch_size=65), "batch_size must be between 1 and 64"),
    (dict(new_tokens=513), "new_tokens must be between 1 and 512"),
    (dict(prompt_tokens=4), "prompt_tokens must be at least 8"),
    (dict(dtype="int4"), "dtype must be one of float32, bfloat16, float16"),
    (dict(device="tpu"), "device must be one of cpu, cuda, mps"),
    (dict(new_tokens=2.5), "whole number"),
    (dict(threads=0), "threads must be at least 1"),
    (dict(threads=10_000), "far more than this machine"),
    (dict(prompt_text="   "), "Your prompt is empty"),
    (dict(model_id=" "), "model_id is empty"),
])
def test_impossible_values_are_rejected_with_a_fix(changes, message):
    with pytest.raises(InvalidSpecError, match=message):
        RunSpec(**changes)


def test_spec_is_frozen_and_hashable():
    spec = RunSpec()
    assert hash(spec) == hash(RunSpec())
    with pytest.raises(Exception):
        spec.batch_size = 3
    assert spec.replace(batch_size=4).batch_size == 4
    assert spec.total_tokens == spec.prompt_tokens + spec.new_tokens


def test_every_field_carries_label_and_help():
    for name in RunSpec.__dataclass_fields__:
        info = field_info(name)
        assert info["label"] and len(info["help"]) > 20


@pytest.mark.parametrize("changes, message", [
    (dict(attention="flash"), "attention must be one of sdpa, eager"),
    (dict(kv_cache="paged"), "kv_cache must be one of dynamic, static"),
    (dict(compile="yes"), "compile must be one of off, on"),
])
def test_software_stack_values_are_checked(changes, message):
    with pytest.raises(InvalidSpecError, match=message):
        RunSpec(**changes)
