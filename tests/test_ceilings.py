"""This machine's ceilings: cached once per machine, refreshable, damage measured over, and
`python -m lib machine`. Fast tests replace the measuring with declared Ceilings; one slow test
measures for real."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.machine import capability, ceilings, probes
from lib.cli import main
from lib.machine.capability import Ceilings
from lib.core.errors import UnsupportedError
from lib.core.timing import ManualClock

ROOT = Path(__file__).resolve().parent.parent
DECLARED = Ceilings(device="cpu", memory_bandwidth_bytes_per_s=20e9,
                    matmul_flops_per_s={"float32": 1e11, "bfloat16": 3e11},
                    layer_overhead_s=2e-4, source="declared for a test", threads=2)


@pytest.fixture
def measured(monkeypatch, tmp_path):
    """`ceilings.measure` replaced by one that counts its calls and returns DECLARED (for the
    device asked), with a cache folder of this test's own."""
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    calls = []

    def fake_measure(device="cpu", on_progress=None):
        calls.append(device)
        if on_progress:
            on_progress("memory bandwidth", 0.0)
        # Measured now: a reading from long ago would be due to be confirmed (lib.machine.capability).
        return Ceilings(**{**DECLARED.to_dict(), "device": device,
                           "notes": (f"measurement {len(calls)}",),
                           "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    monkeypatch.setattr(ceilings, "measure", fake_measure)
    return calls


def test_measured_once_then_reused(measured):
    first = ceilings.machine_ceilings("cpu")
    again = ceilings.machine_ceilings("cpu")
    assert measured == ["cpu"]
    assert first == again and again.notes == ("measurement 1",)
    assert ceilings.cache_path().exists()


def test_refresh_measures_again(measured):
    ceilings.machine_ceilings("cpu")
    fresh = ceilings.machine_ceilings("cpu", refresh=True)
    assert measured == ["cpu", "cpu"] and fresh.notes == ("measurement 2",)
    assert ceilings.machine_ceilings("cpu").notes == ("measurement 2",)   # the new ones kept


def test_another_machine_or_torch_version_measures_its_own(measured, monkeypatch):
    ceilings.machine_ceilings("cpu")
    here = ceilings.machine_identity("cpu")
    monkeypatch.setattr(ceilings, "machine_identity", lambda device: {**here, "torch": "9.9"})
    ceilings.machine_ceilings("cpu")
    assert measured == ["cpu", "cpu"]
    entries = json.loads(ceilings.cache_path().read_text())["entries"]
    assert [e["machine"]["torch"] for e in entries] == [here["torch"], "9.9"]


@pytest.mark.parametrize("damage", [
    b"", b"{", b"\xff\xfe not text", b"[]", b'{"entries": 5}', b'{"entries": [7, "x"]}',
    "entry with negative bandwidth", "entry with NaN flops", "entry with no float32",
    "entry with text overhead", "entry with an unknown device",
    "entry with figures that are text", "entry with a reading without a time",
])
def test_damaged_cache_is_measured_over(measured, damage):
    path = ceilings.cache_path()
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        values = DECLARED.to_dict()
        if "negative" in damage:
            values["memory_bandwidth_bytes_per_s"] = -1
        elif "NaN" in damage:
            values["matmul_flops_per_s"] = {"float32": "NaN"}
        elif "float32" in damage:
            values["matmul_flops_per_s"] = {"bfloat16": 1e11}
        elif "overhead" in damage:
            values["layer_overhead_s"] = "fast"
        elif "figures" in damage:
            values["figures"] = {"memory_bandwidth_bytes_per_s": "fast"}
        elif "reading" in damage:
            values["readings"] = [{"outcome": "quiet"}]
        else:
            values["device"] = "abacus"
        entry = {"machine": ceilings.machine_identity("cpu"), "ceilings": values}
        path.write_text(json.dumps({"format": 1, "entries": [entry]}))
    found = ceilings.machine_ceilings("cpu")
    assert measured == ["cpu"] and found.memory_bandwidth_bytes_per_s == 20e9
    ceilings.machine_ceilings("cpu")                  # the file is whole again: reused
    assert measured == ["cpu"]


def test_an_unwritable_cache_still_gives_the_ceilings(measured, monkeypatch, tmp_path):
    blocked = tmp_path / "ceilings.json"
    blocked.mkdir()                                   # a folder where the file should be
    assert ceilings.machine_ceilings("cpu").memory_bandwidth_bytes_per_s == 20e9
    assert not list(tmp_path.glob(".ceilings.json.*"))   # no temporary file left behind


def test_round_trip_and_peak_flops_fallback():
    again = Ceilings.from_dict(json.loads(json.dumps(DECLARED.to_dict())))
    assert again == DECLARED and hash(again) == hash(DECLARED)
    assert DECLARED.peak_flops("bfloat16") == 3e11
    assert DECLARED.peak_flops("int8") == 1e11            # not measured: float32's figure


def test_available_covers_every_device_torch_sees(measured, monkeypatch):
    from lib.machine import devices
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu", "cuda"])
    monkeypatch.setattr(devices, "device_name", lambda device: "Test GPU")
    found = ceilings.available()
    assert list(found) == ["cpu", "cuda"] and found["cuda"].device == "cuda"
    assert measured == ["cpu", "cuda"]
    ceilings.available()
    assert measured == ["cpu", "cuda"]


def test_machine_json_via_the_cli(measured, capsys):
    assert main.main(["machine", "--json"]) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    cpu = document["cpu"]
    assert cpu["memory_bandwidth_bytes_per_s"] == 20e9
    assert cpu["matmul_flops_per_s"] == {"float32": 1e11, "bfloat16": 3e11}
    assert cpu["layer_overhead_s"] == 2e-4 and cpu["source"] == "declared for a test"
    assert "measuring: memory bandwidth" in err              # progress on stderr only
    assert main.main(["machine", "--json"]) == 0 and measured == ["cpu"]
    assert main.main(["machine", "--refresh"]) == 0 and measured == ["cpu", "cpu"]
    text = capsys.readouterr().out
    assert "memory bandwidth    20.0 GB/s" in text and "0.20 ms per decoder layer" in text
    assert "matmul bfloat16" in text and "300.0 billion operations/s" in text


def test_missing_device_is_refused_with_what_to_choose():
    from lib.machine.devices import available_devices
    if "cuda" in available_devices():
        pytest.skip("CUDA present")
    with pytest.raises(UnsupportedError, match="not available on this machine"):
        ceilings.measure("cuda")


def test_best_rate_is_the_best_sample():
    clock = ManualClock()
    durations = iter([0.5, 0.02, 0.03, 0.01, 0.04] + [0.05] * 20)

    def call():
        clock.advance(next(durations))
    # First call untimed, the second sizes the samples (one call each), then the best of them.
    assert probes.best_rate(1e9, call, clock) == pytest.approx(1e9 / 0.01)


def test_matrices_grow_until_a_product_takes_long_enough():
    clock = ManualClock()

    def product_of(size):
        return lambda: clock.advance((size / 1024) ** 3 * 0.004)   # 4 ms at 1024
    assert probes.grown_size("cpu", product_of, clock) == 2048
    assert probes.grown_size("cuda", lambda size: lambda: None, clock) == 8192
    assert probes.grown_size("cpu", lambda size: lambda: clock.advance(1), clock) == 512


def test_last_level_cache_size_is_read_or_assumed():
    assert probes.last_level_cache_bytes() >= 2**20


@pytest.fixture
def no_waiting(monkeypatch):
    """Measuring starts at once: no look for a quiet moment (the machine running tests is busy)."""
    monkeypatch.setattr(ceilings, "_wait_for_quiet", lambda tell: None)


@pytest.mark.slow
def test_real_measurement_is_sane_and_quick(tmp_path, monkeypatch, no_waiting):
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    started = time.perf_counter()
    found = ceilings.machine_ceilings("cpu", refresh=True)
    assert time.perf_counter() - started < 30
    assert 1e8 < found.memory_bandwidth_bytes_per_s < 1e13
    assert 1e8 < found.matmul_flops_per_s["float32"] < 1e15
    assert all(math.isfinite(v) and v > 0 for v in found.matmul_flops_per_s.values())
    assert found.layer_overhead_s is not None and 0 <= found.layer_overhead_s < 0.05
    assert found.threads >= 1 and "torch" in found.source
    assert ceilings.machine_ceilings("cpu") == found              # kept


def test_a_failing_kernel_is_a_message_not_a_traceback(monkeypatch, no_waiting):
    from lib.core.errors import RunFailedError

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB\nmore detail")
    monkeypatch.setattr(probes, "memory_bandwidth", out_of_memory)
    with pytest.raises(RunFailedError, match=r"failed \(RuntimeError: CUDA out of memory\. "
                                             r"Tried to allocate 1\.00 GiB\)\. Close"):
        ceilings.measure("cpu")


@pytest.mark.parametrize("busy_percent, age_s, measured_again", [
    (None, 10**6, False), (5.0, 10**6, False),            # quiet: kept for good
    (60.0, 60, False),                                     # busy, but just measured
    (60.0, capability.BUSY_RETRY_S + 1, True),               # busy and old: tried again
])
def test_figures_disturbed_by_other_programs_are_measured_again_later(
        measured, busy_percent, age_s, measured_again):
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age_s))
    values = {**DECLARED.to_dict(), "other_cpu_percent": busy_percent, "measured_at": at}
    entry = {"machine": ceilings.machine_identity("cpu"), "ceilings": values}
    ceilings.cache_path().write_text(json.dumps({"format": 1, "entries": [entry]}))
    ceilings.machine_ceilings("cpu")
    assert measured == (["cpu"] if measured_again else [])


def test_a_busy_machine_is_noted_with_what_to_do(monkeypatch, no_waiting):
    import contextlib

    from lib.machine import activity

    @contextlib.contextmanager
    def busy():
        yield activity.Load(other_cpu_percent=50.0)
    monkeypatch.setattr(activity, "watch", busy)
    monkeypatch.setattr(probes, "measure_all",
                        lambda *args: (2e10, {"float32": 1e11}, 1e-4))
    found = ceilings.measure("cpu")
    assert found.other_cpu_percent == 50.0 and found.memory_bandwidth_bytes_per_s == 2e10
    assert any("Other programs used 50% of the CPU" in note and "measured again" in note
               for note in found.notes)
    assert "torch" in found.source and found.threads >= 1


def test_kept_ceilings_are_read_without_torch(tmp_path):
    """The app's pages read the kept figures; importing torch there would cost seconds."""
    code = (
        "import json, sys\n"
        "from lib.machine import ceilings\n"
        "values = {'device': 'cpu', 'memory_bandwidth_bytes_per_s': 2e10,\n"
        "          'matmul_flops_per_s': {'float32': 1e11}}\n"
        "entry = {'machine': ceilings.machine_identity('cpu'), 'ceilings': values}\n"
        "ceilings.cache_path().write_text(json.dumps({'format': 1, 'entries': [entry]}))\n"
        "assert ceilings.machine_ceilings('cpu').memory_bandwidth_bytes_per_s == 2e10\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "ILE_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr


# --- the capability: busy readings never lower the kept figures -----------------------------

@pytest.fixture
def readings(monkeypatch, tmp_path):
    """`ceilings.measure` replaced by one that returns the next of the declared readings
    appended to the list this yields (bandwidth in GB/s, other programs' share, when)."""
    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    queue: list[tuple[float, float | None, str]] = []

    def fake_measure(device="cpu", on_progress=None):
        bandwidth_gb_s, busy, at = queue.pop(0)
        return Ceilings(**{**DECLARED.to_dict(), "memory_bandwidth_bytes_per_s":
                           bandwidth_gb_s * 1e9, "other_cpu_percent": busy, "measured_at": at})
    monkeypatch.setattr(ceilings, "measure", fake_measure)
    return queue


def test_a_busy_refresh_keeps_the_quiet_capability_and_says_so(readings, capsys, monkeypatch):
    from lib.machine import activity

    # Still busy when `machine` runs below: the attempt is not repeated (whatever the hour).
    monkeypatch.setattr(activity, "sample",
                        lambda seconds: activity.Load(other_cpu_percent=44.0))
    readings += [(35.0, 3.0, "2026-12-07T04:00:00Z"), (17.9, 44.0, "2026-12-07T04:30:00Z")]
    assert main.main(["machine", "--refresh", "--json"]) == 0
    capsys.readouterr()
    assert main.main(["machine", "--refresh", "--json"]) == 0
    cpu = json.loads(capsys.readouterr().out)["cpu"]
    assert cpu["memory_bandwidth_bytes_per_s"] == 35e9                  # not 17.9
    bandwidth = cpu["figures"]["memory_bandwidth_bytes_per_s"]
    assert bandwidth == {"value": 35e9, "measured_at": "2026-12-07T04:00:00Z",
                         "other_cpu_percent": 3.0, "quiet": True}
    assert cpu["figures"]["matmul_flops_per_s"]["bfloat16"]["other_cpu_percent"] == 3.0
    assert [r["other_cpu_percent"] for r in cpu["readings"]] == [3.0, 44.0]
    assert cpu["readings"][1]["figures"]["memory_bandwidth_bytes_per_s"] == 17.9e9
    assert ceilings.cached("cpu").memory_bandwidth_bytes_per_s == 35e9    # kept on disk
    assert main.main(["machine"]) == 0 and readings == []                 # no third reading
    text = capsys.readouterr().out
    assert "35.0 GB/s (read + written); quiet, 2026-12-07 04:00:00 UTC, other programs 3%" \
        in text
    assert ("last measurement 2026-12-07 04:30:00 UTC: measured while busy (44% other load): "
            "kept the quiet figures; will measure again when quiet.") in text


def test_after_a_busy_attempt_measured_again_only_once_quiet(readings, monkeypatch):
    from lib.machine import activity

    long_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                             time.gmtime(time.time() - capability.BUSY_RETRY_S - 5))
    readings += [(35.0, 3.0, "2026-12-07T04:00:00Z"), (17.9, 44.0, long_ago),
                 (36.0, 2.0, "2026-12-07T06:00:00Z")]
    ceilings.machine_ceilings("cpu")
    ceilings.machine_ceilings("cpu", refresh=True)
    share = [60.0]
    monkeypatch.setattr(activity, "sample",
                        lambda seconds: activity.Load(other_cpu_percent=share[0]))
    assert ceilings.machine_ceilings("cpu").memory_bandwidth_bytes_per_s == 35e9
    assert len(readings) == 1                                  # still busy: not measured
    share[0] = 1.0
    assert ceilings.machine_ceilings("cpu").memory_bandwidth_bytes_per_s == 36e9
    assert readings == []


def test_a_first_start_on_a_busy_machine_is_provisional_until_a_quiet_reading(readings):
    readings += [(17.9, 44.0, "2026-12-07T04:00:00Z"), (12.0, 5.0, "2026-12-07T04:30:00Z")]
    first = ceilings.machine_ceilings("cpu")
    assert first.memory_bandwidth_bytes_per_s == pytest.approx(17.9e9 / 0.56)  # scaled up
    assert any(note.startswith("Provisional: measured while other programs took 44%")
               for note in first.notes)
    assert "PROVISIONAL" in "\n".join(ceilings.describe(first))
    quiet = ceilings.machine_ceilings("cpu", refresh=True)
    assert quiet.memory_bandwidth_bytes_per_s == 12e9 and not quiet.notes


def test_the_format_1_layout_is_read_as_one_reading(readings):
    identity = {**ceilings.machine_identity("cpu"), "format": 1}
    values = {**DECLARED.to_dict(), "other_cpu_percent": 4.0,
              "measured_at": "2026-12-01T00:00:00Z"}
    del values["figures"], values["readings"]
    ceilings.cache_path().write_text(json.dumps(
        {"format": 1, "entries": [{"machine": identity, "ceilings": values}]}))
    found = ceilings.machine_ceilings("cpu")
    assert found.memory_bandwidth_bytes_per_s == 20e9
    assert found.figures["layer_overhead_s"]["measured_at"] == "2026-12-01T00:00:00Z"
    readings.append((10.0, 50.0, "2026-12-07T04:00:00Z"))
    assert ceilings.machine_ceilings("cpu", refresh=True).memory_bandwidth_bytes_per_s == 20e9
    document = json.loads(ceilings.cache_path().read_text())
    assert len(document["entries"]) == 1 and document["format"] == ceilings.CACHE_FORMAT


def test_the_estimate_for_this_machine_uses_the_capability(readings):
    from lib.estimate import estimator, hardware
    from lib.core.spec import RunSpec

    readings += [(35.0, 3.0, "2026-12-07T04:00:00Z"), (17.9, 44.0, "2026-12-07T04:30:00Z")]
    spec = RunSpec(model_id="smollm2-135m-instruct", hardware="this")
    try:
        ceilings.machine_ceilings("cpu")
        hardware.this.cache_clear()
        quiet = estimator.estimate(spec, "this").summary["tpot_s"]
        ceilings.machine_ceilings("cpu", refresh=True)
        hardware.this.cache_clear()
        assert estimator.estimate(spec, "this").summary["tpot_s"] == quiet
        assert hardware.this("cpu").memory_bandwidth_bytes_per_s == 35e9
    finally:
        hardware.this.cache_clear()


def test_measuring_waits_a_little_for_a_quiet_moment(monkeypatch):
    from lib.machine import activity

    shares = iter([70.0, 40.0, 3.0, 90.0])
    monkeypatch.setattr(activity, "sample",
                        lambda seconds: activity.Load(other_cpu_percent=next(shares)))
    told = []
    ceilings._wait_for_quiet(lambda what, fraction: told.append(what))
    assert told == ["waiting for a quieter moment (other programs use 70% of the CPU)",
                    "waiting for a quieter moment (other programs use 40% of the CPU)"]
    assert next(shares) == 90.0                             # stopped at the quiet sample
    monkeypatch.setattr(activity, "sample",
                        lambda seconds: activity.Load(other_cpu_percent=99.0))
    told.clear()
    ceilings._wait_for_quiet(lambda what, fraction: told.append(what))   # then goes on
    assert len(told) == ceilings.QUIET_WAIT_S / ceilings.QUIET_CHECK_S
