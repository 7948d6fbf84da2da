"""`python -m lib load`: the JSON and CSV it prints, its refusals, and the API key never leaving
the session. Fast tests measure the scripted server (tests/sse_server.py); the slow one starts
the real `transformers serve` with SmolLM2 and sees time to first token grow with the rate."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fakes import FakeTokenizer
from lib.serving import session
from lib.records.store import Store, default_path
from sse_server import Reply, ScriptedServer, closed_port_url
from test_cli_arguments import invoke

KEY = "sk-test-0123456789-secret"
CHUNKS = [(0.02, "a", 1), (0.005, "b", 1), (0.005, "c", 1), (0.005, "d", 1)]


@pytest.fixture(autouse=True)
def _fake_tokenizer(monkeypatch):
    """SmolLM2's tokenizer makes URL prompts; a fake one keeps these tests fast (and free of
    the one-off conversion of the embedded model)."""
    monkeypatch.setattr(session, "_default_tokenizer", lambda say: FakeTokenizer())


@pytest.mark.slow
def test_load_prints_one_json_object_with_a_level_per_value(capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    with ScriptedServer(Reply(CHUNKS)) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--model", "tiny",
                                   "--api-key-env", "MY_KEY", "--concurrency", "1,2",
                                   "--requests", "3", "--warmup", "0", "--prompt-tokens", "8",
                                   "--new-tokens", "4", "--slo-ttft", "1", "--slo-tpot", "0.1",
                                   "--json"], capsys)
        sent = server.requests
    assert status == 0, err
    document = json.loads(out)
    assert [level["offered"] for level in document["levels"]] == [1, 2]
    for level in document["levels"]:
        assert level["requests"] == level["completed"] == 3 and level["failed"] == 0
        for metric in ("ttft_s", "tpot_s", "e2e_s", "itl_s"):
            assert {"p50", "p90", "p99", "n"} <= set(level[metric])
        assert level["ttft_s"]["p90"] is None            # 3 samples: p90 needs 10
        assert level["ttft_s"]["p50"] == pytest.approx(0.02, abs=0.03)
        assert level["achieved_requests_per_s"] > 0
        assert level["output_tokens_per_s"] == pytest.approx(
            4 * level["achieved_requests_per_s"])
        assert level["goodput_requests_per_s"] == pytest.approx(
            level["achieved_requests_per_s"])
    assert document["slo"] == {"ttft_s": 1.0, "tpot_s": 0.1, "name": "your own targets"}
    assert document["unit"] == "concurrent requests"
    # The key went to the server, and nowhere else: not the output, not the history.
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}"
               for r in sent if r["method"] == "POST")
    assert KEY not in out + err
    assert document["target"]["endpoint"]["api_key"] == "set"
    entry_id = document["history_id"]
    exported = json.dumps(Store().export(entry_id))
    assert KEY not in exported
    for path in default_path().parent.iterdir():
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_load_csv_has_one_row_per_level(capsys):
    with ScriptedServer(Reply(CHUNKS)) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--rates", "20,40",
                                   "--requests", "3", "--warmup", "1", "--new-tokens", "4",
                                   "--prompt-tokens", "8", "--csv"], capsys)
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [float(row["offered"]) for row in rows] == [20.0, 40.0]
    assert {"ttft_s_p50", "ttft_s_p99", "achieved_requests_per_s", "goodput_requests_per_s",
            "failed"} <= set(rows[0])


def test_a_text_table_names_the_server_and_the_findings(capsys):
    with ScriptedServer(Reply(CHUNKS)) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--concurrency", "1",
                                   "--requests", "2", "--warmup", "0", "--new-tokens", "4",
                                   "--prompt-tokens", "8"], capsys)
    assert status == 0, err
    assert f"the server at {server.base_url}" in out
    assert "Only one level has numbers" in out
    assert "saved as #" in err


def test_failed_requests_are_counted_with_their_reason(capsys):
    with ScriptedServer([Reply(CHUNKS), Reply(status=500, body="model exploded")]) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--concurrency", "1",
                                   "--requests", "3", "--warmup", "0", "--new-tokens", "4",
                                   "--prompt-tokens", "8", "--json"], capsys)
    assert status == 0, err
    level = json.loads(out)["levels"][0]
    assert level["failed"] == 3 and level["completed"] == 0
    assert "500" in next(iter(level["failure_reasons"]))
    assert any("failed" in sentence for sentence in json.loads(out)["findings"])


def test_the_plan_flags_are_the_plan_fields_with_their_limits_and_defaults():
    """One source: the flags come from LoadPlan's fields (`lib.serving.plan`), as the Serving
    page's boxes do; what is left open is sized, starting from the field's default."""
    from lib.cli import load_test, main
    from lib.serving.plan import field_info

    def plan_of(*argv):
        args = main.build_parser().parse_args(["load", "--target", "http://x:1/v1", *argv])
        return load_test.request(args)

    _, plan, _, sizing = plan_of("--prompt-tokens", str(field_info("prompt_tokens")["max"]),
                                 "--warmup", str(field_info("warmup")["max"]))
    assert plan.prompt_tokens == 131_072 and plan.warmup == 10_000
    assert plan.requests == field_info("requests")["default"] and sizing.auto_requests
    assert plan.new_tokens == field_info("new_tokens")["default"] and sizing.auto_new_tokens
    _, plan, _, sizing = plan_of("--requests", "7", "--new-tokens", "9")
    assert (plan.requests, plan.new_tokens) == (7, 9)
    assert not sizing.auto_requests and not sizing.auto_new_tokens


@pytest.mark.parametrize("argv, words", [
    (["--target", "local", "--rates", "1"], "needs --model"),
    (["--target", "local", "--model", "no-such-model", "--rates", "1"], "Unknown model"),
    (["--target", "http://x:1/v1", "--api-key-env", "ILE_UNSET_KEY_VAR", "--rates", "1"],
     "is not set"),
    (["--target", "http://user:pw@x:1/v1", "--rates", "1"], "API key"),
    (["--target", "http://x:1/v1", "--rates", "1,two"], "'two' is not a number"),
    (["--target", "http://x:1/v1", "--rates", "1,1"], "once"),
    (["--target", "http://x:1/v1", "--concurrency", "2.5"], "whole numbers"),
    (["--target", "http://x:1/v1", "--rates", "1", "--slo-ttft", "1"], "both --slo-ttft"),
    (["--target", "ftp://x/v1", "--rates", "1"], "http"),
    (["--target", "http://x:1/v1", "--budget-s", "5"], "Time budget 5.0 s: use 20 to 3600"),
    (["--target", closed_port_url(), "--rates", "1"], "Nothing answers"),
])
def test_bad_requests_are_refused_in_one_line_and_nothing_is_saved(argv, words, capsys):
    status, out, err = invoke(["load", *argv], capsys)
    assert status == 2
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not default_path().exists() or not Store().list()


@pytest.mark.slow
def test_a_rate_sweep_on_the_real_local_server_shows_ttft_growing(capsys):
    """transformers serve with SmolLM2, one request at a time (continuous batching off), the
    rates sized from a first answer's time (so a slow or busy machine gets slower rates): at
    the lightest rate requests rarely wait; at the heaviest, past what it serves, they queue.
    The timeout is given (sized ones are tested on a fake clock): the suite's other tests may
    make the machine several times slower between the first answer and the last level."""
    status, out, err = invoke(["load", "--target", "local", "--model", "smollm2-135m-instruct",
                               "--no-continuous-batching", "--budget-s", "20", "--timeout", "60",
                               "--arrival", "constant", "--requests", "3", "--warmup", "0",
                               "--prompt-tokens", "32", "--new-tokens", "8", "--json"], capsys)
    assert status == 0, err
    document = json.loads(out)
    light, heavy = document["levels"][0], document["levels"][-1]
    assert len(document["levels"]) >= 3
    assert light["completed"] == heavy["completed"] == 3 and light["failed"] == 0
    # Past what it serves the requests queue; how much depends on how busy the machine is
    # meanwhile (other programs' share changes during a run), so only the direction is held.
    assert heavy["ttft_s"]["p50"] > light["ttft_s"]["p50"]
    assert heavy["achieved_requests_per_s"] < heavy["offered"]
    assert document["plan"]["calibration"]["answer_s"] > 0
    assert document["target"]["kind"] == "local"
    assert "transformers serve" in document["target"]["server"]
    assert "generation_config" in err          # the fixed length it found, said in words


def test_stop_pressed_while_the_server_gets_ready_sends_nothing():
    import threading

    from lib.core.errors import StoppedError
    from lib.serving.plan import LoadPlan
    stop = threading.Event()
    stop.set()
    with ScriptedServer(Reply(CHUNKS)) as server:
        target = session.Target(session.URL, url=server.base_url)
        with pytest.raises(StoppedError, match="nothing was kept"):
            session.measure(target, LoadPlan(levels=(1,)), None, stop=stop)
        posts = [r for r in server.requests if r["method"] == "POST"]
    assert len(posts) == 1                       # the probe only
    assert not default_path().exists() or not Store().list()
