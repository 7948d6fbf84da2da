"""Sizing a load sweep to this machine (lib.serving.sizing): the plan's arithmetic from a made-up
calibration, exact where it can be; the calibration from fake answers; failures explained;
and the whole path through `measure` and `lib load` against a scripted server."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fakes import FakeTokenizer, load_request, load_result
from lib.views import serving_charts
from lib.serving import load, summary, session, sizing
from lib.serving.plan import CONCURRENCY, RATE, LoadPlan
from lib.serving.sizing import Calibration, Sizing
from sse_server import Reply, ScriptedServer
from test_cli_arguments import invoke


def calibration(answer_s=2.0, new_tokens=32, spent_s=4.0, ttft_s=0.5):
    return Calibration(answer_s=answer_s, ttft_s=ttft_s,
                       tpot_s=(answer_s - ttft_s) / (new_tokens - 1), new_tokens=new_tokens,
                       spent_s=spent_s, other_cpu_percent=70.0)


RATE_PLAN = LoadPlan(mode=RATE, levels=(1.0,), requests=10, warmup=2, new_tokens=32)


@pytest.mark.parametrize("answer_s, budget_s", [(0.5, 60), (2.0, 120), (2.0, 180),
                                                 (6.0, 180), (10.0, 600)])
def test_rate_levels_span_light_to_past_capacity_and_fit_the_budget(answer_s, budget_s):
    sized = sizing.size(RATE_PLAN, calibration(answer_s), Sizing(budget_s=budget_s))
    capacity = 1.0 / sized.answer_s
    assert sized.fits
    assert len(sized.plan.levels) >= 3
    assert list(sized.plan.levels) == sorted(set(sized.plan.levels))
    assert sized.plan.levels[0] <= 0.5 * capacity           # well under what it serves
    assert sized.plan.levels[-1] >= 3 * capacity            # clearly past it
    assert sized.plan.requests >= 3
    assert sized.estimated_s <= budget_s
    # The estimate is the calibration plus each level simulated with the margin.
    levels_s, longest = sizing.estimate(sized.plan, sized.answer_s)
    assert sized.estimated_s == pytest.approx(4.0 + levels_s, abs=0.06)
    assert sized.timeout_s >= sizing.TIMEOUT_ANSWERS * sized.answer_s
    assert sized.timeout_s >= sizing.TIMEOUT_WAITS * longest - 0.05
    assert set(sized.sized) == {"levels", "requests", "new_tokens", "timeout_s"}


def test_a_faster_machine_gets_more_requests_for_the_same_budget():
    slow = sizing.size(RATE_PLAN, calibration(4.0), Sizing(budget_s=180))
    fast = sizing.size(RATE_PLAN, calibration(1.0), Sizing(budget_s=180))
    assert fast.plan.requests * len(fast.plan.levels) > \
        slow.plan.requests * len(slow.plan.levels)
    assert fast.timeout_s < slow.timeout_s


def test_a_slow_machine_gets_shorter_answers_or_an_honest_over_budget_plan():
    slow = calibration(answer_s=20.0, new_tokens=32, ttft_s=2.0)
    shortened = sizing.size(RATE_PLAN, slow, Sizing(budget_s=180))
    assert shortened.fits and shortened.plan.new_tokens < 32
    assert shortened.estimated_s <= 180
    assert shortened.answer_s == pytest.approx(slow.answer_for(shortened.plan.new_tokens))
    kept = sizing.size(RATE_PLAN, slow, Sizing(budget_s=120, auto_new_tokens=False))
    assert not kept.fits
    assert kept.plan.new_tokens == 32 and len(kept.plan.levels) == 3
    assert kept.plan.requests == 3
    assert kept.plan.warmup == 0                   # the warm-up given up first
    assert kept.estimated_s > 120                  # said as it is, not squeezed into the budget
    assert kept.timeout_s >= sizing.TIMEOUT_ANSWERS * 20.0


def test_queue_times_are_exact_for_even_arrivals():
    plan = dataclasses.replace(RATE_PLAN, arrival="constant", requests=4, warmup=1)
    # Below capacity: each request is answered before the next arrives.
    duration, longest = sizing.queue_times(plan, 0.25, 2.0)
    assert duration == pytest.approx(4 * 4.0 + 2.0) and longest == pytest.approx(2.0)
    # Twice the capacity: the queue grows by one answer every second arrival.
    duration, longest = sizing.queue_times(plan, 1.0, 2.0)
    assert duration == pytest.approx(5 * 2.0)
    assert longest == pytest.approx(2.0 + 4 * (2.0 - 1.0))
    closed = LoadPlan(mode=CONCURRENCY, levels=(4.0,), requests=6, warmup=2)
    assert sizing.queue_times(closed, 4.0, 2.0) == pytest.approx((10 * 2.0, 4 * 2.0))


def test_user_counts_come_from_the_ladder_and_the_timeout_covers_the_most_users():
    plan = LoadPlan(mode=CONCURRENCY, levels=(1.0,), requests=10, warmup=2)
    sized = sizing.size(plan, calibration(1.0), Sizing(budget_s=180))
    counts = {len(ladder): ladder for ladder in sizing.USER_LADDERS.values()}
    assert tuple(int(v) for v in sized.plan.levels) == counts[len(sized.plan.levels)]
    assert sized.timeout_s >= sizing.TIMEOUT_WAITS * max(sized.plan.levels) * 1.0 * \
        sizing.SAFETY - 0.05


def test_typed_levels_and_requests_are_kept_and_only_the_timeout_is_derived():
    plan = dataclasses.replace(RATE_PLAN, levels=(0.1, 0.2), requests=5)
    sized = sizing.size(plan, calibration(2.0), Sizing(budget_s=600, auto_levels=False,
                                                        auto_requests=False,
                                                        auto_new_tokens=False))
    assert sized.plan == plan
    assert sized.sized == ("timeout_s",)
    given = sizing.size(plan, calibration(2.0), Sizing(budget_s=600, auto_levels=False,
                                                       auto_requests=False, timeout_s=7.0))
    assert given.timeout_s == 7.0


def test_the_budget_is_checked():
    with pytest.raises(sizing.InvalidSpecError, match="Time budget"):
        Sizing(budget_s=5)


def _record(index, e2e, status="ok"):
    if status == "failed":
        return load_request(index, 10.0, e2e, [], status="failed",
                            reason="no complete answer within the 9 s timeout: ...")
    return load_request(index, 10.0, 0.5, [(e2e - 0.5) / 3] * 3)


def test_the_calibration_keeps_the_slower_answer_and_refuses_when_none_came():
    times = iter([0.0, 5.0])
    answers = {0: _record(0, 3.0), 1: _record(1, 2.0)}
    found = sizing.calibrate(answers.get, lambda: next(times), lambda: 42.0, new_tokens=4)
    assert found.answer_s == pytest.approx(3.0) and found.ttft_s == pytest.approx(0.5)
    assert found.spent_s == 5.0 and found.other_cpu_percent == 42.0
    assert found.answer_for(4) == pytest.approx(3.0)
    sent = []
    one = sizing.calibrate(lambda i: sent.append(i) or _record(i, 30.0), lambda: 0.0,
                           new_tokens=16, budget_s=120)
    assert sent == [0] and one.answer_s == pytest.approx(30.0)   # slow: one is enough
    assert one.answer_for(32) == pytest.approx(30.0 + 16 * one.tpot_s)
    assert sizing.calibration_tokens(32) == 16 and sizing.calibration_tokens(8) == 8
    with pytest.raises(sizing.CalibrationError, match="within the 9 s timeout"):
        sizing.calibrate(lambda i: _record(i, 9.0, "failed"), lambda: 0.0)


# --- failures explained, not plotted -----------------------------------------------------------

def _all_failed_at(loaded, offered, sizing_doc):
    levels = []
    for level in loaded.levels:
        if level.offered == offered:
            records = tuple(dataclasses.replace(
                r, status="failed", first_token_s=None, chunk_s=(), chunk_tokens=(),
                output_tokens=0, reason="no complete answer within the 30 s timeout: the "
                "server is overloaded or stuck") if r.phase == "measured" else r
                for r in level.records)
            level = summary._level(offered, records, loaded.slo, 0, 0.0, False)
        levels.append(level)
    return dataclasses.replace(loaded, levels=tuple(levels), sizing=sizing_doc)


def test_a_lightest_level_that_timed_out_is_explained_first_and_not_plotted():
    loaded = _all_failed_at(load_result(), 1.0, {"answer_s": 40.0, "timeout_s": 30.0,
                                                 "calibration": {"answer_s": 40.0}})
    first = loaded.findings[0]
    assert first.startswith("At 1 concurrent request every one of the 12 requests failed, so "
                            "this level has no point on the charts")
    assert "each answer takes about 40 s here, longer than the 30 s timeout" in first
    assert "at least 160 s" in first
    throughput = serving_charts.throughput_figure(loaded)
    for trace in throughput.data:
        assert 1.0 not in list(trace.x)
    latency = serving_charts.latency_figure(loaded)
    assert all(1.0 not in list(trace.x) for trace in latency.data)
    assert list(latency.layout.xaxis3.tickvals) == [2.0, 4.0, 8.0]


def test_a_heavy_level_that_timed_out_is_past_the_knee():
    loaded = _all_failed_at(load_result(), 8.0, {"answer_s": 2.0, "timeout_s": 30.0})
    said = [s for s in loaded.findings if s.startswith("At 8 concurrent")][0]
    assert "past the knee" in said and "30 s timeout" in said


def test_a_saved_sizing_survives_the_round_trip_and_a_bad_one_is_ignored_in_words():
    loaded = dataclasses.replace(load_result(), sizing={"answer_s": "x", "timeout_s": None})
    again = summary.from_dict(json.loads(json.dumps(summary.to_dict(loaded))))
    assert again.sizing == loaded.sizing
    assert again.findings == loaded.findings


# --- the timeline: only requests sent, readable at any count ----------------------------------

def _level_of(count, cooldown):
    records = [load_request(i, 0.1 * i, 0.3 + 0.01 * i, [0.05] * 3,
                            phase="warm-up" if i < 2 else "measured") for i in range(count)]
    records += [load_request(count + i, 0.1 * (count + i), 0.3, [], phase="cool-down",
                             status="cancelled") for i in range(cooldown)]
    return load.LevelRun(2.0, records)


@pytest.mark.parametrize("count, cooldown", [(10, 490), (500, 20)])
def test_the_timeline_draws_the_sent_requests_with_axes_sized_to_them(count, cooldown):
    loaded = summary.result({"kind": "url", "endpoint": {"model": "m"}}, RATE_PLAN, None, 0.0,
                           [_level_of(count, cooldown)], {})
    figure = serving_charts.timeline_figure(loaded, loaded.levels[0])
    drawn = {index for trace in figure.data for index in trace.y}
    assert drawn == set(range(count))                       # no cool-down bar
    assert list(figure.layout.yaxis.range) == [count - 0.5, -0.5]
    last_end = max(r.end_s for r in loaded.levels[0].records if r.phase != "cool-down")
    assert figure.layout.xaxis.range[1] == pytest.approx(last_end * 1.02)
    assert f"not drawn: {cooldown} cool-down requests" in figure.layout.title.text
    many = count > serving_charts.TIMELINE_TICKS
    assert figure.layout.bargap == (0.0 if many else 0.25)
    assert (figure.layout.yaxis.tickvals is None) == many
    assert figure.layout.height <= 900


# --- the whole path, against a scripted server --------------------------------------------------

CHUNKS = [(0.02, "a", 1), (0.005, "b", 1), (0.005, "c", 1), (0.005, "d", 1)]


@pytest.fixture
def fake_tokenizer(monkeypatch):
    monkeypatch.setattr(session, "_default_tokenizer", lambda say: FakeTokenizer())


@pytest.mark.slow
def test_lib_load_with_a_budget_prints_the_sized_plan_and_its_time(capsys, fake_tokenizer):
    with ScriptedServer(Reply(CHUNKS)) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--requests", "3",
                                   "--warmup", "1", "--prompt-tokens", "8", "--new-tokens",
                                   "4", "--budget-s", "20", "--json"], capsys)
        posts = [r for r in server.requests if r["method"] == "POST"]
    assert status == 0, err
    document = json.loads(out)
    plan = document["plan"]
    assert plan["mode"] == "rate" and len(plan["levels"]) >= 3
    assert plan["requests"] == 3 and plan["budget_s"] == 20
    answer = plan["calibration"]["answer_s"]
    assert 1 / plan["levels"][0] > 2 * answer and 1 / plan["levels"][-1] < answer / 3
    assert plan["timeout_s"] >= sizing.TIMEOUT_ANSWERS * answer
    assert 0 < plan["estimated_s"] <= 20 and plan["measured_s"] > 0
    assert document["elapsed_s"] > 0
    assert [level["offered"] for level in document["levels"]] == plan["levels"]
    assert all(level["failed"] == 0 for level in document["levels"])
    # The probe, the calibration's answers, then every level's requests.
    assert len(posts) >= 1 + sizing.CALIBRATION_REQUESTS + 3 * (3 + 1)
    assert "Plan: " in err and "an estimate" in err


def test_a_server_that_answers_nothing_is_refused_before_any_level(capsys, fake_tokenizer):
    with ScriptedServer([Reply(CHUNKS), Reply(status=500, body="model exploded")]) as server:
        status, out, err = invoke(["load", "--target", server.base_url, "--budget-s", "20",
                                   "--prompt-tokens", "8", "--new-tokens", "2"], capsys)
        posts = [r for r in server.requests if r["method"] == "POST"]
    assert status == 2
    assert "did not answer the first requests" in err and "model exploded" in err
    assert len(posts) == 2               # the probe, and one timing request: no more
