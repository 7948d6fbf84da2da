"""AppTest of the Playground through the real router (see tests/app_entry.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).with_name("app_entry.py"))


@pytest.fixture
def app():
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    assert not at.exception
    return at


def set_settings(at, **values):
    for key, value in values.items():
        at.number_input(key=f"setting_{key}").set_value(value)
        at.run()


def test_page_renders_with_settings_and_no_results(app):
    assert app.title[0].value == "Playground"
    assert app.button[0].label == "Run"
    assert app.selectbox(key="setting_device").options == ["cpu"] or "cpu" in \
        app.selectbox(key="setting_device").options
    assert "No results yet" in app.info[0].value
    assert not app.error


def test_run_shows_metrics_text_chart_and_table(app):
    set_settings(app, prompt_tokens=24, new_tokens=6, repetitions=3, min_duration_s=0.0)
    app.slider(key="setting_batch_size").set_value(2).run()
    app.button[0].click().run()
    assert not app.exception
    assert not app.error
    labels = [m.label for m in app.metric]
    for label in ("Time to first token (TTFT)", "Time per output token (TPOT)",
                  "End-to-end latency", "Decode throughput", "Total throughput",
                  "Requests per second", "Peak memory", "KV cache (estimate)"):
        assert label in labels
    ttft = next(m for m in app.metric if m.label.startswith("Time to first"))
    assert ttft.value.endswith("ms") or ttft.value.endswith(" s")
    kv = next(m for m in app.metric if m.label == "KV cache (estimate)")
    assert kv.value == "2.6 MB"          # 45 KB per token x batch 2 x 30 tokens
    assert app.text[0].value.strip()                       # the generated text
    assert len(app.get("plotly_chart")) == 1
    assert len(app.dataframe) == 1
    assert any("p99" in c.value for c in app.caption)      # why tail percentiles are hidden
    # Results persist across reruns (e.g. touching a widget) until the next Run.
    app.number_input(key="setting_new_tokens").set_value(7).run()
    assert len(app.get("plotly_chart")) == 1
    assert any("earlier settings" in i.value for i in app.info)


def test_prompt_beyond_context_is_explained_and_app_keeps_working(app):
    set_settings(app, prompt_tokens=8000, new_tokens=500)
    app.button[0].click().run()
    assert not app.exception
    assert "reads at most 8192 tokens" in app.error[0].value
    set_settings(app, prompt_tokens=16, new_tokens=2, repetitions=1, min_duration_s=0.0)
    app.button[0].click().run()
    assert not app.error and not app.exception
    assert len(app.get("plotly_chart")) == 1


def test_own_prompt_is_fitted_with_a_note(app):
    set_settings(app, prompt_tokens=64, new_tokens=3, repetitions=1, min_duration_s=0.0)
    app.text_area(key="setting_prompt_text").input("Why is the sky blue?").run()
    app.button[0].click().run()
    assert not app.exception
    assert any("repeated to fill" in i.value for i in app.info)


def test_batch_that_cannot_fit_is_refused_in_the_page(app):
    set_settings(app, prompt_tokens=8000, new_tokens=100)
    app.slider(key="setting_batch_size").set_value(64).run()
    app.button[0].click().run()
    assert not app.exception
    message = app.error[0].value
    assert "Not enough memory for batch 64 x 8100 tokens" in message
    assert "smaller batch" in message
