"""The door of the web app: `admitted()` and `door()` run before any page or sidebar is drawn.

It applies `lib.access.network.decide` to this browser session: local use passes straight through,
other computers are turned away unless classroom mode is on, and in classroom mode the access
code is asked for once per browser (remembered for a school day by the browser's cookie, so a
reload or a new tab does not ask again: `passes()`). `host_sign_in()` is the sidebar box where the
person running a classroom enters the host code to unlock host actions for their session.
Wrong codes are counted per client address server-wide (`attempts()`), so opening many tabs
does not give more guesses.
"""

from __future__ import annotations

import logging
import os

import streamlit as st
from streamlit.errors import StreamlitAPIException

from lib.access import network, classroom
from lib.core import text
from lib.ui import classroom_view as classroom_ui
from lib.ui import state

log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def attempts() -> network.Attempts:
    return network.Attempts()


@st.cache_resource(show_spinner=False)
def passes() -> network.Passes:
    return network.Passes()


def _browser() -> str | None:
    """This browser's one-way id (from its cookie), None without a cookie."""
    cookie = classroom_ui._client()[0]
    return classroom.owner_id(cookie, None) if cookie else None


def _secrets() -> dict:
    try:
        return {key: st.secrets[key] for key in (network.ACCESS_SECRET, network.HOST_SECRET)
                if key in st.secrets}
    except (OSError, StreamlitAPIException, ValueError):     # no file, or one that won't parse
        return {}


def codes() -> network.Codes:
    return network.load_codes(os.environ, _secrets())


def client_address() -> str | None:
    """The browser's address; None for this computer (Streamlit reports loopback as None)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else None


def _decision() -> network.Decision:
    return network.decide(client_address(), st.get_option("server.address"),
                         classroom.enabled(), codes())


def admitted() -> bool:
    """Whether this session may see the app now (draws nothing: the router calls it before
    `st.navigation`, which must come before any element)."""
    decision = _decision()
    if not decision.allowed:
        return False
    if not decision.needs_code:
        return True
    browser = _browser()
    if passes().holds(browser, "access"):
        st.session_state[state.ACCESS_GRANTED] = True
        if passes().holds(browser, "host"):
            st.session_state[state.HOST_GRANTED] = True
    return bool(st.session_state.get(state.ACCESS_GRANTED))


def door(admitted_now: bool) -> None:
    """What this session sees at the door: the refusal, the code form, or (let in) a warning
    when the app is listening on the network without classroom mode."""
    decision = _decision()
    if admitted_now:
        if decision.message:
            st.warning(text.md(decision.message))
        return
    st.title("Inference Latency Explorer")
    if not decision.allowed:
        st.error(text.md(decision.message))
    else:
        _code_form()


def _code_form() -> None:
    st.info("This app is open to a classroom. Enter the access code the person running it gave "
            "you.")
    with st.form("access_code_form"):
        given = st.text_input("Access code", type="password", key="access_code_input")
        entered = st.form_submit_button("Enter")
    if entered:
        if _check(given, codes().access, "access"):
            st.session_state[state.ACCESS_GRANTED] = True
            passes().grant(_browser(), "access")
            st.rerun()


def _check(given: str, expected: str | None, what: str) -> bool:
    """Compare one code, counting wrong ones per address; shows why it was refused."""
    address = client_address()
    wait = attempts().wait_s(address)
    if wait > 0:
        st.error(f"Too many wrong codes from this computer: try again in {wait:.0f} s.")
        return False
    if network.matches(given, expected):
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
            st.caption("You are the host in this browser: you see everyone's results, "
                       "share them with the class, and may use your own model folders.")
            if st.button("Sign out as host", key="host_sign_out"):
                st.session_state[state.HOST_GRANTED] = False
                passes().revoke(_browser(), "host")
                st.rerun()
            return
        host_code = codes().host
        if not host_code:
            st.caption(f"No host code is set ({network.HOST_ENV}), so host actions are off in "
                       "the browser; whoever runs the app can still share from the machine "
                       "itself.")
            return
        st.caption("The person running the app enters the host code here to share results, "
                   "manage everyone's entries and use their own model folders.")
        with st.form("host_code_form", border=False):
            given = st.text_input("Host code", type="password", key="host_code_input")
            entered = st.form_submit_button("Sign in as host")
        if entered and _check(given, host_code, "host"):
            st.session_state[state.HOST_GRANTED] = True
            passes().grant(_browser(), "host")
            st.rerun()
