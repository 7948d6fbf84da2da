"""Plotly figures, built from a Measurement's raw rows (lib.records.export) or a sweep's tidy table
(lib.records.table, as a DataFrame). Names, labels and units come from lib.core.metrics; nothing here
summarizes data again. Pages only display the figures.

What every sweep chart promises: a numeric factor is drawn as lines through its points, a
categorical one (model, dtype, ...) as bars, never as a line between categories. The spread
around each median is p10–p90 where the point has the samples for it (the percentile gate) and
the min–max range otherwise (`table.band_columns`), and the title and hover say which. Noisy
points (`stats.point_noise`) are ringed (lines) or hatched (bars), with the reason on hover. One
quantity per y axis, and a log axis is said to double only when its values do. Estimated
points (a hardware profile, `table.is_estimated`) are unmistakable: lighter, diagonally hatched
bars and "(estimate)" in their category; open diamonds on a dotted line; "est." in a heatmap
cell; "estimate, not measured" on hover, and no spread (the subtitle says so).

Plotly renders labels, legends, tick labels and hover text as a subset of HTML, and model ids
and the labels callers pass in come from users: each goes through `lib.core.text.html` here, and no
caller's text goes into a hover template (`%{fullData.name}` names a trace there instead).
The number of traces doesn't grow with the data: beyond REPETITION_LINES repetitions, the
per-token chart draws a p10–p90 band instead of one line per repetition. Where the machine's
ceilings were recorded, latency charts carry a dashed floor and throughput charts a dashed
ceiling (`lib.views.floor_charts`), named as estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from lib.views import floor_charts
from lib.core import text
from lib.views.insights import is_noisy, noise_reason
from lib.core.metrics import LATENCIES, METRICS, format_number, format_value
from lib.records.export import request_latency_rows, token_latency_rows
from lib.core.results import Measurement
from lib.core.stats import MIN_SAMPLES, Summary
from lib.measure.factors import FACTORS, Factor
from lib.records.table import Status, band_columns, is_estimated, stat_column

FAINT = "rgba(99, 110, 250, 0.25)"
STRONG = "rgb(99, 110, 250)"
TTFT_COLOR = "rgb(239, 85, 59)"
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
    figure.update_layout(
        title="How long each generated token took",
        xaxis_title="generated token (1 = first token)", yaxis_title="latency (ms)",
        yaxis_rangemode="tozero", hovermode="closest", height=420,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"t": 80})
    return figure


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
    figure.update_layout(
        title="ESTIMATE, not measured: how long each generated token would take",
        xaxis_title="generated token (1 = first token)", yaxis_title="latency (ms)",
        yaxis_rangemode="tozero", hovermode="closest", height=420,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        margin={"t": 80})
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


# --- sweeps ------------------------------------------------------------------------------------

COLORS = {"ttft_s": "rgb(239, 85, 59)", "tpot_s": "rgb(99, 110, 250)",
          "e2e_s": "rgb(0, 160, 120)"}
LATENCY_SERIES = tuple((name, METRICS[name].short_label, COLORS[name]) for name in LATENCIES)
MEMORY_COLOR = "rgb(171, 99, 250)"
NOISY_COLOR = "rgb(230, 145, 0)"
NOISY_RING = "⚠ noisy point (ringed): hover it for why"
NOISY_HATCH = "⚠ noisy point (hatched): hover it for why"
ESTIMATE_HATCH = "estimate (lighter, hatched /): a model of the hardware, not measured"
ESTIMATE_OPACITY = 0.45
ESTIMATE_HATCH_COLOR = "rgba(255, 255, 255, 0.9)"      # white stripes over the lighter bar
NOISY_HATCH_COLOR = "rgba(30, 30, 30, 0.7)"            # dark crosses over the bar's own colour
ESTIMATE_WORDS = "estimate, not measured: no spread"
PERCENTILE_SAMPLES = MIN_SAMPLES[10]


def _measured(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == Status.MEASURED]


def _x(measured: pd.DataFrame, factor: Factor) -> pd.Series:
    """The factor's values to draw: numbers, or categories as Plotly shows text (escaped),
    an estimated point's saying so: 'NVIDIA H200 SXM 141GB (estimate)'."""
    values = measured[factor.column]
    if factor.numeric:
        return values
    estimated = measured.get("provenance", pd.Series("", index=measured.index)) == "estimated"
    return pd.Series([text.html(category_label(factor, value, flag))
                      for value, flag in zip(values, estimated)], index=measured.index)


def category_label(factor: Factor, value: Any, estimated: bool) -> str:
    """A category as drawn (not yet escaped): its words, plus '(estimate)' for an estimate."""
    return factor.value_label(value) + (" (estimate)" if estimated else "")


def _records(measured: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with pandas' NaN turned back into the table's None, so that
    `band_columns` sees a missing p10 as missing."""
    return [{key: None if isinstance(value, float) and math.isnan(value) else value
             for key, value in row.items()} for row in measured.to_dict("records")]


@dataclass(frozen=True)
class Series:
    """One metric over a sweep's measured points, in the metric's display unit: median, the
    spread to draw (p10–p90 or range, per point), hover text and noise, ready to draw."""
    x: list
    median: list
    low: list
    high: list
    kinds: list[str]         # per measured value: "p10–p90", "range" or "estimate"
    hover: list[str]
    noisy: list[bool]
    estimated: list[bool]

    def errors(self) -> dict[str, Any]:
        """Plotly's asymmetric error bars for this spread."""
        return {"type": "data", "symmetric": False, "color": "rgba(60, 60, 60, 0.7)",
                "array": [_gap(h, m) for m, h in zip(self.median, self.high)],
                "arrayminus": [_gap(m, low) for m, low in zip(self.median, self.low)]}


def _gap(a, b):
    return None if a is None or b is None else a - b


def series(measured: pd.DataFrame, factor: Factor, metric: str) -> Series:
    records, scale = _records(measured), METRICS[metric].display_scale
    medians, lows, highs, kinds, hovers = [], [], [], [], []
    for row in records:
        low_column, high_column, kind = band_columns(row, metric)
        median, low, high = row.get(metric), row.get(low_column), row.get(high_column)
        if kind == "estimate":
            low = high = None         # one computed value: no spread to draw
        n = int(row.get(stat_column(metric, "n")) or 0)
        medians.append(None if median is None else median * scale)
        lows.append(None if low is None else low * scale)
        highs.append(None if high is None else high * scale)
        if median is None:
            hovers.append("not measured")
            continue
        kinds.append(kind)            # only measured values decide what the subtitle says
        if kind == "estimate":
            hovers.append(f"{format_value(metric, median)} ({ESTIMATE_WORDS})")
            continue
        spread = f"{format_value(metric, low)} – {format_value(metric, high)}"
        spread = (f"p10–p90 {spread}, n={n}" if kind == "p10–p90" else
                  f"range of {n} sample{'s' if n != 1 else ''}: {spread}")
        words = f"{format_value(metric, median)} ({spread})"
        hovers.append(words + (f"<br>⚠ noisy: {noise_reason(row)}" if is_noisy(row) else ""))
    return Series(list(_x(measured, factor)), medians, lows, highs, kinds, hovers,
                  [is_noisy(row) for row in records], [is_estimated(row) for row in records])


def spread_note(kinds: list[str], shape: str = "band") -> str:
    """What the drawn spread is, e.g. 'band: p10–p90 ...' or 'error bars: lowest to highest
    sample (each point has fewer than 10, ...)'. kinds: one per point, from `band_columns`."""
    found = set(kinds)
    if found == {"estimate"}:
        return "estimate: no spread (each point is computed from a model of its hardware, " \
               "not measured)"
    if "estimate" in found:
        return (spread_note([kind for kind in kinds if kind != "estimate"], shape)
                + "; estimated points (lighter, hatched or open diamonds): no spread, not "
                  "measured")
    if found == {"p10–p90"}:
        return f"{shape}: p10–p90, the middle 80% of each point's samples"
    if found == {"range"}:
        return (f"{shape}: lowest to highest sample (each point has fewer than "
                f"{PERCENTILE_SAMPLES}, too few for p10–p90)")
    return (f"{shape}: p10–p90 where a point has {PERCENTILE_SAMPLES} samples or more, else its "
            "lowest to highest sample")


def _title(figure: go.Figure, text: str, kinds: list[str], shape: str) -> None:
    """A title, and under it what the marks mean: medians, and which spread is drawn."""
    what = "Estimates" if kinds and set(kinds) == {"estimate"} else "Medians"
    figure.update_layout(title={"text": text, "subtitle": {
        "text": f"{what}; {spread_note(kinds, shape)}."}})


def _band(s: Series, color: str, group: str, where: dict) -> list[go.Scatter]:
    """A shaded spread: the upper edge, then the lower edge filled up to it."""
    fill = color.replace("rgb", "rgba").replace(")", ", 0.15)")
    return [go.Scatter(x=s.x, y=s.high, mode="lines", line={"width": 0}, showlegend=False,
                       hoverinfo="skip", legendgroup=group),
            go.Scatter(x=s.x, y=s.low, mode="lines", line={"width": 0}, fill="tonexty",
                       fillcolor=fill, showlegend=False, hoverinfo="skip", legendgroup=group)]


def _draw(figure: go.Figure, s: Series, name: str, color: str, factor: Factor,
          shaded: bool = True, group: str | None = None, **where) -> None:
    """One metric: bars with error bars for a categorical factor; for a numeric one a line
    through the medians, with a shaded band (or error bars where several lines overlap) and a
    ring around each noisy point. A bar keeps its metric's colour; noise or being an estimate
    only adds a pattern. `group` names the bars' offsetgroup, for marks drawn over them."""
    hover = "%{fullData.name}: %{customdata}<extra></extra>"
    every_estimate = bool(s.estimated) and all(s.estimated)
    if every_estimate:
        name = name.replace("(median)", "(estimate)")
    if not factor.numeric:
        figure.add_trace(go.Bar(
            x=s.x, y=s.median, name=name, legendgroup=name, offsetgroup=group or name,
            showlegend=False, error_y=s.errors(),
            marker={"color": color,
                    "opacity": [ESTIMATE_OPACITY if e else 1.0 for e in s.estimated],
                    "pattern": {"fillmode": "overlay",
                                "shape": ["x" if n else "/" if e else ""
                                          for n, e in zip(s.noisy, s.estimated)],
                                "fgcolor": [NOISY_HATCH_COLOR if n else ESTIMATE_HATCH_COLOR
                                            for n in s.noisy]},
                    "line": {"color": NOISY_COLOR, "width": [3 if n else 0 for n in s.noisy]}},
            customdata=s.hover, hovertemplate=hover), **where)
        # Plotly draws a bar's legend icon like its first bar: a plain one stands in for it.
        figure.add_trace(go.Bar(x=[None], y=[None], name=name, legendgroup=name,
                                offsetgroup=group or name, marker={"color": color},
                                hoverinfo="skip"),
                         **where)
        return
    if shaded and not every_estimate:
        for trace in _band(s, color, name, where):
            figure.add_trace(trace, **where)
    figure.add_trace(go.Scatter(
        x=s.x, y=s.median, mode="lines+markers", name=name, legendgroup=name,
        line={"color": color, "width": 3, "dash": "dot" if any(s.estimated) else "solid"},
        marker={"size": [11 if e else 8 for e in s.estimated],
                "symbol": ["diamond-open" if e else "circle" for e in s.estimated],
                "line": {"width": 2, "color": color}},
        error_y=None if shaded else s.errors(), customdata=s.hover, hovertemplate=hover),
        **where)
    noisy = [i for i, flag in enumerate(s.noisy) if flag]
    if noisy:
        figure.add_trace(go.Scatter(
            x=[s.x[i] for i in noisy], y=[s.median[i] for i in noisy], mode="markers",
            name=NOISY_RING, legendgroup="noisy", legendrank=2000, hoverinfo="skip",
            showlegend=not any(t.name == NOISY_RING for t in figure.data),
            marker={"symbol": "circle-open", "size": 20, "color": NOISY_COLOR,
                    "line": {"width": 3}}), **where)


def _hatch_legend(figure: go.Figure, factor: Factor, noisy: bool,
                  estimated: bool = False) -> None:
    """Bars carry their noise, or being estimates, in a pattern: each needs a legend entry.
    Its empty trace joins the first bars' offsetgroup: alone it would take a slot in each
    group of bars where scatters are grouped."""
    if factor.numeric:
        return
    group = next((t.offsetgroup for t in figure.data if t.type == "bar"), None)
    if noisy:
        figure.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=NOISY_HATCH, hoverinfo="skip",
            legendrank=2000, offsetgroup=group,
            marker={"symbol": "square-x-open", "size": 14, "color": NOISY_COLOR}))
    if estimated:
        figure.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=ESTIMATE_HATCH, hoverinfo="skip",
            legendrank=2001, offsetgroup=group,
            marker={"symbol": "square-open", "size": 14, "color": "gray"}))


def axis_note(factor: Factor, values) -> str:
    """The x axis title: a log axis says 'each step doubles' only when every step does."""
    if not factor.numeric or not _log_axis(factor, values):
        return factor.label
    ticks = sorted(set(values))
    if len(ticks) < 2:
        return f"{factor.label} (log scale)"
    if all(b == 2 * a for a, b in zip(ticks, ticks[1:])):
        return f"{factor.label} (log scale: each step doubles)"
    return f"{factor.label} (log scale: equal distances are equal ratios)"


def _log_axis(factor: Factor, values) -> bool:
    return factor.doubling and all(value > 0 for value in values)


def _axis(figure: go.Figure, factor: Factor, values, rows: int = 1) -> None:
    """The x axis (or axes, shared by `rows` stacked subplots; the title goes on the lowest)."""
    values = list(values)
    title = {"title_text": axis_note(factor, values)}
    bottom = {"row": rows, "col": 1} if rows > 1 else {}
    if not factor.numeric:
        figure.update_xaxes(type="category")
    elif _log_axis(factor, values):
        ticks = sorted(set(values))
        figure.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks])
    figure.update_xaxes(**title, **bottom)


def _shape(factor: Factor) -> str:
    return "shaded band" if factor.numeric else "error bars"


def _scattermode(factor: Factor) -> str:
    """Over bars, floor marks sit over their own bar (grouped like the bars); lines overlay."""
    return "overlay" if factor.numeric else "group"


def _legend_below(figure: go.Figure) -> None:
    """Under the chart, at the bottom of the whole figure: above it, the subtitle lives."""
    figure.update_layout(legend={"orientation": "h", "yref": "container", "y": 0,
                                 "yanchor": "bottom", "x": 0})
    figure.update_layout(margin={"b": 110})


def sweep_latency_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    measured = _measured(frame)
    figure, kinds, noisy = go.Figure(), [], False
    for metric, name, color in LATENCY_SERIES:
        if measured[metric].isna().all():
            continue
        s = series(measured, factor, metric)
        _draw(figure, s, f"{name} (median)", color, factor, group=metric)
        floor_charts.add_sweep_floor(figure, measured, factor, metric, s.x, color,
                                     offsetgroup=metric)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
    _hatch_legend(figure, factor, noisy, "estimate" in kinds)
    _axis(figure, factor, _x(measured, factor))
    _title(figure, f"Latency vs {factor.label}", kinds, _shape(factor))
    figure.update_layout(yaxis_title="latency (ms)", yaxis_rangemode="tozero", height=440,
                         hovermode="x unified", barmode="group", scattermode=_scattermode(factor),
                         margin={"t": 100})
    _legend_below(figure)
    return figure


def sweep_throughput_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    """Tokens/s and requests/s in two stacked charts, each on its own axis: on twin axes they
    lay on top of each other and the second axis got odd ticks."""
    measured = _measured(frame)
    tokens = "decode_tokens_per_s" if measured["decode_tokens_per_s"].notna().any() \
        else "total_tokens_per_s"
    words = ("decode tokens per second, all requests of the batch"
             if tokens == "decode_tokens_per_s" else "tokens per second (prompt and output)")
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                           subplot_titles=(words, "requests finished per second"))
    kinds, noisy = [], False
    for row, metric, color in ((1, tokens, STRONG), (2, "requests_per_s", TTFT_COLOR)):
        s = series(measured, factor, metric)
        _draw(figure, s, METRICS[metric].short_label, color, factor, group=metric, row=row,
              col=1)
        floor_charts.add_sweep_floor(figure, measured, factor, metric, s.x, color,
                                     offsetgroup=metric, row=row, col=1)
        figure.update_yaxes(title_text=METRICS[metric].display_unit, rangemode="tozero",
                            row=row, col=1)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
    _hatch_legend(figure, factor, noisy, "estimate" in kinds)
    _axis(figure, factor, _x(measured, factor), rows=2)
    _title(figure, f"Throughput vs {factor.label}", kinds, _shape(factor))
    figure.update_layout(height=600, hovermode="x unified", scattermode=_scattermode(factor),
                         margin={"t": 110})
    _legend_below(figure)
    return figure


def sweep_tradeoff_figure(frame: pd.DataFrame) -> go.Figure:
    """Batch sweeps: what each user waits per token vs what the machine produces."""
    measured = _measured(frame)
    measured = measured[measured["tpot_s"].notna()].sort_values("batch_size")
    per_token = series(measured, FACTORS["batch"], "tpot_s")
    throughput = series(measured, FACTORS["batch"], "decode_tokens_per_s")
    labels = [f"batch {b}" + (" (estimate)" if e else "")
              for b, e in zip(measured["batch_size"], per_token.estimated)]
    figure = go.Figure(go.Scatter(
        x=per_token.median, y=throughput.median, mode="lines+markers+text", text=labels,
        textposition="top left", line={"color": STRONG, "width": 2}, marker={"size": 9},
        error_x=per_token.errors(), error_y=throughput.errors(), name="one batch size",
        customdata=[f"{p}<br>decode throughput: {t}"
                    for p, t in zip(per_token.hover, throughput.hover)],
        hovertemplate="%{text}<br>time per token: %{customdata}<extra></extra>"))
    noisy = [i for i, flag in enumerate(per_token.noisy) if flag]
    if noisy:
        figure.add_trace(go.Scatter(
            x=[per_token.median[i] for i in noisy], y=[throughput.median[i] for i in noisy],
            mode="markers", name=NOISY_RING, hoverinfo="skip",
            marker={"symbol": "circle-open", "size": 20, "color": NOISY_COLOR,
                    "line": {"width": 3}}))
    _title(figure, "The batching trade-off: more total throughput, slower tokens for each user",
           per_token.kinds + throughput.kinds, "error bars")
    figure.update_layout(
        xaxis_title="time per output token for each user (ms)",
        yaxis_title="decode throughput, all users (tokens/s)", height=440,
        xaxis_rangemode="tozero", yaxis_rangemode="tozero", showlegend=bool(noisy))
    _legend_below(figure)
    return figure


def sweep_memory_figure(frame: pd.DataFrame, factor: Factor) -> go.Figure:
    measured = _measured(frame)
    s = series(measured, factor, "peak_memory_bytes")
    figure = go.Figure()
    _draw(figure, s, "peak memory", MEMORY_COLOR, factor)
    _hatch_legend(figure, factor, any(s.noisy), "estimate" in s.kinds)
    _axis(figure, factor, _x(measured, factor))
    _title(figure, f"Peak memory vs {factor.label}", s.kinds, _shape(factor))
    figure.update_layout(yaxis_title=f"peak memory ({METRICS['peak_memory_bytes'].display_unit}, "
                                     "1 MB = 1,000,000 bytes)",
                         height=380, hovermode="x unified", yaxis_rangemode="tozero",
                         margin={"t": 90})
    _legend_below(figure)
    return figure


def sweep_heatmap_figure(frame: pd.DataFrame, factor_x: Factor, factor_y: Factor,
                         metric: str) -> go.Figure:
    """Two factors: one cell per point, its median written in it; ⚠ marks a noisy cell,
    "est." an estimated one (a hardware profile: not measured), and a skipped point's cell
    says so, with the reason on hover."""
    label_x, label_y, metric_label = factor_x.label, factor_y.label, METRICS[metric].titled
    scale, unit = METRICS[metric].display_scale, METRICS[metric].display_unit
    records = _records(frame)
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


# --- history: comparing saved results ------------------------------------------------------------

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
    _title(figure, "Saved runs side by side", kinds, "error bars")
    figure.update_layout(barmode="group",
                         yaxis_title="latency (ms)", height=440, margin={"t": 100})
    _legend_below(figure)
    return figure


def compare_sweeps_figure(labelled: list[tuple[str, pd.DataFrame]], factor: Factor,
                          metric: str = "tpot_s") -> go.Figure:
    """One line (numeric factor) or group of bars (categorical) per saved sweep of the same
    factor: the metric's median at each value, with its spread as error bars."""
    figure, kinds, noisy, values = go.Figure(), [], False, []
    for index, (name, frame) in enumerate(labelled):
        measured = _measured(frame)
        s = series(measured, factor, metric)
        color = qualitative.Plotly[index % len(qualitative.Plotly)]
        _draw(figure, s, text.html(name), _rgb(color), factor, shaded=False)
        kinds += s.kinds
        noisy = noisy or any(s.noisy)
        values += list(_x(measured, factor))
    _hatch_legend(figure, factor, noisy, "estimate" in kinds)
    _axis(figure, factor, values)
    metric_info = METRICS[metric]
    _title(figure, f"Saved sweeps overlaid: {metric_info.short_label} vs {factor.label}", kinds,
           "error bars")
    figure.update_layout(
        yaxis_title=f"{metric_info.short_label} ({metric_info.display_unit})",
        yaxis_rangemode="tozero", height=440,
        hovermode="x unified", barmode="group", margin={"t": 100})
    _legend_below(figure)
    return figure


def _rgb(hex_color: str) -> str:
    """'#636EFA' -> 'rgb(99, 110, 250)', the form `_band` can make transparent."""
    red, green, blue = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


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
        measured = _measured(frame)
        figure.add_trace(go.Scatter(
            x=_x(measured, factor), y=measured[metric] * scale, name=text.html(name),
            # categories are dots: a line between two dtypes would suggest values in between
            mode="lines+markers" if factor.numeric else "markers",
            hovertemplate=f"%{{x}}: %{{y:.1f}} {info.display_unit}"
                          "<extra>%{fullData.name}</extra>"))
    figure.update_xaxes(title=factor.label, type=None if factor.numeric else "category")
    figure.update_layout(title=f"Saved sweeps overlaid: median {info.short_label} vs "
                               f"{factor.label}", yaxis_title=info.display_unit,
                         yaxis_rangemode="tozero", height=380, hovermode="x unified")
    return figure
