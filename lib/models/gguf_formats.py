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
- The user's own .gguf file runs as is, in the format it is stored in.
Files land in `cache_dir()/gguf/<model id>/<dtype>.gguf` through a staging file and an atomic
rename, so two processes building at once both end with a good file; free disk space is checked
before writing. `gguf` and `llama_cpp` are imported only when a file is built.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from lib.core.errors import ModelLoadError, UnsupportedError
from lib.models.catalog import CATALOG, OWN, RANDOM, CatalogEntry, package_file
from lib.core.paths import cache_dir
from lib.core.spec import DEFAULT_MODEL_ID

Progress = Callable[[str], None]
# llama.h's `llama_ftype` values (the GGUF key general.file_type) of the formats offered.
FILE_TYPES = {"float32": 0, "float16": 1, "q4_1": 3, "q8_0": 7, "q4_k_m": 15}
ARCHITECTURES = ("llama", "qwen2")  # preset model types it writes (SmolLM2 is llama)
FILL_ELEMENTS = 1 << 20           # one buffer of N(0, 0.02) values, copied into every weight
CHUNK_BYTES = 64 * 2**20          # written at a time
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


# --- writing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]              # numpy order: rows last-but-one, columns last
    dtype: Any                          # numpy float32 or float16
    write: Callable[[Any], None]        # writes exactly its bytes to the open file

    @property
    def nbytes(self) -> int:
        import numpy as np
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def _write_gguf(path: Path, writer: Any, tensors: list[Tensor]) -> None:
    """Header, metadata and tensor table from `writer` (a GGUFWriter), then each tensor's data
    written by its own function, aligned as GGUF requires."""
    for tensor in tensors:
        writer.add_tensor_info(tensor.name, tensor.shape, tensor.dtype, tensor.nbytes)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    out = writer.fout[0]
    for tensor in tensors:
        _pad(out, writer.data_alignment)
        tensor.write(out)
    _pad(out, writer.data_alignment)
    writer.close()


def _pad(out: Any, alignment: int) -> None:
    out.write(b"\0" * (-out.tell() % alignment))


def dequantized(source: Path, path: Path) -> None:
    """`source` with every tensor dequantized to float32 and all its metadata kept."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(source)
    writer = GGUFWriter(None, reader.get_field("general.architecture").contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type",
                                              "general.quantization_version"):
            continue
        kind = field.types[0]
        writer.add_key_value(key, field.contents(), kind,
                             field.types[1] if kind == GGUFValueType.ARRAY else None)
    writer.add_file_type(FILE_TYPES["float32"])

    def writing(stored):
        shape = tuple(int(n) for n in reversed(stored.shape))
        return Tensor(stored.name, shape, np.float32, lambda out: dequantize(
            stored.data, stored.tensor_type).astype(np.float32, copy=False).tofile(out))
    _write_gguf(path, writer, [writing(stored) for stored in reader.tensors])


def random_weights(entry: CatalogEntry, dtype: str, path: Path) -> None:
    """A Llama or Qwen2 preset in float32 or float16, random weights (see the module)."""
    import numpy as np
    from gguf import GGUFWriter

    from lib.models.shapes import config

    cfg = config(entry)
    arch = cfg.model_type
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    rope = dict(getattr(cfg, "rope_parameters", None) or {})
    rope_theta = float(rope.get("rope_theta") or getattr(cfg, "rope_theta", 10000.0))
    writer = GGUFWriter(None, arch)
    writer.add_name(entry.display_name)
    writer.add_context_length(entry.context_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(FILE_TYPES[dtype])
    _copy_tokenizer(writer, cfg.vocab_size, entry)

    weight = np.float32 if dtype == "float32" else np.float16
    fill = (np.random.default_rng(0).standard_normal(FILL_ELEMENTS, dtype=np.float32) * 0.02) \
        .astype(weight)
    # The buffer repeated to a chunk once, then written as many times as each weight needs.
    chunk = memoryview(fill.tobytes() * max(CHUNK_BYTES // fill.nbytes, 1))
    matrix = functools.partial(_random_tensor, chunk=chunk, dtype=weight)
    ones = functools.partial(_constant_tensor, value=1.0)
    zeros = functools.partial(_constant_tensor, value=0.0)
    tensors = [matrix("token_embd.weight", (cfg.vocab_size, hidden))]
    if rope.get("rope_type") == "llama3":
        factors = _llama3_rope_factors(rope, rope_theta, head_dim)
        tensors.append(Tensor("rope_freqs.weight", factors.shape, np.float32, factors.tofile))
    for layer in range(layers):
        block = f"blk.{layer}"
        tensors += [ones(f"{block}.attn_norm.weight", (hidden,)),
                    matrix(f"{block}.attn_q.weight", (heads * head_dim, hidden)),
                    matrix(f"{block}.attn_k.weight", (kv_heads * head_dim, hidden)),
                    matrix(f"{block}.attn_v.weight", (kv_heads * head_dim, hidden)),
                    matrix(f"{block}.attn_output.weight", (hidden, heads * head_dim))]
        if arch == "qwen2":       # Qwen2 adds biases to the query, key and value projections
            tensors += [zeros(f"{block}.attn_q.bias", (heads * head_dim,)),
                        zeros(f"{block}.attn_k.bias", (kv_heads * head_dim,)),
                        zeros(f"{block}.attn_v.bias", (kv_heads * head_dim,))]
        tensors += [ones(f"{block}.ffn_norm.weight", (hidden,)),
                    matrix(f"{block}.ffn_gate.weight", (cfg.intermediate_size, hidden)),
                    matrix(f"{block}.ffn_up.weight", (cfg.intermediate_size, hidden)),
                    matrix(f"{block}.ffn_down.weight", (hidden, cfg.intermediate_size))]
    tensors.append(ones("output_norm.weight", (hidden,)))
    if not cfg.tie_word_embeddings:
        tensors.append(matrix("output.weight", (cfg.vocab_size, hidden)))
    _write_gguf(path, writer, tensors)


def _random_tensor(name: str, shape: tuple[int, ...], chunk: memoryview, dtype: Any) -> Tensor:
    import numpy as np

    def write(out: Any) -> None:
        left = math.prod(shape) * np.dtype(dtype).itemsize
        while left:
            count = min(left, len(chunk))
            out.write(chunk[:count])
            left -= count
    return Tensor(name, shape, dtype, write)


def _constant_tensor(name: str, shape: tuple[int, ...], value: float) -> Tensor:
    """Norm scales (1) and biases (0): float32, as llama.cpp keeps 1-D tensors."""
    import numpy as np
    return Tensor(name, shape, np.float32, np.full(shape, value, np.float32).tofile)


def _llama3_rope_factors(rope: dict, theta: float, head_dim: int) -> Any:
    """Llama 3's rope scaling, per frequency, as llama.cpp's converter writes it."""
    import numpy as np

    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    wavelengths = 2 * math.pi * theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    smooth = (old_context / wavelengths - low) / (high - low)
    factors = np.where(wavelengths < old_context / high, 1.0,
                       np.where(wavelengths > old_context / low, factor,
                                1 / ((1 - smooth) / factor + smooth)))
    return factors.astype(np.float32)


def _copy_tokenizer(writer: Any, vocab_size: int, entry: CatalogEntry) -> None:
    """The default model's tokenizer and chat template, its token list padded to `vocab_size`."""
    from gguf import GGUFReader, GGUFValueType, TokenType

    reader = GGUFReader(package_file(CATALOG[DEFAULT_MODEL_ID]))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        kind = field.types[0]
        if key == "tokenizer.ggml.tokens":
            if vocab_size < len(value):
                raise UnsupportedError(
                    f"{entry.display_name}'s vocabulary ({vocab_size:,}) is smaller than the "
                    f"tokenizer llama.cpp would borrow ({len(value):,}): choose the "
                    "transformers stack for it.")
            value = value + [f"[PAD{index}]" for index in range(len(value), vocab_size)]
        elif key == "tokenizer.ggml.token_type":
            value = value + [int(TokenType.UNUSED)] * (vocab_size - len(value))
        writer.add_key_value(key, value, kind,
                             field.types[1] if kind == GGUFValueType.ARRAY else None)


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
