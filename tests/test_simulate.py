"""The serving simulator (lib.serving.simulate): exact scheduling on a declared step time, the
CLI's simulated load test with its cost, and its refusals."""

from __future__ import annotations

import json

import pytest

from fakes import run_cli
from lib.serving import simulate
from lib.serving.plan import LoadPlan


class DeclaredStep:
    """A step takes `fixed` seconds plus `per_token` per token scheduled in it."""

    def __init__(self, fixed=0.01, per_token=0.001):
        self.fixed, self.per_token, self.steps = fixed, per_token, []

    def seconds(self, decode_seqs, decode_context, prefill_tokens, prefill_pairs):
        self.steps.append((decode_seqs, prefill_tokens))
        return self.fixed + self.per_token * (decode_seqs + prefill_tokens)


def _plan(**changes):
    base = dict(levels=(1.0,), requests=1, warmup=0, prompt_tokens=100, new_tokens=5,
                arrival="constant")
    return LoadPlan(**{**base, **changes})


def test_one_request_alone_reads_its_prompt_in_one_step_then_writes_a_token_a_step():
    step = DeclaredStep()
    engine = simulate.Engine(step, kv_tokens=10_000)
    [record] = simulate.simulate_level(engine, _plan(), 1.0)
    assert step.steps == [(0, 100)] + [(1, 0)] * 4          # prefill, then 4 decode steps
    assert record.ttft_s == pytest.approx(0.01 + 0.1)
    assert record.tpot_s == pytest.approx(0.011)
    assert record.output_tokens == 5 and record.status == "ok"


def test_a_long_prompt_is_read_in_chunks_beside_the_decoding_requests():
    step = DeclaredStep()
    engine = simulate.Engine(step, kv_tokens=100_000, max_batched_tokens=64)
    records = simulate.simulate_level(engine, _plan(mode="concurrency", levels=(2.0,),
                                                    requests=2, prompt_tokens=100), 2.0)
    assert step.steps[0] == (0, 64) and step.steps[1] == (0, 64)      # both prompts, chunked
    assert all(decode + prefill <= 64 for decode, prefill in step.steps)
    assert [r.output_tokens for r in records] == [5] * 4      # 2 of them warm-up (one a user)


def test_a_full_kv_cache_preempts_the_latest_request_and_reads_it_again():
    step = DeclaredStep()
    # 2 requests of 32 + 40 tokens need 5 blocks each at the end: 8 blocks hold both prompts
    # (2 blocks each) but not both answers.
    engine = simulate.Engine(step, kv_tokens=8 * simulate.BLOCK_TOKENS)
    records = simulate.simulate_level(
        engine, _plan(mode="concurrency", levels=(2.0,), requests=2, prompt_tokens=32,
                      new_tokens=40), 2.0)
    assert [r.output_tokens for r in records] == [40] * 4
    reread = [prefill for decode, prefill in step.steps[1:] if prefill]
    assert reread and max(reread) > 32                      # prompt and written tokens again


def test_more_load_means_longer_waits_and_the_cli_prices_each_level(capsys):
    status, out, err = run_cli(["load", "--target", "simulate", "--hardware", "h200", "--gpus",
                                "8", "--model", "deepseek-r1", "--rates", "1,16,64",
                                "--prompt-tokens", "1024", "--new-tokens", "128", "--json"],
                               capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["provenance"] == "simulated" and document["target"]["kind"] == "simulated"
    ttft = [level["ttft_s"]["p50"] for level in document["levels"]]
    assert ttft == sorted(ttft) and ttft[-1] > ttft[0]
    price = document["target"]["price"]["usd_per_device_hour"]
    for level in document["levels"]:
        assert level["cost_per_million_tokens"] == pytest.approx(
            price * 8 / (level["output_tokens_per_s"] * 3600) * 1e6)
        assert level["joules_per_token"] == pytest.approx(     # 8 boards at their stated 700 W
            700 * 8 / level["output_tokens_per_s"])
    best = max(document["levels"], key=lambda level: level["goodput_requests_per_s"])
    assert document["cost_finding"].startswith(
        "Simulated: 8 x NVIDIA H200 SXM 141GB serve DeepSeek-R1 within the targets (goodput) "
        f"up to {best['goodput_requests_per_s']:.3g} requests/s")
    assert f"${best['cost_per_million_good_tokens']:.2f} per million tokens" in \
        document["cost_finding"]
    from lib.records.store import Store                  # saved as the page saves it
    [entry] = [e for e in Store().list() if e["id"] == document["history_id"]]
    assert entry["provenance"] == "simulated" and entry["device"] == "h200 x 8"
    status, out, err = run_cli(["load", "--target", "simulate", "--hardware", "tpu-v5e",
                                "--model", "smollm2-135m-instruct", "--rates", "1"], capsys)
    assert status == 0 and "No price for this server: give --price-per-hour" in out


@pytest.mark.parametrize("argv, words", [
    (["--hardware", "h200", "--gpus", "8", "--model", "deepseek-r1"], "needs its levels"),
    (["--gpus", "8", "--model", "deepseek-r1", "--rates", "1"], "needs --model"),
    (["--hardware", "h200", "--gpus", "1", "--model", "deepseek-r1", "--rates", "1"],
     "leave no room for a KV cache"),
    (["--hardware", "h200", "--model", "smollm2-135m-instruct", "--rates", "1",
      "--price-per-hour", "20000"], "is not a price: give dollars per hour"),
])
def test_a_simulation_that_cannot_be_made_says_why(argv, words, capsys):
    status, out, err = run_cli(["load", "--target", "simulate", *argv], capsys)
    assert status == 2 and words in err and "Traceback" not in err


def test_simulation_flags_are_refused_for_a_real_server(capsys):
    status, out, err = run_cli(["load", "--target", "local", "--model", "smollm2-135m-instruct",
                                "--hardware", "h200"], capsys)
    assert status == 2 and "--hardware is for --target simulate" in err


def test_plan_names_the_cheapest_count_per_profile_and_why_others_miss(capsys, monkeypatch):
    from lib.serving import capacity

    monkeypatch.setattr(capacity, "REQUESTS", 100)         # a p90 still has 10 above it
    monkeypatch.setattr(capacity, "PRECISION", 0.3)
    status, out, err = run_cli(["plan", "--model", "deepseek-r1", "--rate", "8", "--ttft-p90",
                                "2", "--tpot-p90", "0.08", "--json"], capsys)
    assert status == 0, err
    answer = json.loads(out)
    options = {option["hardware"]: option for option in answer["options"]}
    h200 = options["h200"]
    assert h200["gpus"] == 8 and h200["usd_per_hour"] == pytest.approx(8 * 4.00)
    assert h200["ttft_p90_s"] <= 2 and h200["tpot_p90_s"] <= 0.08
    assert h200["why_not"] == "4 devices can't hold the weights and a KV cache"   # R1's 671 GB
    priced = [o for o in answer["options"] if o["usd_per_hour"] is not None]
    assert [o["usd_per_hour"] for o in priced] == sorted(o["usd_per_hour"] for o in priced)
    assert answer["findings"][0].startswith("Cheapest: ")
    for option in answer["options"]:          # each count stretches at least to the rate asked
        assert option["gpus"] is None or option["most_rate"] >= 8
    # Meeting the targets, the devices keep up: a million tokens at 8 requests/s of 256.
    assert h200["usd_per_million_tokens"] == pytest.approx(32.00 / (8 * 256 * 3600) * 1e6)
    assert h200["usd_per_million_at_most"] == pytest.approx(
        32.00 / (h200["most_rate"] * 256 * 3600) * 1e6)
    side_by_side = answer["findings"][-1]
    assert side_by_side.startswith("At 8 requests/s within p90 time to first token 2 s and "
                                   "p90 time per output token 80 ms, cheapest first: ")
    assert f"8 x NVIDIA H200 SXM 141GB at ${h200['usd_per_million_tokens']:.2f} per million " \
           f"output tokens (up to {h200['most_rate']:.3g} requests/s" in side_by_side
    met = [o["name"] for o in answer["options"] if o["gpus"] is not None]
    assert [side_by_side.index(f"x {name} at") for name in met] == \
        sorted(side_by_side.index(f"x {name} at") for name in met)      # the table's order
    status, out, err = run_cli(["plan", "--model", "deepseek-r1", "--rate", "0",
                                "--ttft-p90", "2", "--tpot-p90", "0.08"], capsys)
    assert status == 2 and "positive number" in err


def test_this_machine_s_server_is_simulated_with_its_own_sizing_and_measured_steps():
    from lib.serving.local import CB_PAGE_TOKENS
    from lib.serving.step_fit import FittedStep

    fitted = FittedStep(0.08, 0.0, 0.0017, 5e-6, 11)
    plan = _plan(mode="concurrency", levels=(1.0, 4.0), requests=4, prompt_tokens=64,
                 new_tokens=32)
    engine, target = simulate.engine_for_this("smollm2-135m-instruct", plan, fitted=fitted)
    assert engine.max_seqs == 4 and engine.max_batched_tokens == CB_PAGE_TOKENS
    assert engine.kv_tokens % CB_PAGE_TOKENS == 0 and engine.kv_tokens >= 4 * 96
    assert target["step_fit"]["fixed_s"] == 0.08 and "measured here" in target["server"]
    [first, *_] = simulate.simulate_level(engine, plan, 1.0)
    assert first.ttft_s == pytest.approx(0.08 + 0.0017 * 64 + 5e-6 * 0)


def test_the_step_fit_keeps_every_term_non_negative_and_exact_where_the_data_allow():
    from lib.serving.step_fit import FittedStep, non_negative_fit

    truth = FittedStep(0.06, 0.002, 0.0015, 1e-6, 0, prefill_fixed_s=0.03, batched_fixed_s=0.02)
    rows = [(1.0, 1.0, 0.0, 0.0, p, 0.0) for p in (32, 64, 128)] + \
        [(1.0, 0.0, float(b >= 2), b, 0.0, b * c) for b in (1, 2, 4) for c in (64, 192)]
    times = [truth.seconds(int(r[3]), r[5], int(r[4]), 0) for r in rows]
    assert non_negative_fit(rows, times) == pytest.approx([0.06, 0.03, 0.02, 0.002, 0.0015,
                                                           1e-6])
    # One sequence alone pays no batched cost; a mixed step pays the prompt's, not both.
    assert truth.seconds(1, 64, 0, 0) == pytest.approx(0.06 + 0.002 + 64e-6)
    assert truth.seconds(2, 64, 10, 0) == pytest.approx(0.06 + 0.03 + 0.004 + 0.015 + 64e-6)
    # A decode cost that falls with the batch would need a negative term: it is zero, and
    # the rest fit without it (an unconstrained fit clipped afterwards moved the intercept).
    falling = [t - 0.004 * r[3] if r[1] == 0 else t for r, t in zip(rows, times)]
    fitted = non_negative_fit(rows, falling)
    assert min(fitted) >= 0 and fitted[3] == 0.0


@pytest.mark.slow
def test_this_machine_s_steps_are_measured_on_the_model_in_seconds(default_model):
    from lib.serving import step_fit

    fitted = step_fit.measure("smollm2-135m-instruct", repeats=1)
    assert fitted.samples == 12 and 0.005 < fitted.fixed_s < 2 and fitted.per_prompt_s > 0
    assert fitted.seconds(1, 100, 0, 0) < fitted.seconds(1, 100, 128, 0)
