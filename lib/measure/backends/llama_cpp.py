"""llama.cpp (through llama-cpp-python) on GGUF files: a second software stack, same models.

Every weight format is a GGUF file (`lib.models.gguf_formats`): the default model's packaged
Q4_1 file as is, the others built once from it (dequantized to F32, then quantized by llama.cpp),
random-weight Llama/Qwen2 presets written from their configuration, or the user's own .gguf
file. The time spent building a file is `LoadedModel.build_s`, apart from `load_s` (opening
it). `llama_cpp` is imported only when a model loads, so the app works without it while
`lib.core.stack_build` compiles it.

Exact shapes, like every backend: the prompt is fitted to exactly `prompt_tokens` ids by
`lib.core.prompts.fit_prompt`, through a small adapter around the GGUF's own tokenizer and chat
template (`GgufTokenizer`). Generation is the low-level loop `eval` (prefill, then one token
per step) + a greedy argmax of the last logits, which never looks at end-of-sequence, so every
call writes exactly `new_tokens` tokens. The clock is read after each token is picked: the first
reading (prefill + first pick) is the first token, as with transformers' streamer; the last
token is, as there, never fed back. `reset` before each call makes the next `eval` drop the
whole KV cache. One sequence at a time: batch 1 only.

Context: llama.cpp fixes the context (and allocates its whole KV cache, float16) when it opens
a file. `load` opens DEFAULT_CONTEXT tokens; a session that needs more reopens the file larger
(untimed; the file is mmap'd, so this is quick) and it stays that large, so the sessions of an
interleaved sweep never see their context shrink under them (each reads the open model at every
call). The memory guard counts what llama.cpp allocates: the GGUF file (or its estimated size
before it is built), the KV cache for the context the run opens (`context_size`), its compute
buffers, and the margin; the engine reports the allocated KV cache with each repetition.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.measure.backends.base import (NativeStackBackend, Progress, Session, Timing,
                                       numpy_scores)
from lib.core.errors import ModelLoadError, UnsupportedError, stop_if_asked
from lib.models import gguf_formats
from lib.models.loaded import LoadedModel
from lib.models.catalog import OWN, RANDOM, get_entry
from lib.core.prompts import fit_prompt
from lib.core.spec import RunSpec
from lib.core.stacks import FORMATS, LLAMA_CPP, import_stack
from lib.core.timing import Clock, DeviceClock

if TYPE_CHECKING:
    from lib.estimate.memory import MemoryEstimate

N_BATCH = 512                # prompt tokens per llama.cpp step (its n_batch = n_ubatch)
CONTEXT_STEP = 256           # llama.cpp allocates its KV cache in multiples of this many tokens
DEFAULT_CONTEXT = 512        # what `load` opens; a session that needs more reopens the file
KV_DTYPE = "float16"         # llama.cpp's default KV cache type
FLOAT32_BYTES = 4
# llama.cpp's compute buffer, reserved for a full batch of N_BATCH tokens: the logits of every
# token (vocabulary x float32), one layer's attention scores (heads x context), the MLP's and
# the residual stream's activations. An upper bound: SmolLM2-135M reserved 98 MiB at
# 512 and 4,096 tokens of context, against 119 and 182 MiB counted here.
MLP_COPIES, HIDDEN_COPIES = 3, 4


def _import_llama() -> Any:
    return import_stack(LLAMA_CPP)


def open_gguf(path: Path, n_ctx: int, threads: int, logits_all: bool = False) -> Any:
    """The GGUF file as a llama.cpp model with a context of `n_ctx` tokens (`logits_all`: it
    keeps every position's logits, for quality; the timed runs read only the last)."""
    llama_cpp = _import_llama()
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=N_BATCH,
                               n_threads=threads, n_threads_batch=threads, verbose=False,
                               logits_all=logits_all)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp could not open {path}: {exc}") from exc


def context_size(spec: RunSpec) -> int:
    """The context llama.cpp allocates for `spec`: prompt + new tokens, rounded up as llama.cpp
    rounds it, and never less than what `load` opens."""
    need = max(spec.prompt_tokens + spec.new_tokens, DEFAULT_CONTEXT)
    return -(-need // CONTEXT_STEP) * CONTEXT_STEP


class GgufModel:
    """An open GGUF file, shared by the sessions on it: reopened larger when one needs more
    context, so sessions read `llm` at each call, never keep it."""

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        self.path = path
        self.llm = open_gguf(path, n_ctx, threads)

    def ensure_context(self, n_ctx: int, threads: int) -> None:
        if n_ctx > self.llm.n_ctx():
            self.llm.close()              # first, so the old KV cache is freed before the new
            self.llm = open_gguf(self.path, n_ctx, threads)


class GgufTokenizer:
    """What `lib.core.prompts.fit_prompt` needs of a tokenizer (`encode`, `chat_template`,
    `apply_chat_template`), answered by the GGUF file's own vocabulary and template."""

    def __init__(self, model: GgufModel) -> None:
        self.model = model
        self.chat_template = model.llm.metadata.get("tokenizer.chat_template")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # special=True: markers such as <|im_start|> in the text become their single token,
        # as a transformers tokenizer does.
        return list(self.model.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens,
                                            special=True))

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        llm = self.model.llm
        template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) \
            .from_string(self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=self._piece(llm.token_bos()),
                               eos_token=self._piece(llm.token_eos()))

    def decode(self, ids: list[int]) -> str:
        return self.model.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _piece(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        return self.model.llm.detokenize([token], special=True).decode("utf-8",
                                                                        errors="replace")


class LlamaCppBackend(NativeStackBackend):
    stack = LLAMA_CPP

    def check(self, entry, spec: RunSpec) -> None:
        super().check(entry, spec)
        if spec.batch_size != 1:
            raise UnsupportedError("llama.cpp runs one request at a time here (batch 1); use "
                                   "the transformers stack to vary batch size.")
        gguf_formats.check_supported(entry, spec.dtype)

    def check_model(self, entry) -> None:
        super().check_model(entry)
        gguf_formats.check_supported(entry, None)

    # --- memory ----------------------------------------------------------------------------

    def weights_bytes(self, model_id: str, dtype: str) -> int:
        """The GGUF file's size when it is there, else the format's estimate."""
        from lib.models.shapes import shapes

        entry = get_entry(model_id)
        path = gguf_formats.existing_file(entry, dtype)
        return path.stat().st_size if path is not None else shapes(model_id).weight_bytes(dtype)

    def load_need(self, model_id: str, dtype: str) -> "MemoryEstimate":
        from lib.estimate import memory
        weights = self.weights_bytes(model_id, dtype)
        return memory.MemoryEstimate(weights, 0, 0, _margin(weights))

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> "MemoryEstimate":
        from lib.estimate import memory
        from lib.models.shapes import shapes

        shape = shapes(spec.model_id)
        context = context_size(spec)
        weights = 0 if weights_loaded else self.weights_bytes(spec.model_id, spec.dtype)
        kv = context * shape.kv_bytes_per_token(KV_DTYPE) * spec.batch_size
        compute = N_BATCH * FLOAT32_BYTES * (
            shape.vocab_size + MLP_COPIES * shape.intermediate_size
            + HIDDEN_COPIES * shape.hidden_size + shape.attention_heads * context)
        return memory.MemoryEstimate(weights, kv, compute, _margin(weights + kv + compute))

    def run_advice(self, spec: RunSpec, weights_loaded: bool, available_bytes: int) -> str:
        from lib.estimate import memory

        advice = memory.run_advice(spec, self.run_need, available_bytes, weights_loaded, (),
                                   can_switch_attention=False)
        formats = self._smaller_formats(spec, available_bytes)
        return f"Smaller weights fit: {formats}. {advice}" if formats else advice

    def load_advice(self, model_id: str, dtype: str, device: str, available_bytes: int) -> str:
        from lib.core.metrics import format_bytes

        options = [f"{FORMATS[other].label} (weights about "
                   f"{format_bytes(self.weights_bytes(model_id, other))})"
                   for other in self._offered(model_id, dtype)
                   if self.load_need(model_id, other).total_bytes <= available_bytes]
        return ("The weights alone don't fit. Choose " + (" or ".join(options) + ", or " if options
                                                          else "") + "a smaller model.")

    def _smaller_formats(self, spec: RunSpec, available_bytes: int) -> str:
        return " or ".join(FORMATS[other].label for other in self._offered(spec.model_id,
                                                                           spec.dtype)
                           if self.run_need(spec.replace(dtype=other), False).total_bytes
                           <= available_bytes)

    def _offered(self, model_id: str, dtype: str) -> list[str]:
        """The other formats this model can run in whose weights are smaller."""
        entry = get_entry(model_id)
        if entry.weights == OWN:
            return []                    # the user's file runs only as it is stored
        current = self.weights_bytes(model_id, dtype)
        return [other for other in self.dtypes
                if other != dtype and self.weights_bytes(model_id, other) < current]

    # --- loading and running ---------------------------------------------------------------

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        _import_llama()
        entry = get_entry(model_id)
        self.check_device(device, dtype)
        gguf_formats.check_supported(entry, dtype)
        self.guard_load(model_id, device, dtype)      # before any file is built or opened
        built = gguf_formats.gguf_file(entry, dtype, on_progress)
        if on_progress:
            on_progress(f"Opening {built.path.name} with llama.cpp…")
        clock = DeviceClock("cpu")
        started = clock.now()
        model = GgufModel(built.path, DEFAULT_CONTEXT, os.cpu_count() or 1)
        load_s = clock.now() - started
        return LoadedModel(backend=self.name, entry=entry, model=model,
                           tokenizer=GgufTokenizer(model), device=device, dtype=dtype,
                           load_s=load_s, source=_source(entry, dtype, built),
                           loaded_at=time.time(), weights_bytes=built.path.stat().st_size,
                           build_s=built.build_s)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return LlamaSession(loaded, spec)

    def versions(self) -> dict[str, str]:
        try:
            import llama_cpp
        except ImportError:
            return {}
        found = {"llama-cpp-python": llama_cpp.__version__}
        commit = _ggml_commit()
        if commit:
            found["llama.cpp"] = commit
        return found


class LlamaSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        self.loaded, self.spec = loaded, spec
        self.model: GgufModel = loaded.model
        self.model.ensure_context(context_size(spec), spec.threads)
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text,
                            spec.prompt_kind)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        self.prompt_ids = list(prompt.token_ids)
        self.kv_bytes_per_token = loaded.shapes.kv_bytes_per_token(KV_DTYPE)
        self.output: list[int] = []
        self.warmup_runs = spec.warmup_runs

    def run(self, clock: Clock, timed: bool) -> Timing:
        # Read at every call: another session on this model may have reopened it larger, or
        # set other threads (the points of an interleaved sweep take turns).
        llm = self.model.llm
        _set_threads(llm, self.spec.threads)
        n_vocab = llm.n_vocab()
        times, out = [], []
        llm.reset()                      # the next eval drops the KV cache from position 0
        start_s = clock.now()
        llm.eval(self.prompt_ids)
        for index in range(self.spec.new_tokens):
            if index:
                llm.eval([out[-1]])
            out.append(_greedy(llm, n_vocab))               # EOS is never looked at
            if timed:
                times.append(clock.now())
            stop_if_asked(self.should_stop)
        end_s = clock.now()
        self.output = out
        kv = llm.n_ctx() * self.kv_bytes_per_token           # allocated whole when opened
        if timed:
            return Timing(start_s, tuple(times), kv_cache_bytes=kv)
        return Timing(start_s, end_s=end_s, kv_cache_bytes=kv)

    def output_text(self) -> str:
        return self.loaded.tokenizer.decode(self.output) if self.output else ""

    def next_token_scores(self, windows: list[list[int]]) -> list[tuple[list[int], list[float]]]:
        """llama.cpp's own logits at every position: the file opened apart, keeping them all."""
        longest = max(len(window) for window in windows)
        llm = open_gguf(self.model.path, -(-longest // CONTEXT_STEP) * CONTEXT_STEP,
                        self.spec.threads, logits_all=True)
        try:
            scores = []
            for window in windows:
                llm.reset()
                llm.eval(window)
                scores.append(numpy_scores(llm.scores[:len(window) - 1], window))
                stop_if_asked(self.should_stop)
            return scores
        finally:
            llm.close()


def _greedy(llm: Any, n_vocab: int) -> int:
    """The most likely next token, read straight from the last position's logits.

    `Llama.sample(temp=0)` gives the same token but builds a sampler chain each call
    (0.37 ms here, 4% of a decode step); the argmax costs 0.05 ms."""
    import llama_cpp
    import numpy as np

    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                   shape=(n_vocab,))
    return int(logits.argmax())


def _set_threads(llm: Any, threads: int) -> None:
    """Apply the spec's thread count to an open context (llama_set_n_threads)."""
    import llama_cpp
    llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
    llm.n_threads = llm.n_threads_batch = threads
    llm.context_params.n_threads = llm.context_params.n_threads_batch = threads


def _margin(bytes_: int) -> int:
    from lib.estimate import memory
    return memory.MARGIN_BYTES + int(memory.MARGIN_FRACTION * bytes_)


def _source(entry, dtype: str, built: gguf_formats.GgufFile) -> str:
    label = FORMATS[dtype].label
    if entry.weights == OWN:
        return f"your GGUF file {built.path}, opened by llama.cpp"
    if built.build_s is None and entry.weights != RANDOM and built.path.name == \
            entry.package_path:
        return f"the packaged GGUF file {built.path.name}, opened by llama.cpp"
    how = ("written from its published configuration, random weights" if entry.weights == RANDOM
           else "built from the packaged GGUF file (dequantized"
           + (", then quantized by llama.cpp)" if dtype != "float32" else ")"))
    when = "built now" if built.build_s is not None else "from the local cache"
    return f"{label} GGUF file {how}; {when}"


def _ggml_commit() -> str | None:
    """The llama.cpp (ggml) source commit the binding was built from, where it says."""
    import ctypes

    try:
        from llama_cpp import _ggml
        commit = _ggml.libggml.ggml_commit
    except (ImportError, AttributeError, OSError):
        return None
    commit.restype = ctypes.c_char_p
    return (commit() or b"").decode("utf-8", errors="replace") or None


BACKEND = LlamaCppBackend()
