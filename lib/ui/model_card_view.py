"""The model card on the Playground: the chosen model's size, shape and memory verdict, shown
before anything loads, and whether Run may start (`model_card_blocker`). The verdict is the
backend's own `assess_memory`, the one its guard enforces, so the card and a refusal agree.
"""

from __future__ import annotations

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError
from lib.core.metrics import format_bytes
from lib.core.spec import RunSpec
from lib.core.stacks import STACKS
from lib.estimate import modelcard
from lib.measure import backends, runner
from lib.models import catalog
from lib.models.shapes import shapes
from lib.ui import state
from lib.ui.running import model_cache


def model_card_blocker(spec: RunSpec) -> str | None:
    """The chosen model's size, shape and memory verdict, shown before anything loads.

    Returns None when the settings can run, else a short reason to show next to a disabled Run
    button (the card above it holds the whole explanation). The memory verdict is the backend's
    `assess_memory`, the very one its guard enforces, so the card and a refusal never disagree.
    """
    chosen = STACKS[spec.stack]
    if spec.hardware is None and chosen.optional and not chosen.installed:
        return f"Run is off: {chosen.label} is not ready here (the sidebar says why)."
    try:
        entry = catalog.get_entry(spec.model_id)
        backend = backends.for_spec(spec)
        verdict = runner.memory_verdict(spec, model_cache())
        card = modelcard.model_card(entry, shapes(spec.model_id), spec, verdict)
        backend.check(entry, spec)           # everything that would refuse the run, up front
    except ExplorerError as exc:
        st.error(text.md(exc))
        return "Run is off until the problem above is fixed."
    with st.expander(text.md(f"About the model: {card.title} ({card.summary})")):
        st.markdown(text.md(card.description))
        st.markdown("\n".join(f"- **{text.md(label)}:** {text.md(value)}"
                               for label, value in card.rows))
        st.caption(text.md(f"Weights: {card.source}."))
    (st.caption if card.fits else st.error)(text.md(card.memory_verdict))
    if card.fits:
        return None
    _offer_devices(spec, verdict)
    return (f"Run is off: this run needs about {format_bytes(verdict.need.total_bytes)} and "
            f"{format_bytes(verdict.available_bytes)} is available. What to change is above.")


def _offer_devices(spec: RunSpec, verdict) -> None:
    """An estimate that doesn't fit on the devices chosen: one press sets the fewest that
    hold it (`min_gpus` of the estimate's memory verdict), where the profile can be several."""
    needed = getattr(verdict, "min_gpus", None)
    if spec.hardware is None or needed is None or needed <= spec.gpus:
        return
    st.button(f"Use {needed} devices", key=state.USE_MIN_GPUS, on_click=_set_devices,
              args=(needed,), help=f"The fewest of these devices that hold this model and run: "
              f"sets the number of devices to {needed}.")


def _set_devices(count: int) -> None:
    st.session_state[state.setting("gpus")] = count      # before the widget is drawn again
