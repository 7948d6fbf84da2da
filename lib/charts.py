"""Plotly figures, built from the tidy rows that lib.report produces. Pages only display them."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from lib.engine import Measurement
from lib.report import request_latency_rows, token_latency_rows

FAINT = "rgba(99, 110, 250, 0.25)"
STRONG = "rgb(99, 110, 250)"
TTFT_COLOR = "rgb(239, 85, 59)"


def token_latency_figure(measurement: Measurement) -> go.Figure:
    """Latency of every generated token: TTFT for token 1, then each inter-token gap."""
    frame = pd.DataFrame(token_latency_rows(measurement))
    frame["latency_ms"] = frame["latency_s"] * 1000
    figure = go.Figure()
    decode = frame[frame["token_index"] > 1]
    for repetition, rows in decode.groupby("repetition"):
        figure.add_trace(go.Scatter(
            x=rows["token_index"], y=rows["latency_ms"], mode="lines",
            line={"color": FAINT, "width": 1}, name="single repetitions",
            legendgroup="reps", showlegend=bool(repetition == 1),
            hovertemplate="token %{x}: %{y:.1f} ms<extra>repetition " + str(repetition) + "</extra>"))
    if not decode.empty:
        median = decode.groupby("token_index")["latency_ms"].median().reset_index()
        figure.add_trace(go.Scatter(
            x=median["token_index"], y=median["latency_ms"], mode="lines+markers",
            line={"color": STRONG, "width": 3}, marker={"size": 5},
            name=f"median over {frame['repetition'].nunique()} repetitions",
            hovertemplate="token %{x}: median %{y:.1f} ms<extra></extra>"))
    first = frame[frame["token_index"] == 1]
    ttft_median = first["latency_ms"].median()
    figure.add_trace(go.Scatter(
        x=[1] * len(first), y=first["latency_ms"], mode="markers",
        marker={"color": TTFT_COLOR, "size": 11, "symbol": "diamond"},
        name="first token (TTFT, includes prefill)",
        hovertemplate="TTFT: %{y:.1f} ms<extra></extra>"))
    figure.add_annotation(x=1, y=ttft_median, text=f"TTFT {ttft_median:.0f} ms", showarrow=True,
                          arrowhead=2, ax=40, ay=-30, font={"color": TTFT_COLOR})
    figure.update_layout(
        title="How long each generated token took",
        xaxis_title="generated token (1 = first token)", yaxis_title="latency (ms)",
        yaxis_rangemode="tozero", hovermode="closest", height=420,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"t": 80})
    return figure


def request_latency_figure(measurement: Measurement) -> go.Figure:
    """Encoders: one bar per timed request (the whole batch in one forward pass)."""
    frame = pd.DataFrame(request_latency_rows(measurement))
    frame["latency_ms"] = frame["latency_s"] * 1000
    median = frame["latency_ms"].median()
    figure = go.Figure(go.Bar(
        x=frame["repetition"], y=frame["latency_ms"], marker_color=STRONG,
        name="one request", hovertemplate="repetition %{x}: %{y:.1f} ms<extra></extra>"))
    figure.add_hline(y=median, line_dash="dash", line_color=TTFT_COLOR,
                     annotation_text=f"median {median:.1f} ms")
    figure.update_layout(
        title=f"How long each request took (batch {measurement.spec.batch_size} x "
              f"{measurement.spec.prompt_tokens} tokens)",
        xaxis_title="timed repetition", yaxis_title="latency (ms)", yaxis_rangemode="tozero",
        height=380, showlegend=False)
    return figure
