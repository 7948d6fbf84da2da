"""Explore's form: the values of each factor (picked from a list, or numbers typed with
commas), and what a sweep would meet before it runs: the points that will be skipped, by why
(`sweep_skips`), and those the memory guard would refuse now (`sweep_memory_note`). Labels
come from the factor (`lib.measure.Factor`), values in words as the sidebar names them.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from lib.core import text
from lib.core.errors import ExplorerError
from lib.core.metrics import format_bytes
from lib.core.spec import RunSpec
from lib.core.stacks import STACKS, TRANSFORMERS, check_format
from lib.machine import devices
from lib.measure import backends, runner
from lib.models import catalog
from lib.ui import state
from lib.ui.running import model_cache
from lib.ui.sidebar import STACK_SETTING_LABELS, dtype_options, stack_option
from lib.measure.factors import (PRUNE_OPTIONS, Factor, device_values, grid, parse_values,
                                 point_spec)


FORMAT_SKIP = "the stack doesn't run that format"


def sweep_skips(base: RunSpec, factor_values: list) -> dict[str, int]:
    """Explore: the points of the grid that will be skipped before anything runs, counted by
    why ({"the stack doesn't run that format": 13}), judged quietly as the sweep will judge
    them (settings, the stack's formats, the backend's check). The memory guard is
    `sweep_memory_note`'s; an estimate is judged against its hardware, in the sweep."""
    reasons: dict[str, int] = {}
    for values in grid(factor_values):
        try:
            spec = point_spec(base, factor_values, values)
        except ExplorerError as exc:
            reasons[_first_sentence(exc)] = reasons.get(_first_sentence(exc), 0) + 1
            continue
        if spec.hardware is not None:
            continue
        try:
            check_format(spec.stack, spec.dtype)
        except ExplorerError:
            reasons[FORMAT_SKIP] = reasons.get(FORMAT_SKIP, 0) + 1
            continue
        try:
            backends.for_spec(spec).check(catalog.get_entry(spec.model_id), spec)
        except ExplorerError as exc:
            reasons[_first_sentence(exc)] = reasons.get(_first_sentence(exc), 0) + 1
    return reasons


def _first_sentence(exc: Exception) -> str:
    """An error's first sentence, to stand for the points it stops: 'ONNX Runtime is not
    installed on this machine'."""
    return str(exc).split(". ")[0].rstrip(".")


def sweep_memory_note(base: RunSpec, factor_values: list) -> tuple[int, int, str | None]:
    """Explore: how many points of the grid the memory guard would refuse right now.

    Returns (refused, total, a sentence naming the refused points or None). Each point is judged
    by the backend's `assess_memory`, as the sweep's guard will judge it.
    """
    refused = []
    points = grid(factor_values)
    by_name = {factor.name: factor for factor, _ in factor_values}
    for values in points:
        try:
            spec = point_spec(base, factor_values, values)
            if spec.hardware is not None:
                continue             # an estimate: judged against its hardware, in the sweep
            entry = catalog.get_entry(spec.model_id)
            backend = backends.for_spec(spec)
            backend.check(entry, spec)
            verdict = runner.memory_verdict(spec, model_cache())
            if not verdict.fits:
                refused.append((values, verdict))
        except ExplorerError:
            continue                 # skipped for another reason, which the sweep records
    if not refused:
        return 0, len(points), None
    names = "; ".join(", ".join(f"{by_name[n].label} {by_name[n].value_label(v)}"
                                for n, v in values.items())
                      for values, _verdict in refused[:5])
    more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
    first = refused[0][1]
    return len(refused), len(points), (
        f"{len(refused)} of {len(points)} points don't fit in the memory free now and will be "
        f"refused: {names}{more}. The first needs about {format_bytes(first.need.total_bytes)} "
        f"and {format_bytes(first.available_bytes)} is available. {first.advice}")


ESTIMATE_CAPTION = (
    "Values marked **(estimate)** are hardware profiles, not devices of this machine: their "
    "points are estimates from a model of that hardware (its published bandwidth and FLOP/s "
    "plus the software stack's overheads), computed in a moment and never measured. This "
    "machine's devices are measured as usual. The dashed floors still apply: each point's is "
    "the physics limit of its own hardware.")


STACK_CAPTION = (
    "Each stack runs the same model with the same prompt and output length, timed the same way. "
    "A stack that isn't installed here, or doesn't run a point's number format, makes that "
    f"point a skipped one: the table and the chart say why. {STACK_SETTING_LABELS} apply to "
    "transformers only.")


def factor_options(factor: Factor, device: str, stack: str = TRANSFORMERS,
                   other: str | None = None) -> list:
    """The values Explore offers for a factor picked from a list: for the device factor, this
    machine's devices (measured) and then every hardware profile (estimated); for the number
    format, the sidebar's stack's formats, or every format when the other factor is the stack
    (a stack x format grid: the cells a stack doesn't run are skipped, and say so)."""
    if factor.name == "dtype":
        return devices.supported_dtypes(device) if other == "stack" \
            else dtype_options(stack, device)
    return {"model": catalog.listed_ids(), "device": device_values(),
            "prune": list(PRUNE_OPTIONS)}.get(factor.name) or list(factor.default_values())


def option_label(factor: Factor, value: Any) -> str:
    """'SmolLM2 135M Instruct', 'cpu', 'NVIDIA H200 SXM 141GB (estimate)', 'llama.cpp'."""
    if factor.name == "model":
        return catalog.get_entry(value).display_name
    if factor.name == "stack":
        return stack_option(value)
    return factor.value_label(value) + (" (estimate)" if factor.estimated(value) else "")


def factor_values_input(factor: Factor, index: int, device: str,
                        stack: str = TRANSFORMERS, other: str | None = None) -> list | None:
    """Explore: the values of one factor, picked from a list or typed as numbers with commas.
    `stack`: the sidebar's; `other`: the other factor of a two-factor sweep."""
    key = state.explore_values(index, factor.name)
    if not factor.numeric:
        options = factor_options(factor, device, stack, other)
        if key in st.session_state and not set(st.session_state[key]) <= set(options):
            # Formats of another stack (the sidebar's changed): keep those still offered.
            st.session_state[key] = [v for v in st.session_state[key] if v in options]
        # Values kept from another page or a link are in session state; a default too conflicts.
        defaults = {} if key in st.session_state else \
            {"default": [v for v in factor.default_values() if v in options]}
        chosen = st.multiselect(
            f"Values of {factor.label}", options, **defaults, key=key,
            format_func=lambda v: option_label(factor, v))
        if factor.name == "device":
            st.caption(ESTIMATE_CAPTION)
        if factor.name == "stack":
            st.caption(STACK_CAPTION)
            for name in chosen or []:
                if STACKS[name].optional and not STACKS[name].installed:
                    st.info(text.md(STACKS[name].missing_reason()))
        return chosen or None
    if key not in st.session_state:
        st.session_state[key] = ", ".join(str(v) for v in factor.default_values())
    typed = st.text_input(f"Values of {factor.label} (comma-separated)", key=key)
    try:
        return parse_values(factor, typed)
    except ExplorerError as exc:
        st.error(text.md(exc))
        return None
