"""The door of the web app: `admit()` runs before any page or sidebar is drawn.

It applies `lib.access.decide` to this browser session: local use passes straight through,
other computers are turned away unless classroom mode is on, and in classroom mode the access
code is asked for once per browser session. `host_sign_in()` is the sidebar box where the
person running a classroom enters the host code to unlock host actions for their session.
Wrong codes are counted per client address server-wide (`attempts()`), so opening many tabs
does not give more guesses.
"""

from __future__ import annotations

import logging
import os

import streamlit as st
from streamlit.errors import StreamlitAPIException

from lib import access, classroom, text
from lib.ui import state

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def attempts() -> access.Attempts:
    return access.Attempts()


def _secrets() -> dict:
    try:
        return {key: st.secrets[key] for key in (access.ACCESS_SECRET, access.HOST_SECRET)
                if key in st.secrets}
    except (OSError, StreamlitAPIException, ValueError):     # no file, or one that won't parse
        return {}


def codes() -> access.Codes:
    return access.load_codes(os.environ, _secrets())


def client_address() -> str | None:
    """The browser's address; None for this computer (Streamlit reports loopback as None)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def admit() -> bool:
    """True when this session may see the app; otherwise the reason or the code form is shown."""
    decision = access.decide(client_address(), st.get_option("server.address"),
                             classroom.enabled(), codes())
    if not decision.allowed:
        st.title("Inference Latency Explorer")
        st.error(text.md(decision.message))
        return False
    if decision.needs_code and not st.session_state.get(state.ACCESS_GRANTED):
        _code_form()
        return False
    if decision.message:
        st.warning(text.md(decision.message))
    return True


def _code_form() -> None:
    st.title("Inference Latency Explorer")
    st.info("This app is open to a classroom. Enter the access code the person running it gave "
            "you.")
    with st.form("access_code_form"):
        given = st.text_input("Access code", type="password", key="access_code_input")
        entered = st.form_submit_button("Enter")
    if entered:
        if _check(given, codes().access, "access"):
            st.session_state[state.ACCESS_GRANTED] = True
            st.rerun()


def _check(given: str, expected: str | None, what: str) -> bool:
    """Compare one code, counting wrong ones per address; shows why it was refused."""
    address = client_address()
    wait = attempts().wait_s(address)
    if wait > 0:
        st.error(f"Too many wrong codes from this computer: try again in {wait:.0f} s.")
        return False
    if access.matches(given, expected):
        attempts().succeeded(address)
        return True
    attempts().failed(address)
    log.warning("wrong %s code from %s", what, address or "this computer")
    st.error(f"That is not the {what} code. Check it with the person running the app "
             "(codes are case-sensitive).")
    return False


def is_host() -> bool:
    """Host actions are open: always outside classroom mode, with the host code inside it."""
    return not classroom.enabled() or bool(st.session_state.get(state.HOST_GRANTED))


def host_sign_in() -> None:
    """Classroom mode: the sidebar box where the host enters the host code (or signs out)."""
    if not classroom.enabled():
        return
    with st.sidebar.expander("Host" + (" (signed in)" if is_host() else "")):
        if is_host():
            st.caption("You are the host in this browser tab: you see everyone's results, "
                       "share them with the class, and may use your own model folders.")
            if st.button("Sign out as host", key="host_sign_out"):
                st.session_state[state.HOST_GRANTED] = False
                st.rerun()
            return
        host_code = codes().host
        if not host_code:
            st.caption(f"No host code is set ({access.HOST_ENV}), so host actions are off in "
                       "the browser; `python -m lib share ID` works on the machine itself.")
            return
        st.caption("The person running the app enters the host code here to share results, "
                   "manage everyone's entries and use their own model folders.")
        with st.form("host_code_form", border=False):
            given = st.text_input("Host code", type="password", key="host_code_input")
            entered = st.form_submit_button("Sign in as host")
        if entered and _check(given, host_code, "host"):
            st.session_state[state.HOST_GRANTED] = True
            st.rerun()
