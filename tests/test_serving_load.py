"""The load generator and its measures: exact relations on hand-made records, and the
generator's behaviour against a simulated one-at-a-time server (real threads, short sleeps)."""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from lib.core.errors import InvalidSpecError, StoppedError
from lib.serving import findings, load, measures, summary as report
from lib.serving.load import run_load
from lib.serving.plan import LoadPlan
from lib.serving.measures import Slo
from lib.serving.records import (CANCELLED, COOLDOWN, FAILED, MEASURED, OK, SHORT, WARMUP,
                                 Endpoint, RequestRecord)

ENDPOINT = Endpoint("http://127.0.0.1:9/v1", "m", api_key="sk-secret-123")


def record(index, sent, ttft, gaps, phase=MEASURED, status=OK, tokens=None, reason=""):
    """A request sent at `sent`, first token after `ttft`, then one token per gap."""
    chunks = [sent + ttft]
    for gap in gaps:
        chunks.append(chunks[-1] + gap)
    tokens = tokens or [1] * len(chunks)
    return RequestRecord(index=index, phase=phase, sent_s=sent, status=status,
                         first_token_s=chunks[0], chunk_s=tuple(chunks),
                         chunk_tokens=tuple(tokens), end_s=chunks[-1],
                         asked_tokens=sum(tokens), output_tokens=sum(tokens), reason=reason)


# --- records and measures: exact -----------------------------------------------------------

def test_a_request_s_latencies_follow_from_its_timestamps():
    r = record(0, 10.0, 0.5, [0.1, 0.1, 0.1])
    assert r.ttft_s == pytest.approx(0.5)
    assert r.e2e_s == pytest.approx(0.8)
    assert r.tpot_s == pytest.approx(0.1)
    assert r.e2e_s == pytest.approx(r.ttft_s + (r.output_tokens - 1) * r.tpot_s)


def test_a_chunk_of_three_tokens_is_spread_over_the_gap_before_it():
    r = record(0, 0.0, 0.2, [0.3], tokens=[1, 3])
    assert r.token_times() == pytest.approx([0.2, 0.3, 0.4, 0.5])
    assert r.itl_s() == pytest.approx([0.1, 0.1, 0.1])
    assert r.tpot_s == pytest.approx(0.3 / 3)


def test_level_summary_counts_measured_requests_only_over_their_window():
    records = [record(0, 0.0, 9.0, [9.0], phase=WARMUP),
               *[record(i, i * 1.0, 0.5, [0.1] * 9) for i in range(1, 11)],
               record(11, 11.0, 0.5, [0.1], phase=COOLDOWN, status=CANCELLED)]
    summary = measures.level_summary(1.0, records, Slo(1.0, 0.2))
    assert summary["requests"] == summary["completed"] == 10
    # window: first measured send (1.0) to the last measured end (10 + 0.5 + 0.9)
    assert summary["window_s"] == pytest.approx(10.4)
    assert summary["achieved_requests_per_s"] == pytest.approx(10 / 10.4)
    assert summary["output_tokens_per_s"] == pytest.approx(100 / 10.4)
    assert summary["ttft_s"]["p50"] == pytest.approx(0.5)
    assert summary["ttft_s"]["p90"] == pytest.approx(0.5)       # 10 samples: p90 given
    assert summary["ttft_s"]["p99"] is None                       # needs 100
    assert summary["output_tokens_per_s_per_user"] == pytest.approx(10.0)
    assert summary["goodput_requests_per_s"] == pytest.approx(10 / 10.4)
    assert summary["good_fraction"] == 1.0


def test_goodput_counts_only_requests_meeting_both_targets():
    records = [record(0, 0.0, 0.5, [0.1] * 4),       # good
               record(1, 1.0, 3.0, [0.1] * 4),       # TTFT too slow
               record(2, 2.0, 0.5, [0.5] * 4),       # TPOT too slow
               RequestRecord(3, MEASURED, 3.0, FAILED, end_s=3.1, reason="HTTP 500")]
    summary = measures.level_summary(1.0, records, Slo(2.0, 0.2))
    assert summary["good_fraction"] == 0.25
    assert summary["failed"] == 1
    assert summary["completed"] == 3
    assert summary["failure_reasons"] == {"HTTP 500": 1}
    assert summary["goodput_requests_per_s"] == pytest.approx(1 / summary["window_s"])


def _level(offered, ttfts, tpot=0.05, spacing=1.0):
    records = [record(i, i * spacing, t, [tpot] * 7) for i, t in enumerate(ttfts)]
    return measures.level_summary(offered, records, Slo(2.0, 0.2))


def test_the_knee_is_the_first_level_whose_tail_grows_clearly():
    levels = [_level(0.5, [0.20, 0.21, 0.22, 0.2, 0.21, 0.2, 0.22, 0.21, 0.2, 0.23]),
              _level(1.0, [0.22, 0.25, 0.24, 0.23, 0.22, 0.26, 0.24, 0.23, 0.25, 0.24]),
              _level(2.0, [0.8, 1.1, 1.3, 1.0, 0.9, 1.4, 1.2, 1.5, 1.1, 1.6]),
              _level(4.0, [3.0, 4.0, 5.0, 3.5, 4.5, 5.5, 6.0, 4.2, 3.3, 5.1])]
    found = measures.knee(levels)
    assert found.last_ok == 1.0 and found.saturated == 2.0
    assert found.statistic == "p90"
    assert found.growth == pytest.approx(levels[2]["ttft_s"]["p90"]
                                         / levels[0]["ttft_s"]["p90"])
    sentence = findings.findings(levels, "rate", "requests/s", None)[0]
    assert sentence.startswith("Above 1 request/s the p90 time to first token grows")
    assert "saturated" in sentence


def test_no_knee_is_claimed_inside_the_spread():
    # The heavier level's p90 is 2x, but its median sits inside the light level's spread.
    light = _level(0.5, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 1.0])
    heavy = _level(1.0, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 1.9, 2.0])
    assert measures.knee([light, heavy]) is None
    assert findings.findings([light, heavy], "rate", "requests/s", None)[0].startswith(
        "No knee up to 1 request/s")


def test_no_knee_in_the_times_but_falling_behind_the_offered_rate_is_not_keeping_up():
    # A busy machine, 3 requests a level: the times stay within the spread, but the heaviest
    # level finished 3 requests in 30 s where 0.44/s was offered.
    light = _level(0.044, [7.8, 7.0, 8.1], spacing=1 / 0.044)
    heavy = _level(0.44, [8.0, 9.0, 14.6], spacing=10.0)
    assert measures.knee([light, heavy]) is None
    assert heavy["achieved_requests_per_s"] < findings.FAR_BEHIND * 0.44
    first = findings.findings([light, heavy], "rate", "requests/s", None)[0]
    assert first.startswith("No clear knee in the times, but at 0.44 requests/s the server "
                            "finished only") and "past its capacity" in first
    assert "kept up" not in first


def test_few_samples_compare_medians_and_say_so():
    light = _level(1, [0.2, 0.2, 0.2])
    heavy = _level(4, [0.9, 1.0, 1.1])
    found = measures.knee([light, heavy])
    assert found.statistic == "median"
    assert found.growth == pytest.approx(5.0)


def test_a_knee_in_the_whole_answer_counts_where_the_first_token_stays_flat():
    """Continuous batching admits every request at once: the first token comes as fast, but
    each answer's decode is shared, so the end-to-end time grows instead."""
    light = _level(0.1, [1.0, 1.1, 1.2], tpot=0.1)
    heavy = _level(1.0, [1.2, 1.3, 1.4], tpot=1.0)
    found = measures.knee([light, heavy])
    assert found.metric == "e2e_s" and found.statistic == "median"
    assert found.growth == pytest.approx(heavy["e2e_s"]["median"] / light["e2e_s"]["median"])
    sentence = findings.findings([light, heavy], "rate", "requests/s", None)[0]
    assert sentence.startswith("Above 0.1 requests/s the median end-to-end time grows")
    assert "the first token still came about as fast" in sentence


def test_goodput_finding_names_the_best_level_and_the_targets():
    levels = [_level(1, [0.2] * 10), _level(2, [0.3] * 5 + [3.0] * 5)]
    said = " ".join(findings.findings(levels, "rate", "requests/s", Slo(2.0, 0.2, "test")))
    assert "peaks at" in said and "at 1 request/s (100% of its requests met them)" in said
    assert "at 2 requests/s 50% did" in said


# --- plan checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, words", [
    ({"levels": ()}, "at least one"),
    ({"levels": (0,)}, "positive"),
    ({"levels": (float("nan"),)}, "positive"),
    ({"mode": "concurrency", "levels": (1.5,)}, "whole numbers"),
    ({"mode": "concurrency", "levels": (1000,)}, "whole numbers"),
    ({"levels": (1, 1)}, "once"),
    ({"requests": 0}, "Requests per level"),
    ({"new_tokens": 10**6}, "Output length"),
    ({"arrival": "weibull"}, "poisson"),
    ({"burstiness": 0}, "Burstiness"),
    ({"mode": "closed"}, "concurrency or rate"),
])
def test_impossible_plans_are_refused_with_what_to_do(fields, words):
    with pytest.raises(InvalidSpecError, match=words):
        LoadPlan(**fields)


def test_arrival_gaps_have_the_asked_mean_and_burstiness():
    count = 20000
    poisson = load.intervals(LoadPlan(), 4.0, count)
    assert statistics.fmean(poisson) == pytest.approx(0.25, rel=0.03)
    assert statistics.pstdev(poisson) == pytest.approx(0.25, rel=0.05)   # CV 1
    bursty = load.intervals(LoadPlan(arrival="gamma", burstiness=0.25), 4.0, count)
    assert statistics.fmean(bursty) == pytest.approx(0.25, rel=0.05)
    assert statistics.pstdev(bursty) == pytest.approx(0.5, rel=0.08)      # CV 1/sqrt(0.25)
    assert load.intervals(LoadPlan(arrival="constant"), 4.0, 3) == [0.25] * 3
    assert load.intervals(LoadPlan(), 4.0, 5) == load.intervals(LoadPlan(), 4.0, 5)  # seeded


# --- the generator against a simulated server ---------------------------------------------

class OneAtATime:
    """A server that serves one request at a time, first come first served: `prefill` then
    `step` per token, with real sleeps. Records what each request was sent with."""

    def __init__(self, prefill=0.02, step=0.005):
        self.prefill, self.step = prefill, step
        self.lock = threading.Lock()
        self.free_at = 0.0
        self.prompts: list[str] = []
        self.max_in_flight = 0
        self.in_flight = 0

    def __call__(self, endpoint, prompt, new_tokens, *, index, phase, clock, cancel,
                 count_tokens=None):
        sent = clock()
        with self.lock:
            self.prompts.append(prompt)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            start = max(sent, self.free_at)
            self.free_at = start + self.prefill + self.step * (new_tokens - 1)
        chunks = []
        try:
            for n in range(new_tokens):
                due = start + self.prefill + self.step * n
                while clock() < due:
                    if cancel is not None and cancel.wait(min(0.005, max(0, due - clock()))):
                        return RequestRecord(index, phase, sent, CANCELLED,
                                             chunk_s=tuple(chunks), end_s=clock(),
                                             chunk_tokens=(1,) * len(chunks),
                                             asked_tokens=new_tokens)
                chunks.append(clock())
            return RequestRecord(index, phase, sent, OK, first_token_s=chunks[0],
                                 chunk_s=tuple(chunks), chunk_tokens=(1,) * len(chunks),
                                 end_s=clock(), asked_tokens=new_tokens,
                                 output_tokens=new_tokens)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.slow
def test_a_closed_loop_keeps_exactly_n_requests_in_flight_and_excludes_warm_up():
    server = OneAtATime()
    plan = LoadPlan(mode="concurrency", levels=(3,), requests=6, warmup=1, new_tokens=4)
    _, runs, _ = run_load(plan, ENDPOINT, server, lambda i: f"prompt {i}")
    records = runs[0].records
    phases = [r.phase for r in records]
    assert phases[:3] == [WARMUP] * 3                   # at least the concurrency is warm-up
    assert phases.count(MEASURED) == 6
    assert all(r.status == OK for r in records if r.phase == MEASURED)
    assert server.max_in_flight == 3
    assert len(set(server.prompts)) == len(server.prompts)      # every prompt differs
    # Cool-down requests keep the load up until the last measured one ends, then are cancelled.
    last_measured_end = max(r.end_s for r in records if r.phase == MEASURED)
    for r in records:
        if r.phase == COOLDOWN:
            assert r.status == CANCELLED or r.end_s <= last_measured_end + 0.05


@pytest.mark.slow
def test_an_open_loop_past_capacity_queues_and_the_knee_shows():
    server = OneAtATime(prefill=0.01, step=0.002)           # ~0.025 s each: 40 requests/s max
    plan = LoadPlan(mode="rate", levels=(10, 200), requests=6, warmup=1, new_tokens=8,
                    arrival="constant")
    origin, runs, _ = run_load(plan, ENDPOINT, server, lambda i: f"p{i}")
    loaded = report.result({"kind": "url", "endpoint": ENDPOINT.public()}, plan,
                           Slo(0.2, 0.05), origin, runs, {})
    light, heavy = loaded.summaries
    assert heavy["ttft_s"]["median"] > 3 * light["ttft_s"]["median"]
    assert heavy["achieved_requests_per_s"] < 0.9 * 200
    assert loaded.knee is not None and loaded.knee.saturated == 200
    assert "saturated" in loaded.findings[0]
    assert all(r.sent_s >= 0 for level in loaded.levels for r in level.records)


def test_stop_ends_the_run_with_the_levels_measured_so_far():
    server = OneAtATime(prefill=0.01, step=0.002)
    plan = LoadPlan(mode="concurrency", levels=(1, 2), requests=4, warmup=0, new_tokens=3)
    stop = threading.Event()
    levels_seen = []

    def progress(words, fraction):
        levels_seen.append(words)
        if words.startswith("2 concurrent"):
            stop.set()
    origin, runs, stopped = run_load(plan, ENDPOINT, server, str, on_progress=progress,
                                     stop=stop)
    assert stopped
    assert runs[0].offered == 1 and not runs[0].stopped
    assert len(runs) <= 2 and (len(runs) == 1 or runs[1].stopped)
    # Stopped before the second level measured anything: the result still says it was stopped,
    # and names the level it never measured.
    loaded = report.result({"kind": "url", "endpoint": ENDPOINT.public()}, plan, None, origin,
                           runs[:1], {}, stopped=stopped)
    assert loaded.stopped
    assert loaded.findings[-1] == ("The run was stopped: the levels shown are the ones measured "
                                   "before; not measured: 2 concurrent requests.")
    assert report.from_dict(report.to_dict(loaded)).stopped


def test_stop_before_anything_is_measured_keeps_nothing():
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedError):
        run_load(LoadPlan(levels=(1,)), ENDPOINT, OneAtATime(), str, stop=stop)


def test_a_sender_that_raises_is_one_failed_request_not_a_crash():
    def broken(*args, **kwargs):
        raise RuntimeError("bug")
    plan = LoadPlan(mode="concurrency", levels=(2,), requests=3, warmup=0)
    _, runs, _ = run_load(plan, ENDPOINT, broken, str)
    measured_ = [r for r in runs[0].records if r.phase == MEASURED]
    assert len(measured_) == 3 and all(r.status == FAILED for r in measured_)
    assert "bug" in measured_[0].reason


# --- the saved document -----------------------------------------------------------------------

def _loaded():
    plan = LoadPlan(mode="rate", levels=(1.0, 2.0), requests=3, warmup=0)
    runs = [load.LevelRun(1.0, [record(i, 100 + i, 0.2, [0.05] * 3) for i in range(3)]),
            load.LevelRun(2.0, [record(i, 110 + i / 2, 0.9, [0.06] * 3) for i in range(3)]
                          + [record(3, 112, 0.5, [0.1], status=SHORT,
                                    reason="ended early")])]
    target = {"kind": "url", "endpoint": ENDPOINT.public(), "server": "test"}
    return report.result(target, plan, Slo(0.5, 0.1), 100.0, runs, {"host": "here"})


def test_the_document_reopens_to_the_same_numbers_and_never_holds_the_key():
    import json
    loaded = _loaded()
    document = report.to_dict(loaded)
    text = json.dumps(document)
    assert "sk-secret-123" not in text
    reopened = report.from_dict(json.loads(text))
    assert reopened.summaries == loaded.summaries
    assert reopened.findings == loaded.findings
    assert reopened.levels[0].records[0].sent_s == pytest.approx(0.0)   # relative to the start
    rows = report.level_rows(reopened)
    assert [row["offered"] for row in rows] == [1.0, 2.0]
    assert rows[0]["ttft_s_p50"] == pytest.approx(0.2)
    assert len(report.request_rows(reopened)) == 7


@pytest.mark.parametrize("damage, field", [
    (lambda d: d["levels"][0]["records"][0].update(chunk_s="x"), "levels[0].records[0].chunk_s"),
    (lambda d: d["levels"][0]["records"][0].update(status="great"),
     "levels[0].records[0].status"),
    (lambda d: d["plan"].update(requests=-1), "plan"),
    (lambda d: d["levels"][1].update(offered=float("nan")), "levels[1].offered"),
    (lambda d: d.pop("target"), "target"),
])
def test_a_damaged_document_names_its_bad_field(damage, field):
    from lib.core.schema import DocumentError
    document = report.to_dict(_loaded())
    damage(document)
    with pytest.raises(DocumentError, match=field.replace("[", r"\[").replace("]", r"\]")):
        report.from_dict(document)


@pytest.mark.slow
def test_progress_is_said_on_the_calling_thread_and_leaving_cancels_the_requests():
    """A page draws progress only from its own script thread; when the person leaves the page
    mid-run, Streamlit raises in that thread, and no request may go on loading the server."""
    server = OneAtATime(prefill=0.01, step=0.01)
    caller = threading.current_thread()
    threads_heard = set()

    class Left(BaseException):
        pass

    def progress(words, fraction):
        threads_heard.add(threading.current_thread())
        if fraction > 0:
            raise Left
    plan = LoadPlan(mode="concurrency", levels=(3,), requests=30, warmup=0, new_tokens=8)
    started = time.monotonic()
    with pytest.raises(Left):
        run_load(plan, ENDPOINT, server, str, on_progress=progress)
    assert threads_heard == {caller}
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 1
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.in_flight == 0


def test_a_knee_while_throughput_still_grows_is_not_called_saturation():
    """Closed loop: at 4 users each waits for the others' prefills (TTFT 3x), but the server
    finishes twice the tokens per second: busy and sharing, not yet saturated."""
    one = _level(1, [0.2] * 10, spacing=1.0)
    four = _level(4, [0.6] * 10, spacing=0.5)
    sentence = findings.findings([one, four], "concurrency", "concurrent requests", None)[0]
    assert sentence.startswith("Above 1 concurrent request the p90 time to first token "
                               "grows 3.0x")
    assert "still grew" in sentence and "wait for each other" in sentence
    assert "saturated" not in sentence


def test_answers_that_stopped_early_are_named_never_hidden():
    records = [record(0, 0.0, 0.2, [0.1] * 3),
               record(1, 1.0, 0.2, [0.1] * 2, status=SHORT, reason="ended early")]
    summary = measures.level_summary(1.0, records, None)
    assert summary["stopped_early"] == 1 and summary["completed"] == 2
    said = findings.findings([summary], "rate", "requests/s", None)
    assert "At 1 request/s, 1 answer of 2 stopped before the asked length" in " ".join(said)


def test_the_result_says_how_tokens_were_counted():
    loaded = _loaded()
    assert loaded.counting.startswith("Output tokens were counted from the chunks, one token each")
    assert "spread evenly" in loaded.counting


def test_answers_counted_different_ways_are_counted_in_the_words():
    from dataclasses import replace
    from lib.serving.records import FROM_TOKENIZER, FROM_USAGE
    plan = LoadPlan(mode="rate", levels=(1.0,), requests=3, warmup=0)
    records = [replace(record(i, 100 + i, 0.2, [0.05] * 3),
                       token_source=FROM_TOKENIZER if i == 0 else FROM_USAGE) for i in range(3)]
    target = {"kind": "url", "endpoint": ENDPOINT.public(), "server": "test"}
    said = report.result(target, plan, None, 100.0, [load.LevelRun(1.0, records)],
                         {"host": "here"}).counting
    assert "the server's own usage report for 2 answers" in said
    assert "the tokenizer, run on each chunk's text (no usage report came) for 1 answer" in said


def test_throughput_that_falls_under_load_is_said_to_fall():
    """The reviewer's case: at 4 users the server finished half as much as at 1."""
    one = _level(1, [0.2] * 10, spacing=1.0)
    four = _level(4, [2.0] * 10, spacing=2.0)
    assert four["output_tokens_per_s"] < one["output_tokens_per_s"] / 1.5
    said = findings.findings([one, four], "concurrency", "concurrent requests", None)
    assert "while the total output fell from" in said[0] and "saturated" in said[0]
    assert said[1].startswith("Total output fell from")
    assert not any("stayed near" in sentence or "grew only" in sentence for sentence in said)
