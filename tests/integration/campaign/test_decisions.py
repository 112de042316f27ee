"""Decisions through the real consumer and database: redelivery, cancellation, caps across
campaigns, pause, control, stats with conversions from the event log, ListDeliveries."""

from __future__ import annotations

import grpc
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2
from cohortflow.types.v1 import types_pb2

from services.campaign.adapters.change_messages import decode_change
from services.campaign.bootstrap import CampaignApp
from services.common.grpc.errors import bad_request_of
from services.eventlog.store import open_event_log
from tests.integration.campaign.conftest import NEWS, SHOP
from tests.integration.campaign.helpers import (
    create,
    deliver,
    deliveries,
    purchase,
    tracked_positions,
    winback,
)
from tests.support.campaign import (
    FakeClock,
    campaign,
    lifecycle,
    membership,
    put_profile,
    seconds,
)


async def test_a_redelivered_change_is_recognised_and_not_acted_on_twice(
    campaign_app: CampaignApp, campaigns, database_url, clock
) -> None:
    await create(campaigns, campaign())
    message = membership("shop", "u1", "new_users", now_us=clock.now)
    change = decode_change(
        {"Cohortflow-Type": message.DESCRIPTOR.full_name}, message.SerializeToString()
    )
    first = await campaign_app.decider.process([change])
    again = await campaign_app.decider.process([change, change])
    assert (first.decided, first.redelivered) == (1, 0)
    assert (again.decided, again.redelivered) == (0, 2)
    assert len(deliveries(database_url)) == 1


async def test_leaving_the_segment_cancels_a_delayed_send(
    campaign_app: CampaignApp, campaigns, inbox, database_url, nats_server, stream, clock: FakeClock
) -> None:
    await create(campaigns, campaign(delay=seconds(3600)))
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "stays", "new_users"),
        membership("shop", "leaves", "new_users"),
    )
    clock.advance(600)
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "leaves", "new_users", entered=False),
    )
    await campaign_app.dispatcher.step()
    assert {r["user_id"]: r["status"] for r in deliveries(database_url)} == {
        "stays": "pending",
        "leaves": "cancelled",
    }
    clock.advance(3000)
    await campaign_app.dispatcher.step()
    rows = {r["user_id"]: r for r in deliveries(database_url)}
    assert rows["stays"]["status"] == "sent"
    assert (rows["leaves"]["status"], rows["leaves"]["reason"]) == ("cancelled", "left_segment")
    stays = await inbox.ListInboxMessages(
        inbox_pb2.ListInboxMessagesRequest(user_id="stays"), metadata=SHOP
    )
    leaves = await inbox.ListInboxMessages(
        inbox_pb2.ListInboxMessagesRequest(user_id="leaves"), metadata=SHOP
    )
    assert len(stays.messages) == 1 and len(leaves.messages) == 0


async def test_enter_and_exit_in_one_batch_cancel_in_order(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream
) -> None:
    await create(campaigns, campaign(delay=seconds(60)))
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "u1", "new_users", entered=False),  # an old exit: cancels nothing
        membership("shop", "u1", "new_users"),
        membership("shop", "u2", "new_users"),
        membership("shop", "u2", "new_users", entered=False),
    )
    assert {r["user_id"]: r["status"] for r in deliveries(database_url)} == {
        "u1": "pending",
        "u2": "cancelled",
    }


async def test_app_wide_caps_hold_across_campaigns_and_quiet_hours_delay(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock: FakeClock
) -> None:
    await campaigns.UpdateMessagingPolicy(
        pb.UpdateMessagingPolicyRequest(
            policy=pb.MessagingPolicy(
                channel_caps=[
                    pb.ChannelCap(
                        channel=types_pb2.CHANNEL_IN_APP,
                        cap=pb.FrequencyCap(max_messages=1, window=seconds(86_400)),
                    )
                ]
            )
        ),
        metadata=SHOP,
    )
    first = await create(campaigns, campaign(name="first"))
    second = await create(campaigns, campaign(name="second", segment_id="buyers"))
    quiet = await create(
        campaigns,
        campaign(
            name="quiet",
            segment_id="night",
            quiet_hours=pb.QuietHours(start="09:00", end="18:00"),  # it is 10:00 in Berlin
        ),
    )
    put_profile(database_url, "shop", "u1", timezone="Europe/Berlin")
    put_profile(database_url, "shop", "u2", timezone="Europe/Berlin")
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        membership("shop", "u1", "new_users"),
        membership("shop", "u1", "buyers"),
        membership("shop", "u2", "night"),
    )
    rows = {r["campaign_id"]: r for r in deliveries(database_url)}
    assert rows[first]["status"] == "sent"  # in-app, due at once: delivered as decided
    assert (rows[second]["status"], rows[second]["reason"]) == ("suppressed", "frequency_cap")
    assert rows[quiet]["status"] == "pending"
    assert rows[quiet]["due_at"].isoformat() == "2026-06-02T16:00:00+00:00"  # 18:00 Berlin


async def test_pause_cancels_what_is_pending_and_stops_new_decisions(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream
) -> None:
    campaign_id = await create(campaigns, campaign(delay=seconds(3600)))
    await deliver(campaign_app, nats_server.url, stream, membership("shop", "u1", "new_users"))
    await campaigns.PauseCampaign(pb.PauseCampaignRequest(campaign_id=campaign_id), metadata=SHOP)
    await deliver(campaign_app, nats_server.url, stream, membership("shop", "u2", "new_users"))
    (row,) = deliveries(database_url)
    assert (row["user_id"], row["status"], row["reason"]) == ("u1", "cancelled", "campaign_paused")


async def test_stats_per_variant_and_control_with_conversions_from_the_log(
    campaign_app: CampaignApp, campaigns, database_url, nats_server, stream, clock: FakeClock
) -> None:
    campaign_id = await create(
        campaigns,
        winback(
            control_percent=30,
            variants=[
                pb.Variant(name="A", template=pb.Template(body="Come back")),
                pb.Variant(name="B", template=pb.Template(body="We miss you")),
            ],
            conversion_goal=pb.ConversionGoal(
                event_name="Purchased",
                property_equals={"plan": types_pb2.Value(string_value="pro")},
                attribution_window=seconds(86_400),
            ),
        ),
    )
    users = [f"user-{i}" for i in range(60)]
    put_profile(database_url, "shop", users[0], consents={"in_app": False})
    await deliver(
        campaign_app,
        nats_server.url,
        stream,
        *(
            lifecycle(
                "shop", u, types_pb2.LIFECYCLE_STATE_ACTIVE, types_pb2.LIFECYCLE_STATE_DORMANT
            )
            for u in users
        ),
    )
    await campaign_app.dispatcher.step()
    rows = deliveries(database_url, campaign_id=campaign_id)
    groups = {r["user_id"]: r["grp"] for r in rows}
    # Half of everyone converts an hour later; one more converts after the window.
    clock.advance(3600)
    log = open_event_log(database_url, pool_size=1)
    try:
        events = [purchase("shop", u, clock.now, "pro") for u in users[::2]]
        events.append(purchase("shop", users[1], clock.now + 2 * 86_400 * 1_000_000, "pro"))
        events.append(purchase("shop", users[3], clock.now, "free"))
        log.append_new([log.encode(e) for e in events])
    finally:
        log.close()
    while campaign_app.follower.step():
        pass
    stats = await campaigns.GetCampaignStats(
        pb.GetCampaignStatsRequest(campaign_id=campaign_id), metadata=SHOP
    )
    by_name = {g.name: g for g in stats.groups}
    assert [g.name for g in stats.groups] == ["A", "B", "control"]
    converters = set(users[::2])
    for name, group in by_name.items():
        members = [u for u, g in groups.items() if g == name]
        assert group.triggered == len(members)
        eligible = [u for u in members if u != users[0]]
        expected_converted = len([u for u in eligible if u in converters])
        assert group.converted == expected_converted
        if name == "control":
            assert group.sent == 0 and group.is_control
        else:
            assert group.sent == len(eligible)
            assert group.conversion_rate == expected_converted / len(eligible)
            assert group.uplift.lower <= group.uplift.difference <= group.uplift.upper
    assert sum(g.suppressed.get("no_consent", 0) for g in stats.groups) == 1
    assert stats.confidence_level == 0.95
    # A user's deliveries, with the reason when nothing was sent.
    listed = await campaigns.ListDeliveries(
        pb.ListDeliveriesRequest(user_id=users[0]), metadata=SHOP
    )
    (refused,) = listed.deliveries
    assert (refused.status, refused.reason) == (pb.Delivery.STATUS_SUPPRESSED, "no_consent")
    # The campaign's most recent deliveries to every user, newest first, page by page.
    recent, token = [], ""
    while True:
        page = await campaigns.ListDeliveries(
            pb.ListDeliveriesRequest(campaign_id=campaign_id, page_size=25, page_token=token),
            metadata=SHOP,
        )
        recent += page.deliveries
        token = page.next_page_token
        if not token:
            break
    assert sorted(d.user_id for d in recent) == sorted(users)
    times = [(d.decide_time.ToMicroseconds(), d.send_id) for d in recent]
    assert times == sorted(times, reverse=True)
    assert {d.reason for d in recent if d.user_id == users[0]} == {"no_consent"}
    # Neither a user nor a campaign: refused, naming the field.
    with pytest.raises(grpc.aio.AioRpcError) as refused_call:
        await campaigns.ListDeliveries(pb.ListDeliveriesRequest(), metadata=SHOP)
    assert refused_call.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in bad_request_of(refused_call.value)] == ["user_id"]
    # Another app's key sees none of them.
    other = await campaigns.ListDeliveries(
        pb.ListDeliveriesRequest(campaign_id=campaign_id), metadata=NEWS
    )
    assert list(other.deliveries) == []
    # Following the log again changes nothing (the position was tracked with the marks),
    # tracked under the one log's name, as before partitions.
    assert campaign_app.follower.step() == 0
    assert list(tracked_positions(database_url)) == ["cohortflow"]


async def test_templates_read_the_triggering_event_from_the_log(
    campaign_app: CampaignApp, campaigns, inbox, database_url, nats_server, stream, clock
) -> None:
    await create(
        campaigns,
        campaign(
            segment_id="cart_abandoners",
            body="{{ user.first_name }}, your {{ event.properties.plan }} plan is waiting",
        ),
    )
    put_profile(database_url, "shop", "u1", traits={"first_name": "Uma"})
    added = purchase("shop", "u1", clock.now, "gold")
    log = open_event_log(database_url, pool_size=1)
    try:
        log.append_new([log.encode(added)])
    finally:
        log.close()
    entered = membership(
        "shop", "u1", "cart_abandoners", event_ids=[added.event_id], event_name=added.name
    )
    await deliver(campaign_app, nats_server.url, stream, entered)
    await campaign_app.dispatcher.step()
    reply = await inbox.ListInboxMessages(
        inbox_pb2.ListInboxMessagesRequest(user_id="u1"), metadata=SHOP
    )
    assert [m.body for m in reply.messages] == ["Uma, your gold plan is waiting"]
