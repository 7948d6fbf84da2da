"""The web app's Streamlit side; the only package in lib that imports Streamlit.

- `state`: every session-state key;
- `access`: who may use the app (local only, or a classroom with codes), asked before anything;
- `links`: settings in a shareable URL, restored once per session;
- `sidebar`: the settings widgets drawn from RunSpec and the model picker;
- `model_card_view`: the model card, and whether Run may start;
- `explore_form`: Explore's factor values, and the points a sweep would skip or refuse;
- `history_compare`: History's comparison of several saved runs or sweeps;
- `running`: the server-wide model cache, running a spec or a sweep with its progress shown,
  saving through lib.records.documents, and the one error boundary.
`run_app()` is the router that app.py calls; every page calls `require_router()` first.

Imports: every layer below (core to access). Never lib.cli.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

PAGES_DIR = Path(__file__).resolve().parent.parent.parent / "pages"
log = logging.getLogger("lib.ui")
_routing = threading.local()           # set while run_app runs a page, on that script thread


def run_app() -> None:
    """Page config, the door, the page list, the shared sidebar, then the chosen page.

    Page paths are absolute so the same router runs from app.py or from a test harness.
    Anything unexpected a page raises is logged with its traceback on the server and shown in
    the browser as one plain message with a reference to find it in the log: no server paths or
    code go to the browser (`client.showErrorDetails = "none"` covers what escapes even this).
    """
    from lib.ui.door import admitted, door, host_sign_in
    from lib.ui.sidebar import settings_sidebar

    PagesManager.uses_pages_directory = False      # see require_router
    st.set_page_config(page_title="Inference Latency Explorer", page_icon="⏱️", layout="wide")
    admitted_now = admitted()
    pages = [
        st.Page(PAGES_DIR / "lessons.py", title="Lessons", icon=":material/school:"),
        st.Page(PAGES_DIR / "playground.py", title="Playground", icon=":material/play_arrow:",
                default=True),
        st.Page(PAGES_DIR / "explore.py", title="Explore factors", icon=":material/show_chart:"),
        st.Page(PAGES_DIR / "serving.py", title="Serving under load", icon=":material/group:"),
        st.Page(PAGES_DIR / "history.py", title="History", icon=":material/history:"),
    ]
    # Streamlit's own page list stays hidden (and `client.showSidebarNavigation = false` hides
    # the list of pages/ files it would otherwise show while the first run after a start gets
    # here): the menu below is drawn only for a session let in at the door.
    page = st.navigation(pages, position="hidden")
    door(admitted_now)
    if not admitted_now:
        return
    _routing.active = True
    try:
        _menu(pages)
        settings_sidebar()
        host_sign_in()
        page.run()
    except Exception:                   # noqa: BLE001 - the last line of defence, logged in full
        reference = uuid.uuid4().hex[:8]
        log.exception("unexpected error on page %s (reference %s)", page.title, reference)
        st.error(f"Something went wrong on this page that the app did not expect (reference "
                 f"{reference}). Your saved results are safe. Reload the page to continue; if it "
                 "happens again, tell the person running the app: the details are in the "
                 "server's log under that reference.")
    finally:
        _routing.active = False


def _menu(pages: list) -> None:
    """The page menu at the top of the sidebar, the current page highlighted."""
    with st.sidebar.container(key="page_menu"):
        for each in pages:
            st.page_link(each)
        st.divider()


def require_router() -> None:
    """The first call on every page: make sure the page runs inside `run_app`.

    Streamlit (1.67) decides once per server process whether the app uses the old `pages/`
    folder discovery: if the first visitor after a start opens a deep link such as /history
    before anyone opened /, it runs pages/history.py by itself, without the router, the door
    or the sidebar, and lists the files as pages. This page then switches that discovery off
    and reruns, which runs app.py's router on the same page.
    """
    if getattr(_routing, "active", False):
        return
    PagesManager.uses_pages_directory = False
    st.rerun()
