"""'This machine' on the Playground: its measured ceilings, and a button to measure them again.

Memory bandwidth, arithmetic per number format and the fixed cost per layer, measured once (a
few seconds, in the measurement slot so no run is disturbed) and kept (`lib.machine.ceilings`).
"""

from __future__ import annotations

import streamlit as st

from lib.core import text
from lib.ui.progress import Failed, LiveProgress, error_boundary


def machine_panel() -> None:
    """'This machine': its measured ceilings (memory bandwidth, arithmetic per number format,
    the fixed cost per layer), measured once, a few seconds, in the measurement slot so no run
    is disturbed, and refreshable."""
    from lib.machine import capability, ceilings, devices
    from lib.core.metrics import format_bytes

    with st.expander("This machine: how fast its memory and arithmetic are"):
        st.caption("Every latency has a floor: the time to move the model's bytes at this "
                   "machine's memory speed, or to do its arithmetic at its peak, whichever is "
                   "longer. These ceilings are measured here (a large memory copy, large matrix "
                   "products), when the machine is quiet, and kept: a measurement taken while "
                   "other programs are busy never lowers them.")
        found = {device: ceilings.cached(device) for device in devices.available_devices()}
        for device, measured in found.items():
            if measured is None:
                st.caption(f"{device}: not measured yet (the first run measures it).")
                continue
            flops = ", ".join(f"{dtype} {value / 1e9:,.0f} GFLOP/s"
                              for dtype, value in measured.matmul_flops_per_s.items())
            overhead = (f"; about {measured.layer_overhead_s * 1e3:.2f} ms per layer per token "
                        "in eager transformers" if measured.layer_overhead_s else "")
            st.markdown(text.md(
                f"{device}: memory {format_bytes(measured.memory_bandwidth_bytes_per_s)}/s; "
                f"matrix arithmetic {flops}{overhead}. ({measured.source})"))
            last = capability.last_reading(measured)   # a busy attempt, and what became of it
            if last:
                st.caption(text.md(last[0].upper() + last[1:]))
        if st.button("Measure again" if any(found.values()) else "Measure now",
                     help="A few seconds; waits for any run in progress to finish first."):
            panel = LiveProgress()
            panel.show("**Measuring** this machine's ceilings (a few seconds)…", 0.0)
            try:
                with error_boundary(panel.done):
                    for device in found:       # each waits for the measurement slot itself
                        ceilings.machine_ceilings(
                            device, refresh=True, on_wait=panel.queued,
                            on_progress=lambda what, fraction: panel.show(
                                f"**Measuring** this machine's ceilings: {text.md(what)}",
                                fraction))
            except Failed:
                return
            panel.done()
            st.rerun()
