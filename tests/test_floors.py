"""lib.estimate.floors and its uses: a run's floor from the ceilings recorded with it, the sweep table's
floor columns, the dashed lines on the charts, the run JSON's `floor` object, and the runner
recording the ceilings. On the declared machine of `fakes.DECLARED_CEILINGS`: exact numbers."""

import pandas as pd
import pytest

from fakes import DECLARED_CEILINGS, FakePoints, fake_runner, with_declared_ceilings
from lib.views import run_charts, sweep_charts
from lib.estimate import floors, roofline
from lib.records import export, table
from lib.measure import runner, sweep
from lib.measure.factors import get_factor
from lib.core import stats
from lib.views.floor_charts import floor_name
from lib.models.shapes import shapes
from lib.core.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)


def test_a_runs_floor_is_the_roofline_of_its_recorded_ceilings():
    measurement = with_declared_ceilings(fake_runner(BASE.replace(batch_size=2)))
    costs = roofline.costs(shapes(BASE.model_id), measurement.spec)
    expected = roofline.floor(costs, 10e9, 100e9)
    limits = floors.metric_floors(measurement)
    assert limits["ttft_s"] == expected.ttft_s and limits["tpot_s"] == expected.tpot_s
    assert limits["e2e_s"] == pytest.approx(expected.ttft_s + 4 * expected.tpot_s)
    assert limits["decode_tokens_per_s"] == pytest.approx(2 / expected.tpot_s)
    assert limits["requests_per_s"] == pytest.approx(2 / limits["e2e_s"])
    assert limits["total_tokens_per_s"] == pytest.approx(2 * 21 / limits["e2e_s"])
    judged = floors.judged(measurement, 0.4, 0.05)
    assert judged["tpot_s"] == expected.tpot_s
    assert judged["decode_bound"] in {"memory", "compute", "overhead"}
    assert judged["decode_bandwidth_utilisation"] == pytest.approx(expected.decode_memory_s / 0.05)


def test_bfloat16_uses_its_own_peak():
    measurement = with_declared_ceilings(fake_runner(BASE.replace(dtype="bfloat16")))
    judged = floors.judged(measurement, 0.4, 0.05)
    assert judged["matmul_flops_per_s"] == DECLARED_CEILINGS.peak_flops("bfloat16") == 200e9


def test_a_llama_cpp_runs_floor_reads_its_format_and_float16_cache():
    # A measured llama.cpp Q4_K_M run: its decode floor is the bytes it reads (4.9-bit weights,
    # a float16 cache) over the recorded bandwidth; its arithmetic runs at the float32 figure.
    spec = BASE.replace(stack="llama.cpp", dtype="q4_k_m")
    measurement = with_declared_ceilings(fake_runner(spec))
    float32 = roofline.costs(shapes(BASE.model_id), BASE).decode
    weights = float32.weight_bytes * 4.9 / 32
    kv = float32.kv_bytes / 2
    judged = floors.judged(measurement, 0.4, 0.05)
    assert judged["decode_bytes"] == pytest.approx(weights + kv)
    assert judged["matmul_flops_per_s"] == DECLARED_CEILINGS.peak_flops("float32") == 100e9
    limits = floors.metric_floors(measurement)
    assert limits["tpot_s"] == pytest.approx(max((weights + kv) / 10e9, float32.flops / 100e9))
    words = " ".join(floors.sentences(measurement, 0.4, 0.05))
    assert "of weights" in words
    # Against float32 on the same machine: the weights part of the floor scales by 4.9 / 32.
    plain = floors.judged(with_declared_ceilings(fake_runner(BASE)), 0.4, 0.05)
    assert judged["decode_bytes"] - kv == pytest.approx((plain["decode_bytes"]
                                                        - float32.kv_bytes) * 4.9 / 32)


def test_a_measured_block_format_floor_reads_the_files_own_bytes():
    # SmolLM2's Q4_K_M file is 105.5 MB, not 4.9 bits per weight (its 576-wide rows fall back
    # to Q5_0): a run that recorded its file's size is judged on those bytes.
    import dataclasses
    spec = BASE.replace(stack="llama.cpp", dtype="q4_k_m")
    measurement = dataclasses.replace(with_declared_ceilings(fake_runner(spec)),
                                      weights_bytes=105_500_000)
    shape = shapes(BASE.model_id)
    costs = roofline.costs(shape, spec, weight_bytes_per_param=105_500_000 / shape.parameters)
    assert floors.judged(measurement, 0.4, 0.05)["decode_bytes"] == pytest.approx(
        costs.decode.bytes_moved)
    nominal = roofline.costs(shape, spec).decode.weight_bytes
    assert costs.decode.weight_bytes / nominal == pytest.approx(
        105_500_000 / shape.parameters / (4.9 / 8))


def test_an_estimates_floor_multiplies_block_formats_at_the_16_bit_rate():
    from fakes import measure
    from lib.estimate import hardware
    from lib.measure.backends.estimated import BACKEND
    spec = BASE.replace(stack="onnxruntime", dtype="int4", hardware="h200")
    measurement = measure(spec, BACKEND)
    assert not measurement.measured
    h200 = hardware.get("h200")
    costs = roofline.costs(shapes(BASE.model_id), spec)
    limits = floors.metric_floors(measurement)
    assert limits["ttft_s"] == max(costs.prefill.bytes_moved / h200.memory_bandwidth_bytes_per_s,
                                   costs.prefill.flops / h200.peak_flops("float16"))


def test_without_recorded_ceilings_there_is_no_floor():
    measurement = fake_runner(BASE)                 # saved before ceilings were recorded
    assert floors.metric_floors(measurement) == {} and floors.judged(measurement, 1, 1) is None
    assert floors.sentences(measurement, 1, 1) == []
    assert export.to_dict(measurement, stats.summarize(measurement))["floor"] is None


def test_the_run_json_has_the_floor_object():
    measurement = with_declared_ceilings(fake_runner(BASE))
    document = export.to_dict(measurement, stats.summarize(measurement))
    assert {"ttft_s", "tpot_s", "decode_bound", "prefill_bound", "decode_bandwidth_utilisation",
            "prefill_compute_utilisation"} <= set(document["floor"])
    assert document["environment"]["ceilings"]["memory_bandwidth_bytes_per_s"] == 10e9


def test_one_output_token_has_no_decode_floor():
    limits = floors.metric_floors(with_declared_ceilings(fake_runner(BASE.replace(new_tokens=1))))
    assert "tpot_s" not in limits and "decode_tokens_per_s" not in limits
    assert limits["e2e_s"] == limits["ttft_s"]


def _sweep_frame(values, with_ceilings=True):
    factor = get_factor("batch")
    result = sweep.run_sweep(BASE, [(factor, values)], FakePoints())
    if with_ceilings:
        for point in result.points:
            point.measurement = with_declared_ceilings(point.measurement)
    return result, pd.DataFrame(table.rows(result)), factor


def test_the_sweep_table_ends_with_the_floor_columns_provenance_then_quality():
    result, frame, _ = _sweep_frame([1, 4])
    columns = list(frame.columns)
    floor_columns = [f"floor_{m}" for m in floors.FLOOR_METRICS]
    quality_columns = [f"quality_{name}" for name in table.QUALITY_FIELDS] + \
        ["quality_unavailable"] + [f"speculative_{name}" for name in table.SPECULATIVE_FIELDS]
    assert columns[-len(floor_columns) - 1 - len(quality_columns):] == \
        floor_columns + ["provenance"] + quality_columns
    for point, row in zip(result.points, table.rows(result)):
        limits = floors.metric_floors(point.measurement)
        assert row["floor_tpot_s"] == limits["tpot_s"]
    assert frame["floor_tpot_s"].iloc[1] > frame["floor_tpot_s"].iloc[0]   # batch 4 reads more


def test_latency_and_throughput_charts_draw_the_floor_dashed_and_name_it_an_estimate():
    _, frame, factor = _sweep_frame([1, 2, 4])
    latency = sweep_charts.sweep_latency_figure(frame, factor)
    tpot_floor = next(t for t in latency.data if t.name == floor_name("tpot_s"))
    assert tpot_floor.line.dash == "dash" and "estimate" in tpot_floor.name
    assert list(tpot_floor.y) == pytest.approx([v * 1000 for v in frame["floor_tpot_s"]])
    throughput = sweep_charts.sweep_throughput_figure(frame, factor)
    names = {t.name for t in throughput.data}
    assert floor_name("decode_tokens_per_s") in names and "ceiling" in \
        floor_name("decode_tokens_per_s")
    _, bare, _ = _sweep_frame([1, 2], with_ceilings=False)
    assert not [t for t in sweep_charts.sweep_latency_figure(bare, factor).data
                if t.name and "estimate" in t.name]


def test_a_categorical_factor_gets_a_dash_over_each_bar():
    factor = get_factor("dtype")
    result = sweep.run_sweep(BASE, [(factor, ["float32", "bfloat16"])], FakePoints())
    for point in result.points:
        point.measurement = with_declared_ceilings(point.measurement)
    figure = sweep_charts.sweep_latency_figure(pd.DataFrame(table.rows(result)), factor)
    marks = next(t for t in figure.data if t.name == floor_name("tpot_s"))
    assert marks.mode == "markers" and marks.marker.symbol == "line-ew-open"


def test_the_per_token_chart_draws_both_floors():
    figure = run_charts.token_latency_figure(with_declared_ceilings(fake_runner(BASE)))
    names = {t.name for t in figure.data}
    assert {floor_name("tpot_s"), floor_name("ttft_s")} <= names
    assert not {floor_name("tpot_s")} & {t.name for t in
                                         run_charts.token_latency_figure(fake_runner(BASE)).data}


def test_the_runner_records_the_ceilings_with_every_live_run(fake_backend):
    measurement = runner.run(BASE)
    assert measurement.environment["ceilings"] == DECLARED_CEILINGS.to_dict()
    assert floors.metric_floors(measurement)
