"""An erased user in campaign: inbox messages deleted, delivery payloads blanked, nothing
new sent (suppressed with reason "erased"); other users untouched."""

from __future__ import annotations

import nats
from cohortflow.campaigns.v1 import campaigns_pb2 as pb
from cohortflow.campaigns.v1 import inbox_pb2

from services.campaign.bootstrap import CampaignApp
from services.common.jetstream import ChangeStreamSettings
from services.eventlog.keyring import Keyring
from services.eventlog.store import open_event_log
from tests.integration.campaign.conftest import SHOP
from tests.integration.campaign.helpers import deliveries
from tests.support.campaign import FakeClock, campaign, membership, publish, put_profile
from tests.support.infra import NatsForTests


async def test_an_erased_user_loses_inbox_and_payloads_and_is_sent_nothing_again(
    campaign_app: CampaignApp,
    campaigns,
    inbox,
    database_url: str,
    nats_server: NatsForTests,
    stream: ChangeStreamSettings,
    clock: FakeClock,
) -> None:
    await campaigns.CreateCampaign(
        pb.CreateCampaignRequest(campaign=campaign(body="Welcome, {{ user.first_name }}!")),
        metadata=SHOP,
    )
    for user in ("alice", "bob"):
        put_profile(database_url, "shop", user, traits={"first_name": user.title()})
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for user in ("alice", "bob"):
            await publish(js, stream, membership("shop", user, "new_users", now_us=clock.now))
        assert await campaign_app.consumer.poll(wait_s=5) == 2

        # The erasure as PrivacyService.EraseUser records it (keys destroyed, audited).
        log = open_event_log(database_url, pool_size=1)
        try:
            Keyring(log.log_recorder.datastore).erase("shop", "alice", "r-1", "dpo")
        finally:
            log.close()
        assert await campaign_app.erasures.sweep() == 1
        assert await campaign_app.erasures.sweep() == 0  # once

        async def messages(user: str) -> list[str]:
            reply = await inbox.ListInboxMessages(
                inbox_pb2.ListInboxMessagesRequest(user_id=user), metadata=SHOP
            )
            return [m.body for m in reply.messages]

        assert await messages("alice") == []
        assert await messages("bob") == ["Welcome, Bob!"]
        (kept,) = deliveries(database_url, user_id="alice")
        assert (kept["content"], kept["address"], kept["status"]) == (None, "", "sent")
        (other,) = deliveries(database_url, user_id="bob")
        assert other["content"] is not None

        # A new trigger for the erased user is decided, and suppressed as erased.
        clock.now += 60_000_000
        await publish(
            js,
            stream,
            membership("shop", "alice", "new_users", now_us=clock.now, change_id="again"),
        )
        assert await campaign_app.consumer.poll(wait_s=5) == 1
    finally:
        await nc.close()
    statuses = [(d["status"], d["reason"]) for d in deliveries(database_url, user_id="alice")]
    assert statuses == [("sent", ""), ("suppressed", "erased")]
    assert await messages("alice") == []
