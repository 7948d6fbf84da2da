"""lib.estimate.explain: every estimate says what limits it on its hardware (one of the shared
limits), in words that carry the estimator's own numbers; `lib estimate --json` gives it, and
`fits`/`min_gpus` even for a model that does not fit."""

import json

import pytest

from fakes import declare_ceilings
from lib.cli import main
from lib.estimate import estimator, hardware
from lib.estimate.explain import LIMITS, TERM_LIMITS
from lib.core.metrics import format_bytes, format_seconds
from lib.core.spec import RunSpec


@pytest.fixture(autouse=True)
def measured_here(monkeypatch):
    yield declare_ceilings(monkeypatch)
    hardware.this.cache_clear()


@pytest.mark.parametrize("changes, hardware_id, gpus, limit", [
    ({"model_id": "gpt2"}, "h200", 1, "overhead"),                     # eager: launches
    ({"model_id": "deepseek-r1-distill-llama-8b", "compile": "on"}, "h100-sxm", 1,
     "memory bandwidth"),                                              # 16 GB per token
    ({"batch_size": 64, "prompt_tokens": 1024, "new_tokens": 1}, "h100-sxm", 1, "compute"),
    ({"model_id": "gpt2", "compile": "on"}, "h100-sxm", 8, "interconnect"),
])
def test_the_limit_is_the_estimators_largest_term_in_the_shared_words(changes, hardware_id,
                                                                       gpus, limit):
    spec = RunSpec(dtype="bfloat16", **changes)
    result = estimator.estimate(spec, hardware_id, gpus)
    why = result.why()
    phase = result.breakdown["decode" if "decode" in result.breakdown else "prefill"]
    assert why["limit"] == limit == TERM_LIMITS[phase["limited_by"]] and limit in LIMITS
    took = result.summary.get("tpot_s", result.summary["ttft_s"])
    assert format_seconds(took) in why["text"]                         # the estimate itself
    if limit in ("memory bandwidth", "compute"):                       # and its floor
        floor = result.floor["tpot_s"] if "decode" in result.breakdown else result.floor["ttft_s"]
        assert f"at least {format_seconds(floor)}" in why["text"]


def test_memory_bound_words_name_the_bytes_each_token_reads():
    result = estimator.estimate(RunSpec(model_id="deepseek-r1-distill-llama-8b",
                                        dtype="bfloat16", compile="on"), "h100-sxm")
    text = result.why()["text"]
    assert text.startswith("On one NVIDIA H100 SXM 80GB, each new token reads "
                           f"{format_bytes(result.floor['decode_bytes'])} of weights")
    assert "memory bandwidth limits it" in text and "datasheet" in text


def test_this_machine_is_named_as_such_and_its_figures_as_measured():
    text = estimator.estimate(RunSpec(), "this").why()["text"]
    assert text.startswith("On this machine, ") and "measured here" in text


def run_cli(argv, capsys):
    status = main.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_a_model_that_does_not_fit_still_prints_its_json_with_min_gpus(capsys):
    status, out, err = run_cli(["estimate", "--model", "deepseek-r1", "--hardware", "h100-sxm",
                                "--gpus", "1", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    needed = document["min_gpus"]
    assert document["fits"] is False and needed == document["memory"]["devices_needed"] > 1
    assert document["why"]["limit"] in LIMITS
    # min_gpus is the fewest that fit: one fewer does not.
    for gpus, fits in ((needed, True), (needed - 1, False)):
        status, out, _ = run_cli(["estimate", "--model", "deepseek-r1", "--hardware",
                                  "h100-sxm", "--gpus", str(gpus), "--json"], capsys)
        assert status == 0 and json.loads(out)["fits"] is fits
    status, out, err = run_cli(["estimate", "--model", "deepseek-r1", "--hardware", "h100-sxm",
                                "--gpus", "1"], capsys)
    assert status == 2 and out == "" and f"It needs at least {needed} of them" in err


def test_min_gpus_is_null_when_no_number_of_devices_holds_the_run(capsys):
    status, out, err = run_cli(["estimate", "--model", "deepseek-r1-distill-llama-8b",
                                "--hardware", "phone-npu", "--batch", "64", "--prompt-tokens",
                                "4096", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["fits"] is False and document["min_gpus"] is None


def test_the_text_form_says_why(capsys):
    status, out, err = run_cli(["estimate", "--model", "gpt2", "--hardware", "h200"], capsys)
    assert status == 0, err
    assert "why: On one NVIDIA H200 SXM 141GB, each new token runs 12 layers" in out
