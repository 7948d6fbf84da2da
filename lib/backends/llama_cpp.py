"""llama.cpp (through llama-cpp-python) on a GGUF file: a second software stack, same model.

The GGUF file is the one the catalog entry already ships (SmolLM2-135M-Instruct in Q4_1), opened
as is: llama.cpp runs the quantized weights directly, where the transformers backend dequantizes
them to torch tensors. `llama_cpp` is imported only when a model loads, so the app works without
it; `scripts/setup.sh --stacks` installs it.

Exact shapes, like every backend: the prompt is fitted to exactly `prompt_tokens` ids by
`lib.prompts.fit_prompt`, through a small adapter around the GGUF's own tokenizer and chat
template (`GgufTokenizer`). Generation is the low-level loop `eval` (prefill, then one token
per step) + a greedy argmax of the last logits, which never looks at end-of-sequence, so every
call writes exactly `new_tokens` tokens. The clock is read after each token is picked: the first
reading (prefill + first pick) is the first token, as with transformers' streamer; the last
token is, as there, never fed back. `reset` before each call makes the next `eval` drop the
whole KV cache.

Memory: the engine measures the worker process's RSS like for transformers (llama.cpp's buffers
and the touched pages of the mmap'd GGUF file are in it); the weights are reported as the GGUF
file's size.
"""

from __future__ import annotations

import os
from typing import Any

from lib.backends.base import Backend, Progress, Session, Timing
from lib.errors import ModelLoadError, StoppedError, UnsupportedError
from lib.models.cache import LoadedModel
from lib.models.catalog import CAUSAL_LM, get_entry, package_file
from lib.prompts import fit_prompt
from lib.spec import RunSpec
from lib.stacks import LLAMA_CPP, STACKS
from lib.timing import Clock, DeviceClock

INSTALL_HINT = ("llama.cpp is not installed: run `scripts/setup.sh --stacks` (it installs "
                "llama-cpp-python), then restart the app.")
N_BATCH = 512
CONTEXT_STEP = 256           # n_ctx is rounded up to a multiple of this
DEFAULT_CONTEXT = 512        # what `load` opens; a session that needs more reopens the file


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise UnsupportedError(INSTALL_HINT) from exc
    return llama_cpp


def open_gguf(path: Any, n_ctx: int, threads: int) -> Any:
    """The GGUF file as a llama.cpp model with a context of `n_ctx` tokens."""
    llama_cpp = _import_llama()
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=N_BATCH,
                               n_threads=threads, n_threads_batch=threads, verbose=False,
                               logits_all=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"llama.cpp could not open {path}: {exc}") from exc


def context_size(spec: RunSpec) -> int:
    """The context llama.cpp allocates: prompt + new tokens, rounded up."""
    need = spec.prompt_tokens + spec.new_tokens
    return -(-need // CONTEXT_STEP) * CONTEXT_STEP


class GgufTokenizer:
    """What `lib.prompts.fit_prompt` needs of a tokenizer (`encode`, `chat_template`,
    `apply_chat_template`), answered by the GGUF file's own vocabulary and template."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.chat_template = llm.metadata.get("tokenizer.chat_template")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        # special=True: markers such as <|im_start|> in the text become their single token,
        # as a transformers tokenizer does.
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens,
                                      special=True))

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = True) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) \
            .from_string(self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=self._piece(self.llm.token_bos()),
                               eos_token=self._piece(self.llm.token_eos()))

    def decode(self, ids: list[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _piece(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")


class LlamaCppBackend(Backend):
    name = "llama.cpp"
    label = "llama.cpp (GGUF)"
    kinds = (CAUSAL_LM,)
    default_for = ()
    devices = ("cpu",)
    stack = LLAMA_CPP
    dtypes = STACKS[LLAMA_CPP].dtypes
    factors = ()                       # no attention kernel, static cache or torch.compile

    def check(self, entry, spec: RunSpec) -> None:
        super().check(entry, spec)
        if not entry.package_path or not entry.package_path.endswith(".gguf"):
            raise UnsupportedError(f"{self.label} runs GGUF files; {entry.display_name} has "
                                   "none here.")

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        entry = get_entry(model_id)
        self.check_device(device, dtype)
        path = package_file(entry)
        if on_progress:
            on_progress(f"Opening {path.name} with llama.cpp")
        clock = DeviceClock("cpu")
        started = clock.now()
        llm = open_gguf(path, DEFAULT_CONTEXT, os.cpu_count() or 1)
        load_s = clock.now() - started
        return LoadedModel(backend=self.name, entry=entry, model=llm, tokenizer=GgufTokenizer(llm),
                           device=device, dtype=dtype, load_s=load_s,
                           source=f"GGUF file {path.name}, opened by llama.cpp",
                           weights_bytes=path.stat().st_size)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return LlamaSession(loaded, spec)

    def versions(self) -> dict[str, str]:
        try:
            import llama_cpp
        except ImportError:
            return {}
        return {"llama-cpp-python": llama_cpp.__version__}


class LlamaSession(Session):
    def __init__(self, loaded: LoadedModel, spec: RunSpec) -> None:
        self.loaded, self.spec = loaded, spec
        if spec.prompt_tokens + spec.new_tokens > loaded.model.n_ctx():
            # The context is fixed when llama.cpp opens the file: reopen it, larger (untimed;
            # the file is mmap'd, so this is quick). The loaded model is shared, so it grows.
            loaded.model.close()
            loaded.model = open_gguf(package_file(loaded.entry), context_size(spec), spec.threads)
            loaded.tokenizer = GgufTokenizer(loaded.model)
        self.llm = loaded.model
        _set_threads(self.llm, spec.threads)
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        self.prompt_ids = list(prompt.token_ids)
        self.n_vocab = self.llm.n_vocab()
        self.output: list[int] = []
        self.warmup_runs = spec.warmup_runs

    def run(self, clock: Clock, timed: bool) -> Timing:
        llm, times, out = self.llm, [], []
        llm.reset()                      # the next eval drops the KV cache from position 0
        start_s = clock.now()
        llm.eval(self.prompt_ids)
        for index in range(self.spec.new_tokens):
            if index:
                llm.eval([out[-1]])
            out.append(self._greedy())                # EOS is never looked at
            if timed:
                times.append(clock.now())
            if self.should_stop():
                raise StoppedError("Stopped: the run was ended before it finished, so nothing "
                                   "of it was kept. Press Run to measure again.")
        end_s = clock.now()
        self.output = out
        return Timing(start_s, tuple(times)) if timed else Timing(start_s, end_s=end_s)

    def _greedy(self) -> int:
        """The most likely next token, read straight from the last position's logits.

        `Llama.sample(temp=0)` gives the same token but builds a sampler chain each call
        (0.37 ms here, 4% of a decode step); the argmax costs 0.05 ms."""
        import llama_cpp
        import numpy as np

        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1),
                                       shape=(self.n_vocab,))
        return int(logits.argmax())

    def output_text(self) -> str:
        return self.loaded.tokenizer.decode(self.output) if self.output else ""


def _set_threads(llm: Any, threads: int) -> None:
    """Apply the spec's thread count to an open context (llama_set_n_threads)."""
    import llama_cpp
    llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
    llm.n_threads = llm.n_threads_batch = threads
    llm.context_params.n_threads = llm.context_params.n_threads_batch = threads


BACKEND = LlamaCppBackend()
