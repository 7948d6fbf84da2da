"""Playground: run one model with the sidebar's settings and see every latency number explained."""

import json

import streamlit as st

from lib.views import run_charts
from lib.estimate import floors, why
from lib.records import wording, export
from lib.core import text
from lib import ui
from lib.core.kinds import ENCODER
from lib.ui import (classroom_view, glossary_view, links, machine_view, model_card_view,
                    running, sidebar, state)

ui.require_router()             # a deep link after a restart runs through the router

st.title("Playground")
glossary_view.own(
    "Pick settings in the sidebar and press **Run**. The model really runs now, on this machine. "
    "It first reads the whole prompt at once (**prefill**), then writes the answer one token at "
    "a time (**decode**). Each request is repeated several times after an untimed warm-up, so "
    "you see a typical value (the median) and how much it varied.")

spec = sidebar.current_spec()
problem = st.session_state.get(state.SPEC_PROBLEM)
blocker = model_card_view.model_card_blocker(spec) if spec is not None else (
    f"A setting needs fixing first (see the sidebar): {problem}" if problem
    else "Pick a model first.")
if spec is not None:
    links.share_link(spec)
run_column, stop_column, reason_column = st.columns([1, 1, 4])
start = run_column.button("Run", type="primary", disabled=blocker is not None)
stop_column.button("Stop", help="Ends the run being measured (nothing of it is kept).")
if blocker:
    reason_column.caption(text.md(blocker))
running.stopped_notice()
machine_view.machine_panel()
if start:
    with classroom_view.run_turn(f"a run of {spec.model_id}") as allowed:
        if allowed:
            result = running.run_with_status(spec)
            if result is not None:
                st.session_state[state.RESULT] = result

result = st.session_state.get(state.RESULT)
if result is None:
    st.info("No results yet: press **Run**. The first run of a model also loads it (the embedded "
            "model takes about 15 s the very first time, then a second or two).")
    st.stop()

measurement, summary = result.measurement, result.summary
if spec is not None and measurement.spec != spec:
    st.info("These results are from earlier settings: "
            + text.md("; ".join(wording.spec_changes(measurement.spec, spec)))
            + ". Press **Run** to measure the current ones.")
if measurement.prompt_note:
    st.info(text.md(measurement.prompt_note))
if result.save_problem:
    st.warning(f"This result is shown but NOT saved. {text.md(result.save_problem)}")
elif result.saved_id:
    st.caption(f"Saved in History as #{result.saved_id}.")

st.subheader("What the model wrote")
if measurement.model_kind != ENCODER:
    st.caption(f"First of {measurement.spec.batch_size} sequence(s), greedy decoding, exactly "
               f"{measurement.spec.new_tokens} tokens.")
st.text(measurement.generated_text)

stack_words = export.stack_sentence(measurement)
if stack_words:
    st.caption(text.md(stack_words))
speculative_words = export.speculative_sentence(measurement.speculative)
if speculative_words:
    st.caption(text.md(speculative_words))
quality_words = export.quality_sentence(measurement.quality)
if quality_words:
    st.subheader("What these settings cost in quality")
    (st.info if measurement.quality.measured else st.caption)(text.md(quality_words))

limited_by = why.explain(measurement, summary)
busy = limited_by is not None and limited_by.limit == why.BUSY_MACHINE
st.subheader("Latency and throughput")
if busy:                        # said first: every number below is slower than this machine can go
    slower = f" (about {limited_by.slowdown:.1f}x as long per step)" if limited_by.slowdown else ""
    st.warning(f"**Busy machine:** other programs used {limited_by.other_cpu_percent:.0f}% of the "
               f"CPU during this run, so these numbers are slower than this machine can go"
               f"{slower}. *Why it takes this long* below says more.")
st.caption(f"Median over {len(measurement.repetitions)} timed repetitions; the range below each "
           "number is their spread: the 10th to 90th percentile with 10 or more repetitions, else "
           "the lowest to the highest (\"range\"). " + text.md(result.model_note))
cards = export.metric_cards(measurement, summary)
for row_start in range(0, len(cards), 4):
    for column, card in zip(st.columns(4), cards[row_start:row_start + 4]):
        column.metric(card["label"], card["value"], help=card["meaning"])
        column.caption(f"{card['spread']}  \n{card['meaning']}")

memory_words = export.memory_sentence(measurement)
if memory_words:
    st.caption(text.md(memory_words))
cost_words = export.cost_sentence(measurement, summary)
if cost_words:
    st.caption(text.md(cost_words))

ttft_median = summary.metrics["ttft_s"].median if "ttft_s" in summary.metrics else \
    summary.metrics["e2e_s"].median
tpot_median = summary.metrics["tpot_s"].median if "tpot_s" in summary.metrics else None
if not measurement.measured:
    st.warning(f"**This is an ESTIMATE, not a measurement.** Nothing ran: the numbers come from "
               f"a model of {text.md(measurement.spec.hardware)} × {measurement.spec.gpus} "
               "(its memory speed, arithmetic and per-layer costs). Choose *This machine: "
               "measure it live* in the sidebar to measure.")
floor_words = floors.sentences(measurement, ttft_median, tpot_median, busy=busy)
estimated_limit = limited_by if limited_by is not None and not measurement.measured else None
if floor_words or busy or estimated_limit:
    st.subheader("Why it takes this long")
    if busy:                    # first: nothing below can be read until the machine is quiet
        st.warning(f"**Busy machine.** {text.md(limited_by.text)}")
    if estimated_limit:         # an estimate: what limits it on that hardware
        st.markdown(f"- **Limited by {estimated_limit.limit}.** {text.md(estimated_limit.text)}")
    if floor_words:
        st.caption("The floor is the least time this machine's memory speed and arithmetic "
                   "allow for this model and these settings, worked out from the model's size "
                   "and the machine's measured ceilings (below): an estimate, drawn dashed on "
                   "the charts.")
    for sentence in floor_words:
        st.markdown(f"- {text.md(sentence)}")
format_here = why.format_speed_of_run(measurement) if measurement.measured else None
if format_here:
    st.info(text.md(format_here))

beside = running.estimate_beside(measurement, summary)
if beside is not None:
    st.subheader("Measured vs. estimated on this machine")
    st.caption("The estimator predicts the same settings from a model of this machine (its "
               "measured memory speed, arithmetic and cost per layer): the ratio says how far "
               "the model is from what really happened, and the sentence why.")
    st.dataframe(beside.table(), hide_index=True)
    st.markdown(text.md(beside.reason))

for warning in summary.warnings:
    if warning.severity == "warning":
        st.warning(f"**{text.md(warning.message)}** {text.md(warning.hint)}")

if measurement.model_kind == ENCODER:
    st.subheader("Every request")
    st.caption("An encoder reads the whole input in one pass and writes no tokens, so there is "
               "no first token and no decode: each bar is one timed request (the whole batch).")
    st.plotly_chart(run_charts.request_latency_figure(measurement), width="stretch")
else:
    st.subheader("Every token, one by one")
    st.caption("Token 1 waits for the whole prompt to be read, so it takes longest (TTFT). Every "
               "later token is one decode step: the gap since the token before it (inter-token "
               "latency). Faint lines are single repetitions; the bold line is their median.")
    st.plotly_chart(run_charts.token_latency_figure(measurement), width="stretch")

st.subheader("Tail latency")
st.caption("Percentiles say how slow the slower requests are: p90 means 9 in 10 were faster. "
           "They need many samples to mean anything, so a cell says how many it needs until "
           "there are enough.")
st.dataframe(export.percentile_rows(summary), hide_index=True, width="stretch")
for note in summary.warnings:
    if note.severity == "note":
        st.caption(f"Note: {text.md(note.message)} {text.md(note.hint)}")

with st.expander("Run details: settings, machine, raw data"):
    st.markdown(f"**Warm-up runs (untimed):** "
                f"{', '.join(f'{s:.2f} s' for s in measurement.warmup_s) or 'none'}  \n"
                f"**How memory was read:** {text.md(measurement.memory_method)}")
    st.json({"spec": measurement.spec.to_dict(), "environment": measurement.environment})
    st.download_button("Download everything as JSON (raw per-token timestamps included)",
                       json.dumps(export.to_dict(measurement, summary), indent=2),
                       file_name=export.export_file_name("run", [measurement.spec.model_id],
                                                         "json"),
                       mime="application/json", on_click="ignore")
