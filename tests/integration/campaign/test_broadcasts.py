"""Broadcasts: a cron schedule read in a time zone, under the controllable clock, each run
once; segment members come from the SegmentMembers port (a fake, and the real adapter)."""

from __future__ import annotations

import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb

from services.campaign.bootstrap import CampaignApp
from services.projector.schema import SEGMENT_MEMBERS_TABLE
from tests.integration.campaign.helpers import create, deliveries
from tests.support.campaign import FakeClock, FakeSegmentMembers, at_us, campaign

DAILY_9AM_BERLIN = pb.Trigger(
    broadcast=pb.BroadcastTrigger(segment_id="vip", cron="0 9 * * *", timezone="Europe/Berlin")
)


async def test_a_daily_broadcast_fires_once_per_day_to_the_members(
    campaign_app: CampaignApp,
    campaigns,
    database_url,
    clock: FakeClock,
    segments: FakeSegmentMembers,
) -> None:
    segments.members_of[("shop", "vip")] = ["u1", "u2", "u3"]
    campaign_id = await create(
        campaigns, campaign(name="daily", trigger=DAILY_9AM_BERLIN, body="Today's deal")
    )
    # Created at 10:00 Berlin: nothing due until 09:00 tomorrow.
    assert await campaign_app.scheduler.tick() == 0
    clock.now = at_us("2026-06-03T07:00:00+00:00")  # 09:00 CEST
    assert await campaign_app.scheduler.tick() == 1
    assert await campaign_app.scheduler.tick() == 0  # the same run never fires twice
    await campaign_app.dispatcher.step()
    rows = deliveries(database_url, campaign_id=campaign_id)
    assert sorted((r["user_id"], r["status"]) for r in rows) == [
        ("u1", "sent"),
        ("u2", "sent"),
        ("u3", "sent"),
    ]
    # Next day, one more member; the run's change id differs, so everyone gets it again.
    segments.members_of[("shop", "vip")].append("u4")
    clock.now = at_us("2026-06-04T07:30:00+00:00")
    assert await campaign_app.scheduler.tick() == 1
    rows = deliveries(database_url, campaign_id=campaign_id)
    assert len(rows) == 7 and len({r["change_id"] for r in rows}) == 2


async def test_runs_missed_while_down_are_skipped_not_sent_late(
    campaign_app: CampaignApp,
    campaigns,
    database_url,
    clock: FakeClock,
    segments: FakeSegmentMembers,
) -> None:
    segments.members_of[("shop", "vip")] = ["u1"]
    await create(campaigns, campaign(name="daily", trigger=DAILY_9AM_BERLIN))
    clock.now = at_us("2026-06-05T08:30:00+00:00")  # three runs passed; the last 90 min ago
    assert await campaign_app.scheduler.tick() == 0
    assert deliveries(database_url) == []
    clock.now = at_us("2026-06-06T07:10:00+00:00")
    assert await campaign_app.scheduler.tick() == 1
    assert len(deliveries(database_url)) == 1


async def test_a_one_off_broadcast(
    campaign_app: CampaignApp,
    campaigns,
    database_url,
    clock: FakeClock,
    segments: FakeSegmentMembers,
) -> None:
    segments.members_of[("shop", "all")] = ["u1", "u2"]
    send_at = at_us("2026-06-02T09:00:00+00:00")
    trigger = pb.Trigger(broadcast=pb.BroadcastTrigger(segment_id="all"))
    trigger.broadcast.send_time.FromMicroseconds(send_at)
    await create(campaigns, campaign(name="launch", trigger=trigger))
    assert await campaign_app.scheduler.tick() == 0
    clock.now = send_at
    assert await campaign_app.scheduler.tick() == 1
    clock.advance(86_400)
    assert await campaign_app.scheduler.tick() == 0
    assert len(deliveries(database_url)) == 2


@pytest.mark.parametrize("campaign_app", [{"segment_members": None}], indirect=True)
async def test_by_default_members_are_the_projectors_segment_members(
    campaign_app: CampaignApp, campaigns, database_url, clock: FakeClock
) -> None:
    """Without an injected port, a run reads `segment_members` (the projector's read model)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            f"INSERT INTO {SEGMENT_MEMBERS_TABLE} (app_id, segment_id, user_id, version, since_us)"
            " VALUES ('shop', 'vip', 'u2', 1, 0), ('shop', 'vip', 'u1', 1, 0),"
            " ('shop', 'other', 'u3', 1, 0), ('elsewhere', 'vip', 'u4', 1, 0)"
        )
    send_at = at_us("2026-06-02T09:00:00+00:00")
    trigger = pb.Trigger(broadcast=pb.BroadcastTrigger(segment_id="vip"))
    trigger.broadcast.send_time.FromMicroseconds(send_at)
    await create(campaigns, campaign(name="vips", trigger=trigger))
    clock.now = send_at
    assert await campaign_app.scheduler.tick() == 1
    assert sorted(r["user_id"] for r in deliveries(database_url)) == ["u1", "u2"]
