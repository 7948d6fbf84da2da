"""History: saved runs and sweeps, opened again, compared, annotated, shared, exported, imported.

In classroom mode (lib.access.classroom) a visitor sees their own entries and the shared ones, and
changes only their own; the host sees and manages everything and shares entries with the class.
Everything an entry holds came from whoever measured or imported it: its text reaches Markdown
only through `lib.core.text.md`. An entry that can't be opened (edited by hand, or saved by another
version) says why, and its note, export and Delete controls are drawn all the same.
"""

import json

import pandas as pd
import streamlit as st

from lib.views import run_charts, sweep_charts
from lib.access import classroom
from lib.records import documents, export, imports, ledger, table
from lib.core import text
from lib import ui
from lib.core.errors import ExplorerError
from lib.core.kinds import ENCODER
from lib.records.store import Store, StoreError
from lib.ui import classroom_view as classroom_ui, glossary_view
from lib.ui import history_compare, serving_view, state
from lib.measure.factors import FACTORS
from lib.records import wording

ui.require_router()             # a deep link after a restart runs through the router

st.title("History")
glossary_view.own("Every run and sweep is saved here automatically, with its settings, the "
                  "machine it ran on and every raw timing. Select one to open it, or several to "
                  "compare them.")
viewer = classroom_ui.current_viewer()
if (explanation := classroom_ui.explain(viewer)) is not None:
    st.info(explanation)

wait_notice = st.empty()          # a history locked by another program: say we wait
store = Store(on_wait=lambda message: wait_notice.info(text.md(message)))
visible_to = None if viewer.is_host else viewer.owner


def listed() -> list[dict]:
    return store.list(visible_to=visible_to)


def stored(action, *args, **kwargs):
    """A store call made by a button or a filter: its StoreError (locked, damaged, read-only)
    is shown as its message, and the page stops there instead of failing."""
    try:
        return action(*args, **kwargs)
    except StoreError as exc:
        wait_notice.empty()
        st.error(text.md(exc))
        st.stop()


def show_ledger(entries: list[dict]) -> None:
    """The error ledger: every saved live run beside its estimate (lib.records.ledger), in words and
    per factor. Judged once per entry per process, so it costs nothing on later clicks."""
    try:
        judged = ledger.build(store, entries)
    except StoreError as exc:
        st.error(text.md(exc))
        return
    st.markdown("Every saved live run (and measured sweep point) beside what the estimator "
                "predicts for the same settings on the machine it ran on, from the ceilings "
                "measured there: error = estimate / measured − 1. *Off by* is the median of "
                "the errors' sizes (the middle case); *too fast* means the estimate predicted "
                "less time than was measured.")
    for said in judged.sentences():
        st.markdown(f"- {text.md(said)}")
    if not judged.judged:
        return
    st.caption(f"Per factor: the runs grouped by their value of it. Each sweep point counts as "
               f"one run; fewer than {ledger.MIN_RUNS_TO_JUDGE} runs are too few to judge, and "
               "'within the noise' means the miss is no larger than the runs' own spread.")
    for tab, name in zip(st.tabs([factor.title for factor in FACTORS.values()]),
                         FACTORS):
        with tab:
            st.dataframe(pd.DataFrame(judged.factor_rows(name)), hide_index=True,
                         width="stretch")


try:
    everything = listed()
except StoreError as exc:
    st.error(text.md(exc))
    st.stop()
wait_notice.empty()

with st.expander("Import a result exported elsewhere (JSON)"):
    upload = st.file_uploader("Exported JSON file", type=["json"], key=state.HISTORY_UPLOAD)
    if upload is not None and st.button("Import it"):
        try:
            checked = imports.check_bytes(upload.getvalue(), upload.name)
            if viewer.classroom and not viewer.is_host:       # the host may name own models
                classroom.check_models(checked.models, "This file")
            new_id = store.import_document(checked.document, owner=viewer.owner)
            st.success(f"Imported as #{new_id}, marked with the machine it was measured on.")
            everything = listed()
        except imports.ImportRefusedError as exc:
            st.error(text.md(exc))
        except ExplorerError as exc:
            st.error(text.md(f"Could not import that file: {exc}"))

if not everything:
    st.info("Nothing saved yet: results appear here after a run on the Playground, a sweep "
            "on Explore factors or a load sweep on Serving under load."
            + (" The host's shared results appear here too."
               if viewer.classroom and not viewer.is_host else ""))
    st.stop()

models_seen = sorted({m for e in everything for m in e["models"]})
devices_seen = sorted({e["device"] for e in everything})
left, middle, right = st.columns(3)
model_key, device_key, since_key = state.HISTORY_FILTERS
model = left.selectbox("Model", ["all"] + models_seen, key=model_key,
                       help="Entries that ran this model (a model sweep counts for each).")
device = middle.selectbox("Device", ["all"] + devices_seen, key=device_key)
since = right.date_input("Since", value=None, key=since_key)
entries = stored(store.list, model_id=None if model == "all" else model,
                     device=None if device == "all" else device,
                     since=since.isoformat() if since else None, visible_to=visible_to)
listing = pd.DataFrame([{
    "id": e["id"], "what": wording.entry_label(e),
    "measured / estimated": e["provenance"],
    **({"whose": viewer.whose(e)} if viewer.classroom else {}),
    "when (UTC)": e["created_at"].replace("T", " ").rstrip("Z"),
    "device": e["device"], "status": e["status"], "note": e["note"],
    "from": e["imported_from"] or "this machine"} for e in entries])
generation = st.session_state.get(state.HISTORY_TABLE_GENERATION, 0)
picked = st.dataframe(listing, hide_index=True, width="stretch", on_select="rerun",
                      selection_mode="multi-row", key=state.history_table(generation))
with st.expander("How good are the estimates? (error ledger)"):
    show_ledger(everything)          # every entry this viewer may see, whatever the filters
# A selection can outlive its rows (after a new filter): keep what still exists.
rows = picked.selection.rows if picked and picked.selection else []
chosen = [entries[i] for i in rows if i < len(entries)]

if not chosen:
    st.caption("Select a row to open it; select several to compare.")
    st.stop()


def forget_selection() -> None:
    """A new listing widget: the old selection must not open the row that moves up."""
    st.session_state[state.HISTORY_TABLE_GENERATION] = generation + 1


exported, opened, problems = {}, {}, {}
for chosen_entry in chosen:
    entry_id = chosen_entry["id"]
    try:
        exported[entry_id] = store.export(entry_id)
        opened[entry_id] = documents.open_entry(exported[entry_id], entry_id)
    except StoreError as exc:                  # DamagedEntryError: this entry only
        problems[entry_id] = str(exc)


def show_one(entry: dict) -> None:
    estimated = wording.estimate_words(opened[entry["id"]]) if entry["id"] in opened else None
    if estimated and opened[entry["id"]].kind == "run":     # no device of this machine ran it
        st.subheader(f"#{entry['id']}: {text.md(estimated)} — "
                     f"{text.md(wording.entry_label(entry))}")
    else:
        st.subheader(f"#{entry['id']}: {text.md(wording.entry_label(entry))}, on "
                     f"{text.md(entry['device'])}")
        if estimated:
            st.warning(text.md(estimated) + ".")
    if entry["imported_from"]:
        st.caption(f"Imported; measured on {text.md(entry['imported_from'])}.")
    body = st.container()      # above the controls, filled after them: nothing in it hides them
    show_controls(entry)
    with body:
        if entry["id"] in problems:
            st.error(text.md(f"{problems[entry['id']].rstrip('.')}. It was probably edited by "
                             "hand or saved by another version of the app: you can still export "
                             "its JSON, or delete it below."))
        elif opened[entry["id"]].kind == "run":
            show_run(opened[entry["id"]])
        elif opened[entry["id"]].kind == "load":
            # Export JSON and Export CSV (the levels) are the controls'; the requests' CSV is
            # the view's.
            serving_view.show(opened[entry["id"]].load, f"history_{entry['id']}",
                              exports=("requests",), when=entry["created_at"])
        else:
            show_sweep(opened[entry["id"]])


def show_run(run: documents.Opened) -> None:
    for column, card in zip(st.columns(4), run.cards[:4]):
        column.metric(card["label"], card["value"], help=card["meaning"])
        column.caption(card["spread"])
    if run.memory_sentence:
        st.caption(run.memory_sentence)
    for warning in run.summary.warnings:
        if warning.code == "noisy":
            st.warning(f"**{text.md(warning.message)}** {text.md(warning.hint)}")
        elif warning.code == "estimated":
            st.info(f"**{text.md(warning.message)}** {text.md(warning.hint)}")
    measurement = run.measurement
    figure = run_charts.request_latency_figure(measurement) \
        if measurement.model_kind == ENCODER else run_charts.token_latency_figure(measurement)
    st.plotly_chart(figure, width="stretch")


def show_sweep(opened_sweep: documents.Opened) -> None:
    result = opened_sweep.sweep
    if len(result.factors) == 1 and any(table.is_measured(row) for row in opened_sweep.rows):
        st.plotly_chart(sweep_charts.sweep_latency_figure(pd.DataFrame(opened_sweep.rows),
                                                          FACTORS[result.factors[0]]),
                        width="stretch")
    st.dataframe(opened_sweep.display_rows, hide_index=True, width="stretch")


def show_controls(entry: dict) -> None:
    """Note, exports, Delete and sharing: drawn for every entry, even one that can't be opened."""
    editable = viewer.can_edit(entry)
    note = st.text_input("Note", value=entry["note"], key=state.history_note(entry["id"]),
                         disabled=not editable,
                         help=None if editable else "Only its owner (or the host) can change it.")
    entry_opened = opened.get(entry["id"])
    factors = entry_opened.sweep.factors if entry_opened and entry_opened.sweep else []

    def name(extension: str) -> str:
        return export.export_file_name(entry["kind"], entry["models"], extension, factors,
                                       entry["created_at"])

    save_col, json_col, csv_col, delete_col = st.columns(4)
    if editable and save_col.button("Save note"):
        stored(store.set_note, entry["id"], note,
               only_owner=None if viewer.is_host else viewer.owner)
        st.rerun()
    if entry["id"] in exported:
        document = exported[entry["id"]]
        # Written on click: a big run's JSON takes a second or two, and tens of MB to send.
        json_col.download_button("Export JSON", lambda: json.dumps(document, indent=2),
                                 file_name=name("json"), mime="application/json",
                                 on_click="ignore")
    if entry_opened is not None:
        csv_col.download_button("Export CSV", entry_opened.csv, file_name=name("csv"),
                                mime="text/csv", on_click="ignore")
    if editable and delete_col.button("Delete",
                                      help="Removes it from this machine's history for good."):
        if stored(store.delete, entry["id"],
                  only_owner=None if viewer.is_host else viewer.owner):
            forget_selection()
            st.rerun()
        st.error("It could not be deleted: only its owner or the host can delete it.")
    if not editable:
        st.caption("Shared by the host: you can open and export it, not change or delete it.")
    if viewer.classroom and viewer.is_host:
        label = "Stop sharing" if entry["shared"] else "Share with the class"
        if st.button(label, help="Shared results appear in every visitor's History."):
            stored(store.set_shared, entry["id"], not entry["shared"])
            st.rerun()
    st.caption("Charts have a camera icon (top right, on hover) that saves them as PNG.")


if len(chosen) == 1:
    show_one(chosen[0])
else:
    for damaged in [e for e in chosen if e["id"] in problems]:
        st.error(text.md(f"{problems[damaged['id']].rstrip('.')}. Select it alone to export "
                         "or delete it."))
    comparable = [e for e in chosen if e["id"] in opened]
    loads = [e for e in comparable if opened[e["id"]].kind == "load"]
    others = [e for e in comparable if opened[e["id"]].kind != "load"]
    kinds = {opened[e["id"]].kind for e in others}
    if len(loads) >= 2:
        history_compare.compare_loads(loads, opened)
    elif loads:
        st.caption("A load sweep compares with other load sweeps only: select another, or "
                   "select it alone to open it.")
    if len(others) < 2:
        if not loads:
            st.caption("Select at least two entries that open to compare them.")
    elif kinds == {"run"}:
        history_compare.compare_runs(others, opened)
    elif kinds == {"sweep"}:
        history_compare.compare_sweeps(others, opened)
    else:
        st.warning("Select only runs, or only sweeps, to compare them.")
