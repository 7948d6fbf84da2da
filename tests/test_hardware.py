"""Hardware profiles (lib.estimate.hardware, lib/estimate/data/hardware.json): every row sourced and sane, `this`
built from this machine's measured ceilings once, unknown ids refused with the list."""

import json

import pytest

from fakes import DECLARED_THIS, declare_ceilings
from lib.estimate import hardware
from lib.core.errors import UnsupportedError

TABLE_IDS = ["laptop-cpu", "apple-m3-max", "phone-npu", "jetson-orin", "a100-80gb", "h100-sxm",
             "h200", "b200", "mi300x", "tpu-v5e", "tpu-v6e"]


@pytest.fixture
def measured_here(monkeypatch):
    yield declare_ceilings(monkeypatch)
    hardware.this.cache_clear()


def test_the_table_has_every_profile_the_issue_names_and_not_this():
    rows = json.loads(hardware.TABLE_PATH.read_text())["profiles"]
    assert [row["id"] for row in rows] == TABLE_IDS
    assert hardware.ids() == ("this", *TABLE_IDS)


@pytest.mark.parametrize("profile_id", TABLE_IDS)
def test_every_row_has_a_source_and_positive_figures(profile_id):
    profile = hardware.get(profile_id)
    assert profile.source.startswith("https://") and len(profile.source) > 40
    assert profile.kind in hardware.KINDS and not profile.measured
    assert profile.memory_bandwidth_bytes_per_s > 1e10 and profile.memory_bytes > 1e9
    assert profile.matmul_flops_per_s and all(v > 1e11 for v in
                                              profile.matmul_flops_per_s.values())
    assert set(profile.matmul_flops_per_s) <= {"float32", "bfloat16", "float16", "float8",
                                               "int8"}
    link = profile.interconnect_bytes_per_s
    assert link is None or (link > 1e10 and profile.interconnect)


def test_figures_are_dense_peaks_from_the_datasheets():
    h100, h200, a100 = hardware.get("h100-sxm"), hardware.get("h200"), hardware.get("a100-80gb")
    # NVIDIA: H100/H200 BF16 1,979 TFLOPS and FP8 3,958 "with sparsity": dense is half.
    assert h100.matmul_flops_per_s["bfloat16"] == h200.matmul_flops_per_s["bfloat16"] == 989.4e12
    assert h200.matmul_flops_per_s["float8"] == 1978.9e12
    assert (h100.memory_bandwidth_bytes_per_s, h200.memory_bandwidth_bytes_per_s) == (3.35e12,
                                                                                      4.8e12)
    assert (a100.memory_bytes, h200.memory_bytes) == (80e9, 141e9)
    assert hardware.get("tpu-v6e").matmul_flops_per_s["bfloat16"] == 918e12


def test_a_missing_dtype_falls_back_to_the_nearest_figure():
    npu, a100, h200 = hardware.get("phone-npu"), hardware.get("a100-80gb"), hardware.get("h200")
    assert npu.flops_dtype("float32") == "float16"        # no float32 on the NPU
    assert a100.flops_dtype("float8") == "bfloat16"       # no fp8 units before Hopper
    assert h200.flops_dtype("float8") == "float8"
    assert a100.peak_flops("float16") == 312e12


def test_interconnect_is_published_both_ways_and_used_one_way():
    h200 = hardware.get("h200")
    assert h200.interconnect_bytes_per_s == 900e9
    assert h200.interconnect_one_way_bytes_per_s == 450e9
    assert hardware.get("laptop-cpu").interconnect_one_way_bytes_per_s is None


@pytest.mark.parametrize("bad", ["h300", "", "H200", "9" * 5000])
def test_unknown_ids_are_refused_with_the_list(bad):
    with pytest.raises(UnsupportedError) as caught:
        hardware.get(bad)
    message = str(caught.value)
    assert "No hardware profile" in message and "this, laptop-cpu" in message
    assert "tpu-v6e" in message and len(message) < 400


def test_this_machine_is_built_from_its_measured_ceilings_once(measured_here):
    first = hardware.get("this")
    assert first.measured and first.id == "this" and first.kind == "cpu"
    assert first.memory_bandwidth_bytes_per_s == 12e9
    assert first.layer_overhead_s == 0.3e-3 and first.source == DECLARED_THIS["source"]
    assert first.memory_bytes > 0
    profiles = hardware.profiles()
    assert list(profiles) == ["this", *TABLE_IDS]
    hardware.get("this")
    assert measured_here == ["cpu"]             # cached: never measured again per call


def test_this_machine_without_the_device_is_refused(measured_here, monkeypatch):
    from lib.machine import devices
    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu"])
    with pytest.raises(UnsupportedError, match="This machine has no cuda"):
        hardware.this("cuda")


def test_to_dict_has_what_the_cli_prints():
    row = hardware.get("mi300x").to_dict()
    assert {"id", "name", "kind", "source", "memory_bandwidth_bytes_per_s",
            "matmul_flops_per_s", "memory_bytes", "interconnect_bytes_per_s"} <= set(row)
    json.dumps(row, allow_nan=False)


def test_cli_lists_the_profiles(measured_here, capsys):
    from lib.cli import main
    assert main.main(["hardware", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == ["this", *TABLE_IDS]
    assert all(row["source"] and row["name"] and row["memory_bandwidth_bytes_per_s"] > 0
               for row in rows)
    assert rows[0]["measured"] and rows[0]["layer_overhead_s"] == 0.3e-3
    assert main.main(["hardware"]) == 0
    table = capsys.readouterr().out
    assert "h200" in table and "NVIDIA H200 SXM 141GB" in table
