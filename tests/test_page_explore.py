"""AppTest of the Explore page through the real router (see tests/app_entry.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import plain

ENTRY = str(Path(__file__).with_name("app_entry.py"))
pytestmark = pytest.mark.usefixtures("fake_backend")    # declared latencies: exact, fast
EXPLORE = str(Path(__file__).resolve().parent.parent / "pages" / "explore.py")


@pytest.fixture
def app():
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    for key, value in (("prompt_tokens", 16), ("new_tokens", 3), ("repetitions", 1),
                       ("min_duration_s", 0.0)):
        at.number_input(key=f"setting_{key}").set_value(value).run()
    at.switch_page(EXPLORE).run()
    assert not at.exception
    return at


def test_explore_renders_with_default_values(app):
    assert app.title[0].value == "Explore factors"
    assert app.text_input(key="explore_values_0_batch").value == "1, 2, 4, 8, 16"
    assert "No sweep yet" in app.info[0].value


def test_batch_sweep_draws_charts_findings_and_table(app):
    app.text_input(key="explore_values_0_batch").input("1, 2").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert len(app.get("plotly_chart")) == 4          # latency, throughput, trade-off, memory
    findings = " ".join(plain(m.value) for m in app.markdown)
    assert "From batch size 1 to 2, decode throughput" in findings
    table = app.dataframe[0].value
    assert list(table["batch size"]) == [1, 2]
    assert (table["status"] == "measured").all()
    assert list(table["Time to first token (TTFT)"]) == ["200.0 ms", "200.0 ms"]
    assert list(table["n"]) == [1, 1]


def test_bad_values_are_explained_and_block_the_run(app):
    app.text_input(key="explore_values_0_batch").input("1, two").run()
    assert "whole numbers" in plain(app.error[0].value)
    assert app.button[0].disabled


def test_skipped_point_is_shown_with_its_reason(app):
    app.selectbox(key="explore_factor_0").set_value("prompt_tokens").run()
    app.text_input(key="explore_values_0_prompt_tokens").input("16, 9000").run()
    app.button[0].click().run()
    assert not app.exception
    table = app.dataframe[0].value
    assert table["status"][0] == "measured"
    assert table["status"][1].startswith("skipped: ") and "reads at most 8192" in table["status"][1]
    assert any("Prompt length (tokens) 9000 could not run: Prompt (9000)" in plain(m.value)
               for m in app.markdown)


@pytest.mark.slow
def test_two_factor_sweep_draws_a_heatmap(app):
    app.radio(key="explore_mode").set_value("two factors (heatmap)").run()
    app.text_input(key="explore_values_0_batch").input("1, 2").run()
    app.selectbox(key="explore_factor_1").set_value("output").run()
    app.text_input(key="explore_values_1_output").input("2, 3").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    charts = app.get("plotly_chart")
    assert len(charts) == 1
    assert len(app.dataframe[0].value) == 4


HISTORY = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")


@pytest.mark.slow
def test_factor_and_values_survive_a_visit_to_another_page(app):
    app.selectbox(key="explore_factor_0").set_value("output").run()
    app.text_input(key="explore_values_0_output").input("2, 3").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    app.switch_page(HISTORY).run()
    app.switch_page(EXPLORE).run()
    assert not app.exception
    assert app.selectbox(key="explore_factor_0").value == "output"
    assert app.text_input(key="explore_values_0_output").value == "2, 3"
    assert not any("earlier settings" in i.value for i in app.info)
    link = next(c.value for c in app.code if "factor=" in c.value)
    assert "factor=output" in link and "values=2%2C3" in link


@pytest.mark.slow
def test_results_from_other_settings_say_so(app):
    app.text_input(key="explore_values_0_batch").input("1, 2").run()
    app.button[0].click().run()
    app.selectbox(key="explore_factor_0").set_value("prompt_tokens").run()
    note = next(plain(i.value) for i in app.info if "earlier settings" in plain(i.value))
    assert note.startswith("These results are from earlier settings: it varied batch size, "
                           "now prompt length (tokens)")
    app.selectbox(key="explore_factor_0").set_value("batch").run()
    assert not any("earlier settings" in i.value for i in app.info)
    app.number_input(key="setting_new_tokens").set_value(4).run()
    note = next(plain(i.value) for i in app.info if "earlier settings" in plain(i.value))
    assert "Output length (tokens) 3, now 4" in note


def test_a_link_opens_explore_with_two_factors_and_refuses_bad_values():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({"mode": "two", "factor": "batch", "values": "1,4",
                            "factor2": "dtype", "values2": "float32,bfloat16",
                            "metric": "ttft_s", "new_tokens": "2"})
    at.run()
    at.switch_page(EXPLORE).run()
    assert not at.exception and not at.sidebar.warning
    assert at.radio(key="explore_mode").value == "two factors (heatmap)"
    assert at.text_input(key="explore_values_0_batch").value == "1, 4"
    assert at.multiselect(key="explore_values_1_dtype").value == ["float32", "bfloat16"]
    assert at.selectbox(key="explore_heatmap_metric").value == "ttft_s"
    assert not at.warning                     # no "default and session state" conflict

    damaged = AppTest.from_file(ENTRY, default_timeout=120)
    damaged.query_params.update({"factor": "batch", "values": "1,zero"})
    damaged.run()
    assert "values of batch size = '1,zero'" in plain(damaged.sidebar.warning[0].value)


def test_link_factor_values_outside_this_machine_are_moved_into_range_with_a_note():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({"factor": "batch", "values": "1,2,99999,0"})
    at.run()
    at.switch_page(EXPLORE).run()
    assert not at.exception
    note = plain(at.sidebar.warning[0].value)
    assert "99999 is above the highest value 64, so 64 is used" in note
    assert "0 is below the lowest value 1, so 1 is used" in note
    assert at.text_input(key="explore_values_0_batch").value == "1, 2, 64"


@pytest.mark.slow
def test_points_measured_while_other_programs_took_the_cpu_are_flagged(app, fake_backend):
    # Batch 2 ran while something else took 60% of the machine (declared by the fake).
    fake_backend.other_cpu_percent = lambda spec: 60.0 if spec.batch_size == 2 else 2.0
    app.text_input(key="explore_values_0_batch").input("1, 2").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert any("1 of 2 points are noisy" in w.value for w in app.warning)
    table = app.dataframe[0].value
    assert list(table["Noisy"]) == ["no", "⚠ yes"]
    assert list(table["Other programs' CPU"]) == ["2%", "60%"]
    findings = " ".join(plain(m.value) for m in app.markdown)
    assert "within the noise" in findings or "Noisy point" in findings
    assert any("interleaved rounds" in c.value for c in app.caption)


def test_points_that_cannot_fit_are_named_before_the_sweep(app, monkeypatch):
    from lib.estimate import memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * 10**9)
    app.number_input(key="setting_batch_size").set_value(8).run()
    app.selectbox(key="explore_factor_0").set_value("prompt_tokens").run()
    app.text_input(key="explore_values_0_prompt_tokens").input("16, 4096, 9000").run()
    # 9000 is skipped for the context (the sweep says why), not counted as a memory refusal.
    assert "1 of 3 points don't fit in the memory free now" in plain(app.warning[0].value)
    assert "refused: prompt length (tokens) 4096. The first needs about" in plain(app.warning[0].value)
    assert not app.button[0].disabled
    app.text_input(key="explore_values_0_prompt_tokens").input("4096, 8000").run()
    assert "2 of 2 points don't fit" in plain(app.error[0].value)
    assert app.button[0].disabled


def test_a_device_sweep_sets_this_machine_beside_an_h200_estimate(app):
    app.selectbox(key="explore_factor_0").set_value("device").run()
    values = app.multiselect(key="explore_values_0_device")
    assert values.options[0] == "cpu" and "This machine, modelled (estimate)" in values.options
    assert "NVIDIA H200 SXM 141GB (estimate)" in values.options
    assert "Google Cloud TPU v6e Trillium (estimate)" in values.options
    assert any("are hardware profiles" in plain(c.value) and "dashed floors still apply"
               in plain(c.value) for c in app.caption)
    values.set_value(["cpu", "h200"]).run()
    assert any("1 of them is an estimate" in plain(c.value) for c in app.caption)
    app.button[0].click().run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert list(table["device"]) == ["cpu", "NVIDIA H200 SXM 141GB"]        # in words
    assert list(table["measured / estimated"]) == ["measured", "estimated"]
    findings = " ".join(plain(m.value) for m in app.markdown)
    assert "NVIDIA H200 SXM 141GB (estimated) would write tokens" in findings
    assert any("Estimated points (marked" in plain(c.value) for c in app.caption)
    assert len(app.get("plotly_chart")) == 3          # latency, throughput, memory


def test_a_sweep_of_estimates_is_called_estimated_and_never_waits(app):
    from lib.machine import runlock

    app.selectbox(key="explore_factor_0").set_value("device").run()
    app.multiselect(key="explore_values_0_device").set_value(["h100-sxm"]).run()
    with runlock.measurement_slot("a long measurement"):     # estimates don't queue for it
        app.button[0].click().run()
    assert not app.exception and not app.error
    assert not any("Queued" in plain(m.value) for m in app.markdown)
    info = " ".join(plain(i.value) for i in app.info)
    assert "Only one point was estimated" in info and "was measured" not in info
    assert not any("Measured in interleaved rounds" in plain(c.value) for c in app.caption)
    app.multiselect(key="explore_values_0_device").set_value(["h100-sxm", "h200"]).run()
    app.button[0].click().run()
    findings = [line for m in app.markdown for line in plain(m.value).strip().split("\n")
                if line.startswith("- ")]
    assert findings and all(f.startswith("- Estimated: ") for f in findings[:-1])
    assert findings[-1].startswith("- Every point here is an estimate")


def test_the_time_promise_uses_this_machine_now_and_a_busy_machine_is_the_first_reason(
        app, fake_backend):
    from lib.ui import state

    fake_backend.other_cpu_percent = 60.0
    app.session_state[state.BUSY_NOW] = (float("-inf"), None)     # read the share again
    app.text_input(key="explore_values_0_batch").input("1, 2").run()
    promise = " ".join(plain(c.value) for c in app.caption)
    assert "This sweep should take about" in promise
    assert "on this machine right now: other programs are using 60% of the CPU" in promise
    assert "Busy machine" in plain(app.warning[0].value)
    app.button[0].click().run()
    assert not app.exception and not app.error
    # Above the findings and the noisy-points warning: the share measured while it ran.
    warnings = [plain(w.value) for w in app.warning]
    busy = [i for i, w in enumerate(warnings) if "**Busy machine**: other programs used 60%" in w]
    noisy = [i for i, w in enumerate(warnings) if "points are noisy" in w]
    assert busy and noisy and busy[0] < noisy[0]
    assert "measure again when the machine is quieter" in warnings[busy[0]]


def test_a_budget_too_small_is_said_before_running(app):
    app.number_input(key="explore_budget_s").set_value(10).run()
    promise = " ".join(plain(c.value) for c in app.caption)
    assert "more than the 10 s budget" in promise and not app.exception


def test_a_link_with_a_factors_old_name_opens_that_factor():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({"factor": "prompt", "values": "16,32"})
    at.run()
    at.switch_page(EXPLORE).run()
    assert not at.exception and not at.sidebar.warning
    assert at.selectbox(key="explore_factor_0").value == "prompt_tokens"


def test_a_sweep_with_quality_adds_the_trade_and_its_chart(app):
    app.checkbox(key="setting_quality").check().run()
    app.selectbox(key="explore_factor_0").select("dtype").run()
    app.multiselect(key="explore_values_0_dtype").set_value(["float32", "bfloat16"]).run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert "What it costs in quality" in [h.value for h in app.subheader]
    findings = " ".join(plain(m.value) for m in app.markdown)
    assert "agrees with the original model on 100% of next words" in findings
    assert len(app.get("plotly_chart")) == 4          # latency, throughput, memory, quality
