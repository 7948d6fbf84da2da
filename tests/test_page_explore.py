"""AppTest of the Explore page through the real router (see tests/app_entry.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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
    findings = " ".join(m.value for m in app.markdown)
    assert "From batch size 1 to 2, decode throughput" in findings
    table = app.dataframe[0].value
    assert list(table["batch size"]) == [1, 2]
    assert (table["status"] == "measured").all()
    assert list(table["Time to first token (TTFT)"]) == ["200.0 ms", "200.0 ms"]
    assert list(table["n"]) == [1, 1]


def test_bad_values_are_explained_and_block_the_run(app):
    app.text_input(key="explore_values_0_batch").input("1, two").run()
    assert "whole numbers" in app.error[0].value
    assert app.button[0].disabled


def test_skipped_point_is_shown_with_its_reason(app):
    app.selectbox(key="explore_factor_0").set_value("prompt").run()
    app.text_input(key="explore_values_0_prompt").input("16, 9000").run()
    app.button[0].click().run()
    assert not app.exception
    table = app.dataframe[0].value
    assert table["status"][0] == "measured"
    assert table["status"][1].startswith("skipped: ") and "reads at most 8192" in table["status"][1]
    assert any("Prompt length (tokens) 9000 could not run: Prompt (9000)" in m.value
               for m in app.markdown)


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


def test_points_that_cannot_fit_are_named_before_the_sweep(app, monkeypatch):
    from lib import memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: 2 * 10**9)
    app.slider(key="setting_batch_size").set_value(8).run()
    app.selectbox(key="explore_factor_0").set_value("prompt").run()
    app.text_input(key="explore_values_0_prompt").input("16, 4096, 9000").run()
    # 9000 is skipped for the context (the sweep says why), not counted as a memory refusal.
    assert "1 of 3 points don't fit in the memory free now" in app.warning[0].value
    assert "refused: prompt length (tokens) 4096. The first needs about" in app.warning[0].value
    assert not app.button[0].disabled
    app.text_input(key="explore_values_0_prompt").input("4096, 8000").run()
    assert "2 of 2 points don't fit" in app.error[0].value
    assert app.button[0].disabled
