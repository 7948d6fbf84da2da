"""The capability (lib.machine.capability): per figure the best quiet reading, a busy reading kept only
as an attempt, provisional figures replaced by the first quiet reading. Pure, on declared
readings."""

import dataclasses

import pytest

from lib.machine import capability
from lib.machine.capability import BUSY_RETRY_S, Ceilings


def reading(bandwidth=20e9, float32=1e11, overhead=2e-4, busy=2.0,
            at="2026-12-07T04:00:00Z", **changes) -> Ceilings:
    return Ceilings(device="cpu", memory_bandwidth_bytes_per_s=bandwidth,
                    matmul_flops_per_s={"float32": float32, "bfloat16": 3 * float32},
                    layer_overhead_s=overhead, other_cpu_percent=busy, measured_at=at,
                    source=f"measured on this machine {at[:10]}, torch 9.9, 2 threads",
                    **changes)


QUIET = reading()
BUSY = reading(bandwidth=9e9, float32=1e10, overhead=9e-4, busy=44.0, at="2026-12-07T05:00:00Z")


def test_a_busy_reading_never_lowers_the_quiet_figures():
    after = capability.merge(capability.merge(None, QUIET), BUSY)
    assert after.memory_bandwidth_bytes_per_s == 20e9
    assert after.matmul_flops_per_s == {"float32": 1e11, "bfloat16": 3e11}
    assert after.layer_overhead_s == 2e-4
    assert after.figures["memory_bandwidth_bytes_per_s"]["measured_at"] == QUIET.measured_at
    assert after.other_cpu_percent == 2.0 and after.measured_at == QUIET.measured_at
    last = after.readings[-1]
    assert last["quiet"] is False and last["other_cpu_percent"] == 44.0
    assert last["outcome"] == ("measured while busy (44% other load): kept the quiet figures; "
                               "will measure again when quiet")
    assert last["figures"]["memory_bandwidth_bytes_per_s"] == 9e9       # what it read, kept
    assert any("not used, the quiet figures are kept" in note for note in after.notes)
    assert after.source.startswith("best quiet measurements on this machine, torch 9.9")


def test_a_better_quiet_reading_raises_each_figure_and_overhead_keeps_the_minimum():
    better = reading(bandwidth=30e9, float32=0.5e11, overhead=5e-4, busy=None,
                     at="2026-12-07T06:00:00Z")      # faster memory, slower matmul and layers
    after = capability.merge(capability.merge(None, QUIET), better)
    assert after.memory_bandwidth_bytes_per_s == 30e9
    assert after.figures["memory_bandwidth_bytes_per_s"]["measured_at"] == better.measured_at
    assert after.matmul_flops_per_s["float32"] == 1e11          # the maximum
    assert after.layer_overhead_s == 2e-4                        # the minimum
    assert after.figures["layer_overhead_s"]["measured_at"] == QUIET.measured_at
    assert after.readings[-1]["outcome"] == "quiet: improved memory bandwidth"
    lower = capability.merge(after, reading(overhead=1e-4, at="2026-12-07T07:00:00Z"))
    assert lower.layer_overhead_s == 1e-4 and lower.memory_bandwidth_bytes_per_s == 30e9


def test_busy_first_is_provisional_scaled_and_the_first_quiet_reading_replaces_it():
    half_the_cpu = reading(bandwidth=40e9, overhead=4e-4, busy=50.0)
    first = capability.merge(None, half_the_cpu)
    assert first.memory_bandwidth_bytes_per_s == 80e9            # it had half the CPU
    assert first.matmul_flops_per_s["float32"] == 2e11 and first.layer_overhead_s == 2e-4
    record = first.figures["memory_bandwidth_bytes_per_s"]
    assert record["measured_value"] == 40e9 and record["scaled_by"] == 2.0
    assert first.readings[-1]["figures"]["memory_bandwidth_bytes_per_s"] == 40e9   # as read
    assert all(not r["quiet"] for r in [first.figures["memory_bandwidth_bytes_per_s"],
                                          *first.figures["matmul_flops_per_s"].values()])
    assert any(note.startswith("Provisional: measured while other programs took 50% of the "
                               "CPU and scaled to the whole CPU (x2.0)") for note in first.notes)
    assert "while busy (provisional)" in first.source
    assert "PROVISIONAL" in capability.describe_figures(first)["memory_bandwidth_bytes_per_s"]
    busier = capability.merge(first, reading(bandwidth=10e9, float32=0.4e11, busy=75.0))
    assert busier.memory_bandwidth_bytes_per_s == 80e9
    assert busier.readings[-1]["outcome"] == (
        "measured while busy (75% other load): provisional figures, scaled to the whole CPU; "
        "improved per-layer overhead; the first quiet measurement replaces them")
    quiet = capability.merge(first, QUIET)               # lower values, but quiet: they win
    assert quiet.memory_bandwidth_bytes_per_s == 20e9 and quiet.other_cpu_percent == 2.0
    assert not any(note.startswith("Provisional") for note in quiet.notes)
    assert quiet.readings[-1]["outcome"] == \
        "quiet: replaced the provisional figures measured while busy"


def test_readings_are_bounded_and_a_new_dtype_is_added():
    kept = capability.merge(None, QUIET)
    for _ in range(capability.READINGS_KEPT + 3):
        kept = capability.merge(kept, BUSY)
    assert len(kept.readings) == capability.READINGS_KEPT
    with_int8 = dataclasses.replace(QUIET, matmul_flops_per_s={"float32": 1e11, "int8": 2e11})
    assert capability.merge(kept, with_int8).matmul_flops_per_s == \
        {"float32": 1e11, "bfloat16": 3e11, "int8": 2e11}


def test_kept_figures_before_provenance_count_as_one_reading():
    old_layout = reading(busy=60.0)                       # format 1: one reading, no figures
    after = capability.merge(old_layout, QUIET)
    assert after.readings[0]["outcome"] == "kept before" and len(after.readings) == 2
    assert after.memory_bandwidth_bytes_per_s == 20e9


@pytest.mark.parametrize("readings, age_s, why", [
    ([QUIET], 60, None),                                  # quiet, just measured
    ([QUIET], 10**6, "confirm"),                          # one quiet reading may still be low
    ([QUIET, QUIET, QUIET], 10**6, None),                 # the best of three: kept for good
    ([BUSY], 60, None),                                   # provisional, just measured
    ([BUSY], BUSY_RETRY_S + 1, "provisional"),
    ([QUIET, BUSY], 60, None),
    ([QUIET, BUSY], BUSY_RETRY_S + 1, "after busy"),      # measured when quiet again
])
def test_when_to_measure_again(readings, age_s, why):
    import calendar
    import time
    kept = None
    for one in readings:
        kept = capability.merge(kept, one)
    last = calendar.timegm(time.strptime(readings[-1].measured_at, "%Y-%m-%dT%H:%M:%SZ"))
    assert capability.measure_again(kept, now=last + age_s) == why


@pytest.mark.parametrize("share, factor", [(None, 1.0), (10.0, 1.0), (50.0, 2.0), (75.0, 4.0),
                                           (95.0, capability.SCALE_AT_MOST), (100.0, 10.0)])
def test_a_busy_reading_is_scaled_by_the_cpu_it_had_at_most_ten_times(share, factor):
    assert capability.scale(share) == pytest.approx(factor)
