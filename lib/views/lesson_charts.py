"""A lesson's one chart: a bar per measured quantity, its spread as whiskers, estimates hatched.

`lesson_figure(bars, title, axis_title)` takes `Bar`s (a label, the value in display units, the
spread's low and high or None, whether it is an estimate) so the lessons (a floor above) hand
over plain numbers. Large type: it is also the chart a presenter shows on a projector.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from lib.views.chart_marks import (ESTIMATE_HATCH_COLOR, ESTIMATE_OPACITY, STRONG, TTFT_COLOR,
                                   legend_below)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    low: float | None = None
    high: float | None = None
    estimated: bool = False
    text: str = ""                   # the value as people read it, over the bar


def lesson_figure(bars: list[Bar], title: str, axis_title: str, large: bool = False):
    font = 22 if large else 14
    colors = [STRONG if index % 2 == 0 else TTFT_COLOR for index in range(len(bars))]
    has_spread = any(bar.low is not None and bar.high is not None for bar in bars)
    figure = go.Figure(go.Bar(
        x=[bar.label for bar in bars], y=[bar.value for bar in bars],
        # The value inside the bar's top: above it, the whisker would cross it out.
        text=[bar.text for bar in bars], textposition="inside", insidetextanchor="end",
        textfont={"color": "white", "size": font}, cliponaxis=False,
        marker={"color": colors,
                "opacity": [ESTIMATE_OPACITY if bar.estimated else 1.0 for bar in bars],
                "pattern": {"shape": ["/" if bar.estimated else "" for bar in bars],
                            "fgcolor": ESTIMATE_HATCH_COLOR}},
        error_y={"type": "data", "symmetric": False, "visible": has_spread,
                 "array": [(bar.high - bar.value) if bar.high is not None else 0
                           for bar in bars],
                 "arrayminus": [(bar.value - bar.low) if bar.low is not None else 0
                                for bar in bars]},
        name="measured (whiskers: how much it varied)" if has_spread else "measured",
        showlegend=any(bar.estimated for bar in bars)))
    if any(bar.estimated for bar in bars):
        figure.add_trace(go.Bar(x=[None], y=[None], name="hatched: an estimate, not measured",
                                marker={"color": "lightgray", "pattern": {"shape": "/"}}))
    figure.update_layout(title={"text": title, "font": {"size": font + 4}},
                         yaxis_title=axis_title, font={"size": font}, height=430 if large
                         else 400, yaxis_rangemode="tozero", bargap=0.45, showlegend=True,
                         xaxis_type="category")
    legend_below(figure)
    return figure
