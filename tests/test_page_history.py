"""AppTest of the History page: saved runs listed, opened, compared, noted, deleted, and
classroom mode (each visitor sees their own entries and the shared ones)."""

import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import FakePoints, enter_classroom, fake_runner, many_repetitions, plain
from lib.access import classroom
from lib.records import saving
from lib.core import stats
from lib.measure import sweep
from lib.measure.factors import FACTORS, get_factor
from lib.core.spec import RunSpec
from lib.records.store import Store
from lib.ui import classroom_view as classroom_ui

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)

ENTRY = str(Path(__file__).with_name("app_entry.py"))
HISTORY = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")


@pytest.fixture
def saved():
    store = Store()
    ids = []
    for batch in (1, 2):
        measurement = fake_runner(BASE.replace(batch_size=batch))
        ids.append(saving.save_run(measurement, stats.summarize(measurement), store)[0])
    return store, ids


def open_history():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    enter_classroom(at)              # in classroom mode: past the access code (else unused)
    at.run()
    at.switch_page(HISTORY).run()
    assert not at.exception
    return at


@pytest.mark.slow
def test_locked_history_shows_a_waiting_notice_then_why_instead_of_hanging(saved, monkeypatch):
    monkeypatch.setattr("lib.records.store.BUSY_TRY_S", 0.05)
    monkeypatch.setattr("lib.records.store.BUSY_NOTICE_S", 0.2)
    monkeypatch.setattr("lib.records.store.BUSY_TIMEOUT_S", 0.8)
    store, _ = saved
    holder = sqlite3.connect(store.path)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")      # keeps even readers out
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE entries SET note = note")
    try:
        at = AppTest.from_file(ENTRY, default_timeout=120)
        at.run()
        started = time.monotonic()
        at.switch_page(HISTORY).run()
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert not at.exception
    assert took < 8
    assert any("waiting for the history database (locked by another program)" in
               plain(notice.value) for notice in at.info)
    assert "locked by another program" in at.error[0].value


@pytest.mark.slow
def test_a_button_pressed_while_the_history_is_locked_says_why(saved, monkeypatch):
    monkeypatch.setattr("lib.records.store.BUSY_TRY_S", 0.05)
    monkeypatch.setattr("lib.records.store.BUSY_NOTICE_S", 0.2)
    monkeypatch.setattr("lib.records.store.BUSY_TIMEOUT_S", 0.8)
    store, ids = saved
    at = open_history()
    select(at, [0])
    holder = sqlite3.connect(store.path)
    holder.execute("BEGIN IMMEDIATE")                     # writers wait; readers still read
    try:
        next(b for b in at.button if b.label == "Delete").click().run()
    finally:
        holder.rollback()
        holder.close()
    assert not at.exception
    assert "locked by another program" in plain(at.error[0].value)
    assert {e["id"] for e in store.list()} == set(ids)    # nothing lost, nothing half-done


def test_empty_history_says_so():
    at = open_history()
    assert "Nothing saved yet" in at.info[0].value


def test_lists_opens_notes_and_deletes(saved):
    store, ids = saved
    at = open_history()
    table = at.dataframe[0].value
    assert list(table["id"]) == ids[::-1]
    assert set(table["from"]) == {"this machine"}
    assert any("Select a row" in c.value for c in at.caption)
    # AppTest can't click dataframe rows; selection goes through the widget's state.
    select(at, [0])
    assert plain(at.subheader[0].value) == (f"#{ids[1]}: run: smollm2-135m-instruct, batch 2, "
                                            "prompt 16, output 5, float32, on cpu")
    assert len(at.get("plotly_chart")) == 1 and len(at.metric) == 4
    at.text_input(key=f"history_note_{ids[1]}").input("before class").run()
    next(b for b in at.button if b.label == "Save note").click().run()
    assert store.list()[0]["note"] == "before class"
    select(at, [0, 1])
    assert len(at.get("plotly_chart")) == 1                 # the side-by-side comparison
    select(at, [0])
    next(b for b in at.button if b.label == "Delete").click().run()
    assert [e["id"] for e in store.list()] == [ids[0]]
    assert not at.exception
    # The row that moved up into the deleted one's place does not open by itself.
    assert not at.subheader
    assert any("Select a row" in c.value for c in at.caption)


def select(at, rows):
    generation = at.session_state["_history_table_generation"] \
        if "_history_table_generation" in at.session_state else 0
    key = "history_table" + (f"_{generation}" if generation else "")
    at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert not at.exception


def test_playground_run_is_saved_and_listed(fake_backend):
    at = AppTest.from_file(ENTRY, default_timeout=300)
    at.run()
    for key, value in (("prompt_tokens", 16), ("new_tokens", 2), ("repetitions", 1),
                       ("min_duration_s", 0.0)):
        at.number_input(key=f"setting_{key}").set_value(value).run()
    at.button[0].click().run()
    assert any(c.value.startswith("Saved in History as #") for c in at.caption)
    at.switch_page(HISTORY).run()
    assert not at.exception
    assert at.dataframe[0].value["what"][0].startswith("run: smollm2-135m-instruct, batch 1")


def save_sweep(store, factor, values, base=BASE, owner=None):
    recorder = saving.SweepRecorder(base, [factor], len(values), store=store, owner=owner)
    result = sweep.run_sweep(base, [(get_factor(factor), values)], FakePoints(),
                             on_point=recorder.add)
    recorder.finish(result.stopped)
    return recorder.entry_id


def test_sweeps_are_labelled_with_factor_values_and_models_run():
    store = Store()
    save_sweep(store, "batch", [1, 8])
    # Started from the sidebar's default model, but it ran only these two.
    save_sweep(store, "model", ["gpt2", "smollm2-360m"])
    at = open_history()
    assert list(at.dataframe[0].value["what"]) == [
        "model sweep: gpt2, smollm2-360m",
        "batch size sweep: 1, 8 — smollm2-135m-instruct"]
    at.selectbox(key="history_model").set_value("gpt2").run()
    assert list(at.dataframe[0].value["what"]) == ["model sweep: gpt2, smollm2-360m"]


def test_compare_runs_shows_throughput_memory_numbers_and_what_differs():
    store = Store()
    for spec in (BASE.replace(batch_size=1), BASE.replace(batch_size=4, dtype="bfloat16")):
        measurement = fake_runner(spec)
        saving.save_run(measurement, stats.summarize(measurement), store)
    at = open_history()
    select(at, [0, 1])
    figure = at.get("plotly_chart")[0].proto.spec
    assert "Throughput" in figure and "Peak memory" in figure and "Latency" in figure
    numbers = at.dataframe[1].value
    assert list(numbers["entry"]) == ["#2", "#1"]
    for column in ("Time to first token (TTFT)", "Decode throughput", "Total throughput",
                   "Peak memory"):
        assert column in numbers.columns
    assert list(numbers["Time to first token (TTFT)"]) == ["400.0 ms", "100.0 ms"]
    differing = at.dataframe[2].value
    assert list(differing.columns) == ["entry", "Number format (dtype)", "Batch size"]
    assert list(differing["Batch size"]) == ["4", "1"]
    same = next(c.value for c in at.caption if c.value.startswith("Same in all:"))
    assert "Prompt length (tokens) 16" in same and "Batch size" not in same


def test_export_names_say_what_they_hold(monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    names, written_on_click = [], {}
    load = MemoryMediaFileStorage.load_and_get_id
    defer = MediaFileManager.add_deferred

    def recording(self, data, mimetype, kind, filename=None):
        names.append(filename)
        return load(self, data, mimetype, kind, filename)

    def recording_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        names.append(file_name)
        written_on_click[file_name] = data_callable
        return defer(self, data_callable, mimetype, coordinates, file_name, **kw)
    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    monkeypatch.setattr(MediaFileManager, "add_deferred", recording_deferred)
    store = Store()
    save_sweep(store, "batch", [1, 2])
    at = open_history()
    select(at, [0])
    day = store.list()[0]["created_at"][:10]
    assert names == [f"ile-sweep-batch-smollm2-135m-instruct-{day}.json",
                     f"ile-sweep-batch-smollm2-135m-instruct-{day}.csv"]
    assert json.loads(written_on_click[names[0]]()) == store.export(store.list()[0]["id"])


# --- classroom mode ---------------------------------------------------------------------------

def as_visitor(monkeypatch, cookie, host=False):
    """This test's browser: its cookie, and whether it entered the host code."""
    monkeypatch.setattr(classroom_ui, "_client", lambda: (cookie, "session", host))


@pytest.fixture
def classroom_store(classroom_on):
    store = Store()
    alice, bob = (classroom.owner_id(c, None) for c in ("alice-cookie", "bob-cookie"))
    ids = {}
    for who, batch in (("alice", 1), ("bob", 2)):
        measurement = fake_runner(BASE.replace(batch_size=batch))
        ids[who] = saving.save_run(measurement, stats.summarize(measurement), store,
                                    owner={"alice": alice, "bob": bob}[who])[0]
    measurement = fake_runner(BASE.replace(batch_size=4))
    ids["host"] = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    return store, ids


def test_classroom_visitors_see_their_own_and_shared_only(classroom_store, monkeypatch):
    store, ids = classroom_store
    as_visitor(monkeypatch, "alice-cookie")
    at = open_history()
    assert "Classroom mode: you see your own results" in at.info[0].value
    assert list(at.dataframe[0].value["id"]) == [ids["alice"]]
    store.set_shared(ids["bob"], True)
    at.run()
    table = at.dataframe[0].value
    assert list(table["id"]) == [ids["bob"], ids["alice"]]
    assert list(table["whose"]) == ["another visitor (shared)", "you"]
    # Bob's shared entry opens and exports, but can't be changed or deleted by Alice.
    select(at, [0])
    assert at.text_input(key=f"history_note_{ids['bob']}").disabled
    assert not [b for b in at.button if b.label in {"Delete", "Save note"}]
    assert not store.delete(ids["bob"], only_owner=classroom.owner_id("alice-cookie", None))
    assert ids["bob"] in [e["id"] for e in store.list()]
    # Her own: deletable.
    select(at, [1])
    next(b for b in at.button if b.label == "Delete").click().run()
    assert ids["alice"] not in [e["id"] for e in store.list()]


@pytest.mark.slow
def test_classroom_host_sees_everything_and_shares(classroom_store, monkeypatch):
    store, ids = classroom_store
    as_visitor(monkeypatch, "teacher-cookie", host=True)
    at = open_history()
    assert "you are the host" in at.info[0].value
    assert set(at.dataframe[0].value["id"]) == set(ids.values())
    select(at, [list(at.dataframe[0].value["id"]).index(ids["alice"])])
    next(b for b in at.button if b.label == "Share with the class").click().run()
    assert next(e for e in store.list() if e["id"] == ids["alice"])["shared"]
    as_visitor(monkeypatch, "bob-cookie")
    at = open_history()
    assert set(at.dataframe[0].value["id"]) == {ids["alice"], ids["bob"]}


# --- untrusted entries: hostile text, damaged documents, huge ones ------------------------------

LINK = "[Your session expired - click here](https://evil.example/login)"
IMAGE = "![x](https://tracker.example/p.png)"
UNESCAPED_LINK = re.compile(r"(?<!\\)\]\(")       # `](` is how every Markdown link starts


def markdown_shown(at) -> list[str]:
    """Every text the page handed to Streamlit's Markdown renderer."""
    elements = [*at.title, *at.header, *at.subheader, *at.markdown, *at.caption, *at.error,
                *at.warning, *at.info, *at.success]
    return [e.value for e in elements] + [e.label for e in at.expander]


def upload(at, name, data):
    at.file_uploader(key="history_upload").set_value((name, data, "application/json")).run()
    next(b for b in at.button if b.label == "Import it").click().run()
    assert not at.exception


def test_text_from_an_import_is_shown_as_written_never_as_markdown(saved):
    store, ids = saved
    document = store.export(ids[0])
    document["spec"]["model_id"] = LINK
    document.update(note=f"{IMAGE} {LINK}", imported_from=LINK)
    at = open_history()
    upload(at, f"{LINK}.json", json.dumps({**document, "kind": LINK}).encode())
    assert plain(at.error[0].value).startswith(f"Can't import {LINK}.json: kind: expected one "
                                               "of run, sweep, load, not text")
    upload(at, "hostile.json", json.dumps(document).encode())
    assert at.success[0].value.startswith("Imported as #3")
    select(at, [0])
    assert plain(at.subheader[0].value).startswith(f"#3: run: {LINK}, batch 1")
    assert any(plain(c.value) == f"Imported; measured on {LINK}." for c in at.caption)
    assert at.text_input(key="history_note_3").value == f"{IMAGE} {LINK}"   # kept as written
    shown = markdown_shown(at)
    assert not [text for text in shown if UNESCAPED_LINK.search(text)]
    assert not at.exception


@pytest.mark.slow
def test_damaged_entries_say_why_and_can_still_be_deleted(saved):
    store, ids = saved
    good = store.export(ids[0])
    no_repetitions = {k: v for k, v in good.items() if k != "repetitions"}
    damaged = [
        store.save_run(no_repetitions),                                        # the finding
        store.save_run({**good, "spec": {**good["spec"], "batch_size": 1000}}),
        store.start_sweep({"base": good["spec"], "factors": ["batch"], "planned": 1}),
    ]
    store.add_sweep_point(damaged[-1], 0, {"values": "abc"})
    with sqlite3.connect(store.path) as db:                                    # edited by hand
        for document in ("not JSON at all", '{"spec": "hello", "factors": 5}', "[1, 2]"):
            damaged.append(db.execute(
                "INSERT INTO entries (kind, created_at, model_id, device, status, document) "
                "VALUES ('run', '2026-01-01T00:00:00Z', 'x', 'cpu', 'complete', ?)",
                (document,)).lastrowid)
    at = open_history()
    listed = list(at.dataframe[0].value["id"])
    assert set(listed) == {*ids, *damaged}
    for entry_id in damaged:
        select(at, [listed.index(entry_id)])
        assert not at.exception, entry_id
        assert plain(at.error[0].value).startswith(f"#{entry_id} can't be opened: "), entry_id
        assert [b.label for b in at.button if b.label == "Delete"] == ["Delete"], entry_id
    select(at, [listed.index(damaged[0]), listed.index(ids[0]), listed.index(ids[1])])
    assert not at.exception and "can't be opened" in plain(at.error[0].value)
    assert len(at.get("plotly_chart")) == 1              # the two good runs, compared
    for entry_id in damaged:
        select(at, [list(at.dataframe[0].value["id"]).index(entry_id)])
        next(b for b in at.button if b.label == "Delete").click().run()
        assert not at.exception
    assert [e["id"] for e in store.list()] == ids[::-1]


@pytest.mark.slow
def test_an_entry_of_20000_repetitions_opens_with_a_few_traces():
    measurement = many_repetitions(20_000, spec=BASE)
    saving.save_run(measurement, stats.summarize(measurement), Store())
    at = open_history()
    started = time.perf_counter()
    select(at, [0])
    opened_s = time.perf_counter() - started
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert len(figure["data"]) == 4              # band edges, median, TTFT: not 20,002 lines
    assert "middle 80% of 20,000 repetitions" in figure["data"][1]["name"]
    print(f"opened a 20,000-repetition run in History in {opened_s:.2f} s")


# --- estimates and the error ledger -------------------------------------------------------------

@pytest.mark.slow
def test_the_error_ledger_and_an_estimate_labelled_as_one():
    from fakes import with_declared_ceilings
    from lib.measure import runner

    store = Store()
    for batch in (1, 2):
        measurement = with_declared_ceilings(fake_runner(BASE.replace(batch_size=batch)))
        saving.save_run(measurement, stats.summarize(measurement), store)
    estimate = runner.run(RunSpec(model_id="gpt2", hardware="h200", new_tokens=4))
    estimate_id, _ = saving.save_run(estimate, stats.summarize(estimate), store)
    at = open_history()
    ledger_box = next(e for e in at.expander
                      if e.label == "How good are the estimates? (error ledger)")
    said = [plain(m.value) for m in ledger_box.markdown]
    assert any(line.startswith("- Only 2 saved runs: too few to judge the estimate of the "
                               "time per token") for line in said)
    assert "- 1 estimate is never in it: an estimate is a prediction, not a measurement." in said
    assert [tab.label for tab in ledger_box.tabs] == [f.title for f in FACTORS.values()]
    by_batch = next(tab for tab in ledger_box.tabs if tab.label == "Batch size")
    assert list(by_batch.dataframe[0].value["Batch size"]) == ["1", "2"]
    assert list(at.dataframe[0].value["measured / estimated"]) == \
        ["estimated", "measured", "measured"]
    select(at, [0])
    assert plain(at.subheader[0].value) == (
        f"#{estimate_id}: ESTIMATE (not measured) from a model of NVIDIA H200 SXM 141GB x 1 "
        "— run: gpt2, batch 1, prompt 64, output 4, float32")
    assert [c.value for c in at.caption].count("estimated, not measured") == 4   # the cards
    assert any(plain(i.value).startswith("**Estimated, not measured") for i in at.info)
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [trace.get("name", "") for trace in figure["data"]]
    assert "estimate" in names and not any("median over" in n for n in names)
    assert figure["layout"]["title"]["text"].startswith("ESTIMATE, not measured")
    select(at, [0, 1])
    assert list(at.dataframe[-2].value["entry"]) == [f"#{estimate_id} (estimate)", "#2"]


@pytest.mark.slow
def test_a_load_sweep_opens_with_its_findings_charts_and_table(saved):
    from fakes import load_result
    from lib.records import load_tests

    store, ids = saved
    load_id, problem = load_tests.save(load_result(), store=store)
    assert problem is None
    at = open_history()
    assert list(at.dataframe[0].value["what"])[0].startswith("load sweep: 1, 2, 4, 8")
    select(at, [0])
    assert plain(at.subheader[0].value).startswith(f"#{load_id}: load sweep")
    said = " ".join(plain(m.value) for m in at.markdown)
    assert "Above 2 concurrent requests the p90 time to first token grows 5.0x" in said
    assert len(at.get("plotly_chart")) == 4       # latency, throughput, trade-off, timeline
    assert list(at.dataframe[1].value["load"])[-1] == "8 concurrent requests"
    labels = [b.label for b in at.get("download_button")]
    assert {"Export JSON", "Export CSV", "Download every request as CSV"} <= set(labels)
    at.selectbox(key=f"history_{load_id}_timeline_level").set_value(2.0).run()
    assert not at.exception
    at.text_input(key=f"history_note_{load_id}").input("8 users is too many").run()
    next(b for b in at.button if b.label == "Save note").click().run()
    assert next(e for e in store.list() if e["id"] == load_id)["note"] == "8 users is too many"
    select(at, [0, 1])                             # a load sweep beside a run: not compared
    assert any("A load sweep compares with other load sweeps only" in c.value
               for c in at.caption)
    assert not at.exception
    select(at, [0])
    next(b for b in at.button if b.label == "Delete").click().run()
    assert load_id not in [e["id"] for e in store.list()]


def test_an_estimate_is_listed_and_compared_on_its_hardware_as_an_estimate():
    from lib.measure import runner

    store = Store()
    measurement = fake_runner(BASE)
    measured_id = saving.save_run(measurement, stats.summarize(measurement), store)[0]
    estimate = runner.run(RunSpec(model_id="gpt2", dtype="bfloat16", new_tokens=4,
                                  hardware="h100-sxm", gpus=8))
    estimate_id = saving.save_run(estimate, stats.summarize(estimate), store)[0]
    at = open_history()
    listing = at.dataframe[0].value
    assert list(listing["device"]) == ["h100-sxm x 8", "cpu"]
    assert list(listing["measured / estimated"]) == ["estimated", "measured"]
    at.selectbox(key="history_device").set_value("h100-sxm x 8").run()
    assert list(at.dataframe[0].value["id"]) == [estimate_id]
    at.selectbox(key="history_device").set_value("all").run()
    select(at, [0, 1])
    compared = next(d.value for d in at.dataframe if "entry" in d.value.columns)
    assert list(compared["entry"]) == [f"#{estimate_id} (estimate)", f"#{measured_id}"]
    assert list(compared["device"]) == ["h100-sxm x 8", "cpu"]
    assert list(compared["n"]) == ["estimate", str(BASE.repetitions)]


def test_load_sweeps_live_and_simulated_are_compared_by_their_cost_within_targets():
    from fakes import load_result
    from lib.serving import simulate, summary
    from lib.serving.plan import LoadPlan

    store = Store()
    plan = LoadPlan(levels=(1.0, 8.0), requests=40, warmup=4, prompt_tokens=512, new_tokens=64)
    slo = load_result().slo
    ids = [store.save_load(summary.to_dict(simulate.simulate("deepseek-r1", hardware, 8, plan,
                                                             slo)))
           for hardware in ("h200", "mi300x")]
    ids.append(store.save_load(summary.to_dict(load_result(levels=(1, 2)))))
    at = open_history()
    select(at, [0, 1, 2])                   # newest first: the live one and both simulations
    assert not at.exception and not at.error
    table = at.dataframe[1].value
    assert list(table["entry"]) == [f"#{i}" for i in ids[::-1]]
    assert list(table["numbers"]) == ["measured", "simulated", "simulated"]
    assert list(table["where"])[1:] == ["8 x AMD Instinct MI300X (192GB)",
                                        "8 x NVIDIA H200 SXM 141GB"]
    said = " ".join(plain(m.value) for m in at.markdown)
    assert "Within time to first token ≤ 2.00 s and time per output token ≤ 200.0 ms" in said
    assert "this machine's server (measured) up to " in said
    assert "8 x NVIDIA H200 SXM 141GB (simulated) up to " in said
