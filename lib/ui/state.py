"""Every session-state key the web app uses, in one place.

Pages and lib.ui modules read and write session state only through these names, so a key
written in one file is never a string retyped in another.
"""

from __future__ import annotations

SPEC = "spec"                      # the RunSpec built from the sidebar this rerun
RESULT = "playground_result"       # the last Result shown on the Playground
SWEEP = "explore_sweep"            # the last SweepResult shown on Explore
SWEEP_LIVE = "explore_live"        # the sweep in progress: its finished points, kept on Stop
RUN_LIVE = "playground_live"       # the run in progress (its description): gone when it ends
LINK_RESTORED = "_link_restored"   # a shared link's settings were applied this session
EXPLORE_MODE = "explore_mode"      # one factor or two
HEATMAP_METRIC = "explore_heatmap_metric"
HISTORY_TABLE = "history_table"    # the History listing's row selection
HISTORY_UPLOAD = "history_upload"
HISTORY_FILTERS = ("history_model", "history_device", "history_since")
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


def history_note(entry_id: int) -> str:
    return f"history_note_{entry_id}"
