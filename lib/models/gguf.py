"""The default model's GGUF file, converted once into plain weights in the cache folder.

transformers reads GGUF by dequantizing it, which takes ~20 s on 2 cores, mostly parsing
metadata. `converted(entry)` does that once, saves safetensors and the tokenizer into
`$ILE_CACHE_DIR/models/<id>` through a staging folder and an atomic rename (two processes
converting at once both end with a good copy), and later loads take a second or two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
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
