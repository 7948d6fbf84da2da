"""Pruning and early exit, applied to a loaded torch causal LM (the transformers stack).

Each makes a variant of the shared model, once per worker process (kept while the model is):
- `layers:N` and early exit (`exit_layer`) keep a subset of the decoder layers. The variant
  shares every weight with the original (no copy): its layer and attention modules are light
  copies renumbered for the KV cache, its configuration says how many layers it has;
- `mlp:S` removes the share S of each MLP's channels with the least importance, making three
  smaller matrices per layer. Importance is activation-aware, as in NVIDIA's Minitron: a
  channel's mean magnitude on a short calibration text (the built-in prompt's passage, never
  the evaluation text) times its output weights' norm. Weights alone mislead: removing 2% of
  the channels by weight norms left SmolLM2-135M agreeing on 14% of next words;
- `magnitude:S` sets the share S of each decoder weight matrix with the smallest magnitudes to
  zero, in a copy of the model: the matrices keep their size, so dense kernels do as much work.
Layers are removed from the middle out (the first and last layers matter most, as pruning
studies find); early exit keeps the first K.
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

from lib.core.errors import UnsupportedError
from lib.core.spec import RunSpec
from lib.core.techniques import kept_layers

_VARIANTS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
COPIES_WEIGHTS = ("magnitude", "mlp")     # these variants hold weights of their own
CALIBRATION_TOKENS = 256


def applies(spec: RunSpec) -> bool:
    return spec.prune is not None or spec.exit_layer is not None


def copies_weights(spec: RunSpec) -> bool:
    """The variant holds a copy of (some of) the weights: memory beyond the shared model."""
    return spec.prune is not None and spec.prune.split(":")[0] in COPIES_WEIGHTS


def variant(model: Any, spec: RunSpec, tokenizer: Any = None) -> Any:
    """The model as `spec` runs it: itself, or its pruned / early-exit variant (made once).
    `tokenizer`: for mlp pruning's calibration text."""
    if not applies(spec):
        return model
    key = (spec.prune, spec.exit_layer)
    made = _VARIANTS.setdefault(model, {})
    if key not in made:
        if any(copies_weights_key(other) for other in made) and copies_weights(spec):
            for other in [other for other in made if copies_weights_key(other)]:
                del made[other]            # one weight-copying variant at a time: memory
        made[key] = _make(model, spec, tokenizer)
    return made[key]


def copies_weights_key(key: tuple) -> bool:
    return key[0] is not None and key[0].split(":")[0] in COPIES_WEIGHTS


def _decoder(model: Any) -> Any:
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers"):
        raise UnsupportedError("Pruning and early exit work on decoder models whose layers are "
                               "at model.model.layers (Llama, Qwen, SmolLM, Mistral and the "
                               "like); this architecture keeps them elsewhere.")
    return inner


def _light(module: Any) -> Any:
    """A copy of a module object sharing its parameters, with its own child table."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    return twin


def _make(model: Any, spec: RunSpec, tokenizer: Any = None) -> Any:
    import torch

    method, _, amount = (spec.prune or "").partition(":")
    source = copy.deepcopy(model) if method == "magnitude" else model
    decoder = _decoder(source)
    layers = list(decoder.layers)
    kept = kept_layers(len(layers), spec)
    config = copy.deepcopy(source.config)
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[index] for index in kept]
    new_layers = []
    for position, index in enumerate(kept):
        layer = _light(layers[index])
        attention = _light(layer.self_attn)
        attention.layer_idx = position                 # the KV cache is indexed by it
        layer._modules["self_attn"] = attention
        new_layers.append(layer)
    with torch.no_grad():
        if method == "magnitude":
            for layer in new_layers:
                _zero_smallest(layer, float(amount))
        elif method == "mlp":
            activity = _channel_activity(source, tokenizer)
            for layer, index in zip(new_layers, kept):
                _shrink_mlp(layer, float(amount), activity.get(index))
    outer = _light(source)
    inner = _light(decoder)
    inner._modules["layers"] = torch.nn.ModuleList(new_layers)
    inner.config = config
    outer._modules["model"] = inner
    outer.config = config
    # Its own generation settings: a speculative draft's are changed by generate as it runs.
    outer.generation_config = copy.deepcopy(source.generation_config)
    return outer


def _zero_smallest(layer: Any, share: float) -> None:
    import torch

    for module in layer.modules():
        if isinstance(module, torch.nn.Linear):
            weight = module.weight
            count = int(share * weight.numel())
            if count:
                threshold = weight.abs().flatten().kthvalue(count).values
                weight.masked_fill_(weight.abs() <= threshold, 0.0)


def _channel_activity(model: Any, tokenizer: Any) -> dict[int, Any]:
    """Each layer's mean |activation| per MLP channel (the input of down_proj) over the
    calibration text; {} without a tokenizer (weights alone then)."""
    import torch

    from lib.core.prompts import BUILTIN_CONTEXT

    if tokenizer is None:
        return {}
    ids = list(tokenizer.encode(BUILTIN_CONTEXT * 3,
                                add_special_tokens=False))[:CALIBRATION_TOKENS]
    seen: dict[int, Any] = {}
    hooks = []
    for index, layer in enumerate(_decoder(model).layers):
        down = getattr(getattr(layer, "mlp", None), "down_proj", None)
        if down is None:
            continue

        def keep(module: Any, inputs: tuple, index: int = index) -> None:
            seen[index] = inputs[0].detach().float().abs().mean(dim=(0, 1))
        hooks.append(down.register_forward_pre_hook(keep))
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([ids], device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _shrink_mlp(layer: Any, share: float, activity: Any = None) -> None:
    import torch

    mlp = getattr(layer, "mlp", None)
    names = ("gate_proj", "up_proj", "down_proj")
    if mlp is None or not all(hasattr(mlp, name) for name in names):
        raise UnsupportedError("mlp pruning needs a gated MLP (gate_proj, up_proj, down_proj), "
                               "as Llama-style models have; this one has another kind.")
    gate, up, down = (getattr(mlp, name) for name in names)
    channels = gate.weight.shape[0]
    keep = max(1, channels - int(share * channels))
    if activity is not None:
        importance = activity.to(down.weight.device) * down.weight.float().norm(dim=0)
    else:
        importance = gate.weight.float().norm(dim=1) * up.weight.float().norm(dim=1) * \
            down.weight.float().norm(dim=0)
    chosen = importance.topk(keep).indices.sort().values
    smaller = _light(mlp)
    for name, weight, bias in (
            ("gate_proj", gate.weight[chosen], None if gate.bias is None else gate.bias[chosen]),
            ("up_proj", up.weight[chosen], None if up.bias is None else up.bias[chosen]),
            ("down_proj", down.weight[:, chosen], down.bias)):
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                 dtype=weight.dtype, device=weight.device)
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
        smaller._modules[name] = linear
    if hasattr(smaller, "intermediate_size"):
        smaller.intermediate_size = keep
    layer._modules["mlp"] = smaller
