"""Charts of the coordinator's activity report, drawn with Bokeh (Panel ships it).

Input is the store's ``GET /reports/activity`` (aggregates only: counts,
durations in days, case ids, network names; no clinical content). Each
function returns one Bokeh figure; networks are stacked or grouped so a
coordinator sees their network against the others.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bokeh.models import ColumnDataSource
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

__all__ = [
    "cases_per_month",
    "time_to_closure",
    "contributions_per_panel",
    "by_network",
    "activity_figures",
]

_WIDTH, _HEIGHT = 520, 280


def _colours(networks: list[str]) -> dict[str, str]:
    return {n: Category10_10[i % 10] for i, n in enumerate(networks)}


def cases_per_month(rows: list[dict[str, Any]]):  # noqa: ANN201 - a bokeh figure
    """Stacked bars: cases submitted per month, by network."""
    months = sorted({r["month"] for r in rows})
    networks = sorted({r["network"] for r in rows})
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        counts[r["network"]][r["month"]] = counts[r["network"]].get(r["month"], 0) + r["cases"]
    data: dict[str, list] = {"month": months}
    for n in networks:
        data[n] = [counts[n].get(m, 0) for m in months]
    fig = figure(
        x_range=months or ["-"],
        title="Cases per month",
        width=_WIDTH,
        height=_HEIGHT,
        toolbar_location=None,
        name="cases_per_month",
    )
    if networks:
        colours = _colours(networks)
        fig.vbar_stack(
            networks,
            x="month",
            width=0.8,
            source=ColumnDataSource(data),
            color=[colours[n] for n in networks],
            legend_label=networks,
        )
    fig.y_range.start = 0
    return fig


def time_to_closure(rows: list[dict[str, Any]]):  # noqa: ANN201
    """Days from submission to closure, one bar per closed case, coloured by network."""
    rows = sorted(rows, key=lambda r: r["days"])
    labels = [f"{r['case_id'][:8]}" for r in rows]
    colours = _colours(sorted({r["network"] for r in rows}))
    fig = figure(
        x_range=labels or ["-"],
        title="Days from submission to closure",
        width=_WIDTH,
        height=_HEIGHT,
        toolbar_location=None,
        name="time_to_closure",
    )
    fig.vbar(
        x="case",
        top="days",
        width=0.8,
        color="colour",
        source=ColumnDataSource(
            {
                "case": labels,
                "days": [r["days"] for r in rows],
                "colour": [colours[r["network"]] for r in rows],
            }
        ),
    )
    fig.xaxis.major_label_orientation = 0.9
    fig.y_range.start = 0
    return fig


def contributions_per_panel(rows: list[dict[str, Any]]):  # noqa: ANN201
    """How many panels received 0, 1, 2, … contributions."""
    hist: dict[int, int] = defaultdict(int)
    for r in rows:
        hist[int(r["contributions"])] += 1
    xs = list(range(0, max(hist, default=0) + 1))
    fig = figure(
        x_range=[str(x) for x in xs] or ["0"],
        title="Contributions per panel (number of panels)",
        width=_WIDTH,
        height=_HEIGHT,
        toolbar_location=None,
        name="contributions_per_panel",
    )
    fig.vbar(x=[str(x) for x in xs], top=[hist.get(x, 0) for x in xs], width=0.8)
    fig.y_range.start = 0
    return fig


def by_network(rows: list[dict[str, Any]]):  # noqa: ANN201
    """Submitted, open and closed cases of each network, side by side."""
    networks = [r["network"] for r in rows]
    kinds = ["submitted", "open", "closed"]
    fig = figure(
        y_range=networks or ["-"],
        title="Cases by network",
        width=_WIDTH,
        height=max(_HEIGHT // 2, 60 * len(networks) + 80),
        toolbar_location=None,
        name="by_network",
    )
    if networks:
        fig.hbar_stack(
            kinds,
            y="network",
            height=0.7,
            source=ColumnDataSource(
                {"network": networks, **{k: [r[k] for r in rows] for k in kinds}}
            ),
            color=Category10_10[:3],
            legend_label=kinds,
        )
    return fig


def activity_figures(report: dict[str, Any]) -> list:
    """The four charts of one activity report, in the order the dashboard shows them."""
    return [
        cases_per_month(report.get("cases_per_month", [])),
        time_to_closure(report.get("time_to_closure", [])),
        contributions_per_panel(report.get("contributions_per_panel", [])),
        by_network(report.get("by_network", [])),
    ]
