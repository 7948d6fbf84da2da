"""History's comparison of several saved entries: runs side by side (an overview chart and a
table of medians) or sweeps of the same factor overlaid, each followed by the settings that
differ between them. The page opens the entries (`lib.records.documents.open_entry`) and passes
what it opened; every text an entry holds reaches Markdown only through `lib.core.text.md`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from lib.core import text
from lib.core.metrics import METRICS, format_value
from lib.core.spec import field_info
from lib.records import documents
from lib.views import compare_charts
from lib.measure.factors import FACTORS
from lib.records import wording

COMPARE_METRICS = ("ttft_s", "tpot_s", "e2e_s", "decode_tokens_per_s", "total_tokens_per_s",
                   "requests_per_s", "peak_memory_bytes")


def show_settings(entries_and_specs: list[tuple[dict, dict]], ignore: set[str]) -> None:
    """The settings that differ, highlighted one row per entry; the same ones said once."""
    specs = [{k: v for k, v in spec.items() if k not in ignore} for _, spec in entries_and_specs]
    same, differing = wording.settings_differences(specs)
    st.subheader("Settings")
    if differing:
        frame = pd.DataFrame([{"entry": f"#{e['id']}",
                               **{field_info(n)["label"]: str(s.get(n)) for n in differing}}
                              for (e, _), s in zip(entries_and_specs, specs)])
        st.caption("Only the settings that differ between them, highlighted:")
        st.dataframe(frame.style.map(lambda _: "background-color: #fff3b0",
                                     subset=[field_info(n)["label"] for n in differing]),
                     hide_index=True, width="stretch")
    else:
        st.caption("They all used the same settings.")
    st.caption("Same in all: " + "; ".join(f"{field_info(n)['label']} {text.md(v)}"
                                           for n, v in same.items() if v is not None) + ".")


def compared_name(entry: dict) -> str:
    """An entry's name where entries are compared: '#4', '#5 (estimate)'."""
    return f"#{entry['id']}{wording.provenance_mark(entry)}"


def compare_runs(selected: list[dict], opened: dict[int, documents.Opened]) -> None:
    """Saved runs side by side: the overview chart, their medians, and their settings."""
    summaries = [(e, opened[e["id"]].summary) for e in selected]
    st.plotly_chart(compare_charts.compare_overview_figure([(compared_name(e), s)
                                                            for e, s in summaries]),
                    width="stretch")
    st.caption("Medians over each run's repetitions; n is how many. Latency: lower is better. "
               "Throughput: higher is better. Memory: what the process held at its peak.")
    st.dataframe(pd.DataFrame([{
        "entry": compared_name(e), "what": wording.entry_label(e), "device": e["device"],
        **{METRICS[m].label: format_value(m, s.metrics[m].median) if m in s.metrics else "–"
           for m in COMPARE_METRICS},
        # An estimate is one computed value, not a sample: its n would read as a measurement.
        "n": "estimate" if e["provenance"] == "estimated" else
        str(s.metrics["e2e_s"].n if "e2e_s" in s.metrics else 0)} for e, s in summaries]),
        hide_index=True, width="stretch")
    show_settings([(e, opened[e["id"]].measurement.spec.to_dict()) for e in selected], set())


def compare_sweeps(selected: list[dict], opened: dict[int, documents.Opened]) -> None:
    """Saved sweeps of the same single factor overlaid, and their settings."""
    results = [(e, opened[e["id"]].sweep) for e in selected]
    factor_sets = {tuple(r.factors) for _, r in results}
    if len(factor_sets) != 1 or len(next(iter(factor_sets))) != 1:
        st.warning("To overlay sweeps, select sweeps of the same single factor.")
        return
    factor = FACTORS[next(iter(factor_sets))[0]]
    labelled = [(compared_name(e), pd.DataFrame(opened[e["id"]].rows)) for e, _ in results]
    st.plotly_chart(compare_charts.compare_sweeps_figure(labelled, factor), width="stretch")
    for metric in ("decode_tokens_per_s", "peak_memory_bytes"):
        st.plotly_chart(compare_charts.compare_sweeps_metric_figure(labelled, factor, metric),
                        width="stretch")
    show_settings([(e, r.base.to_dict()) for e, r in results], {factor.field})


def compare_loads(selected: list[dict], opened: dict[int, documents.Opened]) -> None:
    """Load sweeps, live or simulated, side by side: each at its level with the most goodput,
    its cost per million tokens that met the targets, and the setups in one sentence."""
    from lib.serving import pricing

    loads = [(e, opened[e["id"]].load) for e in selected]
    rows = []
    for entry, load in loads:
        found = pricing.best_level(load)
        knee = load.knee
        rows.append({
            "entry": f"#{entry['id']}", "what": wording.entry_label(entry),
            "where": pricing.setup_words(load.target), "numbers": entry["provenance"],
            "most goodput (requests/s)": "-" if found is None
            else f"{found[1]['goodput_requests_per_s']:.3g}",
            "$ per million within targets": "-" if found is None
            else f"${found[1]['cost_per_million_good_tokens']:,.2f}",
            "knee": "none seen" if knee is None else f"{knee.saturated:g} {load.plan.unit}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    targets = {load.slo.words() if load.slo else None for _, load in loads}
    if len(targets) > 1:
        st.caption("They were judged against different latency targets, so their goodput is "
                   "not comparable: run them again with the same targets.")
        return
    said = pricing.load_comparison([load for _, load in loads])
    if said:
        st.markdown(text.md(said))
    else:
        st.caption("No two of them have both a price and requests within the targets, so "
                   "there is no cost to set side by side.")
