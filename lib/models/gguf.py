"""The default model's GGUF file, converted once into plain weights in the cache folder.

transformers reads GGUF by dequantizing it: about 28 s on 2 quiet cores when left alone, because
it parses the whole file three times (config, weights, tokenizer: the 49,152-token vocabulary is
most of it) and rebuilds gguf's tensor-name table once per module (397 times); `_read_once`
memoizes both for the conversion, which then takes about 14 s (17 s beside two busy programs).
`convert_gguf(entry)` does it once, saves safetensors and the tokenizer into
`$ILE_CACHE_DIR/models/<id>` through a staging folder and an atomic rename (two processes
converting at once both end with a good copy), and later loads take a second or two.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import threading
from pathlib import Path

from lib.models.catalog import CatalogEntry, package_file
from lib.core.paths import cache_dir


def converted_folder(entry: CatalogEntry) -> Path:
    return cache_dir() / "models" / entry.model_id


def convert_gguf(entry: CatalogEntry) -> Path:
    """Dequantize the packaged GGUF once and save it as safetensors in the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = package_file(entry)
    target = converted_folder(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.model_id}-", dir=target.parent))
    try:
        with _read_once():
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent,
                                                         gguf_file=gguf_path.name)
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # After loading, the weights are plain float tensors; the GGUF marker only stops
        # save_pretrained ("not serializable").
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.exists():
                raise
            # Another process finished the same conversion first; theirs is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


_SWAPPING = threading.Lock()     # two threads converting must not swap over each other


@contextlib.contextmanager
def _read_once():
    """While converting: one parsed reader per GGUF file and one tensor-name table per
    architecture and depth. transformers imports both from the `gguf` package at each call, so
    they are swapped there for the conversion and put back after; the reader is only read from
    (its tensors are a read-only memory map), so sharing it changes no result."""
    import gguf

    readers = {}

    def shared_reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = reader(path, *args, **kwargs)
        return readers[key]

    with _SWAPPING:
        reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
        gguf.GGUFReader, gguf.get_tensor_name_map = shared_reader, functools.cache(name_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
