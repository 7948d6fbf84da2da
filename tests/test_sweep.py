"""Sweeps with the fake model: exact tables, skip-and-continue, stop keeps finished points."""

import csv
import io

import pytest

from fakes import FakePoints, fake_runner
from lib.measure import sweep
from lib.measure.factors import estimated_points, get_factor, parse_values, point_spec, point_words
from lib.measure.sweep_points import PointResult, SweepResult
from lib.records import table
from lib.core.errors import InvalidSpecError
from lib.core.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0,
               warmup_runs=1, threads=1)


def test_batch_sweep_gives_an_exact_tidy_table():
    batch = get_factor("batch")
    result = sweep.run_sweep(BASE, [(batch, [1, 2, 4])], FakePoints())
    rows = table.rows(result)
    assert [row["factor_batch"] for row in rows] == [1, 2, 4]
    assert [row["batch_size"] for row in rows] == [1, 2, 4]
    for row, b in zip(rows, [1, 2, 4]):
        assert row["status"] == table.Status.MEASURED
        assert row["ttft_s"] == pytest.approx(0.1 * b)
        assert row["tpot_s"] == pytest.approx(0.02 + 0.01 * b)
        assert row["e2e_s"] == pytest.approx(0.1 * b + 4 * (0.02 + 0.01 * b))
        assert row["decode_tokens_per_s"] == pytest.approx(b / (0.02 + 0.01 * b))
        # Two samples: below the percentile gate, so the spread is their range, labelled so.
        assert row["ttft_s_p10"] is None and row["ttft_s_p90"] is None
        assert row["ttft_s_min"] == pytest.approx(row["ttft_s"]) == row["ttft_s_max"]
        assert table.band_columns(row, "ttft_s") == ("ttft_s_min", "ttft_s_max", "range")
        assert row["itl_s_p10"] is None and row["itl_s_n"] == 8
        assert row["ttft_s_n"] == 2 and row["noisy"] is False
        assert row["prompt_tokens"] == 16 and row["model_id"] == "smollm2-135m-instruct"
        assert row["first_warmup_s"] == pytest.approx(row["e2e_s"])


def test_a_point_that_cannot_run_is_skipped_and_the_sweep_goes_on():
    prompt = get_factor("prompt_tokens")
    result = sweep.run_sweep(BASE, [(prompt, [16, 9000, 32])], FakePoints())
    rows = table.rows(result)
    assert [row["status"] for row in rows] == [table.Status.MEASURED, table.Status.SKIPPED,
                                               table.Status.MEASURED]
    assert "reads at most 8192 tokens" in rows[1]["skipped_reason"]
    assert rows[1]["ttft_s"] is None and rows[1]["prompt_tokens"] == 9000


def test_stop_keeps_what_each_point_measured_marked_as_stopped_early():
    points = FakePoints()
    # Round 1 visits 1, 2, 4, 8; round 2 starts one later: 2, 4, then Stop.
    result = sweep.run_sweep(BASE.replace(repetitions=3), [(get_factor("batch"), [1, 2, 4, 8])],
                             points, should_stop=lambda: len(points.visits) >= 6)
    assert result.stopped and result.planned == 4
    assert [len(p.measurement.repetitions) for p in result.points] == [1, 2, 2, 1]
    assert all(p.stopped_early for p in result.points)
    rows = table.rows(result)
    assert [row["stopped_early"] for row in rows] == [True] * 4
    assert table.display_rows(rows, ["batch"])[0]["status"].startswith("measured, stopped early")


def test_an_interrupt_keeps_what_was_measured_then_goes_on_up():
    points = FakePoints()
    kept = []

    def interrupt(event):
        if event.phase == "measuring" and len(points.visits) >= 3:
            raise KeyboardInterrupt        # what Streamlit's Stop does inside a callback
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], points,
                        on_progress=interrupt, on_point=kept.append)
    # Rounds: 1, 2 then 2, 1: batch 2 had its 2 repetitions, batch 1 one.
    assert [(p.values["batch"], len(p.measurement.repetitions)) for p in kept] == [(1, 1), (2, 2)]
    assert [p.stopped_early for p in kept] == [True, False]


def test_rounds_visit_every_point_once_in_a_rotating_order():
    points = FakePoints()
    result = sweep.run_sweep(BASE.replace(repetitions=3), [(get_factor("batch"), [1, 2, 4])],
                             points)
    order = [spec.batch_size for spec in points.visits]
    assert order == [1, 2, 4, 2, 4, 1, 4, 1, 2]
    assert [len(p.measurement.repetitions) for p in result.points] == [3, 3, 3]
    assert result.notes == []


def test_a_noisy_point_gets_more_repetitions_within_its_budget():
    from fakes import FakeBackend
    # Batch 2's prefill jumps around: 0.1 / 0.4 s; batch 1 is steady.
    noisy = FakeBackend(prefill_s=lambda spec: 0.1 if spec.batch_size == 1 else
                        (0.1, 0.4)[sum(1 for c in noisy.calls if c["spec"].batch_size == 2) % 2],
                        decode_s=0.02)
    points = FakePoints(noisy)
    result = sweep.run_sweep(BASE.replace(repetitions=3), [(get_factor("batch"), [1, 2])],
                             points)
    counts = {p.values["batch"]: len(p.measurement.repetitions) for p in result.points}
    assert counts == {1: 3, 2: 6}                 # at most twice its minimum
    assert "measured again" in result.notes[0] and "batch size 2 (6 times)" in result.notes[0]
    assert table.rows(result)[1]["noisy"] is True and table.rows(result)[0]["noisy"] is False


def test_points_that_do_not_fit_together_are_measured_in_a_later_group(monkeypatch):
    from lib.core.errors import MemoryGuardError
    points = FakePoints()
    start = points.start

    def refuse_while_others_are_loaded(spec, on_progress=None):
        if spec.batch_size == 4 and points.handles:
            raise MemoryGuardError("Not enough memory for batch 4 while the others are loaded.")
        start(spec, on_progress)
    points.start = refuse_while_others_are_loaded
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2, 4])], points)
    assert [p.measured for p in result.points] == [True, True, True]
    assert [s.batch_size for s in points.visits] == [1, 2, 2, 1, 4, 4]
    assert "later group" in result.notes[0]


def test_two_factor_grid_and_progress():
    seen = []
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2]),
                                    (get_factor("output"), [2, 3])], FakePoints(),
                             on_progress=seen.append)
    assert [p.values for p in result.points] == [
        {"batch": 1, "output": 2}, {"batch": 1, "output": 3},
        {"batch": 2, "output": 2}, {"batch": 2, "output": 3}]
    assert seen[0].phase == "loading" and seen[0].eta_s is None   # nothing measured yet
    measuring = [event for event in seen if event.phase == "measuring"]
    assert measuring[0].repetition == 1 and measuring[0].minimum_repetitions == 2
    assert measuring[-1].eta_s is not None and measuring[-1].round == 2
    fractions = [event.fraction for event in seen]
    assert fractions == sorted(fractions) and seen[-1].phase == "done"
    assert seen[-1].fraction == 1.0 and seen[-1].eta_s == 0.0


def test_csv_round_trips_the_table():
    result = sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], FakePoints())
    rows = table.rows(result)
    parsed = list(csv.DictReader(io.StringIO(table.to_csv(rows))))
    assert [float(r["ttft_s"]) for r in parsed] == pytest.approx([0.1, 0.2])
    assert set(parsed[0]) == set(rows[0])
    assert parsed[0]["status"] == "measured"


@pytest.mark.parametrize("name, text, message", [
    ("batch", "1,x", "whole numbers"), ("batch", "", "No values"), ("batch", "2,2", "twice"),
    ("dtype", "float32,int3", "int3 is not a number format"), ("dtype", " ", "like float32"),
])
def test_bad_values_are_explained(name, text, message):
    with pytest.raises(InvalidSpecError, match=message):
        parse_values(get_factor(name), text)


def test_unknown_factor_is_explained():
    with pytest.raises(InvalidSpecError, match="Unknown factor 'colour'.*batch"):
        get_factor("colour")


# --- the device factor: this machine's devices (measured) and hardware profiles (estimated) ----

def test_device_values_are_this_machines_devices_or_hardware_profiles():
    device = get_factor("device")
    assert parse_values(device, "cpu,h200,tpu-v6e") == ["cpu", "h200", "tpu-v6e"]
    with pytest.raises(InvalidSpecError, match="h300 is not a device: choose from cpu, cuda, "
                                               "mps, this, laptop-cpu"):
        parse_values(device, "cpu,h300")
    factors = [(device, ["cpu", "h200"])]
    live, estimated = (point_spec(BASE, factors, {"device": d}) for d in ("cpu", "h200"))
    assert (live.device, live.hardware) == ("cpu", None)
    assert (estimated.device, estimated.hardware, estimated.repetitions) == ("cpu", "h200", 1)
    # From an estimate's base, a device of this machine is measured again, on one device.
    back = point_spec(BASE.replace(hardware="h200", gpus=8), factors, {"device": "cpu"})
    assert (back.hardware, back.gpus) == (None, 1)
    assert [device.estimated(v) for v in ("cpu", "cuda", "h200", "this")] == \
        [False, False, True, True]
    assert device.value_label("h200") == "NVIDIA H200 SXM 141GB"
    assert device.value_label("cpu") == "cpu"
    assert estimated_points(BASE, [(device, ["cpu", "h200", "tpu-v6e"])]) == 2


def test_a_device_sweep_measures_cpu_and_estimates_h200(fake_backend):
    from lib.estimate import estimator
    from fakes import sweep_through_runner

    result = sweep_through_runner(BASE, [(get_factor("device"), ["cpu", "h200"])])
    rows = table.rows(result)
    cpu, h200 = rows
    assert [row["provenance"] for row in rows] == ["measured", "estimated"]
    # After the floor columns (old ones keep their place), then the quality columns.
    assert list(cpu)[-8:] == ["provenance"] + ["quality_agreement", "quality_perplexity", "quality_reference_perplexity", "quality_unavailable"] + \
        ["speculative_acceptance_rate", "speculative_tokens_per_step", "speculative_tokens_identical"]
    assert (cpu["device"], cpu["hardware"], cpu["ttft_s_n"]) == ("cpu", None, 2)
    assert cpu["tpot_s"] == pytest.approx(0.05) and cpu["noisy"] is False
    expected = estimator.estimate(BASE.replace(hardware="h200"), "h200").summary
    assert (h200["device"], h200["hardware"], h200["status"]) == ("cpu", "h200", "measured")
    assert h200["tpot_s"] == pytest.approx(expected["tpot_s"]) and h200["tpot_s_n"] == 1
    assert h200["tpot_s_p10"] is None and h200["tpot_s_min"] == h200["tpot_s_max"]
    assert h200["noisy"] is None and h200["other_cpu_percent"] is None   # not a sample
    assert table.band_columns(h200, "tpot_s") == ("tpot_s_min", "tpot_s_max", "estimate")
    # Its floor is the H200's own physics limit, far below this machine's.
    assert 0 < h200["floor_tpot_s"] < h200["tpot_s"] and h200["floor_tpot_s"] < cpu["floor_tpot_s"]
    shown = table.display_rows(rows, ["device"])
    assert [row["measured / estimated"] for row in shown] == ["measured", "estimated"]
    assert [row["status"] for row in shown] == ["measured", "estimated"]
    assert shown[1]["Noisy"] == "n/a: an estimate"
    assert result.notes == []


def test_device_by_batch_skips_what_a_profile_cannot_hold_with_the_reason(fake_backend):
    from fakes import sweep_through_runner

    # 64 x 8,005 tokens of KV cache: an H200 holds it, a 16 GB TPU v5e doesn't.
    result = sweep_through_runner(BASE.replace(prompt_tokens=8000), [
        (get_factor("device"), ["h200", "tpu-v5e"]), (get_factor("batch"), [1, 64])])
    rows = table.rows(result)
    assert [(r["factor_device"], r["factor_batch"], r["status"]) for r in rows] == [
        ("h200", 1, "measured"), ("h200", 64, "measured"),
        ("tpu-v5e", 1, "measured"), ("tpu-v5e", 64, "skipped")]
    assert "does not fit on any number of Google Cloud TPU v5e" in rows[3]["skipped_reason"]
    assert all(row["provenance"] == "estimated" for row in rows)
    assert result.notes == []        # an estimate refused is not "measured in a later group"


def test_a_saved_device_sweep_keeps_its_meaning():
    # Saved before profiles existed: plain device names, a skipped point without its spec.
    result = SweepResult(BASE, ["device"], points=[
        PointResult({"device": "cuda"}, skipped_reason="This machine has no cuda.")])
    row = table.rows(result)[0]
    assert (row["device"], row["hardware"], row["provenance"]) == ("cuda", None, "measured")


@pytest.mark.slow
def test_cli_sweeps_this_machine_against_an_h200(fake_backend, tmp_path, capsys):
    import csv as csv_module

    from lib.cli import main
    out = tmp_path / "devices.csv"
    status = main.main(["sweep", "--factor", "device", "--values", "cpu,h200", "--prompt-tokens",
                       "16", "--new-tokens", "5", "--repetitions", "2", "--threads", "1",
                       "--csv", str(out)])
    printed, said = capsys.readouterr()
    assert status == 0, said
    lines = printed.splitlines()
    assert lines[1].split()[0] == "cpu" and lines[1].endswith("measured")
    assert lines[2].split()[0] == "h200" and lines[2].endswith("estimated")
    assert any("NVIDIA H200 SXM 141GB (estimated) would write tokens" in line
               and "than this machine's cpu (measured)" in line for line in lines)
    parsed = list(csv_module.DictReader(out.open()))
    assert [(r["hardware"], r["provenance"]) for r in parsed] == [("", "measured"),
                                                                  ("h200", "estimated")]


def test_people_read_values_in_words_and_a_skipped_point_is_neither_measured_nor_estimated():
    dtype = get_factor("dtype")
    result = sweep.run_sweep(BASE, [(dtype, ["q4_k_m", "float32"])], FakePoints())
    rows = table.rows(result)
    rows[0].update(status=table.Status.SKIPPED, skipped_reason="transformers does not run it")
    shown = table.display_rows(rows, ["dtype"])
    assert [row[dtype.label] for row in shown] == ["Q4_K_M", "float32"]
    assert [row["measured / estimated"] for row in shown] == ["skipped", "measured"]
    assert rows[0]["factor_dtype"] == "q4_k_m"            # the CSV keeps the machine name
    assert point_words({"stack": "onnxruntime", "dtype": "q4_k_m"}) == \
        "software stack ONNX Runtime, number format Q4_K_M"
