"""User pages: search by id, profile, the timeline of every change with its cause, messages."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1 import inbox_pb2 as ipb
from cohortflow.changes.v1 import changes_pb2 as chpb
from cohortflow.profiles.v1 import profiles_pb2 as ppb
from cohortflow.segments.v1 import segments_pb2 as spb
from google.protobuf import json_format
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.console.backends import AppClients, BackendError
from services.console.web import inputs
from services.console.web.access import require
from services.console.web.names import group_name, state_name
from services.console.web.render import page, short_enum, when

MAX_PAGES = 10


async def _all_pages(c: AppClients, method: Any, request: Any, field: str) -> list[Any]:
    items: list[Any] = []
    for _ in range(MAX_PAGES):
        reply = await c.call(method, request)
        items.extend(getattr(reply, field))
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    return items


def _cause(kind: str, event_name: str, event_ids: list[str]) -> str:
    text = kind.replace("_", " ")
    if event_name:
        text += f": {event_name}"
    if event_ids:
        text += f" ({', '.join(event_ids[:3])})"
    return text


def _timeline(entries: list[ppb.TimelineEntry], memberships: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for e in entries:
        if e.HasField("lifecycle"):
            old, new = state_name(e.lifecycle.from_state), state_name(e.lifecycle.to_state)
            what = "lifecycle"
        else:
            old, new = group_name(e.rfm.from_group), group_name(e.rfm.to_group)
            what = "rfm"
        change = f"{old or 'none'} → {new or 'none'}"
        rows.append(
            {
                "seq": e.user_sequence,
                "kind": what,
                "change": change,
                "cause": _cause(e.cause_kind, e.cause_event_name, list(e.cause_event_ids)),
                "time": when(e.effective_time),
                "correction": e.correction,
            }
        )
    for m in memberships:
        h = m.header
        direction = "entered" if m.direction == chpb.MembershipChanged.DIRECTION_ENTERED else "left"
        rows.append(
            {
                "seq": h.user_sequence,
                "kind": "segment",
                "change": f"{direction} {m.segment_id} (v{m.segment_version})",
                "cause": _cause(
                    short_enum(chpb.Cause.Kind.Name(h.cause.kind)),
                    h.cause.event_name,
                    list(h.cause.event_ids),
                ),
                "time": when(h.effective_time),
                "correction": h.correction,
            }
        )
    return sorted(rows, key=lambda r: r["seq"], reverse=True)


async def search(request: Request) -> Response:
    access = await require(request)
    query = inputs.ident(request.query_params.get("q"), "q", required=False)
    if query:
        c = access.clients
        try:
            await c.call(c.profiles.GetProfile, ppb.GetProfileRequest(user_id=query))
        except BackendError as error:
            if error.status != 404:
                raise
            return page(request, "users.html", access, query=query, missing=True)
        return RedirectResponse(
            f"/apps/{access.app_id}/users/{quote(query, safe='')}", status_code=303
        )
    return page(request, "users.html", access, query="", missing=False)


async def user_detail(request: Request) -> Response:
    access = await require(request)
    c = access.clients
    user_id = inputs.ident(request.path_params["user_id"], "user_id")
    profile = (await c.call(c.profiles.GetProfile, ppb.GetProfileRequest(user_id=user_id))).profile
    entries, memberships, current, deliveries, inbox, campaigns = await asyncio.gather(
        _all_pages(
            c,
            c.profiles.ListUserTimeline,
            ppb.ListUserTimelineRequest(user_id=user_id, page_size=500),
            "entries",
        ),
        _all_pages(
            c,
            c.segments.ListMembershipHistory,
            spb.ListMembershipHistoryRequest(user_id=user_id, page_size=500),
            "changes",
        ),
        c.call(c.segments.ListUserSegments, spb.ListUserSegmentsRequest(user_id=user_id)),
        c.call(
            c.campaigns.ListDeliveries, cpb.ListDeliveriesRequest(user_id=user_id, page_size=100)
        ),
        c.call(
            c.inbox.ListInboxMessages, ipb.ListInboxMessagesRequest(user_id=user_id, page_size=100)
        ),
        c.call(c.campaigns.ListCampaigns, cpb.ListCampaignsRequest(page_size=200)),
    )
    traits = {
        k: json_format.MessageToDict(v).popitem()[1] if v.WhichOneof("kind") else ""
        for k, v in sorted(profile.traits.items())
    }
    return page(
        request,
        "user.html",
        access,
        profile=profile,
        traits=traits,
        lifecycle=state_name(profile.lifecycle_state) or "none",
        rfm=group_name(profile.rfm_group) or "none",
        timeline=_timeline(entries, memberships),
        segments=current.memberships,
        deliveries=deliveries.deliveries,
        inbox=inbox.messages,
        campaign_names={x.campaign_id: x.name for x in campaigns.campaigns},
    )


def routes() -> list[Route]:
    return [Route("/users", search), Route("/users/{user_id:path}", user_detail)]
