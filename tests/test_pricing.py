"""What a load's levels cost (lib.serving.pricing): live and simulated alike, from the price its
target keeps or its kind's default, exact on hand-made runs; the setups side by side; simulated
loads hatched in the charts and named in History."""

from __future__ import annotations

import os

import pytest

from fakes import load_result, run_cli
from lib.estimate import cost
from lib.serving import pricing, simulate, summary
from lib.serving.plan import LoadPlan


def test_a_local_server_is_priced_as_a_cloud_vm_with_this_machine_s_cores():
    load = load_result(levels=(1, 2))
    this = cost.price("this")
    assert this.usd_per_hour == pytest.approx(0.0408 * os.cpu_count())
    assert "this machine's" in this.source and "m7g.large" in this.source
    rows = summary.level_rows(load)
    for row, level in zip(rows, load.levels):
        tokens = level.summary["output_tokens_per_s"]
        assert row["provenance"] == "measured"
        assert row["cost_per_million_tokens"] == pytest.approx(
            this.usd_per_hour / (tokens * 3600) * 1e6)
        good = level.summary["goodput_requests_per_s"] * load.plan.new_tokens
        assert row["cost_per_million_good_tokens"] == pytest.approx(
            this.usd_per_hour / (good * 3600) * 1e6)
        assert row["joules_per_token"] is None              # no stated power for this CPU
    said = pricing.finding(load)
    assert said.startswith("Measured: this machine's server serves SmolLM2-135M-Instruct "
                           "within the targets (goodput) up to ")


def test_a_server_url_has_only_the_price_its_user_gave():
    target = {"kind": "url", "endpoint": {"base_url": "http://gpu-box:8000/v1",
                                          "model": "m", "api": "completions"},
              "server": "the server at http://gpu-box:8000/v1"}
    unpriced = load_result(levels=(1,), target=target)
    assert pricing.price_words(unpriced) is None and pricing.level_lines(unpriced) == []
    assert summary.level_rows(unpriced)[0]["cost_per_million_tokens"] is None
    given = load_result(levels=(1,), target={**target, "price": pricing.saved_price(
        cost.price("", 2.5))})
    [level] = pricing.levels(given)
    assert level["cost_per_million_tokens"] == pytest.approx(
        2.5 / (level["output_tokens_per_s"] * 3600) * 1e6)
    assert pricing.price_words(given) == "Cost at $2.50 an hour for the server (your price)."


def test_a_bad_price_for_a_live_server_is_refused_before_anything_starts(capsys):
    status, out, err = run_cli(["load", "--target", "local", "--model",
                                "smollm2-135m-instruct", "--price-per-hour", "20000"], capsys)
    assert status == 2 and "is not a price" in err and "Traceback" not in err


def test_setups_side_by_side_cheapest_per_good_token_first():
    plan = LoadPlan(levels=(1.0, 8.0), requests=40, warmup=4, prompt_tokens=512, new_tokens=64)
    h200 = simulate.simulate("deepseek-r1", "h200", 8, plan,
                             load_result().slo)
    mi300x = simulate.simulate("deepseek-r1", "mi300x", 8, plan, load_result().slo)
    said = pricing.load_comparison([h200, mi300x])
    assert said.startswith("Within time to first token ≤ 2.00 s and time per output token ≤ 200.0 ms")
    found = {load.target["hardware"]: pricing.best_level(load)[1] for load in (h200, mi300x)}
    first, second = sorted(found, key=lambda h: found[h]["cost_per_million_good_tokens"])
    names = {"h200": "8 x NVIDIA H200 SXM 141GB (simulated)",
             "mi300x": "8 x AMD Instinct MI300X (192GB) (simulated)"}
    assert said.index(names[first]) < said.index(names[second])
    assert f"at ${found['h200']['cost_per_million_good_tokens']:.2f} per million tokens" in said
    assert pricing.load_comparison([h200]) is None            # one setup compares with nothing


def test_simulated_loads_are_hatched_in_every_chart_and_measured_ones_are_not():
    from lib.views import serving_charts

    plan = LoadPlan(levels=(1.0, 4.0), requests=20, warmup=2, prompt_tokens=256, new_tokens=32)
    simulated = simulate.simulate("deepseek-r1", "h200", 8, plan)
    measured = load_result(levels=(1, 2))
    for draw in (serving_charts.latency_figure, serving_charts.throughput_figure,
                 serving_charts.tradeoff_figure,
                 lambda load: serving_charts.timeline_figure(load, load.levels[0])):
        figure = draw(simulated)
        assert figure.layout.title.text.startswith("SIMULATED, not measured")
        assert any(getattr(t, "fillpattern", None) and t.fillpattern.shape == "/"
                   for t in figure.data if t.type == "scatter") or \
            all(t.marker.pattern.shape == "/" for t in figure.data if t.type == "bar")
        plain = draw(measured)
        assert "SIMULATED" not in (plain.layout.title.text or "")
        assert not any(t.type == "scatter" and t.fill for t in plain.data)
    rows = serving_charts.display_rows(simulated)
    assert rows[0]["$ per million tokens"].startswith("$") and "J per token (at most)" in rows[0]


def test_history_names_a_simulated_load_and_its_hardware():
    from lib.records import wording
    from lib.records.store import Store

    plan = LoadPlan(levels=(1.0, 4.0), requests=20, warmup=2, prompt_tokens=256, new_tokens=32)
    store = Store()
    simulated_id = store.save_load(summary.to_dict(simulate.simulate("deepseek-r1", "h200", 8,
                                                                     plan)))
    measured_id = store.save_load(summary.to_dict(load_result(levels=(1,))))
    listed = {e["id"]: e for e in store.list()}
    assert listed[simulated_id]["provenance"] == "simulated"
    assert listed[simulated_id]["device"] == "h200 x 8"
    assert wording.entry_label(listed[simulated_id]) == \
        "simulated load sweep: 1, 4 requests/s — deepseek-r1"
    assert listed[measured_id]["provenance"] == "measured"
    assert listed[measured_id]["device"] == "server"
    assert wording.entry_label(listed[measured_id]).startswith("load sweep: 1 concurrent")


@pytest.mark.parametrize("saved", [{"usd_per_device_hour": -3}, {"usd_per_device_hour": 1e308},
                                   {"usd_per_device_hour": float("nan")},
                                   {"usd_per_device_hour": True},
                                   {"usd_per_device_hour": "4.00"}, {"usd_per_device_hour": None}])
def test_a_price_edited_into_a_saved_load_prices_nothing(saved):
    target = {"kind": "local", "endpoint": {"base_url": "http://127.0.0.1:1/v1", "model": "m",
                                            "api": "completions"},
              "server": "x", "model_id": "smollm2-135m-instruct",
              "price": {**saved, "source": "[click](javascript:alert(1))\n# big"}}
    load = load_result(levels=(1,), target=target)
    assert pricing.price_of(target) is None and pricing.level_lines(load) == []
    assert summary.level_rows(load)[0]["cost_per_million_tokens"] is None


def test_a_saved_price_s_source_is_one_line_of_text():
    target = {"kind": "url", "price": {"usd_per_device_hour": 2.0,
                                       "source": "line one\n# heading" + "x" * 500}}
    price = pricing.price_of(target)
    assert price.usd_per_hour == 2.0 and "\n" not in price.source and len(price.source) <= 300
