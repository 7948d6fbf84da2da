"""The software stack as a factor people sweep and read: the sweep over stacks (and stack x
number format) on fakes that are each one stack, its skipped points and their reasons, the CLI,
the words History and the text report use, and old saved documents (no stack) opening as
transformers."""

import pytest

from fakes import StackFake, measure, use_stack_fakes
from lib.cli import main
from lib.records import table, saving, wording, export
from lib.core import stats
from lib.measure.factors import FACTORS, get_factor, parse_values, point_spec
from lib.core.results import from_dict, to_dict
from lib.core.spec import RunSpec, from_saved

SMALL = ["--prompt-tokens", "16", "--new-tokens", "3", "--repetitions", "1",
         "--min-duration", "0", "--warmup", "0"]


@pytest.fixture
def stacks(monkeypatch):
    """transformers and llama.cpp on fakes (llama.cpp writes tokens faster but reads the
    prompt slower); ONNX Runtime has no backend."""
    from fakes import declare_ceilings
    from lib.measure import cache

    declare_ceilings(monkeypatch)
    monkeypatch.setattr(cache, "_release_memory", lambda: None)
    return use_stack_fakes(monkeypatch, {
        "transformers": StackFake("transformers", prefill_s=0.2, decode_s=0.04),
        "llama.cpp": StackFake("llama.cpp", version="0.3.36", prefill_s=0.4, decode_s=0.01)})


def invoke(argv, capsys):
    status = main.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_cli_stack_sweep_measures_each_stack_and_skips_the_one_without_a_backend(stacks,
                                                                                    capsys):
    status, out, err = invoke(["sweep", "--factor", "stack", "--values",
                               "transformers,llama.cpp,onnxruntime", *SMALL], capsys)
    assert status == 0, err
    assert "skipped: ONNX Runtime has no backend in this version of the app." in out
    assert ("- llama.cpp float32 writes tokens 4.0x faster than transformers float32 (10 ms vs "
            "40 ms per token), but reads the prompt 2.0x slower (400 ms vs 200 ms to the first "
            "token).") in out
    assert "- Software stack ONNX Runtime could not run: ONNX Runtime has no backend" in out


def test_a_cli_stack_by_format_grid_skips_the_formats_a_stack_does_not_run(stacks, capsys):
    status, out, err = invoke(["sweep", "--factor", "stack", "--values", "transformers,llama.cpp",
                               "--factor2", "dtype", "--values2", "float32,q4_k_m,int8", *SMALL],
                              capsys)
    assert status == 0, err
    assert "skipped: llama.cpp does not run weights in int8 (dynamic)." in out
    assert "skipped: transformers (PyTorch) does not run weights in Q4_K_M." in out
    assert ("- Not run, since the stack doesn't run that format: transformers Q4_K_M; "
            "llama.cpp int8.") in out
    assert ("- Lowest time per token: llama.cpp float32 (10 ms, within the noise of llama.cpp "
            "Q4_K_M (10 ms))") in out
    assert "- Peak memory was about the same everywhere (629.1 MB)." in out


def test_a_cli_run_on_a_format_its_stack_does_not_run_is_refused_in_one_line(stacks, capsys):
    status, out, err = invoke(["run", "--stack", "llama.cpp", "--dtype", "int8", *SMALL], capsys)
    assert status == 2 and out == ""
    assert err.startswith("error: llama.cpp does not run weights in int8 (dynamic). It is a "
                          "format of transformers (PyTorch)")


def test_a_cli_run_on_a_stack_not_installed_says_how_to_add_it(monkeypatch, capsys):
    use_stack_fakes(monkeypatch, {}, missing=("llama.cpp",))
    status, out, err = invoke(["run", "--stack", "llama.cpp", *SMALL], capsys)
    assert status == 2
    assert "llama.cpp is not installed on this machine" in err
    assert "scripts/setup.sh --stacks" in err


def test_run_help_lists_the_stacks_and_every_format(capsys):
    with pytest.raises(SystemExit):
        main.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "{transformers,llama.cpp,onnxruntime}" in out
    assert "{float32,bfloat16,float16,int8,q8_0,q4_k_m,q4_1,int4}" in out


def test_the_stack_factor_offers_every_stack_in_words():
    factor = get_factor("stack")
    assert factor.default_values() == ("transformers", "llama.cpp", "onnxruntime")
    assert [factor.value_label(v) for v in factor.default_values()] == \
        ["transformers", "llama.cpp", "ONNX Runtime"]
    assert parse_values(factor, "llama.cpp, transformers") == ["llama.cpp", "transformers"]
    with pytest.raises(Exception, match="is not a software stack"):
        parse_values(factor, "vllm")


def test_another_stack_s_point_drops_the_transformers_only_settings():
    base = RunSpec(attention="eager", kv_cache="static")
    factor_values = [(FACTORS["stack"], ["transformers", "llama.cpp"])]
    there = point_spec(base, factor_values, {"stack": "transformers"})
    other = point_spec(base, factor_values, {"stack": "llama.cpp"})
    assert (there.attention, there.kv_cache) == ("eager", "static")
    assert (other.stack, other.attention, other.kv_cache, other.compile) == \
        ("llama.cpp", "sdpa", "dynamic", "off")


def test_the_stack_is_in_the_csv_at_the_end_and_in_history_words(stacks):
    spec = RunSpec(stack="llama.cpp", dtype="q4_k_m", prompt_tokens=16, new_tokens=3,
                   repetitions=1, min_duration_s=0.0)
    measurement = measure(spec, stacks["llama.cpp"])
    row = export.summary_row(measurement, stats.summarize(measurement))
    # Columns added later go last: the stack, then quality (asked for, then measured).
    later = ["stack", "quality", "prune", "exit_layer", "speculative", "prompt_kind"]
    assert list(row)[-13:] == later + [f"quality_{name}" for name in table.QUALITY_FIELDS] + \
        ["quality_unavailable"] + [f"speculative_{name}" for name in table.SPECULATIVE_FIELDS]
    assert row["stack"] == "llama.cpp"
    assert wording.run_settings_text(spec.to_dict()) == \
        "smollm2-135m-instruct, batch 1, prompt 16, output 3, Q4_K_M, on llama.cpp"
    assert "on " not in wording.run_settings_text(RunSpec().to_dict()).split("instruct")[1]
    assert export.stack_sentence(measurement) == \
        "Ran on llama.cpp (llama-cpp-python 0.3.36), weights Q4_K_M."
    assert "q4_k_m on llama.cpp, batch 1" in export.to_text(
        measurement, stats.summarize(measurement))


def test_a_sweep_entry_label_names_its_stack_unless_it_is_the_factor():
    entry = {"kind": "sweep", "factors": ["batch"], "models": ["gpt2"],
             "point_values": [{"batch": 1}, {"batch": 2}], "skipped": 0, "stack": "llama.cpp"}
    assert wording.entry_label(entry) == "batch size sweep: 1, 2 — gpt2 on llama.cpp"
    assert wording.entry_label({**entry, "stack": None}) == "batch size sweep: 1, 2 — gpt2"
    assert wording.entry_label({**entry, "stack": "transformers"}) == \
        "batch size sweep: 1, 2 — gpt2"
    stack_sweep = {**entry, "factors": ["stack"],
                   "point_values": [{"stack": "transformers"}, {"stack": "llama.cpp"}]}
    assert wording.entry_label(stack_sweep) == \
        "software stack sweep: transformers, llama.cpp — gpt2"


def test_a_saved_sweep_lists_its_stack_in_history(stacks):
    from lib.records.store import Store

    base = RunSpec(stack="llama.cpp", prompt_tokens=16, new_tokens=3, repetitions=1,
                   min_duration_s=0.0)
    recorder = saving.SweepRecorder(base, ["batch"], 1)
    recorder.finish(stopped=False)
    entry = next(e for e in Store().list() if e["id"] == recorder.entry_id)
    assert entry["stack"] == "llama.cpp"
    assert wording.entry_label(entry).endswith(" on llama.cpp")


def test_a_document_saved_before_stacks_opens_as_transformers(stacks):
    spec = RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0)
    document = to_dict(measure(spec, stacks["transformers"]))
    del document["spec"]["stack"]
    assert from_dict(document).spec.stack == "transformers"
    assert from_saved({"model_id": "gpt2", "dtype": "float32"}).stack == "transformers"



def test_the_line_before_a_run_names_every_stack_but_the_default_the_same_way():
    from lib.measure import runner

    words = {stack: runner.describe(RunSpec(stack=stack, dtype=dtype))
             for stack, dtype in (("transformers", "float32"), ("llama.cpp", "q4_k_m"),
                                  ("onnxruntime", "int4"))}
    assert " in float32, batch 1" in words["transformers"]
    assert " in Q4_K_M with llama.cpp, batch 1" in words["llama.cpp"]
    assert " in int4 with ONNX Runtime, batch 1" in words["onnxruntime"]
