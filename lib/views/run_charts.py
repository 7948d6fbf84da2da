"""One run's charts, from a Measurement's raw rows (lib.records.export): how long each generated
token took (a causal LM), or each request (an encoder). Names and units come from
lib.core.metrics; nothing here summarizes data again. Pages only display the figures.

The number of traces doesn't grow with the data: beyond REPETITION_LINES repetitions, the
per-token chart draws a p10–p90 band instead of one line per repetition. Where the machine's
ceilings were recorded, the per-token chart carries a dashed floor (`lib.views.floor_charts`),
named as an estimate. An estimate (nothing was timed) is one modelled line, named so.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from lib.core.results import Measurement
from lib.records.export import request_latency_rows, token_latency_rows
from lib.views import floor_charts
from lib.views.chart_marks import STRONG, TTFT_COLOR, legend_below

FAINT = "rgba(99, 110, 250, 0.25)"
# Up to this many repetitions each is its own faint line; beyond, one p10–p90 band stands for
# them all. One trace per repetition took minutes to build and draw for 20,000 repetitions.
REPETITION_LINES = 100
# Encoders: one bar per request up to this many (a run stops at 1000), one line beyond.
REQUEST_BARS = 1000


def token_latency_figure(measurement: Measurement) -> go.Figure:
    """Latency of every generated token: TTFT for token 1, then each inter-token gap. Each
    repetition is a faint line, or, beyond REPETITION_LINES of them, the band where the middle
    80% of them lie at each token: at most 4 traces, however many repetitions. An estimate
    is one modelled line, named so (`estimated_token_figure`)."""
    if not measurement.measured:
        return estimated_token_figure(measurement)
    frame = _frame(token_latency_rows(measurement), ("repetition", "token_index", "latency_s"))
    frame["latency_ms"] = frame["latency_s"] * 1000
    figure = go.Figure()
    decode = frame[frame["token_index"] > 1]
    repetitions = len(measurement.repetitions)
    if repetitions <= REPETITION_LINES:
        for repetition, rows in decode.groupby("repetition"):
            figure.add_trace(go.Scatter(
                x=rows["token_index"], y=rows["latency_ms"], mode="lines",
                line={"color": FAINT, "width": 1}, name="single repetitions",
                legendgroup="reps", showlegend=bool(repetition == 1),
                hovertemplate="token %{x}: %{y:.1f} ms<extra>repetition " + str(repetition)
                              + "</extra>"))
    elif not decode.empty:
        by_token = decode.groupby("token_index")["latency_ms"]
        low, high = by_token.quantile(0.1), by_token.quantile(0.9)
        figure.add_trace(go.Scatter(x=high.index, y=high.values, mode="lines", line={"width": 0},
                                    showlegend=False, hoverinfo="skip", legendgroup="reps"))
        figure.add_trace(go.Scatter(
            x=low.index, y=low.values, mode="lines", line={"width": 0}, fill="tonexty",
            fillcolor=FAINT, legendgroup="reps", hoverinfo="skip",
            name=f"middle 80% of {repetitions:,} repetitions (p10–p90 of each token)"))
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
    floor_charts.add_token_floors(figure, measurement, STRONG, TTFT_COLOR)
    figure.add_annotation(x=1, y=ttft_median, text=f"TTFT {ttft_median:.0f} ms", showarrow=True,
                          arrowhead=2, ax=40, ay=-30, font={"color": TTFT_COLOR})
    return _token_layout(figure, "How long each generated token took")


def estimated_token_figure(measurement: Measurement) -> go.Figure:
    """An estimate's per-token chart: the modelled TTFT and one line at the modelled TPOT,
    named "estimate", dotted, with no repetitions, median or spread (nothing was timed)."""
    frame = _frame(token_latency_rows(measurement), ("repetition", "token_index", "latency_s"))
    frame = frame[frame["repetition"] == 1]          # an estimate is one computed repetition
    frame["latency_ms"] = frame["latency_s"] * 1000
    decode = frame[frame["token_index"] > 1]
    figure = go.Figure()
    if not decode.empty:
        figure.add_trace(go.Scatter(
            x=decode["token_index"], y=decode["latency_ms"], mode="lines",
            line={"color": STRONG, "width": 3, "dash": "dot"}, name="estimate",
            hovertemplate="token %{x}: %{y:.1f} ms (estimated)<extra></extra>"))
    ttft_ms = float(frame["latency_ms"].iloc[0])
    figure.add_trace(go.Scatter(
        x=[1], y=[ttft_ms], mode="markers",
        marker={"color": TTFT_COLOR, "size": 11, "symbol": "diamond-open", "line": {"width": 2}},
        name="first token (TTFT, includes prefill): estimate",
        hovertemplate="TTFT: %{y:.1f} ms (estimated)<extra></extra>"))
    figure.add_annotation(x=1, y=ttft_ms, text=f"TTFT {ttft_ms:.0f} ms (estimate)",
                          showarrow=True, arrowhead=2, ax=40, ay=-30, font={"color": TTFT_COLOR})
    return _token_layout(figure, "ESTIMATE, not measured: how long each generated token would take")


def _token_layout(figure: go.Figure, title: str) -> go.Figure:
    """The per-token chart's axes and legend, measured or estimated alike."""
    figure.update_layout(
        title=title,
        xaxis_title="generated token (1 = first token)", yaxis_title="latency (ms)",
        yaxis_rangemode="tozero", hovermode="closest", height=460, margin={"t": 80})
    legend_below(figure)              # above the plot, a long title ran into it
    return figure


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """These columns of tidy rows, read column by column: for half a million rows (1000
    repetitions of 512 tokens) a fraction of the time pandas takes reading dicts row by row."""
    return pd.DataFrame({key: [row[key] for row in rows] for key in columns})


def request_latency_figure(measurement: Measurement) -> go.Figure:
    """Encoders: one bar per timed request (the whole batch in one forward pass); one line
    through them beyond REQUEST_BARS requests."""
    frame = pd.DataFrame(request_latency_rows(measurement))
    frame["latency_ms"] = frame["latency_s"] * 1000
    median = frame["latency_ms"].median()
    requests = {"x": frame["repetition"], "y": frame["latency_ms"], "name": "one request",
                "hovertemplate": "repetition %{x}: %{y:.1f} ms<extra></extra>"}
    figure = go.Figure(go.Bar(marker_color=STRONG, **requests) if len(frame) <= REQUEST_BARS
                       else go.Scatter(mode="lines", line={"color": STRONG, "width": 1},
                                       **requests))
    what = f"batch {measurement.spec.batch_size} x {measurement.spec.prompt_tokens} tokens"
    if not measurement.measured:         # one computed request: no median of anything
        figure.update_traces(name="estimate", marker_pattern_shape="/",
                             hovertemplate="%{y:.1f} ms (estimated)<extra></extra>")
        figure.update_layout(title=f"ESTIMATE, not measured: how long a request would take "
                                   f"({what})", xaxis_title="estimated request",
                             yaxis_title="latency (ms)", yaxis_rangemode="tozero", height=380,
                             showlegend=True)
        return figure
    figure.add_hline(y=median, line_dash="dash", line_color=TTFT_COLOR,
                     annotation_text=f"median {median:.1f} ms")
    figure.update_layout(
        title=f"How long each request took ({what})",
        xaxis_title="timed repetition", yaxis_title="latency (ms)", yaxis_rangemode="tozero",
        height=380, showlegend=False)
    return figure
