"""Software stacks: the engines that can run the same model, and the weight formats each offers.

A stack is a whole inference engine: transformers (PyTorch, the app's reference), llama.cpp
(through llama-cpp-python, on GGUF files) or ONNX Runtime (through onnxruntime-genai, on a
graph its model builder writes). Each runs through its own backend (`lib.measure.backends`), with the
same warm-up, repetition and timing rules, so a sweep over stacks is a fair comparison.

The optional stacks are native packages: ONNX Runtime comes with the plain setup (prebuilt
wheels), llama.cpp is compiled for this machine in the background once the app is up
(`lib.core.stack_build`; `scripts/setup.sh --stacks` does it in the foreground). This module only
looks them up (`installed`, `version`), never imports them, so the app and the CLI work without
them and say where they stand; a stack installed while the app runs becomes choosable at once.

A weight format is a `dtype` value (`lib.core.spec.DTYPES`): the torch ones (float32, bfloat16,
float16, int8), llama.cpp's GGUF types (q8_0, q4_k_m, q4_1; float32 and float16 are its F32 and
F16) and ONNX Runtime's int4. `FORMATS` holds one `Format` record for each: how many bits a
weight takes on average (what the memory estimate and the estimator's floors read), how wide
its activations are, the other names people type for it, the stacks that run it (a stack's
`dtypes` are read from there), torch's name for it, and in words what it is;
`kv_bytes_per_number` how wide each stack keeps its KV cache, which need not be the weights'.
`STACK_SETTINGS` are the RunSpec settings only transformers has.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util
import math
from dataclasses import dataclass

from lib.core.errors import UnsupportedError

TRANSFORMERS, LLAMA_CPP, ONNXRUNTIME = "transformers", "llama.cpp", "onnxruntime"
ONNX_CLI_HINT = "`scripts/setup.sh` installs it (prebuilt, under a minute)."


@dataclass(frozen=True)
class Stack:
    name: str                     # the `stack` value (RunSpec, CLI, saved results)
    label: str                    # for people
    backend: str                  # the backend (lib.measure.backends) that runs it
    module: str                   # importable when installed
    packages: tuple[str, ...]     # pip distributions whose versions are shown and saved
    optional: bool                # the app runs without it
    words: str                    # what it is, in a sentence
    # Bytes of one KV-cache number whatever the weights (None: the weights' `number_bytes`).
    kv_bytes: int | None = None

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The weight formats it runs (RunSpec dtype values), in `FORMATS`' order."""
        return tuple(f.name for f in FORMATS.values() if self.name in f.stacks)

    @property
    def installed(self) -> bool:
        return installed(self.name)

    def versions(self) -> dict[str, str]:
        """Installed versions of its packages ({} when it is not installed)."""
        found = {}
        for package in self.packages:
            try:
                found[package] = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                pass
        return found

    def missing_reason(self) -> str:
        """Why it can't run here and what happens next, in words for any screen (no command:
        `missing_error` adds one for the CLI). llama.cpp: being built, failed or not yet."""
        if self.name == LLAMA_CPP:
            from lib.core import stack_build

            build = stack_build.state()
            if build.status == stack_build.INSTALLED:        # this lookup says otherwise
                build = dataclasses.replace(build, status=stack_build.MISSING)
            return build.words()
        return (f"{self.label} is not installed on this machine. It comes with the app's "
                "setup, so whoever set up the app adds it by setting it up again.")

    def missing_error(self) -> UnsupportedError:
        """UnsupportedError with `missing_reason`, and for the CLI the command that adds it."""
        from lib.core import stack_build

        error = UnsupportedError(self.missing_reason())
        error.cli_hint = stack_build.CLI_HINT if self.name == LLAMA_CPP else ONNX_CLI_HINT
        return error

    def require(self) -> None:
        """Raise `missing_error` unless it is installed."""
        if not self.installed:
            raise self.missing_error()


STACKS: dict[str, Stack] = {s.name: s for s in [
    Stack(TRANSFORMERS, "transformers (PyTorch)", "transformers", "transformers",
          ("transformers", "torch"), False,
          "Hugging Face transformers on PyTorch: the reference way to run a model, flexible "
          "and readable, one PyTorch operation at a time."),
    Stack(LLAMA_CPP, "llama.cpp", "llama.cpp", "llama_cpp", ("llama-cpp-python",), True,
          "llama.cpp, a C/C++ engine built for running language models on ordinary "
          "computers: hand-written kernels that read quantized weights (GGUF files) directly.",
          kv_bytes=2),
    Stack(ONNXRUNTIME, "ONNX Runtime", "onnxruntime", "onnxruntime_genai",
          ("onnxruntime-genai", "onnxruntime"), True,
          "Microsoft's ONNX Runtime with its generate() API: the model is exported once to a "
          "fixed graph of operations, which the runtime fuses and optimizes before running.",
          kv_bytes=4),
]}
STACK_NAMES = tuple(STACKS)
# Settings of the software stack (RunSpec fields) that only transformers has; every other field
# applies to any stack, backend or estimate.
STACK_SETTINGS = ("attention", "kv_cache", "compile")


@dataclass(frozen=True)
class Format:
    """One weight number format: every fact about it, read by the spec, the memory estimate,
    the roofline, the devices and the stacks (no other table restates them)."""
    name: str                     # the dtype value
    label: str                    # for people
    weight_bits: float            # stored bits per weight of the big matrices, scales included
    number_bytes: int             # one number of activations (and of transformers' KV cache)
    stacks: tuple[str, ...]       # the stacks that run it
    words: str
    blocks: bool = False          # weights in blocks of few bits plus scales (GGUF, int4)
    aliases: tuple[str, ...] = ()     # other names people type for it, saved under `name`
    torch_dtype: str | None = None    # torch's dtype attribute, where torch computes in it

    def weight_bytes(self, parameters: int) -> int:
        """Stored bytes of `parameters` weights at the average bits, scales included."""
        return math.ceil(parameters * self.weight_bits / 8)


# int8 (dynamic quantization) keeps activations and the KV cache in float32; only Linear weights
# are int8. The block formats of llama.cpp (GGUF) and ONNX Runtime (int4) store only the weights
# in few bits; both compute in float32 on a CPU (the KV cache's width depends on the stack:
# `kv_bytes_per_number`).
FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("float32", "float32 (F32)", 32, 4, (TRANSFORMERS, LLAMA_CPP, ONNXRUNTIME),
           "32-bit floating point: the reference.", aliases=("f32", "fp32"),
           torch_dtype="float32"),
    Format("bfloat16", "bfloat16", 16, 2, (TRANSFORMERS,), "16-bit brain floating point: "
           "float32's range, fewer digits.", aliases=("bf16",), torch_dtype="bfloat16"),
    Format("float16", "float16 (F16)", 16, 2, (TRANSFORMERS, LLAMA_CPP),
           "16-bit floating point.", aliases=("f16", "fp16"), torch_dtype="float16"),
    Format("int8", "int8 (dynamic)", 8, 4, (TRANSFORMERS,), "torch's dynamic quantization: "
           "Linear weights in 8 bits, the rest float32."),
    Format("q8_0", "Q8_0", 8.5, 4, (LLAMA_CPP,), "llama.cpp's 8-bit format: blocks of 32 "
           "weights, each with its own 16-bit scale (8.5 bits per weight).", blocks=True),
    Format("q4_k_m", "Q4_K_M", 4.9, 4, (LLAMA_CPP,), "llama.cpp's most deployed 4-bit mix: "
           "4-bit 'k-quant' super-blocks, with a few sensitive matrices kept at 6 bits (about "
           "4.9 bits per weight).", blocks=True),
    Format("q4_1", "Q4_1", 5.0, 4, (LLAMA_CPP,), "llama.cpp's older 4-bit format: blocks of "
           "32 weights with a scale and an offset (5 bits per weight). The default model ships "
           "in it.", blocks=True),
    Format("int4", "int4 (block 32)", 5.1, 4, (ONNXRUNTIME,), "ONNX Runtime's 4-bit weights "
           "(MatMulNBits): blocks of 32 with a float scale and a 4-bit zero point (about 5.1 "
           "bits per weight).", blocks=True),
]}
FLOAT32_BYTES = FORMATS["float32"].number_bytes
# Every name a dtype may be typed as, other than its own, and the format it means.
ALIASES = {alias: f.name for f in FORMATS.values() for alias in f.aliases}


def stored_in_blocks(dtype: str) -> bool:
    """Whether weights in `dtype` are stored in blocks of few bits plus scales (GGUF, int4);
    False for any other name (an estimate's float8 too)."""
    return dtype in FORMATS and FORMATS[dtype].blocks


def get_stack(name: str) -> Stack:
    try:
        return STACKS[name]
    except KeyError:
        raise UnsupportedError(f"No software stack called {name!r}: choose one of "
                               f"{', '.join(STACKS)}.") from None


@functools.cache
def _found_once(module: str) -> bool:
    return _look_up(module)


def _found(module: str) -> bool:
    """Found once is found for good; not found is looked up afresh, so a stack installed while
    the app runs appears without a restart (the import system notices a changed folder by its
    modification time)."""
    if _found_once(module):
        return True
    _found_once.cache_clear()
    return _found_once(module)


def _look_up(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def import_stack(name: str):
    """Import the stack's module (in the process that runs it), or raise `missing_error`. A
    failed import is retried once with the import caches dropped: a worker that started before
    the background build finished still finds the new package."""
    chosen = get_stack(name)
    for attempt in range(2):
        try:
            return importlib.import_module(chosen.module)
        except ImportError:
            if attempt:
                raise chosen.missing_error() from None
            importlib.invalidate_caches()


def installed(name: str) -> bool:
    """Whether the stack's package can be imported here (looked up, not imported)."""
    return _found(get_stack(name).module)


def stacks_for(dtype: str) -> tuple[str, ...]:
    """The stacks that run weights in `dtype`."""
    return tuple(s.name for s in STACKS.values() if dtype in s.dtypes)


def format_name(dtype: str) -> str:
    """A weight format as charts and sentences name it: 'float32', 'Q4_K_M', 'int8'."""
    return FORMATS[dtype].label.split(" (")[0] if dtype in FORMATS else str(dtype)


def stack_name(stack: str) -> str:
    """A software stack as charts and sentences name it: 'transformers', 'llama.cpp'."""
    return STACKS[stack].label.split(" (")[0] if stack in STACKS else str(stack)


def weights_words(stack: str | None, dtype: str) -> str:
    """How weights are held, in words: 'Q4_K_M with llama.cpp', 'int4 with ONNX Runtime';
    transformers, the default, goes unnamed: 'float32'."""
    if stack is None or stack == TRANSFORMERS:
        return format_name(dtype)
    return f"{format_name(dtype)} with {stack_name(stack)}"


def check_format(stack: str, dtype: str) -> None:
    """UnsupportedError saying which stack runs `dtype` when `stack` does not."""
    chosen = get_stack(stack)
    if dtype in chosen.dtypes:
        return
    others = [STACKS[name].label for name in stacks_for(dtype)]
    where = f" It is a format of {' and '.join(others)}: choose that stack (Software stack, " \
            "in the sidebar), or" if others else " Choose"
    raise UnsupportedError(
        f"{chosen.label} does not run weights in {FORMATS[dtype].label}.{where} one of its own "
        f"formats: {', '.join(chosen.dtypes)}.")


def kv_bytes_per_number(stack: str, dtype: str) -> int:
    """Bytes of one number of the KV cache (and of the attention reading it) when `stack` runs
    weights in `dtype`: what the memory estimate, the roofline and the estimator count.

    llama.cpp keeps its cache in float16 whatever the weights (its default cache type, F16).
    ONNX Runtime's models from its builder for the CPU, float32 and int4 alike, keep inputs,
    outputs and cache in float32. transformers keeps it in the model's dtype, float32 for int8
    (dynamic quantization touches only the Linear weights).
    """
    chosen = STACKS.get(stack)
    if chosen is not None and chosen.kv_bytes is not None:
        return chosen.kv_bytes
    return FORMATS[dtype].number_bytes
