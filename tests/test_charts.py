"""Charts from a fake sweep's tidy table: the numbers drawn are the table's, in ms."""

import pandas as pd
import pytest

from fakes import FakePoints, fake_runner
from lib import charts, stats, sweep, table
from lib.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)


def frame_for(factor_name, values):
    factor = sweep.get_factor(factor_name)
    result = sweep.run_sweep(BASE, [(factor, values)], FakePoints())
    return pd.DataFrame(table.rows(result)), factor


def test_latency_figure_draws_medians_and_bands_in_ms():
    frame, factor = frame_for("batch", [1, 2, 4])
    figure = charts.sweep_latency_figure(frame, factor)
    medians = {t.name: list(t.y) for t in figure.data if t.name and "(median)" in t.name}
    assert medians["TTFT (median)"] == pytest.approx([100, 200, 400])
    assert medians["TPOT (median)"] == pytest.approx([30, 40, 60])
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.tickvals) == [1, 2, 4]
    hover = next(t for t in figure.data if t.name == "TTFT (median)").customdata
    assert [row[2] for row in hover] == [2, 2, 2]                   # n per point


def test_a_categorical_factor_gets_a_category_axis():
    frame, factor = frame_for("dtype", ["float32", "bfloat16"])
    figure = charts.sweep_memory_figure(frame, factor)
    assert figure.layout.xaxis.type == "category"
    assert list(figure.data[0].x) == ["float32", "bfloat16"]


def test_heatmap_and_comparisons():
    batch, output = sweep.get_factor("batch"), sweep.get_factor("output")
    result = sweep.run_sweep(BASE, [(batch, [1, 2]), (output, [2, 3])], FakePoints())
    heatmap = charts.sweep_heatmap_figure(pd.DataFrame(table.rows(result)), batch, output,
                                          "tpot_s")
    assert heatmap.data[0].z.ravel().tolist() == pytest.approx([30, 40, 30, 40])   # rows: output
    assert heatmap.data[0].colorbar.title.text == "ms"
    throughput = charts.sweep_heatmap_figure(pd.DataFrame(table.rows(result)), batch, output,
                                             "decode_tokens_per_s")
    assert throughput.data[0].colorbar.title.text == "tokens/s"
    assert throughput.layout.title.text.startswith("Decode throughput, tokens/s for each")
    runs = [(f"b{b}", stats.summarize(fake_runner(BASE.replace(batch_size=b)))) for b in (1, 2)]
    bars = charts.compare_runs_figure(runs)
    assert list(next(t for t in bars.data if t.name == "TTFT").y) == pytest.approx([100, 200])
    frame, factor = frame_for("batch", [1, 2])
    overlay = charts.compare_sweeps_figure([("a", frame), ("b", frame)], factor)
    assert [y for t in overlay.data for y in t.y] == pytest.approx([30, 40, 30, 40])
