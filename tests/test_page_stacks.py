"""AppTest of the software stack in the sidebar, the Playground and Explore, through the real
router, on fakes that are each one stack (`fakes.use_stack_fakes`)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import StackFake, plain, use_stack_fakes

ENTRY = str(Path(__file__).with_name("app_entry.py"))
EXPLORE = str(Path(__file__).resolve().parent.parent / "pages" / "explore.py")
pytestmark = pytest.mark.slow            # each renders the app a few times (over 0.5 s)


@pytest.fixture
def stacks(monkeypatch):
    return use_stack_fakes(monkeypatch, {
        "transformers": StackFake("transformers", prefill_s=0.2, decode_s=0.04),
        "llama.cpp": StackFake("llama.cpp", version="0.3.36", prefill_s=0.4, decode_s=0.01),
        "onnxruntime": StackFake("onnxruntime")}, missing=("onnxruntime",))


def small(at):
    for key, value in (("prompt_tokens", 16), ("new_tokens", 3), ("repetitions", 1),
                       ("min_duration_s", 0.0)):
        at.number_input(key=f"setting_{key}").set_value(value).run()
    return at


@pytest.fixture
def app(stacks):
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    assert not at.exception
    return small(at)


def test_the_stack_select_offers_every_stack_and_marks_a_missing_one(app):
    stack = app.selectbox(key="setting_stack")
    assert stack.options == ["transformers (PyTorch)", "llama.cpp",
                             "ONNX Runtime (not installed)"]
    assert stack.value == "transformers"
    assert app.selectbox(key="setting_dtype").options == \
        ["float32 (F32)", "bfloat16", "float16 (F16)", "int8 (dynamic)"]
    stack.set_value("onnxruntime").run()
    assert not app.exception
    assert "ONNX Runtime is not installed on this machine" in plain(app.sidebar.error[0].value)
    assert "setting it up again" in plain(app.sidebar.error[0].value)
    assert "setup.sh" not in plain(app.sidebar.error[0].value)      # no command on a screen
    assert app.button[0].label == "Run" and app.button[0].disabled


def test_the_formats_follow_the_stack_and_a_foreign_one_becomes_float32(app):
    app.selectbox(key="setting_dtype").set_value("int8").run()
    app.selectbox(key="setting_stack").set_value("llama.cpp").run()
    assert not app.exception
    dtype = app.selectbox(key="setting_dtype")
    assert dtype.options == ["float32 (F32)", "float16 (F16)", "Q8_0", "Q4_K_M", "Q4_1"]
    assert dtype.value == "float32"
    assert "llama.cpp does not run weights in int8 (dynamic), so the number format is now " \
           "float32." in plain(app.sidebar.info[0].value)
    # Transformers' own settings are not offered for another stack, and say why.
    keys = {w.key for w in app.selectbox}
    assert not {"setting_attention", "setting_kv_cache", "setting_compile"} & keys
    assert any("are transformers settings" in plain(c.value) for c in app.sidebar.caption)
    app.selectbox(key="setting_stack").set_value("transformers").run()
    assert "setting_attention" in {w.key for w in app.selectbox}


def test_the_playground_says_which_stack_ran_with_its_version(app):
    app.selectbox(key="setting_stack").set_value("llama.cpp").run()
    app.selectbox(key="setting_dtype").set_value("q4_k_m").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    captions = [plain(c.value) for c in app.caption]
    assert "Ran on llama.cpp (llama-cpp-python 0.3.36), weights Q4_K_M." in captions
    tpot = next(m for m in app.metric if m.label.startswith("Time per output"))
    assert tpot.value == "10.0 ms"                     # llama.cpp's fake ran, not another


def test_a_link_restores_the_stack_and_explains_an_unknown_one(stacks):
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.query_params["stack"] = "llama.cpp"
    at.query_params["dtype"] = "q4_k_m"
    at.run()
    assert at.selectbox(key="setting_stack").value == "llama.cpp"
    assert at.selectbox(key="setting_dtype").value == "q4_k_m"
    bad = AppTest.from_file(ENTRY, default_timeout=300)
    bad.query_params["stack"] = "vllm"
    bad.run()
    assert not bad.exception
    assert bad.selectbox(key="setting_stack").value == "transformers"
    assert ("Software stack = 'vllm': choose from transformers, llama.cpp, onnxruntime; it "
            "keeps its default.") in plain(bad.sidebar.warning[0].value)


def explore(at):
    at.switch_page(EXPLORE).run()
    assert not at.exception
    return at


def test_explore_sweeps_the_stack_with_findings_and_the_skipped_reason(app):
    at = explore(app)
    at.selectbox(key="explore_factor_0").set_value("stack").run()
    values = at.multiselect(key="explore_values_0_stack")
    assert values.value == ["transformers", "llama.cpp", "onnxruntime"]
    captions = [plain(c.value) for c in at.caption]
    assert any(c.startswith("3 points: 2 will run and 1 will be skipped (ONNX Runtime is not "
                            "installed on this machine).") for c in captions)
    assert any("choose **two factors (heatmap)**: software stack x number format" in c
               for c in captions)
    at.button[0].click().run()
    assert not at.exception and not at.error
    findings = [line for m in at.markdown for line in plain(m.value).strip().split("\n")]
    assert ("- llama.cpp float32 writes tokens 4.0x faster than transformers float32 (10 ms vs "
            "40 ms per token), but reads the prompt 2.0x slower (400 ms vs 200 ms to the first "
            "token).") in findings
    assert any(f.startswith("- Software stack ONNX Runtime could not run: ONNX Runtime is not "
                            "installed") for f in findings)
    points = at.dataframe[0].value
    status = list(points["status"])
    assert status[:2] == ["measured", "measured"] and status[2].startswith("skipped: ONNX")
    assert list(points["measured / estimated"]) == ["measured", "measured", "skipped"]
    assert list(points["software stack"]) == ["transformers", "llama.cpp", "ONNX Runtime"]


def test_explore_heatmap_of_stack_by_format_leaves_unrun_cells_empty_and_says_why(app):
    at = explore(app)
    at.radio(key="explore_mode").set_value("two factors (heatmap)").run()
    at.selectbox(key="explore_factor_0").set_value("stack").run()
    at.selectbox(key="explore_factor_1").set_value("dtype").run()
    # With the stack as the other factor, every format is offered (the grid shows which runs).
    assert len(at.multiselect(key="explore_values_1_dtype").options) == 8
    at.multiselect(key="explore_values_0_stack").set_value(["transformers", "llama.cpp"]).run()
    at.multiselect(key="explore_values_1_dtype").set_value(["float32", "int8", "q4_k_m"]).run()
    assert any(plain(c.value).startswith("6 points: 4 will run and 2 will be skipped (the stack "
                                         "doesn't run that format).") for c in at.caption)
    at.button[0].click().run()
    assert not at.exception and not at.error
    heatmap = at.get("plotly_chart")[0]
    figure = heatmap.proto.spec
    assert "skipped = could not run: hover it for why" in figure
    assert "llama.cpp does not run weights in int8 (dynamic)" in figure
    findings = [line for m in at.markdown for line in plain(m.value).strip().split("\n")]
    assert ("- Not run, since the stack doesn't run that format: transformers Q4_K_M; "
            "llama.cpp int8.") in findings


def test_explore_offers_the_sidebar_stack_s_formats_for_a_format_sweep(app):
    app.selectbox(key="setting_stack").set_value("llama.cpp").run()
    at = explore(app)
    at.selectbox(key="explore_factor_0").set_value("dtype").run()
    dtypes = at.multiselect(key="explore_values_0_dtype")
    assert dtypes.options == ["float32", "float16", "Q8_0", "Q4_K_M", "Q4_1"]
    assert dtypes.value == ["float32", "float16", "q8_0", "q4_k_m", "q4_1"]


# --- llama.cpp being compiled in the background (lib.core.stack_build), its state faked ----------

@pytest.fixture
def building(monkeypatch):
    from lib.core import stack_build

    use_stack_fakes(monkeypatch, {"transformers": StackFake("transformers")},
                    missing=("llama.cpp",))
    fake = {"state": stack_build.BuildState(
        stack_build.BUILDING, stack_build.Progress(0.5, 130, 260), 180.0, 180.0)}
    monkeypatch.setattr(stack_build, "state", lambda now=None: fake["state"])
    return fake


def test_a_stack_being_built_shows_its_progress_and_keeps_run_off(building):
    at = small(AppTest.from_file(ENTRY, default_timeout=300).run())
    stack = at.selectbox(key="setting_stack")
    assert stack.options[1] == "llama.cpp (being built: about 3 min left)"
    assert any(plain(c.value).startswith(
        "llama.cpp is being built for this machine (step 130 of 260, about 3 min left); you can "
        "use the other stacks meanwhile") for c in at.sidebar.caption)
    stack.set_value("llama.cpp").run()
    assert not at.exception and not at.sidebar.error
    bars = at.sidebar.get("progress")
    assert len(bars) == 1 and bars[0].proto.value == 50 and "step 130 of 260" in bars[0].proto.text
    assert at.button[0].disabled
    explore(at).selectbox(key="explore_factor_0").set_value("stack").run()
    assert any("llama.cpp is being built" in plain(i.value) for i in at.info)


def test_a_failed_build_says_so_in_plain_words_without_a_command(building):
    from lib.core import stack_build

    building["state"] = stack_build.BuildState(stack_build.FAILED, error="error: out of memory")
    at = small(AppTest.from_file(ENTRY, default_timeout=300).run())
    stack = at.selectbox(key="setting_stack")
    assert stack.options[1] == "llama.cpp (could not be built here)"
    stack.set_value("llama.cpp").run()
    words = plain(at.sidebar.error[0].value)
    assert words.startswith("llama.cpp could not be built on this machine: error: out of memory.")
    assert "setup.sh" not in words and at.button[0].disabled
