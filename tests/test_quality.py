"""Quality beside latency (lib.measure.quality): exact relations on the fake backend, the saved
form, the CLI's columns and sentences; and the real default model against itself."""

from __future__ import annotations

import csv
import json
import math

import pytest

from fakes import run_cli
from lib.core import schema
from lib.core.results import Quality, from_dict, to_dict
from lib.core.spec import RunSpec
from lib.measure import backends, quality
from lib.measure.backends.fake import REFERENCE_PERPLEXITY, FakeBackend, FakeTokenizer
from lib.measure.engine import measure

QUICK = dict(prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0, threads=1)


def _measured(spec: RunSpec, **declared):
    backend = FakeBackend(**declared)
    loaded = backend.load(spec.model_id, spec.device, spec.dtype)
    return measure(backend, loaded, spec)


def test_the_evaluation_text_is_split_and_windowed():
    evaluation, training = quality.split_ids(FakeTokenizer())
    assert len(evaluation) == quality.EVALUATION_TOKENS and len(training) > 1000
    parts = quality.windows(evaluation)
    assert [len(part) for part in parts] == [quality.WINDOW_TOKENS] * 2
    assert quality.windows(list(range(513))) == [list(range(512))]   # a 1-token tail predicts nothing


def test_agreement_and_perplexity_follow_from_the_scores():
    scores = ([1, 2, 3, 9], [math.log(4.0)] * 4)
    reference = ([1, 2, 3, 4], [math.log(2.0)] * 4)
    measured = quality.summarize(scores, reference)
    assert measured.agreement == 0.75 and measured.tokens == 4
    assert measured.perplexity == pytest.approx(4.0) and \
        measured.reference_perplexity == pytest.approx(2.0)
    with pytest.raises(ValueError):
        quality.summarize(([1], [0.0]), reference)


def test_a_run_asked_for_quality_measures_it_apart_from_the_timing():
    spec = RunSpec(**QUICK, dtype="bfloat16", quality="on")
    measurement = _measured(spec, agreement=0.8, perplexity=12.5)
    measured = measurement.quality
    assert measured.agreement == pytest.approx(0.8, abs=0.002)   # rounded per window
    assert measured.perplexity == pytest.approx(12.5)
    assert measured.reference_perplexity == pytest.approx(REFERENCE_PERPLEXITY)
    assert measured.tokens == 2 * (quality.WINDOW_TOKENS - 1)
    assert measured.reference == "transformers, float32"
    # Not asked for: nothing measured, nothing saved.
    assert _measured(RunSpec(**QUICK)).quality is None


def test_the_reference_run_agrees_with_itself():
    measurement = _measured(RunSpec(**QUICK, quality="on"), agreement=1.0,
                            perplexity=REFERENCE_PERPLEXITY)
    assert measurement.quality.agreement == 1.0
    assert measurement.quality.perplexity == measurement.quality.reference_perplexity


@pytest.mark.parametrize("model_id, words", [
    ("gpt2", "random weights"),                     # a famous architecture, random weights
])
def test_a_model_without_trained_weights_says_it_has_no_quality(model_id, words):
    measured = _measured(RunSpec(**QUICK, model_id=model_id, quality="on")).quality
    assert not measured.measured and words in measured.unavailable


def test_quality_is_saved_and_reopened_and_checked(tmp_path):
    measurement = _measured(RunSpec(**QUICK, dtype="int8", quality="on"), agreement=0.5)
    document = json.loads(json.dumps(to_dict(measurement), allow_nan=False))
    assert from_dict(document).quality == measurement.quality
    for field, bad in [("agreement", 1.5), ("perplexity", 0.5), ("tokens", -1),
                       ("agreement", "most")]:
        broken = json.loads(json.dumps(document))
        broken["quality"][field] = bad
        with pytest.raises(schema.DocumentError, match=f"quality.{field}"):
            from_dict(broken)


def test_the_cli_adds_quality_to_the_json_and_the_sweep_csv(fake_backend, capsys, tmp_path):
    from lib.measure.backends import fake

    status, out, err = run_cli(["run", "--quality", "--json", "--prompt-tokens", "16",
                                "--new-tokens", "3", "--repetitions", "1",
                                "--min-duration", "0"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["quality"]["agreement"] == 1.0 and document["spec"]["quality"] == "on"
    path = tmp_path / "sweep.csv"
    with backends.use(fake.FakeBackend(agreement=lambda spec: 0.9 if spec.dtype == "int8"
                                       else 1.0)):
        status, out, err = run_cli(["sweep", "--factor", "dtype", "--values", "float32,int8",
                                    "--quality", "--prompt-tokens", "16", "--new-tokens", "3",
                                    "--repetitions", "1", "--min-duration", "0", "--csv",
                                    str(path)], capsys)
    assert status == 0, err
    rows = {row["factor_dtype"]: row for row in csv.DictReader(path.open())}
    assert float(rows["int8"]["quality_agreement"]) == pytest.approx(0.9, abs=0.002)
    assert float(rows["float32"]["quality_agreement"]) == 1.0
    assert float(rows["int8"]["quality_reference_perplexity"]) == pytest.approx(REFERENCE_PERPLEXITY)


def test_the_text_report_says_what_quality_costs():
    from lib.records.export import quality_sentence

    said = quality_sentence(Quality(text="founding texts", tokens=1022, agreement=0.801,
                                    perplexity=24.65, reference_perplexity=19.75,
                                    reference="transformers, float32", seconds=4.4))
    assert said.startswith("Quality: agrees with the original model (transformers, float32) "
                           "on 80.1% of next words over 1,022 tokens of founding texts")
    assert "perplexity 24.65 (original 19.75, +24.8%)" in said
    assert quality_sentence(None) is None
    assert "random weights" in quality_sentence(Quality(text="x", unavailable="random weights"))


@pytest.mark.slow
def test_the_default_model_agrees_with_itself_and_bfloat16_drifts(default_model):
    """The real model in float32 is the reference (agreement 1); bfloat16 drifts a little."""
    from lib.measure.quality import torch_scores

    parts = quality.windows(quality.split_ids(default_model.tokenizer)[0])
    own = quality._joined(torch_scores(default_model.model, parts, "cpu"))
    measured = quality.summarize(own, own)
    assert measured.agreement == 1.0 and 5 < measured.perplexity < 100
    import copy

    import torch
    halved_model = copy.deepcopy(default_model.model).to(torch.bfloat16)   # the shared one stays
    halved = quality._joined(torch_scores(halved_model, parts, "cpu"))
    drifted = quality.summarize(halved, own)
    assert 0.8 < drifted.agreement < 1.0
    assert drifted.perplexity == pytest.approx(measured.perplexity, rel=0.05)


def _row(value, tpot, agreement, perplexity, noisy=False):
    spread = 0.5 if noisy else 0.0           # a noisy point's samples scatter widely
    return {"factor_dtype": value, "status": "measured", "provenance": "measured",
            "tpot_s": tpot, "e2e_s": tpot * 4, "noisy": noisy, "quality_agreement": agreement,
            "quality_perplexity": perplexity, "tpot_s_min": tpot * (1 - spread),
            "tpot_s_max": tpot * (1 + spread)}


def test_the_frontier_keeps_only_points_nothing_beats_in_both():
    from lib.views.quality_insights import frontier
    rows = [_row("float32", 0.060, 1.0, 19.8), _row("q8_0", 0.030, 0.97, 19.9),
            _row("q4_1", 0.025, 0.70, 27.0), _row("worse", 0.040, 0.90, 22.0)]
    assert frontier(rows) == [2, 1, 0]              # fastest first; 'worse' is beaten by q8_0


def test_the_trade_is_one_sentence_per_point_within_the_noise_rules():
    from lib.measure.factors import FACTORS
    from lib.views.quality_insights import quality_findings
    factor = FACTORS["dtype"]
    rows = [_row("float32", 0.060, 1.0, 19.75), _row("q4_k_m", 0.020, 0.80, 24.65),
            _row("q8_0", 0.059, 0.99, 19.80, noisy=True)]
    said = quality_findings(rows, factor)
    assert said[0] == ("Speed against quality: Number format Q4_K_M: 3.0x faster per token "
                       "(20 ms vs 60 ms), agrees with the original model on 80% of next words "
                       "(perplexity 24.65 vs 19.75).")
    assert "no clear change per token (within the noise)" in said[1]    # a noisy point
    assert quality_findings(rows[:1], factor) == []


def test_a_huge_perplexity_change_is_said_as_a_factor():
    from lib.records.export import quality_sentence

    said = quality_sentence(Quality(text="t", tokens=10, agreement=0.14, perplexity=2.7e9,
                                    reference_perplexity=19.75, reference="r"))
    assert "perplexity 2,700,000,000 (original 19.75, 136,708,861x as high)" in said
