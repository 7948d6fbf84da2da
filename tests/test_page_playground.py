"""AppTest of the Playground through the real router (see tests/app_entry.py)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import enter_classroom, plain
from lib.machine import devices

ENTRY = str(Path(__file__).with_name("app_entry.py"))


@pytest.fixture
def app(fake_backend):
    """The page on the fake backend: declared latencies, exact and fast."""
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
    assert app.selectbox(key="setting_device").options == devices.available_devices()
    assert "No results yet" in app.info[0].value
    assert not app.error


def test_run_shows_metrics_text_chart_and_table(app):
    set_settings(app, prompt_tokens=24, new_tokens=6, repetitions=3, min_duration_s=0.0)
    app.number_input(key="setting_batch_size").set_value(2).run()
    app.button[0].click().run()
    assert not app.exception
    assert not app.error
    labels = [m.label for m in app.metric]
    for label in ("Time to first token (TTFT)", "Time per output token (TPOT)",
                  "End-to-end latency", "Decode throughput", "Total throughput",
                  "Requests per second", "Peak memory", "KV cache (estimate)"):
        assert label in labels
    ttft = next(m for m in app.metric if m.label.startswith("Time to first"))
    assert ttft.value == "200.0 ms"                        # the fake's declared prefill
    tpot = next(m for m in app.metric if m.label.startswith("Time per output"))
    assert tpot.value == "50.0 ms"
    kv = next(m for m in app.metric if m.label == "KV cache (estimate)")
    assert kv.value == "2.8 MB"          # 46 KB per token x batch 2 x 30 tokens
    assert app.text[0].value.strip()                       # the generated text
    assert len(app.get("plotly_chart")) == 1
    assert len(app.dataframe) == 2           # the percentiles, and measured vs. estimated
    assert any("p99" in c.value for c in app.caption)      # why tail percentiles are hidden
    from lib.estimate import cost
    per_hour = cost.price("this").usd_per_hour      # 2 answers of 6 tokens in 0.2 + 5 x 0.05 s
    dollars = per_hour / (2 / 0.45 * 6 * 3600) * 1e6
    assert any(plain(c.value).startswith(f"If this machine were rented by the hour: "
                                         f"${dollars:,.2f} per million output tokens")
               for c in app.caption)
    # Results persist across reruns (e.g. touching a widget) until the next Run.
    app.number_input(key="setting_new_tokens").set_value(7).run()
    assert len(app.get("plotly_chart")) == 1
    assert any("earlier settings" in i.value for i in app.info)


def test_prompt_beyond_context_is_explained_and_app_keeps_working(app):
    set_settings(app, prompt_tokens=8000, new_tokens=500)
    assert not app.exception
    # Explained before anything runs, and Run is disabled until it is fixed.
    assert "reads at most 8192 tokens" in plain(app.error[0].value)
    assert app.button[0].disabled
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
    app.number_input(key="setting_batch_size").set_value(64).run()
    # The model card says so before anything runs, with what to change ...
    message = next(plain(e.value) for e in app.error if "does NOT fit" in plain(e.value))
    assert "Not enough memory for batch 64 x 8100 tokens" in message
    assert "Any one of these fits: batch " in message
    # ... and Run is off, with the reason next to it.
    assert app.button[0].disabled
    assert any("Run is off: this run needs about" in plain(c.value) for c in app.caption)


def test_model_picker_groups_and_card(app):
    assert app.radio(key="setting_model_group").options == [
        "Trained (real text)", "Famous architectures, random weights", "Your own model"]
    app.radio(key="setting_model_group").set_value("random").run()
    picker = app.selectbox(key="setting_model_id_random")
    assert "DeepSeek-R1-Distill-Llama-8B" in picker.options
    picker.set_value("deepseek-v3-mini-moe").run()
    card = app.expander[0]
    assert "DeepSeek-V3-style" in plain(card.label) and "random weights" in plain(card.label)
    text = " ".join(plain(m.value) for m in card.markdown)
    assert "active per token" in text and "**Latent attention (MLA):**" in text
    assert any("fits" in c.value for c in app.caption)
    # The 8B model in float32 (32 GB) can't be run: the card says why, Run is off.
    app.selectbox(key="setting_model_id_random").set_value("deepseek-r1-distill-llama-8b").run()
    message = next(plain(e.value) for e in app.error if "does NOT fit" in plain(e.value))
    assert "DeepSeek-R1-Distill-Llama-8B in float32" in message
    assert app.button[0].disabled


def test_encoder_run_shows_request_metrics(app):
    app.selectbox(key="setting_model_id_trained").set_value("all-minilm-l6-v2").run()
    assert app.number_input(key="setting_new_tokens").disabled
    set_settings(app, prompt_tokens=64, repetitions=2, min_duration_s=0.0)
    app.button[0].click().run()
    assert not app.exception and not app.error
    labels = [m.label for m in app.metric]
    assert "End-to-end latency" in labels and "Time to first token (TTFT)" not in labels
    assert len(app.get("plotly_chart")) == 1


def test_a_stack_setting_the_model_cannot_use_is_refused_before_run():
    app = AppTest.from_file(ENTRY, default_timeout=120)        # the real backends; nothing runs
    app.run()
    app.selectbox(key="setting_model_id_trained").set_value("all-minilm-l6-v2").run()
    app.selectbox(key="setting_kv_cache").set_value("static").run()
    assert not app.exception
    assert "can't use KV cache = 'static'" in plain(app.error[0].value)
    assert app.button[0].disabled
    app.selectbox(key="setting_kv_cache").set_value("dynamic").run()
    assert not app.error and not app.button[0].disabled


def test_own_model_offline_hub_id_is_explained(app, hub_unreachable):
    app.radio(key="setting_model_group").set_value("own").run()
    app.text_input(key="setting_own_model").input("someone/some-model").run()
    assert not app.exception
    assert "can't reach the Hugging Face hub" in plain(app.sidebar.error[0].value)
    assert app.button[0].disabled


def test_int8_is_offered_on_cpu_with_quantization_time(app):
    assert "int8 (dynamic)" in app.selectbox(key="setting_dtype").options      # as labelled
    app.selectbox(key="setting_dtype").set_value("int8").run()
    set_settings(app, prompt_tokens=24, new_tokens=3, repetitions=1, min_duration_s=0.0)
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert any("quantized to int8 in 0.5 s" in plain(c.value) for c in app.caption)


def test_shared_link_fills_the_widgets_without_running():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({"batch_size": "4", "new_tokens": "7", "dtype": "bfloat16",
                            "model_id": "gpt2", "prompt_tokens": "not-a-number"})
    at.run()
    assert not at.exception
    # The damaged value is refused with a visible note, not silently replaced.
    assert len(at.sidebar.warning) == 1
    assert "Prompt length (tokens) = 'not-a-number': not a whole number" in \
        plain(at.sidebar.warning[0].value)
    assert at.number_input(key="setting_batch_size").value == 4
    assert at.number_input(key="setting_new_tokens").value == 7
    assert at.selectbox(key="setting_dtype").value == "bfloat16"
    assert at.radio(key="setting_model_group").value == "random"
    assert at.selectbox(key="setting_model_id_random").value == "gpt2"
    assert at.number_input(key="setting_prompt_tokens").value == 64     # damaged: default
    assert "No results yet" in at.info[0].value                         # nothing ran
    codes = [c.value for c in at.code]
    assert any("batch_size=4" in c and "new_tokens=7" in c and "model_id=gpt2" in c
               for c in codes)


def test_out_of_range_link_value_is_moved_into_range_with_a_note():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({"prompt_tokens": "9999999", "batch_size": "3"})
    at.run()
    assert not at.exception
    note = plain(at.sidebar.warning[0].value)
    assert "Prompt length (tokens) = '9999999': above the highest value 131072, so 131072 " \
        "is used" in note
    assert at.number_input(key="setting_prompt_tokens").value == 131072
    assert at.number_input(key="setting_batch_size").value == 3
    next(b for b in at.sidebar.button if b.label == "OK, hide this").click().run()
    assert not at.sidebar.warning


def test_stale_result_names_what_changed(app):
    set_settings(app, prompt_tokens=16, new_tokens=2, repetitions=1, min_duration_s=0.0)
    app.button[0].click().run()
    assert not any("earlier settings" in i.value for i in app.info)
    set_settings(app, new_tokens=3)
    note = next(plain(i.value) for i in app.info if "earlier settings" in plain(i.value))
    assert "These results are from earlier settings: Output length (tokens) 2, now 3" in note


@pytest.mark.slow
def test_real_model_run_in_the_page():
    """The same page on the real default model (no fake): real words, a chart, no error."""
    from lib.measure import backends
    assert backends.for_model("smollm2-135m-instruct").name == "transformers"
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    set_settings(at, prompt_tokens=24, new_tokens=6, repetitions=2, min_duration_s=0.0)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert len(at.get("plotly_chart")) == 1
    assert any(c.value.startswith("Saved in History as #") for c in at.caption)
    assert sum(ch.isalpha() for ch in at.text[0].value) > 5          # real text was written


# --- classroom mode ---------------------------------------------------------------------------

def test_classroom_hides_own_models_and_refuses_them_in_links(classroom_on):
    at = enter_classroom(AppTest.from_file(ENTRY, default_timeout=120))
    at.query_params.update({"model_id": "/home/teacher/secret-model", "new_tokens": "7"})
    at.run()
    assert not at.exception
    assert at.radio(key="setting_model_group").options == [
        "Trained (real text)", "Famous architectures, random weights"]
    assert "classroom mode runs only the listed models" in plain(at.sidebar.warning[0].value)
    assert at.number_input(key="setting_new_tokens").value == 7


@pytest.mark.slow
def test_classroom_second_run_of_one_visitor_is_told_to_wait(app, monkeypatch, classroom_on):
    from lib.access import classroom
    from lib.ui import classroom_view as classroom_ui
    enter_classroom(app)
    monkeypatch.setattr(classroom_ui, "_client", lambda: ("carol-cookie", "s1", False))
    set_settings(app, prompt_tokens=16, new_tokens=2, repetitions=1, min_duration_s=0.0)
    turns = classroom_ui.run_turns()
    owner = classroom.owner_id("carol-cookie", None)
    with turns.turn(owner, "a run of gpt2"):          # her other tab's run, still queued
        app.button[0].click().run()
        assert not app.exception
        assert "You already have a run waiting or running (a run of gpt2)" in \
            plain(app.warning[0].value)
        assert "No results yet" in app.info[0].value            # nothing ran
    app.button[0].click().run()                                  # her turn again
    assert not any("already have a run" in w.value for w in app.warning)
    assert len(app.get("plotly_chart")) == 1
    assert turns.active(owner) is None


# --- hostile links (issue 10, finding 3) --------------------------------------------------------

@pytest.mark.parametrize("params, setting, value, words", [
    ({"batch_size": "-1"}, "batch_size", 1, "Batch size = '-1': below the lowest value 1, so 1 "
                                            "is used"),
    ({"batch_size": "1000"}, "batch_size", 64, "above the highest value 64, so 64 is used"),
    ({"new_tokens": "99999"}, "new_tokens", 512, "above the highest value 512, so 512 is used"),
    ({"threads": "9999"}, "threads", None, "cores, so"),
    ({"min_duration_s": "nan"}, "min_duration_s", 1.0, "not a finite number; it keeps its "
                                                      "default"),
    ({"repetitions": "1e3"}, "repetitions", 5, "not a whole number; it keeps its default"),
    ({"attention": "fastest"}, "attention", "sdpa", "choose from sdpa, eager; it keeps"),
    ({"device": "tpu"}, "device", "cpu", "choose from cpu, cuda, mps; it keeps"),
    ({"batch_size": "9" * 5000}, "batch_size", 1, "not a whole number"),
])
def test_every_link_value_is_checked_like_a_cli_argument(params, setting, value, words):
    from lib.core.spec import default_threads
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update(params)
    at.run()
    assert not at.exception and not at.error
    assert len(at.sidebar.warning) == 1                     # one notice, naming the value
    assert words in plain(at.sidebar.warning[0].value)
    widget = next(w for w in at.sidebar if getattr(w, "key", None) == f"setting_{setting}") \
        if setting != "threads" else at.slider(key="setting_threads")
    assert widget.value == (default_threads() if value is None else value)
    assert "No results yet" in at.info[0].value             # a link never starts a run


def test_markdown_in_a_linked_model_id_is_shown_as_text():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.query_params.update({
        "model_id": "[Your session expired - click here](https://evil.example/login)"})
    at.run()
    assert not at.exception
    message = at.sidebar.error[0].value
    # Shown, but every bracket, parenthesis and colon escaped: no link, no bare URL to click.
    assert "[Your session expired - click here](https:/evil.example/login)" in plain(message)
    assert "](" not in message and "https:" not in message      # (the path lost one slash)
    image = AppTest.from_file(ENTRY, default_timeout=120)
    image.query_params.update({"model_id": "![x](https://tracker.example/pixel.png)"})
    image.run()
    assert "![" not in image.sidebar.error[0].value


# --- why, what if (issue 11) --------------------------------------------------------------------

def test_a_run_says_why_and_sits_beside_its_estimate(app):
    set_settings(app, prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0)
    app.button[0].click().run()
    assert not app.exception and not app.error
    headers = [h.value for h in app.subheader]
    assert "Why it takes this long" in headers
    assert "Measured vs. estimated on this machine" in headers
    why = " ".join(plain(m.value) for m in app.markdown)
    assert "at least" in why                                  # a floor, with its number
    table = next(d.value for d in app.dataframe if "measured ÷ estimated" in d.value.columns)
    assert list(table["metric"])[:2] == ["TTFT", "TPOT"]
    assert any("This machine: how fast its memory and arithmetic are" in e.label
               for e in app.expander)


def test_an_estimate_on_other_hardware_is_labelled_and_runs_nothing(app):
    app.selectbox(key="setting_hardware").set_value("h200").run()
    set_settings(app, prompt_tokens=16, new_tokens=3)
    app.button[0].click().run()
    assert not app.exception
    assert "This is an ESTIMATE, not a measurement" in app.warning[0].value
    assert "Measured vs. estimated on this machine" not in [h.value for h in app.subheader]
    [priced] = [plain(c.value) for c in app.caption if "Estimated cost: $" in plain(c.value)]
    assert "at $4.00 per device-hour x 1" in priced and "stated 700 W" in priced


def test_an_estimate_says_what_limits_it_on_that_hardware(app):
    from lib.estimate import estimator

    app.selectbox(key="setting_hardware").set_value("h100-sxm").run()
    set_settings(app, prompt_tokens=16, new_tokens=3)
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert "Why it takes this long" in [h.value for h in app.subheader]
    spec = app.session_state["playground_result"].measurement.spec
    why = estimator.estimate(spec, "h100-sxm", spec.gpus).why()
    said = [plain(m.value) for m in app.markdown]
    assert any(s.startswith(f"- **Limited by {why['limit']}.** On one NVIDIA H100")
               for s in said), said


def test_a_model_too_big_for_the_devices_offers_the_fewest_that_hold_it(app):
    from lib.estimate import estimator

    app.selectbox(key="setting_hardware").set_value("h100-sxm").run()
    app.radio(key="setting_model_group").set_value("random").run()
    app.selectbox(key="setting_model_id_random").set_value("deepseek-r1").run()
    needed = estimator.estimate(app.session_state["spec"], "h100-sxm", 1).min_gpus
    assert needed > 1 and app.button(key="_use_min_gpus").label == f"Use {needed} devices"
    assert "--gpus" not in " ".join(e.value for e in app.error)     # no command line here
    run = lambda: next(b for b in app.button if b.label == "Run")    # noqa: E731
    assert run().disabled
    app.button(key="_use_min_gpus").click().run()
    assert not app.exception and app.number_input(key="setting_gpus").value == needed
    assert not run().disabled and not app.error


def test_quality_ticked_shows_what_the_settings_cost(app):
    set_settings(app, prompt_tokens=16, new_tokens=3, repetitions=1, min_duration_s=0.0)
    app.checkbox(key="setting_quality").check().run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert "What these settings cost in quality" in [h.value for h in app.subheader]
    said = " ".join(plain(i.value) for i in app.info)
    assert "agrees with the original model (transformers, float32) on 100.0% of next words" \
        in said


def test_early_exit_empties_again_and_a_bad_setting_says_what_to_fix(app):
    from lib.ui import state

    box = app.text_input(key="setting_exit_layer")
    box.input("15").run()
    assert app.session_state[state.SPEC].exit_layer == 15
    app.text_input(key="setting_exit_layer").input("").run()
    assert app.session_state[state.SPEC].exit_layer is None       # every layer again
    app.text_input(key="setting_prune").input("cut:0.5").run()
    assert app.button[0].disabled
    said = " ".join(plain(c.value) for c in app.caption)
    assert "A setting needs fixing first (see the sidebar): Unknown pruning method 'cut'" in said
    assert "Pick a model first" not in said


def test_a_draft_model_comes_from_a_student_trained_from_the_sidebar(app, tmp_path, monkeypatch):
    from fakes import make_student
    from lib.measure import distill_job
    from lib.ui import door

    monkeypatch.setenv("ILE_CACHE_DIR", str(tmp_path))
    started = []
    monkeypatch.setattr(distill_job, "start", lambda *asked: started.append(asked) or True)
    app.selectbox(key="setting_speculative").set_value("draft").run()
    said = " ".join(plain(c.value) for c in app.caption)
    assert "No draft model for SmolLM2-135M-Instruct yet" in said and "Train one below" in said
    assert "python -m lib" not in said                          # no command on a page
    app.button(key="distill_start").click().run()
    assert started == [("smollm2-135m-instruct", 10)]
    make_student(layers=10)
    app.run()
    said = " ".join(plain(c.value) for c in app.caption)
    assert "The draft: SmolLM2-135M-Instruct student, 10 layers (distilled here)" in said
    assert "SmolLM2-135M-Instruct student, 10 layers (distilled here)" in app.selectbox(
        key="setting_model_id_trained").options          # and in the model list
    monkeypatch.setattr(door, "is_host", lambda: False)          # a classroom visitor
    app.run()
    assert not [b for b in app.button if b.key == "distill_start"]

