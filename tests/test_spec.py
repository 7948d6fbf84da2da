import argparse
import dataclasses

import pytest

from lib.core.errors import InvalidSpecError, UnsupportedError
from lib.core.spec import RunSpec, field_info, field_names, from_saved
from lib.core.spec_text import add_arguments, from_arguments


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=0), "batch_size must be between 1 and 64"),
    (dict(batch_size=65), "batch_size must be between 1 and 64"),
    (dict(new_tokens=513), "new_tokens must be between 1 and 512"),
    (dict(prompt_tokens=4), "prompt_tokens must be between 8 and 131072"),
    (dict(dtype="int3"), "dtype must be one of float32, bfloat16, float16"),
    (dict(stack="vllm"), "stack must be one of transformers, llama.cpp, onnxruntime"),
    (dict(device="tpu"), "device must be one of cpu, cuda, mps"),
    (dict(new_tokens=2.5), "whole number"),
    (dict(threads=0), "threads must be at least 1"),
    (dict(threads=10_000), "far more than this machine"),
    (dict(prompt_text="   "), "Your prompt is empty"),
    (dict(model_id=" "), "model_id is empty"),
    (dict(min_duration_s=float("nan")), "min_duration_s must be a finite number"),
    (dict(min_duration_s=float("inf")), "min_duration_s must be a finite number"),
    (dict(prompt_text="caf\udcff"), "prompt_text is not valid UTF-8 text"),
    (dict(model_id="x" * 5000), "model_id is 5,000 characters long"),
])
def test_impossible_values_are_rejected_with_a_fix(changes, message):
    with pytest.raises(InvalidSpecError, match=message):
        RunSpec(**changes)


def test_spec_is_frozen_and_hashable():
    spec = RunSpec()
    assert hash(spec) == hash(RunSpec())
    with pytest.raises(dataclasses.FrozenInstanceError):
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


def test_cli_flags_are_generated_from_the_fields():
    parser = argparse.ArgumentParser()
    add_arguments(parser, {"repetitions": 3})
    actions = {a.dest: a for a in parser._actions if a.dest in field_names()}
    assert set(actions) == set(field_names())
    assert actions["dtype"].choices[:8] == ("float32", "bfloat16", "float16", "int8", "q8_0",
                                            "q4_k_m", "q4_1", "int4")
    assert set(actions["dtype"].choices[8:]) == {"f32", "fp32", "f16", "fp16", "bf16"}
    assert actions["stack"].choices == ("transformers", "llama.cpp", "onnxruntime")
    assert actions["batch_size"].option_strings == ["--batch"] and actions["batch_size"].type is int
    assert actions["repetitions"].default == 3                  # the override
    assert actions["min_duration_s"].default == 1.0 and actions["min_duration_s"].type is float
    assert "[1..64]" in actions["batch_size"].help
    spec = from_arguments(parser.parse_args(["--batch", "4", "--kv-cache", "static"]))
    assert spec == RunSpec(batch_size=4, kv_cache="static", repetitions=3)


def test_field_info_carries_what_a_widget_needs():
    batch = field_info("batch_size")
    assert (batch["min"], batch["max"], batch["default"], batch["widget"]) == (1, 64, 1, "number")
    assert field_info("dtype")["widget"] == "select"
    assert field_info("prompt_tokens")["step"] == 8
    assert field_info("prompt_text")["widget"] == "text" and field_info("prompt_text")["type"] is str


def test_parse_value_checks_type_finiteness_and_choices():
    from lib.core.spec_text import parse_value
    assert parse_value("batch_size", " 8 ") == 8 and parse_value("min_duration_s", "0.5") == 0.5
    for name, raw, words in [("batch_size", "two", "not a whole number"),
                             ("batch_size", "1.5", "not a whole number"),
                             ("min_duration_s", "nan", "not a finite number"),
                             ("min_duration_s", "-inf", "not a finite number"),
                             ("dtype", "float64", "choose from float32")]:
        with pytest.raises(InvalidSpecError, match=words):
            parse_value(name, raw)


def test_clamp_moves_values_into_this_machines_range():
    from lib.core.spec import default_threads
    from lib.core.spec_text import clamp
    assert clamp("batch_size", 8) == (8, None)
    assert clamp("batch_size", 0) == (1, "below the lowest value 1, so 1 is used")
    assert clamp("new_tokens", 10**30)[0] == 512
    assert clamp("threads", 10_000) == (default_threads(),
                                        f"this machine has {default_threads()} cores, so "
                                        f"{default_threads()} is used")


def test_a_saved_spec_opens_from_any_version_and_any_machine():
    saved = {**RunSpec(batch_size=4).to_dict(), "draft_model": "tiny", "threads": 10_000}
    saved.pop("compile")                              # written before it existed
    spec = from_saved(saved)
    assert spec.batch_size == 4 and spec.threads == 10_000 and spec.compile == "off"
    assert spec == from_saved(spec.to_dict()) and hash(spec) == hash(from_saved(spec.to_dict()))


@pytest.mark.parametrize("fields, message", [
    (dict(model_id=5), "model_id must be text"),
    (dict(prompt_text=["a"]), "prompt_text must be text"),
    (dict(threads="8"), "threads must be a whole number of at least 1"),
    (dict(threads=0), "threads must be a whole number of at least 1"),
    (dict(batch_size=1000), "batch_size must be between 1 and 64"),
    (dict(min_duration_s=float("nan")), "min_duration_s must be a finite number"),
])
def test_a_saved_spec_is_still_checked(fields, message):
    with pytest.raises(InvalidSpecError, match=message):
        from_saved({**RunSpec().to_dict(), **fields})


def test_threads_beyond_this_machines_cores_are_refused_where_a_run_starts(monkeypatch):
    """Not by RunSpec itself: a run saved on a bigger machine must still open here."""
    from lib.core import spec as spec_module
    monkeypatch.setattr(spec_module, "default_threads", lambda: 2)
    assert RunSpec(threads=4).threads == 4
    spec_module.check_threads(2)
    with pytest.raises(InvalidSpecError, match="threads=4, but this machine has 2 CPU cores"):
        spec_module.check_threads(4)


def test_other_names_of_a_format_are_saved_under_one_name():
    assert RunSpec(dtype="f16").dtype == "float16"
    assert RunSpec(dtype="fp32").dtype == "float32"
    assert RunSpec(dtype="bf16").dtype == "bfloat16"
    assert RunSpec(dtype="f16") == RunSpec(dtype="float16")


def test_a_format_of_another_stack_is_refused_with_the_stack_that_runs_it():
    from lib.models.catalog import get_entry
    from lib.measure import backends

    spec = RunSpec(dtype="q4_k_m")
    backend = backends.for_spec(spec)
    assert backend.name == "transformers"
    with pytest.raises(UnsupportedError, match="does not run weights in Q4_K_M. It is a format "
                                               "of llama.cpp: choose that stack"):
        backend.check(get_entry(spec.model_id), spec)
