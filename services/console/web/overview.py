"""The overview of an app: lifecycle now and over time, the lifecycle Sankey, the RFM grid."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from cohortflow.analytics.v1 import analytics_pb2 as apb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.console.web import charts, inputs
from services.console.web.access import require
from services.console.web.names import group_name as _group
from services.console.web.names import state_name as _state
from services.console.web.names import timestamp as _ts
from services.console.web.render import page

MAX_RANGE_DAYS = 3660


def _range(request: Request, first: str, last: str, days: int) -> tuple[date, date]:
    today = datetime.now(UTC).date()
    end = inputs.day(request.query_params.get(last), last, today)
    start = inputs.day(request.query_params.get(first), first, end - timedelta(days=days))
    if start > end:
        raise inputs.FieldError(first, f"must not be after {last}")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise inputs.FieldError(first, f"the range spans at most {MAX_RANGE_DAYS} days")
    return start, end


async def overview(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    start, end = _range(request, "start", "end", 90)
    flow_from, flow_to = _range(request, "flow_from", "flow_to", 7)
    if flow_from == flow_to:
        flow_from -= timedelta(days=1)
    rfm_from, rfm_to = _range(request, "rfm_from", "rfm_to", 30)
    today = datetime.now(UTC).date()
    # Users per state now: the rollups at the end of today (no scan of every profile).
    summary, series, flows, grid, moves = await asyncio.gather(
        c.call(
            c.analytics.GetLifecycleSeries,
            apb.GetLifecycleSeriesRequest(
                start_time=_ts(inputs.day_start_us(today)), end_time=_ts(inputs.day_start_us(today))
            ),
        ),
        c.call(
            c.analytics.GetLifecycleSeries,
            apb.GetLifecycleSeriesRequest(
                start_time=_ts(inputs.day_start_us(start)), end_time=_ts(inputs.day_start_us(end))
            ),
        ),
        c.call(
            c.analytics.GetLifecycleFlows,
            apb.GetLifecycleFlowsRequest(
                start_time=_ts(inputs.day_start_us(flow_from)),
                end_time=_ts(inputs.day_start_us(flow_to)),
            ),
        ),
        c.call(c.analytics.GetRfmGrid, apb.GetRfmGridRequest()),
        c.call(
            c.analytics.GetRfmTransitions,
            apb.GetRfmTransitionsRequest(
                start_time=_ts(inputs.day_start_us(rfm_from)),
                end_time=_ts(inputs.day_start_us(rfm_to)),
            ),
        ),
    )
    now_counts = {_state(s.state): s.users for s in summary.days[0].counts}
    days = [{_state(s.state): s.users for s in d.counts} for d in series.days]
    flow_rows = [
        (_state(f.from_state) if f.from_state else "not yet seen", _state(f.to_state), f.users)
        for f in flows.flows
    ]
    group_counts = {_group(g.group): g.users for g in grid.groups}
    cells = [(cell.recency, cell.frequency_monetary, _group(cell.group)) for cell in grid.cells]
    figures = {
        "lifecycle-series": charts.lifecycle_series(
            datetime(start.year, start.month, start.day, tzinfo=UTC), days
        ),
        "lifecycle-sankey": charts.sankey(flow_rows, str(flow_from), str(flow_to)),
        "rfm-grid": charts.rfm_grid(cells, group_counts),
    }
    presets = [
        (label, str(today - timedelta(days=n)), str(today))
        for label, n in (("day", 1), ("7 days", 7), ("30 days", 30), ("90 days", 90))
    ]
    return page(
        request,
        "overview.html",
        access,
        presets=presets,
        purchasers=sum(group_counts.values()),
        moved=sum(n for a, b, n in flow_rows if a != b),
        now_counts=now_counts,
        total=summary.days[0].total_users,
        rollup_position=series.position,
        start=start,
        end=end,
        flow_from=flow_from,
        flow_to=flow_to,
        rfm_from=rfm_from,
        rfm_to=rfm_to,
        start_totals={_state(s.state): s.users for s in flows.start_counts},
        end_totals={_state(s.state): s.users for s in flows.end_counts},
        flows=flow_rows,
        groups=group_counts,
        transitions=[
            (_group(t.from_group) or "none", _group(t.to_group) or "none", t.changes)
            for t in moves.transitions[:20]
        ],
        figures=figures,
        states=charts.LIFECYCLE,
    )


def routes() -> list[Route]:
    return [Route("/", overview)]
