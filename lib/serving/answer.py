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

Everything in an event is checked before it is used (`take`): `usage` an object, token counts
whole numbers no larger than `Answer.most_tokens` (a count is what the heap in `_shares` spreads,
so a claimed 9,999,999 tokens can't cost seconds), `choices` a list of objects, texts strings,
`finish_reason` a short string; more content chunks than `Answer.most_tokens` (a few times the
tokens asked for) end the request as "reply too large". A field that fails is that request's
failure reason in words. An answer longer than asked (`Answer.most_counted`) fails too: its
tokens would inflate the throughput, and its timing per token is not the asked answer's.

The API key never reaches a reason or a saved field: `scrub` replaces it, and any piece of it
`KEY_PIECE_CHARS` long or longer, in every text that came from the server, before the text is
cut to an excerpt (a key straddling the cut would otherwise leave most of itself behind).
"""

from __future__ import annotations

import functools
import heapq
import json
import math
import re
from typing import Callable

from lib.serving.records import (FAILED, FROM_CHUNKS, FROM_TOKENIZER, FROM_USAGE, OK, SHORT,
                                 Endpoint, RequestRecord)
from lib.serving.wire import excerpt

MAX_USAGE_TOKENS = 10_000_000   # a usage report beyond this is not believed
MAX_PROMPT_TOKENS = 10_000_000  # a prompt count beyond this is not a count
MAX_CHUNKS_PER_TOKEN = 4        # content chunks per token asked for, plus a few, at most
MAX_FINISH_REASON_CHARS = 100
MAX_QUEUE_S = 86_400.0          # a queueing delay over a day is not one
KEY_PIECE_CHARS = 8             # this long a piece of the key is scrubbed too


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
        """One event; True when the stream is over ([DONE], an error or a malformed field)."""
        if data.strip() == "[DONE]":
            self.finished = True
            return True
        data = scrub(data, self.endpoint.api_key)
        try:
            event = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            return self._malformed(f"something that is not JSON: {excerpt(data)}")
        if not isinstance(event, dict):
            return self._malformed(f"an unexpected event: {excerpt(data)}")
        if event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            self.fail("the server reported an error mid-answer: "
                      f"{excerpt(scrub(str(message), self.endpoint.api_key))}")
            return True
        usage = event.get("usage")
        if usage is not None:
            if not isinstance(usage, dict):
                return self._malformed(f"'usage' that is not an object: {excerpt(data)}")
            if usage.get("completion_tokens") is not None:
                tokens = _count(usage["completion_tokens"], self.most_tokens)
                if tokens is None:
                    return self._malformed(
                        f"usage.completion_tokens {excerpt(repr(usage['completion_tokens']))}, "
                        f"not a token count from 0 to {self.most_tokens} (for "
                        f"{self.new_tokens} asked for)")
                self.usage_tokens = tokens
            if usage.get("prompt_tokens") is not None:
                prompt = _count(usage["prompt_tokens"], MAX_PROMPT_TOKENS)
                if prompt is None:
                    return self._malformed(
                        f"usage.prompt_tokens {excerpt(repr(usage['prompt_tokens']))}, not a "
                        "token count")
                self.prompt_tokens = prompt
        choices = event.get("choices")
        if choices is not None and not isinstance(choices, list):
            return self._malformed(f"'choices' that is not a list: {excerpt(data)}")
        for choice in choices or ():
            if not isinstance(choice, dict):
                return self._malformed(f"a choice that is not an object: {excerpt(data)}")
            delta = choice.get("delta") if self.endpoint.api == "chat" else None
            if delta is not None and not isinstance(delta, dict):
                return self._malformed(f"a 'delta' that is not an object: {excerpt(data)}")
            text = choice.get("text") if self.endpoint.api == "completions" \
                else (delta or {}).get("content")
            if text is not None and not isinstance(text, str):
                return self._malformed(f"answer text that is not a string: {excerpt(data)}")
            if text:
                if len(self.texts) >= self.most_tokens:
                    self.fail(f"reply too large: more than {len(self.texts)} pieces of text for "
                              f"{self.new_tokens} tokens asked for")
                    return True
                self.chunk_s.append(arrived)
                self.texts.append(text)
            reason = choice.get("finish_reason")
            if reason:
                if not isinstance(reason, str) or len(reason) > MAX_FINISH_REASON_CHARS:
                    return self._malformed(f"a finish_reason that is not a short word: "
                                           f"{excerpt(repr(reason))}")
                self.finish_reason = reason
                self.finished = True
        return False

    @property
    def most_tokens(self) -> int:
        """The most tokens, or pieces of text, an answer may bring: a few times those asked
        for (a server may ignore max_tokens), never millions."""
        return MAX_CHUNKS_PER_TOKEN * self.new_tokens + 16

    def most_counted(self, source: str) -> int:
        """The most output tokens an answer may count and still be the asked one: exactly those
        asked for by the server's own count (every OpenAI-compatible server keeps to
        max_tokens); a little more when its text was counted here, piece by piece."""
        return self.new_tokens if source == FROM_USAGE \
            else self.new_tokens + max(2, self.new_tokens // 4)

    def _malformed(self, what: str) -> bool:
        self.fail(f"the stream sent {what}")
        return True

    def fail(self, reason: str) -> None:
        self.stop(FAILED, reason)

    def stop(self, status: str, reason: str) -> None:
        if self.status is None:
            self.status, self.reason = status, reason

    def record(self, end_s: float, count_tokens) -> RequestRecord:
        counts, source = chunk_token_counts(self.texts, self.usage_tokens, count_tokens)
        output = sum(counts)
        status, reason = self.status, self.reason
        if status is None and output > self.most_counted(source):
            status, reason = FAILED, (
                f"the server sent {output} tokens where {self.new_tokens} were asked for (it "
                "did not keep to max_tokens), so the time per token can't be told")
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
            number /= 1000
        return number if math.isfinite(number) and number <= MAX_QUEUE_S else None
    return None


def _count(value, most: int) -> int | None:
    """`value` as a token count from 0 to `most`, else None (a bool, a float, a list, 1e400)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        return None
    return value


@functools.lru_cache(maxsize=8)
def _key_pieces(key: str) -> tuple[frozenset[str], re.Pattern]:
    """The key's pieces of KEY_PIECE_CHARS characters, and a pattern that finds any of them."""
    pieces = frozenset(key[i:i + KEY_PIECE_CHARS] for i in range(len(key) - KEY_PIECE_CHARS + 1))
    return pieces, re.compile("|".join(re.escape(piece) for piece in sorted(pieces)))


def scrub(text: str, key: str | None) -> str:
    """`text` with the key, and every piece of it at least KEY_PIECE_CHARS long, replaced."""
    if not key or not text:
        return text
    text = text.replace(key, "[API key]")
    if len(key) < KEY_PIECE_CHARS:
        return text
    pieces, anywhere = _key_pieces(key)
    if not anywhere.search(text):
        return text                  # the usual case, in one pass of the regex engine
    covered = bytearray(len(text))
    found = False
    for i in range(len(text) - KEY_PIECE_CHARS + 1):
        if text[i:i + KEY_PIECE_CHARS] in pieces:
            covered[i:i + KEY_PIECE_CHARS] = b"\x01" * KEY_PIECE_CHARS
            found = True
    if not found:
        return text
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append("[API key]")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
