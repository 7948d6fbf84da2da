"""AppTest of the History page: saved runs listed, opened, compared, noted, deleted."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fakes import fake_runner
from lib import history, stats
from lib.spec import RunSpec
from lib.store import Store

BASE = RunSpec(prompt_tokens=16, new_tokens=5, repetitions=2, min_duration_s=0.0, threads=1)

ENTRY = str(Path(__file__).with_name("app_entry.py"))
HISTORY = str(Path(__file__).resolve().parent.parent / "pages" / "history.py")


@pytest.fixture
def saved():
    store = Store()
    ids = []
    for batch in (1, 2):
        measurement = fake_runner(BASE.replace(batch_size=batch))
        ids.append(history.save_run(measurement, stats.summarize(measurement), store)[0])
    return store, ids


def open_history():
    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.run()
    at.switch_page(HISTORY).run()
    assert not at.exception
    return at


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
    assert at.subheader[0].value.startswith(f"#{ids[1]}: run of smollm2-135m-instruct")
    assert len(at.get("plotly_chart")) == 1 and len(at.metric) == 4
    at.text_input(key=f"history_note_{ids[1]}").input("before class").run()
    next(b for b in at.button if b.label == "Save note").click().run()
    assert store.list()[0]["note"] == "before class"
    select(at, [0, 1])
    assert len(at.get("plotly_chart")) == 1                 # the side-by-side comparison
    select(at, [1])
    next(b for b in at.button if b.label == "Delete").click().run()
    assert [e["id"] for e in store.list()] == [ids[1]]
    assert not at.exception


def select(at, rows):
    at.session_state["history_table"] = {"selection": {"rows": rows, "columns": [],
                                                       "cells": []}}
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
    assert at.dataframe[0].value["model"][0] == "smollm2-135m-instruct"
