"""RunSpec: the one description of a run.

A frozen, hashable dataclass, so a run can be cached, saved and compared by value. Each field
carries its label, help text and bounds in `metadata`; the widgets and the CLI read them from
there, so the explanation a user sees is written once. `__post_init__` rejects impossible values
with a message that says what to choose instead. Checks that need the model (prompt + output longer
than its context) or the machine (free memory, device present) live in `lib.models` and
`lib.devices`, since a spec must be describable on any machine.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from lib.errors import InvalidSpecError

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEVICES = ("cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16", "int8")
ATTENTIONS = ("sdpa", "eager")
KV_CACHES = ("dynamic", "static")
COMPILES = ("off", "on")
MAX_PROMPT_TEXT_CHARS = 100_000


def default_threads() -> int:
    return os.cpu_count() or 1


def _field(default: Any, label: str, help: str, minimum: float | None = None,
           maximum: float | None = None, choices: tuple[str, ...] | None = None):
    metadata = {"label": label, "help": help, "min": minimum, "max": maximum, "choices": choices}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunSpec:
    model_id: str = _field(
        DEFAULT_MODEL_ID, "Model",
        "Which neural network answers. Bigger models do more arithmetic per token, so they are slower.")
    device: str = _field(
        "cpu", "Device",
        "Where the arithmetic happens: the processor (CPU) or a graphics card (CUDA, Apple MPS).",
        choices=DEVICES)
    dtype: str = _field(
        "float32", "Number format (dtype)",
        "How many bits each weight uses. float32 is the reference; bfloat16 and float16 use half the "
        "memory and are often faster, with slightly less precise results. int8 (CPU only) stores "
        "the big matrices in 8 bits: a quarter of the memory, answers drift slightly.",
        choices=DTYPES)
    batch_size: int = _field(
        1, "Batch size",
        "How many requests are answered together in one pass. Larger batches raise total throughput "
        "but make every request wait a little longer per token.", 1, 64)
    prompt_tokens: int = _field(
        64, "Prompt length (tokens)",
        "How much text goes in, counted in tokens (a token is roughly 3/4 of a word). The model reads "
        "all of it before the first answer token: the 'prefill'.", 8, None)
    new_tokens: int = _field(
        32, "Output length (tokens)",
        "How many tokens the model writes. Each one costs one 'decode' step; the count is fixed so "
        "an early stop can't shorten the run.", 1, 512)
    repetitions: int = _field(
        5, "Repetitions (at least)",
        "How many times the same request is timed. More repetitions give a steadier median and "
        "make tail percentiles meaningful. Short runs repeat more until `min_duration_s` is reached.",
        1, 100)
    min_duration_s: float = _field(
        1.0, "Minimum measuring time (s)",
        "Keep repeating until at least this much time was measured, so very short runs still give "
        "enough samples.", 0.0, 600.0)
    warmup_runs: int = _field(
        1, "Warm-up runs",
        "Untimed runs with the exact same shapes first: the first call pays one-off costs (memory "
        "allocation, kernel selection) that a real service pays once, not per request.", 0, 5)
    threads: int = _field(
        default_threads, "CPU threads",
        "How many CPU cores the arithmetic may use. More threads help big matrix products but fight "
        "with anything else running on the machine.", 1, None)
    attention: str = _field(
        "sdpa", "Attention kernel",
        "How attention is computed. 'sdpa' calls PyTorch's fused kernel; 'eager' spells out every "
        "step (scores, softmax, weighted sum) as separate operations. Same answer, different "
        "speed.", choices=ATTENTIONS)
    kv_cache: str = _field(
        "dynamic", "KV cache",
        "Where the model keeps what it remembers of earlier tokens. 'dynamic' grows it token by "
        "token; 'static' reserves room for the whole prompt and output up front, so every step "
        "has the same shapes (which torch.compile needs).", choices=KV_CACHES)
    compile: str = _field(
        "off", "torch.compile",
        "Compile the decode step into fused code first. It can remove per-operation overhead, "
        "but compiling takes about a minute on a CPU (timed apart, in the warm-up, never in a "
        "latency). Uses a static KV cache.", choices=COMPILES)
    prompt_text: str | None = _field(
        None, "Your prompt (optional)",
        "Text to send instead of the built-in prompt. It is cut or repeated to the exact prompt "
        "length, so every run has the same shape.")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise InvalidSpecError(
                    f"{f.name} must be one of {', '.join(choices)} (got {value!r}).")
            lo, hi = f.metadata["min"], f.metadata["max"]
            if lo is None and hi is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidSpecError(f"{f.name} must be a number (got {value!r}).")
            if f.type == "int" and not isinstance(value, int):
                raise InvalidSpecError(f"{f.name} must be a whole number (got {value!r}).")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise InvalidSpecError(f"{f.name} must be {bounds} (got {value}).")
        if not self.model_id.strip():
            raise InvalidSpecError("model_id is empty: pick a model from the catalog.")
        if self.threads > max(default_threads(), 1) * 4:
            raise InvalidSpecError(
                f"threads={self.threads} is far more than this machine's {default_threads()} cores: "
                f"use at most {default_threads()}.")
        if self.prompt_text is not None:
            if not self.prompt_text.strip():
                raise InvalidSpecError("Your prompt is empty: type some text, or clear the box to "
                                       "use the built-in prompt.")
            if len(self.prompt_text) > MAX_PROMPT_TEXT_CHARS:
                raise InvalidSpecError(
                    f"Your prompt has {len(self.prompt_text):,} characters; the limit is "
                    f"{MAX_PROMPT_TEXT_CHARS:,}. Paste a shorter text: it is fitted to the prompt "
                    "length anyway.")

    @property
    def total_tokens(self) -> int:
        """Context the run needs: prompt plus every generated token."""
        return self.prompt_tokens + self.new_tokens

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)


def field_info(name: str) -> dict[str, Any]:
    """Label, help and bounds of one RunSpec field, for widgets and CLI help."""
    return dict(next(f for f in dataclasses.fields(RunSpec) if f.name == name).metadata)

