"""Segment pages: the list with sizes, one segment (versions, diff, restore, members, why)."""

from __future__ import annotations

import asyncio
import difflib
from datetime import UTC, datetime, timedelta

import yaml
from cohortflow.analytics.v1 import analytics_pb2 as apb
from cohortflow.segments.v1 import segments_pb2 as spb
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.common.segment_wire import condition_to_dict
from services.console.backends import AppClients
from services.console.web import builder, charts, inputs
from services.console.web.access import CSRF_FIELD, require
from services.console.web.names import timestamp
from services.console.web.render import page

SPARK_DAYS = 30
HISTORY_VERSIONS = 20


async def segment_list(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    listed = await c.call(
        c.segments.ListSegments, spb.ListSegmentsRequest(page_size=200, show_archived=False)
    )
    sparks: dict[str, str] = {}
    if listed.segments:
        today = datetime.now(UTC).date()
        series = await c.call(
            c.analytics.GetSegmentSizeSeries,
            apb.GetSegmentSizeSeriesRequest(
                segment_ids=[s.segment_id for s in listed.segments],
                start_time=timestamp(inputs.day_start_us(today - timedelta(days=SPARK_DAYS - 1))),
                end_time=timestamp(inputs.day_start_us(today)),
            ),
        )
        sparks = {s.segment_id: charts.sparkline(list(s.sizes)) for s in series.series}
    return page(request, "segments.html", access, segments=listed.segments, sparks=sparks)


def definition_yaml(segment: spb.Segment) -> str:
    return yaml.safe_dump(
        {"condition": condition_to_dict(segment.condition)}, sort_keys=False, allow_unicode=True
    )


async def _versions(c: AppClients, current: spb.Segment) -> list[spb.Segment]:
    """The last HISTORY_VERSIONS definitions, oldest first (`current` is the latest)."""
    first = max(1, current.version - HISTORY_VERSIONS + 1)
    replies = await asyncio.gather(
        *(
            c.call(
                c.segments.GetSegment,
                spb.GetSegmentRequest(segment_id=current.segment_id, version=v),
            )
            for v in range(first, current.version)
        )
    )
    return [*(r.segment for r in replies), current]


def _diff(old: str, new: str) -> list[tuple[str, str]]:
    """Lines of a unified diff, each with its kind: add, remove, context or hunk."""
    out = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=2):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "remove", "@": "hunk"}.get(line[:1], "context")
        out.append((kind, line))
    return out


async def segment_detail(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    segment_id = inputs.ident(request.path_params["segment_id"], "segment_id")
    q = request.query_params
    today = datetime.now(UTC).date()
    as_of = inputs.day(q.get("as_of"), "as_of", today) if q.get("as_of") else None
    who = inputs.ident(q.get("user"), "user", required=False)
    current = (
        await c.call(c.segments.GetSegment, spb.GetSegmentRequest(segment_id=segment_id))
    ).segment
    members_request = spb.ListSegmentMembersRequest(segment_id=segment_id, page_size=50)
    if as_of is not None:
        members_request.as_of_time.CopyFrom(timestamp(inputs.day_end_us(as_of)))
    versions, members, sizes = await asyncio.gather(
        _versions(c, current),
        c.call(c.segments.ListSegmentMembers, members_request),
        c.call(
            c.analytics.GetSegmentSizeSeries,
            apb.GetSegmentSizeSeriesRequest(
                segment_ids=[segment_id],
                start_time=timestamp(inputs.day_start_us(today - timedelta(days=89))),
                end_time=timestamp(inputs.day_start_us(today)),
            ),
        ),
    )
    history = []
    previous = ""
    for v in versions:
        text = definition_yaml(v)
        history.append(
            {"segment": v, "yaml": text, "diff": _diff(previous, text) if previous else []}
        )
        previous = text
    why = await _why(c, segment_id, who, as_of) if who else None
    start = charts.day_start(sizes.series[0].start_time.seconds // 86_400)
    return page(
        request,
        "segment.html",
        access,
        segment=current,
        history=list(reversed(history)),
        members=members,
        as_of=as_of,
        who=who,
        why=why,
        figures={"segment-size": charts.size_line(start, list(sizes.series[0].sizes))},
    )


async def _why(c: AppClients, segment_id: str, user_id: str, as_of: object) -> dict[str, object]:
    """Whether the user is (or was) a member, and the change that made them one."""
    check = spb.CheckMembershipRequest(segment_id=segment_id, user_id=user_id)
    if as_of is not None:
        check.as_of_time.CopyFrom(timestamp(inputs.day_end_us(as_of)))  # type: ignore[arg-type]
    membership = await c.call(c.segments.CheckMembership, check)
    changes = []
    token = ""
    for _ in range(20):  # at most 20 pages of this user's changes of this segment
        reply = await c.call(
            c.segments.ListMembershipHistory,
            spb.ListMembershipHistoryRequest(
                user_id=user_id, segment_id=segment_id, page_size=500, page_token=token
            ),
        )
        changes.extend(reply.changes)
        token = reply.next_page_token
        if not token:
            break
    cutoff = inputs.day_end_us(as_of) if as_of is not None else None  # type: ignore[arg-type]
    entries = [
        ch
        for ch in changes
        if ch.direction == ch.DIRECTION_ENTERED
        and (cutoff is None or ch.header.effective_time.ToMicroseconds() <= cutoff)
    ]
    return {
        "member": membership.member,
        "since": membership.since_time,
        "entry": entries[-1] if membership.member and entries else None,
        "changes": changes,
    }


async def restore(request: Request) -> Response:
    form = await inputs.form(request)
    access = await require(request, editor=True, csrf=str(form.get(CSRF_FIELD, "")))
    segment_id = inputs.ident(request.path_params["segment_id"], "segment_id")
    raw = inputs.ident(form.get("version"), "version")
    if not raw.isdigit() or not 0 < int(raw) < 1 << 62:
        raise inputs.FieldError("version", "must be a version number")
    c = access.clients
    reply = await c.call(
        c.segments.RestoreSegmentVersion,
        spb.RestoreSegmentVersionRequest(segment_id=segment_id, version=int(raw)),
    )
    return RedirectResponse(
        f"/apps/{access.app_id}/segments/{segment_id}?after={reply.segment.defined_position}",
        status_code=303,
    )


def routes() -> list[Route]:
    return [
        Route("/segments", segment_list),
        Route("/segments/new", builder.builder_page),
        Route("/segments/{segment_id}", segment_detail),
        Route("/segments/{segment_id}/edit", builder.builder_page),
        Route("/segments/{segment_id}/restore", restore, methods=["POST"]),
        *builder.routes(),
    ]
