"""The console's figures: what each chart draws from the figures the services answer."""

from __future__ import annotations

from datetime import UTC, datetime

from services.console.web import charts


def test_uplift_points_carry_their_interval_as_error_bars_in_percentage_points() -> None:
    figure = charts.uplift(
        [
            {"name": "A", "difference": 0.05, "lower": 0.01, "upper": 0.12},
            {"name": "B", "difference": -0.02, "lower": -0.06, "upper": 0.03},
        ]
    )
    (trace,) = figure["data"]
    assert trace["x"] == ["A", "B"]
    assert [round(y, 9) for y in trace["y"]] == [5.0, -2.0]
    bars = trace["error_y"]
    assert [round(v, 9) for v in bars["array"]] == [7.0, 5.0]  # up to the upper bound
    assert [round(v, 9) for v in bars["arrayminus"]] == [4.0, 4.0]  # down to the lower one
    assert figure["layout"]["shapes"][0]["y0"] == 0  # the line of no effect


def test_the_sankey_links_each_start_state_to_each_end_state_with_its_users() -> None:
    flows = [("active", "dormant", 3), ("not yet seen", "new", 5), ("active", "active", 10)]
    (trace,) = charts.sankey(flows, "2026-01-01", "2026-01-08")["data"]
    labels = trace["node"]["label"]
    assert labels == [  # in lifecycle order, "not yet seen" last
        "active (2026-01-01)",
        "not yet seen (2026-01-01)",
        "new (2026-01-08)",
        "active (2026-01-08)",
        "dormant (2026-01-08)",
    ]
    link = trace["link"]
    links = list(zip(link["source"], link["target"], link["value"], strict=True))
    assert sorted((labels[a], labels[b], n) for a, b, n in links) == sorted(
        (f"{a} (2026-01-01)", f"{b} (2026-01-08)", n) for a, b, n in flows
    )


def test_the_rfm_grid_puts_each_group_in_its_cell_with_its_users() -> None:
    cells = [
        (r, fm, "champions" if r + fm >= 9 else "lost")
        for r in range(5, 0, -1)
        for fm in range(1, 6)
    ]
    (trace,) = charts.rfm_grid(cells, {"champions": 7, "lost": 2})["data"]
    assert trace["y"] == ["R 5", "R 4", "R 3", "R 2", "R 1"]
    assert trace["z"][0] == [2, 2, 2, 7, 7]  # R 5: FM 4 and 5 are champions
    assert trace["text"][0][4] == "champions<br>7"
    assert trace["text"][4][0] == "lost<br>2"


def test_series_and_sparklines_have_a_point_per_day() -> None:
    start = datetime(2026, 1, 30, tzinfo=UTC)
    figure = charts.lifecycle_series(start, [{"new": 1}, {"new": 2, "active": 1}, {}])
    new = next(t for t in figure["data"] if t["name"] == "new")
    assert new["x"] == ["2026-01-30", "2026-01-31", "2026-02-01"] and new["y"] == [1, 2, 0]
    spark = charts.sparkline([0, 5, 10])
    assert spark.count(",") == 3 and "polyline" in spark
    assert charts.sparkline([]) == ""
