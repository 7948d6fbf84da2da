"""One streaming request to an OpenAI-compatible server, timed chunk by chunk.

`stream` POSTs to `{base_url}/completions` or `/chat/completions` with `stream: true` and reads
the server-sent events as they arrive; it never raises for a failed request: a refused
connection, a timeout, an HTTP error or a broken stream is a `RequestRecord` with status FAILED
and the reason in words. `probe` checks a server before a load run and finds out how it can be
made to write an exact number of tokens. `check_url` cleans the address a person typed.

Only the standard library is used, so the engine imports on a bare GPU machine. HTTP is spoken
over a plain socket rather than `http.client`, whose reads can't be resumed after a socket
timeout: here every read waits at most POLL_S, so a silent stream notices Cancel and the
overall deadline (`Endpoint.timeout_s`, send to last byte) within that time.

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
"""

from __future__ import annotations

import heapq
import json
import re
import socket
import ssl
import threading
import time
from typing import Callable, Iterator
from urllib.parse import urlsplit

from lib.core.errors import ServingError
from lib.serving.records import (CANCELLED, FAILED, FROM_CHUNKS, FROM_TOKENIZER, FROM_USAGE,
                                 MEASURED, OK, SHORT, Endpoint, RequestRecord)

POLL_S = 0.1                  # longest wait for one read: how late Cancel and the deadline act
EXCERPT_CHARS = 200           # of an error body, in a reason
MAX_ERROR_BODY_BYTES = 64_000
PROBE_TOKENS = 2
MAX_USAGE_TOKENS = 10_000_000   # a usage report beyond this is not believed
_VERSION_SEGMENT = re.compile(r"v\d+[a-z0-9]*")
# Words in a 400/422 body that say the request's extra fields were refused (not, say, a prompt
# too long): transformers serve says "Unexpected fields", pydantic "extra fields not permitted".
_FIELD_WORDS = ("min_tokens", "ignore_eos", "generation_config", "unexpected", "extra",
                "unrecognized", "unknown", "not permitted")
MODE_SENTENCES = {
    "vllm": "This server accepts min_tokens and ignore_eos, so every answer has exactly the "
            "asked length.",
    "transformers": "This server accepts a generation_config with min_new_tokens, so every "
                    "answer has exactly the asked length.",
    "max_tokens": "This server only takes max_tokens: answers may stop early; those requests "
                  "are counted and shown, not hidden.",
}

Clock = Callable[[], float]


def check_url(text: str) -> str:
    """The base URL to send requests to, ending in its API version (`http://host:8000/v1`)."""
    given = (text or "").strip()
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingError(f"{given!r} is not a server address: write it like "
                           "http://127.0.0.1:8000/v1 (http or https, a host, a port).")
    if parts.username is not None or parts.password is not None:
        raise ServingError("The address holds a user name or password; remove it and put the "
                           "key in the page's API key field (on the command line: --api-key-env), which is "
                           "never saved.")
    if parts.query or parts.fragment or given.endswith(("?", "#")):
        raise ServingError("The address has a query (?…) or fragment (#…); remove it. A key "
                           "goes in the page's API key field (on the command line: --api-key-env), never in "
                           "the address.")
    try:
        parts.port
    except ValueError:
        raise ServingError(f"The port in {given!r} is not a number from 1 to 65535.") from None
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if path.endswith(suffix):      # a full API address pasted: keep what comes before
            path = path[:-len(suffix)]
    if not _VERSION_SEGMENT.fullmatch(path.rsplit("/", 1)[-1]):
        path += "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def request_body(endpoint: Endpoint, prompt: str, new_tokens: int) -> dict:
    """What `stream` sends: greedy, streamed, with the endpoint's fixed-length fields."""
    body: dict = {"model": endpoint.model, "stream": True, "max_tokens": new_tokens,
                  "temperature": 0, "stream_options": {"include_usage": True}}
    if endpoint.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if endpoint.fixed_length == "vllm":
        body.update(min_tokens=new_tokens, ignore_eos=True)
    elif endpoint.fixed_length == "transformers":
        body["generation_config"] = json.dumps(
            {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False})
    return body


def stream(endpoint: Endpoint, prompt: str, new_tokens: int, *, index: int = 0,
           phase: str = MEASURED, clock: Clock = time.perf_counter,
           cancel: threading.Event | None = None,
           count_tokens: Callable[[str], int] | None = None) -> RequestRecord:
    """Send one request and time its answer; every failure comes back as a record."""
    return _stream(endpoint, prompt, new_tokens, index, phase, clock, cancel, count_tokens)[0]


def probe(endpoint: Endpoint,
          count_tokens: Callable[[str], int] | None = None) -> tuple[Endpoint, str]:
    """Check the server answers and offers the model; when `fixed_length` is "auto", find the
    way it takes to write an exact length. Returns the endpoint to use and a sentence for
    people; raises ServingError saying what to do when the server can't be used."""
    endpoint = _checked_model(endpoint)
    if endpoint.fixed_length != "auto":
        return endpoint, MODE_SENTENCES.get(endpoint.fixed_length, "")
    for mode in ("vllm", "transformers", "max_tokens"):
        candidate = endpoint.with_mode(mode)
        record, body = _stream(candidate, "Hello", PROBE_TOKENS, 0, MEASURED, time.perf_counter,
                               None, count_tokens)
        if record.status != FAILED:
            return candidate, MODE_SENTENCES[mode]
        refused_fields = record.http_status in (400, 422) and \
            any(word in body.lower() for word in _FIELD_WORDS)
        if mode == "max_tokens" or not refused_fields:
            raise ServingError(_failure_advice(candidate, record))
    raise AssertionError("unreachable")


# --- requests ------------------------------------------------------------------------------

class _Stopped(Exception):
    """The deadline passed or Cancel was pressed while waiting for bytes."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Connection:
    """One HTTP/1.1 exchange on a socket, read in slices of at most POLL_S."""

    def __init__(self, url: str, deadline: float, cancel: threading.Event | None,
                 timeout_s: float) -> None:
        parts = urlsplit(url)
        self.deadline, self.cancel, self.timeout_s = deadline, cancel, timeout_s
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.netloc, self.path = parts.netloc, parts.path or "/"
        self.https = parts.scheme == "https"
        self.sock: socket.socket | None = None
        self.last_byte_s: float | None = None

    def open(self) -> None:
        self.sock = socket.create_connection((self.host, self.port),
                                             timeout=max(self._left(), 0.001))
        if self.https:
            self.sock = ssl.create_default_context().wrap_socket(self.sock,
                                                                 server_hostname=self.host)
        self.sock.settimeout(POLL_S)

    def send(self, method: str, headers: dict[str, str], body: bytes) -> None:
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {self.netloc}",
                 "Connection: close", "Accept-Encoding: identity",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def receive(self, clock: Clock) -> bytes:
        """The next bytes (b"" when the server closed), waiting POLL_S at a time."""
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise _Stopped(CANCELLED, "cancelled while the answer was streaming")
            if self._left() <= 0:
                raise _Stopped(FAILED, f"no complete answer within the {self.timeout_s:g} s "
                                       "timeout: the server is overloaded or stuck")
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            self.last_byte_s = clock()
            return data

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _left(self) -> float:
        return self.deadline - time.monotonic()


def _read_head(connection: _Connection, clock: Clock) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and the body bytes that came with them."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = connection.receive(clock)
        if not data:
            raise ConnectionError("the server closed the connection without an answer")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"the server's answer is not HTTP: {_excerpt(status_line)}") \
            from None
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def _body(connection: _Connection, headers: dict[str, str], rest: bytes,
          clock: Clock) -> Iterator[tuple[bytes, float]]:
    """The body's bytes as they arrive, with their arrival time; chunked encoding undone."""
    arrived = connection.last_byte_s
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        length = int(headers["content-length"]) if "content-length" in headers else None
        received = 0
        data = rest
        while True:
            if data:
                received += len(data)
                yield data, arrived
            if length is not None and received >= length:
                return
            data = connection.receive(clock)
            arrived = connection.last_byte_s
            if not data:
                if length is not None:
                    raise ConnectionError("the server closed the connection mid-answer")
                return
    buffer, left_in_chunk, after_chunk = rest, 0, False
    while True:
        if left_in_chunk and buffer:
            piece, buffer = buffer[:left_in_chunk], buffer[left_in_chunk:]
            left_in_chunk -= len(piece)
            after_chunk = not left_in_chunk          # the chunk's own CRLF follows it
            yield piece, arrived
            continue
        if not left_in_chunk:
            if after_chunk and len(buffer) >= 2:
                buffer, after_chunk = buffer[2:], False
            if not after_chunk and b"\r\n" in buffer:
                line, _, buffer = buffer.partition(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                left_in_chunk = size
                continue
        data = connection.receive(clock)
        if not data:
            raise ConnectionError("the server closed the connection mid-answer")
        buffer += data
        arrived = connection.last_byte_s


def _events(pieces: Iterator[tuple[bytes, float]]) -> Iterator[tuple[str, float]]:
    """Server-sent events' data fields, with the arrival time of the bytes that completed each;
    comments (keep-alives) skipped."""
    buffer = b""
    for data, arrived in pieces:
        buffer = (buffer + data).replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, _, buffer = buffer.partition(b"\n\n")
            lines = [line for line in event.decode("utf-8", "replace").split("\n")
                     if line.startswith("data:")]
            if lines:
                yield "\n".join(line[5:].removeprefix(" ") for line in lines), arrived
    if buffer.strip():
        raise ValueError(f"the stream ended inside an event: {_excerpt(buffer.decode())}")


def _stream(endpoint: Endpoint, prompt: str, new_tokens: int, index: int, phase: str,
            clock: Clock, cancel: threading.Event | None,
            count_tokens: Callable[[str], int] | None) -> tuple[RequestRecord, str]:
    """The record, and the error body (whole, for `probe`) when the server refused."""
    path = "/chat/completions" if endpoint.api == "chat" else "/completions"
    body = json.dumps(request_body(endpoint, prompt, new_tokens)).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    connection = _Connection(endpoint.base_url + path, time.monotonic() + endpoint.timeout_s,
                             cancel, endpoint.timeout_s)
    answer = _Answer(endpoint, new_tokens, index, phase)
    error_body = ""
    try:
        connection.open()
        answer.sent_s = clock()
        connection.send("POST", headers, body)
        answer.http_status, response_headers, rest = _read_head(connection, clock)
        answer.queue_s = queue_seconds(response_headers)
        pieces = _body(connection, response_headers, rest, clock)
        if answer.http_status >= 400:
            error_body = _collect(pieces).decode("utf-8", "replace")
            answer.fail(f"HTTP {answer.http_status}: {_excerpt(error_body) or 'no reason given'}")
        else:
            for data, arrived in _events(pieces):
                if answer.take(data, arrived):
                    break
            else:
                if not answer.finished:
                    answer.fail("the stream ended before the answer was complete (no [DONE] "
                                f"and no finish_reason, after {len(answer.chunk_s)} chunks)")
    except _Stopped as stopped:
        answer.stop(stopped.status, stopped.reason)
    except ConnectionRefusedError:
        answer.fail(f"nothing answers at {endpoint.base_url} (connection refused)")
    except socket.gaierror:
        answer.fail(f"the server name in {endpoint.base_url} could not be found (DNS)")
    except (socket.timeout, TimeoutError):
        answer.fail(f"could not connect to {endpoint.base_url} within {endpoint.timeout_s:g} s")
    except (OSError, ValueError, ConnectionError) as error:
        answer.fail(f"{type(error).__name__}: {error}")
    finally:
        connection.close()
    end_s = connection.last_byte_s if connection.last_byte_s is not None else clock()
    return answer.record(end_s, count_tokens), _scrub(error_body, endpoint.api_key)


def _collect(pieces: Iterator[tuple[bytes, float]]) -> bytes:
    body = b""
    try:
        for data, _ in pieces:
            body += data
            if len(body) > MAX_ERROR_BODY_BYTES:
                break
    except ConnectionError:
        pass                       # a body cut short still says why it was refused
    return body


class _Answer:
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
            self.fail(f"the stream sent something that is not JSON: {_excerpt(data)}")
            return True
        if not isinstance(event, dict):
            self.fail(f"the stream sent an unexpected event: {_excerpt(data)}")
            return True
        if event.get("error"):
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            self.fail(f"the server reported an error mid-answer: {_excerpt(str(message))}")
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
            http_status=self.http_status, reason=_scrub(reason, self.endpoint.api_key))


# --- counting and reading ------------------------------------------------------------------

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


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT_CHARS else line[:EXCERPT_CHARS - 1] + "…"


def _scrub(text: str, key: str | None) -> str:
    return text.replace(key, "[API key]") if key else text


# --- probing -------------------------------------------------------------------------------

def _checked_model(endpoint: Endpoint) -> Endpoint:
    """The endpoint with its model checked against `/models` (or named from it when empty)."""
    connection = _Connection(endpoint.base_url + "/models",
                             time.monotonic() + endpoint.timeout_s, None, endpoint.timeout_s)
    headers = {"Accept": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    try:
        connection.open()
        connection.send("GET", headers, b"")
        status, response_headers, rest = _read_head(connection, time.perf_counter)
        body = _collect(_body(connection, response_headers, rest, time.perf_counter))
    except ConnectionRefusedError:
        raise ServingError(_nothing_answers(endpoint)) from None
    except socket.gaierror:
        raise ServingError(f"The server name in {endpoint.base_url} could not be found: check "
                           "the address.") from None
    except (_Stopped, OSError, ConnectionError) as error:
        raise ServingError(f"{endpoint.base_url} did not answer properly "
                           f"({_scrub(str(error), endpoint.api_key)}): is it an "
                           "OpenAI-compatible server, and is it running?") from None
    finally:
        connection.close()
    if status in (401, 403):
        raise ServingError(_key_refused(endpoint, status))
    try:
        offered = [str(item["id"]) for item in json.loads(body)["data"]]
    except (ValueError, KeyError, TypeError):
        offered = None                   # no model list here: the first request will tell
    if offered is None or status >= 400:
        if not endpoint.model:
            raise ServingError(f"{endpoint.base_url} does not list its models: name the model "
                               "to ask for.")
        return endpoint
    if not endpoint.model:
        if not offered:
            raise ServingError(f"{endpoint.base_url} offers no model yet: load one into the "
                               "server first.")
        return _with_model(endpoint, offered[0])
    if endpoint.model not in offered:
        raise ServingError(f"{endpoint.base_url} does not offer {endpoint.model!r}; it offers: "
                           f"{', '.join(offered) or 'nothing'}. Choose one of those.")
    return endpoint


def _with_model(endpoint: Endpoint, model: str) -> Endpoint:
    from dataclasses import replace
    return replace(endpoint, model=model)


def _nothing_answers(endpoint: Endpoint) -> str:
    return (f"Nothing answers at {endpoint.base_url}: is the server running? Start it, or "
            "check the address and port.")


def _key_refused(endpoint: Endpoint, status: int) -> str:
    given = "the key given" if endpoint.api_key else "no key"
    return (f"The server refused the API key (HTTP {status}, {given}): set the right key in "
            "the page's API key field (on the command line: --api-key-env).")


def _failure_advice(endpoint: Endpoint, record: RequestRecord) -> str:
    if record.http_status in (401, 403):
        return _key_refused(endpoint, record.http_status)
    if "connection refused" in record.reason:
        return _nothing_answers(endpoint)
    return (f"A test request to {endpoint.base_url} failed: {record.reason}. Check the model "
            "name and the API (completions or chat) this server offers.")
