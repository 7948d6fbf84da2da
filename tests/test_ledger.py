"""The error ledger (lib.records.ledger): saved live runs on the fake backend, on a machine with declared
ceilings, judged against estimates computed here; exact numbers, groups per factor, what is
left out and why, and estimates never counted as measurements."""

import dataclasses
import statistics

import pytest

from fakes import (DECLARED_CEILINGS, FakePoints, declare_ceilings, fake_runner,
                   with_declared_ceilings)
from lib.estimate import estimator, hardware
from lib.records import saving, ledger
from lib.measure import runner, sweep
from lib.measure.factors import FACTORS, get_factor
from lib.core import stats
from lib.machine.capability import Ceilings
from lib.core.spec import RunSpec
from lib.records.store import Store

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)


def declared_run(spec: RunSpec):
    """Measured on the fake backend (prefill 0.1 s x batch, decode 0.02 + 0.01 x batch s per
    token), as if on the DECLARED_CEILINGS machine."""
    return with_declared_ceilings(fake_runner(spec))


def save(store: Store, measurement) -> int:
    entry_id, problem = saving.save_run(measurement, stats.summarize(measurement), store)
    assert problem is None
    return entry_id


def measured(spec: RunSpec) -> dict[str, float]:
    """What the fake backend takes for `spec`, by hand."""
    ttft, tpot = 0.1 * spec.batch_size, 0.02 + 0.01 * spec.batch_size
    return {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": ttft + (spec.new_tokens - 1) * tpot}


def errors(spec: RunSpec, ceilings: Ceilings = DECLARED_CEILINGS) -> dict[str, float]:
    predicted = estimator.estimate_on(spec, ceilings).summary
    return {name: predicted[name] / value - 1 for name, value in measured(spec).items()}


SPECS = [BASE.replace(batch_size=batch, dtype=dtype)
         for batch, dtype in ((1, "float32"), (1, "bfloat16"), (2, "float32"), (4, "float32"),
                              (2, "bfloat16"))]


def test_ledger_numbers_are_exact_on_declared_measurements():
    store = Store()
    for spec in SPECS:
        save(store, declared_run(spec))
    result = ledger.build(store, store.list())
    assert len(result.judged) == 5 and result.skipped == {} and result.estimates == 0
    for metric in ledger.JUDGED_METRICS:
        expected = [errors(spec)[metric] for spec in SPECS]
        overall = result.overall(metric)
        assert overall.count == 5
        assert overall.median_abs_error == pytest.approx(statistics.median(map(abs, expected)))
        assert overall.bias == pytest.approx(statistics.median(expected))
        assert overall.spread == pytest.approx(0, abs=1e-9)   # declared: every repetition alike
    tpot = result.overall("tpot_s")
    words = tpot.bias_words()
    assert f"Over 5 saved runs, the estimate of the time per token was off by " \
           f"{tpot.median_abs_error:.0%} in the middle case (it tends to be {words})." \
           in result.sentences()


def test_the_estimate_is_this_machines_when_the_ceilings_are_the_same(monkeypatch):
    """estimate_on(ceilings) is estimate(spec, "this") on a machine with those ceilings."""
    declare_ceilings(monkeypatch, memory_bandwidth_bytes_per_s=10e9, layer_overhead_s=0.0005,
                     matmul_flops_per_s={"float32": 100e9, "bfloat16": 200e9})
    try:
        for spec in SPECS[:2]:
            assert estimator.estimate_on(spec, DECLARED_CEILINGS).summary == \
                estimator.estimate(spec, "this").summary
    finally:
        hardware.this.cache_clear()


def test_errors_are_grouped_by_each_factors_value():
    store = Store()
    for spec in SPECS:
        save(store, declared_run(spec))
    result = ledger.build(store, store.list())
    by_batch = result.by_factor("batch")
    assert [value for value, _ in by_batch] == [1, 2, 4]
    for value, per_metric in by_batch:
        group = [spec for spec in SPECS if spec.batch_size == value]
        assert per_metric["ttft_s"].count == len(group)
        assert per_metric["ttft_s"].bias == pytest.approx(
            statistics.median(errors(spec)["ttft_s"] for spec in group))
    assert [value for value, _ in result.by_factor("dtype")] == ["bfloat16", "float32"]
    rows = result.factor_rows("batch")
    assert [(row["Batch size"], row["runs"], row["verdict"]) for row in rows] == \
        [("1", 2, "too few to judge"), ("2", 2, "too few to judge"), ("4", 1, "too few to judge")]
    assert rows[2]["TPOT off by (median)"] == f"{abs(errors(SPECS[3])['tpot_s']):.0%}"
    assert [row["Model"] for row in result.factor_rows("model")] == ["smollm2-135m-instruct"]
    assert set(ledger.FACTORS) == set(FACTORS)


def test_runs_without_ceilings_damaged_entries_and_estimates_are_left_out_and_counted():
    store = Store()
    save(store, declared_run(BASE))
    save(store, fake_runner(BASE))                        # saved before ceilings were recorded
    good = store.export(store.list()[0]["id"])
    store.save_run({k: v for k, v in good.items() if k != "repetitions"})      # damaged
    estimate = runner.run(BASE.replace(model_id="gpt2", hardware="h200"))
    save(store, estimate)
    # Even with ceilings beside it, an estimate is what is judged, never a measurement.
    save(store, with_declared_ceilings(estimate))
    result = ledger.build(store, store.list())
    assert len(result.judged) == 1
    assert result.skipped == {ledger.NO_CEILINGS: 1, ledger.DAMAGED: 1}
    assert result.estimates == 2
    said = result.sentences()
    assert "Only 1 saved run: too few to judge the estimate of the time per token (5 or more " \
           "are needed)." in said[1]
    assert said[3].startswith("1 run or sweep point left out: saved without the ceilings of the "
                              "machine they ran on")
    assert said[4] == "1 run or sweep point left out: can't be opened (edited by hand, or saved " \
                      "by another version)."
    assert said[-1] == "2 estimates are never in it: an estimate is a prediction, not a " \
                       "measurement."


def test_sweep_points_count_and_imported_runs_are_judged_on_their_own_machine():
    store = Store()
    recorder = saving.SweepRecorder(BASE, ["batch"], 2, store=store)

    def add(point):
        point.measurement = with_declared_ceilings(point.measurement)
        recorder.add(point)
    sweep.run_sweep(BASE, [(get_factor("batch"), [1, 2])], FakePoints(), on_point=add)
    recorder.finish(False)
    # A run measured elsewhere: twice the bandwidth and no per-layer overhead recorded there.
    elsewhere = dataclasses.replace(DECLARED_CEILINGS, memory_bandwidth_bytes_per_s=20e9,
                                    layer_overhead_s=None, device_name="another CPU")
    document = store.export(save(store, declared_run(BASE.replace(batch_size=4))))
    document["environment"]["ceilings"] = elsewhere.to_dict()
    store.import_document(document)
    result = ledger.build(store, store.list())
    assert sorted(j.spec.batch_size for j in result.judged) == [1, 2, 4, 4]
    imported = next(j for j in result.judged if j.entry_id == store.list()[0]["id"])
    spec = BASE.replace(batch_size=4)
    assert imported.errors == pytest.approx(errors(spec, elsewhere))
    assert imported.errors != pytest.approx(errors(spec))


@pytest.mark.slow
def test_each_entry_is_judged_once_so_history_stays_quick(monkeypatch):
    store = Store()
    document = store.export(save(store, declared_run(BASE)))
    body = {k: v for k, v in document.items()
            if k not in {"format", "kind", "created_at", "status", "note", "imported_from"}}
    for _ in range(199):
        store.save_run(body)
    entries = store.list()
    first = ledger.build(store, entries)
    assert len(first.judged) == 200
    exported = []
    monkeypatch.setattr(Store, "export", lambda self, entry_id: exported.append(entry_id))
    again = ledger.build(store, entries)
    assert exported == [] and again.overall("tpot_s") == first.overall("tpot_s")


def test_a_load_sweep_is_left_out_of_the_ledger_not_a_crash():
    from fakes import load_result
    from lib.records import load_tests

    store = Store()
    load_id, _ = load_tests.save(load_result(), store=store)
    assert ledger.judge_entry(store, load_id) == ledger.EntryVerdict()
    built = ledger.build(store, store.list())
    assert not built.judged and not built.skipped
