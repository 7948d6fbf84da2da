"""`python -m lib load` against a hostile OpenAI-compatible server on 127.0.0.1: whatever it
sends (the key echoed back, malformed usage and choices, impossible counts and queue times,
Markdown links), the command ends in words, never a traceback, within 60 s; no 12-character
piece of the API key reaches the output, the data folder or an export; every saved entry opens."""

from __future__ import annotations

import json
import re
import time

import pytest

from fakes import FakeTokenizer
from lib.records import documents
from lib.records.store import Store, default_path
from lib.serving import session
from sse_server import Reply, ScriptedServer
from test_cli_arguments import invoke

KEY = "sk-hostile-0123456789abcdefghij-KEY"
GOOD = Reply([(0.01, "a", 1), (0.005, "b", 1), (0.005, "c", 1), (0.005, "d", 1)])


def _text(n: int) -> str:
    return json.dumps({"choices": [{"index": 0, "text": f"w{n} ", "finish_reason": None}]})


def _usage(value: str) -> list[str]:
    return [_text(i) for i in range(4)] + ['{"choices": [], "usage": %s}' % value]


HOSTILE = {
    "key in finish_reason": Reply(raw_events=[_text(0), json.dumps({"choices": [
        {"index": 0, "text": "", "finish_reason": "stop-{auth_json}"}]})]),
    "key in an error body across the cut": Reply(status=500, body="x" * 185, echo_auth=True),
    "key in a JSON error": Reply(raw_events=['{"error": {"message": "bad {auth_json}"}}']),
    "usage not an object": Reply(raw_events=_usage("5")),
    "choices a string": Reply(raw_events=['{"choices": "abc"}']),
    "tokens a list": Reply(raw_events=_usage('{"completion_tokens": [1]}')),
    "tokens 1e400": Reply(raw_events=_usage('{"completion_tokens": 1e400}')),
    "tokens 10**30": Reply(raw_events=_usage('{"completion_tokens": %d}' % 10**30)),
    "tokens 9,999,999": Reply(raw_events=_usage('{"completion_tokens": 9999999}')),
    "prompt tokens 10**30": Reply(raw_events=_usage(
        '{"completion_tokens": 4, "prompt_tokens": %d}' % 10**30)),
    "a 400-digit queue time": Reply(GOOD.chunks, headers={"X-Queue-Time": "9" * 400}),
    "Markdown links in the text": Reply(raw_events=[json.dumps({"choices": [
        {"index": 0, "text": "[x](http://evil.example/a) www.evil.example", "finish_reason":
         None}]})] + [_text(i) for i in range(3)]),
    "an event over the size cap": Reply(raw_events=["x" * 2_000_000]),
}


@pytest.fixture(autouse=True)
def _fake_tokenizer(monkeypatch):
    monkeypatch.setattr(session, "_default_tokenizer", lambda say: FakeTokenizer())


def _pieces(text: str, size: int = 12) -> set[str]:
    return {text[i:i + size] for i in range(len(text) - size + 1)}


@pytest.mark.parametrize("first", ["probe", "later"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_server_gets_words_and_keeps_nothing_of_the_key(case, first, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    replies = [HOSTILE[case]] if first == "probe" else [GOOD, HOSTILE[case]]
    started = time.monotonic()
    with ScriptedServer(replies) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--model", "tiny",
                                   "--api-key-env", "MY_KEY", "--concurrency", "1",
                                   "--requests", "2", "--warmup", "0", "--prompt-tokens", "8",
                                   "--new-tokens", "4", "--json"], capsys)
    assert time.monotonic() - started < 60
    assert status in (0, 2) and "Traceback" not in err, err
    assert not re.search(r"[A-Z][a-z]+Error\b", out + err), err      # words, not exception names
    secret = _pieces(KEY)
    assert not secret & _pieces(out + err)
    store = Store()
    for entry in store.list():
        exported = store.export(entry["id"])
        documents.open_entry(exported, entry["id"])           # every saved entry opens
        assert not secret & _pieces(json.dumps(exported))
    folder = default_path().parent
    for path in (folder.iterdir() if folder.exists() else ()):
        if path.is_file():
            data = path.read_bytes().decode("utf-8", "replace")
            assert not secret & _pieces(data), path
