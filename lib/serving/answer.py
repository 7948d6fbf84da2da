"""A streamed answer read into a `RequestRecord`: its events, the tokens each content chunk
carried, and the server's own queueing delay.

Token counts per content chunk, first available wins (records.FROM_*):
- the server's final `usage.completion_tokens` (U) over the n content chunks: each chunk gets
  one token, then each of the U - n surplus tokens goes to the chunk with the most characters
  per token counted so far (so a 3-character chunk among 1-character ones takes the surplus
  first; ties to the earlier chunk); when U < n, the U longest chunks count one and the rest
  zero (they are skipped by `RequestRecord.token_times`);
- else `count_tokens(text)` per chunk, at least one per chunk (a chunk with text means a decode
  step ended; counting pieces apart may differ slightly from counting the whole answer);
- else one per chunk.

Queueing delay is read from the response headers `x-queue-time` or `x-queue-duration` (TGI):
a value with a unit (`12ms`, `0.012s`) is taken as written; a bare integer is milliseconds (TGI
writes those); a bare decimal number is seconds.

The API key never reaches a reason: `scrub` replaces it wherever a server echoed it.
"""

from __future__ import annotations

import heapq
import json
import re
from typing import Callable

from lib.serving.records import (FAILED, FROM_CHUNKS, FROM_TOKENIZER, FROM_USAGE, OK, SHORT,
                                 Endpoint, RequestRecord)
from lib.serving.wire import excerpt

MAX_USAGE_TOKENS = 10_000_000   # a usage report beyond this is not believed


class Answer:
    """What the events said so far; made into a RequestRecord at the end."""

    def __init__(self, endpoint: Endpoint, new_tokens: int, index: int, phase: str) -> None:
        self.endpoint, self.new_tokens, self.index, self.phase = endpoint, new_tokens, index, phase
        self.sent_s: float | None = None
        self.http_status: int | None = None
        self.queue_s: float | None = None
        self.chunk_s: list[float] = []
        self.texts: list[str] = []
        self.usage_tokens: int | None = None
        self.prompt_tokens: int | None = None
        self.finish_reason: str | None = None
        self.finished = False
        self.status: str | None = None
        self.reason = ""

    def take(self, data: str, arrived: float) -> bool:
        """One event; True when the stream is over ([DONE] or an error)."""
        if data.strip() == "[DONE]":
            self.finished = True
            return True
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            self.fail(f"the stream sent something that is not JSON: {excerpt(data)}")
            return True
        if not isinstance(event, dict):
            self.fail(f"the stream sent an unexpected event: {excerpt(data)}")
            return True
        if event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            self.fail(f"the server reported an error mid-answer: {excerpt(str(message))}")
            return True
        usage = event.get("usage") or {}
        if usage.get("completion_tokens") is not None:
            self.usage_tokens = int(usage["completion_tokens"])
            self.prompt_tokens = usage.get("prompt_tokens")
        for choice in event.get("choices") or ():
            text = choice.get("text") if self.endpoint.api == "completions" \
                else (choice.get("delta") or {}).get("content")
            if text:
                self.chunk_s.append(arrived)
                self.texts.append(text)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.finished = True
        return False

    def fail(self, reason: str) -> None:
        self.stop(FAILED, reason)

    def stop(self, status: str, reason: str) -> None:
        if self.status is None:
            self.status, self.reason = status, reason

    def record(self, end_s: float, count_tokens) -> RequestRecord:
        counts, source = chunk_token_counts(self.texts, self.usage_tokens, count_tokens)
        output = sum(counts)
        status, reason = self.status, self.reason
        if status is None:
            status = OK if output >= self.new_tokens else SHORT
            if status == SHORT:
                why = "an end-of-text token" if self.finish_reason in (None, "stop") \
                    else f"finish_reason {self.finish_reason!r}"
                reason = (f"the server ended the answer after {output} of {self.new_tokens} "
                          f"tokens ({why})")
        sent_s = self.sent_s if self.sent_s is not None else end_s
        return RequestRecord(
            index=self.index, phase=self.phase, sent_s=sent_s, status=status,
            first_token_s=self.chunk_s[0] if self.chunk_s else None,
            chunk_s=tuple(self.chunk_s), chunk_tokens=tuple(counts), end_s=end_s,
            asked_tokens=self.new_tokens, output_tokens=output,
            prompt_tokens=self.prompt_tokens, token_source=source,
            finish_reason=self.finish_reason, queue_s=self.queue_s,
            http_status=self.http_status, reason=scrub(reason, self.endpoint.api_key))


def chunk_token_counts(texts: list[str], usage_tokens: int | None,
                       count_tokens: Callable[[str], int] | None) -> tuple[list[int], str]:
    """Tokens each content chunk carried, and where the counts came from (module docstring)."""
    if usage_tokens is not None and texts and 0 <= usage_tokens <= MAX_USAGE_TOKENS:
        return _shares(usage_tokens, [len(text) for text in texts]), FROM_USAGE
    if count_tokens is not None:
        return [max(1, count_tokens(text)) for text in texts], FROM_TOKENIZER
    return [1] * len(texts), FROM_CHUNKS


def _shares(total: int, characters: list[int]) -> list[int]:
    """`total` tokens over chunks of these lengths: one each, then each further token to the
    chunk with the most characters per token so far; fewer tokens than chunks go to the
    longest chunks. Ties go to the earlier chunk."""
    count = len(characters)
    if total < count:
        longest = sorted(range(count), key=lambda i: (-characters[i], i))[:total]
        return [int(i in longest) for i in range(count)]
    shares = [1] * count
    heap = [(-characters[i], i) for i in range(count)]
    heapq.heapify(heap)
    for _ in range(total - count):
        _, i = heapq.heappop(heap)
        shares[i] += 1
        heapq.heappush(heap, (-characters[i] / shares[i], i))
    return shares


def queue_seconds(headers: dict[str, str]) -> float | None:
    """The server's own queueing delay for this request, if it says (module docstring)."""
    for name in ("x-queue-time", "x-queue-duration"):
        value = headers.get(name, "").strip().lower()
        match = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(ms|s)?", value)
        if not match:
            continue
        number, unit = float(match[1]), match[2]
        if unit == "ms" or (unit is None and "." not in match[1]):
            return number / 1000
        return number
    return None


def scrub(text: str, key: str | None) -> str:
    return text.replace(key, "[API key]") if key else text
