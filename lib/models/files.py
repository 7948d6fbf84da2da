"""A user's model folder, checked before anything loads it: config.json and the weight files.

"Your own model" reads files from anywhere, so each is treated as hostile until checked.
`read_config` reads config.json (at most `CONFIG_MAX_BYTES`) and says in plain words what is
wrong with one that is not UTF-8, not JSON (with its line), not a JSON object, or has a size
field that is not a positive whole number. `check_weights` accepts a folder only with
safetensors weights: weights in pickle format (`pytorch_model.bin`, `*.pt`, ...) can run code
when they are loaded, so they are refused with how to convert them, never opened. Every
problem is a `ModelLoadError`; nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lib.core.errors import ModelLoadError
from lib.core.text import one_line

CONFIG_MAX_BYTES = 8 * 2**20      # config.json files are kilobytes; one this big is something else
SAFE_WEIGHTS = (".safetensors",)
PICKLE_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Sizes transformers builds layers from: a string, a fraction or a negative number here fails
# deep inside it (or builds nonsense), so they are checked first. None means "not set".
SIZE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
               "n_positions", "n_embd", "n_inner", "n_layer", "n_head")
CONVERT_ADVICE = (
    "Convert them once, on a machine you trust, with transformers: "
    "`AutoModelForCausalLM.from_pretrained(old_folder).save_pretrained(new_folder)` writes "
    "model.safetensors; then point to the new folder.")


def read_config(config_file: Path) -> dict[str, Any]:
    """config.json's settings, or a ModelLoadError that says what is wrong with the file."""
    try:
        with open(config_file, "rb") as f:
            raw = f.read(CONFIG_MAX_BYTES + 1)
    except OSError as exc:
        raise ModelLoadError(f"Can't read {config_file} ({exc.strerror or exc}).") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ModelLoadError(f"{config_file} is larger than {CONFIG_MAX_BYTES // 2**20} MiB, so "
                             "it is not a model's config.json (those are a few kilobytes).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{config_file} is not UTF-8 text (the byte at offset {exc.start} "
                             "can't be decoded), so it is not a model's config.json.") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"config.json is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}) "
            f"in {config_file}. Fix that line, or copy the file again from where the model came "
            "from.") from None
    except (ValueError, RecursionError) as exc:      # a number too long, nesting too deep
        raise ModelLoadError(f"config.json in {config_file.parent} can't be read as settings "
                             f"({one_line(exc, 120)}).") from None
    return check_config(config, f"config.json in {config_file.parent}")


def check_config(config: Any, where: str) -> dict[str, Any]:
    """The settings of a parsed config.json (from a folder or the hub), checked for the fields
    this app reads before transformers does."""
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where} holds a JSON {_json_type(config)}, not an object of "
                             "settings, so it is not a Hugging Face config.json.")
    for key, wanted in (("model_type", str), ("architectures", list)):
        value = config.get(key)
        if value is not None and not isinstance(value, wanted):
            raise ModelLoadError(f"{where}: '{key}' should be a JSON {_json_type(wanted())}, "
                                 f"not {_shown(value)}.")
    if not all(isinstance(name, str) for name in config.get("architectures") or []):
        raise ModelLoadError(f"{where}: 'architectures' should list class names (text).")
    for key in SIZE_FIELDS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ModelLoadError(f"{where}: '{key}' should be a positive whole number, not "
                                 f"{_shown(value)}.")
    return config


def check_weights(folder: Path) -> None:
    """The folder holds safetensors weights; pickle weights are refused, never opened."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError as exc:
        raise ModelLoadError(f"Can't list {folder} ({exc.strerror or exc}).") from None
    if any(name.lower().endswith(SAFE_WEIGHTS) for name in names):
        return
    pickled = sorted(name for name in names if name.lower().endswith(PICKLE_WEIGHTS))
    if pickled:
        raise ModelLoadError(
            f"The weights in {folder} ({', '.join(pickled[:3])}) are in pickle format, which "
            "can run code when loaded; this app loads only safetensors or GGUF weights. "
            + CONVERT_ADVICE)
    raise ModelLoadError(f"{folder} has no weights (no *.safetensors file). Point to the folder "
                         "that holds config.json and model.safetensors, or to a .gguf file.")


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "true/false", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    return f"{_json_type(value)} {one_line(json.dumps(value), 60)}"


DISTILLED_FILE = "distilled.json"      # a distilled student's provenance (lib.measure.distill)
DISTILLED_MAX_BYTES = 64 * 1024


def provenance_of(folder: "str | Path | None") -> dict[str, Any] | None:
    """A distilled student's provenance (`distilled.json`) when `folder` holds one, else None
    (a damaged or oversized file is no provenance)."""
    if folder is None:
        return None
    try:
        with open(Path(folder) / DISTILLED_FILE, "rb") as handle:
            document = json.loads(handle.read(DISTILLED_MAX_BYTES + 1)[:DISTILLED_MAX_BYTES])
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def teacher_of(folder: "str | Path | None") -> str | None:
    """The teacher's model id when `folder` holds a distilled student, else None."""
    teacher = (provenance_of(folder) or {}).get("teacher")
    return teacher if isinstance(teacher, str) and len(teacher) < 200 else None


def version(reference: str) -> tuple | None:
    """What identifies the file or folder `reference` names now (its config.json for a
    folder): path, device, inode, size, modification time; None when there is nothing."""
    path = Path(reference).expanduser()
    for candidate in (path / "config.json", path):
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        return (str(candidate), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    return None
