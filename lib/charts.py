"""Plotly figures, built from a Measurement's raw rows (lib.report) or a sweep's tidy table
(lib.table, as a DataFrame). Names, labels and units come from lib.metrics; nothing here
summarizes data again. Pages only display the figures."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from lib.metrics import BYTES, LATENCIES, METRICS, SECONDS
from lib.report import request_latency_rows, token_latency_rows
from lib.results import Measurement
from lib.stats import Summary
from lib.sweep import Factor
from lib.table import Status, stat_column

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


# --- sweeps ------------------------------------------------------------------------------------

COLORS = {"ttft_s": "rgb(239, 85, 59)", "tpot_s": "rgb(99, 110, 250)",
          "e2e_s": "rgb(0, 160, 120)"}
LATENCY_SERIES = tuple((name, METRICS[name].short_label, COLORS[name]) for name in LATENCIES)


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == Status.MEASURED]


def _x(measured: pd.DataFrame, factor: Factor) -> pd.Series:
    values = measured[factor.column]
    return values if factor.numeric else values.astype(str)


def _band(x, low, high, color: str, name: str) -> list[go.Scatter]:
    """A shaded p10-p90 band: the upper edge, then the lower edge filled up to it."""
    fill = color.replace("rgb", "rgba").replace(")", ", 0.15)")
    return [go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, showlegend=False,
                       hoverinfo="skip", legendgroup=name),
            go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                       fillcolor=fill, showlegend=False, hoverinfo="skip", legendgroup=name)]


def _axis(figure: go.Figure, factor: Factor, values=None) -> None:
    label = factor.label
    if not factor.numeric:
        figure.update_xaxes(type="category", title=label)
    elif factor.doubling:
        ticks = sorted(set(values)) if values is not None else None
        figure.update_xaxes(type="log", title=f"{label} (log scale: each step doubles)",
                            tickvals=ticks, ticktext=[str(t) for t in ticks] if ticks else None)
    else:
        figure.update_xaxes(title=label)


def sweep_latency_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    label = factor.label
    measured = _measured(frame)
    x = _x(measured, factor)
    figure = go.Figure()
    for metric, name, color in LATENCY_SERIES:
        if measured[metric].isna().all():
            continue
        figure.add_traces(_band(x, measured[stat_column(metric, "p10")] * 1000,
                                measured[stat_column(metric, "p90")] * 1000, color, name))
        figure.add_trace(go.Scatter(
            x=x, y=measured[metric] * 1000, mode="lines+markers", name=f"{name} (median)",
            line={"color": color, "width": 3}, legendgroup=name,
            customdata=pd.DataFrame({
                "p10_ms": measured[stat_column(metric, "p10")] * 1000,
                "p90_ms": measured[stat_column(metric, "p90")] * 1000,
                "n": measured[stat_column(metric, "n")]}).to_numpy(),
            hovertemplate=f"{label} %{{x}}<br>{name}: %{{y:.1f}} ms (p10 %{{customdata[0]:.1f}}"
                          " – p90 %{customdata[1]:.1f}, n=%{customdata[2]})<extra></extra>"))
    _axis(figure, factor, x)
    figure.update_layout(title=f"Latency vs {label} (median; band: p10–p90)",
                         yaxis_title="latency (ms)", yaxis_rangemode="tozero", height=420,
                         hovermode="x unified",
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return figure


def sweep_throughput_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    label = factor.label
    from plotly.subplots import make_subplots

    measured = _measured(frame)
    x = _x(measured, factor)
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    tokens = "decode_tokens_per_s" if measured["decode_tokens_per_s"].notna().any() \
        else "total_tokens_per_s"
    figure.add_trace(go.Scatter(
        x=x, y=measured[tokens], mode="lines+markers", line={"color": STRONG, "width": 3},
        name="decode tokens/s" if tokens == "decode_tokens_per_s" else "tokens/s",
        customdata=measured[[stat_column(tokens, "n")]].to_numpy(),
        hovertemplate="%{x}: %{y:.1f} tokens/s (n=%{customdata[0]})<extra></extra>"),
        secondary_y=False)
    figure.add_trace(go.Scatter(
        x=x, y=measured["requests_per_s"], mode="lines+markers", name="requests/s",
        line={"color": TTFT_COLOR, "width": 2, "dash": "dot"},
        hovertemplate="%{x}: %{y:.2f} requests/s<extra></extra>"), secondary_y=True)
    _axis(figure, factor, x)
    figure.update_yaxes(title_text="tokens per second", rangemode="tozero", secondary_y=False)
    figure.update_yaxes(title_text="requests per second", rangemode="tozero", secondary_y=True)
    figure.update_layout(title=f"Throughput vs {label} (medians)", height=420,
                         hovermode="x unified",
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return figure


def sweep_tradeoff_figure(frame: pd.DataFrame) -> go.Figure:
    """Batch sweeps: what each user waits per token vs what the machine produces."""
    measured = _measured(frame)
    measured = measured[measured["tpot_s"].notna()]
    figure = go.Figure(go.Scatter(
        x=measured["tpot_s"] * 1000, y=measured["decode_tokens_per_s"], mode="lines+markers+text",
        text=[f"batch {b}" for b in measured["batch_size"]], textposition="top left",
        line={"color": STRONG, "width": 2}, marker={"size": 9},
        hovertemplate="%{text}: %{x:.1f} ms per token, %{y:.1f} tokens/s<extra></extra>"))
    figure.update_layout(
        title="The batching trade-off: more total throughput, slower tokens for each user",
        xaxis_title="time per output token for each user (ms)",
        yaxis_title="decode throughput, all users (tokens/s)", height=420,
        xaxis_rangemode="tozero", yaxis_rangemode="tozero")
    return figure


def sweep_memory_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    label = factor.label
    measured = _measured(frame)
    x = _x(measured, factor)
    figure = go.Figure(go.Scatter(
        x=x, y=measured["peak_memory_bytes"] / 2**20, mode="lines+markers",
        line={"color": "rgb(171, 99, 250)", "width": 3}, name="peak memory",
        hovertemplate="%{x}: %{y:.0f} MB<extra></extra>"))
    _axis(figure, factor, x)
    figure.update_layout(title=f"Peak memory vs {label}", yaxis_title="MB", height=360,
                         hovermode="x unified",
                         yaxis_rangemode="tozero")
    return figure


def sweep_heatmap_figure(frame: pd.DataFrame, factor_x: Factor, factor_y: Factor,
                         metric: str) -> go.Figure:
    label_x, label_y, metric_label = factor_x.label, factor_y.label, METRICS[metric].titled
    measured = _measured(frame)
    grid = measured.pivot_table(index=factor_y.column, columns=factor_x.column,
                                values=metric, aggfunc="first")
    scale = {SECONDS: 1000, BYTES: 1 / 2**20}.get(METRICS[metric].unit, 1)
    unit = METRICS[metric].display_unit
    figure = go.Figure(go.Heatmap(
        z=grid.to_numpy() * scale, x=[str(v) for v in grid.columns],
        y=[str(v) for v in grid.index], colorscale="Viridis",
        texttemplate="%{z:.1f}", colorbar={"title": unit},
        hovertemplate=f"{label_x} %{{x}}, {label_y} %{{y}}: %{{z:.1f}} {unit}<extra></extra>"))
    figure.update_layout(title=f"{metric_label} for each {label_x} x {label_y}",
                         xaxis_title=label_x, yaxis_title=label_y, height=460,
                         xaxis_type="category", yaxis_type="category")
    return figure


# --- history: comparing saved results ------------------------------------------------------------

def compare_runs_figure(labelled: list[tuple[str, Summary]]) -> go.Figure:
    """Medians of TTFT, TPOT and end-to-end latency, one group of bars per saved run."""
    figure = go.Figure()
    for metric, name, color in LATENCY_SERIES:
        values, ns = [], []
        for _, summary in labelled:
            dist = summary.metrics.get(metric)
            values.append(dist.median * 1000 if dist else None)
            ns.append(dist.n if dist else 0)
        figure.add_trace(go.Bar(
            x=[label for label, _ in labelled], y=values, name=name, marker_color=color,
            customdata=ns, hovertemplate=f"{name}: %{{y:.1f}} ms (n=%{{customdata}})"
                                         "<extra>%{x}</extra>"))
    figure.update_layout(title="Saved runs side by side (medians)", barmode="group",
                         yaxis_title="latency (ms)", height=420,
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return figure


def compare_sweeps_figure(labelled: list[tuple[str, pd.DataFrame]], factor: Factor,
                          metric: str = "tpot_s") -> go.Figure:
    """One line per saved sweep of the same factor: the metric's median at each value."""
    figure = go.Figure()
    for name, frame in labelled:
        measured = _measured(frame)
        figure.add_trace(go.Scatter(
            x=_x(measured, factor), y=measured[metric] * 1000, mode="lines+markers", name=name,
            customdata=measured[[stat_column(metric, "n")]].to_numpy(),
            hovertemplate="%{x}: %{y:.1f} ms (n=%{customdata[0]})<extra>" + name + "</extra>"))
    figure.update_xaxes(title=factor.label, type=None if factor.numeric else "category")
    figure.update_layout(
        title=f"Saved sweeps overlaid: median {METRICS[metric].short_label} vs {factor.label}",
        yaxis_title="ms", yaxis_rangemode="tozero", height=420, hovermode="x unified")
    return figure


def compare_overview_figure(labelled: list[tuple[str, Summary]]) -> go.Figure:
    """Saved runs side by side in three panels with their own units: latency (TTFT, TPOT,
    end-to-end, ms), throughput (decode and total tokens/s) and peak memory (MB)."""
    from plotly.subplots import make_subplots

    panels = (("Latency (ms, lower is better)", LATENCIES),
              ("Throughput (tokens/s, higher is better)",
               ("decode_tokens_per_s", "total_tokens_per_s")),
              ("Peak memory (MB)", ("peak_memory_bytes",)))
    figure = make_subplots(rows=1, cols=3, subplot_titles=[title for title, _ in panels])
    colors = {**COLORS, "decode_tokens_per_s": "rgb(0, 160, 120)",
              "total_tokens_per_s": "rgb(171, 99, 250)", "peak_memory_bytes": "rgb(120, 120, 120)"}
    scale = {SECONDS: 1000, BYTES: 1e-6}
    labels = [label for label, _ in labelled]
    for column, (_, names) in enumerate(panels, start=1):
        for name in names:
            metric = METRICS[name]
            values, ns = [], []
            for _, summary in labelled:
                dist = summary.metrics.get(name)
                values.append(dist.median * scale.get(metric.unit, 1) if dist else None)
                ns.append(dist.n if dist else 0)
            figure.add_trace(go.Bar(
                x=labels, y=values, name=metric.short_label,
                marker_color=colors.get(name, STRONG), customdata=ns,
                hovertemplate=f"{metric.short_label}: %{{y:.1f}} {metric.display_unit} "
                              "(n=%{customdata})<extra>%{x}</extra>"), row=1, col=column)
    figure.update_layout(title="Saved runs side by side (medians)", barmode="group", height=440,
                         legend={"orientation": "h", "y": -0.15, "x": 0})
    figure.update_yaxes(rangemode="tozero")
    return figure


def compare_sweeps_metric_figure(labelled: list[tuple[str, pd.DataFrame]], factor: Factor,
                                 metric: str) -> go.Figure:
    """One line per saved sweep of the same factor, for any metric, in its display unit."""
    info = METRICS[metric]
    scale = {SECONDS: 1000, BYTES: 1e-6}.get(info.unit, 1)
    figure = go.Figure()
    for name, frame in labelled:
        measured = _measured(frame)
        figure.add_trace(go.Scatter(
            x=_x(measured, factor), y=measured[metric] * scale, mode="lines+markers", name=name,
            hovertemplate=f"%{{x}}: %{{y:.1f}} {info.display_unit}<extra>{name}</extra>"))
    figure.update_xaxes(title=factor.label, type=None if factor.numeric else "category")
    figure.update_layout(title=f"Saved sweeps overlaid: median {info.short_label} vs "
                               f"{factor.label}", yaxis_title=info.display_unit,
                         yaxis_rangemode="tozero", height=380, hovermode="x unified")
    return figure
