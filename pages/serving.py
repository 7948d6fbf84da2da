"""Serving under load: a server measured the way its users feel it, many requests at once."""

import streamlit as st

from lib.core import text
from lib import ui
from lib.serving import session
from lib.ui import (capacity_view, classroom_view, glossary_view, serving_form, serving_run,
                    serving_view, state)

ui.require_router()             # a deep link after a restart runs through the router

state.restore_page_settings(state.SERVING_WIDGETS)   # Streamlit forgets them on other pages

st.title("Serving under load")
glossary_view.own(
    "One request at a time shows how fast a **model** is. The people using a **service** feel "
    "the **server**: many of them send requests at once, and a request that arrives while the "
    "server is busy waits in a queue. This page sends requests at several levels of load and "
    "measures what each one felt. Usually the waits stay flat while the load is light, then "
    "shoot up once the server can't keep up: that point is the **knee**.")
with st.expander("The words used here"):
    st.markdown(
        "- **Load**: how busy the server is kept. *Fixed number of users* (closed loop): N "
        "users, each sending a new request as soon as its answer ends, so exactly N are in "
        "flight. *Requests per second* (open loop): requests arrive on a schedule whatever the "
        "server does, like visitors to a website; past the server's capacity the queue grows "
        "without end.\n"
        "- **TTFT**, time to first token: from sending a request to the first word of the "
        "answer. Waiting in the queue is part of it, so it grows first under load.\n"
        "- **TPOT**, time per output token: the pace of the answer once it streams. It grows "
        "when the server shares its work among more requests.\n"
        "- **p50, p90, p99**: half, 9 in 10, 99 in 100 of the requests were faster than this. "
        "Users notice the slow ones, so tails matter; they need 10 and 100 requests to mean "
        "anything.\n"
        "- **Goodput**: requests per second that met the latency targets below. Throughput "
        "can keep rising past the knee while goodput falls.\n"
        "- Warm-up requests at each level are sent first and not counted, so the numbers show "
        "the steady state, not an empty server.")

st.caption("The sidebar's settings belong to the Playground and Explore pages: this page has "
           "its own below, and measures a server, not the model in this app's memory.")

with st.expander("How many devices do I need? Plan a service by simulation"):
    capacity_view.show()

viewer = classroom_view.current_viewer()
serving_form.defaults()
st.subheader("Where the requests go")
target, blocker = serving_form.target_form(viewer)
st.subheader("The load")
chosen = serving_form.sizing_form(target)
plan = serving_form.plan_form(chosen.auto_levels)
slo = serving_form.slo_form()
if plan is None and blocker is None:
    blocker = "Fix the load settings above first."
if plan is not None:
    st.caption(text.md(serving_form.time_words(target, plan, chosen)))

run_column, stop_column, reason_column = st.columns([1, 1, 4])
start = run_column.button("Run load sweep", type="primary", disabled=blocker is not None)
stop_column.button("Stop", disabled=not start,       # only while a run is going on
                   help="Cancels the requests in flight; the levels already measured "
                        "are kept and saved.")
if blocker:
    reason_column.caption(text.md(blocker))

if start:
    if target.kind == session.URL and not serving_form.url_allowed(viewer):
        st.error(serving_form.URL_IS_HOST_ONLY)        # checked again: the radio is not a lock
    else:
        with classroom_view.run_turn(f"a load sweep ({plan.unit})") as allowed:
            if allowed:
                outcome = serving_run.run_with_status(target, plan, slo, chosen)
                if outcome is not None:
                    st.session_state[state.SERVING_RESULT] = outcome
else:
    stopped = serving_run.stopped_load()
    if stopped is not None:
        st.session_state[state.SERVING_RESULT] = stopped

outcome = st.session_state.get(state.SERVING_RESULT)
if outcome is None:
    st.info("No load sweep yet: choose where the requests go and the load, then press **Run "
            "load sweep**. With the defaults (a local server, sized to this computer) it takes "
            "about the time budget, plus starting the server.")
    st.stop()

st.divider()
st.header("Results")
serving_view.show(outcome.load, "serving", entry_id=outcome.entry_id,
                  save_error=outcome.save_error)
