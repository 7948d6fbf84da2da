"""Sweeps with the fake model: exact tables, skip-and-continue, stop keeps finished points."""

import csv
import io

import pytest

from fakes import fake_runner
from lib import sweep, table
from lib.errors import InvalidSpecError
from lib.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0,
               warmup_runs=1, threads=1)


def test_batch_sweep_gives_an_exact_tidy_table():
    batch = sweep.get_factor("batch")
    result = sweep.run_sweep(BASE, [(batch, [1, 2, 4])], fake_runner)
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
    prompt = sweep.get_factor("prompt")
    result = sweep.run_sweep(BASE, [(prompt, [16, 9000, 32])], fake_runner)
    rows = table.rows(result)
    assert [row["status"] for row in rows] == [table.Status.MEASURED, table.Status.SKIPPED,
                                               table.Status.MEASURED]
    assert "reads at most 8192 tokens" in rows[1]["skipped_reason"]
    assert rows[1]["ttft_s"] is None and rows[1]["prompt_tokens"] == 9000


def test_stop_keeps_the_finished_points():
    calls = []
    result = sweep.run_sweep(BASE, [(sweep.get_factor("batch"), [1, 2, 4, 8])], fake_runner,
                             should_stop=lambda: len(calls) >= 2,
                             on_point=calls.append)
    assert result.stopped and result.planned == 4
    assert [p.values["batch"] for p in result.points] == [1, 2]
    assert all(p.measured for p in result.points)


def test_two_factor_grid_and_progress():
    seen = []
    result = sweep.run_sweep(BASE, [(sweep.get_factor("batch"), [1, 2]),
                                    (sweep.get_factor("output"), [2, 3])], fake_runner,
                             on_progress=lambda *event: seen.append(event))
    assert [p.values for p in result.points] == [
        {"batch": 1, "output": 2}, {"batch": 1, "output": 3},
        {"batch": 2, "output": 2}, {"batch": 2, "output": 3}]
    assert seen[0][:2] == (0, 4) and seen[0][3] is None      # no estimate before a point ran
    assert seen[1][3] is not None and seen[-1][:2] == (4, 4)


def test_csv_round_trips_the_table():
    result = sweep.run_sweep(BASE, [(sweep.get_factor("batch"), [1, 2])], fake_runner)
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
        sweep.parse_values(sweep.get_factor(name), text)


def test_unknown_factor_is_explained():
    with pytest.raises(InvalidSpecError, match="Unknown factor 'colour'.*batch"):
        sweep.get_factor("colour")
