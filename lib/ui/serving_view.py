"""One load run shown in full, the same on the Serving page and in History: what it found in
words, the four charts (`lib.views.serving_charts`), the per-level table, and its exports.

Everything a run holds that came from outside (the server's address and words, the model's
name, failure reasons inside findings) reaches Markdown only through `lib.core.text.md`. Exports
are `lib.serving.summary`'s: the saved document (never an API key: `Endpoint.public()`), one
CSV row per level, one per request.
"""

from __future__ import annotations

import json

import streamlit as st

from lib.records import export as run_report
from lib.views import serving_charts
from lib.records import table
from lib.core import text
from lib.serving import summary
from lib.serving.records import SIMULATED
from lib.serving.summary import LoadResult
from lib.ui import state

EXPORTS = ("json", "levels", "requests")


def show(load: LoadResult, where: str, entry_id: int | None = None,
         save_error: str | None = None, exports: tuple[str, ...] = EXPORTS,
         when: str | None = None) -> None:
    """Draw `load`; `where` keeps this place's widgets apart ("serving", "history_12")."""
    _what_was_measured(load)
    _cost(load)
    if load.stopped:
        st.warning("**Stopped.** The run was ended early: the levels below are the ones "
                   "measured before Stop, the last one perhaps with fewer requests.")
    st.subheader("What it shows")
    for sentence in load.findings:
        st.markdown(f"- {text.md(sentence)}")

    st.plotly_chart(serving_charts.latency_figure(load), width="stretch")
    st.caption("Each panel: the median (solid) and the slower requests' times (p90 dashed, "
               "p99 dotted, drawn only at levels with enough requests to mean anything). Flat "
               "lines mean the server keeps up; a line shooting up is the queue growing: the "
               "knee. A log scale is used when the values span more than 10x.")
    st.plotly_chart(serving_charts.throughput_figure(load), width="stretch")
    st.caption("Below the knee, more load means more finished requests; past it the server is "
               "at capacity: throughput levels off and only the waits grow. Goodput counts only "
               "the requests that met the latency targets.")
    st.plotly_chart(serving_charts.tradeoff_figure(load), width="stretch")
    st.caption("Each point is one load level. Moving right, the server writes more tokens in "
               "total; moving down, each user's answer streams more slowly.")
    _timeline(load, where)

    st.subheader("Every level")
    st.dataframe(serving_charts.display_rows(load), hide_index=True, width="stretch")
    st.caption("Counted requests only (warm-up and cool-down left out). A dash means that "
               "percentile needs more requests than the level had (p90: 10, p99: 100).")
    _exports(load, where, exports, when)
    if save_error:
        st.warning(f"This load run is shown but NOT saved. {text.md(save_error)}")
    elif entry_id is not None:
        st.caption(f"Saved as #{entry_id} in History.")


def _what_was_measured(load: LoadResult) -> None:
    target = load.target
    if target.get("kind") == SIMULATED:
        _what_was_simulated(load)
        return
    endpoint = target.get("endpoint") or {}
    where = target.get("server") or f"the server at {endpoint.get('base_url', '?')}"
    if target.get("kind") != "local":           # a local server's words already name it
        where += f", model {load.model}"
    plan = load.plan
    shape = (f"{plan.arrival} arrivals" + (f", burstiness {plan.burstiness:g}"
                                           if plan.arrival == "gamma" else "")
             if plan.mode == "rate" else "each user sends again as soon as an answer ends")
    st.caption(text.md(
        f"Measured: {where} ({endpoint.get('api', 'completions')} API). "
        f"Load: {', '.join(f'{v:g}' for v in plan.levels)} {plan.unit} ({shape}); "
        f"{plan.requests} measured requests per level, after {_warmup_words(plan)} and "
        "before cool-down requests that keep the load up until the last measured one ends "
        "(neither counted); prompts of "
        f"{plan.prompt_tokens} tokens, answers of {plan.new_tokens} tokens."))
    sized = _sizing_words(load.sizing)
    if sized:
        st.caption(text.md(sized))
    if target.get("probe"):
        st.caption(text.md(target["probe"]))
    st.caption(text.md(load.counting + _prompt_words(target)))


def _what_was_simulated(load: LoadResult) -> None:
    """A simulation's banner: what was simulated, on what."""
    target, plan = load.target, load.plan
    engine = str(target.get("engine", ""))
    server = str(target.get("server", "")).removeprefix("simulated: ")
    st.warning(text.md(f"SIMULATED, not measured: {server}. "
                       f"{engine[:1].upper()}{engine[1:]}. Every number here is an estimate."))
    st.caption(text.md(f"Load: {', '.join(f'{v:g}' for v in plan.levels)} {plan.unit}; "
                       f"{plan.requests} requests per level after {plan.warmup} warm-up; "
                       f"prompts of {plan.prompt_tokens} tokens, answers of "
                       f"{plan.new_tokens} tokens."))


def _cost(load: LoadResult) -> None:
    """Each level's cost of a million tokens (and energy of a token where the hardware states
    its power), the price it assumes, and the goodput sentence; or how to get a price."""
    from lib.serving import pricing

    said = pricing.price_words(load)
    if said is None:
        st.caption("No price for this server, so no cost per token: give what an hour of it "
                   "costs you (the Serving page's Price per hour) and run again.")
        return
    lines = "\n".join(f"- {text.md(line)}" for line in pricing.level_lines(load))
    with st.expander("What it costs", expanded=load.target.get("kind") == SIMULATED):
        st.markdown(text.md(said) + "\n\n" + lines)
        st.caption("A million tokens cost less the busier the devices are: at a light load "
                   "most of each hour is idle, and the hour is paid all the same. The prompt and "
                   "answer lengths (The load, above) change the cost as much.")
        if load.target.get("kind") == "local":
            st.caption("This machine is priced as a rented cloud machine with the same number "
                       "of cores: a classroom PC costs its owner less per hour, and a GPU "
                       "server costs more per hour but writes far more tokens in it.")
    finding = pricing.finding(load)
    if finding:
        st.markdown(text.md(finding))


def _prompt_words(target: dict) -> str:
    maker = target.get("prompt_tokenizer")
    if not isinstance(maker, str) or not maker:
        return ""
    said = f" Prompts were made with {maker.split(' (')[0]} tokenizer"      # older entries: "(...)"
    if target.get("kind") != "local":
        said += ", so the server's own tokenizer may count them a little differently"
    return said + "."


def _sizing_words(sizing) -> str | None:
    """How the plan was sized, in one sentence: the calibration, the timeout, the estimate
    against the time it took."""
    if not isinstance(sizing, dict) or not isinstance(sizing.get("calibration"), dict):
        return None
    calibration = sizing["calibration"]
    busy = calibration.get("other_cpu_percent")
    said = (f"Sized to this machine: one answer took {calibration['answer_s']:.1f} s when "
            "timed first" + (f" (other programs used {busy:.0f}% of the CPU)"
                             if isinstance(busy, (int, float)) else "")
            + f"; the levels, requests and {sizing['timeout_s']:g} s timeout follow from it.")
    if isinstance(sizing.get("estimated_s"), (int, float)):
        said += f" Estimated {sizing['estimated_s']:.0f} s"
        if isinstance(sizing.get("measured_s"), (int, float)):
            said += f", took {sizing['measured_s']:.0f} s"
        said += f" (budget {sizing['budget_s']:g} s)."
    return said


def _warmup_words(plan) -> str:
    if plan.mode == "concurrency":
        return (f"{plan.warmup} warm-up requests or one per user, whichever is more"
                if plan.warmup else "one warm-up request per user")
    return f"{plan.warmup} warm-up request{'' if plan.warmup == 1 else 's'}"


def _timeline(load: LoadResult, where: str) -> None:
    levels = sorted(load.levels, key=lambda level: level.offered)
    if not levels:
        return
    offered = [level.offered for level in levels]
    key = state.timeline_level(where)
    if st.session_state.get(key) not in offered:
        st.session_state[key] = offered[-1]        # the heaviest load shows the queue best
    chosen = st.selectbox("Timeline of the requests at", offered, key=key,
                          format_func=lambda v: serving_charts.level_words(load, v))
    level = next(level for level in levels if level.offered == chosen)
    st.plotly_chart(serving_charts.timeline_figure(load, level), width="stretch")
    st.caption("One bar per request, in the order sent: the light part is the wait for the "
               "first token (queueing, then reading the prompt), the strong part is the answer "
               "streaming. Under light load the light parts stay short; past the knee they grow "
               "request after request. Grey bars are warm-up requests, not counted; red ones "
               "failed (hover for why). Cool-down requests, sent after the measured ones "
               "only to keep the load up, are not drawn.")


def _exports(load: LoadResult, where: str, exports: tuple[str, ...], when: str | None) -> None:
    models = [load.model]

    def name(extension: str, extra: tuple[str, ...] = ()) -> str:
        return run_report.export_file_name("load", models, extension, extra, when)

    columns = st.columns(max(len(exports), 1))
    for column, what in zip(columns, exports):
        if what == "json":
            column.download_button("Download everything as JSON (every request's timestamps)",
                                   lambda: json.dumps(summary.to_dict(load), indent=2),
                                   file_name=name("json"), mime="application/json",
                                   on_click="ignore", key=f"{where}_export_json")
        elif what == "levels":
            column.download_button("Download the levels as CSV",
                                   table.to_csv(summary.level_rows(load)),
                                   file_name=name("csv", ("levels",)), mime="text/csv",
                                   on_click="ignore", key=f"{where}_export_levels")
        elif what == "requests":
            column.download_button("Download every request as CSV",
                                   lambda: table.to_csv(summary.request_rows(load)),
                                   file_name=name("csv", ("requests",)), mime="text/csv",
                                   on_click="ignore", key=f"{where}_export_requests")
