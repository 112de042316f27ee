"""Apply the demo's campaigns: create what is missing, update what differs.

A campaign is created with a request_id derived from its key (so CreateCampaign returns
the existing one) and compared with the service's own normalisation of its definition.
"""

from __future__ import annotations

from cohortflow.campaigns.v1 import campaigns_pb2 as cpb
from cohortflow.campaigns.v1.campaigns_pb2_grpc import CampaignServiceStub

from services.campaign.grpc.convert import definition
from services.cli.client import CliError, Connection
from services.cli.demo.files import CampaignSpec
from services.cli.segment_apply import CREATED, UNCHANGED, UPDATED, Applied


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
