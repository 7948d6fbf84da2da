"""Charts from a fake sweep's tidy table: the numbers drawn are the table's, in display units;
categories are bars, spreads follow the percentile gate, noisy points are marked."""

import json

import pandas as pd
import pytest

from fakes import FakePoints, fake_runner, many_repetitions
from lib.views import chart_marks, compare_charts, run_charts, sweep_charts
from lib.core import stats
from lib.measure import sweep
from lib.measure.factors import get_factor
from lib.records import table
from lib.core.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)
LATENCY_NAMES = ("TTFT (median)", "TPOT (median)", "end-to-end (median)")


def frame_for(factor_name, values):
    factor = get_factor(factor_name)
    result = sweep.run_sweep(BASE, [(factor, values)], FakePoints())
    return pd.DataFrame(table.rows(result)), factor


def with_percentiles(frame, rows, metric, low, high, n=12):
    """Pretend `rows` had n samples with this p10/p90 (seconds), as the percentile gate allows."""
    frame = frame.copy()
    for column in (f"{metric}_p10", f"{metric}_p90"):
        frame[column] = frame[column].astype(object)
    for index in rows:
        frame.at[index, f"{metric}_p10"], frame.at[index, f"{metric}_p90"] = low, high
        frame.at[index, f"{metric}_n"] = n
    return frame


def make_noisy(frame, index, other_cpu):
    frame = frame.copy()
    frame.at[index, "noisy"], frame.at[index, "other_cpu_percent"] = True, other_cpu
    return frame


def trace(figure, name):
    return next(t for t in figure.data if t.name == name)


def test_latency_figure_draws_medians_and_their_range_in_ms():
    frame, factor = frame_for("batch", [1, 2, 4])
    figure = sweep_charts.sweep_latency_figure(frame, factor)
    medians = {name: list(trace(figure, name).y) for name in LATENCY_NAMES}
    assert medians["TTFT (median)"] == pytest.approx([100, 200, 400])
    assert medians["TPOT (median)"] == pytest.approx([30, 40, 60])
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.tickvals) == [1, 2, 4]
    assert all(t.mode != "markers" or t.name == chart_marks.NOISY_RING for t in figure.data)
    # 2 repetitions each: below the gate, so the spread is the range, and it says so
    assert "lowest to highest sample (each point has fewer than 10" in \
        figure.layout.title.subtitle.text
    assert trace(figure, "TTFT (median)").customdata[0] == \
        "100.0 ms (range of 2 samples: 100.0 ms – 100.0 ms)"


def test_the_band_is_p10_p90_where_the_point_has_ten_samples_and_the_range_elsewhere():
    frame, factor = frame_for("batch", [1, 2])
    frame["ttft_s_min"], frame["ttft_s_max"] = [0.05, 0.15], [0.2, 0.3]
    mixed = with_percentiles(frame, [0], "ttft_s", 0.09, 0.11)    # only batch 1 has 12 samples
    figure = sweep_charts.sweep_latency_figure(mixed, factor)
    upper, lower = [t for t in figure.data if t.legendgroup == "TTFT (median)"][:2]
    assert list(upper.y) == pytest.approx([110, 300]) and list(lower.y) == pytest.approx([90, 150])
    assert trace(figure, "TTFT (median)").customdata[0] == \
        "100.0 ms (p10–p90 90.0 ms – 110.0 ms, n=12)"
    assert trace(figure, "TTFT (median)").customdata[1].startswith("200.0 ms (range of 2 samples")
    assert "p10–p90 where a point has 10 samples or more, else" in \
        figure.layout.title.subtitle.text
    everywhere = mixed
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        everywhere = with_percentiles(everywhere, [0, 1], metric, 0.01, 0.5)
    subtitle = sweep_charts.sweep_latency_figure(everywhere, factor).layout.title.subtitle.text
    assert subtitle == "Medians; shaded band: p10–p90, the middle 80% of each point's samples."


def test_a_categorical_factor_is_bars_with_error_bars_never_a_line():
    frame, factor = frame_for("dtype", ["float32", "bfloat16"])
    frame["tpot_s_min"], frame["tpot_s_max"] = [0.02, 0.025], [0.04, 0.05]
    for figure in (sweep_charts.sweep_latency_figure(frame, factor),
                   sweep_charts.sweep_throughput_figure(frame, factor),
                   sweep_charts.sweep_memory_figure(frame, factor)):
        assert figure.layout.xaxis.type == "category"
        assert {t.type for t in figure.data} == {"bar"}
        assert not any("lines" in (getattr(t, "mode", None) or "") for t in figure.data)
    latency = sweep_charts.sweep_latency_figure(frame, factor)
    tpot = trace(latency, "TPOT (median)")
    assert list(tpot.x) == ["float32", "bfloat16"]
    assert list(tpot.error_y.array) == pytest.approx([10, 20])        # max - median, in ms
    assert list(tpot.error_y.arrayminus) == pytest.approx([10, 5])    # median - min
    assert latency.layout.barmode == "group"
    assert latency.layout.title.subtitle.text.startswith("Medians; error bars: lowest to highest")


def test_noisy_points_are_ringed_on_lines_with_the_reason_on_hover():
    frame, factor = frame_for("batch", [1, 2, 4])
    figure = sweep_charts.sweep_latency_figure(make_noisy(frame, 1, 41.6), factor)
    rings = [t for t in figure.data if t.legendgroup == "noisy"]
    assert len(rings) == 3 and [list(t.x) for t in rings] == [[2]] * 3
    assert list(rings[1].y) == pytest.approx([40])                  # on the TPOT median
    assert [t.showlegend for t in rings] == [True, False, False]
    assert rings[0].name == chart_marks.NOISY_RING
    hover = trace(figure, "TPOT (median)").customdata
    assert "⚠ noisy: other programs used 42% of the CPU" in hover[1]
    assert "noisy" not in hover[0] + hover[2]
    clean = sweep_charts.sweep_latency_figure(frame, factor)
    assert not any(t.legendgroup == "noisy" for t in clean.data)
    for build in (sweep_charts.sweep_throughput_figure, sweep_charts.sweep_memory_figure):
        noisy = build(make_noisy(frame, 1, 41.6), factor)
        assert any(t.name == chart_marks.NOISY_RING for t in noisy.data)
    tradeoff = sweep_charts.sweep_tradeoff_figure(make_noisy(frame, 1, 41.6))
    assert list(trace(tradeoff, chart_marks.NOISY_RING).x) == pytest.approx([40])


def test_noisy_bars_are_hatched_and_the_legend_says_so():
    frame, factor = frame_for("dtype", ["float32", "bfloat16"])
    figure = sweep_charts.sweep_latency_figure(make_noisy(frame, 0, None), factor)
    assert list(trace(figure, "TTFT (median)").marker.pattern.shape) == ["x", ""]
    assert any(t.name == chart_marks.NOISY_HATCH for t in figure.data)
    assert "its repetitions disagreed" in trace(figure, "TTFT (median)").customdata[0]
    assert not any(t.name == chart_marks.NOISY_HATCH
                   for t in sweep_charts.sweep_latency_figure(frame, factor).data)


def test_noisy_bars_keep_their_metric_colour_and_floors_sit_over_their_own_bar():
    frame, factor = frame_for("dtype", ["float32", "bfloat16"])
    frame["floor_ttft_s"], frame["floor_tpot_s"] = frame["ttft_s"] / 2, frame["tpot_s"] / 2
    figure = sweep_charts.sweep_latency_figure(make_noisy(frame, 0, None), factor)
    bars = [t for t in figure.data if t.type == "bar" and t.x != (None,)]
    for bar, (metric, _, color) in zip(bars, chart_marks.LATENCY_SERIES):
        assert bar.marker.color == color and bar.marker.pattern.fillmode == "overlay"
        assert list(bar.marker.pattern.fgcolor)[0] == chart_marks.NOISY_HATCH_COLOR
        assert bar.offsetgroup == metric and not bar.showlegend
    legend = [t for t in figure.data if t.type == "bar" and t.x == (None,)]
    assert [(t.name, t.marker.color, t.marker.pattern.shape) for t in legend] == [
        (name, color, None) for _, name, color in
        ((m, f"{n} (median)", c) for m, n, c in chart_marks.LATENCY_SERIES)]
    floor = trace(figure, "TTFT floor (physics limit, an estimate)")
    assert floor.offsetgroup == "ttft_s" and figure.layout.scattermode == "group"
    assert {t.offsetgroup for t in figure.data} == {"ttft_s", "tpot_s", "e2e_s"}
    lines, _ = frame_for("batch", [1, 2])
    assert sweep_charts.sweep_latency_figure(lines, get_factor("batch")).layout.scattermode \
        == "overlay"


def test_throughput_is_two_charts_one_quantity_per_axis():
    frame, factor = frame_for("batch", [1, 2, 4])
    figure = sweep_charts.sweep_throughput_figure(frame, factor)
    tokens, requests = trace(figure, "decode tokens/s"), trace(figure, "requests/s")
    assert (tokens.yaxis, requests.yaxis) == ("y", "y2")
    assert figure.layout.yaxis2.overlaying is None and figure.layout.yaxis.overlaying is None
    top, bottom = figure.layout.yaxis.domain, figure.layout.yaxis2.domain
    assert bottom[1] < top[0]                                       # stacked, not on top
    assert (figure.layout.yaxis.title.text, figure.layout.yaxis2.title.text) == \
        ("tokens/s", "requests/s")
    assert list(requests.y) == pytest.approx([1 / 0.22, 2 / 0.36, 4 / 0.64])
    assert figure.layout.xaxis2.title.text == "batch size (log scale: each step doubles)"


@pytest.mark.parametrize("name, values, note", [
    ("batch", [1, 2, 4, 8], "batch size (log scale: each step doubles)"),
    ("prompt_tokens", [100, 1000], "prompt length (tokens) (log scale: equal distances are equal ratios)"),
    ("batch", [1, 2, 3], "batch size (log scale: equal distances are equal ratios)"),
    ("threads", [1, 2], "CPU threads"),
    ("dtype", ["float32", "bfloat16"], "number format"),
])
def test_the_axis_says_doubling_only_when_the_values_double(name, values, note):
    assert chart_marks.axis_note(get_factor(name), values) == note


def test_the_log_note_reaches_the_chart():
    frame, factor = frame_for("prompt_tokens", [100, 1000])
    figure = sweep_charts.sweep_latency_figure(frame, factor)
    assert figure.layout.xaxis.title.text.endswith("(log scale: equal distances are equal ratios)")


def test_memory_is_drawn_in_the_decimal_megabytes_the_table_writes():
    frame, factor = frame_for("batch", [1, 2])
    figure = sweep_charts.sweep_memory_figure(frame, factor)
    peak = frame["peak_memory_bytes"].iloc[0]
    assert list(trace(figure, "peak memory").y) == pytest.approx([peak / 1e6] * 2)
    assert "MB" in figure.layout.yaxis.title.text
    assert trace(figure, "peak memory").customdata[0].startswith(
        table.format_value("peak_memory_bytes", peak))


def test_small_rates_keep_their_digits_in_hovers_and_cells():
    frame, factor = frame_for("batch", [1, 2])
    frame["requests_per_s"] = [0.049, 0.0049]
    throughput = sweep_charts.sweep_throughput_figure(frame, factor)
    assert [h.split(" (")[0] for h in trace(throughput, "requests/s").customdata] == \
        ["0.049/s", "0.0049/s"]
    batch, output = get_factor("batch"), get_factor("output")
    result = sweep.run_sweep(BASE, [(batch, [1, 2]), (output, [2, 3])], FakePoints())
    grid = pd.DataFrame(table.rows(result))
    grid["requests_per_s"] = 0.049
    heatmap = sweep_charts.sweep_heatmap_figure(make_noisy(grid, 0, 60.0), batch, output,
                                          "requests_per_s")
    assert list(heatmap.data[0].text[0]) == ["0.049 ⚠", "0.049"]
    assert "⚠ = noisy point" in heatmap.layout.annotations[0].text    # a key under the chart
    assert "⚠" not in heatmap.layout.title.text                     # not a title cut off


def test_heatmap_and_comparisons():
    batch, output = get_factor("batch"), get_factor("output")
    result = sweep.run_sweep(BASE, [(batch, [1, 2]), (output, [2, 3])], FakePoints())
    heatmap = sweep_charts.sweep_heatmap_figure(pd.DataFrame(table.rows(result)), batch, output,
                                          "tpot_s")
    assert [z for row in heatmap.data[0].z for z in row] == pytest.approx([30, 40, 30, 40])
    assert heatmap.data[0].colorbar.title.text == "ms"
    throughput = sweep_charts.sweep_heatmap_figure(pd.DataFrame(table.rows(result)), batch, output,
                                             "decode_tokens_per_s")
    assert throughput.data[0].colorbar.title.text == "tokens/s"
    assert throughput.layout.title.text.startswith("Decode throughput, tokens/s for each")
    runs = [(f"b{b}", stats.summarize(fake_runner(BASE.replace(batch_size=b)))) for b in (1, 2)]
    bars = compare_charts.compare_runs_figure(runs)
    assert list(trace(bars, "TTFT").y) == pytest.approx([100, 200])
    assert list(trace(bars, "TTFT").error_y.array) == pytest.approx([0, 0])
    assert trace(bars, "TTFT").customdata[0] == \
        "100.0 ms (range of 2 samples: 100.0 ms – 100.0 ms)"
    assert "error bars: lowest to highest sample" in bars.layout.title.subtitle.text
    frame, factor = frame_for("batch", [1, 2])
    overlay = compare_charts.compare_sweeps_figure([("a", frame), ("b", frame)], factor)
    lines = [t for t in overlay.data if t.name in ("a", "b")]
    assert [y for t in lines for y in t.y] == pytest.approx([30, 40, 30, 40])
    assert all(t.mode == "lines+markers" for t in lines)
    dtype_frame, dtype = frame_for("dtype", ["float32", "bfloat16"])
    categories = compare_charts.compare_sweeps_figure([("a", dtype_frame), ("b", dtype_frame)],
                                                      dtype)
    assert {t.type for t in categories.data} == {"bar"}


# --- many repetitions, and text from users -------------------------------------------------------

def test_the_token_chart_has_a_few_traces_however_many_repetitions():
    few = run_charts.token_latency_figure(many_repetitions(run_charts.REPETITION_LINES))
    assert len(few.data) == run_charts.REPETITION_LINES + 2      # one line each, median, TTFT
    many = run_charts.token_latency_figure(many_repetitions(20_000))
    assert len(many.data) == 4                               # band (two edges), median, TTFT
    band = trace(many, "middle 80% of 20,000 repetitions (p10–p90 of each token)")
    upper = many.data[0]
    # Gaps of 20-29 ms, each as often: p10 is 20.9 ms, p90 28.1 ms at every token.
    assert list(band.y) == pytest.approx([20.9] * 4) and list(upper.y) == pytest.approx([28.1] * 4)
    assert list(band.x) == [2, 3, 4, 5] and band.fill == "tonexty"
    assert trace(many, "median over 20000 repetitions").y[0] == pytest.approx(24.5)


def test_the_request_chart_is_one_trace_and_a_line_beyond_its_bars():
    bars = run_charts.request_latency_figure(many_repetitions(run_charts.REQUEST_BARS,
                                                              kind="encoder"))
    assert [t.type for t in bars.data] == ["bar"]
    line = run_charts.request_latency_figure(many_repetitions(20_000, kind="encoder"))
    assert [(t.type, t.mode) for t in line.data] == [("scatter", "lines")]
    assert len(line.data[0].y) == 20_000


def test_an_estimate_is_drawn_as_one_modelled_line_named_estimate():
    import dataclasses

    from lib.core.results import ESTIMATED, Provenance
    estimate = dataclasses.replace(many_repetitions(1, tokens=5),
                                   provenance=Provenance("estimator", ESTIMATED))
    figure = run_charts.token_latency_figure(estimate)
    assert [t.name for t in figure.data] == ["estimate",
                                            "first token (TTFT, includes prefill): estimate"]
    assert list(figure.data[0].x) == [2, 3, 4, 5] and figure.data[0].line.dash == "dot"
    assert figure.layout.title.text.startswith("ESTIMATE, not measured")
    encoder = dataclasses.replace(many_repetitions(1, kind="encoder"),
                                  provenance=Provenance("estimator", ESTIMATED))
    request = run_charts.request_latency_figure(encoder)
    assert [t.name for t in request.data] == ["estimate"] and not request.layout.shapes
    assert request.layout.title.text.startswith("ESTIMATE, not measured")


HOSTILE_MODEL = '<a href="https://evil.example/login">Session expired</a><img src=x>'


def spec_text(figure) -> str:
    """The figure as the browser gets it (to_json writes / as \\u002f: read it back)."""
    return json.dumps(json.loads(figure.to_json()), ensure_ascii=False)


def test_text_from_users_reaches_plotly_escaped():
    frame, factor = frame_for("model", ["gpt2", "smollm2-360m"])
    frame[factor.column] = [HOSTILE_MODEL, "gpt2"]
    escaped = "&lt;a href=&quot;https://evil.example/login&quot;&gt;Session expired&lt;/a&gt;" \
              "&lt;img src=x&gt;"
    for figure in (sweep_charts.sweep_latency_figure(frame, factor),
                   sweep_charts.sweep_memory_figure(frame, factor),
                   compare_charts.compare_sweeps_figure([(HOSTILE_MODEL, frame)], factor),
                   compare_charts.compare_sweeps_metric_figure([(HOSTILE_MODEL, frame)], factor,
                                                       "tpot_s")):
        spec = spec_text(figure)
        assert "<a href" not in spec and "<img" not in spec and escaped in spec
        assert all(HOSTILE_MODEL not in (t.hovertemplate or "") for t in figure.data)
    runs = [(HOSTILE_MODEL, stats.summarize(fake_runner(BASE)))]
    for figure in (compare_charts.compare_runs_figure(runs),
                   compare_charts.compare_overview_figure(runs)):
        assert "<a href" not in spec_text(figure) and escaped in spec_text(figure)
    batch, model = get_factor("batch"), get_factor("model")
    result = sweep.run_sweep(BASE, [(batch, [1]), (model, ["gpt2"])], FakePoints())
    grid = pd.DataFrame(table.rows(result))
    grid[model.column] = HOSTILE_MODEL
    heatmap = sweep_charts.sweep_heatmap_figure(grid, batch, model, "tpot_s")
    assert list(heatmap.data[0].y) == [escaped]


# --- estimated points (a hardware profile): unmistakable -----------------------------------------

@pytest.fixture
def devices_frame(fake_backend):
    from fakes import sweep_through_runner
    factor = get_factor("device")
    result = sweep_through_runner(BASE, [(factor, ["cpu", "h200"])])
    return pd.DataFrame(table.rows(result)), factor


def test_estimated_bars_are_lighter_hatched_and_say_estimate(devices_frame):
    frame, factor = devices_frame
    figure = sweep_charts.sweep_latency_figure(frame, factor)
    tpot = trace(figure, "TPOT (median)")
    assert list(tpot.x) == ["cpu", "NVIDIA H200 SXM 141GB (estimate)"]
    assert list(tpot.marker.opacity) == [1.0, chart_marks.ESTIMATE_OPACITY]
    assert list(tpot.marker.pattern.shape) == ["", "/"]
    assert tpot.customdata[1].endswith("(estimate, not measured: no spread)")
    assert tpot.error_y.array[1] is None                  # no spread drawn for an estimate
    assert any(t.name == chart_marks.ESTIMATE_HATCH for t in figure.data)
    assert figure.layout.title.subtitle.text.endswith(
        "; estimated points (lighter, hatched or open diamonds): no spread, not measured.")
    floor = trace(figure, "TPOT floor (physics limit, an estimate)")
    assert list(floor.x) == list(tpot.x)                  # each point's own hardware's floor


def test_a_chart_of_estimates_only_says_no_spread(fake_backend):
    from fakes import sweep_through_runner
    batch = get_factor("batch")
    result = sweep_through_runner(BASE.replace(hardware="h200"), [(batch, [1, 2, 4])])
    figure = sweep_charts.sweep_latency_figure(pd.DataFrame(table.rows(result)), batch)
    assert figure.layout.title.subtitle.text == (
        "Estimates; estimate: no spread (each point is computed from a model of its hardware, "
        "not measured).")
    line = trace(figure, "TPOT (estimate)")
    assert line.line.dash == "dot" and set(line.marker.symbol) == {"diamond-open"}
    assert not any(t.fill == "tonexty" for t in figure.data)      # no band to shade
    tradeoff = sweep_charts.sweep_tradeoff_figure(pd.DataFrame(table.rows(result)))
    assert list(tradeoff.data[0].text)[0] == "batch 1 (estimate)"


def test_heatmap_cells_of_estimates_say_est_and_refused_ones_say_why(fake_backend):
    from fakes import sweep_through_runner
    device, batch = get_factor("device"), get_factor("batch")
    result = sweep_through_runner(BASE, [(device, ["cpu", "h200"]), (batch, [1, 2])])
    frame = pd.DataFrame(table.rows(result))
    frame.loc[3, ["status", "skipped_reason"]] = ["skipped", "Too big for one H200."]
    heatmap = sweep_charts.sweep_heatmap_figure(frame, device, batch, "tpot_s")
    assert list(heatmap.data[0].x) == ["cpu", "NVIDIA H200 SXM 141GB (estimate)"]
    cells = [list(row) for row in heatmap.data[0].text]
    assert cells[0][0] == "50.0" and cells[0][1].endswith(" est.") and cells[1][1] == "skipped"
    assert heatmap.data[0].customdata[1][1] == "skipped: Too big for one H200."
    assert "est. = estimated from a model of the hardware, not measured" in \
        heatmap.layout.annotations[0].text
