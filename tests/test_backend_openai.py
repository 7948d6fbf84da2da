"""The OpenAI-compatible backend through the seam: the engine measures a scripted server."""

import pytest

from fakes import FakeTokenizer
from lib.measure import backends, engine
from lib.measure.backends.openai_compat import BACKEND, OpenAICompatBackend
from lib.core.errors import InvalidSpecError, RunFailedError, ServingError
from lib.models.catalog import get_entry
from lib.serving.records import Endpoint
from lib.core.spec import RunSpec
from lib.core.stats import summarize
from sse_server import Reply, ScriptedServer

TTFT_S, GAP_S, NEW_TOKENS = 0.08, 0.03, 4


def spec(**changes):
    base = dict(batch_size=1, prompt_tokens=16, new_tokens=NEW_TOKENS, repetitions=2,
                min_duration_s=0.0, warmup_runs=1, threads=1)
    base.update(changes)
    return RunSpec(**base)


def backend_for(server, **endpoint):
    endpoint.setdefault("fixed_length", "auto")
    return OpenAICompatBackend(Endpoint(server.base_url, "tiny", **endpoint),
                               tokenizer=FakeTokenizer())


def test_registry_lists_it_but_never_picks_it():
    assert backends.registry()["openai"] is BACKEND
    assert backends.for_model("smollm2-135m-instruct").name == "transformers"
    with pytest.raises(ServingError, match="choose a server first"):
        BACKEND.load("smollm2-135m-instruct", "cpu", "float32")
    with pytest.raises(ServingError, match="choose a server first"):
        BACKEND.check(get_entry("smollm2-135m-instruct"), spec())


@pytest.mark.slow
def test_engine_measures_the_server():
    chunks = [(TTFT_S, "a", 1), (GAP_S, "bb", 2), (GAP_S, "c", 1)]     # 2 tokens in one chunk
    with ScriptedServer(Reply(chunks)) as server:
        backend = backend_for(server)
        loaded = backend.load(spec().model_id, "cpu", "float32")
        measurement = engine.measure(backend, loaded, spec(warmup_runs=0))
    assert backend.endpoint.fixed_length == "vllm" and "min_tokens" in loaded.source
    posts = [r["body"] for r in server.requests if r["method"] == "POST"]
    assert len(posts) == 1 + 2                      # the probe, then the repetitions
    assert all(body["max_tokens"] == body["min_tokens"] == NEW_TOKENS for body in posts[1:])
    assert len(posts[1]["prompt"]) == 16           # one token per character: exact length
    assert len(measurement.repetitions) == 2
    for repetition in measurement.repetitions:
        times = repetition.token_times_s
        ttft = times[0] - repetition.start_s
        tpot = (times[-1] - times[0]) / (NEW_TOKENS - 1)
        assert len(times) == NEW_TOKENS
        assert times[-1] - repetition.start_s == pytest.approx(ttft + (NEW_TOKENS - 1) * tpot)
        # Real time: on a busy 2-core machine a scripted pause may stretch by a tenth of a second.
        assert ttft == pytest.approx(TTFT_S, abs=0.15)
    summary = summarize(measurement)
    assert summary.metrics["ttft_s"].median == pytest.approx(TTFT_S, abs=0.15)
    assert measurement.provenance.backend == "openai"
    assert measurement.provenance.versions["served_model"] == "tiny"


def test_a_short_answer_fails_the_run_with_its_reason():
    with ScriptedServer(Reply([(0, "a", 1)], finish_reason="stop"), fields="plain") as server:
        backend = backend_for(server)
        loaded = backend.load(spec().model_id, "cpu", "float32")
        assert backend.endpoint.fixed_length == "max_tokens"
        with pytest.raises(RunFailedError, match="stopped early.*after 1 of 4 tokens"):
            engine.measure(backend, loaded, spec())


def test_a_server_error_fails_the_run_and_batches_are_refused():
    with ScriptedServer([Reply([(0, "a", 1)] * NEW_TOKENS), Reply(status=503, body="overloaded")]) \
            as server:
        backend = backend_for(server, fixed_length="vllm")
        loaded = backend.load(spec().model_id, "cpu", "float32")
        with pytest.raises(InvalidSpecError, match="batch size to 1"):
            engine.measure(backend, loaded, spec(batch_size=2))
        with pytest.raises(RunFailedError, match="failed: HTTP 503: overloaded"):
            engine.measure(backend, loaded, spec())
