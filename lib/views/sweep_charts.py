"""A sweep's charts, from its tidy table (lib.records.table, as a DataFrame): latency,
throughput, memory and the batching trade-off against one factor, and a heatmap for two.
How each point, its spread, noise and estimate are drawn is `lib.views.chart_marks`'s. Where the
machine's ceilings were recorded, latency charts carry a dashed floor and throughput charts a
dashed ceiling (`lib.views.floor_charts`), named as estimates. Pages only display the figures.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lib.core import text
from lib.core.metrics import METRICS, format_number, format_value
from lib.measure.factors import FACTORS, Factor
from lib.records.table import Status, is_estimated
from lib.views import floor_charts
from lib.views.chart_marks import (ESTIMATE_WORDS, LATENCY_SERIES, MEMORY_COLOR, NOISY_COLOR,
                                   NOISY_RING, STRONG, TTFT_COLOR, add_title, category_label,
                                   draw_series, hatch_legend, legend_below, measured_points,
                                   scatter_mode, series, set_x_axis, spread_shape, table_rows,
                                   x_values)
from lib.views.comparable import is_noisy, noise_reason


def sweep_latency_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    measured = measured_points(frame)
    figure, kinds, noisy = go.Figure(), [], False
    for metric, name, color in LATENCY_SERIES:
        if measured[metric].isna().all():
            continue
        s = series(measured, factor, metric)
        draw_series(figure, s, f"{name} (median)", color, factor, group=metric)
        floor_charts.add_sweep_floor(figure, measured, factor, metric, s.x, color,
                                     offsetgroup=metric)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
    hatch_legend(figure, factor, noisy, "estimate" in kinds)
    set_x_axis(figure, factor, x_values(measured, factor))
    add_title(figure, f"Latency vs {factor.label}", kinds, spread_shape(factor))
    figure.update_layout(yaxis_title="latency (ms)", yaxis_rangemode="tozero", height=440,
                         hovermode="x unified", barmode="group", scattermode=scatter_mode(factor),
                         margin={"t": 100})
    legend_below(figure)
    return figure


def sweep_throughput_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    """Tokens/s and requests/s in two stacked charts, each on its own axis: on twin axes they
    lay on top of each other and the second axis got odd ticks."""
    measured = measured_points(frame)
    tokens = "decode_tokens_per_s" if measured["decode_tokens_per_s"].notna().any() \
        else "total_tokens_per_s"
    words = ("decode tokens per second, all requests of the batch"
             if tokens == "decode_tokens_per_s" else "tokens per second (prompt and output)")
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                           subplot_titles=(words, "requests finished per second"))
    kinds, noisy = [], False
    for row, metric, color in ((1, tokens, STRONG), (2, "requests_per_s", TTFT_COLOR)):
        s = series(measured, factor, metric)
        draw_series(figure, s, METRICS[metric].short_label, color, factor, group=metric,
                    row=row, col=1)
        floor_charts.add_sweep_floor(figure, measured, factor, metric, s.x, color,
                                     offsetgroup=metric, row=row, col=1)
        figure.update_yaxes(title_text=METRICS[metric].display_unit, rangemode="tozero",
                            row=row, col=1)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
    hatch_legend(figure, factor, noisy, "estimate" in kinds)
    set_x_axis(figure, factor, x_values(measured, factor), rows=2)
    add_title(figure, f"Throughput vs {factor.label}", kinds, spread_shape(factor))
    figure.update_layout(height=600, hovermode="x unified", scattermode=scatter_mode(factor),
                         margin={"t": 110})
    legend_below(figure)
    return figure


def sweep_tradeoff_figure(frame: pd.DataFrame) -> go.Figure:
    """Batch sweeps: what each user waits per token vs what the machine produces."""
    measured = measured_points(frame)
    measured = measured[measured["tpot_s"].notna()].sort_values("batch_size")
    batch = FACTORS["batch"]
    per_token = series(measured, batch, "tpot_s")
    throughput = series(measured, batch, "decode_tokens_per_s")
    tpot, decode = METRICS["tpot_s"], METRICS["decode_tokens_per_s"]
    labels = [f"batch {b}" + (" (estimate)" if e else "")
              for b, e in zip(measured["batch_size"], per_token.estimated)]
    figure = go.Figure(go.Scatter(
        x=per_token.median, y=throughput.median, mode="lines+markers+text", text=labels,
        textposition="top left", line={"color": STRONG, "width": 2}, marker={"size": 9},
        error_x=per_token.errors(), error_y=throughput.errors(), name=f"one {batch.label}",
        customdata=[f"{p}<br>{decode.words}: {t}"
                    for p, t in zip(per_token.hover, throughput.hover)],
        hovertemplate="%{text}<br>time per token: %{customdata}<extra></extra>"))
    noisy = [i for i, flag in enumerate(per_token.noisy) if flag]
    if noisy:
        figure.add_trace(go.Scatter(
            x=[per_token.median[i] for i in noisy], y=[throughput.median[i] for i in noisy],
            mode="markers", name=NOISY_RING, hoverinfo="skip",
            marker={"symbol": "circle-open", "size": 20, "color": NOISY_COLOR,
                    "line": {"width": 3}}))
    add_title(figure, "The batching trade-off: more total throughput, slower tokens for each user",
              per_token.kinds + throughput.kinds, "error bars")
    figure.update_layout(
        xaxis_title=f"{tpot.words} for each user ({tpot.display_unit})",
        yaxis_title=f"{decode.words}, all users ({decode.display_unit})", height=440,
        xaxis_rangemode="tozero", yaxis_rangemode="tozero", showlegend=bool(noisy))
    legend_below(figure)
    return figure


def sweep_memory_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    measured = measured_points(frame)
    s, memory = series(measured, factor, "peak_memory_bytes"), METRICS["peak_memory_bytes"]
    figure = go.Figure()
    draw_series(figure, s, memory.short_label, MEMORY_COLOR, factor)
    hatch_legend(figure, factor, any(s.noisy), "estimate" in s.kinds)
    set_x_axis(figure, factor, x_values(measured, factor))
    add_title(figure, f"{memory.label} vs {factor.label}", s.kinds, spread_shape(factor))
    figure.update_layout(yaxis_title=f"{memory.words} ({memory.display_unit}, "
                                     "1 MB = 1,000,000 bytes)",
                         height=380, hovermode="x unified", yaxis_rangemode="tozero",
                         margin={"t": 90})
    legend_below(figure)
    return figure


def sweep_heatmap_figure(frame: pd.DataFrame, factor_x: Factor, factor_y: Factor,
                         metric: str) -> go.Figure:
    """Two factors: one cell per point, its median written in it; ⚠ marks a noisy cell,
    "est." an estimated one (a hardware profile: not measured), and a skipped point's cell
    says so, with the reason on hover."""
    label_x, label_y, metric_label = factor_x.label, factor_y.label, METRICS[metric].titled
    scale, unit = METRICS[metric].display_scale, METRICS[metric].display_unit
    records = table_rows(frame)
    xs, ys = _heatmap_values(frame, factor_x), _heatmap_values(frame, factor_y)
    cells = {(row[factor_x.column], row[factor_y.column]): row for row in records}
    z, written, hover = [], [], []
    for y in ys:
        z.append([]), written.append([]), hover.append([])
        for x in xs:
            row = cells.get((x, y), {})
            value = row.get(metric) if row.get("status") == Status.MEASURED else None
            z[-1].append(None if value is None else value * scale)
            mark = " ⚠" if is_noisy(row) else " est." if is_estimated(row) else ""
            if row.get("status") == Status.SKIPPED:
                written[-1].append("skipped")
                hover[-1].append("skipped: " + text.html(row.get("skipped_reason") or ""))
                continue
            written[-1].append("" if value is None else format_number(value * scale) + mark)
            hover[-1].append("not measured" if value is None else format_value(metric, value)
                             + (f"<br>⚠ noisy: {noise_reason(row)}" if is_noisy(row) else "")
                             + (f" ({ESTIMATE_WORDS})" if is_estimated(row) else ""))
    figure = go.Figure(go.Heatmap(
        z=z, x=_heatmap_labels(factor_x, xs), y=_heatmap_labels(factor_y, ys),
        colorscale="Viridis", text=written, texttemplate="%{text}", colorbar={"title": unit},
        customdata=hover,
        hovertemplate=f"{label_x} %{{x}}, {label_y} %{{y}}: %{{customdata}}<extra></extra>"))
    notes = [note for flag, note in (
        (any(is_noisy(row) for row in records), "⚠ = noisy point: hover it for why"),
        (any(row.get("status") == Status.SKIPPED for row in records),
         "skipped = could not run: hover it for why"),
        (any(is_estimated(row) and row.get("status") == Status.MEASURED for row in records),
         "est. = estimated from a model of the hardware, not measured")) if flag]
    figure.update_layout(title=f"{metric_label} for each {label_x} x {label_y}",
                         xaxis_title=label_x, yaxis_title=label_y, height=460 + 20 * len(notes),
                         xaxis_type="category", yaxis_type="category")
    if notes:       # the key, one line each under the chart: in the title it was cut off
        figure.add_annotation(text="<br>".join(notes), showarrow=False, align="left",
                              xref="paper", x=0, xanchor="left", yref="paper", y=0,
                              yanchor="top", yshift=-60)      # below the x axis's title
        figure.update_layout(margin={"b": 80 + 20 * len(notes)})
    return figure


def _heatmap_values(frame: pd.DataFrame, factor: Factor) -> list:
    """A heatmap axis's values: numbers in order, categories in the order they were chosen
    (stacks and formats as listed, not alphabetically)."""
    values = frame[factor.column]
    return sorted(values.unique()) if factor.numeric else list(dict.fromkeys(values))


def _heatmap_labels(factor: Factor, values: list) -> list[str]:
    """A heatmap axis's categories (escaped): a hardware profile says '(estimate)'."""
    return [text.html(category_label(factor, value, factor.estimated(value)))
            for value in values]
