"""Serving many users on hardware that is not here, by simulation: a continuous-batching engine
stepped through time, each step's length from the estimator (`lib.estimate.steps`).

The engine mirrors vLLM's scheduler (V1): each step has a token budget (`max_batched_tokens`)
and at most `max_seqs` running requests. Running requests that decode take one token each
first; prompts still being read take chunks of what is left (chunked prefill); then waiting
requests are admitted in arrival order while the budget, the sequence limit and the KV cache
allow. The KV cache is blocks of `BLOCK_TOKENS` tokens, as many as the devices' memory holds at
`MEMORY_UTILIZATION` once the weights are in; when a decoding request needs a block and none is
free, the latest admitted request is preempted (its blocks freed, its prompt and the tokens it
wrote read again later: vLLM's recompute). A request's first token comes at the end of the step
that reads its prompt's last chunk; each later one at the end of each step it decodes in.

Arrivals are the live load test's (`lib.serving.load.intervals`: Poisson, gamma, constant, the
same seed), or a closed loop of N users; the first `warmup` requests of a level are warm-up,
as live. The result is a `lib.serving.summary.LoadResult` like a live run's, levels, knee and
findings alike, its target marked `simulated`. Nothing here is measured.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from typing import Any

from lib.core.errors import InvalidSpecError
from lib.serving.plan import CONCURRENCY, LoadPlan
from lib.serving.records import MEASURED, OK, SIMULATED, WARMUP, RequestRecord

BLOCK_TOKENS = 16                 # vLLM's KV cache block
MEMORY_UTILIZATION = 0.9          # vLLM's gpu_memory_utilization default
MAX_SEQS = 256                    # vLLM's max_num_seqs default
MAX_BATCHED_TOKENS = 8192         # vLLM V1's per-step token budget for online serving
# Requests per level a simulation uses when none are asked for (the command line) or fewer (the
# page, whose box is sized for live runs): a p99 needs 100, and a level needs time for its
# queue to build; simulating them costs a fraction of a second.
STEADY_REQUESTS = 200
ENGINE_WORDS = ("a vLLM-like engine: continuous batching, chunked prefill, a budget of "
                f"{MAX_BATCHED_TOKENS} tokens and {MAX_SEQS} requests per step, KV blocks of "
                f"{BLOCK_TOKENS} tokens in {MEMORY_UTILIZATION:.0%} of the memory, preemption "
                "by recompute")


@dataclass
class _Request:
    index: int
    arrival: float
    prompt: int
    new: int
    read: int = 0                       # prompt tokens read so far (all of them again after
    written: int = 0                    # a preemption, plus the tokens written)
    first: float | None = None
    times: list[float] = field(default_factory=list)
    blocks: int = 0
    preempted: int = 0

    @property
    def to_read(self) -> int:
        """Prompt tokens (and, after a preemption, written tokens) still to read."""
        return self.prompt + (self.written if self.preempted else 0) - self.read

    @property
    def context(self) -> int:
        return self.read + (0 if self.preempted else self.written)


@dataclass
class Engine:
    step: Any                           # lib.estimate.steps.StepCost
    kv_tokens: int                      # KV cache capacity, tokens, all devices
    max_seqs: int = MAX_SEQS
    max_batched_tokens: int = MAX_BATCHED_TOKENS

    @property
    def blocks(self) -> int:
        return self.kv_tokens // BLOCK_TOKENS


def engine_for(model_id: str, hardware_id: str, gpus: int, dtype: str | None = None,
               eager: bool = False) -> tuple[Engine, dict[str, Any]]:
    """The engine for `model_id` on `gpus` devices of `hardware_id`, and what it assumes (for
    the result's target). InvalidSpecError when the weights leave no room for a KV cache."""
    from lib.core.metrics import format_bytes
    from lib.core.spec import RunSpec
    from lib.estimate import estimator, hardware
    from lib.estimate.steps import StepCost
    from lib.models.catalog import get_entry
    from lib.models.shapes import shapes

    entry = get_entry(model_id)
    dtype = dtype or entry.published_dtype or "bfloat16"
    spec_dtype, weights = estimator.split_dtype(dtype)
    spec = RunSpec(model_id=model_id, dtype=spec_dtype)
    estimator.check(spec.replace(hardware=hardware_id, gpus=gpus), hardware_id, gpus, weights)
    profile = hardware.get(hardware_id, spec.device)
    shape = shapes(model_id)
    step = StepCost(profile, gpus, shape, spec, weights, eager=eager)
    weight_bytes = shape.parameters if weights else shape.weight_bytes(spec_dtype)
    free = MEMORY_UTILIZATION * profile.memory_bytes * gpus - weight_bytes
    kv_tokens = int(free // step.kv_bytes_per_token) if free > 0 else 0
    if kv_tokens < BLOCK_TOKENS:
        raise InvalidSpecError(
            f"{entry.display_name}'s weights ({format_bytes(weight_bytes)}) leave no room for "
            f"a KV cache in {MEMORY_UTILIZATION:.0%} of {gpus} x {profile.name}: use more "
            "devices.")
    said = {"kind": SIMULATED, "model_id": model_id, "hardware": profile.id,
            "endpoint": {"base_url": "simulated", "model": model_id, "api": "completions"},
            "hardware_name": profile.name, "gpus": gpus, "dtype": dtype,
            "engine": ENGINE_WORDS, "kv_cache_tokens": kv_tokens,
            "weights_bytes": weight_bytes, "server": f"simulated: {gpus} x {profile.name}, "
            f"{entry.display_name} in {dtype}, KV cache for {kv_tokens:,} tokens"}
    return Engine(step, kv_tokens), said


def engine_for_this(model_id: str, plan: LoadPlan, dtype: str = "float32",
                    fitted: Any = None) -> tuple[Engine, dict[str, Any]]:
    """The engine of this machine's own local server (`lib.serving.local`: transformers serve
    with continuous batching, sized for the plan's largest level as the app sizes it), its
    step times measured on the model here (`lib.serving.step_fit`, a few seconds; `fitted`:
    measured already)."""
    from lib.models.catalog import get_entry
    from lib.serving import step_fit
    from lib.serving.local import CB_MAX_BATCH_TOKENS, CB_PAGE_TOKENS

    entry = get_entry(model_id)
    entry.check_live()
    fitted = fitted or step_fit.measure(model_id, dtype)
    most = max(1, int(max(plan.levels))) if plan.mode == CONCURRENCY else MAX_SEQS
    pages = math.ceil(most * (plan.prompt_tokens + plan.new_tokens) / CB_PAGE_TOKENS) + most
    engine = Engine(fitted, kv_tokens=pages * CB_PAGE_TOKENS, max_seqs=most,
                    max_batched_tokens=min(CB_MAX_BATCH_TOKENS,
                                           max(CB_PAGE_TOKENS, most * plan.prompt_tokens)))
    said = {"kind": SIMULATED, "model_id": model_id, "hardware": "this",
            "endpoint": {"base_url": "simulated", "model": model_id, "api": "completions"},
            "hardware_name": "this machine", "gpus": 1, "dtype": dtype,
            "engine": "this machine's transformers serve (continuous batching), step times "
                      "measured on the model here", "step_fit": fitted.to_dict(),
            "kv_cache_tokens": engine.kv_tokens,
            "server": f"simulated: this machine's transformers serve, {entry.display_name} in "
                      f"{dtype}, step = {fitted.fixed_s * 1e3:.1f} ms + "
                      f"{fitted.prefill_fixed_s * 1e3:.1f} ms with a prompt + "
                      f"{fitted.per_prompt_s * 1e3:.2f} ms per prompt token (measured here)"}
    return engine, said


def simulate_level(engine: Engine, plan: LoadPlan, level: float) -> list[RequestRecord]:
    """One level: its warm-up and measured requests through the engine, as records."""
    warmup = plan.warmup_at(level)
    total = warmup + plan.requests
    for_each = math.ceil((plan.prompt_tokens + plan.new_tokens) / BLOCK_TOKENS)
    if for_each > engine.blocks:
        raise InvalidSpecError(
            f"One request ({plan.prompt_tokens} + {plan.new_tokens} tokens) needs more KV "
            f"cache than the devices hold ({engine.kv_tokens:,} tokens): shorten it or add "
            "devices.")
    arrivals: list[tuple[float, int]] = []         # (time, index): a heap of requests to come
    if plan.mode == CONCURRENCY:
        users = int(level)
        for index in range(min(users, total)):
            heapq.heappush(arrivals, (0.0, index))
        sent = min(users, total)
    else:
        from lib.serving.load import intervals
        at = 0.0
        for index, gap in enumerate(intervals(plan, level, total)):
            heapq.heappush(arrivals, (at, index))
            at += gap
        sent = total
    waiting: list[_Request] = []
    running: list[_Request] = []
    done: list[_Request] = []
    free = engine.blocks
    now = 0.0
    while len(done) < total:
        while arrivals and arrivals[0][0] <= now:
            when, index = heapq.heappop(arrivals)
            waiting.append(_Request(index, when, plan.prompt_tokens, plan.new_tokens))
        if not running and not waiting:
            now = arrivals[0][0]
            continue
        budget = engine.max_batched_tokens
        decoding, reading = [], []                 # (request, tokens this step)
        for request in list(running):              # decode first, oldest first
            if request.to_read > 0:
                continue
            need = math.ceil((request.context + 1) / BLOCK_TOKENS) - request.blocks
            while need > free and running:
                victim = running[-1]               # the latest admitted gives way
                if victim is request:
                    break
                running.remove(victim)
                free += victim.blocks
                victim.blocks = victim.read = 0
                victim.preempted += 1
                if victim in [r for r, _ in decoding]:
                    decoding = [(r, n) for r, n in decoding if r is not victim]
                    budget += 1
                waiting.insert(0, victim)
            if need > free or budget < 1:
                continue
            free -= max(need, 0)
            request.blocks += max(need, 0)
            decoding.append((request, 1))
            budget -= 1
        for request in running:                    # prompts being read, in chunks
            if request.to_read > 0 and budget > 0:
                chunk = min(request.to_read, budget)
                need = math.ceil((request.read + chunk) / BLOCK_TOKENS) - request.blocks
                if need > free:
                    continue
                free -= need
                request.blocks += need
                reading.append((request, chunk))
                budget -= chunk
        while waiting and budget > 0 and len(running) < engine.max_seqs:
            request = waiting[0]
            chunk = min(request.to_read, budget)
            need = math.ceil(chunk / BLOCK_TOKENS)
            if need > free:
                break
            waiting.pop(0)
            free -= need
            request.blocks = need
            running.append(request)
            reading.append((request, chunk))
            budget -= chunk
        if not decoding and not reading:           # nothing fits: wait for an arrival
            if not arrivals:
                raise InvalidSpecError("The simulated engine could not schedule a request: "
                                       "its KV cache is too small for this load.")
            now = max(now, arrivals[0][0])
            continue
        context = sum(r.context for r, _ in decoding)
        pairs = sum(n * r.read + n * (n + 1) / 2 for r, n in reading)
        now += engine.step.seconds(len(decoding), context, sum(n for _, n in reading), pairs)
        for request, _ in decoding:
            request.written += 1
            request.times.append(now)
        for request, chunk in reading:
            request.read += chunk
            if request.to_read == 0:
                if request.preempted:              # caught up again: back to decoding
                    request.preempted, request.read = 0, request.prompt
                    continue
                request.first = now
                request.written = 1
                request.times.append(now)
        for request in [r for r in running if r.written >= r.new and r.to_read == 0]:
            running.remove(request)
            free += request.blocks
            done.append(request)
            if plan.mode == CONCURRENCY and sent < total:
                heapq.heappush(arrivals, (now, sent))
                sent += 1
    done.sort(key=lambda r: r.index)
    return [RequestRecord(index=r.index, phase=WARMUP if r.index < warmup else MEASURED,
                          sent_s=r.arrival, status=OK, first_token_s=r.first,
                          chunk_s=tuple(r.times), chunk_tokens=(1,) * len(r.times),
                          end_s=r.times[-1], asked_tokens=r.new, output_tokens=len(r.times),
                          prompt_tokens=r.prompt, token_source="simulated",
                          finish_reason="length") for r in done]


def simulate(model_id: str, hardware_id: str, gpus: int, plan: LoadPlan, slo=None,
             dtype: str | None = None, price_per_hour: float | None = None):
    """Every level of `plan`, as a `LoadResult` marked simulated, each level with its cost and
    energy (`lib.serving.pricing.with_cost`) where the hardware's price and power are known."""
    from lib.estimate import cost
    from lib.serving import pricing
    from lib.serving.summary import LoadResult, _level

    if hardware_id == "this":
        if gpus != 1:
            raise InvalidSpecError("This machine is one device: simulate it with --gpus 1.")
        engine, target = engine_for_this(model_id, plan, dtype or "float32")
    else:
        engine, target = engine_for(model_id, hardware_id, gpus, dtype)
    target["price"] = pricing.saved_price(cost.price(hardware_id, price_per_hour))
    levels = [_level(level, tuple(simulate_level(engine, plan, level)), slo, 0, 0.0, False)
              for level in plan.levels]
    levels = [replace(made, summary=priced)
              for made, priced in zip(levels, pricing.levels(LoadResult(target, plan, slo,
                                                                         tuple(levels), {})))]
    return LoadResult(target, plan, slo, tuple(levels),
                      {"provenance": SIMULATED, "engine": ENGINE_WORDS})
