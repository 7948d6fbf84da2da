"""One load run from start to saved result, the same for the page and the CLI.

`Target` says where the requests go: "local" starts `transformers serve` with a catalog model
(`lib.serving.local`) and stops it afterwards whatever happens; "url" is any OpenAI-compatible
server. `measure` then checks the server (`client.probe`: reachable, the model, how to ask for a
fixed length), takes the machine's measurement slot (so no other run disturbs the numbers, and
others see the run in the queue), runs the load sweep, and saves the result in the history.

Prompts are counted with the served model's tokenizer for a local server; a URL's model may have
another tokenizer, so SmolLM2's makes its prompts and the server's own usage report says how long
they really were (saved with each request).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lib.errors import InvalidSpecError, StoppedError
from lib.serving import report
from lib.serving.load import LoadPlan, run_load
from lib.serving.measures import Slo
from lib.serving.records import APIS, Endpoint

LOCAL, URL = "local", "url"
SECONDS_PER_REQUEST_GUESS = 2.0        # for the queue's estimate only

Say = Callable[[str], None]


@dataclass(frozen=True)
class Target:
    kind: str = LOCAL
    model_id: str | None = None          # local: a catalog model id (or an own folder)
    dtype: str = "float32"               # local
    continuous_batching: bool = True     # local
    url: str | None = None               # url: the server's base URL
    model: str = ""                      # url: the served model's name ("" = the first listed)
    api: str = "completions"
    api_key: str | None = field(default=None, repr=False, compare=False)
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.kind not in (LOCAL, URL):
            raise InvalidSpecError(f"Target {self.kind!r}: choose {LOCAL} or {URL}.")
        if self.kind == LOCAL and not self.model_id:
            raise InvalidSpecError("Choose a model for the local server.")
        if self.kind == URL and not self.url:
            raise InvalidSpecError("Give the server's URL, such as http://host:8000/v1.")
        if self.api not in APIS:
            raise InvalidSpecError(f"API {self.api!r}: choose {' or '.join(APIS)}.")
        if not 0.1 <= self.timeout_s <= 3600:
            raise InvalidSpecError(f"Request timeout {self.timeout_s!r} s: use 0.1 to 3600.")


@dataclass
class Outcome:
    load: report.LoadResult
    entry_id: int | None
    save_error: str | None
    probe_note: str


def measure(target: Target, plan: LoadPlan, slo: Slo | None, *, say: Say = lambda _: None,
            on_progress: Callable[[str, float], None] | None = None,
            on_wait: Say | None = None, stop: threading.Event | None = None,
            save: bool = True, owner: str | None = None, store=None) -> Outcome:
    """Start (or reach) the server, run the load sweep in the measurement slot, save it."""
    from lib import runlock
    from lib.serving import client

    stop = stop or threading.Event()
    description = _describe(target, plan)
    estimate = plan.estimate_s(SECONDS_PER_REQUEST_GUESS)
    with runlock.measurement_slot(description, on_wait=on_wait, estimate_s=estimate):
        server = None
        try:
            if target.kind == LOCAL:
                server, endpoint, tokenizer, words = _start_local(target, plan, say)
            else:
                endpoint = Endpoint(client.check_url(target.url), target.model, target.api,
                                    target.api_key, timeout_s=target.timeout_s)
                tokenizer, words = None, None
            endpoint, probe_note = client.probe(endpoint)
            if stop.is_set():          # pressed while the server started: send nothing
                raise StoppedError("Stopped before any request was sent: nothing was kept.")
            tokenizer = tokenizer or _default_tokenizer(say)
            count = _counter(tokenizer)
            prompts = _Prompts(tokenizer, plan.prompt_tokens, chat=endpoint.api == "chat")
            say("Sending requests…")
            origin, runs, stopped = run_load(plan, endpoint, client.stream, prompts.text,
                                             count_tokens=count, on_progress=on_progress,
                                             stop=stop)
        finally:
            if server is not None:
                say("Stopping the local server…")
                server.stop()
    target_words = {"kind": target.kind, "endpoint": endpoint.public(),
                    "server": words or f"the server at {endpoint.base_url}",
                    "model_id": target.model_id if target.kind == LOCAL else None,
                    "probe": probe_note,
                    "prompt_tokenizer": "the served model's" if target.kind == LOCAL
                    else "SmolLM2's (the server's usage report gives its own count)"}
    if target.kind == LOCAL:
        target_words.update(dtype=target.dtype, continuous_batching=target.continuous_batching,
                            started_in_s=getattr(server, "started_in_s", None))
    loaded = report.result(target_words, plan, slo, origin, runs, _environment(),
                           stopped=stopped)
    entry_id = save_error = None
    if save:
        entry_id, save_error = save_load(loaded, owner=owner, store=store, on_wait=on_wait)
    return Outcome(loaded, entry_id, save_error, probe_note)


def save_load(loaded: report.LoadResult, owner: str | None = None, store=None,
              on_wait: Say | None = None) -> tuple[int | None, str | None]:
    """(entry id, None) when saved; (None, why not) when the history can't be written."""
    from lib.store import Store, StoreError

    store = store or Store()
    if on_wait is not None:
        store.on_wait = on_wait
    try:
        return store.save_load(report.to_dict(loaded), owner=owner), None
    except StoreError as exc:
        return None, str(exc)


def _describe(target: Target, plan: LoadPlan) -> str:
    where = f"local server with {target.model_id}" if target.kind == LOCAL else "a server URL"
    levels = ", ".join(f"{level:g}" for level in plan.levels)
    return f"load sweep on {where} ({levels} {plan.unit})"


def _start_local(target: Target, plan: LoadPlan, say: Say):
    from lib.serving.local import LocalServer

    peak = max(plan.levels) if plan.mode == "concurrency" else None
    server = LocalServer(target.model_id, dtype=target.dtype,
                         continuous_batching=target.continuous_batching,
                         max_concurrency=int(peak) if peak else 16,
                         prompt_tokens=plan.prompt_tokens, new_tokens=plan.new_tokens, say=say)
    try:
        server.start()
        tokenizer = _tokenizer_of(server)
        return server, server.endpoint, tokenizer, server.description
    except BaseException:
        server.stop()
        raise


def _tokenizer_of(server) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(server.endpoint.model, local_files_only=True)


def _default_tokenizer(say: Say) -> Any:
    from lib.models.loading import _default_tokenizer as default
    return default(say)


def _counter(tokenizer: Any) -> Callable[[str], int]:
    lock = threading.Lock()

    def count(text: str) -> int:
        with lock:
            return len(tokenizer.encode(text, add_special_tokens=False))
    return count


class _Prompts:
    """The i-th request's prompt: exactly `tokens` tokens, each beginning differently so that
    no server's prefix cache can skip its prefill."""

    def __init__(self, tokenizer: Any, tokens: int, chat: bool) -> None:
        self.tokenizer, self.tokens, self.chat = tokenizer, tokens, chat
        self.lock = threading.Lock()

    def text(self, number: int) -> str:
        from lib.prompts import BUILTIN_CONTEXT, BUILTIN_QUESTION, fit_prompt

        with self.lock:
            own = f"Request {number}. {BUILTIN_CONTEXT}{BUILTIN_QUESTION}"
            if self.chat:       # the server applies its own chat template around the text
                ids = self.tokenizer.encode(own, add_special_tokens=False)
                ids = (ids * (self.tokens // max(len(ids), 1) + 1))[:self.tokens]
            else:
                ids = list(fit_prompt(self.tokenizer, self.tokens, own).token_ids)
            return self.tokenizer.decode(ids)


def _environment() -> dict[str, Any]:
    from lib.environment import capture_environment
    from lib.spec import default_threads

    environment = capture_environment("cpu", default_threads())
    environment["measured_at_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return environment
