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
