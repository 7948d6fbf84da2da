"""RunSpec: the one description of a run.

A frozen, hashable dataclass, so a run can be cached, saved and compared by value. Each field
carries its label, help text and bounds in `metadata`; the widgets and the CLI read them from
there, so the explanation a user sees is written once. `__post_init__` rejects impossible values
with a message that says what to choose instead. Checks that need the model (prompt + output longer
than its context) or the machine (free memory, device present) live with the catalog entry and
the backends, since a spec must be describable on any machine. `lib.core.spec_text` makes
the CLI's flags from the fields, and the sidebar draws its widgets from `field_info`: no
other file restates a default, a bound or a choice.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from lib.core.errors import InvalidSpecError
from lib.core.stacks import ALIASES, FORMATS, STACK_NAMES, TRANSFORMERS

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEVICES = ("cpu", "cuda", "mps")
DTYPES = tuple(FORMATS)   # float32 bfloat16 float16 int8 (torch), q8_0 q4_k_m q4_1 (GGUF), int4
# Other names people use for the same formats (GGUF's F32/F16, ONNX's fp32/fp16, each Format's
# `aliases`) are accepted wherever a dtype is typed, and saved under the format's own name.
ATTENTIONS = ("sdpa", "eager")
KV_CACHES = ("dynamic", "static")
COMPILES = ("off", "on")
SWITCH = ("off", "on")           # a setting that is on or off: `--flag` alone turns it on
PRUNE_METHODS = ("magnitude", "layers", "mlp")
MAX_EXIT_LAYER = 1000            # the deepest catalog model has far fewer layers
SPECULATIVE = ("none", "prompt-lookup", "early-exit", "draft")
PROMPT_KINDS = ("chat", "quote")
MAX_PROMPT_TEXT_CHARS = 100_000
MAX_PROMPT_TOKENS = 131_072      # the longest context in the catalog
MAX_MODEL_ID_CHARS = 4096        # Linux's longest path (PATH_MAX); ids are far shorter
MAX_HARDWARE_ID_CHARS = 100      # profile ids are short words ("h200"); lib.estimate.hardware checks them
MAX_DEVICES = 1024               # the most devices an estimate spreads a model over
# Fields added after CSV exports existed: their columns go at the end of a row, since people's
# spreadsheets read columns by position (lib.records.export.summary_row, lib.records.table.rows).
LATER_FIELDS = ("hardware", "gpus", "stack", "quality", "prune", "exit_layer", "speculative",
                "prompt_kind")
# An estimate (a spec with `hardware`) is computed, not timed: once, with nothing to warm up.
ESTIMATE_SETTINGS = {"repetitions": 1, "warmup_runs": 0, "min_duration_s": 0.0}


def default_threads() -> int:
    """The CPU cores this process may use: its affinity mask where the system has one (a
    container or `taskset` may allow fewer cores than the machine has), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:         # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def check_threads(threads: int) -> None:
    """More threads than cores only makes them take turns, so a run on this machine may use at
    most its cores. Not one of RunSpec's own checks: a run saved on a bigger machine must still
    open here."""
    cores = default_threads()
    if threads > cores:
        raise InvalidSpecError(f"threads={threads}, but this machine has {cores} CPU cores: "
                               f"use at most {cores}.")


def _field(default: Any, flag: str, label: str, help: str, minimum: float | None = None,
           maximum: float | None = None, choices: tuple[str, ...] | None = None,
           step: float | None = None, widget: str = "number"):
    """A RunSpec field with everything the CLI flag and the sidebar widget are made from."""
    metadata = {"flag": flag, "label": label, "help": help, "min": minimum, "max": maximum,
                "choices": choices, "step": step,
                "widget": "select" if choices and widget != "checkbox" else widget}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunSpec:
    model_id: str = _field(
        DEFAULT_MODEL_ID, "--model", "Model",
        "Which neural network answers. Bigger models do more arithmetic per token, so they are slower.")
    device: str = _field(
        "cpu", "--device", "Device",
        "Where the arithmetic happens: the processor (CPU) or a graphics card (CUDA, Apple MPS).",
        choices=DEVICES)
    dtype: str = _field(
        "float32", "--dtype", "Number format (dtype)",
        "How many bits each weight uses. float32 is the reference; bfloat16 and float16 use half the "
        "memory, with slightly less precise results: faster on hardware that multiplies them "
        "natively, slower on processors that must convert them (the measured rates of this "
        "machine say which). int8 (CPU only) stores "
        "the big matrices in 8 bits: a quarter of the memory, answers drift slightly. Each "
        "software stack has its own formats: llama.cpp runs float32 (F32), float16 (F16), "
        "q8_0, q4_k_m and q4_1 (GGUF); ONNX Runtime runs float32 and int4. Fewer bits per "
        "weight means less memory to read for every token. f32, f16, fp32, fp16 and bf16 are "
        "accepted as other names.",
        choices=DTYPES)
    batch_size: int = _field(
        1, "--batch", "Batch size",
        "How many requests are answered together in one pass. Larger batches raise total throughput "
        "but make every request wait a little longer per token.", 1, 64)
    prompt_tokens: int = _field(
        64, "--prompt-tokens", "Prompt length (tokens)",
        "How much text goes in, counted in tokens (a token is roughly 3/4 of a word). The model reads "
        "all of it before the first answer token: the 'prefill'.", 8, MAX_PROMPT_TOKENS, step=8)
    new_tokens: int = _field(
        32, "--new-tokens", "Output length (tokens)",
        "How many tokens the model writes. Each one costs one 'decode' step; the count is fixed so "
        "an early stop can't shorten the run.", 1, 512)
    repetitions: int = _field(
        5, "--repetitions", "Repetitions (at least)",
        "How many times the same request is timed. More repetitions give a steadier median and "
        "make tail percentiles meaningful. Short runs repeat more until `min_duration_s` is reached.",
        1, 100)
    min_duration_s: float = _field(
        1.0, "--min-duration", "Minimum measuring time (s)",
        "Keep repeating until at least this much time was measured, so very short runs still give "
        "enough samples.", 0.0, 600.0, step=0.5)
    warmup_runs: int = _field(
        1, "--warmup", "Warm-up runs",
        "Untimed runs with the exact same shapes first: the first call pays one-off costs (memory "
        "allocation, kernel selection) that a real service pays once, not per request.", 0, 5)
    threads: int = _field(
        default_threads, "--threads", "CPU threads",
        "How many CPU cores the arithmetic may use. More threads help big matrix products but fight "
        "with anything else running on the machine.", 1, None, widget="slider")
    attention: str = _field(
        "sdpa", "--attention", "Attention kernel",
        "How attention is computed. 'sdpa' calls PyTorch's fused kernel; 'eager' spells out every "
        "step (scores, softmax, weighted sum) as separate operations. Same answer, different "
        "speed.", choices=ATTENTIONS)
    kv_cache: str = _field(
        "dynamic", "--kv-cache", "KV cache",
        "Where the model keeps what it remembers of earlier tokens. 'dynamic' grows it token by "
        "token; 'static' reserves room for the whole prompt and output up front, so every step "
        "has the same shapes (which torch.compile needs).", choices=KV_CACHES)
    compile: str = _field(
        "off", "--compile", "torch.compile",
        "Compile the decode step into fused code first. It can remove per-operation overhead, "
        "but compiling takes about a minute on a CPU (timed apart, in the warm-up, never in a "
        "latency). Uses a static KV cache.", choices=COMPILES)
    prompt_text: str | None = _field(
        None, "--prompt", "Your prompt (optional)",
        "Text to send instead of the built-in prompt. It is cut or repeated to the exact prompt "
        "length, so every run has the same shape.", widget="text")
    hardware: str | None = _field(
        None, "--hardware", "Hardware to estimate on",
        "Leave empty to measure on this machine. Name a hardware profile instead (h200, "
        "tpu-v6e, laptop-cpu, 'this' for this machine's measured ceilings) to get an ESTIMATE from a model of that hardware: nothing is "
        "timed, so it counts as one repetition with no warm-up, and it is marked estimated "
        "everywhere.", widget="text")
    gpus: int = _field(
        1, "--gpus", "Devices (estimates only)",
        "How many devices of the hardware profile share the model: its matrices are split "
        "across them (tensor parallelism; a mixture of experts spreads its experts), which "
        "divides the memory each one reads per token but adds communication between them.",
        1, MAX_DEVICES)
    stack: str = _field(
        TRANSFORMERS, "--stack", "Software stack",
        "Which inference engine runs the model: transformers (PyTorch, the reference), "
        "llama.cpp (C/C++ kernels on GGUF files) or ONNX Runtime (an exported, optimized graph). "
        "Same model, same prompt and output length; the engine alone changes how fast it goes. "
        "llama.cpp and ONNX Runtime run on the CPU.",
        choices=STACK_NAMES)
    quality: str = _field(
        "off", "--quality", "Measure quality too",
        "Also measure what these settings cost in quality, apart from the timing (about 3 s "
        "more for the built-in model on a quiet 2-core PC, 15 s with other programs keeping "
        "it busy): over a fixed text, how often the model's next-word guess agrees with "
        "the original model (transformers, float32) and its perplexity (how surprised it is by "
        "the text; lower is better). Only models with trained weights have a quality to "
        "measure.", choices=SWITCH, widget="checkbox")
    prune: str | None = _field(
        None, "--prune", "Pruning",
        "Remove part of the model before running it, to see what each kind of pruning buys in "
        "speed and costs in quality. magnitude:0.5 sets the smallest half of each weight "
        "matrix to zero (the matrices keep their size, so dense kernels are just as slow); "
        "layers:10 removes 10 whole decoder layers, middle ones first; mlp:0.5 removes the "
        "least important half of each MLP's channels (smaller matrices). Applied once to a "
        "copy of the model (transformers stack). Leave empty for the whole model.",
        widget="text")
    exit_layer: int | None = _field(
        None, "--exit-layer", "Early exit after layer",
        "Write every token from the first K decoder layers only (then the final norm and the "
        "output head), skipping the rest: less work per token, and the quality shows what "
        "the skipped layers did. Leave empty to use every layer (transformers stack).",
        1, MAX_EXIT_LAYER)
    speculative: str = _field(
        "none", "--speculative", "Speculative decoding",
        "Guess several next tokens cheaply, then check them all in one pass of the model: "
        "every guess it agrees with is a token for free. prompt-lookup guesses by copying "
        "what followed the same words earlier in the prompt (pays when the answer repeats the "
        "prompt); early-exit guesses with the model's own first layers; draft with a smaller "
        "model trained to imitate it (a student distilled here). The output is exactly the "
        "same; only the speed changes (transformers stack, batch 1).",
        choices=SPECULATIVE)
    prompt_kind: str = _field(
        "chat", "--prompt-kind", "Built-in prompt",
        "What the built-in prompt asks: chat (explain something in two sentences) or quote "
        "(repeat the text word for word, where prompt lookup pays). Your own prompt replaces "
        "it.", choices=PROMPT_KINDS)

    def __post_init__(self) -> None:
        if isinstance(self.dtype, str) and self.dtype in ALIASES:
            # Frozen: set once, here, before anyone holds it. One name per format is saved.
            object.__setattr__(self, "dtype", ALIASES[self.dtype])
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and not is_utf8(value):
                raise InvalidSpecError(
                    f"{f.name} is not valid UTF-8 text: some of its bytes don't decode. Type it "
                    "again, or save it as UTF-8 first.")
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise InvalidSpecError(
                    f"{f.name} must be one of {', '.join(choices)} (got {value!r}).")
            lo, hi = f.metadata["min"], f.metadata["max"]
            if (lo is None and hi is None) or (value is None and _optional(f.name)):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidSpecError(f"{f.name} must be a number (got {value!r}).")
            if str(f.type).startswith("int") and not isinstance(value, int):
                raise InvalidSpecError(f"{f.name} must be a whole number (got {value!r}).")
            if isinstance(value, float) and not math.isfinite(value):   # NaN passes any bound
                raise InvalidSpecError(f"{f.name} must be a finite number (got {value}).")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise InvalidSpecError(f"{f.name} must be {bounds} (got {value}).")
        if not self.model_id.strip():
            raise InvalidSpecError("model_id is empty: pick a model from the catalog.")
        if len(self.model_id) > MAX_MODEL_ID_CHARS:
            raise InvalidSpecError(
                f"model_id is {len(self.model_id):,} characters long; a catalog id, a folder or "
                f"file path, or a hub id has at most {MAX_MODEL_ID_CHARS:,}.")
        if self.threads > max(default_threads(), 1) * 4:
            raise InvalidSpecError(
                f"threads={self.threads} is far more than this machine's {default_threads()} cores: "
                f"use at most {default_threads()}.")
        if self.hardware is not None:
            if not self.hardware.strip() or len(self.hardware) > MAX_HARDWARE_ID_CHARS:
                raise InvalidSpecError(
                    "hardware must name a hardware profile such as h200 or this (`python -m "
                    "lib hardware` lists them), or be left empty to measure on this machine.")
            for name, value in ESTIMATE_SETTINGS.items():
                # Frozen: set once, here, before anyone holds it. Repetitions, warm-up and a
                # minimum time have no meaning for a number that is computed.
                object.__setattr__(self, name, value)
        elif self.gpus != 1:
            raise InvalidSpecError(
                f"gpus={self.gpus} applies to estimates only: name a hardware profile too "
                "(e.g. --hardware h200 --gpus 8), or use 1 to measure on this machine.")
        if self.prune is not None:
            object.__setattr__(self, "prune", check_prune(self.prune))
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


def check_prune(value: str) -> str | None:
    """'magnitude:0.5', 'layers:10', 'mlp:0.5' as written canonically ('none' and '' are no
    pruning); InvalidSpecError saying what to write otherwise."""
    written = value.strip().lower()
    if written in ("", "none"):
        return None
    method, _, amount = written.partition(":")
    how = ("Write pruning as METHOD:AMOUNT: magnitude:0.5 (the smallest half of each weight "
           "matrix set to zero), layers:10 (ten decoder layers removed) or mlp:0.5 (half of "
           "each MLP's channels removed)")
    if method not in PRUNE_METHODS:
        raise InvalidSpecError(f"Unknown pruning method {method!r}. {how}.")
    try:
        number = float(amount) if method != "layers" else int(amount)
    except ValueError:
        raise InvalidSpecError(f"{value!r}: the amount after the colon must be "
                               f"{'a whole number of layers' if method == 'layers' else 'a share such as 0.5'}. "
                               f"{how}.") from None
    if method == "layers":
        if number < 1:
            raise InvalidSpecError(f"layers:{number} removes no layer: remove at least 1.")
        return f"layers:{number}"
    if not (math.isfinite(number) and 0 < number < 1):
        raise InvalidSpecError(f"{method}:{amount} must remove a share between 0 and 1 "
                               "(such as 0.5 for half).")
    return f"{method}:{number:g}"


def is_utf8(text: str) -> bool:
    """False for text holding lone surrogates: bytes that did not decode (Python hands a
    command line's or a file name's bytes over that way), which no file or page can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def field_info(name: str) -> dict[str, Any]:
    """Flag, label, help, bounds, choices, step and widget kind of one RunSpec field, plus its
    default: everything a widget or a CLI flag needs; and its `words` (`label_words`)."""
    spec_field = next(f for f in dataclasses.fields(RunSpec) if f.name == name)
    default = spec_field.default_factory() if callable(spec_field.default_factory) \
        else spec_field.default
    return {**spec_field.metadata, "default": default, "type": _value_type(spec_field),
            "words": label_words(name, spec_field.metadata["label"])}


def label_words(name: str, label: str) -> str:
    """A field's label inside a sentence and on a chart's axis: 'batch size', 'CPU threads',
    'KV cache', 'number format'. Lower-cased unless it starts with an acronym, and without the
    field's own name in parentheses (the widget shows 'Number format (dtype)' so the flag's word
    can be found; a sentence names the setting once). Other parentheses stay: they carry a unit,
    'prompt length (tokens)'."""
    words = label.removesuffix(f" ({name})")
    first_word = words.split(" ")[0]
    return words if first_word[:2].isupper() else words[:1].lower() + words[1:]


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunSpec))


def from_saved(fields: dict[str, Any]) -> RunSpec:
    """The RunSpec a saved document describes, written by any version on any machine.

    Fields this version doesn't know are ignored (a newer version wrote them); missing ones take
    their defaults (an older one didn't have them). Every bound and choice is checked as usual,
    but not this machine's own limit: a run measured with 32 threads elsewhere still opens on a
    laptop with 4 cores. InvalidSpecError says which field is wrong.
    """
    known = {name: fields[name] for name in field_names() if name in fields}
    for name, value in known.items():
        if _value_type(_field_of(name)) is str and not isinstance(value, str) and \
                not (_optional(name) and value is None):
            raise InvalidSpecError(f"{name} must be text (got {type(value).__name__}).")
        # NaN passes every bound (each comparison is False); a JSON parser reads NaN.
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidSpecError(f"{name} must be a finite number (got {value}).")
    threads = known.pop("threads", None)
    if threads is None:
        return RunSpec(**known)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidSpecError(f"threads must be a whole number of at least 1 (got {threads!r}).")
    spec = RunSpec(**known, threads=1)
    # Frozen: set once, here, before anyone holds it. Only the machine check is skipped.
    object.__setattr__(spec, "threads", threads)
    return spec


def _field_of(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(RunSpec) if f.name == name)


def _optional(name: str) -> bool:
    """A field that may hold None (its annotation says `| None`)."""
    return "None" in str(_field_of(name).type)


def _value_type(spec_field: dataclasses.Field) -> type:
    annotation = str(spec_field.type).removesuffix(" | None")
    return int if annotation == "int" else float if annotation == "float" else str
