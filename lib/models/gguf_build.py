"""Writing GGUF files tensor by tensor: a dequantized copy, or a preset's random weights.

`dequantized(source, path)` writes `source` with every tensor dequantized to float32 and all its
metadata (tokenizer, chat template, hyperparameters) kept. `random_weights(entry, dtype, path)`
writes a random-weight preset of the Llama or Qwen2 family from its published configuration:
llama.cpp's names and hyperparameters, small random values copied from one buffer (norms 1,
biases 0), in chunks, so memory stays small whatever the model's size, with the default model's
tokenizer padded to the preset's vocabulary. Which file to build, where, and quantizing it is
`lib.models.gguf_formats`' job; `gguf` and `numpy` are imported only when a file is written.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lib.core.errors import UnsupportedError
from lib.core.spec import DEFAULT_MODEL_ID
from lib.models.catalog import CATALOG, CatalogEntry, package_file

# llama.h's `llama_ftype` values (the GGUF key general.file_type) of the formats offered.
FILE_TYPES = {"float32": 0, "float16": 1, "q4_1": 3, "q8_0": 7, "q4_k_m": 15}
FILL_ELEMENTS = 1 << 20           # one buffer of N(0, 0.02) values, copied into every weight
CHUNK_BYTES = 64 * 2**20          # written at a time


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
