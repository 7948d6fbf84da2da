"""The records a load run keeps: where requests went (`Endpoint`) and what each one produced
(`RequestRecord`). Times are seconds on one monotonic clock (`time.perf_counter`), made relative
to the run's start before they are saved.

The API key lives only in `Endpoint.api_key`, which is left out of `repr`, equality and
`public()`: nothing saved, exported, linked or logged ever holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

APIS = ("completions", "chat")
# How a request asks for exactly `new_tokens` tokens (see lib.serving.client.probe):
# "vllm": max_tokens + min_tokens + ignore_eos (vLLM, SGLang); "transformers": a
# generation_config with min_new_tokens (transformers serve); "max_tokens": only an upper bound,
# so a request may stop early (reported, never hidden); "auto": find out with a probe request.
FIXED_LENGTH_MODES = ("auto", "vllm", "transformers", "max_tokens")

SIMULATED = "simulated"   # a load's target kind and provenance when nothing ran (simulate)
OK = "ok"                 # wrote every token asked for
SHORT = "stopped early"   # finished normally but wrote fewer tokens than asked (an end-of-text)
FAILED = "failed"         # no answer: refused, timed out, HTTP error, broken stream
CANCELLED = "cancelled"   # cut off by the generator (cool-down over, or Stop pressed)
STATUSES = (OK, SHORT, FAILED, CANCELLED)

WARMUP, MEASURED, COOLDOWN = "warm-up", "measured", "cool-down"
PHASES = (WARMUP, MEASURED, COOLDOWN)

# Token counts per chunk come from the first of these that is available.
FROM_USAGE = "server usage report"   # the final usage.completion_tokens, spread over the chunks
FROM_TOKENIZER = "tokenizer"         # each chunk's text counted with the model's tokenizer
FROM_CHUNKS = "one per chunk"        # neither: each content chunk counted as one token


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server. `base_url` ends before the API path, e.g.
    `http://127.0.0.1:8000/v1`; it never holds credentials (checked by `client.check_url`)."""
    base_url: str
    model: str
    api: str = "completions"
    api_key: str | None = field(default=None, repr=False, compare=False)
    fixed_length: str = "auto"
    timeout_s: float = 120.0          # per request, from send to the last byte

    def public(self) -> dict[str, Any]:
        """What may be saved or shown: everything but the key (and whether there was one)."""
        return {"base_url": self.base_url, "model": self.model, "api": self.api,
                "fixed_length": self.fixed_length, "timeout_s": self.timeout_s,
                "api_key": "set" if self.api_key else "none"}

    def with_mode(self, fixed_length: str) -> "Endpoint":
        return replace(self, fixed_length=fixed_length)


@dataclass(frozen=True)
class RequestRecord:
    """One request, from send to its last byte. Absolute clock readings while running; saved
    relative to the run's start (`shifted`)."""
    index: int                        # send order within its level, warm-up included
    phase: str                        # WARMUP, MEASURED or COOLDOWN
    sent_s: float
    status: str
    first_token_s: float | None = None            # first chunk with content
    chunk_s: tuple[float, ...] = ()               # arrival of every content chunk
    chunk_tokens: tuple[int, ...] = ()            # tokens each chunk carried (see token_source)
    end_s: float | None = None                    # last byte (or the failure)
    asked_tokens: int = 0
    output_tokens: int = 0
    prompt_tokens: int | None = None              # as the server reported it
    token_source: str = FROM_CHUNKS
    finish_reason: str | None = None
    queue_s: float | None = None                  # queueing delay, where the server reports it
    http_status: int | None = None
    reason: str = ""                              # why it failed or stopped early, in words

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.sent_s

    @property
    def e2e_s(self) -> float | None:
        return None if self.end_s is None or self.status == FAILED else self.end_s - self.sent_s

    @property
    def tpot_s(self) -> float | None:
        """(last token - first token) / (tokens - 1): the decode pace, as `run` computes it."""
        if self.status not in (OK, SHORT) or self.output_tokens < 2 or not self.chunk_s:
            return None
        return (self.chunk_s[-1] - self.chunk_s[0]) / (self.output_tokens - 1)

    def token_times(self) -> list[float]:
        """When each token arrived, honestly spread: a chunk carrying k tokens after a gap is
        spread evenly over that gap (the k tokens were made during it and only their count is
        known); the first chunk's tokens all count at its arrival."""
        times: list[float] = []
        previous = None
        for at, count in zip(self.chunk_s, self.chunk_tokens):
            if count <= 0:
                continue
            if previous is None:
                times.extend([at] * count)
            else:
                step = (at - previous) / count
                times.extend(previous + step * (i + 1) for i in range(count))
            previous = at
        return times

    def itl_s(self) -> list[float]:
        """Inter-token latencies, multi-token chunks spread as in `token_times`."""
        times = self.token_times()
        return [b - a for a, b in zip(times, times[1:])]

    def shifted(self, origin: float) -> "RequestRecord":
        def at(value: float | None) -> float | None:
            return None if value is None else value - origin
        return replace(self, sent_s=self.sent_s - origin, first_token_s=at(self.first_token_s),
                       end_s=at(self.end_s), chunk_s=tuple(t - origin for t in self.chunk_s))

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "phase": self.phase, "sent_s": self.sent_s,
                "status": self.status, "first_token_s": self.first_token_s,
                "chunk_s": list(self.chunk_s), "chunk_tokens": list(self.chunk_tokens),
                "end_s": self.end_s, "asked_tokens": self.asked_tokens,
                "output_tokens": self.output_tokens, "prompt_tokens": self.prompt_tokens,
                "token_source": self.token_source, "finish_reason": self.finish_reason,
                "queue_s": self.queue_s, "http_status": self.http_status, "reason": self.reason}
