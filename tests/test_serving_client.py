"""One streamed request against a scripted server: timestamps, token counts, every failure as a
record (never raised), the probe's fixed-length modes, and the API key kept out of everything."""

import json
import threading
import time

import pytest

from lib.core.errors import ServingError
from lib.serving import answer, client
from lib.serving.records import (CANCELLED, FAILED, FROM_CHUNKS, FROM_TOKENIZER, FROM_USAGE,
                                 OK, SHORT, Endpoint)
from sse_server import Reply, ScriptedServer, closed_port_url

TOLERANCE_S = 0.03
KEY = "sk-secret-123456"


def endpoint(server, **kwargs) -> Endpoint:
    kwargs.setdefault("fixed_length", "vllm")
    return Endpoint(server.base_url if hasattr(server, "base_url") else server, "tiny", **kwargs)


def steady(n=4, first_s=0.15, gap_s=0.05, tokens=1):
    return [(first_s if i == 0 else gap_s, f"w{i} ", tokens) for i in range(n)]


@pytest.mark.parametrize("chunked,split,keepalive", [(True, False, False), (False, True, True)])
@pytest.mark.slow
def test_ttft_and_chunk_gaps_come_back_as_scripted(chunked, split, keepalive):
    reply = Reply(steady(), chunked=chunked, split_events=split, keepalive=keepalive)
    with ScriptedServer(reply) as server:
        record = client.stream(endpoint(server), "hello", 4)
    assert record.status == OK and record.output_tokens == 4, record.reason
    # a split write sleeps 10 ms between its halves; a keep-alive comment is one more write
    extra_s = 0.01 * split * (1 + keepalive)
    assert record.ttft_s == pytest.approx(0.15 + extra_s, abs=TOLERANCE_S)
    assert record.itl_s() == pytest.approx([0.05 + extra_s] * 3, abs=0.015)
    assert record.first_token_s == record.chunk_s[0] <= record.end_s
    assert record.finish_reason == "length" and record.prompt_tokens == 7


def test_a_chunk_of_three_tokens_is_spread_over_its_gap():
    chunks = [(0.05, "a", 1), (0.09, "bbb", 3), (0.02, "c", 1)]
    with ScriptedServer(Reply(chunks)) as server:
        record = client.stream(endpoint(server), "hello", 5)
    assert record.chunk_tokens == (1, 3, 1) and record.token_source == FROM_USAGE
    itl = record.itl_s()
    assert len(itl) == 4
    assert itl[:3] == pytest.approx([0.03] * 3, abs=0.015)        # 0.09 s shared by 3 tokens


def test_usage_surplus_is_shared_by_characters():
    assert answer.chunk_token_counts(["a", "bbbbbb", "cc"], 7, None) == ([1, 4, 2], FROM_USAGE)
    assert answer.chunk_token_counts(["ab", "ab"], 3, None) == ([2, 1], FROM_USAGE)  # tie: earlier
    assert answer.chunk_token_counts(["a", "b", "cc"], 2, None)[0] == [1, 0, 1]
    assert answer.chunk_token_counts(["a", "bbb", "c"], 5, None)[0] == [1, 3, 1]
    assert answer.chunk_token_counts(["ab", "c"], None, len) == ([2, 1], FROM_TOKENIZER)
    assert answer.chunk_token_counts(["ab", "c"], None, None) == ([1, 1], FROM_CHUNKS)


def test_counts_come_from_usage_then_tokenizer_then_chunks():
    chunks = [(0, "ab", 2), (0, "cde", 3)]
    with ScriptedServer([Reply(chunks), Reply(chunks, usage=False),
                         Reply(chunks, usage=False)]) as server:
        usage = client.stream(endpoint(server), "x", 5, count_tokens=lambda t: 99)
        tokenizer = client.stream(endpoint(server), "x", 5, count_tokens=len)
        per_chunk = client.stream(endpoint(server), "x", 5)
    assert (usage.token_source, usage.chunk_tokens, usage.status) == (FROM_USAGE, (2, 3), OK)
    assert (tokenizer.token_source, tokenizer.output_tokens) == (FROM_TOKENIZER, 5)
    assert (per_chunk.token_source, per_chunk.output_tokens, per_chunk.status) == \
        (FROM_CHUNKS, 2, SHORT)


def test_an_early_stop_is_short_with_its_reason():
    with ScriptedServer(Reply(steady(3, 0, 0), finish_reason="stop")) as server:
        record = client.stream(endpoint(server, fixed_length="max_tokens"), "x", 8)
    assert record.status == SHORT and record.output_tokens == 3
    assert "after 3 of 8 tokens" in record.reason and "end-of-text" in record.reason
    assert record.e2e_s is not None and record.tpot_s is not None


def test_http_error_is_failed_with_status_and_a_one_line_excerpt():
    body = "boom\n" + "x" * 500
    with ScriptedServer(Reply(status=500, body=body)) as server:
        record = client.stream(endpoint(server), "x", 4)
    assert record.status == FAILED and record.http_status == 500
    assert record.reason.startswith("HTTP 500: boom x") and "\n" not in record.reason
    assert len(record.reason) < 220 and record.e2e_s is None


def test_mid_stream_error_and_abrupt_close_are_failed():
    with ScriptedServer([Reply(steady(3, 0, 0), error_after=1),
                         Reply(steady(2, 0, 0), abort=True)]) as server:
        error = client.stream(endpoint(server), "x", 3)
        closed = client.stream(endpoint(server), "x", 3)
    assert error.status == FAILED and "ran out of memory" in error.reason
    assert len(error.chunk_s) == 1
    assert closed.status == FAILED and closed.reason


@pytest.mark.slow
def test_a_server_that_hangs_fails_within_the_timeout():
    with ScriptedServer(Reply(steady(1, 0, 0), hang=True)) as server:
        started = time.perf_counter()
        record = client.stream(endpoint(server, timeout_s=0.3), "x", 4)
        took = time.perf_counter() - started
    assert record.status == FAILED and "0.3 s timeout" in record.reason
    assert 0.3 <= took < 0.3 + 0.2 and record.e2e_s is None


def test_a_refused_connection_is_failed_not_raised():
    record = client.stream(endpoint(closed_port_url()), "x", 4)
    assert record.status == FAILED and "connection refused" in record.reason


def test_cancel_mid_stream_ends_promptly():
    cancel = threading.Event()
    with ScriptedServer(Reply(steady(1, 0, 0), hang=True)) as server:
        threading.Timer(0.2, cancel.set).start()
        started = time.perf_counter()
        record = client.stream(endpoint(server), "x", 4, cancel=cancel)
        took = time.perf_counter() - started
    assert record.status == CANCELLED and took < 0.2 + 0.2
    assert len(record.chunk_s) == 1


def test_request_fields_follow_the_mode_and_the_api():
    with ScriptedServer(Reply(steady(2, 0, 0)), fields="vllm") as server:
        client.stream(endpoint(server, api="chat", fixed_length="vllm"), "hi", 2)
        client.stream(endpoint(server, fixed_length="transformers"), "hi", 2)
        client.stream(endpoint(server, fixed_length="max_tokens"), "hi", 2)
    chat, transformers, plain = (r["body"] for r in server.requests)
    assert server.requests[0]["path"] == "/v1/chat/completions"
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and chat["stream"] is True
    assert chat["min_tokens"] == 2 and chat["ignore_eos"] is True and chat["max_tokens"] == 2
    assert chat["stream_options"] == {"include_usage": True} and chat["temperature"] == 0
    assert json.loads(transformers["generation_config"]) == \
        {"max_new_tokens": 2, "min_new_tokens": 2, "do_sample": False}
    assert transformers["prompt"] == "hi" and "min_tokens" not in transformers
    assert not {"min_tokens", "ignore_eos", "generation_config"} & set(plain)


@pytest.mark.parametrize("fields,mode", [("vllm", "vllm"), ("transformers", "transformers"),
                                         ("plain", "max_tokens")])
def test_probe_finds_the_fixed_length_mode(fields, mode):
    with ScriptedServer(Reply(steady(2, 0, 0)), fields=fields) as server:
        found, sentence = client.probe(endpoint(server, fixed_length="auto"))
    assert found.fixed_length == mode and sentence == client.MODE_SENTENCES[mode]
    posts = [r["body"] for r in server.requests if r["method"] == "POST"]
    assert posts[-1] == client.request_body(found, "Hello", client.PROBE_TOKENS)
    assert server.requests[0]["path"] == "/v1/models"


def test_probe_checks_the_model_name():
    with ScriptedServer(models=["a", "b"]) as server:
        with pytest.raises(ServingError, match="does not offer 'tiny'; it offers: a, b"):
            client.probe(endpoint(server))
        named, _ = client.probe(Endpoint(server.base_url, "", fixed_length="vllm"))
    assert named.model == "a"


def test_probe_says_when_nothing_answers_or_the_key_is_refused():
    with pytest.raises(ServingError, match="Nothing answers at .*is the server running"):
        client.probe(endpoint(closed_port_url(), fixed_length="auto"))
    with ScriptedServer(Reply(status=401, body="bad key", echo_auth=True)) as server:
        with pytest.raises(ServingError, match="refused the API key") as refused:
            client.probe(endpoint(server, fixed_length="auto", api_key=KEY))
    assert KEY not in str(refused.value)


def test_the_key_is_sent_but_never_kept_or_shown():
    with ScriptedServer(Reply(status=401, body="bad key", echo_auth=True)) as server:
        target = endpoint(server, api_key=KEY)
        record = client.stream(target, "x", 2)
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"
    assert record.status == FAILED and "HTTP 401" in record.reason
    for text in (json.dumps(record.to_dict()), repr(record), repr(target),
                 json.dumps(target.public())):
        assert KEY not in text


def test_queue_time_headers():
    assert answer.queue_seconds({"x-queue-time": "12"}) == pytest.approx(0.012)
    assert answer.queue_seconds({"x-queue-duration": "0.25"}) == 0.25
    assert answer.queue_seconds({"x-queue-time": "40ms"}) == pytest.approx(0.04)
    assert answer.queue_seconds({"x-queue-time": "1.5 s"}) == 1.5
    assert answer.queue_seconds({"x-queue-time": "soon"}) is None
    with ScriptedServer(Reply(steady(2, 0, 0), headers={"x-queue-time": "30"})) as server:
        assert client.stream(endpoint(server), "x", 2).queue_s == pytest.approx(0.03)


@pytest.mark.parametrize("given,expected", [
    ("http://host:8000", "http://host:8000/v1"),
    ("http://host:8000/v1", "http://host:8000/v1"),
    (" http://host:8000/v1/ ", "http://host:8000/v1"),
    ("https://api.example.com/openai/v1/chat/completions", "https://api.example.com/openai/v1"),
    ("http://host/api/v2", "http://host/api/v2"),
])
def test_check_url_normalises(given, expected):
    assert client.check_url(given) == expected


@pytest.mark.parametrize("given,words", [
    ("ftp://host/v1", "http or https"), ("host:8000", "http or https"), ("", "http or https"),
    ("http://user:pass@host/v1", "API key field"), ("http://host/v1?key=1", "API key field"),
    ("http://host/v1#x", "fragment"), ("http://host:99999/v1", "port"),
])
def test_check_url_refuses_with_advice(given, words):
    with pytest.raises(ServingError, match=words):
        client.check_url(given)


# --- a hostile server: every field checked, the key never kept, bounded work per reply -------

def _pieces_of(key: str, size: int = 8) -> set[str]:
    return {key[i:i + size] for i in range(len(key) - size + 1)}


def _hostile(raw_events, **reply) -> tuple:
    with ScriptedServer(Reply(raw_events=raw_events, **reply)) as server:
        started = time.monotonic()
        record = client.stream(endpoint(server, api_key=KEY), "x", 4)
        return record, time.monotonic() - started


def _text(n: int) -> str:
    return json.dumps({"choices": [{"index": 0, "text": f"w{n} ", "finish_reason": None}]})


@pytest.mark.parametrize("usage, words", [
    ("5", "'usage' that is not an object"),
    ('{"completion_tokens": [1]}', "usage.completion_tokens [1], not a token count"),
    ('{"completion_tokens": 1e400}', "usage.completion_tokens inf, not a token count"),
    ('{"completion_tokens": 9999999}', "9999999, not a token count from 0 to 32 (for 4 asked"),
    ('{"completion_tokens": true}', "usage.completion_tokens True"),
    ('{"completion_tokens": 4, "prompt_tokens": 1000000000000000000000000000000}',
     "usage.prompt_tokens 1000000000000000000000000000000, not a token count"),
])
def test_a_malformed_usage_fails_that_request_in_words(usage, words):
    record, seconds = _hostile([_text(i) for i in range(4)] + [
        '{"choices": [], "usage": %s}' % usage])
    assert record.status == FAILED and words in record.reason, record.reason
    assert seconds < 2
    json.dumps(record.to_dict(), allow_nan=False)          # nothing unsaveable kept


@pytest.mark.parametrize("usage, count_tokens, status", [
    ('{"completion_tokens": 4}', None, OK),
    ('{"completion_tokens": 5}', None, FAILED),       # the server's count: max_tokens exactly
    (None, lambda text: 1, OK),
    (None, lambda text: 2 if text == "w3 " else 1, OK),   # counted here: a little slack
    (None, lambda text: 25 if text == "w3 " else 1, FAILED),
])
def test_an_answer_longer_than_asked_fails_in_words(usage, count_tokens, status):
    events = [_text(i) for i in range(4)]
    events += ['{"choices": [], "usage": %s}' % usage] if usage else []
    with ScriptedServer(Reply(raw_events=events)) as server:
        record = client.stream(endpoint(server), "x", 4, count_tokens=count_tokens)
    assert record.status == status, record.reason
    if status == FAILED:
        assert "where 4 were asked for" in record.reason and "max_tokens" in record.reason


@pytest.mark.parametrize("event, words", [
    ('{"choices": "abc"}', "'choices' that is not a list"),
    ('{"choices": [5]}', "a choice that is not an object"),
    ('{"choices": [{"text": 7}]}', "answer text that is not a string"),
    ('{"choices": [{"text": "a", "finish_reason": {"x": 1}}]}', "finish_reason that is not"),
    ('[' * 100_000, "not JSON"),
])
def test_a_malformed_event_fails_that_request_in_words(event, words):
    record, _ = _hostile([event])
    assert record.status == FAILED and words in record.reason, record.reason


def test_the_probe_of_a_malformed_server_is_a_message_not_a_traceback():
    with ScriptedServer(Reply(raw_events=['{"choices": "abc"}'])) as server:
        with pytest.raises(ServingError, match="'choices' that is not a list"):
            client.probe(endpoint(server, fixed_length="auto"))


def test_the_key_echoed_anywhere_is_scrubbed_before_any_cut():
    # In finish_reason (after "stop-"), and in an error body padded so the key straddles the
    # 200-character excerpt: no 8-character piece of it is kept anywhere.
    record, _ = _hostile([_text(0), json.dumps({"choices": [
        {"index": 0, "text": "", "finish_reason": "stop-{auth_json}"}]})])
    kept = json.dumps(record.to_dict())
    assert record.finish_reason and not _pieces_of(KEY) & _pieces_in(kept)
    for pad in (178, 185, 192):                   # the key straddles the 200-character cut
        with ScriptedServer(Reply(status=500, body="x" * pad, echo_auth=True)) as server:
            refused = client.stream(endpoint(server, api_key=KEY), "x", 2)
        assert refused.status == FAILED
        assert not _pieces_of(KEY) & _pieces_in(json.dumps(refused.to_dict())), pad
    error, _ = _hostile(['{"error": {"message": "bad token {auth_json}"}}'])
    assert "[API key]" in error.reason and not _pieces_of(KEY) & _pieces_in(error.reason)


def _pieces_in(text: str) -> set[str]:
    return _pieces_of(text)


def test_scrub_replaces_the_key_and_its_long_pieces_only():
    key = "sk-abcdefghijklmnopqrstuvwxyz"
    assert answer.scrub(f"got Bearer {key}!", key) == "got Bearer [API key]!"
    assert answer.scrub(f"cut {key[:12]}…", key) == "cut [API key]…"
    assert answer.scrub(f"..{key[9:17]}..", key) == "..[API key].."
    assert answer.scrub(f"..{key[9:16]}..", key) == f"..{key[9:16]}.."     # 7 characters
    assert answer.scrub("nothing here", key) == "nothing here"


def test_a_reply_without_event_boundaries_is_too_large_and_ends_at_once():
    record, seconds = _hostile(["x" * 3_000_000])
    assert record.status == FAILED and "reply too large" in record.reason
    assert seconds < 5


def test_endless_small_chunks_are_too_large_for_the_tokens_asked():
    record, seconds = _hostile([_text(i) for i in range(200)])     # 4 tokens asked for
    assert record.status == FAILED and "reply too large" in record.reason
    assert seconds < 5


def test_a_queue_time_no_number_can_hold_is_ignored():
    assert answer.queue_seconds({"x-queue-time": "9" * 400}) is None
    assert answer.queue_seconds({"x-queue-time": "99999999s"}) is None
    record, _ = _hostile([_text(i) for i in range(4)], headers={"X-Queue-Time": "9" * 400})
    assert record.queue_s is None and record.status == OK
