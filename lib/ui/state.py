"""Every session-state key the web app uses, in one place.

Pages and lib.ui modules read and write session state only through these names, so a key
written in one file is never a string retyped in another.

Streamlit forgets the value of a widget whose page is not shown (visit History, come back: the
Explore factor is back to its default). `restore_page_settings()` keeps a copy of a page's
widget values under one key of its own and puts them back when the page is shown again.
"""

from __future__ import annotations

import streamlit as st

SPEC = "spec"                      # the RunSpec built from the sidebar this rerun
SPEC_PROBLEM = "spec_problem"      # why the sidebar's settings make no RunSpec (None: they do)
RESULT = "playground_result"       # the last Result shown on the Playground
SWEEP = "explore_sweep"            # the last SweepResult shown on Explore
SWEEP_LIVE = "explore_live"        # the sweep in progress: its finished points, kept on Stop
RUN_LIVE = "playground_live"       # the run in progress (its description): gone when it ends
USE_MIN_GPUS = "_use_min_gpus"     # the button that sets the devices to the fewest that fit
LINK_RESTORED = "_link_restored"   # a shared link's settings were applied this session
EXPLORE_MODE = "explore_mode"      # one factor or two
HEATMAP_METRIC = "explore_heatmap_metric"
SWEEP_REQUEST = "explore_request"  # the factors and values of the sweep shown (for the stale note)
KEPT = "_kept_page_settings"       # copies of page widgets' values, kept while another page shows
ACCESS_GRANTED = "_access_granted"  # classroom mode: this session entered the access code
HOST_GRANTED = "_host_granted"      # classroom mode: this session entered the host code
LINK_NOTES = "_link_notes"         # a shared link's values that could not be used, and why
HISTORY_TABLE = "history_table"    # the History listing's row selection
HISTORY_TABLE_GENERATION = "_history_table_generation"   # a new listing after a delete
HISTORY_UPLOAD = "history_upload"
HISTORY_FILTERS = ("history_model", "history_device", "history_since")
EXPLORE_BUDGET = "explore_budget_s"   # the sweep's time budget, seconds
BUSY_NOW = "_busy_now"              # (when, other programs' CPU share then): a recent reading
EXPLORE_WIDGETS = ("explore_mode", "explore_factor_", "explore_values_",
                   "explore_heatmap_metric", EXPLORE_BUDGET)   # every Explore widget key starts with one of these
SERVING_RESULT = "_serving_result"  # the last load run shown on Serving (lib.records.load_tests.Outcome)
SERVING_LIVE = "_serving_live"      # the load run in progress: its thread, Stop, what it measured
SERVING_WIDGETS = ("serving_",)     # every Serving widget key starts with this
SERVING_TARGET = "serving_target"   # "local" or "url"
SERVING_MODEL = "serving_model"     # local: the catalog model
SERVING_DTYPE = "serving_dtype"
SERVING_BATCHING = "serving_batching"
SERVING_URL = "serving_url"
SERVING_SERVED_MODEL = "serving_served_model"
SERVING_API = "serving_api"
SERVING_API_KEY = "serving_api_key"  # only ever here: never in a link, the history or a log
SERVING_TIMEOUT = "serving_timeout"
SERVING_SIZED = "serving_sized"     # plan the levels and requests from a calibration
SERVING_BUDGET = "serving_budget_s"
SERVING_MODE = "serving_mode"
SERVING_ARRIVAL = "serving_arrival"
SERVING_BURSTINESS = "serving_burstiness"
SERVING_REQUESTS = "serving_requests"
SERVING_WARMUP = "serving_warmup"
SERVING_PROMPT = "serving_prompt"
SERVING_NEW = "serving_new"
SERVING_SLO = "serving_slo"
SERVING_SLO_TTFT = "serving_slo_ttft_ms"
SERVING_SLO_TPOT = "serving_slo_tpot_ms"
LESSON = "lesson_chosen"            # the Lessons page's lesson
PRESENTER = "lesson_presenter"      # presenter mode on the Lessons page
LESSON_GO = "_lesson_go"            # the page a lesson's "try this next" goes to
WIDGET_PREFIX = "setting_"         # sidebar widgets: setting_<RunSpec field>
MODEL_GROUP = WIDGET_PREFIX + "model_group"
OWN_MODEL = WIDGET_PREFIX + "own_model"


def setting(field: str) -> str:
    """The sidebar widget of one RunSpec field."""
    return WIDGET_PREFIX + field


def model_choice(group: str) -> str:
    """One model picker per group (trained / random), so switching groups keeps each choice."""
    return f"{WIDGET_PREFIX}model_id_{group}"


def explore_factor(index: int) -> str:
    return f"explore_factor_{index}"


def explore_values(index: int, factor: str) -> str:
    return f"explore_values_{index}_{factor}"


def serving_levels(mode: str) -> str:
    """One levels box per load shape, so switching shapes keeps each one's levels."""
    return f"serving_levels_{mode}"


def timeline_level(where: str) -> str:
    """The level whose requests the timeline shows, per place a load run is shown."""
    return f"{where}_timeline_level"


def history_note(entry_id: int) -> str:
    return f"history_note_{entry_id}"


def history_table(generation: int) -> str:
    """The listing's key: a new one after a delete, so no selection carries over to the row
    that moved into the deleted one's place."""
    return HISTORY_TABLE if not generation else f"{HISTORY_TABLE}_{generation}"


def restore_page_settings(prefixes: tuple[str, ...] = EXPLORE_WIDGETS) -> None:
    """Call first thing on a page: puts back its widgets' values that Streamlit dropped while
    another page was shown, then keeps a copy of the current ones."""
    kept = st.session_state.setdefault(KEPT, {})
    for key, value in kept.items():
        if key.startswith(prefixes) and key not in st.session_state:
            st.session_state[key] = value
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(prefixes):
            kept[key] = st.session_state[key]


def keep(key: str, value) -> None:
    """Set a page widget's value from outside its page (a shared link), kept like the rest."""
    st.session_state[key] = value
    st.session_state.setdefault(KEPT, {})[key] = value
