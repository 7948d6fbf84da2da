"""Shareable links: a page's settings in its URL, restored once per browser session.

Opening a link fills the sidebar (and Explore's mode, factors, values and heatmap metric) from
the query parameters; it never starts a run by itself. Each parameter is checked like the CLI
argument of the same RunSpec field: a value that is not one at all (damaged, an unknown choice, a
model path in classroom mode) is ignored and that setting keeps its default; a number outside
this machine's range is moved to the nearest end of it. Either way one note in the sidebar says
which and why: nothing is silently changed into something else.

`build_share_link` is the pure part: the link is built from the address the browser used, and
when that address is loopback (localhost, 127.0.0.1, ::1), which on a student's computer means
the student's own computer, from this machine's network address instead, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import socket
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from lib.access import classroom
from lib.machine import devices
from lib.measure.factors import FACTORS, Factor, current_name, device_values, parse_values
from lib.core import text
from lib.core.errors import ExplorerError
from lib.models import catalog
from lib.core.spec import RunSpec, field_info, field_names
from lib.core.spec_text import clamp, parse_value
from lib.ui import door, state

# Explore's modes: the word a link uses -> the words its radio shows (the page draws these).
EXPLORE_MODES = {"one": "one factor", "two": "two factors (heatmap)"}
HEATMAP_METRICS = ("tpot_s", "ttft_s", "e2e_s", "decode_tokens_per_s", "requests_per_s")
# A UDP "connect" sends nothing; it only asks the OS which interface would reach this address.
_ROUTE_PROBE = ("10.254.254.254", 1)


@dataclass(frozen=True)
class ShareLink:
    url: str                  # the link to hand out
    note: str | None = None   # why it is not the address in the browser, or why it may fail
    this_computer: str | None = None   # the same link as the browser's (loopback) address


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def build_share_link(browser_url: str, params: dict[str, str], network_host: str | None,
                     listens_on_loopback_only: bool = False) -> ShareLink:
    """The link for these settings, as the browser reached the app (same scheme, port, path).

    `network_host`: this machine's address on the network (None if it has none);
    `listens_on_loopback_only`: the server accepts only this computer's connections."""
    parts = urlsplit(browser_url or "")
    query = urlencode(params)
    local = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    if not parts.netloc or not classroom.is_loopback(parts.hostname):
        return ShareLink(local)
    if network_host is None:
        return ShareLink(local, "This link uses “localhost”, which on another computer means "
                                "that computer: it works only here. This machine has no network "
                                "address to offer instead.")
    url = urlunsplit((parts.scheme, _netloc(network_host, parts.port), parts.path, query, ""))
    note = (f"You opened the app as “{parts.hostname}”, which on a student's computer means "
            f"their own computer, so this link uses this machine's network address "
            f"({network_host}) instead.")
    if listens_on_loopback_only:
        note += (" The app accepts only this computer's connections right now: start it with "
                 "`--server.address 0.0.0.0` so others can open the link.")
    return ShareLink(url, note, this_computer=local)


@lru_cache(maxsize=1)
def network_address() -> str | None:
    """This machine's address on its network, or None when it has only loopback."""
    candidates = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            candidates.append(probe.getsockname()[0])
    except OSError:
        pass
    try:
        candidates.append(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    return next((c for c in candidates if not classroom.is_loopback(c)
                 and c != "0.0.0.0"), None)


def _listens_on_loopback_only() -> bool:
    address = st.get_option("server.address")
    return bool(address) and classroom.is_loopback(address)


# --- opening a link -------------------------------------------------------------------------------

def restore_from_link() -> None:
    """Apply a link's settings on the session's first run; show what was refused, every run."""
    if not st.session_state.get(state.LINK_RESTORED):
        st.session_state[state.LINK_RESTORED] = True
        st.session_state[state.LINK_NOTES] = _apply(dict(st.query_params))
    notes = st.session_state.get(state.LINK_NOTES)
    if notes:
        box = st.sidebar.container(border=True)
        box.warning("This link had settings that could not be used as they were:\n"
                    + "\n".join(f"- {text.md(note)}" for note in notes))
        if box.button("OK, hide this", key="link_notes_ok"):
            st.session_state[state.LINK_NOTES] = []
            st.rerun()


def _apply(params: dict[str, str]) -> list[str]:
    notes: list[str] = []
    in_class = classroom.enabled() and not door.is_host()     # a visitor, not the host
    for name in field_names():
        if name not in params:
            continue
        raw = params[name]
        shown = text.one_line(repr(raw), 80)
        label = field_info(name)["label"]
        if name == "model_id":
            entry = catalog.listed_entry(raw)
            if entry is None and in_class:
                notes.append(f"model {shown}: classroom mode runs only the listed models.")
                continue
            group = entry.weights if entry else catalog.OWN
            st.session_state[state.MODEL_GROUP] = group
            st.session_state[state.OWN_MODEL if group == catalog.OWN
                             else state.model_choice(group)] = raw
            continue
        try:
            value, clamped = _checked(name, raw)
        except ExplorerError as exc:
            notes.append(f"{label} = {shown}: {str(exc).rstrip('.')}; it keeps its default.")
            continue
        if clamped:
            notes.append(f"{label} = {shown}: {clamped}.")
        st.session_state[state.setting(name)] = value
    notes += _apply_explore(params, in_class)
    return notes


def _checked(name: str, raw: str) -> tuple[object, str | None]:
    """The value a link's parameter asks for, as a CLI argument would be checked (the same
    RunSpec metadata): refused when it is not a value of the setting at all, moved into this
    machine's range (with the reason) when it is one but out of range."""
    value = parse_value(name, raw)
    note = None
    if field_info(name)["type"] is not str:
        value, note = clamp(name, value)
    if name == "device" and value not in devices.available_devices():
        raise ExplorerError("this machine has no such device")
    RunSpec().replace(**{name: value})           # anything else the spec itself refuses
    return value, note


def _apply_explore(params: dict[str, str], in_class: bool) -> list[str]:
    notes = []
    mode = params.get("mode")
    if mode is not None:
        if mode in EXPLORE_MODES:
            state.keep(state.EXPLORE_MODE, EXPLORE_MODES[mode])
        else:
            notes.append(f"mode = {text.one_line(repr(mode), 80)}: use 'one' or 'two'.")
    for index, (factor_key, values_key) in enumerate((("factor", "values"),
                                                       ("factor2", "values2"))):
        if factor_key not in params:
            continue
        factor = FACTORS.get(current_name(params[factor_key]))   # an old link's name too
        if factor is None:
            notes.append(f"{factor_key} = {text.one_line(repr(params[factor_key]), 80)}: not a factor "
                         f"({', '.join(FACTORS)}).")
            continue
        state.keep(state.explore_factor(index), factor.name)
        if values_key not in params:
            continue
        shown = text.one_line(repr(params[values_key]), 80)
        try:
            values = _factor_values(factor, params[values_key], in_class)
        except ExplorerError as exc:
            notes.append(f"values of {factor.label} = {shown}: {str(exc).rstrip('.')}; the "
                         "default values are used.")
            continue
        if factor.numeric:
            values, moved = _clamped_values(factor, values)
            if moved:
                notes.append(f"values of {factor.label} = {shown}: {moved}.")
            values = ", ".join(str(v) for v in values)       # what the text box holds
        state.keep(state.explore_values(index, factor.name), values)
    metric = params.get("metric")
    if metric is not None:
        if metric in HEATMAP_METRICS:
            state.keep(state.HEATMAP_METRIC, metric)
        else:
            notes.append(f"metric = {text.one_line(repr(metric), 80)}: choose from "
                         f"{', '.join(HEATMAP_METRICS)}.")
    return notes


def _clamped_values(factor: Factor, values: list) -> tuple[list, str | None]:
    """Numeric factor values moved into this machine's range (duplicates dropped), and a note
    naming the ones that moved."""
    kept, moved = [], []
    for value in values:
        new, why = clamp(factor.field, value)
        if why:
            moved.append(f"{value} is {why}")
        if new not in kept:
            kept.append(new)
    return kept, "; ".join(moved) or None


def _factor_values(factor: Factor, typed: str, in_class: bool) -> list:
    if factor.numeric:
        return parse_values(factor, typed)
    values = [v.strip() for v in typed.split(",") if v.strip()]
    options = {"model": catalog.listed_ids(), "device": device_values(),
               "dtype": devices.supported_dtypes("cpu")}.get(factor.name) \
        or list(factor.default_values())
    unknown = [v for v in values if v not in options]
    if unknown or not values:
        why = "classroom mode runs only the listed models" if in_class and \
            factor.name == "model" else f"choose from {', '.join(map(str, options))}"
        raise ExplorerError(f"{', '.join(unknown) or 'nothing given'} can't be used: {why}.")
    return values


# --- making a link --------------------------------------------------------------------------------

def apply_params(params: dict[str, str]) -> None:
    """Set the sidebar and Explore's widgets from these link parameters now (what a page's
    "try this next" does before switching page); what can't be used is noted as a link's."""
    st.session_state[state.LINK_NOTES] = _apply(params)


def page_path(page: str) -> str:
    """The file of a page, for st.switch_page ("explore", "playground", ...)."""
    return str(Path(__file__).resolve().parents[2] / "pages" / f"{page}.py")


def spec_params(spec: RunSpec) -> dict[str, str]:
    """The settings that differ from the defaults, as query parameters."""
    defaults = RunSpec()
    return {name: str(value) for name, value in spec.to_dict().items()
            if value is not None and value != getattr(defaults, name)}


def share_link(spec: RunSpec, extra: dict[str, str] | None = None,
               caption: str | None = None) -> None:
    """Show a link that reopens this page with these settings (it does not start a run)."""
    link = build_share_link(st.context.url or "", {**spec_params(spec), **(extra or {})},
                            network_address(), _listens_on_loopback_only())
    with st.expander("Share these settings"):
        st.caption(caption or "Anyone opening this link sees this page with these settings "
                              "filled in; nothing runs until they press the button.")
        st.code(link.url, language=None)
        if link.note:
            st.caption(text.md(link.note))
        if link.this_computer:
            st.caption("On this computer only:")
            st.code(link.this_computer, language=None)
