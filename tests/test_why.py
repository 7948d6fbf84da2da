"""lib.estimate.why: the run JSON's `why` (busy machine first, else the floor's limit), the number-format
sentence from declared ceilings, and the Playground showing both. Fake backend, exact numbers."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import DECLARED_CEILINGS, DECLARED_THIS, measure, plain, with_declared_ceilings
from lib.estimate import estimator, floors, why
from lib.views import insights
from lib.records import export
from lib.core import stats
from lib.measure.factors import get_factor
from lib.core.spec import RunSpec

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=3, min_duration_s=0.0, threads=1)
ENTRY = str(Path(__file__).with_name("app_entry.py"))


def run_json(other_cpu_percent, **declared):
    measurement = with_declared_ceilings(
        measure(BASE, other_cpu_percent=other_cpu_percent, **declared))
    return measurement, export.to_dict(measurement, stats.summarize(measurement))


def test_a_run_on_a_busy_machine_says_so_first_with_the_share_and_the_slowdown():
    measurement, document = run_json(70.0, decode_s=1.0)
    found = document["why"]
    assert found["limit"] == why.BUSY_MACHINE
    assert found["text"].startswith("Other programs used 70% of the CPU during this run")
    quiet = estimator.estimate_on(measurement.spec, DECLARED_CEILINGS).summary["tpot_s"]
    assert found["slowdown"] == pytest.approx(1.0 / quiet)
    assert f"{1.0 / quiet:.1f}× as long per token" in found["text"]
    assert "quiet machine" in found["text"] and "estimate from its quiet figures" in found["text"]
    # Ceilings measured busy are low: the slowdown against them is said to be larger.
    import dataclasses
    busy_ceilings = dataclasses.replace(DECLARED_CEILINGS, other_cpu_percent=80.0)
    measurement = dataclasses.replace(measurement, environment={
        **measurement.environment, "ceilings": busy_ceilings.to_dict()})
    found = why.explain(measurement, stats.summarize(measurement))
    assert "measured while other programs used 80% of the CPU, so the true slowdown is " \
           "larger" in found.text
    # Against busy figures, a run no slower than them tells nothing about the slowdown.
    fast = dataclasses.replace(measurement, repetitions=measure(
        BASE, other_cpu_percent=70.0, decode_s=quiet).repetitions)
    found = why.explain(fast, stats.summarize(fast))
    assert found.limit == why.BUSY_MACHINE and found.slowdown is None
    assert "how much slower that made it can't be said" in found.text


def test_the_same_run_quiet_names_the_floors_limit_instead():
    for share in (0.0, why.BUSY_PERCENT):          # the threshold itself is not busy
        _, document = run_json(share, decode_s=1.0)
        assert document["why"]["limit"] in {why.MEMORY_BANDWIDTH, why.COMPUTE, why.OVERHEAD}
        assert "Other programs" not in document["why"]["text"]
    # 1 s a token is far above this model's floor on the declared machine: overhead.
    assert document["why"]["limit"] == why.OVERHEAD


def test_without_recorded_ceilings_nothing_is_claimed():
    measurement = measure(BASE, other_cpu_percent=0.0)
    assert export.to_dict(measurement, stats.summarize(measurement))["why"] is None
    busy = measure(BASE, other_cpu_percent=70.0)
    found = why.explain(busy, stats.summarize(busy))
    assert found.limit == why.BUSY_MACHINE and "can't be said" in found.text


def test_a_busy_runs_floor_sentences_do_not_blame_python():
    measurement = with_declared_ceilings(measure(BASE, prefill_s=2.0, decode_s=1.0))
    quiet = " ".join(floors.sentences(measurement, 2.0, 1.0))
    busy = " ".join(floors.sentences(measurement, 2.0, 1.0, busy=True))
    assert "is mostly Python and kernel-launch overhead" in quiet
    assert "mostly Python" not in busy and "can't be put down to" in busy


FLOPS = DECLARED_THIS["matmul_flops_per_s"]       # bfloat16 60, float32 100 billion a second


def test_bfloat16_sentence_says_which_rule_holds_here_and_why():
    slower = why.format_speed_here("bfloat16", FLOPS, "cpu", frozenset({"avx2"}))
    assert slower.startswith("On this machine bfloat16 is slower, not faster")
    assert "60.0 billion operations a second in bfloat16" in slower
    assert "100.0 billion operations a second in float32" in slower
    assert "1.7× slower" in slower and "no native bfloat16 matrix unit" in slower
    native = why.format_speed_here("bfloat16", FLOPS, "cpu", frozenset({"amx_bf16"}))
    assert "has bfloat16 instructions (amx_bf16)" in native
    assert "measured while other programs used 60%" in \
        why.format_speed_here("bfloat16", FLOPS, "cpu", None, other_cpu_percent=60.0)
    faster = why.format_speed_here("bfloat16", {"float32": 100e9, "bfloat16": 200e9})
    assert faster.startswith("On this machine bfloat16 is faster") and "2.0× faster" in faster
    assert why.format_speed_here("float32", FLOPS) is None
    assert why.format_speed_here("float16", {"float32": 100e9}) is None


def test_sweep_findings_from_busy_points_say_they_cannot_tell_why():
    rows = [{"batch_size": 1, "other_cpu_percent": 70.0, "noisy": True},
            {"batch_size": 4, "other_cpu_percent": 5.0, "noisy": False}]
    caution = insights.busy_caution(rows)
    assert caution.startswith("1 of 2 measured points ran while other programs used up to 70%")
    assert "can't be trusted for why" in caution
    assert insights.busy_caution([{**rows[1]}]) is None
    assert insights.heatmap_findings([], [get_factor("batch")]) == []


def test_itl_percentiles_are_gated_by_the_number_of_requests():
    from fakes import many_repetitions
    measurement = many_repetitions(10, tokens=16)         # 150 gaps from 10 requests
    summary = stats.summarize(measurement)
    itl = summary.metrics["itl_s"]
    assert itl.n == 150 and itl.requests == 10
    assert itl.percentile(99) is None and itl.percentile(95) is None
    assert itl.percentile(90) is not None                 # 10 requests carry a p90
    assert itl.needs(99) == "100 requests (has 10)"
    row = next(r for r in export.percentile_rows(summary) if r["metric"].startswith("Inter"))
    assert row["p99"] == "needs 100 requests (has 10)"
    note = next(w for w in summary.warnings if w.message.startswith("Inter-token"))
    assert "150 samples pooled from 10 requests" in note.message
    from lib.serving.measures import distribution
    assert distribution([0.01] * 150, requests=10)["p99"] is None
    assert distribution([0.01] * 150)["p99"] == 0.01


@pytest.mark.slow
def test_playground_puts_the_busy_reason_first(monkeypatch):
    from lib.measure import backends
    from lib.measure.backends.fake import FakeBackend

    with backends.use(FakeBackend(decode_s=1.0, other_cpu_percent=70.0)):
        at = AppTest.from_file(ENTRY, default_timeout=300)
        at.run()
        for key, value in dict(prompt_tokens=16, new_tokens=3, repetitions=3,
                               min_duration_s=0.0).items():
            at.number_input(key=f"setting_{key}").set_value(value).run()
        at.button[0].click().run()
    assert not at.exception and not at.error
    headers = [h.value for h in at.subheader]
    assert "Why it takes this long" in headers
    busy = [plain(w.value) for w in at.warning if "Busy machine" in w.value]
    # First, above the numbers; then, in full, as the first reason why.
    assert busy[0].startswith("**Busy machine:** other programs used 70% of the CPU during this")
    assert "slower than this machine can go" in busy[0]
    assert "Other programs used 70% of the CPU during this run" in busy[1]
    assert not any("mostly Python" in plain(m.value) for m in at.markdown)


def test_sidebar_says_how_bfloat16_does_on_this_machine(monkeypatch, fake_backend):
    from lib.machine import ceilings
    from lib.machine.capability import Ceilings
    monkeypatch.setattr(ceilings, "cached",
                        lambda device="cpu": Ceilings("cpu", 12e9, dict(FLOPS)))
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    at.selectbox(key="setting_dtype").set_value("bfloat16").run()
    assert not at.exception
    assert any("bfloat16 is slower, not faster" in plain(c.value) for c in at.sidebar.caption)


def test_an_estimate_names_the_estimators_largest_term():
    from lib.measure.backends.estimated import BACKEND
    spec = BASE.replace(hardware="h200", gpus=8, batch_size=8)
    measurement = measure(spec, BACKEND)
    predicted = estimator.estimate(spec, "h200", 8)
    phase = "decode" if 4 * predicted.summary["tpot_s"] >= predicted.summary["ttft_s"] \
        else "prefill"
    found = export.to_dict(measurement, stats.summarize(measurement))["why"]
    assert found["limit"] == why.LIMIT_OF_TERM[predicted.bound[phase]]
    assert found["text"] == predicted.why()["text"]          # worded as estimates are
