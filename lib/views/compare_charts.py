"""History's comparisons of saved results: runs side by side (latency with its spread, or an
overview of latency, throughput and memory in three panels), and saved sweeps of the same
factor overlaid. Points, spreads, noise and estimates are drawn as in a sweep's own charts
(`lib.views.chart_marks`); every saved run's or sweep's name is escaped (`lib.core.text.html`).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lib.core import text
from lib.core.metrics import LATENCIES, METRICS, format_value
from lib.core.stats import Summary
from lib.measure.sweep import Factor
from lib.views.chart_marks import (COLORS, LATENCY_SERIES, STRONG, add_title, draw_series,
                                   hatch_legend, legend_below, measured_points, series,
                                   set_x_axis, x_values)


def compare_runs_figure(labelled: list[tuple[str, Summary]]) -> go.Figure:
    """Medians of TTFT, TPOT and end-to-end latency, one group of bars per saved run, with the
    spread of each as error bars (p10–p90, or the range below the percentile gate)."""
    figure, kinds = go.Figure(), []
    for metric, name, color in LATENCY_SERIES:
        values, up, down, hover = [], [], [], []
        for _, summary in labelled:
            dist = summary.metrics.get(metric)
            band = dist.band() if dist else None
            values.append(dist.median * 1000 if dist else None)
            up.append((band.high - dist.median) * 1000 if dist else None)
            down.append((dist.median - band.low) * 1000 if dist else None)
            if dist:
                kinds.append(band.kind)
                spread = f"{format_value(metric, band.low)} – {format_value(metric, band.high)}"
                hover.append(f"{format_value(metric, dist.median)} ("
                             + (f"p10–p90 {spread}, n={dist.n}" if band.kind == "p10–p90"
                                else f"range of {dist.n} samples: {spread}") + ")")
            else:
                hover.append("not measured")
        figure.add_trace(go.Bar(
            x=[text.html(label) for label, _ in labelled], y=values, name=name,
            marker_color=color,
            error_y={"type": "data", "symmetric": False, "array": up, "arrayminus": down,
                     "color": "rgba(60, 60, 60, 0.7)"},
            customdata=hover, hovertemplate=f"{name}: %{{customdata}}<extra>%{{x}}</extra>"))
    add_title(figure, "Saved runs side by side", kinds, "error bars")
    figure.update_layout(barmode="group",
                         yaxis_title="latency (ms)", height=440, margin={"t": 100})
    legend_below(figure)
    return figure


def compare_sweeps_figure(labelled: list[tuple[str, pd.DataFrame]], factor: Factor,
                          metric: str = "tpot_s") -> go.Figure:
    """One line (numeric factor) or group of bars (categorical) per saved sweep of the same
    factor: the metric's median at each value, with its spread as error bars."""
    figure, kinds, noisy, values = go.Figure(), [], False, []
    for index, (name, frame) in enumerate(labelled):
        measured = measured_points(frame)
        s = series(measured, factor, metric)
        color = qualitative.Plotly[index % len(qualitative.Plotly)]
        draw_series(figure, s, text.html(name), _rgb(color), factor, shaded=False)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
        values += list(x_values(measured, factor))
    hatch_legend(figure, factor, noisy, "estimate" in kinds)
    set_x_axis(figure, factor, values)
    metric_info = METRICS[metric]
    add_title(figure, f"Saved sweeps overlaid: {metric_info.short_label} vs {factor.label}",
              kinds, "error bars")
    figure.update_layout(
        yaxis_title=f"{metric_info.short_label} ({metric_info.display_unit})",
        yaxis_rangemode="tozero", height=440,
        hovermode="x unified", barmode="group", margin={"t": 100})
    legend_below(figure)
    return figure


def _rgb(hex_color: str) -> str:
    """'#636EFA' -> 'rgb(99, 110, 250)', the form `_band` can make transparent."""
    red, green, blue = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def compare_overview_figure(labelled: list[tuple[str, Summary]]) -> go.Figure:
    """Saved runs side by side in three panels with their own units: latency (TTFT, TPOT,
    end-to-end, ms), throughput (decode and total tokens/s) and peak memory (MB)."""
    memory = METRICS["peak_memory_bytes"]
    panels = (("Latency (ms, lower is better)", LATENCIES),
              ("Throughput (tokens/s, higher is better)",
               ("decode_tokens_per_s", "total_tokens_per_s")),
              (f"{memory.label} ({memory.display_unit})", ("peak_memory_bytes",)))
    figure = make_subplots(rows=1, cols=3, subplot_titles=[title for title, _ in panels])
    colors = {**COLORS, "decode_tokens_per_s": "rgb(0, 160, 120)",
              "total_tokens_per_s": "rgb(171, 99, 250)", "peak_memory_bytes": "rgb(120, 120, 120)"}
    labels = [text.html(label) for label, _ in labelled]
    for column, (_, names) in enumerate(panels, start=1):
        for name in names:
            metric = METRICS[name]
            values, ns = [], []
            for _, summary in labelled:
                dist = summary.metrics.get(name)
                values.append(dist.median * metric.display_scale if dist else None)
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
    scale = info.display_scale
    figure = go.Figure()
    for name, frame in labelled:
        measured = measured_points(frame)
        figure.add_trace(go.Scatter(
            x=x_values(measured, factor), y=measured[metric] * scale, name=text.html(name),
            # categories are dots: a line between two dtypes would suggest values in between
            mode="lines+markers" if factor.numeric else "markers",
            hovertemplate=f"%{{x}}: %{{y:.1f}} {info.display_unit}"
                          "<extra>%{fullData.name}</extra>"))
    figure.update_xaxes(title=factor.label, type=None if factor.numeric else "category")
    figure.update_layout(title=f"Saved sweeps overlaid: median {info.short_label} vs "
                               f"{factor.label}", yaxis_title=info.display_unit,
                         yaxis_rangemode="tozero", height=380, hovermode="x unified")
    return figure
