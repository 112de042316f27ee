"""Through the real consumer and database: corrections and old changes send nothing, each
skip is visible with its reason (ListDeliveries, stats, metrics), a fresh transition
sends, and a campaign that asks for corrections or older changes gets them."""

from __future__ import annotations

from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2
from cohortflow.types.v1 import types_pb2
from google.protobuf import duration_pb2
from prometheus_client import REGISTRY

from services.campaign.bootstrap import CampaignApp
from tests.integration.campaign.conftest import SHOP
from tests.integration.campaign.helpers import create, deliver, deliveries
from tests.support.campaign import FakeClock, campaign, lifecycle, membership, seconds

DORMANT = types_pb2.LIFECYCLE_STATE_DORMANT
ACTIVE = types_pb2.LIFECYCLE_STATE_ACTIVE
NEW = types_pb2.LIFECYCLE_STATE_NEW
HOUR_US = 3_600_000_000
WIN_BACK = pb.Trigger(lifecycle=pb.LifecycleTrigger(from_states=[DORMANT], to_states=[ACTIVE]))


def skipped(reason: str) -> float:
    labels = {"channel": "in_app", "status": "suppressed", "reason": reason}
    return REGISTRY.get_sample_value("cohortflow_campaign_decisions_total", labels) or 0.0


async def inbox_of(inbox, user: str) -> list[str]:
    reply = await inbox.ListInboxMessages(
        inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
    )
    return [m.body for m in reply.messages]


async def test_win_backs_go_only_to_users_who_really_come_back_now(
    campaign_app: CampaignApp, campaigns, inbox, nats_server, stream, clock: FakeClock
) -> None:
    win_back = await create(
        campaigns, campaign(name="win back", body="We missed you", trigger=WIN_BACK)
    )
    before = {r: skipped(r) for r in ("correction", "stale_change")}
    now = clock.now
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        # A daily user flaps: a late event rewrites the past, new -> dormant -> active.
        lifecycle("shop", "daily", NEW, DORMANT, now_us=now, correction=True),
        lifecycle("shop", "daily", DORMANT, ACTIVE, now_us=now, correction=True),
        # A backlog delivered a day late: the return happened yesterday.
        lifecycle("shop", "late", DORMANT, ACTIVE, now_us=now, effective_us=now - 24 * HOUR_US),
        # A user who comes back now.
        lifecycle("shop", "back", DORMANT, ACTIVE, now_us=now, effective_us=now - 60_000_000),
    )
    await campaign_app.dispatcher.step()

    assert await inbox_of(inbox, "daily") == [] and await inbox_of(inbox, "late") == []
    assert await inbox_of(inbox, "back") == ["We missed you"]
    for user, reason in (("daily", "correction"), ("late", "stale_change")):
        listed = await campaigns.ListDeliveries(
            pb.ListDeliveriesRequest(user_id=user, campaign_id=win_back), metadata=SHOP
        )
        assert [(d.status, d.reason) for d in listed.deliveries] == [
            (pb.Delivery.STATUS_SUPPRESSED, reason)
        ]
    stats = await campaigns.GetCampaignStats(
        pb.GetCampaignStatsRequest(campaign_id=win_back), metadata=SHOP
    )
    (variant, _control) = stats.groups
    assert dict(variant.suppressed) == {"correction": 1, "stale_change": 1}
    assert variant.sent == 1
    assert {r: skipped(r) - before[r] for r in before} == {"correction": 1, "stale_change": 1}


async def test_a_campaign_that_asks_for_corrections_and_older_changes_gets_them(
    campaign_app: CampaignApp, campaigns, inbox, database_url, nats_server, stream, clock
) -> None:
    created = (
        await campaigns.CreateCampaign(
            pb.CreateCampaignRequest(
                campaign=campaign(
                    name="every return",
                    body="Back!",
                    trigger=WIN_BACK,
                    fire_on_corrections=True,
                    max_trigger_age=duration_pb2.Duration(seconds=2 * 86_400),
                )
            ),
            metadata=SHOP,
        )
    ).campaign
    assert created.fire_on_corrections and created.max_trigger_age.seconds == 2 * 86_400
    default = await create(campaigns, campaign(name="default", trigger=WIN_BACK))
    shown = await campaigns.GetCampaign(pb.GetCampaignRequest(campaign_id=default), metadata=SHOP)
    assert shown.campaign.max_trigger_age.seconds == 3600
    assert not shown.campaign.fire_on_corrections
    now = clock.now
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        lifecycle("shop", "fixed", DORMANT, ACTIVE, now_us=now, correction=True),
        lifecycle("shop", "late", DORMANT, ACTIVE, now_us=now, effective_us=now - 24 * HOUR_US),
        lifecycle("shop", "ancient", DORMANT, ACTIVE, now_us=now, effective_us=now - 72 * HOUR_US),
    )
    rows = deliveries(database_url, campaign_id=created.campaign_id)
    assert {r["user_id"]: (r["status"], r["reason"]) for r in rows} == {
        "fixed": ("sent", ""),
        "late": ("sent", ""),
        "ancient": ("suppressed", "stale_change"),
    }


async def test_a_correction_still_cancels_a_send_it_makes_pointless(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock
) -> None:
    await create(campaigns, campaign(delay=seconds(3600)))
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "u1", "new_users", now_us=clock.now),
    )
    clock.advance(60)
    # The entry was wrong after all: the correcting exit sends nothing, and cancels.
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "u1", "new_users", entered=False, now_us=clock.now, correction=True),
    )
    assert [(r["status"], r["reason"]) for r in deliveries(database_url)] == [
        ("cancelled", "left_segment")
    ]
