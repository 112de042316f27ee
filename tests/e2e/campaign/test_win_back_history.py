"""Issue 11.4 end to end: a history of daily users, arriving late and out of order, flaps
their lifecycle (dormant, then corrected back to active) without anyone having left; a
win-back campaign sends them nothing and records why, while a user who really comes back
now is won back. ingest, projector and campaign as processes; only public APIs."""

from __future__ import annotations

import random
import time
from pathlib import Path

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc, inbox_pb2, inbox_pb2_grpc
from cohortflow.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cohortflow.profiles.v1 import profiles_pb2, profiles_pb2_grpc
from cohortflow.types.v1 import types_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from tests.support.campaign import auth, campaign, define
from tests.support.infra import NatsForTests
from tests.support.ingest import event
from tests.support.pipeline import Pipeline
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
SHOP = auth("key-shop")
DAY_S = 86_400
DAILY = [f"daily-{n}" for n in range(7)]
# Every event counts however late (as in make demo), so the backlog does move states.
POLICIES = '{"*": {"lifecycle": {"late_limit_days": 400}}}'
STATES = types_pb2.LifecycleState
WIN_BACK = pb.Trigger(
    lifecycle=pb.LifecycleTrigger(
        from_states=[STATES.LIFECYCLE_STATE_DORMANT, STATES.LIFECYCLE_STATE_CHURNED],
        to_states=[STATES.LIFECYCLE_STATE_ACTIVE, STATES.LIFECYCLE_STATE_REACTIVATED],
    )
)


def _at(seconds_ago: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(time.time() - seconds_ago))
    return ts


def _backlog() -> list[ingest_pb2.Event]:
    """A month of daily use by DAILY, and a user last seen 40 to 25 days ago, shuffled
    (an offline phone's upload, an import): every event arrives late, most out of order."""
    rng = random.Random(7)
    events = [
        event("App Opened", user_id=user, event_time=_at(day * DAY_S + rng.randrange(3600, 20000)))
        for user in DAILY
        for day in range(30)
    ]
    events += [
        event("App Opened", user_id="returning", event_time=_at(day * DAY_S + 5000))
        for day in range(25, 41)
    ]
    rng.shuffle(events)
    return events


async def test_daily_users_history_sends_no_win_back_and_a_real_return_does(
    database_url: str, nats_server: NatsForTests, tmp_path: Path
) -> None:
    pipeline = Pipeline(
        database_url, nats_server.url, tmp_path, projector={"PROJECTOR_POLICIES": POLICIES}
    )
    try:
        pipeline.start()
        (win_back,) = await define(
            pipeline.campaign_address,
            campaign(name="win back", body="We missed you", trigger=WIN_BACK),
        )
        async with (
            grpc.aio.insecure_channel(pipeline.ingest_address) as ingest_channel,
            grpc.aio.insecure_channel(pipeline.projector_address) as projector_channel,
            grpc.aio.insecure_channel(pipeline.campaign_address) as campaign_channel,
        ):
            ingest = ingest_pb2_grpc.IngestServiceStub(ingest_channel)
            profiles = profiles_pb2_grpc.ProfileServiceStub(projector_channel)
            campaigns = campaigns_pb2_grpc.CampaignServiceStub(campaign_channel)
            inbox = inbox_pb2_grpc.InboxServiceStub(campaign_channel)
            backlog = _backlog()
            for start in range(0, len(backlog), 50):  # several batches, as an upload would
                await ingest.TrackBatch(
                    ingest_pb2.TrackBatchRequest(events=backlog[start : start + 50]), metadata=SHOP
                )
            # The backlog is folded; now the returning user opens the app again.
            back = await ingest.Track(
                ingest_pb2.TrackRequest(
                    event=event("App Opened", user_id="returning", event_time=_at(0))
                ),
                metadata=SHOP,
            )
            returning = await profiles.GetProfile(
                profiles_pb2.GetProfileRequest(
                    user_id="returning", min_position=back.result.position
                ),
                metadata=SHOP,
                timeout=60,
            )
            assert returning.profile.lifecycle_state == STATES.LIFECYCLE_STATE_REACTIVATED

            async def won_back() -> list[str] | None:
                reply = await inbox.ListInboxMessages(
                    inbox_pb2.ListInboxMessagesRequest(user_id="returning"), metadata=SHOP
                )
                return [m.body for m in reply.messages] or None

            # The return was the last change published: once it is decided, so is the rest.
            assert await eventually(won_back, "the returning user's win-back") == ["We missed you"]
            skipped: dict[str, int] = {}
            for user in DAILY:
                messages = await inbox.ListInboxMessages(
                    inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
                )
                assert list(messages.messages) == [], user
                listed = await campaigns.ListDeliveries(
                    pb.ListDeliveriesRequest(user_id=user, campaign_id=win_back), metadata=SHOP
                )
                for d in listed.deliveries:
                    assert d.status == pb.Delivery.STATUS_SUPPRESSED, (user, d)
                    skipped[d.reason] = skipped.get(d.reason, 0) + 1
            # The backlog did flap them back from dormant (the trigger's transition), and
            # each such change was skipped as a correction or a change from the past.
            assert skipped and set(skipped) <= {"correction", "stale_change"}, skipped
            stats = await campaigns.GetCampaignStats(
                pb.GetCampaignStatsRequest(campaign_id=win_back), metadata=SHOP
            )
            variant = next(g for g in stats.groups if not g.is_control)
            assert variant.sent == 1
            assert sum(variant.suppressed.values()) >= sum(skipped.values())
    finally:
        pipeline.stop()
        await pipeline.close()
