"""Model shapes before anything loads: a build of the configuration on the meta device.

`Shapes` is what the estimates need of an architecture, with the bytes its weights and KV cache
take in each number format. `shapes(model_id)` gives exact parameter counts (total, active per token for mixtures of
experts, in Linear layers), layer and head numbers and the KV cache per token, in under a second
and with no memory: memory is estimated from it before any weight is allocated. What a build
found is kept in the cache folder, keyed by the configuration and the versions of transformers
and torch that built it, so an estimate (`python -m lib estimate`) answers without importing
either: importing them takes seconds of CPU, far more on a busy machine. The catalog's own
models come with their shapes (`catalog_shapes.json`, written by `scripts/catalog_shapes.py`
and kept true by a test), used while the entry's configuration is the one they were built from:
on a fresh machine, refusing a model too big for it needs no import of torch either. `config()` is
the one place a catalog entry's published configuration becomes a transformers config; custom
code is never run. A user's config.json that transformers can't build from is a `ModelLoadError`,
never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lib.core.errors import ModelLoadError
from lib.core.kinds import ENCODER
from lib.core.stacks import FLOAT32_BYTES, FORMATS, kv_bytes_per_number
from lib.core.text import one_line
from lib.models.catalog import OWN, CatalogEntry, get_entry


@dataclass(frozen=True)
class Shapes:
    """The architecture numbers the estimates need (from a meta-device build of the config), and
    what its weights and KV cache take in bytes."""
    parameters: int
    layers: int
    hidden_size: int
    intermediate_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    active_parameters: int | None = None       # used per token (mixtures of experts); else all
    linear_parameters: int = 0                 # weights in nn.Linear layers (int8 quantizes these)
    untied_linear_parameters: int = 0          # ... not shared with an embedding
    context_length: int = 0
    kv_elements_per_token: int | None = None   # keys + values over all layers, one token
    latent_kv_elements_per_token: int | None = None   # MLA: what a latent-caching engine keeps
    # For the roofline (lib.estimate.roofline): embedding tables no Linear shares are only gathered, one
    # row per token, never read whole (None: unknown, then the input embedding if untied).
    embedding_parameters: int | None = None
    routed_parameters: int = 0                 # mixtures of experts: all routed experts' weights
    routed_linear_parameters: int = 0          # ... of them in nn.Linear layers (int8 quantizes)
    experts: int = 0                           # routed experts per MoE layer
    experts_per_token: int = 0                 # ... of which each token uses this many

    def kv_bytes_per_token(self, dtype: str, stack: str = "transformers") -> int:
        """Keys and values, for every layer, for one token of one sequence, as `stack` keeps
        them with weights in `dtype` (lib.core.stacks.kv_bytes_per_number)."""
        elements = self.kv_elements_per_token
        if elements is None:
            elements = 2 * self.layers * self.kv_heads * self.head_dim
        return elements * kv_bytes_per_number(stack, dtype)

    def weight_bytes(self, dtype: str) -> int:
        """Resident weights once loaded (int8: quantized Linear weights, the rest float32; a
        block format: every weight at its average bits, scales included, lib.core.stacks.FORMATS)."""
        if dtype == "int8":
            return (self.parameters - self.untied_linear_parameters) * FLOAT32_BYTES + \
                self.linear_parameters
        weight_format = FORMATS[dtype]
        if weight_format.blocks:
            return weight_format.weight_bytes(self.parameters)
        return self.parameters * weight_format.number_bytes

    def load_peak_bytes(self, dtype: str) -> int:
        """Most memory while loading. int8 loads float32, then `quantize_dynamic` deep-copies
        the model before quantizing the copy: two float32 models and the int8 weights at once
        (and the process keeps most of it: the freed pieces are small, so the C allocator holds
        on to them)."""
        if dtype == "int8":
            return 2 * self.parameters * FLOAT32_BYTES + self.linear_parameters
        return self.weight_bytes(dtype)


def config(entry: CatalogEntry):
    from transformers import CONFIG_MAPPING, AutoConfig

    values = dict(entry.config)
    model_type = values.pop("model_type", None)
    if model_type is None:
        raise ModelLoadError(f"{entry.display_name}'s config.json has no model_type, so its "
                             "architecture is unknown. Use a standard Hugging Face model.")
    if model_type not in CONFIG_MAPPING:
        raise ModelLoadError(f"transformers does not know the architecture "
                             f"{one_line(model_type, 100)!r}. Custom code is never run here.")
    for key in ("transformers_version", "_name_or_path", "auto_map"):
        values.pop(key, None)
    try:
        return AutoConfig.for_model(model_type, **values)
    except Exception as exc:     # a user's setting of the wrong kind: TypeError, ValueError, or
        if entry.weights != OWN:     # huggingface_hub's StrictDataclassError, by version
            raise                # the catalog's own configurations: a bug, shown as one
        raise ModelLoadError(f"{entry.display_name}'s config.json has a setting transformers "
                             f"can't use ({one_line(exc)}).") from exc


def model_class(entry: CatalogEntry):
    from transformers import AutoModel, AutoModelForCausalLM
    return AutoModel if entry.kind == ENCODER else AutoModelForCausalLM


@functools.cache
def shapes(model_id: str) -> Shapes:
    """Architecture numbers and exact parameter counts, from a build on the meta device
    (kept: see the module)."""
    entry = get_entry(model_id)
    path = _kept_path(entry)
    try:
        return Shapes(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass                     # never built with these versions, or a damaged file: build
    found = _shipped(entry) or _build(entry)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(dataclasses.asdict(found)))
        temporary.replace(path)          # whole or not at all, for a reader in another process
    except OSError:
        pass                     # a read-only cache folder: built again next time
    return found


SHIPPED = Path(__file__).with_name("catalog_shapes.json")


def config_key(entry: CatalogEntry) -> str:
    """What a build depends on, besides the library versions."""
    key = json.dumps([entry.kind, entry.context_length, entry.config], sort_keys=True,
                     default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _shipped(entry: CatalogEntry) -> Shapes | None:
    """The catalog entry's shapes as shipped, if built from its current configuration."""
    if entry.weights == OWN:
        return None
    try:
        shipped = json.loads(SHIPPED.read_text()).get(entry.model_id)
        if shipped and shipped["config_key"] == config_key(entry):
            return Shapes(**shipped["shapes"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    return None


def _kept_path(entry: CatalogEntry) -> Path:
    from importlib.metadata import PackageNotFoundError, version

    from lib.core.paths import cache_dir

    try:
        versions = [version("transformers"), version("torch")]
    except PackageNotFoundError:
        versions = []
    key = json.dumps([entry.kind, entry.context_length, entry.config, versions],
                     sort_keys=True, default=str)
    return cache_dir() / "shapes" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _build(entry: CatalogEntry) -> Shapes:
    import torch

    cfg = config(entry)
    try:
        with torch.device("meta"):
            model = model_class(entry).from_config(cfg)
    except Exception as exc:     # a user's settings fail in many of transformers' own ways
        if entry.weights != OWN:
            raise                # the catalog's own configurations: a bug, shown as one
        raise ModelLoadError(
            f"transformers can't build {entry.display_name} from its config.json "
            f"({type(exc).__name__}: {one_line(exc)}). Check its settings, or copy it again from "
            "where the model came from.") from exc
    parameters = sum(p.numel() for p in model.parameters())     # tied weights counted once
    embeddings = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    embedding_ids = {id(w) for w in embeddings}
    linear = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    linear_ids = {id(w) for w in linear}
    routed = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    routed_linear = sum(m.weight.numel() for name, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and ".experts." in f"{name}.")
    experts = getattr(cfg, "n_routed_experts", None) or getattr(cfg, "num_local_experts", 0)
    used = getattr(cfg, "num_experts_per_tok", 0) or 0
    active = parameters - (routed * (1 - used / experts) if experts else 0)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    latent = None
    if entry.kind == ENCODER:
        kv_elements = 0
    elif getattr(cfg, "kv_lora_rank", None):     # multi-head latent attention
        per_head = cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim
        kv_elements = cfg.num_hidden_layers * kv_heads * per_head
        latent = cfg.num_hidden_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    else:
        kv_elements = cfg.num_hidden_layers * kv_heads * head_dim * 2
    intermediate = getattr(cfg, "intermediate_size", None) or \
        getattr(cfg, "n_inner", None) or 4 * cfg.hidden_size
    return Shapes(
        parameters=parameters, active_parameters=int(active),
        linear_parameters=sum(w.numel() for w in linear),
        untied_linear_parameters=sum(w.numel() for w in linear if id(w) not in embedding_ids),
        layers=cfg.num_hidden_layers, hidden_size=cfg.hidden_size,
        intermediate_size=intermediate, attention_heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, vocab_size=cfg.vocab_size, context_length=entry.context_length,
        kv_elements_per_token=kv_elements, latent_kv_elements_per_token=latent,
        embedding_parameters=sum(w.numel() for w in embeddings if id(w) not in linear_ids),
        routed_parameters=routed if experts else 0,
        routed_linear_parameters=routed_linear if experts else 0,
        experts=int(experts or 0), experts_per_token=int(used) if experts else 0)
