"""How a sweep's points are drawn: a median, its spread, a noisy point and an estimate, the
same in the sweep charts (`lib.views.sweep_charts`) and the comparison charts
(`lib.views.compare_charts`), built from a sweep's tidy table (lib.records.table, as a
DataFrame). Names, labels and units come from lib.core.metrics; nothing here summarizes again.

What every sweep chart promises: a numeric factor is drawn as lines through its points, a
categorical one (model, dtype, ...) as bars, never as a line between categories. The spread
around each median is p10–p90 where the point has the samples for it (the percentile gate) and
the min–max range otherwise (`table.band_columns`), and the title and hover say which. Noisy
points (`stats.point_noise`) are ringed (lines) or hatched (bars), with the reason on hover. One
quantity per y axis, and a log axis is said to double only when its values do. Estimated
points (a hardware profile, `table.is_estimated`) are unmistakable: lighter, diagonally hatched
bars and "(estimate)" in their category; open diamonds on a dotted line; "estimate, not
measured" on hover, and no spread (the subtitle says so).

Plotly renders labels, legends, tick labels and hover text as a subset of HTML, and model ids
and the labels callers pass in come from users: each goes through `lib.core.text.html`, and no
caller's text goes into a hover template (`%{fullData.name}` names a trace there instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from lib.core import text
from lib.core.metrics import LATENCIES, METRICS, format_value
from lib.core.stats import MIN_SAMPLES
from lib.measure.sweep import Factor
from lib.records.table import Status, band_columns, is_estimated, stat_column
from lib.views.comparable import is_noisy, noise_reason

STRONG = "rgb(99, 110, 250)"
TTFT_COLOR = "rgb(239, 85, 59)"
COLORS = {"ttft_s": TTFT_COLOR, "tpot_s": STRONG, "e2e_s": "rgb(0, 160, 120)"}
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
SIMULATED_LEGEND = "simulated (hatched, open diamonds): estimates, nothing ran"
SIMULATED_HATCH_COLOR = "rgba(255, 255, 255, 0.8)"
PERCENTILE_SAMPLES = MIN_SAMPLES[10]


def measured_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The sweep table's rows that have results (measured or estimated), the ones drawn."""
    return frame[frame["status"] == Status.MEASURED]


def x_values(measured: pd.DataFrame, factor: Factor) -> pd.Series:
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


def table_rows(measured: pd.DataFrame) -> list[dict[str, Any]]:
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
    records, scale = table_rows(measured), METRICS[metric].display_scale
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
    return Series(list(x_values(measured, factor)), medians, lows, highs, kinds, hovers,
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


def add_title(figure: go.Figure, text: str, kinds: list[str], shape: str) -> None:
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


def draw_series(figure: go.Figure, s: Series, name: str, color: str, factor: Factor,
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


def hatch_legend(figure: go.Figure, factor: Factor, noisy: bool,
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


def set_x_axis(figure: go.Figure, factor: Factor, values, rows: int = 1) -> None:
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


def spread_shape(factor: Factor) -> str:
    return "shaded band" if factor.numeric else "error bars"


def scatter_mode(factor: Factor) -> str:
    """Over bars, floor marks sit over their own bar (grouped like the bars); lines overlay."""
    return "overlay" if factor.numeric else "group"


def legend_below(figure: go.Figure) -> None:
    """Under the chart, at the bottom of the whole figure: above it, the subtitle lives."""
    figure.update_layout(legend={"orientation": "h", "yref": "container", "y": 0,
                                 "yanchor": "bottom", "x": 0})
    figure.update_layout(margin={"b": 110})


def simulated_marks(figure: go.Figure, simulated: bool) -> go.Figure:
    """A simulated load's figure (`lib.views.serving_charts`) made unmistakable: 'SIMULATED'
    before its title, the area under each solid line hatched, open diamonds for its points,
    hatched bars, "(simulated, not measured)" on hover, and a legend entry saying what the
    hatching means. A measured load's figure is returned as it is."""
    if not simulated:
        return figure
    for trace in figure.data:
        if trace.type == "bar":
            trace.marker.pattern = {"shape": "/", "fgcolor": SIMULATED_HATCH_COLOR,
                                    "fillmode": "overlay"}      # over the bar's own colour
        elif trace.mode and "lines" in trace.mode and trace.line.dash in (None, "solid"):
            trace.update(fill="tozeroy", fillcolor="rgba(0, 0, 0, 0)",
                         fillpattern={"shape": "/", "fgcolor": trace.line.color,
                                      "fgopacity": 0.35, "size": 8})
        if trace.type == "scatter" and trace.mode and "markers" in trace.mode:
            trace.marker.symbol = "diamond-open"
        if trace.hovertemplate:
            trace.hovertemplate = trace.hovertemplate.replace(
                "<extra>", " (simulated, not measured)<extra>", 1)
    figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=SIMULATED_LEGEND,
                                marker={"symbol": "diamond-open", "color": "grey"},
                                hoverinfo="skip"))
    title = figure.layout.title.text or ""
    figure.update_layout(title=f"SIMULATED, not measured — {title}")
    return figure
