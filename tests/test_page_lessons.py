"""AppTest of the Lessons page through the real router, on the fake backend (exact)."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import plain

ENTRY = str(Path(__file__).with_name("app_entry.py"))
LESSONS = str(Path(__file__).resolve().parent.parent / "pages" / "lessons.py")


@pytest.fixture
def app(fake_backend):
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    at.switch_page(LESSONS).run()
    assert not at.exception
    return at


def shown(markdown):
    """What a reader sees of a Markdown element with hover terms: no style, no spans."""
    markdown = re.sub(r"<style>.*?</style>", "", markdown, flags=re.S)
    return plain(re.sub(r"<span[^>]*>|</span>", "", markdown))


def _choose(app, lesson_id):
    app.selectbox(key="lesson_chosen").set_value(lesson_id).run()


def test_a_lesson_goes_from_prediction_to_answer_and_why(app, fake_backend):
    fake_backend.decode_s = lambda spec: 0.05 * (1 + 0.2 * (spec.batch_size - 1))
    _choose(app, "batch-size")
    measure = app.button(key="lesson_measure_batch-size")
    assert measure.disabled                                 # predict first
    app.radio(key="lesson_predict_batch-size").set_value(0).run()
    assert not app.button(key="lesson_measure_batch-size").disabled
    app.button(key="lesson_measure_batch-size").click().run()
    assert not app.exception and not app.error
    said = " ".join(plain(i.value) for i in app.info)
    assert "You predicted: less than 2 times slower. Measured: 2 to 5 times slower." in said
    text = " ".join(shown(m.value) for m in app.markdown)
    assert "to 120 ms (batch size 8), 2.40x" in text and "A decode step reads every" in text
    assert [h.value for h in app.subheader] == ["Why"]
    assert "1 of 13 lessons measured in this browser: 4." in " ".join(c.value for c in app.caption)
    app.radio(key="lesson_predict_batch-size").set_value(1).run()    # the next interaction
    assert app.selectbox(key="lesson_chosen").value == "batch-size"  # stays on this lesson
    assert app.get("download_button")                      # the handout and the whole path


def test_presenter_mode_shows_one_step_at_a_time_and_keeps_the_prediction(app):
    _choose(app, "latency")
    app.toggle(key="lesson_presenter").set_value(True).run()
    captions = " ".join(c.value for c in app.caption)
    assert "Step 1 of 4: The question" in captions
    app.radio(key="lesson_predict_latency").set_value(2).run()
    app.button(key="lesson_next_step_latency").click().run()
    assert "Step 2 of 4: Measure" in " ".join(c.value for c in app.caption)
    app.button(key="lesson_measure_latency").click().run()       # no radio on this step
    app.button(key="lesson_next_step_latency").click().run()
    said = " ".join(plain(s.value) for s in app.success)
    assert "You predicted: the first token takes longer." in said
    app.button(key="lesson_prev_latency").click().run()
    app.button(key="lesson_prev_latency").click().run()
    assert "Step 1 of 4" in " ".join(c.value for c in app.caption)
    assert app.radio(key="lesson_predict_latency").value == 2       # shown again as chosen
    assert not app.exception


def test_try_this_next_opens_explore_with_the_lesson_s_factor(app):
    from lib.ui import state

    _choose(app, "output-length")
    app.radio(key="lesson_predict_output-length").set_value(1).run()
    app.button(key="lesson_measure_output-length").click().run()
    app.button(key="lesson_next_output-length").click().run()
    assert not app.exception
    assert app.session_state[state.explore_factor(0)] == "output"
    assert app.session_state[state.explore_values(0, "output")] == "8, 16, 32, 64, 128"


def test_glossary_terms_carry_their_explanation_and_text_stays_text():
    from lib.core.glossary import GLOSSARY
    from lib.ui import glossary_view

    said = glossary_view.hovered("The KV cache grows; <b>TTFT</b> [x](http://evil) too.")
    assert '<span class="ile-term" data-tip="KV cache: What the model keeps' in said
    assert said.count('class="ile-term"') == 2                     # KV cache, TTFT
    assert "<b>" not in said and "\\<b\\>" in said and "](http" not in said
    assert GLOSSARY["TTFT"].startswith("How long until the first word")
