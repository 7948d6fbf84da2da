"""Memory a run will need, estimated before it starts, and whether it fits: the verdict and advice.

One estimate, one reading of free memory, one verdict: `assess()` turns a `MemoryEstimate` and
the memory free now (`free_bytes`, plus what the model cache could release by dropping other
models) into a `MemoryVerdict` whose numbers and sentence the model card, the guard and the
refusal all show, so they can never disagree. `MemoryVerdict.enforce()` raises
`MemoryGuardError` with that sentence; callers run it before a single weight is allocated.

`estimate()` is an upper bound of what a run adds to the process, checked against real peaks
(tests/test_memory_estimate.py, benchmarks/memory_grid.py): the weights (int8: the float32 model
and its quantized copy, both held while quantizing), the KV cache for batch x (prompt + output)
tokens plus one layer's copy while the dynamic cache grows by concatenation, and the working
memory of the prefill, the largest moment of a run: the attention mask, one layer's attention
(eager attention materializes batch x heads x prompt x prompt scores, several copies at once:
scaled, masked, upcast to float32 for the softmax, cast back; sdpa on the CPU runs a fused
kernel that never does), the MLP's intermediate activations, and float32 norm temporaries.
A fixed margin covers the Python process, allocator slack and the tokenizer, plus a fraction of
everything for allocator fragmentation. Only the last token's logits are computed
(transformers' `logits_to_keep=1`).

The architecture numbers it reads, with the bytes of weights and KV cache, are
`lib.models.shapes.Shapes`; what a run then used is `lib.machine.peak_memory`'s reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import psutil

from lib.core.errors import MemoryGuardError
from lib.core.metrics import format_bytes
from lib.core.stacks import FLOAT32_BYTES, FORMATS
from lib.models.shapes import Shapes, shapes

if TYPE_CHECKING:
    from lib.core.spec import RunSpec

# The model's worker process itself (Python, PyTorch, transformers: about 420 MB measured on
# this machine before any weight), plus allocator slack, tokenizer and streamer.
MARGIN_BYTES = 768 * 2**20
MARGIN_FRACTION = 0.20              # plus 20% of everything estimated: fragmentation, and
#                                     what the grid could not explain (see the commit log)
# Eager attention holds, per score, at its worst moment: the masked scores in the model's dtype,
# the float32 copy softmax makes of them (reduced precision only) and softmax's float32 output.
# In float32 the moment before is as large: the raw product and the scaled copy.
EAGER_SCORE_COPIES = 2
# The MLP holds up to this many tensors of batch x prompt x intermediate at once (SwiGLU:
# activated gate, up projection, their product; GELU: the tanh formula's temporaries).
MLP_COPIES = 4
# Norms upcast to float32; with the residual stream and a layer's input and output that makes
# this many batch x prompt x hidden float32 tensors alive at once.
HIDDEN_FLOAT32_COPIES = 10
# Queries, keys, values, their rotary-embedded and head-repeated copies and the attention output,
# in units of batch x prompt x heads x head_dim.
ATTENTION_IO_COPIES = 6
LOGITS_COPIES = 4                   # last-token logits: float32 copy, processed scores, ...


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    activations_bytes: int
    margin_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.margin_bytes

    @property
    def working_bytes(self) -> int:
        """What the card and the refusal call working memory: activations and margin."""
        return self.activations_bytes + self.margin_bytes


def estimate(shapes: Shapes, dtype: str, batch_size: int, prompt_tokens: int, new_tokens: int,
             weights_loaded: bool = False, attention: str = "eager",
             kv_cache: str = "dynamic", stack: str = "transformers") -> MemoryEstimate:
    """Upper bound of the memory one run adds. `weights_loaded`: weights are already resident.

    `attention` is the kernel ("eager" materializes the scores, "sdpa" does not; an unknown one
    counts as eager), `kv_cache` "dynamic" (grows by copying) or "static" (allocated once for
    prompt + output, and the mask spans all of it). `stack` sets the KV cache's width
    (lib.core.stacks.kv_bytes_per_number: llama.cpp keeps float16 whatever the weights).
    """
    weights = 0 if weights_loaded else shapes.load_peak_bytes(dtype)
    total_tokens = prompt_tokens + new_tokens
    kv = shapes.kv_bytes_per_token(dtype, stack) * batch_size * total_tokens
    # A dynamic cache grows by torch.cat: one layer's keys or values are held twice meanwhile.
    growing = kv // shapes.layers if new_tokens and kv_cache == "dynamic" and shapes.layers \
        else 0
    activations = (prefill_working_bytes(shapes, dtype, batch_size, prompt_tokens, attention,
                                         kv_length=total_tokens if kv_cache == "static"
                                         else prompt_tokens)
                   + growing + LOGITS_COPIES * batch_size * shapes.vocab_size * FLOAT32_BYTES)
    margin = MARGIN_BYTES + int(MARGIN_FRACTION * (weights + kv + activations))
    return MemoryEstimate(weights, kv, activations, margin)


def prefill_working_bytes(shapes: Shapes, dtype: str, batch_size: int, prompt_tokens: int,
                          attention: str, kv_length: int) -> int:
    """The prefill's largest moment beyond weights and KV cache: one layer at a time, so the
    larger of its attention and its MLP, on top of what lives through the whole forward pass."""
    width = FORMATS[dtype].number_bytes   # activations' bytes per number
    tokens = batch_size * prompt_tokens
    eager = attention != "sdpa"
    # The mask lives through every layer: eager adds a float one (batch x prompt x keys); sdpa
    # needs none with a dynamic cache (it runs causal), a boolean one with a static cache.
    if eager:
        mask = batch_size * prompt_tokens * kv_length * width
    else:
        mask = batch_size * prompt_tokens * kv_length if kv_length > prompt_tokens else 0
    hidden = HIDDEN_FLOAT32_COPIES * tokens * shapes.hidden_size * FLOAT32_BYTES
    attention_io = ATTENTION_IO_COPIES * tokens * shapes.attention_heads * shapes.head_dim * width
    scores = 0
    if eager:
        per_score = width + (FLOAT32_BYTES if width < FLOAT32_BYTES else 0) + FLOAT32_BYTES
        scores = (batch_size * shapes.attention_heads * prompt_tokens * kv_length
                  * max(per_score, EAGER_SCORE_COPIES * width))
    mlp = MLP_COPIES * tokens * shapes.intermediate_size * width
    return mask + hidden + max(attention_io + scores, mlp)


def free_bytes(device: str) -> int:
    """Memory that can be allocated on `device` right now without pushing anything out.

    The one reading every verdict uses (the card, the guard, the refusal)."""
    if device == "cuda":
        import torch
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    # MPS shares the system memory.
    return int(psutil.virtual_memory().available)


GENERIC_ADVICE = "Try smaller settings or a smaller model."


@dataclass(frozen=True)
class MemoryVerdict:
    """An estimate against the memory free now: whether it fits, in one sentence for people.

    `releasable_bytes`: what the model cache would free by dropping other loaded models before
    loading this one; it counts as available, and the sentence says so.
    """
    need: MemoryEstimate
    free_bytes: int
    device: str
    what: str                        # e.g. "batch 4 x 2,080 tokens"
    advice: str = GENERIC_ADVICE     # what to change when it does not fit, from the settings
    releasable_bytes: int = 0
    weights_loaded: bool = False

    @property
    def available_bytes(self) -> int:
        return self.free_bytes + self.releasable_bytes

    @property
    def fits(self) -> bool:
        return self.need.total_bytes <= self.available_bytes

    @property
    def breakdown(self) -> str:
        need = self.need
        weights = ("weights already loaded" if self.weights_loaded
                   else f"weights {format_bytes(need.weights_bytes)}")
        return (f"{weights}, KV cache {format_bytes(need.kv_cache_bytes)}, working memory "
                f"{format_bytes(need.working_bytes)}")

    @property
    def available_words(self) -> str:
        words = f"{format_bytes(self.free_bytes)} is free on {self.device}"
        if self.releasable_bytes:
            words += (f", plus {format_bytes(self.releasable_bytes)} that other loaded models "
                      "would give back")
        return words

    @property
    def message(self) -> str:
        """The sentence the card shows and the refusal raises: the same numbers, always."""
        need = (f"needs about {format_bytes(self.need.total_bytes)} ({self.breakdown})")
        if self.fits:
            return f"This run ({self.what}) {need}; {self.available_words}: it fits."
        return (f"Not enough memory for {self.what}: it {need}, but only "
                f"{self.available_words}, so it does NOT fit and is not run. {self.advice}")

    def enforce(self) -> "MemoryVerdict":
        """Raise MemoryGuardError with `message` unless it fits; returns itself."""
        if not self.fits:
            raise MemoryGuardError(self.message)
        return self


def assess(need: MemoryEstimate, device: str, what: str, advice: str = GENERIC_ADVICE,
           releasable_bytes: int = 0, weights_loaded: bool = False) -> MemoryVerdict:
    """`need` against the memory free on `device` now (read once, here)."""
    return MemoryVerdict(need, free_bytes(device), device, what, advice, releasable_bytes,
                         weights_loaded)


# --- advice: what to change, from the settings ------------------------------------------------

def run_advice(spec: "RunSpec", need_of: Callable[["RunSpec", bool], MemoryEstimate],
               available_bytes: int, weights_loaded: bool, dtypes: Sequence[str],
               can_switch_attention: bool = True) -> str:
    """Single changes of `spec` that would fit in `available_bytes`, never what is selected.

    `need_of(spec, weights_loaded)` is the backend's estimate; another dtype means loading the
    weights again, so it is estimated with them. Each number offered (the largest batch, the
    longest prompt or output) is the largest that fits, found by bisection: the estimate grows
    with each of them.
    """
    def fits(changed: "RunSpec", loaded: bool = weights_loaded) -> bool:
        return need_of(changed, loaded).total_bytes <= available_bytes

    options = []
    batch = _largest(1, spec.batch_size - 1, lambda b: fits(spec.replace(batch_size=b)))
    if batch is not None:
        options.append(f"batch {batch}")
    if can_switch_attention and spec.attention != "sdpa" and \
            fits(spec.replace(attention="sdpa")):
        options.append("the sdpa attention kernel")
    offered = set()
    for dtype in ("bfloat16", "float16", "int8"):
        same_size = dtype == "float16" and "bfloat16" in offered
        if dtype in dtypes and dtype != spec.dtype and not same_size and \
                fits(spec.replace(dtype=dtype), loaded=False):
            offered.add(dtype)
            options.append(dtype)
    prompt = _largest(1, (spec.prompt_tokens - 1) // 8,
                      lambda eighths: fits(spec.replace(prompt_tokens=8 * eighths)))
    if prompt is not None:
        options.append(f"a prompt of at most {8 * prompt:,} tokens")
    output = _largest(1, spec.new_tokens - 1, lambda n: fits(spec.replace(new_tokens=n)))
    if output is not None:
        options.append(f"at most {output:,} output tokens")
    if not options:
        return ("No single change of batch, prompt, output, number format or attention kernel "
                "makes it fit: combine several, or choose a smaller model.")
    return f"Any one of these fits: {', '.join(options)}; or choose a smaller model."


def _largest(low: int, high: int, fits: Callable[[int], bool]) -> int | None:
    """The largest value in [low, high] that fits (fits is monotonic: true up to some value)."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def load_advice(model_id: str, dtype: str, device: str = "cpu",
                available_bytes: int | None = None) -> str:
    """What to try when the weights alone don't fit: another dtype this device offers whose
    loading needs less (and fits, when `available_bytes` is known), with its size; never the
    dtype already chosen."""
    from lib.machine.devices import supported_dtypes

    shape = shapes(model_id)
    options = []
    for other in ("bfloat16", "int8"):
        if other == dtype or other not in supported_dtypes(device) or \
                shape.load_peak_bytes(other) >= shape.load_peak_bytes(dtype):
            continue
        need = estimate(shape, other, 1, 0, 0).total_bytes
        if available_bytes is None or need <= available_bytes:
            options.append(f"{other} (weights about {format_bytes(shape.weight_bytes(other))})")
    return ("The weights alone don't fit. Choose " + (" or ".join(options) + ", or " if options
                                                      else "") + "a smaller model.")


def guard(need: MemoryEstimate, device: str, what: str, advice: str = GENERIC_ADVICE) -> None:
    """Refuse `what` when it would not fit (callers with a spec use `Backend.guard_memory`,
    whose advice comes from the settings)."""
    assess(need, device, what, advice).enforce()
