"""History: saved runs and sweeps, opened again, compared, annotated, exported, imported."""

import json

import pandas as pd
import streamlit as st

from lib import charts, history, report, stats, sweep, table
from lib.models.catalog import ENCODER
from lib.store import Store, StoreError
from lib.ui import state

st.title("History")
st.markdown("Every run and sweep is saved here automatically, with its settings, the machine it "
            "ran on and every raw timing. Select one to open it, or several to compare them.")

store = Store()
try:
    everything = store.list()
except StoreError as exc:
    st.error(str(exc))
    st.stop()

with st.expander("Import a result exported elsewhere (JSON)"):
    upload = st.file_uploader("Exported JSON file", type=["json"], key=state.HISTORY_UPLOAD)
    if upload is not None and st.button("Import it"):
        try:
            new_id = store.import_document(json.loads(upload.getvalue()))
            st.success(f"Imported as #{new_id}, marked with the machine it was measured on.")
            everything = store.list()
        except (ValueError, StoreError) as exc:
            st.error(f"Could not import that file: {exc}")

if not everything:
    st.info("Nothing saved yet: results appear here after a run on the Playground or a sweep "
            "on Explore factors.")
    st.stop()

models_seen = sorted({e["model_id"] for e in everything})
devices_seen = sorted({e["device"] for e in everything})
left, middle, right = st.columns(3)
model_key, device_key, since_key = state.HISTORY_FILTERS
model = left.selectbox("Model", ["all"] + models_seen, key=model_key)
device = middle.selectbox("Device", ["all"] + devices_seen, key=device_key)
since = right.date_input("Since", value=None, key=since_key)
entries = store.list(model_id=None if model == "all" else model,
                     device=None if device == "all" else device,
                     since=since.isoformat() if since else None)
listing = pd.DataFrame([{
    "id": e["id"], "when (UTC)": e["created_at"].replace("T", " ").rstrip("Z"),
    "kind": e["kind"] + (f" ({e['points']} point{'s' if e['points'] != 1 else ''})" if e["kind"] == "sweep" else ""),
    "model": e["model_id"], "device": e["device"],
    "status": e["status"], "note": e["note"],
    "from": e["imported_from"] or "this machine"} for e in entries])
picked = st.dataframe(listing, hide_index=True, width="stretch", on_select="rerun",
                      selection_mode="multi-row", key=state.HISTORY_TABLE)
# A selection can outlive its rows (after a delete or a new filter): keep what still exists.
rows = picked.selection.rows if picked and picked.selection else []
chosen = [entries[i] for i in rows if i < len(entries)]

if not chosen:
    st.caption("Select a row to open it; select several to compare.")
    st.stop()

documents = {e["id"]: store.export(e["id"]) for e in chosen}
if len(chosen) == 1:
    entry, document = chosen[0], documents[chosen[0]["id"]]
    st.subheader(f"#{entry['id']}: {entry['kind']} of {entry['model_id']} on {entry['device']}")
    if entry["imported_from"]:
        st.caption(f"Imported; measured on {entry['imported_from']}.")
    if entry["kind"] == "run":
        measurement = history.measurement_from_document(document)
        summary = stats.summarize(measurement)
        cards = report.metric_cards(measurement, summary)[:4]
        for column, card in zip(st.columns(4), cards):
            column.metric(card["label"], card["value"], help=card["meaning"])
            column.caption(card["spread"])
        figure = charts.request_latency_figure(measurement) \
            if measurement.model_kind == ENCODER else charts.token_latency_figure(measurement)
        st.plotly_chart(figure, width="stretch")
        csv_text = table.to_csv([report.summary_row(measurement, summary)])
    else:
        result = history.sweep_from_document(document)
        rows = table.rows(result)
        frame = pd.DataFrame(rows)
        factor = sweep.FACTORS[result.factors[0]]
        if len(result.factors) == 1 and (frame["status"] == table.Status.MEASURED).sum() >= 1:
            st.plotly_chart(charts.sweep_latency_figure(frame, factor), width="stretch")
        st.dataframe(table.display_rows(rows, result.factors), hide_index=True,
                     width="stretch")
        csv_text = table.to_csv(rows)
    note = st.text_input("Note", value=entry["note"], key=state.history_note(entry["id"]))
    save_col, json_col, csv_col, delete_col = st.columns(4)
    if save_col.button("Save note"):
        store.set_note(entry["id"], note)
        st.rerun()
    json_col.download_button("Export JSON", json.dumps(document, indent=2),
                             file_name=f"ile-{entry['kind']}-{entry['id']}.json",
                             mime="application/json", on_click="ignore")
    csv_col.download_button("Export CSV", csv_text, file_name=f"ile-{entry['id']}.csv",
                            mime="text/csv", on_click="ignore")
    if delete_col.button("Delete", help="Removes it from this machine's history for good."):
        store.delete(entry["id"])
        st.rerun()
    st.caption("Charts have a camera icon (top right, on hover) that saves them as PNG.")
else:
    kinds = {e["kind"] for e in chosen}
    if kinds == {"run"}:
        labelled = [(f"#{e['id']} {e['model_id']} b{documents[e['id']]['spec']['batch_size']}",
                     stats.summarize(history.measurement_from_document(documents[e["id"]])))
                    for e in chosen]
        st.plotly_chart(charts.compare_runs_figure(labelled), width="stretch")
    elif kinds == {"sweep"}:
        results = [(e, history.sweep_from_document(documents[e["id"]])) for e in chosen]
        factors = {tuple(r.factors) for _, r in results}
        if len(factors) != 1 or len(next(iter(factors))) != 1:
            st.warning("To overlay sweeps, select sweeps of the same single factor.")
        else:
            factor = sweep.FACTORS[next(iter(factors))[0]]
            labelled = [(f"#{e['id']} {e['model_id']}", pd.DataFrame(table.rows(r)))
                        for e, r in results]
            st.plotly_chart(charts.compare_sweeps_figure(labelled, factor), width="stretch")
    else:
        st.warning("Select only runs, or only sweeps, to compare them.")
