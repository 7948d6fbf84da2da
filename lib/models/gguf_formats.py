"""llama.cpp's weight files: one GGUF file per model and format, built once into the cache.

llama.cpp reads GGUF files and runs their weights as stored, so each weight format
(`lib.core.stacks.FORMATS`: F32, F16, Q8_0, Q4_K_M, Q4_1) is its own file. `gguf_file(entry, dtype)`
finds or builds it:
- The default model ships a Q4_1 file: Q4_1 is that file as is. Float32 is a GGUF written by
  dequantizing every tensor of it (gguf's own dequantizer) with all its metadata (tokenizer,
  chat template, hyperparameters) copied, so llama.cpp runs the very weights transformers runs.
  F16, Q8_0 and Q4_K_M are quantized from that float32 file by llama.cpp itself
  (`llama_model_quantize`), as people deploy them.
- A random-weight preset of the Llama or Qwen2 family (SmolLM2 is Llama) is written straight
  from its published configuration: llama.cpp's names and hyperparameters, small random values
  copied from one buffer (norms 1, biases 0), tensor by tensor in chunks, so memory stays small
  whatever the model's size. It carries the default model's tokenizer, its token list padded
  with unused "[PAD<i>]" tokens to the preset's vocabulary (llama.cpp requires one embedding row
  per token). Float32 and float16 are written directly; the other formats are quantized from
  the float16 file. Llama 3's rope scaling is written as llama.cpp's `rope_freqs` tensor.
  (Writing the files tensor by tensor is `lib.models.gguf_build`'s.)
- The user's own .gguf file runs as is, in the format it is stored in.
Files land in `cache_dir()/gguf/<model id>/<dtype>.gguf` through a staging file and an atomic
rename, so two processes building at once both end with a good file; free disk space is checked
before writing. `gguf` and `llama_cpp` are imported only when a file is built.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from lib.core.errors import ModelLoadError, UnsupportedError
from lib.core.paths import cache_dir
from lib.models.catalog import OWN, RANDOM, CatalogEntry, package_file
from lib.models.gguf_build import FILE_TYPES, dequantized, random_weights

Progress = Callable[[str], None]
ARCHITECTURES = ("llama", "qwen2")  # preset model types it writes (SmolLM2 is llama)
DISK_SLACK_BYTES = 256 * 2**20    # tokenizer metadata, alignment, and room left for the system


@dataclass(frozen=True)
class GgufFile:
    path: Path
    build_s: float | None         # time spent building it now; None when it was there already


def gguf_file(entry: CatalogEntry, dtype: str, on_progress: Progress | None = None) -> GgufFile:
    """The GGUF file of `entry` in `dtype`, built once if missing (see the module)."""
    check_supported(entry, dtype)
    ready = existing_file(entry, dtype)
    if ready is not None:
        return GgufFile(ready, None)
    from lib.core.stacks import FORMATS

    target = cached_path(entry, dtype)
    base_dtype = _base_dtype(entry, dtype)
    base = cached_path(entry, base_dtype)
    writes = [(target, dtype)] + ([(base, base_dtype)] if base != target and not base.exists()
                                  else [])
    check_disk(entry, writes)
    if on_progress:
        size = sum(_file_bytes_estimate(entry, d) for _, d in writes)
        how_long = "a few seconds" if size < 2**30 else "a minute or more"
        on_progress(f"First use of {FORMATS[dtype].label} for {entry.display_name}: building its "
                    f"llama.cpp file once ({how_long})…")
    started = time.perf_counter()
    if not base.exists():
        _atomic_write(base, lambda staging: _write_base(entry, base_dtype, staging))
    if target != base:
        _atomic_write(target, lambda staging: quantize(base, staging, dtype))
    return GgufFile(target, time.perf_counter() - started)


def existing_file(entry: CatalogEntry, dtype: str) -> Path | None:
    """The file llama.cpp opens for `entry` in `dtype` when it needs no building, else None."""
    if entry.weights == OWN:
        own = (entry.local_path or "").lower().endswith(".gguf")
        return Path(entry.local_path) if own else None
    if _is_packaged_gguf(entry) and file_type(package_file(entry)) == dtype:
        return package_file(entry)
    path = cached_path(entry, dtype)
    return path if path.exists() else None


def cached_path(entry: CatalogEntry, dtype: str) -> Path:
    return cache_dir() / "gguf" / entry.model_id / f"{dtype}.gguf"


def check_supported(entry: CatalogEntry, dtype: str | None) -> None:
    """UnsupportedError, saying what to choose instead, unless llama.cpp here can run `entry`
    in `dtype` (checked before anything is built or opened; None: in some format)."""
    if entry.weights == OWN:
        if not (entry.local_path or "").lower().endswith(".gguf"):
            raise UnsupportedError(
                f"llama.cpp runs GGUF files; {entry.display_name} is a Hugging Face model. "
                "Choose the transformers stack for it, or convert it to a .gguf file with "
                "llama.cpp's convert_hf_to_gguf.py and give that file.")
        stored = file_type(Path(entry.local_path))
        if dtype is not None and stored != dtype:
            what = f"in {stored}" if stored else "in a format this app does not offer"
            raise UnsupportedError(
                f"Your file {Path(entry.local_path).name} is stored {what}, and llama.cpp runs "
                f"it as it is: " + (f"choose {stored} as the number format." if stored else
                                    "quantize it with llama.cpp's llama-quantize to F16, Q8_0, "
                                    "Q4_K_M or Q4_1 first."))
        return
    if _is_packaged_gguf(entry):
        return
    model_type = entry.config.get("model_type")
    if entry.weights != RANDOM or model_type not in ARCHITECTURES:
        family = "GPT-2" if model_type == "gpt2" else entry.display_name
        raise UnsupportedError(
            f"llama.cpp here runs the Llama, Qwen2 and SmolLM2 families; choose the "
            f"transformers stack for {family}.")


# GGUF metadata value types (gguf's GGUFValueType): bytes of each fixed-size one.
SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
UINT32, STRING, ARRAY = 4, 8, 9


def file_type(path: Path) -> str | None:
    """The format a GGUF file is stored in (a dtype value), or None if not one offered here.

    Read from the file's header alone, skipping what comes before the key: milliseconds, where
    gguf's reader parses every value (seconds, for a tokenizer's 50,000 tokens)."""
    try:
        with open(path, "rb") as stream:
            stored = _header_uint32(stream, "general.file_type")
    except OSError as exc:
        raise ModelLoadError(f"Could not read {path} ({exc}).") from exc
    except (struct.error, KeyError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{path} is not a readable GGUF file ({exc}).") from exc
    return next((dtype for dtype, value in FILE_TYPES.items() if value == stored), None)


def _header_uint32(stream: Any, wanted: str) -> int | None:
    if stream.read(4) != b"GGUF":
        raise ValueError("it does not start with GGUF")
    _version, _tensors, values = struct.unpack("<IQQ", stream.read(20))
    for _ in range(values):
        key = stream.read(struct.unpack("<Q", stream.read(8))[0]).decode("utf-8")
        kind = struct.unpack("<I", stream.read(4))[0]
        if key == wanted and kind == UINT32:
            return struct.unpack("<I", stream.read(4))[0]
        _skip_value(stream, kind)
    return None


def _skip_value(stream: Any, kind: int) -> None:
    if kind == STRING:
        stream.seek(struct.unpack("<Q", stream.read(8))[0], os.SEEK_CUR)
    elif kind == ARRAY:
        item, count = struct.unpack("<IQ", stream.read(12))
        if item in SCALAR_BYTES:
            stream.seek(SCALAR_BYTES[item] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(stream, item)
    else:
        stream.seek(SCALAR_BYTES[kind], os.SEEK_CUR)


def _is_packaged_gguf(entry: CatalogEntry) -> bool:
    return bool(entry.package and (entry.package_path or "").endswith(".gguf"))


def _base_dtype(entry: CatalogEntry, dtype: str) -> str:
    """The file the others are quantized from: float32 for trained weights (no precision lost
    before llama.cpp's own quantizer), float16 for random ones (half the bytes to write)."""
    if dtype == "float32" or _is_packaged_gguf(entry):
        return "float32"
    return "float16"


# --- disk --------------------------------------------------------------------------------------

def _file_bytes_estimate(entry: CatalogEntry, dtype: str) -> int:
    from lib.models.shapes import shapes
    return shapes(entry.model_id).weight_bytes(dtype)


def check_disk(entry: CatalogEntry, writes: list[tuple[Path, str]]) -> None:
    """Refuse before writing when the files would not fit on the cache's disk."""
    from lib.core.metrics import format_bytes

    folder = writes[0][0].parent
    folder.mkdir(parents=True, exist_ok=True)
    need = sum(_file_bytes_estimate(entry, dtype) for _, dtype in writes) + DISK_SLACK_BYTES
    free = shutil.disk_usage(folder).free
    if need > free:
        raise UnsupportedError(
            f"llama.cpp's file{'s' if len(writes) > 1 else ''} for {entry.display_name} "
            f"({', '.join(d for _, d in writes)}) need about {format_bytes(need)} of disk, but "
            f"only {format_bytes(free)} is free in {folder}. Free some space (or set "
            "ILE_CACHE_DIR to a larger disk), or choose a smaller model or format.")


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """`write(staging)` then rename over `target`: readers never see half a file, and two
    builders at once both leave a complete one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".part", dir=target.parent)
    os.close(handle)
    staging = Path(name)
    try:
        write(staging)
        os.chmod(staging, 0o644)        # mkstemp's 0600 would hide a shared cache's files
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def _write_base(entry: CatalogEntry, dtype: str, path: Path) -> None:
    if _is_packaged_gguf(entry):
        dequantized(package_file(entry), path)
    else:
        random_weights(entry, dtype, path)


# --- quantizing --------------------------------------------------------------------------------

def quantize(source: Path, path: Path, dtype: str) -> None:
    """llama.cpp's own quantizer, every core, from `source` (float32 or float16)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = os.cpu_count() or 1
    params.ftype = FILE_TYPES[dtype]
    with _quiet():
        failed = llama_cpp.llama_model_quantize(str(source).encode(), str(path).encode(),
                                                ctypes.byref(params))
    if failed:
        raise ModelLoadError(f"llama.cpp could not quantize {source.name} to {dtype} (error "
                             f"{failed}). Delete {source.parent} and run again to rebuild it.")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """llama.cpp reports every tensor it quantizes, and every fallback to another type (for
    SmolLM2-135M, Q4_K_M needs rows of 256 numbers and falls back to Q5_0 for most matrices
    of 576): on its own stderr, past Python. The result code says whether it failed."""
    from llama_cpp import _logger
    from llama_cpp._utils import suppress_stdout_stderr

    level = _logger.logger.level
    _logger.set_verbose(False)
    try:
        with suppress_stdout_stderr(disable=False):
            yield
    finally:
        _logger.logger.setLevel(level)
