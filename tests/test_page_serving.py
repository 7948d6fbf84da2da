"""AppTest of the Serving under load page through the real router: the load run itself is a
fake (`lib.serving.session.measure`, or the client under the real `measure`), so these are quick
and exact; the real server and the browser are in the slow lane."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import FakeTokenizer, enter_classroom, load_result, plain
from lib.core.errors import ServingError
from lib.records import load_tests
from lib.serving import client, session
from lib.serving.records import MEASURED, OK, RequestRecord
from lib.records.store import Store
from lib.ui import state

ENTRY = str(Path(__file__).with_name("app_entry.py"))
SERVING = str(Path(__file__).resolve().parent.parent / "pages" / "serving.py")
SECRET = "sk-SECRET-key-never-saved-123"


@pytest.fixture
def measured(monkeypatch):
    """`session.measure` replaced: returns the hand-made knee run, saved as the real one is
    (`load_tests.measure_and_save`)."""
    calls = []

    def measure(target, plan, slo, *, say, on_progress, on_wait, stop, sizing=None):
        calls.append({"target": target, "plan": plan, "slo": slo, "sizing": sizing})
        say("Starting the local server…")
        on_progress("1 concurrent: 12 of 12 measured requests done", 0.25)
        return session.Measured(load_result(), "fixed length: yes")

    monkeypatch.setattr(session, "measure", measure)
    return calls


def open_page(classroom=False, host=False):
    at = AppTest.from_file(ENTRY, default_timeout=60)
    if classroom:
        enter_classroom(at, host=host)
    at.run()
    at.switch_page(SERVING).run()
    assert not at.exception
    return at


def run_button(at):
    return next(b for b in at.button if b.label == "Run load sweep")


def words(at):
    return " ".join(plain(m.value) for m in at.markdown)


def test_a_newcomer_sees_the_page_explained_and_ready_to_run():
    at = open_page()
    assert at.title[0].value == "Serving under load"
    assert "knee" in words(at)
    assert not at.error
    assert "No load sweep yet" in at.info[0].value
    assert at.radio(key=state.SERVING_TARGET).value == "local"
    # Sized to this machine by default: no levels to type, the budget is the time promise.
    assert at.toggle(key=state.SERVING_SIZED).value is True
    assert at.number_input(key=state.SERVING_BUDGET).value == 180.0
    assert not [t for t in at.text_input if t.key == state.serving_levels("concurrency")]
    assert any("About 3 min: the levels and requests are planned to fit your time budget"
               in plain(c.value) for c in at.caption)
    assert not run_button(at).disabled
    # Typed levels instead: the field appears with its defaults, and the estimate says where
    # its answer time comes from.
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    assert at.text_input(key=state.serving_levels("concurrency")).value == "1, 2, 4, 8"
    assert any("a guessed 2 s per answer" in plain(c.value) for c in at.caption)


def test_the_load_boxes_take_their_words_limits_and_first_values_from_the_plan():
    """One source: each box is the LoadPlan field's (`lib.serving.plan`), as the CLI flag is."""
    from lib.serving.plan import field_info
    from lib.ui.serving_form import PLAN_KEYS

    at = open_page()
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    for name, key in PLAN_KEYS.items():
        box, info = at.number_input(key=key), field_info(name)
        assert (box.label, box.min, box.max, box.value) == \
            (info["label"], info["page_min"], info["page_max"], info["default"]), name


@pytest.mark.parametrize("typed, said", [
    ("1, two", "'two' is not a number"),
    ("1, 2.5", "Concurrency 2.5: use whole numbers"),
    ("", "Type the load levels"),
])
def test_bad_levels_are_explained_and_block_the_run(measured, typed, said):
    at = open_page()
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    at.text_input(key=state.serving_levels("concurrency")).input(typed).run()
    assert said in plain(at.error[0].value)
    assert run_button(at).disabled                 # a browser can't press it
    assert not measured


def test_a_run_shows_findings_charts_table_and_where_it_was_saved(measured):
    at = open_page()
    run_button(at).click().run()
    assert not at.exception and not at.error
    call = measured[0]
    assert call["target"].kind == "local" and call["target"].model_id == "smollm2-135m-instruct"
    assert call["plan"].mode == "concurrency"
    assert call["sizing"].auto_levels and call["sizing"].auto_requests
    assert call["sizing"].budget_s == 180.0 and call["sizing"].timeout_s is None
    assert call["slo"].name.startswith("MLPerf server")
    said = words(at)
    assert "Above 2 concurrent requests the p90 time to first token grows 5.0x" in said
    assert "HTTP 503: server busy" in said
    assert any(plain(c.value).startswith("Output tokens were counted from")
               for c in at.caption)             # says how chunks became tokens
    assert len(at.get("plotly_chart")) == 4       # latency, throughput, trade-off, timeline
    frame = at.dataframe[0].value
    assert list(frame["load"]) == ["1 concurrent request", "2 concurrent requests",
                                   "4 concurrent requests", "8 concurrent requests"]
    saved = next(c.value for c in at.caption if c.value.startswith("Saved as #"))
    entry_id = int(saved.split("#")[1].split()[0])
    assert Store().export(entry_id)["kind"] == "load"
    # The timeline shows another level when asked, and the results stay.
    at.selectbox(key=state.timeline_level("serving")).set_value(1.0).run()
    assert not at.exception and len(at.get("plotly_chart")) == 4


def test_typed_levels_run_as_typed_with_the_timeout_still_from_the_timing(measured):
    at = open_page()
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    at.number_input(key=state.SERVING_BUDGET).set_value(120.0).run()
    run_button(at).click().run()
    assert not at.exception and not at.error
    call = measured[0]
    assert call["plan"].levels == (1.0, 2.0, 4.0, 8.0)
    assert not call["sizing"].auto_levels and not call["sizing"].auto_requests
    assert call["sizing"].timeout_s is None and call["sizing"].budget_s == 120.0


def test_a_sized_run_says_what_it_was_sized_from_and_how_long_it_took(monkeypatch):
    import dataclasses

    def measure(target, plan, slo, **kwargs):
        loaded = dataclasses.replace(load_result(), sizing={
            "calibration": {"answer_s": 2.0, "other_cpu_percent": 70.0}, "answer_s": 2.0,
            "timeout_s": 30.0, "estimated_s": 100.0, "budget_s": 120.0, "measured_s": 90.0})
        return session.Measured(loaded, "")
    monkeypatch.setattr(session, "measure", measure)
    at = open_page()
    run_button(at).click().run()
    assert not at.exception
    assert ("Sized to this machine: one answer took 2.0 s when timed first (other programs "
            "used 70% of the CPU); the levels, requests and 30 s timeout follow from it. "
            "Estimated 100 s, took 90 s (budget 120 s).") in [plain(c.value) for c in at.caption]


def test_a_refused_server_is_said_and_the_page_keeps_working(monkeypatch):
    def refused(*args, **kwargs):
        raise ServingError("Nothing answers at http://127.0.0.1:9/v1: is the server running?")
    monkeypatch.setattr(session, "measure", refused)
    at = open_page()
    run_button(at).click().run()
    assert not at.exception
    assert "Nothing answers at http://127.0.0.1:9/v1" in plain(at.error[0].value)
    assert "No load sweep yet" in at.info[0].value
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    at.text_input(key=state.serving_levels("concurrency")).input("1, 2").run()
    assert not at.exception and not run_button(at).disabled


def test_an_unexpected_failure_is_contained_by_the_router(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(session, "measure", broken)
    at = open_page()
    run_button(at).click().run()
    assert "Something went wrong on this page" in at.error[0].value


def fake_stream(seen):
    """`client.stream` answering at once: 8 tokens, on the load generator's clock."""
    def stream(endpoint, prompt, new_tokens, *, index, phase, clock, cancel, count_tokens):
        seen.append(endpoint.api_key)
        now = clock()
        chunks = tuple(now + 0.01 * (i + 1) for i in range(new_tokens))
        return RequestRecord(index=index, phase=phase, sent_s=now, status=OK,
                             first_token_s=chunks[0], chunk_s=chunks,
                             chunk_tokens=(1,) * new_tokens, end_s=chunks[-1],
                             asked_tokens=new_tokens, output_tokens=new_tokens)
    return stream


def test_the_api_key_reaches_the_server_only(monkeypatch):
    """The real `measure`, the client faked: the key typed goes with every request and nowhere
    else: not the saved entry, not the exports, not the page's address."""
    seen = []
    monkeypatch.setattr(client, "probe", lambda endpoint, count_tokens=None:
                        (endpoint.with_mode("vllm"), "fixed length: yes"))
    monkeypatch.setattr(client, "stream", fake_stream(seen))
    monkeypatch.setattr(session, "_default_tokenizer", lambda say: FakeTokenizer())
    at = open_page()
    at.radio(key=state.SERVING_TARGET).set_value("url").run()
    at.text_input(key=state.SERVING_URL).input("http://127.0.0.1:8000").run()
    at.text_input(key=state.SERVING_API_KEY).input(SECRET).run()
    at.toggle(key=state.SERVING_SIZED).set_value(False).run()
    at.text_input(key=state.serving_levels("concurrency")).input("1, 2").run()
    at.number_input(key=state.SERVING_REQUESTS).set_value(3).run()
    at.number_input(key=state.SERVING_NEW).set_value(4).run()
    run_button(at).click().run()
    assert not at.exception and not at.error
    assert seen and set(seen) == {SECRET}
    outcome = at.session_state[state.SERVING_RESULT]
    assert outcome.load.target["endpoint"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert outcome.load.target["endpoint"]["api_key"] == "set"
    from lib.serving import summary
    for exported in (json.dumps(summary.to_dict(outcome.load)),
                     json.dumps(summary.level_rows(outcome.load)),
                     json.dumps(summary.request_rows(outcome.load)),
                     json.dumps(Store().export(outcome.entry_id)),
                     json.dumps(Store().list())):
        assert SECRET not in exported
    assert SECRET not in json.dumps(at.query_params.to_dict() if hasattr(at.query_params, "to_dict")
                                    else dict(at.query_params))
    assert all(SECRET not in plain(element.value) for element in
               [*at.markdown, *at.caption, *at.info, *at.warning])


def test_a_server_url_is_the_host_s_in_classroom_mode_a_local_server_anyone_s(classroom_on,
                                                                              measured):
    student = open_page(classroom=True)
    student.radio(key=state.SERVING_TARGET).set_value("url").run()
    assert "only the host can measure a server URL" in plain(student.warning[0].value)
    assert student.text_input(key=state.SERVING_URL).disabled
    assert run_button(student).disabled
    assert not measured
    student.radio(key=state.SERVING_TARGET).set_value("local").run()
    run_button(student).click().run()
    assert not student.exception
    assert measured.pop()["target"].kind == "local"

    host = open_page(classroom=True, host=True)
    host.radio(key=state.SERVING_TARGET).set_value("url").run()
    assert not host.text_input(key=state.SERVING_URL).disabled
    host.text_input(key=state.SERVING_URL).input("http://10.0.0.5:8000/v1").run()
    run_button(host).click().run()
    assert not host.exception
    assert measured[0]["target"].url == "http://10.0.0.5:8000/v1"
    assert Store().list()[0]["owner"] is not None    # saved as the host's, like other runs


def test_a_stopped_run_shows_what_it_measured_on_the_next_page_run(measured):
    """Stop interrupts the page's drawing; the run's thread wraps up, and the next page run
    shows the levels it kept (`serving_run.stopped_load`)."""
    from lib.ui.serving_run import LiveLoad

    at = open_page()
    live = LiveLoad("load sweep (1, 2 concurrent requests)")
    live.outcome = load_tests.Outcome(load_result(levels=(1, 2)), 7, None, "")
    live.ended.set()
    at.session_state[state.SERVING_LIVE] = live
    at.run()
    assert not at.exception
    assert live.stop.is_set()
    assert "Saved as #7 in History." in [c.value for c in at.caption]
    assert state.SERVING_LIVE not in at.session_state


def test_a_simulation_on_other_hardware_is_labelled_priced_and_saved():
    at = open_page()
    at.radio(key=state.SERVING_TARGET).set_value("simulate").run()
    assert not at.exception
    assert "A second or two: nothing runs" in " ".join(plain(c.value) for c in at.caption)
    at.radio(key=state.SERVING_MODE).set_value("rate").run()
    at.text_input(key=state.serving_levels("rate")).input("1, 16, 64").run()
    at.number_input(key=state.SERVING_REQUESTS).set_value(100).run()
    run_button(at).click().run()
    assert not at.exception and not at.error
    warned = " ".join(plain(w.value) for w in at.warning)
    assert "SIMULATED, not measured: 8 x NVIDIA H200" in warned
    assert any("Simulated 200 requests per level, not 100" in i.value for i in at.info)
    assert "200 requests per level after" in " ".join(plain(c.value) for c in at.caption)
    said = words(at)
    assert "per device-hour (on-demand" in said and "64 requests/s: $" in said    # listed, sourced
    assert "Saved as #" in " ".join(c.value for c in at.caption)
    [entry] = [e for e in Store().list() if e["kind"] == "load"][:1]
    assert entry["model_id"] == "deepseek-r1"


def test_how_many_devices_answers_per_hardware_with_the_setups_side_by_side(monkeypatch):
    from lib.serving import capacity

    for name, value in (("REQUESTS", 100), ("MAX_DOUBLINGS", 2), ("PRECISION", 0.5)):
        monkeypatch.setattr(capacity, name, value)          # a coarser search, the same form
    at = open_page()
    at.number_input(key="capacity_rate").set_value(4.0).run()
    at.button(key="capacity_go").click().run()
    assert not at.exception and not at.error
    warned = " ".join(plain(w.value) for w in at.warning)
    assert "SIMULATED, not measured: DeepSeek-R1" in warned and "at 4 requests/s" in warned
    table = at.dataframe[0].value
    h200 = table[table["hardware"] == "NVIDIA H200 SXM 141GB"].iloc[0]
    assert str(h200["devices"]) == "8" and h200["$ per hour"] == "$32.00"
    said = words(at)
    assert "Cheapest: " in said and "At 4 requests/s within p90 time to first token 2 s" in said
    assert "Mercatus" in said                          # where the prices come from
    at.number_input(key=state.SERVING_PROMPT).set_value(32).run()   # the rest of the page
    assert at.dataframe[0].value.equals(table)         # the answer stays while it is used
