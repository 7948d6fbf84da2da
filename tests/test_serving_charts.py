"""The load run's figures (lib.views.serving_charts): exact traces from hand-made records."""

import dataclasses

import pytest

from fakes import load_result
from lib.views import serving_charts


def names(figure):
    return [trace.name for trace in figure.data]


def test_percentile_traces_only_where_the_levels_have_the_samples():
    enough = load_result(measured=12)             # p90 needs 10 samples, p99 needs 100
    few = load_result(levels=(16,), measured=5, ttfts={16: 6.0})
    mixed = dataclasses.replace(enough, levels=enough.levels + few.levels)
    figure = serving_charts.latency_figure(mixed)
    assert names(figure) == ["TTFT median (p50)", "TTFT p90: 9 in 10 were faster",
                             "TPOT median (p50)", "TPOT p90: 9 in 10 were faster",
                             "E2E median (p50)", "E2E p90: 9 in 10 were faster"]
    ttft_p90 = figure.data[1]
    assert list(ttft_p90.x) == [1, 2, 4, 8, 16]
    assert ttft_p90.y[-1] is None                  # 5 samples: no p90 drawn there
    assert ttft_p90.y[0] == pytest.approx(enough.levels[0].summary["ttft_s"]["p90"])
    assert figure.data[2].y[0] == pytest.approx(50.0)        # TPOT in ms
    assert "(n = 12)" in ttft_p90.customdata[0]
    only_medians = serving_charts.latency_figure(load_result(measured=5))
    assert names(only_medians) == ["TTFT median (p50)", "TPOT median (p50)", "E2E median (p50)"]


def test_a_wide_latency_range_gets_a_log_axis_a_narrow_one_does_not():
    figure = serving_charts.latency_figure(load_result())   # TTFT 0.2 s → 3.3 s: 16x
    assert figure.layout.yaxis.type == "log"
    assert figure.layout.yaxis2.type != "log"                # TPOT flat at 50 ms
    assert figure.layout.xaxis.type == "log"                 # levels 1 to 8
    assert list(figure.layout.xaxis.tickvals) == [1, 2, 4, 8]


def test_the_knee_is_marked_at_the_first_saturated_level():
    loaded = load_result()
    assert loaded.knee.saturated == 4.0 and loaded.knee.last_ok == 2.0
    for figure in (serving_charts.latency_figure(loaded),
                   serving_charts.throughput_figure(loaded)):
        line = next(shape for shape in figure.layout.shapes if shape.name == "knee")
        assert line.x0 == line.x1 == 4.0
        assert line.label.text == (f"knee: waits grew {loaded.knee.growth:.1f}x by 4 "
                                   "concurrent requests")
        band = next(shape for shape in figure.layout.shapes if shape.name == "saturated")
        assert (band.x0, band.x1) == (4.0, 8.0)


def test_no_knee_no_marker():
    flat = load_result(ttfts={1: 0.2, 2: 0.2, 4: 0.21, 8: 0.22})
    assert flat.knee is None
    assert not serving_charts.latency_figure(flat).layout.shapes


def test_throughput_draws_the_offered_rate_only_for_an_open_loop_and_goodput_with_targets():
    closed = serving_charts.throughput_figure(load_result())
    assert names(closed) == ["achieved: requests finished per second",
                             "goodput: finished within the targets", "output tokens per second"]
    opened = serving_charts.throughput_figure(load_result(levels=(0.5, 1, 2), mode="rate",
                                                          slo=False))
    assert names(opened) == ["offered: what was asked for",
                             "achieved: requests finished per second", "output tokens per second"]
    assert list(opened.data[0].x) == list(opened.data[0].y) == [0.5, 1, 2]


def test_the_tradeoff_has_one_labelled_point_per_level():
    loaded = load_result()
    trace = serving_charts.tradeoff_figure(loaded).data[0]
    assert list(trace.text) == ["1 concurrent", "2 concurrent", "4 concurrent", "8 concurrent"]
    assert list(trace.x) == [level.summary["output_tokens_per_s"] for level in loaded.levels]
    assert trace.y[0] == pytest.approx(20.0)                 # 1 / 50 ms


def test_the_timeline_splits_each_request_at_its_first_token():
    loaded = load_result()
    level = loaded.levels[3]                                  # 8 concurrent, one failed
    figure = serving_charts.timeline_figure(loaded, level)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"waiting for the first token", "streaming the answer",
                           "warm-up (not counted): waiting",
                           "warm-up (not counted): streaming", "failed"}
    start = min(r.sent_s for r in level.records)
    wait, stream = traces["waiting for the first token"], traces["streaming the answer"]
    measured = [r for r in level.records if r.phase == "measured" and r.status == "ok"]
    assert list(wait.y) == list(stream.y) == [r.index for r in measured]
    for i, record in enumerate(measured):
        assert wait.base[i] == pytest.approx(record.sent_s - start)
        assert wait.x[i] == pytest.approx(record.ttft_s)
        assert stream.base[i] == pytest.approx(record.first_token_s - start)
        assert wait.base[i] + wait.x[i] == pytest.approx(stream.base[i])
        assert stream.x[i] == pytest.approx(record.end_s - record.first_token_s)
    assert list(traces["failed"].y) == [14]
    assert "HTTP 503" in traces["failed"].customdata[0]
    assert list(traces["warm-up (not counted): waiting"].y) == [0, 1]   # cool-down: not drawn
    assert "not drawn: 1 cool-down request," in figure.layout.title.text
    assert figure.layout.barmode == "overlay"
    assert "#0 warm-up" in figure.layout.yaxis.ticktext


def test_user_text_is_escaped_for_plotly():
    loaded = load_result(target={"kind": "url", "model_id": None, "endpoint": {
        "base_url": "http://h/v1", "model": "<img src=x onerror=alert(1)>"}})
    title = serving_charts.latency_figure(loaded).layout.title.text
    assert "<img" not in title and "&lt;img" in title


def test_the_table_says_which_percentiles_need_more_samples():
    rows = serving_charts.display_rows(load_result())
    assert [row["load"] for row in rows] == ["1 concurrent request", "2 concurrent requests",
                                             "4 concurrent requests", "8 concurrent requests"]
    assert rows[0]["TTFT p99"] == "-"
    assert rows[0]["TPOT median"] == "50.0 ms"
    assert rows[3]["failed"] == 1 and rows[3]["met the targets"] == "0%"
