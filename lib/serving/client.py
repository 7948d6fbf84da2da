"""One streaming request to an OpenAI-compatible server, timed chunk by chunk.

`stream` POSTs to `{base_url}/completions` or `/chat/completions` with `stream: true` and reads
the server-sent events as they arrive; it never raises for a failed request: a refused
connection, a timeout, an HTTP error or a broken stream is a `RequestRecord` with status FAILED
and the reason in words. `probe` checks a server before a load run and finds out how it can be
made to write an exact number of tokens. `check_url` cleans the address a person typed.

Only the standard library is used, so the engine imports on a bare GPU machine. The bytes are
read by `lib.serving.wire` (every read waits at most `wire.POLL_S`, so a silent stream notices
Cancel and the overall deadline, `Endpoint.timeout_s`, send to last byte, within that time), and
the events made into a record by `lib.serving.answer` (tokens per chunk, queueing delay).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

from lib.core.errors import ServingError
from lib.serving import wire
from lib.serving.answer import Answer, queue_seconds, scrub
from lib.serving.records import FAILED, MEASURED, Endpoint, RequestRecord

PROBE_TOKENS = 2
MAX_MODEL_CHARS = 4096          # a model name the server lists (a path, at most)
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
           phase: str = MEASURED, clock: wire.Clock = time.perf_counter,
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


def _stream(endpoint: Endpoint, prompt: str, new_tokens: int, index: int, phase: str,
            clock: wire.Clock, cancel: threading.Event | None,
            count_tokens: Callable[[str], int] | None) -> tuple[RequestRecord, str]:
    """The record, and the error body (whole, for `probe`) when the server refused."""
    path = "/chat/completions" if endpoint.api == "chat" else "/completions"
    body = json.dumps(request_body(endpoint, prompt, new_tokens)).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    connection = wire.Connection(endpoint.base_url + path, time.monotonic() + endpoint.timeout_s,
                             cancel, endpoint.timeout_s)
    answer = Answer(endpoint, new_tokens, index, phase)
    error_body = ""
    try:
        connection.open()
        answer.sent_s = clock()
        connection.send("POST", headers, body)
        answer.http_status, response_headers, rest = wire.read_head(connection, clock)
        answer.queue_s = queue_seconds(response_headers)
        pieces = wire.body(connection, response_headers, rest, clock)
        if answer.http_status >= 400:
            error_body = scrub(wire.collect(pieces).decode("utf-8", "replace"),
                               endpoint.api_key)
            answer.fail(f"HTTP {answer.http_status}: "
                        f"{wire.excerpt(error_body) or 'no reason given'}")
        else:
            for data, arrived in wire.events(pieces):
                if answer.take(data, arrived):
                    break
            else:
                if not answer.finished:
                    answer.fail("the stream ended before the answer was complete (no [DONE] "
                                f"and no finish_reason, after {len(answer.chunk_s)} chunks)")
    except wire.Interrupted as stopped:
        answer.stop(stopped.status, stopped.reason)
    except ConnectionRefusedError:
        answer.fail(f"nothing answers at {endpoint.base_url} (connection refused)")
    except socket.gaierror:
        answer.fail(f"the server name in {endpoint.base_url} could not be found (DNS)")
    except (socket.timeout, TimeoutError):
        answer.fail(f"could not connect to {endpoint.base_url} within {endpoint.timeout_s:g} s")
    except wire.BadReply as error:
        answer.fail(scrub(str(error), endpoint.api_key))
    except (OSError, ValueError, ConnectionError) as error:
        answer.fail(f"{type(error).__name__}: {scrub(str(error), endpoint.api_key)}")
    finally:
        connection.close()
    end_s = connection.last_byte_s if connection.last_byte_s is not None else clock()
    return answer.record(end_s, count_tokens), error_body


# --- probing -------------------------------------------------------------------------------

def _checked_model(endpoint: Endpoint) -> Endpoint:
    """The endpoint with its model checked against `/models` (or named from it when empty)."""
    connection = wire.Connection(endpoint.base_url + "/models",
                             time.monotonic() + endpoint.timeout_s, None, endpoint.timeout_s)
    headers = {"Accept": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    try:
        connection.open()
        connection.send("GET", headers, b"")
        status, response_headers, rest = wire.read_head(connection, time.perf_counter)
        body = wire.collect(wire.body(connection, response_headers, rest, time.perf_counter))
    except ConnectionRefusedError:
        raise ServingError(_nothing_answers(endpoint)) from None
    except socket.gaierror:
        raise ServingError(f"The server name in {endpoint.base_url} could not be found: check "
                           "the address.") from None
    except (wire.Interrupted, OSError, ConnectionError) as error:
        raise ServingError(f"{endpoint.base_url} did not answer properly "
                           f"({scrub(str(error), endpoint.api_key)}): is it an "
                           "OpenAI-compatible server, and is it running?") from None
    finally:
        connection.close()
    if status in (401, 403):
        raise ServingError(_key_refused(endpoint, status))
    try:
        offered = [scrub(item["id"], endpoint.api_key) for item in json.loads(body)["data"]
                   if isinstance(item["id"], str) and 0 < len(item["id"]) <= MAX_MODEL_CHARS]
    except (ValueError, KeyError, TypeError, RecursionError):
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
    if record.http_status == 200:
        return (f"A test request to {endpoint.base_url} failed: {record.reason}. The server "
                "answered, but not as an OpenAI-compatible server does: check that this address "
                "is one (vLLM, SGLang, llama.cpp's server, transformers serve).")
    return (f"A test request to {endpoint.base_url} failed: {record.reason}. Check the model "
            "name and the API (completions or chat) this server offers.")
