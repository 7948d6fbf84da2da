"""Any OpenAI-compatible server through the seam: each call is one streamed request.

`OpenAICompatBackend(endpoint)` measures the server at `endpoint` (vLLM, SGLang, TGI, Ollama,
`transformers serve`) with the same loop as a local model (`lib.measure.engine`: warm-ups, then timed
repetitions), one request at a time: batch 1, the prompt built to the spec's exact token count
with a tokenizer (the spec's model decides the context window; the server decides everything
else) and sent as text, so the server's own tokenizer may count a few tokens differently.
Loading is the probe (`lib.serving.client.probe`): nothing is held here, no memory is measured,
and the load time is how long the probe took. Token times are the arrivals of the streamed
chunks on the run's clock, multi-token chunks spread as `RequestRecord.token_times` says.
A request that fails, or stops before the asked length, raises `RunFailedError` with the
reason, so no repetition is ever shorter than the spec says.

The module's `BACKEND` has no endpoint: the registry lists it, but it runs nothing until a
server is chosen, and it is never anyone's default (`default_for` is empty).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from lib.measure.backends.base import Backend, Progress, Session, Timing
from lib.core.errors import InvalidSpecError, RunFailedError, ServingError
from lib.machine.activity import Load
from lib.estimate.memory import MemoryEstimate
from lib.models.loaded import LoadedModel
from lib.models.catalog import CatalogEntry, get_entry
from lib.core.prompts import fit_prompt
from lib.serving import client
from lib.serving.records import OK, SHORT, Endpoint
from lib.core.spec import DTYPES, RunSpec
from lib.core.timing import Clock

NO_SERVER = ("No server is chosen for the OpenAI-compatible backend: choose a server first "
             "(its address and model), then run.")


class OpenAICompatBackend(Backend):
    name = "openai"
    label = "OpenAI-compatible server"
    default_for = ()
    stack = None                     # the server is its own software stack
    dtypes = DTYPES                  # the server decides its precision; the spec's is a label
    factors = ()                     # the server's software stack is the server's
    measures_memory = False
    isolate = False                  # nothing loaded here: a worker process would hold nothing
    holds_weights = False

    def __init__(self, endpoint: Endpoint | None = None, tokenizer: Any = None) -> None:
        self.endpoint = endpoint
        self.tokenizer = tokenizer   # None: the default model's (SmolLM2's), loaded on first use
        self.mode_sentence = ""

    def check(self, entry: CatalogEntry, spec: RunSpec) -> None:
        if self.endpoint is None:
            raise ServingError(NO_SERVER)
        if spec.batch_size != 1:
            raise InvalidSpecError(
                f"A server is measured here one request at a time; set the batch size to 1 "
                f"(not {spec.batch_size}). Many requests at once is a load run "
                "(python -m lib load).")
        super().check(entry, spec)

    def check_device(self, device: str, dtype: str) -> None:
        pass                         # the server's device is its own; this machine only sends

    def load_need(self, model_id: str, dtype: str) -> MemoryEstimate:
        return MemoryEstimate(0, 0, 0, 0)

    def run_need(self, spec: RunSpec, weights_loaded: bool) -> MemoryEstimate:
        return MemoryEstimate(0, 0, 0, 0)

    def load(self, model_id: str, device: str, dtype: str,
             on_progress: Progress | None = None) -> LoadedModel:
        if self.endpoint is None:
            raise ServingError(NO_SERVER)
        say = on_progress or (lambda message: None)
        say(f"Checking the server at {self.endpoint.base_url}…")
        started = time.perf_counter()
        self.endpoint, self.mode_sentence = client.probe(self.endpoint)
        probe_s = time.perf_counter() - started
        tokenizer = self.tokenizer
        if tokenizer is None:
            from lib.models.loading import _default_tokenizer
            tokenizer = self.tokenizer = _default_tokenizer(say)
        return LoadedModel(
            backend=self.name, entry=get_entry(model_id), model=self.endpoint,
            tokenizer=tokenizer, device=device, dtype=dtype, load_s=probe_s,
            source=f"served by {self.endpoint.base_url} as {self.endpoint.model!r}; "
                   f"{self.mode_sentence}", loaded_at=time.time())

    def session(self, loaded: LoadedModel, spec: RunSpec) -> Session:
        return ServerSession(loaded.model, loaded.tokenizer, spec)

    @contextlib.contextmanager
    def machine_load(self):
        # The server's own work would show as "other programs" when it runs on this machine,
        # blaming the server for the noise it is measured for: nothing is read.
        yield Load()

    def versions(self) -> dict[str, str]:
        if self.endpoint is None:
            return {}
        return {"server": self.endpoint.base_url, "served_model": self.endpoint.model,
                "fixed_length": self.endpoint.fixed_length}


class ServerSession(Session):
    """One spec against one server: the same prompt text and length for every request."""

    def __init__(self, endpoint: Endpoint, tokenizer: Any, spec: RunSpec) -> None:
        self.endpoint, self.spec = endpoint, spec
        # The server applies its own chat template to chat messages: fit the text alone there.
        fitted = fit_prompt(_WithoutTemplate(tokenizer) if endpoint.api == "chat" else tokenizer,
                            spec.prompt_tokens, spec.prompt_text)
        self.prompt = tokenizer.decode(list(fitted.token_ids), skip_special_tokens=False)
        self.prompt_note = fitted.note
        self.used_chat_template = fitted.used_chat_template
        self.warmup_runs = spec.warmup_runs
        self.count_tokens: Callable[[str], int] = \
            lambda text: len(tokenizer.encode(text, add_special_tokens=False))
        self.last_text = ""

    def run(self, clock: Clock, timed: bool) -> Timing:
        record = client.stream(self.endpoint, self.prompt, self.spec.new_tokens,
                               clock=clock.now, count_tokens=self.count_tokens)
        if record.status != OK:
            what = "stopped early" if record.status == SHORT else "failed"
            advice = "" if record.status != SHORT else _short_advice(self.endpoint)
            raise RunFailedError(f"A request to {self.endpoint.base_url} {what}: "
                                 f"{record.reason}.{advice}")
        self.last_text = f"({record.output_tokens} tokens streamed by the server)"
        times = record.token_times()[:self.spec.new_tokens]
        return Timing(start_s=record.sent_s, token_times_s=tuple(times))

    def output_text(self) -> str:
        return self.last_text or "(Nothing was asked of the server yet.)"


def _short_advice(endpoint: Endpoint) -> str:
    if endpoint.fixed_length == "max_tokens":
        return (" This server does not fix the answer's length: choose one that takes "
                "min_tokens (vLLM, SGLang) or a generation_config (transformers serve), or ask "
                "for fewer tokens.")
    return (f" The server took the fixed-length fields ({endpoint.fixed_length} mode) but did "
            "not honour them: set the fixed-length mode to max_tokens, or ask for fewer tokens.")


class _WithoutTemplate:
    """A tokenizer seen without its chat template."""
    chat_template = None

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)


BACKEND = OpenAICompatBackend()
