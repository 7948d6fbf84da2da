"""Speed against quality, where a sweep measured both: the trade in one sentence per point,
and the points no other point beats in both (the frontier).

A point's speed is its time per output token (or its request latency for a model that writes
none) against the sweep's reference point: the one that agrees most with the original model
(ties: the first). The speed ratio obeys the noise rules of `lib.views.comparable`; agreement
and perplexity are computed, not sampled, so they carry no noise of their own.
"""

from __future__ import annotations

from typing import Any

from lib.core.results import format_perplexity
from lib.measure.factors import Factor
from lib.records.table import is_measured
from lib.views.comparable import NEGLIGIBLE, finding_ratio, ms


def with_quality(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured rows whose quality was measured."""
    return [row for row in rows if is_measured(row) and row.get("quality_agreement") is not None]


def speed_key(rows: list[dict[str, Any]]) -> str:
    return "tpot_s" if all(row.get("tpot_s") for row in rows) else "e2e_s"


def frontier(rows: list[dict[str, Any]]) -> list[int]:
    """Indexes of the rows no other row beats in both speed and agreement (at least as good in
    both and better in one), fastest first."""
    key = speed_key(rows)

    def beaten(row: dict[str, Any]) -> bool:
        return any(other[key] <= row[key] and other["quality_agreement"] >=
                   row["quality_agreement"] and (other[key] < row[key] or
                                                 other["quality_agreement"] >
                                                 row["quality_agreement"])
                   for other in rows if other is not row)
    kept = [index for index, row in enumerate(rows) if not beaten(row)]
    return sorted(kept, key=lambda index: rows[index][key])


def quality_findings(rows: list[dict[str, Any]], factor: Factor) -> list[str]:
    """'Q4_K_M: 1.9x faster per token, agrees on 80% of next words (perplexity 24.65 vs
    19.75).' for each point against the reference point; [] without two measured points."""
    rated = with_quality(rows)
    if len(rated) < 2:
        return []
    key = speed_key(rated)
    unit = "per token" if key == "tpot_s" else "per request"
    reference = max(rated, key=lambda row: row["quality_agreement"])
    sentences = []
    for row in rated:
        if row is reference:
            continue
        ratio = finding_ratio(row, reference, key, factor)
        if ratio is None:
            speed = f"no clear change {unit} (within the noise)"
        elif abs(ratio - 1) <= NEGLIGIBLE:
            speed = f"about as fast {unit}"
        elif ratio > 1:
            speed = f"{ratio:.1f}x faster {unit}"
        else:
            speed = f"{1 / ratio:.1f}x slower {unit}"
        sentences.append(
            f"{factor.title} {factor.value_label(row[factor.column])}: {speed} "
            f"({ms(row[key])} vs {ms(reference[key])}), agrees with the original model on "
            f"{row['quality_agreement']:.0%} of next words (perplexity "
            f"{format_perplexity(row['quality_perplexity'])} vs "
            f"{format_perplexity(reference['quality_perplexity'])}).")
    best = [rated[index] for index in frontier(rated)]
    if 1 < len(best) < len(rated):
        named = ", ".join(factor.value_label(row[factor.column]) for row in best)
        sentences.append(f"No other point is both faster and closer to the original than "
                         f"these: {named} (the frontier, drawn as a line).")
    return [f"Speed against quality: {sentences[0]}"] + sentences[1:] if sentences else []


def quality_tradeoff_figure(rows: list[dict[str, Any]], factor: Factor):
    """Each point by its time per token (x) and its agreement with the original model (y),
    perplexity on hover; the frontier (`frontier`) drawn as a line."""
    import plotly.graph_objects as go

    from lib.core.metrics import METRICS
    from lib.views.chart_marks import STRONG, legend_below

    rated = with_quality(rows)
    key = speed_key(rated)
    metric = METRICS[key]
    scale = metric.display_scale
    labels = [factor.value_label(row[factor.column]) for row in rated]
    figure = go.Figure(go.Scatter(
        x=[row[key] * scale for row in rated], y=[row["quality_agreement"] * 100 for row in rated],
        mode="markers+text", text=labels, name="a point", cliponaxis=False,
        # Labels under the points near 100%, where one above would run off the plot.
        textposition=["bottom center" if row["quality_agreement"] > 0.9 else "top center"
                      for row in rated],
        marker={"size": 11, "color": STRONG},
        customdata=[f"perplexity {format_perplexity(row['quality_perplexity'])}"
                    for row in rated],
        hovertemplate="%{text}<br>%{x:.1f} " + metric.display_unit
        + "<br>agrees on %{y:.1f}% of next words<br>%{customdata}<extra></extra>"))
    best = [rated[index] for index in frontier(rated)]
    if len(best) > 1:
        figure.add_trace(go.Scatter(
            x=[row[key] * scale for row in best],
            y=[row["quality_agreement"] * 100 for row in best], mode="lines",
            line={"dash": "dot", "color": STRONG}, name="frontier: nothing beats these in both",
            hoverinfo="skip"))
    figure.update_layout(
        title="Speed against quality: faster is left, closer to the original model is up",
        xaxis_title=f"{metric.words} ({metric.display_unit})",
        yaxis_title="agrees with the original model on next words (%)", height=440,
        xaxis_rangemode="tozero", yaxis_range=[0, 105])
    legend_below(figure)
    return figure
