"""`python -m lib run`: JSON contract, readable table, and one-line errors.

Refusals and the commands that only read run in this process (`fakes.run_cli`: what the
command prints and returns, the same code as `python -m lib`), with the machine's free memory
declared where the answer depends on it. A Python process is started where the process itself
is what is tested: its exit status, that a refusal never imports torch, that the CLI imports
without the UI packages, and a real run as a user starts it. The real runs are in the slow
lane.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import run_cli

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def assert_refused_in_one_line(status, out, err, message):
    assert status == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


@pytest.fixture
def nothing_loads(monkeypatch):
    """Any attempt to load a model's weights (in this process or a worker) fails the test."""
    from lib.measure import backends
    from lib.measure.cache import ModelCache

    def refuse(*args, **kwargs):
        pytest.fail("a model was loaded before the refusal")
    for backend in backends.registry().values():
        monkeypatch.setattr(type(backend), "load", refuse)
    monkeypatch.setattr(ModelCache, "get", refuse)


def free_memory(monkeypatch, free_bytes: int) -> None:
    """This machine has `free_bytes` free, whatever it really has now."""
    from lib.estimate import memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: free_bytes)


@pytest.mark.parametrize("args, message", [
    (["run", "--batch", "0"], "batch_size must be between 1 and 64"),
    (["run", "--dtype", "int3"], "invalid choice: 'int3'"),
    (["run", "--new-tokens", "many"], "invalid int value: 'many'"),
    (["run", "--prompt-tokens", "8190", "--new-tokens", "10"], "reads at most 8192 tokens"),
    (["run", "--model", "gpt-9"], "Unknown model 'gpt-9'"),
    (["fly"], "invalid choice: 'fly'"),
    (["sweep", "--factor", "batch", "--values", "1,two"], "whole numbers"),
])
def test_bad_arguments_exit_nonzero_with_one_line(args, message, nothing_loads, capsys):
    assert_refused_in_one_line(*run_cli(args, capsys), message)


@pytest.mark.slow
def test_python_m_lib_exits_with_status_2_and_one_line():
    """The process itself: `python -m lib` ends with the status `main` returned."""
    result = cli("run", "--batch", "0", timeout=60)
    assert_refused_in_one_line(result.returncode, result.stdout, result.stderr,
                               "batch_size must be between 1 and 64")


def test_missing_device_exits_nonzero(monkeypatch, nothing_loads, capsys):
    from lib.machine import devices

    monkeypatch.setattr(devices, "available_devices", lambda: ["cpu"])      # as on most machines
    devices.check_supported.cache_clear()
    try:
        status, out, err = run_cli(["run", "--device", "cuda"], capsys)
    finally:
        devices.check_supported.cache_clear()
    assert status == 2 and "not available on this machine" in err


def test_oversized_batch_is_refused_without_loading_the_model(monkeypatch, nothing_loads, capsys):
    free_memory(monkeypatch, 24 * 10**9)
    status, out, err = run_cli(["run", "--batch", "64", "--prompt-tokens", "8000",
                                "--new-tokens", "100"], capsys)
    assert_refused_in_one_line(status, out, err, "Not enough memory for batch 64 x 8100 tokens")
    assert "Loading" not in err                # refused before the weights were read


REFUSED_BEFORE_TORCH = [
    (["sweep", "--factor", "batch", "--values", ""], "No values given for batch size"),
    (["sweep", "--factor", "batch", "--values", "1,two"], "whole numbers"),
    (["sweep", "--factor", "dtype", "--values", "float32,int3"], "int3 is not a number format"),
    (["run", "--batch", "0"], "batch_size must be between 1 and 64"),
    (["run", "--prompt-tokens", "8190", "--new-tokens", "10"], "reads at most 8192 tokens"),
]


@pytest.mark.slow
def test_bad_arguments_are_refused_before_torch_is_imported():
    """In a process of its own (what it has imported is the point): after each refusal in
    turn, neither torch nor transformers has been imported."""
    code = ("import contextlib, io, json, sys\nfrom lib.cli import main as cli\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        status = cli.main(argv)\n"
            "    print(json.dumps([status, err.getvalue(), 'torch' in sys.modules,\n"
            "                      'transformers' in sys.modules]))\n")
    result = subprocess.run([sys.executable, "-c", code,
                             json.dumps([args for args, _ in REFUSED_BEFORE_TORCH])],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(outcomes) == len(REFUSED_BEFORE_TORCH)
    for (args, message), (status, err, torch, transformers) in zip(REFUSED_BEFORE_TORCH,
                                                                   outcomes):
        assert status == 2 and message in err, (args, err)
        assert not torch and not transformers, args


@pytest.mark.slow
def test_json_run_is_self_consistent(capsys):
    status, out, err = run_cli(
        ["run", "--model", "smollm2-135m-instruct", "--device", "cpu", "--dtype", "float32",
         "--batch", "2", "--prompt-tokens", "64", "--new-tokens", "8", "--repetitions", "3",
         "--min-duration", "0", "--warmup", "1", "--threads", "1", "--json"], capsys)
    assert status == 0, err
    data = json.loads(out)
    summary, n, batch = data["summary"], 8, 2
    for key in ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "total_tokens_per_s",
                "requests_per_s", "peak_memory_bytes", "itl_s"):
        assert summary[key]["n"] >= 1 and summary[key]["median"] > 0
    assert data["spec"]["batch_size"] == 2 and data["spec"]["threads"] == 1
    assert data["environment"]["torch"] and data["environment"]["cpu_model"]
    # Exact per repetition, and within 2% on the medians (docs/MEASURING.md definitions).
    for rep in data["repetitions"]:
        m = rep["metrics"]
        assert len(rep["token_offsets_s"]) == n
        assert m["e2e_s"] == pytest.approx(m["ttft_s"] + (n - 1) * m["tpot_s"], rel=1e-9)
        assert m["decode_tokens_per_s"] == pytest.approx(
            batch * (n - 1) / (m["e2e_s"] - m["ttft_s"]), rel=1e-9)
        assert rep["token_offsets_s"][-1] == pytest.approx(m["e2e_s"])
    med = {k: v["median"] for k, v in summary.items()}
    # Medians of monotone functions of the same samples agree exactly for an odd count.
    assert len(data["repetitions"]) % 2 == 1
    assert med["decode_tokens_per_s"] == pytest.approx(batch / med["tpot_s"], rel=1e-9)
    assert data["provenance"]["backend"] == "transformers"
    assert data["provenance"]["kind"] == "measured"
    assert data["provenance"]["versions"]["torch"] == data["environment"]["torch"]
    # What limited it: busy machine exactly when other programs took a material share.
    from lib.core import stats
    from lib.estimate import why
    others = stats.percentile([r["other_cpu_percent"] for r in data["repetitions"]], 50)
    assert (data["why"]["limit"] == why.BUSY_MACHINE) == why.is_busy(others)
    assert data["why"]["limit"] in why.LIMITS and data["why"]["text"]
    # The peak is the model's worker process alone, split exactly into its parts.
    memory, spec = data["memory"], data["spec"]
    from lib.models.shapes import shapes
    model = shapes(spec["model_id"])
    assert memory["peak_bytes"] == int(summary["peak_memory_bytes"]["median"])
    assert memory["weights_bytes"] == model.weight_bytes("float32")
    # The cache holds every token but the last one written (it is never fed back).
    assert memory["kv_cache_bytes"] == model.kv_bytes_per_token("float32") * batch * (64 + n - 1)
    assert memory["peak_bytes"] == (memory["weights_bytes"] + memory["kv_cache_bytes"]
                                    + memory["other_bytes"])
    assert memory["peak_bytes"] <= memory["estimate_bytes"]
    assert all(rep["other_cpu_percent"] is not None for rep in data["repetitions"])


@pytest.mark.slow
def test_table_output_is_readable():
    """A real run as a user starts it: `python -m lib run`, a table, and the run saved."""
    result = cli("run", "--batch", "1", "--prompt-tokens", "16", "--new-tokens", "4",
                 "--repetitions", "2", "--min-duration", "0", "--prompt", "Hello there")
    assert result.returncode == 0, result.stderr
    assert "Time to first token (TTFT)" in result.stdout
    assert "generated text" in result.stdout
    assert "repeated" in result.stdout        # the note about fitting the user's prompt
    assert "saved as #" in result.stderr


@pytest.mark.slow
def test_engine_and_cli_import_without_ui_packages():
    """The GPU machine has torch and transformers but no Streamlit, plotly, pandas or gguf."""
    code = (
        "import sys\n"
        "for name in ('streamlit', 'plotly', 'pandas', 'gguf', 'llama_cpp', 'onnxruntime_genai',\n"
        "             'onnxruntime'):\n"
        "    sys.modules[name] = None   # import fails; find_spec says 'not installed'\n"
        "import lib.cli.main, lib.measure.runner, lib.records.export, lib.core.stats, lib.measure.engine, lib.measure.backends\n"
        "import lib.models.shapes, lib.models.loading\n"
        "assert set(lib.measure.backends.registry()) >= {'transformers', 'encoder', 'llama.cpp',\n"
        "                                         'onnxruntime'}\n"
        "lib.models.shapes.shapes('smollm2-135m-instruct')\n"
        "sys.exit(lib.cli.main.main(['run', '--help']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for field in ("--model", "--device", "--dtype", "--batch", "--prompt-tokens", "--new-tokens",
                  "--repetitions", "--min-duration", "--warmup", "--threads", "--attention",
                  "--kv-cache", "--compile", "--prompt"):
        assert field in result.stdout
    assert "{float32,bfloat16,float16,int8,q8_0,q4_k_m,q4_1,int4}" in result.stdout
    assert "(default: 64)" in result.stdout and "(default: sdpa)" in result.stdout


def test_models_lists_the_catalog_as_json(capsys):
    status, out, err = run_cli(["models", "--json"], capsys)
    assert status == 0, err
    rows = {row["id"]: row for row in json.loads(out)}
    assert len(rows) == 11
    assert rows["deepseek-r1"]["estimate_only"] is True
    assert rows["deepseek-r1"]["parameters"] == 671_026_404_352
    assert "estimate_only" not in rows["gpt2"]
    assert rows["smollm2-135m-instruct"]["weights"] == "trained"
    assert rows["all-minilm-l6-v2"]["kind"] == "encoder"
    assert rows["gpt2"]["parameters"] == 124_439_808
    moe = rows["deepseek-v3-mini-moe"]
    assert moe["active_parameters"] < moe["parameters"]
    assert "active_parameters" not in rows["llama-3.2-1b"]
    # Which engines run each entry: the Llama/Qwen2 families on all three, the rest on one.
    assert rows["smollm2-135m-instruct"]["stacks"] == ["transformers", "llama.cpp", "onnxruntime"]
    assert rows["qwen2.5-0.5b"]["stacks"] == ["transformers", "llama.cpp", "onnxruntime"]
    assert rows["gpt2"]["stacks"] == rows["all-minilm-l6-v2"]["stacks"] == ["transformers"]
    for row in rows.values():
        assert {"layers", "hidden_size", "attention_heads", "kv_heads", "vocab_size",
                "context_length"} <= set(row)


@pytest.mark.parametrize("free_gb, advice", [
    (24, "The weights alone don't fit. Choose bfloat16 (weights about 16.1 GB), or a smaller "
         "model."),
    (8, "The weights alone don't fit. Choose a smaller model."),     # bfloat16 needs ~20 GB
])
def test_model_that_does_not_fit_is_refused_before_any_weight(free_gb, advice, monkeypatch,
                                                              nothing_loads, capsys):
    free_memory(monkeypatch, free_gb * 10**9)
    status, out, err = run_cli(["run", "--model", "deepseek-r1-distill-llama-8b", "--dtype",
                                "float32"], capsys)
    assert_refused_in_one_line(
        status, out, err, "Not enough memory for batch 1 x 96 tokens of "
        "DeepSeek-R1-Distill-Llama-8B in float32")
    assert "weights 32.1 GB" in err
    assert advice in err


def test_int8_run_reports_quantization_time(fake_backend, capsys):
    """The JSON carries the load's quantization time (the fake's 0.5 s; a real int8 load's is
    test_models.py's test_int8_runs_and_reports_its_quantization_time)."""
    status, out, err = run_cli(["run", "--dtype", "int8", "--prompt-tokens", "24",
                                "--new-tokens", "3", "--repetitions", "1", "--min-duration", "0",
                                "--json"], capsys)
    assert status == 0, err
    data = json.loads(out)
    assert data["load"]["quantize_s"] == 0.5
    assert data["spec"]["dtype"] == "int8"


@pytest.mark.slow
def test_sweep_writes_the_tidy_table_and_findings(tmp_path, capsys):
    out_path = tmp_path / "sweep.csv"
    status, out, err = run_cli(["sweep", "--factor", "batch", "--values", "1,2",
                                "--prompt-tokens", "16", "--new-tokens", "4", "--repetitions", "2",
                                "--min-duration", "0", "--threads", "1", "--csv", str(out_path)],
                               capsys)
    assert status == 0, err
    import csv as csv_module
    rows = list(csv_module.DictReader(out_path.open()))
    assert [r["batch_size"] for r in rows] == ["1", "2"]
    assert all(r["status"] == "measured" and float(r["ttft_s"]) > 0 for r in rows)
    assert "decode throughput" in out
    assert "round 2" in err
    assert {r["noisy"] for r in rows} <= {"True", "False"}
    assert all(0 <= float(r["other_cpu_percent"]) <= 100 for r in rows)


def test_history_export_import_round_trip(tmp_path, fake_backend, capsys):
    status, _, err = run_cli(["run", "--prompt-tokens", "16", "--new-tokens", "3",
                              "--repetitions", "1", "--min-duration", "0", "--threads", "1"],
                             capsys)
    assert status == 0 and "saved as #" in err
    listed = json.loads(run_cli(["history", "--json"], capsys)[1])
    entry_id = listed[0]["id"]
    status, exported, _ = run_cli(["export", str(entry_id), "--json"], capsys)
    assert status == 0
    path = tmp_path / "run.json"
    path.write_text(exported)
    status, imported, _ = run_cli(["import", str(path)], capsys)
    assert status == 0 and "imported as #" in imported
    new_id = int(imported.split("#")[1])
    again = json.loads(run_cli(["export", str(new_id), "--json"], capsys)[1])
    original = json.loads(exported)
    assert again.pop("imported_from") and original.pop("imported_from") is None
    assert again == original
    table = run_cli(["history"], capsys)[1]
    assert f"#{new_id}" in table and "imported from" in table
    csv_text = run_cli(["export", str(entry_id), "--csv"], capsys)[1]
    assert "ttft_s_median" in csv_text.splitlines()[0]


@pytest.mark.parametrize("config, weights, message", [
    ('{"model_type": "gpt2", "n_layer": 2}', "pytorch_model.bin",
     "are in pickle format, which can run code when loaded; this app loads only safetensors or "
     "GGUF weights. Convert them"),
    ('{"model_type": "gpt2",\n "n_layer": 2,,}', "model.safetensors",
     "config.json is not valid JSON (line 2, column 15"),
    ('["gpt2"]', "model.safetensors", "holds a JSON array, not an object of settings"),
    ('{"model_type": "gpt2", "n_positions": "long"}', "model.safetensors",
     "'n_positions' should be a positive whole number"),
])
def test_a_hostile_model_folder_is_refused_in_one_line(tmp_path, config, weights, message,
                                                       nothing_loads, capsys):
    (tmp_path / "config.json").write_text(config)
    (tmp_path / weights).write_bytes(b"\x80\x04K\x01.")          # a pickle of the number 1
    assert_refused_in_one_line(*run_cli(["run", "--model", str(tmp_path)], capsys), message)


def test_history_errors_are_one_line(tmp_path, capsys):
    status, _, err = run_cli(["export", "999999"], capsys)
    assert status == 2 and "No saved run or sweep with id 999999" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    status, _, err = run_cli(["import", str(bad)], capsys)
    assert status == 2 and "Can't import" in err and "not JSON" in err
    assert len(err.strip().splitlines()) == 1
