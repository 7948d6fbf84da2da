"""A backend whose latencies are declared, for exact tests of everything above the seam.

Time moves only on its `ManualClock`: `prefill_s` before the first token, `decode_s` before each
later one (an encoder's pass takes `prefill_s`). Each latency is a number, a sequence (one value
per call, cycled, to make a run noisy on purpose) or a function of the RunSpec (to make a factor
matter). Loading is instant and reports `load_s`; memory is declared too (`memory_bytes`), since
the process's real memory says nothing about a fake model, and so is the machine's load
(`other_cpu_percent`: what other programs took while a call ran). The prompt is fitted with a tokenizer
of one token per character, so prompt notes behave as with a real model. Nothing here is ever
chosen for a user: tests install it with `lib.measure.backends.use(FakeBackend(...))`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Sequence, Union

from lib.machine.activity import Load
from lib.measure.backends.base import Backend, Progress, Session, Timing
from lib.models.loaded import LoadedModel
from lib.models.catalog import get_entry
from lib.core.kinds import CAUSAL_LM, ENCODER
from lib.core.prompts import fit_prompt
from lib.core.spec import DTYPES, RunSpec
from lib.core.timing import Clock, ManualClock

Declared = Union[float, Sequence[float], Callable[[RunSpec], float]]
REFERENCE_PERPLEXITY = 10.0


class FakeTokenizer:
    chat_template = None
    pad_token_id = 0
    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + (ord(ch) % 90) for ch in text]          # one token per character

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(chr(ord("a") + (i % 26)) for i in ids)


class FakeBackend(Backend):
    name = "fake"
    label = "fake backend (declared latencies)"
    kinds = (CAUSAL_LM, ENCODER)
    factors = ("attention", "kv_cache", "compile")
    techniques = ("prune", "exit_layer", "speculative")
    stack = None                                   # stands in for any stack, in every format
    dtypes = DTYPES
    measures_memory = False

    isolate = False                                # nothing to isolate: no torch, no memory

    def __init__(self, prefill_s: Declared = 0.2, decode_s: Declared = 0.05,
                 load_s: float = 1.5, memory_bytes: Declared = 600 * 2**20,
                 other_cpu_percent: Declared = 0.0, agreement: Declared = 1.0,
                 perplexity: Declared = 10.0) -> None:
        self.prefill_s, self.decode_s, self.load_s = prefill_s, decode_s, load_s
        # Quality: the share of next tokens predicted as the reference does, and the
        # perplexity (the reference's is REFERENCE_PERPLEXITY).
        self.agreement, self.perplexity = agreement, perplexity
        self.memory_bytes, self.other_cpu_percent = memory_bytes, other_cpu_percent
        self.clock_ = ManualClock()
        self.calls: list[dict[str, Any]] = []     # every call, for tests to inspect
        self.loads: list[str] = []

    def check_device(self, device: str, dtype: str) -> None:
        pass                                       # a fake runs anywhere

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        self.loads.append(model_id)
        return LoadedModel(backend=self.name, entry=get_entry(model_id), model=None,
                           tokenizer=FakeTokenizer(), device=device, dtype=dtype,
                           load_s=self.load_s, source="fake: nothing was loaded",
                           loaded_at=time.time(), quantize_s=0.5 if dtype == "int8" else None)

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return FakeSession(self, loaded, spec)

    def clock(self, device: str) -> Clock:
        return self.clock_

    @contextlib.contextmanager
    def machine_load(self):
        """The machine's load is declared too (other programs' CPU share, in percent), for the
        call made inside the block."""
        load = Load()
        yield load
        load.other_cpu_percent = self.declared(self.other_cpu_percent, self.calls[-1]["spec"])
        load.load_average = 0.5

    def busy_now(self) -> Load:
        """The declared share before any call (the first of a sequence; a function of the
        spec can't be asked without one, so it reads as quiet)."""
        value = self.other_cpu_percent
        if callable(value):
            value = 0.0
        return Load(value[0] if isinstance(value, (list, tuple)) else value, 0.5)

    def declared(self, value: Declared, spec: RunSpec) -> float:
        if callable(value):
            return value(spec)
        if isinstance(value, (list, tuple)):
            return value[(len(self.calls) - 1) % len(value)]
        return value

    def versions(self) -> dict[str, str]:
        return {"fake": "1"}

    def reference_scores(self, entry, windows: list[list[int]]):
        """The reference predicts every next token of the text, at REFERENCE_PERPLEXITY."""
        predicted = [token for window in windows for token in window[1:]]
        return predicted, [math.log(REFERENCE_PERPLEXITY)] * len(predicted)

    def keep_reference(self, model_id: str, windows, scores) -> None:
        pass                                       # nothing real to keep


class FakeSession(Session):
    def __init__(self, backend: FakeBackend, loaded: LoadedModel, spec: RunSpec) -> None:
        self.backend, self.loaded, self.spec = backend, loaded, spec
        prompt = fit_prompt(loaded.tokenizer, spec.prompt_tokens, spec.prompt_text,
                            spec.prompt_kind)
        self.prompt_note, self.used_chat_template = prompt.note, prompt.used_chat_template
        self.warmup_runs = max(spec.warmup_runs, 2) if spec.compile == "on" else spec.warmup_runs

    def run(self, clock: Clock, timed: bool) -> Timing:
        backend, spec = self.backend, self.spec
        backend.calls.append({"shape": (spec.batch_size, spec.prompt_tokens), "timed": timed,
                              "new_tokens": spec.new_tokens, "spec": spec})
        memory = int(backend.declared(backend.memory_bytes, spec))
        start_s = clock.now()
        if self.loaded.entry.kind == ENCODER:
            backend.clock_.advance(backend.declared(backend.prefill_s, spec))
            return Timing(start_s, end_s=clock.now(), peak_memory_bytes=memory)
        times = []
        for index in range(spec.new_tokens):
            declared = backend.prefill_s if index == 0 else backend.decode_s
            backend.clock_.advance(backend.declared(declared, spec))
            times.append(clock.now())
        return Timing(start_s, tuple(times), peak_memory_bytes=memory)

    def next_token_scores(self, windows: list[list[int]]):
        """The declared agreement's share of each window's next tokens predicted (the rest
        one off), at the declared perplexity."""
        agreement = self.backend.declared(self.backend.agreement, self.spec)
        nll = math.log(self.backend.declared(self.backend.perplexity, self.spec))
        scores = []
        for window in windows:
            following = window[1:]
            right = round(agreement * len(following))
            predicted = [token if index < right else token + 1
                         for index, token in enumerate(following)]
            scores.append((predicted, [nll] * len(following)))
        return scores

    def speculative_report(self) -> dict[str, Any] | None:
        """Declared: two tokens per step, half of the guesses accepted, identical output."""
        tokens = self.spec.new_tokens * len([c for c in self.backend.calls if c["timed"] and
                                             c["spec"] == self.spec])
        steps = -(-tokens // 2)
        return {"method": self.spec.speculative, "steps": steps, "tokens": tokens,
                "proposed": 2 * (tokens - steps), "accepted": tokens - steps,
                "acceptance_rate": 0.5 if tokens > steps else None,
                "tokens_per_step": tokens / steps if steps else None, "tokens_identical": True}

    def output_text(self) -> str:
        if self.loaded.entry.kind == ENCODER:
            return "(An encoder writes no text: fake embedding.)"
        return self.loaded.tokenizer.decode(range(7, 7 + self.spec.new_tokens))

