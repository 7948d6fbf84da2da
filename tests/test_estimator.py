"""The estimator (lib.estimate.estimator) and its backend (lib.measure.backends.estimated): the H200
calibration reproduced, the stack and tensor parallelism doing what they should, DeepSeek-R1's
memory verdict against hand numbers, and estimates flowing through the engine, the stats and
the history marked estimated, with one repetition and no percentiles."""

import re

import pytest

from fakes import declare_ceilings
from lib.estimate import calibration, estimator, hardware
from lib.records import documents, export, saving
from lib.core import results, stats
from lib.measure import runner
from lib.core.errors import InvalidSpecError, MemoryGuardError, UnsupportedError
from lib.models.catalog import get_entry
from lib.core.spec import RunSpec, from_saved

H200 = "h200"
RUN_SUMMARY_KEYS = {"ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "total_tokens_per_s",
                    "requests_per_s", "peak_memory_bytes"}


@pytest.fixture(autouse=True)
def measured_here(monkeypatch):
    """`this` from declared ceilings: 12 GB/s, 100 GFLOP/s float32, 0.3 ms per layer."""
    yield declare_ceilings(monkeypatch)
    hardware.this.cache_clear()


def bf16(model_id: str, **changes) -> RunSpec:
    return RunSpec(model_id=model_id, dtype="bfloat16", **changes)


# --- the calibration of issue 11: eager transformers on one H200 ----------------------------

@pytest.mark.parametrize("model_id, measured_s", [
    ("gpt2", 0.005),                              # 12 layers: ~5 ms per step
    ("smollm2-135m-instruct", 0.019),             # 30 layers: ~18-20 ms
    ("deepseek-r1-distill-qwen-1.5b", 0.019),     # Qwen2.5-1.5B's shape, 28 layers
    ("deepseek-r1-distill-llama-8b", 0.019),      # Llama-3.1-8B's shape, 32 layers
    ("smollm2-1.7b", 0.015),                      # 24 layers: ~15 ms
])
@pytest.mark.parametrize("batch", [1, 8])
def test_eager_decode_on_an_h200_reproduces_the_calibration(model_id, measured_s, batch):
    result = estimator.estimate(bf16(model_id, batch_size=batch), H200)
    assert result.summary["tpot_s"] == pytest.approx(measured_s, rel=0.15)
    assert result.bound["decode"] == "overhead"
    assert result.floor["decode_bound"] == "overhead"


def test_compiling_with_a_static_cache_lowers_tpot():
    for model_id in ("smollm2-135m-instruct", "deepseek-r1-distill-llama-8b"):
        eager = estimator.estimate(bf16(model_id), H200)
        compiled = estimator.estimate(bf16(model_id, compile="on", kv_cache="static"), H200)
        assert compiled.summary["tpot_s"] < eager.summary["tpot_s"] / 2
    # Compiled, an 8B model reads its 15 GB of multiplied weights per token (the 0.5B-parameter
    # input embedding is only gathered): memory-bound at the achieved bandwidth.
    big = estimator.estimate(bf16("deepseek-r1-distill-llama-8b", compile="on"), H200)
    assert big.bound["decode"] == "memory"
    weights = (8_030_261_248 - 128256 * 4096) * 2
    assert big.breakdown["decode"]["memory_s"] == pytest.approx(weights / (0.65 * 4.8e12),
                                                                rel=0.02)


def test_tensor_parallelism_divides_the_bytes_and_adds_communication():
    spec = bf16("deepseek-r1-distill-llama-8b", compile="on")
    one, eight = estimator.estimate(spec, H200, 1), estimator.estimate(spec, H200, 8)
    assert one.summary["tpot_s"] / 8 < eight.summary["tpot_s"] < one.summary["tpot_s"]
    ratio = eight.breakdown["decode"]["memory_s"] / one.breakdown["decode"]["memory_s"]
    assert 1 / 8 * 0.99 < ratio < 1 / 7
    assert one.breakdown["decode"]["communication_s"] == 0
    # 2 all-reduces x 32 layers, each 25 us + 2*7/8 * 4096 x 2 bytes / 450 GB/s.
    per_all_reduce = 25e-6 + 2 * 7 / 8 * 4096 * 2 / 450e9
    assert eight.breakdown["decode"]["communication_s"] == pytest.approx(64 * per_all_reduce)
    assert eight.summary["peak_memory_bytes"] < one.summary["peak_memory_bytes"] / 4
    assert any("8 devices" in sentence and "NVLink 4" in sentence
               for sentence in eight.assumptions)


def test_deepseek_r1_memory_verdict_matches_hand_numbers():
    # Usable per H200: 0.9 x 141 GB = 126.9 GB, less ~1 GB working memory each.
    # float8: 671.0 GB of weights / ~125.9 GB = 5.3 -> 6 H200s; bfloat16: 1,342 GB -> 10.7 -> 11.
    float8 = estimator.estimate(bf16("deepseek-r1"), H200, 8, weights="float8")
    assert float8.fits and float8.devices_needed == 6
    assert float8.weights_dtype == "float8"
    assert float8.memory_need.weights_bytes == 671_026_404_352
    assert "fits on 8 x NVIDIA H200 SXM 141GB: each holds about" in float8.memory_verdict
    assert float8.memory_verdict.endswith("; 6 would do.")
    assert float8.summary["peak_memory_bytes"] == pytest.approx(671.0e9 / 8, rel=0.02)
    wide = estimator.estimate(bf16("deepseek-r1"), H200, 8)
    assert not wide.fits and wide.devices_needed == 11
    assert "does NOT fit on 8 x NVIDIA H200" in wide.memory_verdict
    assert "use --gpus 11 (or --dtype float8, as it is published)" in wide.memory_verdict
    with pytest.raises(MemoryGuardError, match="needs at least 11"):
        wide.enforce()
    # 37.6B of 671B parameters work per token: each step reads 37.6 GB / 8 per device.
    assert float8.breakdown["decode"]["memory_s"] * 0.65 * 4.8e12 == pytest.approx(
        37.55e9 / 8, rel=0.1)


def test_deepseek_r1_is_estimation_only():
    entry = get_entry("deepseek-r1")
    assert entry.estimate_only and entry.published_dtype == "float8"
    with pytest.raises(UnsupportedError) as caught:
        runner.preflight(RunSpec(model_id="deepseek-r1"))
    assert "estimation only" in str(caught.value)
    assert "python -m" not in str(caught.value)       # the message suits a browser; the CLI
    assert caught.value.cli_hint == "python -m lib estimate --model deepseek-r1 --hardware " \
        "h200 --gpus 8"                               # prints the command after it
    from lib.models import loading
    with pytest.raises(UnsupportedError, match="estimation only"):
        loading.load(entry, "cpu", "bfloat16", backend="transformers")


def test_deepseek_r1_is_refused_even_on_the_fake_backend(fake_backend):
    with pytest.raises(UnsupportedError, match="estimation only"):
        runner.preflight(RunSpec(model_id="deepseek-r1"))


def test_summary_keys_are_a_runs():
    result = estimator.estimate(bf16("gpt2", new_tokens=8, batch_size=4), H200)
    assert set(result.summary) == RUN_SUMMARY_KEYS
    s = result.summary
    assert s["e2e_s"] == pytest.approx(s["ttft_s"] + 7 * s["tpot_s"])
    assert s["decode_tokens_per_s"] == pytest.approx(4 / s["tpot_s"])
    assert s["requests_per_s"] == pytest.approx(4 / s["e2e_s"])
    assert s["total_tokens_per_s"] == pytest.approx(4 * (64 + 8) / s["e2e_s"])
    one = estimator.estimate(bf16("gpt2", new_tokens=1), H200)
    assert "tpot_s" not in one.summary and one.summary["e2e_s"] == one.summary["ttft_s"]


def test_an_encoder_is_one_pass():
    result = estimator.estimate(bf16("all-minilm-l6-v2", batch_size=2), H200)
    assert set(result.summary) == {"e2e_s", "total_tokens_per_s", "requests_per_s",
                                   "peak_memory_bytes"}
    assert list(result.breakdown) == ["prefill"]
    assert result.summary["total_tokens_per_s"] == pytest.approx(2 * 64 / result.summary["e2e_s"])


def test_this_machine_adds_overhead_to_measured_work():
    result = estimator.estimate(RunSpec(model_id="smollm2-135m-instruct"), "this")
    decode = result.breakdown["decode"]
    assert decode["overhead_s"] == pytest.approx(30 * 0.3e-3)
    assert decode["total_s"] == pytest.approx(decode["overhead_s"] + decode["memory_s"])
    assert result.hardware.measured and result.spec.hardware == "this"
    assert any("measured here" in sentence for sentence in result.assumptions)


def test_a_cpu_runs_attention_in_a_kernel_of_its_own():
    # SmolLM2-135M: QK^T and AV cost 4 x 30 layers x 9 heads x 64 FLOPs per (query, key) pair;
    # a causal prompt of 256 tokens has 256 x 257 / 2 pairs, a decode step its mean context.
    per_pair = 4 * 30 * 9 * 64
    spec = bf16("smollm2-135m-instruct", batch_size=4, prompt_tokens=256, new_tokens=16)
    float32 = 100e9                                   # the declared float32 ceiling
    result = estimator.estimate(spec, "this")
    prefill_rate = calibration.CPU_PREFILL_ATTENTION_FRACTION * 256 / (256 + 64) * float32
    assert result.breakdown["prefill"]["attention_s"] == pytest.approx(
        4 * per_pair * 256 * 257 / 2 / prefill_rate)
    decode = result.breakdown["decode"]
    assert decode["attention_s"] == pytest.approx(
        4 * per_pair * (256 + 8) / (calibration.CPU_DECODE_ATTENTION_FRACTION["bfloat16"] * float32))
    assert decode["attention_s"] < decode["compute_s"]          # a part of the arithmetic
    longer = estimator.estimate(spec.replace(prompt_tokens=512), "this")
    assert longer.breakdown["decode"]["attention_s"] > decode["attention_s"]
    float32_run = estimator.estimate(spec.replace(dtype="float32"), "this")
    assert float32_run.breakdown["decode"]["attention_s"] < decode["attention_s"] / 5
    # An accelerator's attention runs at its matmul rate: no term of its own.
    assert estimator.estimate(spec, H200).breakdown["decode"]["attention_s"] == 0


def test_every_assumption_names_its_source():
    result = estimator.estimate(bf16("smollm2-135m-instruct"), H200, 2)
    words = " ".join(result.assumptions)
    for source in ("nvidia.com/en-us/data-center/h200", "Databricks", "gpt-fast",
                   "docs/MEASURING.md", "vLLM"):
        assert source in words


@pytest.mark.parametrize("hardware_id, gpus, error, message", [
    ("h300", 1, UnsupportedError, "No hardware profile 'h300'"),
    ("laptop-cpu", 2, UnsupportedError, "single device"),
    ("this", 2, UnsupportedError, "single device"),
    (H200, 0, InvalidSpecError, "gpus must be a whole number between 1 and 1024"),
])
def test_bad_profiles_and_device_counts_are_refused(hardware_id, gpus, error, message):
    with pytest.raises(error, match=message):
        estimator.estimate(RunSpec(), hardware_id, gpus)


def test_float8_is_an_estimate_only_number_format():
    assert estimator.split_dtype("float8") == ("bfloat16", "float8")
    assert estimator.split_dtype("int8") == ("int8", None)
    with pytest.raises(InvalidSpecError, match="float8"):
        estimator.split_dtype("float4")
    with pytest.raises(InvalidSpecError, match="16-bit activations"):
        estimator.estimate(RunSpec(), H200, weights="float8")
    assert "float8" not in RunSpec.__dataclass_fields__["dtype"].metadata["choices"]


# --- software stacks and their weight formats ----------------------------------------------

LLAMA_8B = "deepseek-r1-distill-llama-8b"


def test_a_block_format_reads_its_bits_and_multiplies_at_the_16_bit_rate_on_an_h200():
    from lib.estimate import roofline
    from lib.models.shapes import shapes

    f16_spec = RunSpec(model_id=LLAMA_8B, dtype="float16")
    gguf_spec = f16_spec.replace(stack="llama.cpp", dtype="q4_k_m")
    f16, gguf = estimator.estimate(f16_spec, H200), estimator.estimate(gguf_spec, H200)
    # Both caches hold float16 (llama.cpp's whatever the weights): only the weights shrink.
    c16 = roofline.costs(shapes(LLAMA_8B), f16_spec).decode
    assert gguf.floor["decode_bytes"] == pytest.approx(c16.weight_bytes * 4.9 / 16 + c16.kv_bytes)
    # Native: within 3x of its memory floor (eager float16 is overhead-bound, 6x above it).
    assert (gguf.floor["decode_bound"], f16.floor["decode_bound"]) == ("memory", "overhead")
    assert gguf.floor["tpot_s"] / f16.floor["tpot_s"] == pytest.approx(
        gguf.floor["decode_bytes"] / f16.floor["decode_bytes"])
    assert gguf.breakdown["decode"]["memory_s"] == pytest.approx(
        gguf.floor["decode_bytes"] / (0.65 * 4.8e12))
    assert gguf.floor["matmul_flops_per_s"] == hardware.get(H200).peak_flops("float16")
    # A native engine: compiled code's share of the eager overhead per layer.
    assert gguf.breakdown["decode"]["overhead_s"] == pytest.approx(
        32 * 0.63e-3 * calibration.COMPILED_OVERHEAD_FRACTION)
    assert gguf.weights_dtype == "q4_k_m" and gguf.spec.stack == "llama.cpp"
    assert gguf.memory_need.weights_bytes < f16.memory_need.weights_bytes / 3
    words = gguf.assumptions
    assert ("Q4_K_M weights are read at 4.9 bits each and multiplied in float16 (the estimate "
            "assumes the engine dequantizes on the fly).") in words
    assert "llama.cpp keeps its KV cache in float16 (2 bytes a number), whatever the weights." \
        in words
    assert any("llama.cpp, a native engine" in sentence for sentence in words)


def test_native_engines_on_this_cpu_follow_the_llama_cpp_calibration():
    # Declared: 12 GB/s, 100 GFLOP/s float32 (20 float16), 0.3 ms per layer.
    spec = RunSpec(stack="llama.cpp", dtype="q4_1", prompt_tokens=64, new_tokens=32)
    result = estimator.estimate(spec, "this")
    decode = result.breakdown["decode"]
    assert decode["memory_s"] == pytest.approx(result.floor["decode_bytes"] / (0.65 * 12e9))
    assert decode["overhead_s"] == pytest.approx(30 * 0.3e-3 * 0.1)
    attention_flops = 4 * 30 * 9 * 64 * (64 + 16)
    assert decode["compute_s"] == pytest.approx(
        (result.floor["decode_flops"] - attention_flops) / (0.20 * 100e9)
        + attention_flops / (0.15 * 100e9))
    assert decode["total_s"] == pytest.approx(
        decode["overhead_s"] + max(decode["memory_s"], decode["compute_s"]))
    # llama.cpp widens F16 weights to float32 on a CPU: the float32 figure, not torch's float16.
    f16 = estimator.estimate(spec.replace(dtype="float16"), "this")
    assert f16.floor["matmul_flops_per_s"] == 100e9
    assert estimator.estimate(RunSpec(dtype="float16"), "this").floor["matmul_flops_per_s"] \
        == 20e9
    assert any("measured with llama.cpp" in sentence for sentence in result.assumptions)


@pytest.mark.parametrize("changes, weights, message", [
    ({"stack": "llama.cpp", "dtype": "int8"}, None, "llama.cpp does not run weights in int8"),
    ({"dtype": "q4_1"}, None, "transformers (PyTorch) does not run weights in Q4_1"),
    ({"stack": "onnxruntime", "dtype": "q8_0"}, None, "ONNX Runtime does not run weights in Q8_0"),
    ({"stack": "llama.cpp", "dtype": "bfloat16"}, "float8", "llama.cpp has no float8 format"),
    ({"stack": "llama.cpp", "dtype": "q4_k_m", "compile": "on"}, None,
     "llama.cpp has no torch.compile setting"),
])
def test_an_estimate_refuses_what_its_stack_cannot_run(changes, weights, message):
    with pytest.raises(UnsupportedError, match=re.escape(message)):
        estimator.estimate(RunSpec(**changes), H200, weights=weights)


def test_every_weight_format_is_an_estimate_format():
    from lib.cli import parser
    from lib.core.stacks import FORMATS
    assert set(FORMATS) < set(estimator.ESTIMATE_DTYPES) == set(parser.ESTIMATE_DTYPES)
    assert estimator.split_dtype("q4_k_m") == ("q4_k_m", None)


def test_a_stack_estimate_flows_through_the_engine():
    measurement = runner.run(RunSpec(stack="onnxruntime", dtype="int4", hardware=H200,
                                     new_tokens=2))
    assert not measurement.measured and measurement.spec.stack == "onnxruntime"


# --- a spec naming hardware: one computed repetition ---------------------------------------

def test_a_spec_with_hardware_is_one_repetition_without_warm_up():
    spec = RunSpec(hardware=H200, repetitions=9, warmup_runs=3, min_duration_s=5.0)
    assert (spec.repetitions, spec.warmup_runs, spec.min_duration_s) == (1, 0, 0.0)
    with pytest.raises(InvalidSpecError, match="gpus=4 applies to estimates only"):
        RunSpec(gpus=4)
    with pytest.raises(InvalidSpecError, match="hardware must name a hardware profile"):
        RunSpec(hardware=" ")
    # Saved runs from before hardware existed open as live runs; new ones keep it.
    assert from_saved({"model_id": "gpt2"}).hardware is None
    assert from_saved({"hardware": None, "gpus": 1}).hardware is None
    assert from_saved({"hardware": H200, "gpus": 8}).gpus == 8


def test_an_estimate_flows_through_the_engine_marked_estimated():
    spec = bf16("gpt2", hardware=H200, new_tokens=4, batch_size=2)
    measurement = runner.run(spec)
    expected = estimator.estimate(spec, H200)
    assert measurement.provenance.backend == "estimator"
    assert not measurement.measured and measurement.provenance.kind == results.ESTIMATED
    assert len(measurement.repetitions) == 1 and measurement.warmup_s == ()
    rep = measurement.repetitions[0]
    offsets = [t - rep.start_s for t in rep.token_times_s]
    ttft, tpot = expected.summary["ttft_s"], expected.summary["tpot_s"]
    assert offsets == pytest.approx([ttft, ttft + tpot, ttft + 2 * tpot, ttft + 3 * tpot])
    assert rep.peak_memory_bytes == int(expected.summary["peak_memory_bytes"])
    summary = stats.summarize(measurement)
    for name, dist in summary.metrics.items():
        row = dist.to_dict()
        assert row["n"] == 1 and row["median"] is not None
        assert all(row[key] is None for key in ("p10", "p25", "p75", "p90", "p95", "p99",
                                                "iqr")), name
        assert dist.band().kind == "estimate"
    assert summary.metrics["tpot_s"].median == pytest.approx(tpot)
    assert [w.code for w in summary.warnings] == ["estimated"]
    document = export.to_dict(measurement, summary)
    reopened = results.from_dict(document)
    assert reopened.provenance.kind == "estimated" and reopened.spec.hardware == H200


def test_an_estimate_is_saved_and_reopened_as_estimated():
    measurement = runner.run(bf16("gpt2", hardware=H200, new_tokens=2))
    entry_id, problem = saving.save_run(measurement, stats.summarize(measurement))
    assert problem is None
    from lib.records.store import Store
    opened = documents.open_entry(Store().export(entry_id), entry_id)
    assert opened.measurement.provenance.kind == "estimated"
    assert opened.rows[0]["provenance"] == "estimated"
    assert opened.rows[0]["tpot_s_p90"] is None and opened.rows[0]["tpot_s_n"] == 1
    assert [w.code for w in opened.summary.warnings] == ["estimated"]


def test_an_oversize_estimate_is_refused_by_the_runner_with_the_count():
    with pytest.raises(MemoryGuardError, match="It needs at least 11 of them"):
        runner.run(bf16("deepseek-r1", hardware=H200, gpus=8))


def test_estimates_never_count_as_memory_other_models_would_free():
    from lib.measure.cache import ModelCache
    cache = ModelCache(max_entries=1)
    try:
        runner.run(bf16("deepseek-r1-distill-llama-8b", hardware=H200), cache=cache)
        assert cache.releasable_bytes("cpu") == 0
    finally:
        cache.close()


def test_a_sweep_of_estimates_has_one_repetition_per_point():
    from lib.measure import sweep
    from lib.measure.factors import get_factor
    from lib.measure.cache import ModelCache

    base = bf16("gpt2", hardware=H200, new_tokens=4)
    factors = [(get_factor("batch"), [1, 4])]
    cache = ModelCache(max_entries=1)
    try:
        with runner.SweepPoints(cache, "test sweep") as points:
            result = sweep.run_sweep(base, factors, points)
    finally:
        cache.close()
    assert [len(p.measurement.repetitions) for p in result.points] == [1, 1]
    assert all(not p.measurement.measured for p in result.points)


# --- python -m lib estimate -------------------------------------------------------------------

def invoke(argv, capsys):
    from lib.cli import main
    try:
        status = main.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_estimate_prints_one_json_object(capsys):
    import json
    status, out, err = invoke(["estimate", "--model", "gpt2", "--hardware", H200, "--dtype",
                               "bfloat16", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert set(document["summary"]) == RUN_SUMMARY_KEYS
    assert all(isinstance(v, float) for v in document["summary"].values())
    assert document["provenance"] == {"kind": "estimated", "backend": "estimator",
                                      "hardware": H200, "gpus": 1}
    assert {"ttft_s", "tpot_s", "prefill_bound", "decode_bound"} <= set(document["floor"])
    assert document["bound"] == {"prefill": "overhead", "decode": "overhead"}
    assert document["assumptions"] and "fits on NVIDIA H200 SXM 141GB: it needs about" in document["memory_verdict"]
    assert document["spec"]["hardware"] == H200 and document["spec"]["repetitions"] == 1


def test_cli_estimates_deepseek_r1_in_its_published_float8(capsys):
    import json
    status, out, err = invoke(["estimate", "--model", "deepseek-r1", "--hardware", H200,
                               "--gpus", "8", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["weights_dtype"] == "float8" and document["spec"]["dtype"] == "bfloat16"
    assert document["memory"] == {"fits": True, "devices_needed": 6}
    status, out, err = invoke(["estimate", "--model", "deepseek-r1", "--hardware", H200,
                               "--gpus", "8", "--dtype", "bfloat16"], capsys)
    assert status == 2 and out == ""
    assert err.startswith("error: ") and "It needs at least 11 of them: use --gpus 11" in err


def test_cli_estimates_a_stacks_format(capsys):
    import json
    documents = {}
    for dtype, stack in (("float16", "transformers"), ("q4_k_m", "llama.cpp")):
        status, out, err = invoke(["estimate", "--model", LLAMA_8B, "--hardware", H200,
                                   "--dtype", dtype, "--stack", stack, "--json"], capsys)
        assert status == 0, err
        documents[dtype] = json.loads(out)
    gguf, f16 = documents["q4_k_m"], documents["float16"]
    assert gguf["weights_dtype"] == "q4_k_m" and gguf["spec"]["stack"] == "llama.cpp"
    assert gguf["floor"]["tpot_s"] < f16["floor"]["tpot_s"] * 0.35      # 4.9 of 16 bits + cache
    assert any(s.startswith("Q4_K_M weights are read at 4.9 bits") for s in gguf["assumptions"])
    status, out, err = invoke(["estimate", "--hardware", H200, "--dtype", "q4_k_m", "--stack",
                               "llama.cpp"], capsys)
    assert status == 0 and out.startswith(
        "ESTIMATE (not measured): smollm2-135m-instruct on NVIDIA H200 SXM 141GB, q4_k_m, batch "
        "1, prompt 64 tokens, output 32 tokens, llama.cpp\n"), err


def test_cli_estimate_text_says_it_is_an_estimate(capsys):
    status, out, err = invoke(["estimate", "--model", "gpt2", "--hardware", "tpu-v6e",
                               "--gpus", "4", "--dtype", "bfloat16"], capsys)
    assert status == 0, err
    assert out.startswith("ESTIMATE (not measured): gpt2 on 4 x Google Cloud TPU v6e")
    assert "Time per output token (TPOT)" in out and "assumptions:" in out


@pytest.mark.parametrize("argv, message", [
    (["estimate", "--hardware", "h300"], "No hardware profile 'h300': choose one of this,"),
    (["estimate", "--gpus", "0"], "gpus must be between 1 and 1024 (got 0)"),
    (["estimate", "--hardware", "phone-npu", "--gpus", "2"], "single device"),
    (["estimate", "--dtype", "float4"], "invalid choice: 'float4'"),
    (["run", "--model", "deepseek-r1"], "is for estimation only"),
    (["run", "--gpus", "2"], "gpus=2 applies to estimates only"),
    (["estimate", "--stack", "llama.cpp", "--dtype", "int8"],
     "llama.cpp does not run weights in int8 (dynamic)"),
    (["run", "--hardware", "h200", "--stack", "llama.cpp", "--dtype", "int4"],
     "llama.cpp does not run weights in int4"),
    (["sweep", "--hardware", "h300", "--factor", "batch", "--values", "1,2"],
     "No hardware profile 'h300'"),
])
def test_cli_refusals_are_one_line(argv, message, capsys):
    status, out, err = invoke(argv, capsys)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_cli_run_with_hardware_saves_an_estimate(capsys):
    import json
    status, out, err = invoke(["run", "--model", "gpt2", "--hardware", H200, "--dtype",
                               "bfloat16", "--new-tokens", "4", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    assert document["provenance"]["kind"] == "estimated"
    assert len(document["repetitions"]) == 1
    assert document["summary"]["tpot_s"]["p90"] is None
    assert "saved as #" in err
