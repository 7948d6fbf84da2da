"""lib.estimate.gap: a live run beside the estimate for its settings on this machine, and why they differ."""

import dataclasses

import pytest

from fakes import fake_runner
from lib.estimate import gap
from lib.core import stats
from lib.core.spec import RunSpec

SPEC = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)


@dataclasses.dataclass
class Predicted:                       # the parts of lib.estimate.estimator.Estimate that gap reads
    summary: dict
    breakdown: dict


def _predicted(ttft, tpot, decode_terms):
    return Predicted({"ttft_s": ttft, "tpot_s": tpot, "e2e_s": ttft + 4 * tpot},
                     {"prefill": {"memory_s": ttft, "compute_s": 0.0, "overhead_s": 0.0,
                                  "communication_s": 0.0},
                      "decode": decode_terms})


def test_rows_are_the_measured_medians_over_the_estimate():
    measurement = fake_runner(SPEC)          # batch 1: prefill 0.1 s, 30 ms per token
    summary = stats.summarize(measurement)
    compared = gap.compare(measurement, summary, _predicted(
        0.1, 0.015, {"memory_s": 0.01, "compute_s": 0.001, "overhead_s": 0.005,
                     "communication_s": 0.0}))
    rows = {row.metric: row for row in compared.rows}
    assert rows["ttft_s"].ratio == pytest.approx(1.0)
    assert rows["tpot_s"].ratio == pytest.approx(2.0)            # 30 ms measured, 15 predicted
    assert compared.reason.startswith("TPOT took 2.0× the estimate. The estimate's largest "
                                      "part is memory (10.0 ms)")
    assert [r["measured ÷ estimated"] for r in compared.table()][:2] == ["1.00×", "2.00×"]


def test_faster_than_predicted_names_what_the_model_overstates():
    measurement = fake_runner(SPEC)
    compared = gap.compare(measurement, stats.summarize(measurement), _predicted(
        0.1, 0.09, {"memory_s": 0.01, "compute_s": 0.0, "overhead_s": 0.08,
                    "communication_s": 0.0}))
    assert compared.reason.startswith("TPOT took 3.0× less than the estimate. The estimate's "
                                      "largest part is overhead")


def test_close_enough_says_so():
    measurement = fake_runner(SPEC)
    compared = gap.compare(measurement, stats.summarize(measurement), _predicted(
        0.1, 0.029, {"memory_s": 0.029, "compute_s": 0, "overhead_s": 0, "communication_s": 0}))
    assert compared.reason.startswith("The estimate is within 15%")


def test_a_busy_machine_is_the_reason_when_it_was_busy():
    measurement = fake_runner(SPEC)
    busy = dataclasses.replace(measurement, repetitions=tuple(
        dataclasses.replace(rep, other_cpu_percent=60.0) for rep in measurement.repetitions))
    compared = gap.compare(busy, stats.summarize(busy), _predicted(
        0.1, 0.015, {"memory_s": 0.015, "compute_s": 0, "overhead_s": 0, "communication_s": 0}))
    assert "other programs used 60% of the CPU" in compared.reason


def test_a_llama_cpp_run_is_compared_with_the_estimate_for_llama_cpp(monkeypatch):
    # Q4_1 on the declared machine (12 GB/s, 100 GFLOP/s float32): its 5-bit weights stream in
    # less time than its products take at llama.cpp's least share (0.2), so compute leads,
    # where transformers float32, reading 6.4x the bytes, is led by memory.
    from fakes import declare_ceilings
    from lib.estimate import estimator, hardware

    declare_ceilings(monkeypatch)
    try:
        gguf = SPEC.replace(stack="llama.cpp", dtype="q4_1")
        measurement = fake_runner(gguf)
        predicted = estimator.estimate(gguf, hardware.THIS)
        compared = gap.compare(measurement, stats.summarize(measurement), predicted)
        plain = estimator.estimate(SPEC, hardware.THIS)
    finally:
        hardware.this.cache_clear()
    decode = predicted.breakdown["decode"]
    assert decode["memory_s"] < decode["compute_s"]
    assert "The estimate's largest part is compute" in compared.reason
    assert plain.breakdown["decode"]["memory_s"] > plain.breakdown["decode"]["compute_s"]
