"""Plotly figures of a load run (`lib.serving.summary.LoadResult`), and its per-level table in
words. Everything is drawn from the run's per-level summaries and raw request records; nothing
here measures or summarizes again, and `lib.serving` stays free of any drawing.

What the figures promise:
- latency against offered load: TTFT, TPOT and end-to-end, each with its median and the p90
  and p99 only at the levels that have the samples for them (`lib.core.stats.MIN_SAMPLES`); a
  y axis goes logarithmic when its values span more than `LOG_SPAN`; the knee
  (`lib.serving.measures.knee`) is a dashed vertical line at the first saturated level,
  labelled "knee: waits grew Nx by X" (its first saturated level), with the saturated region shaded;
- throughput against offered load: requests finished per second (and, for an open loop, the
  offered rate as a dashed line y = x), goodput where there are latency targets, and output
  tokens per second;
- the trade-off: each user's streaming speed against the server's total output, one labelled
  point per level;
- one level's timeline: one bar per request from send to end, split at its first token into
  "waiting" (light) and "streaming" (strong), failed requests red, warm-up grey and named "not
  counted". Cool-down requests (sent after the measured ones only to keep the load up, then
  cancelled) are counted in the title, not drawn: past the knee they run to hundreds and would
  squeeze the measured ones into a corner. The axes are sized to the bars drawn; with many
  requests the bars touch, and the picture reads as a density of waiting and streaming.
- a level where every request failed is not a point of any curve (the findings explain it).
Server names and models are user text: they reach Plotly only through `lib.core.text.html`.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lib.core import text
from lib.serving import findings
from lib.core.metrics import METRICS, format_number, format_seconds
from lib.estimate.cost import joules_words
from lib.serving.plan import RATE
from lib.serving.records import (CANCELLED, COOLDOWN, FAILED, MEASURED, SIMULATED,
                                 RequestRecord)
from lib.serving.summary import Level, LoadResult
from lib.views.chart_marks import simulated_marks

LOG_SPAN = 10.0            # a y axis whose largest value is this many times its smallest: log
LOG_X_SPAN = 4.0           # levels spanning this ratio are drawn on a log x axis
TIMELINE_TICKS = 60        # up to this many requests, each bar's row is named
TTFT_COLOR, TPOT_COLOR, E2E_COLOR = "rgb(239, 85, 59)", "rgb(99, 110, 250)", "rgb(0, 160, 120)"
WAIT_COLOR, STREAM_COLOR = "rgba(239, 85, 59, 0.35)", "rgb(99, 110, 250)"
EXCLUDED_WAIT, EXCLUDED_STREAM = "rgb(225, 225, 225)", "rgb(170, 170, 170)"
FAILED_COLOR = "rgb(200, 30, 30)"
KNEE_COLOR = "rgb(200, 30, 30)"
OFFERED_COLOR = "rgb(150, 150, 150)"
# (statistic, legend words, dash): the median always, the tails where their samples allow.
PERCENTILES = (("p50", "median (p50)", "solid"), ("p90", "p90: 9 in 10 were faster", "dash"),
               ("p99", "p99: 99 in 100 were faster", "dot"))
# (summary key, subplot title, unit, scale to that unit, colour): titled with the registry's
# label and what it means under load.
LATENCY_PANELS = tuple(
    (name, f"{METRICS[name].label}: {gloss}", unit, scale, color)
    for name, gloss, unit, scale, color in (
        ("ttft_s", "the wait before the answer starts", "s", 1.0, TTFT_COLOR),
        ("tpot_s", "the pace once it streams", "ms", 1000.0, TPOT_COLOR),
        ("e2e_s", "the whole answer", "s", 1.0, E2E_COLOR)))


def level_words(load: LoadResult, offered: float) -> str:
    """'4 concurrent requests' or '2 requests/s' ('1 request/s')."""
    return findings.level_words(offered, load.plan.unit)


def short_level(load: LoadResult, offered: float) -> str:
    return f"{offered:g} concurrent" if load.plan.mode != RATE else f"{offered:g} req/s"


def _x_axis_title(load: LoadResult) -> str:
    shape = "requests sent per second (open loop)" if load.plan.mode == RATE \
        else "requests in flight at once (closed loop)"
    return f"offered load: {shape}"


def plotted_levels(load: LoadResult) -> list[Level]:
    """The levels with at least one answer, lightest first: a level where every request failed
    has no latency or throughput to draw (a 0 there would read as a measured point)."""
    return sorted((level for level in load.levels if level.summary.get("completed")),
                  key=lambda level: level.offered)


def _x_axis(figure: go.Figure, load: LoadResult, rows: int = 1) -> None:
    """Every panel ticks at the levels drawn; the title goes on the lowest panel."""
    levels = [level.offered for level in plotted_levels(load)] or \
        sorted(level.offered for level in load.levels)
    if not levels:
        return
    log = len(levels) > 1 and levels[0] > 0 and levels[-1] / levels[0] >= LOG_X_SPAN
    # A margin on both sides, set here: hatched areas (a simulation's) leave autorange none,
    # and the outermost points and their tick labels would sit on the edges.
    if log:
        span = [math.log10(levels[0]) - 0.08, math.log10(levels[-1]) + 0.08]
    else:
        pad = (levels[-1] - levels[0]) * 0.05 or 0.5
        span = [levels[0] - pad, levels[-1] + pad]
    figure.update_xaxes(type="log" if log else "linear", tickvals=levels,
                        ticktext=[f"{v:g}" for v in levels], range=span)
    figure.update_xaxes(title_text=_x_axis_title(load) + (" (log scale)" if log else ""),
                        row=rows, col=1)


def _wide(values: list[float]) -> bool:
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN


def _mark_knee(figure: go.Figure, load: LoadResult) -> None:
    """The knee as a dashed line across every panel at the first saturated level, labelled,
    and the region beyond it shaded. Shapes take data values on log axes too."""
    found = load.knee
    if found is None:
        return
    highest = max(level.offered for level in load.levels)
    if highest > found.saturated:
        figure.add_shape(type="rect", xref="x", yref="paper", x0=found.saturated, x1=highest,
                         y0=0, y1=1, fillcolor="rgba(200, 30, 30, 0.06)", line={"width": 0},
                         layer="below", name="saturated")
    figure.add_shape(type="line", xref="x", yref="paper", x0=found.saturated,
                     x1=found.saturated, y0=0, y1=1, name="knee",
                     line={"color": KNEE_COLOR, "width": 2, "dash": "dash"},
                     # Written down the line: across the top it ran into the panel titles.
                     label={"text": (f"knee: waits grew {found.growth:.1f}x by "
                                     if found.metric == "ttft_s" else
                                     f"knee: answers took {found.growth:.1f}x longer by ")
                                    + level_words(load, found.saturated),
                            "textposition": "middle", "textangle": -90,
                            "font": {"color": KNEE_COLOR}})


def latency_figure(load: LoadResult) -> go.Figure:
    """TTFT, TPOT and end-to-end against the offered load, one panel each."""
    figure = make_subplots(rows=len(LATENCY_PANELS), cols=1, shared_xaxes=True,
                           vertical_spacing=0.08,
                           subplot_titles=[title for _, title, *_ in LATENCY_PANELS])
    levels = plotted_levels(load)
    x = [level.offered for level in levels]
    for row, (metric, title, unit, scale, color) in enumerate(LATENCY_PANELS, start=1):
        drawn: list[float] = []
        for statistic, words, dash in PERCENTILES:
            y, hover = [], []
            for level in levels:
                dist = level.summary.get(metric) or {}
                value = dist.get(statistic)
                y.append(None if value is None else value * scale)
                hover.append(f"{level_words(load, level.offered)}: {statistic} "
                             f"{_seconds(value)} (n = {dist.get('n', 0)})"
                             if value is not None else "")
            if all(v is None for v in y):
                continue                    # no level has the samples for this percentile
            drawn += [v for v in y if v is not None]
            figure.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", name=f"{metric.split('_')[0].upper()} {words}",
                legendgroup=statistic, line={"color": color, "dash": dash, "width": 2},
                marker={"size": 7}, customdata=hover, connectgaps=False,
                hovertemplate="%{customdata}<extra></extra>"), row=row, col=1)
        figure.update_yaxes(title_text=unit, rangemode="tozero", row=row, col=1)
        if _wide(drawn):
            figure.update_yaxes(type="log", title_text=f"{unit} (log scale)", rangemode=None,
                                row=row, col=1)
    _x_axis(figure, load, rows=len(LATENCY_PANELS))
    _mark_knee(figure, load)
    figure.update_layout(
        title=f"Latency as the load grows: {text.html(load.model)}", height=820,
        hovermode="closest", margin={"t": 90, "b": 110},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0})
    return simulated_marks(figure, load.target.get("kind") == SIMULATED)


def throughput_figure(load: LoadResult) -> go.Figure:
    """Requests finished per second (with the offered rate and the goodput), and output
    tokens per second, against the offered load."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                           subplot_titles=("requests finished per second",
                                           "output tokens per second, all users together"))
    levels = plotted_levels(load)
    x = [level.offered for level in levels]

    def line(key: str, name: str, color: str, row: int, what: str, dash: str = "solid") -> None:
        y = [level.summary.get(key) for level in levels]
        if all(v is None for v in y):
            return
        figure.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=name, line={"color": color, "dash": dash},
            customdata=[f"{level_words(load, level.offered)}: "
                        f"{'-' if v is None else format_number(v)} {what}"
                        for level, v in zip(levels, y)],
            hovertemplate="%{customdata}<extra></extra>"), row=row, col=1)

    if load.plan.mode == RATE:
        figure.add_trace(go.Scatter(
            x=x, y=x, mode="lines", name="offered: what was asked for",
            line={"color": OFFERED_COLOR, "dash": "dash"},
            customdata=[f"{level_words(load, v)} offered" for v in x],
            hovertemplate="%{customdata}<extra></extra>"), row=1, col=1)
    line("achieved_requests_per_s", "achieved: requests finished per second", STREAM_COLOR, 1,
         "requests finished per second")
    if load.slo is not None:
        line("goodput_requests_per_s", "goodput: finished within the targets", E2E_COLOR, 1,
             "requests per second met the latency targets", dash="dot")   # often on achieved
    line("output_tokens_per_s", "output tokens per second", TTFT_COLOR, 2,
         "tokens per second written for all users together")
    figure.update_yaxes(title_text="requests/s", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(title_text="tokens/s", rangemode="tozero", row=2, col=1)
    _x_axis(figure, load, rows=2)
    _mark_knee(figure, load)
    figure.update_layout(
        title="Throughput as the load grows: does the server keep up?", height=600,
        hovermode="closest", margin={"t": 90, "b": 110},
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0})
    return simulated_marks(figure, load.target.get("kind") == SIMULATED)


def tradeoff_figure(load: LoadResult) -> go.Figure:
    """Each user's streaming speed (y) against the server's total output (x), a point per level."""
    levels = [level for level in plotted_levels(load)
              if level.summary.get("output_tokens_per_s") is not None
              and level.summary.get("output_tokens_per_s_per_user") is not None]
    total = [level.summary["output_tokens_per_s"] for level in levels]
    per_user = [level.summary["output_tokens_per_s_per_user"] for level in levels]
    labels = [short_level(load, level.offered) for level in levels]
    figure = go.Figure(go.Scatter(
        x=total, y=per_user, mode="lines+markers+text", text=labels, textposition="top center",
        line={"color": STREAM_COLOR, "width": 2}, marker={"size": 9}, name="one load level",
        customdata=[f"{level_words(load, level.offered)}: the server wrote "
                    f"{format_number(t)} tokens/s in total; each user's answer streamed at "
                    f"{format_number(u)} tokens/s (median)"
                    for level, t, u in zip(levels, total, per_user)],
        hovertemplate="%{customdata}<extra></extra>"))
    figure.update_layout(
        title="The trade-off: more users, more total output, slower answers for each",
        xaxis_title="total output of the server (tokens/s)",
        yaxis_title="speed each user sees (tokens/s)", height=440,
        # Room on the right and at the top for the labels of the outermost points.
        xaxis_range=[0, max(total, default=1) * 1.2 or 1],
        yaxis_range=[0, max(per_user, default=1) * 1.2 or 1], showlegend=False)
    return simulated_marks(figure, load.target.get("kind") == SIMULATED)


def timeline_figure(load: LoadResult, level: Level) -> go.Figure:
    """One level's requests as bars from send to end, split at the first token: the warm-up and
    measured ones that were sent (cool-down requests only counted in the title)."""
    records = sorted((r for r in level.records if _drawn(r)), key=lambda r: r.index)
    cooldown = sum(r.phase == COOLDOWN for r in level.records)
    start = min((r.sent_s for r in records), default=0.0)
    groups: dict[str, dict[str, list]] = {}

    def add(group: str, record: RequestRecord, begin: float, end: float, words: str) -> None:
        bars = groups.setdefault(group, {"y": [], "base": [], "x": [], "hover": []})
        bars["y"].append(record.index)
        bars["base"].append(begin - start)
        bars["x"].append(max(end - begin, 0.0))
        bars["hover"].append(f"request #{record.index} ({_phase_words(record)}): {words}")

    for record in records:
        counted = record.phase == MEASURED
        end = record.end_s if record.end_s is not None else \
            (record.first_token_s if record.first_token_s is not None else record.sent_s)
        if record.status == FAILED:
            add("failed", record, record.sent_s, end,
                f"failed after {format_seconds(end - record.sent_s)}: "
                f"{text.html(record.reason or 'no answer')}")
            continue
        first = record.first_token_s
        waited = (first if first is not None else end) - record.sent_s
        add("wait" if counted else "excluded wait", record, record.sent_s,
            first if first is not None else end,
            f"waited {format_seconds(waited)} for its first token"
            + ("" if first is not None else " (cancelled before it came)"))
        if first is not None:
            add("stream" if counted else "excluded stream", record, first, end,
                f"streamed {record.output_tokens} tokens in {format_seconds(end - first)}"
                + (" (cancelled)" if record.status == CANCELLED else ""))
    figure = go.Figure()
    styles = {
        "wait": ("waiting for the first token", WAIT_COLOR, None),
        "stream": ("streaming the answer", STREAM_COLOR, None),
        "excluded wait": ("warm-up (not counted): waiting", EXCLUDED_WAIT, None),
        "excluded stream": ("warm-up (not counted): streaming", EXCLUDED_STREAM,
                            None),
        "failed": ("failed", FAILED_COLOR, "x"),
    }
    for group, (name, color, pattern) in styles.items():
        bars = groups.get(group)
        if not bars:
            continue
        figure.add_trace(go.Bar(
            y=bars["y"], x=bars["x"], base=bars["base"], orientation="h", name=name,
            marker={"color": color, **({"pattern": {"shape": pattern}} if pattern else {})},
            customdata=bars["hover"], hovertemplate="%{customdata}<extra></extra>"))
    indexes = [r.index for r in records]
    many = len(records) > TIMELINE_TICKS
    yaxis: dict[str, Any] = {"title": "requests in the order sent"}
    if indexes:          # sized to the bars drawn, first request at the top
        yaxis["range"] = [max(indexes) + 0.5, min(indexes) - 0.5]
    else:
        yaxis["autorange"] = "reversed"
    if not many:
        yaxis.update(tickvals=indexes, ticktext=[f"#{r.index}" + ("" if r.phase == MEASURED
                                                                  else f" {r.phase}")
                                                 for r in records])
    ends = [base + width for bars in groups.values()
            for base, width in zip(bars["base"], bars["x"])]
    xaxis: dict[str, Any] = {"title": "seconds since the level's first request"}
    if ends:
        xaxis["range"] = [0, max(max(ends), 1e-3) * 1.02]
    title = f"Every request at {level_words(load, level.offered)}: growing waits are the queue"
    if cooldown:
        title += (f"<br><sup>{len(records)} requests drawn; not drawn: {cooldown} cool-down "
                  f"request{'s' if cooldown != 1 else ''}, sent afterwards only to keep the "
                  "load up, then cancelled</sup>")
    figure.update_layout(
        title=title, barmode="overlay",
        # Room for the title, the legend and the axis (about 220 px) and the bars themselves.
        height=max(380, min(900, 220 + (3 if many else 22) * len(records))),
        xaxis=xaxis, yaxis=yaxis,
        hovermode="closest", bargap=0.0 if many else 0.25,
        legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0},
        margin={"b": 100})
    return simulated_marks(figure, load.target.get("kind") == SIMULATED)


def _drawn(record: RequestRecord) -> bool:
    """Warm-up and measured requests that went out: a cancelled one that never got past its
    send (its send and end are the same instant) did not load the server."""
    if record.phase == COOLDOWN:
        return False
    return not (record.status == CANCELLED and record.end_s is not None
                and record.end_s <= record.sent_s and record.http_status is None)


def _phase_words(record: RequestRecord) -> str:
    if record.phase == MEASURED:
        return "measured" if record.status != CANCELLED else "measured, cancelled"
    return f"{record.phase}, not counted"


def _seconds(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format_seconds(value)


# --- the per-level table, in words -------------------------------------------------------------

def display_rows(load: LoadResult) -> list[dict[str, Any]]:
    """One row per level for people: the load, the counts, latency percentiles formatted (a
    dash where a percentile needs more samples), and the rates."""
    from lib.serving import pricing

    rows = []
    late = any(level.late_sends for level in load.levels)
    priced = dict(zip((level.offered for level in load.levels), pricing.levels(load)))
    for level in sorted(load.levels, key=lambda level: level.offered):
        summary = level.summary
        cost = priced[level.offered]

        def stat(metric: str, name: str) -> str:
            return _seconds((summary.get(metric) or {}).get(name))

        def rate(key: str) -> str:
            value = summary.get(key)
            return "-" if value is None else format_number(value)

        row = {"load": level_words(load, level.offered),
               "measured requests": summary["requests"],
               "finished": summary["completed"], "failed": summary["failed"],
               "TTFT median": stat("ttft_s", "p50"), "TTFT p90": stat("ttft_s", "p90"),
               "TTFT p99": stat("ttft_s", "p99"),
               "TPOT median": stat("tpot_s", "p50"), "TPOT p90": stat("tpot_s", "p90"),
               "end-to-end median": stat("e2e_s", "p50"), "end-to-end p90": stat("e2e_s", "p90"),
               "requests/s finished": rate("achieved_requests_per_s"),
               "output tokens/s": rate("output_tokens_per_s"),
               "tokens/s per user": rate("output_tokens_per_s_per_user")}
        if load.slo is not None:
            row["goodput (requests/s)"] = rate("goodput_requests_per_s")
            fraction = summary.get("good_fraction")
            row["met the targets"] = "-" if fraction is None else f"{fraction:.0%}"
        if pricing.price_of(load.target) is not None:
            row["$ per million tokens"] = _dollars(cost["cost_per_million_tokens"])
            if load.slo is not None:
                row["$ per million within targets"] = _dollars(
                    cost["cost_per_million_good_tokens"])
        if cost["joules_per_token"] is not None:
            row["J per token (at most)"] = joules_words(cost["joules_per_token"])
        if late:
            row["sent late"] = level.late_sends
        rows.append(row)
    return rows


def _dollars(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"
