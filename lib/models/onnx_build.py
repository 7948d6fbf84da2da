"""ONNX Runtime's copy of a model: exported once by onnxruntime-genai's model builder.

ONNX Runtime does not run a torch module: it runs a graph of operations written to a file, with
the weights beside it (`model.onnx` + `model.onnx.data`) and a `genai_config.json` that tells
the generate() API how to feed it. `onnxruntime_genai.models.builder` writes all three from a
Hugging Face folder (config.json, safetensors, tokenizer), offline, in float32 (`-p fp32`) or
with its big matrices in 4-bit blocks (`-p int4`, MatMulNBits). It knows each architecture by
hand; the app offers it for the families tested here, the Llama and Qwen2 ones (SmolLM2 is a
Llama), and says which stack runs the others.

`built(entry, dtype, say)` exports once into `$ILE_CACHE_DIR/onnx/<model id>/<dtype>`, through a
staging folder and an atomic rename (two processes exporting at once both end with a good copy),
and returns the folder with the export's duration (None when a copy was there). The builder
runs in a child process (`sys.executable -m onnxruntime_genai.models.builder`): it loads the
whole model in float32 with transformers and holds copies while writing, which the memory
guard counts (`build_need_bytes`), and its memory goes back when it ends. Its source is the
default model's converted folder or a random-weight preset saved once (lib.models.saved).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from lib.core.errors import ModelLoadError, UnsupportedError
from lib.models.catalog import RANDOM, TRAINED, CatalogEntry

Say = Callable[[str], None]

PRECISION = {"float32": "fp32", "int4": "int4"}          # RunSpec dtype -> the builder's -p
FAMILIES = {"llama": "Llama", "qwen2": "Qwen2"}          # model_type values exported and tested
FAMILY_WORDS = "the Llama, Qwen2 and SmolLM2 families"
# The builder loads the model in float32 and holds about two more copies while it converts and
# quantizes: measured on SmolLM2-135M (538 MB in float32), a peak RSS of 1.13 GB for fp32 and
# 1.76 GB for int4, the Python process included.
BUILD_FLOAT32_COPIES = 3
# Export time, from SmolLM2-135M on 2 cores (about 7 s in fp32, 10 s in int4), for the message.
BUILD_S_PER_BILLION = {"float32": 55.0, "int4": 75.0}
MIN_TIMEOUT_S = 300.0
TIMEOUT_FACTOR = 10          # a slow machine may take this many times the estimate
OUTPUT_TAIL_LINES = 15
DISK_SLACK = 1.1


def onnx_folder(model_id: str, dtype: str) -> Path:
    from lib.core.paths import cache_dir
    return cache_dir() / "onnx" / model_id / dtype


def is_built(folder: Path) -> bool:
    """A finished export: the folder appears only by the final rename, config written last."""
    return (folder / "genai_config.json").exists() and (folder / "model.onnx").exists()


def model_bytes(folder: Path) -> int:
    """What the graph and its weights take on disk (and, opened, in memory)."""
    return sum(path.stat().st_size for path in folder.glob("model.onnx*"))


def check_supported(entry: CatalogEntry) -> None:
    """UnsupportedError unless the builder exports this entry here, naming who runs it."""
    family = FAMILIES.get(entry.config.get("model_type"))
    if family is None:
        raise UnsupportedError(
            f"ONNX Runtime here runs {FAMILY_WORDS}; choose the transformers stack for "
            f"{entry.display_name}.")
    if entry.weights == TRAINED and not (entry.package_path or "").endswith(".gguf"):
        raise UnsupportedError(f"ONNX Runtime here has no way to export {entry.display_name}; "
                               "choose the transformers stack for it.")
    if entry.weights not in (TRAINED, RANDOM):
        raise UnsupportedError(
            f"ONNX Runtime here runs the catalog's {family}-family models (the default model "
            f"and the random-weight presets of {FAMILY_WORDS}), not your own model yet: choose "
            "the transformers stack for it.")


def build_need_bytes(entry: CatalogEntry) -> int:
    """Most memory the export's child process holds (see BUILD_FLOAT32_COPIES)."""
    from lib.models.shapes import shapes
    return BUILD_FLOAT32_COPIES * shapes(entry.model_id).weight_bytes("float32")


def build_seconds(entry: CatalogEntry, dtype: str) -> float:
    from lib.models.shapes import shapes
    return shapes(entry.model_id).parameters / 1e9 * BUILD_S_PER_BILLION[dtype]


def built(entry: CatalogEntry, dtype: str, say: Say) -> tuple[Path, float | None]:
    """The exported folder and how long exporting took (None: an earlier export was reused)."""
    target = onnx_folder(entry.model_id, dtype)
    if is_built(target):
        return target, None
    check_supported(entry)
    source = _source_folder(entry, say)
    _check_disk(entry, dtype, target.parent)
    estimate_s = build_seconds(entry, dtype)
    say(f"First use of {dtype} for {entry.display_name} on ONNX Runtime: exporting it once "
        f"with the model builder ({_about(estimate_s)})…")
    staging = Path(tempfile.mkdtemp(prefix=f".{dtype}-", dir=target.parent))
    try:
        build_s = _run_builder(entry, dtype, source, staging,
                               max(MIN_TIMEOUT_S, TIMEOUT_FACTOR * estimate_s))
        try:
            os.rename(staging / "model", target)
        except OSError:
            if not is_built(target):
                raise
            # Another process finished the same export first; theirs is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, build_s


def _source_folder(entry: CatalogEntry, say: Say) -> Path:
    from lib.models import saved
    return saved.random_folder(entry, say) if entry.weights == RANDOM \
        else saved.converted(entry, say)


def _run_builder(entry: CatalogEntry, dtype: str, source: Path, staging: Path,
                 timeout_s: float) -> float:
    """Run the builder into `staging/model`; its duration, or ModelLoadError with its output."""
    output = staging / "model"
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source),
               "-o", str(output), "-p", PRECISION[dtype], "-e", "cpu",
               "-c", str(staging / "hf-cache")]
    # Offline, and without progress bars: the output is read only when something fails.
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                stdin=subprocess.DEVNULL, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ModelLoadError(
            f"Exporting {entry.display_name} to ONNX in {dtype} did not finish within "
            f"{timeout_s:.0f} s, so it was stopped. The machine may be busy: try again, or "
            "choose a smaller model.") from None
    build_s = time.perf_counter() - started
    if result.returncode != 0 or not is_built(output):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-OUTPUT_TAIL_LINES:])
        raise ModelLoadError(
            f"ONNX Runtime's model builder could not export {entry.display_name} in {dtype} "
            f"(exit code {result.returncode}). Its last lines:\n{tail}")
    return build_s


def _check_disk(entry: CatalogEntry, dtype: str, folder: Path) -> None:
    from lib.core.metrics import format_bytes
    from lib.models.shapes import shapes

    need = shapes(entry.model_id).weight_bytes(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need * DISK_SLACK > free:
        raise UnsupportedError(
            f"Exporting {entry.display_name} to ONNX in {dtype} writes about "
            f"{format_bytes(need)}, but only {format_bytes(free)} is free in {folder}. Free "
            "some disk space, set ILE_CACHE_DIR to a larger disk, or choose int4 or a smaller "
            "model.")


def _about(seconds: float) -> str:
    if seconds < 20:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90:
        return f"about {round(seconds / 5) * 5} s"
    return f"about {round(seconds / 60):.0f} min"
