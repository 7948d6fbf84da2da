"""One load run from start to result, the same for the page and the CLI.

`Target` says where the requests go: "local" starts `transformers serve` with a catalog model
(`lib.serving.local`) and stops it afterwards whatever happens; "url" is any OpenAI-compatible
server. `measure` then checks the server (`client.probe`: reachable, the model, how to ask for a
fixed length), takes the machine's measurement slot (so no other run disturbs the numbers, and
others see the run in the queue), sizes the plan from a calibration where asked
(`lib.serving.sizing`), runs the load sweep, and returns the result. Saving it is the
caller's (`lib.records.load_tests`): the history sits above serving.

Prompts are counted with the served model's tokenizer for a local server; a URL's model may have
another tokenizer, so SmolLM2's makes its prompts and the server's own usage report says how long
they really were (saved with each request).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from lib.core.errors import InvalidSpecError, StoppedError
from lib.estimate import cost
from lib.serving import findings, pricing, summary, sizing as sizing_rules
from lib.serving.load import run_load
from lib.serving.plan import LoadPlan
from lib.serving.measures import Slo
from lib.serving.records import APIS, MEASURED, Endpoint

LOCAL, URL, SIMULATE = "local", "url", "simulate"
SECONDS_PER_REQUEST_GUESS = 2.0        # for the queue's estimate only
START_GUESS_S = 40.0                   # starting a local server, for the queue's estimate only
FALLBACK_TIMEOUT_S = 120.0             # a fixed plan whose calibration got no answer
CALIBRATION_PROMPTS = 1_000_000        # calibration prompts are numbered apart from the load's
# The last calibration per (server, prompt length) in this process: the page's time
# estimate before a run comes from it when there is one.
LAST_CALIBRATION: dict[tuple, sizing_rules.Calibration] = {}

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
    timeout_s: float = FALLBACK_TIMEOUT_S     # used only where the plan is not sized
    hardware: str | None = None          # simulate: a hardware profile id
    gpus: int = 1                        # simulate: devices serving the model
    # The user's price per hour: per device for a simulation, the whole server's for a live one.
    price_per_hour: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in (LOCAL, URL, SIMULATE):
            raise InvalidSpecError(f"Target {self.kind!r}: choose {LOCAL}, {URL} or "
                                   f"{SIMULATE}.")
        if self.kind == SIMULATE and not (self.model_id and self.hardware):
            raise InvalidSpecError("A simulation needs a model and a hardware profile.")
        if self.kind == LOCAL and not self.model_id:
            raise InvalidSpecError("Choose a model for the local server.")
        if self.kind == URL and not self.url:
            raise InvalidSpecError("Give the server's URL, such as http://host:8000/v1.")
        if self.api not in APIS:
            raise InvalidSpecError(f"API {self.api!r}: choose {' or '.join(APIS)}.")
        if self.price_per_hour is not None:
            cost.price("", self.price_per_hour)        # InvalidSpecError for a bad amount
        if not 0.1 <= self.timeout_s <= 3600:
            raise InvalidSpecError(f"Request timeout {self.timeout_s!r} s: use 0.1 to 3600.")


@dataclass(frozen=True)
class Measured:
    """What one load run produced, not yet saved."""
    load: summary.LoadResult
    probe_note: str
    measured_s: float | None = None        # calibration and levels, wall time


def calibration_key(target: Target, plan: LoadPlan) -> tuple:
    return (target.kind, target.model_id or target.url, target.dtype,
            target.continuous_batching, plan.prompt_tokens)


def queue_estimate_s(target: Target, plan: LoadPlan,
                     sizing: sizing_rules.Sizing | None) -> float:
    """What the queue tells others this run needs: the budget when the plan is sized to it."""
    start = START_GUESS_S if target.kind == LOCAL else 0.0
    if sizing is not None and sizing.calibrates:
        return start + sizing.budget_s
    return start + plan.estimate_s(SECONDS_PER_REQUEST_GUESS)


def measure(target: Target, plan: LoadPlan, slo: Slo | None, *, say: Say = lambda _: None,
            on_progress: Callable[[str, float], None] | None = None,
            on_wait: Say | None = None, stop: threading.Event | None = None,
            sizing: sizing_rules.Sizing | None = None) -> Measured:
    """Start (or reach) the server, run the load sweep in the measurement slot, return it.

    With `sizing`, the plan's open parts (levels, requests, answer length, timeout) are
    planned from a calibration against the started server to fit `sizing.budget_s`
    (`lib.serving.sizing`); the run's result carries that plan."""
    from lib.machine import runlock
    from lib.serving import client

    stop = stop or threading.Event()
    description = _describe(target, plan, sizing)
    estimate = queue_estimate_s(target, plan, sizing)
    sized = None
    measured_s = None
    with runlock.measurement_slot(description, on_wait=on_wait, estimate_s=estimate):
        server = None
        try:
            if target.kind == LOCAL:
                server, endpoint, tokenizer, words = _start_local(target, plan, say, sizing)
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
            began = time.perf_counter()
            if sizing is not None:
                sized = _sized(target, plan, sizing, endpoint, prompts, count, say,
                               server.pid if server is not None else None)
                plan = sized.plan
                endpoint = _with_timeout(endpoint, sized.timeout_s)
                say(findings.plan_words(sized))
            if stop.is_set():
                raise StoppedError("Stopped before any request was sent: nothing was kept.")
            say("Sending requests…")
            origin, runs, stopped = run_load(plan, endpoint, client.stream, prompts.text,
                                             count_tokens=count, on_progress=on_progress,
                                             stop=stop)
            measured_s = time.perf_counter() - began
        finally:
            if server is not None:
                say("Stopping the local server…")
                server.stop()
    target_words = {"kind": target.kind, "endpoint": endpoint.public(),
                    "server": words or f"the server at {endpoint.base_url}",
                    "model_id": target.model_id if target.kind == LOCAL else None,
                    "probe": probe_note,
                    "prompt_tokenizer": "the served model's" if target.kind == LOCAL
                    else "SmolLM2's"}
    price = cost.price("this", target.price_per_hour) if target.kind == LOCAL else \
        (cost.price("", target.price_per_hour) if target.price_per_hour is not None else None)
    target_words["price"] = pricing.saved_price(price)
    if target.kind == LOCAL:
        target_words.update(dtype=target.dtype, continuous_batching=target.continuous_batching,
                            started_in_s=getattr(server, "started_in_s", None))
    sizing_words = None
    if sized is not None:
        sizing_words = {**sized.to_dict(), "measured_s": measured_s}
    loaded = summary.result(target_words, plan, slo, origin, runs, _environment(),
                           stopped=stopped, sizing=sizing_words)
    return Measured(loaded, probe_note, measured_s)


def _with_timeout(endpoint: Endpoint, timeout_s: float) -> Endpoint:
    from dataclasses import replace
    return replace(endpoint, timeout_s=timeout_s)


def _sized(target: Target, plan: LoadPlan, sizing: sizing_rules.Sizing, endpoint: Endpoint,
           prompts: "_Prompts", count: Callable[[str], int], say: Say,
           server_pid: int | None) -> sizing_rules.SizedPlan:
    """The plan sized from a calibration against this server (or as given, when nothing is
    left open)."""
    from lib.serving import client

    if not sizing.calibrates:
        return sizing_rules.unsized(plan, sizing.timeout_s, sizing.budget_s)
    tokens = sizing_rules.calibration_tokens(plan.new_tokens)
    say(f"Timing an answer of {tokens} tokens (two where they are quick), one at a time, to "
        "size the load to this machine…")
    # One answer may not take more than half the budget: a plan needs several.
    probe = _with_timeout(endpoint, max(sizing.budget_s / 2, 10.0))
    share = _OtherShare(server_pid)

    def send(number: int):
        return client.stream(probe, prompts.text(CALIBRATION_PROMPTS + number), tokens,
                             index=number, phase=MEASURED, count_tokens=count)
    try:
        calibration = sizing_rules.calibrate(send, time.perf_counter, share.percent, tokens,
                                             sizing.budget_s)
    except sizing_rules.CalibrationError:
        if sizing.auto_levels or sizing.auto_requests:
            raise
        # A fixed plan runs anyway: its failures will say what the server answered.
        return sizing_rules.unsized(plan, sizing.timeout_s or FALLBACK_TIMEOUT_S,
                                    sizing.budget_s)
    LAST_CALIBRATION[calibration_key(target, plan)] = calibration
    return sizing_rules.size(plan, calibration, sizing)


class _OtherShare:
    """Other programs' CPU share from now until `percent()`: the machine's busy time less this
    process's and the local server's (its whole process tree is ours, not "other")."""

    def __init__(self, server_pid: int | None) -> None:
        from lib.machine import activity
        self.rules = activity
        self.server_pid = server_pid
        try:
            self.start = (activity._machine_busy_s(), self._ours(), time.monotonic())
        except Exception:  # noqa: BLE001 - the share is a note; without it the plan still runs
            self.start = None

    def _ours(self) -> float:
        import psutil
        own = psutil.Process()
        total = self.rules._own_cpu_s(own)
        if self.server_pid is not None:
            try:
                server = psutil.Process(self.server_pid)
                for process in [server, *server.children(recursive=True)]:
                    total += self.rules._own_cpu_s(process)
            except psutil.Error:
                pass
        return total

    def percent(self) -> float | None:
        import psutil
        if self.start is None:
            return None
        busy, ours, began = self.start
        elapsed = time.monotonic() - began
        try:
            other = (self.rules._machine_busy_s() - busy) - (self._ours() - ours)
        except (psutil.Error, OSError):
            return None
        cores = psutil.cpu_count() or 1
        return min(max(other / (elapsed * cores) * 100, 0.0), 100.0) if elapsed > 0 else None


def _describe(target: Target, plan: LoadPlan, sizing: sizing_rules.Sizing | None = None) -> str:
    where = f"local server with {target.model_id}" if target.kind == LOCAL else "a server URL"
    if sizing is not None and sizing.auto_levels:
        return f"load sweep on {where} ({plan.unit} sized to this machine)"
    levels = ", ".join(f"{level:g}" for level in plan.levels)
    return f"load sweep on {where} ({levels} {plan.unit})"


def _start_local(target: Target, plan: LoadPlan, say: Say,
                 sizing: sizing_rules.Sizing | None = None):
    from lib.serving.local import LocalServer

    levels = plan.levels
    if sizing is not None and sizing.auto_levels:      # the most users a sized plan may ask
        levels = tuple(max(ladder) for ladder in sizing_rules.USER_LADDERS.values())
    peak = max(levels) if plan.mode == "concurrency" else None
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
        from lib.core.prompts import BUILTIN_CONTEXT, BUILTIN_QUESTION, fit_prompt

        with self.lock:
            own = f"Request {number}. {BUILTIN_CONTEXT}{BUILTIN_QUESTION}"
            if self.chat:       # the server applies its own chat template around the text
                ids = self.tokenizer.encode(own, add_special_tokens=False)
                ids = (ids * (self.tokens // max(len(ids), 1) + 1))[:self.tokens]
            else:
                ids = list(fit_prompt(self.tokenizer, self.tokens, own).token_ids)
            return self.tokenizer.decode(ids)


def _environment() -> dict[str, Any]:
    from lib.machine.environment import capture_environment
    from lib.core.spec import default_threads

    environment = capture_environment("cpu", default_threads())
    environment["measured_at_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return environment
