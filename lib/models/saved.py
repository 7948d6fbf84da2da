"""Hugging Face folders on disk for engines that read folders, not torch modules.

`transformers serve` (lib.serving.local) and ONNX Runtime's model builder (lib.models.onnx_build)
both start from a folder with config.json, safetensors weights and a tokenizer. The default
model has one once its GGUF file is converted (`converted`); a random-weight preset has none, so
`random_folder` builds it once (lib.models.loading.build_random), saves it as safetensors with
SmolLM2's tokenizer into `$ILE_CACHE_DIR/random-weights/<id>`, through a staging folder and an
atomic rename: two processes preparing it at once both end with a good copy. Random values time
like any others, so they are saved in bfloat16 (half the disk and half the memory while saving);
each engine casts them to the dtype it runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from lib.core.errors import UnsupportedError
from lib.models.catalog import CatalogEntry

Say = Callable[[str], None]

SAVE_DTYPE = "bfloat16"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt",
                   "vocab.txt")


def converted(entry: CatalogEntry, say: Say) -> Path:
    """A packaged GGUF model's converted folder (lib.models.gguf), converting it the first time."""
    from lib.models.gguf import convert_gguf, converted_folder

    folder = converted_folder(entry)
    if (folder / "config.json").exists():
        return folder
    say(f"First use of {entry.display_name}: converting it from its GGUF file to plain weights "
        "(about 15 s, once)…")
    return convert_gguf(entry)


def random_folder(entry: CatalogEntry, say: Say) -> Path:
    """A random-weight preset saved once (safetensors) with SmolLM2's tokenizer."""
    from lib.machine.devices import torch_dtype
    from lib.models.catalog import CATALOG
    from lib.models.loading import build_random
    from lib.core.paths import cache_dir
    from lib.core.spec import DEFAULT_MODEL_ID

    target = cache_dir() / "random-weights" / entry.model_id
    if (target / "config.json").exists():
        return target
    tokenizer_folder = converted(CATALOG[DEFAULT_MODEL_ID], say)
    check_disk(entry, target.parent)
    say(f"First use of {entry.display_name} outside transformers: saving its random weights "
        "once…")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.model_id}-", dir=target.parent))
    try:
        model = build_random(entry, torch_dtype(SAVE_DTYPE))
        model.save_pretrained(staging)
        del model
        for name in TOKENIZER_FILES:
            if (tokenizer_folder / name).exists():
                shutil.copy2(tokenizer_folder / name, staging / name)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").exists():
                raise
            # Another process saved the same preset first; theirs is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def check_disk(entry: CatalogEntry, folder: Path) -> None:
    from lib.core.metrics import format_bytes
    from lib.models.shapes import shapes

    need = shapes(entry.model_id).weight_bytes(SAVE_DTYPE)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if need * 1.1 > free:
        raise UnsupportedError(
            f"{entry.display_name} needs its random weights saved once as a file "
            f"({format_bytes(need)} in {SAVE_DTYPE}), but only {format_bytes(free)} is free "
            f"in {folder}. Free some disk space, set ILE_CACHE_DIR to a larger disk, or pick a "
            "smaller model.")
