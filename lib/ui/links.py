"""Shareable links: a page's settings in its URL, restored once per browser session.

Opening a link fills the sidebar (and Explore's factor and values) from the query parameters;
it never starts a run by itself. A value that can't be read keeps that setting at its default.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from lib.models import catalog
from lib.spec import RunSpec, field_info, field_names
from lib.sweep import FACTORS
from lib.ui import state


def restore_from_link() -> None:
    if st.session_state.get(state.LINK_RESTORED):
        return
    st.session_state[state.LINK_RESTORED] = True
    params = st.query_params
    for name in field_names():
        if name not in params:
            continue
        raw = params[name]
        if name == "model_id":
            entry = catalog.CATALOG.get(raw)
            group = entry.weights if entry else catalog.OWN
            st.session_state[state.MODEL_GROUP] = group
            st.session_state[state.OWN_MODEL if group == catalog.OWN
                             else state.model_choice(group)] = raw
            continue
        try:
            value = field_info(name)["type"](raw)
        except ValueError:
            continue                  # a damaged link keeps that setting at its default
        st.session_state[state.setting(name)] = value
    factor = FACTORS.get(params.get("factor", ""))
    if factor is not None:
        st.session_state[state.explore_factor(0)] = factor.name
        if "values" in params and factor.numeric:
            st.session_state[state.explore_values(0, factor.name)] = params["values"]


def share_link(spec: RunSpec, extra: dict[str, str] | None = None) -> None:
    """Show a link that reopens this page with these settings (it does not start a run)."""
    defaults = RunSpec()
    params = {name: str(value) for name, value in spec.to_dict().items()
              if value is not None and value != getattr(defaults, name)}
    params.update(extra or {})
    parts = urlsplit(st.context.url or "")
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(params), ""))
    with st.expander("Share these settings"):
        st.caption("Anyone opening this link sees this page with these settings filled in; "
                   "nothing runs until they press the button.")
        st.code(url, language=None)
