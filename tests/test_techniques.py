"""Pruning and early exit (lib.measure.techniques): the settings, the refusals before loading,
the sweep factors, and the variants of the real default model (slow)."""

from __future__ import annotations

import pytest

from fakes import run_cli
from lib.core.errors import InvalidSpecError, UnsupportedError
from lib.core.spec import RunSpec, check_prune
from lib.measure import backends, techniques
from lib.models.catalog import get_entry

QUICK = dict(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)


@pytest.mark.parametrize("written, canonical", [
    ("Magnitude:0.50", "magnitude:0.5"), ("layers:10", "layers:10"), ("mlp:.25", "mlp:0.25"),
    ("none", None), ("  ", None)])
def test_pruning_is_written_one_way(written, canonical):
    assert check_prune(written) == canonical


@pytest.mark.parametrize("written, words", [
    ("cut:0.5", "Unknown pruning method 'cut'"), ("layers:0", "removes no layer"),
    ("mlp:1", "between 0 and 1"), ("magnitude:nan", "between 0 and 1"),
    ("layers:1.5", "a whole number of layers"), ("magnitude", "a share such as 0.5")])
def test_bad_pruning_says_how_to_write_it(written, words):
    with pytest.raises(InvalidSpecError, match=words):
        RunSpec(prune=written)


def test_layers_go_from_the_middle_and_early_exit_keeps_the_first():
    assert techniques.kept_layers(10, RunSpec(prune="layers:4")) == [0, 1, 2, 7, 8, 9]
    assert techniques.kept_layers(10, RunSpec(exit_layer=3)) == [0, 1, 2]
    assert techniques.kept_layers(10, RunSpec(prune="layers:4", exit_layer=5)) == \
        [0, 1, 2, 7, 8]
    with pytest.raises(UnsupportedError, match="remove them all"):
        techniques.kept_layers(10, RunSpec(prune="layers:10"))
    with pytest.raises(UnsupportedError, match="choose at most 6"):
        techniques.kept_layers(10, RunSpec(prune="layers:4", exit_layer=7))


def test_a_stack_that_cannot_apply_them_refuses_before_loading():
    spec = RunSpec(**QUICK, stack="llama.cpp", dtype="q4_k_m", prune="layers:10")
    entry = get_entry(spec.model_id)
    with pytest.raises(UnsupportedError, match="Choose the transformers stack"):
        backends.get("llama.cpp").check(entry, spec)
    with pytest.raises(UnsupportedError, match="has 30 decoder layers"):
        backends.get("transformers").check(entry, RunSpec(**QUICK, exit_layer=31))


def test_a_pruned_copy_is_counted_in_the_memory_need_a_shared_one_is_not():
    backend = backends.get("transformers")
    whole = backend.run_need(RunSpec(**QUICK), weights_loaded=True).total_bytes
    assert backend.run_need(RunSpec(**QUICK, prune="layers:10"),
                            weights_loaded=True).total_bytes == whole
    assert backend.run_need(RunSpec(**QUICK, prune="magnitude:0.5"),
                            weights_loaded=True).total_bytes > whole


def test_prune_and_exit_layer_are_sweep_factors(fake_backend, capsys):
    status, out, err = run_cli(["sweep", "--factor", "prune", "--values",
                                "none,layers:10,layers:99", "--prompt-tokens", "16",
                                "--new-tokens", "3", "--repetitions", "1", "--min-duration",
                                "0", "--json"], capsys)
    import json
    assert status == 0, err
    points = {row["factor_prune"]: row for row in json.loads(out)["points"]}
    assert points["none"]["prune"] is None and points["layers:10"]["prune"] == "layers:10"
    assert points["layers:99"]["status"] == "skipped"
    assert "remove them all" in points["layers:99"]["skipped_reason"]
    status, out, err = run_cli(["sweep", "--factor", "exit_layer", "--values", "5,30",
                                "--prompt-tokens", "16", "--new-tokens", "3", "--repetitions",
                                "1", "--min-duration", "0", "--json"], capsys)
    assert status == 0, err
    assert [row["exit_layer"] for row in json.loads(out)["points"]] == [5, 30]


@pytest.mark.slow
def test_variants_of_the_real_model_share_or_copy_weights_and_leave_it_untouched(
        default_model):
    import torch

    model = default_model.model
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    fewer = techniques.variant(model, RunSpec(prune="layers:10"))
    assert len(fewer.model.layers) == 20 and len(model.model.layers) == 30
    assert fewer.model.layers[10].mlp.up_proj.weight is model.model.layers[20].mlp.up_proj.weight
    assert [layer.self_attn.layer_idx for layer in fewer.model.layers] == list(range(20))
    assert techniques.variant(model, RunSpec(prune="layers:10")) is fewer      # made once
    zeroed = techniques.variant(model, RunSpec(prune="magnitude:0.5"))
    weight = zeroed.model.layers[0].mlp.up_proj.weight
    assert 0.49 < (weight == 0).float().mean().item() < 0.52
    assert (model.model.layers[0].mlp.up_proj.weight == 0).float().mean().item() < 0.01
    narrow = techniques.variant(model, RunSpec(prune="mlp:0.25"))
    assert narrow.model.layers[0].mlp.up_proj.weight.shape[0] == 1536 - 384
    early = techniques.variant(model, RunSpec(exit_layer=15))
    with torch.inference_mode():
        for variant in (fewer, zeroed, narrow, early):
            assert variant(input_ids=ids).logits.shape == before.shape
        assert torch.equal(model(input_ids=ids).logits, before)    # the original is untouched
        out = early.generate(input_ids=ids, max_new_tokens=3, min_new_tokens=3,
                             do_sample=False, pad_token_id=0)
    assert out.shape == (1, 9)


# --- speculative decoding ---------------------------------------------------------------------

def test_accepted_tokens_handed_over_at_once_get_one_clock_reading_each():
    import torch

    from lib.core.timing import ManualClock
    from lib.measure.backends.transformers_lm import TokenTimestamps

    clock = ManualClock()
    streamer = TokenTimestamps(clock)
    streamer.put(torch.tensor([[1, 2, 3, 4]]))           # the prompt: no reading
    clock.advance(0.5)
    streamer.put(torch.tensor([7]))                        # plain decoding: one token
    clock.advance(0.25)
    streamer.put(torch.tensor([[8, 9, 10]]))               # three accepted at once
    assert streamer.times_s == [0.5, 0.75, 0.75, 0.75] and streamer.steps == 2


def test_the_speculation_report_counts_steps_guesses_and_acceptance():
    from lib.measure.speculative import Speculation

    speculation = Speculation("prompt-lookup")
    speculation.proposed = 40
    speculation.add_call(tokens=32, steps=12)
    report = speculation.report(identical=True)
    assert report["accepted"] == 20 and report["acceptance_rate"] == 0.5
    assert report["tokens_per_step"] == pytest.approx(32 / 12)
    assert report["tokens_identical"] is True


def test_speculative_decoding_is_refused_where_it_cannot_run():
    backend = backends.get("transformers")
    entry = get_entry("smollm2-135m-instruct")
    with pytest.raises(UnsupportedError, match="set the batch size to 1"):
        backend.check(entry, RunSpec(**QUICK, speculative="prompt-lookup", batch_size=2))
    with pytest.raises(UnsupportedError, match="static cache"):
        backend.check(entry, RunSpec(**QUICK, speculative="early-exit", kv_cache="static"))
    with pytest.raises(UnsupportedError, match="back to none"):
        backends.get("llama.cpp").check(entry, RunSpec(**QUICK, stack="llama.cpp",
                                                       dtype="q4_k_m", speculative="early-exit"))


def test_the_report_is_saved_and_checked(fake_backend, capsys):
    import json

    from lib.core import schema
    from lib.core.results import from_dict

    status, out, err = run_cli(["run", "--speculative", "prompt-lookup", "--prompt-kind",
                                "quote", "--json", "--prompt-tokens", "16", "--new-tokens", "4",
                                "--repetitions", "1", "--min-duration", "0"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["speculative"]["tokens_identical"] is True
    assert document["spec"]["prompt_kind"] == "quote"
    assert from_dict(document).speculative == document["speculative"]
    document["speculative"]["acceptance_rate"] = 2
    with pytest.raises(schema.DocumentError, match="speculative.acceptance_rate"):
        from_dict(document)


@pytest.mark.slow
def test_prompt_lookup_on_a_quote_writes_the_plain_tokens_in_fewer_steps(default_model):
    from lib.core.timing import DeviceClock
    from lib.measure.backends.transformers_lm import GenerateSession

    spec = RunSpec(prompt_tokens=96, new_tokens=24, threads=2, speculative="prompt-lookup",
                   prompt_kind="quote")
    session = GenerateSession(default_model, spec)
    timing = session.run(DeviceClock("cpu"), timed=True)
    assert len(timing.token_times_s) == 24                 # one reading per emitted token
    report = session.speculative_report()
    assert report["tokens_identical"] is True
    assert report["tokens_per_step"] > 1.5 and 0 < report["acceptance_rate"] <= 1


def test_history_names_the_techniques():
    from lib.records import wording

    said = wording.run_settings_text(RunSpec(prune="layers:10", exit_layer=12,
                                             speculative="prompt-lookup",
                                             quality="on").to_dict())
    assert said.endswith("pruned layers:10, exit after layer 12, speculative prompt-lookup, "
                         "quality on")


def _estimated(hardware="h200", **changes):
    from lib.estimate import estimator
    return estimator.estimate(RunSpec(**changes), hardware)


def test_estimates_shrink_the_shapes_that_pruning_and_early_exit_remove():
    from lib.estimate import techniques as modelled
    from lib.models.shapes import shapes

    full = shapes("smollm2-135m-instruct")
    half = modelled.shaped(full, RunSpec(exit_layer=15))
    outside = full.vocab_size * full.hidden_size + full.hidden_size     # tied head, final norm
    assert half.layers == 15 and half.parameters - outside == \
        pytest.approx((full.parameters - outside) / 2, abs=1)
    assert half.kv_elements_per_token * 2 == full.kv_elements_per_token
    assert modelled.shaped(full, RunSpec(prune="layers:10")).layers == 20
    narrow = modelled.shaped(full, RunSpec(prune="mlp:0.25"))
    assert narrow.intermediate_size == full.intermediate_size - full.intermediate_size // 4
    assert full.parameters - narrow.parameters == \
        30 * 3 * full.hidden_size * (full.intermediate_size // 4)
    assert modelled.shaped(full, RunSpec(prune="magnitude:0.5")) == full
    with pytest.raises(UnsupportedError, match="mixture of experts"):
        _estimated(model_id="deepseek-v3-mini-moe", prune="mlp:0.25")


def test_estimates_of_pruned_and_exiting_models_are_faster_magnitude_is_not():
    plain = _estimated("this")                # the declared ceilings of a CPU
    assert _estimated("this", prune="magnitude:0.5").summary == plain.summary
    for changes in ({"prune": "layers:10"}, {"exit_layer": 15}, {"prune": "mlp:0.25"}):
        smaller = _estimated("this", **changes)
        assert smaller.summary["tpot_s"] < plain.summary["tpot_s"]
        assert smaller.summary["peak_memory_bytes"] < plain.summary["peak_memory_bytes"]
        assert any(words.startswith(str(next(iter(changes.values()))).split(":")[0])
                   or "early exit" in words for words in smaller.assumptions)
    # On an H200, eager transformers waits on its kernel launches, one set per layer: narrower
    # MLPs in as many layers change nothing there, fewer layers do.
    assert _estimated(prune="mlp:0.25").summary["tpot_s"] == _estimated().summary["tpot_s"]
    assert _estimated(prune="layers:10").summary["tpot_s"] < _estimated().summary["tpot_s"]


def test_speculative_estimates_divide_a_step_by_the_tokens_it_yields():
    from lib.estimate import estimator

    plain = _estimated(prompt_kind="quote")
    lookup = _estimated(speculative="prompt-lookup", prompt_kind="quote")
    said = lookup.speculative
    assert said["source"].startswith("measured")
    assert said["tokens_per_step"] == 1 + said["acceptance_rate"] * said["guesses_per_step"]
    assert said["draft_step_s"] == 0                   # prompt lookup runs no model to guess
    assert lookup.summary["tpot_s"] == pytest.approx(said["verify_s"] / said["tokens_per_step"])
    assert said["plain_step_s"] == pytest.approx(plain.summary["tpot_s"])
    assert lookup.summary["tpot_s"] < plain.summary["tpot_s"] / 3
    assert "That is one plain step" in lookup.why()["text"]
    stated = estimator.estimate(RunSpec(speculative="early-exit"), "h200",
                                acceptance_rate=0.5)
    guessed = stated.speculative
    assert guessed["source"].startswith("stated") and guessed["draft_step_s"] > 0
    assert stated.summary["tpot_s"] == pytest.approx(
        (guessed["guesses_per_step"] * guessed["draft_step_s"] + guessed["verify_s"])
        / (1 + 0.5 * guessed["guesses_per_step"]))
    draft = _estimated(speculative="draft")
    assert draft.memory_need.weights_bytes > plain.memory_need.weights_bytes   # a second model


@pytest.mark.parametrize("argv, words", [
    (["estimate", "--acceptance-rate", "0.5"], "add --speculative"),
    (["estimate", "--speculative", "draft", "--acceptance-rate", "1.5"], "is not a share"),
])
def test_the_acceptance_rate_is_checked(argv, words, capsys):
    status, out, err = run_cli(argv, capsys)
    assert status == 2 and words in err and "Traceback" not in err


def test_no_floor_is_claimed_for_a_run_that_does_not_run_the_whole_model_per_token():
    from fakes import with_declared_ceilings, fake_runner
    from lib.estimate import floors

    whole = with_declared_ceilings(fake_runner(RunSpec(**QUICK)))
    assert floors.metric_floors(whole)
    for changes in ({"prune": "layers:10"}, {"exit_layer": 5}, {"speculative": "prompt-lookup"}):
        pruned = with_declared_ceilings(fake_runner(RunSpec(**QUICK, **changes)))
        assert floors.metric_floors(pruned) == {} and floors.sentences(pruned, 0.2, 0.05) == []
