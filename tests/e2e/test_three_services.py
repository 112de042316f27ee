"""ingest -> projector -> campaign, all three as processes on real PostgreSQL and NATS.

Driven only through public APIs: IngestService (Identify, TrackBatch), CampaignService,
InboxService, the change stream, and the receivers of the webhook and the email.

1. A user's first event makes them `new` (a lifecycle change caused by the event; no clock
   tick needed) and enters them into a segment defined through SegmentService. Campaigns on
   that transition (or on entering that segment), one per channel, reach the inbox, a
   signed webhook and an email, each exactly once per user, personalised from Identify's
   traits, and the email only to those who consented.
2. The campaign process is killed with SIGKILL while users keep arriving, then started
   again: every triggering change gives exactly one in-app message and one webhook
   delivery, none lost, none doubled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
import psycopg
import pytest
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import campaigns_pb2_grpc, inbox_pb2, inbox_pb2_grpc
from cohortflow.types.v1 import types_pb2

from tests.support.campaign import auth, campaign, define, sent_counts
from tests.support.changes import read_all
from tests.support.infra import NatsForTests
from tests.support.pipeline import Pipeline, Tracker, by_change, identify_then_track
from tests.support.receivers import HttpReceiver, SmtpReceiver
from tests.support.triggers import (
    TriggerCase,
    entered_segment,
    is_new_user,
    lifecycle_new_trigger,
    segment_entered_trigger,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
SHOP = auth("key-shop")
WEBHOOK_SECRET = "whsec-shop"  # CAMPAIGN_WEBHOOK_SECRETS of tests.support.campaign.campaign_env
# One clock tick a second, so the recorded clock moves (and is in the log) while we run.
PROJECTOR = {"PROJECTOR_TICK_INTERVAL_S": "1"}


TRIGGERS = [
    pytest.param(TriggerCase(lifecycle_new_trigger, is_new_user), id="lifecycle-new"),
    pytest.param(TriggerCase(segment_entered_trigger, entered_segment), id="segment-entered"),
]


PEOPLE = {
    # user: (first name, email, consents to email)
    "ana": ("Ana", "ana@example.com", True),
    "ben": ("Ben", "ben@example.com", True),
    "cleo": ("Cleo", "cleo@example.com", True),
    "dan": ("Dan", "dan@example.com", False),
}


@pytest.mark.parametrize("case", TRIGGERS)
async def test_first_events_reach_inbox_webhook_and_email_once_per_user(
    case: TriggerCase,
    database_url: str,
    nats_server: NatsForTests,
    tmp_path: Path,
    webhook: HttpReceiver,
    smtp: SmtpReceiver,
) -> None:
    pipeline = Pipeline(
        database_url,
        nats_server.url,
        tmp_path,
        projector=PROJECTOR,
        campaign={"CAMPAIGN_SMTP_HOST": "127.0.0.1", "CAMPAIGN_SMTP_PORT": str(smtp.port)},
    )
    try:
        pipeline.start()
        trigger = await case.make(pipeline)
        # Every entry triggers (not just the first), so a doubled change would show.
        in_app, hook, mail = await define(
            pipeline.campaign_address,
            campaign(name="inbox", body="Welcome {{ user.first_name }}", trigger=trigger),
            campaign(
                name="hook",
                channel=types_pb2.CHANNEL_WEBHOOK,
                channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/hooks"),
                trigger=trigger,
            ),
            campaign(
                name="mail",
                channel=types_pb2.CHANNEL_EMAIL,
                title="Hi {{ user.first_name }}",
                body="Good to see you.",
                trigger=trigger,
            ),
        )
        await identify_then_track(pipeline.ingest_address, PEOPLE)

        # The projector published one triggering change per user.
        async def every_user_triggered() -> dict[str, str] | None:
            chosen = by_change(await read_all(nats_server.url, pipeline.streams), case.triggers)
            return chosen if len(chosen) == len(PEOPLE) else None

        triggering = await eventually(every_user_triggered, "a triggering change per user")
        assert sorted(triggering.values()) == sorted(PEOPLE)

        # Wait until every decision is final (sent, or refused with its reason): from
        # then on nothing more can go out, so the counts below are the final ones.
        async with grpc.aio.insecure_channel(pipeline.campaign_address) as channel:
            campaigns = campaigns_pb2_grpc.CampaignServiceStub(channel)
            inbox = inbox_pb2_grpc.InboxServiceStub(channel)

            async def final_deliveries() -> dict[str, list[pb.Delivery]] | None:
                out = {}
                for user in PEOPLE:
                    reply = await campaigns.ListDeliveries(
                        pb.ListDeliveriesRequest(user_id=user), metadata=SHOP
                    )
                    out[user] = list(reply.deliveries)
                pending = (pb.Delivery.STATUS_PENDING, pb.Delivery.STATUS_UNSPECIFIED)
                done = all(
                    len(d) == 3 and all(x.status not in pending for x in d) for d in out.values()
                )
                return out if done else None

            deliveries: dict[str, list[pb.Delivery]] = await eventually(
                final_deliveries, "every delivery decided and made"
            )
            for user, (_, _, consents) in PEOPLE.items():
                status = {d.campaign_id: (d.status, d.reason) for d in deliveries[user]}
                assert status[in_app] == (pb.Delivery.STATUS_SENT, "")
                assert status[hook] == (pb.Delivery.STATUS_SENT, "")
                assert status[mail] == (
                    (pb.Delivery.STATUS_SENT, "")
                    if consents
                    else (pb.Delivery.STATUS_SUPPRESSED, "no_consent")
                )
                assert {d.change_id for d in deliveries[user]} == {
                    c for c, u in triggering.items() if u == user
                }

            # In-app: one message per user, in their inbox, personalised from Identify.
            for user, (first_name, _, _) in PEOPLE.items():
                reply = await inbox.ListInboxMessages(
                    inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
                )
                (message,) = reply.messages
                assert (message.campaign_id, message.body) == (in_app, f"Welcome {first_name}")

        # Webhook: one signed POST per user, for that user's triggering change.
        assert len(webhook.requests) == len(PEOPLE)
        posted = {r.json()["user_id"]: r for r in webhook.requests}
        assert sorted(posted) == sorted(PEOPLE)
        for user, request in posted.items():
            assert request.path == "/hooks"
            assert request.signed_with(WEBHOOK_SECRET)
            assert triggering[request.json()["change_id"]] == user
            assert request.json()["campaign_id"] == hook

        # Email: one per consenting user, to their address, with their name.
        mails = {m["To"]: m for m in smtp.messages}
        assert len(smtp.messages) == len(mails)
        assert mails.keys() == {email for _, email, ok in PEOPLE.values() if ok}
        for first_name, email, ok in PEOPLE.values():
            if ok:
                assert mails[email]["Subject"] == f"Hi {first_name}"
        codes = pipeline.stop()
        assert set(codes.values()) == {0}, pipeline.output()
    finally:
        await pipeline.close()


async def test_campaign_killed_mid_stream_loses_and_doubles_nothing(
    database_url: str, nats_server: NatsForTests, tmp_path: Path, webhook: HttpReceiver
) -> None:
    # Changes fetched but not acked by the killed process come back after the ack wait,
    # sends it had leased once their lease runs out (both short here, 30 and 60 s by default).
    pipeline = Pipeline(
        database_url,
        nats_server.url,
        tmp_path,
        projector=PROJECTOR,
        campaign={
            "CAMPAIGN_FETCH_BATCH": "50",
            "CAMPAIGN_ACK_WAIT_S": "2",
            "CAMPAIGN_LEASE_S": "2",
        },
    )
    users = [f"user-{i}" for i in range(1000)]
    tracker = Tracker(pipeline.ingest_address, users, per_call=10, every_s=0.05)
    producer: asyncio.Task[None] | None = None
    try:
        pipeline.start()
        trigger = await lifecycle_new_trigger(pipeline)
        in_app, hook = await define(
            pipeline.campaign_address,
            campaign(name="inbox", trigger=trigger),
            campaign(
                name="hook",
                channel=types_pb2.CHANNEL_WEBHOOK,
                channel_settings=pb.ChannelSettings(webhook_url=f"{webhook.url}/hooks"),
                trigger=trigger,
            ),
        )
        producer = asyncio.create_task(tracker.run())
        # Kill -9 once some, not all, messages went out: mid-stream, mid-batch.
        await eventually(
            lambda: asyncio.to_thread(lambda: sent_counts(database_url).get("in_app", 0) >= 200),
            "the first deliveries",
        )
        pipeline.kill_campaign()
        killed_at = sent_counts(database_url)
        tracked_at_kill = tracker.tracked

        # Users keep arriving while campaign is down; their changes wait in the stream.
        async def more_users_arrived() -> bool:
            return tracker.tracked >= tracked_at_kill + 200 or producer.done()

        await eventually(more_users_arrived, "users tracked while campaign is down")
        tracked_while_down = tracker.tracked - tracked_at_kill
        pipeline.restart_campaign()
        await producer

        changes = await read_all(nats_server.url, pipeline.streams, expect=len(users))
        triggering = by_change(changes, is_new_user)
        assert sorted(triggering.values()) == sorted(users)
        await eventually(
            lambda: asyncio.to_thread(
                lambda: sent_counts(database_url) == {"in_app": len(users), "webhook": len(users)}
            ),
            "every delivery",
            within=120,
        )
        codes = pipeline.stop()
        assert set(codes.values()) == {0}, pipeline.output()
    finally:
        if producer is not None:
            producer.cancel()
        await pipeline.close()
    assert killed_at.get("in_app", 0) < len(users), "the kill came too late to prove anything"
    assert tracked_while_down > 0, "nobody arrived while campaign was down"

    with psycopg.connect(database_url) as conn:
        inbox_changes = conn.execute(
            "SELECT d.change_id FROM campaign_inbox i"
            " JOIN campaign_deliveries d ON d.send_id = i.message_id"
        ).fetchall()
        per_campaign: dict[str, int] = dict(
            conn.execute(
                "SELECT campaign_id, count(*) FROM campaign_deliveries GROUP BY campaign_id"
            ).fetchall()
        )
    # In-app: exactly one message per triggering change, none lost, none doubled.
    assert Counter(c for (c,) in inbox_changes) == Counter(triggering.keys())
    assert per_campaign == {in_app: len(users), hook: len(users)}
    # Webhook: every triggering change's send arrived, one effect each (the receiver
    # honours the key); a call in flight at the kill may be repeated with the same key,
    # never more than once, and at most CAMPAIGN_DISPATCH_CONCURRENCY (32) of them.
    assert Counter(r.json()["change_id"] for r in webhook.by_key.values()) == Counter(
        triggering.keys()
    )
    repeats = {k: n for k, n in webhook.key_counts.items() if n > 1}
    assert all(n == 2 for n in repeats.values()), repeats
    assert len(repeats) <= 32
    print(
        f"sent at kill: {killed_at}; tracked while down: {tracked_while_down};"
        f" webhook calls repeated with the same key: {len(repeats)}"
    )
