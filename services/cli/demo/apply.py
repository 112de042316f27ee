"""Apply the demo's segments and campaigns: create what is missing, update what differs.

Running it again changes nothing: a segment is compared by name, description and
condition with its latest version; a campaign is created with a request_id derived
from its key (so CreateCampaign returns the existing one) and compared with the
service's own normalisation of its definition.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1.campaigns_pb2_grpc import CampaignServiceStub
from cohortflow.segments.v1 import segments_pb2 as spb
from cohortflow.segments.v1.segments_pb2_grpc import SegmentServiceStub

from services.campaign.grpc.convert import definition
from services.cli.client import CliError, Connection, describe_rpc_error
from services.cli.demo.files import CampaignSpec, SegmentSpec
from services.common.segment_wire import condition_from_dict

T = TypeVar("T")
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class Applied:
    """What applying one segment or campaign did."""

    kind: str  # "segment" or "campaign"
    name: str  # segment id or campaign key
    outcome: str  # created, updated or unchanged
    version: int
    ident: str  # segment id or campaign id
    # Log position of the definition written (0 when unchanged or not a segment).
    position: int = 0


async def _found(
    conn: Connection, method: Callable[..., Awaitable[T]], request: object
) -> T | None:
    """The answer of a Get call, or None for NOT_FOUND; other failures as CliError."""
    try:
        return await method(request, metadata=conn.target.metadata(), timeout=30)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return None
        raise CliError(describe_rpc_error(error, conn.service, conn.address)) from None


def segment_message(spec: SegmentSpec) -> spb.Segment:
    return spb.Segment(
        segment_id=spec.segment_id,
        display_name=spec.display_name,
        description=spec.description,
        condition=condition_from_dict(spec.condition),
    )


def _same_segment(existing: spb.Segment, desired: spb.Segment) -> bool:
    return (
        existing.display_name == desired.display_name
        and existing.description == desired.description
        and existing.condition == desired.condition
    )


async def apply_segments(
    conn: Connection, specs: tuple[SegmentSpec, ...], *, silent: bool = False
) -> list[Applied]:
    """Create or update each segment through SegmentService (referenced ones come first:
    the service checks references against the definitions in the log, so one just written
    can be referenced at once).

    An update names the version it replaces, so a concurrent edit fails instead of being
    overwritten; `silent` switches versions without publishing entries and exits.
    """
    stub = SegmentServiceStub(conn.channel)
    out: list[Applied] = []
    for spec in specs:
        desired = segment_message(spec)
        reply = await _found(
            conn, stub.GetSegment, spb.GetSegmentRequest(segment_id=spec.segment_id)
        )
        if reply is None:
            created = await conn.unary(
                stub.CreateSegment,
                spb.CreateSegmentRequest(segment_id=spec.segment_id, segment=desired),
            )
            segment, outcome = created.segment, CREATED
        elif reply.segment.state == spb.Segment.STATE_ARCHIVED:
            msg = f"segment {spec.segment_id!r} is archived; give it another segment_id"
            raise CliError(msg)
        elif _same_segment(reply.segment, desired):
            segment, outcome = reply.segment, UNCHANGED
        else:
            updated = await conn.unary(
                stub.UpdateSegment,
                spb.UpdateSegmentRequest(
                    segment=desired, silent=silent, expected_version=reply.segment.version
                ),
            )
            segment, outcome = updated.segment, UPDATED
        position = 0 if outcome == UNCHANGED else segment.defined_position
        out.append(
            Applied("segment", spec.segment_id, outcome, segment.version, spec.segment_id, position)
        )
    return out


def _same_campaign(existing: cpb.Campaign, desired: cpb.Campaign) -> bool:
    """Equal as the service reads them (defaults filled in the same way)."""
    wanted = cpb.Campaign()
    wanted.CopyFrom(desired)
    if not wanted.assignment_salt:
        wanted.assignment_salt = existing.campaign_id  # the service's default
    have, _ = definition(existing)
    want, _ = definition(wanted)
    return have is not None and have == want


async def _existing_ids(conn: Connection, stub: CampaignServiceStub) -> set[str]:
    ids: set[str] = set()
    token = ""
    while True:
        page = await conn.unary(
            stub.ListCampaigns,
            cpb.ListCampaignsRequest(page_size=1000, page_token=token, show_archived=True),
        )
        ids.update(c.campaign_id for c in page.campaigns)
        token = page.next_page_token
        if not token:
            return ids


async def apply_campaigns(conn: Connection, specs: tuple[CampaignSpec, ...]) -> list[Applied]:
    """Create (idempotently, by request_id) or update each campaign through CampaignService."""
    stub = CampaignServiceStub(conn.channel)
    before = await _existing_ids(conn, stub)
    out: list[Applied] = []
    for spec in specs:
        request = cpb.CreateCampaignRequest(campaign=spec.campaign, request_id=spec.request_id)
        campaign = (await conn.unary(stub.CreateCampaign, request, retries=3)).campaign
        if campaign.campaign_id not in before:
            outcome = CREATED
        elif campaign.state == cpb.Campaign.STATE_ARCHIVED:
            msg = f"campaign {spec.key!r} ({campaign.campaign_id}) is archived; give it another key"
            raise CliError(msg)
        elif _same_campaign(campaign, spec.campaign):
            outcome = UNCHANGED
        else:
            changed = cpb.Campaign()
            changed.CopyFrom(spec.campaign)
            changed.campaign_id = campaign.campaign_id
            update = cpb.UpdateCampaignRequest(campaign=changed, expected_version=campaign.version)
            campaign = (await conn.unary(stub.UpdateCampaign, update)).campaign
            outcome = UPDATED
        out.append(Applied("campaign", spec.key, outcome, campaign.version, campaign.campaign_id))
    return out
