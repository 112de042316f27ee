"""Plotly figures (data + layout as plain dicts) that console.js draws with plotly.min.js."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.console.web.names import group_label

LIFECYCLE = ["new", "active", "loyal", "dormant", "churned", "reactivated"]
COLOURS = {
    "new": "#4c78a8",
    "active": "#54a24b",
    "loyal": "#b279a2",
    "dormant": "#f58518",
    "churned": "#e45756",
    "reactivated": "#72b7b2",
    "not yet seen": "#bab0ac",
}
_LAYOUT = {"margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "height": 320}


def _days(start: datetime, n: int) -> list[str]:
    return [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n)]


def lifecycle_series(start: datetime, days: list[dict[str, int]]) -> dict[str, Any]:
    x = _days(start, len(days))
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "stackgroup": "one",
                "name": state,
                "x": x,
                "y": [d.get(state, 0) for d in days],
                "line": {"color": COLOURS[state]},
            }
            for state in LIFECYCLE
        ],
        "layout": {**_LAYOUT, "yaxis": {"title": "users"}, "legend": {"orientation": "h"}},
    }


def sankey(flows: list[tuple[str, str, int]], start_label: str, end_label: str) -> dict[str, Any]:
    """Left nodes: states at the start; right nodes: states at the end."""
    order = [*LIFECYCLE, "not yet seen"]

    def rank(state: str) -> int:
        return order.index(state) if state in order else len(order)

    left = sorted({a for a, _, _ in flows}, key=rank)
    right = sorted({b for _, b, _ in flows}, key=rank)
    labels = [f"{s} ({start_label})" for s in left] + [f"{s} ({end_label})" for s in right]
    return {
        "data": [
            {
                "type": "sankey",
                "arrangement": "snap",
                "node": {
                    "label": labels,
                    "color": [COLOURS.get(s, "#999") for s in left + right],
                    "pad": 14,
                },
                "link": {
                    "source": [left.index(a) for a, _, _ in flows],
                    "target": [len(left) + right.index(b) for _, b, _ in flows],
                    "value": [n for _, _, n in flows],
                },
            }
        ],
        "layout": {**_LAYOUT, "height": 380},
    }


def rfm_grid(cells: list[tuple[int, int, str]], counts: dict[str, int]) -> dict[str, Any]:
    """Recency (rows, 5 on top) against frequency-monetary (columns); colour = group size."""
    rows = [5, 4, 3, 2, 1]
    z, text = [], []
    for r in rows:
        z.append([counts.get(g, 0) for rr, _, g in cells if rr == r])
        text.append([f"{group_label(g)}<br>{counts.get(g, 0):,}" for rr, _, g in cells if rr == r])
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z,
                "x": ["FM 1", "FM 2", "FM 3", "FM 4", "FM 5"],
                "y": [f"R {r}" for r in rows],
                "text": text,
                "texttemplate": "%{text}",
                "hoverinfo": "text",
                "colorscale": "Blues",
                "reversescale": True,
                "showscale": False,
            }
        ],
        "layout": {**_LAYOUT, "height": 360, "yaxis": {"autorange": "reversed"}},
    }


def size_line(start: datetime, sizes: list[int]) -> dict[str, Any]:
    return {
        "data": [{"type": "scatter", "mode": "lines", "x": _days(start, len(sizes)), "y": sizes}],
        "layout": {**_LAYOUT, "height": 240, "yaxis": {"title": "members"}},
    }


def uplift(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Each variant's uplift over control, in percentage points, with its interval."""
    names = [g["name"] for g in groups]
    diff = [g["difference"] * 100 for g in groups]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": names,
                "y": diff,
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [(g["upper"] - g["difference"]) * 100 for g in groups],
                    "arrayminus": [(g["difference"] - g["lower"]) * 100 for g in groups],
                },
                "marker": {"size": 12},
            }
        ],
        "layout": {
            **_LAYOUT,
            "height": 280,
            "yaxis": {"title": "uplift vs control (points)", "zeroline": True},
            "shapes": [
                {
                    "type": "line",
                    "xref": "paper",
                    "x0": 0,
                    "x1": 1,
                    "y0": 0,
                    "y1": 0,
                    "line": {"dash": "dot", "color": "#888"},
                }
            ],
        },
    }


def sparkline(values: list[int], width: int = 120, height: int = 28) -> str:
    """An inline SVG polyline (no script needed)."""
    if not values:
        return ""
    top = max(values) or 1
    low = min(values)
    span = (top - low) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
        for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="{points}"/></svg>'
    )


def day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * 86_400, UTC)
