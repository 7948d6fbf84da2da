"""`python -m lib run`: JSON contract, readable table, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow          # each test starts a Python process; many run the model


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


@pytest.mark.parametrize("args, message", [
    (["run", "--batch", "0"], "batch_size must be between 1 and 64"),
    (["run", "--dtype", "int3"], "invalid choice: 'int3'"),
    (["run", "--new-tokens", "many"], "invalid int value: 'many'"),
    (["run", "--prompt-tokens", "8190", "--new-tokens", "10"], "reads at most 8192 tokens"),
    (["run", "--model", "gpt-9"], "Unknown model 'gpt-9'"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_arguments_exit_nonzero_with_one_line(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA present")
def test_missing_device_exits_nonzero():
    result = cli("run", "--device", "cuda")
    assert result.returncode == 2 and "not available on this machine" in result.stderr


def test_oversized_batch_is_refused_without_loading_the_model():
    result = cli("run", "--batch", "64", "--prompt-tokens", "8000", "--new-tokens", "100")
    assert result.returncode == 2
    assert "Not enough memory for batch 64 x 8100 tokens" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Loading" not in result.stderr                # refused before the weights were read


@pytest.mark.parametrize("args, message", [
    (["sweep", "--factor", "batch", "--values", ""], "No values given for batch size"),
    (["sweep", "--factor", "batch", "--values", "1,two"], "whole numbers"),
    (["sweep", "--factor", "dtype", "--values", "float32,int3"], "int3 is not a number format"),
    (["run", "--batch", "0"], "batch_size must be between 1 and 64"),
    (["run", "--prompt-tokens", "8190", "--new-tokens", "10"], "reads at most 8192 tokens"),
])
def test_bad_arguments_are_refused_before_torch_is_imported(args, message):
    code = ("import sys\nfrom lib.cli import main as cli\nstatus = cli.main(sys.argv[1:])\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)\nsys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert result.stdout.strip() == "False False"


def test_json_run_is_self_consistent():
    result = cli("run", "--model", "smollm2-135m-instruct", "--device", "cpu", "--dtype",
                 "float32", "--batch", "2", "--prompt-tokens", "64", "--new-tokens", "16",
                 "--repetitions", "5", "--min-duration", "0", "--threads", "1", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    summary, n, batch = data["summary"], 16, 2
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


def test_table_output_is_readable():
    result = cli("run", "--batch", "1", "--prompt-tokens", "16", "--new-tokens", "4",
                 "--repetitions", "2", "--min-duration", "0", "--prompt", "Hello there")
    assert result.returncode == 0, result.stderr
    assert "Time to first token (TTFT)" in result.stdout
    assert "generated text" in result.stdout
    assert "repeated" in result.stdout        # the note about fitting the user's prompt


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


def test_models_lists_the_catalog_as_json():
    result = cli("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in json.loads(result.stdout)}
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


def test_model_that_does_not_fit_is_refused_within_seconds():
    # Its own peak, through a parent of its own: RUSAGE_CHILDREN of this test process is the
    # largest child it ever had (a stack's export in an earlier test can pass 3 GB).
    watch = ("import resource, subprocess, sys\n"
             "done = subprocess.run(sys.argv[1:])\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
             "sys.exit(done.returncode)\n")
    result = subprocess.run(
        [sys.executable, "-c", watch, sys.executable, "-m", "lib", "run", "--model",
         "deepseek-r1-distill-llama-8b", "--dtype", "float32"], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env=dict(os.environ))
    peak_kib = int(result.stdout.split()[-1])
    assert peak_kib < 3 * 2**20                  # refused before any weight: far below 3 GiB
    assert result.returncode == 2
    assert "Not enough memory for batch 1 x 96 tokens of DeepSeek-R1-Distill-Llama-8B in " \
           "float32" in result.stderr
    assert "weights 32.1 GB" in result.stderr
    assert "The weights alone don't fit. Choose bfloat16 (weights about 16.1 GB)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_int8_run_reports_quantization_time():
    result = cli("run", "--dtype", "int8", "--prompt-tokens", "24", "--new-tokens", "3",
                 "--repetitions", "1", "--min-duration", "0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["load"]["quantize_s"] > 0
    assert data["spec"]["dtype"] == "int8"


def test_sweep_writes_the_tidy_table_and_findings(tmp_path):
    out = tmp_path / "sweep.csv"
    result = cli("sweep", "--factor", "batch", "--values", "1,2", "--prompt-tokens", "16",
                 "--new-tokens", "4", "--repetitions", "2", "--min-duration", "0",
                 "--threads", "1", "--csv", str(out))
    assert result.returncode == 0, result.stderr
    import csv as csv_module
    rows = list(csv_module.DictReader(out.open()))
    assert [r["batch_size"] for r in rows] == ["1", "2"]
    assert all(r["status"] == "measured" and float(r["ttft_s"]) > 0 for r in rows)
    assert "decode throughput" in result.stdout
    assert "round 2" in result.stderr
    assert {r["noisy"] for r in rows} <= {"True", "False"}
    assert all(0 <= float(r["other_cpu_percent"]) <= 100 for r in rows)


def test_sweep_bad_values_exit_with_one_line():
    result = cli("sweep", "--factor", "batch", "--values", "1,two")
    assert result.returncode == 2 and "whole numbers" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_history_export_import_round_trip(tmp_path):
    run = cli("run", "--prompt-tokens", "16", "--new-tokens", "3", "--repetitions", "1",
              "--min-duration", "0", "--threads", "1")
    assert run.returncode == 0 and "saved as #" in run.stderr
    listed = json.loads(cli("history", "--json").stdout)
    entry_id = listed[0]["id"]
    exported = cli("export", str(entry_id), "--json")
    assert exported.returncode == 0
    path = tmp_path / "run.json"
    path.write_text(exported.stdout)
    imported = cli("import", str(path))
    assert imported.returncode == 0 and "imported as #" in imported.stdout
    new_id = int(imported.stdout.split("#")[1])
    again = json.loads(cli("export", str(new_id), "--json").stdout)
    original = json.loads(exported.stdout)
    assert again.pop("imported_from") and original.pop("imported_from") is None
    assert again == original
    table = cli("history").stdout
    assert f"#{new_id}" in table and "imported from" in table
    csv_text = cli("export", str(entry_id), "--csv").stdout
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
def test_a_hostile_model_folder_is_refused_in_one_line(tmp_path, config, weights, message):
    (tmp_path / "config.json").write_text(config)
    (tmp_path / weights).write_bytes(b"\x80\x04K\x01.")          # a pickle of the number 1
    result = cli("run", "--model", str(tmp_path), timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_history_errors_are_one_line(tmp_path):
    missing = cli("export", "999999")
    assert missing.returncode == 2 and "No saved run or sweep with id 999999" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = cli("import", str(bad))
    assert result.returncode == 2 and "Can't import" in result.stderr and "not JSON" in \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
