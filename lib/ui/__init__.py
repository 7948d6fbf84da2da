"""The web app's Streamlit side; the only package in lib that imports Streamlit.

- `state`: every session-state key;
- `links`: settings in a shareable URL, restored once per session;
- `sidebar`: the settings widgets drawn from RunSpec, the model picker and the model card;
- `running`: the server-wide model cache, running a spec or a sweep with its progress shown,
  saving through lib.history, and the one error boundary.
`run_app()` is the router that app.py calls.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent.parent.parent / "pages"


def run_app() -> None:
    """Page config, the page list, the shared sidebar, then the chosen page.

    Page paths are absolute so the same router runs from app.py or from a test harness.
    """
    from lib.ui.sidebar import settings_sidebar

    st.set_page_config(page_title="Inference Latency Explorer", page_icon="⏱️", layout="wide")
    page = st.navigation([
        st.Page(PAGES_DIR / "playground.py", title="Playground", icon=":material/play_arrow:",
                default=True),
        st.Page(PAGES_DIR / "explore.py", title="Explore factors", icon=":material/show_chart:"),
        st.Page(PAGES_DIR / "history.py", title="History", icon=":material/history:"),
    ])
    settings_sidebar()
    page.run()
