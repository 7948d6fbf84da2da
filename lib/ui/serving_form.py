"""The Serving page's settings, read into lib.serving's own types: where the requests go
(`session.Target`), the load (`LoadPlan`) and the latency targets (`Slo`).

The load's widgets take their label, help, limits and first value from the plan's field
metadata (`lib.serving.plan.field_info`), as the command line's flags do.

Each reader draws its widgets and returns the value, or None with the problem shown in words
(the checks are lib's: `LoadPlan`, `Target`, `client.check_url`), so a bad value blocks Run
instead of failing it. The API key is a password box whose value lives only in this
session's state: it goes into the `Target` handed to the run, never into a link, the history,
an export or a log (`Endpoint.public()` leaves it out).

In classroom mode a server URL is a host action: the app's server would send requests to any
address typed, including ones inside the school's network that students should not reach.
"""

from __future__ import annotations

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError, InvalidSpecError
from lib.core.kinds import CAUSAL_LM
from lib.models import catalog
from lib.core import kinds
from lib.core.metrics import METRICS
from lib.serving import client, measures, session, sizing
from lib.serving.plan import ARRIVALS, CONCURRENCY, RATE, LoadPlan, field_info
from lib.serving.measures import Slo
from lib.ui import state

TARGETS = {session.LOCAL: "Start a local server on this computer",
           session.URL: "A server URL (any OpenAI-compatible server)",
           session.SIMULATE: "Simulate on other hardware (nothing runs)"}
SHAPES = {CONCURRENCY: "fixed number of users (closed loop)",
          RATE: "requests per second (open loop)"}
DEFAULT_LEVELS = {CONCURRENCY: "1, 2, 4, 8", RATE: "0.5, 1, 2, 4"}
ARRIVAL_WORDS = {"poisson": "Poisson: independent users, random gaps",
                 "gamma": "bursty (gamma): clumps and lulls",
                 "constant": "constant: evenly spaced"}
LOCAL_DTYPES = ("float32", "bfloat16")
OWN_SLO = "own"
# The plan's number boxes, each kept under its own key.
PLAN_KEYS = {"requests": state.SERVING_REQUESTS, "warmup": state.SERVING_WARMUP,
             "prompt_tokens": state.SERVING_PROMPT, "new_tokens": state.SERVING_NEW}
# The burstiness slider appears once gamma arrivals are chosen: it starts burstier than
# Poisson (the plan's default, 1, would send Poisson arrivals again).
GAMMA_BURSTINESS = 0.5
# Widgets' first values, put in session state once (a widget given both a default and a kept
# value from session state makes Streamlit warn).
DEFAULTS = {state.SERVING_DTYPE: "float32", state.SERVING_BATCHING: True,
            state.SERVING_TIMEOUT: 120.0, state.SERVING_BURSTINESS: GAMMA_BURSTINESS,
            state.SERVING_SIZED: True, state.SERVING_BUDGET: sizing.DEFAULT_BUDGET_S,
            **{key: field_info(name)["default"] for name, key in PLAN_KEYS.items()},
            state.SERVING_SLO: measures.DEFAULT_SLO,
            state.SERVING_SLO_TTFT: 2000.0, state.SERVING_SLO_TPOT: 200.0,
            **{state.serving_levels(mode): levels for mode, levels in DEFAULT_LEVELS.items()}}
URL_IS_HOST_ONLY = ("In classroom mode only the host can measure a server URL: the requests "
                    "would come from this app's computer, which can reach addresses your own "
                    "browser can't. Enter the host code in the sidebar, or start a local "
                    "server instead.")


def parse_levels(typed: str) -> tuple[float, ...]:
    """'1, 2, 4, 8' -> (1.0, 2.0, 4.0, 8.0); anything else says how to write it."""
    pieces = [piece.strip() for piece in typed.replace(";", ",").split(",")]
    if not any(pieces):
        raise InvalidSpecError("Type the load levels, separated by commas, e.g. 1, 2, 4, 8.")
    while pieces and not pieces[-1]:        # "1, 2, 4," : a trailing comma is forgiven
        pieces.pop()
    levels = []
    for piece in pieces:
        if not piece:
            raise InvalidSpecError("Two commas with no number between them: type the load "
                                   "levels as numbers separated by commas, e.g. 1, 2, 4, 8.")
        try:
            levels.append(float(piece))
        except ValueError:
            raise InvalidSpecError(f"{text.one_line(piece, 40)!r} is not a number: type the "
                                   "load levels as numbers separated by commas, e.g. "
                                   "1, 2, 4, 8 or 0.5, 1, 2, 4.") from None
    return tuple(levels)


def local_models() -> list[str]:
    """Catalog models a local `transformers serve` can run: text generators, live ones."""
    return [model_id for model_id, entry in catalog.CATALOG.items()
            if entry.kind == kinds.CAUSAL_LM and not entry.estimate_only]


def _model_words(model_id: str) -> str:
    entry = catalog.CATALOG[model_id]
    return entry.display_name + (" (random weights: real speed, meaningless text)"
                                 if entry.weights == catalog.RANDOM else "")


def url_allowed(viewer) -> bool:
    return not viewer.classroom or viewer.is_host


def defaults() -> None:
    """Call before any of the forms: each widget's first value."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def target_form(viewer) -> tuple[session.Target | None, str | None]:
    """The target's widgets; (Target, None), or (None, why Run can't start)."""
    kind = st.radio("What to measure", list(TARGETS), format_func=TARGETS.get,
                    key=state.SERVING_TARGET, horizontal=True)
    if kind == session.LOCAL:
        return _local_form()
    if kind == session.SIMULATE:
        return _simulate_form()
    return _url_form(url_allowed(viewer))


def _simulate_form() -> tuple[session.Target | None, str | None]:
    """A model on N devices of a hardware profile, simulated: nothing runs, nothing is
    measured (lib.serving.simulate)."""
    from lib.estimate import cost, hardware

    models = [m for m, e in catalog.CATALOG.items() if e.kind == CAUSAL_LM]
    profiles = list(hardware.table())
    left, middle, right, far = st.columns([3, 3, 1, 2])
    model_id = left.selectbox("Model", models, key="serving_sim_model",
                              index=models.index("deepseek-r1") if "deepseek-r1" in models
                              else 0, format_func=lambda m: catalog.CATALOG[m].display_name)
    profile = middle.selectbox("Hardware", profiles, key="serving_sim_hardware",
                               index=profiles.index("h200") if "h200" in profiles else 0,
                               format_func=lambda p: hardware.table()[p].name)
    gpus = right.number_input("Devices", 1, 16, 8, key="serving_sim_gpus",
                              help="Tensor parallel: the model split over this many.")
    listed = cost.price(profile)
    price = far.number_input("Price per device-hour ($)", 0.0, cost.MOST_PER_HOUR,
                             value=listed.usd_per_hour if listed else 0.0, step=0.5,
                             key=f"serving_sim_price_{profile}",
                             help="For the cost of a million tokens. "
                                  + (listed.source if listed else "No listed price for this "
                                     "hardware: give one, or leave 0 for no cost."))
    st.caption(text.md(
        "A simulation of a vLLM-like engine (continuous batching, chunked prefill, a KV cache "
        "in 90% of the memory the weights leave): each step's time comes from the estimator, "
        "so every number is an estimate, never a measurement. It takes a second or two."))
    # The listed price left as it is stays the listed one (with its source), not "yours".
    own = None if listed is not None and float(price) == listed.usd_per_hour \
        else (float(price) or None)
    return session.Target(kind=session.SIMULATE, model_id=model_id, hardware=profile,
                          gpus=int(gpus), price_per_hour=own), None


def _local_form() -> tuple[session.Target | None, str | None]:
    options = local_models()
    if st.session_state.get(state.SERVING_MODEL) not in options:
        st.session_state[state.SERVING_MODEL] = options[0]
    left, middle, right = st.columns([3, 1, 2])
    model_id = left.selectbox("Model", options, format_func=_model_words,
                              key=state.SERVING_MODEL,
                              help="The app starts `transformers serve` with this model on "
                                   "this computer (listening to this computer only), measures "
                                   "it, then stops it.")
    dtype = middle.radio("Numbers", LOCAL_DTYPES, key=state.SERVING_DTYPE,
                         help="bfloat16 halves the memory; it is faster only where the "
                              "processor multiplies it natively.")
    from lib.estimate import why
    format_here = why.format_speed_on_this_machine(dtype, "cpu")
    if format_here:
        st.caption(text.md(format_here))
    batching = right.toggle("Continuous batching", key=state.SERVING_BATCHING,
                            help="On: the server runs many requests together, adding new ones "
                                 "as others finish. Off: one request at a time, so the queue "
                                 "grows at once.")
    right.caption("On: requests share the model's passes. Off: one at a time, the others wait.")
    left.caption(text.md(catalog.CATALOG[model_id].description))
    return session.Target(kind=session.LOCAL, model_id=model_id, dtype=dtype,
                          continuous_batching=batching,
                          price_per_hour=_price_box(st, "this")), None


def _price_box(place, listed_for: str | None) -> float | None:
    """What an hour of the server costs, for the cost of a million tokens: the listed price
    filled in (`lib.estimate.cost`), None while it is left as listed or at 0 (no price)."""
    from lib.estimate import cost

    listed = cost.price(listed_for) if listed_for else None
    key = f"serving_price_{listed_for or 'url'}"
    # Its first value through session state only: the page's kept settings put it back there
    # after another page, and a widget given a value too makes Streamlit warn.
    st.session_state.setdefault(key, listed.usd_per_hour if listed else 0.0)
    price = place.number_input(
        "Price per hour ($, for the cost per token)", 0.0, cost.MOST_PER_HOUR, step=0.05,
        format="%.4g",
        key=key,
        help=(f"Filled in: {listed.source}. Type what an hour of it costs you instead."
              if listed else "What an hour of that server costs you; 0: no cost shown."))
    if listed is not None and float(price) == listed.usd_per_hour:
        return None                   # the listed one, with its source
    return float(price) or None


def _url_form(allowed: bool) -> tuple[session.Target | None, str | None]:
    if not allowed:
        st.warning(URL_IS_HOST_ONLY)
    url = st.text_input("Server address", key=state.SERVING_URL, disabled=not allowed,
                        placeholder="http://127.0.0.1:8000/v1",
                        help="The OpenAI-compatible API's base address (vLLM, SGLang, TGI, "
                             "llama.cpp, transformers serve…).")
    left, middle, right = st.columns([2, 1, 1])
    model = left.text_input("Model name (blank: the server's first)",
                            key=state.SERVING_SERVED_MODEL, disabled=not allowed)
    api = middle.radio("API", ("completions", "chat"), key=state.SERVING_API,
                       disabled=not allowed, help="completions: plain text in, text out. "
                                                  "chat: messages, with the model's template.")
    timeout = right.number_input("Timeout per request (s)", min_value=1.0, max_value=3600.0,
                                 step=10.0, key=state.SERVING_TIMEOUT,
                                 disabled=not allowed)
    key = st.text_input("API key (optional)", type="password", key=state.SERVING_API_KEY,
                        disabled=not allowed,
                        help="Sent to the server with each request and nowhere else.")
    st.caption("The API key stays in this browser session's memory only: it is never saved, "
               "exported, put in a link or written to a log.")
    price = _price_box(st, None) if allowed else None
    if not allowed:
        return None, URL_IS_HOST_ONLY
    if not url.strip():
        return None, "Type the server's address first."
    try:
        checked = client.check_url(url)
        return session.Target(kind=session.URL, url=checked, model=model.strip(), api=api,
                              api_key=key or None, timeout_s=float(timeout),
                              price_per_hour=price), None
    except ExplorerError as exc:
        st.error(text.md(exc))
        return None, "Fix the address first."


def plan_form(sized: bool | None = None) -> LoadPlan | None:
    """The load's widgets; the plan, or None with its problem shown. `sized`: whether the
    levels are planned (default: the sizing toggle's value)."""
    shape = field_info("mode")
    mode = st.radio(shape["label"], list(SHAPES), format_func=SHAPES.get,
                    key=state.SERVING_MODE, horizontal=True, help=shape["help"])
    levels_key = state.serving_levels(mode)
    sized = bool(st.session_state.get(state.SERVING_SIZED)) if sized is None else sized
    if sized:
        typed = "1"           # a placeholder: the sized plan brings its own levels
    else:
        typed = st.text_input("Levels: users at once" if mode == CONCURRENCY
                              else "Levels: requests per second", key=levels_key,
                              help=f"Separated by commas, lightest first, e.g. "
                                   f"{DEFAULT_LEVELS[mode]}. Doubling each time finds the knee "
                                   "quickly.")
    arrival, burstiness = field_info("arrival")["default"], field_info("burstiness")["default"]
    if mode == RATE:
        left, right = st.columns(2)
        arrivals = field_info("arrival")
        arrival = left.radio(arrivals["label"], ARRIVALS, format_func=ARRIVAL_WORDS.get,
                             key=state.SERVING_ARRIVAL, help=arrivals["help"])
        if arrival == "gamma":
            bursts = field_info("burstiness")
            burstiness = right.slider(bursts["label"], bursts["page_min"], bursts["page_max"],
                                      step=bursts["step"], key=state.SERVING_BURSTINESS,
                                      help=bursts["help"])
    columns = st.columns(4)
    if sized:
        requests = st.session_state[state.SERVING_REQUESTS]
        columns[0].caption(f"{field_info('requests')['label']}: as many as fit the time "
                           "budget.")
    else:
        requests = _plan_number(columns[0], "requests")
    warmup = _plan_number(columns[1], "warmup")
    prompt = _plan_number(columns[2], "prompt_tokens")
    new = _plan_number(columns[3], "new_tokens")
    try:
        plan = LoadPlan(mode=mode, levels=parse_levels(typed), requests=int(requests),
                        warmup=int(warmup), arrival=arrival, burstiness=float(burstiness),
                        prompt_tokens=int(prompt), new_tokens=int(new))
    except InvalidSpecError as exc:
        st.error(text.md(exc))
        return None
    return plan


def _plan_number(place, name: str):
    """The number box of one LoadPlan field, as its metadata describes it."""
    info = field_info(name)
    return place.number_input(info["label"], info["page_min"], info["page_max"],
                              step=info["step"], key=PLAN_KEYS[name], help=info["help"])


def sizing_form(target: session.Target | None) -> sizing.Sizing:
    """The time budget, and whether the levels and requests are planned to fit it (from one
    answer's time measured on the server first) or typed."""
    if target is not None and target.kind == session.SIMULATE:
        return sizing.Sizing(budget_s=float(sizing.DEFAULT_BUDGET_S), auto_levels=False,
                             auto_requests=False, auto_new_tokens=False, timeout_s=None)
    left, right = st.columns([2, 1])
    sized = left.toggle("Size the load to this machine", key=state.SERVING_SIZED,
                        help="First times two answers on the server, one at a time; then "
                             "chooses load levels from well under what it can serve to past "
                             "it, as many requests per level as fit the time budget, and a "
                             "timeout long enough for this machine.")
    budget = right.number_input("Time budget (s)", sizing.MIN_BUDGET_S, sizing.MAX_BUDGET_S,
                                step=30.0, key=state.SERVING_BUDGET,
                                help="For timing the answers and every level (starting a "
                                     "local server comes on top).")
    # A local server's timeout always comes from the timing; a URL's from its box unless sized.
    own_timeout = target is not None and target.kind == session.URL and not sized
    return sizing.Sizing(budget_s=float(budget), auto_levels=sized, auto_requests=sized,
                         auto_new_tokens=False,
                         timeout_s=target.timeout_s if own_timeout else None)


def time_words(target: session.Target | None, plan: LoadPlan, chosen: sizing.Sizing) -> str:
    """The time promise before a run: the budget when the plan is sized to it; otherwise an
    estimate from the last answer time measured here, or a labelled guess."""
    if target is not None and target.kind == session.SIMULATE:
        return ("A second or two: nothing runs, and every number is simulated. More requests "
                "per level (a few hundred) give the simulation steadier tails.")
    start = " Starting the local server comes on top (often under a minute)." \
        if target is not None and target.kind == session.LOCAL else ""
    if chosen.auto_levels:
        return (f"About {_duration(chosen.budget_s)}: the levels and requests are planned to "
                "fit your time budget from the time one answer takes on the server, measured "
                "first, so the plan holds on a busy computer too. Where even the smallest "
                "plan needs longer, it says so once that answer is timed." + start)
    total = sum(plan.requests + plan.warmup_at(level) for level in plan.levels)
    calibration = session.LAST_CALIBRATION.get(session.calibration_key(target, plan)) \
        if target is not None else None
    if calibration is None:
        guess = plan.estimate_s(session.SECONDS_PER_REQUEST_GUESS)
        levels = f"{len(plan.levels)} level{'' if len(plan.levels) == 1 else 's'}"
        return (f"{total} requests in all ({levels}, warm-up included): about "
                f"{_duration(guess)} or more, an estimate from a guessed "
                f"{session.SECONDS_PER_REQUEST_GUESS:g} s per answer (no answer timed here "
                "yet: sizing the load to this machine measures it)." + start)
    seconds = sizing.estimate(plan, calibration.answer_for(plan.new_tokens))[0]
    return (f"{total} requests in all: about {_duration(seconds)}, an estimate from the "
            f"{calibration.answer_s:.1f} s one answer took when last timed here." + start)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def slo_form() -> Slo:
    """The latency targets goodput counts against: an MLPerf preset, or the user's own."""
    options = [*measures.SLO_PRESETS, OWN_SLO]
    chosen = st.selectbox("Latency targets (for goodput)", options,
                          key=state.SERVING_SLO,
                          format_func=lambda name: "my own" if name == OWN_SLO
                          else measures.SLO_PRESETS[name].name,
                          help="A request is good when its time to first token and its time "
                               "per output token both meet these. MLPerf's are for big "
                               "models on datacenter GPUs: a small CPU may meet none.")
    if chosen != OWN_SLO:
        return measures.SLO_PRESETS[chosen]
    left, right = st.columns(2)
    ttft_ms = left.number_input(f"{METRICS['ttft_s'].plain_label} at most (ms)", 1.0, 600_000.0,
                                key=state.SERVING_SLO_TTFT)
    tpot_ms = right.number_input(f"{METRICS['tpot_s'].plain_label} at most (ms)", 0.1, 60_000.0,
                                 key=state.SERVING_SLO_TPOT)
    return Slo(ttft_ms / 1000, tpot_ms / 1000)
