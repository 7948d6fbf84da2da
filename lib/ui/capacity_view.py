"""The Serving page's "How many devices do I need?": a model, a request rate and p90 latency
targets in; for each data-centre hardware profile the fewest devices that serve it within the
targets, what they cost, how far they stretch, and the setups side by side in one sentence
(`lib.serving.capacity`, by simulation: nothing runs). The answer is kept in the session, so it
stays on screen while the rest of the page is used.
"""

from __future__ import annotations

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError
from lib.core.kinds import CAUSAL_LM
from lib.models import catalog

RESULT = "capacity_result"
# MLPerf Inference's DeepSeek-R1 server scenario: p90 TTFT 2 s, p90 TPOT 80 ms.
DEFAULT_TTFT_S, DEFAULT_TPOT_MS = 2.0, 80.0


def show() -> None:
    """The form, and the last answer under it."""
    models = [m for m, e in catalog.CATALOG.items() if e.kind == CAUSAL_LM]
    st.markdown("Say how many requests per second the service must answer and how fast; each "
                "data-centre device type gets the fewest devices that manage it, with the "
                "price of an hour and of a million tokens. Simulated (a vLLM-like engine on "
                "the estimator's step times): nothing runs, every number is an estimate.")
    top = st.columns([3, 1, 1, 1])
    model_id = top[0].selectbox("Model", models, key="capacity_model",
                                index=models.index("deepseek-r1") if "deepseek-r1" in models
                                else 0, format_func=lambda m: catalog.CATALOG[m].display_name)
    rate = top[1].number_input("Requests per second", 0.01, 10_000.0, 8.0, step=1.0,
                               key="capacity_rate")
    ttft = top[2].number_input("p90 first token at most (s)", 0.01, 600.0, DEFAULT_TTFT_S,
                               step=0.5, key="capacity_ttft",
                               help="9 in 10 requests must see their first word this soon.")
    tpot = top[3].number_input("p90 per token at most (ms)", 0.1, 60_000.0, DEFAULT_TPOT_MS,
                               step=10.0, key="capacity_tpot",
                               help="9 in 10 requests must stream at least this fast.")
    left, right, button = st.columns([1, 1, 2])
    prompt = left.number_input("Prompt tokens", 1, 32_768, 1024, key="capacity_prompt")
    new = right.number_input("Answer tokens", 1, 32_768, 256, key="capacity_new")
    st.caption(f"The targets filled in are MLPerf Inference's for DeepSeek-R1 served to many "
               f"users ({DEFAULT_TTFT_S:g} s, {DEFAULT_TPOT_MS:g} ms). It takes about 5 to 15 "
               "seconds: each device type is simulated at several counts and rates.")
    if button.button("Find how many", key="capacity_go"):
        from lib.serving import capacity

        asked = dict(model=model_id, rate=float(rate), ttft=float(ttft),
                     tpot=float(tpot) / 1000, prompt=int(prompt), new=int(new))
        with st.spinner("Simulating each device type…"):
            try:
                best = capacity.options(model_id, asked["rate"], asked["ttft"], asked["tpot"],
                                        asked["prompt"], asked["new"])
                st.session_state[RESULT] = (asked, best, capacity.words(
                    best, asked["rate"], asked["ttft"], asked["tpot"]))
            except ExplorerError as exc:
                st.session_state.pop(RESULT, None)
                st.error(text.md(exc))
    _answer(st.session_state.get(RESULT))


def _answer(kept) -> None:
    if kept is None:
        return
    asked, best, said = kept
    entry = catalog.CATALOG.get(asked["model"])
    name = entry.display_name if entry else asked["model"]
    st.warning(text.md(f"SIMULATED, not measured: {name} at {asked['rate']:g} requests/s, "
                       f"prompts of {asked['prompt']} tokens, answers of {asked['new']}."))
    st.dataframe([{
        "hardware": option.name,
        "devices": str(option.gpus) if option.gpus else "none",
        "$ per hour": "-" if option.usd_per_hour is None else f"${option.usd_per_hour:,.2f}",
        "p90 first token": "-" if option.ttft_p90_s is None
        else f"{option.ttft_p90_s * 1000:,.0f} ms",
        "p90 per token": "-" if option.tpot_p90_s is None
        else f"{option.tpot_p90_s * 1000:.1f} ms",
        "$ per million output tokens": "-" if option.usd_per_million_tokens is None
        else f"${option.usd_per_million_tokens:,.2f}",
        "most requests/s within targets": "-" if option.most_rate is None
        else f"{option.most_rate:.3g}",
        "$ per million there": "-" if option.usd_per_million_at_most is None
        else f"${option.usd_per_million_at_most:,.2f}"} for option in best],
        hide_index=True, width="stretch")
    for sentence in said:
        st.markdown(f"- {text.md(sentence)}")
    st.caption(f"Cheapest first, by the price of an hour of all the devices (device types "
               f"without a listed price come last; 'none': no count up to 16 meets the "
               f"targets). Each million output tokens is priced at {asked['rate']:g} requests/s "
               "and at the most those devices serve within the targets (to 10%: headroom "
               "for growth), where the same hour writes more tokens.")
    with st.expander("Where the prices come from"):
        from lib.estimate import cost

        listed = [(option.name, cost.price(option.hardware)) for option in best]
        st.markdown("\n".join(f"- {text.md(name)}: " + (
            text.md(price.words()) if price else "no listed price") for name, price in listed))
