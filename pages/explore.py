"""Explore: vary one factor (or two) and see latency, throughput and memory curves."""

import pandas as pd
import streamlit as st

from lib.measure import budget
from lib.views import insights, quality_insights, sweep_charts
from lib.records import export, table, wording
from lib.core import stats, text
from lib import ui
from lib.core.metrics import METRICS
from lib.ui import classroom_view, explore_form, glossary_view, links, running, sidebar, state
from lib.ui.links import EXPLORE_MODES, HEATMAP_METRICS
from lib.measure.factors import FACTORS, estimated_points, grid
from lib.core.stacks import format_name

ui.require_router()             # a deep link after a restart runs through the router

state.restore_page_settings()           # Streamlit forgets them while another page shows

st.title("Explore factors")
glossary_view.own(
    "Pick **what to vary** and its values; every other setting comes from the sidebar. Each "
    "point is a real, repeated measurement (after an untimed warm-up), so the charts show the "
    "typical value and how much it varied. Points that cannot run are skipped with the reason.")

spec = sidebar.current_spec()
two = st.radio("Vary", list(EXPLORE_MODES.values()), horizontal=True,
               key=state.EXPLORE_MODE) == EXPLORE_MODES["two"]
factor_values = []
defaults = ["batch", "prompt_tokens"]
for index, default in enumerate(defaults):
    st.session_state.setdefault(state.explore_factor(index), default)
for index, column in enumerate(st.columns(2 if two else 1)):
    with column:
        name = st.selectbox(f"Factor {index + 1}" if two else "Factor", list(FACTORS),
                            format_func=lambda n: FACTORS[n].title,
                            key=state.explore_factor(index))
        other = st.session_state.get(state.explore_factor(1 - index)) if two else None
        values = explore_form.factor_values_input(FACTORS[name], index,
                                                  spec.device if spec else "cpu",
                                                  spec.stack if spec else "transformers", other)
        if values:
            factor_values.append((FACTORS[name], values))
metric = None
if two:
    metric = st.selectbox("Heatmap shows", HEATMAP_METRICS,
                          format_func=lambda name: METRICS[name].titled,
                          key=state.HEATMAP_METRIC)

ready = spec is not None and len(factor_values) == (2 if two else 1)
if two and ready and factor_values[0][0].name == factor_values[1][0].name:
    st.error("Pick two different factors.")
    ready = False
if ready:
    count = len(grid(factor_values))
    estimates = estimated_points(spec, factor_values)
    skips = explore_form.sweep_skips(spec, factor_values)
    skipped = sum(skips.values())
    measured = count - skipped - estimates          # the points that take this machine's time
    plan = f"{count} point{'s' if count != 1 else ''}"
    if skipped:
        why = "; ".join(f"{n} because {reason}" if len(skips) > 1 else reason
                        for reason, n in skips.items())
        plan += (f": {count - skipped} will run and {skipped} will be skipped "
                 f"({text.md(why)})")
    st.caption(f"{plan}. Each is timed at least {spec.repetitions} times after a warm-up "
               f"(repetitions and minimum time are in the sidebar's Measurement section)."
               + (f" {estimates} of them {'is an estimate' if estimates == 1 else 'are estimates'}"
                  ": computed once from a model of the hardware, nothing runs." if estimates
                  else ""))
    if measured > 30:
        st.warning(f"{measured} points to measure will take a while on this machine. Fewer "
                   "values, or fewer repetitions, make it quicker.")
    if not two and factor_values[0][0].name == "stack":
        stacks, formats = FACTORS["stack"], FACTORS["dtype"]
        st.caption(f"Every stack runs at the sidebar's {formats.label} "
                   f"({format_name(spec.dtype)}). To compare each stack in its own "
                   "formats (llama.cpp's Q4_K_M beside transformers' float32), choose "
                   f"**{EXPLORE_MODES['two']}**: {stacks.label} x {formats.label}.")

request = [(factor.name, list(values)) for factor, values in factor_values]
result = st.session_state.get(state.SWEEP)
stale = []
if result is not None and spec is not None:
    stale = wording.sweep_changes(result.base, st.session_state.get(state.SWEEP_REQUEST) or
                                  [(name, None) for name in result.factors], spec, request)
if spec is not None:
    params = {"mode": "two" if two else "one", "metric": metric} if two else {}
    for index, (factor, values) in enumerate(factor_values):
        suffix = "" if index == 0 else "2"
        params[f"factor{suffix}"] = factor.name
        params[f"values{suffix}"] = ",".join(str(v) for v in values)
    links.share_link(spec, {k: v for k, v in params.items() if v is not None},
                     caption="Anyone opening this link sees this page with the factor, values "
                             "and settings above filled in; nothing runs until they press "
                             "**Run sweep**." + (" The results below are from earlier "
                                                 "settings, so the link won't reproduce them."
                                                 if stale else ""))
refused, planned, memory_note = explore_form.sweep_memory_note(spec, factor_values) if ready \
    else (0, 0, None)
if memory_note:
    (st.error if refused == planned else st.warning)(text.md(memory_note))
budget_s = float(st.number_input(
    "Time budget (seconds)", min_value=int(budget.MIN_BUDGET_S), max_value=3600,
    value=int(budget.DEFAULT_BUDGET_S), step=10, key=state.EXPLORE_BUDGET,
    help="The sweep ends within about this time, loading included: on a slow or busy machine "
         "each point gets fewer repetitions (at least 2, so its spread still shows), and the "
         "page says so."))
every_point_refused = planned > 0 and refused == planned
if ready and not every_point_refused:
    promise = running.sweep_plan(spec, factor_values, budget_s)
    if promise.other_cpu_percent is not None and \
            promise.other_cpu_percent > stats.BUSY_OTHER_CPU_PERCENT:
        st.warning(running.busy_words(promise.other_cpu_percent, spec.threads,
                                      factor=promise.slowdown))
    st.caption(f"This sweep should take {text.md(promise.promise())} (an estimate from "
               f"{text.md(promise.basis)}, loading included)."
               + (f" {text.md(promise.cut_note())}" if promise.cut_note() else ""))
run_column, stop_column = st.columns([1, 4])
start = run_column.button("Run sweep", type="primary", disabled=not ready or every_point_refused)
stop_column.button("Stop", help="Stops the sweep; finished points are kept.")

if start:
    with classroom_view.run_turn(f"a sweep of {', '.join(f.label for f, _ in factor_values)}") \
            as allowed:
        if allowed:
            st.session_state[state.SWEEP_REQUEST] = request
            st.session_state[state.SWEEP] = running.run_sweep_with_status(spec, factor_values,
                                                                          budget_s)
            stale = []
else:
    partial = running.partial_sweep()
    if partial is not None:
        st.session_state[state.SWEEP] = partial

result = st.session_state.get(state.SWEEP)
if result is not None and spec is not None:
    stale = wording.sweep_changes(result.base, st.session_state.get(state.SWEEP_REQUEST) or
                                  [(name, None) for name in result.factors], spec, request)
if result is None:
    st.info("No sweep yet: choose a factor and its values, then press **Run sweep**. The "
            "estimate above says how long it should take on this machine right now.")
    st.stop()

if stale:
    st.info("These results are from earlier settings: " + text.md("; ".join(stale)) + ". Press **Run "
            "sweep** to measure the current ones.")
rows = table.rows(result)
frame = pd.DataFrame(rows)
if result.stopped:
    early = sum(1 for point in result.points if point.stopped_early)
    st.warning(f"Stopped: {len(result.points)} of {result.planned} points have results, shown "
               "below" + (f"; {early} of them were stopped before their minimum repetitions "
                          "(marked \"stopped early\" in the table: fewer samples, so treat "
                          "them with care)" if early else "") +
               ". Points not started yet were not run.")
saved_id, save_problem = result.saved
if save_problem:
    st.warning(f"This sweep is shown but NOT saved. {text.md(save_problem)}")
elif saved_id:
    st.caption(f"Saved in History as #{saved_id}.")
measured = frame[frame["status"] == table.Status.MEASURED]
factors = [FACTORS[name] for name in result.factors]
shares = [row["other_cpu_percent"] for row in rows if table.is_measured(row)
          and not table.is_estimated(row) and row.get("other_cpu_percent") is not None]
busy_share = stats.percentile(shares, 50) if shares else None
if busy_share is not None and busy_share > stats.BUSY_OTHER_CPU_PERCENT:
    # The first reason, before any finding: every point ran slower than this machine can.
    st.warning(running.busy_words(busy_share, result.base.threads, finished=True))
if not all(table.is_estimated(row) for row in rows if table.is_measured(row)):
    st.caption("Measured in interleaved rounds: each round times every point once, starting "
               "one point later each time, so a slow-down of the machine hits every point alike.")
for note in result.notes:
    st.caption(text.md(note))
if any(table.is_estimated(row) for row in rows if table.is_measured(row)):
    st.caption("Estimated points (marked *estimate*: lighter and hatched, or open diamonds, or "
               "*est.* in a heatmap) come from a model of their hardware, not from a clock: one "
               "computed value each, with no spread and no noise. The dashed floors still "
               "apply: each is the physics limit of its point's own hardware.")
noisy = [row for row in rows if table.is_measured(row) and row["noisy"]]
if noisy:
    st.warning(f"**{len(noisy)} of {len(measured)} points are noisy** (marked on the charts): "
               "their repetitions disagree, or other programs took the CPU while they ran. "
               "Differences smaller than their spread are not findings; close other programs "
               "or rerun on a quieter machine.")

if len(factors) == 2 and not measured.empty:
    chosen = metric or "tpot_s"
    sentences = insights.heatmap_findings(rows, factors)
    if sentences:
        st.subheader("What changed")
        glossary_view.bullets(sentences)
    st.plotly_chart(sweep_charts.sweep_heatmap_figure(frame, factors[0], factors[1], chosen),
                    width="stretch")
elif len(measured) == 1:
    st.info(text.md(insights.only_point_words(rows)))
    glossary_view.bullets(insights.findings(rows, factors[0])[1:])
elif not measured.empty:
    factor = factors[0]
    st.subheader("What changed")
    glossary_view.bullets(insights.findings(rows, factor))
    st.plotly_chart(sweep_charts.sweep_latency_figure(frame, factor), width="stretch")
    st.caption("TTFT: wait for the first token (includes reading the prompt). TPOT: time per "
               "later token. End-to-end: the whole request. The band or error bar is the "
               "spread of the repetitions: the 10th to 90th percentile with 10 or more, else "
               "lowest to highest (the subtitle says which). A ringed or hatched point is noisy: "
               "hover it for why.")
    st.plotly_chart(sweep_charts.sweep_throughput_figure(frame, factor), width="stretch")
    if factor.name == "batch" and measured["tpot_s"].notna().any():
        st.plotly_chart(sweep_charts.sweep_tradeoff_figure(frame), width="stretch")
        st.caption("Each point is one batch size. Moving right, every user waits longer per "
                   "token; moving up, the machine produces more tokens in total.")
    st.plotly_chart(sweep_charts.sweep_memory_figure(frame, factor), width="stretch")
    traded = quality_insights.quality_findings(rows, factor)
    if traded:
        st.subheader("What it costs in quality")
        glossary_view.bullets(traded)
        st.plotly_chart(quality_insights.quality_tradeoff_figure(rows, factor), width="stretch")
        st.caption("Agreement: how often the model's most likely next word is the original "
                   "model's (transformers, float32), over a fixed text; perplexity: how "
                   "surprised it is by that text (lower is better). Measured apart from the "
                   "timing, from each stack's own output.")
    elif any(row.get("quality_unavailable") for row in rows):
        st.caption("Quality not measured: " + text.md(next(
            row["quality_unavailable"] for row in rows if row.get("quality_unavailable"))) + ".")
else:
    st.error("No point of this sweep could run: " + text.md("; ".join(
        dict.fromkeys(insights.skipped_reason_words(row) for row in rows))) + ".")

st.subheader("All points")
st.caption("Medians over each point's repetitions (n). The CSV has the lowest and highest "
           "sample of each point, p10 and p90 where a point has 10 or more samples, whether it "
           "was noisy and how much CPU other programs took while it ran.")
st.dataframe(table.display_rows(rows, result.factors), hide_index=True, width="stretch")
models = [r["model_id"] for r in rows if table.is_measured(r)] or [result.base.model_id]
st.download_button("Download the table as CSV", table.to_csv(rows),
                   file_name=export.export_file_name("sweep", models, "csv", result.factors),
                   mime="text/csv", on_click="ignore")
