"""Classroom mode in the web app: who is looking, and one run at a time each.

`current_viewer()` turns this browser session into a `lib.access.classroom.Viewer`: the owner id is a
hash of Streamlit's XSRF cookie (`_streamlit_xsrf`, set once per browser, so every tab of one
browser is one person; the session id when the cookie is missing), and the host is a session
that entered the host code (`lib.ui.door`). `run_turn()` holds the
owner's one queued-or-running run; `RunTurns` is server-wide (`st.cache_resource`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lib.access import classroom
from lib.core import text
from lib.access.classroom import ClassroomError, RunTurns, Viewer
from lib.ui import state

COOKIE = "_streamlit_xsrf"


def _client() -> tuple[str | None, str | None, bool]:
    """(browser cookie, session id, host code entered) of this session; tests replace it."""
    ctx = get_script_run_ctx()
    cookie = st.context.cookies.get(COOKIE)
    return (cookie if isinstance(cookie, str) else None, ctx.session_id if ctx else None,
            bool(st.session_state.get(state.HOST_GRANTED)))


def visitor_id() -> str:
    """This browser, as the lessons' progress knows it (classroom mode on or off): the same
    salted hash of its cookie that classroom mode calls its owner."""
    cookie, session_id, _host = _client()
    return classroom.owner_id(cookie, session_id)


def current_viewer() -> Viewer:
    cookie, session_id, host = _client()
    return classroom.viewer(cookie, session_id, host)


def current_owner() -> str | None:
    """What `lib.records.saving.save_run(..., owner=)` and `SweepRecorder(..., owner=)` take."""
    return current_viewer().owner


@st.cache_resource(show_spinner=False)
def run_turns() -> RunTurns:
    """One per server: every session's turn in one place."""
    return RunTurns()


@contextlib.contextmanager
def run_turn(description: str) -> Iterator[bool]:
    """Yields True while this owner's one run waits and runs; False (with the reason shown)
    when the owner has one already. Outside classroom mode it always yields True."""
    viewer = current_viewer()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(run_turns().turn(viewer.owner if viewer.classroom else None,
                                                 description))
        except ClassroomError as exc:
            st.warning(text.md(exc))
            yield False
            return
        yield True


def explain(viewer: Viewer) -> str | None:
    """One plain sentence for the top of History, in classroom mode."""
    if not viewer.classroom:
        return None
    if viewer.is_host:
        return ("Classroom mode, and you are the host (you entered the host code): you see "
                "everyone's results, and **Share with the class** shows one to every visitor.")
    return ("Classroom mode: you see your own results and those the host shared with the "
            "class. Only your own can be deleted or given a note.")
