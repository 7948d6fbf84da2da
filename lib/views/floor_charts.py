"""The physical floor drawn on charts: a dashed line (or a dash over each bar) beside the data.

A latency cannot go below what the machine's memory bandwidth and arithmetic allow, and a
throughput cannot go above it (`lib.estimate.floors`, `lib.estimate.roofline`). Both are
estimates from the model's shapes and this machine's measured ceilings, so every trace drawn
here says "estimate" in its name and hover. Sweep charts call `add_sweep_floor` per metric with
the sweep table's `floor_<metric>` column, and the per-token chart calls `add_token_floors`.
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from lib.estimate import floors
from lib.core.metrics import LATENCIES, METRICS, format_value
from lib.core.results import Measurement
from lib.measure.factors import Factor
from lib.records.table import floor_column

FLOOR_WORDS = "physics limit, an estimate"
BAR_FLOOR_COLOR = "rgb(40, 40, 40)"


def floor_name(metric: str) -> str:
    kind = "floor" if metric in LATENCIES else "ceiling"
    return f"{METRICS[metric].short_label} {kind} ({FLOOR_WORDS})"


def add_sweep_floor(figure: go.Figure, measured: pd.DataFrame, factor: Factor, metric: str,
                    x: list, color: str, offsetgroup: str | None = None, **where) -> bool:
    """Draw `metric`'s floor over the sweep's measured points; False when there is none.
    Over bars, a dark dash as wide as a bar sits over its own bar (`offsetgroup`, the bar's,
    in a figure whose layout has scattermode="group"): in the bar's colour it would vanish
    into it."""
    column = floor_column(metric)
    if column not in measured:
        return False
    values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
              for v in measured[column]]
    if all(v is None for v in values):
        return False
    scale = METRICS[metric].display_scale
    y = [None if v is None else v * scale for v in values]
    hover = [f"{format_value(metric, v)}" if v is not None else "" for v in values]
    style = {"color": color, "width": 2, "dash": "dash"}
    trace = go.Scatter(
        x=x, y=y, name=floor_name(metric), customdata=hover, legendgroup=f"floor-{metric}",
        hovertemplate="%{fullData.name}: %{customdata}<extra></extra>",
        **({"mode": "lines", "line": style} if factor.numeric else
           {"mode": "markers", "offsetgroup": offsetgroup,
            "marker": {"symbol": "line-ew-open", "size": 30, "color": BAR_FLOOR_COLOR,
                       "line": {"width": 3, "color": BAR_FLOOR_COLOR}}}))
    figure.add_trace(trace, **where)
    return True


def add_token_floors(figure: go.Figure, measurement: Measurement, tpot_color: str,
                     ttft_color: str) -> bool:
    """The per-token chart: a dashed line at the decode-step floor, a hollow diamond at the
    first token's floor."""
    limits = floors.metric_floors(measurement)
    if not limits:
        return False
    if "tpot_s" in limits and measurement.spec.new_tokens > 1:
        figure.add_trace(go.Scatter(
            x=[2, measurement.spec.new_tokens], y=[limits["tpot_s"] * 1000] * 2, mode="lines",
            line={"color": tpot_color, "width": 2, "dash": "dash"}, name=floor_name("tpot_s"),
            hovertemplate=f"%{{fullData.name}}: {format_value('tpot_s', limits['tpot_s'])}"
                          "<extra></extra>"))
    figure.add_trace(go.Scatter(
        x=[1], y=[limits["ttft_s"] * 1000], mode="markers",
        marker={"color": ttft_color, "size": 11, "symbol": "diamond-open", "line": {"width": 2}},
        name=floor_name("ttft_s"),
        hovertemplate=f"%{{fullData.name}}: {format_value('ttft_s', limits['ttft_s'])}"
                      "<extra></extra>"))
    return True
