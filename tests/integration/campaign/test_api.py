"""CampaignService over gRPC: definitions are validated, versioned, event-sourced, per app."""

from __future__ import annotations

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.types.v1 import types_pb2
from google.protobuf import field_mask_pb2

from services.common.grpc.errors import bad_request_of
from tests.integration.campaign.conftest import NEWS, SHOP
from tests.support.campaign import campaign, seconds


async def create(stub, **fields) -> pb.Campaign:
    reply = await stub.CreateCampaign(pb.CreateCampaignRequest(**fields), metadata=SHOP)
    return reply.campaign


async def test_create_is_idempotent_by_request_id(campaigns) -> None:
    first = await create(campaigns, campaign=campaign(), request_id="r-1")
    again = await create(campaigns, campaign=campaign(name="other"), request_id="r-1")
    assert again.campaign_id == first.campaign_id and again.name == "welcome"
    assert (first.state, first.version) == (pb.Campaign.STATE_ACTIVE, 1)
    assert first.assignment_salt == first.campaign_id
    assert first.reentry.mode == pb.ReentryPolicy.MODE_EVERY_TIME


async def test_bad_definitions_are_refused_naming_each_field(campaigns) -> None:
    bad = campaign(
        channel=types_pb2.CHANNEL_WEBHOOK,
        variants=[pb.Variant(name="A", template=pb.Template(body="{{ user.name"))],
        quiet_hours=pb.QuietHours(start="25:00", end="08:00"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(campaigns, campaign=bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_of(caught.value)] == [
        "campaign.channel_settings.webhook_url",
        "campaign.variants[0].template.body",
        "campaign.quiet_hours.start",
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(campaigns, campaign=pb.Campaign(name="x"))
    assert [f for f, _ in bad_request_of(caught.value)] == ["campaign.trigger", "campaign.channel"]


async def test_update_makes_a_new_version_and_old_versions_stay_readable(campaigns) -> None:
    created = await create(campaigns, campaign=campaign(body="v1 body"))
    change = pb.Campaign(
        campaign_id=created.campaign_id,
        variants=[pb.Variant(name="B", template=pb.Template(body="v2 body"))],
        delay=seconds(3600),
    )
    updated = (
        await campaigns.UpdateCampaign(
            pb.UpdateCampaignRequest(
                campaign=change,
                update_mask=field_mask_pb2.FieldMask(paths=["variants", "delay"]),
                expected_version=1,
            ),
            metadata=SHOP,
        )
    ).campaign
    assert updated.version == 2 and updated.name == "welcome"
    assert updated.variants[0].template.body == "v2 body" and updated.delay.seconds == 3600
    old = await campaigns.GetCampaign(
        pb.GetCampaignRequest(campaign_id=created.campaign_id, version=1), metadata=SHOP
    )
    assert old.campaign.version == 1 and old.campaign.variants[0].template.body == "v1 body"
    # A stale expected_version is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.UpdateCampaign(
            pb.UpdateCampaignRequest(
                campaign=change,
                update_mask=field_mask_pb2.FieldMask(paths=["variants"]),
                expected_version=1,
            ),
            metadata=SHOP,
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.UpdateCampaign(
            pb.UpdateCampaignRequest(
                campaign=change, update_mask=field_mask_pb2.FieldMask(paths=["state"])
            ),
            metadata=SHOP,
        )
    assert bad_request_of(caught.value)[0][0] == "update_mask"


async def test_pause_resume_archive_and_their_preconditions(campaigns) -> None:
    created = await create(campaigns, campaign=campaign())
    ref = {"campaign_id": created.campaign_id}
    paused = await campaigns.PauseCampaign(pb.PauseCampaignRequest(**ref), metadata=SHOP)
    assert paused.campaign.state == pb.Campaign.STATE_PAUSED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.PauseCampaign(pb.PauseCampaignRequest(**ref), metadata=SHOP)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    resumed = await campaigns.ResumeCampaign(pb.ResumeCampaignRequest(**ref), metadata=SHOP)
    assert resumed.campaign.state == pb.Campaign.STATE_ACTIVE
    await campaigns.ArchiveCampaign(pb.ArchiveCampaignRequest(**ref), metadata=SHOP)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.ResumeCampaign(pb.ResumeCampaignRequest(**ref), metadata=SHOP)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = await campaigns.ListCampaigns(pb.ListCampaignsRequest(), metadata=SHOP)
    assert created.campaign_id not in [c.campaign_id for c in listed.campaigns]
    listed = await campaigns.ListCampaigns(
        pb.ListCampaignsRequest(show_archived=True), metadata=SHOP
    )
    assert [c.state for c in listed.campaigns] == [pb.Campaign.STATE_ARCHIVED]


async def test_list_pages_and_apps_never_see_each_other(campaigns) -> None:
    ids = [(await create(campaigns, campaign=campaign(name=f"c{i}"))).campaign_id for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await campaigns.ListCampaigns(
            pb.ListCampaignsRequest(page_size=2, page_token=token), metadata=SHOP
        )
        seen += [c.campaign_id for c in page.campaigns]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    other = await campaigns.ListCampaigns(pb.ListCampaignsRequest(), metadata=NEWS)
    assert list(other.campaigns) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.GetCampaign(pb.GetCampaignRequest(campaign_id=ids[0]), metadata=NEWS)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.ListCampaigns(pb.ListCampaignsRequest(page_token="junk"), metadata=SHOP)
    assert bad_request_of(caught.value)[0][0] == "page_token"


async def test_messaging_policy_is_versioned_per_app(campaigns) -> None:
    empty = await campaigns.GetMessagingPolicy(pb.GetMessagingPolicyRequest(), metadata=SHOP)
    assert empty.policy.version == 0
    policy = pb.MessagingPolicy(
        global_holdout_percent=5,
        channel_caps=[
            pb.ChannelCap(
                channel=types_pb2.CHANNEL_EMAIL,
                cap=pb.FrequencyCap(max_messages=2, window=seconds(86_400)),
            )
        ],
    )
    saved = await campaigns.UpdateMessagingPolicy(
        pb.UpdateMessagingPolicyRequest(policy=policy), metadata=SHOP
    )
    assert saved.policy.version == 1 and saved.policy.channel_caps[0].cap.max_messages == 2
    other = await campaigns.GetMessagingPolicy(pb.GetMessagingPolicyRequest(), metadata=NEWS)
    assert other.policy.version == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await campaigns.UpdateMessagingPolicy(
            pb.UpdateMessagingPolicyRequest(policy=pb.MessagingPolicy(global_holdout_percent=100)),
            metadata=SHOP,
        )
    assert bad_request_of(caught.value)[0][0] == "policy.global_holdout_percent"
